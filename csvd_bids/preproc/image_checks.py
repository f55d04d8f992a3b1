"""Checks on an input image that nibabel lets through: each raises InputImageError naming the file.

They run when the run is planned (:func:`csvd_bids.preproc.images.check_input_image`), so that a
bad image stops its session before the graph starts, instead of failing minutes later inside ITK
with a message that names no file or, worse, running on to wrong numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from csvd_bids.errors import InputImageError

# ITK's recursive Gaussian, used by the registration's downsampling and pyramid, refuses an axis
# of fewer than 4 voxels ("requires a minimum of four pixels along the dimension"), and N4 fails
# on a single slice (zero spacing). A thinner image is a slice or a slab, not a brain volume.
MIN_VOXELS_PER_AXIS = 4
# A float magnitude image may hold small negatives after interpolation (spline or sinc undershoot
# at the edge of the head or brain). A signed/unsigned mix-up, or data that is not a magnitude
# image, gives many, some about as deep as the brightest tissue is bright.
MAX_NEGATIVE_FRACTION = 0.01  # of the non-zero voxels
MAX_NEGATIVE_DEPTH = 0.2  # |most negative value| as a fraction of the largest value


def check_exists(path: Path) -> None:
    """A plain 'does not exist' misleads for a git-annex / DataLad file whose content is absent:
    the link is there (BIDS indexing finds it), the object it points to is not."""
    if path.is_symlink() and not path.exists():
        raise InputImageError(
            str(path),
            f"a broken symbolic link: its target {os.readlink(path)} is absent (content not "
            f"present; in a DataLad or git-annex dataset run `datalad get {path}` or "
            f"`git annex get {path}`)",
        )
    if not path.is_file():
        raise InputImageError(str(path), "file does not exist")


def check_extent(path: Path, shape: tuple[int, ...]) -> None:
    """At least MIN_VOXELS_PER_AXIS voxels along each of the three spatial axes."""
    for axis, size in enumerate(shape[:3]):
        if size < MIN_VOXELS_PER_AXIS:
            raise InputImageError(
                str(path),
                f"{size} voxel(s) along axis {axis} (shape {shape}): a single slice or a thin "
                f"slab, not a 3D volume; at least {MIN_VOXELS_PER_AXIS} voxels are needed along "
                "every axis",
            )


def check_voxel_sizes(path: Path, img: nib.spatialimages.SpatialImage) -> None:
    """pixdim[1:4] as written in the file: nibabel's loader silently reads 0 as 1 mm and a
    negative size as its absolute value, so read the header again without those fixes."""
    if not isinstance(img.header, nib.Nifti1Header):  # Nifti2Header is a subclass
        return
    holder = img.file_map.get("header", img.file_map["image"])  # .hdr of a pair, or the .nii
    with ImageOpener(holder.filename) as stream:
        raw = type(img.header).from_fileobj(stream, check=False)
    sizes = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
    if not np.all(np.isfinite(sizes) & (sizes > 0)):
        shown = ", ".join(f"{s:g}" for s in sizes)
        raise InputImageError(
            str(path),
            f"voxel sizes ({shown}) in the header (pixdim[1:4]): each must be a positive, "
            "finite number of mm (nibabel would silently read 0 as 1 mm and a negative size as "
            "its absolute value)",
        )


def read_values(path: Path, img: nib.spatialimages.SpatialImage, expect_4d: bool) -> np.ndarray:
    """The scaled data of a 3D image, or of a 4D series' first volume only (cheap: with gzip,
    only the start of the stream is decompressed; in a DWI series it is usually the b0)."""
    try:
        return img.dataobj[..., 0] if expect_4d else np.asanyarray(img.dataobj)
    except Exception as exc:  # a bad data block raises whatever numpy or zlib raises
        raise InputImageError(str(path), f"cannot read the image data ({exc})") from exc


def check_values(path: Path, data: np.ndarray, stored: np.dtype) -> None:
    """Finite voxels whose values differ, and no sign that the intensities were wrapped to
    negative. ``stored``: the on-disk data type (the header's), ``data``: the scaled values."""
    finite = data[np.isfinite(data)] if data.dtype.kind == "f" else data.ravel()
    if finite.size == 0:
        raise InputImageError(str(path), "no finite voxel values (every voxel is NaN or infinite)")
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        raise InputImageError(
            str(path), f"constant image (every voxel has the same value, {low:g})"
        )
    if low < 0:
        check_negatives(path, finite, np.dtype(stored), low, high)


def check_negatives(
    path: Path, finite: np.ndarray, stored: np.dtype, low: float, high: float
) -> None:
    """A magnitude image is >= 0. Stored as a signed integer, deep negatives (beyond a fifth of
    the maximum) mean the bright end wrapped round (unsigned data written as signed): the
    pipeline would run and report nonsense volumes; a few shallow ones are a converter's or an
    interpolation's noise. Stored as float, only many deep negatives mean that: shallow ones,
    however many, are interpolation undershoot (a spline-resampled skull-stripped image: a
    third of its non-zero voxels, down to ~10 % of the maximum), which the pipeline handles."""
    negative = int(np.count_nonzero(finite < 0))
    deep = -low > MAX_NEGATIVE_DEPTH * high  # a wrapped bright voxel is as deep as the top
    if stored.kind == "i" and deep:
        raise InputImageError(
            str(path),
            f"negative values in a magnitude image stored as {stored.name} ({negative} voxels, "
            f"down to {low:g}): probably unsigned data written as signed; convert it",
        )
    fraction = negative / max(int(np.count_nonzero(finite)), 1)
    if fraction > MAX_NEGATIVE_FRACTION and deep:
        raise InputImageError(
            str(path),
            f"negative values in a magnitude image stored as {stored.name} "
            f"({100 * fraction:.1f} % of the non-zero voxels, down to {low:g} against a maximum "
            f"of {high:g}): probably signed/unsigned data mixed up, or not a magnitude image; "
            "convert it",
        )
