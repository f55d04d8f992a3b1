"""Byte-reproducible file writers: NIfTI (gzip without name or time stamp), JSON, TSV, ITK
transforms."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """gzip level 1: a third of the time of the default level for ~15% larger files."""
    image = nib.Nifti1Image(data, affine)
    image.header.set_qform(affine, code=1)  # scanner space
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile("", "wb", 1, raw, mtime=0) as stream:
        stream.write(image.to_bytes())


def write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


def write_tsv(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
    lines = ["\t".join(columns)]
    lines += ["\t".join(str(row[c]) for c in columns) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_transform(path: Path, transform: sitk.Transform) -> None:
    """ITK text transform (parameters written with round-trip precision)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteTransform(transform, str(path))
