"""Fractional anisotropy (FA) and mean diffusivity (MD) of a DWI series by a tensor fit (dipy).

- The tensor is fitted with dipy's ``TensorModel`` (weighted least squares) to the b0 volumes
  (b <= ``B0_MAX``) and the diffusion-weighted volumes with b <= ``DTI_MAX_B`` (1500 s/mm2:
  above it the signal is no longer mono-exponential and DTI underestimates MD), on the DWI's
  own grid, in the voxels with a usable signal (:func:`csvd_bids.preproc.dwi.background_mask`)
  and, when the reference's brain mask is given, within ``BRAIN_MARGIN_VOXELS`` of it: the
  scalp, neck and eyes were a third of the fitted voxels and nothing reads FA there.
- At least ``MIN_DIRECTIONS`` (6) non-collinear gradient directions are needed for the six
  tensor elements; a series with fewer (a trace-only clinical DWI with 3) has no FA.
- FA and MD are rotation invariants, so the .bvec's frame (voxel axes, FSL convention) needs no
  reorientation for them; the maps are brought onto the reference grid with the DWI's rigid
  transform from :func:`csvd_bids.preproc.dwi.prepare`, linearly (FA is bounded to [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from csvd_bids.preproc.coregister import coverage_on, resample_linear
from csvd_bids.preproc.dwi import (
    ADC_SCALE,
    ADC_UNITS,
    B0_MAX,
    DWIError,
    background_mask,
    geometric_mean,
    load_4d,
    read_bvals,
)
from csvd_bids.preproc.images import new_like

DTI_MAX_B = 1500.0
BRAIN_MARGIN_VOXELS = 2  # of the DWI grid: the linear resampling at the brain's edge keeps its data
MIN_DIRECTIONS = 6
COLLINEAR_COS = 0.995  # directions closer than ~6 degrees (or antipodal) count as one


def read_bvecs(bvec_path: str | Path, n_volumes: int) -> np.ndarray:
    """(n_volumes, 3) gradient directions of an FSL ``.bvec`` (3 rows, or 3 columns)."""
    try:
        vecs = np.loadtxt(bvec_path, dtype=float, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DWIError(str(bvec_path), f"not a readable table of gradient vectors ({exc})") from exc
    if vecs.shape == (3, n_volumes):
        vecs = vecs.T
    if vecs.shape != (n_volumes, 3) or not np.all(np.isfinite(vecs)):
        raise DWIError(str(bvec_path), f"expected 3 x {n_volumes} finite gradient components")
    return vecs


def distinct_directions(vecs: np.ndarray) -> int:
    """How many gradient directions are not collinear with another (antipodes are one)."""
    norms = np.linalg.norm(vecs, axis=1)
    unit = vecs[norms > 0] / norms[norms > 0, None]
    kept: list[np.ndarray] = []
    for v in unit:
        if all(abs(float(v @ k)) < COLLINEAR_COS for k in kept):
            kept.append(v)
    return len(kept)


def dti_volumes(bvals: np.ndarray, bvecs: np.ndarray, source: str) -> np.ndarray:
    """Indices of the volumes fitted: b0s and weighted volumes up to ``DTI_MAX_B``; raises
    DWIError when they span fewer than ``MIN_DIRECTIONS`` directions."""
    b0 = bvals <= B0_MAX
    weighted = ~b0 & (bvals <= DTI_MAX_B)
    if not b0.any():
        raise DWIError(source, f"no b0 volume (b <= {B0_MAX:g} s/mm2): no tensor fit")
    n = distinct_directions(bvecs[weighted])
    if n < MIN_DIRECTIONS:
        raise DWIError(
            source,
            f"{n} distinct gradient direction(s) with {B0_MAX:g} < b <= {DTI_MAX_B:g} s/mm2; a "
            f"tensor fit (FA) needs at least {MIN_DIRECTIONS}",
        )
    return np.flatnonzero(b0 | weighted)


@dataclass(frozen=True)
class TensorMaps:
    fa: nib.Nifti1Image  # DWI grid, RAS
    md: nib.Nifti1Image  # DWI grid, ADC_UNITS
    signal: np.ndarray  # bool, DWI grid: the voxels fitted
    report: dict


def _brain_on_dwi_grid(
    brain_mask: nib.Nifti1Image, dwi: nib.Nifti1Image, transform: sitk.Transform
) -> np.ndarray:
    """The reference's brain mask on the DWI grid (``transform``: reference -> DWI points),
    grown by ``BRAIN_MARGIN_VOXELS``."""
    mask = new_like((np.asanyarray(brain_mask.dataobj) > 0).astype(np.float32), brain_mask)
    on_dwi = np.asanyarray(resample_linear(mask, dwi, transform.GetInverse()).dataobj) > 0
    return ndimage.binary_dilation(on_dwi, iterations=BRAIN_MARGIN_VOXELS)


def fit_tensor(
    dwi_path: str | Path,
    bval_path: str | Path,
    bvec_path: str | Path,
    near_brain: tuple[nib.Nifti1Image, sitk.Transform] | None = None,
) -> TensorMaps:
    """FA and MD on the DWI grid (module docstring); with ``near_brain`` (the reference's
    brain mask, the transform reference -> DWI points) only near the brain, else wherever
    there is signal."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    data, affine = load_4d(Path(dwi_path))
    bvals = read_bvals(bval_path, data.shape[3])
    bvecs = read_bvecs(bvec_path, data.shape[3])
    used = dti_volumes(bvals, bvecs, f"{dwi_path} (gradients from {bvec_path})")
    bvals, bvecs, data = bvals[used], bvecs[used], data[..., used]
    is_b0 = bvals <= B0_MAX
    bvecs = np.where(is_b0[:, None], 0.0, bvecs)  # b0 rows: the fit ignores their direction
    norms = np.linalg.norm(bvecs, axis=1, keepdims=True)
    bvecs = np.divide(bvecs, norms, out=np.zeros_like(bvecs), where=norms > 0)
    b0 = data[..., is_b0].mean(axis=-1)
    signal = ~background_mask(b0, geometric_mean(data[..., ~is_b0]))
    if near_brain is not None:
        dwi_grid = nib.Nifti1Image(np.zeros(b0.shape, np.float32), affine)
        signal &= _brain_on_dwi_grid(near_brain[0], dwi_grid, near_brain[1])
    table = gradient_table(bvals, bvecs=bvecs, b0_threshold=B0_MAX)
    fit = TensorModel(table, fit_method="WLS").fit(data, mask=signal)
    fa = np.where(signal, np.clip(np.nan_to_num(fit.fa), 0.0, 1.0), 0.0)
    md = np.where(signal, np.clip(np.nan_to_num(fit.md), 0.0, None) * ADC_SCALE, 0.0)
    reference = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), affine)
    report = {
        "Model": "diffusion tensor, weighted least squares (dipy TensorModel)",
        "VolumesFitted": int(used.size),
        "DistinctDirections": distinct_directions(bvecs[~is_b0]),
        "BValues": sorted({round(float(b)) for b in bvals}),
        "MDUnits": ADC_UNITS,
    }
    return TensorMaps(
        new_like(fa.astype(np.float32), reference),
        new_like(md.astype(np.float32), reference),
        signal,
        report,
    )


def tensor_maps_on_reference(
    maps: TensorMaps, reference: nib.Nifti1Image, transform: sitk.Transform
) -> dict[str, nib.Nifti1Image]:
    """FA (clipped to [0, 1]), MD and the fitted voxels' coverage on the reference grid
    through the DWI's transform."""
    fa = resample_linear(maps.fa, reference, transform)
    fa = new_like(np.clip(np.asanyarray(fa.dataobj), 0.0, 1.0).astype(np.float32), reference)
    return {
        "fa": fa,
        "md": resample_linear(maps.md, reference, transform),
        "coverage": coverage_on(maps.signal, maps.fa, reference, transform),
    }
