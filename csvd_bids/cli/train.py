"""``csvd-bids-train``: train a marker's model and write it as a bundle.

    csvd-bids-train wmh BUNDLE_DIR --outputs CSVD_OUT --labels MASKS_DERIV [options]
    csvd-bids-train wmh BUNDLE_DIR --synthetic 20 --resolution 1 [options]

``--outputs``: a csvd-bids participant-level output folder (the preprocessed images);
``--labels``: a derivatives folder with ``*_label-<MARKER>_mask.nii.gz`` per session (e.g.
manual masks, or a synthetic dataset's ``derivatives/groundtruth``). ``--synthetic N`` makes
both first (an N-subject synthetic dataset and its preprocessing, in ``--work-dir``).
Exit codes as csvd-bids (64 usage, 66 no usable session).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from csvd_bids.config import DEVICES
from csvd_bids.errors import CsvdBidsError, UsageError
from csvd_bids.labels import BY_KEY

if TYPE_CHECKING:  # the marker registry is imported when training starts (fast --help)
    from csvd_bids.markers.base import MarkerSpec
    from csvd_bids.models.bundle import Bundle


def default_inputs(spec: MarkerSpec) -> tuple[str, ...]:
    """A model's channels when --inputs is not given: the marker's required modalities and its
    optional anatomical ones (not the ``context`` ones its detector uses only to leave other
    lesions out: a WMH model needing a T2w or a DWI could not run on the many sessions
    without one)."""
    from csvd_bids.bids.discovery import ANAT_MODALITIES

    return (*spec.required, *(m for m in spec.optional if m in ANAT_MODALITIES))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csvd-bids-train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("marker", choices=sorted(BY_KEY))
    parser.add_argument("bundle_dir", type=Path, help="where the bundle is written")
    data = parser.add_argument_group("training data (one of)")
    data.add_argument(
        "--outputs", type=Path, nargs="+", help="csvd-bids participant-level output folder(s)"
    )
    data.add_argument(
        "--labels",
        type=Path,
        nargs="+",
        help="derivatives folder(s) with the reference masks, one per --outputs folder",
    )
    data.add_argument("--synthetic", type=int, metavar="N", help="make N synthetic subjects")
    data.add_argument("--resolution", type=float, default=1.0, help="synthetic voxel size (mm)")
    data.add_argument("-w", "--work-dir", type=Path, default=Path("work-train"))
    train = parser.add_argument_group("training")
    train.add_argument("--inputs", nargs="+", help="input channels, in order (default: the "
                       "marker's required and optional anatomical modalities)")  # fmt: skip
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--iterations", type=int, default=50, help="batches per epoch")
    train.add_argument("--batch-size", type=int, default=2)
    train.add_argument("--patch", type=int, nargs=3,
                       help="patch size in voxels (default: --init's, else 64 64 64)")  # fmt: skip
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--channels", type=int, nargs="+",
                       help="UNet channels per level (default: --init's, else 16 32 64 "
                       "128)")  # fmt: skip
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--spacing", type=float, nargs=3, metavar="MM",
                       help="the bundle's voxel size, every session resampled to it (default: "
                       "the training sessions' median voxel)")  # fmt: skip
    train.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast in training (2-3x faster on recent CPUs)",
    )
    train.add_argument("--device", choices=DEVICES, default="auto")
    train.add_argument("--workers", type=int, default=0,
                       help="processes making the augmented patches beside the training loop "
                       "(a GPU waits on one CPU core otherwise; results repeat exactly for a given "
                       "number; default 0: in the loop)")  # fmt: skip
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    train.add_argument("--init", type=Path, metavar="BUNDLE",
                       help="fine-tune: start from this bundle's weights; 'shipped' for the "
                       "marker's bundle shipped in the package. Its inputs, channels, spacing and "
                       "patch size are the defaults")  # fmt: skip
    train.add_argument("--lesion-fraction", type=float, default=2 / 3, metavar="F",
                       help="share of patches centred on a lesion voxel, the rest on brain "
                       "without lesion (default 2/3; nnU-Net uses 1/3)")  # fmt: skip
    return parser


def _start_bundle(marker: str, init: Path | None) -> Bundle | None:
    """The bundle --init names (``shipped``: the package's own for the marker), checked."""
    from csvd_bids.models.builtin import SHIPPED_BUNDLES
    from csvd_bids.models.bundle import load_bundle

    if init is None:
        return None
    if str(init) == "shipped":
        if marker not in SHIPPED_BUNDLES:
            raise UsageError(f"--init shipped: no {marker} model is shipped in the package")
        init = SHIPPED_BUNDLES[marker]
    return load_bundle(init)


def _registry_inputs(marker: str) -> tuple[str, ...]:
    # the registry imports the preprocessing stack (SimpleITK, dipy): only when --inputs is not
    # given, so that training on a GPU node needs torch, MONAI and nibabel alone
    from csvd_bids.markers import REGISTRY

    return default_inputs(REGISTRY[marker])


def _synthetic(n: int, resolution: float, seed: int, marker: str, work: Path) -> tuple[Path, Path]:
    """An N-subject synthetic dataset and its participant-level outputs for one marker."""
    from csvd_bids.cli.run import main as csvd_bids
    from csvd_bids.synth import generate_dataset

    bids, out = work / "synthetic" / "bids", work / "synthetic" / "out"
    if not bids.is_dir():
        generate_dataset(bids, n, 1, seed=seed, resolution=resolution)
    code = csvd_bids(
        [
            str(bids),
            str(out),
            "participant",
            "-w",
            str(work / "synthetic" / "work"),
            "--markers",
            marker,
            "--skip-bids-validation",
        ]  # fmt: skip
    )
    if code not in (0, 1):
        raise UsageError(f"preprocessing the synthetic dataset failed (exit code {code})")
    return out, bids / "derivatives" / "groundtruth"


def main(argv: list[str] | None = None) -> int:
    from csvd_bids.models.train import TrainSettings, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(message)s")
    opts = build_parser().parse_args(argv)
    try:
        if opts.synthetic is None and not (opts.outputs and opts.labels):
            raise UsageError("give --outputs and --labels, or --synthetic N")
        if opts.outputs and len(opts.outputs) != len(opts.labels):
            raise UsageError("give one --labels folder per --outputs folder")
        if opts.workers < 0:
            raise UsageError(f"--workers {opts.workers}: give 0 or more")
        if not 0.0 <= opts.lesion_fraction <= 1.0:
            raise UsageError(f"--lesion-fraction {opts.lesion_fraction}: give a value in [0, 1]")
        start = _start_bundle(opts.marker, opts.init)
        inputs = opts.inputs or (start.inputs if start else _registry_inputs(opts.marker))
        # without --init: TrainSettings' defaults (16-128 channels, 64^3 patches)
        channels = opts.channels or (start.network_def["channels"] if start else None)
        patch = opts.patch or (start.metadata["patch_size"] if start else None)
        spacing = opts.spacing or (start.metadata["spacing_mm"] if start else None)
        settings = TrainSettings(
            marker=opts.marker,
            inputs=tuple(inputs),
            patch_size=tuple(patch or TrainSettings.patch_size),
            epochs=opts.epochs,
            iterations=opts.iterations,
            batch_size=opts.batch_size,
            learning_rate=opts.learning_rate,
            channels=tuple(channels or TrainSettings.channels),
            seed=opts.seed,
            device=opts.device,
            spacing_mm=tuple(spacing) if spacing else None,
            bf16=opts.bf16,
            workers=opts.workers,
            lesion_fraction=opts.lesion_fraction,
            init_bundle=str(start.path) if start else None,
        )
        pairs = list(zip(opts.outputs or [], opts.labels or [], strict=True))
        if opts.synthetic is not None:
            pairs.append(
                _synthetic(
                    opts.synthetic,
                    opts.resolution,
                    opts.seed,
                    opts.marker,
                    opts.work_dir.absolute(),
                )
            )
        bundle = train(settings, pairs, opts.bundle_dir, resume=opts.resume)
    except CsvdBidsError as exc:
        print(f"csvd-bids-train: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    print(f"bundle written: {bundle.path} ({bundle.description})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
