"""White matter hyperintensities: FLAIR outliers relative to normal-appearing white matter.

Method (an intensity-outlier, lesion-growth approach in the family of LST-LGA, Schmidt et al.
NeuroImage 2012, and of the z-score methods reviewed by Caligiuri et al. Neuroinformatics 2015):
1. Normal-appearing white matter (NAWM): brain voxels whose warped WM prior exceeds
   ``nawm_prior``; when a T1w exists, only those whose T1w intensity lies within the robust
   WM range (this drops misregistered grey matter and CSF).
2. FLAIR is lightly smoothed and expressed two ways: a robust z-score against NAWM (median and
   1.4826 x MAD, so lesions do not inflate the spread) and a contrast units score
   u = (FLAIR - NAWM median) / (grey matter median - NAWM median), which puts WM at 0 and GM
   at 1. WMH are brighter than grey matter on FLAIR, so thresholds on u reject the cortex even
   where the WM signal is so uniform that the z-score alone would not.
3. Seeds: u >= ``u_seed`` and z >= ``z_seed`` inside likely WM. Lesions grow from the seeds into
   connected voxels with u >= ``u_grow`` and z >= ``z_grow`` inside the search region (likely
   WM or deep GM, or near the ventricles, minus the ventricles): hysteresis thresholding.
4. Lesions smaller than ``min_volume_mm3`` are dropped (noise).
The score map is a logistic of u (0.5 halfway between ``u_grow`` and ``u_seed``): a belief,
not a calibrated probability. Regions: periventricular (within 10 mm of the ventricles) or
deep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from csvd_bids.markers.base import Detection, MarkerSpec, SessionImages, register
from csvd_bids.preproc.regions import distance_mm, periventricular_deep_regions, subject_ventricles
from csvd_bids.quant.lesions import label_lesions, remove_small_lesions


@dataclass(frozen=True)
class WMHParams:
    nawm_prior: float = 0.9  # WM prior above which a voxel may serve as NAWM
    search_prior: float = 0.3  # WM (+ deep GM) prior above which lesions may grow
    near_ventricles_mm: float = 6.0  # also search this close to the ventricles
    z_seed: float = 3.5
    z_grow: float = 2.0
    u_seed: float = 4.0
    u_grow: float = 2.5
    gm_prior: float = 0.6  # GM prior above which a voxel serves as the grey-matter reference
    smoothing_sigma_mm: float = 0.7
    min_volume_mm3: float = 5.0
    t1_nawm_range: float = 3.0  # NAWM must lie within this many robust SDs of the T1w WM median


PARAMS = WMHParams()


def robust_stats(values: np.ndarray) -> tuple[float, float]:
    """Median and MAD-based standard deviation."""
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    return median, max(spread, 1e-6 * max(abs(median), 1.0))


def _nawm(session: SessionImages, params: WMHParams) -> np.ndarray:
    nawm = session.brain_mask & (session.priors["wm"] >= params.nawm_prior)
    if "t1w" in session.images and nawm.sum() > 100:
        t1 = session.data("t1w")
        median, spread = robust_stats(t1[nawm])
        nawm &= np.abs(t1 - median) <= params.t1_nawm_range * spread
    if nawm.sum() < 100:
        raise ValueError("too few normal-appearing white matter voxels to model the FLAIR signal")
    return nawm


def detect_wmh(session: SessionImages, params: WMHParams = PARAMS) -> Detection:
    zooms = session.zooms
    flair = ndimage.gaussian_filter(
        session.data("flair"), sigma=[params.smoothing_sigma_mm / z for z in zooms]
    )
    median, spread = robust_stats(flair[_nawm(session, params)])
    z = (flair - median) / spread
    grey = session.brain_mask & (session.priors["gm"] >= params.gm_prior)
    grey_median = float(np.median(flair[grey])) if grey.any() else median + 2.0 * spread
    u = (flair - median) / max(grey_median - median, spread)

    # CSF is dark on FLAIR: used to follow this subject's ventricles beyond the template's.
    ventricles = subject_ventricles(
        session.priors["ventricles"], session.brain_mask & (z < -3.0), zooms
    )
    likely_tissue = session.priors["wm"] + session.priors["gm"] * (session.priors["wm"] > 0.05)
    search = (
        session.brain_mask
        & ~ventricles
        & (
            (likely_tissue >= params.search_prior)
            | (distance_mm(ventricles, zooms) <= params.near_ventricles_mm)
        )
    )
    grow = search & (z >= params.z_grow) & (u >= params.u_grow)
    seeds = grow & (session.priors["wm"] >= 0.5) & (z >= params.z_seed) & (u >= params.u_seed)
    labels, _ = label_lesions(grow)
    seeded = np.unique(labels[seeds])
    mask = np.isin(labels, seeded[seeded > 0])
    mask = remove_small_lesions(mask, float(np.prod(zooms)), params.min_volume_mm3)

    midpoint = 0.5 * (params.u_grow + params.u_seed)
    score = 1.0 / (1.0 + np.exp(-(u - midpoint) / 0.5))
    score = np.where(session.brain_mask, score, 0.0).astype(np.float32)
    regions, names = periventricular_deep_regions(ventricles, zooms)
    return Detection(score=score, mask=mask, regions=regions, region_names=names)


register(
    MarkerSpec(
        "wmh",
        required=("flair",),
        optional=("t1w",),
        detect=detect_wmh,
        regions=("periventricular", "deep"),
        method="FLAIR hyperintensity relative to normal-appearing white matter and grey matter "
        f"with hysteresis lesion growth (seeds: z >= {PARAMS.z_seed} and u >= {PARAMS.u_seed}; "
        f"growth: z >= {PARAMS.z_grow} and u >= {PARAMS.u_grow}; minimum "
        f"{PARAMS.min_volume_mm3} mm3)",
    )
)
