"""What can be checked of the container and CI set-up without a Docker engine."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CONTAINER = REPO / "container"
LOCKS = {variant: CONTAINER / f"requirements-{variant}.lock" for variant in ("cpu", "cuda")}


def dockerfile_instructions(text: str | None = None) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text() if text is None else text
    instructions, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not current):
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            instructions.append(" ".join(current.split()))
            current = ""
    return instructions


def lock_pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile --generate-hashes lock file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(r"\n(?=\S)", lock.read_text()):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", entry)
        assert match, f"{lock.name}: not an exact pin: {entry.splitlines()[0]}"
        pins[match[1].lower().replace("_", "-")] = (
            match[2],
            re.findall(r"--hash=sha256:(\w+)", entry),
        )
    return pins


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
    # No layer duplicates another: a recursive chmod or chown rewrites every file it touches
    # into a new layer (it once copied 2.7 GB of /usr/local).
    instructions = "\n".join(x for x in dockerfile.splitlines() if not x.lstrip().startswith("#"))
    assert "chmod -R" not in instructions and "chown -R" not in instructions
    # COPY keeps the modes: what the image copies in must be readable by any user id.
    copied = [REPO / "run.py", *(p for p in (REPO / "csvd_bids").rglob("*") if p.is_file())]
    assert all(path.stat().st_mode & 0o004 for path in copied)


def test_circleci_builds_and_runs_the_image_as_make_image_test_does_then_the_tests():
    config = yaml.safe_load((REPO / ".circleci" / "config.yml").read_text())
    commands = "\n".join(
        step["run"]["command"]
        for job in config["jobs"].values()
        for step in job["steps"]
        if isinstance(step, dict) and "run" in step
    )
    # make image-test: --version, participant and group, read-only with no tmpfs, non-root
    assert "make image ENGINE=docker" in commands
    assert "make image-test ENGINE=docker" in commands
    assert "--tmpfs" not in commands
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


def test_dockerfile_base_image_and_torch_index_are_build_arguments():
    instructions = dockerfile_instructions()
    # BASE_IMAGE before the first FROM (so every stage may use it), and every stage uses it.
    first_from = next(i for i, x in enumerate(instructions) if x.startswith("FROM "))
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in instructions[:first_from]
    froms = [x for x in instructions if x.startswith("FROM ")]
    assert froms and all(x.split()[1] == "${BASE_IMAGE}" for x in froms)
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in instructions
    assert "ARG TORCH_VARIANT=cpu" in instructions
    run = " ".join(x for x in instructions if x.startswith("RUN ") and "pip install" in x)
    # empty TORCH_INDEX_URL: no extra index at all
    assert '${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"}' in run
    # pip in a venv on PATH (Debian's Python refuses pip in its own site, PEP 668)
    assert "python3 -m venv /opt/venv" in run
    assert any(x.startswith("ENV PATH=/opt/venv/bin:") for x in instructions)


def test_every_python_package_comes_from_a_hashed_lock():
    instructions = dockerfile_instructions()
    installs = [
        part.strip()
        for x in instructions
        if x.startswith("RUN ")
        for part in x.split("&&")
        if "pip install" in part
    ]
    assert installs, "no pip install in the Dockerfile"
    locked = [x for x in installs if "--require-hashes" in x]
    assert locked and all(
        "-r /mnt/container/requirements-${TORCH_VARIANT}.lock" in x for x in locked
    )
    # The only other install is the app itself, without dependencies and without an index.
    for other in set(installs) - set(locked):
        assert "--no-deps" in other and "--no-index" in other, other
    assert all("--no-cache-dir" in x for x in installs), "pip's cache would stay in the layer"


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_lock_pins_torch_and_every_dependency_with_hashes(variant):
    pins = lock_pins(LOCKS[variant])
    assert all(hashes for _, hashes in pins.values()), "a package without --hash"
    expected_torch = "2.13.0+cpu" if variant == "cpu" else "2.13.0"
    assert pins["torch"][0] == expected_torch
    assert any(name.startswith("nvidia-") for name in pins) == (variant == "cuda")
    # Every dependency of pyproject.toml is in the lock (else --require-hashes fails the build).
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement)[0].lower().replace("_", "-")
        assert name in pins, f"{name} (pyproject.toml) is not in {LOCKS[variant].name}"
    # setuptools builds the app with --no-build-isolation: it must be locked too.
    assert "setuptools" in pins
    # The lock was made from the torch pin the image documents.
    assert expected_torch in (CONTAINER / f"torch-{variant}.in").read_text()


def test_no_layer_keeps_a_package_cache():
    for run in (x for x in dockerfile_instructions() if x.startswith("RUN ")):
        if "apt-get update" in run:
            assert "rm -rf /var/lib/apt/lists/*" in run, run[:80]
        if "npm install" in run or "npm ci" in run:
            assert "npm cache clean" in run or "rm -rf /root/.npm" in run, run[:80]
        if "pip install" in run:
            assert "--no-cache-dir" in run, run[:80]


def test_dockerfile_rules_fail_on_a_broken_dockerfile():
    """The parsing above sees what it checks: a cache left in a layer is visible to it."""
    broken = "FROM x\nRUN apt-get update \\\n    && apt-get install -y foo\n"
    (run,) = [x for x in dockerfile_instructions(broken) if x.startswith("RUN ")]
    assert "apt-get update" in run and "rm -rf /var/lib/apt/lists/*" not in run


def test_validator_is_pinned_by_version_and_sha512(tmp_path):
    instructions = dockerfile_instructions()
    assert "ARG BIDS_VALIDATOR_VERSION=1.15.0" in instructions
    assert any(re.fullmatch(r"ARG BIDS_VALIDATOR_SHA512=sha512-\S{86}==", x) for x in instructions)
    run = next(x for x in instructions if "fetch_npm_tarball.py bids-validator" in x)
    assert '"$BIDS_VALIDATOR_SHA512"' in run
    assert any(
        x.startswith("ENV PATH=") and "/opt/bids-validator/node_modules/.bin" in x
        for x in instructions
    )
    # The download check itself: a tarball with another digest is refused.
    registry = tmp_path / "registry"
    (registry / "pkg" / "-").mkdir(parents=True)
    (registry / "pkg" / "-" / "pkg-1.0.0.tgz").write_bytes(b"tarball")
    script = [sys.executable, str(CONTAINER / "fetch_npm_tarball.py"), "pkg", "1.0.0"]
    url = registry.as_uri()
    good = "sha512-" + base64.b64encode(hashlib.sha512(b"tarball").digest()).decode()
    out = tmp_path / "out.tgz"
    assert subprocess.run([*script, good, str(out), url]).returncode == 0
    assert out.read_bytes() == b"tarball"
    out.unlink()
    bad = subprocess.run([*script, "sha512-AAAA", str(out), url], capture_output=True, text=True)
    assert bad.returncode != 0 and "expected sha512-AAAA" in bad.stderr and not out.exists()


def test_makefile_builds_and_tests_the_image():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    assert {"image", "image-test", "base-image", "lock"} <= targets
    image = re.search(r"^image:\n((?:\t.*\n)+)", makefile, flags=re.M)[1]
    assert "$(ENGINE) build -t $(TAG)" in image
    for variable in ("BASE_IMAGE", "TORCH_INDEX_URL", "TORCH_VARIANT"):
        assert f"--build-arg {variable}=$({variable})" in image
    assert "container/image-test.sh $(TAG)" in makefile
    # Not part of make test: the image test takes minutes.
    test = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, flags=re.M)[1]
    assert "image" not in re.search(r"^test:(.*)$", makefile, flags=re.M)[1]
    assert "image-test" not in test


def test_a_changed_lock_or_source_reruns_its_layer():
    """buildah (podman 4.3 here) reused the app's layer after a code change: its cache keys a
    RUN on its text and build arguments, not on bind-mounted files. Each install RUN must
    see a digest build argument of what it installs, and make image must pass both."""
    instructions = dockerfile_instructions()
    runs = [x for x in instructions if x.startswith("RUN ") and "pip install" in x]
    digests = {"LOCK_DIGEST": "--require-hashes", "SOURCE_DIGEST": "--no-index"}
    for digest, install in digests.items():
        (run,) = [x for x in runs if install in x]
        declared = instructions.index(f"ARG {digest}=unset")
        assert declared < instructions.index(run) and f"${digest}" in run, digest
    # the lock's RUN does not mount the source: a code change leaves the 2 GB layer cached
    (lock_run,) = [x for x in runs if "--require-hashes" in x]
    assert "source=.," not in lock_run
    makefile = (REPO / "Makefile").read_text()
    image = re.search(r"^image:\n((?:\t.*\n)+)", makefile, flags=re.M)[1]
    for digest in digests:
        assert f"--build-arg {digest}=$({digest})" in image
    source = re.search(r"^SOURCE_DIGEST = (.*(?:\n\t.*)*)", makefile, flags=re.M)[1]
    assert "git ls-files -co --exclude-standard" in source and "sha256sum" in source


def test_image_test_runs_read_only_non_root_without_tmpfs():
    script = (CONTAINER / "image-test.sh").read_text()
    code = "\n".join(x for x in script.splitlines() if not x.lstrip().startswith("#"))
    assert code.startswith("set -eu") or "\nset -eu\n" in code
    assert 'read_only="--read-only"' in code
    assert 'read_only="--read-only --read-only-tmpfs=false"' in code
    assert "--tmpfs" not in code
    user = re.search(r"^USER_ID=(\d+):(\d+)$", code, flags=re.M)
    assert user and int(user[1]) != 0 and int(user[2]) != 0
    runs = [x for x in re.split(r"\n(?=\S)", code) if '"$ENGINE" run' in x]
    app_runs = [x for x in runs if '"$IMAGE" /data /out' in x or "--version" in x]
    assert app_runs and all("$read_only -u $USER_ID" in x for x in app_runs)
    assert '-v "$bids":/data:ro' in code
    # every level's exit code, the outputs and the inputs' checksums are checked
    assert 'fail "$level level exited with $status' in code
    for output in ("group_csvd.tsv", "group_csvd.html", "desc-summary_stats.tsv", "_mask.nii.gz"):
        assert output in code
    assert "sha256sum" in code and '[ "$before" = "$after" ]' in code
    assert 'grep -q "valid BIDS (bids-validator"' in code  # the image's validator ran


def test_base_image_script_uses_debian_packages_only():
    script = (CONTAINER / "make-base.sh").read_text()
    assert "mmdebstrap" in script and "bookworm" in script
    assert "--include=python3,python3-venv,ca-certificates" in script
    assert 'rm -rf "$1"/var/lib/apt/lists/*' in script
    assert "localhost/csvd-bids-base:bookworm" in script


def test_apptainer_definition_runs_the_app():
    definition = (CONTAINER / "csvd-bids.def").read_text()
    assert re.search(r"^Bootstrap: docker-archive$", definition, flags=re.M)
    assert re.search(r'^\s+exec csvd-bids "\$@"$', definition, flags=re.M)
