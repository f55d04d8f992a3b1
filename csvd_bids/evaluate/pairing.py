"""Find marker masks in two derivative trees and pair them by subject, session and label.

A mask is any ``sub-<X>[_ses-<Y>][_<other entities>]_label-<LABEL>_mask.nii[.gz]`` below the
root; only ``sub``, ``ses`` and ``label`` are used for pairing, so ``space-T1w`` (the pipeline,
the generator's truth) and no ``space`` at all (manual masks) pair alike. Names are parsed
directly rather than through a pybids index: derivative trees from other tools often lack the
``dataset_description.json`` fields pybids insists on, and a glob is fast on large outputs.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from csvd_bids.labels import MARKER_LABELS

LOGGER = logging.getLogger("csvd_bids.evaluate")


def marker_labels() -> tuple[str, ...]:
    """Every marker label in the table's order (markers registered since import included)."""
    return tuple(marker.label for marker in MARKER_LABELS)


EVALUATED = "evaluated"
NOT_ASSESSED = "not assessed"

_ENTITY = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9+.]+)$")
_EXTENSIONS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class MaskFile:
    path: Path
    subject: str
    session: str | None
    label: str
    entities: dict[str, str] = field(hash=False, compare=False)

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.subject, self.session, self.label)


@dataclass(frozen=True)
class MaskPair:
    """One reference mask and the output it is compared with (None when not assessed)."""

    subject: str
    session: str | None
    label: str
    reference: Path
    output: Path | None
    status: str  # EVALUATED or NOT_ASSESSED
    reason: str = ""

    @property
    def participant_id(self) -> str:
        return f"sub-{self.subject}"

    @property
    def session_id(self) -> str:
        return f"ses-{self.session}" if self.session else "n/a"


def parse_entities(name: str) -> tuple[dict[str, str], str] | None:
    """(entities, suffix) of a BIDS file name, or None when the name is not BIDS-like."""
    for extension in _EXTENSIONS:
        if name.endswith(extension):
            stem = name[: -len(extension)]
            break
    else:
        stem = name.split(".", 1)[0]
    parts = stem.split("_")
    if len(parts) < 2:
        return None
    entities = {}
    for part in parts[:-1]:
        match = _ENTITY.match(part)
        if not match:
            return None
        entities[match.group(1)] = match.group(2)
    return entities, parts[-1]


def _folder_entity(path: Path, root: Path, key: str) -> str | None:
    """An entity from the folder names (``ses-1/``) when the file name lacks it."""
    for part in path.relative_to(root).parts[:-1]:
        if part.startswith(f"{key}-"):
            return part[len(key) + 1 :]
    return None


def _walk(root: Path, pattern: str, exclude: tuple[Path, ...]) -> list[Path]:
    """Files matching ``pattern`` below ``root``, through linked session folders too (a
    folder of links to some sessions is a common way to evaluate a subset; ``rglob`` does not
    enter them), each real folder once (a link to an ancestor cannot loop)."""
    excluded = [folder.resolve() for folder in exclude]
    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        # hidden folders and files: temporary files of an interrupted writer, .git, ...
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in fnmatch.filter(files, pattern):
            path = Path(folder) / name
            resolved = path.resolve()
            if name.startswith(".") or any(
                skip == resolved or skip in resolved.parents for skip in excluded
            ):
                continue
            found.append(path)
    return sorted(found)


def find_masks(
    root: Path, labels: tuple[str, ...] | None = None, exclude: tuple[Path, ...] = ()
) -> dict[tuple[str, str | None, str], MaskFile]:
    """Every marker mask below root, keyed by (subject, session or None, label).

    When several files share a key (e.g. one per space), the one with the fewest entities is
    kept, then the first by name; the others are logged. ``labels``: default every marker.
    """
    labels = labels or marker_labels()
    by_key: dict[tuple[str, str | None, str], list[MaskFile]] = {}
    for path in _walk(root, "*_mask.nii*", exclude):
        parsed = parse_entities(path.name)
        if parsed is None or parsed[1] != "mask":
            continue
        entities, _ = parsed
        label = entities.get("label")
        subject = entities.get("sub") or _folder_entity(path, root, "sub")
        if label not in labels or not subject:
            continue
        session = entities.get("ses") or _folder_entity(path, root, "ses")
        mask = MaskFile(path, subject, session, label, entities)
        by_key.setdefault(mask.key, []).append(mask)
    chosen = {}
    for key, masks in by_key.items():
        masks.sort(key=lambda m: (len(m.entities), m.path.name, str(m.path)))
        chosen[key] = masks[0]
        if len(masks) > 1:
            LOGGER.warning(
                "%d masks for sub-%s ses-%s label-%s: using %s, ignoring %s",
                len(masks),
                key[0],
                key[1] or "n/a",
                key[2],
                masks[0].path,
                ", ".join(str(m.path) for m in masks[1:]),
            )
    return chosen


def _output_sessions(root: Path, exclude: tuple[Path, ...]) -> dict[tuple[str, str | None], Path]:
    """(subject, session) of every session with any output file -> its summary TSV (or the
    folder when it has none)."""
    sessions: dict[tuple[str, str | None], Path] = {}
    for path in _walk(root, "sub-*_*", exclude):
        if not path.is_file():
            continue
        parsed = parse_entities(path.name)
        if parsed is None or "sub" not in parsed[0]:
            continue
        entities, suffix = parsed
        key = (entities["sub"], entities.get("ses") or _folder_entity(path, root, "ses"))
        if suffix == "stats" and entities.get("desc") == "summary" and path.suffix == ".tsv":
            sessions[key] = path
        else:
            sessions.setdefault(key, path.parent)
    return sessions


def _summary_status(summary: Path, label: str) -> tuple[str, str] | None:
    """(status, reason) of a marker from the pipeline's desc-summary_stats.tsv, if readable."""
    if summary.is_dir():
        return None
    try:
        row = pd.read_csv(summary, sep="\t", dtype=str, keep_default_na=False).iloc[0]
    except (OSError, ValueError, IndexError, pd.errors.ParserError):
        return None
    status = row.get(f"{label}_status")
    if status is None:
        return None
    reason = row.get(f"{label}_reason", "")
    return str(status), "" if reason in ("", "n/a") else str(reason)


def pair_masks(
    reference_root: Path,
    output_root: Path,
    labels: tuple[str, ...] | None = None,
    exclude: tuple[Path, ...] = (),
) -> list[MaskPair]:
    """One pair per reference mask, sorted by subject, session and label.

    A reference mask without an output mask is "not assessed", with the reason: the pipeline's
    own (from the session's summary), or that the output has no such mask or no such session.
    Output masks without a reference are not evaluated (there is nothing to compare them with).
    """
    references = find_masks(reference_root, labels, exclude)
    outputs = find_masks(output_root, labels, exclude)
    sessions = _output_sessions(output_root, exclude)
    pairs = []
    order = marker_labels()
    for key in sorted(references, key=lambda k: (k[0], k[1] or "", order.index(k[2]))):
        subject, session, label = key
        reference = references[key].path
        output = outputs.get(key)
        where = f"sub-{subject}" + (f" ses-{session}" if session else "")
        summary = sessions.get((subject, session))
        stated = _summary_status(summary, label) if summary is not None else None
        if stated is not None and stated[0] == NOT_ASSESSED:
            pairs.append(
                MaskPair(subject, session, label, reference, None, NOT_ASSESSED, stated[1])
            )
        elif output is not None:
            pairs.append(MaskPair(subject, session, label, reference, output.path, EVALUATED))
        else:
            reason = (
                f"no label-{label} mask in the output for {where}"
                if summary is not None
                else f"no output for {where}"
            )
            pairs.append(MaskPair(subject, session, label, reference, None, NOT_ASSESSED, reason))
    unpaired = sorted(set(outputs) - set(references))
    if unpaired:
        LOGGER.info(
            "%d output mask(s) have no reference mask and are not evaluated (e.g. %s)",
            len(unpaired),
            outputs[unpaired[0]].path.name,
        )
    return pairs
