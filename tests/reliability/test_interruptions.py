"""Interruptions, concurrency, a full disk and the network, through the whole graph.

The cases that need a full run share two: a reference run (two subjects at once, each in its
own process and work dir, one output dir, HOME and the cwd unwritable, watched for network
use) and a chain on one
subject in one work dir: a second run of the same session while the first runs (refused by
the lock), Ctrl-C, kill -9, a full output disk, then a resume that must give the reference's
outputs. sub-01's FLAIR is a link to content outside the dataset, as in a DataLad dataset, and
the dataset lies under folders named like BIDS entities.
Each process runs ``run.py`` as a user would (3 mm, WMH only).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import flair_path, output_checksums, run_py_command, summary_path

from csvd_bids.errors import ExitCode

pytestmark = pytest.mark.xdist_group("interruptions")

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 300  # for a 3 mm session; it takes about a minute on 2 cores
UNWRITABLE = Path("/proc/csvd-bids-no-home")  # cannot be created, not even by root
CACHE_VARIABLES = ("XDG_", "MPL", "TORCH_", "NIPYPE_", "NUMBA_")

# Installed through PYTHONPATH in every process of a run (MultiProc's workers too: forked
# children keep the hook, spawned ones import sitecustomize again).
NETWORK_HOOK = """
import ipaddress, os, sys


def _record(what):
    with open(os.environ["CSVD_TEST_NETWORK_LOG"], "a") as log:
        log.write(f"{os.getpid()} {what}\\n")


def _loopback(address):
    try:
        return ipaddress.ip_address(address[0]).is_loopback
    except ValueError:  # "" or a host name: every interface, or a lookup
        return False


def _hook(event, args):
    # network use: connections, datagrams, name lookups and sockets bound beyond the loopback
    # interface (importing MONAI makes urllib3 probe for IPv6 with a socket bound to ::1)
    if event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple):
        _record(f"{event} {args[1]!r}")
    elif event == "socket.bind" and isinstance(args[1], tuple) and not _loopback(args[1]):
        _record(f"{event} {args[1]!r}")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        _record(f"{event} {args[0]!r}")


sys.addaudithook(_hook)
"""


def _file_sums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file's bytes below ``folder`` (links followed)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _command(bids: Path, out: Path, work: Path, subject: str) -> list[str]:
    return run_py_command(bids, out, work, subject, "--nprocs", "1")


def _terminal_sigint() -> None:
    """SIGINT delivered as from a terminal, even where the test runner ignores it: a
    background job of a non-interactive shell (``make test &``, ``nohup``) inherits SIGINT
    ignored, and Ctrl-C then reached nothing (the run went on to its end, exit 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(command: list[str], env: dict | None = None, cwd: str | None = None) -> subprocess.Popen:
    # its own process group: signals reach MultiProc's workers too, as from a terminal
    return subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_terminal_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _node_results(work: Path) -> int:
    return len(list(work.rglob("result_*.pklz")))


def _wait_for_nodes(process: subprocess.Popen, work: Path, count: int) -> None:
    """Until ``count`` node results are in the work dir (the run is mid-graph)."""
    deadline = time.monotonic() + WAIT_S
    while _node_results(work) < count:
        if process.poll() is not None:
            output = process.communicate()[0][-2000:]
            raise AssertionError(
                f"the run ended (exit {process.returncode}) with {_node_results(work)} of the "
                f"{count} node results it was to be interrupted at:\n{output}"
            )
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.2)


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=WAIT_S)
    return process.returncode, output


def _mount_small_tmpfs(folder: Path) -> str | None:
    """Mount a 3 MB tmpfs (the session's outputs need about 16 MB); the reason when not."""
    folder.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return "mounting a small tmpfs needs root"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if mounted.returncode == 0 else f"cannot mount a tmpfs: {mounted.stderr.strip()}"


@pytest.fixture(scope="module")
def dataset(_single_bids, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("interruptions")
    # under folders named like BIDS entities: pybids once matched them in the absolute path
    bids = Path(shutil.copytree(_single_bids, root / "ses-pilot" / "perf" / "acq-old" / "ds"))
    annex = root / "annex" / "objects"
    annex.mkdir(parents=True)
    flair = flair_path(bids, "01")
    flair.rename(annex / "flair-key")
    flair.symlink_to(annex / "flair-key")
    return {"root": root, "bids": bids, "before": _file_sums(bids)}


@pytest.fixture(scope="module")
def reference(dataset) -> dict:
    """Both subjects at once into one output dir, then the group level, every process watched
    for network use (connections, name lookups, sockets bound beyond the loopback interface)."""
    root, bids = dataset["root"], dataset["bids"]
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NETWORK_HOOK)
    log = root / "network.log"
    # as `docker run --read-only` leaves it: HOME and the cwd unwritable, no cache variables
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(CACHE_VARIABLES)},
        "HOME": str(UNWRITABLE),
        "PYTHONPATH": str(hook),
        "CSVD_TEST_NETWORK_LOG": str(log),
    }
    out = root / "reference"
    runs = {
        subject: _start(_command(bids, out, root / f"work-{subject}", subject), env, cwd="/proc")
        for subject in ("01", "02")
    }
    finished = {subject: _finish(run) for subject, run in runs.items()}
    group = subprocess.run(
        [sys.executable, str(REPO / "run.py"), str(bids), str(out), "group"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    # the positive control: the same hook sees a connection tried on purpose (refused: no
    # server listens on the discard port of the loopback interface)
    control_log = root / "control.log"
    connect = "import socket; s = socket.socket(); s.connect_ex(('127.0.0.1', 9)); s.close()"
    subprocess.run(
        [sys.executable, "-c", connect],
        env={**env, "CSVD_TEST_NETWORK_LOG": str(control_log)},
        check=True,
    )
    return {
        "out": out,
        "work": {subject: root / f"work-{subject}" for subject in runs},
        "participant": finished,
        "group": (group.returncode, group.stdout + group.stderr),
        "network": log.read_text() if log.exists() else "",
        "control": control_log.read_text() if control_log.exists() else "",
    }


@pytest.fixture(scope="module")
def chain(dataset, reference) -> dict:
    """One subject in one work dir: a second run while the first runs, Ctrl-C, kill -9, a full
    output disk, then a resume to completion."""
    root, bids = dataset["root"], dataset["bids"]
    work, out = root / "work", root / "out"
    steps = {}

    first = _start(_command(bids, out, work, "01"))
    _wait_for_nodes(first, work, 3)
    # Frozen (its lock held) while the second run starts and is refused, so that on a loaded
    # machine it cannot run on towards its end and leave the resume below too few nodes to be
    # killed mid-graph.
    os.killpg(first.pid, signal.SIGSTOP)
    started = time.monotonic()
    steps["second"] = (*_finish(_start(_command(bids, root / "out2", work, "01"))),)
    steps["second_s"] = time.monotonic() - started
    steps["second_alive"] = first.poll() is None
    os.killpg(first.pid, signal.SIGCONT)
    os.killpg(first.pid, signal.SIGINT)
    steps["ctrl_c"] = _finish(first)

    done = _node_results(work)
    killed = _start(_command(bids, out, work, "01"))
    _wait_for_nodes(killed, work, done + 2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=60)

    full = root / "full"
    steps["full_skip"] = _mount_small_tmpfs(full)
    if steps["full_skip"] is None:
        try:
            steps["full"] = _finish(_start(_command(bids, full / "out", work, "01")))
            steps["full_files"] = sorted(
                str(p.relative_to(full)) for p in (full / "out").rglob("*") if p.is_file()
            )
        finally:
            subprocess.run(["umount", str(full)], check=False)

    steps["resume"] = _finish(_start(_command(bids, out, work, "01")))
    steps["out"] = out
    return steps


def test_two_subjects_at_once_into_one_output_dir(reference):
    for subject, (code, output) in reference["participant"].items():
        assert code == ExitCode.OK, output[-3000:]
        assert summary_path(reference["out"], subject).is_file()


def test_runs_with_unwritable_home_and_cwd(reference):
    """Library caches go to the work dir (the reference runs had HOME and the cwd in /proc)."""
    for subject, work in reference["work"].items():
        assert reference["participant"][subject][0] == ExitCode.OK
        assert (work / ".cache").is_dir()


def test_no_network_connection_in_participant_and_group_runs(reference):
    assert reference["group"][0] == ExitCode.OK, reference["group"][1][-3000:]
    assert reference["control"], "the hook saw no connection tried on purpose: it sees nothing"
    assert reference["network"] == ""


def test_a_link_to_content_outside_the_dataset(reference):
    """The URI of the link's name in the dataset (was: the writer failed after the graph)."""
    sidecar = (
        reference["out"] / "sub-01" / "anat" / "sub-01_space-T1w_desc-preproc_FLAIR.json"
    ).read_text()
    assert '"bids:raw:sub-01/anat/sub-01_FLAIR.nii.gz"' in sidecar


def test_a_dataset_under_folders_named_like_entities(reference):
    """The dataset lies under /.../ses-pilot/perf/acq-old/: the same sessions, and output names
    without the parents' entities."""
    out = reference["out"]
    names = [p.name for p in (out / "sub-01").rglob("*.nii.gz")]
    assert "sub-01_space-T1w_label-WMH_mask.nii.gz" in names
    assert not any("ses-" in n or "acq-old" in n for n in names), names
    assert not (out / "sub-01" / "ses-pilot").exists()


def test_same_session_in_the_same_work_dir_is_refused_at_once(chain):
    code, output = chain["second"]
    assert code == ExitCode.WORK_DIR_BUSY, output[-3000:]
    assert "another csvd-bids run is processing sub-01" in output
    assert chain["second_alive"], "the first run did not outlive the second"
    assert chain["second_s"] < 60


def test_ctrl_c_exits_130(chain):
    code, output = chain["ctrl_c"]
    assert code == 130, output[-3000:]
    assert "re-run with the same work dir to resume" in output


def test_full_output_disk_exits_73_and_leaves_nothing_of_the_session(chain):
    if chain["full_skip"]:
        pytest.skip(chain["full_skip"])
    code, output = chain["full"]
    assert code == ExitCode.CANNOT_WRITE, output[-3000:]
    assert "No space left on device while writing the outputs of sub-01" in output
    assert not [f for f in chain["full_files"] if "sub-01" in f], chain["full_files"]


def test_kill_then_resume_gives_the_reference_outputs(chain, reference):
    """Ctrl-C, kill -9 and a full disk later, the same arrays, tables and transforms (the
    HDF5 one byte for byte) as the uninterrupted run in another work dir."""
    code, output = chain["resume"]
    assert code == ExitCode.OK, output[-3000:]
    resumed = output_checksums(chain["out"] / "sub-01")
    expected = output_checksums(reference["out"] / "sub-01")
    assert any(name.endswith(".h5") for name in expected)
    assert resumed == expected
    assert not list(chain["out"].glob(".staging-*"))


def test_inputs_unchanged(dataset, reference, chain):
    assert _file_sums(dataset["bids"]) == dataset["before"]
