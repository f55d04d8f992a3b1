"""Total CSVD scores from a session's ratings and counts (``../shared/domain.md``).

- Staals total SVD score (0-4), one point each: any lacune; any microbleed; BG-PVS grade >= 2;
  periventricular Fazekas 3 and/or deep Fazekas 2-3.
- Hypertensive-arteriopathy score (0-4): deep Fazekas 2-3; BG-PVS grade >= 2; any deep
  microbleed; any deep lacune.
- CAA-SVD score (0-6): lobar microbleeds 2-4 = 1, >= 5 = 2; cortical superficial siderosis
  focal = 1, disseminated = 2; CSO-PVS grade >= 3 (more than 20) = 1; periventricular Fazekas 3
  and/or deep Fazekas 2-3 = 1. Siderosis is not segmented by this version, so the score is n/a
  with that reason; ``caa_svd_score_without_css`` (0-4) sums the other components.

A component whose marker was not assessed makes its score n/a, with the reason: never 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

CSS_NOT_ASSESSED = "cortical superficial siderosis is not segmented by this version"


@dataclass(frozen=True)
class Component:
    """One term of a score: the markers it needs and its points from the session's figures."""

    name: str
    markers: tuple[str, ...]  # marker labels (WMH, CMB, PVS, LAC) whose status it needs
    points: Callable[[dict], int]


def _wmh_point(f: dict) -> int:
    return int(f["fazekas_pv"] == 3 or f["fazekas_deep"] >= 2)


def _lobar_cmb_points(f: dict) -> int:
    count = f["CMB_lobar_count"]
    return 2 if count >= 5 else int(count >= 2)


SCORES: dict[str, tuple[Component, ...]] = {
    "svd_score": (
        Component("any lacune", ("LAC",), lambda f: int(f["LAC_count"] > 0)),
        Component("any microbleed", ("CMB",), lambda f: int(f["CMB_count"] > 0)),
        Component("BG-PVS grade >= 2", ("PVS",), lambda f: int(f["PVS_BG_grade"] >= 2)),
        Component("Fazekas PV 3 or deep >= 2", ("WMH",), _wmh_point),
    ),
    "ha_score": (
        Component("deep Fazekas >= 2", ("WMH",), lambda f: int(f["fazekas_deep"] >= 2)),
        Component("BG-PVS grade >= 2", ("PVS",), lambda f: int(f["PVS_BG_grade"] >= 2)),
        Component("any deep microbleed", ("CMB",), lambda f: int(f["CMB_deep_count"] > 0)),
        Component("any deep lacune", ("LAC",), lambda f: int(f["LAC_deep_count"] > 0)),
    ),
    "caa_svd_score_without_css": (
        Component("lobar microbleeds 2-4 = 1, >= 5 = 2", ("CMB",), _lobar_cmb_points),
        Component("CSO-PVS grade >= 3", ("PVS",), lambda f: int(f["PVS_CSO_grade"] >= 3)),
        Component("Fazekas PV 3 or deep >= 2", ("WMH",), _wmh_point),
    ),
}
SCORE_TITLES = {
    "svd_score": "Staals total SVD score",
    "ha_score": "Hypertensive-arteriopathy score",
    "caa_svd_score": "CAA-SVD score",
    "caa_svd_score_without_css": "CAA-SVD score without cortical superficial siderosis",
}
SCORE_RANGES = {"svd_score": 4, "ha_score": 4, "caa_svd_score": 6, "caa_svd_score_without_css": 4}


def compute_scores(figures: dict, statuses: dict[str, tuple[bool, str]]) -> dict:
    """{score: points or None, score_reason: why n/a or ""} for every score.

    ``figures``: the summary's counts and ratings; ``statuses``: marker label -> (assessed,
    reason it was not).
    """
    out: dict = {}
    for score, components in SCORES.items():
        missing = {m: statuses[m][1] for c in components for m in c.markers if not statuses[m][0]}
        if missing:
            out[score] = None
            out[f"{score}_reason"] = "; ".join(
                f"{m} not assessed ({why})" for m, why in missing.items()
            )
        else:
            out[score] = sum(c.points(figures) for c in components)
            out[f"{score}_reason"] = ""
    out["caa_svd_score"] = None
    out["caa_svd_score_reason"] = CSS_NOT_ASSESSED
    return out
