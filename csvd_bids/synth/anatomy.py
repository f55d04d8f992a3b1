"""Subject anatomy: the ICBM152 2009c template, randomly deformed, inside a synthetic head.

The template (brain-only T1 and GM/WM probability maps) ships inside the nilearn wheel, so
nothing is downloaded. Each subject gets its own smooth random displacement field plus a
global affine of a few percent; the sessions of one subject share it. The head around the
brain (CSF layer, skull with marrow, scalp) is built from the distance to the brain so that
brain extraction has something to remove.

Everything lives on the *working grid*: the template field of view at ``resolution`` mm,
which is also the T1w acquisition grid and the grid of the truth masks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import nilearn
import numpy as np
from scipy import ndimage as ndi

from .fields import smooth_noise

TEMPLATE_DIR = os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data")
TEMPLATE_PATTERN = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"

# Head classes outside the brain, as distance bands (mm from the brain surface, jittered).
AIR, CSF_LAYER, SKULL, MARROW, SCALP = range(5)
HEAD_BANDS_MM = ((CSF_LAYER, 2.5), (SKULL, 4.5), (MARROW, 7.0), (SKULL, 8.5), (SCALP, 14.0))


@dataclass(frozen=True)
class Template:
    affine: np.ndarray  # template grid (1 mm)
    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    ventricles: np.ndarray  # lateral ventricles, as float for linear warping


@dataclass
class Anatomy:
    affine: np.ndarray  # working grid = T1w grid = truth grid
    voxel_mm: float
    gm: np.ndarray  # tissue fractions, float32, sum with csf to the brain fraction
    wm: np.ndarray
    csf: np.ndarray
    outside: np.ndarray  # fraction of each voxel that belongs to the head band, not the brain
    brain_mask: np.ndarray  # bool, the true brain mask
    ventricles: np.ndarray  # bool, lateral ventricles
    dist_ventricles: np.ndarray  # mm
    head: np.ndarray  # int8 head class (AIR ... SCALP) of the non-brain part of a voxel
    head_texture: np.ndarray  # multiplicative texture of skull/marrow/scalp
    mni: np.ndarray  # (3, *shape) template (MNI) coordinate of each voxel, mm

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.brain_mask.shape


def _load(name: str) -> nib.Nifti1Image:
    return nib.load(os.path.join(TEMPLATE_DIR, TEMPLATE_PATTERN.format(name)))


def _lateral_ventricles(brain: np.ndarray, gm: np.ndarray, wm: np.ndarray, affine) -> np.ndarray:
    """Large CSF components in a central box; the midline (3rd ventricle, septum) is cut."""
    csf = brain & (1.0 - gm - wm > 0.5)
    ijk = np.indices(brain.shape, sparse=True)
    x, y, z = (affine[a, a] * ijk[a] + affine[a, 3] for a in range(3))
    box = (np.abs(x) >= 3) & (np.abs(x) < 35) & (y > -50) & (y < 35) & (z > -5) & (z < 35)
    labels, _ = ndi.label(csf & box)
    sizes = np.bincount(labels.ravel())
    keep = np.flatnonzero(sizes > 2000)
    return np.isin(labels, keep[keep > 0])


@lru_cache(maxsize=4)
def load_template(resolution: float) -> Template:
    """Template maps in [0, 1], pre-smoothed so that sampling at ``resolution`` does not alias."""
    t1 = _load("t1")
    gm = _load("gm").get_fdata(dtype=np.float32) / 255.0
    wm = _load("wm").get_fdata(dtype=np.float32) / 255.0
    brain = t1.get_fdata(dtype=np.float32) > 0
    vent = _lateral_ventricles(brain, gm, wm, t1.affine).astype(np.float32)
    maps = [gm, wm, brain.astype(np.float32), vent]
    if resolution > 1.0:
        sigma = 0.42 * (resolution - 1.0) + 0.1
        maps = [ndi.gaussian_filter(m, sigma) for m in maps]
    return Template(t1.affine, *maps)


def working_grid(resolution: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the template field of view sampled at ``resolution`` mm."""
    t1 = _load("t1")
    shape = tuple(int(round(n / resolution)) for n in t1.shape)
    affine = np.diag([resolution, resolution, resolution, 1.0])
    # keep the outer edge of the field of view: first voxel centre half a voxel inside it
    affine[:3, 3] = t1.affine[:3, 3] - 0.5 + resolution / 2.0
    return shape, affine


def _template_coordinates(
    rng: np.random.Generator, shape, affine: np.ndarray, resolution: float
) -> np.ndarray:
    """MNI coordinate of each working voxel: random affine about the brain centre + warp."""
    centre = np.array([0.0, -18.0, 18.0])
    scale = 1.0 + np.clip(rng.normal(0.0, 0.03, 3), -0.07, 0.07)
    angles = np.deg2rad(rng.normal(0.0, 2.0, 3))
    rot = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        a, b = [i for i in range(3) if i != axis]
        r = np.eye(3)
        r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
        rot = rot @ r
    matrix = rot @ np.diag(scale)
    ijk = np.indices(shape, sparse=True)
    world = [affine[a, a] * ijk[a] + affine[a, 3] - centre[a] for a in range(3)]
    coords = np.empty((3, *shape), dtype=np.float32)
    for a in range(3):
        amplitude = rng.uniform(1.5, 3.5)  # mm of smooth non-linear displacement
        warp = amplitude * smooth_noise(rng, shape, resolution, 35.0)
        coords[a] = centre[a] + sum(matrix[a, b] * world[b] for b in range(3)) + warp
    return coords


def _warp(volume: np.ndarray, index_coords: np.ndarray) -> np.ndarray:
    return ndi.map_coordinates(volume, index_coords, order=1, mode="constant", cval=0.0)


def _head(
    rng: np.random.Generator, brain_mask: np.ndarray, resolution: float
) -> tuple[np.ndarray, np.ndarray]:
    """Head class and texture from the (jittered) distance to the brain surface.

    The skull follows the brain *closed* over 12 mm, so the gaps between the temporal lobes,
    brainstem and cerebellum fill with skull base instead of air.
    """
    edt = ndi.distance_transform_edt
    jitter = 1.2 * smooth_noise(rng, brain_mask.shape, resolution, 25.0)
    dist_brain = edt(~brain_mask, sampling=resolution).astype(np.float32)
    closed = edt(dist_brain <= 25.0, sampling=resolution) > 25.0  # closing by distances
    dist = edt(~closed, sampling=resolution).astype(np.float32) + jitter
    head = np.full(brain_mask.shape, AIR, dtype=np.int8)
    lower = -np.inf
    for cls, upper in HEAD_BANDS_MM:
        head[(dist > lower) & (dist <= upper)] = cls
        lower = upper
    head[closed & (dist_brain + jitter > HEAD_BANDS_MM[0][1])] = SKULL  # skull base
    head[dist_brain + jitter <= HEAD_BANDS_MM[0][1]] = CSF_LAYER
    head[brain_mask] = CSF_LAYER  # non-brain part of a brain-edge voxel is CSF
    texture = 1.0 + 0.12 * smooth_noise(rng, brain_mask.shape, resolution, 6.0)
    return head, texture.astype(np.float32)


def make_anatomy(rng: np.random.Generator, resolution: float) -> Anatomy:
    """One subject's anatomy on the working grid."""
    template = load_template(resolution)
    shape, affine = working_grid(resolution)
    mni = _template_coordinates(rng, shape, affine, resolution)
    inv = np.linalg.inv(template.affine)
    index = np.empty_like(mni)
    for a in range(3):  # template affine is diagonal: world -> index per axis
        index[a] = inv[a, a] * mni[a] + inv[a, 3]
    brain = np.clip(_warp(template.brain, index), 0.0, 1.0)
    gm = np.minimum(np.clip(_warp(template.gm, index), 0.0, 1.0), brain)
    wm = np.minimum(np.clip(_warp(template.wm, index), 0.0, 1.0), brain - gm)
    ventricles = _warp(template.ventricles, index) > 0.5
    del index
    brain_mask = brain > 0.5
    ventricles &= brain_mask
    head, texture = _head(rng, brain_mask, resolution)
    return Anatomy(
        affine=affine,
        voxel_mm=resolution,
        gm=gm,
        wm=wm,
        csf=brain - gm - wm,
        outside=1.0 - brain,
        brain_mask=brain_mask,
        ventricles=ventricles,
        dist_ventricles=ndi.distance_transform_edt(~ventricles, sampling=resolution).astype(
            np.float32
        ),
        head=head,
        head_texture=texture,
        mni=mni,
    )
