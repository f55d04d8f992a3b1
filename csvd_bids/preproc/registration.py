"""Shared pieces of the SimpleITK registrations (template to subject, modality to reference).

Mattes mutual information (works across contrasts), random sampling with a fixed seed (so runs
repeat), regular-step gradient descent (plain gradient descent stopped early in trials here),
three resolution levels (shrink 4, 2, 1; smoothing 3, 2, 1 mm), on images first brought to
2 mm to keep each registration to seconds.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

# Any value but 0: SimpleITK reads a seed of 0 (``sitk.sitkWallClock``) as "seed from the
# clock", which made every registration differ from run to run (the DWI at 3 mm by up to 2 mm).
SAMPLING_SEED = 1


def set_random_sampling(
    method: sitk.ImageRegistrationMethod, percentage: float, seed: int = SAMPLING_SEED
) -> None:
    """Mattes MI sampled at random with a fixed seed, so that runs repeat exactly."""
    if seed == sitk.sitkWallClock:
        raise ValueError("seed 0 means 'from the wall clock' to SimpleITK: use another")
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(percentage, seed)


SHRINK_FACTORS = (4, 2, 1)
SMOOTHING_MM = (3.0, 2.0, 1.0)


def mattes_registration(
    metric_sampling: float, seed: int = SAMPLING_SEED, levels: int = len(SHRINK_FACTORS)
) -> sitk.ImageRegistrationMethod:
    """The registration every stage here runs; ``levels`` < 3 keeps only the coarsest ones."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    set_random_sampling(reg, metric_sampling, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-4, numberOfIterations=200, gradientMagnitudeTolerance=1e-6
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS[:levels]))
    reg.SetSmoothingSigmasPerLevel(list(SMOOTHING_MM[:levels]))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def downsample(img: sitk.Image, spacing: float) -> sitk.Image:
    """Resample to ``spacing`` mm (or keep, if coarser) to make registration cheap."""
    old = np.array(img.GetSpacing())
    new = np.maximum(old, spacing)
    size = [int(round(s)) for s in np.array(img.GetSize()) * old / new]
    smoothed = sitk.SmoothingRecursiveGaussian(img, float(spacing) / 2.0)
    return sitk.Resample(
        smoothed,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        img.GetOrigin(),
        tuple(new.tolist()),
        img.GetDirection(),
        0.0,
        sitk.sitkFloat32,
    )
