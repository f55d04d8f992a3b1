"""Is bids_dir a BIDS dataset? The official validator when it is installed, pybids otherwise."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from csvd_bids.errors import NoInputError, ValidationError

LOGGER = logging.getLogger("csvd_bids.validate")
VALIDATOR = "bids-validator"
_TIMEOUT_S = 1800


@dataclass
class ValidationReport:
    tool: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_bids_root(bids_dir: Path) -> None:
    """The minimum pybids needs: a folder with a readable dataset_description.json."""
    if not bids_dir.exists():
        raise NoInputError(f"{bids_dir}: bids_dir does not exist")
    if not bids_dir.is_dir():
        raise NoInputError(f"{bids_dir}: bids_dir is not a directory")
    description = bids_dir / "dataset_description.json"
    if not description.is_file():
        raise ValidationError(
            f"{bids_dir}: not a BIDS dataset (no dataset_description.json at its root)"
        )
    try:
        content = json.loads(description.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{description}: not valid JSON ({exc})") from exc
    if not isinstance(content, dict) or "Name" not in content or "BIDSVersion" not in content:
        raise ValidationError(f"{description}: needs at least 'Name' and 'BIDSVersion'")


def _describe(issue: dict) -> str:
    files = []
    for entry in issue.get("files") or []:
        file_info = entry.get("file") or {}
        path = file_info.get("relativePath") or file_info.get("path")
        if path:
            files.append(str(path))
    where = f" ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})" if files else ""
    return f"[{issue.get('key', issue.get('code', '?'))}] {issue.get('reason', '')}{where}"


def run_official_validator(bids_dir: Path, executable: str) -> ValidationReport:
    proc = subprocess.run(
        [executable, "--json", str(bids_dir)],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    try:
        issues = json.loads(proc.stdout)["issues"]
    except (ValueError, KeyError) as exc:
        raise ValidationError(
            f"{bids_dir}: the BIDS validator gave no readable report "
            f"(exit {proc.returncode}): {proc.stderr.strip()[:500]}"
        ) from exc
    return ValidationReport(
        tool=f"{VALIDATOR} (npm)",
        errors=[_describe(i) for i in issues.get("errors", [])],
        warnings=[_describe(i) for i in issues.get("warnings", [])],
    )


def run_pybids_checks(bids_dir: Path) -> ValidationReport:
    """Fallback: files that pybids' BIDS validator does not recognise become warnings."""
    from bids import BIDSLayout
    from bids.layout.validation import BIDSValidator

    layout = BIDSLayout(bids_dir, validate=False)
    validator = BIDSValidator()
    report = ValidationReport(tool="pybids (bids-validator not on PATH)")
    for path in sorted(layout.get(return_type="filename")):
        relative = "/" + Path(path).relative_to(bids_dir).as_posix()
        if not validator.is_bids(relative):
            report.warnings.append(f"not a BIDS file name: {relative}")
    if not layout.get_subjects():
        report.errors.append(f"{bids_dir}: no sub-<label> folders with BIDS files")
    return report


def validate_dataset(bids_dir: Path) -> ValidationReport:
    """Run the best available validator; raise ValidationError if it reports errors."""
    executable = shutil.which(VALIDATOR)
    if executable:
        report = run_official_validator(bids_dir, executable)
    else:
        LOGGER.warning(
            "%s is not on PATH (install it with 'npm install -g bids-validator'); "
            "falling back to pybids' checks",
            VALIDATOR,
        )
        report = run_pybids_checks(bids_dir)
    for warning in report.warnings[:20]:
        LOGGER.info("validator warning: %s", warning)
    if report.errors:
        listing = "\n  ".join(report.errors[:20])
        raise ValidationError(
            f"{bids_dir}: {report.tool} found {len(report.errors)} error(s):\n  {listing}\n"
            "Fix them, or pass --skip-bids-validation to run anyway."
        )
    LOGGER.info("%s: valid BIDS (%s, %d warnings)", bids_dir, report.tool, len(report.warnings))
    return report
