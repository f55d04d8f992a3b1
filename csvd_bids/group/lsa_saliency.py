"""Where in the patch the network looks: MONAI's occlusion sensitivity. Each patch is
re-predicted with one 8^3-voxel cube (12 mm) at a time blurred out (MONAI's Gaussian mode,
non-overlapping cubes: 64 predictions per patch); the map is the absolute change of each
output (FA, CBF, in training-fold SDs), so evidence for a low value counts as much as for a
high one. Grad-CAM was tried first: on patches whose planted blob alone encodes FA, its maps
(and the plain input gradient) were brightest at the patch corners, away from the blob; the
occlusion maps were brightest on the blob.

Computed out of fold (each patch by the network that did not train on it), on at most
``limit`` test patches per fold (chosen evenly through the fold: the 64 predictions per patch
would otherwise cost as much as training), then averaged per outcome group and region."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from monai.visualize import OcclusionSensitivity

from csvd_bids.group.lsa_data import ROIS, TARGETS

MASK_VOXELS = 8


def occlusion_maps(network: torch.nn.Module, patches: np.ndarray) -> np.ndarray:
    """(n, 2, 32, 32, 32) absolute change of each output when each cube is occluded."""
    device = next(network.parameters()).device
    occlusion = OcclusionSensitivity(
        network, mask_size=MASK_VOXELS, overlap=0.0, activate=False, n_batch=64, verbose=False
    )
    maps = np.zeros((len(patches), len(TARGETS), *patches.shape[1:]), np.float32)
    with torch.no_grad():
        for i, patch in enumerate(patches):
            x = torch.from_numpy(patch)[None, None].to(device)
            original = network(x)[0]
            occluded, _ = occlusion(x)  # MONAI takes one image at a time
            change = occluded[0] - original[:, None, None, None]
            maps[i] = change.abs().float().cpu().numpy()
    return maps


def chosen_for_saliency(n_test: int, limit: int) -> np.ndarray:
    """Positions (within a fold's test patches) that get a map: all, or ``limit`` spread
    evenly, so every region and subject of the fold has its chance."""
    if n_test <= limit:
        return np.arange(n_test)
    return np.unique(np.linspace(0, n_test - 1, limit).round().astype(int))


def average_by_group(
    samples: pd.DataFrame, saliency: np.ndarray, patches: np.ndarray, labels: pd.Series
) -> tuple[np.ndarray, list[dict]]:
    """4D volume (32, 32, 32, m) of the mean occlusion map (FA, CBF) and mean T1w patch per
    outcome group and region, one description per volume. Samples without a map (NaN) or a
    label are left out."""
    group = samples["participant_id"].map(labels)
    mapped = np.isfinite(saliency[:, 0, 0, 0, 0])
    volumes, described = [], []
    for name in sorted(group.dropna().unique(), key=str):
        for roi in ROIS:
            chosen = ((group == name) & (samples["roi"] == roi)).to_numpy() & mapped
            if not chosen.any():
                continue
            means = [("T1w", patches[chosen].mean(axis=0))]
            means += [
                (f"occlusion_{t}", saliency[chosen, j].mean(axis=0)) for j, t in enumerate(TARGETS)
            ]
            for kind, mean in means:
                volumes.append(mean.astype(np.float32))
                described.append(
                    {"group": str(name), "roi": roi, "map": kind, "n": int(chosen.sum())}
                )
    if not volumes:
        return np.zeros((32, 32, 32, 0), np.float32), []
    return np.stack(volumes, axis=-1), described
