"""Visual-rating estimates from the segmentations. Every rule and threshold is here.

Fazekas periventricular (PV WMH: lesions with a voxel within 10 mm of the lateral ventricles,
as in the lesion table). Its extent is the largest distance from the lateral ventricles that a
PV lesion reaches (the 99th percentile over its voxels, so that one stray voxel does not decide):
    0  no PV lesion
    1  extent <= 5 mm        caps or pencil-thin lining
    2  5 mm < extent <= 10 mm  smooth halo
    3  extent > 10 mm        irregular, extending into the deep white matter
Fazekas deep (the other WMH), from the largest deep lesion's maximum diameter:
    0  no deep lesion
    1  < 10 mm               punctate foci
    2  10-20 mm              beginning confluence
    3  >= 20 mm              large confluent areas
PVS grade per region (BG, CSO; Potter / Doubal): the PVS (3D components) of the region that
cross each axial slice are counted per hemisphere (left / right of the brain mask's centre);
the largest such count gives the grade: 0 none, 1 = 1-10, 2 = 11-20, 3 = 21-40, 4 = > 40.
The region's 3D count is reported beside it.
MARS: microbleed counts per region (lobar by lobe, deep, infratentorial) come from the
lesion table (region and lobe columns; a lobar microbleed without a lobe counts as unknown).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from csvd_bids.morphology import label_lesions
from csvd_bids.preproc.atlas import LOBES
from csvd_bids.preproc.regions import distance_mm_at

PV_EXTENT_MM = (5.0, 10.0)  # upper bounds of Fazekas PV grades 1 and 2
PV_EXTENT_PERCENTILE = 99.0
DEEP_DIAMETER_MM = (10.0, 20.0)  # lower bounds of Fazekas deep grades 2 and 3
PVS_GRADE_BOUNDS = (10, 20, 40)  # upper bounds of PVS grades 1, 2 and 3
PVS_RATED = ("BG", "CSO")  # the regions with a PVS grade
RATING_COLUMNS = (
    "WMH_icv_fraction",
    "fazekas_pv",
    "fazekas_deep",
    *(f"PVS_{r}_{k}" for r in PVS_RATED for k in ("max_slice_count", "grade")),
    *(f"CMB_lobar_{lobe}_count" for lobe in (*LOBES.values(), "unknown")),
)
RULES = {
    "fazekas_pv": "0 no periventricular WMH; 1 extent from the lateral ventricles <= 5 mm; "
    "2 <= 10 mm; 3 > 10 mm (extent: 99th percentile of the periventricular WMH voxels' distance)",
    "fazekas_deep": "0 no deep WMH; 1 largest deep lesion < 10 mm; 2 10-20 mm; 3 >= 20 mm "
    "(maximum diameter)",
    "pvs_grade": "PVS crossing one axial slice in one hemisphere, the most over slices and "
    "sides: 0 none; 1 1-10; 2 11-20; 3 21-40; 4 > 40",
}


def fazekas_periventricular(pv_lesions: np.ndarray, ventricles: np.ndarray, zooms) -> int:
    """Grade 0-3 from the mask of periventricular WMH and the lateral ventricles' mask."""
    if not pv_lesions.any():
        return 0
    if not ventricles.any():
        raise ValueError("no lateral ventricles in the region map: cannot measure WMH extent")
    distances = distance_mm_at(ventricles, pv_lesions, zooms)
    extent = float(np.percentile(distances, PV_EXTENT_PERCENTILE))
    return fazekas_pv_grade(extent)


def fazekas_pv_grade(extent_mm: float) -> int:
    """Grade 1-3 of periventricular WMH reaching ``extent_mm`` from the ventricles."""
    return 1 + int(np.searchsorted(PV_EXTENT_MM, extent_mm, side="left"))


def fazekas_grades(
    wmh: np.ndarray, lesion_regions, max_diameters_mm, ventricles: np.ndarray, zooms
) -> tuple[int, int]:
    """(Fazekas PV, Fazekas deep) of a WMH mask. ``lesion_regions`` and ``max_diameters_mm``:
    each 26-connected component's region ("periventricular" or "deep") and maximum diameter,
    in label order (a lesion table's columns); ``ventricles``: the lateral ventricles' mask."""
    labels, _ = label_lesions(wmh)
    regions = np.asarray(lesion_regions)
    pv_ids = np.flatnonzero(regions == "periventricular") + 1
    deep = np.asarray(max_diameters_mm, dtype=float)[regions == "deep"]
    pv = fazekas_periventricular(np.isin(labels, pv_ids), ventricles, zooms)
    return pv, fazekas_deep(deep)


def fazekas_deep(deep_diameters_mm: list[float] | np.ndarray) -> int:
    """Grade 0-3 from the maximum diameters (mm) of the deep WMH lesions."""
    if len(deep_diameters_mm) == 0:
        return 0
    return 1 + int(np.searchsorted(DEEP_DIAMETER_MM, float(np.max(deep_diameters_mm)), "right"))


def pvs_grade(count: int) -> int:
    """Potter / Doubal grade 0-4 of a single-slice, single-side PVS count."""
    if count <= 0:
        return 0
    return 1 + int(np.searchsorted(PVS_GRADE_BOUNDS, count, side="left"))


def max_slice_count(labels: np.ndarray, ids: list[int] | np.ndarray, midline: float) -> int:
    """The most of the lesions ``ids`` (labels of a 3D label map on a RAS grid) that cross one
    axial slice (last axis) in one hemisphere (first axis below or from ``midline``)."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return 0
    chosen = np.isin(labels, ids)
    best = 0
    cut = int(np.ceil(midline))
    for side in (slice(0, cut), slice(cut, None)):
        part = np.where(chosen[side], labels[side], 0)
        for k in np.flatnonzero(part.any(axis=(0, 1))):
            best = max(best, int(np.unique(part[..., k]).size - 1))
    return best


def pvs_slice_counts(mask: np.ndarray, lesion_regions, brain: np.ndarray) -> dict[str, int]:
    """Region (BG, CSO) -> the most PVS of that region crossing one axial slice in one
    hemisphere. ``lesion_regions``: the region of each 26-connected component of ``mask``, in
    label order (a lesion table's ``region`` column); ``brain``: the mask giving the midline."""
    labels, _ = label_lesions(mask)
    names = np.asarray(lesion_regions)
    midline = midline_index(brain)
    return {r: max_slice_count(labels, np.flatnonzero(names == r) + 1, midline) for r in PVS_RATED}


def midline_index(brain: np.ndarray) -> float:
    """The left-right centre of the brain mask, in voxels along the first (R) axis."""
    return float(np.argwhere(brain)[:, 0].mean())


def rate_session(
    masks: dict[str, np.ndarray],
    tables: dict[str, pd.DataFrame],
    ventricles: np.ndarray,
    brain: np.ndarray,
    zooms,
    icv_mm3: float,
) -> dict:
    """The rating columns of a session's summary; None where the marker was not assessed.

    ``masks`` and ``tables`` (one lesion table per marker label, rows in label order) hold only
    the assessed markers; ``ventricles``: the lateral ventricles' mask on the same grid.
    """
    row: dict = dict.fromkeys(RATING_COLUMNS)
    if "WMH" in masks:
        table = tables["WMH"]
        row["WMH_icv_fraction"] = round(float(table["volume_mm3"].sum()) / icv_mm3, 6)
        row["fazekas_pv"], row["fazekas_deep"] = fazekas_grades(
            masks["WMH"], table["region"], table["max_diameter_mm"], ventricles, zooms
        )
    if "PVS" in masks:
        for region, count in pvs_slice_counts(masks["PVS"], tables["PVS"]["region"], brain).items():
            row[f"PVS_{region}_max_slice_count"] = count
            row[f"PVS_{region}_grade"] = pvs_grade(count)
    if "CMB" in masks:
        cmb = tables["CMB"]
        lobar = cmb.loc[cmb["region"] == "lobar", "lobe"]  # n/a reads back from a TSV as NaN
        lobes = lobar.where(lobar.isin(list(LOBES.values())), "unknown").tolist()
        for lobe in (*LOBES.values(), "unknown"):
            row[f"CMB_lobar_{lobe}_count"] = lobes.count(lobe)
    return row
