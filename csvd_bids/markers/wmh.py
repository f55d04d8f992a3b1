"""White matter hyperintensities: FLAIR outliers inside this subject's white matter.

Method (an intensity-outlier, lesion-growth approach in the family of LST-LGA, Schmidt et al.
NeuroImage 2012, and of the thresholding methods reviewed by Caligiuri et al.,
Neuroinformatics 2015):
1. Search region: brain voxels that the template priors call WM or deep GM, minus the
   ventricles, and at least ``cortex_margin_mm`` from the external CSF (FLAIR-dark voxels
   connected to the outside of the brain: sulci and subarachnoid space), which keeps the cortex
   (2.5-4 mm thick, lining every sulcus) out. Lesions may grow only there.
2. Normal-appearing white matter (NAWM) = brain voxels where the WM prior is high and the
   intensity WM-like (nearer the WM than the GM median, on T1w if present, else FLAIR). Its
   FLAIR median and 1.4826 x MAD (robust to lesions) give a z-score, and with the grey-matter
   median a contrast score u = (FLAIR - NAWM) / (GM - NAWM), which puts WM at 0 and GM at 1.
   WMH are brighter than both; on FLAIR their seeds are several GM-WM contrasts above WM.
3. Seeds: u >= ``u_seed`` and z >= ``z_seed``; lesions grow from them into connected voxels with
   u >= ``u_grow`` and z >= ``z_grow`` (hysteresis thresholding).
4. Lesions smaller than ``min_volume_mm3`` are dropped (noise).
The score map is a logistic of u (0.5 halfway between ``u_grow`` and ``u_seed``): a belief, not
a calibrated probability. Regions: periventricular (within 10 mm of the ventricles) or deep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from csvd_bids.markers.base import Detection, MarkerSpec, SessionImages, register
from csvd_bids.preproc.regions import (
    distance_mm,
    periventricular_deep_regions,
    subject_ventricles,
)
from csvd_bids.quant.lesions import label_lesions, remove_small_lesions


@dataclass(frozen=True)
class WMHParams:
    region_prior: float = 0.3  # WM + deep GM prior above which lesions may grow
    nawm_prior: float = 0.7  # WM prior above which a WM-like voxel may serve as NAWM
    gm_prior: float = 0.8  # GM prior above which a voxel serves as the grey-matter reference
    cortex_margin_mm: float = 2.0  # lesions grow no nearer than this to the sulcal CSF
    csf_z: float = -2.5  # FLAIR z-score below which a voxel counts as CSF
    # A compromise chosen on synthetic seeds 11, 101 and 102 and the two labelled real MS scans
    # (sub-ms07, sub-ms26): higher seeds suit the real scans, lower ones the faint synthetic
    # halos. benchmarks/segmentation_dice.py reports others.
    z_seed: float = 3.5
    z_grow: float = 2.0
    u_seed: float = 5.0
    u_grow: float = 2.5
    smoothing_sigma_mm: float = 0.7
    min_volume_mm3: float = 10.0


PARAMS = WMHParams()


def robust_stats(values: np.ndarray) -> tuple[float, float]:
    """Median and MAD-based standard deviation."""
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    return median, max(spread, 1e-6 * max(abs(median), 1.0))


def _wm_like(session: SessionImages, params: WMHParams, flair: np.ndarray) -> np.ndarray:
    """Voxels whose intensity is nearer the WM than the GM median (T1w if present, else FLAIR)."""
    image = session.data("t1w") if "t1w" in session.images else flair
    brain = session.brain_mask
    wm_median = float(np.median(image[brain & (session.priors["wm"] >= 0.9)]))
    gm_median = float(np.median(image[brain & (session.priors["gm"] >= params.gm_prior)]))
    midpoint = 0.5 * (wm_median + gm_median)
    return image > midpoint if wm_median > gm_median else image < midpoint


def external_csf(brain: np.ndarray, dark: np.ndarray) -> np.ndarray:
    """Dark voxels connected to the outside of the brain: sulci and subarachnoid space.

    Ventricles, lacunes and perivascular spaces are dark too but not connected to the outside,
    so they are not part of it."""
    outside = ~brain
    labels, _ = ndimage.label(dark | outside)
    touching = np.unique(labels[outside])
    return np.isin(labels, touching[touching > 0]) & brain


def search_region(
    session: SessionImages, params: WMHParams, dark: np.ndarray, ventricles: np.ndarray
) -> np.ndarray:
    """Where lesions may grow: likely WM or deep GM by the priors, not the ventricles, and at
    least ``cortex_margin_mm`` from the external CSF (which keeps the cortex out: cortex is
    2.5-4 mm thick and lines every sulcus)."""
    priors = session.priors
    likely = priors["wm"] + priors["gm"] * (priors["wm"] > 0.05) >= params.region_prior
    away = (
        distance_mm(external_csf(session.brain_mask, dark), session.zooms) > params.cortex_margin_mm
    )
    return session.brain_mask & likely & away & ~ventricles


def detect_wmh(session: SessionImages, params: WMHParams = PARAMS) -> Detection:
    zooms = session.zooms
    flair = ndimage.gaussian_filter(
        session.data("flair"), sigma=[params.smoothing_sigma_mm / z for z in zooms]
    )
    brain = session.brain_mask
    nawm = brain & _wm_like(session, params, flair) & (session.priors["wm"] >= params.nawm_prior)
    if nawm.sum() < 100:
        raise ValueError("too few normal-appearing white matter voxels to model the FLAIR signal")
    median, spread = robust_stats(flair[nawm])
    z = (flair - median) / spread
    grey = brain & (session.priors["gm"] >= params.gm_prior)
    grey_median = float(np.median(flair[grey])) if grey.any() else median + 2.0 * spread
    u = (flair - median) / max(grey_median - median, spread)

    # CSF is dark on FLAIR: used to follow this subject's ventricles beyond the template's.
    dark = brain & (z < params.csf_z)
    ventricles = subject_ventricles(session.priors["ventricles"], dark, zooms)
    region = search_region(session, params, dark, ventricles)
    grow = region & (z >= params.z_grow) & (u >= params.u_grow)
    seeds = grow & (z >= params.z_seed) & (u >= params.u_seed)
    labels, _ = label_lesions(grow)
    seeded = np.unique(labels[seeds])
    mask = np.isin(labels, seeded[seeded > 0])
    mask = remove_small_lesions(mask, float(np.prod(zooms)), params.min_volume_mm3)

    midpoint = 0.5 * (params.u_grow + params.u_seed)
    score = 1.0 / (1.0 + np.exp(-(u - midpoint) / 0.5))
    score = np.where(region, score, 0.0).astype(np.float32)
    regions, names = periventricular_deep_regions(ventricles, zooms)
    return Detection(score=score, mask=mask, regions=regions, region_names=names)


register(
    MarkerSpec(
        "wmh",
        required=("flair",),
        optional=("t1w",),
        detect=detect_wmh,
        regions=("periventricular", "deep"),
        method="FLAIR hyperintensity inside the subject's white matter, relative to "
        "normal-appearing white matter and grey matter, with hysteresis lesion growth (seeds: "
        f"z >= {PARAMS.z_seed} and u >= {PARAMS.u_seed}; growth: z >= {PARAMS.z_grow} and "
        f"u >= {PARAMS.u_grow}; minimum {PARAMS.min_volume_mm3} mm3)",
    )
)
