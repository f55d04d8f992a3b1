"""The quantification node's function: a marker that was not assessed (by the plan, or because
its node could not model the images) has n/a counts and its reason in the summary and the
warnings, never zeros; detector notes and exclusions reach the statuses."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from csvd_bids.labels import BY_LABEL
from csvd_bids.quant.session import MarkerResult, quantify_session
from csvd_bids.quant.summary import NA

SHAPE = (30, 30, 30)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


@pytest.fixture(scope="module")
def transform(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("xfm") / "affine.txt"
    sitk.WriteTransform(sitk.AffineTransform(3), str(path))
    return str(path)


def _img(data: np.ndarray) -> nib.Nifti1Image:
    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), AFFINE)


def _result(
    mask: np.ndarray, assessed: bool = True, reason: str = "", notes=(), **node
) -> MarkerResult:
    status = {
        **node,
        "assessed": assessed,
        "reason": reason,
        "notes": list(notes),
        "region_names": {"1": "periventricular", "2": "deep"},
        "excluded": {"lacunes": "left out"},
    }
    return MarkerResult(mask=mask, located=np.where(mask, 2, 0).astype(np.uint8), status=status)


def _quantify(transform: str, results: dict, markers: dict, flair=None, regions=None) -> object:
    brain = np.zeros(SHAPE, bool)
    brain[3:27, 3:27, 3:27] = True
    flair = np.where(brain, 100.0, 0.0) if flair is None else flair
    plan = {
        "subject": "01",
        "session": None,
        "reference": "flair",
        "files": {"flair": "/bids/sub-01/anat/sub-01_FLAIR.nii.gz"},
        "markers": markers,
        "unusable": {},
    }
    volumes = {
        "intracranial": float(brain.sum() * 8),
        "gm": 1000.0,
        "wm": 1000.0,
        "csf": 100.0,
        "regions": {"lateral_ventricles": 10.0},
    }
    regions = np.where(brain, 2, 0).astype(np.uint8) if regions is None else regions
    return quantify_session(
        plan,
        {"flair": _img(flair)},
        {"flair": _img(flair), "dwi_adc": _img(np.where(brain, 800.0, 0.0))},
        _img(brain),
        {"Method": "test"},
        regions,
        volumes,
        transform,
        {},
        results,
        {"flair": "bids:raw:sub-01/anat/sub-01_FLAIR.nii.gz"},
    )


def _two_lesions() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[10:12, 10:12, 10:12] = True
    mask[20:22, 20:22, 20:22] = True
    return mask


def _planned(assessed=("wmh",)) -> dict:
    keys = ("wmh", "cmb", "pvs", "lacunes", "rssi")
    return {
        k: {"assessed": k in assessed, "reason": "" if k in assessed else "missing modality: swi"}
        for k in keys
    }


def test_counts_of_a_marker_not_assessed_are_na_not_zero(transform):
    q = _quantify(transform, {"wmh": _result(_two_lesions())}, _planned())
    row = q.summary
    assert row["WMH_status"] == "assessed" and row["WMH_count"] == 2
    assert row["WMH_deep_count"] == 2 and row["WMH_periventricular_count"] == 0
    for label in ("CMB", "PVS", "LAC", "RSSI"):
        assert row[f"{label}_status"] == "not assessed"
        assert row[f"{label}_count"] == NA
        assert row[f"{label}_volume_mm3"] == NA
        assert row[f"{label}_reason"] == "missing modality: swi"
    assert row["CMB_deep_count"] == NA
    assert (q.dseg == BY_LABEL["WMH"].index).sum() == 16


def test_a_marker_whose_images_could_not_be_modelled(transform):
    why = "cannot be assessed on these images: too few white matter voxels"
    results = {"wmh": _result(np.zeros(SHAPE, bool), assessed=False, reason=why)}
    q = _quantify(transform, results, _planned())
    assert q.summary["WMH_status"] == "not assessed"
    assert q.summary["WMH_reason"] == why
    assert q.summary["WMH_count"] == NA
    assert q.summary["fazekas_pv"] == NA
    assert f"WMH {why}" in q.summary["qc_warnings"]
    assert q.markers["wmh"]["assessed"] is False
    assert not q.dseg.any() and q.lesions.empty


def test_notes_and_exclusions_reach_the_statuses(transform):
    markers = _planned()
    markers["wmh"]["not_excluded"] = {"rssi": "missing modality: dwi"}
    results = {"wmh": _result(_two_lesions(), notes=["trace only: shine-through kept"])}
    q = _quantify(transform, results, markers)
    assert "WMH: trace only: shine-through kept" in q.summary["qc_warnings"]
    assert q.markers["wmh"]["notes"] == ["trace only: shine-through kept"]
    assert q.markers["wmh"]["excluded"] == {
        "lacunes": "left out",
        "rssi": "not left out: missing modality: dwi",
    }


def test_lesion_table_has_every_image_and_session_wide_ids(transform):
    results = {"wmh": _result(_two_lesions()), "lacunes": _result(_two_lesions())}
    q = _quantify(transform, results, _planned(("wmh", "lacunes")))
    assert list(q.lesions["lesion_id"]) == [1, 2, 3, 4]
    assert set(q.lesions["marker"]) == {"WMH", "LAC"}
    assert (q.lesions["mean_flair"] == 100.0).all()
    assert (q.lesions["mean_dwi_adc"] == 800.0).all()


def test_a_session_without_markers_has_a_lesion_table_with_its_header(transform):
    """A T1w-only session: no marker assessed, a table of no rows (the writer reads its
    columns for the data dictionary)."""
    q = _quantify(transform, {}, _planned(assessed=()))
    assert q.lesions.empty
    assert list(q.lesions.columns[:3]) == ["lesion_id", "marker", "region"]
    assert "mean_flair" in q.lesions.columns
    assert all(q.summary[f"{label}_count"] == NA for label in ("WMH", "CMB", "PVS", "LAC"))


def test_a_wmh_mask_that_contradicts_the_flair_is_a_warning(transform, monkeypatch):
    """Confluent WMH (the white matter brighter than cortex) and an empty WMH mask."""
    from csvd_bids.quant import plausibility
    from csvd_bids.region_sets import CORTEX_REGIONS, DEEP_WM

    monkeypatch.setattr(plausibility, "MIN_MISSED_ML", 1.0)
    regions = np.zeros(SHAPE, np.uint8)
    regions[3:27, 3:27, 3:27] = CORTEX_REGIONS[0]
    regions[8:22, 8:22, 8:22] = DEEP_WM
    flair = np.where(regions == DEEP_WM, 140.0, np.where(regions > 0, 100.0, 0.0))
    results = {"wmh": _result(np.zeros(SHAPE, bool))}
    q = _quantify(transform, results, _planned(), flair=flair, regions=regions)
    assert "as bright as cortex on FLAIR" in q.summary["qc_warnings"]
    assert "the WMH volume is likely far too low" in q.summary["qc_warnings"]


def test_the_summary_says_which_method_made_each_mask(transform):
    """The detector, a bundle the plan put in its place, or the model a second opinion kept;
    and the second opinion's volume in its own column (n/a where it did not run)."""
    opinion = {"method": "UNet", "volume_mm3": 123.0, "used": False}
    results = {"wmh": _result(_two_lesions(), second_opinion=opinion)}
    row = _quantify(transform, results, _planned()).summary
    assert row["WMH_method"] == "detector" and row["WMH_second_opinion_mm3"] == 123.0
    assert row["CMB_method"] == NA  # not assessed
    kept = {**opinion, "used": True}
    results = {"wmh": _result(_two_lesions(), method="UNet", second_opinion=kept)}
    q = _quantify(transform, results, _planned())
    assert q.summary["WMH_method"] == "model" and q.markers["wmh"]["method"] == "UNet"
    markers = _planned(("wmh", "lacunes"))
    markers["lacunes"]["method"] = "a bundle in --models-dir"  # the plan's: no second opinion
    results = {"wmh": _result(_two_lesions()), "lacunes": _result(_two_lesions())}
    row = _quantify(transform, results, markers).summary
    assert row["LAC_method"] == "model" and row["WMH_method"] == "detector"
    assert row["WMH_second_opinion_mm3"] == NA
