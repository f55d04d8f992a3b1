"""Scale-normalised Laplacian-of-Gaussian blob response in millimetre units, shared by the
detectors of round markers (microbleeds, lacunes)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def log_blob_response(image: np.ndarray, zooms, sigmas_mm) -> tuple[np.ndarray, np.ndarray]:
    """Maximum over scales of -sigma^2 LoG(image) (bright blobs > 0), and the scale's index.

    Derivatives are taken per axis and divided by that axis' voxel size squared, so the
    response means the same on every grid (scipy's ``gaussian_laplace`` works in voxel units:
    on a 3 mm grid it would be 9 times larger). Sigma is kept at least half a voxel so that
    coarse grids still smooth a little; the normalisation uses that effective sigma.
    """
    zooms = np.asarray(zooms, dtype=float)
    best = np.full(image.shape, -np.inf, dtype=np.float32)
    scale = np.zeros(image.shape, dtype=np.int8)
    for k, sigma in enumerate(sigmas_mm):
        sigma_vox = np.maximum(sigma / zooms, 0.5)
        laplacian = np.zeros(image.shape, dtype=np.float32)
        for axis in range(3):
            order = [0, 0, 0]
            order[axis] = 2
            laplacian += ndimage.gaussian_filter(image, sigma_vox, order=order) / zooms[axis] ** 2
        response = -(float(np.mean(sigma_vox * zooms)) ** 2) * laplacian
        better = response > best
        best[better] = response[better]
        scale[better] = k
    return best, scale
