"""Fixed-size T1w patches of the basal-ganglia regions, in the template's orientation, for the
group level to learn from (issue 18: the network of Song et al. 2025 learns FA and CBF from
T1w patches of these regions).

Each patch is a ``PATCH_VOXELS``-cube of ``PATCH_MM`` voxels on a grid of the template (MNI,
RAS axes) centred on the region's centroid in the atlas, one per region and hemisphere, so the
same anatomy sits at the same place in every subject's patch. The subject's T1w is sampled onto
it through the template registration's affine part (linear interpolation; an affine keeps each
subject's own shape, which the network is to read, where the deformable part would warp it
away). Intensities: z-scored over the subject's brain mask (mean 0, SD 1 in the brain), 0
outside the image.
"""

from __future__ import annotations

import functools

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from csvd_bids.preproc.atlas import subcortical_structures
from csvd_bids.preproc.images import sitk_to_array, to_sitk
from csvd_bids.quant.basal_ganglia import HEMISPHERES, ROI_STRUCTURES, STRUCTURE_LABEL

PATCH_VOXELS = 32
PATCH_MM = 1.5  # a 48 mm cube: the putamen (about 50 mm long) and its surroundings


@functools.lru_cache(maxsize=1)
def atlas_centres() -> dict[str, np.ndarray]:
    """``putamen_left`` -> the region's centroid in template RAS mm (x < 0: left)."""
    return centres_of(*subcortical_structures())


def centres_of(structures: np.ndarray, affine: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`atlas_centres` of an atlas structure map and its affine (e.g. the run's template
    cache, ``template_cache.read_atlas_structures``: the same voxels of these regions)."""
    centres = {}
    for name in ROI_STRUCTURES:
        voxels = np.argwhere(structures == STRUCTURE_LABEL[name])
        ras = voxels @ affine[:3, :3].T + affine[:3, 3]
        for side in HEMISPHERES:
            chosen = ras[:, 0] < 0 if side == "left" else ras[:, 0] >= 0
            centres[f"{name}_{side}"] = ras[chosen].mean(axis=0)
    return centres


def patch_grid(centre_ras: np.ndarray) -> nib.Nifti1Image:
    """An empty patch on the template grid, centred on ``centre_ras``."""
    affine = np.diag([PATCH_MM, PATCH_MM, PATCH_MM, 1.0])
    affine[:3, 3] = centre_ras - PATCH_MM * (PATCH_VOXELS - 1) / 2.0
    shape = (PATCH_VOXELS,) * 3
    return nib.Nifti1Image(np.zeros(shape, np.float32), affine)


def roi_patches(
    t1w: nib.Nifti1Image,
    brain_mask: np.ndarray,
    affine_file: str,
    centres: dict[str, np.ndarray] | None = None,
) -> dict[str, nib.Nifti1Image]:
    """roi name -> its z-scored T1w patch (module docstring); ``centres``: :func:`centres_of`
    the run's cached atlas (default: :func:`atlas_centres`, derived from the atlas)."""
    data = np.asanyarray(t1w.dataobj, dtype=np.float32)
    inside = data[brain_mask > 0]
    mean, sd = float(inside.mean()), float(inside.std()) or 1.0
    normalised = to_sitk(nib.Nifti1Image((data - mean) / sd, t1w.affine))
    # the file maps subject points to template points; a patch samples the other way
    to_subject = sitk.ReadTransform(str(affine_file)).GetInverse()
    patches = {}
    for roi, centre in (centres or atlas_centres()).items():
        grid = patch_grid(centre)
        sampled = sitk.Resample(
            normalised, to_sitk(grid), to_subject, sitk.sitkLinear, 0.0, sitk.sitkFloat32
        )
        patches[roi] = nib.Nifti1Image(sitk_to_array(sampled).astype(np.float32), grid.affine)
    return patches


PATCH_SIDECAR = {
    "Description": "T1w patch of a basal-ganglia region, template orientation, z-scored over "
    "the brain",
    "PatchVoxels": PATCH_VOXELS,
    "VoxelSize_mm": PATCH_MM,
    "Alignment": "affine (template registration's affine part), linear interpolation",
    "Normalisation": "(T1w - brain mean) / brain SD",
}
