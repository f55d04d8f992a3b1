"""DWI for the recent-small-subcortical-infarct (RSSI) detector: b0, trace and ADC on the
anatomical reference grid.

1. Volumes are split by b-value (FSL ``.bval``, s/mm2): the b0 image is the mean of the volumes
   with b <= ``B0_MAX`` (50); the diffusion-weighted "trace" image is the geometric mean of the
   volumes of the highest shell (b within ``SHELL_TOLERANCE`` = 10 % of the largest b), the
   standard isotropic DWI. Its b-value (the mean of that shell's b-values) is recorded. The
   highest shell is used whatever its b-value; the report states it, so a multi-shell series
   whose top shell is not b ~ 1000 can be noticed downstream.
2. ADC = ln(S0 / S_b) / b, in units of 1e-6 mm2/s (``ADC_UNITS``: WM ~ 700-800, GM ~ 850,
   CSF ~ 3000, the convention of scanner ADC maps), clipped to [0, ``ADC_MAX``] and 0 in the
   background. Because the trace is a geometric mean, this equals the mean over directions of
   the directional ADCs (the mean diffusivity for a balanced direction set).
3. The bias field is estimated (N4) on the b0 and divided out of both b0 and trace: the
   detector compares DWI intensities across the brain, and dividing both by one field leaves
   their ratio, hence the ADC, unchanged.
4. The b0 (T2-weighted contrast) is rigidly registered to the reference with
   :func:`csvd_bids.preproc.coregister.coregister`, and so is the trace, as a second start: the
   transform kept is the one with the better sum of the two images' Mattes mutual information
   with the reference (see :func:`register_dwi`). b0, trace and ADC share the DWI grid, so that
   one transform brings each of them, once and from its own grid, onto the reference grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from csvd_bids.errors import InputImageError
from csvd_bids.preproc.bias import n4_correct
from csvd_bids.preproc.coregister import (
    REGISTRATION_SPACING_MM,
    Coregistration,
    coregister_downsampled,
    mattes_metric,
    resample_linear,
    resample_with,
)
from csvd_bids.preproc.images import check_input_image, finite_or_zero, new_like, to_sitk
from csvd_bids.preproc.registration import downsample

B0_MAX = 50.0  # s/mm2: volumes at or below this are b0 (scanners write b=5 or 10 for "b0")
SHELL_TOLERANCE = 0.10  # the highest shell: b within 10 % of the largest b-value
ADC_UNITS = "1e-6 mm2/s"
ADC_SCALE = 1e6  # mm2/s -> ADC_UNITS
ADC_MAX = 5000.0  # in ADC_UNITS; free water at 37 C is ~3000-3200
# Background: b0 below this fraction of its 99th percentile (noise floor and air; brain tissue
# on a b0 is several times brighter), or a trace at (or below) zero, gets ADC 0.
BACKGROUND_FRACTION = 0.05


class DWIError(InputImageError, ValueError):
    """A DWI series or its b-values cannot give a b0, a trace and an ADC (names the file).

    A ValueError for callers, and an InputImageError (exit code 65) for the command line.
    """


@dataclass(frozen=True)
class DWISplit:
    """The DWI series reduced to its native-grid b0 and trace (float32, RAS)."""

    b0: nib.Nifti1Image
    trace: nib.Nifti1Image
    b_value: float  # of the trace, s/mm2
    n_volumes: int
    n_b0: int
    n_trace: int  # volumes (directions) of the shell averaged into the trace


def read_bvals(bval_path: str | Path, n_volumes: int | None = None) -> np.ndarray:
    """The b-values of an FSL ``.bval`` file (one row, or one column), checked against the
    number of volumes when given."""
    try:
        bvals = np.loadtxt(bval_path, dtype=float, ndmin=1).ravel()
    except (OSError, ValueError) as exc:
        raise DWIError(str(bval_path), f"not a readable table of b-values ({exc})") from exc
    if not np.all(np.isfinite(bvals)) or np.any(bvals < 0):
        raise DWIError(str(bval_path), "b-values must be finite and >= 0")
    if n_volumes is not None and bvals.size != n_volumes:
        raise DWIError(
            str(bval_path),
            f"{bvals.size} b-values for a DWI series of {n_volumes} volumes (expected one each)",
        )
    return bvals


def shell_indices(bvals: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(b0 volume indices, highest-shell indices, the shell's mean b-value)."""
    listed = " ".join(f"{b:g}" for b in bvals)
    b0 = np.flatnonzero(bvals <= B0_MAX)
    if b0.size == 0:
        raise DWIError(source, f"no b0 volume (b <= {B0_MAX:g} s/mm2) among b-values [{listed}]")
    weighted = bvals > B0_MAX
    if not weighted.any():
        raise DWIError(
            source,
            f"no diffusion-weighted volume (b > {B0_MAX:g} s/mm2) among b-values [{listed}]",
        )
    top = float(bvals.max())
    shell = np.flatnonzero(weighted & (bvals >= top * (1.0 - SHELL_TOLERANCE)))
    return b0, shell, float(bvals[shell].mean())


def load_4d(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Finite float32 data of a 4D series reoriented to RAS, and its affine."""
    check_input_image(path, expect_4d=True)
    img = nib.as_closest_canonical(nib.load(path))
    try:
        data = np.asanyarray(img.dataobj).astype(np.float32, copy=False)
    except Exception as exc:
        raise InputImageError(str(path), f"cannot read the image data ({exc})") from exc
    if not np.any(np.isfinite(data)):
        raise InputImageError(str(path), "no finite voxel values")
    return finite_or_zero(data), img.affine


def geometric_mean(volumes: np.ndarray) -> np.ndarray:
    """Voxel-wise geometric mean over the last axis; volumes are floored at a tiny fraction of
    the maximum, so a zero in one direction gives a (near) zero mean instead of log(0)."""
    floor = max(float(volumes.max()), 1.0) * 1e-6
    return np.exp(np.log(np.maximum(volumes, floor)).mean(axis=-1)).astype(np.float32)


def split_dwi(dwi_path: str | Path, bval_path: str | Path) -> DWISplit:
    """b0 (mean of b <= 50 volumes) and trace (geometric mean of the highest shell) of a DWI
    series, on its own grid reoriented to RAS."""
    path = Path(dwi_path)
    data, affine = load_4d(path)
    bvals = read_bvals(bval_path, data.shape[3])
    b0_idx, shell_idx, b_value = shell_indices(bvals, f"{path} (b-values from {bval_path})")
    b0 = data[..., b0_idx].mean(axis=-1, dtype=np.float32)
    trace = geometric_mean(data[..., shell_idx])
    if float(b0.max()) <= float(b0.min()):
        raise InputImageError(str(path), "the b0 volumes are constant (every voxel the same)")
    reference = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), affine)
    return DWISplit(
        new_like(b0, reference),
        new_like(trace, reference),
        b_value,
        int(data.shape[3]),
        int(b0_idx.size),
        int(shell_idx.size),
    )


def background_mask(b0: np.ndarray, trace: np.ndarray) -> np.ndarray:
    """Voxels without a usable signal: b0 near the noise floor, or a trace at zero."""
    positive = b0[b0 > 0]
    level = float(np.percentile(positive, 99)) if positive.size else 0.0
    return (b0 <= BACKGROUND_FRACTION * level) | (b0 <= 0) | (trace <= 0)


def compute_adc(b0: np.ndarray, trace: np.ndarray, b_value: float) -> np.ndarray:
    """ADC = ln(S0 / S_b) / b in ``ADC_UNITS`` (1e-6 mm2/s), clipped to [0, ADC_MAX], 0 in
    the background (see :func:`background_mask`)."""
    if b_value <= 0:
        raise ValueError(f"b-value must be positive, got {b_value}")
    background = background_mask(b0, trace)
    with np.errstate(divide="ignore", invalid="ignore"):
        adc = np.log(b0 / trace) / b_value * ADC_SCALE
    adc = np.where(background | ~np.isfinite(adc), 0.0, adc)
    return np.clip(adc, 0.0, ADC_MAX).astype(np.float32)


# ADC unit scales tried, as (low, high) NAWM median in that unit -> factor to 1e-6 mm2/s
ADC_UNIT_SCALES = (
    ((200.0, 2000.0), 1.0, "1e-6 mm2/s"),
    ((2e-4, 2e-3), 1e6, "mm2/s"),
    ((0.2, 2.0), 1e3, "1e-3 mm2/s"),
)


def adc_scale(nawm_median: float) -> tuple[float | None, str]:
    """Factor that brings an ADC map to 1e-6 mm2/s from its NAWM median, and its unit name;
    ``(None, reason)`` when the median fits no known unit."""
    if not np.isfinite(nawm_median) or nawm_median <= 0:
        return None, f"NAWM median ADC {nawm_median:g} is not a positive number"
    for (low, high), factor, unit in ADC_UNIT_SCALES:
        if low <= nawm_median <= high:
            return factor, unit
    return None, f"NAWM median ADC {nawm_median:g} fits no known unit"


def _bias_corrected(b0: nib.Nifti1Image, trace: nib.Nifti1Image):
    """b0 and trace divided by the one N4 field estimated on the b0."""
    b0_data = np.asanyarray(b0.dataobj, dtype=np.float32)
    corrected = np.asanyarray(n4_correct(b0).dataobj, dtype=np.float32)
    # n4_correct returns b0 / field: recover the field where b0 carries it (it is smooth and
    # positive; the rare exact-zero voxels keep the trace as it is).
    with np.errstate(divide="ignore", invalid="ignore"):
        field = np.where((b0_data > 0) & (corrected > 0), b0_data / corrected, 1.0)
    trace_data = np.asanyarray(trace.dataobj, dtype=np.float32) / field
    return new_like(corrected, b0), new_like(trace_data.astype(np.float32), trace)


def register_dwi(
    b0: nib.Nifti1Image, trace: nib.Nifti1Image, reference: nib.Nifti1Image
) -> tuple[Coregistration, dict]:
    """Rigid transform (reference points -> DWI points) of the DWI grid to the reference.

    The b0 is registered, and the trace too (also from the b0's end): each run starts from
    the header or the moments, and on the synthetic heads with 20 degree / 20 mm
    misalignments at 3 mm the b0 alone stopped in a wrong optimum 3 times in 10 (mean TRE
    3-8 mm), the six-direction trace never (0.2-0.5 mm).
    Both images move with the one transform, so it is chosen by the sum of their mutual
    informations with the reference; in every such failure the trace's transform also fitted
    the b0 itself better. Returns the chosen registration and its report entry.
    """
    fixed = downsample(to_sitk(reference), REGISTRATION_SPACING_MM)
    moving = {
        name: downsample(to_sitk(img), REGISTRATION_SPACING_MM)
        for name, img in (("b0", b0), ("trace", trace))
    }
    first = coregister_downsampled(moving["b0"], fixed)
    # The trace also starts from the b0's end: with 31 anisotropic directions (seed 3 of the
    # DWI test) both images alone stopped 2-4 mm off, and the trace refined from the b0 did not.
    candidates = {
        "b0": first,
        "trace": coregister_downsampled(
            moving["trace"], fixed, more_starts={"b0": first.transform}
        ),
    }
    # Each image's own term is its registration's final metric (the same measure on the same
    # images); only the other image's term is measured here.
    joint = {
        name: result.metric_after
        + sum(
            mattes_metric(fixed, image, result.transform)
            for other, image in moving.items()
            if other != name
        )
        for name, result in candidates.items()
    }
    chosen = min(joint, key=lambda name: (joint[name], name != "b0"))  # ties: the b0
    entry = {
        **candidates[chosen].as_dict(),
        "RegisteredImage": chosen,
        "JointMutualInformation": {name: round(value, 5) for name, value in joint.items()},
    }
    return candidates[chosen], entry


@dataclass(frozen=True)
class PreparedDWI:
    images: dict[str, nib.Nifti1Image]  # "b0", "trace", "adc" on the reference grid
    transform: sitk.Transform  # reference points -> DWI points (ITK, LPS)
    report: dict


def prepare(dwi_path: str | Path, bval_path: str | Path, reference: nib.Nifti1Image) -> PreparedDWI:
    """Everything :func:`prepare_dwi` does, keeping the transform object for the interface."""
    split = split_dwi(dwi_path, bval_path)
    b0_data = np.asanyarray(split.b0.dataobj, dtype=np.float32)
    trace_data = np.asanyarray(split.trace.dataobj, dtype=np.float32)
    # ADC is computed on the acquired grid and then resampled with linear interpolation, rather
    # than computed from resampled b0 and trace: the log-ratio model applies to measured
    # voxels, the background is decided on measured signals (a B-spline-resampled trace rings
    # to ~0 or below next to air and the skull, which would turn into spurious maximal ADC), and
    # linear interpolation of a map bounded to [0, ADC_MAX] cannot overshoot out of that range
    # (a B-spline could, and negative or >5000 ADCs would have to be clipped again).
    adc = new_like(compute_adc(b0_data, trace_data, split.b_value), split.b0)
    b0, trace = _bias_corrected(split.b0, split.trace)
    registration, registration_report = register_dwi(b0, trace, reference)
    images = {
        "b0": resample_with(b0, reference, registration.transform),
        "trace": resample_with(trace, reference, registration.transform),
        "adc": resample_linear(adc, reference, registration.transform),
    }
    report = {
        "Registration": registration_report,
        "BValue": round(split.b_value, 1),
        "NumberOfVolumes": split.n_volumes,
        "NumberOfB0Volumes": split.n_b0,
        "NumberOfTraceVolumes": split.n_trace,
        "B0Definition": f"mean of the volumes with b <= {B0_MAX:g} s/mm2",
        "TraceDefinition": (
            f"geometric mean of the volumes with b within {SHELL_TOLERANCE:.0%} of the largest b"
        ),
        "ADCUnits": ADC_UNITS,
        "ADCDefinition": (
            f"ln(b0 / trace) / b, clipped to [0, {ADC_MAX:g}], 0 in the background; computed on "
            "the DWI grid, resampled linearly"
        ),
        "BiasCorrection": "N4 field estimated on the b0, divided out of b0 and trace",
        "Interpolation": {"b0": "bspline", "trace": "bspline", "adc": "linear"},
    }
    return PreparedDWI(images, registration.transform, report)


def prepare_dwi(
    dwi_path: str | Path, bval_path: str | Path, reference_img: nib.Nifti1Image
) -> tuple[dict[str, nib.Nifti1Image], dict]:
    """b0, trace and ADC (``ADC_UNITS``) of a DWI series on the reference grid, and a report
    (registration metrics, b-value, numbers of volumes)."""
    prepared = prepare(dwi_path, bval_path, reference_img)
    return prepared.images, prepared.report
