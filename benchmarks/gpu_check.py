"""The GPU path against the CPU: a model bundle's WMH probabilities on sessions as csvd-bids
preprocessed them, float16 autocast on CUDA against float32 on the CPU, with the time of each.

    python benchmarks/gpu_check.py --outputs OUT [OUT ...] --labels MASKS [MASKS ...]
        [--bundle DIR] [--threads N] [--tta] [--min-dice 0.98]

``--outputs``/``--labels`` as ``csvd-bids-train`` takes them (csvd-bids outputs and the
reference masks: the masks only select the sessions and give each a Dice against the
reference). ``--bundle``: default the shipped WMH model. Prints per session the seconds on
each device, the largest probability difference, the Dice between the two masks and each
mask's Dice against the reference; exits 1 when a CPU/GPU mask Dice is under ``--min-dice``
(and 2 when torch sees no GPU). Needs torch, MONAI and nibabel only (no preprocessing stack),
so it runs on a bare GPU node.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from statistics import median

import numpy as np
import torch

from csvd_bids.evaluate import compare_masks
from csvd_bids.models.builtin import WMH_BUNDLE
from csvd_bids.models.bundle import load_bundle
from csvd_bids.models.inference import predict
from csvd_bids.models.train import TrainSettings, load_sessions


def _timed(bundle, network, session, device: str, tta: bool) -> tuple[np.ndarray, float]:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    probability = predict(
        bundle, network, session.image, session.brain, session.zooms, device, tta=tta
    )
    return probability, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, nargs="+", required=True)
    parser.add_argument("--labels", type=Path, nargs="+", required=True)
    parser.add_argument("--bundle", type=Path, default=WMH_BUNDLE)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--min-dice", type=float, default=0.98)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch sees no CUDA GPU: nothing to check")
        return 2
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.bundle)
    settings = TrainSettings(marker=bundle.metadata["marker"], inputs=tuple(bundle.inputs))
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CPU threads {args.threads}")
    print(f"bundle {bundle.path.name}, tta {args.tta}")
    print("session | cpu s | gpu s | max |dp| | Dice cpu/gpu | Dice ref cpu | Dice ref gpu")
    worst, cpu_times, gpu_times = 1.0, [], []
    networks = {device: bundle.build_network() for device in ("cpu", "cuda")}
    threshold = float(bundle.metadata["threshold"])
    for outputs, labels in zip(args.outputs, args.labels, strict=True):
        for session in load_sessions(outputs, labels, settings):
            if not cpu_times:  # CUDA context and kernels: not part of a session's time
                _timed(bundle, networks["cuda"], session, "cuda", args.tta)
            cpu, cpu_s = _timed(bundle, networks["cpu"], session, "cpu", args.tta)
            gpu, gpu_s = _timed(bundle, networks["cuda"], session, "cuda", args.tta)
            truth = session.label[0] > 0
            agree = compare_masks(cpu >= threshold, gpu >= threshold, session.zooms).dice
            ref_cpu = compare_masks(truth, cpu >= threshold, session.zooms).dice
            ref_gpu = compare_masks(truth, gpu >= threshold, session.zooms).dice
            worst = min(worst, agree)
            cpu_times.append(cpu_s)
            gpu_times.append(gpu_s)
            name = "/".join(Path(session.name).parts[-3:])
            print(
                f"{name} | {cpu_s:.2f} | {gpu_s:.2f} | {np.abs(cpu - gpu).max():.4f} | "
                f"{agree:.4f} | {ref_cpu:.3f} | {ref_gpu:.3f}"
            )
    if not cpu_times:
        print("no session with the bundle's inputs and a reference mask")
        return 2
    print(
        f"{len(cpu_times)} sessions: median {median(cpu_times):.2f} s on the CPU, "
        f"{median(gpu_times):.2f} s on the GPU ({median(cpu_times) / median(gpu_times):.0f} x); "
        f"lowest CPU/GPU mask Dice {worst:.4f} (required {args.min_dice})"
    )
    return 0 if worst >= args.min_dice else 1


if __name__ == "__main__":
    sys.exit(main())
