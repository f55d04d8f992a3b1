"""Does a WMH estimate agree with its FLAIR? Checks that turn a silent failure into a warning.

Relative-to-normal-white-matter methods fail when the lesions ARE most of the white matter:
the "normal" reference is then lesion, and almost nothing stands out from it (a confluent
Fazekas 3 patient reported with no WMH). These checks do not use the method's own reference:
they compare the FLAIR of the white matter (the region map's periventricular, deep and
centrum-semiovale white matter) that the mask leaves out with the cortex's, so they judge a
detector and a model bundle alike.

- On FLAIR, normal white matter is darker than cortex: the median of the white matter outside
  the mask at or above the cortex median (``MAX_REST_TO_CORTEX``) means lesions were left in it.
  Measured ratios: 0.89-0.93 on the real scans of ../shared/data/real-bids and the demo data.
- White matter at least ``BRIGHT_TO_CORTEX`` x the cortex median is lesion, not partial volume:
  more than ``MIN_MISSED_ML`` of it (and more than ``MISSED_FRACTION`` of what was found)
  outside the mask is a volume the mask is missing. Measured outside the found masks: 0.3-4.6
  ml on the real scans, 1.1-3.2 ml on the demo data, 13 ml around a 126 ml confluent lesion that
  was found; 197 ml when the same kind of lesion (196 ml) was missed.
- The cortex counts as at most ``MAX_CORTEX_TO_WM`` x the white matter's FLAIR mode (the mode
  of the white-matter regions, which is normal white matter unless lesions are most of it):
  a protocol with a long TE makes the cortex so bright that lesions lie between white matter
  and 1.2 x cortex (the physics engine: cortex 1.27-1.33 x the mode, 27 ml of WMH at 1.57 x
  found as 1 ml, and no warning). Measured cortex-to-mode ratios: 1.10-1.16 on the real MS
  scans, 1.13-1.14 on the template engine, so the cap changes nothing there.
"""

from __future__ import annotations

import numpy as np

from csvd_bids.morphology import mode_stats
from csvd_bids.region_sets import CORTEX_REGIONS, NAWM_REGIONS

MAX_REST_TO_CORTEX = 1.0
BRIGHT_TO_CORTEX = 1.2
MIN_MISSED_ML = 20.0
MISSED_FRACTION = 0.5
MAX_CORTEX_TO_WM = 1.2


def wmh_figures(
    flair: np.ndarray, regions: np.ndarray, wmh: np.ndarray, voxel_mm3: float
) -> dict[str, float] | None:
    """The figures the checks judge: found_ml, rest_to_cortex (median FLAIR of the white
    matter outside the mask / the cortex's) and missed_ml (white matter at least
    BRIGHT_TO_CORTEX x the cortex median outside the mask); None without enough of either.
    The cortex's level is its median, at most MAX_CORTEX_TO_WM x the white matter's mode."""
    white_matter = np.isin(regions, NAWM_REGIONS)
    cortex = np.isin(regions, CORTEX_REGIONS)
    rest = white_matter & ~wmh
    if cortex.sum() < 100 or rest.sum() < 100:
        return None
    cortex_level = float(np.median(flair[cortex]))
    if cortex_level <= 0:
        return None
    cortex_level = min(cortex_level, MAX_CORTEX_TO_WM * mode_stats(flair[white_matter])[0])
    bright = rest & (flair >= BRIGHT_TO_CORTEX * cortex_level)
    return {
        "found_ml": float(wmh.sum()) * voxel_mm3 / 1000,
        "rest_to_cortex": float(np.median(flair[rest])) / cortex_level,
        "missed_ml": float(bright.sum()) * voxel_mm3 / 1000,
    }


def wmh_plausibility(
    flair: np.ndarray, regions: np.ndarray, wmh: np.ndarray, voxel_mm3: float
) -> list[str]:
    """qc_warnings for a WMH mask that contradicts its FLAIR (empty when it does not)."""
    figures = wmh_figures(flair, regions, wmh, voxel_mm3)
    if figures is None:
        return []
    warnings = []
    if figures["rest_to_cortex"] >= MAX_REST_TO_CORTEX:
        warnings.append(
            "WMH: the white matter outside the WMH mask is as bright as cortex on FLAIR "
            f"(median ratio {figures['rest_to_cortex']:.2f}; normal white matter is darker): "
            "confluent WMH may have been missed, check the mask"
        )
    found_ml, missed_ml = figures["found_ml"], figures["missed_ml"]
    if missed_ml > max(MIN_MISSED_ML, MISSED_FRACTION * found_ml):
        warnings.append(
            f"WMH: {missed_ml:.0f} ml of white matter is FLAIR-bright (>= {BRIGHT_TO_CORTEX} x "
            f"the cortex level) outside the WMH mask ({found_ml:.1f} ml): the WMH volume is "
            "likely far too low"
        )
    return warnings
