"""Write one session's BIDS-Derivatives outputs from the graph's intermediate files.

Called by the last node of a session's graph, so a session's outputs appear only when all of its
processing succeeded. It names, copies and describes (sidecars) what the graph computed, the
quantification node's tables and label map included; it computes nothing itself. The node
writes them into a hidden staging folder (``staging_folder``) and moves them into place
together once all are there, the summary last (csvd_bids.bids.derivatives.publish_folder).
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from csvd_bids.bids import derivatives as ds
from csvd_bids.bids.discovery import SUFFIXES, session_prefix
from csvd_bids.errors import OutputError
from csvd_bids.labels import BY_KEY, dseg_priority
from csvd_bids.markers import REGISTRY
from csvd_bids.markers.base import LEFT_OUT
from csvd_bids.outputs.lsa import LSAFiles, write_lsa
from csvd_bids.preproc.atlas import ATLAS_CITATION
from csvd_bids.preproc.regions import REGION_LABELS
from csvd_bids.preproc.template import TEMPLATE_NAME
from csvd_bids.quant.summary import describe_lesion_column, describe_summary_column

STAGING_PREFIX = ".staging-"  # hidden: the BIDS validator and pybids skip dot folders


@dataclass(frozen=True)
class SessionAnatomy:
    """The preprocessing results of a session other than the images (files from the graph)."""

    brain_mask: str
    brain_report: dict  # Method, Warning, IntracranialVolume_mm3
    transform: str  # composite ITK transform (HDF5): reference points -> template points
    tissues: dict[str, str]  # GM/WM/CSF -> posterior probability image
    regions: str  # REGION_LABELS map
    volumes: dict  # intracranial, csf, gm, wm and regions (mm3)
    same_subject: dict  # image suffix (FLAIR, dwi...) -> preproc.identity result


@dataclass(frozen=True)
class SessionQuantFiles:
    """The quantification node's outputs (csvd_bids.interfaces.quant.QuantifySession)."""

    lesions: str  # TSV, every lesion of the session
    summary: str  # TSV, the summary row
    dseg: str  # seg-csvd label map
    coverage: dict  # image suffix -> brain coverage
    markers: dict  # marker key -> final status: assessed, reason, notes, excluded


def _source_entities(path: str) -> dict[str, str]:
    """acq- of an input file (e.g. acq-swi), kept in the names of images derived from it."""
    for part in Path(path).name.split("_"):
        if part.startswith("acq-"):
            return {"acq": part[4:]}
    return {}


@contextmanager
def staging_folder(output_dir: Path, prefix: str) -> Iterator[Path]:
    """A hidden folder in ``output_dir`` to write a session's outputs into, removed at the end
    whatever happens; a full disk or quota inside the block becomes an OutputError (exit 73)
    naming the folder."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob(f"{STAGING_PREFIX}{prefix}-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{prefix}-", dir=output_dir))
    try:
        yield staging
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(
                f"{output_dir}: {exc.strerror} while writing the outputs of {prefix}; "
                "none of them was left under its final name"
            ) from exc
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_session_outputs(
    plan: dict,
    output_dir: Path,
    bids_dir: Path,
    preproc: dict[str, str],
    reports: dict[str, dict],
    anatomy: SessionAnatomy,
    dwi: dict | None,
    detections: dict[str, dict[str, str]],
    quantities: SessionQuantFiles,
    figures: tuple[str, ...] | list[str] = (),
    methods: list[dict] | None = None,
    lsa: LSAFiles | None = None,
) -> Path:
    """Write every output of one session under ``output_dir`` and return the path of its
    summary TSV. The graph writes into a ``staging_folder`` and publishes it: a full disk, a
    quota or a crash while writing leaves no file of the session under its final name (the
    session's outputs of a previous run, if any, stay as they were).

    ``plan``: the session plan (subject, session, reference, files, markers) made at discovery.
    ``preproc``: modality -> preprocessed image on the reference grid.
    ``reports``: modality -> how it reached that grid (coregistration metrics, transform file).
    ``anatomy``: brain mask, template transforms, tissues, regions and volumes.
    ``dwi``: b0, trace, adc files on the reference grid and their report, or None.
    ``detections``: marker key -> {"score", "mask"} files of the markers the plan assesses.
    ``quantities``: the quantification node's tables, label map, coverage and marker statuses.
    ``figures``: QC PNGs named ``<desc>_<suffix>.png``, saved as
    ``sub-<label>/figures/<session prefix>_<desc>_<suffix>.png`` (as fMRIPrep does).
    ``methods``: the workflows' methods sections (csvd_bids.workflows.base.methods_sections),
    saved as ``sub-<label>/logs/<session prefix>_methods.json`` for the session report.
    ``lsa``: FA/MD, CBF and the basal-ganglia table (csvd_bids.outputs.lsa), or None.
    """
    subject, session = plan["subject"], plan["session"]
    folder = ds.session_dir(output_dir, subject, session)
    space = SUFFIXES[plan["reference"]]
    base = {"sub": subject, "ses": session}
    sources = {m: ds.raw_uri(bids_dir, f) for m, f in plan["files"].items()}

    def out(suffix: str, extension: str, **entities: str) -> Path:
        return folder / ds.bids_name({**base, **entities}, suffix, extension)

    reference_path = out(space, ".nii.gz", space=space, desc="preproc")
    spatial_reference = ds.local_uri(output_dir, reference_path)
    for modality, path in preproc.items():
        entities = {**_source_entities(plan["files"][modality]), "space": space, "desc": "preproc"}
        target = out(SUFFIXES[modality], ".nii.gz", **entities)
        ds.copy_file(Path(path), target)
        sidecar = {
            "Sources": [sources[modality]],
            "SkullStripped": False,
            "BrainCoverage": round(quantities.coverage[SUFFIXES[modality]], 4),
        }
        if SUFFIXES[modality] in anatomy.same_subject:
            sidecar["SameSubjectCheck"] = anatomy.same_subject[SUFFIXES[modality]]
        report = reports[modality]
        if report["Reference"]:
            sidecar["Description"] = "Reoriented to RAS and N4 bias-corrected: the reference grid."
        else:
            xfm = folder / ds.bids_name(
                base, f"from-{SUFFIXES[modality]}_to-{space}_mode-image_xfm", ".txt"
            )
            ds.copy_file(Path(report["TransformFile"]), xfm)
            sidecar.update(
                {
                    "SpatialReference": spatial_reference,
                    "Description": "Reoriented to RAS, N4 bias-corrected, rigidly coregistered to "
                    "the reference and resampled once onto its grid (cubic B-spline).",
                    "Registration": {
                        **report["Registration"],
                        "Transform": ds.local_uri(output_dir, xfm),
                    },
                }
            )
        ds.write_json(target.with_name(target.name.replace(".nii.gz", ".json")), sidecar)

    prefix = session_prefix(subject, session)
    ds.write_json(ds.methods_file(output_dir, prefix), {"sections": methods or []})
    for figure in figures:
        ds.copy_file(
            Path(figure),
            output_dir / f"sub-{subject}" / "figures" / f"{prefix}_{Path(figure).name}",
        )

    _write_image_with_sidecar(
        out("mask", ".nii.gz", space=space, desc="brain"),
        anatomy.brain_mask,
        {
            "Type": "Brain",
            "Sources": [sources[plan["reference"]]],
            "SpatialReference": spatial_reference,
            "Manual": False,
            "Method": anatomy.brain_report["Method"],
            "Description": "Intracranial mask (brain and CSF): its volume is the ICV.",
            "IntracranialVolume_mm3": anatomy.brain_report["IntracranialVolume_mm3"],
        },
    )
    xfm = folder / ds.bids_name(base, f"from-{TEMPLATE_NAME}_to-{space}_mode-image_xfm", ".h5")
    ds.copy_hdf5(Path(anatomy.transform), xfm)
    reference_source = sources[plan["reference"]]
    _write_anatomy(anatomy, out, space, spatial_reference, reference_source, xfm, output_dir)

    if dwi is not None:
        _write_dwi(
            dwi,
            folder.parent / "dwi",
            base,
            space,
            spatial_reference,
            sources,
            output_dir,
            anatomy.same_subject,
        )

    if lsa is not None:
        write_lsa(lsa, out, folder, base, space, spatial_reference, sources, output_dir)

    # no image of a marker that could not be assessed (an empty mask would read as "none")
    written = {
        key: out("mask", ".nii.gz", space=space, label=REGISTRY[key].label.label)
        for key in detections
        if quantities.markers[key]["assessed"]
    }
    uris = {key: ds.local_uri(output_dir, path) for key, path in written.items()}
    for key, mask_path in written.items():
        files, status = detections[key], quantities.markers[key]
        spec = REGISTRY[key]
        label = spec.label.label
        excluded = status.get("excluded", {})
        common = {
            "Sources": [sources[m] for m in spec.modalities(plan["files"])]
            + [uris[k] for k, why in excluded.items() if why == LEFT_OUT and k in uris],
            "SpatialReference": spatial_reference,
            "Manual": False,
            # a model bundle's description when one replaced the detector (by the plan, or
            # in this session by the second opinion: csvd_bids.models.second_opinion)
            "Method": status.get("method") or plan["markers"][key].get("method", spec.method),
            **({"Notes": status["notes"]} if status["notes"] else {}),
            **({"ExcludedLesions": _exclusions(excluded, uris)} if excluded else {}),
            # the shipped model's volume beside the detector's, and which mask was kept
            **({"SecondOpinion": status["second_opinion"]} if "second_opinion" in status else {}),
        }
        _write_image_with_sidecar(
            out("probseg", ".nii.gz", space=space, label=label),
            files["score"],
            {
                **common,
                "Description": f"{spec.label.name} lesion belief "
                "in [0, 1] (not a calibrated probability)",
            },
        )
        _write_image_with_sidecar(mask_path, files["mask"], {**common, "Type": "Lesion"})

    not_assessed = {
        BY_KEY[key].label: status["reason"]
        for key, status in quantities.markers.items()
        if not status["assessed"]
    }
    _write_image_with_sidecar(
        out("dseg", ".nii.gz", space=space, seg="csvd"),
        quantities.dseg,
        {
            "Sources": list(uris.values()),
            "SpatialReference": spatial_reference,
            "Manual": False,
            "Description": "All lesion masks in one label map (lookup: seg-csvd_dseg.tsv at the "
            f"dataset root); where masks overlap, the later of {', '.join(dseg_priority())} wins.",
            # absent from the map because not assessed (never because none was found)
            "NotAssessed": not_assessed,
        },
    )

    lesions_path = out("stats", ".tsv", desc="lesions")
    lesions = pd.read_csv(quantities.lesions, sep="\t", nrows=0)
    ds.copy_file(Path(quantities.lesions), lesions_path)
    ds.write_json(
        lesions_path.with_suffix(".json"), {c: describe_lesion_column(c) for c in lesions.columns}
    )
    summary_path = out("stats", ".tsv", desc="summary")
    columns = pd.read_csv(quantities.summary, sep="\t", nrows=0).columns
    ds.write_json(
        summary_path.with_suffix(".json"), {c: describe_summary_column(c) for c in columns}
    )
    ds.copy_file(Path(quantities.summary), summary_path)  # last: marks a finished session
    return summary_path


def _exclusions(excluded: dict[str, str], uris: dict[str, str]) -> dict[str, str]:
    """Label -> what became of that marker's lesions: left out (as the written mask, or as
    found by a node run only for this marker) or why not."""
    described = {}
    for key, why in excluded.items():
        if why == LEFT_OUT:
            why = (
                f"left out, as {uris[key]}"
                if key in uris
                else (
                    "left out, as found by its own node (not written: not selected with --markers)"
                )
            )
        described[BY_KEY[key].label] = why
    return described


def _write_anatomy(
    anatomy: SessionAnatomy,
    out,
    space: str,
    spatial_reference: str,
    reference_source: str,
    xfm: Path,
    output_dir: Path,
) -> None:
    """Tissue probabilities, the region map and its volumes."""
    common = {
        "Sources": [reference_source],
        "SpatialReference": spatial_reference,
        "Manual": False,
    }
    for label, path in anatomy.tissues.items():
        _write_image_with_sidecar(
            out("probseg", ".nii.gz", space=space, label=label),
            path,
            {
                **common,
                "Method": "Gaussian mixture of the reference intensities with the template "
                "tissue priors as per-voxel weights (csvd_bids.preproc.tissues)",
            },
        )
    _write_image_with_sidecar(
        out("dseg", ".nii.gz", space=space, seg="regions"),
        anatomy.regions,
        {
            **common,
            "Description": "Brain regions (lookup: seg-regions_dseg.tsv at the dataset root; "
            "rules: csvd_bids.preproc.regions)",
            "Atlas": ATLAS_CITATION,
            "Transform": ds.local_uri(output_dir, xfm),
        },
    )
    region_mm3 = anatomy.volumes["regions"]
    volumes = pd.DataFrame(
        [
            {"index": index, "region": name, "volume_mm3": round(region_mm3[name], 1)}
            for index, name in REGION_LABELS.items()
        ]
    )
    stats = out("stats", ".tsv", desc="regions")
    ds.write_tsv(stats, volumes)
    ds.write_json(
        stats.with_suffix(".json"),
        {
            "index": {"Description": "Label in the seg-regions dseg"},
            "region": {"Description": "Region name (see seg-regions_dseg.tsv)"},
            "volume_mm3": {"Description": "Volume of the region", "Units": "mm^3"},
        },
    )


def _write_dwi(
    dwi: dict,
    folder: Path,
    base: dict,
    space: str,
    spatial_reference: str,
    sources: dict[str, str],
    output_dir: Path,
    same_subject: dict,
) -> None:
    """b0, trace and ADC on the reference grid, and the DWI -> reference transform, in the
    session's ``dwi/`` folder."""
    report = dwi["report"]
    xfm = folder / ds.bids_name(base, f"from-dwi_to-{space}_mode-image_xfm", ".txt")
    ds.copy_file(Path(report["TransformFile"]), xfm)
    registration = {**report["Registration"], "Transform": ds.local_uri(output_dir, xfm)}
    if "dwi" in same_subject:
        registration["SameSubjectCheck"] = same_subject["dwi"]
    common = {"Sources": [sources["dwi"]], "SpatialReference": spatial_reference}
    described = {
        "b0": {"Description": report["B0Definition"]},
        "trace": {"Description": report["TraceDefinition"], "BValue": report["BValue"]},
        "adc": {"Description": report["ADCDefinition"], "Units": report["ADCUnits"]},
    }
    for desc, extra in described.items():
        _write_image_with_sidecar(
            folder / ds.bids_name({**base, "space": space, "desc": desc}, "dwi", ".nii.gz"),
            dwi[desc],
            {**common, **extra, "Registration": registration},
        )


def _write_image_with_sidecar(path: Path, src: str | Path, sidecar: dict) -> None:
    ds.publish_nifti(src, path)
    ds.write_json(path.with_name(path.name.replace(".nii.gz", ".json")), sidecar)
