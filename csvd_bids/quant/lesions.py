"""Lesions as 3D connected components, and the per-lesion table.

Connectivity is 26 (face, edge and corner neighbours), the usual choice for lesion counting.
Maximum diameter = the largest distance between the centres of two voxels of the lesion plus
the mean voxel edge, so a single voxel measures one voxel across.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from csvd_bids.preproc.atlas import LOBES
from csvd_bids.preproc.regions import REGION_LABELS

CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
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


def label_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labels, n = ndimage.label(mask, structure=CONNECTIVITY)
    return labels, int(n)


def remove_small_lesions(mask: np.ndarray, voxel_mm3: float, min_volume_mm3: float) -> np.ndarray:
    labels, n = label_lesions(mask)
    if n == 0:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())[1:] * voxel_mm3
    keep = np.flatnonzero(sizes >= min_volume_mm3) + 1
    return np.isin(labels, keep)


def max_diameter_mm(points_mm: np.ndarray, voxel_edge_mm: float) -> float:
    if len(points_mm) > 8:
        with contextlib.suppress(QhullError):
            points_mm = points_mm[ConvexHull(points_mm, qhull_options="QJ").vertices]
    span = float(pdist(points_mm).max()) if len(points_mm) > 1 else 0.0
    return span + voxel_edge_mm


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
