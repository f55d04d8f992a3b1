"""Cross-validated classification of a two-level outcome from the network's features, with
the figures that put it in context: chance level, a 95 % confidence interval and a
permutation p-value.

One vector per subject: the features of the six regions of the subject's first session,
concatenated. The folds are the regression's (by participant, stratified by the outcome). In
fold k, the features of every subject come from fold k's network, which never saw the test
subjects (nor any outcome label): the classifier trains and tests in one feature space.
Classifier: standardisation and L2 logistic regression (C = 0.01, fixed beforehand, not tuned
on the data). The permutation test repeats the whole
cross-validation with the subjects' labels shuffled (Ojala and Garriga 2010: p = (count of
permuted accuracies >= observed + 1) / (permutations + 1)).

Too few subjects for the folds (a class with fewer subjects than folds leaves a test fold
without it) is a warning, and no figure is reported.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from csvd_bids.group.lsa_data import ROIS

SMALL_N = 50  # below: a caution that the interval is wide


@dataclass
class Classification:
    outcome: str
    classes: list[str]
    n: int = 0
    folds: int = 0
    metrics: dict = field(default_factory=dict)  # pooled figures; empty: not assessed
    per_fold: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (sound at 0 % and 100 %, unlike Wald's)."""
    if n == 0:
        return math.nan, math.nan
    z = norm.ppf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def subject_vectors(
    samples: pd.DataFrame, features: np.ndarray
) -> tuple[pd.Index, np.ndarray, list[str]]:
    """(participants, (m, 6 d) features of each one's first session, subjects left out)."""
    table = samples[["participant_id", "session_id", "roi"]].reset_index(drop=True)
    first = table.groupby("participant_id")["session_id"].min()
    chosen = table[table["session_id"] == table["participant_id"].map(first)]
    index = {(r.participant_id, r.roi): i for i, r in enumerate(chosen.itertuples())}
    rows = chosen.index.to_numpy()
    participants, vectors, left_out = [], [], []
    for participant in sorted(first.index):
        positions = [index.get((participant, roi)) for roi in ROIS]
        if any(p is None for p in positions):
            left_out.append(participant)
            continue
        participants.append(participant)
        vectors.append(np.concatenate([features[rows[p]] for p in positions]))
    width = features.shape[1] * len(ROIS)
    matrix = np.stack(vectors) if vectors else np.zeros((0, width))
    return pd.Index(participants), matrix, left_out


C_L2 = 0.01  # strong L2: thousands of features for tens to hundreds of subjects


def _classifier():
    return make_pipeline(StandardScaler(), LogisticRegression(C=C_L2, max_iter=2000))


def _cross_validated_scores(
    by_fold: list[np.ndarray], fold: np.ndarray, y: np.ndarray, seed: int
) -> np.ndarray:
    """Out-of-fold probability of class 1 per subject."""
    score = np.full(len(y), np.nan)
    for k, features in enumerate(by_fold):
        train, test = fold != k, fold == k
        if not test.any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = _classifier().fit(features[train], y[train])
        score[test] = model.predict_proba(features[test])[:, 1]
    return score


def classify(
    samples: pd.DataFrame,
    fold: np.ndarray,
    features_by_fold: list[np.ndarray],
    labels: pd.Series,
    outcome: str,
    n_permutations: int = 200,
    seed: int = 0,
) -> Classification:
    """Classify ``labels`` (participant -> one of two levels) from each fold's features."""
    levels = sorted(labels.dropna().astype(str).unique())
    result = Classification(outcome=outcome, classes=levels)
    n_folds = len(features_by_fold)
    result.folds = n_folds
    if len(levels) != 2:
        result.warnings.append(
            f"outcome {outcome!r} has {len(levels)} level(s) ({', '.join(levels)}); the "
            "classification needs exactly two: not assessed"
        )
        return result
    subject_fold = pd.Series(fold, index=samples["participant_id"].to_numpy())
    subject_fold = subject_fold[~subject_fold.index.duplicated()]
    vectors = [subject_vectors(samples, f) for f in features_by_fold]
    participants, _, left_out = vectors[0]
    if left_out:
        result.warnings.append(
            f"{len(left_out)} subject(s) without all six regions left out of the "
            f"classification: {', '.join(left_out[:10])}"
        )
    known = labels.reindex(participants)
    keep = known.notna().to_numpy()
    if (~keep).any():
        result.warnings.append(f"{int((~keep).sum())} subject(s) without {outcome!r} left out")
    participants = participants[keep]
    y = (known[keep].astype(str) == levels[1]).to_numpy(dtype=int)
    per_class = [int((y == c).sum()) for c in (0, 1)]
    result.n = len(y)
    if min(per_class) < n_folds:
        result.warnings.append(
            f"too few subjects for {n_folds}-fold cross-validation: {per_class[0]} {levels[0]} "
            f"and {per_class[1]} {levels[1]} (at least {n_folds} of each are needed for every "
            "test fold to hold both classes); no classification result is reported"
        )
        return result
    matrices = [v[1][keep] for v in vectors]
    subject_folds = subject_fold.reindex(participants).to_numpy()
    score = _cross_validated_scores(matrices, subject_folds, y, seed)
    predicted = (score >= 0.5).astype(int)
    rows = []
    for k in range(n_folds):
        test = subject_folds == k
        rows.append(_figures(str(k + 1), y[test], predicted[test], score[test]))
    pooled = _figures("pooled", y, predicted, score)
    rows.append(pooled)
    result.per_fold = pd.DataFrame(rows)
    # the permutation null: the same cross-validation with shuffled labels
    rng = np.random.default_rng(seed)
    null_accuracy, null_auc = [], []
    for _ in range(n_permutations):
        shuffled = rng.permutation(y)
        s = _cross_validated_scores(matrices, subject_folds, shuffled, seed)
        null_accuracy.append(accuracy_score(shuffled, (s >= 0.5).astype(int)))
        null_auc.append(roc_auc_score(shuffled, s))
    correct = int((predicted == y).sum())
    low, high = wilson_interval(correct, len(y))
    chance = max(per_class) / len(y)
    result.metrics = {
        **{k: v for k, v in pooled.items() if k != "fold"},
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
        "chance_level": chance,
        "permutations": n_permutations,
        "permutation_p_accuracy": _p(null_accuracy, pooled["accuracy"]),
        "permutation_p_roc_auc": _p(null_auc, pooled["roc_auc"]),
        "null_accuracy_mean": float(np.mean(null_accuracy)) if null_accuracy else math.nan,
        "n_per_class": dict(zip(levels, per_class, strict=True)),
    }
    result.warnings.extend(_context(result.metrics, len(y)))
    return result


def _figures(fold: str, y: np.ndarray, predicted: np.ndarray, score: np.ndarray) -> dict:
    both = len(set(y.tolist())) == 2
    return {
        "fold": fold,
        "n": len(y),
        "accuracy": accuracy_score(y, predicted),
        "balanced_accuracy": balanced_accuracy_score(y, predicted) if both else math.nan,
        "roc_auc": roc_auc_score(y, score) if both else math.nan,
    }


def _p(null: list[float], observed: float) -> float:
    if not null:
        return math.nan
    return (sum(v >= observed for v in null) + 1) / (len(null) + 1)


def _context(metrics: dict, n: int) -> list[str]:
    """Notes that keep a figure from being read on its own."""
    notes = []
    if n < SMALL_N:
        notes.append(
            f"small sample (N = {n}): the 95 % CI of the accuracy is "
            f"{metrics['accuracy_ci_low']:.2f}-{metrics['accuracy_ci_high']:.2f}"
        )
    if metrics["accuracy"] >= 0.99:
        notes.append(
            "perfect or near-perfect classification: on real cohorts this usually means the "
            "classes differ in something other than the disease (site, scanner, protocol, "
            "preprocessing, a label leaked into the images); check before reading it as a finding"
        )
    if metrics["permutation_p_accuracy"] >= 0.05:
        notes.append(
            f"accuracy {metrics['accuracy']:.2f} is not distinguishable from chance "
            f"(permutation p = {metrics['permutation_p_accuracy']:.3f}, chance level "
            f"{metrics['chance_level']:.2f}): no claim"
        )
    return notes
