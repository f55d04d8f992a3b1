"""The shipped WMH model beside the WMH detector: which of the two masks a session keeps.

The detector (the default method) measures WMH against the subject's normal-appearing white
matter and the cortex; when lesions are faint and most of the white matter, both references
are lesion and almost nothing stands out (a Fazekas 3 patient found as 2 ml). The shipped model
(``csvd_bids.models.builtin``) learned what lesions look like instead, but finds small burdens
worse than the detector. So the detector's mask is kept unless the model finds a burden over
``MIN_MODEL_ML`` and the detector less than ``SHARE`` of it (or could not assess the images:
too little normal-appearing white matter is the same failure); then the model's mask is kept,
and a note says so (the mask's sidecar and ``qc_warnings``). Where the model finds over
``CHECK_MODEL_ML`` and the detector less than ``SHARE`` of it, the detector's mask is kept with
a warning: a wrong switch costs more than a look.

Measured detector / model volume ratios (``benchmarks/bundle_evaluation.py``, 2026-12-06):
0.02 and 0.32 where the detector missed most of a burden over 20 ml (physics clinical seed 617:
98.7 ml found as 1.7 ml, the model 87 ml, Dice 0.82; 29 ml found as 7.8, the model 24 ml, Dice
0.71); 0.64-1.30 on the 9 other sessions where the model finds over 20 ml (the real-scan
test bed of ``benchmarks/clinical_testbed.py``, physics seeds 610 and 617), 0.85-1.06 on the 3
where it finds 10-20 ml, 0-4.6 below 10 ml (template seeds 601-604, physics seeds 606-616, the
real MS scans), where the detector is kept whatever the ratio.

The model runs here at ``THRESHOLD`` (0.5), not at its own 0.9: faint lesions get middling
probabilities, and at 0.9 it found faint burdens of 32-114 ml as 11-39 ml, mostly under
``MIN_MODEL_ML``. At 0.5 (README, WMH: the second opinion at probability 0.5) the ratio is
0.56-0.95 on the 11 sessions where the detector is right and the model finds over 20 ml, and
0.01-0.14 on the 8 faint sessions where the detector missed the burden.

Between CHECK_MODEL_ML and MIN_MODEL_ML the model's mask is kept where the detector found
less than LOW_SHARE of it (README, WMH: small faint burdens, 2026-12-07): on the faint
real-scan test beds the detector / model ratio was 0.05 and 0.14 on two faint burdens of 12
and 16 ml that the detector missed (Dice 0.04 and 0.07, the model 0.50 and 0.52), and 0.29 and
0.36 on the two sessions of 7 and 8 ml where the detector was right and the model larger.
"""

from __future__ import annotations

THRESHOLD = 0.5  # the model's probability threshold here (its own, 0.9, for --wmh-method model)
MIN_MODEL_ML = 20.0  # a model volume over this, with the detector under SHARE of it: model
CHECK_MODEL_ML = 10.0  # ... over this: the detector's mask is kept, with a warning
SHARE = 0.5
LOW_SHARE = 0.2  # ... over CHECK_MODEL_ML with the detector under this share of it: model

DETECTOR, CHECK, MODEL = "detector", "check", "model"


def verdict(detector_ml: float | None, model_ml: float) -> str:
    """MODEL where the detector found less than SHARE of a model volume over MIN_MODEL_ML or
    could not assess the images (``detector_ml`` None), or less than LOW_SHARE of one over
    CHECK_MODEL_ML; CHECK where it found less than SHARE of one over CHECK_MODEL_ML (the
    detector's mask is kept, with a warning); else DETECTOR."""
    if detector_ml is not None and detector_ml >= SHARE * model_ml:
        return DETECTOR
    if model_ml > MIN_MODEL_ML:
        return MODEL
    if model_ml <= CHECK_MODEL_ML or detector_ml is None:
        return DETECTOR
    return MODEL if detector_ml < LOW_SHARE * model_ml else CHECK


def note(choice: str, detector: float | str, model_ml: float) -> str | None:
    """The note (sidecar ``Notes``, ``qc_warnings``) of a MODEL or CHECK verdict, else None;
    ``detector``: the detector's volume (ml), or why it could not assess the images."""
    if choice == DETECTOR:
        return None
    found = (
        f"the detector found {detector:.1f} ml"
        if isinstance(detector, float)
        else f"the detector did not assess these images ({detector})"
    )
    if choice == MODEL:
        return (
            f"{found}, the shipped WMH model {model_ml:.1f} ml: faint or confluent WMH, the "
            "model's mask is used (second opinion); check it"
        )
    return (
        f"{found}, the shipped WMH model {model_ml:.1f} ml (second opinion): faint WMH may "
        "have been missed; check the mask, and compare with --wmh-method model"
    )
