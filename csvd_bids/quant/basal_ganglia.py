"""The lenticulostriate territory: FA, MD and CBF per basal-ganglia region of interest.

The lenticulostriate arteries feed the caudate, putamen and globus pallidus: these three, per
hemisphere, are the regions of interest (the atlas structures warped onto the reference grid,
``preproc.atlas.STRUCTURES``; the accumbens is left out, it is fed mostly by other arteries).
The hemisphere of a voxel is the side of the template's midline it falls on, through the
template registration's affine part (subject points -> template points, ITK LPS: left is
x > 0).

Each row: the region's volume and, for every map that exists, its mean (and SD) over the
region's voxels that the map's acquisition measured (its coverage: inside the field of view
and the brain signal; a 2D ASL slab often misses the vertex). A map that could not be made
(no DWI with enough directions, no ASL), or that measured less than ``MIN_COVERAGE`` of a
region, leaves its columns ``n/a`` and says why in ``<map>_source``: never 0.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk

from csvd_bids.preproc.atlas import STRUCTURES

NA = "n/a"
ROI_STRUCTURES = ("caudate", "putamen", "pallidum")
HEMISPHERES = ("left", "right")
MAPS = ("fa", "md", "cbf")
MIN_COVERAGE = 0.5
ROI_COLUMNS = (
    "roi",
    "structure",
    "hemisphere",
    "n_voxels",
    "volume_mm3",
    *(f"{m}_{s}" for m in MAPS for s in ("mean", "sd")),
    *(f"{m}_source" for m in MAPS),
)
STRUCTURE_LABEL = {name: label for label, name in STRUCTURES.items()}


def hemisphere_left(reference: nib.Nifti1Image, voxels: np.ndarray, affine_file: str) -> np.ndarray:
    """True for each voxel index (n, 3) left of the template's midline."""
    transform = sitk.ReadTransform(str(affine_file))
    ras = reference.affine[:3, :3] @ voxels.T.astype(float) + reference.affine[:3, 3:4]
    lps = ras * np.array([[-1.0], [-1.0], [1.0]])
    x = np.array([transform.TransformPoint(tuple(map(float, p)))[0] for p in lps.T])
    return x > 0.0


def roi_labels(structures: nib.Nifti1Image, affine_file: str) -> dict[str, np.ndarray]:
    """roi name (``putamen_left``) -> bool mask on the reference grid."""
    labels = np.asanyarray(structures.dataobj).astype(np.int16)
    out = {}
    for name in ROI_STRUCTURES:
        mask = labels == STRUCTURE_LABEL[name]
        voxels = np.argwhere(mask)
        left = hemisphere_left(structures, voxels, affine_file) if len(voxels) else np.zeros(0)
        for side, chosen in (("left", left), ("right", ~left.astype(bool))):
            roi = np.zeros(mask.shape, bool)
            roi[tuple(voxels[chosen.astype(bool)].T)] = True
            out[f"{name}_{side}"] = roi
    return out


def roi_table(
    structures: str | Path,
    affine_file: str | Path,
    maps: dict[str, str | None],
    sources: dict[str, str],
    coverage: dict[str, str | None] | None = None,
) -> pd.DataFrame:
    """One row per region of interest (module docstring). ``maps``: map name -> file on the
    reference grid, or None; ``sources``: map name -> where it came from, or why it is
    missing; ``coverage``: map name -> mask of the voxels it measured (None: all)."""
    image = nib.load(structures)
    voxel_mm3 = float(np.prod(image.header.get_zooms()[:3]))
    loaded = {
        name: np.asanyarray(nib.load(path).dataobj, dtype=np.float32)
        for name, path in maps.items()
        if path
    }
    measured = {
        name: np.asanyarray(nib.load(path).dataobj) > 0
        for name, path in (coverage or {}).items()
        if path and name in loaded
    }
    rows = []
    for roi, mask in roi_labels(image, str(affine_file)).items():
        structure, hemisphere = roi.rsplit("_", 1)
        n = int(mask.sum())
        row = {
            "roi": roi,
            "structure": structure,
            "hemisphere": hemisphere,
            "n_voxels": n,
            "volume_mm3": round(n * voxel_mm3, 1),
        }
        for name in MAPS:
            source = sources.get(name, "not assessed")
            values = None
            if name in loaded and n:
                inside = mask & measured[name] if name in measured else mask
                share = inside.sum() / n
                if share >= MIN_COVERAGE:
                    values = loaded[name][inside]
                else:
                    source = f"not assessed: the {name.upper()} map covers {share:.0%} of it"
            digits = 4 if name == "fa" else 2
            row[f"{name}_mean"] = NA if values is None else round(float(values.mean()), digits)
            row[f"{name}_sd"] = NA if values is None else round(float(values.std()), digits)
            row[f"{name}_source"] = source
        rows.append(row)
    return pd.DataFrame(rows, columns=list(ROI_COLUMNS))


ROI_SIDECAR = {
    "roi": {"Description": "Region of interest: atlas structure and hemisphere."},
    "structure": {
        "Description": "Harvard-Oxford structure warped to the subject (caudate, putamen, "
        "pallidum: the lenticulostriate territory)."
    },
    "hemisphere": {"Description": "Side of the template midline (affine registration)."},
    "n_voxels": {"Description": "Voxels of the region on the reference grid."},
    "volume_mm3": {"Description": "Volume of the region.", "Units": "mm^3"},
    "fa_mean": {"Description": "Mean fractional anisotropy (DTI fit) over the region."},
    "fa_sd": {"Description": "Standard deviation of FA over the region."},
    "md_mean": {"Description": "Mean diffusivity (DTI fit).", "Units": "1e-6 mm^2/s"},
    "md_sd": {"Description": "Standard deviation of MD.", "Units": "1e-6 mm^2/s"},
    "cbf_mean": {"Description": "Mean cerebral blood flow (ASL).", "Units": "mL/100 g/min"},
    "cbf_sd": {"Description": "Standard deviation of CBF.", "Units": "mL/100 g/min"},
    "fa_source": {"Description": "Where the FA map came from, or why it is not assessed."},
    "md_source": {"Description": "Where the MD map came from, or why it is not assessed."},
    "cbf_source": {"Description": "Where the CBF map came from, or why it is not assessed."},
}
