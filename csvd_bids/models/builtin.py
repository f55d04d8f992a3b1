"""The model bundles shipped inside the package (``csvd_bids/models/bundles``).

One for now: a FLAIR-only WMH UNet (``wmh_flair_unet``), trained on both generator engines and
profiles with contrast, resolution and slice-thickness randomisation (its ``TRAINING.md`` gives
the exact commands). ``--wmh-method model`` uses it in place of the WMH detector;
``detector`` (the default) runs it beside the detector as a second opinion on the detector's
volume (``second_opinion_bundles``, ``csvd_bids.models.second_opinion``). A shipped model becomes
a default only where it beats the detector on held-out synthetic seeds AND on real labelled
scans; this one does not yet
(README, Models: it beats the detector on the physics engine's clinical sessions only, pooled
Dice 0.82 against 0.78; on the real-scan test bed 0.79 against 0.86, on the real MS scans
0.23 / 0.60 against 0.28 / 0.71), so the detector stays the default. A WMH bundle given in
``--models-dir`` wins over the shipped one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

BUNDLES_DIR = Path(__file__).parent / "bundles"
WMH_BUNDLE = BUNDLES_DIR / "wmh_flair_unet"
SHIPPED_BUNDLES = {"wmh": WMH_BUNDLE}  # marker key -> bundle (csvd-bids-train --init shipped)
WMH_METHODS: tuple[str, ...] = ("detector", "model")


def builtin_bundles(wmh_method: str) -> dict:
    """marker key -> shipped bundle the run uses (checked as any bundle is)."""
    from csvd_bids.models.bundle import load_bundle

    if wmh_method != "model":
        return {}
    return {marker: load_bundle(path) for marker, path in SHIPPED_BUNDLES.items()}


def second_opinion_bundles(wmh_method: str, second_opinion: bool, replaced: dict) -> dict:
    """marker key -> shipped bundle that runs beside the marker's detector, whose mask is kept
    where the detector missed a large burden (``csvd_bids.models.second_opinion``); none where
    a bundle (``replaced``: marker key -> bundle) already replaces the detector, or when off.
    Its weights are checked where it runs (``load_bundle``), not here: planning stays light."""
    from csvd_bids.models.bundle import read_bundle
    from csvd_bids.models.second_opinion import THRESHOLD

    if not second_opinion or wmh_method == "model":
        return {}
    shipped = {m: read_bundle(p) for m, p in SHIPPED_BUNDLES.items() if m not in replaced}
    return {  # at the second opinion's threshold, which its description states
        m: replace(b, metadata={**b.metadata, "threshold": THRESHOLD}) for m, b in shipped.items()
    }
