"""Does a coregistered image show the same subject as the reference? (a QC warning, not an error)

Mutual information cannot tell: a brain of another subject, rigidly aligned, shares the coarse
layout (brain outline, ventricles, tissue classes) and reaches a similar MI. What only the same
subject shares is the *fine* anatomy (gyri, sulci, vessels, ventricle edges), and fine anatomy
lines up at one pose only. So we measure how sharp the similarity optimum is:

1. both images go onto a 2 mm isotropic grid over the brain mask (anti-aliased);
2. the similarity is the local correlation of ANTs (squared Pearson correlation in every
   3 x 3 x 3 voxel = 6 mm neighbourhood, averaged over the brain mask; SimpleITK's
   ``ANTSNeighborhoodCorrelation``); squaring makes it blind to the sign of the contrast, so it
   compares T1w with FLAIR, T2w, SWI or a b0 as well as like with like; computed with box
   sums (scipy): ITK's value, in 0.10 s an evaluation instead of ITK's 0.36 s (one thread);
3. it is taken at the registered pose (``c0``) and after shifting the moving image by 4 mm
   along each axis, both ways (``c4``, the mean of six);
4. ``score = 1 - c4 / c0``: the share of the local agreement that a 4 mm shift destroys.

For the same subject the score is high (0.48-0.72 on our data): the fine anatomy agrees at the
pose and not 4 mm away. For another subject only coarse structures agree, and they agree almost
as well 4 mm away, so the score is low (0.01-0.24). The score is a ratio of the images' own
similarities, so it needs no calibration per modality, scanner or intensity scale. It also drops
when the coregistration itself is off by 2 mm or more: a flagged image may be misregistered
rather than of another subject, and either is worth a look.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from csvd_bids.preproc.images import to_sitk

WORKING_SPACING_MM = 2.0  # isotropic grid of the comparison: sulcal detail survives, 1 s a check
WINDOW_RADIUS_VOXELS = 1  # 3 x 3 x 3 voxels = 6 mm neighbourhoods (6, 10, 14 mm were compared)
PROBE_SHIFT_MM = 4.0  # beyond a sulcus' width, within the smoothness of inter-subject differences
MIN_BRAIN_VOXELS = 1000  # of the working grid (8 ml): fewer cannot give a stable average

# Chosen on benchmarks/identity_check.py (116 coregistered pairs, 28 of them same-subject):
# same-subject scores were >= 0.536 on synthetic data (1.5 mm, 4 subjects, FLAIR/T2w/SWI/b0 on
# T1w) and >= 0.482 on real data (3D MNI-space and 2D clinical thick-slice scans, across
# sessions); different-subject scores were <= 0.236 and <= 0.212. The threshold sits in the
# gap, nearer the different-subject side, so that a same-subject pair still passes with 25 %
# added noise or a 1 mm residual misregistration (lowest same-subject score then 0.39).
THRESHOLD = 0.30

METHOD = (
    "sharpness of the local-correlation optimum: 1 - mean ANTs neighbourhood correlation "
    f"(radius {WINDOW_RADIUS_VOXELS} voxel, {WORKING_SPACING_MM:g} mm grid) after "
    f"+-{PROBE_SHIFT_MM:g} mm shifts / the same at the registered pose, inside the brain mask"
)


def _working_grid(reference: nib.Nifti1Image, brain_mask: np.ndarray) -> sitk.Image:
    """An empty 2 mm image over the brain mask's bounding box (plus a margin for the shifts)."""
    ref = to_sitk(reference)
    ijk = np.argwhere(brain_mask)
    margin = 2 * PROBE_SHIFT_MM
    spacing = np.array(ref.GetSpacing())
    low = np.maximum(ijk.min(axis=0) - np.ceil(margin / spacing), 0)
    high = np.minimum(ijk.max(axis=0) + np.ceil(margin / spacing), np.array(brain_mask.shape) - 1)
    # ITK index order is the nibabel i, j, k order (to_sitk transposes the array, not the axes)
    origin = ref.TransformContinuousIndexToPhysicalPoint([float(v) for v in low])
    size = (np.ceil((high - low) * spacing / WORKING_SPACING_MM) + 1).astype(int)
    grid = sitk.Image([int(n) for n in size], sitk.sitkUInt8)
    grid.SetSpacing((WORKING_SPACING_MM,) * 3)
    grid.SetOrigin(origin)
    grid.SetDirection(ref.GetDirection())
    return grid


def _on_grid(img: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """Anti-aliased linear resampling: Gaussian of sigma half the spacing change per axis."""
    variance = [(0.5 * max(0.0, WORKING_SPACING_MM - s)) ** 2 for s in img.GetSpacing()]
    smoothed = sitk.DiscreteGaussian(img, variance, 32, 0.01, True)
    return sitk.Resample(smoothed, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def _window_sums(values: np.ndarray) -> np.ndarray:
    """Sum over each voxel's (2r+1)^3 neighbourhood (zero beyond the grid)."""
    size = 2 * WINDOW_RADIUS_VOXELS + 1
    return ndimage.uniform_filter(values, size, mode="constant") * float(size**3)


def _local_correlation(fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray, shift) -> float:
    """Mean squared local correlation (ANTs CC) of ``moving`` translated by ``shift`` (voxels).

    The value of SimpleITK's ``ANTSNeighborhoodCorrelation`` metric (``MetricEvaluate`` with a
    translation, linear interpolation and a fixed mask; tests/test_identity.py compares the
    two), as box sums instead of ITK's per-voxel neighbourhood scan (10 s for the 28
    evaluations of a session): a neighbour counts where it lies in the mask and its shifted
    point in the moving grid; a voxel's value is sFM^2 / (sFF sMM), or 1 where that is
    undefined; the mean is over the mask voxels whose own shifted point lies in the grid.
    """
    shift = np.asarray(shift, dtype=float)
    # ITK's linear interpolation: valid within half a voxel of the grid, edge values clamped
    moved = ndimage.shift(moving, -shift, order=1, mode="nearest")
    in_grid = np.ones(fixed.shape, dtype=bool)
    for axis, (step, n) in enumerate(zip(shift, fixed.shape, strict=True)):
        position = np.arange(n) + step
        inside = (position >= -0.5) & (position < n - 0.5)
        in_grid &= inside.reshape([-1 if a == axis else 1 for a in range(3)])
    weight = (mask & in_grid).astype(np.float64)
    count = _window_sums(weight)
    f, m = weight * fixed, weight * moved
    sum_f, sum_m = _window_sums(f), _window_sums(m)
    count_safe = np.maximum(count, 1.0)
    s_ff = _window_sums(f * fixed) - sum_f * sum_f / count_safe
    s_mm = _window_sums(m * moved) - sum_m * sum_m / count_safe
    s_fm = _window_sums(f * moved) - sum_f * sum_m / count_safe
    centres = (weight > 0) & (count > 0.5)
    if not centres.any():
        return 0.0
    denominator = s_ff[centres] * s_mm[centres]
    defined = np.abs(denominator) > np.finfo(np.float64).eps
    local = np.ones(denominator.shape)
    local[defined] = s_fm[centres][defined] ** 2 / denominator[defined]
    return float(local.mean())


def _check(name: str, data: np.ndarray, inside: np.ndarray) -> None:
    if not np.all(np.isfinite(data[inside])):
        raise ValueError(f"{name} has non-finite values inside the brain mask")
    values = data[inside]
    if float(values.max()) <= float(values.min()):
        raise ValueError(
            f"{name} is constant inside the brain mask (value {float(values.min()):g}): "
            "empty or blank image, or a field of view that misses the brain"
        )


@dataclass(frozen=True)
class PreparedReference:
    """The reference's part of every comparison, made once per session (smoothing and
    resampling it is a third of a comparison's time)."""

    image: nib.Nifti1Image
    inside: np.ndarray  # bool, the brain mask on the reference grid
    grid: sitk.Image  # the 2 mm working grid
    fixed: np.ndarray  # the reference on it, k, j, i order
    mask: np.ndarray  # bool, the brain mask on it
    voxels: int


def prepare_reference(reference: nib.Nifti1Image, brain_mask: np.ndarray) -> PreparedReference:
    """The reference and its brain mask on the working grid; raises ValueError for a mask that
    is (nearly) empty or off the reference grid, or a reference constant or non-finite in it."""
    shape = reference.shape[:3]
    if np.shape(brain_mask)[:3] != shape:
        raise ValueError(
            f"reference {shape} and brain mask {np.shape(brain_mask)[:3]} must share one grid"
        )
    inside = np.asarray(brain_mask).reshape(shape) > 0
    if not inside.any():
        raise ValueError("the brain mask is empty")
    ref_data = np.asanyarray(reference.dataobj, dtype=np.float32).reshape(shape)
    _check("the reference image", ref_data, inside)
    grid = _working_grid(reference, inside)
    fixed = _on_grid(to_sitk(reference), grid)
    mask_img = to_sitk(nib.Nifti1Image(inside.astype(np.float32), reference.affine))
    mask = sitk.Resample(mask_img, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    mask_data = sitk.GetArrayFromImage(mask) > 0
    voxels = int(mask_data.sum())
    if voxels < MIN_BRAIN_VOXELS:
        raise ValueError(
            f"the brain mask covers {voxels} voxels of {WORKING_SPACING_MM:g} mm, "
            f"fewer than {MIN_BRAIN_VOXELS}: too small to compare anatomy"
        )
    fixed_data = sitk.GetArrayFromImage(fixed).astype(np.float64)
    return PreparedReference(reference, inside, grid, fixed_data, mask_data, voxels)


def score_against(prepared: PreparedReference, moving_on_reference: nib.Nifti1Image) -> dict:
    """:func:`same_subject_score` for a reference made ready by :func:`prepare_reference`."""
    reference = prepared.image
    shape = reference.shape[:3]
    if moving_on_reference.shape[:3] != shape:
        raise ValueError(
            f"reference {shape} and moving {moving_on_reference.shape[:3]} must share one "
            "grid; resample the moving image first"
        )
    if not np.allclose(moving_on_reference.affine, reference.affine, atol=1e-3):
        raise ValueError("moving image and reference have different affines; resample first")
    mov_data = np.asanyarray(moving_on_reference.dataobj, dtype=np.float32).reshape(shape)
    _check("the moving image", mov_data, prepared.inside)
    moving = _on_grid(to_sitk(moving_on_reference), prepared.grid)
    moving_data = sitk.GetArrayFromImage(moving).astype(np.float64)  # k, j, i order
    fixed_data, mask_data = prepared.fixed, prepared.mask
    at_pose = _local_correlation(fixed_data, moving_data, mask_data, (0.0, 0.0, 0.0))
    # a shift along a world (LPS) axis, in voxels of the working grid, k, j, i order
    direction = np.array(prepared.grid.GetDirection()).reshape(3, 3)
    shifts = [
        (direction.T @ (sign * PROBE_SHIFT_MM * np.eye(3)[axis]) / WORKING_SPACING_MM)[::-1]
        for axis in range(3)
        for sign in (-1.0, 1.0)
    ]
    shifted = float(
        np.mean([_local_correlation(fixed_data, moving_data, mask_data, s) for s in shifts])
    )
    # no local agreement at all (noise, or nothing in common): nothing is lost by shifting
    score = 1.0 - shifted / at_pose if at_pose > 1e-6 else 0.0
    return {
        "score": round(float(score), 4),
        "threshold": THRESHOLD,
        "different_subject_suspected": bool(score < THRESHOLD),
        "local_correlation": round(at_pose, 4),
        "local_correlation_shifted": round(shifted, 4),
        "brain_voxels": prepared.voxels,
        "method": METHOD,
    }


def same_subject_score(
    reference: nib.Nifti1Image, moving_on_reference: nib.Nifti1Image, brain_mask: np.ndarray
) -> dict:
    """How likely ``moving_on_reference`` shows the subject of ``reference``.

    ``moving_on_reference`` must already be coregistered and resampled onto the reference grid
    (:func:`csvd_bids.preproc.coregister.resample_with`); ``brain_mask`` is a boolean array on
    that grid. Returns ``score`` (about 0.5-0.7 for the same subject, below 0.25 for another),
    ``threshold``, ``different_subject_suspected`` (``score < threshold``), and diagnostics:
    ``local_correlation`` (mean squared local correlation at the registered pose),
    ``local_correlation_shifted`` (the same, mean of the six 4 mm shifts), ``brain_voxels``
    (of the 2 mm grid) and ``method``. Raises ValueError for mismatched grids, a mask that is
    (nearly) empty, or an image that is constant or non-finite inside the mask. Several images
    against one reference: :func:`prepare_reference` once, then :func:`score_against`.
    """
    return score_against(prepare_reference(reference, brain_mask), moving_on_reference)
