"""csvd-bids-eval: metrics on hand-made masks with known values, resampling across grids,
pairing by subject/session/label, "not assessed", and the command line end to end."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from csvd_bids.evaluate import compare_masks, evaluate_pairs, pair_masks, parse_entities, summarise
from csvd_bids.evaluate.cli import main
from csvd_bids.evaluate.metrics import format_summary, load_pair

SHAPE = (20, 20, 20)


def _box(corner: tuple[int, int, int], size: tuple[int, int, int], shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(c, c + s) for c, s in zip(corner, size, strict=True))] = True
    return mask


def _save(path, mask: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4) if affine is None else affine), path)


# --- voxel metrics -------------------------------------------------------------------------


def test_dice_and_avd_of_shifted_boxes():
    reference = _box((4, 4, 4), (4, 4, 4))  # 64 voxels
    output = _box((6, 4, 4), (4, 4, 4))  # shifted 2 voxels: 32 shared
    result = compare_masks(reference, output, (1.0, 1.0, 1.0))
    assert result.dice == pytest.approx(0.5)
    assert result.avd_percent == pytest.approx(0.0)
    bigger = compare_masks(reference, _box((4, 4, 4), (4, 4, 8)), (1.0, 1.0, 2.0))
    assert bigger.dice == pytest.approx(2 * 64 / (64 + 128))
    assert bigger.avd_percent == pytest.approx(100.0)
    assert bigger.reference_volume_mm3 == pytest.approx(128.0)  # 64 voxels of 2 mm3


def test_hd95_uses_the_voxel_spacing():
    reference = _box((5, 5, 5), (1, 1, 1))
    output = _box((8, 5, 5), (1, 1, 1))  # 3 voxels away along the first axis
    assert compare_masks(reference, output, (2.0, 1.0, 1.0)).hd95_mm == pytest.approx(6.0)
    assert compare_masks(reference, output, (1.0, 1.0, 3.0)).hd95_mm == pytest.approx(3.0)
    moved = _box((5, 5, 9), (1, 1, 1))  # 4 voxels along the third axis
    assert compare_masks(reference, moved, (1.0, 1.0, 3.0)).hd95_mm == pytest.approx(12.0)
    assert compare_masks(reference, reference, (1.0, 1.0, 3.0)).hd95_mm == 0.0


def _brute_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """Surface voxels (in the mask, not in its erosion), the larger of the two directed 95th
    percentiles of the nearest-surface distances: the definition MONAI documents."""

    def surface(mask):
        return np.argwhere(mask & ~ndimage.binary_erosion(mask)) * np.asarray(spacing)

    distances = cdist(surface(a), surface(b))
    return max(np.percentile(distances.min(axis=1), 95), np.percentile(distances.min(axis=0), 95))


def test_hd95_matches_a_brute_force_computation_on_blobs():
    rng = np.random.default_rng(0)
    reference = ndimage.gaussian_filter(rng.random(SHAPE), 2) > 0.52
    output = ndimage.gaussian_filter(rng.random(SHAPE), 2) > 0.52
    spacing = (1.0, 1.5, 3.0)
    result = compare_masks(reference, output, spacing)
    assert result.hd95_mm == pytest.approx(_brute_hd95(reference, output, spacing), rel=1e-4)
    inter = np.logical_and(reference, output).sum()
    assert result.dice == pytest.approx(2 * inter / (reference.sum() + output.sum()), rel=1e-6)


def test_empty_masks_are_explicit():
    empty = np.zeros(SHAPE, dtype=bool)
    lesion = _box((3, 3, 3), (2, 2, 2))
    both = compare_masks(empty, empty, (1.0, 1.0, 1.0))
    assert both.dice == 1.0
    assert all(math.isnan(v) for v in (both.hd95_mm, both.avd_percent, both.f1, both.recall))
    assert both.false_positives == 0
    found_nothing = compare_masks(lesion, empty, (1.0, 1.0, 1.0))
    assert found_nothing.dice == 0.0 and math.isnan(found_nothing.hd95_mm)
    assert found_nothing.recall == 0.0 and math.isnan(found_nothing.precision)
    assert found_nothing.f1 == 0.0 and found_nothing.avd_percent == pytest.approx(100.0)
    invented = compare_masks(empty, lesion, (1.0, 1.0, 1.0))
    assert invented.dice == 0.0 and math.isnan(invented.hd95_mm)
    assert math.isnan(invented.recall) and invented.precision == 0.0 and invented.f1 == 0.0
    assert invented.false_positives == 1 and math.isnan(invented.fp_per_true_lesion)


# --- lesion metrics ------------------------------------------------------------------------


def test_lesion_wise_matching_rule():
    reference = (
        _box((2, 2, 2), (3, 3, 3)) | _box((10, 2, 2), (2, 2, 2)) | _box((2, 12, 2), (2, 2, 2))
    )
    reference |= _box((15, 15, 15), (1, 1, 1)) | _box((16, 16, 16), (1, 1, 1))  # corner: 1 lesion
    output = (
        _box((4, 4, 4), (1, 1, 1))  # touches lesion A by one voxel: detects it, TP
        | _box((11, 3, 3), (3, 1, 1))  # overlaps lesion B and sticks out: still TP
        | _box((2, 2, 12), (2, 2, 2))  # false positive
        | _box((8, 15, 10), (1, 1, 1))  # false positive
    )
    result = compare_masks(reference, output, (1.0, 1.0, 1.0))
    assert result.reference_lesions == 4  # the two corner-touching voxels are one lesion
    assert result.output_lesions == 4
    assert result.detected_lesions == 2 and result.missed_lesions == 2
    assert result.true_positive_components == 2 and result.false_positives == 2
    assert result.recall == pytest.approx(0.5) and result.precision == pytest.approx(0.5)
    assert result.f1 == pytest.approx(0.5)
    assert result.fp_per_true_lesion == pytest.approx(0.5)


def test_one_output_component_over_two_lesions():
    reference = _box((2, 2, 2), (2, 2, 2)) | _box((6, 2, 2), (2, 2, 2))
    bridge = _box((3, 2, 2), (4, 1, 1))  # one component spanning both lesions
    result = compare_masks(reference, bridge, (1.0, 1.0, 1.0))
    assert (result.detected_lesions, result.true_positive_components) == (2, 1)
    assert result.recall == 1.0 and result.precision == 1.0


# --- resampling ------------------------------------------------------------------------------


def test_output_on_another_grid_is_resampled(tmp_path):
    reference = _box((4, 4, 4), (8, 6, 4))
    _save(tmp_path / "ref.nii.gz", reference)
    # The same region on a 2 mm grid whose voxel boundaries fall on the 1 mm grid's:
    # 2 mm voxel j covers 1 mm voxels 2j and 2j + 1.
    coarse = np.zeros((10, 10, 10), dtype=bool)
    coarse[2:6, 2:5, 2:4] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = 0.5
    _save(tmp_path / "coarse.nii.gz", coarse, affine)
    ref, out, zooms, resampled = load_pair(tmp_path / "ref.nii.gz", tmp_path / "coarse.nii.gz")
    assert resampled and out.shape == ref.shape and zooms == (1.0, 1.0, 1.0)
    assert compare_masks(ref, out, zooms).dice == pytest.approx(1.0)
    # Flipped first axis (LAS): same voxels in the world, data mirrored.
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = SHAPE[0] - 1
    _save(tmp_path / "flipped.nii.gz", reference[::-1], flip)
    ref, out, zooms, resampled = load_pair(tmp_path / "ref.nii.gz", tmp_path / "flipped.nii.gz")
    assert resampled and compare_masks(ref, out, zooms).dice == pytest.approx(1.0)
    _save(tmp_path / "same.nii.gz", np.roll(reference, 1, axis=0))
    ref, out, _, resampled = load_pair(tmp_path / "ref.nii.gz", tmp_path / "same.nii.gz")
    assert not resampled and compare_masks(ref, out, zooms).dice < 1.0


# --- pairing -------------------------------------------------------------------------------


def test_parse_entities():
    assert parse_entities("sub-01_ses-1_space-T1w_label-WMH_mask.nii.gz") == (
        {"sub": "01", "ses": "1", "space": "T1w", "label": "WMH"},
        "mask",
    )
    assert parse_entities("sub-ms07_label-WMH_mask.nii.gz")[0] == {"sub": "ms07", "label": "WMH"}
    assert parse_entities("notbids_mask.nii.gz") is None


def _summary(path, statuses: dict[str, tuple[str, str]]) -> None:
    row = {"participant_id": "x"}
    for label, (status, reason) in statuses.items():
        row[f"{label}_status"], row[f"{label}_reason"] = status, reason
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row]).to_csv(path, sep="\t", index=False)


@pytest.fixture
def trees(tmp_path):
    """A truth tree (space-T1w, sessions) and an output tree with every kind of gap."""
    truth, out = tmp_path / "truth", tmp_path / "out"
    lesion = _box((4, 4, 4), (3, 3, 3))
    for ses in ("1", "2", "3"):
        for label in ("WMH", "CMB"):
            _save(
                truth
                / f"sub-01/ses-{ses}/anat/sub-01_ses-{ses}_space-T1w_label-{label}_mask.nii.gz",
                lesion,
            )
    anat = out / "sub-01/ses-1/anat"
    _save(anat / "sub-01_ses-1_space-T1w_label-WMH_mask.nii.gz", lesion)
    _summary(
        anat / "sub-01_ses-1_desc-summary_stats.tsv",
        {"WMH": ("assessed", "n/a"), "CMB": ("not assessed", "missing modality: swi")},
    )
    anat = out / "sub-01/ses-2/anat"  # WMH only half found; CMB mask absent, no summary
    _save(anat / "sub-01_ses-2_space-T1w_label-WMH_mask.nii.gz", _box((4, 4, 4), (3, 3, 1)))
    _save(anat / "sub-01_ses-2_space-T1w_desc-brain_mask.nii.gz", lesion)
    # ses-3: not in the output at all. An output without a reference is ignored:
    _save(out / "sub-02/anat/sub-02_space-T1w_label-WMH_mask.nii.gz", lesion)
    return truth, out


def test_pairing_and_not_assessed(trees):
    truth, out = trees
    pairs = {(p.session, p.label): p for p in pair_masks(truth, out)}
    assert len(pairs) == 6
    assert pairs[("1", "WMH")].status == "evaluated"
    assert pairs[("1", "CMB")].status == "not assessed"
    assert pairs[("1", "CMB")].reason == "missing modality: swi"
    assert pairs[("2", "WMH")].status == "evaluated"
    assert (
        pairs[("2", "CMB")].status == "not assessed"
        and "no label-CMB mask" in pairs[("2", "CMB")].reason
    )
    assert (
        pairs[("3", "WMH")].status == "not assessed" and "no output" in pairs[("3", "WMH")].reason
    )
    only_cmb = pair_masks(truth, out, labels=("CMB",))
    assert {p.label for p in only_cmb} == {"CMB"}


def test_manual_masks_without_space_pair_with_outputs(tmp_path):
    manual, out = tmp_path / "manual", tmp_path / "out"
    _save(manual / "sub-ms07/anat/sub-ms07_label-WMH_mask.nii.gz", _box((2, 2, 2), (4, 4, 4)))
    _save(
        out / "sub-ms07/anat/sub-ms07_space-T1w_label-WMH_mask.nii.gz", _box((2, 2, 2), (4, 4, 2))
    )
    [pair] = pair_masks(manual, out)
    assert pair.status == "evaluated" and pair.session is None
    [row] = evaluate_pairs([pair]).to_dict("records")
    assert row["dice"] == pytest.approx(2 * 32 / 96) and row["session_id"] == "n/a"


def test_linked_session_folders_are_evaluated_and_a_link_loop_ends(tmp_path):
    """A folder of links to some sessions' outputs pairs like the outputs themselves."""
    manual, out, subset = tmp_path / "manual", tmp_path / "out", tmp_path / "subset"
    for subject in ("01", "02"):
        lesion = _box((2, 2, 2), (4, 4, 4))
        _save(manual / f"sub-{subject}/anat/sub-{subject}_label-WMH_mask.nii.gz", lesion)
        _save(out / f"sub-{subject}/anat/sub-{subject}_space-T1w_label-WMH_mask.nii.gz", lesion)
    subset.mkdir()
    (subset / "sub-01").symlink_to(out / "sub-01", target_is_directory=True)
    (subset / "sub-01" / "anat" / "loop").symlink_to(subset, target_is_directory=True)
    pairs = {p.subject: p for p in pair_masks(manual, subset)}
    assert pairs["01"].status == "evaluated"
    assert pairs["02"].status == "not assessed"


def test_not_assessed_is_never_zero_in_the_summary(trees):
    truth, out = trees
    sessions = evaluate_pairs(pair_masks(truth, out))
    cmb = sessions[sessions["marker"] == "CMB"]
    assert set(cmb["status"]) == {"not assessed"} and cmb["dice"].isna().all()
    summary = summarise(sessions).set_index("marker")
    assert summary.loc["CMB", "status"] == "not assessed"
    assert summary.loc["CMB", "n_not_assessed"] == 3 and math.isnan(summary.loc["CMB", "dice_mean"])
    wmh = summary.loc["WMH"]
    assert (wmh["n_evaluated"], wmh["n_not_assessed"]) == (2, 1)
    assert wmh["dice_mean"] == pytest.approx((1.0 + 2 * 9 / 36) / 2)
    assert wmh["dice_pooled"] == pytest.approx(2 * (27 + 9) / (54 + 36))
    assert wmh["recall_pooled"] == 1.0 and wmh["f1_pooled"] == 1.0
    text = format_summary(summarise(sessions))
    assert "not assessed" in text.splitlines()[2]


def test_summary_pools_counts_and_correlates_over_sessions():
    rows = []
    for n_ref, n_out, detected, tp in ((1, 1, 1, 1), (2, 3, 2, 2), (4, 3, 2, 2), (0, 1, 0, 0)):
        rows.append(
            {
                "marker": "CMB",
                "status": "evaluated",
                "dice": 0.5,
                "avd_percent": math.nan,
                "hd95_mm": math.nan,
                "reference_lesions": n_ref,
                "output_lesions": n_out,
                "detected_lesions": detected,
                "true_positive_components": tp,
                "false_positives": n_out - tp,
                "f1": math.nan,
                "intersection_voxels": 1,
                "reference_voxels": n_ref,
                "output_voxels": n_out,
            }
        )
    summary = summarise(pd.DataFrame(rows)).iloc[0]
    assert summary["recall_pooled"] == pytest.approx(5 / 7)
    assert summary["precision_pooled"] == pytest.approx(5 / 8)
    assert summary["f1_pooled"] == pytest.approx(2 * (5 / 7) * (5 / 8) / (5 / 7 + 5 / 8))
    assert summary["fp_per_image"] == pytest.approx(3 / 4)
    assert summary["fp_per_true_lesion"] == pytest.approx(3 / 7)
    assert summary["count_pearson_r"] == pytest.approx(
        np.corrcoef([1, 2, 4, 0], [1, 3, 3, 1])[0, 1]
    )
    assert summary["n_reference_empty"] == 1


# --- command line --------------------------------------------------------------------------


def test_cli_end_to_end(trees, capsys):
    truth, out = trees
    assert main([str(truth), str(out)]) == 0
    results = out / "eval"
    sessions = pd.read_csv(results / "eval_sessions.tsv", sep="\t")
    assert len(sessions) == 6
    assert (sessions["status"] == "not assessed").sum() == 4
    half = sessions[(sessions["session_id"] == "ses-2") & (sessions["marker"] == "WMH")].iloc[0]
    assert half["dice"] == pytest.approx(0.5) and half["recall"] == 1.0
    summary = pd.read_csv(results / "eval_summary.tsv", sep="\t", keep_default_na=False)
    assert list(summary["marker"]) == ["WMH", "CMB"]
    assert summary.set_index("marker").loc["CMB", "dice_mean"] == "n/a"
    document = json.loads((results / "eval.json").read_text())
    assert "matching_rule" in document["conventions"]
    assert len(document["sessions"]) == 6 and document["summary"][1]["dice_mean"] is None
    printed = capsys.readouterr().out
    assert "WMH" in printed and "not assessed" in printed
    # --markers with csvd-bids keys, --out elsewhere: CMB alone is never assessed -> 66
    assert main([str(truth), str(out), "--markers", "cmb", "--out", str(out / "x")]) == 66
    assert not (out / "x").exists()
    assert main([str(truth), str(out), "--markers", "wmh", "--out", str(out / "w")]) == 0
    assert set(pd.read_csv(out / "w" / "eval_sessions.tsv", sep="\t")["marker"]) == {"WMH"}


def test_cli_exit_codes(trees, tmp_path, capsys):
    truth, out = trees
    assert main([str(truth), str(out), "--markers", "XYZ"]) == 64
    with pytest.raises(SystemExit) as exc:
        main([str(truth), str(out), "--bogus"])
    assert exc.value.code == 64
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "66" in capsys.readouterr().out  # exit codes are documented in the help
    assert main([str(truth), str(out), "--out", str(truth / "eval")]) == 64
    assert main([str(tmp_path / "missing"), str(out)]) == 66
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(out)]) == 66
    # An unreadable output mask: its row says "error", the others are evaluated, exit 65.
    (out / "sub-01/ses-1/anat/sub-01_ses-1_space-T1w_label-WMH_mask.nii.gz").write_bytes(b"junk")
    assert main([str(truth), str(out), "--out", str(tmp_path / "e")]) == 65
    sessions = pd.read_csv(tmp_path / "e" / "eval_sessions.tsv", sep="\t")
    assert (sessions["status"] == "error").sum() == 1
