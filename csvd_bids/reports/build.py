"""Which reports to (re)build after a run, or alone with ``--reports-only``."""

from __future__ import annotations

import logging
from pathlib import Path

from jinja2 import TemplateError

from csvd_bids.errors import NoInputError
from csvd_bids.reports.group import write_group_report
from csvd_bids.reports.session import finished_sessions, write_session_report

LOGGER = logging.getLogger("csvd_bids.reports")


def _selected(prefix: str, subjects: tuple[str, ...], sessions: tuple[str, ...]) -> bool:
    entities = dict(part.split("-", 1) for part in prefix.split("_"))
    return (not subjects or entities["sub"] in subjects) and (
        not sessions or entities.get("ses") in sessions
    )


def build_session_reports(
    output_dir: Path,
    subjects: tuple[str, ...] = (),
    sessions: tuple[str, ...] = (),
    prefixes: set[str] | None = None,
    required: bool = False,
) -> list[Path]:
    """The report of every finished session of ``output_dir`` that the labels select (and,
    when given, whose prefix is in ``prefixes``). A report that cannot be built is logged and
    skipped: the session's outputs stay valid. ``required``: no finished session is an error."""
    chosen = [
        files
        for files in finished_sessions(output_dir)
        if _selected(files.prefix, subjects, sessions)
        and (prefixes is None or files.prefix in prefixes)
    ]
    if required and not chosen:
        raise NoInputError(
            f"{output_dir}: no finished session (*_desc-summary_stats.tsv) to report on; "
            "run the participant level first"
        )
    written = []
    for files in chosen:
        try:
            written.append(write_session_report(files))
        except (OSError, ValueError, KeyError, TemplateError) as exc:
            LOGGER.error("%s: the report could not be built: %s", files.prefix, exc)
    LOGGER.info("%d session report(s) in %s", len(written), output_dir)
    return written


def build_group_report(output_dir: Path) -> Path:
    if not (output_dir / "group_csvd.tsv").is_file():
        raise NoInputError(
            f"{output_dir}: no group_csvd.tsv to report on; run the group level first"
        )
    path = write_group_report(output_dir)
    LOGGER.info("group report: %s", path)
    return path
