"""The ratings and scores a session was planted with, from the lesion plan (not the masks).

Each figure is measured on the planted objects themselves, with the generator's own anatomy:

- Fazekas PV / deep: the session's WMH layer split into 26-connected components; a component
  is periventricular when a voxel lies within ``PV_DISTANCE_MM`` of the lateral ventricles
  (the anatomy's distance field); PV extent = the 99th percentile of that distance over the PV
  voxels; deep size = the largest deep component's maximum diameter.
- PVS slice counts: on the session's truth PVS mask (what its grid shows, as the WMH truth
  is what the FLAIR shows), the pipeline's rule: the most PVS components of a region crossing
  one axial slice in one hemisphere (:func:`csvd_bids.quant.ratings.pvs_slice_counts`). A PVS
  too thin to fill half a voxel of that grid leaves no truth voxel and is not counted: on the
  physics engine's 1 mm grid, 0.8-1 mm tubes rendered at 0.5 mm often do not. Counting the
  planted tubes instead gave 12 and 11 (grade 2) on two sessions of physics seeds 660-661
  whose truth masks show 10 and 9 (grade 1), so that no detection could reach the planted
  grade; on the template engine the two counts agree (tests/test_planted_ratings.py).
- Microbleeds by lobe and region, lacunes: the planted lesions' own region and lobe.

The grade thresholds and the score terms are the pipeline's documented rules
(:mod:`csvd_bids.quant.ratings`, :mod:`csvd_bids.quant.scores`): what is checked is that the
pipeline's measurements on the truth masks and tables give back what was planted.
"""

from __future__ import annotations

import numpy as np

from ..markers import REGISTRY
from ..preproc.atlas import LOBES
from ..quant.ratings import (
    PV_EXTENT_PERCENTILE,
    fazekas_deep,
    fazekas_pv_grade,
    pvs_grade,
)
from ..quant.scores import SCORE_RANGES, compute_scores
from .anatomy import Anatomy
from .lesions import Lesion
from .measure import label_components, max_diameter_mm
from .regions import PV_DISTANCE_MM

COUNTED = {"CMB": REGISTRY["cmb"].regions, "LAC": REGISTRY["lacunes"].regions}
COUNT_COLUMNS = tuple(
    f"{marker}{region}_count"
    for marker, regions in COUNTED.items()
    for region in ("", *(f"_{r}" for r in regions))
)
PLANTED_COLUMNS = (
    *COUNT_COLUMNS,
    "fazekas_pv",
    "fazekas_deep",
    *(f"PVS_{r}_{k}" for r in ("BG", "CSO") for k in ("max_slice_count", "grade")),
    *(f"CMB_lobar_{lobe}_count" for lobe in (*LOBES.values(), "unknown")),
    *(score for score in SCORE_RANGES if score != "caa_svd_score"),
)


def _fazekas(anat: Anatomy, wmh: np.ndarray) -> tuple[int, int]:
    mask = np.zeros(anat.shape, dtype=bool)
    mask.flat[wmh] = True
    labels, n = label_components(mask)
    pv_extent, deep_sizes = [], []
    for label in range(1, n + 1):
        voxels = np.argwhere(labels == label)
        distance = anat.dist_ventricles[tuple(voxels.T)]
        if distance.min() <= PV_DISTANCE_MM:
            pv_extent.append(distance)
        else:
            deep_sizes.append(max_diameter_mm(voxels, anat.voxel_mm))
    pv = (
        fazekas_pv_grade(float(np.percentile(np.concatenate(pv_extent), PV_EXTENT_PERCENTILE)))
        if pv_extent
        else 0
    )
    return pv, fazekas_deep(deep_sizes)


def planted_ratings(
    anat: Anatomy, lesions: list[Lesion], session: int, pvs_counts: dict[str, int]
) -> dict:
    """PLANTED_COLUMNS of a session (0-based), every marker assessed; ``pvs_counts``: its
    truth's PVS slice counts (:func:`csvd_bids.quant.ratings.pvs_slice_counts`)."""
    active = [x for x in lesions if session in x.sessions and len(x.index)]

    def of(marker: str, region: str | None = None) -> list[Lesion]:
        return [x for x in active if x.marker == marker and region in (None, x.region)]

    row: dict = {}
    for marker, regions in COUNTED.items():
        row[f"{marker}_count"] = len(of(marker))
        row.update({f"{marker}_{r}_count": len(of(marker, r)) for r in regions})
    wmh = [x.index for x in of("WMH")]
    row["fazekas_pv"], row["fazekas_deep"] = _fazekas(anat, np.concatenate(wmh)) if wmh else (0, 0)
    for region in ("BG", "CSO"):
        count = pvs_counts[region]
        row[f"PVS_{region}_max_slice_count"] = count
        row[f"PVS_{region}_grade"] = pvs_grade(count)
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
