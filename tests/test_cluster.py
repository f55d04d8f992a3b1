"""A real SLURM cluster on this machine: slurmctld, slurmd and munged from Debian's packages,
started in the test's own folder on free ports, no system configuration touched.

3 mm subjects (WMH only) run the two ways the README gives: nipype's SLURM plugin
(``--use-plugin``, one sbatch job per node; one subject) and the shipped array script (one
participant per task, each task a MultiProc run; two subjects beside a third whose FLAIR is
unusable); then the shipped group script. Skipped, with the reason, where SLURM cannot be
installed or started; as root with apt (CI), the packages are installed first.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import UNREAD_BY_WMH_TESTS, flair_path, output_checksums, remove_images

from csvd_bids.errors import ExitCode

pytestmark = pytest.mark.xdist_group("slurm")

REPO = Path(__file__).resolve().parent.parent
SBIN = "/usr/sbin:/sbin"  # where Debian puts the daemons; not on every user's PATH
PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel")
NODE = "csvdnode"
START_S = 60
JOBS_S = 900  # every job of a run; the plugin run (one subject) takes about 80 s on 2 cores
SUBJECTS = ("01", "02")
# The plugin run takes one of them: every node of a session is a job either way, and each job
# starts an interpreter (a second subject doubled the run's 150 s for no new behaviour).
PLUGIN_SUBJECT = SUBJECTS[0]
BROKEN = "03"  # its FLAIR holds no finite value: exit 65 at planning


def _which(command: str) -> str | None:
    return shutil.which(command, path=f"{os.environ.get('PATH', '')}:{SBIN}")


def _missing() -> list[str]:
    return [cmd for cmd in (*DAEMONS, *CLIENTS) if _which(cmd) is None]


def _install() -> str | None:
    """None when SLURM and munge are there, installing them as root with apt; else why not."""
    if not _missing():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{', '.join(_missing())} not found; Debian: apt-get install {' '.join(PACKAGES)}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    for command in (install, ["apt-get", "update", "-qq"], install):  # lists may be stale
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode == 0 and not _missing():
            return None
    return f"apt-get could not install {' '.join(PACKAGES)}: {done.stderr.strip()[-500:]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _memory_mb() -> int:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    return total_kb // 1024 - 512  # slurmd refuses a node that claims more than it has


def _slurm_conf(folder: Path, user: str) -> str:
    return f"""\
ClusterName=csvdtest
SlurmctldHost={socket.gethostname().split(".")[0]}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.sock
SlurmUser={user}
SlurmdUser={user}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=csvd Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


def _log_tails(folder: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-800:]}"
        for log in sorted(folder.glob("*.log"))
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """SLURM_CONF and PATH for the clients, with the daemons running; stopped afterwards."""
    reason = _install()
    if reason:
        pytest.skip(f"no SLURM: {reason}")
    folder = tmp_path_factory.mktemp("slurm")
    (folder / "state").mkdir()
    (folder / "spool").mkdir()
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = folder / "slurm.conf"
    conf.write_text(_slurm_conf(folder, getpass.getuser()))
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"{os.environ['PATH']}:{SBIN}"}
    munge = [
        _which("munged"), "--foreground", "--force", f"--socket={folder}/munge.sock",
        f"--key-file={key}", f"--pid-file={folder}/munged.pid",
        f"--log-file={folder}/munged.log", f"--seed-file={folder}/munged.seed",
    ]  # fmt: skip
    daemons = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for command in (
            munge,
            [_which("slurmctld"), "-D", "-f", str(conf)],
            [_which("slurmd"), "-D", "-f", str(conf), "-N", NODE],
        )
    ]
    try:
        deadline = time.monotonic() + START_S
        while _sinfo_state(env) != "idle":
            if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                pytest.skip(f"SLURM did not start:\n{_log_tails(folder)}")
            time.sleep(0.5)
        yield {"env": env, "folder": folder}
    finally:
        subprocess.run(["scancel", f"--user={getpass.getuser()}"], env=env, check=False)
        for daemon in reversed(daemons):
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()


def _sinfo_state(env: dict) -> str:
    done = subprocess.run(
        ["sinfo", "--noheader", "--format=%T", f"--nodes={NODE}"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip()


def _wait_for_jobs(env: dict, jobs: list[str], folder: Path) -> None:
    deadline = time.monotonic() + JOBS_S
    while True:
        queued = subprocess.run(
            ["squeue", "--noheader", "--format=%i", f"--jobs={','.join(jobs)}"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        if not queued:
            return
        assert time.monotonic() < deadline, f"jobs {queued} still queued\n{_log_tails(folder)}"
        time.sleep(1)


def _job_records(env: dict, job: str) -> list[dict[str, str]]:
    """``scontrol show job`` of a job (one record per array task) as key=value dicts."""
    shown = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in shown.splitlines() if line]


def _job_env(cluster: dict, **extra: str) -> dict:
    """The submitting shell's environment: this Python's csvd-bids first on the PATH, and no
    LOGNAME (as under cron or ``apptainer --cleanenv``; nipype's SLURM plugin needs one)."""
    env = {**cluster["env"], **extra}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env.pop("LOGNAME", None)
    return env


@pytest.fixture(scope="module")
def dataset(_single_bids, tmp_path_factory) -> Path:
    """Two subjects of the shared 3 mm dataset (no DWI or ASL) and a third whose FLAIR is NaN."""
    bids = tmp_path_factory.mktemp("cluster_data") / "bids"
    shutil.copytree(_single_bids, bids)
    remove_images(bids, *UNREAD_BY_WMH_TESTS)  # WMH-only runs: fewer, shorter jobs
    shutil.copytree(bids / "sub-01", bids / f"sub-{BROKEN}")
    for path in (bids / f"sub-{BROKEN}").rglob("sub-01_*"):
        path.rename(path.with_name(path.name.replace("sub-01_", f"sub-{BROKEN}_")))
    flair = flair_path(bids, BROKEN)
    img = nib.load(flair)
    nib.save(nib.Nifti1Image(np.full(img.shape, np.nan, np.float32), img.affine), flair)
    return bids


@pytest.fixture(scope="module")
def array_run(cluster, dataset, tmp_path_factory) -> dict:
    """participant-array.sbatch on the three subjects, then group.sbatch after it."""
    root = tmp_path_factory.mktemp("array")
    out = root / "out"
    subjects = root / "subjects.txt"
    subjects.write_text("".join(f"sub-{label}\n" for label in (*SUBJECTS, BROKEN)))
    env = _job_env(cluster, CSVD_WORK=str(root / "work"))
    scripts = REPO / "cluster"

    def submit(*args: str) -> str:
        return subprocess.run(
            ["sbatch", "--parsable", *args], env=env, cwd=root,
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    # One CPU per task so that both subjects run at once on a 2-core machine.
    array = submit(
        "--array=1-3", "--cpus-per-task=1", str(scripts / "participant-array.sbatch"),
        str(dataset), str(out), str(subjects), "--skip-bids-validation", "--markers", "wmh",
    )  # fmt: skip
    group = submit(
        f"--dependency=afterany:{array}", str(scripts / "group.sbatch"), str(dataset), str(out)
    )
    _wait_for_jobs(env, [array, group], cluster["folder"])
    tasks = {record["ArrayTaskId"]: record for record in _job_records(env, array)}
    logs = {task: (root / f"csvd-bids_{array}_{task}.log").read_text() for task in tasks}
    return {
        "out": out,
        "tasks": tasks,
        "logs": logs,
        "group": _job_records(env, group)[0],
        "group_log": (root / f"csvd-bids-group_{group}.log").read_text(),
    }


@pytest.fixture(scope="module")
def plugin_run(cluster, dataset, tmp_path_factory) -> dict:
    """``--use-plugin`` with nipype's SLURM plugin: every node an sbatch job."""
    root = tmp_path_factory.mktemp("plugin")
    plugin = root / "slurm.yml"
    plugin.write_text("plugin: SLURM\nplugin_args:\n  sbatch_args: '--partition=csvd'\n")
    command = [
        sys.executable, str(REPO / "run.py"), str(dataset), str(root / "out"), "participant",
        "--participant-label", PLUGIN_SUBJECT, "-w", str(root / "work"), "--skip-bids-validation",
        "--markers", "wmh", "--use-plugin", str(plugin),
    ]  # fmt: skip
    done = subprocess.run(
        command, env=_job_env(cluster), capture_output=True, text=True, timeout=JOBS_S
    )
    return {"out": root / "out", "work": root / "work", "code": done.returncode,
            "output": done.stdout + done.stderr}  # fmt: skip


def test_array_tasks_exit_with_each_subjects_code(array_run):
    tasks, logs = array_run["tasks"], array_run["logs"]
    assert sorted(tasks) == ["1", "2", "3"]
    for task in ("1", "2"):
        assert tasks[task]["ExitCode"] == "0:0", logs[task][-3000:]
        assert tasks[task]["JobState"] == "COMPLETED"
    assert tasks["3"]["ExitCode"] == f"{ExitCode.INPUT_DATA}:0", logs["3"][-3000:]
    assert tasks["3"]["JobState"] == "FAILED"
    assert "no finite voxel values" in logs["3"] and f"sub-{BROKEN}_FLAIR.nii.gz" in logs["3"]


def test_group_job_runs_after_the_array(array_run):
    group, log = array_run["group"], array_run["group_log"]
    assert group["ExitCode"] == "0:0", log[-3000:]
    assert "have no participant-level outputs and are not in the group tables" in log
    assert f"sub-{BROKEN}" in log  # the failed subject is named
    table = (array_run["out"] / "group_csvd.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in table[1:]) == [f"sub-{s}" for s in SUBJECTS]


def test_plugin_runs_every_node_as_a_slurm_job(plugin_run):
    assert plugin_run["code"] == ExitCode.OK, plugin_run["output"][-3000:]
    batch = list(plugin_run["work"].rglob("batch/batchscript_*.sh"))
    logs = list(plugin_run["work"].rglob("batch/slurm-*.out"))
    assert len(batch) >= 20 and len(logs) == len(batch)


def test_plugin_and_array_give_the_same_outputs(plugin_run, array_run):
    """The array's tasks are MultiProc runs of one subject each: the same arrays, tables and
    transforms as the plugin's jobs."""
    expected = output_checksums(array_run["out"] / f"sub-{PLUGIN_SUBJECT}")
    assert expected, f"sub-{PLUGIN_SUBJECT}: nothing written by the array"
    assert output_checksums(plugin_run["out"] / f"sub-{PLUGIN_SUBJECT}") == expected
    assert not (plugin_run["out"] / f"sub-{SUBJECTS[1]}").exists()  # not selected
