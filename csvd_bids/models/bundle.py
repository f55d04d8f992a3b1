"""Segmentation models as MONAI-style bundles, checked before a single weight is used.

A bundle is a folder::

    <name>/configs/metadata.json    what the model is: marker, input modalities (channel order),
                                    spacing, patch size, normalisation, threshold, training
                                    data and evaluation figures, weights file and its SHA-256
    <name>/configs/inference.json   the network: ``{"network_def": {"_target_": "UNet", ...}}``,
                                    a class of ``monai.networks.nets`` and its arguments
    <name>/models/model.pt          the weights: a state dict, loaded with ``weights_only=True``

Only classes listed in ``NETWORKS`` are built (no arbitrary import from a config), the weights'
checksum must match the metadata, and the state dict must fit the network exactly; anything
else is refused with a :class:`BundleError` that names the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from csvd_bids.bids.discovery import MODALITIES
from csvd_bids.errors import CsvdBidsError, ExitCode
from csvd_bids.labels import BY_KEY

if TYPE_CHECKING:  # torch is imported where weights are read: planning reads metadata only
    import torch

METADATA = Path("configs/metadata.json")
INFERENCE = Path("configs/inference.json")
WEIGHTS = Path("models/model.pt")
NETWORKS = ("UNet", "BasicUNet", "SegResNet", "DynUNet")
NORMALISATIONS = ("zscore_brain",)  # per channel: (x - mean) / sd over the brain mask
REQUIRED_KEYS = (
    "name",
    "version",
    "marker",
    "inputs",
    "spacing_mm",
    "patch_size",
    "normalisation",
    "threshold",
    "min_lesion_mm3",
    "weights_sha256",
)
# Input channels a model may ask for: the anatomical modalities and the DWI's three images.
CHANNELS = (*[m for m in MODALITIES if m not in ("dwi", "asl")], "dwi_b0", "dwi_trace", "dwi_adc")


class BundleError(CsvdBidsError):
    """A model bundle that cannot be used (exit code 65: an input is unusable)."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"model bundle {path}: {problem}", ExitCode.INPUT_DATA)


@dataclass(frozen=True)
class Bundle:
    path: Path
    metadata: dict
    network_def: dict

    @property
    def marker(self) -> str:
        return self.metadata["marker"]

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.metadata["inputs"])

    @property
    def description(self) -> str:
        """One line for sidecars and reports."""
        m = self.metadata
        return (
            f"MONAI model bundle {m['name']} {m['version']} ({self.network_def['_target_']}, "
            f"inputs {', '.join(self.inputs)}; weights SHA-256 {m['weights_sha256'][:12]}), "
            f"sliding-window inference on a {_spacing(m['spacing_mm'])} grid in patches of "
            f"{'x'.join(map(str, m['patch_size']))} voxels, threshold {m['threshold']}, "
            f"minimum {m['min_lesion_mm3']} mm3"
        )

    def build_network(self) -> torch.nn.Module:
        """The network with its checked weights, in eval mode, on the CPU."""
        network = make_network(self.network_def, self.path / INFERENCE)
        state = load_weights(self.path)
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BundleError(
                self.path / WEIGHTS, f"the weights do not fit the network: {exc}"
            ) from None
        return network.eval()


def missing_channels(bundle: Bundle, available: set[str]) -> list[str]:
    """The bundle's input channels whose modality the session does not have."""
    return [c for c in bundle.inputs if channel_modality(c) not in available]


def channel_modality(channel: str) -> str:
    """The modality key an input channel comes from (the DWI gives dwi_b0, _trace, _adc)."""
    return "dwi" if channel.startswith("dwi_") else channel


def _spacing(spacing) -> str:
    return "x".join(f"{s:g}" for s in spacing) + " mm"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise BundleError(path.parent.parent, f"{path.relative_to(path.parent.parent)} is missing")
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(path, f"not readable JSON ({exc})") from None
    if not isinstance(content, dict):
        raise BundleError(path, "must hold a JSON object")
    return content


def make_network(network_def: dict, source: Path) -> torch.nn.Module:
    """A network from ``{"_target_": <class in NETWORKS>, **arguments}``."""
    from monai.networks import nets

    target = network_def.get("_target_")
    if target not in NETWORKS:
        raise BundleError(
            source, f"network {target!r} is not one of the allowed MONAI networks {NETWORKS}"
        )
    arguments = {k: v for k, v in network_def.items() if k != "_target_"}
    try:
        return getattr(nets, target)(**arguments)
    except (TypeError, ValueError, AssertionError) as exc:
        raise BundleError(source, f"cannot build {target} from its arguments: {exc}") from None


def load_weights(path: Path) -> dict:
    """The state dict, after its checksum was compared with the metadata's."""
    weights = path / WEIGHTS
    if not weights.is_file():
        raise BundleError(path, f"{WEIGHTS} is missing")
    expected = _read_json(path / METADATA)["weights_sha256"]
    found = sha256(weights)
    if found != expected:
        raise BundleError(
            weights, f"SHA-256 {found} differs from the metadata's {expected}: refused"
        )
    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not safe weights
        raise BundleError(weights, f"not a safely loadable state dict ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleError(weights, "must hold a state dict of tensors")
    return state


def load_bundle(path: Path) -> Bundle:
    """Read and check a bundle (metadata, network definition, weights checksum and fit)."""
    bundle = read_bundle(path)
    bundle.build_network()  # checks the checksum and that the weights fit the network
    return bundle


def read_bundle(path: Path) -> Bundle:
    """Read and check a bundle's metadata and network definition, not its weights (no torch:
    for a plan; the node that runs it loads it with ``load_bundle``)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(path, "not a folder")
    metadata = _read_json(path / METADATA)
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise BundleError(path / METADATA, f"missing key(s): {', '.join(missing)}")
    if metadata["marker"] not in BY_KEY:
        raise BundleError(
            path / METADATA, f"marker {metadata['marker']!r} is not one of {sorted(BY_KEY)}"
        )
    unknown = [c for c in metadata["inputs"] if c not in CHANNELS]
    if unknown or not metadata["inputs"]:
        raise BundleError(path / METADATA, f"inputs must be among {CHANNELS}, not {unknown}")
    if metadata["normalisation"] not in NORMALISATIONS:
        raise BundleError(
            path / METADATA, f"normalisation {metadata['normalisation']!r} not in {NORMALISATIONS}"
        )
    for key in ("spacing_mm", "patch_size"):
        value = metadata[key]
        if not (isinstance(value, list) and len(value) == 3 and all(v > 0 for v in value)):
            raise BundleError(path / METADATA, f"{key} must be three positive numbers")
    network_def = _read_json(path / INFERENCE).get("network_def")
    if not isinstance(network_def, dict):
        raise BundleError(path / INFERENCE, "no network_def object")
    channels = network_def.get("in_channels")
    if channels is not None and channels != len(metadata["inputs"]):
        raise BundleError(
            path / INFERENCE,
            f"the network takes {channels} channel(s) but the metadata lists "
            f"{len(metadata['inputs'])} input(s)",
        )
    return Bundle(path, metadata, network_def)


def find_bundles(models_dir: Path) -> dict[str, Bundle]:
    """marker key -> bundle for every bundle folder in ``models_dir`` (two for one marker is
    an error: which one to use would be a guess)."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise BundleError(models_dir, "--models-dir is not a folder")
    found: dict[str, Bundle] = {}
    for folder in sorted(p for p in models_dir.iterdir() if (p / METADATA).is_file()):
        bundle = load_bundle(folder)
        if bundle.marker in found:
            raise BundleError(
                folder, f"a second bundle for {bundle.marker} (first: {found[bundle.marker].path})"
            )
        found[bundle.marker] = bundle
    if not found:
        raise BundleError(models_dir, f"no bundle (no */{METADATA}) in --models-dir")
    return found


def write_bundle(path: Path, network_def: dict, state: dict, metadata: dict) -> Bundle:
    """Write a bundle (weights, checksum, configs) and read it back through the checks."""
    import torch

    path = Path(path)
    (path / WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
    (path / METADATA).parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, path / WEIGHTS)
    metadata = {**metadata, "weights_sha256": sha256(path / WEIGHTS)}
    (path / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    (path / INFERENCE).write_text(json.dumps({"network_def": network_def}, indent=2) + "\n")
    return load_bundle(path)
