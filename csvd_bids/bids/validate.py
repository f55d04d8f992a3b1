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
    """One line per issue of the npm validator 1.x (``key``, ``reason``, ``files``)."""
    files = []
    for entry in issue.get("files") or []:
        file_info = (entry or {}).get("file") or {}
        path = file_info.get("relativePath") or file_info.get("path")
        if path:
            files.append(str(path))
    where = f" ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})" if files else ""
    return f"[{issue.get('key', issue.get('code', '?'))}] {issue.get('reason', '')}{where}"


def _describe_schema_issue(issue: dict, code_messages: dict) -> str:
    """One line per issue of the schema validator 2.x (``code``, ``location``, messages)."""
    code = issue.get("code", "?")
    message = issue.get("issueMessage") or code_messages.get(code, "")
    where = f" ({issue['location']})" if issue.get("location") else ""
    return f"[{code}] {' '.join(str(message).split())}{where}"


def parse_validator_report(report: dict, tool: str) -> ValidationReport:
    """Errors and warnings from ``bids-validator --json``, in the 1.x or the 2.x layout.

    1.x: ``{"issues": {"errors": [...], "warnings": [...]}}``; 2.x (schema validator):
    ``{"issues": {"issues": [{"code", "severity", "location", ...}], "codeMessages": {...}}}``.
    Anything else raises ValidationError: an unreadable report must never pass as valid.
    """
    issues = report.get("issues") if isinstance(report, dict) else None
    if isinstance(issues, dict) and isinstance(issues.get("errors"), list):
        return ValidationReport(
            tool=tool,
            errors=[_describe(i) for i in issues["errors"]],
            warnings=[_describe(i) for i in issues.get("warnings") or []],
        )
    if isinstance(issues, dict) and isinstance(issues.get("issues"), list):
        messages = issues.get("codeMessages") or {}
        parsed = ValidationReport(tool=tool)
        for issue in issues["issues"]:
            severity = issue.get("severity", "error")
            if severity == "error":
                parsed.errors.append(_describe_schema_issue(issue, messages))
            elif severity == "warning":
                parsed.warnings.append(_describe_schema_issue(issue, messages))
        return parsed
    raise ValidationError(
        f"{tool}: its JSON report is in a layout csvd-bids does not know (neither 1.x nor 2.x); "
        "pass --skip-bids-validation to run without it"
    )


def run_official_validator(bids_dir: Path, executable: str) -> ValidationReport:
    try:
        proc = subprocess.run(
            [executable, "--json", str(bids_dir)],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ValidationError(
            f"{bids_dir}: the BIDS validator ({executable}) did not finish in {_TIMEOUT_S} s; "
            "pass --skip-bids-validation to run without it"
        ) from exc
    except OSError as exc:
        raise ValidationError(
            f"{bids_dir}: the BIDS validator ({executable}) could not be started ({exc})"
        ) from exc
    try:
        report = json.loads(proc.stdout)
    except ValueError as exc:
        raise ValidationError(
            f"{bids_dir}: the BIDS validator gave no readable report "
            f"(exit {proc.returncode}): {proc.stderr.strip()[:500]}"
        ) from exc
    try:
        return parse_validator_report(report, f"{VALIDATOR} (npm)")
    except ValidationError as exc:
        raise ValidationError(f"{bids_dir}: {exc}") from exc


def run_pybids_checks(bids_dir: Path) -> ValidationReport:
    """Fallback: files that pybids' BIDS validator does not recognise become warnings."""
    from bids import BIDSLayout
    from bids_validator import BIDSValidator  # the file-name rules pybids itself uses

    layout = BIDSLayout(bids_dir, validate=False)
    root = Path(layout.root)  # absolute, like the paths it returns (bids_dir may be relative)
    validator = BIDSValidator()
    report = ValidationReport(tool="pybids (bids-validator not on PATH)")
    for path in sorted(layout.get(return_type="filename")):
        relative = "/" + Path(path).relative_to(root).as_posix()
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
