"""Lacunes of presumed vascular origin: round CSF-like cavities in the subcortical brain.

STRIVE (Wardlaw et al. 2013; Duering et al. 2023): a round or ovoid, subcortical, fluid-filled
cavity of 3-15 mm with a signal like CSF (dark on FLAIR and T1w, bright on T2w), often with a
FLAIR-hyperintense (gliotic) rim. The method is a candidate-and-filter approach in the family
of the rule-based lacune detectors (Yokoyama et al. 2007; Uchiyama et al. 2008; the candidate
stage of Ghafoorian et al. 2017), with a Laplacian-of-Gaussian blob measure (Lindeberg 1998):

1. Normalisation: each channel (FLAIR, and T1w/T2w when present), lightly smoothed, becomes a
   CSF-likeness ``c = (I - NAWM) / (CSF - NAWM)``: 0 in normal-appearing white matter (NAWM:
   WM regions with a high WM prior; median), 1 in the core of the subject's lateral ventricles
   (median), whatever the sign of the contrast. The channels are averaged. FLAIR is also put in
   grey-white units ``u`` (0 NAWM, 1 cortical grey matter), as in wmh.py.
2. Candidates: fluid voxels (mean ``c >= cavity_c``, FLAIR not hyperintense) in 6-connected
   components (face connectivity, so that a cavity touching a CSF space only at an edge or
   corner stays apart). Each candidate is rejected when it
   - reaches the lateral ventricles (region 1, within ``ventricle_margin_mm``) or the outside
     of the intracranial mask (sulcal and cisternal CSF is connected to it);
   - is not subcortical: less than ``min_ring_subcortical`` of a ring 2.5-5 mm around it lies
     in subcortical regions (deep or lobar below); a ring beyond the rim, because a gliotic rim
     is GM-like on T1w and often labelled cortex. Cavities in cortex are not lacunes. A cavity
     too wide to fit in the cortex (``wide_radius_mm``) needs less
     (``wide_min_ring_subcortical``): a lobar lacune just under the cortex;
   - lies where the template expects CSF (mean CSF prior above ``max_csf_prior``): temporal
     and occipital horns, the third ventricle, cisterns, the sylvian fissure;
   - is no blob: its scale-normalised LoG response (maximum over ``log_scales_mm``, in CSF
     units) is below ``min_blob`` (single fluid voxels, e.g. a PVS crossing a WMH);
   - is a tube (perivascular space): minor/major axis (skimage regionprops) below
     ``min_roundness``, or thinner than ``min_radius_mm`` (largest inscribed radius, from a
     distance transform) unless round and inside a clear FLAIR rim (``thin_rim_u``);
   - is part of a larger fluid space: the partial-volume fluid (``c >= halo_c``) connected to
     it within ``halo_mm`` holds more than ``max_halo`` times its own volume. A lacune is a
     closed cavity, surrounded by tissue and at most its own partial-volume edge; a pocket of
     a sulcus, a cistern or a ventricular horn the region map does not call ventricle goes
     on, below the cavity threshold, into the fluid it belongs to;
   - is dark on T2w (``min_t2w_c``, when there is a T2w): fluid is T2w-bright; a cavity that
     is dark on FLAIR and T1w but also on T2w is a calcification, old blood or a flow void;
   - is weak: belief = logistic(blob + rim), with rim = median FLAIR ``u`` of the voxels
     around the cavity, below ``min_score``. A large round cavity passes on its blob alone,
     a small one needs its rim, which no PVS has. A cavity clearly wider than the widest
     PVS (inscribed radius ``rimless_radius_mm``: 4-5 mm across) needs no rim (many lacunes
     have none): its belief is centred at ``rimless_evidence_mid`` instead.
3. Kept cavities grow into their rim (within ``rim_mm``): partial-volume fluid or
   FLAIR-hyperintense voxels.
4. The STRIVE size rule (3-15 mm maximum diameter) is applied to the returned mask by the
   caller, as for every marker.

Score map: the belief on the voxels of each candidate (capped below 0.5 for rejected ones),
0 elsewhere. Regions (``LACUNE_REGIONS``): 1 = deep (basal ganglia, thalamus, internal and
external capsule, periventricular and deep WM, centrum semiovale, brainstem, cerebellum),
2 = lobar (juxtacortical WM); each lesion is painted with the majority region of its voxels
(of its surroundings when its own voxels are labelled CSF or cortex).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import regionprops

from csvd_bids.markers.base import Detection, NotAssessableError, SessionImages
from csvd_bids.markers.blobs import log_blob_response
from csvd_bids.morphology import (
    FACES,
    bounding_box,
    keep_seeded,
    label_lesions,
    majority_label,
    robust_stats,
    smooth_mm,
)
from csvd_bids.preproc.regions import joined_within_mm, within_mm
from csvd_bids.region_sets import (
    CORTEX_REGIONS,
    DEEP_REGIONS,
    INFRATENTORIAL_REGIONS,
    JUXTACORTICAL_WM_REGIONS,
    LATERAL_VENTRICLES,
    NAWM_REGIONS,
)

LACUNE_REGIONS = ("deep", "lobar")
# Region labels (csvd_bids.region_sets) where lacunes may lie, by lacune region.
DEEP_LABELS = (*DEEP_REGIONS, *INFRATENTORIAL_REGIONS)
LOBAR_LABELS = JUXTACORTICAL_WM_REGIONS


@dataclass(frozen=True)
class LacuneParams:
    """Parameters of :func:`detect_lacunes`.

    Distances are in mm. Intensities are in contrast units of the subject's own tissues:
    CSF-likeness ``c`` (0 = normal-appearing WM, 1 = ventricular CSF, averaged over the
    channels) and FLAIR ``u`` (0 = normal-appearing WM, 1 = cortical grey matter).
    Chosen on the synthetic development data (generator seed 21, four subjects, five lacunes)
    and on lacunes planted into those subjects' preprocessed images; not yet checked on real
    labelled scans.
    """

    smoothing_sigma_mm: float = 0.5  # noise reduction before thresholding
    nawm_prior: float = 0.7  # WM prior above which a WM-region voxel may serve as NAWM
    cavity_c: float = 0.5  # CSF-likeness of a cavity voxel (halfway from NAWM to CSF)
    # FLAIR CSF-likeness a cavity voxel needs at least: "not hyperintense" (a WMH is near -1).
    # Thick FLAIR slices average a small cavity with its bright rim, so when T1w or T2w is
    # present they carry the fluid evidence and FLAIR only vetoes; FLAIR alone needs cavity_c.
    flair_c: float = -0.5
    ventricle_margin_mm: float = 1.5  # cavities this near the ventricles are part of them
    shell_mm: float = 1.0  # the shell around a cavity where its rim is measured (one voxel)
    ring_mm: tuple[float, float] = (2.5, 5.0)  # the ring beyond the rim that tells the context
    min_ring_subcortical: float = 0.5  # fraction of that ring in subcortical regions
    # ... or this fraction for a cavity at least ``wide_radius_mm`` wide (inscribed radius):
    # the cortex is 2-3 mm thick, so such a cavity cannot lie within it, and a lobar lacune
    # just under the cortex has much cortex in its ring (the atlas cortex of a registered
    # template is often a little thick there).
    wide_radius_mm: float = 2.0
    wide_min_ring_subcortical: float = 0.2
    # Mean template CSF prior of a cavity above which it is a normal CSF space of the template
    # (temporal/occipital horns, third ventricle, cisterns, sulci), not a new cavity.
    max_csf_prior: float = 0.3
    # Fewer voxels cannot show a shape (round or tubular) or a rim: on a 3 mm grid this costs
    # lacunes under about 6 mm, which such a grid cannot tell from PVS or noise anyway.
    min_voxels: int = 4
    min_radius_mm: float = 1.2  # largest inscribed radius: PVS are < 1.5 mm across
    min_roundness: float = 0.4  # minor / major axis of a cavity: PVS are tubes
    # A thinner cavity is kept only when round and inside a clear gliotic rim (a small lacune
    # whose cavity is partly hidden by partial volume): no PVS has a rim.
    thin_roundness: float = 0.5
    thin_rim_u: float = 0.6
    # The fluid halo (see the module docstring): partial-volume fluid connected to a cavity
    # within halo_mm, in cavity volumes. Chosen on the real MS scans (their six cavities
    # found, none a lacune: 1.6-11), physics-engine seed 606 and template seeds 601-604 (true
    # lacunes: at most 1.3). Within 5 mm, two of the 22 template lacunes (2-5 mm from a
    # ventricle) reached 3.3-4.4 through the ventricle's partial volume.
    halo_c: float = 0.25
    halo_mm: float = 3.0
    max_halo: float = 1.5
    rim_mm: float = 1.5  # how far a cavity grows into its abnormal rim
    # CSF-likeness of partial-volume rim voxels: a voxel a fifth fluid is mostly tissue; at 0.2
    # an 11 mm rimless lacune (physics engine) grew to 15.4 mm and broke the size rule.
    rim_c: float = 0.3
    rim_u: float = 0.5  # FLAIR u of gliotic rim voxels
    log_scales_mm: tuple[float, ...] = (1.5, 2.5, 4.0)  # LoG sigmas (radius ~ sqrt(3) sigma)
    # A cavity must be a blob at all: its LoG response (CSF units) at least this; single
    # partial-volume voxels of fluid (a PVS crossing a WMH) stay near 0.1.
    min_blob: float = 0.18
    # Evidence = blob (LoG, CSF units) + rim (median FLAIR u of the shell, >= 0); the belief
    # is a logistic of it, 0.5 at ``evidence_mid``: a large round cavity (blob ~0.8-0.9)
    # passes on its own, a small one needs its rim.
    evidence_mid: float = 0.8
    evidence_width: float = 0.15
    min_score: float = 0.5
    # A closed cavity this wide (inscribed radius, measured to the centre of the first voxel
    # outside it: a 2.6 mm ball measures 2.0 at 1 mm, a 5 mm one 2.8) is no PVS (< 3 mm
    # across): it needs no rim. Its blob falls short of a lacune with a rim when thick or
    # partly suppressed FLAIR lowers its mean CSF-likeness (an 11 mm rimless lacune of the
    # physics engine: blob 0.78; a 6.5 mm one, radius 2.8: 0.71). It was 3.0 until the
    # fourteenth session, which left 5-6.5 mm rimless lacunes to the rim rule (2 of the 9
    # lacunes missed on physics seeds 650-673; the 6.5 mm one is found at 2.5).
    rimless_radius_mm: float = 2.5
    rimless_evidence_mid: float = 0.6
    # T2w CSF-likeness a cavity needs when there is a T2w: fluid is bright on T2w; the physics
    # engine's pallidal calcifications, dark on FLAIR and T1w, are at -0.3 (lacunes 0.5-1.0).
    min_t2w_c: float = 0.25


PARAMS = LacuneParams()
LACUNE_METHOD = (
    "Round CSF-like cavities (FLAIR not hyperintense, dark on T1w, bright on T2w, relative to "
    "the subject's normal-appearing white matter and ventricular CSF) in subcortical regions, "
    "not connected to the ventricles or the subarachnoid space and not in template CSF "
    "spaces, round rather than tubular (perivascular spaces excluded), scored by a "
    "Laplacian-of-Gaussian blob response plus a FLAIR-hyperintense rim and grown into that "
    "rim, then the STRIVE 3-15 mm diameter rule"
)


def lacune_region_map(regions: np.ndarray) -> np.ndarray:
    """1 = deep, 2 = lobar, 0 = not a place for lacunes (cortex, CSF, outside)."""
    out = np.zeros(regions.shape, dtype=np.uint8)
    out[np.isin(regions, DEEP_LABELS)] = 1
    out[np.isin(regions, LOBAR_LABELS)] = 2
    return out


def _csf_likeness(
    image: np.ndarray, nawm: np.ndarray, csf: np.ndarray
) -> tuple[np.ndarray, float, float] | None:
    """(c, NAWM median, NAWM spread): c = 0 in NAWM, 1 in CSF, either contrast sign; None
    when the image does not tell CSF from white matter."""
    median, spread = robust_stats(image[nawm])
    contrast = float(np.median(image[csf])) - median
    if abs(contrast) < 3.0 * spread:
        return None
    return (image - median) / contrast, median, spread


def _shape(component: np.ndarray, zooms) -> tuple[float, float]:
    """(largest inscribed radius in mm, minor / major axis): PVS are thin tubes."""
    radius = float(ndimage.distance_transform_edt(np.pad(component, 1), sampling=zooms).max())
    if component.sum() < 4:
        return radius, 1.0
    props = regionprops(component.astype(np.uint8), spacing=tuple(zooms))[0]
    major = float(props.axis_major_length) + min(zooms)
    minor = float(props.axis_minor_length) + min(zooms)
    return radius, minor / major


@dataclass
class Candidate:
    """One CSF-like component and what the filters made of it (``reason`` empty = kept)."""

    box: tuple[slice, ...]  # the component's bounding box, grown by the shell and rim
    cavity: np.ndarray  # its voxels inside ``box``
    features: dict[str, float]
    belief: float = 0.0
    reason: str = ""


def _candidates(labels: np.ndarray, context: dict, zooms, params: LacuneParams) -> list[Candidate]:
    """Every fluid component with its features and, when rejected, why."""
    shape = labels.shape
    shell_vox = tuple(max(1, int(round(params.shell_mm / z))) for z in zooms)
    reach = max(params.ring_mm[1], params.rim_mm)
    grow = tuple(int(np.ceil(reach / z)) + 1 for z in zooms)
    out = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        big = tuple(
            slice(max(0, s.start - g), min(dim, s.stop + g))
            for s, g, dim in zip(box, grow, shape, strict=True)
        )
        local = {k: v[big] for k, v in context.items()}
        cavity = labels[big] == index
        free = labels[big] == 0
        shell = _shell(cavity, shell_vox) & free
        dist = ndimage.distance_transform_edt(~cavity, sampling=zooms)
        # The ring beyond the rim: a gliotic rim is often labelled cortex (GM-like on T1w).
        ring = (dist > params.ring_mm[0]) & (dist <= params.ring_mm[1]) & free
        f = {"voxels": float(cavity.sum())}
        f["radius_mm"], f["roundness"] = _shape(cavity, zooms)
        f["blob"] = float(local["blob"][cavity].max())
        f["csf_prior"] = float(local["csf_prior"][cavity].mean())
        f["rim"] = float(np.median(local["u_flair"][shell])) if shell.any() else 0.0
        f["ring_subcortical"] = float(local["subcortical"][ring].mean()) if ring.any() else 0.0
        f["t2w_c"] = float(local["c_t2w"][cavity].mean()) if "c_t2w" in local else 1.0
        candidate = Candidate(big, cavity, f)
        if (cavity & (local["near_ventricles"] | local["outside"])).any() or (
            shell & local["outside"]
        ).any():
            candidate.reason = "reaches the ventricles or the outside"
        elif f["voxels"] < params.min_voxels:
            candidate.reason = "too few voxels to judge"
        elif f["ring_subcortical"] < (
            params.wide_min_ring_subcortical
            if f["radius_mm"] >= params.wide_radius_mm
            else params.min_ring_subcortical
        ):
            candidate.reason = "not subcortical"
        elif f["csf_prior"] > params.max_csf_prior:
            candidate.reason = "a normal CSF space"
        elif f["blob"] < params.min_blob:
            candidate.reason = "no blob"
        elif f["roundness"] < params.min_roundness:
            candidate.reason = "tubular"
        elif f["radius_mm"] < params.min_radius_mm and (
            f["roundness"] < params.thin_roundness or f["rim"] < params.thin_rim_u
        ):
            candidate.reason = "thin without a rim"
        elif _halo(cavity, local["c"], zooms, params) > params.max_halo:
            candidate.reason = "part of a larger fluid space"
        elif f["t2w_c"] < params.min_t2w_c:
            candidate.reason = "dark on T2w (not fluid)"
        else:
            evidence = f["blob"] + max(f["rim"], 0.0)
            mid = (
                params.rimless_evidence_mid
                if f["radius_mm"] >= params.rimless_radius_mm
                else params.evidence_mid
            )
            candidate.belief = float(
                1.0 / (1.0 + np.exp(-(evidence - mid) / params.evidence_width))
            )
            if candidate.belief < params.min_score:
                candidate.reason = "weak"
        out.append(candidate)
    return out


def detect_lacunes(session: SessionImages, params: LacuneParams = PARAMS) -> Detection:
    """Lacunes of one session (FLAIR required; T1w and T2w used when present)."""
    if "flair" not in session.images:
        raise ValueError("the lacune detector needs a FLAIR image")
    zooms = session.zooms
    full_shape = session.brain_mask.shape
    # Work inside the brain's bounding box (filters and distances cost less there).
    box = bounding_box(session.brain_mask, int(np.ceil(10.0 / min(zooms))))
    if box is None:
        raise NotAssessableError("empty brain mask")
    brain = session.brain_mask[box]
    regions = session.regions[box]
    priors = {k: v[box] for k, v in session.priors.items()}
    channels = [m for m in ("flair", "t1w", "t2w") if m in session.images]
    images = {
        m: smooth_mm(session.data(m)[box], params.smoothing_sigma_mm, zooms) for m in channels
    }

    nawm = brain & np.isin(regions, NAWM_REGIONS) & (priors["wm"] >= params.nawm_prior)
    # The core of the ventricles (away from partial volume) is the CSF reference.
    ventricles = brain & (regions == LATERAL_VENTRICLES)
    csf_ref = ndimage.binary_erosion(ventricles, iterations=1)
    if csf_ref.sum() < 50:
        csf_ref = brain & (priors["csf"] >= 0.9)
    if nawm.sum() < 100 or csf_ref.sum() < 20:
        raise NotAssessableError("too few white matter or CSF voxels to normalise the images")
    likeness, stats = {}, {}
    for m in channels:
        found = _csf_likeness(images[m], nawm, csf_ref)
        if found is None and m == "flair":
            raise NotAssessableError("CSF and white matter are not separable on the FLAIR")
        if found is not None:  # an optional channel without CSF contrast is left out
            likeness[m], stats[m] = found[0], found[1:]
    c = np.mean(list(likeness.values()), axis=0).astype(np.float32)
    flair_median, flair_spread = stats["flair"]

    # FLAIR in grey-white contrast units (as in wmh.py): 1 = cortical grey matter.
    grey = brain & (priors["gm"] >= 0.8) & np.isin(regions, CORTEX_REGIONS)
    if grey.sum() < 100:
        grey = brain & (priors["gm"] >= 0.8)
    grey_median = float(np.median(images["flair"][grey])) if grey.any() else flair_median
    u_flair = (images["flair"] - flair_median) / max(grey_median - flair_median, flair_spread)
    place = lacune_region_map(regions)
    fluid = brain & (c >= params.cavity_c) & (likeness["flair"] >= params.flair_c)
    labels, n = label_lesions(fluid, FACES)  # face-connected (see the module docstring)

    score = np.zeros(brain.shape, dtype=np.float32)
    mask = np.zeros(brain.shape, dtype=bool)
    context = {
        "near_ventricles": within_mm(ventricles, params.ventricle_margin_mm, zooms),
        "outside": ~brain,
        "subcortical": place > 0,
        "blob": log_blob_response(c, zooms, params.log_scales_mm)[0],
        "u_flair": u_flair,
        "csf_prior": priors["csf"],
        "c": c,
    }
    if "t2w" in likeness:
        context["c_t2w"] = likeness["t2w"]
    for candidate in _candidates(labels, context, zooms, params) if n else []:
        near = candidate.box
        if candidate.reason:
            # rejected cavities keep their (sub-threshold) belief in the score map
            score[near][candidate.cavity] = np.minimum(candidate.belief, 0.49)
            continue
        lesion = _grow_rim(candidate.cavity, c[near], u_flair[near], zooms, params)
        mask[near] |= lesion
        score[near] = np.where(lesion, np.maximum(score[near], candidate.belief), score[near])

    score = np.where(mask, score, np.minimum(score, 0.49))
    out = {
        "score": np.zeros(full_shape, dtype=np.float32),
        "mask": np.zeros(full_shape, dtype=bool),
        "regions": lacune_region_map(session.regions),
    }
    out["score"][box], out["mask"][box] = score, mask
    out["regions"][box] = _majority_regions(mask, place)
    return Detection(**out, region_names={1: "deep", 2: "lobar"})


def _halo(cavity: np.ndarray, c: np.ndarray, zooms, params: LacuneParams) -> float:
    """Partial-volume fluid (``c >= halo_c``) connected to ``cavity`` within ``halo_mm``, in
    cavity volumes (the cavity itself not counted)."""
    joined = joined_within_mm(cavity, c >= params.halo_c, params.halo_mm, zooms)
    return float(joined.sum() - cavity.sum()) / float(cavity.sum())


def _shell(mask: np.ndarray, vox: tuple[int, int, int]) -> np.ndarray:
    structure = np.ones(tuple(2 * v + 1 for v in vox), dtype=bool)
    return ndimage.binary_dilation(mask, structure=structure) & ~mask


def _grow_rim(
    cavity: np.ndarray, c: np.ndarray, u_flair: np.ndarray, zooms, params: LacuneParams
) -> np.ndarray:
    """The cavity plus adjacent abnormal voxels within ``rim_mm``: partial-volume fluid or
    FLAIR-hyperintense gliosis."""
    near = within_mm(cavity, params.rim_mm, zooms)
    abnormal = (c >= params.rim_c) | (u_flair >= params.rim_u)
    return keep_seeded(cavity | (near & abnormal), cavity)


def locate_lacunes(session: SessionImages, mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """Deep or lobar: each lesion in the region holding most of it (as the detector)."""
    return _majority_regions(mask, lacune_region_map(session.regions)), {1: "deep", 2: "lobar"}


def _majority_regions(mask: np.ndarray, place: np.ndarray) -> np.ndarray:
    """The lacune region map with each lesion painted in its majority region (deep or lobar),
    so that a lesion is named by where most of it lies, not by one voxel of it. A lesion whose
    own voxels are all labelled CSF or cortex (its cavity is CSF-like, its rim GM-like on T1w)
    takes the majority of the 3 voxels around it."""
    labels, n = label_lesions(mask)
    majority = majority_label(labels, place, n)
    boxes = ndimage.find_objects(labels)
    for index in np.flatnonzero(majority == 0)[1:]:  # lesions wholly in CSF or cortex
        box = tuple(slice(max(0, s.start - 3), s.stop + 3) for s in boxes[index - 1])
        lesion = labels[box] == index
        around = ndimage.binary_dilation(lesion, iterations=3) & ~lesion
        majority[index] = majority_label(around.astype(np.uint8), place[box], 1)[1] or 1
    return np.where(labels > 0, majority[labels], place).astype(place.dtype)
