"""The lesion and morphology toolkit every detector shares: each rule once, on tiny arrays."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from csvd_bids.morphology import (
    CONNECTIVITY,
    FACES,
    SPREAD_FLOOR,
    bounding_box,
    keep_mostly_within,
    keep_seeded,
    label_lesions,
    majority_label,
    max_diameter_mm,
    mode_stats,
    paint_majority,
    remove_small_lesions,
    robust_stats,
    smooth_mm,
)

SHAPE = (10, 10, 10)


def _mask(*voxels) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    for voxel in voxels:
        mask[voxel] = True
    return mask


def test_connectivity_is_26_unless_faces_are_asked_for():
    assert CONNECTIVITY.sum() == 27 and FACES.sum() == 7
    corner = _mask((2, 2, 2), (3, 3, 3))
    edge = _mask((6, 6, 2), (7, 7, 2))
    assert label_lesions(corner)[1] == 1 and label_lesions(edge)[1] == 1
    assert label_lesions(corner, FACES)[1] == 2 and label_lesions(edge, FACES)[1] == 2
    labels, n = label_lesions(np.zeros(SHAPE, bool))
    assert n == 0 and isinstance(n, int) and not labels.any()


def test_remove_small_lesions_counts_26_connected_volume():
    mask = _mask((1, 1, 1), (2, 2, 2), (7, 7, 7))  # a corner-connected pair and a single voxel
    kept = remove_small_lesions(mask, 2.0, 4.0)  # the pair is 4 mm3: the limit itself is kept
    assert kept.dtype == bool
    assert kept[1, 1, 1] and kept[2, 2, 2] and not kept[7, 7, 7]
    empty = remove_small_lesions(np.zeros(SHAPE, np.uint8), 1.0, 1.0)
    assert empty.dtype == bool and not empty.any()


def test_max_diameter_is_the_span_plus_one_voxel_edge():
    assert max_diameter_mm(np.array([[3.0, 4.0, 5.0]]), 1.5) == 1.5  # one voxel: one edge
    assert max_diameter_mm(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]), 1.0) == 6.0
    # many points (the convex hull shortcut) give the brute-force span
    points = np.array(list(itertools.product(range(4), range(3), range(5))), dtype=float)
    points *= (1.0, 1.0, 3.0)
    span = max(math.dist(a, b) for a, b in itertools.combinations(points, 2))
    assert max_diameter_mm(points, 5.0 / 3.0) == pytest.approx(span + 5.0 / 3.0)
    # coplanar points (a degenerate hull) still work
    flat = points[points[:, 2] == 0]
    assert max_diameter_mm(flat, 1.0) == pytest.approx(math.hypot(3.0, 2.0) + 1.0)


def test_robust_stats_is_median_and_normal_scaled_mad():
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0])  # the outlier does not matter
    median, spread = robust_stats(values)
    assert median == 3.0
    assert spread == pytest.approx(1.4826 * 1.0, rel=1e-4)
    rng = np.random.default_rng(0)
    sample = rng.normal(10.0, 2.0, 200_000).astype(np.float32)
    median, spread = robust_stats(sample)
    assert median == pytest.approx(10.0, abs=0.02) and spread == pytest.approx(2.0, rel=0.01)
    assert isinstance(median, float) and isinstance(spread, float)


def test_mode_stats_finds_the_normal_level_under_a_majority_of_brighter_values():
    """Confluent WMH: 70 % of the white matter is lesion (brighter, broader); the median and
    MAD follow the lesions, the mode and the spread below it stay with the normal tissue."""
    rng = np.random.default_rng(1)
    normal = rng.normal(500.0, 10.0, 30_000)
    lesions = rng.normal(720.0, 40.0, 70_000)
    values = np.concatenate([normal, lesions])
    assert robust_stats(values)[0] > 600.0  # what the median-based reference did
    level, spread = mode_stats(values)
    assert level == pytest.approx(500.0, abs=5.0)
    assert spread == pytest.approx(10.0, rel=0.15)  # the lesions above do not widen it
    flat = np.full(100, 7.0)  # no histogram: the robust statistics and their floor
    assert mode_stats(flat) == robust_stats(flat)


@pytest.mark.parametrize(("level", "floor"), [(0.0, 1.0), (0.5, 1.0), (-250.0, 250.0)])
def test_robust_spread_has_one_floor_relative_to_the_median(level, floor):
    """A flat image has no spread: the floor is SPREAD_FLOOR x max(|median|, 1), the same
    in every detector (no division by zero, no dependence on the intensity unit)."""
    median, spread = robust_stats(np.full(50, level, dtype=np.float32))
    assert median == level
    assert spread == pytest.approx(SPREAD_FLOOR * floor)
    assert SPREAD_FLOOR == 1e-6


def test_keep_seeded_keeps_whole_26_connected_components_holding_a_seed():
    mask = _mask((1, 1, 1), (2, 2, 2), (3, 2, 2), (7, 7, 7), (8, 8, 8))
    seeds = _mask((1, 1, 1), (5, 5, 5))  # the second seed lies outside the mask
    kept = keep_seeded(mask, seeds)
    assert kept.dtype == bool
    np.testing.assert_array_equal(kept, _mask((1, 1, 1), (2, 2, 2), (3, 2, 2)))
    # with face connectivity the corner neighbour (2, 2, 2) is another component
    np.testing.assert_array_equal(keep_seeded(mask, seeds, FACES), _mask((1, 1, 1)))
    assert not keep_seeded(mask, np.zeros(SHAPE, bool)).any()
    assert not keep_seeded(np.zeros(SHAPE, bool), seeds).any()


def test_keep_mostly_within_keeps_components_with_at_least_the_share_inside():
    mask = np.zeros((12, 4, 4), bool)
    mask[0:4, 1, 1] = True  # 2 of 4 voxels inside: exactly half, kept
    mask[6:11, 1, 1] = True  # 2 of 5 inside: dropped
    region = np.zeros_like(mask)
    region[0:2], region[6:8] = True, True
    kept = keep_mostly_within(mask, region)
    assert kept.dtype == bool
    np.testing.assert_array_equal(kept[0:4], mask[0:4])
    assert not kept[6:].any()
    assert keep_mostly_within(mask, region, share=0.4).sum() == 9
    assert not keep_mostly_within(np.zeros_like(mask), region).any()


def test_bounding_box_with_margin_clipped_and_none_when_empty():
    assert bounding_box(np.zeros(SHAPE, bool)) is None
    assert bounding_box(np.zeros(SHAPE, bool), 3) is None
    mask = _mask((1, 4, 8), (2, 5, 8))
    assert bounding_box(mask) == (slice(1, 3), slice(4, 6), slice(8, 9))
    assert bounding_box(mask, 2) == (slice(0, 5), slice(2, 8), slice(6, 10))
    assert bounding_box(mask, (0, 1, 0)) == (slice(1, 3), slice(3, 7), slice(8, 9))
    assert bounding_box(mask.astype(np.float32), 0) == bounding_box(mask)


def test_smoothing_sigma_is_in_mm():
    image = np.zeros(SHAPE, np.float32)
    image[5, 5, 5] = 1.0
    assert smooth_mm(image, 0.0, (1.0, 1.0, 2.0)) is image
    smoothed = smooth_mm(image, 2.0, (1.0, 1.0, 2.0))
    np.testing.assert_allclose(smoothed, ndimage.gaussian_filter(image, [2.0, 2.0, 1.0]))


def test_majority_label_ties_go_to_the_lowest_code_and_zero_means_none():
    labels = np.array([0, 1, 1, 1, 2, 2, 3, 3, 3, 5])
    codes = np.array([9, 4, 4, 2, 3, 1, 0, 0, 0, 7])
    majority = majority_label(labels, codes, 5)
    # lesion 1: 4 twice; lesion 2: tie 3/1 -> 1; lesion 3: only 0 -> none; 4: absent; 5: 7
    np.testing.assert_array_equal(majority, [0, 4, 1, 0, 0, 7])
    np.testing.assert_array_equal(majority_label(labels, codes), majority)
    assert majority_label(np.zeros(4, int), np.ones(4, int), 0).tolist() == [0]


def test_paint_majority_paints_lesions_and_keeps_the_rest():
    mask = _mask((1, 1, 1), (2, 2, 2), (7, 7, 7))
    codes = np.zeros(SHAPE, np.uint8)
    codes[1, 1, 1], codes[2, 2, 2], codes[3, 3, 3] = 2, 2, 5
    codes[1, 1, 2] = 4  # a labelled voxel outside every lesion stays as it is
    painted = paint_majority(mask, codes, default=6)
    assert painted.dtype == np.uint8
    assert painted[1, 1, 1] == painted[2, 2, 2] == 2
    assert painted[7, 7, 7] == 6  # no code inside the lesion: the default
    assert painted[3, 3, 3] == 5 and painted[1, 1, 2] == 4
    assert paint_majority(mask, codes, 6, FACES)[2, 2, 2] == 2
    assert (paint_majority(np.zeros(SHAPE, bool), codes) == codes).all()
