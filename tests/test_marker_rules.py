"""Single detector rules, each on a small phantom where that rule alone decides the outcome.

Every test pins one rule so that a one-line change of it (a flipped comparison, a dropped
condition, a moved threshold, a removed call) fails here: the PVS width rule and T1w veto, the
microbleed choroid-plexus, vein and T1w mimic rules (and the score of rejected mimics), and the
lacune ``min_voxels`` rule. Where a parameter can switch a rule off, the test also shows that
the phantom is found without it, so that it is that rule, not another, that rejects it.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from csvd_bids.markers.base import SessionImages
from csvd_bids.markers.cmb import CMBParams, detect_cmb
from csvd_bids.markers.lacunes import LacuneParams, detect_lacunes
from csvd_bids.markers.pvs import PVSParams, detect_pvs, reject_mimics
from csvd_bids.markers.size_rules import apply_size_rule
from csvd_bids.preproc.regions import REGION_INDEX


def _distance(shape, centre, zooms=(1.0, 1.0, 1.0)) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    return np.sqrt(sum(((g - c) * z) ** 2 for g, c, z in zip(grid, centre, zooms, strict=True)))


# --- PVS ------------------------------------------------------------------------------------

PVS_SHAPE = (40, 40, 40)
#       T1w    FLAIR  T2w
PVS_WM = (900.0, 500.0, 500.0)
PVS_CSF = (250.0, 80.0, 1400.0)
PVS = (300.0, 120.0, 1300.0)


def _pvs_session(
    lesions, with_t1: bool = True, t1_noise: float = 0.0, seed: int = 0
) -> SessionImages:
    """A 40 mm block of deep white matter with a ventricle, at 1 mm, with ``lesions`` (mask,
    (T1w, FLAIR, T2w)) painted in. T2w and FLAIR are blurred and noisy; on the T1w the lesions
    are painted exactly, after any noise (``t1_noise``, none by default), so that a lesion's
    T1w is known in units of the NAWM's (exactly the NAWM's without noise)."""
    brain = np.zeros(PVS_SHAPE, bool)
    brain[3:-3, 3:-3, 3:-3] = True
    ventricle = np.zeros(PVS_SHAPE, bool)
    ventricle[17:23, 6:11, 8:32] = True
    regions = np.where(brain, REGION_INDEX["deep_wm"], 0).astype(np.uint8)
    regions[ventricle] = REGION_INDEX["lateral_ventricles"]
    rng = np.random.default_rng(seed)
    arrays = {}
    for c, name in enumerate(("t1w", "flair", "t2w")):
        image = np.where(ventricle, PVS_CSF[c], PVS_WM[c]).astype(np.float32)
        if name == "t1w" and t1_noise:
            image = image + rng.normal(0.0, t1_noise, PVS_SHAPE)
        for mask, values in lesions:
            image[mask] = values[c]
        if name != "t1w":
            image = ndimage.gaussian_filter(image, 0.4) + rng.normal(0.0, 12.0, PVS_SHAPE)
        arrays[name] = np.where(brain, image, 0.0).astype(np.float32)
    for mask, _ in lesions:  # a tissue classifier calls PVS voxels CSF
        regions[mask & brain] = REGION_INDEX["other_csf"]
    names = ("t2w", "flair", "t1w") if with_t1 else ("t2w", "flair")
    images = {n: nib.Nifti1Image(arrays[n], np.eye(4)) for n in names}
    priors = {
        "wm": (brain & ~ventricle).astype(np.float32),
        "gm": np.zeros(PVS_SHAPE, np.float32),
        "csf": ventricle.astype(np.float32),
        "ventricles": ventricle.astype(np.float32),
    }
    return SessionImages(images=images, brain_mask=brain, priors=priors, regions=regions)


def _line(shape, i: int, j: int, k0: int, k1: int, width: int = 1) -> np.ndarray:
    """A straight tube along z with a ``width`` x ``width`` voxel cross-section."""
    mask = np.zeros(shape, bool)
    mask[i : i + width, j : j + width, k0:k1] = True
    return mask


def _reject(candidates, u, flair_u=None, search=None, zooms=(1.0, 1.0, 1.0)):
    everywhere = np.ones(candidates.shape, bool)
    search = everywhere if search is None else search
    return reject_mimics(candidates, u, flair_u, everywhere, search, zooms, PVSParams())


@pytest.mark.parametrize(
    ("zoom", "width", "kept"),
    [
        (1.0, 1, True),
        (1.0, 2, True),  # 2 mm
        (1.0, 3, False),  # 3 mm: STRIVE wants < 3 mm
        (0.5, 5, True),  # 2.5 mm; its inscribed distance is exactly half the 3 mm limit
        (0.5, 7, False),  # 3.5 mm
    ],
)
def test_pvs_width_rule_on_the_candidate_itself(zoom, width, kept):
    """A CSF-like tube is a PVS only while narrower than 3 mm, measured in mm (not voxels)."""
    shape = (24, 24, 24)
    start = 12 - width // 2
    tube = _line(shape, start, start, 4, 20, width)
    u = np.where(tube, 1.0, 0.0)
    flair_u = np.where(tube, -3.0, 0.0)
    out = _reject(tube, u, flair_u, zooms=(zoom,) * 3)
    assert (out.sum() == tube.sum()) if kept else not out.any()


def test_pvs_wide_candidate_is_rejected_even_when_dim():
    """The width is that of the candidate too, not only of the T2-bright structure around it:
    a 3 mm thick candidate below the ``blob_u`` brightness is still too wide."""
    shape = (24, 24, 24)
    tube = _line(shape, 11, 11, 4, 20, width=3)
    u = np.where(tube, 0.35, 0.0)  # candidate-bright (u_grow 0.3) but below blob_u 0.5
    assert not _reject(tube, u, np.zeros(shape)).any()


def test_pvs_thin_candidate_in_a_wide_csf_structure_is_lacune_like():
    """A thin candidate whose CSF-like surroundings hold a 3 mm ball is part of a cavity; the
    surroundings count only when CSF-bright on T2w (u >= blob_u), not FLAIR-bright, and in
    the search region."""
    shape = (30, 30, 30)
    line = _line(shape, 15, 15, 8, 20)
    cavity = np.zeros(shape, bool)
    cavity[13:18, 13:18, 20:25] = True  # 5 mm of fluid at the end of the line
    flair_u = np.where(line | cavity, -3.0, 0.0)

    assert _reject(line, np.where(line, 1.0, 0.0), flair_u).sum() == line.sum()
    assert not _reject(line, np.where(line | cavity, 1.0, 0.0), flair_u).any()
    assert not _reject(line, np.where(line | cavity, 1.0, 0.0), None).any()
    # Surroundings too faint on T2w to be fluid: the line stays a PVS.
    dim = np.where(line, 1.0, np.where(cavity, 0.45, 0.0))
    assert _reject(line, dim, flair_u).sum() == line.sum()
    # FLAIR-bright surroundings are a WMH, not a cavity.
    bright = np.where(cavity, 3.0, flair_u)
    assert _reject(line, np.where(line | cavity, 1.0, 0.0), bright).sum() == line.sum()
    # Surroundings outside the search region (e.g. a ventricle) are not looked at.
    search = ~cavity
    out = _reject(line, np.where(line | cavity, 1.0, 0.0), flair_u, search=search)
    assert out.sum() == line.sum()


def test_pvs_tiny_candidates_are_dropped():
    shape = (20, 20, 20)
    for length, kept in ((2, False), (3, True)):  # PVSParams().min_voxels == 3
        line = _line(shape, 10, 10, 8, 8 + length)
        out = _reject(line, np.where(line, 1.0, 0.0), np.where(line, -3.0, 0.0))
        assert bool(out.any()) is kept


def test_pvs_detector_drops_a_3mm_wide_tube():
    """Through the whole detector: a 1 mm tube is found, a 3 mm thick one is not (before the
    STRIVE size rule, which the caller applies; applying it keeps the thin tube)."""
    thin = _line(PVS_SHAPE, 28, 24, 10, 28)
    thick = _line(PVS_SHAPE, 11, 27, 10, 28, width=3)
    session = _pvs_session([(thin, PVS), (thick, PVS)])
    detection = detect_pvs(session)
    assert detection.mask[thin].any()
    assert not detection.mask[ndimage.binary_dilation(thick, iterations=2)].any()
    assert apply_size_rule(detection.mask, session.reference.affine, "pvs")[thin].any()


def test_pvs_t1w_veto():
    """PVS are dark on T1w: a T2-bright tube as bright as the NAWM on T1w, or brighter, is
    rejected; without a T1w the same tubes are all found."""
    tubes = {
        300.0: _line(PVS_SHAPE, 28, 24, 12, 24),  # CSF-dark on T1w: a PVS
        900.0: _line(PVS_SHAPE, 12, 28, 12, 24),  # exactly the NAWM's T1w
        1000.0: _line(PVS_SHAPE, 30, 32, 12, 24),  # brighter than the NAWM
    }
    lesions = [(mask, (t1, PVS[1], PVS[2])) for t1, mask in tubes.items()]
    found = detect_pvs(_pvs_session(lesions)).mask
    assert {t1: bool(found[mask].any()) for t1, mask in tubes.items()} == {
        300.0: True,
        900.0: False,
        1000.0: False,
    }
    found = detect_pvs(_pvs_session(lesions, with_t1=False)).mask
    assert all(found[mask].sum() == mask.sum() for mask in tubes.values())


def test_pvs_t1w_veto_threshold_is_the_nawm():
    """On a noisy T1w (robust SD 12 around 900), half an SD darker than the NAWM is dark
    enough for a PVS, half an SD brighter is not."""
    darker = _line(PVS_SHAPE, 28, 24, 12, 24)
    brighter = _line(PVS_SHAPE, 12, 28, 12, 24)
    lesions = [(darker, (894.0, PVS[1], PVS[2])), (brighter, (906.0, PVS[1], PVS[2]))]
    found = detect_pvs(_pvs_session(lesions, t1_noise=12.0)).mask
    assert found[darker].any()
    assert not found[brighter].any()


# --- CMB ------------------------------------------------------------------------------------

CMB_SHAPE = (48, 48, 48)
CMB_CENTRE = (24, 24, 24)
SWI_WM, SWI_CSF, SWI_DOT = 540.0, 900.0, 90.0


def _cmb_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(SWI, brain, regions): a ball of white-matter-like SWI in a CSF rim, in dark 'skull'."""
    rng = np.random.default_rng(seed)
    radius = _distance(CMB_SHAPE, CMB_CENTRE)
    brain = radius <= 21
    swi = np.where(radius <= 19, SWI_WM, np.where(brain, SWI_CSF, 60.0))
    regions = np.where(brain, REGION_INDEX["deep_wm"], 0).astype(np.uint8)
    return swi + rng.normal(0.0, 12.0, CMB_SHAPE), brain, regions


def _cmb_session(swi, brain, regions, t1w=None) -> SessionImages:
    images = {"swi": nib.Nifti1Image(swi.astype(np.float32), np.eye(4))}
    if t1w is not None:
        images = {"t1w": nib.Nifti1Image(t1w.astype(np.float32), np.eye(4)), **images}
    priors = {"wm": brain.astype(np.float32)}
    return SessionImages(images=images, brain_mask=brain, priors=priors, regions=regions)


def _paint_dark(swi: np.ndarray, where: np.ndarray, value: float = SWI_DOT) -> None:
    swi[where] = value + (swi[where] - swi[where].mean()) * 0.1


def _dot(centre, diameter_mm: float = 4.0) -> np.ndarray:
    return _distance(CMB_SHAPE, centre) <= diameter_mm / 2.0


def _segment(centre, length_mm: float, radius_mm: float) -> np.ndarray:
    """A short straight vessel, oblique in the axial plane, centred on ``centre``."""
    half = length_mm / 2.0 / np.sqrt(2.0)
    start = np.array(centre, float) - [half, half, 0.0]
    axis = np.array([2.0 * half, 2.0 * half, 0.0])
    points = np.indices(CMB_SHAPE, dtype=np.float32).reshape(3, -1).T
    t = np.clip((points - start) @ axis / (axis @ axis), 0.0, 1.0)
    distance = np.linalg.norm(points - (start + t[:, None] * axis), axis=1)
    return (distance <= radius_mm).reshape(CMB_SHAPE)


def test_cmb_dot_centred_in_the_ventricles_is_choroid_plexus():
    """Three identical dark dots: centred in the lateral ventricles of the region map (choroid
    plexus calcification), rejected; beside the ventricles (the region map covers part of the
    dot but not its centre) and in white matter, microbleeds. The rejected one keeps a quarter
    of the belief of its twins in the score map."""
    swi, brain, regions = _cmb_volume(seed=0)
    inside, beside, away = (24, 14, 24), (24, 34, 24), (24, 24, 34)
    for centre in (inside, beside, away):
        _paint_dark(swi, _dot(centre))
    regions[_distance(CMB_SHAPE, inside) <= 3.0] = REGION_INDEX["lateral_ventricles"]
    regions[_distance(CMB_SHAPE, (19, 34, 24)) <= 3.0] = REGION_INDEX["lateral_ventricles"]
    assert (regions[_dot(beside)] == REGION_INDEX["lateral_ventricles"]).any()

    detection = detect_cmb(_cmb_session(swi, brain, regions))
    assert not detection.mask[_dot(inside, 8.0)].any()
    assert detection.mask[_dot(beside)].any() and detection.mask[_dot(away)].any()
    mimic = float(detection.score[_dot(inside)].max())
    kept = float(detection.score[_dot(away)].max())
    assert kept > 0.5
    assert 0.0 < mimic < 0.5
    assert mimic == pytest.approx(0.25 * kept, rel=0.2)


def test_cmb_mirror_pair_needs_both_sides_in_calcifying_structures():
    """A mirror-image pair is a physiological calcification only when both dots lie in the
    structures that calcify: with one in the basal ganglia and its mirror partner in white
    matter, both are microbleeds; with both in the basal ganglia, neither is."""
    swi, brain, regions = _cmb_volume(seed=2)
    left, right = (14, 24, 28), (34, 24, 28)  # mirror images across x = 24
    for centre in (left, right):
        _paint_dark(swi, _dot(centre))
    regions[_distance(CMB_SHAPE, left) <= 5.0] = REGION_INDEX["basal_ganglia"]
    detection = detect_cmb(_cmb_session(swi, brain, regions))
    assert detection.mask[_dot(left)].any() and detection.mask[_dot(right)].any()

    regions[_distance(CMB_SHAPE, right) <= 5.0] = REGION_INDEX["basal_ganglia"]
    detection = detect_cmb(_cmb_session(swi, brain, regions))
    assert not detection.mask[_dot(left)].any() and not detection.mask[_dot(right)].any()


@pytest.mark.parametrize(
    ("rule", "length_mm", "disabled"),
    [
        # 5 mm of a 3 mm thick vein: compact and short, but the Hessian bends in two directions
        # (the vein-end rule sees its far part as a line out of the peak too: off for the check)
        ("blobness", 5.0, CMBParams(min_blobness=-2.0, max_end_darkness=1e9)),
        # 6 mm of it: its segmented shape is elongated (the blobness, once lengths along B0 are
        # shortened, and the dark lines through and out of it see it too: off for the check)
        (
            "elongation",
            6.0,
            CMBParams(
                max_elongation=1e9,
                min_blobness=-2.0,
                max_line_darkness=1e9,
                max_end_darkness=1e9,
            ),
        ),
    ],
)
def test_cmb_short_vein_segment_is_rejected_by_its_shape(rule, length_mm, disabled):
    swi, brain, regions = _cmb_volume(seed=0)
    vein = _segment((24, 15, 24), length_mm, 1.5)
    bleed = _dot((24, 34, 24))
    _paint_dark(swi, vein)
    _paint_dark(swi, bleed)
    session = _cmb_session(swi, brain, regions)

    detection = detect_cmb(session)
    assert not detection.mask[vein].any(), rule
    assert detection.mask[bleed].any()
    assert 0.0 < detection.score[vein].max() < 0.5  # a rejected mimic keeps a little belief
    # Without that rule the segment would pass: it is this rule that rejects it.
    assert detect_cmb(session, disabled).mask[vein].any(), rule


def _vessel(start, end, radius_mm: float) -> np.ndarray:
    start, end = np.asarray(start, float), np.asarray(end, float)
    axis = end - start
    points = np.indices(CMB_SHAPE, dtype=np.float32).reshape(3, -1).T
    t = np.clip((points - start) @ axis / (axis @ axis), 0.0, 1.0)
    distance = np.linalg.norm(points - (start + t[:, None] * axis), axis=1)
    return (distance <= radius_mm).reshape(CMB_SHAPE)


@pytest.mark.parametrize(("vein_darkness", "bead_found"), [(0.1, True), (0.25, False)])
def test_cmb_dot_on_a_faint_vein_in_the_slice_plane_is_a_bead_of_it(vein_darkness, bead_found):
    """A dark dot on a thin vein that is only faintly dark (a quarter of the dot's contrast,
    below the level at which the dot's region would run on along it) is a bead of that vein:
    the line through the dot stays dark on both sides. On a vein fainter than the rule's
    fraction it is a microbleed, as is the same dot away from the vein; with the line rule off
    the bead would pass."""
    swi, brain, regions = _cmb_volume(seed=4)
    vein = _vessel((10, 14, 20), (38, 34, 20), 1.0)  # in the axial plane, across B0
    bead, alone = _dot((24, 24, 20), 3.5), _dot((24, 24, 32), 3.5)
    _paint_dark(swi, vein, SWI_WM - vein_darkness * (SWI_WM - SWI_DOT))
    _paint_dark(swi, bead)
    _paint_dark(swi, alone)
    session = _cmb_session(swi, brain, regions)

    record = []
    detection = detect_cmb(session, record=record)
    assert detection.mask[alone].any()
    assert detection.mask[bead].any() is np.bool_(bead_found)
    # The record says what became of the bead's candidate (benchmarks/cmb_candidates.py).
    (at_bead,) = [r for r in record if bead[r.peak] and r.contrast > 0.5]
    assert at_bead.reason == ("" if bead_found else "on a vein")
    if not bead_found:
        assert detect_cmb(session, CMBParams(max_line_darkness=1e9)).mask[bead].any()


def test_cmb_thin_vein_cut_across_is_narrower_than_any_microbleed():
    """A vein under a millimetre thick running along B0 (tilted a little, as medullary veins
    are) is a short dark dot on axial slices: compact, round enough in 3D once blooming along
    B0 is allowed for, but one voxel across in the slice plane. The smallest microbleed (2 mm)
    spans two voxels there and is found; without the width rule the vein would pass."""
    swi, brain, regions = _cmb_volume(seed=0)
    vein = _vessel((23.5, 24, 22), (24.5, 24, 26), 0.5)
    smallest = _dot((24, 34, 24), 2.0)
    _paint_dark(swi, vein)
    _paint_dark(swi, smallest)
    session = _cmb_session(swi, brain, regions)

    record = []
    detection = detect_cmb(session, record=record)
    assert not detection.mask[vein].any()
    assert detection.mask[smallest].any()
    assert "vein cut across" in {r.reason for r in record if vein[r.peak]}
    assert detect_cmb(session, CMBParams(min_cross_section_mm=0.0)).mask[vein].any()


def test_cmb_blooming_along_b0_is_no_vessel():
    """A microbleed's blooming (the lobes of its dipole field, darkened by the SWI phase mask)
    stretches it along B0, and thick slices blur it further along z: still a microbleed. The
    shape rules allow that stretch along B0 only, which the affine tells: the same image with
    B0 along the first voxel axis (an affine swapping x and z) makes it a vessel, as does
    dropping the allowance."""
    swi, brain, regions = _cmb_volume(seed=3)
    core = _distance(CMB_SHAPE, (24, 24, 24)) <= 2.0
    lobes = (_distance(CMB_SHAPE, (24, 24, 26.5)) <= 1.5) | (
        _distance(CMB_SHAPE, (24, 24, 21.5)) <= 1.5
    )
    _paint_dark(swi, core)
    _paint_dark(swi, lobes & ~core, SWI_WM - 0.8 * (SWI_WM - SWI_DOT))
    swi = ndimage.uniform_filter1d(swi, 3, axis=2)  # 3 mm slices
    bleed = core | lobes
    session = _cmb_session(swi, brain, regions)

    assert detect_cmb(session).mask[bleed].any()
    assert not detect_cmb(session, CMBParams(b0_stretch=1.0)).mask[bleed].any()
    swapped = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    b0_along_x = _cmb_session(swi, brain, regions)
    b0_along_x.images["swi"] = nib.Nifti1Image(swi.astype(np.float32), swapped)
    assert not detect_cmb(b0_along_x).mask[bleed].any()


def test_cmb_beaded_vein_is_rejected_as_extended():
    """A thin vein broken by partial volume into 3 mm dark beads: each bead is a compact, round
    dark dot, but the dark region around it runs on beyond its box along the vein, as dark as
    the bead: a vessel. With that check off (``vessel_level`` 1; and the dark-line, vein-end
    and blobness rules, which see these in-plane beads too) the beads would pass."""
    swi, brain, regions = _cmb_volume(seed=0)
    start, end = np.array([12.0, 14.0, 24.0]), np.array([36.0, 34.0, 24.0])
    points = np.indices(CMB_SHAPE, dtype=np.float32).reshape(3, -1).T
    axis = end - start
    position = np.clip((points - start) @ axis / (axis @ axis), 0.0, 1.0)
    distance = np.linalg.norm(points - (start + position[:, None] * axis), axis=1)
    vein = (distance <= 0.7).reshape(CMB_SHAPE)
    beads = vein & ((position.reshape(CMB_SHAPE) * 9).astype(int) % 2 == 0)
    bleed = _dot((24, 24, 36))
    _paint_dark(swi, vein & ~beads, 430.0)
    _paint_dark(swi, beads, 250.0)
    _paint_dark(swi, bleed)
    session = _cmb_session(swi, brain, regions)

    detection = detect_cmb(session)
    assert not detection.mask[vein].any()
    assert detection.mask[bleed].any()
    unchecked = CMBParams(
        vessel_level=1.0, max_line_darkness=1e9, max_end_darkness=1e9, min_blobness=-2.0
    )
    assert detect_cmb(session, unchecked).mask[beads].any()


@pytest.mark.parametrize(
    ("core", "surround", "surround_mm", "found"),
    [
        (250.0, 900.0, 0.0, False),  # flow void: dark on T1w, far below its surroundings
        (600.0, 900.0, 0.0, True),  # grey-matter dark (0.67 x NAWM): not dark enough
        (450.0, 900.0, 0.0, True),  # exactly max_t1_ratio (0.5) x the NAWM: not below it
        (423.0, 900.0, 0.0, False),  # 0.47 x the NAWM
        (360.0, 400.0, 10.0, True),  # dark, but so are its surroundings (drop 0.04)
        (360.0, 558.0, 10.0, False),  # drop 0.22 x the NAWM
        (360.0, 522.0, 10.0, True),  # drop 0.18 x the NAWM
    ],
)
def test_cmb_t1w_rule(core, surround, surround_mm, found):
    """A dot dark on SWI is a flow void or calcification when, on T1w, its core is both below
    ``max_t1_ratio`` x the NAWM and below its surroundings by more than ``max_t1_drop``."""
    swi, brain, regions = _cmb_volume(seed=0)
    dot = _dot(CMB_CENTRE)
    _paint_dark(swi, dot)
    t1w = np.where(brain, 900.0, 80.0)  # exact: the NAWM median is 900
    t1w[_distance(CMB_SHAPE, CMB_CENTRE) <= surround_mm] = surround
    t1w[_distance(CMB_SHAPE, CMB_CENTRE) <= 2.5] = core
    detection = detect_cmb(_cmb_session(swi, brain, regions, t1w))
    assert bool(detection.mask[dot].any()) is found
    # Without a T1w every one of them is a microbleed.
    assert detect_cmb(_cmb_session(swi, brain, regions)).mask[dot].any()


# --- Lacunes --------------------------------------------------------------------------------

LACUNE_SHAPE = (22, 22, 22)
LACUNE_VOXEL_MM = 3.0
#          FLAIR  T1w    T2w
LAC_WM = (500.0, 900.0, 500.0)
LAC_GM = (650.0, 600.0, 700.0)
LAC_CSF = (80.0, 250.0, 1400.0)


def _lacune_session(cavities: list[np.ndarray], seed: int = 0) -> SessionImages:
    """A 66 mm brain at 3 mm (the generator's test grid, where the rule matters): sulcal CSF,
    cortex, deep white matter and a ventricle, with CSF-filled ``cavities``."""
    radius = _distance(LACUNE_SHAPE, (11, 11, 11)) / 10.0
    brain = radius <= 1.0
    regions = np.zeros(LACUNE_SHAPE, np.uint8)
    regions[brain] = REGION_INDEX["other_csf"]
    regions[radius <= 0.88] = REGION_INDEX["cortex_frontal"]
    regions[radius <= 0.78] = REGION_INDEX["deep_wm"]
    ventricle = np.zeros(LACUNE_SHAPE, bool)
    ventricle[9:13, 6:16, 9:13] = True
    regions[ventricle] = REGION_INDEX["lateral_ventricles"]
    csf = (regions == REGION_INDEX["other_csf"]) | ventricle
    gm = regions == REGION_INDEX["cortex_frontal"]
    wm = brain & ~csf & ~gm
    priors = {
        "wm": wm.astype(np.float32),
        "gm": gm.astype(np.float32),
        "csf": csf.astype(np.float32),
        "ventricles": ventricle.astype(np.float32),
    }
    rng = np.random.default_rng(seed)
    affine = np.diag([LACUNE_VOXEL_MM] * 3 + [1.0])
    images = {}
    for c, name in enumerate(("flair", "t1w", "t2w")):
        image = np.zeros(LACUNE_SHAPE, np.float32)
        for values, where in ((LAC_CSF, csf), (LAC_GM, gm), (LAC_WM, wm)):
            image[where] = values[c]
        for cavity in cavities:
            image[cavity] = LAC_CSF[c]
        image = image + rng.normal(0.0, 12.0, LACUNE_SHAPE)
        images[name] = nib.Nifti1Image(image.astype(np.float32), affine)
    return SessionImages(images=images, brain_mask=brain, priors=priors, regions=regions)


def _cavity(corner, offsets) -> np.ndarray:
    mask = np.zeros(LACUNE_SHAPE, bool)
    for offset in offsets:
        mask[tuple(np.add(corner, offset))] = True
    return mask


def test_lacune_min_voxels():
    """On a 3 mm grid a cavity of 3 voxels (up to 7 mm across: within the STRIVE 3-15 mm) is
    judged on nothing but its voxel count: fewer than ``min_voxels`` (4) are too few to show a
    shape or a rim. A 4-voxel cavity is judged and kept."""
    three = _cavity((5, 11, 11), [(0, 0, 0), (1, 0, 0), (0, 1, 0)])
    four = _cavity((16, 11, 11), [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)])
    session = _lacune_session([three, four])
    affine = session.reference.affine

    def found(params: LacuneParams) -> tuple[bool, bool]:
        mask = apply_size_rule(detect_lacunes(session, params).mask, affine, "lacunes")
        return bool(mask[three].any()), bool(mask[four].any())

    assert found(LacuneParams()) == (False, True)
    # The rule alone rejects the 3-voxel cavity, and counts strictly: N voxels pass N.
    assert found(LacuneParams(min_voxels=3)) == (True, True)
    assert found(LacuneParams(min_voxels=5)) == (False, False)
