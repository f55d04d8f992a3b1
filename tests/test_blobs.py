"""The LoG blob response is in millimetre units: the same blob scores alike on any grid."""

from __future__ import annotations

import numpy as np

from csvd_bids.markers.blobs import log_blob_response


def _ball(voxel_mm: float, radius_mm: float = 4.5, field_mm: float = 48.0) -> np.ndarray:
    """A bright ball (value 1) sampled by averaging 3x3x3 sub-voxels (partial volume)."""
    n = int(round(field_mm / voxel_mm))
    sub = (np.arange(n * 3) + 0.5) * voxel_mm / 3 - field_mm / 2
    x, y, z = np.meshgrid(sub, sub, sub, indexing="ij")
    inside = (x**2 + y**2 + z**2 <= radius_mm**2).astype(np.float32)
    return inside.reshape(n, 3, n, 3, n, 3).mean(axis=(1, 3, 5))


def test_response_does_not_depend_on_the_voxel_size():
    peaks = {}
    for voxel in (1.0, 3.0):
        response, _ = log_blob_response(_ball(voxel), (voxel,) * 3, (2.0, 3.0))
        peaks[voxel] = float(response.max())
    assert 0.2 < peaks[1.0] < 1.0
    assert 0.6 < peaks[3.0] / peaks[1.0] < 1.6  # in voxel units it would be about 9 times


def test_scale_index_follows_the_blob_size():
    small = log_blob_response(_ball(1.0, radius_mm=2.0), (1.0,) * 3, (1.0, 3.0))
    large = log_blob_response(_ball(1.0, radius_mm=6.0), (1.0,) * 3, (1.0, 3.0))
    centre = (24, 24, 24)
    assert small[1][centre] == 0 and large[1][centre] == 1
