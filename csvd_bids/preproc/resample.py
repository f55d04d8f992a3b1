"""Bring an image onto the reference grid.

In this version the modalities of a session are aligned through their headers (the scanner's
world coordinates): a moving image is resampled once, straight onto the reference grid, so no
interpolation is ever chained. Image-based rigid registration replaces the identity transform
here when it arrives.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from csvd_bids.preproc.images import new_like


def resample_to_reference(
    moving: nib.Nifti1Image, reference: nib.Nifti1Image, order: int = 3
) -> nib.Nifti1Image:
    """Resample ``moving`` onto the grid of ``reference`` (cubic B-spline by default)."""
    if moving.shape[:3] == reference.shape[:3] and np.allclose(
        moving.affine, reference.affine, atol=1e-4
    ):
        return new_like(np.asanyarray(moving.dataobj, dtype=np.float32), reference)
    out = resample_from_to(
        moving, (reference.shape[:3], reference.affine), order=order, mode="constant", cval=0.0
    )
    data = np.asanyarray(out.dataobj, dtype=np.float32)
    # Cubic splines overshoot at edges; MR magnitudes are never negative.
    np.clip(data, 0.0, None, out=data)
    return new_like(data, reference)
