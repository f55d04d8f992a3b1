"""Random smooth fields: the building block of deformations, textures and bias fields."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], voxel_mm: float, scale_mm: float
) -> np.ndarray:
    """Zero-mean, unit-variance noise smooth over about ``scale_mm`` (float32).

    Drawn on a coarse lattice and upsampled linearly: far cheaper than filtering a 1 mm
    volume, and the result does not depend on the working resolution beyond sampling.
    """
    coarse = tuple(max(2, int(np.ceil(n * voxel_mm / scale_mm)) + 2) for n in shape)
    field = ndi.gaussian_filter(rng.standard_normal(coarse), 0.7)
    field = ndi.zoom(
        field, [n / c for n, c in zip(shape, coarse, strict=True)], order=1, grid_mode=False
    )
    field = field[tuple(slice(0, n) for n in shape)].astype(np.float32)
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return field


def bias_field(rng: np.random.Generator, shape: tuple[int, ...], strength: float) -> np.ndarray:
    """Smooth multiplicative receive-coil bias: exp of a random quadratic polynomial."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    terms = (x, y, z, x * y, x * z, y * z, x * x - 0.33, y * y - 0.33, z * z - 0.33)
    coefs = rng.normal(0.0, strength, len(terms)) * np.array([1, 1, 1] + [0.5] * 6)
    log_field = sum(c * t for c, t in zip(coefs, terms, strict=True))
    return np.exp(log_field).astype(np.float32)


def add_rician_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise (MR magnitude images are Rician)."""
    real = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.hypot(real, imag)
