"""Rigid coregistration of a modality to the session's reference image.

A rigid (6 degrees of freedom) Mattes-MI registration on three levels is optimised from two
starts: the headers' scanner coordinates (identity), which keeps images that are already
aligned, and the image moments (centre of mass and principal axes), which recovers large
misalignments. The end with the better mutual information is kept (the header's on a tie); if
it is worse than the headers' alignment, the header alignment is kept. Each start runs on all
three levels (refining only the better coarse end on the finest took 0.77 of the time, but
ended 3 mm away at a worse metric on a real 3x3x6 mm M0 scan), except a later start whose
end on the two coarse levels lies within one registration voxel of an end already reached:
its full end would be that end, which the earlier start wins on a tie, so it is not
optimised further (with aligned headers, the moments start; it halves the time). The moving
image is then resampled once, from its own grid straight onto the reference grid (cubic
B-spline), so no interpolation is ever chained.

Runs repeat exactly with one thread (``--omp-nthreads 1``, the default on two cores): the
metric is sampled with a fixed seed. With more threads ITK sums the metric in a varying order,
so results may differ in the last digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from csvd_bids.preproc.images import new_like, sitk_to_array, to_sitk
from csvd_bids.preproc.registration import (
    SAMPLING_SEED,
    downsample,
    mattes_registration,
    set_random_sampling,
)

REGISTRATION_SPACING_MM = 2.0
METRIC_TIE = 1e-3  # mutual information differences below this are noise, not a better fit
# A start optimised on the two coarse levels that lands within one voxel of the registration
# grid (2 mm, or the reference's own if coarser) of an end already reached is in that end's
# basin: such coarse ends lay 0.1-1.9 mm from the full end (corners of the field of view) on
# the demo, the real scans and misaligned images, while wrong optima lay 5-90 mm off.
COARSE_LEVELS = 2
METHOD = (
    "rigid (6 dof), Mattes mutual information, optimised from the header and from the moments "
    "alignment (the better kept; a start whose coarse end is an end already reached is not "
    "refined), 3 levels, SimpleITK"
)


@dataclass(frozen=True)
class Coregistration:
    transform: sitk.Euler3DTransform  # reference points -> moving points (ITK resampling)
    initialisation: str  # "header", "moments" or the name of another start
    metric_before: float  # Mattes MI at the header alignment (lower is better)
    metric_after: float
    optimised: tuple[str, ...]  # the starts optimised in full (the others ended nowhere new)

    def as_dict(self) -> dict:
        return {
            "Method": METHOD,
            "Initialisation": self.initialisation,
            "StartsOptimised": list(self.optimised),
            "MutualInformationBefore": round(self.metric_before, 5),
            "MutualInformationAfter": round(self.metric_after, 5),
        }


def mattes_metric(
    fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, seed: int = SAMPLING_SEED
) -> float:
    """Mattes MI of ``moving`` through ``transform`` on ``fixed`` (lower is better), as every
    coregistration here measures it."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    set_random_sampling(method, 0.2, seed)
    method.SetInterpolator(sitk.sitkLinear)
    # The value needs no image gradients (only the optimiser's derivative does): not computing
    # them halves the call and gives the same value to the bit.
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetInitialTransform(transform, inPlace=False)
    return float(method.MetricEvaluate(fixed, moving))


def _optimise(
    fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, seed: int, levels: int = 3
) -> None:
    """Mattes-MI gradient descent of ``transform`` (in place) over the (first) levels."""
    method = mattes_registration(0.1, seed, levels)
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed, moving)


def _copy(transform: sitk.Euler3DTransform) -> sitk.Euler3DTransform:
    copy = sitk.Euler3DTransform()
    copy.SetParameters(transform.GetParameters())
    copy.SetFixedParameters(transform.GetFixedParameters())
    return copy


def _largest_shift_mm(a: sitk.Transform, b: sitk.Transform, image: sitk.Image) -> float:
    """How far apart two rigid transforms send the points of ``image``'s field of view, at
    most (the distance is convex in the point, so a corner has the largest)."""
    last = [size - 1 for size in image.GetSize()]
    corners = [
        image.TransformIndexToPhysicalPoint([i * last[0], j * last[1], k * last[2]])
        for i in (0, 1)
        for j in (0, 1)
        for k in (0, 1)
    ]
    return max(
        float(np.linalg.norm(np.subtract(a.TransformPoint(p), b.TransformPoint(p))))
        for p in corners
    )


def _lands_on_known_end(
    fixed: sitk.Image,
    moving: sitk.Image,
    start: sitk.Euler3DTransform,
    ends: dict[str, tuple[sitk.Transform, float]],
    seed: int,
) -> bool:
    """Whether ``start``, optimised on the coarse levels only, ends within one voxel of
    ``fixed`` (its largest spacing) of an end already reached. Its finest level would then end
    there too, where the earlier start wins the tie, so optimising it in full would not change
    the result: on the demo, the real scans and 12 misaligned demo images, every moments start
    optimised in full ended within 0.02 mm of the header's end."""
    coarse = _copy(start)
    _optimise(fixed, moving, coarse, seed, levels=COARSE_LEVELS)
    voxel_mm = max(fixed.GetSpacing())
    return any(_largest_shift_mm(coarse, end, fixed) < voxel_mm for end, _ in ends.values())


def moments_start(fixed: sitk.Image, moving: sitk.Image) -> sitk.Euler3DTransform:
    """The start that aligns the images' centres of mass and principal axes."""
    return sitk.Euler3DTransform(
        sitk.CenteredTransformInitializer(
            fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
        )
    )


def _best(ends: dict[str, tuple[sitk.Transform, float]]) -> str:
    """The start whose end has the lowest metric; ends within METRIC_TIE of it are equally
    good and the first start (the header) wins the tie. With several threads ITK adds the
    metric in a varying order (differences of 1e-5), and a strict minimum then flipped
    between two ends 1 mm apart from run to run."""
    best = min(metric for _, metric in ends.values())
    return next(n for n, (_, metric) in ends.items() if metric <= best + METRIC_TIE)


def coregister(
    moving: nib.Nifti1Image,
    reference: nib.Nifti1Image,
    seed: int = SAMPLING_SEED,
    more_starts: dict[str, sitk.Transform] | None = None,
) -> Coregistration:
    """Rigid registration (reference points -> moving points) by Mattes MI, optimised from
    the header, the moments and ``more_starts`` (e.g. another image's result), best end kept."""
    return coregister_downsampled(
        downsample(to_sitk(moving), REGISTRATION_SPACING_MM),
        downsample(to_sitk(reference), REGISTRATION_SPACING_MM),
        seed,
        more_starts,
    )


def coregister_downsampled(
    mov: sitk.Image,
    fixed: sitk.Image,
    seed: int = SAMPLING_SEED,
    more_starts: dict[str, sitk.Transform] | None = None,
) -> Coregistration:
    """:func:`coregister` of images already at ``REGISTRATION_SPACING_MM`` (``downsample``),
    for a caller that registers several images to one reference."""
    header = sitk.Euler3DTransform()
    header.SetCenter(
        fixed.TransformContinuousIndexToPhysicalPoint(
            [(size - 1) / 2.0 for size in fixed.GetSize()]
        )
    )
    before = mattes_metric(fixed, mov, header, seed)
    # Optimised from both starts, the better end kept: from a single start, large
    # misalignments (20 degrees, 20 mm) of thick-slice images ended in a wrong optimum 5 mm
    # off in some runs. A later start is optimised in full only where its coarse end is new
    # (_lands_on_known_end): with aligned headers the moments start ends where the header's did.
    ends = {}
    starts = {"header": header, "moments": moments_start(fixed, mov), **(more_starts or {})}
    for name, start in starts.items():
        if ends and _lands_on_known_end(fixed, mov, start, ends, seed):
            continue
        transform = _copy(start)
        _optimise(fixed, mov, transform, seed)
        ends[name] = (transform, mattes_metric(fixed, mov, transform, seed))
    name = _best(ends)
    transform, after = ends[name]
    optimised = tuple(ends)
    if after > before:  # never leave an image worse aligned than its header put it
        return Coregistration(header, "header", before, before, optimised)
    return Coregistration(transform, name, before, after, optimised)


def resample_with(
    moving: nib.Nifti1Image, reference: nib.Nifti1Image, transform: sitk.Transform
) -> nib.Nifti1Image:
    """``moving`` on the reference grid through ``transform``, in one cubic interpolation."""
    out = sitk.Resample(
        to_sitk(moving), to_sitk(reference), transform, sitk.sitkBSpline, 0.0, sitk.sitkFloat32
    )
    data = np.clip(sitk_to_array(out), 0.0, None)  # B-splines overshoot; magnitudes are >= 0
    return new_like(data.astype(np.float32), reference)


def resample_linear(
    moving: nib.Nifti1Image, reference: nib.Nifti1Image, transform: sitk.Transform
) -> nib.Nifti1Image:
    """``moving`` on the reference grid through ``transform``, linearly (no overshoot)."""
    out = sitk.Resample(
        to_sitk(moving), to_sitk(reference), transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )
    return new_like(sitk_to_array(out).astype(np.float32), reference)


def coverage_on(
    mask: np.ndarray, moving: nib.Nifti1Image, reference: nib.Nifti1Image, transform: sitk.Transform
) -> nib.Nifti1Image:
    """uint8 on the reference grid: where a map made on ``moving``'s grid inside ``mask`` is
    measured (at least half of the linear interpolation from inside it, and inside the field
    of view), so that means over a region leave out what the acquisition did not cover."""
    fraction = resample_linear(new_like(mask.astype(np.float32), moving), reference, transform)
    return new_like((np.asanyarray(fraction.dataobj) >= 0.5).astype(np.uint8), reference)
