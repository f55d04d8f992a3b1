"""The group analyses and their files: ``group_stats.tsv``/``.json``,
``group_descriptives.tsv`` and, for subjects with several sessions, ``group_change.tsv``.

Defaults (as the clinical papers): when ``participants.tsv`` has a two-level ``group`` column,
the outcome is that group and the covariates are age, sex, systolic blood pressure, total
cholesterol and the total SVD score, where present. The ordinal model explains the total SVD
score by the same covariates (less the score itself).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from csvd_bids.bids import derivatives as ds
from csvd_bids.group.stats import (
    DEFAULT_COVARIATES,
    ModelResult,
    baseline,
    describe_by_group,
    logistic_regression,
    ordinal_regression,
)

LOGGER = logging.getLogger("csvd_bids.group")
SCORE = "svd_score"
# per-session figures whose change between sessions the change table reports
CHANGE_COLUMNS = (
    "WMH_volume_mm3",
    "WMH_count",
    "CMB_count",
    "PVS_count",
    "LAC_count",
    "RSSI_count",
    "fazekas_pv",
    "fazekas_deep",
    "svd_score",
    "ha_score",
    "brain_volume_mm3",
)
DESCRIBED = (
    "age",
    "sex",
    "systolic_bp",
    "total_cholesterol",
    SCORE,
    "ha_score",
    "WMH_volume_mm3",
    "WMH_icv_fraction",
    "CMB_count",
    "LAC_count",
    "PVS_BG_count",
    "PVS_CSO_count",
)


def default_outcome(table: pd.DataFrame) -> str | None:
    """``group`` when it has exactly two levels."""
    if "group" in table.columns and table["group"].dropna().nunique() == 2:
        return "group"
    return None


def analyse(
    table: pd.DataFrame, outcome: str | None, covariates: tuple[str, ...] | None
) -> tuple[list[ModelResult], pd.DataFrame, list[str]]:
    """(models, descriptive table, warnings) on the baseline session of each subject."""
    notes: list[str] = []
    subjects = baseline(table)
    outcome = outcome or default_outcome(subjects)
    chosen = list(covariates) if covariates else list(DEFAULT_COVARIATES)
    models = []
    missing = outcome_problem(outcome, subjects.columns, "logistic regression")
    if missing:
        notes.append(missing)
    else:
        models.append(logistic_regression(subjects, outcome, [c for c in chosen if c != outcome]))
    if SCORE in subjects.columns:
        models.append(ordinal_regression(subjects, SCORE, [c for c in chosen if c != outcome]))
    group = outcome if outcome in subjects.columns else None
    described = describe_by_group(
        subjects.assign(_all="all") if group is None else subjects,
        group or "_all",
        [c for c in dict.fromkeys([*DESCRIBED, *chosen]) if c in subjects.columns],
    )
    return models, described, notes


def change_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per subject with several sessions: first and last session and the change of each figure."""
    rows = []
    for subject, sessions in table.dropna(subset=["session_id"]).groupby("participant_id"):
        if len(sessions) < 2:
            continue
        ordered = sessions.sort_values("session_id")
        first, last = ordered.iloc[0], ordered.iloc[-1]
        row = {
            "participant_id": subject,
            "first_session": first["session_id"],
            "last_session": last["session_id"],
            "n_sessions": len(ordered),
        }
        for column in CHANGE_COLUMNS:
            if column in ordered.columns:
                a, b = pd.to_numeric(pd.Series([first[column], last[column]]), errors="coerce")
                row[f"{column}_change"] = b - a
        rows.append(row)
    return pd.DataFrame(rows)


def outcome_problem(outcome: str | None, columns, skipped: str) -> str | None:
    """Why the outcome cannot be analysed (``skipped``: what is not done then), or None."""
    if outcome is None:
        return (
            "no outcome: participants.tsv has no two-level 'group' column and --group-outcome "
            f"was not given; {skipped} skipped"
        )
    if outcome not in columns:
        return f"outcome column {outcome!r} not found in the group table"
    return None


def write_group_analyses(
    table: pd.DataFrame,
    output_dir: Path,
    outcome: str | None = None,
    covariates: tuple[str, ...] | None = None,
) -> list[Path]:
    models, described, notes = analyse(table, outcome, covariates)
    rows = []
    for model in models:
        for warning in model.warnings:
            notes.append(f"{model.model} ({model.outcome}): {warning}")
        for _, coefficient in model.table.iterrows():
            rows.append(
                {
                    "model": model.model,
                    "outcome": model.outcome,
                    "n": model.n,
                    **coefficient.to_dict(),
                }
            )
        if model.table.empty:
            rows.append(
                {
                    "model": model.model,
                    "outcome": model.outcome,
                    "n": model.n,
                    "term": "n/a (not fitted: see warnings)",
                }
            )
    stats_table = pd.DataFrame(
        rows,
        columns=[
            "model",
            "outcome",
            "n",
            "term",
            "coefficient",
            "odds_ratio",
            "ci_low",
            "ci_high",
            "p_value",
        ],
    )
    written = []
    path = output_dir / "group_stats.tsv"
    ds.write_tsv(path, stats_table.round(6))
    ds.write_json(
        path.with_suffix(".json"),
        {
            "Description": "Logistic and ordinal logistic regressions on the baseline session "
            "of each subject (csvd_bids.group.stats)",
            "Warnings": notes,
            "Models": [
                {"model": m.model, "outcome": m.outcome, "n": m.n, "warnings": m.warnings}
                for m in models
            ],
            "Columns": {
                "odds_ratio": "exp(coefficient): the odds ratio per unit (per level for "
                "categorical covariates)",
                "ci_low": "lower 95 % confidence limit of the odds ratio",
                "ci_high": "upper 95 % confidence limit of the odds ratio",
                "p_value": "Wald test",
            },
        },
    )
    written.append(path)
    path = output_dir / "group_descriptives.tsv"
    ds.write_tsv(path, described)
    written.append(path)
    changes = change_table(table)
    if not changes.empty:
        path = output_dir / "group_change.tsv"
        ds.write_tsv(path, changes)
        written.append(path)
    for note in notes:
        LOGGER.warning("group statistics: %s", note)
    return written
