"""Find each subject's and session's images with pybids.

Default queries per modality are merged with the user's ``--bids-filter-file`` (keys of the
file replace those of the default query), in the manner of fMRIPrep.

Rules users need to know (README repeats them):
- SWI: ``acq-swi_T2starw`` (BIDS 1.10) is preferred, then the BEP004 ``swi`` suffix, then any
  other ``T2starw`` (a T2*-weighted GRE, which also shows microbleeds). Phase, real and imaginary
  parts are never used; a modality found only as such parts is recorded in
  ``SessionInputs.unusable``, and the markers that need it say why they were not assessed.
- Several files for one modality (runs, acquisitions): the one with the highest ``run`` index is
  used (a repeat is usually acquired because the earlier run failed), then the one with the most
  voxels, then the last by name. Every candidate and the choice are written to the session's
  outputs.
- The layout is indexed with ``validate=False`` because pybids' validation silently drops
  ``_swi`` files; the queries below select what is used.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib

from csvd_bids.errors import NoSelectionError, UsageError

NIFTI_EXTENSIONS = [".nii", ".nii.gz"]
_UNUSED_PARTS = {"phase", "real", "imag"}
# Entities discovery sets itself for every query; a filter file may not override them.
_SELECTION_KEYS = {"subject": "--participant-label", "session": "--session-label"}

# Modality key -> ordered alternative queries; the first alternative that finds files wins.
DEFAULT_QUERIES: dict[str, list[dict]] = {
    "t1w": [{"datatype": "anat", "suffix": "T1w"}],
    "flair": [{"datatype": "anat", "suffix": "FLAIR"}],
    "t2w": [{"datatype": "anat", "suffix": "T2w"}],
    "swi": [
        {"datatype": "anat", "suffix": "T2starw", "acquisition": "swi"},
        {"datatype": "anat", "suffix": ["swi", "SWI"]},
        {"datatype": "anat", "suffix": "T2starw"},
    ],
    "dwi": [{"datatype": "dwi", "suffix": "dwi"}],
    "asl": [{"datatype": "perf", "suffix": "asl"}],
}
MODALITIES: tuple[str, ...] = tuple(DEFAULT_QUERIES)
ANAT_MODALITIES: tuple[str, ...] = ("t1w", "flair", "t2w", "swi")
# BIDS suffix of each modality, used in output names (desc-preproc_<suffix>, space-<suffix>).
SUFFIXES: dict[str, str] = {
    "t1w": "T1w",
    "flair": "FLAIR",
    "t2w": "T2w",
    "swi": "T2starw",
    "dwi": "dwi",
    "asl": "asl",
}


def session_prefix(subject: str, session: str | None) -> str:
    """``sub-01_ses-1`` (or ``sub-01`` without sessions), as output file names begin."""
    return f"sub-{subject}" + (f"_ses-{session}" if session else "")


@dataclass
class SessionInputs:
    """The files chosen for one subject/session and how they were chosen."""

    subject: str
    session: str | None
    files: dict[str, str] = field(default_factory=dict)
    candidates: dict[str, list[str]] = field(default_factory=dict)
    # The DWI's b-values and vectors (found with BIDS inheritance); None when absent.
    bval: str | None = None
    bvec: str | None = None
    # Modality -> why what was found cannot be used (e.g. an SWI with phase images only).
    unusable: dict[str, str] = field(default_factory=dict)
    # The ASL series' companions: aslcontext, m0scan (or None) and both sidecars' metadata.
    asl: dict | None = None

    @property
    def prefix(self) -> str:
        return session_prefix(self.subject, self.session)

    @property
    def reference(self) -> str | None:
        """T1w when present (best grey/white contrast and usually 1 mm), else FLAIR."""
        return next((m for m in ("t1w", "flair") if m in self.files), None)


def merge_queries(filters: dict) -> dict[str, list[dict]]:
    """Apply the user's filter file to the default queries."""
    unknown = sorted(set(filters) - set(DEFAULT_QUERIES))
    if unknown:
        raise UsageError(
            f"BIDS filter file: unknown modality {unknown[0]!r}; use {', '.join(MODALITIES)}"
        )
    queries = copy.deepcopy(DEFAULT_QUERIES)
    for modality, user_query in filters.items():
        if not isinstance(user_query, dict):
            raise UsageError(f"BIDS filter file: the entry for {modality!r} must be an object")
        selection = sorted(set(user_query) & set(_SELECTION_KEYS))
        if selection:
            raise UsageError(
                f"BIDS filter file: {modality!r} filters on {selection[0]!r}; subjects and "
                f"sessions are chosen with {_SELECTION_KEYS[selection[0]]}"
            )
        queries[modality] = [{**alternative, **user_query} for alternative in queries[modality]]
    return queries


def _n_voxels(path: str) -> int:
    try:
        shape = nib.load(path).shape
    except Exception:  # an unreadable file is reported by the preflight check, not here
        return 0
    total = 1
    for size in shape:
        total *= int(size)
    return total


def choose_file(bids_files: list) -> str:
    """Highest run, then most voxels, then last path (see module docstring)."""

    def key(bids_file):
        run = bids_file.entities.get("run")
        return (int(run) if run is not None else 0, _n_voxels(bids_file.path), bids_file.path)

    return max(bids_files, key=key).path


def _query(
    layout, alternatives: list[dict], subject: str, session: str | None
) -> tuple[list, list]:
    """(files of the first alternative that has usable ones, phase/real/imaginary parts seen)."""
    parts_seen = []
    for alternative in alternatives:
        # A filter file may narrow the extension (e.g. ".nii.gz"); subject and session are ours.
        query = {"extension": NIFTI_EXTENSIONS, **alternative}
        query.update(subject=subject, session=session if session else None)
        try:
            found = layout.get(**query)
        except ValueError as exc:  # pybids: an entity name it does not know (e.g. "acq")
            raise UsageError(f"BIDS filter file: {exc}") from exc
        usable = [f for f in found if f.entities.get("part") not in _UNUSED_PARTS]
        parts_seen += [f for f in found if f.entities.get("part") in _UNUSED_PARTS]
        if usable:
            return usable, parts_seen
    return [], parts_seen


def _gradient_file(getter, dwi: str) -> str | None:
    """The .bval/.bvec that applies to ``dwi`` (BIDS inheritance), or None."""
    try:
        return getter(dwi) or None
    except IndexError:  # pybids raises when there is none
        return None


def _companion(asl: str, suffix: str) -> str | None:
    """The file named like the ASL series with another suffix (``_aslcontext.tsv``)."""
    base = asl.removesuffix(".gz").removesuffix(".nii").removesuffix("_asl")
    found = Path(base + suffix)
    return str(found) if found.is_file() else None


def asl_companions(layout, asl: str) -> dict:
    """An ASL series' aslcontext, separate M0 scan (same name with ``_m0scan``, else an
    m0scan of the session whose IntendedFor names the series) and the metadata of both
    (with BIDS inheritance)."""
    m0 = next((_companion(asl, f"_m0scan{e}") for e in (".nii.gz", ".nii")), None)
    if m0 is None:
        entities = layout.get_file(asl).entities
        candidates = layout.get(
            subject=entities["subject"],
            session=entities.get("session"),
            suffix="m0scan",
            extension=NIFTI_EXTENSIONS,
        )
        relative = Path(asl).relative_to(layout.root).as_posix()
        for candidate in candidates:
            intended = candidate.get_metadata().get("IntendedFor", [])
            intended = [intended] if isinstance(intended, str) else intended
            if any(str(i).endswith(relative.split("/", 1)[-1]) for i in intended):
                m0 = candidate.path
                break
    return {
        "aslcontext": _companion(asl, "_aslcontext.tsv"),
        "m0scan": m0,
        "metadata": layout.get_metadata(asl),
        "m0_metadata": layout.get_metadata(m0) if m0 else {},
    }


def _parts_only(parts: list) -> str:
    """Why a modality found only as phase/real/imaginary images is not used."""
    names = ", ".join(sorted({Path(f.path).name for f in parts}))
    kinds = "/".join(sorted({f.entities["part"] for f in parts}))
    return f"only {kinds} images ({names}); a magnitude image is needed"


def root_anchored_config(root: Path) -> dict:
    """pybids' BIDS configuration with every entity pattern anchored below ``root``.

    pybids (0.22) matches its entity patterns against each file's absolute path, so a folder
    above the dataset named like a datatype or an entity (``/data/perf/ds``,
    ``/data/ses-pilot/ds``, ``/data/acq-old/ds``) leaks into every file's entities: every file
    of datatype ``perf``, a session that does not exist. Anchored at the root (as given and
    resolved), a pattern can only match the path inside the dataset. Known upstream (pybids
    issues 595, 600, 1270), fixed by pybids pull request 1273, in no release up to 0.22.0: drop
    this when the pinned pybids has the fix."""
    import bids.layout

    default = Path(bids.layout.__file__).parent / "config" / "bids.json"
    config = json.loads(default.read_text())
    roots = dict.fromkeys([str(root.absolute()), str(root.resolve())])
    prefix = "^(?:" + "|".join(re.escape(r) for r in roots) + r")(?=[/\\]).*?"
    for entity in config["entities"]:
        entity["pattern"] = prefix + entity["pattern"]
    return config


def load_layout(bids_dir: Path, database_dir: Path | None = None):
    from bids import BIDSLayout

    return BIDSLayout(
        bids_dir,
        validate=False,
        config=[root_anchored_config(bids_dir)],  # entities from inside the dataset only
        database_path=database_dir,
        reset_database=False,
    )


def select_subjects(layout, labels: tuple[str, ...]) -> list[str]:
    available = sorted(layout.get_subjects())
    if not available:
        raise NoSelectionError(f"{layout.root}: no subjects found")
    if not labels:
        return available
    missing = [label for label in labels if label not in available]
    if missing:
        shown = ", ".join(f"sub-{a}" for a in available[:10]) + (" ..." * (len(available) > 10))
        raise NoSelectionError(
            f"{layout.root}: participant label(s) not found: "
            f"{', '.join('sub-' + m for m in missing)} (available: {shown})"
        )
    return list(labels)


def discover_sessions(
    layout,
    participant_labels: tuple[str, ...] = (),
    session_labels: tuple[str, ...] = (),
    filters: dict | None = None,
) -> list[SessionInputs]:
    """One SessionInputs per selected subject/session that has at least one known image."""
    queries = merge_queries(filters or {})
    subjects = select_subjects(layout, participant_labels)
    sessions_of = {
        subject: sorted(layout.get_sessions(subject=subject)) or [None] for subject in subjects
    }
    if session_labels:
        known = {s for sessions in sessions_of.values() for s in sessions if s}
        missing = [label for label in session_labels if label not in known]
        if missing:
            shown = ", ".join(f"ses-{s}" for s in sorted(known)) or "none, it has no sessions"
            raise NoSelectionError(
                f"{layout.root}: session label(s) not found for the selected subject(s): "
                f"{', '.join('ses-' + m for m in missing)} (available: {shown})"
            )
    found: list[SessionInputs] = []
    for subject in subjects:
        sessions = sessions_of[subject]
        if session_labels:
            sessions = [s for s in sessions if s in session_labels]
        for session in sessions:
            inputs = SessionInputs(subject=subject, session=session)
            for modality, alternatives in queries.items():
                matches, parts = _query(layout, alternatives, subject, session)
                if matches:
                    inputs.candidates[modality] = sorted(m.path for m in matches)
                    inputs.files[modality] = choose_file(matches)
                elif parts:
                    inputs.unusable[modality] = _parts_only(parts)
            if "dwi" in inputs.files:
                inputs.bval = _gradient_file(layout.get_bval, inputs.files["dwi"])
                inputs.bvec = _gradient_file(layout.get_bvec, inputs.files["dwi"])
            if "asl" in inputs.files:
                inputs.asl = asl_companions(layout, inputs.files["asl"])
            if inputs.files:
                found.append(inputs)
    if not found:
        what = f" for session(s) {', '.join(session_labels)}" if session_labels else ""
        raise NoSelectionError(f"{layout.root}: the labels and filters selected no images{what}")
    return found
