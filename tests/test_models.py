"""Model bundles: training (determinism, resume), safe loading, inference, and the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from csvd_bids.cli.run import main
from csvd_bids.cli.train import main as train_main
from csvd_bids.config import RunConfig
from csvd_bids.errors import ExitCode, UsageError
from csvd_bids.interfaces.markers import DetectMarker
from csvd_bids.markers import REGISTRY
from csvd_bids.models.builtin import WMH_BUNDLE
from csvd_bids.models.bundle import (
    INFERENCE,
    METADATA,
    WEIGHTS,
    Bundle,
    BundleError,
    find_bundles,
    load_bundle,
    sha256,
)
from csvd_bids.models.detect import check_bundle_supported
from csvd_bids.models.inference import predict, resolve_device
from csvd_bids.models.second_opinion import THRESHOLD as SECOND_OPINION_THRESHOLD
from csvd_bids.morphology import FACES
from csvd_bids.planning import load_models, model_status
from csvd_bids.workflows.base import WORKFLOW_NAME

# These tests read the session-scoped demo run: keeping them on one xdist worker (make test
# uses --dist loadgroup) runs the 2 x 2 demo once instead of once per worker.
pytestmark = pytest.mark.xdist_group("demo_run")

TINY = ["--patch", "32", "32", "32", "--channels", "8", "16", "--iterations", "2"]


def _train(demo_run, bundle: Path, *extra: str) -> int:
    labels = demo_run["bids"] / "derivatives" / "groundtruth"
    args = ["wmh", str(bundle), "--outputs", str(demo_run["out"]), "--labels", str(labels)]
    return train_main([*args, *TINY, "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def bundle_dir(demo_run, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "wmh"
    assert _train(demo_run, folder, "--epochs", "2") == 0
    return folder


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))


def test_training_writes_a_checked_bundle(bundle_dir):
    bundle = load_bundle(bundle_dir)
    metadata = json.loads((bundle_dir / METADATA).read_text())
    assert metadata["weights_sha256"] == sha256(bundle_dir / WEIGHTS)
    assert bundle.inputs == ("flair", "t1w") and bundle.marker == "wmh"
    assert len(metadata["evaluation"]["history"]) == 2
    assert metadata["training"]["command"] and metadata["spacing_mm"] == [3.0, 3.0, 3.0]
    assert "UNet" in bundle.description and metadata["weights_sha256"][:12] in bundle.description


def test_resumed_training_equals_an_uninterrupted_one(demo_run, bundle_dir, tmp_path):
    """Fixed seeds, reseeded every epoch: 1 epoch + resume to 2 gives the same weights."""
    resumed = tmp_path / "resumed"
    assert _train(demo_run, resumed, "--epochs", "1") == 0
    assert _train(demo_run, resumed, "--epochs", "2", "--resume") == 0
    straight = torch.load(bundle_dir / "checkpoints" / "checkpoint.pt", weights_only=True)
    again = torch.load(resumed / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert again["epoch"] == straight["epoch"] == 2
    for name, tensor in straight["network"].items():
        assert torch.allclose(tensor, again["network"][name], atol=1e-6), name


def test_training_with_worker_processes_repeats_exactly(demo_run, tmp_path):
    """Patches made by 2 worker processes (a GPU's training): the same weights on a second run."""
    runs = [tmp_path / "a", tmp_path / "b"]
    for bundle in runs:
        assert _train(demo_run, bundle, "--epochs", "1", "--workers", "2") == 0
    first, second = (torch.load(b / "models" / "model.pt", weights_only=True) for b in runs)
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


def test_negative_workers_is_a_usage_error(tmp_path):
    code = train_main(["wmh", str(tmp_path / "b"), "--outputs", str(tmp_path),
                       "--labels", str(tmp_path), "--workers", "-1"])  # fmt: skip
    assert code == ExitCode.USAGE


@pytest.mark.parametrize("fraction", ["-0.1", "1.5"])
def test_a_lesion_fraction_outside_0_1_is_a_usage_error(tmp_path, capsys, fraction):
    code = train_main(["wmh", str(tmp_path / "b"), "--outputs", str(tmp_path),
                       "--labels", str(tmp_path), "--lesion-fraction", fraction])  # fmt: skip
    assert code == ExitCode.USAGE and "--lesion-fraction" in capsys.readouterr().err


def test_an_unreadable_init_bundle_is_refused_with_its_path(tmp_path, capsys):
    missing = tmp_path / "no_such_bundle"
    code = train_main(["wmh", str(tmp_path / "b"), "--outputs", str(tmp_path),
                       "--labels", str(tmp_path), "--init", str(missing)])  # fmt: skip
    assert code == ExitCode.INPUT_DATA and str(missing) in capsys.readouterr().err


def test_training_without_usable_sessions_is_no_input(demo_run, tmp_path):
    code = train_main(
        [
            "wmh",
            str(tmp_path / "b"),
            "--outputs",
            str(demo_run["out"]),
            "--labels",
            str(tmp_path),
            *TINY,
        ]  # fmt: skip
    )
    assert code == ExitCode.NO_INPUT


def test_each_outputs_folder_needs_its_labels(demo_run, tmp_path):
    out = str(demo_run["out"])
    code = train_main(["wmh", str(tmp_path / "b"), "--outputs", out, out, "--labels", out])
    assert code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / WEIGHTS).unlink(), "models/model.pt is missing"),
        (lambda b: (b / WEIGHTS).write_bytes((b / WEIGHTS).read_bytes()[:-8]), "SHA-256"),
        (lambda b: (b / METADATA).write_text("{not json"), "not readable JSON"),
        (lambda b: _edit(b, INFERENCE, {"network_def": {"_target_": "os.system"}}), "allowed"),
        (lambda b: _edit(b, METADATA, {"inputs": ["flair"]}), "lists 1 input"),
        (lambda b: _edit(b, METADATA, {"spacing_mm": [1, 1]}), "three positive"),
        (lambda b: _edit(b, METADATA, {"marker": "css"}), "marker 'css'"),
    ],
)
def test_damaged_bundles_are_refused_with_the_file_named(bundle_dir, tmp_path, damage, message):
    bundle = _copy(bundle_dir, tmp_path)
    damage(bundle)
    with pytest.raises(BundleError, match=message) as caught:
        load_bundle(bundle)
    assert str(bundle) in str(caught.value) and caught.value.exit_code == ExitCode.INPUT_DATA


def _edit(bundle: Path, name: Path, changes: dict) -> None:
    content = json.loads((bundle / name).read_text())
    if "network_def" in changes:
        content["network_def"] = changes["network_def"]
    else:
        content.update(changes)
    (bundle / name).write_text(json.dumps(content))


def test_pickled_code_in_the_weights_is_refused(bundle_dir, tmp_path):
    """weights_only loading: a file that would run code on unpickling never loads."""
    bundle = _copy(bundle_dir, tmp_path)
    torch.save({"weight": torch.zeros(1), "payload": print}, bundle / WEIGHTS)
    _edit(bundle, METADATA, {"weights_sha256": sha256(bundle / WEIGHTS)})
    with pytest.raises(BundleError, match="not a safely loadable state dict"):
        load_bundle(bundle)


def test_bundle_rules_per_marker_and_session(bundle_dir, tmp_path):
    bundle = load_bundle(bundle_dir)
    rssi = Bundle(bundle.path, {**bundle.metadata, "marker": "rssi"}, bundle.network_def)
    with pytest.raises(BundleError, match="not supported"):
        check_bundle_supported(rssi, REGISTRY["rssi"])
    lacking = model_status(bundle, {"flair", "t2w"})
    assert lacking["assessed"] is False and "needs t1w" in lacking["reason"]
    assert model_status(bundle, {"flair", "t1w"})["model"] == str(bundle_dir)
    second = tmp_path / "models"
    shutil.copytree(bundle_dir, second / "a")
    shutil.copytree(bundle_dir, second / "b")
    with pytest.raises(BundleError, match="a second bundle for wmh"):
        find_bundles(second)


def test_a_models_wmh_mostly_outside_the_white_matter_regions_are_dropped(bundle_dir, tmp_path):
    """A network that calls every brain voxel lesion, on a brain of two blocks: the one in deep
    white matter stays WMH; the one in the cortex (a FLAIR-bright gyrus) does not."""
    from csvd_bids.markers.base import SessionImages
    from csvd_bids.models.bundle import write_bundle
    from csvd_bids.models.detect import detect_with_bundle
    from csvd_bids.region_sets import CORTEX_REGIONS, DEEP_WM

    bundle = load_bundle(bundle_dir)
    state = {k: torch.zeros_like(v) for k, v in bundle.build_network().state_dict().items()}
    state[[k for k in state if k.endswith("bias")][-1]][:] = 10.0  # logit 10 everywhere
    everywhere = write_bundle(tmp_path / "b", bundle.network_def, state, dict(bundle.metadata))
    brain = np.zeros((24, 24, 24), bool)
    brain[2:10, 4:20, 4:20] = brain[14:22, 4:20, 4:20] = True
    regions = np.zeros(brain.shape, np.uint8)
    regions[2:10] = DEEP_WM
    regions[14:22] = CORTEX_REGIONS[0]
    regions[14:16] = DEEP_WM  # a quarter of the cortical block lies in white matter
    image = nib.Nifti1Image(
        np.where(brain, 100.0, 0.0).astype(np.float32), np.diag([3.0] * 3 + [1])
    )
    session = SessionImages(
        images={"flair": image, "t1w": image}, brain_mask=brain, priors={}, regions=regions
    )
    found = detect_with_bundle(everywhere, REGISTRY["wmh"], session, device="cpu")
    np.testing.assert_array_equal(found.mask[:12], brain[:12])
    assert not found.mask[12:].any()


def test_inference_resamples_to_the_bundle_spacing_and_back(bundle_dir):
    bundle = load_bundle(bundle_dir)
    rng = np.random.default_rng(0)
    channels = rng.normal(size=(2, 30, 36, 28)).astype(np.float32)
    brain = np.zeros(channels.shape[1:], dtype=bool)
    brain[4:-4, 4:-4, 4:-4] = True
    network = bundle.build_network()
    out = predict(bundle, network, channels, brain, (1.5, 1.5, 1.5), device="cpu")
    assert out.shape == brain.shape and out.dtype == np.float32
    assert (out[~brain] == 0).all() and out.min() >= 0 and out.max() <= 1
    tta = predict(bundle, network, channels, brain, (1.5, 1.5, 1.5), device="cpu", tta=True)
    assert tta.shape == out.shape and not np.array_equal(tta, out)


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(UsageError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_device_and_threads_do_not_change_the_cache_key():
    hashes = set()
    for device, threads in (("cpu", 1), ("auto", 4)):
        node = DetectMarker(marker="wmh", bundle="/models/wmh", bundle_sha256="ab")
        node.inputs.device, node.inputs.num_threads = device, threads
        hashes.add(node.inputs.get_hashval()[1])
    assert len(hashes) == 1
    other = DetectMarker(marker="wmh", bundle="/models/wmh", bundle_sha256="cd")
    assert other.inputs.get_hashval()[1] not in hashes  # new weights, new results


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: the GPU path is not run")
def test_gpu_matches_cpu(bundle_dir):
    """float16 autocast on the GPU against float32 on the CPU: probabilities within 0.02."""
    bundle = load_bundle(bundle_dir)
    rng = np.random.default_rng(1)
    channels = rng.normal(size=(2, 40, 40, 40)).astype(np.float32)
    brain = np.ones(channels.shape[1:], dtype=bool)
    cpu = predict(bundle, bundle.build_network(), channels, brain, (3.0, 3.0, 3.0), "cpu")
    gpu = predict(bundle, bundle.build_network(), channels, brain, (3.0, 3.0, 3.0), "cuda")
    assert np.abs(cpu - gpu).max() < 0.02


def test_pipeline_runs_the_bundle_instead_of_the_detector(demo_run, bundle_dir, tmp_path):
    """The bundle in place of the WMH detector. The demo run's work dir is copied (not shared:
    other tests read it), so the preprocessing comes from its cache and only the marker nodes
    run again; the bundle's checksum is part of the detect node's cache key."""
    models = tmp_path / "models"
    shutil.copytree(bundle_dir, models / "wmh")
    out = tmp_path / "out"
    shutil.copytree(demo_run["work"], tmp_path / "work", symlinks=True)
    session_wf = tmp_path / "work" / WORKFLOW_NAME / "sub_01_ses_1_wf"
    cached = session_wf / "preproc_wf" / "template_priors" / "result_template_priors.pklz"
    cached_at = cached.stat().st_mtime_ns
    args = [str(demo_run["bids"]), str(out), "participant", "-w", str(tmp_path / "work"),
            "--participant-label", "01", "--session-label", "1", "--markers", "wmh",
            "--skip-bids-validation", "--models-dir", str(models), "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert cached.stat().st_mtime_ns == cached_at  # the preprocessing came from the cache
    anat = out / "sub-01" / "ses-1" / "anat"
    sidecar = json.loads((anat / "sub-01_ses-1_space-T1w_label-WMH_mask.json").read_text())
    assert sidecar["Method"].startswith("MONAI model bundle csvd-bids-wmh-unet")
    probability = nib.load(anat / "sub-01_ses-1_space-T1w_label-WMH_probseg.nii.gz")
    mask = nib.load(anat / "sub-01_ses-1_space-T1w_label-WMH_mask.nii.gz")
    threshold = load_bundle(bundle_dir).metadata["threshold"]
    # the mask is the thresholded probability, less what the size rules removed
    assert not (
        np.asanyarray(mask.dataobj) > (np.asanyarray(probability.dataobj) >= threshold)
    ).any()
    # the lacunes (run for WMH, not written) are left out of the bundle's mask as of the detector's
    assert sidecar["ExcludedLesions"]["LAC"].startswith("left out")
    lacunes = nib.load(session_wf / "lacunes_wf" / "detect" / "mask.nii.gz")
    rims = ndimage.binary_dilation(np.asanyarray(lacunes.dataobj) > 0, FACES)
    assert not (np.asanyarray(mask.dataobj) > 0)[rims].any()
    assert not (anat / "sub-01_ses-1_space-T1w_label-LAC_mask.nii.gz").exists()


def test_the_shipped_model_runs_beside_the_wmh_detector_as_a_second_opinion(demo_run):
    """By default the detector makes the WMH mask and the shipped model runs in its own node
    beside it; its volume is recorded in the mask's sidecar. On the demo the detector's mask
    is kept (the two agree: no note, no warning). The model's mask is its probability at the
    second opinion's threshold, lower than the bundle's own."""
    marker_wf = demo_run["work"] / WORKFLOW_NAME / "sub_01_ses_1_wf" / "wmh_wf"
    model = nib.load(marker_wf / "second_opinion" / "mask.nii.gz")
    model_mask = np.asanyarray(model.dataobj) > 0
    probability = np.asanyarray(nib.load(marker_wf / "second_opinion" / "score.nii.gz").dataobj)
    assert probability[model_mask].min() >= SECOND_OPINION_THRESHOLD
    assert probability[model_mask].min() < load_bundle(WMH_BUNDLE).metadata["threshold"]
    model_mm3 = float(model_mask.sum()) * float(np.prod(model.header.get_zooms()[:3]))
    detector = np.asanyarray(nib.load(marker_wf / "detect" / "mask.nii.gz").dataobj) > 0
    assert model_mm3 > 0 and not np.array_equal(model_mask, detector)
    anat = demo_run["out"] / "sub-01" / "ses-1" / "anat"
    written = nib.load(anat / "sub-01_ses-1_space-T1w_label-WMH_mask.nii.gz")
    assert np.array_equal(np.asanyarray(written.dataobj) > 0, detector)
    sidecar = json.loads((anat / "sub-01_ses-1_space-T1w_label-WMH_mask.json").read_text())
    assert sidecar["Method"] == REGISTRY["wmh"].method
    opinion = sidecar["SecondOpinion"]
    assert opinion["method"].startswith("MONAI model bundle csvd-bids-wmh-unet")
    assert opinion["volume_mm3"] == pytest.approx(model_mm3, abs=0.1)
    assert opinion["used"] is False and "Notes" not in sidecar
    summary = pd.read_csv(anat / "sub-01_ses-1_desc-summary_stats.tsv", sep="\t")
    assert "second opinion" not in str(summary["qc_warnings"].iloc[0])


def test_cuda_without_a_gpu_is_a_usage_error(demo_run, bundle_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    models = tmp_path / "models"
    shutil.copytree(bundle_dir, models / "wmh")
    args = [str(demo_run["bids"]), str(tmp_path / "out"), "participant", "-w",
            str(tmp_path / "work"), "--skip-bids-validation", "--models-dir", str(models),
            "--device", "cuda"]  # fmt: skip
    assert main(args) == ExitCode.USAGE


def test_the_shipped_wmh_model_is_a_checked_flair_only_bundle_under_30_mb():
    bundle = load_bundle(WMH_BUNDLE)
    assert bundle.marker == "wmh" and bundle.inputs == ("flair",)
    size = sum(f.stat().st_size for f in WMH_BUNDLE.rglob("*") if f.is_file())
    assert size < 30e6
    assert not (WMH_BUNDLE / "checkpoints").exists()
    training = bundle.metadata["training"]
    assert training["settings"]["bf16"] and training["settings"]["spacing_mm"] == [1.0] * 3
    # the exact command is documented beside the weights
    assert "csvd-bids-train wmh" in (WMH_BUNDLE / "TRAINING.md").read_text()


def test_wmh_method_chooses_the_shipped_model_and_models_dir_wins(bundle_dir, tmp_path):
    config = RunConfig(Path("bids"), Path("out"), ("participant",), Path("work"))
    assert load_models(config) == {}  # the detector by default
    config.wmh_method = "model"
    assert load_models(config)["wmh"].path == WMH_BUNDLE
    shutil.copytree(bundle_dir, tmp_path / "models" / "wmh")
    config.models_dir = tmp_path / "models"
    assert load_models(config)["wmh"].path == tmp_path / "models" / "wmh"


def test_training_sessions_are_resampled_to_the_bundle_spacing():
    """A 1x1x4 mm session (a thick-slice FLAIR) is trained on at 1 mm, as inference sees it."""
    from csvd_bids.models.train import Session, to_spacing

    brain = np.zeros((20, 20, 6), bool)
    brain[2:18, 2:18, 1:5] = True
    label = np.zeros((1, 20, 20, 6), np.float32)
    label[0, 5:10, 5:10, 2:4] = 1
    image = np.where(brain, 100.0, 0.0).astype(np.float32)[None] + 50 * label
    session = to_spacing(Session("s", image, label, brain, (1.0, 1.0, 4.0)), (1.0, 1.0, 1.0))
    assert session.image.shape == (1, 20, 20, 24) and session.zooms == (1.0, 1.0, 1.0)
    assert abs(session.label.sum() - 4 * label.sum()) <= 0.25 * 4 * label.sum()
    assert not session.image[0][~session.brain].any()  # 0 outside the brain, as in training
    assert to_spacing(session, (1.05, 1.0, 1.0)) is session  # within 10 %: left as it is


@pytest.mark.parametrize(
    ("fraction", "low", "high"), [(2 / 3, 30, 50), (1 / 3, 10, 30), (0.0, 0, 0)]
)
def test_training_patches_are_centred_on_lesion_or_brain_never_on_empty_background(
    fraction, low, high
):
    """A small brain in a large field of view: every patch holds brain (a negative patch centred
    in the empty background would teach nothing), and the lesion fraction of them (of 60) is
    centred on a lesion voxel."""
    from monai.utils import set_determinism

    from csvd_bids.models.train import Session, _patch_sources, _transforms

    brain = np.zeros((96, 96, 96), bool)
    brain[60:84, 60:84, 60:84] = True
    label = np.zeros((1, *brain.shape), np.float32)
    label[0, 70:73, 70:73, 70:73] = 1
    image = (np.where(brain, 100.0, 0.0) + 50 * label[0]).astype(np.float32)[None]
    set_determinism(seed=0)
    (source,) = _patch_sources([Session("s", image, label, brain, (1.0,) * 3)], (16, 16, 16))
    crop = _transforms((16, 16, 16), fraction).transforms[0]  # the patch sampling alone
    patches = [patch for _ in range(30) for patch in crop(source)]
    assert all((patch["image"] > 0).any() for patch in patches)
    centred_on_lesion = sum(bool(patch["label"][0, 8, 8, 8]) for patch in patches)
    assert low <= centred_on_lesion <= high


def test_fine_tuning_starts_from_the_given_bundle(demo_run, bundle_dir, tmp_path):
    """--init: the bundle's inputs, network, patch and spacing are the defaults; with a
    learning rate of 0 the tuned bundle keeps the starting weights exactly, and its metadata
    names where they came from."""
    tuned = tmp_path / "tuned"
    labels = demo_run["bids"] / "derivatives" / "groundtruth"
    code = train_main(
        ["wmh", str(tuned), "--outputs", str(demo_run["out"]), "--labels", str(labels),
         "--init", str(bundle_dir), "--epochs", "1", "--iterations", "2", "--learning-rate", "0",
         "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    assert load_bundle(tuned).network_def == load_bundle(bundle_dir).network_def
    # the starting weights were validated as epoch 0, so a worse fine-tune would keep them
    evaluation = json.loads((tuned / METADATA).read_text())["evaluation"]
    assert [h["epoch"] for h in evaluation["history"]] == [0, 1]
    assert evaluation["validation_dice_best"] == pytest.approx(
        evaluation["history"][0]["validation_dice"]
    )
    start, after = (torch.load(b / WEIGHTS, weights_only=True) for b in (bundle_dir, tuned))
    for name, tensor in start.items():
        assert torch.equal(tensor, after[name]), name
    origin = json.loads((tuned / METADATA).read_text())["training"]["initialised_from"]
    assert origin["weights_sha256"] == sha256(bundle_dir / WEIGHTS)


def test_init_shipped_is_the_packages_own_bundle_for_the_marker():
    from csvd_bids.cli.train import _start_bundle

    assert _start_bundle("wmh", Path("shipped")).path == WMH_BUNDLE
    assert _start_bundle("wmh", None) is None
    with pytest.raises(UsageError, match="no lacunes model is shipped"):
        _start_bundle("lacunes", Path("shipped"))


def test_fine_tuning_another_network_is_a_usage_error_naming_the_bundle(
    demo_run, bundle_dir, tmp_path, capsys
):
    code = _train(demo_run, tmp_path / "t", "--init", str(bundle_dir), "--channels", "8", "32")
    assert code == ExitCode.USAGE
    error = capsys.readouterr().err
    assert str(bundle_dir) in error and "network" in error
    assert not (tmp_path / "t").exists()  # refused before anything was written


def test_inference_does_not_depend_on_the_field_of_view():
    """The same brain with more empty field of view around it gets the same probabilities: the
    shipped UNet normalises each patch, so inference on the whole field (more background in
    each patch, other patch positions) had changed its masks."""
    bundle = load_bundle(WMH_BUNDLE)
    network = bundle.build_network()
    rng = np.random.default_rng(1)
    grid = np.indices((72, 72, 72)) - 36
    brain = (grid**2).sum(axis=0) <= 30**2
    flair = ndimage.gaussian_filter(rng.normal(size=brain.shape), 2).astype(np.float32)
    flair += 3.0 * ((grid[0] - 8) ** 2 + grid[1] ** 2 + grid[2] ** 2 <= 6**2)  # a bright lesion
    small = predict(bundle, network, flair[None], brain, (1.0, 1.0, 1.0), device="cpu")
    pad = ((50, 10), (0, 60), (20, 20))
    big = predict(
        bundle,
        network,
        np.pad(flair, pad)[None],
        np.pad(brain, pad),
        (1.0, 1.0, 1.0),
        device="cpu",
    )
    inside = tuple(slice(low, low + n) for (low, _), n in zip(pad, brain.shape, strict=True))
    np.testing.assert_allclose(big[inside], small, atol=1e-6)
    around = np.ones(big.shape, dtype=bool)
    around[inside] = False
    assert not big[around].any()
