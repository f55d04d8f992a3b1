"""Training a marker's segmentation model and writing it as a bundle (``csvd-bids-train``).

Training pairs are what inference will see: the preprocessed images of a csvd-bids output
folder (``*_desc-preproc_<SUFFIX>``, the DWI's ``desc-{b0,trace,adc}_dwi``, on each session's
reference grid, normalised as the bundle declares) and reference masks
``*_label-<MARKER>_mask.nii.gz`` from a derivatives folder (a lab's manual masks, or the
generator's ``derivatives/groundtruth``), resampled to the reference grid (nearest
neighbour) when they are on another. ``--synthetic N`` makes such a pair of folders first: a
synthetic dataset and its participant-level preprocessing.

Every session is resampled (trilinear; masks at half a voxel) to the bundle's spacing, as
inference will resample it (``--spacing``; default: the training sessions' median voxel).

Domain randomisation, in the manner of SynthSeg, with MONAI transforms on every patch: random
affine deformation (rotation, scaling), left-right flip; on the raw intensities a bias field
and a gamma of 0.35-1.3 (the generator's FLAIR lesions are twice as bright as normal white
matter, real ones 1.2-1.5 times: a gamma of 0.45 maps the one onto the other) and a random
histogram shift; then the brain z-score inference uses, intensity scaling and shift, Gaussian
noise, isotropic blur (resolution) or blur along one axis (thick slices of 4-8 mm). Loss: Dice
over the whole batch (a patch without lesion has no Dice of its own: per patch, it would count
as a loss of 1 whatever the network says) + cross-entropy, under bfloat16 autocast with
``bf16`` (2-3 times faster on recent CPUs). Learning rate: nnU-Net's polynomial decay,
``lr * (1 - epoch / epochs) ** 0.9``, a function of the epoch alone (so resuming keeps it).
Every epoch: a checkpoint (network, optimiser, epoch, best figure), and validation on the
held-out sessions with the inference code and the evaluation command's metrics
(``csvd_bids.evaluate.compare_masks``) at each threshold of ``THRESHOLDS``; the bundle keeps
the epoch and threshold with the best mean validation Dice (a network's probabilities need
not be calibrated at 0.5: one run peaked at 0.52 while 0.3 gave Dice 0.84). Fine-tuning
(``init_bundle``) validates the starting weights first, as epoch 0: a fine-tune that never
beats them writes them back (fine-tuning can make a model worse: one of the shipped WMH
model, on synthetic data, lost on the real scans).
Deterministic: every epoch reseeds from ``seed + epoch`` (``monai.utils.set_determinism``),
so a resumed run continues as an uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from nibabel.processing import resample_from_to

from csvd_bids.bids.discovery import SUFFIXES
from csvd_bids.errors import NoInputError
from csvd_bids.labels import BY_KEY
from csvd_bids.models.bundle import Bundle, write_bundle
from csvd_bids.models.inference import predict, resize, resolve_device, spacing_shape

LOGGER = logging.getLogger("csvd_bids.train")
CHECKPOINT = "checkpoint.pt"
THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))


@dataclass
class TrainSettings:
    marker: str
    inputs: tuple[str, ...]
    patch_size: tuple[int, int, int] = (64, 64, 64)
    epochs: int = 10
    iterations: int = 50  # patch batches per epoch
    batch_size: int = 2
    learning_rate: float = 1e-3
    channels: tuple[int, ...] = (16, 32, 64, 128)
    threshold: float = 0.5
    min_lesion_mm3: float = 5.0
    validation_fraction: float = 0.25
    seed: int = 0
    device: str = "auto"
    spacing_mm: tuple[float, float, float] | None = None  # None: the sessions' median voxel
    bf16: bool = False  # bfloat16 autocast in training
    workers: int = 0  # patch-making processes beside the training loop (0: in the loop)
    # share of patches centred on a lesion voxel (the rest on brain without lesion); nnU-Net
    # centres a third on foreground: more than half teaches a network to over-segment
    lesion_fraction: float = 2 / 3
    init_bundle: str | None = None  # start from this bundle's weights (fine-tuning)
    command: str = field(default_factory=lambda: " ".join(sys.argv))


@dataclass
class Session:
    name: str
    image: np.ndarray  # (C, X, Y, Z) float32, raw intensities, 0 outside the brain
    label: np.ndarray  # (1, X, Y, Z) float32 0/1
    brain: np.ndarray  # bool
    zooms: tuple[float, float, float]


def channel_file(anat: Path, prefix: str, channel: str) -> Path | None:
    """A session's preprocessed image of one input channel in csvd-bids outputs, if any."""
    if channel.startswith("dwi_"):
        pattern = f"{prefix}_space-*_desc-{channel[4:]}_dwi.nii.gz"
        folder = anat.parent / "dwi"
    else:
        pattern = f"{prefix}_*space-*_desc-preproc_{SUFFIXES[channel]}.nii.gz"
        folder = anat
    return next(iter(sorted(folder.glob(pattern))), None)


def load_sessions(outputs: Path, labels: Path, settings: TrainSettings) -> list[Session]:
    """Every session of ``outputs`` with all input channels and a reference mask in ``labels``."""
    label = BY_KEY[settings.marker].label
    sessions = []
    for summary in sorted(outputs.glob("sub-*/**/anat/*_desc-summary_stats.tsv")):
        anat = summary.parent
        prefix = summary.name.removesuffix("_desc-summary_stats.tsv")
        relative = anat.relative_to(outputs)
        masks = sorted((labels / relative).glob(f"{prefix}_*label-{label}_mask.nii.gz"))
        files = [channel_file(anat, prefix, c) for c in settings.inputs]
        brain_file = next(iter(anat.glob(f"{prefix}_space-*_desc-brain_mask.nii.gz")), None)
        if not masks or None in files or brain_file is None:
            LOGGER.info("%s: skipped (no reference mask or a missing input)", prefix)
            continue
        reference = nib.load(files[0])
        mask_img = nib.load(masks[0])
        if mask_img.shape[:3] != reference.shape[:3] or not np.allclose(
            mask_img.affine, reference.affine, atol=1e-3
        ):
            mask_img = resample_from_to(mask_img, (reference.shape[:3], reference.affine), order=0)
        brain = np.asanyarray(nib.load(brain_file).dataobj) > 0
        raw = np.stack([np.asanyarray(nib.load(f).dataobj, dtype=np.float32) for f in files])
        sessions.append(
            Session(
                str(outputs / prefix),  # unique across output folders
                raw * brain,
                (np.asanyarray(mask_img.dataobj) > 0).astype(np.float32)[None],
                brain,
                tuple(float(z) for z in reference.header.get_zooms()[:3]),
            )
        )
    if not sessions:
        LOGGER.warning(
            "%s with %s: no session with every input and a %s mask", outputs, labels, label
        )
    return sessions


def to_spacing(session: Session, spacing: tuple[float, float, float]) -> Session:
    """The session resampled to ``spacing`` as inference resamples it (array axes scaled by
    voxel size over spacing, trilinear); masks are where the interpolated mask is >= 0.5."""
    shape = spacing_shape(session.brain.shape, session.zooms, spacing)
    if shape is None:
        return session

    def scaled(array: np.ndarray) -> np.ndarray:
        return resize(torch.from_numpy(np.ascontiguousarray(array))[None], shape)[0].numpy()

    brain = scaled(session.brain[None].astype(np.float32))[0] >= 0.5
    return Session(
        session.name,
        scaled(session.image) * brain,
        (scaled(session.label) >= 0.5).astype(np.float32),
        brain,
        tuple(float(s) for s in spacing),
    )


def _patch_sources(sessions: list[Session], patch: tuple[int, int, int]) -> list[dict]:
    """Each training session padded to at least a patch, with the voxel indices that patch
    centres are drawn from: lesion voxels (positive) and brain voxels without lesion (negative;
    not the empty background, where a patch teaches nothing). Computed once, not per patch."""
    from monai import transforms as T

    prepare = T.Compose(
        [
            T.SpatialPadd(("image", "label", "brain"), spatial_size=patch),
            T.FgBgToIndicesd("label", image_key="brain", image_threshold=0.5),
            T.DeleteItemsd("brain"),
        ]
    )
    return [
        prepare({"image": s.image, "label": s.label, "brain": s.brain[None].astype(np.float32)})
        for s in sessions
    ]


def _transforms(patch: tuple[int, int, int], lesion_fraction: float):
    from monai import transforms as T

    keys = ("image", "label")

    def slab_blur(axis: int):  # a thick-slice acquisition along one axis (sigma ~ mm / 2.4)
        sigmas = [(0.3, 0.8)] * 3
        sigmas[axis] = (1.7, 3.4)
        return T.RandGaussianSmoothd(
            "image", prob=1.0, sigma_x=sigmas[0], sigma_y=sigmas[1], sigma_z=sigmas[2]
        )

    return T.Compose(
        [
            T.RandCropByPosNegLabeld(
                keys,
                label_key="label",
                spatial_size=patch,
                pos=lesion_fraction,
                neg=1.0 - lesion_fraction,
                num_samples=2,
                fg_indices_key="label_fg_indices",
                bg_indices_key="label_bg_indices",
            ),
            T.RandAffined(
                keys,
                prob=0.5,
                rotate_range=(0.2, 0.2, 0.2),
                scale_range=(0.15, 0.15, 0.15),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            T.RandFlipd(keys, prob=0.5, spatial_axis=0),
            # contrast on the raw intensities (0 outside the brain stays 0)
            T.RandBiasFieldd("image", prob=0.3, coeff_range=(0.0, 0.2)),
            T.RandAdjustContrastd("image", prob=0.8, gamma=(0.35, 1.3)),
            T.RandHistogramShiftd("image", prob=0.2, num_control_points=(5, 10)),
            T.NormalizeIntensityd("image", nonzero=True, channel_wise=True),
            T.RandScaleIntensityd("image", factors=0.15, prob=0.5),
            T.RandShiftIntensityd("image", offsets=0.2, prob=0.5),
            T.RandGaussianNoised("image", prob=0.3, std=0.1),
            T.OneOf(
                [
                    T.Identityd("image"),
                    T.RandGaussianSmoothd("image", prob=1.0, sigma_x=(0.5, 1.2)),
                    *(slab_blur(axis) for axis in range(3)),
                ],
                weights=(0.5, 0.2, 0.1, 0.1, 0.1),
            ),
        ]
    )


def _one_thread_worker(worker_id: int) -> None:
    """MONAI's per-worker transform seeding (deterministic for a given number of workers), with
    one torch thread per worker: N workers of all-core threads would oversubscribe the CPU."""
    from monai.data.utils import worker_init_fn

    torch.set_num_threads(1)
    worker_init_fn(worker_id)


def starting_bundle(settings: TrainSettings, definition: dict) -> Bundle | None:
    """The bundle to fine-tune from (``settings.init_bundle``), checked to be for the same
    marker, inputs and network; None without one."""
    from csvd_bids.errors import UsageError
    from csvd_bids.models.bundle import load_bundle

    if settings.init_bundle is None:
        return None
    start = load_bundle(Path(settings.init_bundle))
    differences = [
        f"{what} {theirs} (training: {ours})"
        for what, theirs, ours in (
            ("marker", start.marker, settings.marker),
            ("inputs", list(start.inputs), list(settings.inputs)),
            ("network", start.network_def, definition),
        )
        if theirs != ours
    ]
    if differences:
        raise UsageError(f"--init {start.path}: cannot start from it: {'; '.join(differences)}")
    return start


def network_def(settings: TrainSettings) -> dict:
    return {
        "_target_": "UNet",
        "spatial_dims": 3,
        "in_channels": len(settings.inputs),
        "out_channels": 1,
        "channels": list(settings.channels),
        "strides": [2] * (len(settings.channels) - 1),
        "num_res_units": 2,
        "norm": "INSTANCE",
    }


def _validate(
    bundle_like: Bundle, network, sessions: list[Session], device: str
) -> tuple[float, float]:
    """(mean validation Dice at the best threshold, that threshold). The threshold is chosen
    with a plain voxel Dice; the figure reported is the evaluation command's at it."""
    from csvd_bids.evaluate import compare_masks

    network.eval()
    probabilities = [
        predict(bundle_like, network, s.image, s.brain, s.zooms, device) for s in sessions
    ]
    network.train()
    grid = np.zeros((len(sessions), len(THRESHOLDS)))
    for i, (s, probability) in enumerate(zip(sessions, probabilities, strict=True)):
        truth = s.label[0] > 0
        for j, threshold in enumerate(THRESHOLDS):
            found = probability >= threshold
            total = truth.sum() + found.sum()
            grid[i, j] = 2.0 * (truth & found).sum() / total if total else 1.0
    threshold = THRESHOLDS[int(np.argmax(grid.mean(axis=0)))]
    dice = [
        compare_masks(s.label[0] > 0, p >= threshold, s.zooms).dice
        for s, p in zip(sessions, probabilities, strict=True)
    ]
    return float(np.mean(dice)), threshold


def train(
    settings: TrainSettings,
    sources: list[tuple[Path, Path]],
    bundle_dir: Path,
    resume: bool = False,
) -> Bundle:
    """Train on the sessions of every (outputs, labels) pair, checkpointing into
    ``bundle_dir/checkpoints``; returns the written bundle."""
    from monai.data import DataLoader, Dataset
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    from csvd_bids.models.bundle import make_network

    definition = network_def(settings)
    start_from = starting_bundle(settings, definition)  # before the slow loading
    sessions = [s for outputs, labels in sources for s in load_sessions(outputs, labels, settings)]
    if len(sessions) < 2:
        raise NoInputError(
            f"{len(sessions)} session(s) with every input ({', '.join(settings.inputs)}) and a "
            f"{BY_KEY[settings.marker].label} mask; training needs at least 2"
        )
    n_val = max(1, int(round(settings.validation_fraction * len(sessions))))
    held = set(np.linspace(0, len(sessions) - 1, n_val).round().astype(int).tolist())
    spacing = settings.spacing_mm or tuple(np.median([s.zooms for s in sessions], axis=0))
    sessions = [to_spacing(s, spacing) for s in sessions]
    validation = [s for i, s in enumerate(sessions) if i in held]  # spread over the sources
    training = [s for i, s in enumerate(sessions) if i not in held]
    LOGGER.info(
        "%d training and %d validation sessions at %s mm",
        len(training),
        len(validation),
        "x".join(f"{z:g}" for z in spacing),
    )
    device = resolve_device(settings.device)
    set_determinism(seed=settings.seed)
    if start_from is None:
        network = make_network(definition, bundle_dir)
    else:
        network = start_from.build_network().train()
        LOGGER.info("starting from the weights of %s", start_from.description)
    network = network.to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    loss_function = DiceCELoss(sigmoid=True, batch=True)
    checkpoints = bundle_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    start, best, threshold, history = 0, -1.0, settings.threshold, []
    if resume and (checkpoints / CHECKPOINT).is_file():
        state = torch.load(checkpoints / CHECKPOINT, map_location=device, weights_only=True)
        network.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        start, best = int(state["epoch"]), float(state["best"])
        threshold = float(state.get("threshold", settings.threshold))
        history = json.loads((checkpoints / "history.json").read_text())
        LOGGER.info("resumed after epoch %d (best validation Dice %.3f)", start, best)
    metadata = _metadata(settings, training, validation, definition, spacing)
    if start_from is not None:
        metadata["training"]["initialised_from"] = {
            "bundle": f"{start_from.metadata['name']} {start_from.metadata['version']}",
            "weights_sha256": start_from.metadata["weights_sha256"],
        }
    probe = Bundle(bundle_dir, {**metadata, "weights_sha256": ""}, definition)
    if start_from is not None and start == 0:
        # the starting weights compete as epoch 0: a fine-tune that never beats them keeps them
        best, threshold = _validate(probe, network, validation, settings.device)
        torch.save(network.state_dict(), checkpoints / "best.pt")
        history.append({"epoch": 0, "validation_dice": best, "threshold": threshold})
        LOGGER.info("epoch 0 (the starting weights): %s", history[-1])
    items = _patch_sources(training, settings.patch_size)
    for epoch in range(start, settings.epochs):
        set_determinism(seed=settings.seed + epoch)
        for group in optimiser.param_groups:
            group["lr"] = settings.learning_rate * (1.0 - epoch / settings.epochs) ** 0.9
        loader = DataLoader(
            Dataset(
                items * settings.iterations,
                _transforms(settings.patch_size, settings.lesion_fraction),
            ),
            batch_size=settings.batch_size,
            shuffle=True,
            num_workers=settings.workers,
            worker_init_fn=_one_thread_worker,
        )
        began, losses, patches = time.perf_counter(), [], 0
        for step, batch in enumerate(loader):
            if step >= settings.iterations:
                break
            image, label = batch["image"].to(device), batch["label"].to(device)
            optimiser.zero_grad()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16):
                logits = network(image)
            loss = loss_function(logits.float(), label)
            loss.backward()
            optimiser.step()
            losses.append(loss.detach().item())
            patches += image.shape[0]
        seconds = time.perf_counter() - began
        dice, at = _validate(probe, network, validation, settings.device)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)),
                "validation_dice": dice,
                "threshold": at,
                "patches_per_second": patches / seconds,
            }
        )
        LOGGER.info("epoch %d: %s", epoch + 1, history[-1])
        if dice > best:
            best, threshold = dice, at
            torch.save(network.state_dict(), checkpoints / "best.pt")
        torch.save(
            {
                "network": network.state_dict(),
                "optimiser": optimiser.state_dict(),
                "epoch": epoch + 1,
                "best": best,
                "threshold": threshold,
            },
            checkpoints / CHECKPOINT,
        )
        (checkpoints / "history.json").write_text(json.dumps(history, indent=2))
    weights = torch.load(checkpoints / "best.pt", map_location="cpu", weights_only=True)
    metadata["threshold"] = threshold
    metadata["evaluation"] = {
        "validation_dice_best": best,
        "validation_sessions": [s.name for s in validation],
        "history": history,
    }
    return write_bundle(bundle_dir, definition, weights, metadata)


def _metadata(settings: TrainSettings, training, validation, definition, spacing) -> dict:
    from csvd_bids import __version__

    label = BY_KEY[settings.marker]
    return {
        "name": f"csvd-bids-{settings.marker}-unet",
        "version": __version__,
        "marker": settings.marker,
        "description": f"3D UNet ({definition['channels']}) segmenting {label.plural}",
        "inputs": list(settings.inputs),
        "spacing_mm": [float(z) for z in spacing],
        "patch_size": list(settings.patch_size),
        "normalisation": "zscore_brain",
        "threshold": settings.threshold,
        "min_lesion_mm3": settings.min_lesion_mm3,
        "training": {
            "sessions": [s.name for s in training],
            "settings": {k: v for k, v in asdict(settings).items() if k != "command"},
            "command": settings.command,
            "monai_version": __import__("monai").__version__,
            "torch_version": torch.__version__,
        },
    }
