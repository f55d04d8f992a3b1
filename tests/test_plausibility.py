"""A WMH mask that contradicts its FLAIR is a warning, never silence: the confluent case where
the lesions are most of the white matter and a relative-to-normal-white-matter method finds
nothing."""

from __future__ import annotations

import numpy as np
import pytest

from csvd_bids.quant import plausibility as p
from csvd_bids.region_sets import CORTEX_REGIONS, DEEP_WM, PERIVENTRICULAR_WM

SHAPE = (40, 40, 40)  # 1 mm voxels: 64 ml


def _brain(lesion_ml: float, lesion_gain: float = 1.4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cortex (FLAIR 100) around white matter (80) holding a lesion block (lesion_gain x 100):
    the FLAIR, the region map and the lesion."""
    rng = np.random.default_rng(0)
    regions = np.full(SHAPE, CORTEX_REGIONS[0], np.uint8)
    regions[5:35, 5:35, 5:35] = DEEP_WM  # 27 ml of white matter
    regions[5:35, 5:35, 5:20] = PERIVENTRICULAR_WM
    flair = np.where(regions == CORTEX_REGIONS[0], 100.0, 80.0)
    lesion = np.zeros(SHAPE, bool)
    depth = int(round(lesion_ml * 1000 / (30 * 30)))
    lesion[5:35, 5:35, 5 : 5 + depth] = True
    flair[lesion] = 100.0 * lesion_gain
    flair *= 1 + 0.03 * rng.standard_normal(SHAPE)
    return flair, regions, lesion


def test_a_mask_that_agrees_with_the_flair_raises_nothing():
    flair, regions, lesion = _brain(lesion_ml=4.5)
    assert p.wmh_plausibility(flair, regions, lesion, 1.0) == []
    # nor does an empty mask on a brain without lesions
    flair, regions, _ = _brain(lesion_ml=0)
    assert p.wmh_plausibility(flair, regions, np.zeros(SHAPE, bool), 1.0) == []


def test_confluent_wmh_missed_is_flagged_twice(monkeypatch):
    """Lesions as most of the white matter (22 of 27 ml) and nothing found."""
    monkeypatch.setattr(p, "MIN_MISSED_ML", 5.0)  # a small phantom: 22 ml stands for 200
    flair, regions, lesion = _brain(lesion_ml=22.5)
    warnings = p.wmh_plausibility(flair, regions, np.zeros(SHAPE, bool), 1.0)
    assert len(warnings) == 2
    assert "as bright as cortex" in warnings[0]
    assert "22 ml of white matter is FLAIR-bright" in warnings[1]
    # the same lesion, found, is fine
    assert p.wmh_plausibility(flair, regions, lesion, 1.0) == []


@pytest.mark.parametrize("found_ml", [0.0, 4.5])
def test_bright_white_matter_left_out_of_the_mask(monkeypatch, found_ml):
    """10 ml of lesion at 1.3 x cortex: the white matter median stays dark, but the volume
    left out is flagged unless the mask holds it."""
    monkeypatch.setattr(p, "MIN_MISSED_ML", 5.0)
    flair, regions, lesion = _brain(lesion_ml=9.9, lesion_gain=1.3)
    found = lesion.copy()
    found[:, :, 5 + int(found_ml * 1000 / 900) :] = False  # only the first found_ml of it
    warnings = p.wmh_plausibility(flair, regions, found, 1.0)
    assert len(warnings) == 1 and "outside the WMH mask" in warnings[0]
    assert p.wmh_plausibility(flair, regions, lesion, 1.0) == []


def test_faint_partial_volume_is_not_lesion(monkeypatch):
    """White matter up to just under 1.2 x cortex is not counted as missed lesion."""
    monkeypatch.setattr(p, "MIN_MISSED_ML", 5.0)
    flair, regions, _ = _brain(lesion_ml=9.9, lesion_gain=1.1)
    warnings = p.wmh_plausibility(flair, regions, np.zeros(SHAPE, bool), 1.0)
    assert not any("outside the WMH mask" in w for w in warnings)


def test_the_rim_of_a_large_found_lesion_is_not_missed_volume(monkeypatch):
    """Partial volume around a confluent lesion that was found (a slice of it outside the
    mask) is small against what was found."""
    monkeypatch.setattr(p, "MIN_MISSED_ML", 0.5)
    flair, regions, lesion = _brain(lesion_ml=22.5)
    found = lesion.copy()
    found[:, :, 29] = False  # 0.9 ml of it left out
    assert p.wmh_plausibility(flair, regions, found, 1.0) == []


def test_lesions_between_white_matter_and_a_bright_cortex_are_missed_volume(monkeypatch):
    """A long-TE protocol: cortex at 1.35 x the white matter, 10 ml of lesion at 1.6 x it
    (only 1.19 x the cortex) left out of the mask. The cortex counts as at most 1.2 x the
    white matter's mode, so the volume left out is flagged; taken at its median, it hides
    the lesions."""
    monkeypatch.setattr(p, "MIN_MISSED_ML", 5.0)
    flair, regions, lesion = _brain(lesion_ml=9.9, lesion_gain=1.6 * 80.0 / 100.0)
    flair[regions == CORTEX_REGIONS[0]] *= 1.35 * 80.0 / 100.0
    warnings = p.wmh_plausibility(flair, regions, np.zeros(SHAPE, bool), 1.0)
    assert len(warnings) == 1 and "10 ml of white matter is FLAIR-bright" in warnings[0]
    assert p.wmh_plausibility(flair, regions, lesion, 1.0) == []
    monkeypatch.setattr(p, "MAX_CORTEX_TO_WM", np.inf)
    assert p.wmh_plausibility(flair, regions, np.zeros(SHAPE, bool), 1.0) == []
