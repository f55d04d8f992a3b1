"""QC mosaics: real PNGs with the overlays drawn where the masks are."""

from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from csvd_bids.reports.mosaic import Overlay, edges, plot_mosaic, slice_positions


def _phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    grid = np.indices((40, 40, 30)).astype(float)
    radius = np.sqrt(((grid - np.array([20, 20, 15])[:, None, None, None]) ** 2).sum(axis=0))
    head = radius < 14
    image = np.where(head, 100.0, 0.0) + np.where(radius < 6, 80.0, 0.0)
    lesion = radius < 4
    return image.astype(np.float32), head, lesion


def test_slices_cover_the_extent_only():
    _, head, _ = _phantom()
    positions = slice_positions(head, n=6)
    rows = np.flatnonzero(head.any(axis=(0, 1)))
    assert len(positions) == 6 and rows[0] < min(positions) and max(positions) < rows[-1]


def test_edges_stay_inside_the_mask():
    image, head, _ = _phantom()
    found = edges(image, head)
    assert found.any() and not (found & ~head).any()


def test_edges_are_found_on_every_slice_the_mosaic_shows_and_only_there():
    image, head, _ = _phantom()
    found = edges(image, head)
    shown = slice_positions(head)
    assert sorted(np.flatnonzero(found.any(axis=(0, 1)))) == sorted(set(shown))


def test_mosaic_is_a_png_with_the_overlay_drawn(tmp_path):
    image, head, lesion = _phantom()
    plain = plot_mosaic(image, (1.0, 1.0, 1.0), head, [], tmp_path / "plain.png", "plain")
    drawn = plot_mosaic(
        image,
        (1.0, 1.0, 1.0),
        head,
        [Overlay(lesion, "red", outline=False)],
        tmp_path / "drawn.png",
        "drawn",
    )
    plain_pixels, drawn_pixels = imread(plain), imread(drawn)
    assert drawn_pixels.shape == plain_pixels.shape and drawn_pixels.shape[1] > 800

    def reddish(pixels: np.ndarray) -> int:
        return int(((pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)).sum())

    assert reddish(plain_pixels) == 0 and reddish(drawn_pixels) > 20
