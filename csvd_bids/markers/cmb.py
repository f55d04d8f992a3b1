"""Cerebral microbleeds: small, round, dark foci on SWI / T2*-GRE.

Method (multi-scale Laplacian-of-Gaussian blob detection, Lindeberg IJCV 1998, with the
candidate screening of the semi-automated CMB tools reviewed by van den Heuvel et al.,
NeuroImage Clin 2016: shape, vessel and calcification rules after a sensitive detector):

1. Normalisation: the SWI relative to this subject's reference tissue, as a darkness
   ``D = (m - SWI) / m`` where m is the median SWI of the normal-appearing white matter (brain
   voxels with WM prior >= ``nawm_prior``, away from the brain edge). 0 = NAWM, 1 = signal void.
2. Detector: scale-normalised LoG ``-sigma^2 LoG(D)`` at scales matching ball diameters from
   ``min_diameter_mm`` to ``max_diameter_mm`` (sigma = radius / sqrt(3)); candidates are the
   local maxima (3x3x3) of the maximum over scales, above ``min_response`` and above the
   median + ``min_response_z`` robust SDs (1.4826 x MAD) of that strength in the reference
   tissue (its noise), inside the brain and at least ``edge_margin_mm`` from its edge (the
   skull, air, sinuses and bone are dark on SWI too).
3. Each candidate: its depth (mean D of its core, radius/2 around the peak) must reach
   ``min_depth`` and, minus the local background (median D in a shell outside it),
   ``min_contrast``; a candidate whose background is brighter than tissue
   (``max_background_brightness``) sits in CSF, not in the parenchyma: a flow void in a
   cistern or sulcus, a bridging vein, or bone and air at the edge of the mask. It is segmented
   as the voxels darker than halfway between background and core (connected to the peak,
   inside a box twice its radius plus ``box_margin_mm``). If the region above a lower level
   (``vessel_level``) runs out of the box, the candidate belongs to a longer dark structure
   (a vessel; thin veins look beaded after partial volume), unless a higher level
   (``segment_levels``) parts it from a structure clearly lighter than itself
   (``max_touching_depth``): a microbleed touching a vein. What the region map calls CSF is
   not part of that structure (``part_from_csf``): on a short-TR gradient echo CSF's long T1
   saturates it, and a cortical microbleed beside a sulcus joins its dark CSF, which is no
   vessel (dots in CSF, and lines of CSF through a dot, stay mimics: below). Its contrast
   must also be told from noise: at least ``min_contrast_snr`` times the noise of its core's
   mean (the robust SD of D in the reference tissue over the square root of the core's
   voxels; 5 is Rose's criterion for seeing a feature in noise). A noisy SWI (1.5 T, SNR
   about 10) darkened by its phase mask otherwise gave dozens of one-voxel "microbleeds".
4. Mimics are rejected:
   - veins (tubular): Hessian eigenvalues of D at the candidate's scale, sorted by magnitude;
     a ball bends D in all three directions, a vessel in two, so the ratio of the smallest to
     the largest (``min_blobness``) separates them (Frangi's R_B idea), and so does the
     segmented shape: the ratio of the two longest axes of its inertia ellipsoid
     (``max_elongation``), or a dark region that runs out of its box at every level. Both
     shape measures first shorten lengths along B0 (the NIfTI world z) by ``b0_stretch``:
     blooming stretches a microbleed along B0 (its dipole field's lobes, darkened by the SWI
     phase mask), and thick axial slices blur it further along z;
   - veins cut across: a vein under a millimetre thick running along B0 is a short dark dot
     on axial slices, compact once blooming is allowed for, but one voxel wide across B0; a
     microbleed is at least 2 mm across, so the narrowest axis of the segmented candidate's
     inertia ellipse in the plane across B0 (plus one voxel edge) must reach
     ``min_cross_section_mm``;
   - beaded veins: a dot on a vein that is itself only faintly dark (noise and partial volume
     break thin veins into beads) has a dark straight line through it on both sides
     (``max_line_darkness``), in a direction away from B0;
   - ends of veins: a dot where a vein ends or turns out of the slab (darkest there) has a
     dark line on one side only; the line must be darker than lines beside it
     (``end_flank_mm`` away, all four of them), so that a microbleed in the cortex or beside
     a dark nucleus, which has dark tissue on one side but no line, is kept
     (``max_end_darkness``);
   - flow voids and calcifications: CMB are invisible on T1w, while flow voids (and many
     calcifications) are dark there too: with a T1w, a candidate whose core is darker than its
     surroundings by more than ``max_t1_drop`` and darker than ``max_t1_ratio`` x the NAWM
     T1w (below grey matter, which is darker than WM on T1w and holds most CMB) is rejected;
   - dots in CSF by anatomy: a candidate centred in CSF on the region map (from the T1w) is
     a flow void or a vessel in a sulcus or cistern: on a short-TR gradient echo, CSF's long
     T1 saturates it below white matter, and the SWI-brightness rule above cannot see it;
   - calcifications: physiological calcifications (globus pallidus, dentate nucleus, choroid
     plexus) and the iron-rich nuclei dark on SWI (pallidum, red nucleus, substantia nigra,
     dentate) are bilateral and symmetric: a candidate in those structures with another one
     within ``symmetry_mm`` of its mirror image across the mid-sagittal plane (x = the brain's
     centroid; the reference grid is RAS) is rejected, as is any candidate centred in the
     lateral ventricles (choroid plexus);
   - midline mimics: a candidate in the deep grey matter or CSF within ``midline_mm`` of the
     mid-sagittal plane is the pineal gland or habenula (calcified in most older adults) or
     a deep midline vein; brainstem and medial cortex are not concerned.
5. The STRIVE size rule (2-10 mm, csvd_bids.markers.size_rules) is applied to the returned
   mask by the caller, as for every marker.

Score map: a logistic of the blob strength ``-sigma^2 LoG(D)`` (0.5 at the peak threshold) on the
voxels of the segmented candidates, a quarter of it on the rejected ones (mimics), 0 elsewhere:
a belief, not a probability.
Regions (MARS, Gregoire et al. 2009): 1 lobar (cortex and juxtacortical WM), 2 deep (BG,
thalamus, capsules, periventricular and deep WM, centrum semiovale), 3 infratentorial
(brainstem, cerebellum); brain voxels the region map leaves out (CSF) take the nearest one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import expit

from csvd_bids.markers.base import Detection, NotAssessableError, SessionImages
from csvd_bids.markers.blobs import log_blob_response
from csvd_bids.morphology import CONNECTIVITY, bounding_box, label_lesions, robust_stats
from csvd_bids.region_sets import (
    CSF_REGIONS,
    DEEP_GM_REGIONS,
    DEEP_REGIONS,
    INFRATENTORIAL_REGIONS,
    LATERAL_VENTRICLES,
    LOBAR_REGIONS,
)


@dataclass(frozen=True)
class CMBParams:
    """Parameters of :func:`detect_cmb` (lengths in mm, darkness D relative to the NAWM)."""

    # Reference tissue: brain voxels with a WM prior at least this (all brain voxels away from
    # the edge when the session has no WM prior).
    nawm_prior: float = 0.9
    # Diameters the LoG scales cover (the STRIVE range) and how many scales between them.
    min_diameter_mm: float = 2.0
    max_diameter_mm: float = 10.0
    n_scales: int = 6
    # Candidate peaks: blob strength at least this (in units of D; a ball of depth c gives
    # about c / 2) and at least this many robust standard deviations above the median
    # strength in the reference tissue.
    min_response: float = 0.12
    min_response_z: float = 4.0
    # Peaks nearer than this to the edge of the brain mask are not considered (skull, air,
    # venous sinuses and bone are dark on SWI).
    edge_margin_mm: float = 2.0
    # A candidate's core must be darker than its surroundings by this much (in units of D),
    # and darker than the NAWM by this much: microbleeds are marked signal losses, veins and
    # partial volumes of them shallower.
    min_contrast: float = 0.25
    min_depth: float = 0.3
    # ... and its contrast at least this many times the noise of its core's mean (Rose's
    # criterion; the noise is the robust SD of D in the reference tissue).
    min_contrast_snr: float = 5.0
    # Surroundings brighter than the NAWM by more than this (CSF is bright on SWI, grey matter
    # a little brighter than WM): the candidate lies in CSF, not in the parenchyma.
    max_background_brightness: float = 0.5
    # Extra room around a candidate (beyond twice its radius) for segmentation and background.
    box_margin_mm: float = 3.0
    # Segmentation levels, as fractions of the contrast from the background to the core: the
    # first (half-maximum) segments a focal candidate; the higher ones may part a microbleed
    # from a touching vein ...
    segment_levels: tuple[float, ...] = (0.5, 0.7, 0.85)
    # ... but only from a structure whose darkest voxel (above the background) is below this
    # fraction of the candidate's contrast: a bleed is darker than the vein it touches, while
    # the beads of one vein are alike.
    max_touching_depth: float = 0.75
    # A candidate whose region above this fraction of its contrast runs out of its box is
    # connected to a longer dark structure (a vessel), however compact its darkest part.
    vessel_level: float = 0.3
    # 1: voxels the region map calls CSF are not part of the structure a candidate touches
    # (0: they are). On a short-TR gradient echo, CSF's long T1 saturates it below white
    # matter: a cortical microbleed beside a sulcus joins its dark CSF, which no vessel is.
    part_from_csf: int = 1
    # Vein rejection: smallest / largest Hessian eigenvalue at the peak (1 = ball, 0 = tube)
    # and the longest / second-longest axis of the segmented candidate.
    min_blobness: float = 0.25
    max_elongation: float = 2.5
    # ... both measured after dividing lengths along B0 by this: blooming (the lobes of a
    # microbleed's dipole field, which the SWI phase mask darkens) stretches it along B0, so
    # that on 3 T SWI with 2 mm slices true microbleeds had blobness 0.16-0.3 and were
    # rejected as tubular.
    b0_stretch: float = 1.5
    # Veins cut across: the segmented candidate's narrowest width across B0 (inertia axis,
    # plus one voxel edge) must reach this. A microbleed is at least 2 mm across and blooming
    # only widens it; a medullary vein cut across (under a millimetre) spans one voxel.
    min_cross_section_mm: float = 1.5
    # Beaded veins: a vein in the slice plane, broken by noise and partial volume into dots, is
    # rejected when the mean darkness along a straight line through the candidate, on both
    # sides, from ``line_gap_mm`` beyond its radius for ``line_length_mm``, is at least this
    # fraction of its contrast, in some direction at least ``line_min_b0_angle_deg`` from B0
    # (along B0 lie the dipole lobes of the microbleed's own blooming). Microbleeds of both
    # generators measured 0.08 at most, dots on veins of the physics engine 0.24-0.29.
    max_line_darkness: float = 0.15
    line_gap_mm: float = 1.0
    line_length_mm: float = 8.0
    line_min_b0_angle_deg: float = 45.0
    # Ends of veins: the darkest straight line on one side (from ``line_gap_mm`` beyond the
    # radius, ``end_length_mm`` long, away from B0) minus the darkest of the four lines
    # parallel to it ``end_flank_mm`` away, at least this fraction of the contrast. On physics
    # seeds 606-608: the vein ends kept as microbleeds 0.38-0.61 (a vein branching out of
    # dark tissue: 0.18), true microbleeds 0.19 at most, cortical ones beside dark cortex
    # included (their plain one-sided line: up to 0.50). First fixed at 0.3; on physics seed
    # 614 a true microbleed measured 0.31 (the highest of 8 on seeds 609-614), hence 0.35.
    max_end_darkness: float = 0.35
    end_length_mm: float = 4.0
    end_flank_mm: float = 2.5
    # Flow void / calcification rejection with a T1w: a candidate is "dark on T1w" when its
    # core's T1w is below its surroundings' by more than max_t1_drop x the NAWM T1w and below
    # max_t1_ratio x the NAWM T1w (grey matter is about 0.6-0.8 of it, CSF about 0.3).
    max_t1_drop: float = 0.2
    max_t1_ratio: float = 0.5
    # Symmetric mimics: a mirror-image partner within this distance, in the structures where
    # physiological calcifications and iron-rich nuclei occur.
    symmetry_mm: float = 5.0
    # Midline mimics: a candidate in the deep grey matter or CSF within this distance of the
    # mid-sagittal plane is the pineal gland or habenula (calcified in most older adults) or
    # a deep midline vein (internal cerebral veins, vein of Galen), not a microbleed.
    midline_mm: float = 4.0
    # Width of the score logistic, relative to the peak threshold (where the score is 0.5).
    score_width: float = 0.25
    # At most this many candidates (strongest first) are examined.
    max_candidates: int = 5000


PARAMS = CMBParams()
CMB_REGIONS = ("lobar", "deep", "infratentorial")
CMB_METHOD = (
    "Multi-scale Laplacian-of-Gaussian detection of small round hypointense foci on SWI "
    "normalised to the subject's normal-appearing white matter, away from the brain edge, with "
    "rejection of dots not told from noise (Rose's criterion), of vessels (connected beyond "
    "the dot, Hessian blobness and inertia elongation allowing for blooming along B0, a "
    "dark line through the dot, one voxel wide across B0), of dots in CSF (SWI or region "
    "map), dark on T1w (flow voids, calcifications) or bilaterally symmetric in "
    "calcification-prone structures or on the midline between the thalami (pineal), and the "
    "STRIVE 2-10 mm size rule (in the axial plane)."
)

# MARS groups of the subject region map: lobar, deep, infratentorial.
_MARS_GROUPS = (LOBAR_REGIONS, DEEP_REGIONS, INFRATENTORIAL_REGIONS)
# Where symmetric mimics occur: physiological calcifications (globus pallidus, dentate
# nucleus, choroid plexus; pineal gland and habenula by the thalami) and the iron-rich nuclei
# that are dark on SWI (pallidum, red nucleus and substantia nigra, dentate nucleus).
_SYMMETRIC_MIMICS = (*DEEP_GM_REGIONS, *INFRATENTORIAL_REGIONS, *CSF_REGIONS)
# Where midline mimics occur: between the thalami and behind the third ventricle (not the
# brainstem, where microbleeds do lie on the midline, nor the cortex of the medial surface).
_MIDLINE_MIMICS = (*DEEP_GM_REGIONS, *CSF_REGIONS)


def mars_regions(regions: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """1 lobar, 2 deep, 3 infratentorial; other brain voxels take the nearest of them."""
    mars = np.zeros(regions.shape, dtype=np.uint8)
    for value, labels in enumerate(_MARS_GROUPS, start=1):
        mars[np.isin(regions, labels)] = value
    missing = brain & (mars == 0)
    if missing.any() and mars.any():
        # in the box that holds every voxel to fill and every named one: the same nearest
        # voxels as over the whole grid, in half its time
        box = bounding_box(brain | (mars > 0))
        local, fill = mars[box], missing[box]  # a view: filling it fills mars
        nearest = ndimage.distance_transform_edt(
            local == 0, return_distances=False, return_indices=True
        )
        local[fill] = local[tuple(index[fill] for index in nearest)]
    return mars, dict(enumerate(CMB_REGIONS, start=1))


def b0_axis(affine: np.ndarray, zooms) -> np.ndarray:
    """Unit vector of B0 (the scanner's z, which NIfTI world coordinates keep) in the mm frame
    of the voxel axes of a grid with this affine."""
    direction = np.linalg.solve(np.asarray(affine, float)[:3, :3], [0.0, 0.0, 1.0])
    direction = direction * np.asarray(zooms, float)
    return direction / np.linalg.norm(direction)


def _b0_compression(b0: np.ndarray | None, factor: float) -> np.ndarray:
    """Linear map that scales lengths along ``b0`` by ``factor`` (identity without B0)."""
    if b0 is None:
        return np.eye(3)
    return np.eye(3) + (factor - 1.0) * np.outer(b0, b0)


def _hessian_blobness(
    patch: np.ndarray,
    centre: tuple[int, ...],
    sigma_vox,
    zooms,
    b0: np.ndarray | None = None,
    b0_stretch: float = 1.0,
) -> float:
    """Smallest / largest eigenvalue (by magnitude) of the Hessian of -darkness at ``centre``.

    A dark ball curves D in all three directions (ratio near 1), a dark tube in two (near 0);
    a negative ratio (a saddle) is no blob either. Blooming stretches a microbleed along B0 (the
    lobes of its dipole field), so with ``b0`` the Hessian is taken in coordinates where
    lengths along B0 are divided by ``b0_stretch``: a ball stretched that much is round."""
    hessian = np.empty((3, 3))
    for a in range(3):
        for b in range(a, 3):
            order = [0, 0, 0]
            order[a] += 1
            order[b] += 1
            value = ndimage.gaussian_filter(patch, sigma_vox, order=order)[centre]
            hessian[a, b] = hessian[b, a] = -value / (zooms[a] * zooms[b])
    # d/du = stretch x d/dx along B0 when u = x / stretch.
    scale = _b0_compression(b0, b0_stretch)
    eigen = np.linalg.eigvalsh(scale @ hessian @ scale)
    eigen = eigen[np.argsort(np.abs(eigen))]
    return float(eigen[0] / eigen[2]) if eigen[2] > 0 else -1.0


def _inertia_axes_mm(points: np.ndarray, zooms: np.ndarray) -> np.ndarray:
    """Axis lengths (mm, longest first, plus one voxel edge) of the inertia ellipsoid of
    ``points`` (mm): a solid ellipsoid of semi-axis a has variance a^2 / 5 along it."""
    variances = np.sort(np.linalg.eigvalsh(np.cov(points.T)))[::-1]
    return 2.0 * np.sqrt(5.0 * np.clip(variances, 0.0, None)) + float(np.min(zooms))


def _elongation(
    component: np.ndarray,
    zooms: np.ndarray,
    b0: np.ndarray | None = None,
    b0_stretch: float = 1.0,
) -> float:
    """Longest / second-longest axis of the inertia ellipsoid (mm, plus one voxel edge), with
    lengths along ``b0`` divided by ``b0_stretch`` (the blooming, as for the blobness).

    A vessel is long in one direction only; the second axis (not the shortest) keeps small,
    flat voxelised dots from looking elongated."""
    points = np.argwhere(component) * zooms
    if len(points) < 3:
        return 1.0
    axes = _inertia_axes_mm(points @ _b0_compression(b0, 1.0 / b0_stretch), zooms)
    return float(axes[0] / axes[1])


def _cross_section_mm(component: np.ndarray, zooms: np.ndarray, b0: np.ndarray) -> float:
    """Narrowest axis (mm, plus one voxel edge) of the component's inertia ellipse in the plane
    across ``b0``: the width of what a slice perpendicular to B0 shows."""
    points = np.argwhere(component) * zooms
    if len(points) < 2:
        return float(np.min(zooms))
    # projected onto the plane: the first two axes are the plane's (the third, along B0, is 0)
    return float(_inertia_axes_mm(points @ (np.eye(3) - np.outer(b0, b0)), zooms)[1])


@dataclass
class _Candidate:
    peak: tuple[int, int, int]
    response: float
    box: tuple[slice, ...]
    component: np.ndarray  # bool, on the box
    core: np.ndarray  # bool, on the box
    ring: np.ndarray  # bool, on the box
    depth: float = 0.0  # mean darkness D of the core
    contrast: float = 0.0  # depth minus the background's darkness
    accepted: bool = True
    reason: str = ""


def _axes(count: int) -> np.ndarray:
    """Evenly spread unit vectors over a half sphere (a Fibonacci lattice): line directions."""
    k = np.arange(count) + 0.5
    height = k / count
    azimuth = np.pi * (1.0 + np.sqrt(5.0)) * k
    ring = np.sqrt(1.0 - height**2)
    return np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), height], axis=1)


_LINE_AXES = _axes(1024)  # about 4 degrees apart: 0.5 mm at 12 mm out


def _perpendiculars(axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to each axis and to each other."""
    helper = np.where(np.abs(axes[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    first = np.cross(axes, helper)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    return first, np.cross(axes, first)


_LINE_PERPENDICULARS = _perpendiculars(_LINE_AXES)


def _side_means(
    darkness: np.ndarray,
    peak: tuple[int, int, int],
    axes: np.ndarray,
    start_mm: float,
    length_mm: float,
    zooms: np.ndarray,
    shift_mm: np.ndarray | None = None,
) -> np.ndarray:
    """Mean darkness (side, axis) on the segments from ``start_mm`` to ``start_mm +
    length_mm`` out of ``peak`` along each axis, both ways, shifted by ``shift_mm`` (axis,
    3) when given."""
    steps = np.arange(start_mm, start_mm + length_mm + 1e-6, 0.5 * float(np.min(zooms)))
    # points (side, axis, step, xyz) in voxel units
    offsets = np.stack([axes, -axes])[:, :, None, :] * steps[None, None, :, None]
    if shift_mm is not None:
        offsets = offsets + shift_mm[None, :, None, :]
    points = np.asarray(peak, float) + offsets / zooms
    values = ndimage.map_coordinates(darkness, points.reshape(-1, 3).T, order=1, mode="nearest")
    return values.reshape(points.shape[:3]).mean(axis=2)


def _line_darkness(
    darkness: np.ndarray,
    peak: tuple[int, int, int],
    background: float,
    radius_mm: float,
    zooms: np.ndarray,
    b0: np.ndarray,
    params: CMBParams,
) -> tuple[float, float]:
    """Dark straight lines out of ``peak`` beyond the candidate, over the directions away
    from B0, on segments from ``line_gap_mm`` beyond ``radius_mm``: (through it: the largest
    value of the lesser of the two sides' mean darkness above ``background``; ending at it:
    the largest value of one side's mean darkness minus that of the darkest of the four
    segments parallel to it ``end_flank_mm`` away)."""
    away = np.abs(_LINE_AXES @ b0) <= np.cos(np.deg2rad(params.line_min_b0_angle_deg))
    axes = _LINE_AXES[away]
    start = radius_mm + params.line_gap_mm
    sides = _side_means(darkness, peak, axes, start, params.line_length_mm, zooms) - background
    line = _side_means(darkness, peak, axes, start, params.end_length_mm, zooms)
    flanks = [  # the four parallel segments, end_flank_mm away on either perpendicular
        _side_means(darkness, peak, axes, start, params.end_length_mm, zooms, shift * p[away])
        for p in _LINE_PERPENDICULARS
        for shift in (params.end_flank_mm, -params.end_flank_mm)
    ]
    return float(sides.min(axis=0).max()), float((line - np.max(flanks, axis=0)).max())


def _distance_mm(shape, centre, zooms) -> np.ndarray:
    """Distance (mm) of every voxel of a box from ``centre``."""
    grid = np.indices(shape, dtype=np.float32)
    return np.sqrt(
        sum(((g - c) * z) ** 2 for g, c, z in zip(grid, centre, zooms, strict=True))
    ).astype(np.float32)


def _region(
    excess: np.ndarray, inside: np.ndarray, centre: tuple[int, ...], threshold: float
) -> np.ndarray:
    """Voxels with ``excess`` above ``threshold`` connected to ``centre`` (26-connected)."""
    labels, _ = label_lesions(inside & (excess > threshold))
    return labels == labels[centre] if labels[centre] else np.zeros(excess.shape, bool)


def _segment(
    excess: np.ndarray,
    inside: np.ndarray,
    centre: tuple[int, ...],
    box: tuple[slice, ...],
    full_shape: tuple[int, ...],
    contrast: float,
    params: CMBParams,
    csf: np.ndarray,
) -> tuple[np.ndarray, bool]:
    """The candidate's region and whether it is focal.

    ``excess`` = darkness above the local background. The candidate is focal when the region
    above ``vessel_level`` x its contrast stays inside its box; its segmentation is then the
    region above ``segment_levels[0]`` (half-maximum). Otherwise it is connected to a dark
    structure that runs on beyond it: a vessel (a thin vein is often beaded by partial volume,
    so its darker pieces look like dots), unless a higher level parts a compact candidate from
    a structure clearly lighter than it (its darkest voxel below ``max_touching_depth`` x the
    contrast): a microbleed touching a vein."""

    def compact(region: np.ndarray) -> bool:
        return not any(
            (region.take(0, axis=a).any() and box[a].start > 0)
            or (region.take(-1, axis=a).any() and box[a].stop < full_shape[a])
            for a in range(3)
        )

    low = _region(excess, inside, centre, params.vessel_level * contrast)
    half = _region(excess, inside, centre, params.segment_levels[0] * contrast)
    if not low.any() or compact(low):
        return half, bool(half.any())
    for level in params.segment_levels:
        region = _region(excess, inside, centre, level * contrast)
        if not region.any():
            break
        if compact(region):
            rest = low & ~ndimage.binary_dilation(region, structure=CONNECTIVITY)
            if params.part_from_csf:
                rest &= ~csf
            darkest = float(excess[rest].max()) if rest.any() else 0.0
            if darkest < params.max_touching_depth * contrast:
                return region, True
            break  # as dark as the candidate: pieces of one vessel
    return (half if half.any() else low), False


def _examine(
    peak: tuple[int, int, int],
    response: float,
    sigma_mm: float,
    darkness: np.ndarray,
    brain: np.ndarray,
    zooms: np.ndarray,
    b0: np.ndarray,
    params: CMBParams,
    csf: np.ndarray,
) -> _Candidate:
    radius = sigma_mm * np.sqrt(3.0)
    half = np.ceil((2.0 * radius + params.box_margin_mm) / zooms).astype(int)
    box = tuple(
        slice(max(0, p - h), min(n, p + h + 1))
        for p, h, n in zip(peak, half, darkness.shape, strict=True)
    )
    centre = tuple(p - s.start for p, s in zip(peak, box, strict=True))
    patch = darkness[box]
    inside = brain[box]
    distance = _distance_mm(patch.shape, centre, zooms)
    core = distance <= max(0.5 * radius, float(np.min(zooms)) * 0.5)
    ring = inside & (distance >= 2.0 * radius) & (distance <= 2.0 * radius + params.box_margin_mm)
    if ring.sum() < 4:
        ring = inside & (distance >= radius)
    candidate = _Candidate(peak, response, box, np.zeros(patch.shape, bool), core, ring)
    background = float(np.median(patch[ring])) if ring.any() else 0.0
    depth = float(patch[core].mean())
    contrast = depth - background
    candidate.depth, candidate.contrast = depth, contrast
    if contrast < params.min_contrast or depth < params.min_depth:
        candidate.accepted, candidate.reason = False, "weak"
        return candidate
    if -background > params.max_background_brightness:
        candidate.accepted, candidate.reason = False, "in CSF"
        return candidate
    component, compact = _segment(
        patch - background,
        inside,
        centre,
        box,
        darkness.shape,
        contrast,
        params,
        csf[box],
    )
    candidate.component = component
    if not component.any():
        candidate.accepted, candidate.reason = False, "weak"
        return candidate
    sigma_vox = np.maximum(sigma_mm / zooms, 0.5)
    if not compact:
        candidate.accepted, candidate.reason = False, "extended"
    elif (
        _hessian_blobness(patch, centre, sigma_vox, zooms, b0, params.b0_stretch)
        < params.min_blobness
    ):
        candidate.accepted, candidate.reason = False, "tubular"
    elif _elongation(component, zooms, b0, params.b0_stretch) > params.max_elongation:
        candidate.accepted, candidate.reason = False, "elongated"
    elif _cross_section_mm(component, zooms, b0) < params.min_cross_section_mm:
        candidate.accepted, candidate.reason = False, "vein cut across"
    else:
        # the segmented candidate's equivalent-sphere radius, when larger than the scale's
        ball_mm = np.cbrt(3.0 * component.sum() * np.prod(zooms) / (4.0 * np.pi))
        through, end = _line_darkness(
            darkness, peak, background, max(radius, ball_mm), zooms, b0, params
        )
        if through >= params.max_line_darkness * contrast:
            candidate.accepted, candidate.reason = False, "on a vein"
        elif end >= params.max_end_darkness * contrast:
            candidate.accepted, candidate.reason = False, "end of a vein"
    return candidate


def _dark_on_t1w(
    candidate: _Candidate, t1: np.ndarray, t1_reference: float, params: CMBParams
) -> bool:
    patch = t1[candidate.box] / max(t1_reference, 1e-6)
    core = float(patch[candidate.core].mean())
    drop = float(np.median(patch[candidate.ring])) - core
    return drop > params.max_t1_drop and core < params.max_t1_ratio


def _reject_symmetric(
    candidates: list[_Candidate],
    affine: np.ndarray,
    midline_x: float,
    regions: np.ndarray,
    params: CMBParams,
) -> None:
    """Reject bilateral mirror-image pairs (physiological calcifications)."""
    kept = [c for c in candidates if c.accepted]
    if len(kept) < 2:
        return
    ijk = np.array([c.peak for c in kept], dtype=int)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    mirrored = xyz.copy()
    mirrored[:, 0] = 2.0 * midline_x - mirrored[:, 0]
    prone = np.isin(regions[tuple(ijk.T)], _SYMMETRIC_MIMICS)
    distances = np.linalg.norm(mirrored[:, None, :] - xyz[None, :, :], axis=-1)
    np.fill_diagonal(distances, np.inf)
    for i, j in zip(*np.nonzero(distances <= params.symmetry_mm), strict=True):
        # Both sides must be in the structures that calcify, and on opposite sides.
        if prone[i] and prone[j] and (xyz[i, 0] - midline_x) * (xyz[j, 0] - midline_x) < 0:
            for k in (i, j):
                kept[k].accepted, kept[k].reason = False, "symmetric"


def _reject_midline(
    candidates: list[_Candidate],
    affine: np.ndarray,
    midline_x: float,
    regions: np.ndarray,
    params: CMBParams,
) -> None:
    """Reject supratentorial deep candidates on the midline (pineal, habenula, deep veins)."""
    for c in candidates:
        if not c.accepted or regions[c.peak] not in _MIDLINE_MIMICS:
            continue
        x = float(affine[0, :3] @ np.array(c.peak) + affine[0, 3])
        if abs(x - midline_x) <= params.midline_mm:
            c.accepted, c.reason = False, "midline"


def _reference_tissue(wm: np.ndarray | None, away: np.ndarray, params: CMBParams) -> np.ndarray:
    """NAWM-like voxels away from the brain edge (all of those without a WM prior)."""
    if wm is not None:
        nawm = away & (wm >= params.nawm_prior)
        if nawm.sum() >= 100:
            return nawm
    return away


def locate_cmb(session: SessionImages, mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """MARS regions (lobar, deep, infratentorial)."""
    return mars_regions(session.regions, np.asarray(session.brain_mask, dtype=bool))


@dataclass(frozen=True)
class CandidateRecord:
    """One examined candidate, for tuning and audits: where it is and what became of it."""

    peak: tuple[int, int, int]  # voxel of the session's grid
    reason: str  # why it was rejected; "" when it is a microbleed
    depth: float
    contrast: float


def detect_cmb(
    session: SessionImages,
    params: CMBParams = PARAMS,
    record: list[CandidateRecord] | None = None,
) -> Detection:
    """Microbleeds of one session (needs "swi"; uses "t1w" and the WM prior when present);
    see the module docstring for the method. With ``record``, every examined candidate is
    appended to it (benchmarks/cmb_candidates.py prints why each true microbleed was missed)."""
    zooms = np.array(session.zooms)
    brain = np.asarray(session.brain_mask, dtype=bool)
    shape = brain.shape
    crop = bounding_box(brain, int(np.ceil(params.max_diameter_mm / zooms.min())) + 2)
    if crop is None:
        raise NotAssessableError("empty brain mask")
    mars, names = mars_regions(session.regions, brain)
    empty = Detection(
        score=np.zeros(shape, np.float32),
        mask=np.zeros(shape, bool),
        regions=mars,
        region_names=names,
    )
    brain_c = brain[crop]
    edge_distance = ndimage.distance_transform_edt(np.pad(brain_c, 1), sampling=zooms)[
        1:-1, 1:-1, 1:-1
    ]
    search = brain_c & (edge_distance >= params.edge_margin_mm)
    if not search.any():
        return empty

    swi = session.data("swi")[crop]
    wm = (session.priors or {}).get("wm")
    reference = _reference_tissue(None if wm is None else wm[crop], search, params)
    median = float(np.median(swi[reference]))
    if median <= 0:
        raise NotAssessableError("the SWI has no signal in the reference tissue")
    darkness = ((median - swi) / median).astype(np.float32)
    # Outside the brain takes the nearest brain value, so that neither the dark skull nor an
    # artificial step at the mask edge makes blobs there.
    nearest = ndimage.distance_transform_edt(~brain_c, return_distances=False, return_indices=True)
    darkness = darkness[tuple(nearest)]

    radii = np.geomspace(params.min_diameter_mm / 2, params.max_diameter_mm / 2, params.n_scales)
    sigmas = radii / np.sqrt(3.0)
    strength, scale = log_blob_response(darkness, zooms, sigmas)
    # The detector's own noise: the spread of the blob strength in the reference tissue.
    level, noise = robust_stats(strength[reference])
    threshold = max(params.min_response, level + params.min_response_z * noise)
    peaks = (
        search
        & (strength >= threshold)
        & (strength == ndimage.maximum_filter(strength, size=3, mode="nearest"))
    )
    ijk = np.argwhere(peaks)
    b0 = b0_axis(session.reference.affine, zooms)
    regions_c = session.regions[crop]
    csf = np.isin(regions_c, CSF_REGIONS)
    order = np.argsort(-strength[peaks])[: params.max_candidates]
    candidates = [
        _examine(
            tuple(int(v) for v in ijk[i]),
            float(strength[tuple(ijk[i])]),
            float(sigmas[scale[tuple(ijk[i])]]),
            darkness,
            brain_c,
            zooms,
            b0,
            params,
            csf,
        )
        for i in order
    ]

    noise = robust_stats(darkness[reference])[1]
    for c in candidates:
        if not c.accepted:
            continue
        if c.contrast < params.min_contrast_snr * noise / np.sqrt(max(int(c.core.sum()), 1)):
            c.accepted, c.reason = False, "noise"
        elif regions_c[c.peak] == LATERAL_VENTRICLES:
            c.accepted, c.reason = False, "choroid plexus"
        elif regions_c[c.peak] in CSF_REGIONS:
            c.accepted, c.reason = False, "in CSF"
    if "t1w" in session.images:
        t1 = session.data("t1w")[crop]
        t1_reference = float(np.median(t1[reference]))
        for c in candidates:
            if c.accepted and _dark_on_t1w(c, t1, t1_reference, params):
                c.accepted, c.reason = False, "dark on T1w"
    origin = np.array([s.start for s in crop])  # of the crop, in the session's grid
    affine = session.reference.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ origin
    brain_xyz = np.argwhere(brain_c).mean(axis=0) @ affine[:3, :3].T + affine[:3, 3]
    _reject_symmetric(candidates, affine, float(brain_xyz[0]), regions_c, params)
    _reject_midline(candidates, affine, float(brain_xyz[0]), regions_c, params)

    if record is not None:
        record.extend(
            CandidateRecord(
                tuple(int(v) for v in np.add(c.peak, origin)), c.reason, c.depth, c.contrast
            )
            for c in candidates
        )
    mask_c = np.zeros(brain_c.shape, dtype=bool)
    mimic = np.zeros(brain_c.shape, dtype=bool)
    for c in candidates:
        target = mask_c if c.accepted else mimic
        target[c.box] |= c.component

    # Belief on the voxels of every segmented candidate: rejected ones keep a quarter of it.
    strength_score = expit((strength - threshold) / (params.score_width * threshold))
    score_c = np.where(mask_c, strength_score, np.where(mimic, 0.25 * strength_score, 0.0))
    mask = np.zeros(shape, dtype=bool)
    score = np.zeros(shape, dtype=np.float32)
    mask[crop] = mask_c
    score[crop] = score_c
    return Detection(score=score, mask=mask, regions=mars, region_names=names)
