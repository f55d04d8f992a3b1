"""The MNI152 template and its priors, brought into subject space by affine registration.

The ICBM 2009a symmetric template and its grey/white-matter probability maps ship inside
nilearn's wheel (no download at run time). From them we derive, once per process:
- a brain mask (template > 0, holes filled);
- a CSF probability (brain minus GM minus WM);
- the lateral ventricles: CSF voxels (p > 0.5) inside a central box, largest components;
- a registration target: the brain-only template wrapped in a synthetic head (a CSF ring, a dark
  skull, a bright scalp), so that an image with skull and scalp is not matched brain-to-head.

``register_template`` fits a rigid then affine transform (Mattes mutual information, so it
works for T1w and FLAIR references alike, moments initialisation for large offsets, three
resolution levels). Deformable registration and a labelled atlas come with the regions work.
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

from csvd_bids.preproc.images import sitk_to_array, to_sitk
from csvd_bids.preproc.registration import downsample, mattes_registration

TEMPLATE_NAME = "MNI152NLin2009aSym"
_TEMPLATE_DIR = Path(nilearn.__file__).parent / "datasets" / "data"
_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
# Lateral ventricles sit in this MNI box (mm); CSF outside it is sulcal or cisternal.
_VENTRICLE_BOX = {"x": (-30.0, 30.0), "y": (-50.0, 35.0), "z": (-5.0, 35.0)}
PRIORS = ("brain", "wm", "gm", "csf", "ventricles")
# Shells around the brain (outer distance in mm, intensity on the template's 0-255 T1 scale,
# where white matter is about 220): CSF, skull, scalp.
_HEAD_SHELLS = ((3.0, 25.0), (9.0, 10.0), (15.0, 140.0))


@dataclass(frozen=True)
class Template:
    t1: nib.Nifti1Image  # brain only
    head: nib.Nifti1Image  # brain plus synthetic skull and scalp: the registration target
    priors: dict[str, nib.Nifti1Image]


def _synthetic_head(t1: np.ndarray, brain: np.ndarray) -> np.ndarray:
    head = t1.copy()
    distance = ndimage.distance_transform_edt(~brain)
    inner = 0.0
    for outer, value in _HEAD_SHELLS:
        head[(distance > inner) & (distance <= outer)] = value
        inner = outer
    return head


def _world_grid(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ijk = np.indices(img.shape[:3]).reshape(3, -1)
    xyz = img.affine[:3, :3] @ ijk + img.affine[:3, 3:4]
    return tuple(axis.reshape(img.shape[:3]) for axis in xyz)  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """The template T1 (brain only) and its priors, as float32 images on the 1 mm grid."""
    imgs = {key: nib.load(_TEMPLATE_DIR / name) for key, name in _FILES.items()}
    t1 = np.asanyarray(imgs["t1"].dataobj, dtype=np.float32)
    gm = np.asanyarray(imgs["gm"].dataobj, dtype=np.float32) / 255.0
    wm = np.asanyarray(imgs["wm"].dataobj, dtype=np.float32) / 255.0
    brain = ndimage.binary_fill_holes(t1 > 0)
    csf = np.clip(brain - gm - wm, 0.0, 1.0).astype(np.float32)
    x, y, z = _world_grid(imgs["t1"])
    box = np.ones(t1.shape, bool)
    for axis, (low, high) in zip((x, y, z), _VENTRICLE_BOX.values(), strict=True):
        box &= (axis >= low) & (axis <= high)
    labels, n = ndimage.label((csf > 0.5) & box)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, range(1, n + 1))
    keep = 1 + np.flatnonzero(sizes >= 0.1 * sizes.max())  # both lateral ventricles
    ventricles = np.isin(labels, keep)
    affine = imgs["t1"].affine
    maps = {"brain": brain, "wm": wm, "gm": gm, "csf": csf, "ventricles": ventricles}
    return Template(
        t1=nib.Nifti1Image(t1, affine),
        head=nib.Nifti1Image(_synthetic_head(t1, brain), affine),
        priors={k: nib.Nifti1Image(v.astype(np.float32), affine) for k, v in maps.items()},
    )


def register_template(subject: nib.Nifti1Image, seed: int = 0) -> tuple[sitk.Transform, float]:
    """Affine transform mapping subject points to template points, and the final MI cost.

    (ITK convention: the transform maps fixed = subject coordinates into moving = template.)
    """
    fixed = downsample(to_sitk(subject), 2.0)
    moving = downsample(to_sitk(load_template().head), 2.0)
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
