"""Voxelised lesion shapes on the working grid.

Every shape returns ``(ijk, value)``: the integer voxel coordinates it covers (clipped to
the grid) and a per-voxel value (normalised radius or score). A shape always covers at least
the voxel nearest to its centre, so nothing vanishes at coarse resolution.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _local_grid(centre: np.ndarray, half_vox: int, shape) -> np.ndarray:
    """Voxel coordinates (n, 3) of the cube of half-width ``half_vox`` around ``centre``."""
    lo = np.maximum(np.floor(centre).astype(int) - half_vox, 0)
    hi = np.minimum(np.floor(centre).astype(int) + half_vox + 2, shape)
    axes = [np.arange(a, b) for a, b in zip(lo, hi, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _with_nearest(ijk: np.ndarray, value: np.ndarray, centre: np.ndarray, shape):
    nearest = np.clip(np.rint(centre).astype(int), 0, np.array(shape) - 1)
    if not (ijk == nearest).all(axis=1).any():
        ijk = np.vstack([ijk, nearest])
        value = np.append(value, 0.0)
    return ijk, value


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def ellipsoid(
    centre: np.ndarray, radii_mm: np.ndarray, rotation: np.ndarray, voxel_mm: float, shape
) -> tuple[np.ndarray, np.ndarray]:
    """Voxels whose centre lies inside the ellipsoid; value = normalised radius (0 to 1)."""
    half = int(np.ceil(max(radii_mm) / voxel_mm)) + 1
    ijk = _local_grid(centre, half, shape)
    local = ((ijk - centre) * voxel_mm) @ rotation  # coordinates along the ellipsoid axes
    rnorm = np.sqrt(((local / radii_mm) ** 2).sum(axis=1))
    inside = rnorm <= 1.0
    return _with_nearest(ijk[inside], rnorm[inside], centre, shape)


def tube(
    start: np.ndarray, end: np.ndarray, radius_mm: float, voxel_mm: float, shape
) -> tuple[np.ndarray, np.ndarray]:
    """A thin straight vessel-like tube, drawn slice by slice along its dominant axis.

    In each slice the voxels within ``radius_mm`` (in-plane) of the axis are kept, plus the
    nearest one, so the tube is one connected, at most two-voxel-wide line at any resolution.
    """
    axis = int(np.argmax(np.abs(end - start)))
    plane = [a for a in range(3) if a != axis]
    k0, k1 = sorted((int(np.rint(start[axis])), int(np.rint(end[axis]))))
    ks = np.arange(max(k0, 0), min(k1, shape[axis] - 1) + 1)
    span = end[axis] - start[axis]
    t = np.clip((ks - start[axis]) / span, 0.0, 1.0) if span else np.zeros(len(ks))
    points = start[plane] + t[:, None] * (end[plane] - start[plane])  # (n, 2) in-plane axis
    offsets = np.stack(np.meshgrid(np.arange(-1, 3), np.arange(-1, 3)), -1).reshape(-1, 2)
    cand = np.floor(points).astype(int)[:, None, :] + offsets  # (n, 16, 2)
    dist = np.hypot(*np.moveaxis((cand - points[:, None, :]) * voxel_mm, -1, 0))
    nearest = (cand == np.rint(points).astype(int)[:, None, :]).all(axis=-1)
    keep = (dist <= radius_mm) | nearest
    ijk = np.empty(cand.shape[:2] + (3,), dtype=int)
    ijk[..., axis] = ks[:, None]
    ijk[..., plane[0]], ijk[..., plane[1]] = cand[..., 0], cand[..., 1]
    ijk = ijk[keep]
    ijk = ijk[((ijk >= 0) & (ijk < np.array(shape))).all(axis=1)]
    return ijk, np.zeros(len(ijk))


def blob(
    rng: np.random.Generator, centre: np.ndarray, radius_mm: float, voxel_mm: float, shape
) -> tuple[np.ndarray, np.ndarray]:
    """Irregular blob: score = radial falloff + smooth noise; threshold it to get the shape.

    The score is positive over roughly a ball of ``radius_mm``; lower thresholds give larger,
    nested shapes, which is how a lesion grows between sessions.
    """
    half = int(np.ceil(1.6 * radius_mm / voxel_mm)) + 1
    ijk = _local_grid(centre, half, shape)
    rnorm = np.sqrt((((ijk - centre) * voxel_mm) ** 2).sum(axis=1)) / radius_mm
    box = tuple(int(n) for n in ijk.max(axis=0) - ijk.min(axis=0) + 1)
    noise = ndi.gaussian_filter(rng.standard_normal(box), max(0.8, 1.5 / voxel_mm))
    noise /= max(float(noise.std()), 1e-6)
    rel = ijk - ijk.min(axis=0)
    score = 1.0 - rnorm**2 + 0.35 * noise[rel[:, 0], rel[:, 1], rel[:, 2]]
    keep = score > -0.6
    return ijk[keep], score[keep]
