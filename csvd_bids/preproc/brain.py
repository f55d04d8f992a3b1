"""Brain extraction: deepbet (Fisch et al., 2024; MIT licence, weights inside its wheel).

deepbet is a TorchScript U-Net trained on over 7,800 T1w scans; its mask is the intracranial
volume (brain and CSF), so its volume is the ICV. It also gives plausible masks on FLAIR and
T2w here, but a mask whose volume is implausible falls back to the template's brain mask
(brought in by the affine template registration) with a QC warning.

An image that is already skull-stripped (the brain surrounded by exact background zeros, as in
many public datasets) keeps its own non-zero region as the mask: re-extracting would only
erode it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

# Plausible intracranial volumes (litres): adults are ~1.2-1.8 l.
PLAUSIBLE_ICV_L = (0.7, 2.4)
# Skull-stripped input: at least this fraction of a shell 3-6 mm outside the non-zero region
# is exactly background.
STRIPPED_SHELL_ZERO_FRACTION = 0.98


@dataclass
class BrainMask:
    mask: np.ndarray  # bool, on the image grid
    method: str  # "deepbet", "input already skull-stripped" or "template (fallback)"
    warning: str = ""  # QC warning when the method had to fall back

    def volume_ml(self, img: nib.Nifti1Image) -> float:
        return float(self.mask.sum()) * float(np.prod(img.header.get_zooms()[:3])) / 1000.0


def _zooms(img: nib.Nifti1Image) -> tuple[float, float, float]:
    return tuple(float(z) for z in img.header.get_zooms()[:3])


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def skull_stripped_mask(img: nib.Nifti1Image) -> np.ndarray | None:
    """The non-zero region when the image is already skull-stripped, else None."""
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    nonzero = data != 0.0  # stripped images hold exact zeros (interpolation may undershoot)
    if nonzero.mean() > 0.5:
        return None
    region = ndimage.binary_fill_holes(_largest_component(nonzero))
    volume_l = float(region.sum()) * float(np.prod(_zooms(img))) / 1e6
    if not PLAUSIBLE_ICV_L[0] <= volume_l <= PLAUSIBLE_ICV_L[1]:
        return None  # a whole head (or a fragment) surrounded by zeros
    outside = ndimage.distance_transform_edt(~region, sampling=_zooms(img))
    shell = (outside > 3.0) & (outside <= 6.0)
    if not shell.any():  # the region fills the field of view: not a stripped brain
        return None
    if float(np.mean(data[shell] == 0.0)) < STRIPPED_SHELL_ZERO_FRACTION:
        return None
    return region


@functools.lru_cache(maxsize=1)
def _deepbet(device: str):
    from deepbet import BrainExtraction  # imported late: loads two TorchScript models

    return BrainExtraction(no_gpu=device == "cpu")


def deepbet_mask(img: nib.Nifti1Image, device: str = "cpu") -> np.ndarray:
    """deepbet's mask on the grid of ``img``, which must be RAS-oriented (as preprocessed)."""
    codes = nib.orientations.aff2axcodes(img.affine)
    if codes != ("R", "A", "S"):
        raise ValueError(f"deepbet needs a RAS-oriented image, got {''.join(codes)}")
    import torch  # imported late: 0.9 s that every node importing this module paid

    bet = _deepbet(device)
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    with torch.inference_mode():
        probability = bet.run_model(data.copy())
    return np.asarray(bet.postprocess(probability > 0.5), dtype=bool)


def extract_brain(
    img: nib.Nifti1Image,
    fallback: Callable[[], np.ndarray] | None = None,
    device: str = "cpu",
) -> BrainMask:
    """Intracranial mask of a RAS-oriented image (see the module docstring for the rules).

    ``fallback`` computes the template's brain mask; called only when deepbet's is implausible.
    """
    stripped = skull_stripped_mask(img)
    if stripped is not None:
        return BrainMask(stripped, "input already skull-stripped")
    result = BrainMask(deepbet_mask(img, device), "deepbet")
    volume = result.volume_ml(img) / 1000.0
    low, high = PLAUSIBLE_ICV_L
    if low <= volume <= high:
        return result
    warning = f"deepbet brain mask of {volume:.2f} l is outside {low}-{high} l"
    if fallback is None:
        return BrainMask(result.mask, "deepbet", warning)
    warning += "; used the template's brain mask"
    return BrainMask(fallback().astype(bool), "template (fallback)", warning)
