"""Writing the pipeline's float images: deflate only where it pays.

A bias-corrected head at 1 mm holds float32 values whose low bits are noise: deflate takes it
from 35 to 31 MB (about 11 %) for a second of one core at every write and 0.15 s at every
read, and a session writes about eight such images and reads them some thirty times. Such an
image is written as gzip without deflate ("stored" blocks): still a ``.nii.gz`` that every
NIfTI reader (nibabel, ITK, FSL, AFNI) opens as before, with the same header and voxels.
Masks, label maps and maps that are zero outside the brain compress several-fold and are
written as nibabel writes them.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
from nibabel.openers import Opener, gzip_open

# Stored when deflate would keep more than this share of the bytes (it keeps 0.89 of a head
# image and 0.2-0.4 of a brain-masked map; see the module docstring).
STORE_ABOVE = 0.85
_SAMPLES = 8  # spread over the file: a head image is zeros at its edges
_SAMPLE_BYTES = 1 << 18


def deflate_ratio(data: bytes) -> float:
    """The share of ``data``'s bytes that deflate (level 1, as nibabel writes) keeps, measured
    on _SAMPLES pieces spread over it."""
    step = max(len(data) // _SAMPLES, 1)
    pieces = [data[i : i + _SAMPLE_BYTES] for i in range(0, len(data), step)][:_SAMPLES]
    sampled = sum(len(p) for p in pieces)
    return sum(len(zlib.compress(p, 1)) for p in pieces) / max(sampled, 1)


def save_image(img: nib.Nifti1Image, path: str | Path) -> None:
    """``nib.save``, except that a ``.nii.gz`` whose data barely compress is written with
    stored gzip blocks (no deflate). Otherwise the bytes are nibabel's own (its gzip writer,
    level and header without a time stamp)."""
    path = Path(path)
    if path.suffix != ".gz":
        nib.save(img, path)
        return
    content = img.to_bytes()
    stored = deflate_ratio(content) > STORE_ABOVE
    level = 0 if stored else Opener.default_compresslevel
    with gzip_open(str(path), "wb", compresslevel=level) as stream:
        stream.write(content)
