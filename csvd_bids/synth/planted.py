"""The ratings and scores a session was planted with.

WMH and PVS grades are the pipeline's rules on the session's truth masks, which hold what its
images show; counts of the other markers come from the lesion plan:

- Fazekas PV / deep: on the truth WMH mask and its lesion table (each component's region and
  maximum diameter), the pipeline's rule (:func:`csvd_bids.quant.ratings.fazekas_grades`).
  The WMH truth is what the FLAIR shows (:mod:`.truth`): on a thick or long-TE FLAIR part of
  a planted lesion is not seen, and grading the planted lesions instead rated a deep lesion
  whose visible part is 18.7 mm (grade 2) by its planted 20 mm and more (grade 3) on physics
  seed 661, and a 9.8 mm one as grade 2 on seed 650: grades that no reading of the images
  could give.
- PVS slice counts: on the session's truth PVS mask (what its grid shows), the pipeline's
  rule: the most PVS components of a region crossing one axial slice in one hemisphere
  (:func:`csvd_bids.quant.ratings.pvs_slice_counts`). A PVS too thin to fill half a voxel of
  that grid leaves no truth voxel and is not counted: on the physics engine's 1 mm grid,
  0.8-1 mm tubes rendered at 0.5 mm often do not. Counting the planted tubes instead gave 12
  and 11 (grade 2) on two sessions of physics seeds 660-661 whose truth masks show 10 and 9
  (grade 1).
  On the template engine's 1 mm sessions both ways agree (tests/test_planted_ratings.py).
- Microbleeds by lobe and region, lacunes: the planted lesions' own region and lobe.

The grade thresholds and the score terms are the pipeline's documented rules
(:mod:`csvd_bids.quant.ratings`, :mod:`csvd_bids.quant.scores`): what is checked is that the
pipeline's measurements on the truth masks and tables give back what was planted.
"""

from __future__ import annotations

from ..markers import REGISTRY
from ..preproc.atlas import LOBES
from ..quant.ratings import PVS_RATED
from ..quant.scores import SCORE_RANGES, compute_scores
from .lesions import Lesion

COUNTED = {"CMB": REGISTRY["cmb"].regions, "LAC": REGISTRY["lacunes"].regions}
COUNT_COLUMNS = tuple(
    f"{marker}{region}_count"
    for marker, regions in COUNTED.items()
    for region in ("", *(f"_{r}" for r in regions))
)
# the columns measured by the pipeline's rules on the truth masks
RATED_ON_TRUTH = (
    "fazekas_pv",
    "fazekas_deep",
    *(f"PVS_{r}_{k}" for r in PVS_RATED for k in ("max_slice_count", "grade")),
)
PLANTED_COLUMNS = (
    *COUNT_COLUMNS,
    *RATED_ON_TRUTH,
    *(f"CMB_lobar_{lobe}_count" for lobe in (*LOBES.values(), "unknown")),
    *(score for score in SCORE_RANGES if score != "caa_svd_score"),
)


def planted_ratings(lesions: list[Lesion], session: int, on_truth: dict) -> dict:
    """PLANTED_COLUMNS of a session (0-based), every marker assessed; ``on_truth``: the
    pipeline's ratings of its truth masks (:func:`csvd_bids.quant.ratings.rate_session`),
    which give the ``RATED_ON_TRUTH`` columns."""
    active = [x for x in lesions if session in x.sessions and len(x.index)]

    def of(marker: str, region: str | None = None) -> list[Lesion]:
        return [x for x in active if x.marker == marker and region in (None, x.region)]

    row: dict = {}
    for marker, regions in COUNTED.items():
        row[f"{marker}_count"] = len(of(marker))
        row.update({f"{marker}_{r}_count": len(of(marker, r)) for r in regions})
    row.update({column: on_truth[column] for column in RATED_ON_TRUTH})
    lobes = [x.lobe for x in of("CMB", "lobar")]
    for lobe in (*LOBES.values(), "unknown"):
        row[f"CMB_lobar_{lobe}_count"] = lobes.count(lobe)
    assessed = {m: (True, "") for m in ("WMH", "CMB", "PVS", "LAC")}
    row.update({k: v for k, v in compute_scores(row, assessed).items() if k in PLANTED_COLUMNS})
    return {column: row[column] for column in PLANTED_COLUMNS}


def planted_sidecar() -> dict:
    """The ratings file's column descriptions: those of the pipeline's summary columns."""
    from ..quant.summary import describe_summary_column  # pulls in pybids: only when writing

    sidecar = {column: describe_summary_column(column) for column in PLANTED_COLUMNS}
    for entry in sidecar.values():
        entry["Description"] = f"As planted: {entry['Description']}"
    return sidecar
