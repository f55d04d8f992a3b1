"""Speed of model bundles: whole-volume inference of one 1 mm session, and training throughput.

    python benchmarks/model_inference.py [--repeats 3] [--threads 2] [--device cpu|cuda] [--bf16]
        [--bundle DIR] [--shape X Y Z]

The network is the one ``csvd-bids-train`` makes by default (MONAI UNet, channels 16-32-64-128,
two residual units, 2 input channels, 64^3 patches) with random weights, or with ``--bundle``
that bundle's own network and patch size (e.g. the shipped WMH model): time does not depend
on the weights' values. Inference: ``csvd_bids.models.inference.predict`` on a 1 mm volume of
the synthetic working grid's shape (sliding window, Gaussian blending), with and without the
flip test-time augmentation. ``--shape`` gives another volume; with it, the generator and
its preprocessing stack are not imported, so the script runs on a bare GPU node.
Training: Dice-CE steps on batches of 4 patches, on the same device (``--bf16``: bfloat16
autocast, as ``csvd-bids-train --bf16``). Prints every repeat and the medians.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from statistics import median

import numpy as np
import torch

from csvd_bids.models.bundle import Bundle, load_bundle, make_network
from csvd_bids.models.inference import predict, resolve_device
from csvd_bids.models.train import TrainSettings, network_def


def _bundle(settings: TrainSettings) -> Bundle:
    metadata = {
        "name": "benchmark",
        "inputs": list(settings.inputs),
        "spacing_mm": [1.0, 1.0, 1.0],
        "patch_size": list(settings.patch_size),
        "threshold": 0.5,
    }
    return Bundle(Path("."), metadata, network_def(settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bundle", type=Path, help="a bundle's own network and patch size")
    parser.add_argument("--shape", type=int, nargs=3, help="default: the generator's 1 mm grid")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast in training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.bundle:
        bundle = load_bundle(args.bundle)
        network = bundle.build_network().eval()
    else:
        bundle = _bundle(TrainSettings(marker="wmh", inputs=("flair", "t1w")))
        network = make_network(bundle.network_def, bundle.path).eval()
    patch = tuple(int(p) for p in bundle.metadata["patch_size"])
    if args.shape:
        shape = tuple(args.shape)
    else:
        from csvd_bids.synth.anatomy import working_grid

        shape = tuple(int(n) for n in working_grid(1.0)[0])
    rng = np.random.default_rng(0)
    channels = rng.normal(size=(len(bundle.inputs), *shape)).astype(np.float32)
    brain = np.zeros(shape, dtype=bool)
    brain[10:-10, 10:-10, 10:-10] = True
    print(f"volume {shape}, {sum(p.numel() for p in network.parameters()):,} parameters")
    for tta in (False, True):
        times = []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            predict(bundle, network, channels, brain, (1.0, 1.0, 1.0), args.device, tta=tta)
            times.append(time.perf_counter() - start)
            print(f"inference tta={tta} repeat {repeat + 1}: {times[-1]:.2f} s")
        print(f"inference tta={tta}: median {median(times):.2f} s (target < 30 s on 2 CPU cores)")

    from monai.losses import DiceCELoss

    device = resolve_device(args.device)
    network.to(device).train()
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)
    loss_function = DiceCELoss(sigmoid=True)
    image = torch.randn(4, len(bundle.inputs), *patch, device=device)
    label = (torch.rand(4, 1, *patch, device=device) > 0.95).float()
    rates = []
    for repeat in range(args.repeats):
        start, steps = time.perf_counter(), 5
        for _ in range(steps):
            optimiser.zero_grad()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                logits = network(image)
            loss_function(logits.float(), label).backward()
            optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # kernels run asynchronously: wait before reading the clock
        rates.append(steps * image.shape[0] / (time.perf_counter() - start))
        print(f"training repeat {repeat + 1}: {rates[-1]:.1f} patches/s")
    size = "x".join(str(p) for p in patch)
    print(f"training: median {median(rates):.1f} patches/s of {size} ({device}, bf16 {args.bf16})")


if __name__ == "__main__":
    main()
