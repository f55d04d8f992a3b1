"""Recent small subcortical infarcts (RSSI): DWI-bright, ADC-low foci in a perforator territory.

Method (the diffusion criteria of STRIVE, Wardlaw et al. 2013 / Duering et al. 2023: an acute
infarct is hyperintense on the b1000 trace and hypointense on the ADC map; a trace-bright focus
with a normal or high ADC is T2 shine-through, not an infarct). Automated infarct segmentation
thresholds the ADC below normal: e.g. ADC < 620 x 1e-6 mm2/s for the core (Purushotham et al.,
Int J Stroke 2015), about 0.8 of a normal WM ADC; here the threshold is relative to this
subject's WM (rADC), and the trace is thresholded as an outlier against the same WM, with
hysteresis lesion growth as in csvd_bids.markers.wmh:

1. Normal-appearing white matter (NAWM): brain voxels where the WM prior is high and the CSF
   prior low. Its trace median and 1.4826 x MAD give a robust z-score of the trace; its ADC
   median gives the relative ADC, rADC = ADC / NAWM ADC. Ratios only: an ADC map off by a
   constant factor gives the same rADC.
2. ADC units: the ADC is expected in 1e-6 mm2/s (NAWM ~700-800). A NAWM median of
   0.0002-0.002 is read as mm2/s and rescaled by 1e6, one of 0.2-2 as 1e-3 mm2/s and rescaled
   by 1e3; each is noted in ``Detection.notes`` and logged as a warning. An ADC that is
   absent, mostly non-finite or non-positive in the brain, or whose NAWM median is none of
   these, is not used: the rADC is then computed from the b0 and trace images as
   ln(b0 / trace) / NAWM median of ln(b0 / trace), in which the b-value cancels. Without a
   usable b0 either, the detector runs on the trace alone with stricter thresholds
   (``dwi_only_z_seed``, ``dwi_only_z_grow``, and brighter than the deep grey matter by
   ``dwi_only_gm_margin`` NAWM spreads); T2 shine-through cannot be told apart then.
3. Territory (where lesions may be): the subcortical regions of the subject's region map
   (csvd_bids.preproc.regions): basal ganglia, thalamus, internal and external capsule,
   periventricular, deep and centrum semiovale WM and brainstem; growth may also reach the
   juxtacortical WM. Never cortex, cerebellum, ventricles or other CSF.
4. Seeds: z >= ``z_seed``, at least ``gm_margin`` NAWM spreads above the median of the deep
   grey matter (basal ganglia and thalamus, which are DWI-brighter than WM), and
   rADC <= ``radc_seed``; lesions grow from them into connected territory voxels with
   z >= ``z_grow`` and rADC <= ``radc_grow`` (hysteresis thresholding). Each grown lesion is
   then cut at ``edge_fraction`` of its own peak trace excess over NAWM (a relative edge, as
   the percent-of-maximum contours of PET lesion delineation, so the border follows each
   lesion's own contrast through the partial-volume blur of a coarse DWI voxel) and only its
   seeded parts are kept; a lesion that is then over 20 mm across is re-cut at the stricter
   ``edge_fractions_if_large`` before the size rule judges it. ADC <= 0 means undefined (the
   pipeline's background value): such voxels count as normal, never as low.
5. Lesions smaller than ``min_volume_mm3`` are dropped (noise). The STRIVE size rule
   (maximum axial diameter <= 20 mm; csvd_bids.markers.size_rules) is applied to the returned
   mask by the caller, as for every marker.

The score map is the product of two logistics, one of the z-score (0.5 at ``z_grow``) and one
of the rADC (0.5 at ``radc_grow``), inside the territory: a belief, not a calibrated
probability.

Regions (``RSSI_REGION_NAMES``), from the subject region map: 1 basal_ganglia; 2 thalamus;
3 internal_capsule; 4 white_matter (periventricular, deep, centrum semiovale and external
capsule); 5 brainstem; 6 other (juxtacortical WM, unlabelled). Every lesion's voxels carry the
region holding most of the lesion, so the lesion table (lowest region a lesion touches) names
its majority region.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import expit

from csvd_bids.markers.base import (
    Detection,
    MarkerSpec,
    NotAssessableError,
    SessionImages,
    register,
)
from csvd_bids.markers.size_rules import apply_size_rule
from csvd_bids.morphology import (
    keep_seeded,
    label_lesions,
    paint_majority,
    remove_small_lesions,
    robust_stats,
    smooth_mm,
)
from csvd_bids.preproc.dwi import adc_scale
from csvd_bids.region_sets import (
    BASAL_GANGLIA,
    BRAINSTEM,
    EXTERNAL_CAPSULE,
    INTERNAL_CAPSULE,
    JUXTACORTICAL_WM_REGIONS,
    NAWM_REGIONS,
    THALAMUS,
)

LOG = logging.getLogger(__name__)

RSSI_REGION_NAMES = {
    1: "basal_ganglia",
    2: "thalamus",
    3: "internal_capsule",
    4: "white_matter",
    5: "brainstem",
    6: "other",
}
# subject region map (csvd_bids.region_sets) -> RSSI region; absent = not a territory
_SEED_REGIONS = {
    BASAL_GANGLIA: 1,
    THALAMUS: 2,
    INTERNAL_CAPSULE: 3,
    **dict.fromkeys((*NAWM_REGIONS, EXTERNAL_CAPSULE), 4),
    BRAINSTEM: 5,
}
OTHER = 6
_GROW_ONLY_REGIONS = dict.fromkeys(JUXTACORTICAL_WM_REGIONS, OTHER)


@dataclass(frozen=True)
class RSSIParams:
    """Thresholds of the RSSI detector (see the module docstring for the method).

    z: robust z-score of the b1000 trace against NAWM. rADC: ADC / NAWM median ADC (acute
    infarcts: about 0.4-0.7; T2 shine-through and WMH: >= 1; CSF: about 4)."""

    nawm_prior: float = 0.7  # WM prior above which a voxel may serve as NAWM
    nawm_csf_prior: float = 0.1  # ... and CSF prior below which
    z_seed: float = 6.0
    gm_margin: float = 3.0  # seeds also >= this many NAWM spreads above the deep grey matter
    z_grow: float = 3.0
    radc_seed: float = 0.75
    radc_grow: float = 0.85
    # Lesion border at this fraction of its peak trace excess. Chosen on the one infarct of the
    # synthetic seed-21 dev data (Dice 0.94 at 0.25, 0.96 at 0.3, 0.95 at 0.35, 0.87 at 0.4,
    # 0.73 at 0.5): the synthetic infarct fades to 0.85 of its core at its edge, then the 2 mm
    # DWI blurs it. Real infarcts may want a higher one (a half maximum is the neutral choice).
    edge_fraction: float = 0.3
    # A lesion over 20 mm across at that edge is re-cut at these stricter edges (the last a
    # half maximum) before the size rule may drop it: a border that is a voxel too generous
    # should not turn a 19 mm infarct into a rejected 21 mm one.
    edge_fractions_if_large: tuple[float, ...] = (0.4, 0.5)
    min_volume_mm3: float = 10.0
    # Trace only (no usable ADC, no b0): seeds must stand out more, and above deep grey matter,
    # which is DWI-brighter than WM.
    dwi_only_z_seed: float = 10.0
    dwi_only_z_grow: float = 4.0
    dwi_only_gm_margin: float = 8.0
    smoothing_sigma_mm: float = 0.0  # optional Gaussian smoothing of the trace and ADC


PARAMS = RSSIParams()
RSSI_METHOD = (
    "DWI-bright, ADC-low foci in a subcortical perforator territory: b1000 trace z-score "
    f"against normal-appearing white matter (seeds z >= {PARAMS.z_seed}, growth "
    f">= {PARAMS.z_grow}) with ADC below a fraction of the subject's white-matter ADC "
    f"(seeds <= {PARAMS.radc_seed}, growth <= {PARAMS.radc_grow}), hysteresis growth cut at "
    f"{PARAMS.edge_fraction:g} of each lesion's peak, STRIVE axial diameter <= 20 mm"
)


@dataclass
class RSSIDetection(Detection):
    """A Detection that also says how the DWI was read; ``notes`` (ADC units, fallbacks) are
    the Detection's."""

    adc_mode: str = "adc"  # "adc", "b0_trace" (rADC from b0 and trace) or "dwi_only"


def _relative_adc(
    session: SessionImages, nawm: np.ndarray, trace: np.ndarray, notes: list[str]
) -> tuple[np.ndarray | None, str]:
    """rADC = ADC / NAWM median ADC, from the ADC map or else from b0 and trace."""
    brain = session.brain_mask
    if "dwi_adc" in session.images:
        adc = session.data("dwi_adc")
        inside = adc[brain]
        usable = np.isfinite(inside).mean() > 0.9 and (inside > 0).mean() > 0.5
        values = adc[nawm & np.isfinite(adc)]
        median = float(np.median(values)) if usable and values.size else float("nan")
        factor, unit = adc_scale(median)
        if factor is not None:
            if factor != 1.0:
                notes.append(
                    f"ADC looked like {unit} (NAWM median {median:.4g}); rescaled by {factor:g} "
                    "to 1e-6 mm2/s"
                )
            # ADC <= 0 marks undefined voxels (pipeline: background, trace >= b0): neutral, not low
            radc = np.where(adc > 0, adc / median, 1.0)
            return np.nan_to_num(radc, nan=1.0, posinf=1.0, neginf=1.0), "adc"
        notes.append(f"ADC map not used: {unit if usable else 'mostly non-finite or <= 0'}")
    else:
        notes.append("no ADC map")
    if "dwi_b0" in session.images:
        b0 = session.data("dwi_b0")
        floor = 1e-3 * max(float(np.median(b0[brain])), 1e-6)
        # ln(b0 / trace) = b * ADC: the b-value cancels in the ratio to its NAWM median
        log_ratio = np.log(np.maximum(b0, floor) / np.maximum(trace, floor))
        median = float(np.median(log_ratio[nawm]))
        if np.isfinite(median) and median > 0:
            notes.append("relative ADC computed from the b0 and trace images")
            return log_ratio / median, "b0_trace"
        notes.append("b0 not usable for a relative ADC (trace not darker than b0 in NAWM)")
    notes.append("trace only: stricter thresholds, T2 shine-through not rejected")
    return None, "dwi_only"


def _territory(session: SessionImages) -> tuple[np.ndarray, ...]:
    """(seed territory, growth territory, RSSI region code per voxel)."""
    lookup = np.zeros(256, dtype=np.uint8)
    for index, code in {**_SEED_REGIONS, **_GROW_ONLY_REGIONS}.items():
        lookup[index] = code
    codes = lookup[session.regions] * session.brain_mask
    seed = (codes > 0) & (codes != OTHER)
    return seed, codes > 0, codes


def _cut_at_edge(
    mask: np.ndarray,
    excess: np.ndarray,
    seeds: np.ndarray,
    fractions: tuple[float, ...],
    affine: np.ndarray,
) -> np.ndarray:
    """Each lesion without its voxels below a fraction of its peak excess; seeded parts kept.
    The first fraction whose lesion passes the RSSI size rule is used (the last if none)."""
    labels, _ = label_lesions(mask)
    out = np.zeros_like(mask)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        local = labels[box] == index
        # the peak among the seeds (the lesion core), robust to a stray bright voxel
        values = excess[box][local & seeds[box]]
        peak = float(np.percentile(values, 95)) if values.size >= 20 else float(values.max())
        for fraction in fractions:
            lesion = keep_seeded(local & (excess[box] >= fraction * peak), seeds[box])
            # the rule tests each cut here (part of the method); the final mask is filtered
            # by the caller
            if np.array_equal(apply_size_rule(lesion, affine, "rssi"), lesion):
                break
        out[box] |= lesion
    return out


def detect_rssi(session: SessionImages, params: RSSIParams = PARAMS) -> RSSIDetection:
    zooms = session.zooms
    brain = session.brain_mask
    if not brain.any():
        raise NotAssessableError("empty brain mask")
    notes: list[str] = []
    trace = smooth_mm(session.data("dwi_trace"), params.smoothing_sigma_mm, zooms)
    priors = session.priors
    nawm = brain & (priors["wm"] >= params.nawm_prior) & (priors["csf"] < params.nawm_csf_prior)
    if nawm.sum() < 100:
        raise NotAssessableError(
            "too few normal-appearing white matter voxels to model the DWI signal"
        )
    radc, mode = _relative_adc(session, nawm, trace, notes)
    if radc is not None:
        radc = smooth_mm(radc, params.smoothing_sigma_mm, zooms)
        # NAWM without CSF-contaminated or lesion voxels, for the trace statistics
        nawm &= (radc > 0.7) & (radc < 1.3)
    median, spread = robust_stats(trace[nawm])
    z = (trace - median) / spread

    seed_zone, grow_zone, codes = _territory(session)
    # Deep grey matter is DWI-brighter than WM: seeds must also stand out from it.
    grey = brain & (priors["gm"] >= 0.8) & ((codes == 1) | (codes == 2))
    if grey.sum() < 50:
        grey = brain & (priors["gm"] >= 0.8)
    grey_z = max(float(np.median(z[grey])), 0.0) if grey.any() else 0.0
    if radc is None:
        seed_floor = max(params.dwi_only_z_seed, grey_z + params.dwi_only_gm_margin)
        grow = grow_zone & (z >= params.dwi_only_z_grow)
        seeds = grow & seed_zone & (z >= seed_floor)
        low_adc = np.ones_like(z)
    else:
        seed_floor = max(params.z_seed, grey_z + params.gm_margin)
        grow = grow_zone & (z >= params.z_grow) & (radc <= params.radc_grow)
        seeds = grow & seed_zone & (z >= seed_floor) & (radc <= params.radc_seed)
        low_adc = expit((params.radc_grow - radc) / 0.05)
    mask = keep_seeded(grow, seeds)
    affine = session.reference.affine
    fractions = (params.edge_fraction, *params.edge_fractions_if_large)
    mask = _cut_at_edge(mask, trace - median, seeds, fractions, affine)
    mask = remove_small_lesions(mask, float(np.prod(zooms)), params.min_volume_mm3)

    for note in notes:
        LOG.warning("RSSI: %s", note)
    score = low_adc * expit(z - params.z_grow)
    score = np.where(grow_zone, score, 0.0).astype(np.float32)
    return RSSIDetection(
        score=score,
        mask=mask,
        regions=paint_majority(mask, codes, default=OTHER),
        region_names=dict(RSSI_REGION_NAMES),
        notes=notes,
        adc_mode=mode,
    )


register(
    MarkerSpec(
        "rssi", required=("dwi",), optional=("flair",), detect=detect_rssi, method=RSSI_METHOD
    )
)
