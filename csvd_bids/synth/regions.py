"""Anatomical regions used to place lesions and to name their location.

Rules (``x, y, z`` are the template/MNI coordinates of a voxel, carried through the
subject's deformation; distances are measured in the subject's own space):

- tissue: brain voxel with GM + WM fraction >= 0.6 (no CSF-filled voxel hosts a lesion).
- WM: WM fraction >= 0.5.
- basal ganglia (BG): tissue with 10 <= |x| <= 30, -5 <= y <= 20, -5 <= z <= 15 mm.
- thalamus: tissue with 3 <= |x| <= 20, -35 <= y <= -8, -2 <= z <= 16 mm.
- infratentorial: tissue in the brainstem box (|x| <= 10, -40 <= y <= -15, -45 <= z <= -12)
  or the cerebellum box (z <= -28, y <= -42); conservative, so no temporal lobe is included.
- periventricular: within 10 mm of the lateral ventricles (subject distance map).
- deep WM: WM farther than 10 mm from the lateral ventricles, supratentorial (z > -10).
- centrum semiovale (CSO): WM above the top of the lateral ventricles (z >= 26 mm) and
  at most 60 mm, excluding the periventricular band.
- lobar (cortex + juxtacortical): tissue with GM fraction >= 0.5 or WM within 3 mm of
  cortex, outside BG/thalamus/infratentorial boxes and farther than 15 mm from the ventricles.
- cortex: tissue with GM fraction >= 0.5 outside the BG, thalamus and infratentorial boxes
  (where an RSSI may not reach).
- lobe of a lobar point: occipital y < -70; temporal z < 0 and |x| > 30; parietal
  y < -25 and z > 0; frontal otherwise (coarse, for the ``lobe`` column only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .anatomy import Anatomy

PV_DISTANCE_MM = 10.0


@dataclass
class Regions:
    tissue: np.ndarray
    wm: np.ndarray
    basal_ganglia: np.ndarray
    thalamus: np.ndarray
    infratentorial: np.ndarray
    periventricular: np.ndarray
    deep_wm: np.ndarray
    cso: np.ndarray
    lobar: np.ndarray
    cortex: np.ndarray  # cortical grey matter (not the deep nuclei or the posterior fossa)


def _box(mni: np.ndarray, x=(-999, 999), y=(-999, 999), z=(-999, 999), abs_x=False):
    xs = np.abs(mni[0]) if abs_x else mni[0]
    return (
        (xs >= x[0]) & (xs <= x[1])
        & (mni[1] >= y[0]) & (mni[1] <= y[1])
        & (mni[2] >= z[0]) & (mni[2] <= z[1])
    )  # fmt: skip


def make_regions(anat: Anatomy) -> Regions:
    mni = anat.mni
    tissue = anat.brain_mask & (anat.gm + anat.wm >= 0.6)
    wm = tissue & (anat.wm >= 0.5)
    bg = tissue & _box(mni, (10, 30), (-5, 20), (-5, 15), abs_x=True)
    thal = tissue & _box(mni, (3, 20), (-35, -8), (-2, 16), abs_x=True)
    infra = tissue & (
        _box(mni, (0, 10), (-40, -15), (-45, -12), abs_x=True)
        | _box(mni, y=(-999, -42), z=(-999, -28))
    )
    pv = tissue & (anat.dist_ventricles <= PV_DISTANCE_MM)
    supra = mni[2] > -10
    deep_wm = wm & supra & (anat.dist_ventricles > PV_DISTANCE_MM)
    cso = wm & ~pv & (mni[2] >= 26) & (mni[2] <= 60)
    cortex = tissue & (anat.gm >= 0.5)
    near_cortex = ndi.distance_transform_edt(~cortex, sampling=anat.voxel_mm) <= 3.0
    lobar = (
        (cortex | (wm & near_cortex))
        & ~bg & ~thal & ~infra & supra
        & (anat.dist_ventricles > 15.0)
    )  # fmt: skip
    cortical = cortex & ~bg & ~thal & ~infra
    return Regions(tissue, wm, bg, thal, infra, pv, deep_wm, cso, lobar, cortical)


def lobe(x: float, y: float, z: float) -> str:
    """Coarse lobe of an MNI point (see module docstring)."""
    if y < -70:
        return "occipital"
    if z < 0 and abs(x) > 30:
        return "temporal"
    if y < -25 and z > 0:
        return "parietal"
    return "frontal"
