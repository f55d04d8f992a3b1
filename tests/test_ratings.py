"""Rating estimates and total scores: each rule on masks drawn to sit clearly in one grade."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from csvd_bids.preproc.regions import REGION_INDEX
from csvd_bids.quant.lesions import lesion_table
from csvd_bids.quant.ratings import (
    fazekas_deep,
    fazekas_periventricular,
    max_slice_count,
    pvs_grade,
    rate_session,
)
from csvd_bids.quant.scores import CSS_NOT_ASSESSED, compute_scores

SHAPE = (60, 60, 40)
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def _ventricles() -> np.ndarray:
    v = np.zeros(SHAPE, dtype=bool)
    v[27:33, 15:45, 15:25] = True
    return v


@pytest.mark.parametrize(("thickness", "grade"), [(0, 0), (2, 1), (4, 1), (8, 2), (15, 3)])
def test_fazekas_pv_follows_the_extent_from_the_ventricles(thickness, grade):
    lining = np.zeros(SHAPE, dtype=bool)
    lining[33 : 33 + thickness, 15:45, 15:25] = True
    assert fazekas_periventricular(lining, _ventricles(), (1.0, 1.0, 1.0)) == grade


def test_fazekas_pv_measures_in_mm():
    lining = np.zeros(SHAPE, dtype=bool)
    lining[33:37, 15:45, 15:25] = True  # 4 voxels: 4 mm at 1 mm, 12 mm at 3 mm
    assert fazekas_periventricular(lining, _ventricles(), (1.0, 1.0, 1.0)) == 1
    assert fazekas_periventricular(lining, _ventricles(), (3.0, 3.0, 3.0)) == 3


def test_one_stray_voxel_does_not_make_grade_3():
    lining = np.zeros(SHAPE, dtype=bool)
    lining[33:36, 15:45, 15:25] = True
    lining[50, 30, 20] = True  # 17 mm away, one voxel of 900
    assert fazekas_periventricular(lining, _ventricles(), (1.0, 1.0, 1.0)) == 1


def test_fazekas_deep_and_pvs_grade_boundaries():
    assert [fazekas_deep(d) for d in ([], [3.0, 9.9], [10.0], [19.9], [20.0])] == [0, 1, 2, 2, 3]
    counts = [0, 1, 10, 11, 20, 21, 40, 41]
    assert [pvs_grade(c) for c in counts] == [0, 1, 1, 2, 2, 3, 3, 4]


def _tubes(n_left: int, n_right: int, z: int = 20) -> np.ndarray:
    """Vertical 3-voxel tubes on one slice range, spaced two voxels apart, per hemisphere."""
    labels = np.zeros(SHAPE, dtype=np.int32)
    index = 0
    for side, n in ((range(2, 28), n_left), (range(32, 58), n_right)):
        spots = [(x, y) for x in side[::3] for y in range(2, 58, 3)][:n]
        for x, y in spots:
            index += 1
            labels[x, y, z - 1 : z + 2] = index
    return labels


def test_slice_count_takes_the_fuller_hemisphere():
    labels = _tubes(12, 25)
    ids = np.arange(1, 38)
    assert max_slice_count(labels, ids, midline=30.0) == 25
    assert max_slice_count(labels, ids[:12], midline=30.0) == 12
    assert max_slice_count(labels, [], midline=30.0) == 0


def _regions() -> np.ndarray:
    regions = np.full(SHAPE, REGION_INDEX["deep_wm"], dtype=np.int16)
    regions[_ventricles()] = REGION_INDEX["lateral_ventricles"]
    regions[:, :, 30:] = REGION_INDEX["cortex_frontal"]
    regions[:, 50:, 30:] = REGION_INDEX["cortex_occipital"]
    regions[:, :, :5] = REGION_INDEX["basal_ganglia"]
    return regions


def _table(mask: np.ndarray, marker: str, names: dict[int, str], regions) -> pd.DataFrame:
    return lesion_table(mask, AFFINE, marker, regions, names, anatomy=_regions())


def test_rate_session_on_drawn_lesions():
    wmh = np.zeros(SHAPE, dtype=bool)
    wmh[33:41, 15:45, 15:25] = True  # 8 mm halo: PV grade 2
    wmh[5:20, 5:10, 8:12] = True  # 15 mm deep lesion: deep grade 2
    wmh_regions = np.where(_ventricles() | (wmh & (np.arange(60)[:, None, None] >= 33)), 1, 2)
    wmh_table = _table(wmh, "WMH", {1: "periventricular", 2: "deep"}, wmh_regions)
    cmb = np.zeros(SHAPE, dtype=bool)
    for y in (10, 20, 30):
        cmb[10, y, 35] = True  # frontal
    cmb[10, 55, 35] = True  # occipital
    cmb_table = _table(cmb, "CMB", {1: "lobar"}, np.ones(SHAPE, dtype=np.int16))
    pvs_labels = _tubes(14, 3)
    pvs = pvs_labels > 0
    pvs_table = _table(pvs, "PVS", {1: "BG"}, np.ones(SHAPE, dtype=np.int16))
    ratings = rate_session(
        {"WMH": wmh, "CMB": cmb, "PVS": pvs},
        {"WMH": wmh_table, "CMB": cmb_table, "PVS": pvs_table},
        _ventricles(),
        np.ones(SHAPE, dtype=bool),
        (1.0, 1.0, 1.0),
        icv_mm3=1.0e6,
    )
    assert ratings["fazekas_pv"] == 2 and ratings["fazekas_deep"] == 2
    assert ratings["WMH_icv_fraction"] == pytest.approx(wmh.sum() / 1.0e6, rel=1e-3)
    assert ratings["PVS_BG_max_slice_count"] == 14 and ratings["PVS_BG_grade"] == 2
    assert ratings["PVS_CSO_max_slice_count"] == 0 and ratings["PVS_CSO_grade"] == 0
    assert ratings["CMB_lobar_frontal_count"] == 3 and ratings["CMB_lobar_occipital_count"] == 1
    assert ratings["CMB_lobar_parietal_count"] == 0


def test_rate_session_leaves_unassessed_markers_empty():
    ratings = rate_session({}, {}, _ventricles(), np.ones(SHAPE, bool), (1.0,) * 3, 1.0e6)
    assert all(value is None for value in ratings.values())


ASSESSED = {m: (True, "") for m in ("WMH", "CMB", "PVS", "LAC")}
FIGURES = {
    "LAC_count": 1,
    "LAC_deep_count": 0,
    "CMB_count": 6,
    "CMB_deep_count": 1,
    "CMB_lobar_count": 5,
    "PVS_BG_grade": 2,
    "PVS_CSO_grade": 3,
    "fazekas_pv": 3,
    "fazekas_deep": 1,
}


def test_scores_add_their_terms():
    scores = compute_scores(FIGURES, ASSESSED)
    assert scores["svd_score"] == 4  # lacune, CMB, BG-PVS >= 2, PV Fazekas 3
    assert scores["ha_score"] == 2  # BG-PVS >= 2, deep CMB; deep Fazekas 1, no deep lacune
    assert scores["caa_svd_score_without_css"] == 4  # >= 5 lobar CMB = 2, CSO-PVS, WMH
    assert scores["caa_svd_score"] is None and scores["caa_svd_score_reason"] == CSS_NOT_ASSESSED
    quiet = {k: 0 for k in FIGURES}
    assert compute_scores(quiet, ASSESSED)["svd_score"] == 0


def test_a_missing_marker_makes_the_score_na_with_the_reason():
    statuses = {**ASSESSED, "CMB": (False, "missing modality: swi")}
    scores = compute_scores({k: v for k, v in FIGURES.items() if "CMB" not in k}, statuses)
    assert scores["svd_score"] is None
    assert "CMB not assessed (missing modality: swi)" in scores["svd_score_reason"]
    assert scores["ha_score"] is None and scores["caa_svd_score_without_css"] is None
