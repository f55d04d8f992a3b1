"""Write a session's lenticulostriate-territory outputs: FA and MD (``dwi/``), CBF and M0
(``perf/``, named as ASLPrep names them) on the reference grid, and the table of the
basal-ganglia regions of interest (``anat/..._desc-basalganglia_stats.tsv``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from csvd_bids.bids import derivatives as ds
from csvd_bids.preproc.template import TEMPLATE_NAME
from csvd_bids.quant.basal_ganglia import ROI_SIDECAR
from csvd_bids.quant.roi_patches import PATCH_SIDECAR


@dataclass(frozen=True)
class LSAFiles:
    """The graph's files (None: not made) and the JSON reports read back."""

    table: str
    patches: tuple[str, ...] = ()  # T1w patches named <roi>.nii.gz (roi: putamen_left)
    fa: str | None = None
    md: str | None = None
    dti_report: dict | None = None
    cbf: str | None = None
    m0: str | None = None
    asl_transform: str | None = None
    asl_report: dict | None = None


FA_DESCRIPTION = "Fractional anisotropy of the diffusion tensor"
MD_DESCRIPTION = "Mean diffusivity of the tensor"
# where each map made elsewhere is written: folder, name entities, suffix, description, units
PRECOMPUTED_NAMES = {
    "fa": ({"desc": "fa"}, "dwi", FA_DESCRIPTION, None),
    "md": ({"desc": "md"}, "dwi", MD_DESCRIPTION, "1e-6 mm2/s"),
    "cbf": ({}, "cbf", "Cerebral blood flow", "mL/100 g/min"),
}


def _registered_through(registration: dict | None) -> list[str]:
    return [registration["RegisteredThrough"]] if registration else []


def _how_resampled(registration: dict | None) -> str:
    if not registration:
        return "resampled linearly onto the reference grid by world coordinates"
    return (
        f"in its space-{registration['Space']}, resampled linearly onto the reference grid "
        f"through the rigid registration of {registration['RegisteredThrough']} (that "
        "application's T1w in the same space) to the reference"
    )


def _precomputed(image, folder, base, space, common, files: LSAFiles, given: dict) -> None:
    """The maps another app made, on the reference grid, named as if made here; the sidecar
    says which file each came from (``--derivatives``)."""
    for name, entry in given.items():
        entities, suffix, description, units = PRECOMPUTED_NAMES[name]
        target = folder / ds.bids_name({**base, "space": space, **entities}, suffix, ".nii.gz")
        registration = entry.get("Registration")
        sidecar = {
            **common,
            "Sources": [entry["PrecomputedFrom"], *_registered_through(registration)],
            "Description": f"{description}, made by another application (--derivatives), "
            f"{_how_resampled(registration)}",
            **({"Units": units} if units else {}),
            "ScaleApplied": entry["Scale"],
            **({"Registration": registration} if registration else {}),
        }
        image(target, getattr(files, name), sidecar)


def write_lsa(
    files: LSAFiles,
    out: Callable[..., Path],
    folder: Path,
    base: dict,
    space: str,
    spatial_reference: str,
    sources: dict[str, str],
    output_dir: Path,
) -> None:
    """``out(suffix, extension, **entities)`` names a file of the session's ``anat/``;
    ``folder`` is that ``anat/`` folder (``dwi/`` and ``perf/`` are its siblings)."""

    def image(path: Path, src: str, sidecar: dict) -> None:
        ds.publish_nifti(src, path)
        ds.write_json(path.with_name(path.name.replace(".nii.gz", ".json")), sidecar)

    common = {"SpatialReference": spatial_reference}
    dwi, perf = folder.parent / "dwi", folder.parent / "perf"
    if files.fa and "Precomputed" in (files.dti_report or {}):
        _precomputed(image, dwi, base, space, common, files, files.dti_report["Precomputed"])
    elif files.fa:
        report = files.dti_report or {}
        fitted = {**common, "Sources": [sources["dwi"]], "TensorFit": report}
        for desc, src, extra in (
            ("fa", files.fa, {"Description": FA_DESCRIPTION}),
            ("md", files.md, {"Description": MD_DESCRIPTION, "Units": report["MDUnits"]}),
        ):
            name = ds.bids_name({**base, "space": space, "desc": desc}, "dwi", ".nii.gz")
            image(dwi / name, src, {**fitted, **extra})
    if files.cbf and "Precomputed" in (files.asl_report or {}):
        _precomputed(image, perf, base, space, common, files, files.asl_report["Precomputed"])
    elif files.cbf:
        report = files.asl_report or {}
        xfm = perf / ds.bids_name(base, f"from-asl_to-{space}_mode-image_xfm", ".txt")
        ds.copy_file(Path(files.asl_transform), xfm)
        registration = {**report["Registration"], "Transform": ds.local_uri(output_dir, xfm)}
        asl = {**common, "Sources": [sources["asl"]], "Registration": registration}
        image(
            perf / ds.bids_name({**base, "space": space}, "cbf", ".nii.gz"),
            files.cbf,
            {
                **asl,
                "Description": "Cerebral blood flow, single-compartment model",
                "Units": report["CBFUnits"],
                "Quantification": report["Quantification"],
                "M0Type": report["M0Type"],
                **({"Notes": report["Notes"]} if report["Notes"] else {}),
            },
        )
        image(
            perf / ds.bids_name({**base, "space": space}, "m0scan", ".nii.gz"),
            files.m0,
            {**asl, "Description": "M0 used for CBF (recovery-corrected when TR < 5 s)"},
        )
    for patch in files.patches:
        structure, side = Path(patch).name.removesuffix(".nii.gz").split("_")
        target = out(
            "T1w",
            ".nii.gz",
            hemi=side[0].upper(),
            space=TEMPLATE_NAME,
            label=structure,
            desc="patch",
        )
        image(target, patch, {**PATCH_SIDECAR, "Sources": [sources["t1w"]]})
    table = out("stats", ".tsv", desc="basalganglia")
    ds.copy_file(Path(files.table), table)
    ds.write_json(table.with_suffix(".json"), ROI_SIDECAR)
