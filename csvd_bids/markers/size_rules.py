"""STRIVE size rules, applied once to every marker's mask as explicit post-processing, after
its detector or model bundle (``apply_size_rule``, called by the nipype marker interface).

All the cut-offs of ../shared/domain.md live here, in one place (STRIVE-1, Wardlaw et al.
2013; STRIVE-2, Duering et al. 2023):

| marker | measure | rule |
|---|---|---|
| CMB | maximum diameter in the axial plane | 2 mm <= d <= 10 mm |
| PVS | cross-sectional width (minor axis) | < 3 mm (length is not limited) |
| lacunes | maximum 3D diameter | 3 mm <= d <= 15 mm |
| RSSI | maximum diameter in the axial plane | <= 20 mm |

CMB: measured in the axial plane, as raters read them on axial SWI: blooming (the lobes of
a microbleed's dipole field, darkened by the SWI phase mask) and 2 mm or thicker slices
stretch a microbleed along B0, through the slices. On the physics engine, a 7 mm microbleed
was found 12 mm tall; a 3D diameter dropped 5 of 46 true microbleeds detected on its seeds
601-607 and no false positive. The reference grid is RAS, so its third axis is axial.

RSSI: STRIVE writes "less than 20 mm" in places and the SPS3 criteria "<= 2.0 cm on MRI
diffusion images" (Int J Stroke); studies since group RSSI as 5-20 mm inclusive, so 20 mm is
kept. The 2 mm lower bound of CMB is applied to a diameter that includes one voxel edge
(csvd_bids.morphology), so a single 1 mm voxel (1 mm) is too small and two (2 mm) pass.
Lesions are 26-connected components, as in the lesion tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import regionprops

from csvd_bids.morphology import label_lesions, max_diameter_mm


@dataclass(frozen=True)
class SizeRule:
    measure: str  # "diameter" (3D), "axial_diameter" or "width" (minor axis)
    minimum_mm: float = 0.0  # inclusive
    maximum_mm: float = np.inf
    maximum_inclusive: bool = True

    def accepts(self, value_mm: float) -> bool:
        if value_mm < self.minimum_mm:
            return False
        if self.maximum_inclusive:
            return value_mm <= self.maximum_mm
        return value_mm < self.maximum_mm


SIZE_RULES: dict[str, SizeRule] = {
    "cmb": SizeRule("axial_diameter", 2.0, 10.0),
    "pvs": SizeRule("width", 0.0, 3.0, maximum_inclusive=False),
    "lacunes": SizeRule("diameter", 3.0, 15.0),
    "rssi": SizeRule("axial_diameter", 0.0, 20.0),
}


def _voxel_mm(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(affine[:3, :3], axis=0)


def lesion_size_mm(component: np.ndarray, affine: np.ndarray, measure: str) -> float:
    """The rule's measure of one lesion (a boolean array, e.g. cropped to its bounding box)."""
    zooms = _voxel_mm(affine)
    edge = float(np.mean(zooms))
    ijk = np.argwhere(component)
    if measure == "diameter":
        return max_diameter_mm(ijk * zooms, edge)
    if measure == "axial_diameter":  # the largest in-plane diameter over the lesion's slices
        return max(
            max_diameter_mm(ijk[ijk[:, 2] == k][:, :2] * zooms[:2], float(np.mean(zooms[:2])))
            for k in np.unique(ijk[:, 2])
        )
    if measure == "width":
        if len(ijk) < 4:  # too few voxels for an inertia tensor: as wide as it is long
            return max_diameter_mm(ijk * zooms, edge)
        props = regionprops(component.astype(np.uint8), spacing=tuple(zooms))[0]
        # The minor axis of the equivalent ellipsoid, plus one voxel (as for the diameters).
        return float(props.axis_minor_length) + float(min(zooms))
    raise ValueError(f"unknown size measure {measure!r}")


def apply_size_rule(mask: np.ndarray, affine: np.ndarray, marker: str) -> np.ndarray:
    """``mask`` without the lesions that break the marker's size rule."""
    rule = SIZE_RULES[marker]
    labels, n = label_lesions(mask)
    keep = np.zeros(n + 1, dtype=bool)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        keep[index] = rule.accepts(lesion_size_mm(labels[box] == index, affine, rule.measure))
    return keep[labels]
