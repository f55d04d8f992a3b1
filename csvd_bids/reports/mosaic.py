"""QC mosaics: axial slices of a background image with outlines drawn on top.

Used for what a person checks first: the brain mask outline on the reference, the edges of each
coregistered modality on the reference (misregistration shows as edges off the anatomy), and
each marker's detections on the modality it was found on. PNGs, for the reports to embed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure  # the object API: no pyplot, no display, no global state
from skimage.feature import canny

N_SLICES = 8


@dataclass(frozen=True)
class Overlay:
    mask: np.ndarray  # bool, same grid as the background
    color: str
    outline: bool = True  # draw the contour (True) or fill the voxels (False, for edge maps)


def slice_positions(extent: np.ndarray, n: int = N_SLICES) -> list[int]:
    """``n`` axial slice indices spread over the slices where ``extent`` has voxels."""
    rows = np.flatnonzero(extent.any(axis=(0, 1)))
    if rows.size == 0:
        rows = np.arange(extent.shape[2])
    return [int(round(v)) for v in np.linspace(rows[0], rows[-1], n + 2)[1:-1]]


def edges(image: np.ndarray, mask: np.ndarray, sigma: float = 2.5) -> np.ndarray:
    """Canny edges inside ``mask``, on the axial slices a mosaic of ``mask`` shows
    (:func:`slice_positions`; the other slices, never drawn, were 80 % of a QC node's time)."""
    out = np.zeros(image.shape, dtype=bool)
    for k in slice_positions(mask):
        if mask[:, :, k].any():
            out[:, :, k] = canny(image[:, :, k], sigma=sigma) & mask[:, :, k]
    return out


def _window(image: np.ndarray, extent: np.ndarray) -> tuple[float, float]:
    values = image[extent] if extent.any() else image.ravel()
    low, high = np.percentile(values, [1, 99.5])
    return float(low), float(max(high, low + 1e-6))


def plot_mosaic(
    background: np.ndarray,
    zooms: tuple[float, float, float],
    extent: np.ndarray,
    overlays: list[Overlay],
    out_png: Path,
    title: str,
) -> Path:
    """Save an axial mosaic (RAS arrays: left of the picture is the subject's right)."""
    positions = slice_positions(extent)
    vmin, vmax = _window(background, extent)
    aspect = zooms[1] / zooms[0]
    fig = Figure(figsize=(2.2 * len(positions), 2.8), dpi=100)
    axes = fig.subplots(1, len(positions))
    for ax, k in zip(np.atleast_1d(axes), positions, strict=True):
        ax.imshow(
            np.rot90(background[:, :, k]),
            cmap="gray",
            vmin=vmin,
            vmax=vmax,
            aspect=aspect,
            interpolation="nearest",
        )
        for overlay in overlays:
            plane = np.rot90(overlay.mask[:, :, k])
            if not plane.any():
                continue
            if overlay.outline:
                ax.contour(plane, levels=[0.5], colors=overlay.color, linewidths=0.8)
            else:
                colored = np.zeros((*plane.shape, 4))
                colored[plane] = to_rgba(overlay.color)
                ax.imshow(colored, aspect=aspect, interpolation="nearest")
        ax.set_axis_off()
        # a plain text, and a fixed layout: set_title and tight_layout measured every
        # axes' text extents at each draw, half of a QC node's time
        ax.text(0.5, 1.01, f"z={k}", fontsize=7, ha="center", va="bottom", transform=ax.transAxes)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86, wspace=0.04)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png
