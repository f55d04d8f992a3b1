"""The PVS detector on small hand-made 1 mm volumes: thin CSF-like tubes are found, lacune-like
blobs and FLAIR-bright structures are not, and a lesion-free volume gives an empty mask.

At the generator's 3 mm test resolution no PVS can exist (one voxel is already 3 mm across, and
the STRIVE rule wants < 3 mm), so these tests build their own images: a white-matter block with
a ventricle, a basal-ganglia slab and a centrum-semiovale slab, with tissue-like intensities
and noise, into which lesions are painted. Masks are judged as the pipeline writes them: with
the STRIVE size rule applied after the detector (``_detect``)."""

from __future__ import annotations

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
from helpers import assert_located_as_detected
from scipy import ndimage

from csvd_bids.markers.base import Detection, NotAssessableError, SessionImages
from csvd_bids.markers.pvs import (
    PARAMS,
    PVS_METHOD,
    PVS_REGIONS,
    PVSParams,
    detect_pvs,
    fill_csf_pockets,
    locate_pvs,
    reject_mimics,
    tissue_flair_level,
)
from csvd_bids.markers.size_rules import apply_size_rule
from csvd_bids.morphology import label_lesions
from csvd_bids.preproc.regions import REGION_INDEX

SHAPE = (56, 56, 56)
# (T1w, FLAIR, T2w) of each tissue; lesions as STRIVE describes them.
WM = (900.0, 500.0, 500.0)
GM = (600.0, 650.0, 700.0)
CSF = (250.0, 80.0, 1400.0)
PVS = (300.0, 120.0, 1300.0)
WMH = (650.0, 1000.0, 950.0)
CHANNELS = ("t1w", "flair", "t2w")


def _ball(centre, radius_vox: float) -> np.ndarray:
    grid = np.indices(SHAPE)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius_vox**2


def _tube(i: int, j: int, k0: int, k1: int) -> np.ndarray:
    """A one-voxel-wide tube along z (the 1 mm PVS of a 1 mm scan)."""
    mask = np.zeros(SHAPE, bool)
    mask[i, j, k0:k1] = True
    return mask


def _session(lesions: list[tuple[np.ndarray, tuple[float, float, float]]], seed: int = 0):
    """A brain-like block (background WM, a ventricle, BG and CSO slabs) with ``lesions``."""
    brain = np.zeros(SHAPE, bool)
    brain[4:-4, 4:-4, 4:-4] = True
    regions = np.where(brain, REGION_INDEX["deep_wm"], 0).astype(np.uint8)
    ventricle = np.zeros(SHAPE, bool)
    ventricle[24:32, 8:14, 10:46] = True
    bg = np.zeros(SHAPE, bool)
    bg[8:20, 20:48, 8:24] = True  # basal-ganglia slab (grey matter)
    regions[bg] = REGION_INDEX["basal_ganglia"]
    regions[brain & (np.indices(SHAPE)[2] >= 34)] = REGION_INDEX["centrum_semiovale"]
    regions[ventricle] = REGION_INDEX["lateral_ventricles"]
    tissue = np.where(ventricle, 2, np.where(bg, 1, 0))  # WM, GM, CSF
    images = {}
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CHANNELS):
        image = np.choose(tissue, [WM[c], GM[c], CSF[c]]).astype(np.float32)
        for mask, values in lesions:
            image[mask] = values[c]
        image = ndimage.gaussian_filter(image, 0.4)  # a mild point-spread function
        image = np.where(brain, image + rng.normal(0.0, 12.0, SHAPE), 0.0)
        images[name] = nib.Nifti1Image(image.astype(np.float32), np.eye(4))
    images = {"t2w": images["t2w"], "t1w": images["t1w"], "flair": images["flair"]}
    priors = {
        "wm": np.where(brain & (tissue == 0), 1.0, 0.0).astype(np.float32),
        "gm": np.where(brain & (tissue == 1), 1.0, 0.0).astype(np.float32),
        "csf": np.where(brain & (tissue == 2), 1.0, 0.0).astype(np.float32),
        "ventricles": ventricle.astype(np.float32),
    }
    # A tissue classifier calls PVS voxels CSF: the region map says so too.
    for mask, values in lesions:
        if values == PVS:
            regions[mask & brain] = REGION_INDEX["other_csf"]
    return SessionImages(images=images, brain_mask=brain, priors=priors, regions=regions)


def _detect(session: SessionImages, params: PVSParams = PARAMS) -> Detection:
    """The detection with the STRIVE size rule applied to its mask, as the pipeline does."""
    detection = detect_pvs(session, params)
    detection.mask = apply_size_rule(detection.mask, session.reference.affine, "pvs")
    return detection


def _found(detection, mask: np.ndarray) -> bool:
    return bool((detection.mask & mask).any())


@pytest.fixture(scope="module")
def tubes():
    wm_tube = _tube(40, 30, 14, 24)  # deep white matter
    bg_tube = _tube(14, 34, 10, 20)  # basal ganglia
    cso_tube = _tube(36, 20, 38, 48)  # centrum semiovale
    blob = _ball((40, 44, 18), 4)  # 9 mm across: lacune-like, not a PVS
    flair_bright = _tube(30, 40, 38, 48)  # T2-bright but FLAIR-bright too: WMH-like
    lesions = [(wm_tube, PVS), (bg_tube, PVS), (cso_tube, PVS), (blob, CSF), (flair_bright, WMH)]
    session = _session(lesions)
    named = {"wm": wm_tube, "bg": bg_tube, "cso": cso_tube, "blob": blob, "flair": flair_bright}
    return session, named, _detect(session)


def test_thin_tubes_are_found_and_named(tubes):
    session, named, detection = tubes
    assert_located_as_detected(detection, locate_pvs(session, detection.mask))
    for key in ("wm", "bg", "cso"):
        assert _found(detection, named[key]), key
    names = detection.region_names
    labels, n = label_lesions(detection.mask)
    assert n == 3  # nothing else: no false positive on the ventricle, blob or WMH
    region_of = {
        key: names[int(detection.regions[detection.mask & named[key]].min())]
        for key in ("wm", "bg", "cso")
    }
    assert region_of == {"wm": "other", "bg": "BG", "cso": "CSO"}
    assert set(PVS_REGIONS) <= set(names.values())


def test_round_blob_and_flair_bright_tube_are_rejected(tubes):
    _, named, detection = tubes
    assert not _found(detection, ndimage.binary_dilation(named["blob"], iterations=2))
    assert not _found(detection, ndimage.binary_dilation(named["flair"], iterations=2))


def test_score_is_a_belief_map(tubes):
    session, named, detection = tubes
    assert detection.score.dtype == np.float32
    assert detection.score.shape == session.brain_mask.shape
    assert detection.score.min() >= 0.0 and detection.score.max() <= 1.0
    assert detection.score[named["wm"]].max() > 0.5
    assert detection.mask.dtype == bool


def test_empty_volume_gives_an_empty_mask_and_empty_brain_is_not_assessable():
    session = _session([])
    detection = _detect(session)
    assert not detection.mask.any()
    with pytest.raises(NotAssessableError, match="empty brain mask"):
        detect_pvs(replace(session, brain_mask=np.zeros_like(session.brain_mask)))


def test_t2w_alone_still_rejects_the_blob():
    """FLAIR and T1w are optional; without them tubes are still found, blobs still dropped."""
    wm_tube, blob = _tube(40, 30, 14, 24), _ball((40, 44, 18), 4)
    full = _session([(wm_tube, PVS), (blob, CSF)])
    session = replace(full, images={"t2w": full.images["t2w"]})
    detection = _detect(session)
    assert _found(detection, wm_tube)
    assert not _found(detection, ndimage.binary_dilation(blob, iterations=2))


def test_a_wide_tube_breaks_the_size_rule():
    """A 4 mm thick tube is tubular but too wide for a PVS (STRIVE: < 3 mm)."""
    thick = ndimage.binary_dilation(_tube(40, 30, 10, 30), iterations=2)
    detection = _detect(_session([(thick, PVS)]), PVSParams(scales_mm=(0.6, 0.9, 1.3, 2.0)))
    assert not detection.mask.any()


def _mimic_inputs():
    """A thin candidate line and the T2w contrast u (0 WM, 1 CSF) and FLAIR contrast around it."""
    shape = (30, 30, 30)
    line = np.zeros(shape, bool)
    line[15, 15, 8:20] = True
    u = np.where(line, 1.0, 0.0)
    flair_u = np.where(line, -3.0, 0.0)
    everywhere = np.ones(shape, bool)
    return line, u, flair_u, everywhere


def test_a_tube_leaving_a_cavity_is_lacune_like():
    """The candidate is thin, but the CSF-like structure it belongs to holds a 3 mm ball."""
    line, u, flair_u, everywhere = _mimic_inputs()
    kept = reject_mimics(line, u, flair_u, everywhere, everywhere, (1.0,) * 3, PVSParams())
    assert kept.sum() == line.sum()
    cavity = np.zeros(line.shape, bool)
    cavity[13:18, 13:18, 20:25] = True  # 5 mm of CSF at the end of the line
    u[cavity] = 1.0
    kept = reject_mimics(line, u, flair_u, everywhere, everywhere, (1.0,) * 3, PVSParams())
    assert not kept.any()


def test_a_flair_hyperintense_rim_rejects_a_candidate():
    line, u, flair_u, everywhere = _mimic_inputs()
    rim = ndimage.binary_dilation(line, iterations=2) & ~line
    flair_u[rim] = 3.0  # brighter than grey matter: gliosis around a cavity
    kept = reject_mimics(line, u, flair_u, everywhere, everywhere, (1.0,) * 3, PVSParams())
    assert not kept.any()
    kept = reject_mimics(line, u, None, everywhere, everywhere, (1.0,) * 3, PVSParams())
    assert kept.any()  # without a FLAIR there is no rim to see


def test_a_rim_is_judged_against_the_tissue_it_lies_in():
    """Deep grey matter is FLAIR-brighter than white matter: a shell at its own level is no
    gliotic rim, one ``rim_u`` brighter than it is."""
    line, u, flair_u, everywhere = _mimic_inputs()
    around = ndimage.binary_dilation(line, iterations=2) & ~line
    flair_u[around] = 2.5  # the level of FLAIR-bright basal ganglia, above rim_u (2.0)
    params = PVSParams()
    assert not reject_mimics(line, u, flair_u, everywhere, everywhere, (1.0,) * 3, params).any()
    kept = reject_mimics(line, u, flair_u, everywhere, everywhere, (1.0,) * 3, params, 2.5)
    assert kept.sum() == line.sum()
    flair_u[around] = 2.5 + params.rim_u
    kept = reject_mimics(line, u, flair_u, everywhere, everywhere, (1.0,) * 3, params, 2.5)
    assert not kept.any()


def test_a_pvs_in_flair_bright_basal_ganglia_is_kept():
    """A long-TE FLAIR has little grey-white contrast, so its basal ganglia measure more than
    the rim level in grey-white units (here 2.4): a PVS there is not rimmed by its own tissue."""
    tube = _tube(14, 34, 10, 20)
    session = _session([(tube, PVS)])
    flair = np.asanyarray(session.images["flair"].dataobj).copy()
    cortex = np.zeros(SHAPE, bool)
    cortex[40:48, 40:48, 40:48] = True  # the grey-matter reference: a dim cortex (WM + 60)
    flair[cortex] += 60.0
    priors = dict(session.priors)
    priors["gm"] = cortex.astype(np.float32)  # the basal-ganglia slab is no reference
    priors["wm"] = np.where(cortex, 0.0, priors["wm"]).astype(np.float32)
    images = {**session.images, "flair": nib.Nifti1Image(flair, np.eye(4))}
    assert _found(_detect(replace(session, images=images, priors=priors)), tube)


def test_tissue_flair_level_is_the_basal_ganglia_median_when_brighter():
    named = np.full((20, 20, 20), 3, dtype=np.uint8)  # "other" white matter
    named[:10] = 1  # basal ganglia
    search = np.ones(named.shape, bool)
    flair_u = np.where(named == 1, 1.2, 0.1).astype(np.float32)
    flair_u[:10, :2] = 5.0  # a WMH in the basal ganglia does not move the median
    level = tissue_flair_level(flair_u, named, search)
    assert np.allclose(level[named == 1], 1.2) and np.all(level[named != 1] == 0.0)
    darker = np.where(named == 1, -0.3, 0.1).astype(np.float32)
    assert np.all(tissue_flair_level(darker, named, search) == 0.0)
    outside = search & (named != 1)  # basal ganglia not searched: nothing to measure
    assert np.all(tissue_flair_level(flair_u, named, outside) == 0.0)


def test_sulcal_csf_pocket_is_not_tissue():
    """An enclosed CSF pocket inside white matter is relabelled; one inside cortex is not."""
    regions = np.full((20, 20, 20), REGION_INDEX["deep_wm"], np.uint8)
    regions[:, :, 12:] = REGION_INDEX["cortex_frontal"]
    brain = np.zeros(regions.shape, bool)
    brain[2:-2, 2:-2, 2:-2] = True
    regions[~brain] = 0
    regions[8, 8, 5:8] = REGION_INDEX["other_csf"]  # a PVS in white matter
    regions[8, 8, 14:17] = REGION_INDEX["other_csf"]  # a sulcal fundus in cortex
    filled, outer = fill_csf_pockets(regions, brain, (1.0, 1.0, 1.0), 300.0)
    assert (filled[8, 8, 5:8] == REGION_INDEX["deep_wm"]).all()
    assert outer[8, 8, 14:17].all() and not outer[8, 8, 5:8].any()


def test_sulcal_csf_touching_the_sulcus_at_an_edge_is_not_a_pocket():
    """A sulcus's CSF that partial volumes cut off except at one edge is still sulcal CSF (it
    was a pocket, searched and reported as a PVS on real scans); a pocket that touches the
    sulcus nowhere is tissue's."""
    regions = np.full((20, 20, 20), REGION_INDEX["deep_wm"], np.uint8)
    brain = np.zeros(regions.shape, bool)
    brain[2:-2, 2:-2, 2:-2] = True
    regions[~brain] = 0
    regions[8, 8, 2:6] = REGION_INDEX["other_csf"]  # a sulcus from the brain's surface
    regions[9, 9, 6:9] = REGION_INDEX["other_csf"]  # its fundus, touching it at an edge
    regions[12, 12, 9:12] = REGION_INDEX["other_csf"]  # a PVS in white matter
    filled, outer = fill_csf_pockets(regions, brain, (1.0, 1.0, 1.0), 300.0)
    assert outer[9, 9, 6:9].all() and (filled[9, 9, 6:9] == REGION_INDEX["other_csf"]).all()
    assert not outer[12, 12, 9:12].any()
    assert (filled[12, 12, 9:12] == REGION_INDEX["deep_wm"]).all()


def test_basal_ganglia_seeds_allow_for_their_brighter_tissue():
    """Deep grey matter is brighter than white matter on T2w, so a PVS there stands out less
    from what surrounds it and scores a lower vesselness: the basal ganglia are seeded at a
    lower vesselness than the white matter, where the same faint tube is not a seed."""
    faint_bg = _tube(14, 34, 10, 20)  # vesselness about 0.25 in the grey-matter slab
    faint_wm = _tube(40, 30, 14, 24)  # about 0.27 in white matter
    session = _session([(faint_bg, (300.0, 120.0, 1100.0)), (faint_wm, (300.0, 120.0, 900.0))])
    detection = _detect(session)
    assert _found(detection, faint_bg)
    assert not _found(detection, faint_wm)
    same_as_wm = replace(PARAMS, vesselness_min_bg=PARAMS.vesselness_min)
    assert not _found(_detect(session, same_as_wm), faint_bg)
    assert _found(_detect(session, replace(PARAMS, vesselness_min=0.2)), faint_wm)


def test_method_sentence():
    assert PVS_METHOD and ". " not in PVS_METHOD.rstrip(".") and "T2w" in PVS_METHOD


def test_tube_on_the_wall_of_an_unlabelled_csf_space_is_not_a_pvs():
    """A thin bright tube joined through partial-volume fluid to a CSF space that the region
    map calls white matter (the trigone or horn of an enlarged ventricle, beyond the template's
    ventricle) is the edge of that space, not a PVS; the same tube in the basal ganglia is
    kept (PVS cluster there next to the frontal horns), and so is a free tube in the WM."""
    half = tuple(w + 0.35 * (c - w) for w, c in zip(WM, CSF, strict=True))  # partial volume
    lesions, walls = [], {}
    for key, (i, j, k) in {"wm": (42, 40, 26), "bg": (14, 28, 16)}.items():
        space = _ball((i, j, k), 4)  # 9 mm of CSF
        wall = _tube(i, j + 6, k - 6, k + 6)
        bridge = np.zeros(SHAPE, bool)
        bridge[i, j + 5, k - 2 : k + 3] = True
        lesions += [(space, CSF), (bridge, half), (wall, PVS)]
        walls[key] = wall
    free = _tube(34, 30, 14, 24)
    session = _session([*lesions, (free, PVS)])
    detection = _detect(session)
    assert _found(detection, free)
    assert not _found(detection, walls["wm"])
    assert _found(detection, walls["bg"])
    without = _detect(session, replace(PARAMS, clear_csf_radius_mm=float("inf")))
    assert _found(without, walls["wm"])
