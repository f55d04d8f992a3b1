"""MR contrasts: tissue intensities per modality, lesion blending, acquisition grids.

Images are rendered on the working (1 mm or ``--resolution``) grid as a partial-volume mix of
tissue intensities, lesions are blended in, and each modality is then averaged onto its own
acquisition grid (thicker slices for FLAIR/T2w, coarser voxels for DWI). Grids differ only
by integer block factors, so all images share one world space through their affines, unless
:mod:`.motion` moved an ``AcqGrid.affine`` (a known misalignment). Each acquisition gets its
own smooth multiplicative bias field and Rician noise. The clinical profile (:mod:`.profiles`)
draws a 5-8 mm FLAIR slab per session (``thick_slice_grid``) and skull-strips it
(``acquire_session`` with a brain mask).

DWI is one b=0 volume and b=1000 s/mm2 volumes along the 31 directions of
``DWI_DIRECTIONS`` (the icosahedron's rotation axes, see :mod:`.diffusion`). The ``b1000``
channel is the isotropic (trace) b=1000 signal, b0 * exp(-b * ADC) with ADC (1e-3 mm2/s):
CSF 3.0, GM 0.85, WM 0.75, WMH 1.1, lacune/PVS 3.0/2.6, RSSI 0.35 (restricted diffusion:
bright on b1000); the written series instead carries a diffusion tensor per tissue with
these ADCs as mean diffusivities (:mod:`.diffusion`, ``acquire_session(..., dwi=...)``), so
the geometric mean of its directions is that trace image. The ASL grid (``asl``, about
3 x 3 x 5 mm) serves :mod:`.asl`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import anatomy as A
from . import lesions as L
from .fields import add_rician_noise, bias_field

CHANNELS = ("T1w", "FLAIR", "T2w", "T2starw", "b0", "b1000")
NAN = float("nan")  # "this lesion leaves that contrast unchanged"

#                      T1w   FLAIR  T2w   SWI    b0    b1000
BRAIN = {
    "CSF": (250.0, 80.0, 1400.0, 900.0, 1400.0, 70.0),
    "GM": (600.0, 650.0, 700.0, 620.0, 750.0, 320.0),
    "WM": (900.0, 500.0, 500.0, 540.0, 600.0, 283.0),
}
HEAD = {
    A.AIR: (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    A.CSF_LAYER: BRAIN["CSF"],
    A.SKULL: (80.0, 60.0, 60.0, 50.0, 40.0, 20.0),
    A.MARROW: (700.0, 350.0, 400.0, 200.0, 80.0, 40.0),  # fatty diploe; DWI is fat-suppressed
    A.SCALP: (1100.0, 600.0, 550.0, 450.0, 300.0, 150.0),
}
LESION = {
    L.WMH: (650.0, 1000.0, 950.0, 650.0, 900.0, 300.0),
    L.CMB: (NAN, NAN, NAN, 80.0, NAN, NAN),  # hemosiderin: SWI only
    L.PVS: (300.0, 120.0, 1300.0, 850.0, 1300.0, 96.0),
    L.LAC_CAVITY: (250.0, 90.0, 1400.0, 880.0, 1400.0, 70.0),
    L.LAC_RIM: (650.0, 950.0, 1000.0, 650.0, 950.0, 330.0),
    L.RSSI: (700.0, 800.0, 900.0, 600.0, 950.0, 670.0),
    L.VEIN: (NAN, NAN, NAN, 250.0, NAN, NAN),  # deoxygenated blood: SWI only
}
LESION_TABLE = np.array([LESION[k] for k in range(len(LESION))], dtype=np.float32)
NOISE_SIGMA = {"T1w": 14.0, "FLAIR": 12.0, "T2w": 14.0, "T2starw": 12.0, "dwi": 14.0}
BIAS_STRENGTH = 0.12
B_VALUE = 1000


def icosahedral_directions() -> np.ndarray:
    """(31, 3) unit vectors: the icosahedron's rotation axes, one per antipodal pair (the
    first non-zero coordinate positive), five-fold, three-fold, then two-fold axes."""
    phi = (1.0 + 5.0**0.5) / 2.0

    def cyclic(v):
        return [v, v[[1, 2, 0]], v[[2, 0, 1]]]

    def signs(base):
        out = []
        for sx in (1, -1):
            for sy in (1, -1):
                for sz in (1, -1):
                    out.append(base * np.array([sx, sy, sz], dtype=float))
        return out

    groups = (
        [np.array([0.0, 1.0, phi])],  # 5-fold: icosahedron vertices
        [np.array([1.0, 1.0, 1.0]), np.array([1.0 / phi, 0.0, phi])],  # 3-fold: face centres
        [np.array([0.0, 0.0, 1.0]), np.array([0.5, phi * phi / 2.0, phi / 2.0])],  # 2-fold: edges
    )
    directions: list[np.ndarray] = []
    for group in groups:
        found: list[np.ndarray] = []
        for base in group:
            for v in (p for s in signs(base) for p in cyclic(s)):
                u = v / np.linalg.norm(v)
                u = u if u[np.flatnonzero(np.abs(u) > 1e-9)[0]] > 0 else -u
                if not any(np.allclose(u, w) for w in found):
                    found.append(u)
        directions += sorted(found, key=lambda u: (-u[2], -u[1], -u[0]))
    return np.array(directions)


DWI_DIRECTIONS = icosahedral_directions()  # (31, 3): see the module docstring


@dataclass(frozen=True)
class AcqGrid:
    factors: tuple[int, int, int]  # working voxels averaged into one acquired voxel
    shape: tuple[int, int, int]
    affine: np.ndarray


def acquisition_grids(shape, affine: np.ndarray, resolution: float) -> dict[str, AcqGrid]:
    """Grid of each modality: T1w/SWI at the resolution, thick-slice FLAIR/T2w, 2 mm DWI,
    about 3 x 3 x 5 mm ASL (whole working voxels, at least one)."""
    flair_z = max(2, round(3.0 / resolution))
    if flair_z * resolution > 6.0:  # no slab thicker than 6 mm
        flair_z = max(1, int(6.0 // resolution))
    dwi = max(1, round(2.0 / resolution))
    asl_xy, asl_z = max(1, round(3.0 / resolution)), max(1, round(5.0 / resolution))
    factors = {
        "T1w": (1, 1, 1),
        "FLAIR": (1, 1, flair_z),
        "T2w": (1, 1, max(1, round(2.0 / resolution))),
        "T2starw": (1, 1, 1),
        "dwi": (dwi, dwi, dwi),
        "asl": (asl_xy, asl_xy, asl_z),
    }
    return {name: _grid(f, shape, affine) for name, f in factors.items()}


def _grid(factors: tuple[int, int, int], shape, affine: np.ndarray) -> AcqGrid:
    scale = np.diag([*factors, 1.0])
    scale[:3, 3] = (np.array(factors) - 1) / 2.0  # acquired voxel centre = centre of its block
    return AcqGrid(
        factors, tuple(n // k for n, k in zip(shape, factors, strict=True)), affine @ scale
    )


def thick_slice_grid(
    shape, affine: np.ndarray, resolution: float, thickness: float, limits: tuple[float, float]
) -> AcqGrid:
    """In-plane at the resolution, ``thickness`` mm slices rounded to a whole number (at least
    2) of working voxels, kept within ``limits`` (mm) where such a number exists."""
    lowest, highest = int(np.ceil(limits[0] / resolution)), int(limits[1] // resolution)
    k = int(round(thickness / resolution))
    if lowest <= highest:
        k = min(max(k, lowest), highest)
    return _grid((1, 1, max(2, k)), shape, affine)


BLOCK_AXES = (1, 3, 5)  # the within-block axes of ``blocks``


def blocks(volume: np.ndarray, grid: AcqGrid) -> np.ndarray:
    """View of a working-grid volume as (nx, fx, ny, fy, nz, fz): the grid's blocks (the
    working voxels beyond the last whole block are dropped)."""
    (fx, fy, fz), (nx, ny, nz) = grid.factors, grid.shape
    cropped = volume[: nx * fx, : ny * fy, : nz * fz]
    return cropped.reshape(nx, fx, ny, fy, nz, fz)


def to_grid(volume: np.ndarray, grid: AcqGrid) -> np.ndarray:
    """Average a working-grid volume over the blocks of an acquisition grid."""
    return blocks(volume, grid).mean(axis=BLOCK_AXES, dtype=np.float32)


def base_images(anat: A.Anatomy, channels: tuple[str, ...] = CHANNELS) -> dict[str, np.ndarray]:
    """Lesion-free intensity of each channel on the working grid (partial-volume mix)."""
    head_table = np.array([HEAD[k] for k in range(len(HEAD))], dtype=np.float32)
    images = {}
    for name in channels:
        c = CHANNELS.index(name)
        image = anat.gm * BRAIN["GM"][c] + anat.wm * BRAIN["WM"][c] + anat.csf * BRAIN["CSF"][c]
        image += anat.outside * head_table[anat.head, c] * anat.head_texture
        images[name] = image.astype(np.float32)
    return images


def apply_lesions(images: dict[str, np.ndarray], lesions: list[L.Lesion]) -> None:
    """Blend lesion tissue into the images in place; NaN entries leave a contrast alone, and
    channels missing from ``images`` are not rendered."""
    for lesion in lesions:
        target = LESION_TABLE[lesion.tissue]  # (n, channels)
        for c, name in enumerate(CHANNELS):
            if name not in images:
                continue
            value = target[:, c]
            ok = ~np.isnan(value)
            if not ok.any():
                continue
            idx, w = lesion.index[ok], lesion.weight[ok]
            flat = images[name].reshape(-1)
            flat[idx] = flat[idx] * (1.0 - w) + w * value[ok]


def _acquire(rng: np.random.Generator, image: np.ndarray, sigma: float, bias) -> np.ndarray:
    noisy = add_rician_noise(rng, image * bias, sigma)
    return np.clip(np.rint(noisy), 0, np.iinfo(np.int16).max).astype(np.int16)


def occupied(mask: np.ndarray, grid: AcqGrid) -> np.ndarray:
    """bool on ``grid``: the blocks that ``mask`` (working grid) fills at least half."""
    count = blocks(mask, grid).sum(axis=BLOCK_AXES, dtype=np.int32)
    return 2 * count >= int(np.prod(grid.factors))


def acquire_session(
    rng: np.random.Generator,
    images: dict[str, np.ndarray],
    grids: dict[str, AcqGrid],
    brain_mask: np.ndarray | None = None,
    dwi: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """int16 image of every modality in ``grids`` on its own grid, with bias and noise of this
    session (drawn in a fixed modality order; the DWI's b0 first, then its directions).
    ``dwi``: the noise-free diffusion-weighted volumes on the DWI grid, one per
    ``DWI_DIRECTIONS`` (:meth:`.diffusion.DiffusionModel.render`); without it every direction
    is the isotropic ``b1000`` image. The ASL grid is not acquired here (:mod:`.asl`).

    With ``brain_mask`` the images are skull-stripped: the working-grid image is multiplied by
    the mask before averaging (the brain edge is partial-volumed, as after a real stripping)
    and, after noise, every acquired voxel not at least half brain (``occupied``) is 0.
    """

    def acquired(name: str, volume: np.ndarray) -> np.ndarray:
        return to_grid(volume if brain_mask is None else volume * brain_mask, grids[name])

    out = {}
    for name in ("T1w", "FLAIR", "T2w", "T2starw"):
        if name not in grids:
            continue
        bias = bias_field(rng, grids[name].shape, BIAS_STRENGTH)
        out[name] = _acquire(rng, acquired(name, images[name]), NOISE_SIGMA[name], bias)
    if "dwi" in grids:
        bias = bias_field(rng, grids["dwi"].shape, BIAS_STRENGTH)
        b0 = acquired("dwi", images["b0"])
        if dwi is None:
            b1000 = acquired("dwi", images["b1000"])
            volumes = [b0] + [b1000] * len(DWI_DIRECTIONS)
        else:
            volumes = [b0, *np.moveaxis(dwi, -1, 0)]
        out["dwi"] = np.stack([_acquire(rng, v, NOISE_SIGMA["dwi"], bias) for v in volumes], -1)
    if brain_mask is not None:
        for name, data in out.items():
            data[~occupied(brain_mask, grids[name])] = 0
    return out


def bvals_bvecs() -> tuple[str, str]:
    """FSL-style .bval and .bvec text for the DWI series (b0 first)."""
    bvals = [0] + [B_VALUE] * len(DWI_DIRECTIONS)
    vecs = np.vstack([[0, 0, 0], DWI_DIRECTIONS / np.linalg.norm(DWI_DIRECTIONS, axis=1)[:, None]])
    bval = " ".join(str(b) for b in bvals) + "\n"
    bvec = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in vecs.T) + "\n"
    return bval, bvec
