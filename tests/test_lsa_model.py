"""Issue 18 item 3: the group level's lenticulostriate-territory model (--lsa-model), on
participant-level outputs written in the participant level's exact format, with a planted
relation between the T1w patches and FA/CBF (a blob whose brightness encodes each target).
Tiny networks and few epochs keep the file fast; seeds are fixed."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from csvd_bids.cli.run import main
from csvd_bids.group.aggregate import run_group_level
from csvd_bids.group.lsa_data import load_patch_data
from csvd_bids.group.lsa_model import TrainSettings, make_folds, masked_mse
from csvd_bids.group.lsa_planted import CBF_BLOB, FA_BLOB, write_planted_outputs
from csvd_bids.group.lsa_run import write_lsa_model

TINY = {"widen_factor": 0.125, "batch_size": 16, "learning_rate": 3e-3}


def _group_table(bids: Path, out: Path) -> pd.DataFrame:
    """group_csvd.tsv as the real group level writes it."""
    run_group_level(out, bids)
    return pd.read_csv(out / "group_csvd.tsv", sep="\t", na_values=["n/a"], keep_default_na=False)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)


def test_planted_relation_beats_both_baselines_and_classifies_the_group(tmp_path):
    bids, out = write_planted_outputs(tmp_path, 60, seed=1)
    settings = TrainSettings(folds=3, epochs=8, saliency_patches=40, **TINY)
    write_lsa_model(out, _group_table(bids, out), settings=settings, n_permutations=50)

    cv = _read(out / "group_lsa_cv.tsv")
    pooled = cv[cv["fold"] == "pooled"].set_index("target")
    for target in ("fa", "cbf"):
        row = pooled.loc[target]
        assert row["n"] == 360 and row["n_subjects"] == 60
        assert row["rmse_model"] < 0.5 * row["rmse_training_mean"]
        assert row["rmse_model"] < row["rmse_linear_volume"]
        assert row["relative_rmse_model"] == pytest.approx(
            row["rmse_model"] / row["observed_mean"], rel=1e-3
        )
    assert sorted(cv["fold"].unique()) == ["1", "2", "3", "pooled"]

    features = _read(out / "group_lsa_features.tsv")
    assert list(features.columns[:3]) == ["participant_id", "session_id", "roi"]
    assert len(features) == 360 and features.filter(like="feature_").shape[1] == 64
    assert (features.groupby("participant_id")["fold"].nunique() == 1).all()  # never straddle

    summary = json.loads((out / "group_lsa_model.json").read_text())
    figures = summary["Classification"]
    assert summary["Reported"] and figures["n"] == 60
    assert figures["accuracy"] > figures["chance_level"] + 0.1
    assert figures["permutation_p_accuracy"] < 0.05
    assert figures["accuracy_ci_low"] < figures["accuracy"] < figures["accuracy_ci_high"]
    assert not any("no claim" in w or "does not beat" in w for w in summary["Warnings"])
    classification = _read(out / "group_lsa_classification.tsv")
    assert list(classification["fold"]) == ["1", "2", "3", "pooled"]
    for name in ("cv", "features", "classification", "saliency"):
        assert (out / f"group_lsa_{name}.json").is_file()
    saliency = nib.load(out / "group_lsa_saliency.nii.gz")
    volumes = json.loads((out / "group_lsa_saliency.json").read_text())["Volumes"]
    assert saliency.shape == (32, 32, 32, len(volumes)) == (32, 32, 32, 2 * 6 * 3)
    assert {v["group"] for v in volumes} == {"control", "patient"}
    assert sum(v["n"] for v in volumes if v["map"] == "T1w") == 120  # 40 per fold
    # each map points at its own blob, not at the patch's corner; FA's not at the CBF blob
    # (CBF's may look at the FA blob too: it tells the region, whose mean CBF differs)
    data = np.asanyarray(saliency.dataobj)
    for kind, own, other in (("fa", FA_BLOB, CBF_BLOB), ("cbf", CBF_BLOB, None)):
        chosen = [i for i, v in enumerate(volumes) if v["map"] == f"occlusion_{kind}"]
        mean = data[..., chosen].mean(axis=-1)
        if other is not None:
            assert mean[own > 0.5].mean() > 2 * mean[other > 0.5].mean(), kind
        assert mean[own > 0.5].mean() > 2 * mean[:4, :4, :4].mean(), kind


def test_shuffled_targets_and_labels_claim_nothing(tmp_path):
    bids, out = write_planted_outputs(tmp_path, 30, seed=2, shuffle=True)
    settings = TrainSettings(folds=3, epochs=4, saliency_patches=0, **TINY)
    write_lsa_model(out, _group_table(bids, out), settings=settings, n_permutations=50)
    summary = json.loads((out / "group_lsa_model.json").read_text())
    pooled = _read(out / "group_lsa_cv.tsv").query("fold == 'pooled'").set_index("target")
    assert (pooled["rmse_model"] > 0.9 * pooled["rmse_training_mean"]).all()
    for target, row in pooled.iterrows():  # a baseline the network does not beat is named
        for baseline, name in (("training_mean", "training-mean"), ("linear_volume", "linear")):
            warned = f"{target.upper()}: the network does not beat the {name} baseline"
            named = any(w.startswith(warned) for w in summary["Warnings"])
            assert named == (row["rmse_model"] >= row[f"rmse_{baseline}"]), (target, baseline)
    assert summary["Classification"]["permutation_p_accuracy"] >= 0.05
    assert any("no claim" in w for w in summary["Warnings"])
    assert any("small sample (N = 30)" in w for w in summary["Warnings"])
    assert not (out / "group_lsa_saliency.nii.gz").exists()  # saliency off


def test_too_few_subjects_warn_and_write_no_figures(tmp_path):
    bids, out = write_planted_outputs(tmp_path, 4, seed=3)
    table = _group_table(bids, out)
    (out / "group_lsa_cv.tsv").write_text("stale\n")  # an earlier run's figures must go
    write_lsa_model(out, table, settings=TrainSettings(folds=5, epochs=1, **TINY))
    summary = json.loads((out / "group_lsa_model.json").read_text())
    assert not summary["Reported"]
    assert any("too few subjects for 5-fold" in w for w in summary["Warnings"])
    assert sorted(p.name for p in out.glob("group_lsa_*")) == ["group_lsa_model.json"]

    # enough subjects for the regression, too few per class for the classification
    write_lsa_model(out, table, settings=TrainSettings(folds=2, epochs=1, **TINY))
    summary = json.loads((out / "group_lsa_model.json").read_text())
    assert summary["Reported"] and summary["Classification"] is None
    assert any("no classification result is reported" in w for w in summary["Warnings"])
    assert not (out / "group_lsa_classification.tsv").exists()
    assert (out / "group_lsa_cv.tsv").is_file()


def test_missing_targets_are_masked(tmp_path):
    import torch

    predicted = torch.tensor([[1.0, 5.0], [2.0, 7.0]], requires_grad=True)
    target = torch.tensor([[0.0, float("nan")], [2.0, 6.0]])
    loss = masked_mse(predicted, target)
    loss.backward()
    assert loss.item() == pytest.approx((1 + 0 + 1) / 3)
    assert predicted.grad[0, 1] == 0  # the n/a target trains nothing

    no_asl = ("sub-001", "sub-002", "sub-003")
    bids, out = write_planted_outputs(tmp_path, 9, seed=4, without_asl=no_asl)
    settings = TrainSettings(folds=3, epochs=1, saliency_patches=0, **TINY)
    write_lsa_model(out, _group_table(bids, out), settings=settings, n_permutations=0)
    pooled = _read(out / "group_lsa_cv.tsv").query("fold == 'pooled'").set_index("target")
    assert pooled.loc["fa", "n"] == 54 and pooled.loc["cbf", "n"] == 36
    assert np.isfinite(pooled.loc["cbf", "rmse_model"])
    features = _read(out / "group_lsa_features.tsv")
    without = features["participant_id"].isin(no_asl)
    assert features.loc[without, "cbf_observed"].isna().all()
    assert features["fa_predicted"].notna().all()  # sessions without ASL still have FA


def test_folds_keep_sessions_together_and_hold_both_classes(tmp_path):
    bids, out = write_planted_outputs(tmp_path, 12, seed=5, sessions=("ses-1", "ses-2"))
    table = _group_table(bids, out)
    data = load_patch_data(out)
    assert len(data.samples) == 12 * 2 * 6
    labels = table.drop_duplicates("participant_id").set_index("participant_id")["group"]
    fold = make_folds(data.samples, 3, labels, seed=0)
    by_subject = pd.Series(fold).groupby(data.samples["participant_id"].to_numpy()).nunique()
    assert (by_subject == 1).all()
    for k in range(3):
        test = data.samples.loc[fold == k, "participant_id"].unique()
        assert labels[test].nunique() == 2
    assert (make_folds(data.samples, 3, labels, seed=0) == fold).all()  # fixed seed


def test_training_repeats_exactly(tmp_path):
    from csvd_bids.group.lsa_model import predict, train_network

    rng = np.random.default_rng(0)
    patches = rng.normal(size=(10, 32, 32, 32)).astype(np.float32)
    targets = rng.normal(size=(10, 2))
    settings = TrainSettings(epochs=1, **TINY)
    runs = [predict(train_network(patches, targets, settings, seed=3), patches, settings)[0]]
    runs.append(predict(train_network(patches, targets, settings, seed=3), patches, settings)[0])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_command_line_writes_the_files_and_the_report_section(tmp_path):
    bids, out = write_planted_outputs(tmp_path, 6, seed=6, sessions=("ses-1",))
    participants = pd.read_csv(bids / "participants.tsv", sep="\t")
    participants["group"] = ["control", "patient"] * 3  # 3 of each: enough for 3 folds
    participants.to_csv(bids / "participants.tsv", sep="\t", index=False)
    args = [str(bids), str(out), "group", "--lsa-model", "--lsa-folds", "3", "--lsa-epochs", "1"]
    args += ["--lsa-permutations", "10", "--lsa-saliency-patches", "1"]
    assert main([*args, "-w", str(tmp_path / "work")]) == 0
    for name in ("cv.tsv", "features.tsv", "classification.json", "saliency.nii.gz", "model.json"):
        assert (out / f"group_lsa_{name}").is_file(), name
    features = _read(out / "group_lsa_features.tsv")
    assert features.filter(like="feature_").shape[1] == 512  # the full ResNet18
    html = (out / "group_csvd.html").read_text()
    assert "Lenticulostriate territory model" in html
    assert "chance level" in html and "95 % CI" in html
    assert "small sample (N = 6)" in html
    assert "occlusion sensitivity" in html and html.count("data:image/png") >= 1

    # without --lsa-model, the group level neither trains nor needs torch for it
    assert main([str(bids), str(out), "group", "-w", str(tmp_path / "work")]) == 0
    # and the earlier figures stay, marked as not this run's, in the JSON and the report
    warnings = json.loads((out / "group_lsa_model.json").read_text())["Warnings"]
    assert warnings[0].startswith("not re-run by the latest group level")
    assert "not re-run by the latest group level" in (out / "group_csvd.html").read_text()
    assert main([*args, "-w", str(tmp_path / "work")]) == 0  # re-run: current again
    warnings = json.loads((out / "group_lsa_model.json").read_text())["Warnings"]
    assert not any(w.startswith("not re-run") for w in warnings)
