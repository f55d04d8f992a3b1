"""Wall time and peak memory (whole process tree) of the participant level on the demo dataset.

    python benchmarks/participant_run.py [--repeats 3] [--resolution 1] [--nprocs 2]

Each repeat uses a fresh work and output directory (no cache). Prints every run and the median.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path
from statistics import median

from common import csvd_bids, run_measured, synth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--nprocs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bids = Path(tmp) / "bids"
        subprocess.run(synth(bids, args.subjects, args.sessions, 11, args.resolution), check=True)
        n_sessions = args.subjects * args.sessions
        times, peaks = [], []
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
                )
            )
            times.append(seconds)
            peaks.append(peak_gb)
            print(f"run {repeat + 1}: {seconds:6.1f} s, peak {peak_gb:.2f} GB, exit {code}")
    print(
        f"median over {args.repeats} runs of {n_sessions} sessions at {args.resolution} mm, "
        f"{args.nprocs} processes: {median(times):.1f} s ({median(times) / n_sessions:.1f} s "
        f"per session), peak memory {median(peaks):.2f} GB"
    )


if __name__ == "__main__":
    main()
