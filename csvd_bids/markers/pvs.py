"""Enlarged perivascular spaces: thin CSF-like tubes on T2w, found by multi-scale vesselness.

Method (Hessian-based vesselness filtering of T2w, as in Ballerini et al., Sci Rep 2018, and
the other Frangi-filter PVS methods; the STRIVE definition, Wardlaw et al. 2013 and Duering
et al. 2023: CSF-like on every contrast, linear, < 3 mm across, no FLAIR-hyperintense rim):

1. Regions: a tissue classifier calls the voxels of a PVS CSF, so small CSF pockets enclosed
   in tissue take the region of the nearest non-cortical tissue (:func:`fill_csf_pockets`);
   the CSF connected to the outside of the brain (sulci, cisterns) stays CSF.
2. Normalisation against this subject's tissue: T2w as ``u = (T2 - NAWM) / (CSF - NAWM)``
   (normal-appearing white matter at 0, ventricular CSF at 1) and as a robust z-score (median
   and 1.4826 x MAD of the NAWM); FLAIR in grey-white contrasts (NAWM 0, grey matter 1, as in
   the WMH detector); T1w as a robust z-score.
3. Vesselness: the objectness measure for bright 1-D structures of Antiga (2007), a
   generalisation of Frangi et al. (1998) (SimpleITK ``ObjectnessMeasure``), on ``u`` smoothed
   at ``scales_mm`` (scale-normalised, in physical units, so anisotropic voxels are handled),
   maximum over the scales. Tubes score high, blobs and plates low.
4. Candidates by hysteresis: seeds with vesselness >= ``vesselness_min`` (in the basal
   ganglia ``vesselness_min_bg``: their grey matter is brighter on T2w, so a PVS there has
   less local contrast) and ``u >= u_min``, grown into connected voxels with vesselness >=
   ``vesselness_grow`` and ``u >= u_grow``; all with ``z >= z_min``, FLAIR below
   ``flair_core_u`` (a brighter core is a WMH) and T1w below ``t1_max_z`` (PVS are dark on
   T1w) when those images exist, inside the search region: cerebral white matter, basal
   ganglia and capsules (not the thalamus), more than ``ventricle_margin_mm`` from the
   lateral ventricles and ``csf_margin_mm`` from the outer CSF.
   Cortex is never searched.
5. A candidate lesion (26-connected) is dropped when it is lacune-like, i.e. the CSF-like
   structure it belongs to (``u >= blob_u``, not FLAIR-bright) holds a ball 3 mm across (the
   PVS width limit), when it has a FLAIR-hyperintense rim (more than ``rim_fraction`` of its
   ``rim_mm`` shell at FLAIR ``rim_u`` or more above the tissue it lies in: the NAWM, or the
   basal ganglia's median where brighter, :func:`tissue_flair_level`), or when it has fewer
   than ``min_voxels`` voxels;
   outside the basal ganglia, also when it is the edge of a CSF space: the partial-volume
   fluid (``u >= edge_u``) joined to it within ``edge_mm`` reaches clear CSF (``u >=
   clear_csf_u``) holding a ball ``2 x clear_csf_radius_mm`` across (a ventricle, horn,
   trigone or cistern that the region map, made from a template, does not call CSF). In the
   basal ganglia PVS cluster next to the frontal horns and open towards the basal cisterns,
   so the rule is not applied there.
6. The STRIVE size rule (width < 3 mm; csvd_bids.markers.size_rules) is applied to the
   returned mask by the caller, as for every marker.

The score map is vesselness x clip(u, 0, 1) inside the search region: a belief, not a
calibrated probability. Regions of the lesion table: 1 ``BG``, the atlas basal ganglia with
the internal and external capsules (they lie between and beside the nuclei on the axial
slices where BG-PVS are rated; the region map's capsules are the white matter within a few
mm of the lentiform nucleus, so adjacent to it by construction; whether the rating guide of
Potter et al. 2015 counts capsular PVS as BG is to confirm);
2 ``CSO``, the centrum semiovale of the region map plus the deep and juxtacortical white
matter above the roof of the lateral ventricles (the supraventricular white matter is what
the CSO rating covers); 3 ``other`` (periventricular and deep white matter below the roof,
and whatever lies outside the search region). A lesion gets the lowest-index region it touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from csvd_bids.markers.base import Detection, NotAssessableError, SessionImages
from csvd_bids.markers.size_rules import SIZE_RULES
from csvd_bids.morphology import (
    CONNECTIVITY,
    FACES,
    bounding_box,
    keep_seeded,
    label_lesions,
    robust_stats,
)
from csvd_bids.preproc.regions import joined_within_mm, within_mm
from csvd_bids.region_sets import (
    BASAL_GANGLIA,
    CAPSULE_REGIONS,
    CENTRUM_SEMIOVALE,
    CORTEX_REGIONS,
    CSF_REGIONS,
    DEEP_WM,
    JUXTACORTICAL_WM_REGIONS,
    LATERAL_VENTRICLES,
    NONCAPSULAR_WM_REGIONS,
    OTHER_CSF,
)

# The basal ganglia of the BG rating, with the capsules between and beside the nuclei.
BG_REGIONS = (BASAL_GANGLIA, *CAPSULE_REGIONS)
# Where PVS are searched: cerebral white matter and the deep grey matter with its capsules.
# The thalamus is left out: its medial edge lines the third ventricle, whose partial volumes
# look like PVS, and the BG/CSO ratings do not count thalamic PVS.
SEARCH_REGIONS = (*NONCAPSULAR_WM_REGIONS, *BG_REGIONS)
# What PVS must keep away from: CSF spaces and cortex, whose partial volumes are bright tubes
# and sheets on T2w too.
CSF_OR_CORTEX = (*CSF_REGIONS, *CORTEX_REGIONS)
PVS_REGIONS = ("BG", "CSO")
REGION_NAMES = {1: "BG", 2: "CSO", 3: "other"}
BG_INDEX = 1  # of REGION_NAMES
BOX_MARGIN = 4  # voxels around the brain's bounding box in which the detector works


@dataclass(frozen=True)
class PVSParams:
    """Parameters of :func:`detect_pvs` (see the module docstring for the method).

    Contrasts are in units of this subject's tissue: ``u`` is 0 at the NAWM and 1 at the
    ventricular CSF on T2w; ``z`` values are robust z-scores against the NAWM."""

    scales_mm: tuple[float, ...] = (0.6, 0.9, 1.3)  # Hessian scales, for 1-3 mm wide tubes
    alpha: float = 0.5  # Frangi's plate-vs-line sensitivity
    beta: float = 0.5  # Frangi's blob-vs-line sensitivity
    gamma: float = 0.2  # structureness, in units of the NAWM-to-CSF T2w contrast
    vesselness_min: float = 0.3  # seeds
    # Seeds in the basal ganglia and capsules: deep grey matter is brighter than white matter
    # on T2w, so a PVS there stands out less from what surrounds it, and vesselness measures
    # that local contrast: in tests/test_marker_pvs.py's volume (T2w WM 500, GM 700, CSF
    # 1400) a tube of 1100 scores 0.48 in white matter and 0.25 in grey matter. On physics
    # seeds 650-651, 0.2 instead of 0.3 found 54 instead of 50 of the 69 basal-ganglia truth
    # PVS, no new false positive (slice counts unchanged); on the real MS scans it adds 3
    # T2w-bright, T1w-dark dots or tubes in the lentiform nuclei and caudate (2 plausible, 1
    # uncertain), while 0.2 everywhere added 6 more outside the basal ganglia, mostly partial
    # volumes of the temporal horns and the midline.
    vesselness_min_bg: float = 0.2
    u_min: float = 0.4  # seeds: T2w at least this far from the NAWM towards the CSF
    vesselness_grow: float = 0.15  # growth from the seeds
    u_grow: float = 0.3
    z_min: float = 4.0  # and this many robust SDs above the NAWM (noise)
    # FLAIR in grey-white contrasts (NAWM 0, GM 1): this bright is a WMH or gliosis, not a PVS
    flair_core_u: float = 2.0
    t1_max_z: float = 0.0  # PVS are not brighter than NAWM on T1w
    ventricle_margin_mm: float = 2.0
    csf_margin_mm: float = 1.5
    blob_u: float = 0.5  # the T2-bright structure around a candidate, for the lacune check
    rim_mm: float = 2.0
    rim_u: float = 2.0  # FLAIR-hyperintense rim, in grey-white contrasts
    rim_fraction: float = 0.5
    min_voxels: int = 3
    # The CSF-edge rule (module docstring, step 5). On the real MS scans, 6 of the 7 PVS
    # found on the walls of trigones, horns and cisterns were joined this way to CSF holding
    # a 7 mm ball, none of the 7 plausible or uncertain ones; of the synthetic PVS outside the
    # basal ganglia (physics seeds 606-608, template seeds 601 and 603), one.
    edge_u: float = 0.25
    edge_mm: float = 3.0
    clear_csf_u: float = 0.8
    clear_csf_radius_mm: float = 2.0
    pocket_max_mm3: float = 300.0  # enclosed CSF-class pockets up to this size are tissue
    nawm_prior: float = 0.7
    csf_prior: float = 0.9
    gm_prior: float = 0.8


PARAMS = PVSParams()
PVS_METHOD = (
    "Bright tubular structures on T2w (multi-scale Frangi/Antiga vesselness at "
    f"{', '.join(f'{s:g}' for s in PARAMS.scales_mm)} mm on T2w normalised to the subject's "
    "white matter and CSF), CSF-like on T1w and not FLAIR-hyperintense (core or rim), in the "
    "basal ganglia and cerebral white matter away from the ventricles and cortex, without "
    "lacune-like blobs, kept when narrower than 3 mm (STRIVE)"
)


def _nawm(session: SessionImages, regions: np.ndarray, params: PVSParams) -> np.ndarray:
    nawm = (
        session.brain_mask
        & np.isin(regions, NONCAPSULAR_WM_REGIONS)
        & (session.priors["wm"] >= params.nawm_prior)
    )
    if nawm.sum() < 100:
        raise NotAssessableError(
            "too few normal-appearing white matter voxels to normalise the T2w"
        )
    return nawm


def _flair_contrast(
    session: SessionImages,
    flair: np.ndarray,
    nawm: np.ndarray,
    box: tuple[slice, ...],
    params: PVSParams,
) -> np.ndarray:
    """FLAIR in units of this subject's grey-white contrast: NAWM 0, grey matter 1 (as in the
    WMH detector). Deep grey matter is FLAIR-brighter than white matter, so a z-score against
    the NAWM alone would call every basal-ganglia voxel hyperintense."""
    median, spread = robust_stats(flair[nawm])
    grey = session.brain_mask[box] & (session.priors["gm"][box] >= params.gm_prior)
    grey_median = float(np.median(flair[grey])) if grey.any() else median + 2.0 * spread
    return (flair - median) / max(grey_median - median, spread)


def _z(image: np.ndarray, nawm: np.ndarray) -> np.ndarray:
    median, spread = robust_stats(image[nawm])
    return (image - median) / spread


def vesselness(u: np.ndarray, zooms: tuple[float, ...], params: PVSParams) -> np.ndarray:
    """Maximum over scales of the bright-tube objectness of ``u`` (arrays in i, j, k order)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(u.transpose(2, 1, 0), dtype=np.float32))
    image.SetSpacing(tuple(float(z) for z in zooms))
    best = None
    for sigma in params.scales_mm:
        # sigma^2 x the smoothed image: its Hessian is the scale-normalised one (Lindeberg).
        smooth = sitk.DiscreteGaussian(
            image, variance=sigma**2, maximumKernelWidth=64, useImageSpacing=True
        ) * float(sigma**2)
        measure = sitk.ObjectnessMeasure(
            smooth,
            alpha=params.alpha,
            beta=params.beta,
            gamma=params.gamma,
            scaleObjectnessMeasure=False,
            objectDimension=1,
            brightObject=True,
        )
        array = sitk.GetArrayFromImage(measure)
        best = array if best is None else np.maximum(best, array)
    return best.transpose(2, 1, 0)


def _above_ventricles(regions: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Voxels above the roof of the lateral ventricles (world z, RAS)."""
    ventricles = regions == LATERAL_VENTRICLES
    if not ventricles.any():
        return np.zeros(regions.shape, dtype=bool)
    # one axis at a time, broadcast: the same sums as over a full index grid, in a tenth of
    # the time (0.5 s per call at 1 mm)
    i, j, k = (np.arange(n, dtype=np.float32) for n in regions.shape)
    z = affine[2, 0] * i[:, None, None] + affine[2, 1] * j[None, :, None]
    z = z + affine[2, 2] * k[None, None, :] + affine[2, 3]
    return z > np.percentile(z[ventricles], 99)  # robust to a stray voxel, as the template's


def fill_csf_pockets(
    regions: np.ndarray, brain: np.ndarray, zooms: tuple[float, ...], pocket_max_mm3: float
) -> tuple[np.ndarray, np.ndarray]:
    """(regions with enclosed CSF pockets relabelled, the external CSF).

    A tissue classifier calls the voxels of a PVS (and of a lacune) CSF, so the region map
    labels them ``other_csf``. CSF-class voxels connected to the outside of the brain, through
    faces, edges or corners, are the sulcal and cisternal CSF: partial volumes leave a thin
    sulcus's CSF voxels touching at edges only, and such a fragment, taken for a pocket, was
    reported as a PVS on real scans. The others are pockets inside tissue, unless larger
    than ``pocket_max_mm3`` or mostly surrounded by cortex (the fundus of a sulcus, cut off from
    the rest of its CSF by partial volumes); a pocket takes the label of the nearest
    non-cortical tissue, so that a PVS is searched for and named in the region that holds it."""
    csf = regions == OTHER_CSF
    outer = keep_seeded(csf | ~brain, ~brain, CONNECTIVITY) & brain
    pockets, n = label_lesions(csf & ~outer, FACES)
    if n == 0:
        return regions, outer
    sizes = np.bincount(pockets.ravel()) * float(np.prod(zooms))
    # The one-voxel shell of each pocket: mostly cortex means the fundus of a sulcus.
    shell = ndimage.grey_dilation(pockets, size=(3, 3, 3)) * (pockets == 0)
    cortex = np.isin(regions, CORTEX_REGIONS)
    in_cortex = np.asarray(ndimage.mean(cortex, shell, np.arange(n + 1)))
    small = (sizes <= pocket_max_mm3) & ~(in_cortex > 0.5)
    small[0] = False
    pocket = small[pockets]
    outer |= csf & ~pocket
    # Cortex is not a donor: the partial-volume rim of a PVS is often classified grey matter.
    tissue = brain & (regions > 0) & ~np.isin(regions, CSF_OR_CORTEX)
    if not tissue.any():
        return regions, outer
    nearest = ndimage.distance_transform_edt(~tissue, return_distances=False, return_indices=True)
    filled = regions.copy()
    filled[pocket] = regions[tuple(axis[pocket] for axis in nearest)]
    return filled, outer


def pvs_regions(regions: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """1 basal ganglia (with the capsules), 2 centrum semiovale, 3 other."""
    out = np.full(regions.shape, 3, dtype=np.uint8)
    cso = (regions == CENTRUM_SEMIOVALE) | (
        np.isin(regions, (DEEP_WM, *JUXTACORTICAL_WM_REGIONS)) & _above_ventricles(regions, affine)
    )
    out[cso] = 2
    out[np.isin(regions, BG_REGIONS)] = BG_INDEX
    return out


def _maps(session: SessionImages, params: PVSParams) -> dict[str, Any]:
    """The detector's intermediate maps, inside the brain's bounding box (``box``)."""
    zooms = session.zooms
    box = bounding_box(session.brain_mask, BOX_MARGIN)
    if box is None:
        raise NotAssessableError("empty brain mask")
    brain = session.brain_mask[box]
    regions_full = session.regions
    regions, outer = fill_csf_pockets(regions_full[box], brain, zooms, params.pocket_max_mm3)
    nawm = _nawm(session, regions_full, params)[box]

    t2 = session.data("t2w")[box]
    median, spread = robust_stats(t2[nawm])
    csf = brain & (regions == LATERAL_VENTRICLES)
    if csf.sum() < 50:  # no ventricles in the region map: clear CSF by the priors
        csf = brain & (session.priors["csf"][box] >= params.csf_prior)
    csf_median = float(np.median(t2[csf])) if csf.any() else np.nan
    if not np.isfinite(csf_median) or csf_median <= median + spread:
        raise NotAssessableError(
            "the T2w shows no CSF brighter than white matter: not a T2w contrast"
        )
    u = (t2 - median) / (csf_median - median)
    z = (t2 - median) / spread

    search = brain & np.isin(regions, SEARCH_REGIONS)
    search &= ~within_mm(regions == LATERAL_VENTRICLES, params.ventricle_margin_mm, zooms)
    search &= ~within_mm(outer, params.csf_margin_mm, zooms)

    vessel = np.zeros(u.shape, np.float32)
    if search.any():  # filter only around the search region (the expensive part)
        margin = int(np.ceil(4 * max(params.scales_mm) / min(zooms)))
        inner = bounding_box(search, margin)
        vessel[inner] = vesselness(u[inner], zooms, params)
    # Hysteresis: tubes seeded where clearly tubular and bright, grown along weaker evidence.
    candidates = search & (vessel >= params.vesselness_grow) & (u >= params.u_grow)
    candidates &= z >= params.z_min
    named = pvs_regions(regions, affine_of_box(session.reference.affine, box))
    seed_vesselness = np.where(named == BG_INDEX, params.vesselness_min_bg, params.vesselness_min)
    seeds = candidates & (vessel >= seed_vesselness) & (u >= params.u_min)
    maps = {"box": box, "regions": regions, "search": search, "u": u, "z": z, "vessel": vessel}
    maps["bright"] = candidates.copy()
    flair_u = None
    if "flair" in session.images:
        flair_u = _flair_contrast(session, session.data("flair")[box], nawm, box, params)
        candidates &= flair_u < params.flair_core_u
        maps["flair_u"] = flair_u
    if "t1w" in session.images:
        maps["t1_z"] = _z(session.data("t1w")[box], nawm)
        candidates &= maps["t1_z"] < params.t1_max_z
    candidates = keep_seeded(candidates, seeds)
    maps["candidates"] = candidates
    # the mask before the size rule, which the caller applies (csvd_bids.markers.size_rules)
    tissue_flair = 0.0 if flair_u is None else tissue_flair_level(flair_u, named, search)
    kept = reject_mimics(candidates, u, flair_u, brain, search, zooms, params, tissue_flair)
    maps["kept"] = reject_csf_edges(kept, u, brain, named, zooms, params)
    return maps


def pvs_region_map(
    session: SessionImages, params: PVSParams = PARAMS, filled: np.ndarray | None = None
) -> np.ndarray:
    """The detector's region map (``pvs_regions``) of the whole volume, in which CSF pockets
    enclosed by tissue (a PVS is CSF to the tissue classes) carry the label of their tissue
    (``fill_csf_pockets``): a PVS is named by the region that holds it. ``filled``: those
    regions in the brain's box, when the detector has them already."""
    regions = session.regions
    region_map = pvs_regions(regions, session.reference.affine)
    box = bounding_box(session.brain_mask, BOX_MARGIN)
    if box is not None:
        if filled is None:
            filled, _ = fill_csf_pockets(
                regions[box], session.brain_mask[box], session.zooms, params.pocket_max_mm3
            )
        region_map[box] = pvs_regions(filled, affine_of_box(session.reference.affine, box))
    return region_map


def locate_pvs(session: SessionImages, mask: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """BG, CSO and other, named as the detector names them (``pvs_region_map``)."""
    return pvs_region_map(session), dict(REGION_NAMES)


def detect_pvs(session: SessionImages, params: PVSParams = PARAMS) -> Detection:
    """Enlarged perivascular spaces of one session (see the module docstring)."""
    shape = session.brain_mask.shape
    score = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    maps = _maps(session, params)
    box = maps["box"]
    score[box] = np.where(maps["search"], maps["vessel"] * np.clip(maps["u"], 0.0, 1.0), 0.0)
    mask[box] = maps["kept"]
    region_map = pvs_region_map(session, params, maps["regions"])
    return Detection(score=score, mask=mask, regions=region_map, region_names=dict(REGION_NAMES))


def affine_of_box(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ np.array([s.start for s in box]) + affine[:3, 3]
    return shifted


def reject_csf_edges(
    kept: np.ndarray,
    u: np.ndarray,
    brain: np.ndarray,
    named: np.ndarray,
    zooms: tuple[float, float, float],
    params: PVSParams,
) -> np.ndarray:
    """``kept`` without the lesions outside the basal ganglia (``named``: ``pvs_regions``;
    a lesion touching BG is BG, as it is named) that are edges of a clear CSF space (module
    docstring, step 5)."""
    labels, n = label_lesions(kept)
    in_bg = np.zeros(n + 1, dtype=bool)  # per lesion (ndimage.maximum sorts every voxel)
    in_bg[labels[named == BG_INDEX]] = True
    in_bg = in_bg[1:]
    if in_bg.all():
        return kept
    clear = brain & (u >= params.clear_csf_u)
    spaces, count = label_lesions(clear, FACES)
    # a space is wide where it holds a voxel farther than the radius from every other voxel
    core = clear & ~within_mm(~clear, params.clear_csf_radius_mm, zooms)
    wide = np.zeros(count + 1, dtype=bool)
    wide[spaces[core]] = True
    wide[0] = False
    fluid = brain & (u >= params.edge_u)
    keep = np.ones(n + 1, dtype=bool)
    keep[0] = False
    for index in np.flatnonzero(~in_bg) + 1:
        joined = joined_within_mm(labels == index, fluid, params.edge_mm, zooms)
        keep[index] = not wide[spaces[joined]].any()
    return keep[labels]


def tissue_flair_level(flair_u: np.ndarray, named: np.ndarray, search: np.ndarray) -> np.ndarray:
    """The FLAIR level (grey-white contrasts) of the tissue a PVS lies in, from which a rim
    is judged hyperintense: 0 (the NAWM) in white matter; in the basal ganglia the median of
    their searched voxels when brighter than that. Deep grey matter is FLAIR-brighter than
    white matter, and more so where the grey-white contrast is small (long-TE FLAIR, whose
    cortex is darkened by sulcal CSF): on physics seed 651 a session's basal ganglia measured
    1.0 and a fifth of their voxels reached the rim level of 2, so two clear BG PVS (27 and 28
    voxels, T2w u 1.0 and 1.4) were dropped as rimmed."""
    basal_ganglia = search & (named == BG_INDEX)
    level = max(0.0, float(np.median(flair_u[basal_ganglia]))) if basal_ganglia.any() else 0.0
    return np.where(named == BG_INDEX, np.float32(level), np.float32(0.0))


def reject_mimics(
    candidates: np.ndarray,
    u: np.ndarray,
    flair_u: np.ndarray | None,
    brain: np.ndarray,
    search: np.ndarray,
    zooms: tuple[float, float, float],
    params: PVSParams,
    tissue_flair: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Candidates without the lacune-like, FLAIR-rimmed and tiny components. A rim is
    FLAIR-hyperintense at ``rim_u`` above ``tissue_flair``, the FLAIR level of the tissue
    around it (``tissue_flair_level``; 0, the NAWM, by default)."""
    labels, n = label_lesions(candidates)
    if n == 0:
        return candidates
    tissue_flair = np.broadcast_to(np.asarray(tissue_flair, np.float32), candidates.shape)
    # Lacune-like: the CSF-like structure a candidate belongs to holds a ball as wide as the
    # PVS width limit (3 mm). Unlike the width of the whole structure, this is not fooled by
    # neighbouring thin PVS that touch.
    csf_like = search & (u >= params.blob_u)
    if flair_u is not None:  # lacune cavities are CSF-dark on FLAIR; WMH are not cavities
        csf_like &= flair_u < params.flair_core_u
    csf_like |= candidates
    structures, _ = label_lesions(csf_like)
    # the centres of such balls: farther than the radius from every voxel outside
    wide_core = csf_like & ~within_mm(~csf_like, SIZE_RULES["pvs"].maximum_mm / 2.0, zooms)
    wide = np.zeros(structures.max() + 1, dtype=bool)
    wide[np.unique(structures[wide_core])] = True
    wide[0] = False
    keep = np.ones(n + 1, dtype=bool)
    keep[0] = False
    rim_iter = max(1, int(round(params.rim_mm / min(zooms))))
    for index, sl in enumerate(ndimage.find_objects(labels), start=1):
        grown = tuple(
            slice(max(0, s.start - rim_iter - 1), min(dim, s.stop + rim_iter + 1))
            for s, dim in zip(sl, labels.shape, strict=True)
        )
        component = labels[grown] == index
        if component.sum() < params.min_voxels:
            keep[index] = False
            continue
        if wide[np.unique(structures[grown][component])].any():
            keep[index] = False
            continue
        if flair_u is not None:
            shell = ndimage.binary_dilation(component, iterations=rim_iter) & ~component
            shell &= brain[grown]
            rim = flair_u[grown][shell] - tissue_flair[grown][shell]
            if shell.any() and (rim >= params.rim_u).mean() > params.rim_fraction:
                keep[index] = False
    return keep[labels]
