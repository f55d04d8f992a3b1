"""Diffusion tensors of the physics engine: the 31-direction DWI series (``--engine physics``).

The series is rendered by :class:`.diffusion.DiffusionModel` (the template engine's renderer:
per direction, the partial-volume mix of the components' signals, averaged over each acquired
voxel's render voxels), from values that differ in kind from the template engine's:

- S0 of every tissue and lesion comes from the subject's spin-echo EPI protocol,
  PD (1 - exp(-TR/T1)) exp(-TE/T2) (:func:`.protocols.signals`), and its mean diffusivity is
  the tissue's ADC as drawn for the subject (:mod:`.tissue_properties`), so the b0 and the ADC
  contrast of lesions vary between subjects as between scanners;
- FA is drawn per subject: white matter U(0.50, 0.70) (a coherent single-fibre population;
  partial volume and orientation dispersion within a 2 mm voxel bring the fitted value down to
  the 0.4-0.6 that DTI at b = 1000 shows in adult white matter, Pierpaoli and Basser, MRM
  1996;36:893), grey matter U(0.10, 0.20); WMH keep U(0.5, 0.8) of the white-matter FA
  (Maillard et al., Stroke 2011;42:1917: FA falls in WMH and their penumbra), recent small
  subcortical infarcts and lacune rims U(0.4, 0.6); fluid, microbleeds, veins,
  calcifications, arteries and air are isotropic;
- principal directions: perpendicular to the brain's surface (the gradient of the GM + WM
  fraction smoothed over ``SURFACE_SMOOTH_MM``: radial in the cortex, where diffusion is
  radial) plus the subject's own coherent random direction field (correlation length
  ``BUNDLE_MM``, comparable weight), normalised. The fibre layout thus differs between
  subjects and disperses within each acquired voxel; the template engine's fibres run away
  from the ventricles, the same in everyone;
- the tissue texture of the other images multiplies GM and WM;
- the basal-ganglia effect is the template engine's (:func:`.diffusion.bg_fa_factor`).

Directions are computed on a grid of about 1 mm (every ``stride``-th render voxel) and
repeated onto the render grid. Draws come from the generator the caller passes (the physics
subject's tissue stream), so no other image depends on this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from . import anatomy as A
from .diffusion import DiffusionModel, TensorTable
from .fields import smooth_noise
from .protocols import Protocol, signals
from .tissue_properties import Tissue

WM_FA = (0.50, 0.70)
GM_FA = (0.10, 0.20)
LESION_FA_FACTOR = {"WMH": (0.5, 0.8), "RSSI": (0.4, 0.6), "LAC_RIM": (0.4, 0.6)}  # x WM FA
SURFACE_SMOOTH_MM = 4.0
BUNDLE_MM = 10.0
BUNDLE_WEIGHT = 0.8  # of the random field, against the unit surface normal
TRUTH_NAMES = {"WMH": "WMH", "PVS": "PVS", "LAC_CAVITY": "LAC_cavity", "LAC_RIM": "LAC_rim"}
TRUTH_NAMES["RSSI"] = "RSSI"


@dataclass(frozen=True)
class PhysicsTensors:
    """One subject's drawn anisotropy: FA per tissue name (0 where not listed)."""

    fa: dict[str, float]

    @classmethod
    def draw(cls, rng: np.random.Generator) -> PhysicsTensors:
        wm = float(rng.uniform(*WM_FA))
        fa = {"WM": wm, "GM": float(rng.uniform(*GM_FA))}
        for name, (low, high) in LESION_FA_FACTOR.items():
            fa[name] = wm * float(rng.uniform(low, high))
        return cls(fa)

    def table(
        self, tissues: dict[str, Tissue], protocol: Protocol, code_tissue: dict[int, str]
    ) -> TensorTable:
        """S0, MD and FA of GM, WM and every lesion code (``code_tissue``: code -> name)."""

        def row(name: str) -> tuple[float, float, float]:
            tissue = tissues[name]
            return (signals(protocol, tissue)["b0"], tissue.adc, self.fa.get(name, 0.0))

        lesions = np.array([row(code_tissue[c]) for c in range(len(code_tissue))], np.float32)
        return TensorTable(row("GM"), row("WM"), lesions)

    def planted(self, tissues: dict[str, Tissue]) -> tuple[dict, dict]:
        """(tissue, lesion) name -> (MD, FA) for the truth (:func:`.diffusion.planted_dwi`)."""

        def entry(name: str) -> tuple[float, float]:
            return tissues[name].adc, self.fa.get(name, 0.0)

        tissue = {name: entry(name) for name in ("CSF", "GM", "WM")}
        return tissue, {truth: entry(name) for name, truth in TRUTH_NAMES.items()}


def fibre_directions(anat: A.Anatomy, rng: np.random.Generator) -> np.ndarray:
    """(3, *anat.shape) float32 unit principal directions (module docstring)."""
    stride = max(1, int(round(1.0 / anat.voxel_mm)))
    coarse_mm = anat.voxel_mm * stride
    coarse = (anat.gm + anat.wm)[::stride, ::stride, ::stride].astype(np.float32)
    smooth = ndi.gaussian_filter(coarse, SURFACE_SMOOTH_MM / coarse_mm)
    normal = np.stack(np.gradient(smooth)).astype(np.float32)
    del smooth
    normal /= np.maximum(np.sqrt(np.einsum("i...,i...->...", normal, normal)), 1e-6)
    bundles = np.stack([smooth_noise(rng, coarse.shape, coarse_mm, BUNDLE_MM) for _ in range(3)])
    field = normal + np.float32(BUNDLE_WEIGHT) * bundles
    del normal, bundles
    field /= np.maximum(np.sqrt(np.einsum("i...,i...->...", field, field)), 1e-6)
    pairs = zip(anat.shape, coarse.shape, strict=True)
    index = [np.minimum(np.arange(n) // stride, c - 1) for n, c in pairs]
    return field[:, index[0][:, None, None], index[1][None, :, None], index[2][None, None, :]]


def physics_model(
    anat: A.Anatomy,
    basal_ganglia: np.ndarray,
    latent_burden: float,
    tensors: PhysicsTensors,
    tissues: dict[str, Tissue],
    protocol: Protocol,
    code_tissue: dict[int, str],
    head_tissue: dict[int, str],
    texture: np.ndarray,
    rng: np.random.Generator,
) -> DiffusionModel:
    """The subject's DWI model on the render grid (``head_tissue``: head class -> name)."""
    b1000 = {name: signals(protocol, tissues[name])["b1000"] for name in head_tissue.values()}
    head = np.array([b1000[head_tissue[k]] for k in range(len(head_tissue))], np.float32)
    isotropic = anat.csf * np.float32(b1000["CSF"]) + anat.outside * head[anat.head]
    return DiffusionModel.build(
        anat,
        basal_ganglia,
        latent_burden,
        tensors.table(tissues, protocol, code_tissue),
        fibre_directions(anat, rng),
        isotropic.astype(np.float32),
        texture,
    )
