"""Write one session's BIDS-Derivatives outputs from the graph's intermediate files.

Called by the last node of a session's graph, so a session's outputs appear only when all of its
processing succeeded. Each file is written atomically (see csvd_bids.bids.derivatives).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk

from csvd_bids.bids import derivatives as ds
from csvd_bids.bids.discovery import SUFFIXES
from csvd_bids.labels import BY_LABEL, DSEG_PRIORITY
from csvd_bids.markers import REGISTRY
from csvd_bids.planning import plan_prefix
from csvd_bids.preproc.atlas import ATLAS_CITATION
from csvd_bids.preproc.images import voxel_volume_mm3
from csvd_bids.preproc.regions import REGION_INDEX, REGION_LABELS
from csvd_bids.preproc.template import TEMPLATE_NAME, load_template
from csvd_bids.quant.qc import (
    brain_coverage,
    coverage_warnings,
    reference_coverage,
    same_subject_warnings,
)
from csvd_bids.quant.ratings import rate_session
from csvd_bids.quant.summary import describe_lesion_column, describe_summary_column, summary_row


@dataclass(frozen=True)
class SessionAnatomy:
    """The preprocessing results of a session other than the images (files from the graph)."""

    brain_mask: str
    brain_report: dict  # Method, Warning, IntracranialVolume_mm3
    transform: str  # composite ITK transform (HDF5): reference points -> template points
    affine: str  # its affine part (ITK text)
    tissues: dict[str, str]  # GM/WM/CSF -> posterior probability image
    regions: str  # REGION_LABELS map
    volumes: dict  # intracranial, csf, gm, wm and regions (mm3)
    same_subject: dict  # image suffix (FLAIR, dwi...) -> preproc.identity result


def _source_entities(path: str) -> dict[str, str]:
    """acq- of an input file (e.g. acq-swi), kept in the names of images derived from it."""
    for part in Path(path).name.split("_"):
        if part.startswith("acq-"):
            return {"acq": part[4:]}
    return {}


def write_session_outputs(
    plan: dict,
    output_dir: Path,
    bids_dir: Path,
    preproc: dict[str, str],
    reports: dict[str, dict],
    anatomy: SessionAnatomy,
    dwi: dict | None,
    detections: dict[str, dict[str, str]],
    figures: tuple[str, ...] | list[str] = (),
) -> Path:
    """Write every output of one session and return the path of its summary TSV.

    ``plan``: the session plan (subject, session, reference, files, markers) made at discovery.
    ``preproc``: modality -> preprocessed image on the reference grid.
    ``reports``: modality -> how it reached that grid (coregistration metrics, transform file).
    ``anatomy``: brain mask, template transforms, tissues, regions and volumes.
    ``dwi``: b0, trace, adc files on the reference grid and their report, or None.
    ``detections``: marker key -> {"score", "mask", "lesions"} files from the detector nodes.
    ``figures``: QC PNGs named ``<desc>_<suffix>.png``, saved as
    ``sub-<label>/figures/<session prefix>_<desc>_<suffix>.png`` (as fMRIPrep does).
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
    brain = nib.load(anatomy.brain_mask)
    brain_voxels = np.asanyarray(brain.dataobj) > 0
    brain_volume = float(brain_voxels.sum()) * voxel_volume_mm3(brain)
    coverages = _brain_coverages(plan, preproc, brain_voxels, brain_volume, anatomy.affine)
    for modality, path in preproc.items():
        entities = {**_source_entities(plan["files"][modality]), "space": space, "desc": "preproc"}
        target = out(SUFFIXES[modality], ".nii.gz", **entities)
        ds.copy_file(Path(path), target)
        sidecar = {
            "Sources": [sources[modality]],
            "SkullStripped": False,
            "BrainCoverage": round(coverages[SUFFIXES[modality]], 4),
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

    for figure in figures:
        ds.copy_file(
            Path(figure),
            output_dir / f"sub-{subject}" / "figures" / f"{plan_prefix(plan)}_{Path(figure).name}",
        )

    _write_image_with_sidecar(
        out("mask", ".nii.gz", space=space, desc="brain"),
        brain,
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
    ds.copy_file(Path(anatomy.transform), xfm)
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

    tables, masks = {}, {}
    for key, files in detections.items():
        spec = REGISTRY[key]
        label = spec.label.label
        inputs = [sources[m] for m in spec.modalities(plan["files"])]
        common = {
            "Sources": inputs,
            "SpatialReference": spatial_reference,
            "Manual": False,
            # a model bundle's description when one replaced the detector
            "Method": plan["markers"][key].get("method", spec.method),
        }
        _write_image_with_sidecar(
            out("probseg", ".nii.gz", space=space, label=label),
            nib.load(files["score"]),
            {
                **common,
                "Description": f"{spec.label.name} lesion belief "
                "in [0, 1] (not a calibrated probability)",
            },
        )
        mask_img = nib.load(files["mask"])
        masks[label] = np.asanyarray(mask_img.dataobj) > 0
        _write_image_with_sidecar(
            out("mask", ".nii.gz", space=space, label=label), mask_img, {**common, "Type": "Lesion"}
        )
        tables[label] = pd.read_csv(
            files["lesions"], sep="\t", na_values=["n/a"], keep_default_na=False
        )

    dseg = np.zeros(brain.shape[:3], dtype=np.uint8)
    for label in DSEG_PRIORITY:
        if label in masks:
            dseg[masks[label]] = BY_LABEL[label].index
    dseg_path = out("dseg", ".nii.gz", space=space, seg="csvd")
    _write_image_with_sidecar(
        dseg_path,
        nib.Nifti1Image(dseg, brain.affine),
        {
            "Sources": [
                ds.local_uri(output_dir, out("mask", ".nii.gz", space=space, label=label))
                for label in masks
            ],
            "SpatialReference": spatial_reference,
            "Manual": False,
            "Description": "All lesion masks in one label map (lookup: seg-csvd_dseg.tsv at the "
            f"dataset root); where masks overlap, the later of {', '.join(DSEG_PRIORITY)} wins.",
        },
    )

    lesions = pd.concat(tables.values(), ignore_index=True) if tables else pd.DataFrame()
    if not lesions.empty:
        lesions["lesion_id"] = np.arange(1, len(lesions) + 1)
    lesions_path = out("stats", ".tsv", desc="lesions")
    ds.write_tsv(lesions_path, lesions)
    ds.write_json(
        lesions_path.with_suffix(".json"), {c: describe_lesion_column(c) for c in lesions.columns}
    )

    warnings = coverage_warnings(coverages) + same_subject_warnings(anatomy.same_subject)
    if anatomy.brain_report.get("Warning"):
        warnings.append(f"brain extraction: {anatomy.brain_report['Warning']}")
    warnings += [f"{modality} {why}" for modality, why in plan.get("unusable", {}).items()]
    ratings = rate_session(
        masks,
        tables,
        np.asanyarray(nib.load(anatomy.regions).dataobj) == REGION_INDEX["lateral_ventricles"],
        brain_voxels,
        brain.header.get_zooms()[:3],
        anatomy.volumes["intracranial"],
    )
    row = summary_row(plan, lesions, anatomy.volumes, sources, warnings, ratings)
    summary = pd.DataFrame([row])
    summary_path = out("stats", ".tsv", desc="summary")
    ds.write_json(
        summary_path.with_suffix(".json"), {c: describe_summary_column(c) for c in summary.columns}
    )
    ds.write_tsv(summary_path, summary)  # last: its presence marks a finished session
    return summary_path


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
            nib.load(path),
            {
                **common,
                "Method": "Gaussian mixture of the reference intensities with the template "
                "tissue priors as per-voxel weights (csvd_bids.preproc.tissues)",
            },
        )
    _write_image_with_sidecar(
        out("dseg", ".nii.gz", space=space, seg="regions"),
        nib.load(anatomy.regions),
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
            nib.load(dwi[desc]),
            {**common, **extra, "Registration": registration},
        )


def _brain_coverages(
    plan: dict, preproc: dict[str, str], brain: np.ndarray, brain_volume_mm3: float, transform: str
) -> dict[str, float]:
    """Suffix -> fraction of the brain inside that image's field of view (csvd_bids.quant.qc)."""
    coverages = {
        SUFFIXES[m]: brain_coverage(np.asanyarray(nib.load(f).dataobj), brain)
        for m, f in preproc.items()
    }
    template = load_template().priors["brain"]
    template_mm3 = float(np.asanyarray(template.dataobj).sum()) * voxel_volume_mm3(template)
    linear = np.array(sitk.ReadTransform(transform).GetParameters()[:9]).reshape(3, 3)
    reference = SUFFIXES[plan["reference"]]
    coverages[reference] = min(
        coverages[reference], reference_coverage(brain_volume_mm3, template_mm3, linear)
    )
    return coverages


def _write_image_with_sidecar(path: Path, img: nib.Nifti1Image, sidecar: dict) -> None:
    ds.write_nifti(path, img)
    ds.write_json(path.with_name(path.name.replace(".nii.gz", ".json")), sidecar)
