"""Whole-volume inference of a bundle on a session's images (reference grid in, reference out).

Preprocessing is exactly what the bundle declares: its input channels in its order, each
normalised as it says (``zscore_brain``: zero mean, unit SD over the brain mask, 0 outside).
When the session's voxels differ from the bundle's spacing by more than 10 % on an axis, the
channels are resampled (trilinear) to that spacing and the probability back onto the reference
grid: a documented automatic resampling, logged, never a crash. Inference is MONAI's sliding
window (Gaussian-weighted, 25 % overlap) over the brain mask's bounding box (``BOX_MARGIN``
voxels around it); outside it the probability is 0, as it is outside the brain. The shipped
UNet normalises each patch (instance normalisation), so what a patch holds around the brain
changes its probabilities: on the whole field of view a session's masks depended on how much
empty background its scan had. On the box they do not, the network's patches are mostly brain
as in training (patches centred on brain voxels), and a 1 mm head needs about 12 patches of
96^3 instead of 27 (README, WMH: the second opinion on the brain's box). With ``tta`` the
left-right mirrored volume is predicted too and the two averaged. On CUDA it runs under
float16 autocast; on the CPU in float32 with the given number of threads.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from csvd_bids.config import DEVICES
from csvd_bids.errors import UsageError
from csvd_bids.models.bundle import Bundle
from csvd_bids.morphology import bounding_box

LOGGER = logging.getLogger("csvd_bids.models")
SPACING_TOLERANCE = 0.10
BOX_MARGIN = 4  # voxels of the reference grid kept around the brain (trilinear resampling)


def resolve_device(device: str) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cuda`` without one is an error."""
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {DEVICES}, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA GPU here (use auto or cpu)")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def normalise(channels: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """zscore_brain: per channel, over the brain mask; 0 outside it."""
    out = np.zeros_like(channels, dtype=np.float32)
    for c, image in enumerate(channels):
        values = image[brain]
        sd = float(values.std()) or 1.0
        out[c][brain] = (values - float(values.mean())) / sd
    return out


def spacing_shape(
    shape: tuple[int, ...], zooms: tuple[float, ...], spacing: tuple[float, ...]
) -> tuple[int, ...] | None:
    """The array shape at ``spacing`` (axes scaled by voxel size over spacing), or None when
    every axis is within ``SPACING_TOLERANCE`` of it (no resampling)."""
    ratio = np.asarray(zooms, dtype=float) / np.asarray(spacing, dtype=float)
    if not np.any(np.abs(ratio - 1.0) > SPACING_TOLERANCE):
        return None
    return tuple(max(1, int(round(n * r))) for n, r in zip(shape, ratio, strict=True))


def resize(volume: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(volume, size=shape, mode="trilinear", align_corners=False)


def predict(
    bundle: Bundle,
    network: torch.nn.Module,
    channels: np.ndarray,
    brain: np.ndarray,
    zooms: tuple[float, float, float],
    device: str = "auto",
    tta: bool = False,
) -> np.ndarray:
    """Lesion probability (float32, the reference grid) from ``channels`` (C, X, Y, Z) in the
    bundle's input order, already on the reference grid."""
    from monai.inferers import sliding_window_inference

    where = resolve_device(device)
    out = np.zeros(brain.shape, dtype=np.float32)
    box = bounding_box(brain, BOX_MARGIN)
    if box is None:  # no brain: nothing to find
        return out
    x = torch.from_numpy(normalise(channels[(slice(None), *box)], brain[box]))[None]
    spacing = bundle.metadata["spacing_mm"]
    shape = tuple(int(s) for s in x.shape[2:])
    target = spacing_shape(shape, zooms, spacing)
    resample = target is not None
    if resample:
        LOGGER.info(
            "%s: voxels %s mm resampled to the bundle's %s mm for inference, and back",
            bundle.metadata["name"],
            "x".join(f"{z:g}" for z in zooms),
            "x".join(f"{s:g}" for s in spacing),
        )
        x = resize(x, target)
    network = network.to(where)
    roi = tuple(int(p) for p in bundle.metadata["patch_size"])

    def run(volume: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.float16, enabled=where.type == "cuda"):
            logits = sliding_window_inference(
                volume.to(where), roi, 2, network, overlap=0.25, mode="gaussian"
            )
        return torch.sigmoid(logits.float()).cpu()

    with torch.inference_mode():
        probability = run(x)
        if tta:  # left-right mirror: lesions have no side
            probability = 0.5 * (probability + run(x.flip(2)).flip(2))
        if resample:
            probability = resize(probability, shape)
    out[box] = probability[0, 0].numpy()
    out[~brain] = 0.0
    return out
