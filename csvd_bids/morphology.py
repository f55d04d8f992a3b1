"""The low-level lesion and morphology toolkit every marker detector, the size rules and the
lesion tables share: one definition of each rule.

- A lesion is a 26-connected component (face, edge and corner neighbours, ``CONNECTIVITY``),
  the usual choice for lesion counting; a caller that means face neighbours only passes
  ``connectivity=FACES``.
- Maximum diameter = the largest distance between the centres of two voxels of the lesion plus
  the mean voxel edge, so a single voxel measures one voxel across.
- Robust statistics: the median and the MAD scaled to a normal standard deviation
  (``scipy.stats.median_abs_deviation(scale="normal")``, 1.4826 x MAD), the spread never below
  ``SPREAD_FLOOR`` x max(|median|, 1) so that a flat image gives no division by zero.
- Mode statistics (``mode_stats``): the densest intensity of a histogram smoothed over a few
  bins, and the spread of the values below it only (1.4826 x their median distance to the
  mode): a normal tissue's level when brighter lesions are most of the values, where the
  median and MAD follow the lesions.
- Bounding boxes are ``None`` for an empty mask (callers decide what that means).

Only numpy, scipy and scikit-image: nothing here knows of markers, sessions or BIDS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist
from scipy.stats import median_abs_deviation

CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26 neighbours
FACES = ndimage.generate_binary_structure(3, 1)  # 6 neighbours
SPREAD_FLOOR = 1e-6  # relative to max(|median|, 1)


def label_lesions(
    mask: np.ndarray, connectivity: np.ndarray = CONNECTIVITY
) -> tuple[np.ndarray, int]:
    """Connected components of ``mask`` (26-connected unless told) and their number."""
    labels, n = ndimage.label(mask, structure=connectivity)
    return labels, int(n)


def remove_small_lesions(mask: np.ndarray, voxel_mm3: float, min_volume_mm3: float) -> np.ndarray:
    """``mask`` without the lesions smaller than ``min_volume_mm3`` (the limit is kept)."""
    labels, n = label_lesions(mask)
    if n == 0:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())[1:] * voxel_mm3
    keep = np.flatnonzero(sizes >= min_volume_mm3) + 1
    return np.isin(labels, keep)


def max_diameter_mm(points_mm: np.ndarray, voxel_edge_mm: float) -> float:
    """Largest distance between two of ``points_mm`` (n, d) plus one voxel edge."""
    if len(points_mm) > 8:
        with contextlib.suppress(QhullError):
            points_mm = points_mm[ConvexHull(points_mm, qhull_options="QJ").vertices]
    span = float(pdist(points_mm).max()) if len(points_mm) > 1 else 0.0
    return span + voxel_edge_mm


def robust_stats(values: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 x MAD): a standard deviation robust to the lesions among ``values``,
    at least ``SPREAD_FLOOR`` x max(|median|, 1)."""
    values = np.asarray(values).ravel()
    median = float(np.median(values))
    spread = float(median_abs_deviation(values, scale="normal"))
    return median, max(spread, SPREAD_FLOOR * max(abs(median), 1.0))


def mode_stats(values: np.ndarray, bins: int = 200) -> tuple[float, float]:
    """(mode, 1.4826 x the median distance below the mode) of ``values``: robust to a
    majority of brighter outliers, as long as the normal values are the densest.

    The histogram spans the 0.5th to 99.5th percentiles and is smoothed by a Gaussian of 2 bins
    (noise must not make a peak); the spread never falls below ``SPREAD_FLOOR`` as in
    ``robust_stats``."""
    values = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi <= lo:
        return robust_stats(values)
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    density = ndimage.gaussian_filter1d(counts.astype(np.float64), 2.0, mode="constant")
    peak = int(np.argmax(density))
    mode = float(0.5 * (edges[peak] + edges[peak + 1]))
    below = mode - values[values <= mode]
    spread = 1.4826 * float(np.median(below)) if len(below) else 0.0
    return mode, max(spread, SPREAD_FLOOR * max(abs(mode), 1.0))


def keep_seeded(
    mask: np.ndarray, seeds: np.ndarray, connectivity: np.ndarray = CONNECTIVITY
) -> np.ndarray:
    """The connected components of ``mask`` that hold a voxel of ``seeds`` (hysteresis;
    seeds outside ``mask`` count for nothing)."""
    labels, n = label_lesions(mask, connectivity)
    keep = np.zeros(n + 1, dtype=bool)
    keep[labels[np.asarray(seeds, dtype=bool)]] = True
    keep[0] = False
    return keep[labels]


def keep_mostly_within(mask: np.ndarray, region: np.ndarray, share: float = 0.5) -> np.ndarray:
    """The connected components of ``mask`` with at least ``share`` of their voxels in
    ``region``."""
    labels, n = label_lesions(mask)
    if n == 0:
        return mask.astype(bool)
    inside = ndimage.mean(np.asarray(region, dtype=bool), labels, np.arange(1, n + 1))
    keep = np.concatenate([[False], np.asarray(inside) >= share])
    return keep[labels]


def bounding_box(mask: np.ndarray, margin: int | Sequence[int] = 0) -> tuple[slice, ...] | None:
    """The bounding box of ``mask`` grown by ``margin`` voxels (per axis or for all), clipped
    to the array; ``None`` when the mask is empty."""
    found = ndimage.find_objects(np.asarray(mask, dtype=bool).astype(np.uint8))
    if not found or found[0] is None:
        return None
    margins = [margin] * mask.ndim if np.isscalar(margin) else list(margin)
    return tuple(
        slice(max(0, s.start - int(m)), min(n, s.stop + int(m)))
        for s, m, n in zip(found[0], margins, mask.shape, strict=True)
    )


def smooth_mm(image: np.ndarray, sigma_mm: float, zooms: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing with a sigma in mm (``image`` itself when ``sigma_mm`` <= 0)."""
    if sigma_mm <= 0:
        return image
    return ndimage.gaussian_filter(image, sigma=[sigma_mm / z for z in zooms])


def majority_label(labels: np.ndarray, codes: np.ndarray, n: int | None = None) -> np.ndarray:
    """For each lesion 0..n of ``labels``, the most frequent non-zero value of ``codes`` among
    its voxels (a tie goes to the lowest value); 0 for a lesion with none (and for label 0).
    ``codes``: non-negative integers."""
    n = int(labels.max()) if n is None else int(n)
    inside = labels > 0
    lesion = labels[inside].astype(np.int64)
    code = codes[inside].astype(np.int64)
    k = int(code.max()) + 1 if code.size else 1
    counts = np.bincount(lesion * k + code, minlength=(n + 1) * k).reshape(n + 1, k)
    counts[:, 0] = 0
    out = counts.argmax(axis=1)
    out[~counts.any(axis=1)] = 0
    return out


def paint_majority(
    mask: np.ndarray, codes: np.ndarray, default: int = 0, connectivity: np.ndarray = CONNECTIVITY
) -> np.ndarray:
    """``codes`` with every lesion of ``mask`` painted in its majority code
    (:func:`majority_label`; ``default`` when none of its voxels has a non-zero code)."""
    labels, n = label_lesions(mask, connectivity)
    majority = majority_label(labels, codes, n)
    majority[majority == 0] = default
    return np.where(labels > 0, majority[labels], codes).astype(codes.dtype)
