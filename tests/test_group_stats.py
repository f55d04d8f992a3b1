"""Group statistics on cohorts drawn by the generator's own burden model (no images needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from csvd_bids.group.analysis import analyse, change_table
from csvd_bids.group.stats import (
    baseline,
    describe_by_group,
    logistic_regression,
    ordinal_regression,
)
from csvd_bids.synth.dataset import draw_cohort

CLINICAL = ["age", "sex", "systolic_bp", "total_cholesterol"]


def _cohort(n: int, seed: int) -> pd.DataFrame:
    people = draw_cohort(n, seed)
    table = pd.DataFrame(
        {
            "participant_id": [f"sub-{i:03d}" for i in range(1, n + 1)],
            "session_id": np.nan,
            "age": [p.age for p in people],
            "sex": [p.sex for p in people],
            "systolic_bp": [p.systolic_bp for p in people],
            "total_cholesterol": [p.total_cholesterol for p in people],
            "group": [p.group for p in people],
        }
    )
    # a total SVD score that rises with the latent burden, as the planted lesions do
    burden = np.array([p.burden for p in people])
    table["svd_score"] = np.clip(np.round(burden + 1.5), 0, 4).astype(int)
    return table


def test_logistic_recovers_the_planted_age_and_blood_pressure_effects():
    result = logistic_regression(_cohort(60, seed=1), "group", CLINICAL)
    terms = result.table.set_index("term")
    assert result.n == 60
    assert terms.loc["age", "odds_ratio"] > 1 and terms.loc["age", "p_value"] < 0.05
    assert terms.loc["systolic_bp", "odds_ratio"] > 1
    assert (terms["ci_low"] <= terms["odds_ratio"]).all()
    assert (terms["odds_ratio"] <= terms["ci_high"]).all()
    assert any("lacunar_stroke" in w and "control" in w for w in result.warnings)


def test_ordinal_regression_of_the_svd_score():
    result = ordinal_regression(_cohort(60, seed=2), "svd_score", ["age", "systolic_bp"])
    terms = result.table.set_index("term")
    assert list(terms.index) == ["age", "systolic_bp"]  # thresholds are not reported
    assert terms.loc["age", "odds_ratio"] > 1 and terms.loc["age", "p_value"] < 0.05


def test_missing_values_and_constant_columns_are_left_out_with_a_warning():
    table = _cohort(60, seed=3)
    table.loc[:4, "age"] = np.nan
    table["site"] = "A"
    result = logistic_regression(table, "group", [*CLINICAL, "site", "absent"])
    assert result.n == 55 and not result.table.empty
    text = " ".join(result.warnings)
    assert "5 subject(s) with missing values" in text
    assert "'site' is constant" in text and "'absent' not found" in text


def test_perfect_separation_and_too_few_subjects_warn_instead_of_crashing():
    table = _cohort(60, seed=4)
    table["marker"] = (table["group"] == "lacunar_stroke").astype(float)  # separates perfectly
    result = logistic_regression(table, "group", ["marker"])
    assert result.table.empty or result.warnings[1:]
    assert any("separation" in w.lower() or "not fitted" in w for w in result.warnings)
    few = logistic_regression(table.head(8), "group", CLINICAL)
    assert few.table.empty and any("too few" in w for w in few.warnings)
    three = table.assign(group=["a", "b", "c"] * 20)
    assert any("3 level(s)" in w for w in logistic_regression(three, "group", CLINICAL).warnings)


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_subjects_give_warnings_not_a_crash(n):
    """Every covariate of a single subject is constant: no design matrix at all."""
    models, described, notes = analyse(_cohort(n, seed=8), None, None)
    assert all(model.table.empty for model in models)
    assert any("constant" in w or "too few" in w or "nothing to model" in w
               for model in models for w in model.warnings)  # fmt: skip
    assert not described.empty


def test_descriptives_by_group():
    table = _cohort(60, seed=5)
    described = describe_by_group(table, "group", ["age", "sex"])
    age = described[described["variable"] == "age"].iloc[0]
    assert age["test"] == "Welch t-test" and 0 <= age["p_value"] <= 1
    assert age["n_control"] + age["n_lacunar_stroke"] == 60
    sexes = described[described["variable"] == "sex"]
    assert set(sexes["statistic"]) == {"count sex=F", "count sex=M"}
    assert sexes[["group=control", "group=lacunar_stroke"]].to_numpy().sum() == 60


def test_analyse_uses_the_default_outcome_and_the_baseline_session():
    table = _cohort(40, seed=6)
    later = table.assign(session_id="ses-2", svd_score=table["svd_score"] + 1)
    both = pd.concat([table.assign(session_id="ses-1"), later], ignore_index=True)
    assert (baseline(both)["session_id"] == "ses-1").all()
    models, described, notes = analyse(both, None, None)
    assert [m.model for m in models] == ["logistic", "ordinal_logistic"]
    assert models[0].outcome == "group" and models[0].n == 40
    assert not notes and not described.empty


def test_without_a_two_level_group_there_is_no_logistic_model():
    table = _cohort(40, seed=7).drop(columns="group")
    models, _, notes = analyse(table, None, None)
    assert [m.model for m in models] == ["ordinal_logistic"]
    assert "no outcome" in notes[0]


def test_change_table_for_subjects_with_several_sessions():
    table = pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-01", "sub-01", "sub-02"],
            "session_id": ["ses-1", "ses-2", "ses-3", "ses-1"],
            "WMH_volume_mm3": [1000.0, 1200.0, 1500.0, 50.0],
            "svd_score": [1, 1, 2, 0],
            "CMB_count": [0, "n/a", 1, 0],
        }
    )
    changes = change_table(table)
    assert list(changes["participant_id"]) == ["sub-01"]
    row = changes.iloc[0]
    assert row["n_sessions"] == 3 and row["last_session"] == "ses-3"
    assert row["WMH_volume_mm3_change"] == pytest.approx(500.0)
    assert row["svd_score_change"] == 1 and row["CMB_count_change"] == 1
