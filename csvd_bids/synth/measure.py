"""Lesion measurements on a voxel grid, shared by the planting checks and the truth tables.

A lesion is a 26-connected component. Its maximum diameter is the largest distance between
two of its voxel centres plus one voxel, so that a single voxel measures one voxel width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .. import morphology
from ..morphology import CONNECTIVITY, label_lesions

# The pipeline's own definitions, so that the truth and the outputs measure lesions alike.
label_components = label_lesions
__all__ = [
    "CONNECTIVITY",
    "ComponentStats",
    "component_stats",
    "label_components",
    "max_diameter_mm",
]


@dataclass(frozen=True)
class ComponentStats:
    label: int
    n_voxels: int
    volume_mm3: float
    max_diameter_mm: float
    centroid_mm: tuple[float, float, float]
    box: tuple[slice, ...]  # bounding box of the component in the label volume


def max_diameter_mm(ijk: np.ndarray, voxel_mm: float) -> float:
    """Largest centre-to-centre distance among voxels ``ijk`` (n, 3), plus one voxel."""
    return morphology.max_diameter_mm(np.asarray(ijk, dtype=float) * voxel_mm, voxel_mm)


def component_stats(labels: np.ndarray, n: int, affine: np.ndarray) -> list[ComponentStats]:
    """Size, extent and world centroid of components ``1..n`` on an axis-aligned grid (thick
    slices allowed: the extra voxel of the diameter is then the mean voxel edge, as in the
    pipeline's lesion tables)."""
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    isotropic = bool((zooms == zooms[0]).all())
    edge = float(zooms[0]) if isotropic else float(zooms.mean())
    voxel_mm3 = edge**3 if isotropic else float(np.prod(zooms))
    stats = []
    for label, box in enumerate(ndi.find_objects(labels, n), start=1):
        if box is None:
            continue
        local = np.argwhere(labels[box] == label) + [s.start for s in box]
        centroid = affine[:3, :3] @ local.mean(axis=0) + affine[:3, 3]
        stats.append(
            ComponentStats(
                label=label,
                n_voxels=len(local),
                volume_mm3=len(local) * voxel_mm3,
                max_diameter_mm=morphology.max_diameter_mm(local * zooms, edge),
                centroid_mm=tuple(float(c) for c in centroid),
                box=box,
            )
        )
    return stats
