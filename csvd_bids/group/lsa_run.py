"""The group level's lenticulostriate-territory model (``--lsa-model``): load the patches,
cross-validate the FA/CBF network, classify the outcome from its features, and write

- ``group_lsa_cv.tsv``: per target, per fold and pooled: n, RMSE and RMSE / mean of the
  network, the training-mean baseline and the linear model on volume and region;
- ``group_lsa_features.tsv``: out-of-fold predictions and penultimate features per session
  and region;
- ``group_lsa_classification.tsv`` / ``.json``: accuracy, balanced accuracy, ROC AUC per fold
  and pooled, chance level, Wilson 95 % CI, permutation p-values;
- ``group_lsa_saliency.nii.gz`` / ``.json``: mean occlusion map and T1w patch per group and
  region (all sessions together when there is no outcome);
- ``group_lsa_model.json``: settings, data used, timing and every warning (the report's).

When the data cannot support a result (no patches, fewer subjects than folds, no target
value) only ``group_lsa_model.json`` is written, with the reason; never a crash.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from csvd_bids.bids import derivatives as ds
from csvd_bids.group.analysis import default_outcome, outcome_problem
from csvd_bids.group.lsa_classify import Classification, classify
from csvd_bids.group.lsa_data import TARGETS, PatchData, load_patch_data, session_key
from csvd_bids.group.lsa_model import CVResult, TrainSettings, cross_validate, cv_table, make_folds
from csvd_bids.group.lsa_saliency import average_by_group, occlusion_maps

LOGGER = logging.getLogger("csvd_bids.group")
OUTPUTS = (
    "group_lsa_cv.tsv",
    "group_lsa_cv.json",
    "group_lsa_features.tsv",
    "group_lsa_features.json",
    "group_lsa_classification.tsv",
    "group_lsa_classification.json",
    "group_lsa_saliency.nii.gz",
    "group_lsa_saliency.json",
    "group_lsa_model.json",
)
METHOD = (
    "3D ResNet18 (MONAI resnet18, spatial_dims=3, 1 input channel, 2 outputs FA and CBF, "
    "trained from scratch) on the 32^3 T1w patches of the six basal-ganglia regions; "
    "k-fold cross-validation by participant; targets standardised on the training fold, "
    "squared error over the targets present; AdamW"
)


def outcome_labels(table: pd.DataFrame, outcome: str | None) -> tuple[str | None, pd.Series]:
    """(outcome column, participant -> its value in the subject's first session)."""
    chosen = outcome or default_outcome(table)
    if chosen is None or chosen not in table.columns:
        return chosen, pd.Series(dtype=object)
    first = table.sort_values(["participant_id", "session_id"], na_position="first")
    first = first.drop_duplicates("participant_id").set_index("participant_id")[chosen]
    return chosen, first.dropna().astype(str)


def _clear(output_dir: Path) -> None:
    """Figures of an earlier run must not stand beside this run's warnings."""
    for name in OUTPUTS:
        (output_dir / name).unlink(missing_ok=True)


def too_little(data: PatchData, folds: int) -> list[str]:
    """Why no figure can be reported (empty: fine)."""
    n_subjects = data.samples["participant_id"].nunique()
    if data.samples.empty:
        return ["no basal-ganglia T1w patches in the participant-level outputs"]
    reasons = []
    if folds < 2:
        reasons.append(f"--lsa-folds {folds}: cross-validation needs at least 2 folds")
    if n_subjects < folds:
        reasons.append(
            f"too few subjects for {folds}-fold cross-validation ({n_subjects} subject(s), "
            f"{len(data.samples)} patches); no result is reported"
        )
    if not np.isfinite(data.targets).any():
        reasons.append("no FA or CBF value in any region (n/a everywhere): nothing to learn")
    return reasons


def write_lsa_model(
    output_dir: Path,
    table: pd.DataFrame,
    outcome: str | None = None,
    settings: TrainSettings | None = None,
    n_permutations: int = 200,
) -> Path:
    """Run the model on the sessions of ``table`` (the group table); returns the summary JSON."""
    settings = settings or TrainSettings()
    _clear(output_dir)
    sessions = {
        session_key(p, s) for p, s in zip(table["participant_id"], table["session_id"], strict=True)
    }
    data = load_patch_data(output_dir, sessions)
    outcome, labels = outcome_labels(table, outcome)
    notes = list(data.warnings)
    summary: dict = {
        "Description": "Lenticulostriate-territory model (csvd_bids.group.lsa_run)",
        "Method": METHOD,
        "Settings": dataclasses.asdict(settings),
        "Targets": {t: f"{t}_mean of *_desc-basalganglia_stats.tsv" for t in TARGETS},
        "Outcome": outcome,
        "NPatches": len(data.samples),
        "NSessions": int(data.samples[["participant_id", "session_id"]].drop_duplicates().shape[0]),
        "NSubjects": int(data.samples["participant_id"].nunique()),
        "NTargetValues": {t: int(data.samples[t].notna().sum()) for t in TARGETS},
    }
    LOGGER.info(
        "lenticulostriate model: %d patches of %d subjects; targets %s (n = %s); outcome %s",
        summary["NPatches"],
        summary["NSubjects"],
        ", ".join(f"{t}_mean" for t in TARGETS),
        summary["NTargetValues"],
        outcome or "none",
    )
    for target, count in summary["NTargetValues"].items():
        if count == 0 and len(data.samples):
            notes.append(f"no {target.upper()} value in any region: {target} is not modelled")
    blocked = too_little(data, settings.folds)
    if blocked:
        return _finish(output_dir, summary, notes + blocked, reported=False)
    two_levels = labels.nunique() == 2
    missing = outcome_problem(outcome, table.columns, "classification")
    if missing:
        notes.append(missing)
    with warnings.catch_warnings():  # a rare stratum (subjects without label): sklearn warns
        warnings.simplefilter("ignore", UserWarning)
        fold = make_folds(
            data.samples, settings.folds, labels if two_levels else None, settings.seed
        )
    saliency_fn = occlusion_maps if settings.saliency_patches > 0 else None
    result = cross_validate(data, fold, settings, saliency_fn)
    summary["TrainingSeconds"] = round(result.seconds, 1)
    cv = cv_table(data, result)
    _write_cv(output_dir, cv)
    _write_features(output_dir, data, result)
    pooled = cv[cv["fold"] == "pooled"].set_index("target")
    summary["Regression"] = pooled.drop(columns="fold").to_dict(orient="index")
    for target, row in pooled.iterrows():
        # a network no better than a baseline has learnt nothing the T1w patch adds
        for baseline, name in (("training_mean", "training-mean"), ("linear_volume", "linear")):
            if row["n"] and not row["rmse_model"] < row[f"rmse_{baseline}"]:
                notes.append(
                    f"{target.upper()}: the network does not beat the {name} baseline "
                    f"(RMSE {row['rmse_model']:.4g} vs {row[f'rmse_{baseline}']:.4g})"
                )
    if outcome in table.columns:
        classification = classify(
            data.samples,
            fold,
            result.features_by_fold,
            labels,
            outcome,
            n_permutations,
            settings.seed,
        )
        notes.extend(classification.warnings)
        _write_classification(output_dir, classification)
        summary["Classification"] = classification.metrics or None
    if result.saliency is not None:
        _write_saliency(output_dir, data, result, labels, outcome)
    return _finish(output_dir, summary, notes, reported=True)


def _finish(output_dir: Path, summary: dict, notes: list[str], reported: bool) -> Path:
    for note in notes:
        LOGGER.warning("lenticulostriate model: %s", note)
    path = output_dir / "group_lsa_model.json"
    ds.write_json(path, {**summary, "Reported": reported, "Warnings": notes})
    return path


def _write_cv(output_dir: Path, cv: pd.DataFrame) -> None:
    path = output_dir / "group_lsa_cv.tsv"
    ds.write_tsv(path, cv.round(6))
    ds.write_json(
        path.with_suffix(".json"),
        {
            "target": {"Description": "fa (FA) or cbf (CBF, ml/100 g/min): region mean"},
            "fold": {"Description": "test fold (1..k) or pooled (all out-of-fold predictions)"},
            "n": {"Description": "test regions with a value of the target"},
            "n_subjects": {"Description": "subjects among them"},
            "observed_mean": {"Description": "mean of the observed target in the test regions"},
            "rmse_model": {"Description": "root mean squared error of the network"},
            "rmse_training_mean": {"Description": "RMSE of predicting the training fold's mean"},
            "rmse_linear_volume": {
                "Description": "RMSE of a linear model of the target on the region's volume "
                "and one indicator per region, fitted on the training fold"
            },
            "relative_rmse_model": {"Description": "rmse_model / observed_mean"},
            "relative_rmse_training_mean": {"Description": "rmse_training_mean / observed_mean"},
            "relative_rmse_linear_volume": {"Description": "rmse_linear_volume / observed_mean"},
        },
    )


def _write_features(output_dir: Path, data: PatchData, result: CVResult) -> None:
    samples = data.samples[["participant_id", "session_id", "roi"]].reset_index(drop=True)
    columns = {"fold": result.fold + 1}
    for j, target in enumerate(TARGETS):
        columns[f"{target}_observed"] = data.targets[:, j]
        columns[f"{target}_predicted"] = result.predicted[:, j]
    width = result.features.shape[1]
    features = pd.DataFrame(
        result.features.round(5), columns=[f"feature_{i:03d}" for i in range(width)]
    )
    table = pd.concat([samples, pd.DataFrame(columns), features], axis=1)
    path = output_dir / "group_lsa_features.tsv"
    ds.write_tsv(path, table)
    ds.write_json(
        path.with_suffix(".json"),
        {
            "roi": {"Description": "basal-ganglia region (structure_hemisphere)"},
            "fold": {"Description": "the test fold of the session's subject"},
            "fa_predicted": {"Description": "out-of-fold FA predicted by the network"},
            "cbf_predicted": {"Description": "out-of-fold CBF (ml/100 g/min) predicted"},
            "feature_NNN": {
                "Description": f"the {width} values of the network's penultimate layer (after "
                "global average pooling), from the fold's network that did not train on this "
                "subject"
            },
        },
    )


def _write_classification(output_dir: Path, result: Classification) -> None:
    path = output_dir / "group_lsa_classification.tsv"
    if result.per_fold is not None:
        ds.write_tsv(path, result.per_fold.round(6))
    ds.write_json(
        path.with_suffix(".json"),
        {
            "Description": "Cross-validated logistic regression (standardised features, L2) "
            "of the outcome from the six regions' features of each subject's first session",
            "Outcome": result.outcome,
            "Classes": result.classes,
            "PositiveClass": result.classes[1] if len(result.classes) == 2 else None,
            "N": result.n,
            "Folds": result.folds,
            "Summary": result.metrics or None,
            "Warnings": result.warnings,
            "fold": {"Description": "test fold (1..k) or pooled"},
            "accuracy": {"Description": "proportion classified correctly (threshold 0.5)"},
            "balanced_accuracy": {"Description": "mean of the two classes' recall"},
            "roc_auc": {"Description": "area under the ROC curve of the predicted probability"},
        },
    )


def _write_saliency(
    output_dir: Path, data: PatchData, result: CVResult, labels: pd.Series, outcome: str | None
) -> None:
    if labels.empty:  # no outcome: one group of everyone
        labels = pd.Series("all", index=data.samples["participant_id"].unique())
    volume, described = average_by_group(data.samples, result.saliency, data.patches, labels)
    if not described:
        return
    path = output_dir / "group_lsa_saliency.nii.gz"
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    ds.write_nifti(path, nib.Nifti1Image(volume, affine))
    ds.write_json(
        output_dir / "group_lsa_saliency.json",
        {
            "Description": "Mean out-of-fold occlusion sensitivity (MONAI; absolute change of "
            "the FA and CBF outputs, in training-fold SDs, when a 12 mm cube is blurred out) "
            "and the mean T1w patch, per outcome group and region; one 3D volume per entry of "
            "Volumes (template orientation, 1.5 mm; n: patches averaged)",
            "Outcome": outcome,
            "Volumes": described,
        },
    )
