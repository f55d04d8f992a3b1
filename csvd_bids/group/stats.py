"""Group statistics that clinical CSVD papers report, with statsmodels and scipy.

- Binary logistic regression of an outcome on covariates (odds ratios, 95 % CIs, p, N).
- Ordinal logistic regression of the total SVD score on the covariates.
- Descriptive statistics by group: mean (SD) and median (IQR) of numeric variables with a
  Welch t-test and a Mann-Whitney U test (two groups) or Kruskal-Wallis (more); counts of
  categorical variables with a chi-squared test.

Each subject enters once, with its first session (baseline) when it has several. Rows with a
missing value in the model's columns are dropped (the N says how many remained); constant
covariates are dropped; too few subjects, perfect separation and a fit that does not converge
give a warning in the outputs instead of a crash.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

DEFAULT_COVARIATES = ("age", "sex", "systolic_bp", "total_cholesterol", "svd_score")
MIN_SUBJECTS_PER_TERM = 5  # fewer complete subjects per model term: no fit, a warning


@dataclass
class ModelResult:
    """One fitted (or refused) model: its coefficient table and what went wrong."""

    model: str
    outcome: str
    n: int
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)


def baseline(table: pd.DataFrame) -> pd.DataFrame:
    """The first session of each subject (sessions sorted by label)."""
    ordered = table.sort_values(["participant_id", "session_id"], na_position="first")
    return ordered.drop_duplicates("participant_id", keep="first").reset_index(drop=True)


def _design(
    data: pd.DataFrame, outcome: str, covariates: list[str], notes: list[str]
) -> tuple[pd.Series, pd.DataFrame]:
    """Complete cases, categorical covariates as 0/1 columns, constant columns dropped."""
    present = [c for c in covariates if c in data.columns]
    for missing in sorted(set(covariates) - set(present)):
        notes.append(f"covariate {missing!r} not found: left out")
    complete = data[[outcome, *present]].dropna()
    if len(complete) < len(data):
        notes.append(f"{len(data) - len(complete)} subject(s) with missing values left out")
    constant = [c for c in present if complete[c].nunique() <= 1]
    for c in constant:
        notes.append(f"covariate {c!r} is constant: left out")
    kept = [c for c in present if c not in constant]
    if not kept:  # pandas cannot make dummies of no column (e.g. one subject)
        return complete[outcome], pd.DataFrame(index=complete.index)
    x = pd.get_dummies(complete[kept], drop_first=True, dtype=float)
    return complete[outcome], x.astype(float)


def _coefficients(fit, names: list[str]) -> pd.DataFrame:
    """Odds ratios with 95 % CIs and Wald p of the covariates (the ordinal model's
    thresholds are left out)."""
    table = pd.DataFrame(
        {
            "term": fit.model.exog_names,
            "coefficient": np.asarray(fit.params),
            "ci_low": np.asarray(fit.conf_int())[:, 0],
            "ci_high": np.asarray(fit.conf_int())[:, 1],
            "p_value": np.asarray(fit.pvalues),
        }
    )
    table = table[table["term"].isin(names)].reset_index(drop=True)
    with np.errstate(over="ignore"):  # a separated covariate's odds ratio is inf, not an error
        table.insert(2, "odds_ratio", np.exp(table["coefficient"]))
        table[["ci_low", "ci_high"]] = np.exp(table[["ci_low", "ci_high"]])
    return table


def _fit(model, notes: list[str], method: str = "newton"):
    """Fit, turning statsmodels' warnings (convergence, separation) into notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(method=method, disp=False, maxiter=200)
    for w in caught:
        text = str(w.message).splitlines()[0]
        if "separation" in text.lower() or "converge" in text.lower():
            notes.append(text)
    return fit


def logistic_regression(data: pd.DataFrame, outcome: str, covariates: list[str]) -> ModelResult:
    """Binary logistic regression of a two-level ``outcome`` column on ``covariates``."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationError

    notes: list[str] = []
    y, x = _design(data, outcome, covariates, notes)
    levels = sorted(y.unique().tolist(), key=str)
    result = ModelResult("logistic", outcome, len(y), warnings=notes)
    if len(levels) != 2:
        notes.append(f"outcome {outcome!r} has {len(levels)} level(s), logistic needs 2")
        return result
    if len(y) < MIN_SUBJECTS_PER_TERM * (x.shape[1] + 1):
        notes.append(f"{len(y)} subjects for {x.shape[1]} covariate(s): too few to fit")
        return result
    # the event is the level that is not "control" (else the later one in sort order)
    reference = next((v for v in levels if str(v) == "control"), levels[0])
    event = next(v for v in levels if v != reference)
    notes.append(f"odds of {outcome} = {event!r} against {reference!r}")
    try:
        fit = _fit(sm.Logit((y == event).astype(float), sm.add_constant(x)), notes)
    except (PerfectSeparationError, np.linalg.LinAlgError) as exc:
        notes.append(f"not fitted: {exc}")
        return result
    result.table = _coefficients(fit, list(x.columns))
    return result


def ordinal_regression(data: pd.DataFrame, outcome: str, covariates: list[str]) -> ModelResult:
    """Proportional-odds (ordinal logistic) regression of ``outcome`` on ``covariates``."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    notes: list[str] = []
    covariates = [c for c in covariates if c != outcome]
    y, x = _design(data, outcome, covariates, notes)
    result = ModelResult("ordinal_logistic", outcome, len(y), warnings=notes)
    if y.nunique() < 2:
        notes.append(f"{outcome!r} takes {y.nunique()} value(s): nothing to model")
        return result
    if len(y) < MIN_SUBJECTS_PER_TERM * (x.shape[1] + y.nunique() - 1) or x.shape[1] == 0:
        notes.append(f"{len(y)} subjects for {x.shape[1]} covariate(s): too few to fit")
        return result
    ordered = pd.Series(pd.Categorical(y.astype(int), ordered=True), index=y.index)
    try:
        # BFGS: the default Nelder-Mead stops before converging with a few covariates
        fit = _fit(OrderedModel(ordered, x, distr="logit"), notes, method="bfgs")
    except (ValueError, np.linalg.LinAlgError) as exc:
        notes.append(f"not fitted: {exc}")
        return result
    result.table = _coefficients(fit, list(x.columns))
    return result


def describe_by_group(data: pd.DataFrame, group: str, variables: list[str]) -> pd.DataFrame:
    """One row per variable and level/statistic: values per group and the test's p-value."""
    groups = sorted(data[group].dropna().unique().tolist(), key=str)
    rows = []
    for variable in variables:
        if variable not in data.columns or variable == group:
            continue
        column = data[variable]
        numeric = pd.api.types.is_numeric_dtype(column)
        if numeric:
            samples = [column[data[group] == g].dropna().astype(float) for g in groups]
            row = {"variable": variable, "statistic": "mean (SD); median [IQR]"}
            for g, s in zip(groups, samples, strict=True):
                q1, q3 = s.quantile([0.25, 0.75]) if len(s) else (np.nan, np.nan)
                row[f"{group}={g}"] = (
                    f"{s.mean():.2f} ({s.std():.2f}); {s.median():.2f} [{q1:.2f}, {q3:.2f}]"
                    if len(s)
                    else "n/a"
                )
                row[f"n_{g}"] = len(s)
            row.update(_numeric_tests(samples))
            rows.append(row)
        else:
            counts = pd.crosstab(column, data[group])
            p = np.nan
            if counts.shape[0] > 1 and counts.shape[1] > 1:
                p = float(stats.chi2_contingency(counts)[1])
            for level, line in counts.iterrows():
                row = {"variable": variable, "statistic": f"count {variable}={level}"}
                row.update({f"{group}={g}": int(line.get(g, 0)) for g in groups})
                row.update({"test": "chi-squared", "p_value": p})
                rows.append(row)
    return pd.DataFrame(rows)


def _numeric_tests(samples: list[pd.Series]) -> dict:
    usable = [s for s in samples if len(s) >= 2]
    if len(usable) < 2 or all(s.nunique() <= 1 for s in usable):
        return {"test": "n/a (too few values)", "p_value": np.nan}
    if len(usable) == 2:
        welch = stats.ttest_ind(*usable, equal_var=False)
        mann = stats.mannwhitneyu(*usable)
        return {
            "test": "Welch t-test",
            "p_value": float(welch.pvalue),
            "p_value_mann_whitney": float(mann.pvalue),
        }
    return {"test": "Kruskal-Wallis", "p_value": float(stats.kruskal(*usable).pvalue)}
