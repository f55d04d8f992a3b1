"""The per-lesion table.

Lesions are 3D connected components and diameters are measured as everywhere in the pipeline
(``csvd_bids.morphology``: 26-connectivity; maximum diameter = the largest distance between
two voxel centres plus the mean voxel edge).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from csvd_bids.morphology import label_lesions, max_diameter_mm
from csvd_bids.preproc.atlas import LOBES
from csvd_bids.preproc.regions import REGION_LABELS

# lobe name -> lobe number, and region index -> lobe number for the cortex and juxtacortical
# WM of each lobe (the region names end with the lobe); 0: not lobar
_LOBE_NAMES = ("n/a", *LOBES.values())
_LOBE_OF_REGION = np.zeros(max(REGION_LABELS) + 1, dtype=np.intp)
for _index, _name in REGION_LABELS.items():
    if _name.startswith(("cortex_", "juxtacortical_wm_")):
        _LOBE_OF_REGION[_index] = _LOBE_NAMES.index(_name.rsplit("_", 1)[1])
LESION_COLUMNS = [
    "lesion_id",
    "marker",
    "region",
    "lobe",
    "volume_mm3",
    "max_diameter_mm",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "n_voxels",
]


def lobe_of(regions_of_voxels: np.ndarray) -> str:
    """The lobe most of a lesion's lobar voxels (cortex or juxtacortical WM) lie in; ties go
    to the lobe listed first in LOBES; "n/a" when none is lobar. ``regions_of_voxels``: the
    REGION_LABELS indices of the lesion's voxels."""
    lobes = _LOBE_OF_REGION[regions_of_voxels.astype(np.intp)]
    counts = np.bincount(lobes[lobes > 0], minlength=len(_LOBE_NAMES))
    return _LOBE_NAMES[int(np.argmax(counts))] if counts.any() else "n/a"


def lesion_table(
    mask: np.ndarray,
    affine: np.ndarray,
    marker: str,
    regions: np.ndarray | None = None,
    region_names: dict[int, str] | None = None,
    intensities: dict[str, np.ndarray] | None = None,
    anatomy: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per lesion: LESION_COLUMNS, then ``mean_<modality>`` per intensity image.

    ``regions`` / ``region_names``: the marker's own location classes (first touched wins);
    ``anatomy``: the session's REGION_LABELS map, which gives the lobe column."""
    labels, n = label_lesions(mask)
    intensities = intensities or {}
    columns = LESION_COLUMNS + [f"mean_{name}" for name in intensities]
    if n == 0:
        return pd.DataFrame(columns=columns)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    voxel_edge = float(np.mean(np.linalg.norm(affine[:3, :3], axis=0)))
    rows = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        local = labels[box] == index
        ijk = np.argwhere(local) + np.array([s.start for s in box])
        xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
        region = "n/a"
        if regions is not None and region_names:
            touched = np.unique(regions[box][local])
            touched = touched[touched > 0]
            region = region_names.get(int(touched.min()), "n/a") if touched.size else "n/a"
        centroid = xyz.mean(axis=0)
        row = {
            "lesion_id": index,
            "marker": marker,
            "region": region,
            "lobe": lobe_of(anatomy[box][local]) if anatomy is not None else "n/a",
            "volume_mm3": round(len(ijk) * voxel_mm3, 3),
            "max_diameter_mm": round(max_diameter_mm(xyz, voxel_edge), 3),
            "centroid_x_mm": round(float(centroid[0]), 2),
            "centroid_y_mm": round(float(centroid[1]), 2),
            "centroid_z_mm": round(float(centroid[2]), 2),
            "n_voxels": len(ijk),
        }
        for name, image in intensities.items():
            row[f"mean_{name}"] = round(float(image[box][local].mean()), 4)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
