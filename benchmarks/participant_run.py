"""Wall time and peak memory (whole process tree) of the participant level on the demo dataset.

    python benchmarks/participant_run.py [--repeats 3] [--resolution 1] [--nprocs 2]
        [--subjects 2] [--sessions 2] [--markers wmh ...]

Each repeat uses a fresh work and output directory (no cache). Prints every run and the median,
and splits each run's wall time by stage from the nipype node results in the work directory:
"preprocessing" runs from the first node's start to the end of the last node of the sessions'
``preproc_wf`` (coregistration, brain extraction, bias correction, template and regions, DWI),
"markers" from there to the end of the last detector, the rest is writing outputs and reports.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from statistics import median

from common import csvd_bids, run_measured, synth
from nipype.utils.filemanip import loadpkl

PREPROC_WF = "preproc_wf"  # the sessions' preprocessing sub-workflow (workflows/base.py)


def node_times(work: Path) -> list[tuple[str, datetime, datetime]]:
    """(node directory relative to ``work``, start, end) of every node that ran."""
    times = []
    for result in work.rglob("result_*.pklz"):
        runtime = getattr(loadpkl(result), "runtime", None)
        start, end = getattr(runtime, "startTime", None), getattr(runtime, "endTime", None)
        if start and end:
            node = str(result.parent.relative_to(work))
            times.append((node, datetime.fromisoformat(start), datetime.fromisoformat(end)))
    return times


def stage_seconds(work: Path) -> dict[str, float]:
    """Wall seconds of preprocessing and of the marker detectors (see the module docstring)."""
    times = node_times(work)
    if not times:
        return {}
    first = min(start for _, start, _ in times)
    preproc_end = max(
        (end for node, _, end in times if PREPROC_WF in node.split("/")), default=first
    )
    detect_end = max(
        (end for node, _, end in times if node.endswith("/detect")), default=preproc_end
    )
    return {
        "preprocessing": (preproc_end - first).total_seconds(),
        "markers": (detect_end - preproc_end).total_seconds(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--markers", nargs="+", help="passed to csvd-bids (default: all)")
    args = parser.parse_args()
    markers = ["--markers", *args.markers] if args.markers else []
    with tempfile.TemporaryDirectory() as tmp:
        bids = Path(tmp) / "bids"
        subprocess.run(synth(bids, args.subjects, args.sessions, 11, args.resolution), check=True)
        n_sessions = args.subjects * args.sessions
        times, peaks, stages = [], [], []
        for repeat in range(args.repeats):
            run = Path(tmp) / f"run-{repeat}"
            seconds, peak_gb, code = run_measured(
                csvd_bids(
                    str(bids),
                    str(run / "out"),
                    "participant",
                    "-w",
                    str(run / "work"),
                    "--nprocs",
                    str(args.nprocs),
                    "--skip-bids-validation",
                    *markers,
                )
            )
            times.append(seconds)
            peaks.append(peak_gb)
            stages.append(stage_seconds(run / "work"))
            split = ", ".join(f"{name} {value:.1f} s" for name, value in stages[-1].items())
            print(
                f"run {repeat + 1}: {seconds:6.1f} s ({split}), peak {peak_gb:.2f} GB, exit {code}"
            )
    print(
        f"median over {args.repeats} runs of {n_sessions} sessions at {args.resolution} mm, "
        f"{args.nprocs} processes: {median(times):.1f} s ({median(times) / n_sessions:.1f} s "
        f"per session), peak memory {median(peaks):.2f} GB"
    )
    for name in stages[0] if stages else ():
        print(f"  median {name}: {median(run[name] for run in stages):.1f} s")


if __name__ == "__main__":
    main()
