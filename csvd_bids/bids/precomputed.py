"""Maps other BIDS Apps already made, given with ``--derivatives``: FA and MD (QSIPrep /
QSIRecon, dipy, this app) and CBF (ASLPrep). When a session has one, it is used instead of
fitting the tensor or quantifying the ASL here.

Only maps in the subject's T1w space (``space-T1w``) are used: fMRIPrep-family apps keep the
T1w's scanner coordinates there, so the map needs no registration, only resampling onto the
reference grid. Other spaces (QSIPrep's ``ACPC``, template spaces, an ASL's native grid that
was never registered) are passed over, and the log says so. Names recognised (BIDS entities,
any order; ``.nii`` or ``.nii.gz``):

- FA: ``param-fa`` (BEP016 / QSIRecon ``..._model-tensor_param-fa_dwimap``), ``desc-fa`` (this
  app's ``..._desc-fa_dwi``), or the suffix ``FA``/``fa``; MD likewise with ``md``;
- CBF: the suffix ``cbf`` (ASLPrep), a 3D map; ``desc-mean`` or no ``desc`` first, then the
  rest by name (``desc-basil``, ``desc-scrub``); ``desc-timeseries`` never.

The first folder given wins; within a folder, the first file by name.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib

LOGGER = logging.getLogger("csvd_bids")
MAPS = ("fa", "md", "cbf")
SPACE = "T1w"
_EXTENSIONS = (".nii.gz", ".nii")


def parse_name(name: str) -> tuple[dict[str, str], str] | None:
    """(entities, suffix) of a BIDS file name, None when it is not a NIfTI."""
    stem = next((name[: -len(e)] for e in _EXTENSIONS if name.endswith(e)), None)
    if stem is None:
        return None
    *pairs, suffix = stem.split("_")
    entities = dict(p.split("-", 1) for p in pairs if "-" in p)
    return entities, suffix


def map_kind(entities: dict[str, str], suffix: str) -> str | None:
    """Which of ``MAPS`` a file holds, by its name (module docstring)."""
    if suffix == "cbf":
        return None if entities.get("desc") == "timeseries" else "cbf"
    for kind in ("fa", "md"):
        if kind in (entities.get("param"), entities.get("desc"), suffix.lower()):
            return kind
    return None


def _session_files(root: Path, subject: str, session: str | None) -> list[Path]:
    folder = root / f"sub-{subject}" / (f"ses-{session}" if session else "")
    return sorted(p for p in folder.glob("*/*") if p.is_file())


def _rank(kind: str, entities: dict[str, str]) -> int:
    """CBF: the mean map (or one without desc) before the other variants."""
    return 0 if kind != "cbf" or entities.get("desc") in (None, "mean") else 1


def find_precomputed(roots: tuple[Path, ...], subject: str, session: str | None) -> dict:
    """map kind -> path of the precomputed map of this session (module docstring)."""
    found: dict[str, str] = {}
    for root in roots:
        candidates: dict[str, list[tuple[int, str]]] = {}
        for path in _session_files(Path(root), subject, session):
            parsed = parse_name(path.name)
            if parsed is None:
                continue
            entities, suffix = parsed
            kind = map_kind(entities, suffix)
            if kind is None or kind in found or entities.get("sub") != subject:
                continue
            if entities.get("ses") != session:
                continue
            if entities.get("space") != SPACE:
                LOGGER.info("%s: not used (space-%s, not T1w)", path, entities.get("space"))
                continue
            if len(nib.load(path).shape) != 3:
                LOGGER.info("%s: not used (not a 3D map)", path)
                continue
            candidates.setdefault(kind, []).append((_rank(kind, entities), str(path)))
        for kind, ranked in candidates.items():
            found[kind] = min(ranked)[1]
    return found
