"""The shipped WMH model beside the WMH detector: which of the two masks a session keeps.

The detector (the default method) measures WMH against the subject's normal-appearing white
matter and the cortex; when lesions are faint and most of the white matter, both references
are lesion and almost nothing stands out (a Fazekas 3 patient found as 2 ml). The shipped model
(``csvd_bids.models.builtin``) learned what lesions look like instead, but finds small burdens
worse than the detector. So the detector's mask is kept unless the model finds a burden over
``MIN_MODEL_ML`` and the detector less than ``SHARE`` of it (or could not assess the images:
too little normal-appearing white matter is the same failure); then the model's mask is kept,
and a note says so (the mask's sidecar and ``qc_warnings``).

Measured detector / model volume ratios (``benchmarks/bundle_evaluation.py``, 2026-12-06):
0.02 and 0.32 where the detector missed most of a burden over 20 ml (physics clinical seed 617:
98.7 ml found as 1.7 ml, the model 87 ml, Dice 0.82; 29 ml found as 7.8, the model 24 ml, Dice
0.71); 0.64-1.30 on the 9 other sessions where the model finds over 20 ml (template clinical
test bed, physics seeds 610 and 617), 0.32-4.6 below 20 ml (template seeds 601-604, physics
seeds 606-616, the real MS scans), where the detector is kept whatever the ratio.
"""

from __future__ import annotations

MIN_MODEL_ML = 20.0
SHARE = 0.5


def prefer_model(detector_ml: float | None, model_ml: float) -> bool:
    """Whether the model's mask replaces the detector's: the detector found less than SHARE of
    a model volume over MIN_MODEL_ML, or could not assess the images (``detector_ml`` None)."""
    if model_ml <= MIN_MODEL_ML:
        return False
    return detector_ml is None or detector_ml < SHARE * model_ml


def model_used_note(detector: float | str, model_ml: float) -> str:
    """The note (sidecar ``Notes``, ``qc_warnings``) of a session whose mask is the model's;
    ``detector``: the detector's volume (ml), or why it could not assess the images."""
    found = (
        f"the detector found {detector:.1f} ml"
        if isinstance(detector, float)
        else f"the detector did not assess these images ({detector})"
    )
    return (
        f"{found}, the shipped WMH model {model_ml:.1f} ml: faint or confluent WMH, the "
        "model's mask is used (second opinion); check it"
    )
