"""Diffusion tensors of the template engine: the multi-direction DWI series.

Directions: the 31 rotation axes of the icosahedron (6 five-fold, 10 three-fold and 15
two-fold axes; one of each antipodal pair, ``DIRECTIONS``), at b = 1000 s/mm2 after one b0.
The set is deterministic, antipodally unique, well spread (the closest two axes are 20.9
degrees apart) and a spherical 5-design: the mean of g g^T over it is exactly I/3 (and the
fourth moments are isotropic too), so for every tensor D the mean over the directions of
g^T D g is trace(D)/3. The geometric mean of a pure tissue's diffusion-weighted volumes is
therefore exactly b0 * exp(-b * MD), and the ADC a pipeline computes from it is the tissue's
mean diffusivity, whatever the fibre orientation.

Signal of a voxel along direction g: the partial-volume mix of the *signals* of its
components, S = sum_c f_c * S0_c * exp(-b * g^T D_c g) (the same fractions and lesion blend
weights as every other contrast: :func:`.contrasts.base_images`, :func:`.contrasts.apply_lesions`;
S0_c is the component's b0 intensity). Every tensor is cylindrically symmetric,
D = MD * ((1 - k) I + 3 k e e^T) with k = FA / sqrt(3 - 2 FA^2), so its mean diffusivity is MD
and its fractional anisotropy FA exactly, and g^T D g = MD * (1 + k * (3 (g.e)^2 - 1)).

Tissues (MD in 1e-3 mm2/s: the ADC each had when diffusion was isotropic, unchanged; FA):
CSF 3.0 / 0; GM 0.85 / 0.15; WM 0.75 / 0.50. Lesions: WMH 1.1 / 0.30 (0.6 x the WM FA),
recent small subcortical infarct (RSSI) 0.35 / 0.25 (0.5 x WM), lacune cavity 3.0 / 0 (fluid),
lacune gliotic rim 1.05 / 0.25 (0.5 x WM), PVS 2.6 / 0 (fluid); microbleeds and veins leave the
DWI alone (as before); the head outside the brain is isotropic (its old b1000 intensity).

Orientation e: the unit gradient of the distance to the lateral ventricles smoothed over
``ORIENTATION_SMOOTH_MM`` (fibres run away from the ventricles, as in the corona radiata),
radial from the brain centre where that gradient vanishes; every tensor of a voxel (tissue and
lesion) shares it. Deterministic: no random draw.

Basal-ganglia effect: in the subject's true basal ganglia (the truth's ``seg-regions`` label,
:func:`.truth.region_truth`) the GM and WM FA are multiplied by
``1 - BG_FA_STRENGTH * severity``, severity = 1 / (1 + exp(-b)) with b the subject's latent
burden (:mod:`.participants`); MD stays. The same for every session of the subject; recorded
in the truth (:func:`planted_dwi`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from . import anatomy as A
from . import contrasts
from . import lesions as L

B_VALUE = 1000  # s/mm2
ORIENTATION_SMOOTH_MM = 6.0
#             MD (1e-3 mm2/s), FA
TISSUE_TENSOR = {"CSF": (3.0, 0.0), "GM": (0.85, 0.15), "WM": (0.75, 0.50)}
WMH_FA_FACTOR, RSSI_FA_FACTOR, RIM_FA_FACTOR = 0.6, 0.5, 0.5  # x the WM FA
_WM_FA = TISSUE_TENSOR["WM"][1]
LESION_TENSOR = {
    L.WMH: (1.1, WMH_FA_FACTOR * _WM_FA),
    L.PVS: (2.6, 0.0),
    L.LAC_CAVITY: (3.0, 0.0),
    L.LAC_RIM: (1.05, RIM_FA_FACTOR * _WM_FA),
    L.RSSI: (0.35, RSSI_FA_FACTOR * _WM_FA),
}  # CMB, VEIN: no change to the DWI
LESION_NAMES = {L.WMH: "WMH", L.PVS: "PVS", L.LAC_CAVITY: "LAC_cavity", L.LAC_RIM: "LAC_rim"}
LESION_NAMES[L.RSSI] = "RSSI"
BG_FA_STRENGTH = 0.25


DIRECTIONS = contrasts.DWI_DIRECTIONS


def anisotropy_k(fa: np.ndarray | float) -> np.ndarray | float:
    """k of D = MD ((1 - k) I + 3 k e e^T) for a fractional anisotropy ``fa`` (0 <= fa < 1)."""
    return fa / np.sqrt(3.0 - 2.0 * np.square(fa))


def eigenvalues(md: float, fa: float) -> tuple[float, float]:
    """(axial, radial) diffusivity of the cylindrically symmetric tensor of ``md`` and ``fa``."""
    k = anisotropy_k(fa)
    return md * (1.0 + 2.0 * k), md * (1.0 - k)


def severity(latent_burden: float) -> float:
    """The subject's severity in (0, 1): the logistic of the latent burden."""
    return float(1.0 / (1.0 + np.exp(-latent_burden)))


def bg_fa_factor(latent_burden: float) -> float:
    return 1.0 - BG_FA_STRENGTH * severity(latent_burden)


def orientation_field(anat: A.Anatomy) -> np.ndarray:
    """(3, *shape) float32 unit principal directions (module docstring)."""
    smooth = ndi.gaussian_filter(anat.dist_ventricles, ORIENTATION_SMOOTH_MM / anat.voxel_mm)
    field = np.stack(np.gradient(smooth)).astype(np.float32)
    del smooth
    norm = np.sqrt(np.einsum("i...,i...->...", field, field))
    ijk = np.argwhere(anat.brain_mask).mean(axis=0)
    flat = norm < 1e-3 * max(float(norm.max()), 1e-6)
    if flat.any():  # radial from the brain centre (voxel axes are world axes here)
        where = np.nonzero(flat)
        field[(slice(None), *where)] = np.stack([w - c for w, c in zip(where, ijk, strict=True)])
        norm[flat] = np.sqrt(np.einsum("i...,i...->...", field[:, flat], field[:, flat]))
    field /= np.maximum(norm, 1e-6)
    return field


@dataclass(frozen=True)
class TensorTable:
    """What a subject's DWI is rendered from: the b0 intensity (S0), mean diffusivity (MD,
    1e-3 mm2/s) and FA of grey and white matter, and of every lesion code (a row per code;
    S0 NaN: that code leaves the DWI alone)."""

    gm: tuple[float, float, float]  # S0, MD, FA
    wm: tuple[float, float, float]
    lesions: np.ndarray  # (codes, 3) float32: S0, MD, FA


def template_table() -> TensorTable:
    """The template engine's tensors (module docstring) with its b0 intensities."""
    b0_column = contrasts.CHANNELS.index("b0")
    b0 = {name: value[b0_column] for name, value in contrasts.BRAIN.items()}
    lesions = np.full((len(contrasts.LESION_TABLE), 3), np.nan, dtype=np.float32)
    for code, (md, fa) in LESION_TENSOR.items():
        lesions[code] = (contrasts.LESION_TABLE[code, b0_column], md, fa)
    return TensorTable((b0["GM"], *TISSUE_TENSOR["GM"]), (b0["WM"], *TISSUE_TENSOR["WM"]), lesions)


def template_isotropic(anat: A.Anatomy) -> np.ndarray:
    """The template engine's direction-independent part of a b=1000 volume: CSF and head."""
    b0 = contrasts.BRAIN["CSF"][contrasts.CHANNELS.index("b0")]
    b1000_column = contrasts.CHANNELS.index("b1000")
    head = np.array([contrasts.HEAD[c][b1000_column] for c in range(len(contrasts.HEAD))])
    csf = b0 * np.exp(-TISSUE_TENSOR["CSF"][0] * B_VALUE * 1e-3)
    head = head.astype(np.float32)[anat.head]
    return (anat.csf * np.float32(csf) + anat.outside * head * anat.head_texture).astype(np.float32)


@dataclass
class DiffusionModel:
    """One subject's tensors on the working grid: the voxels holding GM or WM, their
    fractions times S0, orientation and anisotropy ``k`` (with the basal-ganglia effect), and
    the lesions' tensors."""

    orientation: np.ndarray  # (3, *shape) unit vectors
    tissue_index: np.ndarray  # flat indices of voxels with GM or WM
    gm: np.ndarray
    wm: np.ndarray
    k_gm: np.ndarray
    k_wm: np.ndarray
    isotropic: np.ndarray  # CSF and head part of every diffusion-weighted volume
    fa_factor: float
    table: TensorTable

    @classmethod
    def make(cls, anat: A.Anatomy, basal_ganglia: np.ndarray, latent_burden: float):
        """The template engine's model of a subject."""
        return cls.build(
            anat,
            basal_ganglia,
            latent_burden,
            template_table(),
            orientation_field(anat),
            template_isotropic(anat),
        )

    @classmethod
    def build(
        cls,
        anat: A.Anatomy,
        basal_ganglia: np.ndarray,
        latent_burden: float,
        table: TensorTable,
        orientation: np.ndarray,
        isotropic: np.ndarray,
        texture: np.ndarray | None = None,
    ):
        """A model from its tensors, principal directions (3, *shape), direction-independent
        part (CSF, head) and an optional multiplicative tissue texture."""
        factor = bg_fa_factor(latent_burden)
        index = np.flatnonzero((anat.gm + anat.wm) > 0)
        bg = basal_ganglia.reshape(-1)[index]
        k = {}
        for name, (_, _, fa) in (("GM", table.gm), ("WM", table.wm)):
            k[name] = np.where(bg, anisotropy_k(fa * factor), anisotropy_k(fa)).astype(np.float32)
        gm = anat.gm.reshape(-1)[index] * np.float32(table.gm[0])
        wm = anat.wm.reshape(-1)[index] * np.float32(table.wm[0])
        if texture is not None:
            gm *= texture.reshape(-1)[index]
            wm *= texture.reshape(-1)[index]
        return cls(orientation, index, gm, wm, k["GM"], k["WM"], isotropic, factor, table)

    def render(self, lesions: list[L.Lesion], grid: contrasts.AcqGrid) -> np.ndarray:
        """(*grid.shape, 31) noise-free diffusion-weighted volumes on ``grid``: each direction
        rendered on the working grid, lesions blended in order, averaged over the blocks.

        Only the voxels that hold GM, WM or a lesion change with the direction: the rest is
        averaged once, and those voxels are added to their blocks per direction."""
        parts = []  # per lesion: flat index, weight, S0, MD, k of the voxels it changes
        for lesion in lesions:
            s0 = self.table.lesions[lesion.tissue, 0]
            ok = ~np.isnan(s0)
            if not ok.any():
                continue
            md = self.table.lesions[lesion.tissue[ok], 1] * np.float32(B_VALUE * 1e-3)
            fa = self.table.lesions[lesion.tissue[ok], 2]
            parts.append([lesion.index[ok], lesion.weight[ok], s0[ok], md, anisotropy_k(fa)])
        changing = np.zeros(self.isotropic.size, dtype=bool)
        for index in (self.tissue_index, *(p[0] for p in parts)):
            changing[index] = True
        varying = np.flatnonzero(changing)
        del changing
        rest = self.isotropic.copy()
        rest.reshape(-1)[varying] = 0.0
        rest = contrasts.to_grid(rest, grid).reshape(-1)
        base = self.isotropic.reshape(-1)[varying]
        block = _block_of(varying, self.isotropic.shape, grid)
        size = float(np.prod(grid.factors))
        orientation = self.orientation.reshape(3, -1)[:, varying]
        tissue = np.searchsorted(varying, self.tissue_index)
        for part in parts:
            part[0] = np.searchsorted(varying, part[0])
        e_tissue = orientation[:, tissue]
        md_gm = np.float32(self.table.gm[1] * B_VALUE * 1e-3)
        md_wm = np.float32(self.table.wm[1] * B_VALUE * 1e-3)
        out = np.empty((len(DIRECTIONS), *grid.shape), dtype=np.float32)
        for d, g in enumerate(DIRECTIONS.astype(np.float32)):
            value = base.copy()
            p = 3.0 * np.square(g @ e_tissue) - 1.0
            value[tissue] += self.gm * np.exp(-md_gm * (1.0 + self.k_gm * p))
            value[tissue] += self.wm * np.exp(-md_wm * (1.0 + self.k_wm * p))
            for pos, w, s0, md, k in parts:
                q = 3.0 * np.square(g @ orientation[:, pos]) - 1.0
                value[pos] = value[pos] * (1.0 - w) + w * s0 * np.exp(-md * (1.0 + k * q))
            summed = np.bincount(block, value, minlength=rest.size + 1)[:-1]
            out[d] = (rest + summed / size).reshape(grid.shape)
        return np.moveaxis(out, 0, -1)


def _block_of(flat: np.ndarray, shape, grid: contrasts.AcqGrid) -> np.ndarray:
    """Flat index on ``grid`` of the block holding each working voxel; ``prod(grid.shape)``
    for a voxel beyond the last whole block (``contrasts.blocks`` drops those)."""
    cell = [i // f for i, f in zip(np.unravel_index(flat, shape), grid.factors, strict=True)]
    inside = np.all([c < n for c, n in zip(cell, grid.shape, strict=True)], axis=0)
    clipped = [np.minimum(c, n - 1) for c, n in zip(cell, grid.shape, strict=True)]
    return np.where(inside, np.ravel_multi_index(clipped, grid.shape), int(np.prod(grid.shape)))


def planted_dwi(
    factor: float,
    tissues: dict[str, tuple[float, float]] | None = None,
    lesions: dict[str, tuple[float, float]] | None = None,
) -> dict:
    """The truth's DWI section: (MD, FA) per tissue and lesion name (default: the template
    engine's), the basal-ganglia effect."""
    tissues = tissues or TISSUE_TENSOR
    lesions = lesions or {LESION_NAMES[c]: value for c, value in LESION_TENSOR.items()}

    def entry(md: float, fa: float) -> dict:
        axial, radial = eigenvalues(md, fa)
        return {
            "MD": round(md, 6),
            "FA": round(fa, 6),
            "AD": round(axial, 6),
            "RD": round(radial, 6),
        }

    return {
        "BValue": B_VALUE,
        "NumberOfDirections": len(DIRECTIONS),
        "DiffusivityUnits": "1e-3 mm2/s",
        "Tissues": {name: entry(*value) for name, value in tissues.items()},
        "Lesions": {name: entry(*value) for name, value in lesions.items()},
        "BasalGangliaFAStrength": BG_FA_STRENGTH,
        "BasalGangliaFAFactor": round(factor, 6),
        "BasalGanglia": {
            name: entry(tissues[name][0], tissues[name][1] * factor) for name in ("GM", "WM")
        },
    }
