"""The lacune detector on a hand-made 1 mm phantom: white matter with lateral ventricles, a
cortical ribbon and sulcal CSF, into which lacune-like and mimicking structures are drawn.
Masks are judged as the pipeline writes them: with the STRIVE size rule applied after the
detector (``_detect``)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from helpers import assert_located_as_detected

from csvd_bids.markers.base import Detection, NotAssessableError, SessionImages
from csvd_bids.markers.lacunes import (
    LACUNE_REGIONS,
    PARAMS,
    LacuneParams,
    detect_lacunes,
    locate_lacunes,
)
from csvd_bids.markers.size_rules import apply_size_rule
from csvd_bids.morphology import label_lesions
from csvd_bids.preproc.regions import REGION_INDEX

SHAPE = (80, 80, 64)
#         FLAIR  T1w   T2w   (synthetic-scanner units; only the contrasts matter)
WM = (500.0, 900.0, 500.0)
GM = (650.0, 600.0, 700.0)
CSF = (80.0, 250.0, 1400.0)
RIM = (950.0, 650.0, 1000.0)  # gliosis: FLAIR-bright, T1w-dark
CHANNELS = ("flair", "t1w", "t2w")


def _ball(centre, radius_mm: float) -> np.ndarray:
    grid = np.indices(SHAPE)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius_mm**2


def _ellipsoid_distance(centre, radii) -> np.ndarray:
    grid = np.indices(SHAPE)
    return np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)))


class Phantom:
    """A brain-like block: intracranial ellipsoid = sulcal CSF rim, cortex, white matter."""

    def __init__(self) -> None:
        r = _ellipsoid_distance((40, 40, 32), (37, 37, 30))
        self.brain = r <= 1.0
        self.regions = np.zeros(SHAPE, np.uint8)
        self.regions[self.brain] = REGION_INDEX["other_csf"]
        self.regions[r <= 0.93] = REGION_INDEX["cortex_frontal"]
        self.regions[r <= 0.85] = REGION_INDEX["juxtacortical_wm_frontal"]
        self.regions[r <= 0.75] = REGION_INDEX["deep_wm"]
        self.ventricles = np.zeros(SHAPE, bool)
        self.ventricles[34:46, 28:52, 26:38] = True
        self.regions[self.ventricles] = REGION_INDEX["lateral_ventricles"]
        tissue = {
            "csf": self.regions == REGION_INDEX["other_csf"],
            "gm": self.regions == REGION_INDEX["cortex_frontal"],
        }
        tissue["wm"] = self.brain & ~tissue["csf"] & ~tissue["gm"] & ~self.ventricles
        tissue["csf"] |= self.ventricles
        self.priors = {k: v.astype(np.float32) for k, v in tissue.items()}
        self.priors["ventricles"] = self.ventricles.astype(np.float32)
        self.images = {m: np.zeros(SHAPE, np.float32) for m in CHANNELS}
        for values, where in ((CSF, tissue["csf"]), (GM, tissue["gm"]), (WM, tissue["wm"])):
            self.paint(where, values)

    def paint(self, where: np.ndarray, values) -> None:
        for m, v in zip(CHANNELS, values, strict=True):
            self.images[m][where] = v

    def lacune(self, centre, diameter_mm: float) -> np.ndarray:
        """A CSF-filled cavity with a one-voxel gliotic rim; returns its voxels."""
        whole = _ball(centre, diameter_mm / 2.0)
        self.paint(whole, RIM)
        self.paint(_ball(centre, diameter_mm / 2.0 - 1.0), CSF)
        return whole

    def session(self, channels=CHANNELS, seed: int = 0) -> SessionImages:
        rng = np.random.default_rng(seed)
        affine = np.eye(4)
        images = {
            m: nib.Nifti1Image(
                (self.images[m] + rng.normal(0.0, 12.0, SHAPE)).astype(np.float32), affine
            )
            for m in channels
        }
        return SessionImages(
            images=images, brain_mask=self.brain, priors=self.priors, regions=self.regions
        )


def _detect(session: SessionImages, params: LacuneParams = PARAMS) -> Detection:
    """The detection with the STRIVE size rule applied to its mask, as the pipeline does."""
    detection = detect_lacunes(session, params)
    detection.mask = apply_size_rule(detection.mask, session.reference.affine, "lacunes")
    return detection


def _found(mask: np.ndarray, where: np.ndarray) -> bool:
    return bool((mask & where).any())


def test_round_cavity_found_and_mimics_rejected():
    phantom = Phantom()
    lacune = phantom.lacune((20, 40, 32), 6.0)  # a 6 mm lacune in deep WM
    # a perivascular space, 2 mm wide and 12 mm long, crossing a WMH (so it has a bright
    # surround, like a lacune's rim): only its shape tells it apart
    phantom.paint(_ball((58, 40, 40), 6.0), RIM)
    tube = np.zeros(SHAPE, bool)
    tube[57:59, 34:46, 39:41] = True
    phantom.paint(tube, CSF)
    big = phantom.lacune((54, 52, 20), 20.0)  # a 20 mm cavity: too large for a lacune
    detection = _detect(phantom.session())

    labels, n = label_lesions(detection.mask)
    assert n == 1
    assert _found(detection.mask, lacune)
    assert not _found(detection.mask, phantom.ventricles)
    assert not _found(detection.mask, tube)
    assert not _found(detection.mask, big)
    # the lesion includes its rim and is named deep
    assert detection.mask[lacune].mean() > 0.6
    region = np.unique(detection.regions[detection.mask])
    assert [detection.region_names[int(r)] for r in region] == ["deep"]
    assert detection.score.dtype == np.float32
    assert detection.score.min() >= 0.0 and detection.score.max() <= 1.0
    assert detection.score[lacune].max() >= 0.5


def test_no_cavity_gives_empty_mask_and_empty_brain_is_not_assessable():
    session = Phantom().session()
    detection = _detect(session)
    assert not detection.mask.any()
    assert detection.score.max() < 0.5
    empty = SessionImages(
        session.images, np.zeros(SHAPE, bool), session.priors, regions=session.regions
    )
    with pytest.raises(NotAssessableError, match="empty brain mask"):
        detect_lacunes(empty)


def test_flair_only_and_lobar_region():
    phantom = Phantom()
    juxta = phantom.lacune((40, 69, 32), 7.0)  # in juxtacortical WM, next to the cortex
    deep = phantom.lacune((40, 18, 32), 8.0)
    session = phantom.session(channels=("flair",))
    detection = _detect(session)
    assert_located_as_detected(detection, locate_lacunes(session, detection.mask))
    assert _found(detection.mask, juxta) and _found(detection.mask, deep)
    names = detection.region_names
    labels, _ = label_lesions(detection.mask)
    assert names[int(np.max(detection.regions[juxta & detection.mask]))] == "lobar"
    assert names[int(np.max(detection.regions[deep & detection.mask]))] == "deep"
    assert LACUNE_REGIONS == ("deep", "lobar")


def test_cavities_in_cortex_or_template_csf_are_not_lacunes():
    phantom = Phantom()
    # a sulcal fundus reaching into the WM: cortex around an isolated pocket of CSF
    fold = _ball((40, 62, 20), 6.0)
    phantom.regions[fold] = REGION_INDEX["cortex_frontal"]
    phantom.paint(fold, GM)
    pocket = phantom.lacune((40, 62, 20), 5.0)
    # a round cavity where the template expects CSF (e.g. a temporal horn)
    horn = phantom.lacune((22, 40, 44), 7.0)
    phantom.priors["csf"][_ball((22, 40, 44), 6.0)] = 0.8
    # a 6 mm lacune elsewhere, so that the detector is seen to work in this phantom
    lacune = phantom.lacune((58, 40, 44), 6.0)
    detection = _detect(phantom.session())
    assert _found(detection.mask, lacune)
    assert not _found(detection.mask, pocket)
    assert not _found(detection.mask, horn)


def test_wide_lobar_cavity_under_atlas_cortex():
    """Where the atlas cortex reaches over most of the ring around a cavity (a lobar lacune
    just under the cortex of a registered template), a cavity too wide for the cortex is a
    lacune; a narrow one there stays "not subcortical"."""
    phantom = Phantom()
    wide, narrow = (40, 66, 24), (40, 66, 42)
    for centre in (wide, narrow):
        around = _ball(centre, 7.0) & (np.indices(SHAPE)[1] >= centre[1] - 3)
        phantom.regions[around & phantom.brain] = REGION_INDEX["cortex_frontal"]
    wide_lacune = phantom.lacune(wide, 8.0)
    narrow_lacune = phantom.lacune(narrow, 4.6)
    session = phantom.session()
    detection = _detect(session)
    assert _found(detection.mask, wide_lacune)
    assert not _found(detection.mask, narrow_lacune)
    strict = LacuneParams(wide_min_ring_subcortical=LacuneParams().min_ring_subcortical)
    assert not _found(_detect(session, strict).mask, wide_lacune)


def test_pocket_of_a_larger_fluid_space_is_not_a_lacune():
    """A round pocket that opens, through partial-volume fluid, into a larger CSF space the
    region map does not call ventricle (a horn tip, a cistern, a sulcus: the real MS scans'
    false lacunes) is rejected by its fluid halo, and only by it; a lacune is found."""
    phantom = Phantom()
    lacune = phantom.lacune((20, 40, 32), 6.0)
    pocket = phantom.lacune((56, 40, 30), 8.0)
    # a sulcus-like sheet of half-fluid voxels (partial volume: c ~ 0.4, below the cavity
    # threshold) through the pocket, 3 mm thick and 20 mm across
    grid = np.indices(SHAPE)
    sheet = (np.abs(grid[2] - 30) <= 1) & ((grid[0] - 56) ** 2 + (grid[1] - 40) ** 2 <= 100)
    sheet &= ~_ball((56, 40, 30), 3.0)  # the cavity stays fluid
    phantom.paint(sheet, [w + 0.4 * (c - w) for w, c in zip(WM, CSF, strict=True)])
    session = phantom.session()
    detection = _detect(session)
    assert _found(detection.mask, lacune)
    assert not _found(detection.mask, pocket)
    # the halo rule, and nothing else, rejects it
    without = _detect(session, LacuneParams(max_halo=float("inf")))
    assert _found(without.mask, pocket) and _found(without.mask, lacune)


def test_small_cavity_needs_a_rim():
    """A 4 mm lesion has a cavity under 3 mm across: kept with its gliotic rim (a small
    lacune), dropped without (a perivascular space seen end-on)."""
    phantom = Phantom()
    with_rim = phantom.lacune((24, 40, 32), 4.6)
    bare = _ball((56, 40, 32), 1.3)
    phantom.paint(bare, CSF)
    detection = _detect(phantom.session())
    assert _found(detection.mask, with_rim)
    assert not _found(detection.mask, bare)


def test_wide_rimless_cavity_is_a_lacune_and_a_calcification_is_not():
    """A 9 mm cavity without a rim, its fluid partly averaged with tissue (a rimless lacune
    on thick slices), is kept on its size and blob: too wide for a PVS, it needs no rim, and
    only the rimless rule keeps it. A ball as dark as fluid on FLAIR and T1w but dark on T2w
    too (a calcification) is rejected, and only by the T2w rule."""
    phantom = Phantom()
    rimless = _ball((22, 40, 32), 4.5)
    phantom.paint(rimless, [w + 0.8 * (c - w) for w, c in zip(WM, CSF, strict=True)])
    calcification = _ball((58, 40, 32), 4.5)
    flair, t1w = (w + 1.3 * (c - w) for w, c in zip(WM[:2], CSF[:2], strict=True))
    phantom.paint(calcification, (flair, t1w, WM[2] - 0.3 * (CSF[2] - WM[2])))
    session = phantom.session()
    detection = _detect(session)
    assert _found(detection.mask, rimless)
    assert not _found(detection.mask, calcification)
    rim_needed = LacuneParams(rimless_evidence_mid=PARAMS.evidence_mid)
    assert not _found(_detect(session, rim_needed).mask, rimless)
    no_t2w_rule = LacuneParams(min_t2w_c=-np.inf)
    assert _found(_detect(session, no_t2w_rule).mask, calcification)


def test_rimless_cavity_of_five_mm_needs_no_rim_and_a_wide_pvs_does():
    """A 5 mm rimless cavity, its fluid partly averaged with tissue, is wider than any PVS
    and kept without a rim (inscribed radius 2.8 mm); the 6 mm that the rimless rule used to
    ask for would leave it to the rim rule, which drops it. A PVS segment 3 mm wide and 6 mm
    long, all fluid (radius 2.0 mm, round enough to pass as no tube), still needs a rim: the
    rule's width lies between the two."""
    phantom = Phantom()
    rimless = _ball((24, 40, 32), 2.5)
    phantom.paint(rimless, [w + 0.8 * (c - w) for w, c in zip(WM, CSF, strict=True)])
    pvs = _ellipsoid_distance((56, 40, 32), (1.6, 1.6, 3.2)) <= 1.0
    phantom.paint(pvs, CSF)
    session = phantom.session()
    found = _detect(session).mask
    assert _found(found, rimless)
    assert not _found(found, pvs)
    assert not _found(_detect(session, LacuneParams(rimless_radius_mm=3.0)).mask, rimless)
    assert _found(_detect(session, LacuneParams(rimless_radius_mm=2.0)).mask, pvs)


def test_lacune_labelled_csf_is_named_by_its_surroundings():
    """The region map calls a lacune (its cavity and rim) CSF, as a tissue classifier does:
    the lesion is named by the regions around it (deep here), by the detector and by
    ``locate_lacunes`` alike."""
    phantom = Phantom()
    lacune = phantom.lacune((20, 40, 32), 6.0)
    phantom.regions[_ball((20, 40, 32), 5.0)] = REGION_INDEX["other_csf"]
    session = phantom.session()
    detection = _detect(session)
    assert _found(detection.mask, lacune)
    assert (phantom.regions[detection.mask] == REGION_INDEX["other_csf"]).all()
    assert set(np.unique(detection.regions[detection.mask])) == {1}
    assert_located_as_detected(detection, locate_lacunes(session, detection.mask))


def test_flair_is_required():
    session = Phantom().session(channels=("t1w", "t2w"))
    with pytest.raises(ValueError, match="FLAIR"):
        detect_lacunes(session)


def test_params_are_frozen():
    with pytest.raises(AttributeError):
        LacuneParams().cavity_c = 0.1  # type: ignore[misc]
