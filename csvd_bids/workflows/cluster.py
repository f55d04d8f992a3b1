"""Batch schedulers: which nipype plugin runs the graph, and a SLURM plugin that asks the
queue once per poll.

nipype's own SLURM plugin runs ``squeue -j ID`` once per queued job and per poll, each through a
nipype ``CommandLine`` that ends in a full ``gc.collect()``: on a 2-subject run (34 jobs) the
main process spent 110 s of CPU there, beside the jobs on a 2-core node. This one asks for every
queued job in one ``squeue`` call and keeps the answer for the rest of that poll.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time

from nipype.pipeline.plugins.slurm import SLURMPlugin as NipypeSLURMPlugin

from csvd_bids.errors import UsageError

LOGGER = logging.getLogger("csvd_bids")

# What each batch plugin calls; a missing one is a usage error before anything runs, not a
# traceback at the first submission.
SCHEDULER_COMMANDS = {
    "SLURM": ("sbatch", "squeue"),
    "SLURMGraph": ("sbatch",),
    "SGE": ("qsub", "qstat"),
    "SGEGraph": ("qsub",),
    "PBS": ("qsub", "qstat"),
    "PBSGraph": ("qsub",),
    "LSF": ("bsub", "bjobs"),
    "Condor": ("condor_submit", "condor_q"),
    "CondorDAGMan": ("condor_submit_dag",),
    "OAR": ("oarsub", "oarstat"),
}
SQUEUE_TIMEOUT_S = 60


def check_plugin(name: str, source: str) -> None:
    """Raise a UsageError naming ``source`` (the plugin file) when nipype has no plugin
    ``name`` or the scheduler commands it calls are not on the PATH."""
    from nipype.pipeline import plugins

    if not hasattr(plugins, f"{name}Plugin"):
        known = sorted(p[: -len("Plugin")] for p in dir(plugins) if p.endswith("Plugin"))
        raise UsageError(f"{source}: nipype has no plugin {name!r} (known: {', '.join(known)})")
    missing = [cmd for cmd in SCHEDULER_COMMANDS.get(name, ()) if shutil.which(cmd) is None]
    if missing:
        raise UsageError(
            f"{source}: plugin {name} submits with {' and '.join(missing)}, not found on the "
            "PATH: run csvd-bids where the scheduler's commands are (a login or compute node), "
            "or inside a container, one sbatch job per participant (README, section Clusters)"
        )


class SLURMPlugin(NipypeSLURMPlugin):
    """nipype's SLURM plugin with one ``squeue`` per poll. The class keeps nipype's name:
    nipype names the plugin of MapNodes after the runner's class."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._queued: set[int] = set()  # job ids squeue listed at the last query
        self._asked: set[int] = set()  # job ids that query asked about
        self._asked_at = float("-inf")

    def _is_pending(self, taskid: int) -> bool:
        # A job submitted after the last query, or a query older than one poll, asks again:
        # a job missing from a stale answer would count as finished.
        max_age = float(self._config["execution"]["poll_sleep_duration"]) / 2
        if taskid not in self._asked or time.monotonic() - self._asked_at > max_age:
            self._query_queue()
        return taskid in self._queued

    def _query_queue(self) -> None:
        self._asked = set(self._pending)
        self._asked_at = time.monotonic()
        ids = ",".join(str(job) for job in sorted(self._asked))
        try:
            listed = subprocess.run(
                ["squeue", "--noheader", "--format=%i", f"--jobs={ids}"],
                capture_output=True,
                text=True,
                timeout=SQUEUE_TIMEOUT_S,
                check=True,
            ).stdout.split()
        except (subprocess.SubprocessError, OSError) as exc:
            # As nipype does on a squeue timeout: the jobs count as queued, ask again later.
            LOGGER.warning("squeue failed (%s): asking again at the next poll", exc)
            self._queued = set(self._asked)
            return
        self._queued = {int(job) for job in listed if job.isdigit()}
