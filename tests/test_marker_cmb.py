"""The microbleed detector finds small round dark dots on SWI and rejects its mimics.

The masks are judged as the pipeline writes them: with the STRIVE size rule applied after the
detector (``_detect``)."""

from __future__ import annotations

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
from helpers import assert_located_as_detected
from scipy import ndimage

from csvd_bids.markers.base import Detection, NotAssessableError, SessionImages
from csvd_bids.markers.cmb import (
    CMB_METHOD,
    CMB_REGIONS,
    PARAMS,
    CMBParams,
    _elongation,
    _hessian_blobness,
    detect_cmb,
    locate_cmb,
    mars_regions,
)
from csvd_bids.markers.size_rules import apply_size_rule
from csvd_bids.morphology import label_lesions
from csvd_bids.preproc.regions import REGION_INDEX
from csvd_bids.synth import generate_dataset

# one worker, so that its module-scoped dataset is built once (conftest.py)
pytestmark = pytest.mark.xdist_group("cmb_generated")

SHAPE = (72, 72, 72)
CENTRE = np.array([36.0, 36.0, 36.0])
WM, CSF, DOT, VEIN = 540.0, 900.0, 90.0, 250.0


def _distance(centre, zooms=(1.0, 1.0, 1.0)) -> np.ndarray:
    grid = np.indices(SHAPE, dtype=np.float32)
    return np.sqrt(sum(((g - c) * z) ** 2 for g, c, z in zip(grid, centre, zooms, strict=True)))


def _ball(centre, diameter_mm: float) -> np.ndarray:
    return _distance(centre) <= diameter_mm / 2.0


def _tube(start, end, radius_mm: float = 0.7) -> np.ndarray:
    """A straight vessel: voxels within ``radius_mm`` of the segment from start to end."""
    grid = np.indices(SHAPE, dtype=np.float32).reshape(3, -1).T
    start, end = np.asarray(start, float), np.asarray(end, float)
    axis = end - start
    t = np.clip((grid - start) @ axis / (axis @ axis), 0.0, 1.0)
    distance = np.linalg.norm(grid - (start + t[:, None] * axis), axis=1)
    return (distance <= radius_mm).reshape(SHAPE)


def _deep_wm(brain: np.ndarray) -> np.ndarray:
    """A region map that calls the whole brain deep white matter: no structure where
    calcifications or choroid plexus occur, so no anatomical rejection."""
    return np.where(brain, REGION_INDEX["deep_wm"], 0).astype(np.uint8)


def _session(
    swi: np.ndarray, brain: np.ndarray, t1w: np.ndarray | None = None, regions=None
) -> SessionImages:
    images = {"swi": nib.Nifti1Image(swi.astype(np.float32), np.eye(4))}
    if t1w is not None:
        images = {"t1w": nib.Nifti1Image(t1w.astype(np.float32), np.eye(4)), **images}
    wm = brain.astype(np.float32)
    regions = _deep_wm(brain) if regions is None else regions
    return SessionImages(images=images, brain_mask=brain, priors={"wm": wm}, regions=regions)


def _detect(session: SessionImages) -> Detection:
    """The detection with the STRIVE size rule applied to its mask, as the pipeline does."""
    detection = detect_cmb(session)
    detection.mask = apply_size_rule(detection.mask, session.reference.affine, "cmb")
    return detection


def _brain_and_background(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A ball of white-matter-like SWI signal (with noise) in a CSF rim, in dark 'skull'."""
    rng = np.random.default_rng(seed)
    radius = _distance(CENTRE)
    brain = radius <= 32
    swi = np.where(radius <= 29, WM, np.where(brain, CSF, 60.0))
    return swi + rng.normal(0.0, 12.0, SHAPE), brain


def _paint(swi: np.ndarray, where: np.ndarray, value: float) -> None:
    swi[where] = value + (swi[where] - swi[where].mean()) * 0.1


def _found(detection, where: np.ndarray) -> bool:
    return bool(detection.mask[where].any())


DOTS = {(22, 30, 36): 3.0, (50, 40, 30): 5.0, (36, 22, 48): 7.0, (30, 52, 30): 4.0}
VEIN_ENDS = ((40, 46, 14), (50, 56, 34))


def test_dots_found_vein_rejected_sizes_honoured():
    swi, brain = _brain_and_background()
    for centre, diameter in DOTS.items():
        _paint(swi, _ball(centre, diameter), DOT)
    vein = _tube(*VEIN_ENDS)
    _paint(swi, vein, VEIN)
    speck = np.zeros(SHAPE, bool)
    speck[36, 36, 22] = True  # one 1 mm voxel: below the 2 mm of STRIVE
    _paint(swi, speck, DOT)
    large = _ball((36, 40, 52), 15.0)  # a 15 mm dark ball: a haematoma, not a microbleed
    _paint(swi, large, DOT)

    detection = _detect(_session(swi, brain))

    for centre, diameter in DOTS.items():
        assert _found(detection, _ball(centre, diameter)), (centre, diameter)
    assert not _found(detection, vein)
    assert not _found(detection, speck)
    assert not _found(detection, large)
    assert label_lesions(detection.mask)[1] == len(DOTS)
    # The segmentation is the dot itself, not the blur around it.
    dot, near = _ball((50, 40, 30), 5.0), _ball((50, 40, 30), 9.0)
    overlap = (detection.mask & dot).sum() / ((detection.mask | dot) & near).sum()
    assert overlap > 0.6
    assert detection.score.dtype == np.float32
    assert detection.score.min() >= 0.0 and detection.score.max() <= 1.0
    assert detection.score[50, 40, 30] > 0.5 and detection.score[36, 36, 36] < 0.5


def test_short_tube_is_a_vessel():
    """A vessel segment short enough to fit a candidate's box is rejected by its shape, and
    both shape measures tell a tube from a ball on their own."""
    swi, brain = _brain_and_background(seed=8)
    tube = _tube((30, 30, 36), (36, 36, 40))  # 9 mm long
    _paint(swi, tube, DOT)
    assert not _found(_detect(_session(swi, brain)), tube)

    zooms = np.ones(3)
    darkness = np.zeros((21, 21, 21), np.float32)
    ball = np.sqrt(sum((g - 10.0) ** 2 for g in np.indices(darkness.shape))) <= 2.5
    rod = np.zeros_like(ball)
    rod[10, 10, 3:18] = True
    for shape, is_blob in ((ball, True), (rod, False)):
        darkness[:] = np.where(shape, 0.8, 0.0)
        blobness = _hessian_blobness(darkness, (10, 10, 10), np.full(3, 1.0), zooms)
        assert (blobness > CMBParams().min_blobness) is is_blob
        assert (_elongation(shape, zooms) < CMBParams().max_elongation) is is_blob


def test_beaded_vein_is_a_vessel():
    """A thin vein broken by partial volume into dark beads: each bead is a compact dark dot
    at a high level, but the beads around it are as dark, so none is a microbleed."""
    swi, brain = _brain_and_background(seed=9)
    start, end = np.array([22.0, 48.0, 30.0]), np.array([48.0, 58.0, 44.0])
    vein = _tube(start, end)
    axis = end - start
    position = (np.indices(SHAPE).reshape(3, -1).T - start) @ axis / (axis @ axis)
    beads = vein & ((position.reshape(SHAPE) * 9).astype(int) % 2 == 0)  # 3 mm beads
    _paint(swi, vein & ~beads, 430.0)
    _paint(swi, beads, VEIN)
    detection = _detect(_session(swi, brain))
    assert not _found(detection, vein)


def test_dot_in_csf_is_no_microbleed():
    """A dark dot surrounded by CSF (a flow void in a cistern, bone at the brain's surface)."""
    swi, brain = _brain_and_background(seed=7)
    cistern = _ball((36, 36, 36), 14.0)
    swi[cistern] += CSF - WM
    _paint(swi, _ball((36, 36, 36), 4.0), DOT)
    bleed = _ball((36, 56, 36), 4.0)
    _paint(swi, bleed, DOT)
    detection = _detect(_session(swi, brain))
    assert _found(detection, bleed)
    assert not _found(detection, cistern)


def test_noise_is_no_microbleed_but_a_clear_dot_in_it_is():
    """An SWI as noisy as a 1.5 T SWI at SNR about 7 (D noise about 0.15): noise alone makes
    dark "dots" that pass the shape rules, and none is reported (Rose's criterion); a 6 mm
    microbleed in the same noise is. White noise makes one-voxel dots, which are also
    narrower than any microbleed; noise made spatially correlated (as interpolation onto the
    reference grid does) makes wider ones, which only Rose's criterion tells from a bleed."""
    swi, brain = _brain_and_background(seed=0)
    white = np.random.default_rng(100).normal(0.0, 1.0, SHAPE)
    noisy = swi + 80.0 * white
    without_rules = replace(PARAMS, min_contrast_snr=0.0, min_cross_section_mm=0.0)
    assert label_lesions(detect_cmb(_session(noisy, brain), without_rules).mask)[1] >= 2
    assert not detect_cmb(_session(noisy, brain)).mask.any()
    bleed = _ball((22, 30, 36), 6.0)
    with_bleed = noisy.copy()
    _paint(with_bleed, bleed, DOT)
    found = detect_cmb(_session(with_bleed, brain)).mask
    assert found[bleed].any() and label_lesions(found)[1] == 1

    correlated = ndimage.gaussian_filter(white, 0.7)
    smooth_noisy = swi + 160.0 * correlated / correlated.std()
    without_rose = replace(PARAMS, min_contrast_snr=0.0)
    assert label_lesions(detect_cmb(_session(smooth_noisy, brain), without_rose).mask)[1] >= 2
    assert not detect_cmb(_session(smooth_noisy, brain)).mask.any()


def test_dot_in_csf_of_the_region_map_is_no_microbleed():
    """On a short-TR gradient echo CSF is darker than white matter (its long T1 saturates),
    so a flow void in a sulcus does not stand in bright surroundings: the region map (from
    the T1w) says it is in CSF."""
    swi, brain = _brain_and_background(seed=3)
    sulcus = _ball((22, 40, 40), 12.0)  # off the midline (no pineal rule)
    swi[sulcus] -= 0.1 * WM  # CSF a little darker than WM, as on the physics engine's GRE
    regions = _deep_wm(brain)
    regions[sulcus] = REGION_INDEX["other_csf"]
    _paint(swi, _ball((22, 40, 40), 4.0), DOT)
    bleed = _ball((36, 56, 36), 4.0)
    _paint(swi, bleed, DOT)
    detection = _detect(_session(swi, brain, regions=regions))
    assert _found(detection, bleed) and not _found(detection, sulcus)
    assert _found(_detect(_session(swi, brain)), sulcus)  # white matter on the region map


def test_dot_touching_a_vein_is_found():
    swi, brain = _brain_and_background(seed=6)
    vein = _tube(*VEIN_ENDS)
    dot = _ball((45, 54, 24), 4.0)  # touches the vein's wall
    assert (dot & vein).sum() == 0 and (ndimage.binary_dilation(dot, iterations=2) & vein).any()
    _paint(swi, vein, VEIN)
    _paint(swi, dot, DOT)
    detection = _detect(_session(swi, brain))
    assert _found(detection, dot)
    assert label_lesions(detection.mask)[1] == 1
    assert (detection.mask & vein).sum() <= 3  # the vein is not taken along


def test_dot_at_the_end_of_a_vein_is_no_microbleed_but_one_beside_dark_tissue_is():
    """A dark dot where a vein ends (darkest there) has a dark line on one side: rejected as
    the end of a vein, and only by that rule. A dot beside a band of dark tissue (a cortical
    microbleed next to dark cortex) has as dark a line on that side, but the lines beside it
    are as dark too: no vein, a microbleed."""
    swi, brain = _brain_and_background(seed=20)
    _paint(swi, _tube((18, 28, 40), (30, 36, 40)), VEIN)
    end = _ball((32, 37, 40), 4.0)
    _paint(swi, end, DOT)
    band = np.zeros(SHAPE, bool)
    band[44:49, 20:52, 20:34] = True  # 5 mm thick, darkness about 0.3
    _paint(swi, band & brain, 380.0)
    beside = _ball((41, 36, 27), 4.0)  # its edge 1 mm from the band
    _paint(swi, beside, DOT)
    session = _session(swi, brain)
    detection = _detect(session)
    assert not _found(detection, end)
    assert _found(detection, beside)
    without = detect_cmb(session, replace(PARAMS, max_end_darkness=np.inf))
    assert without.mask[end].any()


def test_a_dot_beside_dark_csf_is_parted_from_it():
    """On a short-TR gradient echo a sulcus's CSF can be as dark as a microbleed (its long T1
    saturates it): a cortical microbleed touching it joins a dark structure that runs on out
    of its box. Where the region map calls that structure CSF it is no vessel, and the dot is
    found; where it calls it white matter, the dot is part of it (rejected as extended)."""
    swi, brain = _brain_and_background(seed=21)
    sulcus = np.zeros(SHAPE, bool)
    sulcus[44:50, 16:56, 16:56] = True  # a 6 mm sheet of fluid: partial volume at its edge,
    sulcus &= brain
    _paint(swi, sulcus, 250.0)
    _paint(swi, sulcus & (np.indices(SHAPE)[0] >= 47), 100.0)  # as dark as the dot inside
    dot = _ball((41, 36, 36), 4.0)  # its edge touches the sheet
    _paint(swi, dot, DOT)
    regions = _deep_wm(brain)
    regions[sulcus] = REGION_INDEX["other_csf"]
    assert _found(_detect(_session(swi, brain, regions=regions)), dot)
    assert not _found(_detect(_session(swi, brain)), dot)
    joined = replace(PARAMS, part_from_csf=0)
    assert not detect_cmb(_session(swi, brain, regions=regions), joined).mask[dot].any()


def test_no_dot_gives_empty_mask_and_empty_brain_is_not_assessable():
    swi, brain = _brain_and_background(seed=3)
    detection = _detect(_session(swi, brain))
    assert not detection.mask.any()
    assert detection.score.max() < 0.5
    with pytest.raises(NotAssessableError, match="empty brain mask"):
        detect_cmb(_session(swi, np.zeros(SHAPE, bool)))


def test_dark_on_t1w_and_symmetric_pairs_are_mimics():
    swi, brain = _brain_and_background(seed=1)
    t1w = np.where(brain, 900.0, 80.0) + np.random.default_rng(2).normal(0.0, 12.0, SHAPE)
    flow_void = _ball((36, 24, 36), 4.0)  # dark on SWI and on T1w
    bleed = _ball((36, 48, 36), 4.0)  # dark on SWI only
    left, right = _ball((26, 36, 46), 4.0), _ball((47, 37, 46), 4.0)  # near mirror images
    for where in (flow_void, bleed, left, right):
        _paint(swi, where, DOT)
    _paint(t1w, flow_void, 250.0)
    regions = np.where(brain, REGION_INDEX["deep_wm"], 0).astype(np.uint8)
    regions[_distance((26, 36, 46)) <= 5] = REGION_INDEX["basal_ganglia"]
    regions[_distance((47, 37, 46)) <= 5] = REGION_INDEX["basal_ganglia"]

    detection = _detect(_session(swi, brain, t1w, regions))
    assert _found(detection, bleed)
    assert not _found(detection, flow_void)
    assert not _found(detection, left) and not _found(detection, right)

    # Without a T1w the flow void cannot be told apart; outside calcifying structures a
    # mirror-image pair is two microbleeds.
    regions[regions == REGION_INDEX["basal_ganglia"]] = REGION_INDEX["cortex_frontal"]
    detection = _detect(_session(swi, brain, None, regions))
    assert _found(detection, flow_void) and _found(detection, left) and _found(detection, right)


def test_a_dot_on_the_midline_between_the_thalami_is_the_pineal():
    swi, brain = _brain_and_background(seed=3)
    # the brain's centroid is x = 36: one dot on the midline, one 8 mm off it
    pineal, beside = _ball((36, 30, 36), 4.0), _ball((44, 44, 36), 4.0)
    for where in (pineal, beside):
        _paint(swi, where, DOT)
    regions = _deep_wm(brain)
    regions[_distance((36, 36, 36)) <= 14] = REGION_INDEX["thalamus"]
    detection = _detect(_session(swi, brain, None, regions))
    assert not _found(detection, pineal) and _found(detection, beside)
    # in the brainstem, microbleeds do lie on the midline
    regions[regions == REGION_INDEX["thalamus"]] = REGION_INDEX["brainstem"]
    detection = _detect(_session(swi, brain, None, regions))
    assert _found(detection, pineal) and _found(detection, beside)


def test_regions_are_mars_groups():
    swi, brain = _brain_and_background(seed=4)
    lobar, deep, infra = (24, 30, 36), (48, 40, 36), (36, 36, 22)
    for centre in (lobar, deep, infra):
        _paint(swi, _ball(centre, 4.0), DOT)
    regions = np.full(SHAPE, REGION_INDEX["other_csf"], dtype=np.uint8)
    regions[:36] = REGION_INDEX["juxtacortical_wm_parietal"]
    regions[36:] = REGION_INDEX["thalamus"]
    regions[:, :, :28] = REGION_INDEX["cerebellum"]
    regions[50:] = 0  # unlabelled brain takes the nearest region
    regions[~brain] = 0

    session = _session(swi, brain, regions=regions)
    detection = _detect(session)
    assert_located_as_detected(detection, locate_cmb(session, detection.mask))
    assert detection.region_names == dict(enumerate(CMB_REGIONS, start=1))
    assert CMB_REGIONS == ("lobar", "deep", "infratentorial")
    names = {c: detection.region_names[int(detection.regions[c])] for c in (lobar, deep, infra)}
    assert names == {lobar: "lobar", deep: "deep", infra: "infratentorial"}
    assert detection.regions[60, 36, 36] == 2
    assert label_lesions(detection.mask)[1] == 3


def test_anisotropic_grid():
    """2 mm slices: the same dots, measured in mm, are still found and the vein rejected."""
    swi, brain = _brain_and_background(seed=5)
    for centre, diameter in DOTS.items():
        _paint(swi, _ball(centre, diameter), DOT)
    vein = _tube(*VEIN_ENDS)
    _paint(swi, vein, VEIN)
    thick = swi.reshape(72, 72, 36, 2).mean(axis=3)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    session = SessionImages(
        images={"swi": nib.Nifti1Image(thick.astype(np.float32), affine)},
        brain_mask=brain[:, :, ::2],
        priors={},
        regions=_deep_wm(brain[:, :, ::2]),
    )
    detection = _detect(session)
    for centre, diameter in DOTS.items():
        assert _found(detection, _ball(centre, diameter)[:, :, ::2]), (centre, diameter)
    assert not _found(detection, vein[:, :, ::2])


def test_parameters_are_documented_and_frozen():
    params = CMBParams()
    with pytest.raises(AttributeError):
        params.min_contrast = 0.0  # type: ignore[misc]
    assert "SWI" in CMB_METHOD and CMB_METHOD.endswith(".")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Two generated subjects at 3 mm (seed 5: four microbleeds, veins on every SWI)."""
    return generate_dataset(
        tmp_path_factory.mktemp("cmb") / "bids", n_subjects=2, n_sessions=1, seed=5, resolution=3.0
    )


@pytest.mark.parametrize("subject", ["01", "02"])
def test_generated_subject(generated, subject):
    anat = generated / f"sub-{subject}" / "anat"
    truth = generated / "derivatives" / "groundtruth" / f"sub-{subject}" / "anat"
    prefix = f"sub-{subject}_space-T1w_"

    def array(path):
        return np.asanyarray(nib.load(path).dataobj)

    t1w = nib.load(anat / f"sub-{subject}_T1w.nii.gz")
    brain = array(truth / f"{prefix}desc-brain_mask.nii.gz") > 0
    # A crude WM prior in place of the pipeline's template: the brightest 30% of T1w brain.
    t1 = np.asanyarray(t1w.dataobj, dtype=np.float32)
    wm = brain & (t1 > np.percentile(t1[brain], 70))
    session = SessionImages(
        images={"t1w": t1w, "swi": nib.load(anat / f"sub-{subject}_acq-swi_T2starw.nii.gz")},
        brain_mask=brain,
        priors={"wm": wm.astype(np.float32)},
        regions=array(truth / f"{prefix}seg-regions_dseg.nii.gz").astype(np.uint8),
    )
    planted = array(truth / f"{prefix}label-CMB_mask.nii.gz") > 0
    detection = _detect(session)
    planted_labels, n_planted = label_lesions(planted)
    found_labels, n_found = label_lesions(detection.mask)
    hits = np.unique(planted_labels[detection.mask])
    true_found = np.unique(found_labels[planted])
    assert n_planted >= 1
    assert len(hits[hits > 0]) == n_planted  # every planted microbleed is found
    assert n_found - len(true_found[true_found > 0]) <= 1  # at most one false positive


def test_mars_regions_fill_the_brain_from_the_nearest_named_voxel():
    """Brain voxels of no MARS group (CSF, white matter the groups leave out) take the group
    of the nearest named voxel, as over the whole grid, though the fill runs in a box; a named
    voxel outside the brain counts too."""
    rng = np.random.default_rng(7)
    regions = np.zeros((40, 44, 36), np.uint8)
    brain = np.zeros(regions.shape, bool)
    brain[6:30, 8:36, 5:30] = True
    lobar, deep = REGION_INDEX["cortex_frontal"], REGION_INDEX["thalamus"]
    inside = brain & (rng.random(regions.shape) < 0.03)
    inside[18:] = False  # none in the brain's far end
    regions[inside] = rng.choice((lobar, deep), int(inside.sum()))
    regions[32, 20, 15] = REGION_INDEX["brainstem"]  # outside, 3 voxels from the far end
    mars, _ = mars_regions(regions, brain)
    named = np.zeros_like(mars)
    for value, label in enumerate((lobar, deep, REGION_INDEX["brainstem"]), start=1):
        named[regions == label] = value
    nearest = ndimage.distance_transform_edt(named == 0, return_distances=False,
                                             return_indices=True)  # fmt: skip
    expected = np.where(brain & (named == 0), named[tuple(nearest)], named)
    assert np.array_equal(mars, expected)
    assert mars[29, 20, 15] == 3  # from the named voxel outside the brain
