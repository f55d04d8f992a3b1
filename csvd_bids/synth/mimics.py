"""Anatomy that fools detectors on real scans, for the physics engine (never truth).

Placed before the lesions (through the same :class:`~.lesions.Planter` where they are in the
brain, so lesions keep a voxel away from them), at MNI positions carried through the
subject's deformation:

- veins: medullary veins running out from the ventricles (as in the template engine, more of
  them), the paired internal cerebral veins and thalamostriate veins, cortical (pial) veins on
  the brain surface and in the sulci, and the superior sagittal sinus;
- calcifications (diamagnetic): bilateral globus pallidus (35 % of subjects), choroid plexus
  in the atria (60 %), pineal (50 %), dentate nuclei (20 %);
- flow voids: the basilar artery, both internal carotids and the first segment of both middle
  cerebral arteries;
- air: frontal and sphenoid sinuses and mastoid cells inside the skull (signal loss and
  field next to the orbitofrontal and temporal cortex).

Each is a :class:`~.lesions.Lesion` whose marker (``VEIN``, ``CALC``, ``ARTERY``, ``AIR``) is
no truth label, with the tissue codes below (indices of :mod:`.physics`'s tissue list).
"""

from __future__ import annotations

import numpy as np

from . import anatomy as A
from . import shapes
from .lesions import ANATOMY_SESSIONS, VEIN, Lesion, Planter, medullary_veins

CALCIFICATION, ARTERY, AIR = 7, 8, 9  # after lesions.VEIN

CALCIFICATION_SITES = {  # MNI centre (mm), radius range (mm), probability, bilateral
    "pallidum": ((20.0, -4.0, -1.0), (1.5, 4.0), 0.35, True),
    "choroid_plexus": ((27.0, -40.0, 15.0), (2.0, 4.0), 0.6, True),
    "pineal": ((0.0, -30.0, 3.0), (2.0, 3.5), 0.5, False),
    "dentate": ((15.0, -57.0, -33.0), (2.0, 4.5), 0.2, True),
}
ARTERIES = (  # (start, end) MNI mm, radius mm; x mirrored for the paired ones
    ((0.0, -16.0, -45.0), (0.0, -10.0, -16.0), 1.5, False),  # basilar
    ((14.0, 0.0, -40.0), (13.0, 2.0, -16.0), 2.0, True),  # internal carotid
    ((12.0, 2.0, -15.0), (38.0, 5.0, -10.0), 1.3, True),  # MCA M1
)
DEEP_VEINS = (
    ((2.5, -2.0, 17.0), (2.5, -36.0, 8.0), 1.0, True),  # internal cerebral veins
    ((12.0, 8.0, 14.0), (6.0, -12.0, 17.0), 0.7, True),  # thalamostriate veins
)
AIR_SINUSES = (  # MNI centre, radii (mm), paired
    ((0.0, 66.0, -10.0), (12.0, 6.0, 9.0), False),  # frontal
    ((0.0, 12.0, -38.0), (10.0, 10.0, 8.0), False),  # sphenoid
    ((46.0, -34.0, -42.0), (8.0, 12.0, 9.0), True),  # mastoid cells
)


def voxel_at(anat: A.Anatomy, xyz: tuple[float, float, float]) -> np.ndarray:
    """Working-grid voxel (float ijk) whose MNI coordinate is nearest ``xyz``."""
    step = max(1, int(round(4.0 / anat.voxel_mm)))
    coarse = anat.mni[:, ::step, ::step, ::step]
    d2 = sum((coarse[a] - xyz[a]) ** 2 for a in range(3))
    ijk = np.array(np.unravel_index(np.argmin(d2), d2.shape)) * step
    lo = np.maximum(ijk - step, 0)
    hi = np.minimum(ijk + step + 1, anat.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    local = sum((anat.mni[(a, *box)] - xyz[a]) ** 2 for a in range(3))
    return lo + np.array(np.unravel_index(np.argmin(local), local.shape), dtype=float)


def _sites(xyz, paired: bool) -> list[tuple[float, float, float]]:
    return [xyz, (-xyz[0], *xyz[1:])] if paired else [xyz]


def _mimic(marker: str, code: int, ijk: np.ndarray, shape, weight: float = 1.0) -> Lesion:
    idx = np.ravel_multi_index(ijk.T, shape)
    idx = np.unique(idx)
    n = len(idx)
    return Lesion(
        marker, "n/a", ANATOMY_SESSIONS, idx, np.full(n, code, np.int8), np.full(n, weight, "f4")
    )


def _tube_between(anat, start, end, radius) -> np.ndarray:
    a, b = voxel_at(anat, start), voxel_at(anat, end)
    ijk, _ = shapes.tube(a, b, radius, anat.voxel_mm, anat.shape)
    return ijk


def _claim(p: Planter, mimic: Lesion) -> None:
    ijk = np.stack(np.unravel_index(mimic.index, p.shape), axis=1)
    p.claim(ijk, mimic.index, lesion=False)


def calcifications(p: Planter) -> list[Lesion]:
    out = []
    for centre, radii, probability, paired in CALCIFICATION_SITES.values():
        if p.rng.random() >= probability:
            continue
        radius = p.rng.uniform(*radii)
        for xyz in _sites(centre, paired):
            c = voxel_at(p.anat, xyz) + p.rng.normal(0.0, 1.0 / p.anat.voxel_mm, 3)
            r = radius * p.rng.uniform(0.8, 1.2, 3)
            ijk, _ = shapes.ellipsoid(c, r, shapes.random_rotation(p.rng), p.anat.voxel_mm, p.shape)
            out.append(_mimic("CALC", CALCIFICATION, ijk, p.shape))
    return out


def _vessels(p: Planter, table, marker: str, code: int) -> list[Lesion]:
    out = []
    for start, end, radius, paired in table:
        for s, e in zip(_sites(start, paired), _sites(end, paired), strict=True):
            ijk = _tube_between(p.anat, s, e, radius * p.rng.uniform(0.85, 1.15))
            out.append(_mimic(marker, code, ijk, p.shape))
    return out


def pial_veins(p: Planter, n: int) -> list[Lesion]:
    """Straight vein segments on the upper convexity, kept to the CSF around and in the sulci."""
    anat = p.anat
    shell = (anat.head == A.CSF_LAYER) & ~anat.brain_mask
    sulcal = anat.brain_mask & (anat.csf > 0.5) & ~anat.ventricles
    allowed = shell | sulcal
    starts = np.flatnonzero(shell & (anat.mni[2] > 10.0))
    out = []
    for _ in range(n):
        c = np.array(np.unravel_index(p.rng.choice(starts), anat.shape), dtype=float)
        direction = shapes.random_rotation(p.rng)[:, 0]
        half = p.rng.uniform(10.0, 20.0) / anat.voxel_mm * direction
        ijk, _ = shapes.tube(c - half, c + half, p.rng.uniform(0.5, 1.1), anat.voxel_mm, p.shape)
        ijk = ijk[allowed[tuple(ijk.T)]]
        if len(ijk):
            out.append(_mimic("VEIN", VEIN, ijk, p.shape))
    return out


def sagittal_sinus(anat: A.Anatomy) -> Lesion:
    """A 3 mm-radius vessel following the top of the brain along the midline, 3 mm above it."""
    i0 = int(round(voxel_at(anat, (0.0, 0.0, 40.0))[0]))
    plane = anat.brain_mask[i0]
    rows = [j for j in range(plane.shape[0]) if plane[j].any() and -90 < anat.mni[1, i0, j, 0] < 60]
    points = [np.array([i0, j, np.flatnonzero(plane[j]).max() + 3.0 / anat.voxel_mm]) for j in rows]
    pieces = [
        shapes.tube(a, b, 3.0, anat.voxel_mm, anat.shape)[0]
        for a, b in zip(points[:-1:4], points[4::4], strict=False)
    ]
    ijk = np.vstack(pieces)
    ijk = ijk[~anat.brain_mask[tuple(ijk.T)]]
    return _mimic("VEIN", VEIN, ijk, anat.shape)


def air_sinuses(anat: A.Anatomy, rng: np.random.Generator) -> list[Lesion]:
    bone = ~anat.brain_mask & np.isin(anat.head, (A.SKULL, A.MARROW))
    out = []
    for centre, radii, paired in AIR_SINUSES:
        for xyz in _sites(centre, paired):
            r = np.array(radii) * rng.uniform(0.7, 1.2, 3)
            ijk, _ = shapes.ellipsoid(voxel_at(anat, xyz), r, np.eye(3), anat.voxel_mm, anat.shape)
            ijk = ijk[bone[tuple(ijk.T)]]
            if len(ijk):
                out.append(_mimic("AIR", AIR, ijk, anat.shape))
    return out


def plant_mimics(p: Planter) -> list[Lesion]:
    """Every mimic of one subject (module docstring); claims the in-brain ones in ``p``."""
    found = [
        *medullary_veins(p, int(p.rng.integers(5, 25))),  # on top of the template engine's 10
        *calcifications(p),
        *_vessels(p, DEEP_VEINS, "VEIN", VEIN),
        *_vessels(p, ARTERIES, "ARTERY", ARTERY),
        *pial_veins(p, int(p.rng.integers(8, 20))),
        sagittal_sinus(p.anat),
        *air_sinuses(p.anat, p.rng),
    ]
    found = [m for m in found if len(m.index)]
    for mimic in found:
        _claim(p, mimic)
    return found
