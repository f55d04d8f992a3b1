"""Demographics and the documented lesion-burden model of the synthetic cohort.

Per subject (its own random stream, so a subject does not change when the cohort grows):

- age ~ Uniform(50, 85) years; sex M/F with probability 1/2.
- systolic_bp = 120 + 0.6 * (age - 50) + Normal(0, 12) mmHg (rises with age).
- total_cholesterol ~ Normal(5.2, 1.0) mmol/L (no effect on burden).
- latent burden b = 0.8 * z_age + 0.6 * z_sbp + Normal(0, 0.5), with the population
  standardisations z_age = (age - 67.5) / 10.1 and z_sbp = (sbp - 130.5) / 13.5.
- group = lacunar_stroke with probability logistic(-0.5 + 1.5 * b), else control.
- baseline lesion load from b (Poisson counts, log-normal WMH volume):
  WMH volume = exp(log 4 + 1.0 * b + Normal(0, 0.4)) mL, clipped to [0.5, 60] mL;
  deep WMH foci ~ Poisson(2 * exp(0.7 b)); CMB ~ Poisson(1.0 * exp(0.9 b));
  lacunes ~ Poisson(0.5 * exp(0.8 b) + 0.8 [stroke]); BG-PVS ~ Poisson(8 * exp(0.5 b));
  CSO-PVS ~ Poisson(10 * exp(0.4 b)); counts are capped to keep rendering fast.
- one recent small subcortical infarct (RSSI) with probability 0.8 (stroke) or 0.1
  (control), in one session drawn uniformly.
- later sessions: WMH volume x Uniform(1.05, 1.25) per session and about a quarter of
  the baseline rates of new deep WMH foci, CMB, lacunes and PVS.

Clinical profile (``draw_load(..., clinical=True)``): everything above is drawn as in the
research profile (the same seed gives the same demographics and lesion counts), then the
baseline WMH volume is replaced by a draw from a mixture of three equally likely uniforms,
Uniform(0.5, 20), Uniform(20, 80) and Uniform(80, 150) mL, independent of the latent burden
(clinical series are selected on disease): a third of the subjects light, a third moderate,
a third with confluent WMH of 80-150 mL (real clinical series span about 10 to 130 mL). The
later sessions grow from it as above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AGE_RANGE = (50.0, 85.0)
AGE_MEAN, AGE_SD = 67.5, 10.1
SBP_MEAN, SBP_SD = 130.5, 13.5
BURDEN_AGE, BURDEN_SBP, BURDEN_NOISE = 0.8, 0.6, 0.5
CAPS = {"cmb": 25, "lac": 10, "pvs_bg": 45, "pvs_cso": 45, "wmh_deep": 25}
CLINICAL_WMH_ML = ((0.5, 20.0), (20.0, 80.0), (80.0, 150.0))  # equally likely components


@dataclass(frozen=True)
class Participant:
    age: float
    sex: str
    systolic_bp: float
    total_cholesterol: float
    burden: float
    group: str


@dataclass(frozen=True)
class LesionLoad:
    wmh_ml: float
    rates: dict[str, float]  # Poisson means of the baseline counts, keys as in CAPS
    counts: dict[str, int]  # baseline counts
    rssi_session: int | None  # 0-based session holding the RSSI, if any


def burden(age: np.ndarray | float, sbp: np.ndarray | float, noise: np.ndarray | float):
    """Latent small-vessel-disease burden: linear in standardised age and SBP plus noise."""
    z_age = (np.asarray(age) - AGE_MEAN) / AGE_SD
    z_sbp = (np.asarray(sbp) - SBP_MEAN) / SBP_SD
    return BURDEN_AGE * z_age + BURDEN_SBP * z_sbp + noise


def draw_participant(rng: np.random.Generator) -> Participant:
    age = float(rng.uniform(*AGE_RANGE))
    sex = "M" if rng.random() < 0.5 else "F"
    sbp = float(120.0 + 0.6 * (age - 50.0) + rng.normal(0.0, 12.0))
    chol = float(rng.normal(5.2, 1.0))
    b = float(burden(age, sbp, rng.normal(0.0, BURDEN_NOISE)))
    stroke = rng.random() < 1.0 / (1.0 + np.exp(-(-0.5 + 1.5 * b)))
    return Participant(
        age=round(age, 1),
        sex=sex,
        systolic_bp=round(sbp),
        total_cholesterol=round(chol, 1),
        burden=b,
        group="lacunar_stroke" if stroke else "control",
    )


def clinical_wmh_ml(rng: np.random.Generator) -> float:
    """Baseline WMH volume of the clinical profile: the mixture of ``CLINICAL_WMH_ML``."""
    low, high = CLINICAL_WMH_ML[int(rng.integers(len(CLINICAL_WMH_ML)))]
    return float(rng.uniform(low, high))


def draw_load(
    rng: np.random.Generator, person: Participant, n_sessions: int, clinical: bool = False
) -> LesionLoad:
    """Baseline lesion load (module docstring); ``clinical``: the clinical WMH volume."""
    b = person.burden
    stroke = person.group == "lacunar_stroke"
    wmh_ml = float(np.clip(np.exp(np.log(4.0) + b + rng.normal(0.0, 0.4)), 0.5, 60.0))
    rates = {
        "wmh_deep": 2.0 * np.exp(0.7 * b),
        "cmb": 1.0 * np.exp(0.9 * b),
        "lac": 0.5 * np.exp(0.8 * b) + (0.8 if stroke else 0.0),
        "pvs_bg": 8.0 * np.exp(0.5 * b),
        "pvs_cso": 10.0 * np.exp(0.4 * b),
    }
    counts = {k: int(min(rng.poisson(rates[k]), CAPS[k])) for k in CAPS}
    has_rssi = rng.random() < (0.8 if stroke else 0.1)
    rssi_session = int(rng.integers(n_sessions)) if has_rssi else None
    if clinical:  # drawn last: the research draws above stay the same
        wmh_ml = clinical_wmh_ml(rng)
    return LesionLoad(wmh_ml, {k: float(v) for k, v in rates.items()}, counts, rssi_session)
