"""Known rigid misalignments between the T1w and the other acquisitions of a session.

A misaligned acquisition keeps its voxel data; only its affine changes, as if the scanner had
placed the slab elsewhere relative to the head. The motion is an ITK ``Euler3DTransform`` about
the brain's centre: rotation angles (radians) about the x, y and z axes and a translation of
that centre, in ITK's LPS physical space. It maps T1w physical points to the physical points of
the same anatomy in the moved image, which is the convention of the pipeline's
``from-<SUFFIX>_to-T1w_mode-image_xfm.txt`` files (what SimpleITK's Resample needs).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk

from .anatomy import Anatomy
from .contrasts import AcqGrid

# nibabel's world is RAS, ITK's is LPS: flip the first two axes.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
# every modality but the reference T1w (ASL last: the others' draws stay what they were)
MOVED = ("FLAIR", "T2w", "T2starw", "dwi", "asl")


def brain_centre(anat: Anatomy) -> np.ndarray:
    """Centroid of the true brain mask in world (RAS) mm: the pivot of the motions."""
    return anat.affine[:3, :3] @ np.argwhere(anat.brain_mask).mean(axis=0) + anat.affine[:3, 3]


def draw_motion(
    rng: np.random.Generator, degrees: float, mm: float, centre_ras: np.ndarray
) -> sitk.Euler3DTransform:
    """Angles uniform in [-degrees, degrees] per axis, translation uniform in [-mm, mm] per axis."""
    angles = np.deg2rad(rng.uniform(-degrees, degrees, 3))
    translation = rng.uniform(-mm, mm, 3)
    centre = RAS_TO_LPS[:3, :3] @ centre_ras
    return sitk.Euler3DTransform(tuple(centre), *angles, tuple(translation))


def ras_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 RAS matrix of a linear ITK transform, from the images of the origin and unit axes."""
    basis = np.vstack([np.zeros(3), np.eye(3)])
    moved = (
        np.array([transform.TransformPoint(tuple(RAS_TO_LPS[:3, :3] @ p)) for p in basis])
        @ RAS_TO_LPS[:3, :3]
    )
    matrix = np.eye(4)
    matrix[:3, 3] = moved[0]
    matrix[:3, :3] = (moved[1:] - moved[0]).T
    return matrix


def misalign_grids(
    rng: np.random.Generator,
    grids: dict[str, AcqGrid],
    degrees: float,
    mm: float,
    centre_ras: np.ndarray,
) -> tuple[dict[str, AcqGrid], dict[str, sitk.Euler3DTransform]]:
    """Grids of one session with every non-T1w slab moved; and the truth transforms (of the
    modalities in ``grids``; every motion of ``MOVED`` is drawn, in its order)."""
    motions = {name: draw_motion(rng, degrees, mm, centre_ras) for name in MOVED}
    motions = {name: motion for name, motion in motions.items() if name in grids}
    moved = {
        name: dataclasses.replace(grid, affine=ras_matrix(motions[name]) @ grid.affine)
        if name in motions
        else grid
        for name, grid in grids.items()
    }
    return moved, motions
