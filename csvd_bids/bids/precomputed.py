"""Maps other BIDS Apps already made, given with ``--derivatives``: FA and MD (QSIPrep /
QSIRecon, dipy, this app) and CBF (ASLPrep). When a session has one, it is used instead of
fitting the tensor or quantifying the ASL here.

Maps in the subject's T1w space (``space-T1w``) need no registration: fMRIPrep-family apps keep
the T1w's scanner coordinates there, so the map is only resampled onto the reference grid. A
map in another subject space (QSIPrep's ``ACPC``: the T1w rotated and shifted into AC-PC
alignment) is used when the same folder holds that app's T1w in that space
(``..._space-<X>_desc-preproc_T1w``, the session's ``anat/`` first, then the subject's, which
QSIPrep writes without ``ses-``; :func:`space_t1w`): that T1w is registered rigidly to the
reference, and the map resampled through the transform. Template spaces (``MNI152...``; see
``TEMPLATE_PREFIXES``: a rigid transform cannot undo a nonlinear warp), a map without a
``space``, and a space without its T1w in the folder are passed over, and the log says why.
Names recognised (BIDS entities, any order; ``.nii`` or ``.nii.gz``):

- FA: ``param-fa`` (BEP016 / QSIRecon ``..._model-tensor_param-fa_dwimap``), ``desc-fa`` (this
  app's ``..._desc-fa_dwi``), or the suffix ``FA``/``fa``; MD likewise with ``md``;
- CBF: the suffix ``cbf`` (ASLPrep), a 3D map; ``desc-mean`` or no ``desc`` first, then the
  rest by name (``desc-basil``, ``desc-scrub``); ``desc-timeseries`` never.

The first folder given wins; within a folder, a map in T1w space before one in another space,
then the first file by name. Whether the T1w can be read is checked when the session is
planned (csvd_bids.preproc.lsa_inputs); the registration runs in the graph.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib

LOGGER = logging.getLogger("csvd_bids")
MAPS = ("fa", "md", "cbf")
SPACE = "T1w"
# TemplateFlow / BIDS standard-template identifiers start so (MNI152NLin2009cAsym, MNI305,
# MNIColin27, OASIS30ANTs, fsaverage...): such a map sits on a template warped nonlinearly.
TEMPLATE_PREFIXES = (
    "MNI", "ICBM", "IXI", "NIHPD", "OASIS", "NKI", "PNC", "UNC", "WHS", "Talairach",
    "fsaverage", "fsLR", "RESILIENT", "Fischer", "MouseIn",
)  # fmt: skip
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


def _rank(kind: str, entities: dict[str, str]) -> tuple[int, int]:
    """A map in T1w space before one that must be registered (the registration can only add
    error); CBF: the mean map (or one without desc) before the other variants."""
    cbf_variant = kind == "cbf" and entities.get("desc") not in (None, "mean")
    return int(entities.get("space") != SPACE), int(cbf_variant)


def _t1w_in(folder: Path, space: str, subject: str, session: str | None) -> Path | None:
    """The first ``sub-<subject>[_ses-<session>]_space-<space>_desc-preproc_T1w`` of the
    folder's ``anat/`` by name (other entities, e.g. ``res-``, allowed)."""
    for path in sorted(folder.glob("anat/*")):
        entities, suffix = parse_name(path.name) or ({}, "")
        wanted = {"sub": subject, "ses": session, "space": space, "desc": "preproc"}
        if suffix == "T1w" and all(entities.get(k) == v for k, v in wanted.items()):
            return path
    return None


def space_t1w(map_path: str | Path) -> Path | None:
    """The T1w image in the map's space that the map's folder holds (module docstring): the
    session's ``anat/`` first, then the subject's (no ``ses-``); None for a map in
    ``space-T1w`` or without a ``space``, or when there is none."""
    map_path = Path(map_path)
    entities, _ = parse_name(map_path.name) or ({}, "")
    space, subject, session = entities.get("space"), entities.get("sub"), entities.get("ses")
    if space in (None, SPACE) or subject is None:
        return None
    folder = map_path.parent.parent  # sub-<label>[/ses-<label>]; the map is in its dwi/, perf/
    found = _t1w_in(folder, space, subject, session)
    if found is None and session:
        found = _t1w_in(folder.parent, space, subject, None)
    return found


def _space_problem(path: Path, space: str | None) -> str | None:
    """Why a map in ``space`` cannot be brought onto the reference, None when it can."""
    if space == SPACE:
        return None
    if space is None:
        return "no space- entity"
    if space.startswith(TEMPLATE_PREFIXES):
        return f"space-{space} is a template space, not the subject's"
    if space_t1w(path) is None:
        return f"space-{space}, and no space-{space}_desc-preproc_T1w in its folder to register"
    return None


def _shape(path: Path) -> tuple[int, ...] | None:
    """The image's shape from its header, None when it cannot be read: another app's broken
    file costs its map, never the run."""
    try:
        return nib.load(path).shape
    except (OSError, ValueError, nib.filebasedimages.ImageFileError):
        return None


def find_precomputed(roots: tuple[Path, ...], subject: str, session: str | None) -> dict:
    """map kind -> path of the precomputed map of this session (module docstring); a map in
    another space than T1w only where :func:`space_t1w` finds its T1w."""
    found: dict[str, str] = {}
    for root in roots:
        candidates: dict[str, list[tuple[tuple[int, int], str]]] = {}
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
            problem = _space_problem(path, entities.get("space"))
            if problem:
                LOGGER.info("%s: not used (%s)", path, problem)
                continue
            shape = _shape(path)
            if shape is None or len(shape) != 3:
                why = "not a readable NIfTI image" if shape is None else "not a 3D map"
                LOGGER.warning("%s: not used (%s)", path, why)
                continue
            candidates.setdefault(kind, []).append((_rank(kind, entities), str(path)))
        for kind, ranked in candidates.items():
            found[kind] = min(ranked)[1]
    return found
