"""The WMH detector on a hand-made phantom (1 mm, small arrays) and on the project's generator
at 3 mm (rendered in memory, no pipeline run): deep and periventricular lesions are found and
named, thin ventricle linings need the unsmoothed pass, choroid-plexus-like and T1w-bright
signal is rejected, the ventricle-wall partial volume is resolved with T1w, lacunes and recent
infarcts (their masks, as the session graph gives them in ``SessionImages.excluded``) are left
out, and sessions without T1w or without ventricles in the region map still work."""

from __future__ import annotations

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from csvd_bids.cli.train import default_inputs
from csvd_bids.markers.base import REGISTRY, NotAssessableError, SessionImages
from csvd_bids.markers.lacunes import detect_lacunes
from csvd_bids.markers.rssi import detect_rssi
from csvd_bids.markers.size_rules import apply_size_rule
from csvd_bids.markers.wmh import PARAMS, WMHParams, detect_wmh
from csvd_bids.morphology import label_lesions
from csvd_bids.preproc.regions import REGION_INDEX, distance_mm
from csvd_bids.quant.lesions import lesion_table
from csvd_bids.synth import contrasts
from csvd_bids.synth.anatomy import make_anatomy
from csvd_bids.synth.fields import add_rician_noise
from csvd_bids.synth.lesions import plan_lesions
from csvd_bids.synth.participants import CAPS, LesionLoad
from csvd_bids.synth.regions import make_regions

SHAPE = (80, 88, 60)
CENTRE = np.array([40.0, 44.0, 30.0])
# FLAIR / T1w levels: the cortex median of a real region map is diluted by sulcal CSF, so its
# FLAIR contrast to WM is modest (as in the pipeline's outputs).
FLAIR = {"wm": 500.0, "gm": 580.0, "csf": 80.0, "wmh": 1000.0}
T1W = {"wm": 900.0, "gm": 600.0, "csf": 250.0, "wmh": 650.0}
LEFT_VENTRICLE = CENTRE + [-7, 0, 2]
RIGHT_VENTRICLE = CENTRE + [7, 0, 2]
VENTRICLE_RADII = (3.5, 11.0, 5.0)


def _ellipsoid(centre, radii) -> np.ndarray:
    grid = np.indices(SHAPE, dtype=np.float32)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1.0


def _ball(centre, radius: float) -> np.ndarray:
    return _ellipsoid(centre, (radius, radius, radius))


class Phantom:
    """A brain ellipsoid: 3 mm cortex shell, white matter, two lateral ventricles; its region
    map and priors as the pipeline gives them; lesions are painted on FLAIR and T1w."""

    def __init__(self) -> None:
        self.brain = _ellipsoid(CENTRE, (36, 40, 26))
        inner = _ellipsoid(CENTRE, (33, 37, 23))
        self.ventricles = _ellipsoid(LEFT_VENTRICLE, VENTRICLE_RADII) | _ellipsoid(
            RIGHT_VENTRICLE, VENTRICLE_RADII
        )
        self.cortex = self.brain & ~inner
        self.wm = inner & ~self.ventricles
        self.flair = np.zeros(SHAPE, np.float32)
        self.t1w = np.zeros(SHAPE, np.float32)
        for tissue, where in (("gm", self.cortex), ("wm", self.wm), ("csf", self.ventricles)):
            self.flair[where] = FLAIR[tissue]
            self.t1w[where] = T1W[tissue]
        self.truth = np.zeros(SHAPE, bool)

    def paint(self, where: np.ndarray, flair: float, t1w: float, lesion: bool = True) -> None:
        self.flair[where], self.t1w[where] = flair, t1w
        if lesion:
            self.truth |= where

    def regions(self) -> np.ndarray:
        out = np.zeros(SHAPE, np.uint8)
        near = distance_mm(self.ventricles, (1.0, 1.0, 1.0)) <= 10.0
        out[self.wm] = REGION_INDEX["deep_wm"]
        out[self.wm & near] = REGION_INDEX["periventricular_wm"]
        out[self.cortex] = REGION_INDEX["cortex_frontal"]
        out[self.ventricles] = REGION_INDEX["lateral_ventricles"]
        return out

    def session(self, t1w: bool = True, seed: int = 0) -> SessionImages:
        rng = np.random.default_rng(seed)
        flair = (self.flair + rng.normal(0, 12.0, SHAPE)) * self.brain
        images = {"flair": nib.Nifti1Image(flair.astype(np.float32), np.eye(4))}
        if t1w:
            t1 = (self.t1w + rng.normal(0, 14.0, SHAPE)) * self.brain
            images = {"t1w": nib.Nifti1Image(t1.astype(np.float32), np.eye(4)), **images}
        priors = {
            "wm": self.wm.astype(np.float32),
            "gm": self.cortex.astype(np.float32),
            "csf": self.ventricles.astype(np.float32),
            "ventricles": self.ventricles.astype(np.float32),
        }
        return SessionImages(
            images=images,
            brain_mask=self.brain,
            priors=priors,
            regions=self.regions(),
        )


def _found(mask: np.ndarray, where: np.ndarray, fraction: float = 0.5) -> bool:
    return mask[where].mean() >= fraction


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


DEEP = _ball(CENTRE + [25, 0, 0], 3.0)  # 11.5 mm from the ventricles
CAP_CENTRE = LEFT_VENTRICLE + [0, VENTRICLE_RADII[1] + 1.5, 0]  # at the frontal horn's tip


def _cap(phantom: Phantom) -> np.ndarray:
    return _ball(CAP_CENTRE, 3.5) & phantom.wm


def test_deep_and_periventricular_lesions_found_and_named():
    phantom = Phantom()
    cap = _cap(phantom)
    phantom.paint(DEEP, FLAIR["wmh"], T1W["wmh"])
    phantom.paint(cap, FLAIR["wmh"], T1W["wmh"])
    detection = detect_wmh(phantom.session())
    assert _found(detection.mask, DEEP, 0.9) and _found(detection.mask, cap, 0.9)
    assert _dice(detection.mask, phantom.truth) > 0.85
    assert label_lesions(detection.mask)[1] == 2  # nothing else in the brain

    table = lesion_table(
        detection.mask, np.eye(4), "wmh", detection.regions, detection.region_names
    )
    labels, _ = label_lesions(detection.mask)
    region_of = {
        int(labels[tuple(np.argwhere(where)[0])]): name
        for where, name in ((DEEP, "deep"), (cap, "periventricular"))
    }
    assert {row.lesion_id: row.region for row in table.itertuples()} == region_of
    assert detection.score.dtype == np.float32
    assert detection.score.min() >= 0.0 and detection.score.max() <= 1.0
    assert detection.score[DEEP].mean() > 0.9 and detection.score[~phantom.brain].max() == 0.0


def test_periventricular_means_within_10_mm_of_the_ventricles():
    """A lesion 9 mm from the ventricle wall is periventricular, one 12 mm away is deep."""
    phantom = Phantom()
    near = _ball(RIGHT_VENTRICLE + [VENTRICLE_RADII[0] + 9 + 2.5, 0, 0], 2.5)
    far = _ball(LEFT_VENTRICLE - [VENTRICLE_RADII[0] + 12 + 2.5, 0, 0], 2.5)
    for where in (near, far):
        phantom.paint(where, FLAIR["wmh"], T1W["wmh"])
    detection = detect_wmh(phantom.session())
    table = lesion_table(
        detection.mask, np.eye(4), "wmh", detection.regions, detection.region_names
    )
    assert sorted(table["region"]) == ["deep", "periventricular"]
    x = {row.region: row.centroid_x_mm for row in table.itertuples()}
    assert x["periventricular"] > CENTRE[0] > x["deep"]


def test_no_lesion_no_detection_and_choroid_plexus_rejected():
    phantom = Phantom()
    assert not detect_wmh(phantom.session()).mask.any()
    # FLAIR-bright tissue floating inside a ventricle (choroid plexus): no seed there
    choroid = _ball(LEFT_VENTRICLE, 1.6)
    phantom.paint(choroid, FLAIR["wmh"], 500.0, lesion=False)
    assert not detect_wmh(phantom.session()).mask.any()


def test_thin_lining_needs_the_unsmoothed_pass():
    """A one-voxel lining along a ventricle wall: smoothing averages it with the CSF and the WM
    beside it, so only the second, unsmoothed pass near the ventricles finds it."""
    phantom = Phantom()
    shell = (distance_mm(phantom.ventricles, (1.0, 1.0, 1.0)) <= 1.0) & phantom.wm
    lining = shell & (np.indices(SHAPE)[0] > RIGHT_VENTRICLE[0])  # lateral wall, right side
    phantom.paint(lining, 800.0, T1W["wmh"])  # faint: 1.6 x NAWM, under 1.5 x once smoothed
    session = phantom.session()
    assert _found(detect_wmh(session).mask, lining, 0.9)
    assert not detect_wmh(session, replace(PARAMS, lining_mm=0.0)).mask.any()


def test_faint_lesion_seeds_by_its_ratio_to_nawm():
    """Where the cortex is much brighter than WM on FLAIR, a lesion 1.9 x NAWM lies below
    u_seed (u = 3): it still seeds through seed_ratio."""
    phantom = Phantom()
    phantom.flair[phantom.cortex] = 650.0
    phantom.paint(DEEP, 950.0, T1W["wmh"])
    session = phantom.session()
    assert _found(detect_wmh(session).mask, DEEP, 0.6)
    assert not detect_wmh(session, replace(PARAMS, seed_ratio=np.inf)).mask.any()


def test_t1w_decides_weak_flair_voxels():
    """Moderately FLAIR-bright voxels around a lesion core join it when they are hypointense on
    T1w (lesion), not when they look like normal white matter on T1w."""
    core = _ball(CENTRE + [25, 0, 0], 2.5)
    rim = _ball(CENTRE + [25, 0, 0], 4.5) & ~core
    outer_rim = rim & ~_ball(CENTRE + [25, 0, 0], 3.5)  # beyond the core's smoothing
    rim_flair = FLAIR["wm"] + 3.2 * (FLAIR["gm"] - FLAIR["wm"])  # between u_grow and t1_strong_u
    found = {}
    for name, rim_t1w in (("hypointense", 700.0), ("isointense", T1W["wm"])):
        phantom = Phantom()
        phantom.paint(rim, rim_flair, rim_t1w)
        phantom.paint(core, FLAIR["wmh"], T1W["wmh"])
        found[name] = detect_wmh(phantom.session()).mask[outer_rim].mean()
    assert found["hypointense"] > 0.9 and found["isointense"] < 0.05


def test_ventricle_wall_partial_volume_resolved_with_t1w():
    """A cap separated from the ventricle by one voxel that thick-slice FLAIR averaged with the
    CSF (FLAIR not bright) but T1w shows as lesion tissue: joined with T1w, not without."""
    phantom = Phantom()
    cap = _cap(phantom)
    wall = (distance_mm(phantom.ventricles, (1.0, 1.0, 1.0)) <= 1.0) & cap
    phantom.paint(cap, FLAIR["wmh"], T1W["wmh"])
    phantom.paint(wall, FLAIR["wm"], T1W["wmh"])
    assert wall.sum() >= 10
    with_t1w = detect_wmh(phantom.session()).mask
    without = detect_wmh(phantom.session(t1w=False)).mask
    assert with_t1w[wall].mean() > 0.9 and without[wall].mean() < 0.2
    assert _found(without, cap & ~wall, 0.9)


def test_flair_only_and_no_ventricles_in_the_region_map():
    """Without T1w; and with a region map that calls the ventricles other CSF (the template's
    ventricles are then followed into FLAIR-dark voxels)."""
    phantom = Phantom()
    phantom.paint(DEEP, FLAIR["wmh"], T1W["wmh"])
    phantom.paint(_cap(phantom), FLAIR["wmh"], T1W["wmh"])
    full = phantom.session()
    regions = full.regions.copy()
    regions[regions == REGION_INDEX["lateral_ventricles"]] = REGION_INDEX["other_csf"]
    for session in (phantom.session(t1w=False), replace(full, regions=regions)):
        detection = detect_wmh(session)
        assert _dice(detection.mask, phantom.truth) > 0.8
        table = lesion_table(
            detection.mask, np.eye(4), "wmh", detection.regions, detection.region_names
        )
        assert sorted(table["region"]) == ["deep", "periventricular"]


@pytest.mark.parametrize("t1w", [False, True])
def test_confluent_wmh_filling_most_of_the_white_matter(t1w):
    """Fazekas 3: lesions are most of the white matter (the NAWM reference must not follow
    them: with a median reference nothing at all was found). With T1w too, where the lesions
    are nearly T1w-isointense (a T1w-only NAWM selection takes them in)."""
    phantom = Phantom()
    near = distance_mm(phantom.ventricles, (1.0, 1.0, 1.0))
    confluent = phantom.wm & (near <= 20.0)
    assert confluent.sum() > 0.6 * phantom.wm.sum()
    phantom.paint(confluent, 1.6 * FLAIR["wm"], 0.9 * T1W["wm"])
    detection = detect_wmh(phantom.session(t1w=t1w))
    assert _dice(detection.mask, phantom.truth) > 0.85


def test_weak_cortex_contrast_of_thick_slices_does_not_make_normal_white_matter_wmh():
    """Thick slices average the cortex towards the white matter (its FLAIR median 1.02 x
    NAWM here): a mildly brighter normal tract (1.12 x) stays normal, as a 1.5 x lesion is
    found, because the cortex counts as at least ``min_grey_contrast`` brighter."""
    phantom = Phantom()
    phantom.flair[phantom.cortex] = 1.02 * FLAIR["wm"]
    tract = _ellipsoid(CENTRE + [-22, 0, 0], (3.0, 12.0, 6.0)) & phantom.wm
    phantom.paint(tract, 1.12 * FLAIR["wm"], T1W["wm"], lesion=False)
    phantom.paint(DEEP, 1.5 * FLAIR["wm"], T1W["wmh"])
    session = phantom.session(t1w=False)
    detection = detect_wmh(session)
    assert _found(detection.mask, DEEP, 0.8)
    assert not (detection.mask & tract).any()
    no_floor = detect_wmh(session, replace(PARAMS, min_grey_contrast=0.0))
    assert _found(no_floor.mask, tract, 0.5)  # what the floor is for


def test_lesions_between_white_matter_and_a_bright_cortex_are_found():
    """A long-TE FLAIR: cortex 1.55 x NAWM, a 10 mm deep lesion at 1.8 x (u = 1.45 against that
    cortex, below u_grow) around a 1.95 x core that seeds it. In the deep white matter the
    cortex counts as at most ``max_grey_contrast`` brighter, so the lesion grows; the cortex,
    bright enough to seed (seed_ratio), stays measured against itself, and so does deep grey
    matter as bright as the cortex: neither is found."""
    phantom = Phantom()
    phantom.flair[phantom.cortex] = 1.55 * FLAIR["wm"]
    centre = CENTRE + [25, 0, 0]
    lesion = _ball(centre, 5.0) & phantom.wm
    phantom.paint(lesion, 1.8 * FLAIR["wm"], T1W["wmh"])
    phantom.paint(_ball(centre, 2.0), 1.95 * FLAIR["wm"], T1W["wmh"])
    nucleus = _ellipsoid(CENTRE + [0, -22, -6], (6.0, 5.0, 4.0)) & phantom.wm
    phantom.paint(nucleus, 1.55 * FLAIR["wm"], T1W["gm"], lesion=False)
    session = phantom.session(t1w=False)
    session.regions[nucleus] = REGION_INDEX["basal_ganglia"]
    session.priors["wm"][nucleus], session.priors["gm"][nucleus] = 0.3, 0.7
    detection = detect_wmh(session)
    assert _found(detection.mask, lesion, 0.7)
    assert not (detection.mask & (phantom.cortex | nucleus)).any()
    uncapped = detect_wmh(session, replace(PARAMS, max_grey_contrast=np.inf))
    assert not _found(uncapped.mask, lesion, 0.3)


def test_unusable_inputs_are_reported():
    phantom = Phantom()
    session = phantom.session()
    with pytest.raises(NotAssessableError, match="empty brain mask"):
        detect_wmh(replace(session, brain_mask=np.zeros(SHAPE, bool)))
    no_wm = np.where(phantom.regions() == REGION_INDEX["deep_wm"], 0, phantom.regions())
    no_wm[no_wm == REGION_INDEX["periventricular_wm"]] = 0
    with pytest.raises(NotAssessableError, match="too few"):
        detect_wmh(replace(session, regions=no_wm.astype(np.uint8)))


def test_registered_spec_and_frozen_parameters():
    spec = REGISTRY["wmh"]
    assert spec.detect is detect_wmh and spec.required == ("flair",)
    assert spec.regions == ("periventricular", "deep")
    # lacunes and recent infarcts are left out of WMH through their own nodes' masks: the T2w
    # and DWI do not reach the WMH detector and are no default model channel
    assert spec.excludes == ("lacunes", "rssi")
    assert spec.modalities({"flair", "t1w", "t2w", "dwi", "swi"}) == ("flair", "t1w")
    assert default_inputs(spec) == ("flair", "t1w")
    assert "FLAIR" in spec.method and "T1w" in spec.method
    with pytest.raises(AttributeError):
        PARAMS.u_seed = 0.0  # type: ignore[misc]
    assert WMHParams() == PARAMS


def _generator_region_map(anat, r) -> np.ndarray:
    """A REGION_LABELS map from the generator's own anatomy (later rules win)."""
    out = np.zeros(anat.shape, dtype=np.uint8)
    tissue = anat.brain_mask & ~anat.ventricles
    out[tissue & (anat.csf >= 0.5)] = REGION_INDEX["other_csf"]
    out[tissue & (anat.gm >= 0.5)] = REGION_INDEX["cortex_frontal"]
    out[r.wm] = REGION_INDEX["deep_wm"]
    out[r.wm & r.periventricular] = REGION_INDEX["periventricular_wm"]
    out[r.basal_ganglia] = REGION_INDEX["basal_ganglia"]
    out[r.thalamus] = REGION_INDEX["thalamus"]
    out[r.infratentorial] = REGION_INDEX["brainstem"]
    out[anat.ventricles & anat.brain_mask] = REGION_INDEX["lateral_ventricles"]
    return out


def _generated(seed: int, wmh_ml: float, rssi: bool = False):
    """A generator subject at 3 mm (halo + three deep foci, and an RSSI if asked for): its
    session (T1w, FLAIR and, with an RSSI, the DWI), WMH truth, RSSI truth and anatomy."""
    rng = np.random.default_rng(seed)
    anat = make_anatomy(rng, 3.0)
    r = make_regions(anat)
    counts = {key: 0 for key in CAPS} | {"wmh_deep": 3}
    load = LesionLoad(wmh_ml, {key: 0.0 for key in CAPS}, counts, rssi_session=0 if rssi else None)
    lesions = plan_lesions(rng, anat, r, load, 1)
    images = contrasts.base_images(anat)
    contrasts.apply_lesions(images, lesions)
    truth = {marker: np.zeros(anat.shape, bool) for marker in ("WMH", "RSSI")}
    for lesion in lesions:
        if lesion.marker in truth:
            truth[lesion.marker].reshape(-1)[lesion.index] = True
    noise = np.random.default_rng(seed + 100)
    names = {"t1w": "T1w", "flair": "FLAIR"} | ({"b0": "b0", "b1000": "b1000"} if rssi else {})
    arrays = {
        key: add_rician_noise(noise, images[name], contrasts.NOISE_SIGMA.get(name, 14.0))
        * anat.brain_mask
        for key, name in names.items()
    }
    if rssi:  # the DWI as the pipeline gives it: b0, trace and ADC (1e-6 mm2/s)
        b0, trace = arrays.pop("b0"), arrays.pop("b1000")
        ok = (b0 > 1) & (trace > 1)
        adc = np.zeros(anat.shape, np.float32)
        adc[ok] = np.log(b0[ok] / trace[ok]) / contrasts.B_VALUE * 1e6
        arrays |= {"dwi_b0": b0, "dwi_trace": trace, "dwi_adc": np.clip(adc, 0, 5000)}
    session = SessionImages(
        images={k: nib.Nifti1Image(v.astype(np.float32), anat.affine) for k, v in arrays.items()},
        brain_mask=anat.brain_mask,
        priors={
            "wm": anat.wm,
            "gm": anat.gm,
            "csf": anat.csf,
            "ventricles": anat.ventricles.astype(np.float32),
        },
        regions=_generator_region_map(anat, r),
    )
    return session, truth["WMH"], truth["RSSI"], anat


def _marker_mask(detect, session: SessionImages, key: str) -> np.ndarray:
    """A marker's mask as its node of the session graph gives it: detector, then size rule."""
    return apply_size_rule(detect(session).mask, session.reference.affine, key)


def test_recent_infarct_is_not_wmh():
    """An RSSI is FLAIR-hyperintense: without the RSSI mask it is taken for WMH; with it (the
    session has a DWI), it is not."""
    session, truth, infarct, _ = _generated(seed=3, wmh_ml=3.0, rssi=True)
    assert infarct.any()
    assert (detect_wmh(session).mask & infarct).any()
    rssi = _marker_mask(detect_rssi, session, "rssi")
    assert (rssi & infarct).any()
    detection = detect_wmh(replace(session, excluded={"rssi": rssi}))
    assert not (detection.mask & infarct).any()
    assert _dice(detection.mask, truth) > 0.75
    # a DWI the RSSI detector cannot model (here: no voxel has a WM prior >= 0.7, so there is
    # no white matter to compare with): RSSI is not assessed, nothing is left out of WMH
    priors = dict(session.priors, wm=np.minimum(session.priors["wm"], 0.6))
    with pytest.raises(NotAssessableError, match="white matter"):
        detect_rssi(replace(session, priors=priors))
    anatomy = {k: v for k, v in session.images.items() if not k.startswith("dwi_")}
    without = SessionImages(anatomy, session.brain_mask, priors, session.regions)
    found = detect_wmh(replace(session, priors=priors)).mask
    assert found.any() and np.array_equal(found, detect_wmh(without).mask)


def test_lacune_and_its_rim_are_not_wmh():
    """A lacune's FLAIR-hyperintense gliotic rim passes the WMH thresholds; the lacune (as the
    lacune detector finds it, grown by one voxel) is left out of WMH, the WMH stay."""
    phantom = Phantom()
    centre = CENTRE + [-24, 6, 0]  # deep WM, 13 mm from the ventricles
    cavity = _ball(centre, 3.0)
    rim = _ball(centre, 4.5) & ~cavity
    phantom.paint(rim, 0.95 * FLAIR["wmh"], T1W["wmh"], lesion=False)
    phantom.paint(cavity, FLAIR["csf"], T1W["csf"], lesion=False)
    phantom.paint(DEEP, FLAIR["wmh"], T1W["wmh"])
    session = phantom.session()
    lacunes = _marker_mask(detect_lacunes, session, "lacunes")
    assert _found(lacunes, cavity, 0.9)
    session = replace(session, excluded={"lacunes": lacunes})
    kept = detect_wmh(session, replace(PARAMS, exclude_other_lesions=False)).mask
    assert _found(kept, rim, 0.5)
    assert np.array_equal(kept, detect_wmh(replace(session, excluded={})).mask)
    detection = detect_wmh(session)
    assert not (detection.mask & (rim | cavity)).any()
    assert np.array_equal(detection.mask, kept & ~(rim | cavity))
    assert _found(detection.mask, DEEP, 0.9)


@pytest.mark.parametrize(("seed", "wmh_ml"), [(1, 3.0), (2, 12.0)])
def test_generated_subject(seed, wmh_ml):
    """A generator subject at 3 mm (halo + three deep foci): Dice against the planted truth,
    and each found lesion named as the truth names it (periventricular when a voxel lies
    within 10 mm of the ventricles)."""
    session, truth, _, anat = _generated(seed, wmh_ml)
    detection = detect_wmh(session)
    assert _dice(detection.mask, truth) > 0.75

    zooms = session.zooms
    periventricular = distance_mm(anat.ventricles, zooms) <= 10.0
    table = lesion_table(
        detection.mask, anat.affine, "wmh", detection.regions, detection.region_names
    )
    labels, n = label_lesions(detection.mask)
    assert n == len(table) and n >= 2
    for row in table.itertuples():
        lesion = labels == row.lesion_id
        expected = "periventricular" if periventricular[lesion].any() else "deep"
        assert row.region == expected
    assert set(table["region"]) == {"periventricular", "deep"}
