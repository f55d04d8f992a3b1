"""Per-node run times of a participant run, read from its nipype work directory.

    python benchmarks/node_times.py WORK_DIR [--nodes detect quantify write_derivatives]

Every node folder keeps its result file (``result_<node>.pklz``) with the interface's run
time; this prints, per node name (e.g. ``wmh_wf.detect``), how many times it ran (one per
session when each detector runs once) and the median and total seconds. With ``--nodes``, only
the nodes whose last name part is listed.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from nipype.utils.filemanip import loadpkl


def node_times(work_dir: Path) -> dict[str, list[float]]:
    """Node name below its session workflow (e.g. ``wmh_wf.detect``) -> seconds per run."""
    times: dict[str, list[float]] = defaultdict(list)
    for result in sorted(work_dir.rglob("result_*.pklz")):
        parts = result.parent.relative_to(work_dir).parts
        session = next((i for i, p in enumerate(parts) if p.startswith("sub_")), None)
        if session is None:
            continue
        runtime = getattr(loadpkl(result), "runtime", None)
        duration = getattr(runtime, "duration", None)
        if duration is not None:
            times[".".join(parts[session + 1 :])].append(float(duration))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--nodes", nargs="*", help="last name parts to keep, e.g. detect")
    args = parser.parse_args()
    times = node_times(args.work_dir)
    print(f"{'node':45s} {'runs':>5s} {'median s':>9s} {'total s':>8s}")
    for name, values in sorted(times.items()):
        if args.nodes and name.rsplit(".", 1)[-1] not in args.nodes:
            continue
        print(f"{name:45s} {len(values):5d} {statistics.median(values):9.2f} {sum(values):8.1f}")


if __name__ == "__main__":
    main()
