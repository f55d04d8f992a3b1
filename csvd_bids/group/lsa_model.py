"""Cross-validated regression of FA and CBF from the basal-ganglia T1w patches with a 3D
ResNet18 (MONAI, trained from scratch: nothing is downloaded), against two baselines.

- Folds split by participant (a subject's sessions and regions are all in one test fold),
  stratified by the outcome when there is one (so each test fold of the classification has
  both classes); fixed seeds and deterministic algorithms, so a run repeats exactly on CPU.
- Targets standardised on the training fold; the loss is the mean squared error over the
  targets present (a session without ASL still trains FA).
- Baselines per fold: the training mean, and a linear model of the target on the region's
  volume and the region (one indicator per region: FA and CBF differ between regions more
  than between people, and the network can tell the regions apart from the patches).
- Each fold's network gives every sample's penultimate-layer features (512 values): out of
  fold for the test subjects (``group_lsa_features.tsv``), and for all subjects so that the
  classification of that fold trains and tests in one network's feature space.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from monai.networks.nets import resnet18
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from csvd_bids.group.lsa_data import ROIS, TARGETS, PatchData
from csvd_bids.group.lsa_saliency import chosen_for_saliency

LOGGER = logging.getLogger("csvd_bids.group")


@dataclass(frozen=True)
class TrainSettings:
    folds: int = 5
    epochs: int = 4
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    # the torchvision ResNet stem (7^3 conv, stride 2, then max-pool): MONAI's default stride 1
    # costs 5 times as much on CPU for 32^3 patches (measured 280 vs 55 ms per patch)
    stem_stride: int = 2
    widen_factor: float = 1.0  # < 1 only for tests: 512 x widen_factor features
    bf16: bool = False  # autocast on CPU; off by default: slower without AMX, see benchmark
    saliency_patches: int = 12  # occlusion maps per fold (64 predictions each); 0: none
    device: str = "auto"  # auto: CUDA when available; never required


@dataclass
class CVResult:
    fold: np.ndarray  # (n,) test fold (0-based) of each sample
    predicted: np.ndarray  # (n, 2) out-of-fold FA, CBF
    training_mean: np.ndarray  # (n, 2) the training fold's mean
    linear: np.ndarray  # (n, 2) linear model on volume and region
    features: np.ndarray  # (n, d) out-of-fold penultimate features
    features_by_fold: list[np.ndarray]  # fold k's network on every sample
    saliency: np.ndarray | None  # (n, 2, 32, 32, 32) out-of-fold occlusion maps, NaN: none
    seconds: float


def make_folds(
    samples: pd.DataFrame, n_folds: int, labels: pd.Series | None, seed: int
) -> np.ndarray:
    """Test fold of each sample, by participant; stratified by ``labels`` (participant ->
    class) when given. Raises ValueError when there are fewer subjects than folds."""
    groups = samples["participant_id"].to_numpy()
    if labels is not None:
        # subjects without a label form their own stratum: they still train the regression
        y = samples["participant_id"].map(labels).fillna("__none__").astype(str).to_numpy()
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(samples)), y, groups)
    else:
        splits = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(
            np.zeros(len(samples)), groups=groups
        )
    fold = np.full(len(samples), -1)
    for k, (_, test) in enumerate(splits):
        fold[test] = k
    return fold


def build_network(settings: TrainSettings) -> torch.nn.Module:
    return resnet18(
        spatial_dims=3,
        n_input_channels=1,
        num_classes=len(TARGETS),
        conv1_t_stride=settings.stem_stride,
        widen_factor=settings.widen_factor,
    )


def _device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seeded, deterministic torch for the block; the caller's setting is restored after."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def masked_mse(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the targets present (NaN: absent)."""
    present = torch.isfinite(target)
    errors = torch.where(present, predicted - torch.nan_to_num(target), 0.0) ** 2
    return errors.sum() / present.sum().clamp(min=1)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def train_network(
    patches: np.ndarray, targets: np.ndarray, settings: TrainSettings, seed: int
) -> torch.nn.Module:
    """A network fitted on ``patches`` (n, 32, 32, 32) to standardised ``targets`` (n, 2)."""
    device = _device(settings.device)
    with deterministic(seed):
        network = build_network(settings).to(device)
        optimiser = torch.optim.AdamW(
            network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        x = torch.from_numpy(patches).unsqueeze(1)
        y = torch.from_numpy(targets.astype(np.float32))
        order = torch.Generator().manual_seed(seed)
        network.train()
        for _ in range(settings.epochs):
            permutation = torch.randperm(len(x), generator=order)
            # a last batch of one sample would break batch normalisation: drop it
            for start in range(0, len(x) - 1, settings.batch_size):
                batch = permutation[start : start + settings.batch_size]
                if len(batch) < 2:
                    continue
                with _autocast(device, settings.bf16):
                    predicted = network(x[batch].to(device))
                loss = masked_mse(predicted.float(), y[batch].to(device))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    return network.eval()


def predict(
    network: torch.nn.Module, patches: np.ndarray, settings: TrainSettings, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(outputs (n, 2), penultimate features (n, d)) of an evaluated network."""
    device = next(network.parameters()).device
    captured: list[torch.Tensor] = []
    hook = network.fc.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
    outputs = []
    try:
        with torch.no_grad(), _autocast(device, settings.bf16):
            for start in range(0, len(patches), batch_size):
                x = torch.from_numpy(patches[start : start + batch_size]).unsqueeze(1)
                outputs.append(network(x.to(device)).float().cpu())
    finally:
        hook.remove()
    features = torch.cat([c.float().cpu() for c in captured]).numpy()
    return torch.cat(outputs).numpy().astype(np.float64), features


def _standardise(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per target: mean and SD of the training values present (NaN when none)."""
    with warnings.catch_warnings():  # a target without any training value: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(train, axis=0)
        sd = np.nanstd(train, axis=0)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    return mean, sd


def linear_baseline(samples: pd.DataFrame, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(len(test), 2) predictions of target ~ volume + region indicators, fitted on ``train``."""
    volume = samples["volume_mm3"].to_numpy(dtype=np.float64)
    volume = np.where(np.isfinite(volume), volume, np.nanmean(volume[train]))
    design = np.column_stack(
        [volume, *((samples["roi"] == roi).to_numpy(dtype=float) for roi in ROIS)]
    )
    targets = samples[list(TARGETS)].to_numpy(dtype=np.float64)
    predicted = np.full((len(test), len(TARGETS)), np.nan)
    for j in range(len(TARGETS)):
        present = train[np.isfinite(targets[train, j])]
        if len(present) >= 2:
            fitted = LinearRegression().fit(design[present], targets[present, j])
            predicted[:, j] = fitted.predict(design[test])
    return predicted


def cross_validate(
    data: PatchData, fold: np.ndarray, settings: TrainSettings, saliency_fn=None
) -> CVResult:
    """Train one network per fold and collect everything out of fold (module docstring).
    ``saliency_fn(network, patches) -> (m, 2, 32, 32, 32)`` maps some of the test patches
    (``settings.saliency_patches`` per fold)."""
    started = time.perf_counter()
    n = len(data.samples)
    targets = data.targets
    predicted = np.full((n, len(TARGETS)), np.nan)
    training_mean = np.full_like(predicted, np.nan)
    linear = np.full_like(predicted, np.nan)
    features: np.ndarray | None = None
    by_fold = []
    saliency = None
    for k in range(int(fold.max()) + 1):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        mean, sd = _standardise(targets[train])
        standardised = (targets[train] - mean) / sd
        network = train_network(
            data.patches[train], standardised, settings, seed=settings.seed * 1000 + k
        )
        outputs, every = predict(network, data.patches, settings)
        predicted[test] = outputs[test] * sd + mean  # NaN where the fold had no training value
        training_mean[test] = mean
        linear[test] = linear_baseline(data.samples, train, test)
        if features is None:
            features = np.zeros((n, every.shape[1]), np.float32)
        features[test] = every[test]
        by_fold.append(every)
        if saliency_fn is not None:
            mapped = test[chosen_for_saliency(len(test), settings.saliency_patches)]
            maps = saliency_fn(network, data.patches[mapped])
            if saliency is None:
                saliency = np.full((n, *maps.shape[1:]), np.nan, np.float32)
            saliency[mapped] = maps
        LOGGER.info(
            "lenticulostriate model: fold %d/%d trained on %d patches (%.0f s so far)",
            k + 1,
            int(fold.max()) + 1,
            len(train),
            time.perf_counter() - started,
        )
    return CVResult(
        fold=fold,
        predicted=predicted,
        training_mean=training_mean,
        linear=linear,
        features=features if features is not None else np.zeros((0, 0), np.float32),
        features_by_fold=by_fold,
        saliency=saliency,
        seconds=time.perf_counter() - started,
    )


def _rmse(observed: np.ndarray, predicted: np.ndarray) -> float:
    ok = np.isfinite(observed) & np.isfinite(predicted)
    return float(np.sqrt(np.mean((observed[ok] - predicted[ok]) ** 2))) if ok.any() else np.nan


METHODS = {"model": "predicted", "training_mean": "training_mean", "linear_volume": "linear"}


def cv_table(data: PatchData, result: CVResult) -> pd.DataFrame:
    """Per target, per fold and pooled: n, observed mean, RMSE and RMSE / mean of each method."""
    observed = data.targets
    rows = []
    n_folds = int(result.fold.max()) + 1
    for j, target in enumerate(TARGETS):
        for k in [*range(n_folds), None]:
            chosen = np.ones(len(observed), bool) if k is None else result.fold == k
            values = observed[chosen, j]
            present = np.isfinite(values)
            mean = float(values[present].mean()) if present.any() else np.nan
            row = {
                "target": target,
                "fold": "pooled" if k is None else str(k + 1),
                "n": int(present.sum()),
                "n_subjects": int(
                    data.samples.loc[
                        chosen & np.isfinite(observed[:, j]), "participant_id"
                    ].nunique()
                ),
                "observed_mean": mean,
            }
            for method, attribute in METHODS.items():
                rmse = _rmse(values, getattr(result, attribute)[chosen, j])
                row[f"rmse_{method}"] = rmse
                row[f"relative_rmse_{method}"] = rmse / mean if mean else np.nan
            rows.append(row)
    return pd.DataFrame(rows)
