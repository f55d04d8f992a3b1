"""Is bids_dir a BIDS dataset: the root checks, the official validator, the pybids fallback."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from csvd_bids.bids.validate import (
    check_bids_root,
    parse_validator_report,
    run_pybids_checks,
    validate_dataset,
)
from csvd_bids.cli.run import main
from csvd_bids.errors import ExitCode, NoInputError, ValidationError
from csvd_bids.synth import generate_dataset

VALIDATOR = shutil.which("bids-validator")
needs_validator = pytest.mark.skipif(
    VALIDATOR is None,
    reason="the official BIDS validator (npm bids-validator) is not on PATH "
    "('make tools' installs it into .tools)",
)
BOGUS = "sub-01/ses-1/anat/sub-01_ses-1_bogus.nii.gz"


@pytest.fixture(scope="module")
def _synth(tmp_path_factory) -> Path:
    return generate_dataset(
        tmp_path_factory.mktemp("validate") / "bids",
        n_subjects=1,
        n_sessions=2,
        seed=1,
        resolution=3.0,
    )


@pytest.fixture
def synth(_synth, tmp_path) -> Path:
    """A private copy of the generated dataset that a test may damage."""
    return Path(shutil.copytree(_synth, tmp_path / "bids"))


@pytest.fixture
def with_bogus_file(synth) -> Path:
    """A real NIfTI file under a name that is not BIDS."""
    shutil.copyfile(synth / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", synth / BOGUS)
    return synth


def _description(root: Path, content: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(content)
    return root


# --- check_bids_root ---


def test_check_bids_root_accepts_a_minimal_root(tmp_path):
    check_bids_root(_description(tmp_path / "ds", '{"Name": "x", "BIDSVersion": "1.10.0"}'))


def test_check_bids_root_missing_dir(tmp_path):
    with pytest.raises(NoInputError, match="does not exist") as exc:
        check_bids_root(tmp_path / "nowhere")
    assert exc.value.exit_code == ExitCode.NO_INPUT


def test_check_bids_root_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NoInputError, match="not a directory"):
        check_bids_root(tmp_path / "file")


def test_check_bids_root_no_description(tmp_path):
    (tmp_path / "ds").mkdir()
    with pytest.raises(ValidationError, match="no dataset_description.json") as exc:
        check_bids_root(tmp_path / "ds")
    assert exc.value.exit_code == ExitCode.VALIDATION_FAILED


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"Name": "x", "BIDSVersion": ', "not valid JSON"),
        ("", "not valid JSON"),
        ('["Name", "BIDSVersion"]', "needs at least"),
        ('{"Name": "x"}', "BIDSVersion"),
    ],
)
def test_check_bids_root_bad_description(tmp_path, content, message):
    root = _description(tmp_path / "ds", content)
    with pytest.raises(ValidationError, match=message) as exc:
        check_bids_root(root)
    assert "dataset_description.json" in str(exc.value)


# --- the official validator ---


@needs_validator
def test_generated_dataset_is_valid(synth):
    report = validate_dataset(synth)
    assert report.tool.startswith("bids-validator")
    assert report.errors == []


@needs_validator
def test_raw_validator_reports_no_errors(synth):
    """The acceptance check: the generator's output passes the official validator as is."""
    proc = subprocess.run(
        [VALIDATOR, str(synth), "--json"], capture_output=True, text=True, check=False
    )
    report = json.loads(proc.stdout)
    assert report["issues"]["errors"] == [], report["issues"]["errors"]
    assert proc.returncode == 0
    assert report["summary"]["subjects"] == ["01"]
    assert sorted(report["summary"]["sessions"]) == ["1", "2"]


@needs_validator
def test_badly_named_file_is_an_error(with_bogus_file):
    with pytest.raises(ValidationError) as exc:
        validate_dataset(with_bogus_file)
    message = str(exc.value)
    assert "NOT_INCLUDED" in message and BOGUS in message
    assert "--skip-bids-validation" in message
    assert exc.value.exit_code == ExitCode.VALIDATION_FAILED


@needs_validator
def test_missing_bval_is_an_error(synth):
    (synth / "sub-01/ses-1/dwi/sub-01_ses-1_dwi.bval").unlink()
    with pytest.raises(ValidationError, match="DWI_MISSING_BVAL") as exc:
        validate_dataset(synth)
    assert "sub-01_ses-1_dwi.nii.gz" in str(exc.value)


@needs_validator
def test_cli_refuses_an_invalid_dataset(with_bogus_file, tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    code = main([str(with_bogus_file), str(out), "participant", "-w", str(work)])
    assert code == ExitCode.VALIDATION_FAILED == 16
    assert not out.exists() or list(out.rglob("*")) == []
    assert BOGUS in capsys.readouterr().err


# --- reading the validator's JSON ---


def test_parse_legacy_report():
    report = parse_validator_report(
        {
            "issues": {
                "errors": [
                    {
                        "key": "NOT_INCLUDED",
                        "code": 1,
                        "reason": "Files with such naming scheme are not part of BIDS.",
                        "files": [{"file": {"relativePath": f"/f{i}.nii"}} for i in range(5)],
                    }
                ],
                "warnings": [{"key": "README_FILE_MISSING", "reason": "no README", "files": []}],
                "ignored": [],
            }
        },
        "tool",
    )
    assert report.errors == [
        "[NOT_INCLUDED] Files with such naming scheme are not part of BIDS. "
        "(/f0.nii, /f1.nii, /f2.nii, ...)"
    ]
    assert report.warnings == ["[README_FILE_MISSING] no README"]


def test_parse_schema_validator_report():
    """bids-validator 2.x puts every issue in one list with its severity."""
    report = parse_validator_report(
        {
            "issues": {
                "issues": [
                    {"code": "NOT_INCLUDED", "severity": "error", "location": "/sub-01/x.nii"},
                    {"code": "README_FILE_MISSING", "severity": "warning", "location": "/README"},
                    {"code": "JSON_KEY_RECOMMENDED", "severity": "ignore", "location": "/a.json"},
                    {"code": "X", "severity": "error", "issueMessage": "specific\n  message"},
                ],
                "codeMessages": {"NOT_INCLUDED": "not part of BIDS", "README_FILE_MISSING": "r"},
            },
            "summary": {},
        },
        "tool",
    )
    assert report.errors == [
        "[NOT_INCLUDED] not part of BIDS (/sub-01/x.nii)",
        "[X] specific message",
    ]
    assert report.warnings == ["[README_FILE_MISSING] r (/README)"]


@pytest.mark.parametrize("report", [{}, {"issues": []}, {"issues": {"problems": []}}, []])
def test_unknown_report_layout_never_passes(report):
    with pytest.raises(ValidationError, match="layout"):
        parse_validator_report(report, "tool")


# --- the pybids fallback ---


def test_pybids_checks_warn_about_non_bids_names(with_bogus_file):
    report = run_pybids_checks(with_bogus_file)
    assert report.tool.startswith("pybids")
    assert report.errors == []
    assert report.warnings == [f"not a BIDS file name: /{BOGUS}"]


def test_pybids_checks_accept_a_relative_path(with_bogus_file, monkeypatch):
    monkeypatch.chdir(with_bogus_file.parent)
    report = run_pybids_checks(Path(with_bogus_file.name))
    assert report.warnings == [f"not a BIDS file name: /{BOGUS}"]


def test_pybids_checks_error_without_subjects(tmp_path):
    root = _description(tmp_path / "ds", '{"Name": "x", "BIDSVersion": "1.10.0"}')
    report = run_pybids_checks(root)
    assert len(report.errors) == 1 and "no sub-<label>" in report.errors[0]


def test_fallback_when_the_validator_is_not_on_path(tmp_path, monkeypatch):
    root = _description(tmp_path / "ds", '{"Name": "x", "BIDSVersion": "1.10.0"}')
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ValidationError, match="pybids") as exc:
        validate_dataset(root)
    assert "no sub-<label>" in str(exc.value)


def test_cli_refuses_a_dataset_without_subjects(tmp_path, monkeypatch):
    root = _description(tmp_path / "ds", '{"Name": "x", "BIDSVersion": "1.10.0"}')
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    out = tmp_path / "out"
    assert main([str(root), str(out), "participant", "-w", str(tmp_path / "w")]) == 16
    assert not out.exists() or list(out.rglob("*")) == []
