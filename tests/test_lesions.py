"""Per-lesion tables on masks with known shapes, on anisotropic, translated and rotated grids."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from csvd_bids.morphology import label_lesions, remove_small_lesions
from csvd_bids.preproc.regions import REGION_INDEX
from csvd_bids.quant.lesions import LESION_COLUMNS, lesion_table

# 1 x 1 x 3 mm voxels, shifted: voxel (i, j, k) has its centre at (i - 10, j + 20, 3k + 5) mm.
AFFINE = np.array(
    [
        [1.0, 0.0, 0.0, -10.0],
        [0.0, 1.0, 0.0, 20.0],
        [0.0, 0.0, 3.0, 5.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
VOXEL_MM3 = 3.0
EDGE_MM = 5.0 / 3.0  # mean voxel edge
SHAPE = (32, 24, 12)


def _mm(i: float, j: float, k: float) -> tuple[float, float, float]:
    return (i - 10.0, j + 20.0, 3.0 * k + 5.0)


def _sphere(mask: np.ndarray, centre: tuple[int, int, int], radius_mm: float) -> None:
    """Every voxel whose centre lies within radius_mm of the centre voxel's centre."""
    i, j, k = np.indices(mask.shape)
    ci, cj, ck = centre
    inside = (i - ci) ** 2 + (j - cj) ** 2 + (3.0 * (k - ck)) ** 2 <= radius_mm**2
    mask[inside] = True


@pytest.fixture
def three_lesions() -> np.ndarray:
    """A single voxel, a 3x3x3-voxel box and a 4 mm sphere, in label (raster) order."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2, 3, 4] = True
    mask[10:13, 10:13, 2:5] = True
    _sphere(mask, (25, 12, 6), 4.0)
    return mask


def _row(table: pd.DataFrame, lesion_id: int) -> pd.Series:
    return table.set_index("lesion_id").loc[lesion_id]


def test_documented_columns():
    assert LESION_COLUMNS == [
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


def test_count_sizes_and_centroids(three_lesions):
    table = lesion_table(three_lesions, AFFINE, "wmh")
    assert list(table.columns) == LESION_COLUMNS
    assert table["lesion_id"].tolist() == [1, 2, 3]
    assert (table["marker"] == "wmh").all()
    assert (table["region"] == "n/a").all()  # no region map given

    single, box, sphere = (_row(table, n) for n in (1, 2, 3))
    # 4 mm sphere on a 1 x 1 x 3 mm grid: 49 voxels in the centre slice, 21 in each of the
    # slices 3 mm above and below (x^2 + y^2 <= 16 - 9).
    assert [single.n_voxels, box.n_voxels, sphere.n_voxels] == [1, 27, 91]
    assert table["volume_mm3"].tolist() == [1 * VOXEL_MM3, 27 * VOXEL_MM3, 91 * VOXEL_MM3]
    assert table["n_voxels"].sum() == three_lesions.sum()

    centroids = table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy()
    np.testing.assert_allclose(centroids[0], _mm(2, 3, 4))
    np.testing.assert_allclose(centroids[1], _mm(11, 11, 3))
    np.testing.assert_allclose(centroids[2], _mm(25, 12, 6))


def test_max_diameter(three_lesions):
    table = lesion_table(three_lesions, AFFINE, "wmh")
    diameters = table["max_diameter_mm"].tolist()
    # single voxel: one mean edge across
    assert diameters[0] == pytest.approx(EDGE_MM, abs=1e-3)
    # box: corner to corner spans 2 x 2 x 6 mm between voxel centres
    assert diameters[1] == pytest.approx(math.sqrt(2**2 + 2**2 + 6**2) + EDGE_MM, abs=1e-3)
    # sphere: two voxel centres 8 mm apart along x
    assert diameters[2] == pytest.approx(8.0 + EDGE_MM, abs=1e-3)


@pytest.mark.parametrize(
    ("voxels", "span_mm"),
    [
        ([(0, 0, k) for k in range(10)], 27.0),  # collinear, along the 3 mm axis
        ([(i, j, 0) for i in range(5) for j in range(5)], math.sqrt(32)),  # flat 5 x 5
    ],
)
def test_max_diameter_of_degenerate_shapes(voxels, span_mm):
    mask = np.zeros(SHAPE, dtype=bool)
    for voxel in voxels:
        mask[tuple(np.array(voxel) + 2)] = True
    (diameter,) = lesion_table(mask, AFFINE, "wmh")["max_diameter_mm"]
    assert diameter == pytest.approx(span_mm + EDGE_MM, abs=1e-3)


def test_rotated_grid():
    """Voxel sizes come from the affine's columns, positions from the whole affine."""
    angle = math.radians(45)
    rotation = np.array(
        [
            [math.cos(angle), -math.sin(angle), 0.0],
            [math.sin(angle), math.cos(angle), 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.0, 2.0, 3.0])
    affine[:3, 3] = [5.0, -5.0, 0.0]
    mask = np.zeros((6, 6, 6), dtype=bool)
    mask[1, 1:3, 2] = True  # two voxels, 2 mm apart along j
    (row,) = lesion_table(mask, affine, "cmb").to_dict("records")
    assert row["volume_mm3"] == pytest.approx(2 * 6.0)
    assert row["max_diameter_mm"] == pytest.approx(2.0 + 2.0, abs=1e-3)  # span + mean edge
    expected = affine[:3, :3] @ np.array([1.0, 1.5, 2.0]) + affine[:3, 3]
    np.testing.assert_allclose(
        [row["centroid_x_mm"], row["centroid_y_mm"], row["centroid_z_mm"]], expected, atol=0.01
    )


def test_26_connectivity():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2, 2, 2] = mask[3, 3, 3] = True  # corner neighbours: one lesion
    mask[10, 10, 2] = mask[11, 11, 2] = True  # edge neighbours: one lesion
    mask[20, 10, 2] = mask[22, 10, 2] = True  # one voxel apart: two lesions
    labels, n = label_lesions(mask)
    assert n == 4
    assert labels[2, 2, 2] == labels[3, 3, 3] and labels[10, 10, 2] == labels[11, 11, 2]
    assert labels[20, 10, 2] != labels[22, 10, 2]
    table = lesion_table(mask, AFFINE, "wmh")
    assert table["n_voxels"].tolist() == [2, 2, 1, 1]
    corner = _row(table, 1)
    assert corner.max_diameter_mm == pytest.approx(math.sqrt(1 + 1 + 9) + EDGE_MM, abs=1e-3)
    np.testing.assert_allclose(
        [corner.centroid_x_mm, corner.centroid_y_mm, corner.centroid_z_mm], _mm(2.5, 2.5, 2.5)
    )


def test_region_is_the_lowest_index_touched(three_lesions):
    regions = np.zeros(SHAPE, dtype=np.int16)
    regions[three_lesions] = 2
    regions[12, 12, 4] = 1  # one voxel of the box is periventricular
    regions[2, 3, 4] = 0  # the single voxel lies outside every region
    names = {1: "periventricular", 2: "deep"}
    table = lesion_table(three_lesions, AFFINE, "wmh", regions=regions, region_names=names)
    assert table["region"].tolist() == ["n/a", "periventricular", "deep"]
    # a region index without a name, or no names at all
    unnamed = lesion_table(three_lesions, AFFINE, "wmh", regions=regions, region_names={2: "deep"})
    assert unnamed["region"].tolist() == ["n/a", "n/a", "deep"]
    assert (lesion_table(three_lesions, AFFINE, "wmh", regions=regions)["region"] == "n/a").all()


def test_lobe_is_where_most_lobar_voxels_lie():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2:6, 2, 2] = True  # 1 frontal cortex, 2 parietal juxtacortical WM, 1 deep WM
    mask[10:12, 10, 2] = True  # 1 frontal, 1 parietal: a tie goes to the first lobe listed
    mask[20, 10, 2] = True  # deep WM only
    anatomy = np.zeros(SHAPE, dtype=np.int16)
    anatomy[2, 2, 2] = anatomy[10, 10, 2] = REGION_INDEX["cortex_frontal"]
    anatomy[3:5, 2, 2] = anatomy[11, 10, 2] = REGION_INDEX["juxtacortical_wm_parietal"]
    anatomy[5, 2, 2] = anatomy[20, 10, 2] = REGION_INDEX["deep_wm"]
    table = lesion_table(mask, AFFINE, "CMB", anatomy=anatomy)
    assert table["lobe"].tolist() == ["parietal", "frontal", "n/a"]
    assert (lesion_table(mask, AFFINE, "CMB")["lobe"] == "n/a").all()  # no region map


def test_mean_intensities(three_lesions):
    flair = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    table = lesion_table(three_lesions, AFFINE, "wmh", intensities={"flair": flair})
    assert list(table.columns) == [*LESION_COLUMNS, "mean_flair"]
    assert table["mean_flair"].tolist() == pytest.approx(
        [
            flair[2, 3, 4],
            flair[10:13, 10:13, 2:5].mean(),
            flair[three_lesions & (np.indices(SHAPE)[0] >= 20)].mean(),
        ],
        abs=1e-3,
    )


def test_empty_mask_gives_an_empty_table():
    empty = np.zeros(SHAPE, dtype=bool)
    table = lesion_table(empty, AFFINE, "wmh")
    assert table.empty and list(table.columns) == LESION_COLUMNS
    with_intensities = lesion_table(empty, AFFINE, "wmh", intensities={"t1w": empty * 1.0})
    assert list(with_intensities.columns) == [*LESION_COLUMNS, "mean_t1w"]
    assert len(with_intensities) == 0


def test_remove_small_lesions():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2, 2, 2] = True  # 1 voxel = 3 mm3
    mask[10, 10, 2] = mask[11, 11, 3] = True  # corner-connected pair = 6 mm3
    mask[20, 5:9, 5] = True  # 4 voxels = 12 mm3
    kept = remove_small_lesions(mask, VOXEL_MM3, 6.0)  # the limit itself is kept
    assert kept.dtype == bool and kept.shape == mask.shape
    assert not kept[2, 2, 2]
    assert kept[10, 10, 2] and kept[11, 11, 3]
    assert kept[20, 5:9, 5].all()
    assert kept.sum() == 6
    assert remove_small_lesions(mask, VOXEL_MM3, 0.0).sum() == mask.sum()
    assert not remove_small_lesions(mask, VOXEL_MM3, 12.1).any()
    assert remove_small_lesions(mask, VOXEL_MM3, 12.0).sum() == 4


def test_remove_small_lesions_on_an_empty_mask():
    empty = np.zeros(SHAPE, dtype=np.uint8)
    kept = remove_small_lesions(empty, VOXEL_MM3, 10.0)
    assert kept.dtype == bool and kept.shape == SHAPE and not kept.any()
