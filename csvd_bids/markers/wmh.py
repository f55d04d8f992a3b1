"""White matter hyperintensities: FLAIR outliers inside this subject's white matter.

Method (an intensity-outlier, lesion-growth approach in the family of LST-LGA, Schmidt et al.
NeuroImage 2012, and of the thresholding methods reviewed by Caligiuri et al.,
Neuroinformatics 2015), on the session's region map (``csvd_bids.preproc.regions``):

1. Normal-appearing white matter (NAWM), a reference that holds when confluent lesions are
   most of the white matter: voxels of the periventricular, deep, centrum-semiovale and
   juxtacortical WM (the U-fibres are spared longest) that the template calls WM (prior
   >= 0.5), at least 2 voxels from FLAIR-dark CSF, darker on FLAIR than the cortex median
   (lesions are brighter than the cortex, normal WM darker) and, with a T1w, nearer the WM
   than the cortex median on T1w. Its FLAIR level is the histogram mode and its spread
   1.4826 x the median distance below the mode (``morphology.mode_stats``): a median
   followed the lesions of heavy disease, and nothing was found. Level and spread give a
   z-score, and with the cortex median a contrast u = (FLAIR - NAWM) / (cortex - NAWM), which
   puts WM at 0 and GM at 1; the cortex counts as at least ``min_grey_contrast`` x NAWM
   brighter (thick slices average it towards the WM) and, in the periventricular, deep and
   centrum-semiovale WM only, at most ``max_grey_contrast`` x NAWM brighter: a long-TE FLAIR
   can make the cortex so bright that lesions lie between WM and cortex (u < 2 at 1.6 x
   NAWM), while the cortex, deep grey matter and juxtacortical WM (partial volume with
   cortex) must stay measured against the cortex they look like. On T1w,
   v = (NAWM - T1w) / (NAWM - cortex) is 0 in WM and 1 in GM.
2. Search region: the WM regions (periventricular, deep, centrum semiovale, capsules,
   juxtacortical), basal ganglia, thalamus and brainstem, where the template priors call the
   voxel WM or deep GM (``region_prior``). Two exceptions for tissue classes misled by the
   lesions (WMH are dark on T1w, so a T1w-based segmentation may call them GM or CSF):
   cortex-labelled voxels where the priors allow (normal cortex, u near 1, stays below the
   thresholds), and CSF-labelled voxels that are not dark on FLAIR and lie within
   ``rescue_mm`` of the search region (an atlas ventricle overlapping a periventricular cap).
3. Hysteresis lesion growth on the lightly smoothed FLAIR: seeds (z >= ``z_seed`` and either
   u >= ``u_seed`` or FLAIR >= ``seed_ratio`` x the NAWM median, at least ``min_seed_mm3``
   connected, not inside the lateral ventricles, whose FLAIR-bright content is choroid
   plexus) grow into connected voxels with
   u >= ``u_grow`` and z >= ``z_grow``. WMH are iso- or hypointense on T1w: a voxel less than
   ``t1_min_v`` of the way from NAWM to GM on T1w (as bright as NAWM) joins only if
   u >= ``t1_strong_u`` (this stops FLAIR signal that thick slices smear into normal WM).
4. Periventricular linings and caps (Fazekas 1): within ``lining_mm`` of the lateral
   ventricles, a second hysteresis on the unsmoothed FLAIR with the same thresholds, since
   smoothing averages a 1-2 voxel lining with the CSF beside it.
5. Partial volume at the ventricle wall: a voxel face-adjacent to a lesion and to the
   ventricles joins the lesion when T1w calls it tissue rather than CSF (at least half-way
   from ventricular CSF to NAWM) and not NAWM (``pv_fill_v`` of the way to GM): thick-slice
   FLAIR averages such voxels with the CSF, T1w resolves them.
6. Other lesions are not WMH (STRIVE keeps them apart), each as its own node of the session
   graph found it (``MarkerSpec.excludes``: its detector or model bundle), grown by one voxel:
   lacunes with their FLAIR-hyperintense gliotic rim (which thick-slice FLAIR smears into the
   tissue around), and, with the DWI (trace and ADC), recent small subcortical infarcts,
   FLAIR-hyperintense too.
7. Lesions smaller than ``min_volume_mm3`` are dropped (noise).

The score map is a logistic of u (0.5 halfway between ``u_grow`` and ``u_seed``) in the search
region: a belief, not a calibrated probability. Regions: a lesion is periventricular when any
of its voxels lies within 10 mm of the lateral ventricles (region map label 1), deep otherwise.
Region groups are those of ``csvd_bids.region_sets``; robust statistics, hysteresis and
lesion sizes those of ``csvd_bids.morphology``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from csvd_bids.markers.base import (
    Detection,
    MarkerSpec,
    NotAssessableError,
    SessionImages,
    register,
)
from csvd_bids.morphology import (
    FACES,
    bounding_box,
    keep_seeded,
    mode_stats,
    remove_small_lesions,
    smooth_mm,
)
from csvd_bids.preproc.regions import (
    PERIVENTRICULAR_MM,
    distance_mm,
    subject_ventricles,
    within_mm,
)
from csvd_bids.region_sets import (
    BRAINSTEM,
    CORTEX_REGIONS,
    CSF_REGIONS,
    DEEP_GM_REGIONS,
    LATERAL_VENTRICLES,
    NAWM_REGIONS,
    NONCAPSULAR_WM_REGIONS,
    WHITE_MATTER_REGIONS,
)

BOX_MARGIN = 2  # voxels around the brain's bounding box, where every step happens
SEARCH_REGIONS = (*WHITE_MATTER_REGIONS, *DEEP_GM_REGIONS)  # + the brainstem (a parameter)
# Where a model's WMH may lie: the detector's regions, and the lateral ventricles, which an
# atlas registered to a brain with smaller ones lets overlap periventricular lesions
MODEL_LESION_REGIONS = (*SEARCH_REGIONS, BRAINSTEM, LATERAL_VENTRICLES)


@dataclass(frozen=True)
class WMHParams:
    region_prior: float = 0.3  # WM + deep GM template prior above which lesions may grow
    include_brainstem: bool = True  # pontine WMH are part of CSVD
    rescue_mm: float = 3.0  # CSF-labelled, FLAIR-bright voxels this near the tissue may be WMH
    csf_z: float = -2.5  # FLAIR z-score below which a voxel counts as CSF
    # Chosen on synthetic seeds 21 and 31 (1 mm) and the two labelled real MS scans (sub-ms07,
    # sub-ms26); benchmarks/marker_evaluation.py reports held-out seeds.
    z_seed: float = 3.5
    z_grow: float = 2.0
    u_seed: float = 5.0
    # ... or a FLAIR this many times the NAWM median: where the cortex is much brighter than
    # WM on FLAIR, u >= u_seed would ask a lesion for over 1.7 x NAWM, and small, faint
    # lesions (low-load subjects: held-out Dice 0.0-0.15) had no seed at all.
    seed_ratio: float = 1.5
    # The cortex counts as at least this much brighter than NAWM on FLAIR (of the NAWM
    # level): thick slices average the cortex with WM and CSF, its median falls towards the
    # NAWM's (1.05 x at 7 mm on the real MS scans, 1.12-1.15 x at 1 mm), and every u threshold
    # with it: 30 ml of false positives on a 7 ml scan.
    min_grey_contrast: float = 0.08
    # ... and in the periventricular, deep and centrum-semiovale WM, at most this much: a
    # long-TE FLAIR (physics engine, TE 117 ms) made the cortex 1.33 x NAWM and 27 ml of WMH
    # at 1.57 x were found as 1.2 ml (Dice 0.07 -> 0.58 with it). Cortex measured 1.10-1.16 x
    # NAWM on the real MS scans and the template engine, where this changes nothing; applied
    # in the cortex, deep GM and juxtacortical WM too, it gave 83-266 false components there.
    max_grey_contrast: float = 0.2
    u_grow: float = 2.5
    smoothing_sigma_mm: float = 0.5
    min_seed_mm3: float = 6.0  # a seed is a connected cluster at least this large (not noise)
    lining_mm: float = 3.0  # unsmoothed second pass this near the ventricles
    t1_min_v: float = 0.2  # WMH are at least this far from NAWM towards GM on T1w ...
    t1_strong_u: float = 4.0  # ... unless this bright on FLAIR
    pv_fill_v: float = 0.5  # ventricle-wall voxels joined when this far from NAWM towards GM
    min_volume_mm3: float = 10.0
    exclude_other_lesions: bool = True  # step 6 (lacunes, recent infarcts)


PARAMS = WMHParams()


def _hysteresis(
    grow: np.ndarray, seeds: np.ndarray, voxel_mm3: float, min_seed_mm3: float
) -> np.ndarray:
    """Connected components of ``grow`` that hold a seed cluster of at least min_seed_mm3."""
    return keep_seeded(grow, remove_small_lesions(seeds & grow, voxel_mm3, min_seed_mm3))


def _enough(where: np.ndarray, what: str) -> np.ndarray:
    if where.sum() < 100:
        raise NotAssessableError(f"too few {what} voxels to model the FLAIR signal")
    return where


def _normal_tissue(
    flair: np.ndarray,
    t1: np.ndarray | None,
    brain: np.ndarray,
    wm_regions: np.ndarray,
    cortex: np.ndarray,
    params: WMHParams,
) -> np.ndarray:
    """Normal-appearing white matter (step 1), without FLAIR-dark CSF and the partial volume
    around it.

    On FLAIR, normal WM is darker than the cortex and lesions are brighter, so NAWM candidates
    are the WM-region voxels under the cortex median, and their level is the histogram mode:
    when confluent WMH are most of the white matter, a median (or a T1w-only selection: mild
    WMH are T1w-isointense) follows the lesions, and nothing is found.
    """
    _enough(wm_regions, "white matter")
    _enough(cortex, "cortex")
    candidates = _enough(wm_regions & (flair < np.median(flair[cortex])), "white matter")
    level, spread = mode_stats(flair[candidates])
    # the brain's FLAIR-dark voxels (CSF) and 2 voxels around them: partial volume
    csf = ndimage.binary_dilation(brain & (flair < level + params.csf_z * spread), iterations=2)
    nawm = wm_regions & ~csf & (flair < np.median(flair[_enough(cortex & ~csf, "cortex")]))
    if t1 is not None:  # and WM-like on T1w: nearer the WM than the cortex median
        t1_wm = mode_stats(t1[_enough(nawm, "white matter")])[0]
        t1_gm = float(np.median(t1[cortex]))
        midpoint = 0.5 * (t1_wm + t1_gm)
        nawm &= (t1 > midpoint) if t1_wm > t1_gm else (t1 < midpoint)
    return _enough(nawm, "normal-appearing white matter")


def detect_wmh(session: SessionImages, params: WMHParams = PARAMS) -> Detection:
    box = bounding_box(session.brain_mask, BOX_MARGIN)  # distances are costly: work there
    if box is None:
        raise NotAssessableError("empty brain mask")
    t1 = session.data("t1w")[box] if "t1w" in session.images else None
    regions = session.regions[box]
    priors = {name: prior[box] for name, prior in session.priors.items()}
    mask, score, dist_ventricles = _segment(
        session.data("flair")[box],
        t1,
        session.brain_mask[box],
        regions,
        priors,
        session.zooms,
        params,
    )
    full_mask = np.zeros(session.brain_mask.shape, dtype=bool)
    full_score = np.zeros(session.brain_mask.shape, dtype=np.float32)
    # periventricular = within 10 mm of the lateral ventricles (region 1), deep otherwise
    pv_regions = np.full(session.brain_mask.shape, 2, dtype=np.uint8)
    full_mask[box], full_score[box] = mask, score
    if params.exclude_other_lesions:  # step 6: lacunes, recent infarcts
        full_mask = session.leave_out_excluded(full_mask, params.min_volume_mm3)
    pv_regions[box] = np.where(dist_ventricles <= PERIVENTRICULAR_MM, 1, 2)
    return Detection(
        score=full_score,
        mask=full_mask,
        regions=pv_regions,
        region_names={1: "periventricular", 2: "deep"},
    )


def _segment(
    raw: np.ndarray,
    t1: np.ndarray | None,
    brain: np.ndarray,
    regions: np.ndarray,
    priors: dict[str, np.ndarray],
    zooms: tuple[float, float, float],
    params: WMHParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask, score and distance to the lateral ventricles (mm) on the brain's box."""
    voxel_mm3 = float(np.prod(zooms))
    flair = smooth_mm(raw, params.smoothing_sigma_mm, zooms)
    # where normal white matter is looked for: WM regions but the capsules (bright on FLAIR
    # in many healthy brains) where the template calls the voxel WM
    wm_regions = brain & np.isin(regions, NONCAPSULAR_WM_REGIONS) & (priors["wm"] >= 0.5)
    cortex = brain & np.isin(regions, CORTEX_REGIONS)
    nawm = _normal_tissue(flair, t1, brain, wm_regions, cortex, params)

    deep_white = np.isin(regions, NAWM_REGIONS)  # where max_grey_contrast caps the contrast

    def contrasts(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """z, u and the NAWM level of ``image``."""
        level, spread = mode_stats(image[nawm])
        grey = float(np.median(image[cortex]))
        floor = max(spread, params.min_grey_contrast * level)
        contrast = max(grey - level, floor)
        capped = max(min(grey - level, params.max_grey_contrast * level), floor)
        u = (image - level) / np.where(deep_white, capped, contrast)
        return (image - level) / spread, u, level

    z, u, nawm_flair = contrasts(flair)
    z_raw, u_raw, _ = contrasts(raw)
    dark = brain & (z < params.csf_z)
    ventricles = brain & (regions == LATERAL_VENTRICLES)
    if not ventricles.any():  # no atlas ventricles: follow the template's into dark voxels
        ventricles = subject_ventricles(priors["ventricles"], dark, zooms) & brain

    # Search region (see the module docstring, step 2)
    allowed = SEARCH_REGIONS + ((BRAINSTEM,) if params.include_brainstem else ())
    region = brain & np.isin(regions, allowed)
    rescue = np.isin(regions, CSF_REGIONS) & brain & ~dark
    rescue &= within_mm(region, params.rescue_mm, zooms)
    likely = priors["wm"] + priors["gm"] * (priors["wm"] > 0.05) >= params.region_prior
    region = (region & likely) | rescue
    cortex_ok = cortex & likely
    seedable = (region | cortex_ok) & ~ventricles

    # T1w: WMH are iso/hypointense (v = 0 at NAWM, 1 at GM)
    v, t1_ok = None, np.ones_like(brain)
    if t1 is not None:
        t1_nawm = float(np.median(t1[nawm]))
        t1_grey = float(np.median(t1[cortex]))
        if abs(t1_nawm - t1_grey) > 1e-6 * max(abs(t1_nawm), 1.0):  # else T1w cannot help
            v = (t1_nawm - t1) / (t1_nawm - t1_grey)
            t1_ok = v >= params.t1_min_v

    grow = (region | cortex_ok) & (z >= params.z_grow) & (u >= params.u_grow)
    grow &= t1_ok | (u >= params.t1_strong_u)
    bright = (u >= params.u_seed) | (flair >= params.seed_ratio * nawm_flair)
    seeds = seedable & (z >= params.z_seed) & bright
    mask = _hysteresis(grow, seeds, voxel_mm3, params.min_seed_mm3)

    dist_ventricles = distance_mm(ventricles, zooms)
    if params.lining_mm > 0:
        band = region & (dist_ventricles <= params.lining_mm)
        grow = band & (z_raw >= params.z_grow) & (u_raw >= params.u_grow)
        grow &= t1_ok | (u_raw >= params.t1_strong_u)
        bright = (u_raw >= params.u_seed) | (raw >= params.seed_ratio * nawm_flair)
        seeds = seedable & (z_raw >= params.z_seed) & bright
        mask |= _hysteresis(grow, seeds, voxel_mm3, params.min_seed_mm3)

    if v is not None and (ventricles & dark).any():
        # Ventricle-wall partial volume (step 5): tissue on T1w (nearer NAWM than ventricular
        # CSF) but not NAWM, next to both a lesion and the ventricles.
        csf_level = float(np.median(t1[ventricles & dark]))
        tissue = (t1 - csf_level) / (t1_nawm - csf_level) >= 0.5
        wall = ndimage.binary_dilation(ventricles, FACES)
        touching = ndimage.binary_dilation(mask, FACES)
        mask |= touching & wall & (region | ventricles) & tissue & (v >= params.pv_fill_v)

    mask = remove_small_lesions(mask, voxel_mm3, params.min_volume_mm3)
    midpoint = 0.5 * (params.u_grow + params.u_seed)
    score = 1.0 / (1.0 + np.exp(-(u - midpoint) / 0.5))
    score = np.where(region | cortex_ok | mask, score, 0.0).astype(np.float32)
    return mask, score, dist_ventricles


def locate_wmh(session: SessionImages, mask: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """1 periventricular (within 10 mm of the lateral ventricles), 2 deep."""
    ventricles = session.regions == LATERAL_VENTRICLES
    near = within_mm(ventricles, PERIVENTRICULAR_MM, session.zooms)
    return np.where(near, 1, 2).astype(np.uint8), {1: "periventricular", 2: "deep"}


register(
    MarkerSpec(
        "wmh",
        required=("flair",),
        optional=("t1w",),
        excludes=("lacunes", "rssi"),  # STRIVE keeps them apart (step 6)
        detect=detect_wmh,
        locate=locate_wmh,
        regions=("periventricular", "deep"),
        lesion_regions=MODEL_LESION_REGIONS,
        method="FLAIR hyperintensity inside the subject's white matter (region map), relative "
        "to normal-appearing white matter (the FLAIR histogram mode of template white matter "
        "darker than the cortex, robust to confluent lesions) and cortex, with hysteresis "
        "lesion growth (seeds: "
        f"z >= {PARAMS.z_seed} and u >= {PARAMS.u_seed} or FLAIR >= {PARAMS.seed_ratio} x "
        f"NAWM; growth: z >= {PARAMS.z_grow} and "
        f"u >= {PARAMS.u_grow}), a second pass on the unsmoothed FLAIR for periventricular "
        "linings, T1w iso/hypointensity required of weak voxels and used to resolve the "
        "ventricle-wall partial volume, lacunes with their rims and recent infarcts (DWI, when "
        "present) excluded; "
        f"minimum {PARAMS.min_volume_mm3} mm3",
    )
)
