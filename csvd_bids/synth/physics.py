"""The physics engine: images from tissue properties, signal equations and a computed field.

``--engine physics`` of ``python -m csvd_bids.synth``. Differences from the template engine
(:mod:`.contrasts`), which paints hand-set intensities:

- every voxel is a partial-volume mix of tissues (:mod:`.tissue_properties`) whose signal on
  each sequence comes from the subject's protocol (:mod:`.protocols`), so contrast ratios
  differ between subjects as between scanners;
- the gradient echo is complex: the dipole field of the susceptibility map
  (:mod:`.susceptibility`) dephases the signal within each acquired voxel (blooming, signal
  loss near the air sinuses); SWI protocols add the phase mask;
- mimics (:mod:`.mimics`) and atrophy (:func:`atrophy`) are added to the anatomy;
- rendering is on a grid ``oversample`` times finer than ``--resolution`` (0.5 mm at the
  default 1 mm) and acquisition integrates over each acquired voxel: in-plane blocks and,
  through the slice, the slice profile (the slab, with a quarter weight on each neighbouring
  render plane for the profile's tails) with optional gaps between slices;
- Rician noise at the protocol's SNR, a receive bias field (stronger at 3 T), an arbitrary
  gain per image, and an N/2 phase-encode ghost in some subjects;
- the head has a random pose in the scanner: every image's affine (and the truth's) is
  rotated by up to 12 degrees and moved by up to 15 mm;
- the DWI's 31 directions come from per-subject tensors (:mod:`.physics_diffusion`), averaged
  over each 2 mm voxel like its b0; ASL from a kinetic model (:mod:`.physics_asl`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from . import anatomy as A
from . import lesions as L
from . import mimics as M
from .contrasts import AcqGrid, to_grid
from .fields import add_rician_noise, bias_field, smooth_noise
from .motion import draw_motion, ras_matrix
from .protocols import Protocol, signals
from .susceptibility import dipole_field_ppm, phase_radians, swi_magnitude
from .tissue_properties import Tissue

DEFAULT_OVERSAMPLE = 2
HEAD_TISSUE = {
    A.AIR: "AIR",
    A.CSF_LAYER: "CSF",
    A.SKULL: "BONE",
    A.MARROW: "MARROW",
    A.SCALP: "SCALP",
}
CODE_TISSUE = {
    L.WMH: "WMH",
    L.CMB: "CMB",
    L.PVS: "PVS",
    L.LAC_CAVITY: "LAC_CAVITY",
    L.LAC_RIM: "LAC_RIM",
    L.RSSI: "RSSI",
    L.VEIN: "VEIN",
    M.CALCIFICATION: "CALCIFICATION",
    M.ARTERY: "ARTERY",
    M.AIR: "AIR",
}
SNR_FACTOR = {"T1w": 1.0, "FLAIR": 0.8, "T2w": 1.0, "T2starw": 0.8, "dwi": 0.7}
WM_LEVEL = (300.0, 1500.0)  # arbitrary scanner units of normal WM, drawn per image
TEXTURE = 0.025  # relative smooth tissue heterogeneity
MAX_POSE_DEG, MAX_POSE_MM = 12.0, 15.0
VISIBLE_CONTRAST = 0.5  # of a WMH's FLAIR contrast to normal WM: a visible WMH voxel


@dataclass(frozen=True)
class SliceGrid(AcqGrid):
    """An acquisition grid of ``factors = (f, f, t)`` render voxels per acquired voxel, with
    ``gap`` render planes skipped after every slice (``gap = 0``: a block grid)."""

    gap: int = 0


def slice_grid(in_plane: int, thickness: int, gap: int, shape, affine: np.ndarray) -> SliceGrid:
    spacing = thickness + gap
    scale = np.diag([in_plane, in_plane, spacing, 1.0])
    scale[:3, 3] = [(in_plane - 1) / 2.0, (in_plane - 1) / 2.0, (thickness - 1) / 2.0]
    n_slices = (shape[2] - thickness) // spacing + 1
    out_shape = (shape[0] // in_plane, shape[1] // in_plane, n_slices)
    return SliceGrid((in_plane, in_plane, thickness), out_shape, affine @ scale, gap)


def render_planes(mm: float, render_mm: float) -> int:
    """How many render planes (at least one) a length of ``mm`` spans."""
    return max(1, int(round(mm / render_mm)))


def physics_grids(
    render_shape,
    render_affine: np.ndarray,
    oversample: int,
    rng: np.random.Generator,
    flair_mm: tuple[float, float] | None,
    resolution: float,
) -> dict[str, SliceGrid]:
    """Each modality's grid: T1w and SWI at ``resolution`` (SWI with 2 mm slices), FLAIR 3-5 mm
    slices (or ``flair_mm``, contiguous), T2w 2-4 mm slices with a gap in half the subjects,
    DWI at 2 mm."""
    o, render_mm = oversample, resolution / oversample

    def planes(mm: float) -> int:
        return render_planes(mm, render_mm)

    flair_thickness = rng.uniform(*(flair_mm or (3.0, 5.0)))
    t2_gap = planes(rng.uniform(0.3, 1.0)) if rng.random() < 0.5 else 0
    args = (render_shape, render_affine)
    return {
        "T1w": slice_grid(o, o, 0, *args),
        "FLAIR": slice_grid(o, max(o, planes(flair_thickness)), 0, *args),
        "T2w": slice_grid(o, max(o, planes(rng.uniform(2.0, 4.0))), t2_gap, *args),
        "T2starw": slice_grid(o, max(o, planes(2.0)), 0, *args),
        "dwi": slice_grid(max(o, planes(2.0)), max(o, planes(2.0)), 0, *args),
    }


def acquire_volume(volume: np.ndarray, grid: SliceGrid) -> np.ndarray:
    """Integrate a render-grid volume (real or complex) over each acquired voxel: in-plane
    block mean, then through the slice the slab plus a quarter weight on each neighbour."""
    f, _, t = grid.factors
    nx, ny, nz = grid.shape
    plane = volume[: nx * f, : ny * f].reshape(nx, f, ny, f, -1).mean(axis=(1, 3))
    spacing = t + grid.gap
    depth = plane.shape[2]
    out = np.empty((nx, ny, nz), dtype=plane.dtype)
    for k in range(nz):
        lo = k * spacing
        total = plane[..., lo : lo + t].sum(axis=2)
        weight = float(t)
        for edge in (lo - 1, lo + t):
            if 0 <= edge < depth:
                total += 0.25 * plane[..., edge]
                weight += 0.25
        out[..., k] = total / weight
    return out


def acquire_stripped(
    volume: np.ndarray, grid: SliceGrid, brain_mask: np.ndarray | None
) -> np.ndarray:
    """:func:`acquire_volume` of the volume inside ``brain_mask`` (skull-stripped), or whole."""
    return acquire_volume(volume if brain_mask is None else volume * brain_mask, grid)


def random_pose(rng: np.random.Generator, centre_ras: np.ndarray) -> np.ndarray:
    """4x4 RAS transform: the head's pose, a rotation about ``centre_ras`` and a shift."""
    return ras_matrix(draw_motion(rng, MAX_POSE_DEG, MAX_POSE_MM, centre_ras))


def posed(grid: SliceGrid, pose: np.ndarray) -> SliceGrid:
    return SliceGrid(grid.factors, grid.shape, pose @ grid.affine, grid.gap)


def atrophy(anat: A.Anatomy, rng: np.random.Generator) -> None:
    """Enlarge the lateral ventricles by 0-5 mm and widen the sulci (0-40 % of the grey matter
    within 1 mm of sulcal CSF becomes CSF), in place, before regions and lesions."""
    grow_mm = rng.uniform(0.0, 5.0)
    widen = rng.uniform(0.0, 0.4)
    tissue = anat.gm + anat.wm
    if grow_mm > 0:
        ventricles = anat.brain_mask & (anat.dist_ventricles <= grow_mm)
        spare = ventricles & ~anat.ventricles
        anat.csf[spare] += tissue[spare]
        anat.gm[spare] = 0.0
        anat.wm[spare] = 0.0
        anat.ventricles = ventricles
        anat.dist_ventricles = ndi.distance_transform_edt(
            ~ventricles, sampling=anat.voxel_mm
        ).astype(np.float32)
    sulcal = anat.brain_mask & (anat.csf > 0.5) & ~anat.ventricles
    near = ndi.binary_dilation(sulcal, iterations=max(1, int(round(1.0 / anat.voxel_mm))))
    lost = np.where(near & ~anat.ventricles, widen * anat.gm, 0.0).astype(np.float32)
    anat.gm -= lost
    anat.csf += lost


def _tables(tissues: dict[str, Tissue], protocol: Protocol):
    """(signal per channel per tissue name, susceptibility per tissue name)."""
    sig = {name: signals(protocol, t) for name, t in tissues.items()}
    return sig, {name: t.chi for name, t in tissues.items()}


def _mix(anat: A.Anatomy, value: dict[str, float], texture: np.ndarray | None) -> np.ndarray:
    brain = anat.gm * value["GM"] + anat.wm * value["WM"]
    if texture is not None:
        brain *= texture
    image = brain + anat.csf * value["CSF"]
    head = np.array([value[HEAD_TISSUE[k]] for k in range(len(HEAD_TISSUE))], np.float32)
    image += anat.outside * head[anat.head]
    return image.astype(np.float32)


def _blend(image: np.ndarray, lesions: list[L.Lesion], value: dict[str, float]) -> None:
    table = np.array([value[CODE_TISSUE[c]] for c in range(len(CODE_TISSUE))], np.float32)
    flat = image.reshape(-1)
    for lesion in lesions:
        idx, w = lesion.index, lesion.weight
        flat[idx] = flat[idx] * (1.0 - w) + w * table[lesion.tissue]


def render(
    anat: A.Anatomy,
    lesions: list[L.Lesion],
    tissues: dict[str, Tissue],
    protocol: Protocol,
    channels: tuple[str, ...],
    texture: np.ndarray,
) -> dict[str, np.ndarray]:
    """Noise-free render-grid images of ``channels``; ``T2starw`` is complex (with phase)."""
    sig, chi = _tables(tissues, protocol)
    images = {}
    for name in channels:
        value = {tissue: s[name] for tissue, s in sig.items()}
        image = _mix(anat, value, texture)
        _blend(image, lesions, value)
        images[name] = image
    if "T2starw" in images:
        susceptibility = _mix(anat, chi, None)
        _blend(susceptibility, lesions, chi)
        field = dipole_field_ppm(susceptibility, anat.voxel_mm, outside=chi["AIR"])
        del susceptibility
        phase = phase_radians(field, protocol.field_t, protocol.gre_te)
        del field
        images["T2starw"] = images["T2starw"] * np.exp(1j * phase).astype(np.complex64)
    return images


def scanner(
    rng: np.random.Generator,
    images: list[np.ndarray],
    wm_signal: float,
    snr: float,
    protocol: Protocol,
) -> np.ndarray:
    """One series (one image, or the volumes of a DWI series): one gain and bias field, a
    ghost along the phase-encode axis, Rician noise; int16 like a scanner's DICOM."""
    gain = rng.uniform(*WM_LEVEL) / max(wm_signal, 1e-6)
    strength = 0.2 if protocol.field_t >= 2.0 else 0.1
    bias = bias_field(rng, images[0].shape, strength) * np.float32(gain)
    out = []
    for image in images:
        image = image * bias
        if protocol.ghosting > 0:
            image = image + protocol.ghosting * np.roll(image, image.shape[1] // 2, 1)
        noisy = add_rician_noise(rng, image, gain * wm_signal / snr)
        out.append(np.clip(np.rint(noisy), 0, np.iinfo(np.int16).max).astype(np.int16))
    return np.stack(out, -1) if len(out) > 1 else out[0]


def acquire(
    rng: np.random.Generator,
    images: dict[str, np.ndarray],
    grids: dict[str, SliceGrid],
    tissues: dict[str, Tissue],
    protocol: Protocol,
    brain_mask: np.ndarray | None,
    render_mm: float,
    dwi: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """int16 image of every modality in ``grids`` (``brain_mask``: skull-stripped; ``dwi``:
    the diffusion-weighted volumes on the DWI grid, :meth:`.DiffusionModel.render`)."""
    wm = signals(protocol, tissues["WM"])

    def integrate(name: str, volume: np.ndarray) -> np.ndarray:
        return acquire_stripped(volume, grids[name], brain_mask)

    out = {}
    for name in ("T1w", "FLAIR", "T2w", "T2starw"):
        if name not in grids:
            continue
        acquired = integrate(name, images[name])
        if name == "T2starw":
            voxel = render_mm * grids[name].factors[0]
            acquired = swi_magnitude(acquired, voxel) if protocol.swi else np.abs(acquired)
        snr = protocol.snr * SNR_FACTOR[name]
        out[name] = scanner(rng, [acquired], wm[name], snr, protocol)
    if "dwi" in grids:
        # block means like the diffusion-weighted volumes (:meth:`.DiffusionModel.render`),
        # so that b0 and b = 1000 see the same tissue
        volume = images["b0"] if brain_mask is None else images["b0"] * brain_mask
        volumes = [to_grid(volume, grids["dwi"]), *np.moveaxis(dwi, -1, 0)]
        out["dwi"] = scanner(rng, volumes, wm["b0"], protocol.snr * SNR_FACTOR["dwi"], protocol)
    if brain_mask is not None:
        for name, data in out.items():
            inside = acquire_volume(brain_mask.astype(np.float32), grids[name]) >= 0.5
            data[~inside] = 0
    return out


def visible_wmh(
    flair: np.ndarray,
    grid: SliceGrid,
    tissues: dict[str, Tissue],
    protocol: Protocol,
    brain_mask: np.ndarray | None,
) -> np.ndarray:
    """Where the acquired FLAIR (``grid``; noise-free, before bias and gain) shows a WMH: its
    signal at least halfway from normal WM's to a WMH's (``VISIBLE_CONTRAST``), the
    half-maximum edge a rater draws. A lesion filling half a voxel of normal WM reaches it; a
    lining that shares its voxel with CSF (dark on FLAIR) does not, however much it fills."""
    wm, wmh = (signals(protocol, tissues[name])["FLAIR"] for name in ("WM", "WMH"))
    return acquire_stripped(flair, grid, brain_mask) >= wm + VISIBLE_CONTRAST * (wmh - wm)


def tissue_texture(rng: np.random.Generator, anat: A.Anatomy) -> np.ndarray:
    return (1.0 + TEXTURE * smooth_noise(rng, anat.shape, anat.voxel_mm, 4.0)).astype(np.float32)
