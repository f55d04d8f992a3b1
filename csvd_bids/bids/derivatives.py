"""BIDS-Derivatives names, sidecars and atomic writes.

Names are built from an explicit entity order (pybids' build_path silently drops entities it
has no pattern for): source entities, then space, seg, res, label, desc, then the suffix.
Every file is written under a hidden temporary name in its final folder and renamed into
place, so a crash never leaves a half-written output.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import nibabel as nib
import pandas as pd

from csvd_bids import __version__

ENTITY_ORDER: tuple[str, ...] = (
    "sub",
    "ses",
    "acq",
    "run",
    "hemi",
    "space",
    "seg",
    "res",
    "label",
    "desc",
)
CODE_URL = "https://github.com/csvd-bids/csvd-bids"
RAW_LINK = "raw"  # DatasetLinks key for bids_dir, used in Sources BIDS URIs
# The libraries whose versions change the outputs, recorded in GeneratedBy.Description
SOFTWARE = (
    "nipype",
    "pybids",
    "SimpleITK",
    "deepbet",
    "dipy",
    "torch",
    "monai",
    "nibabel",
    "numpy",
    "scipy",
    "scikit-image",
    "statsmodels",
    "pandas",
)


def bids_name(entities: dict[str, str | None], suffix: str, extension: str) -> str:
    """``sub-01_ses-1_space-T1w_label-WMH`` + ``_mask.nii.gz``, in the documented order."""
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ValueError(f"entities without a place in the name order: {sorted(unknown)}")
    parts = [f"{key}-{entities[key]}" for key in ENTITY_ORDER if entities.get(key)]
    return "_".join([*parts, suffix]) + extension


def session_dir(
    output_dir: Path, subject: str, session: str | None, datatype: str = "anat"
) -> Path:
    folder = output_dir / f"sub-{subject}"
    if session:
        folder = folder / f"ses-{session}"
    return folder / datatype


def raw_uri(bids_dir: Path, path: str | Path) -> str:
    """BIDS URI of an input file: ``bids:raw:sub-01/anat/sub-01_T1w.nii.gz``.

    The path is taken as given, not resolved: in a DataLad/git-annex dataset every image is a
    symbolic link to content outside the dataset, and its name inside the dataset is what the
    URI must give. The dataset may be reached through a link of its own, so both spellings of
    its root and of the file's folder are tried.
    """
    given = Path(os.path.abspath(path))
    # the file itself is never resolved; its folder may be (a dataset reached through a link)
    spellings = (given, given.parent.resolve() / given.name)
    roots = (Path(os.path.abspath(bids_dir)), bids_dir.resolve())
    for file, root in itertools.product(spellings, roots):
        if file.is_relative_to(root):
            return f"bids:{RAW_LINK}:{file.relative_to(root).as_posix()}"
    raise ValueError(f"{path}: not inside the input dataset {bids_dir}")


def methods_file(output_dir: Path, prefix: str) -> Path:
    """A session's methods sections (``sub-<label>[_ses-<label>]`` prefix), in the subject's
    ``logs/`` folder (listed in .bidsignore), beside its ``figures/``."""
    return output_dir / prefix.split("_")[0] / "logs" / f"{prefix}_methods.json"


def local_uri(output_dir: Path, path: str | Path) -> str:
    """BIDS URI of a file of this derivative dataset: ``bids::sub-01/...``."""
    return f"bids::{Path(path).resolve().relative_to(output_dir.resolve()).as_posix()}"


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden, same folder (same file system, so the rename is atomic), same extension
    # (nibabel picks compression from it).
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".tmp-{path.name[:20]}-", suffix="".join(path.suffixes), dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, content: dict) -> Path:
    return write_text(path, json.dumps(content, indent=2, sort_keys=False) + "\n")


def write_tsv(path: Path, table: pd.DataFrame) -> Path:
    return _atomic(path, lambda tmp: table.to_csv(tmp, sep="\t", index=False, na_rep="n/a"))


def write_nifti(path: Path, img: nib.Nifti1Image) -> Path:
    return _atomic(path, lambda tmp: nib.save(img, tmp))


def copy_file(src: Path, path: Path) -> Path:
    return _atomic(path, lambda tmp: shutil.copyfile(src, tmp))


def publish_nifti(src: str | Path, path: Path) -> Path:
    """A finished image as the output ``path`` (``.nii.gz``): a compressed source is copied
    byte for byte (loading and saving it again decompressed and recompressed every image,
    most of the time of writing a session's outputs); any other is saved compressed."""
    src = Path(src)
    if src.name.endswith(".nii.gz") and path.name.endswith(".nii.gz"):
        return copy_file(src, path)
    return write_nifti(path, nib.load(src))


def publish_folder(staging: Path, destination: Path, last: Path) -> Path:
    """Move every file of ``staging`` to the same place under ``destination``, ``last`` (a
    file of ``staging``) after all others; returns where ``last`` went.

    The folders are all made before the first file moves, so what follows is renames within
    one file system, which need no free space. If one fails nonetheless, the files already
    moved are taken back out, so that nothing of the set is left half-published.
    """
    files = sorted(p for p in staging.rglob("*") if p.is_file() and p != last) + [last]
    targets = [destination / p.relative_to(staging) for p in files]
    for folder in sorted({t.parent for t in targets}):
        folder.mkdir(parents=True, exist_ok=True)
    moved = []
    try:
        for source, target in zip(files, targets, strict=True):
            os.replace(source, target)
            moved.append(target)
    except BaseException:
        for target in moved:
            target.unlink(missing_ok=True)
        raise
    return targets[-1]


def copy_hdf5(src: Path, path: Path) -> Path:
    """Copy an HDF5 file (an ITK transform) object by object, without the creation and
    modification times HDF5 stamps on every object header by default: the same transform
    then gives the same bytes in every run, so a re-run can be checked by checksum."""
    return _atomic(path, lambda tmp: _copy_hdf5_untimed(src, tmp))


def _copy_hdf5_untimed(src: Path, dst: Path) -> None:
    import h5py

    def untimed(kind):  # a property list with object time tracking off
        plist = h5py.h5p.create(kind)
        plist.set_obj_track_times(False)
        return plist

    def copy(source: h5py.Group, target: h5py.Group) -> None:
        for name, item in source.items():
            if isinstance(item, h5py.Group):
                group_id = h5py.h5g.create(
                    target.id, name.encode(), gcpl=untimed(h5py.h5p.GROUP_CREATE)
                )
                copy(item, h5py.Group(group_id))
            else:
                dataset = target.create_dataset(
                    name, data=item[()], dtype=item.dtype, track_times=False
                )
                dataset.attrs.update(item.attrs)

    # the root group takes its settings from the file creation list
    file_id = h5py.h5f.create(
        str(dst).encode(), h5py.h5f.ACC_TRUNC, fcpl=untimed(h5py.h5p.FILE_CREATE)
    )
    with h5py.File(src, "r") as source, h5py.File(file_id) as target:
        target.attrs.update(source.attrs)
        copy(source, target)


def container_info() -> dict[str, str] | None:
    """How this process was started, for GeneratedBy.Container."""
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
        return {
            "Type": "singularity",
            "URI": os.environ.get("APPTAINER_CONTAINER")
            or os.environ.get("SINGULARITY_CONTAINER", ""),
        }
    if os.environ.get("CSVD_BIDS_DOCKER_TAG"):
        return {"Type": "docker", "Tag": os.environ["CSVD_BIDS_DOCKER_TAG"]}
    return None


def software_versions() -> str:
    """The interpreter and the installed ``SOFTWARE`` with their versions, as one line
    ("Python 3.11.9, nipype 1.10.0, ...")."""
    found = [f"Python {platform.python_version()}"]
    for name in SOFTWARE:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def dataset_description(bids_dir: Path) -> dict:
    generated_by: dict = {
        "Name": "csvd-bids",
        "Version": __version__,
        "CodeURL": CODE_URL,
        "Description": f"Software: {software_versions()}.",
    }
    container = container_info()
    if container:
        generated_by["Container"] = container
    source = {"URL": bids_dir.resolve().as_uri()}
    raw_description = bids_dir / "dataset_description.json"
    try:
        raw = json.loads(raw_description.read_text())
        if raw.get("DatasetDOI"):
            source["DOI"] = raw["DatasetDOI"]
    except (OSError, ValueError):
        pass
    return {
        "Name": "csvd-bids: cerebral small vessel disease markers",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [source],
        "DatasetLinks": {RAW_LINK: bids_dir.resolve().as_uri()},
    }


BIDSIGNORE = "\n".join(["*.html", "figures/", "logs/", "group_*", ".tmp-*", ""])
