"""What can be checked of the container and CI set-up without a Docker engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def test_console_script_is_the_entry_point():
    # Installed beside the interpreter running the tests (make test does not activate the venv).
    script = Path(sys.executable).parent / "csvd-bids"
    assert script.is_file(), "pip install . must provide the csvd-bids console script"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (REPO / "version").read_text().strip()


def test_dockerfile_entrypoint_and_torch_choice():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["csvd-bids"]' in dockerfile
    assert "ARG TORCH_VARIANT=cpu" in dockerfile
    assert "bids-validator@" in dockerfile
    # No layer duplicates another: a recursive chmod or chown rewrites every file it touches
    # into a new layer (it once copied 2.7 GB of /usr/local).
    instructions = "\n".join(x for x in dockerfile.splitlines() if not x.lstrip().startswith("#"))
    assert "chmod -R" not in instructions and "chown -R" not in instructions
    # COPY keeps the modes: what the image copies in must be readable by any user id.
    copied = [REPO / "run.py", *(p for p in (REPO / "csvd_bids").rglob("*") if p.is_file())]
    assert all(path.stat().st_mode & 0o004 for path in copied)


def test_circleci_runs_the_app_read_only_as_non_root_then_the_tests():
    config = yaml.safe_load((REPO / ".circleci" / "config.yml").read_text())
    commands = "\n".join(
        step["run"]["command"]
        for job in config["jobs"].values()
        for step in job["steps"]
        if isinstance(step, dict) and "run" in step
    )
    assert "docker build" in commands and "--version" in commands
    assert "--read-only" in commands and "-u $(id -u)" in commands
    assert "participant" in commands and "group" in commands
    assert "make test" in commands


def test_ci_and_readme_use_the_same_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_the_wheel_ships_the_wmh_model(tmp_path):
    """The shipped bundle must be inside the installed package (no download at run time)."""
    import zipfile

    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip, "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("csvd_bids-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundle = "csvd_bids/models/bundles/wmh_flair_unet/"
    for part in ("configs/metadata.json", "configs/inference.json", "models/model.pt"):
        assert bundle + part in names
    assert not any("checkpoints" in name for name in names)
