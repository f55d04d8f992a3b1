"""The STRIVE size rules keep and drop lesions by the documented measures."""

from __future__ import annotations

import numpy as np

from csvd_bids.markers.size_rules import SIZE_RULES, apply_size_rule, lesion_size_mm
from csvd_bids.morphology import label_lesions


def _ball(shape, centre, radius_vox) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius_vox**2


def test_cmb_diameter_bounds():
    mask = np.zeros((60, 60, 60), bool)
    mask[5, 5, 5] = True  # 1 mm: too small
    mask[10:12, 10, 10] = True  # 2 mm: kept
    mask |= _ball(mask.shape, (30, 30, 30), 3)  # 7 mm: kept
    mask |= _ball(mask.shape, (45, 45, 45), 7)  # 15 mm: too large
    kept = apply_size_rule(mask, np.eye(4), "cmb")
    assert label_lesions(kept)[1] == 2
    assert kept[10, 10, 10] and kept[30, 30, 30] and not kept[5, 5, 5] and not kept[45, 45, 45]


def test_cmb_diameter_is_measured_in_the_axial_plane():
    """Blooming along B0 and thick slices stretch a microbleed through the slices: 4 mm across
    and 12 mm tall is a microbleed; 11 mm across in one slice is not."""
    mask = np.zeros((40, 40, 40), bool)
    mask[8:12, 8:12, 4:16] = True  # 4 mm in plane, 12 mm through the slices: kept
    mask[25:36, 25, 20] = True  # 11 mm in plane: dropped
    assert lesion_size_mm(mask[8:12, 8:12, 4:16], np.eye(4), "diameter") > 10.0
    kept = apply_size_rule(mask, np.eye(4), "cmb")
    assert kept[10, 10, 10] and not kept[30, 25, 20]


def test_pvs_width_not_length():
    mask = np.zeros((40, 40, 60), bool)
    mask[10, 10, 5:55] = True  # a 50 mm long, 1 mm wide tube: a PVS
    mask |= _ball(mask.shape, (30, 30, 30), 3)  # a 7 mm blob: lacune-like, not a PVS
    kept = apply_size_rule(mask, np.eye(4), "pvs")
    assert kept[10, 10, 30] and not kept[30, 30, 30]


def test_rssi_axial_diameter_and_anisotropic_voxels():
    affine = np.diag([1.0, 1.0, 5.0, 1.0])  # 5 mm slices
    mask = np.zeros((60, 60, 10), bool)
    mask[5:24, 5:8, 2:8] = True  # 19 mm in plane, 30 mm through the slices: kept
    mask[30:55, 30:33, 4] = True  # 25 mm in plane: dropped
    assert lesion_size_mm(mask[5:24, 5:8, 2:8], affine, "axial_diameter") < 20.0
    kept = apply_size_rule(mask, affine, "rssi")
    assert kept[10, 6, 4] and not kept[40, 31, 4]


def test_every_marker_but_wmh_has_a_rule():
    assert set(SIZE_RULES) == {"cmb", "pvs", "lacunes", "rssi"}
