"""The MNI152 template and its priors, brought into subject space.

The ICBM 2009a symmetric template and its grey/white-matter probability maps ship inside
nilearn's wheel (no download at run time). From them we derive, once per process:
- a brain mask (template > 0, holes filled);
- a CSF probability (brain minus GM minus WM);
- the lateral ventricles: CSF voxels (p > 0.5) inside a central box, minus the midline,
  components of at least 2 ml (the generator's truth uses the same rule);
- the supraventricular level (centrum semiovale): above the roof of the lateral ventricles;
- a registration target for heads that still have a skull: the brain-only template wrapped
  in a synthetic head (a CSF ring, a dark skull, a bright scalp).

Registration (ITK convention: the transform maps subject points to template points):
1. ``register_template``: rigid then affine, Mattes mutual information (any contrast), moments
   initialisation for large offsets, three resolution levels, at 2 mm. With a brain mask the
   skull-stripped subject is matched to the brain-only template.
2. ``deformable_refine``: symmetric-forces Demons (Vercauteren et al. 2007, SimpleITK) at 4 then
   2 mm. Demons needs one contrast on both sides, so the template is first re-synthesised in
   the subject's contrast from its tissue priors: each tissue gets the subject's median
   intensity where the affine-warped prior is high (a SynthSeg-like idea that works for T1w,
   FLAIR and T2w references alike). The displacement field is smoothed (``DEMONS_SIGMA_MM``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from csvd_bids.preproc.images import new_like, sitk_to_array, to_sitk
from csvd_bids.preproc.registration import SAMPLING_SEED, downsample, mattes_registration

TEMPLATE_NAME = "MNI152NLin2009aSym"
_TEMPLATE_DIR = Path(nilearn.__file__).parent / "datasets" / "data"
_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
# Lateral ventricles sit in this MNI box (mm, |x| for x); CSF outside it is sulcal or
# cisternal, and the midline cut (|x| < 3 mm) leaves out the septum and third ventricle.
_VENTRICLE_BOX = {"x": (3.0, 35.0), "y": (-50.0, 35.0), "z": (-5.0, 35.0)}
_VENTRICLE_MIN_ML = 2.0
# Shells around the brain (outer distance in mm, intensity on the template's 0-255 T1 scale,
# where white matter is about 220): CSF, skull, scalp.
_HEAD_SHELLS = ((3.0, 25.0), (9.0, 10.0), (15.0, 140.0))
# Demons: coarse-to-fine grids (mm), iterations per level, Gaussian smoothing of the field (mm).
DEMONS_SPACING_MM = (4.0, 2.0)
DEMONS_ITERATIONS = (40, 30)
DEMONS_SIGMA_MM = 2.0


@dataclass(frozen=True)
class Template:
    t1: nib.Nifti1Image  # brain only
    priors: dict[str, nib.Nifti1Image]
    supraventricular: nib.Nifti1Image  # above the top of the lateral ventricles (CSO level)


def _synthetic_head(t1: np.ndarray, brain: np.ndarray) -> np.ndarray:
    head = t1.copy()
    distance = ndimage.distance_transform_edt(~brain)
    inner = 0.0
    for outer, value in _HEAD_SHELLS:
        head[(distance > inner) & (distance <= outer)] = value
        inner = outer
    return head


def voxel_ml(img: nib.Nifti1Image) -> float:
    return float(np.prod(img.header.get_zooms()[:3])) / 1000.0


def _world_grid(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z (mm) of every voxel, by broadcasting one axis at a time (a matrix product over
    every voxel's index took 0.9 s of the template's loading)."""
    i, j, k = np.ogrid[tuple(slice(0, n) for n in img.shape[:3])]
    affine = img.affine
    return tuple(  # type: ignore[return-value]
        affine[row, 0] * i + affine[row, 1] * j + affine[row, 2] * k + affine[row, 3]
        for row in range(3)
    )


@functools.lru_cache(maxsize=1)
def template_brain() -> nib.Nifti1Image:
    """The template's brain mask (T1 > 0, holes filled), uint8 on its 1 mm grid."""
    img = nib.load(_TEMPLATE_DIR / _FILES["t1"])
    brain = ndimage.binary_fill_holes(np.asanyarray(img.dataobj) > 0)
    return nib.Nifti1Image(brain.astype(np.uint8), img.affine)


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """The template T1 (brain only) and its priors, as float32 images on the 1 mm grid."""
    imgs = {key: nib.load(_TEMPLATE_DIR / name) for key, name in _FILES.items()}
    t1 = np.asanyarray(imgs["t1"].dataobj, dtype=np.float32)
    gm = np.asanyarray(imgs["gm"].dataobj, dtype=np.float32) / 255.0
    wm = np.asanyarray(imgs["wm"].dataobj, dtype=np.float32) / 255.0
    brain = np.asanyarray(template_brain().dataobj) > 0
    csf = np.clip(brain - gm - wm, 0.0, 1.0).astype(np.float32)
    x, y, z = _world_grid(imgs["t1"])
    box = np.ones(t1.shape, bool)
    for axis, (low, high) in zip((np.abs(x), y, z), _VENTRICLE_BOX.values(), strict=True):
        box &= (axis >= low) & (axis < high)
    labels, n = ndimage.label((csf > 0.5) & box)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, range(1, n + 1))
    keep = 1 + np.flatnonzero(sizes * voxel_ml(imgs["t1"]) >= _VENTRICLE_MIN_ML)
    ventricles = np.isin(labels, keep)  # the two lateral ventricles
    affine = imgs["t1"].affine
    top = np.percentile(z[ventricles], 99)  # the roof of the ventricle bodies, robustly
    maps = {"brain": brain, "wm": wm, "gm": gm, "csf": csf, "ventricles": ventricles}
    return Template(
        t1=nib.Nifti1Image(t1, affine),
        priors={k: nib.Nifti1Image(v.astype(np.float32), affine) for k, v in maps.items()},
        supraventricular=nib.Nifti1Image((brain & (z > top)).astype(np.uint8), affine),
    )


@functools.lru_cache(maxsize=1)
def template_head() -> nib.Nifti1Image:
    """The brain-only template in a synthetic head: the target for heads with a skull. Made
    only when one is registered (1.6 s that skull-stripped registrations do not need)."""
    template = load_template()
    brain = np.asanyarray(template.priors["brain"].dataobj) > 0
    t1 = np.asanyarray(template.t1.dataobj)
    return nib.Nifti1Image(_synthetic_head(t1, brain), template.t1.affine)


def _masked(subject: nib.Nifti1Image, brain_mask: np.ndarray) -> nib.Nifti1Image:
    data = np.asanyarray(subject.dataobj, dtype=np.float32)
    return nib.Nifti1Image(np.where(brain_mask, data, 0.0).astype(np.float32), subject.affine)


def register_template(
    subject: nib.Nifti1Image,
    brain_mask: np.ndarray | None = None,
    seed: int = SAMPLING_SEED,
    template: Template | None = None,
) -> tuple[sitk.AffineTransform, float]:
    """Affine transform mapping subject points to template points, and the final MI cost.

    With ``brain_mask`` the skull-stripped subject is matched to the brain-only template;
    without it the whole head is matched to the template in its synthetic head.
    ``template``: :func:`load_template`'s maps when not given (e.g. read from a run's cache).
    """
    if brain_mask is None:
        fixed, moving = to_sitk(subject), to_sitk(template_head())
    else:
        template = template or load_template()
        fixed, moving = to_sitk(_masked(subject, brain_mask)), to_sitk(template.t1)
    fixed, moving = downsample(fixed, 2.0), downsample(moving, 2.0)
    rigid = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    stage = mattes_registration(0.1, seed)
    stage.SetInitialTransform(rigid, inPlace=True)
    stage.Execute(fixed, moving)
    affine = sitk.AffineTransform(rigid.GetMatrix(), rigid.GetTranslation(), rigid.GetCenter())
    stage = mattes_registration(0.1, seed)
    stage.SetInitialTransform(affine, inPlace=True)
    stage.Execute(fixed, moving)
    return affine, float(stage.GetMetricValue())


def _tissue_levels(
    subject: np.ndarray, brain: np.ndarray, priors: dict[str, np.ndarray]
) -> dict[str, float]:
    """The subject's median intensity of each tissue where its affine-warped prior is high."""
    where = {
        "wm": priors["wm"] >= 0.9,
        "gm": priors["gm"] >= 0.7,
        "csf": priors["ventricles"] >= 0.5,
    }
    levels = {}
    for tissue, high in where.items():
        voxels = subject[brain & high]
        if voxels.size < 20:
            raise ValueError(f"too few {tissue} voxels to estimate its intensity")
        levels[tissue] = float(np.median(voxels))
    return levels


def synthetic_template(
    levels: dict[str, float], template: Template | None = None
) -> nib.Nifti1Image:
    """The template re-drawn in a subject's contrast: sum over tissues of prior x level."""
    priors = (template or load_template()).priors
    data = sum(levels[t] * np.asanyarray(priors[t].dataobj) for t in ("wm", "gm", "csf"))
    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), priors["wm"].affine)


def deformable_refine(
    subject: nib.Nifti1Image,
    brain_mask: np.ndarray,
    affine: sitk.Transform,
    template: Template | None = None,
) -> sitk.CompositeTransform:
    """Affine followed by a Demons displacement field (see the module docstring)."""
    template = template or load_template()
    small = downsample(to_sitk(subject), DEMONS_SPACING_MM[-1])
    small_mask = sitk.Resample(
        to_sitk(new_like(brain_mask.astype(np.float32), subject)), small, sitk.Transform()
    )
    brain = sitk_to_array(small_mask) > 0.5
    data = sitk_to_array(small)
    priors = {
        name: sitk_to_array(sitk.Resample(to_sitk(template.priors[name]), small, affine))
        for name in ("wm", "gm", "ventricles")
    }
    levels = _tissue_levels(data, brain, priors)
    fixed_full = sitk.Mask(small, sitk.Cast(small_mask > 0.5, sitk.sitkUInt8))
    moving_full = sitk.Resample(to_sitk(synthetic_template(levels, template)), small, affine)
    field = None
    for spacing, iterations in zip(DEMONS_SPACING_MM, DEMONS_ITERATIONS, strict=True):
        fixed = downsample(fixed_full, spacing)
        moving = sitk.Resample(moving_full, fixed)
        demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
        demons.SetNumberOfIterations(iterations)
        demons.SmoothDisplacementFieldOn()
        demons.SetStandardDeviations(DEMONS_SIGMA_MM)
        if field is None:
            field = demons.Execute(fixed, moving)
        else:
            initial = sitk.Resample(field, fixed, sitk.Transform(), sitk.sitkLinear)
            field = demons.Execute(fixed, moving, initial)
    displacement = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    return sitk.CompositeTransform([affine, displacement])  # displacement first, then affine


def warp_to_subject(
    template_map: nib.Nifti1Image,
    transform: sitk.Transform,
    reference: nib.Nifti1Image,
    interpolator: int = sitk.sitkLinear,
) -> np.ndarray:
    """Resample a template-space map onto the subject's reference grid."""
    ref = to_sitk(reference)
    out = sitk.Resample(to_sitk(template_map), ref, transform, interpolator, 0.0, sitk.sitkFloat32)
    return sitk_to_array(out)


def warp_labels_to_subject(
    maps: dict[str, nib.Nifti1Image], transform: sitk.Transform, reference: nib.Nifti1Image
) -> dict[str, np.ndarray]:
    """Label maps of one template-space grid on the subject's reference grid by nearest
    neighbour, as :func:`warp_to_subject` gives them: each subject voxel's nearest template
    voxel is found once for all the maps (one resampling of the voxels' indices, exact in
    float32 below 2**24 voxels) instead of once per map."""
    first = next(iter(maps.values()))
    shape = first.shape[:3]
    size = int(np.prod(shape))
    if size >= 2**24:
        raise ValueError(f"a template grid of {size} voxels: indices not exact in float32")
    index = nib.Nifti1Image(np.arange(1, size + 1, dtype=np.float32).reshape(shape), first.affine)
    nearest = warp_to_subject(index, transform, reference, sitk.sitkNearestNeighbor)
    nearest = nearest.astype(np.int64)  # 0: outside the template grid
    out = {}
    for name, img in maps.items():
        if img.shape[:3] != shape or not np.allclose(img.affine, first.affine):
            raise ValueError(f"{name} is not on the grid of the other maps")
        values = np.asanyarray(img.dataobj).ravel()
        out[name] = np.concatenate([np.zeros(1, values.dtype), values])[nearest]
    return out
