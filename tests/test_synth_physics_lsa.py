"""The physics engine's DWI tensors and ASL (issue 18's maps on a second simulator): the
kinetic model against the white paper, the written series and sidecars, and FA and CBF
through the pipeline's own interfaces against the values the engine planted."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
from helpers import run_interface

from csvd_bids.interfaces.dwi import PrepareDWI
from csvd_bids.interfaces.lsa import FitDTI, PrepareASL
from csvd_bids.synth import generate_dataset, physics
from csvd_bids.synth import physics_asl as PA
from csvd_bids.synth.contrasts import AcqGrid, to_grid
from csvd_bids.synth.dataset import Settings, draw_subject
from csvd_bids.synth.profiles import PROFILES

# one worker, so that its module-scoped dataset is built once (conftest.py)
pytestmark = pytest.mark.xdist_group("physics_lsa_session")

SEED, RESOLUTION_MM = 11, 3.0
BASAL_GANGLIA = 5  # seg-regions index in the truth
PCASL = PA.ASLProtocol(
    "PCASL", "3D", 1.8, 1.8, 0.85, True, 0, 0.95, 1.0, "Separate", 4.0, 10.0, 0.0, 8, 3.0, 4.0,
    0.0, 50.0, 1.65,
)  # fmt: skip


def _white_paper(p: PA.ASLProtocol, cbf: float) -> float:
    """deltaM / M0 by Alsop et al. 2015's eq. 1 (PCASL) or its PASL form."""
    t1b, lam, alpha = p.blood_t1, 0.9, p.efficiency
    if p.labeling == "PCASL":
        decay = t1b * (1 - np.exp(-p.bolus / t1b)) * np.exp(-p.delay / t1b)
    else:
        decay = p.bolus * np.exp(-p.delay / t1b)
    return 2 * alpha * cbf * decay / (6000 * lam)


@pytest.mark.parametrize("labeling", ["PCASL", "PASL"])
def test_the_kinetic_model_is_the_white_papers_when_label_stays_in_blood(labeling):
    p = PCASL
    if labeling == "PASL":
        p = dataclasses.replace(PCASL, labeling="PASL", bolus=0.75, efficiency=0.98)
    stays = PA.kinetic_delta_m(p, 60.0, 0.9, 1.4, 100.0, np.array([p.delay]))
    assert stays[0] == pytest.approx(_white_paper(p, 60.0), rel=1e-3)
    # exchange into a tissue of shorter T1 loses label; a bolus that has not all arrived
    # by the delay gives less
    exchanged = PA.kinetic_delta_m(p, 60.0, 0.9, 1.4, 0.5, np.array([p.delay]))
    assert 0.75 * stays[0] < exchanged[0] < 0.99 * stays[0]
    late = PA.kinetic_delta_m(p, 60.0, p.delay + 0.5, 1.4, 0.5, np.array([p.delay]))
    assert late[0] < 0.8 * exchanged[0]


def test_label_that_has_not_arrived_gives_no_signal_and_later_slices_less():
    never = PA.kinetic_delta_m(PCASL, 60.0, 4.0, 1.4, 0.5, np.array([1.8]))
    assert never[0] == 0.0  # transit 4 s > labelling 1.8 s + delay 1.8 s
    slices = PA.kinetic_delta_m(PCASL, 60.0, 0.9, 1.4, 0.5, 1.8 + 0.04 * np.arange(20))
    assert (np.diff(slices) < 0).all()


def test_the_basal_ganglia_effect_is_in_the_perfusion_only():
    settings = Settings(4.0, None, PROFILES["research"], "physics")
    _, _, _, subject, anat = draw_subject(3, 1, 1, settings)
    grid = PA.asl_grid(subject.asl_protocol, anat.shape, anat.affine, anat.voxel_mm)
    bg = np.zeros(anat.shape, bool)
    bg[:, :, anat.shape[2] // 3 : anat.shape[2] // 2] = True
    images = {}
    for factor in (1.0, 0.6):
        images[factor] = PA.tissue_images(
            subject.asl_protocol, subject.perfusion, factor, anat, bg, [], subject.tissues,
            physics.CODE_TISSUE, physics.HEAD_TISSUE,
            subject.texture, PA.slice_of_planes(grid, anat.shape[2]),
        )  # fmt: skip
    assert (images[0.6]["M0"] == images[1.0]["M0"]).all()
    assert images[0.6]["deltaM"][bg].sum() < 0.65 * images[1.0]["deltaM"][bg].sum()
    assert (images[0.6]["deltaM"][~bg] == images[1.0]["deltaM"][~bg]).all()
    assert PA.mean_cbf(images[0.6], bg) == pytest.approx(0.6 * PA.mean_cbf(images[1.0], bg))


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> dict:
    """A misaligned physics session, its DWI and ASL through the pipeline's interfaces, and
    pure-tissue masks from the engine's own anatomy (render grid, averaged to the T1w's)."""
    root = tmp_path_factory.mktemp("physics_lsa")
    bids = generate_dataset(
        root / "bids", 1, 1, SEED, RESOLUTION_MM, engine="physics", misalign=(10.0, 10.0)
    )
    truth = bids / "derivatives" / "groundtruth" / "sub-01" / "anat"
    settings = Settings(RESOLUTION_MM, None, PROFILES["research"], "physics")
    _, _, _, subject, anat = draw_subject(SEED, 1, 1, settings)
    o = subject.oversample
    grid = AcqGrid((o, o, o), tuple(n // o for n in anat.shape), anat.affine)
    reference = bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    shape = nib.load(reference).shape
    wm, gm = (to_grid(x, grid)[: shape[0], : shape[1], : shape[2]] for x in (anat.wm, anat.gm))
    lesions = np.asanyarray(nib.load(truth / "sub-01_space-T1w_seg-csvd_dseg.nii.gz").dataobj)
    regions = np.asanyarray(nib.load(truth / "sub-01_space-T1w_seg-regions_dseg.nii.gz").dataobj)
    away = (lesions == 0) & (regions != BASAL_GANGLIA)
    dwi = bids / "sub-01" / "dwi" / "sub-01_dwi"
    registered = run_interface(
        PrepareDWI(), root / "w", in_file=f"{dwi}.nii.gz", bval=f"{dwi}.bval",
        reference=str(reference),
    )  # fmt: skip
    tensor = run_interface(
        FitDTI(), root / "w", in_file=f"{dwi}.nii.gz", bval=f"{dwi}.bval", bvec=f"{dwi}.bvec",
        reference=str(reference), transform=registered.transform,
    )  # fmt: skip
    perf = bids / "sub-01" / "perf"
    m0 = perf / "sub-01_m0scan.nii.gz"
    separate = {"m0scan": str(m0), "m0_metadata": m0.with_suffix("").with_suffix(".json")}
    separate["m0_metadata"] = separate["m0_metadata"].read_text() if m0.exists() else None
    asl = run_interface(
        PrepareASL(), root / "w", in_file=str(perf / "sub-01_asl.nii.gz"),
        aslcontext=str(perf / "sub-01_aslcontext.tsv"),
        metadata=(perf / "sub-01_asl.json").read_text(), reference=str(reference),
        **(separate if m0.exists() else {}),
    )  # fmt: skip
    return {
        "bids": bids,
        "planted": json.loads((truth / "sub-01_desc-tissue_stats.json").read_text()),
        "pure": {"WM": (wm > 0.99) & away, "GM": (gm > 0.9) & away},
        "bg": regions == BASAL_GANGLIA,
        "tensor": tensor,
        "asl": asl,
    }


def _median(path: str, where: np.ndarray) -> float:
    return float(np.median(np.asanyarray(nib.load(path).dataobj)[where]))


def test_the_physics_asl_series_matches_its_context_and_sidecar(session):
    perf = session["bids"] / "sub-01" / "perf"
    sidecar = json.loads((perf / "sub-01_asl.json").read_text())
    protocol = session["planted"]["ASL"]["Protocol"]
    context = (perf / "sub-01_aslcontext.tsv").read_text().split()[1:]
    assert nib.load(perf / "sub-01_asl.nii.gz").shape[3] == len(context)
    assert context.count("label") == sidecar["TotalAcquiredPairs"] == protocol["pairs"]
    assert sidecar["M0Type"] == protocol["m0_type"]
    assert (perf / "sub-01_m0scan.nii.gz").exists() == (protocol["m0_type"] == "Separate")
    assert ("m0scan" in context) == (protocol["m0_type"] == "Included")
    assert sidecar["ArterialSpinLabelingType"] == protocol["labeling"]
    assert sidecar["PostLabelingDelay"] == pytest.approx(protocol["delay"], abs=1e-4)
    assert ("LabelingEfficiency" in sidecar) == protocol["efficiency_in_sidecar"]


def test_physics_fa_and_md_are_the_drawn_tensors(session):
    """FA in pure white matter within 0.1 of the drawn single-fibre FA and below it (the
    fibres disperse within each 2 mm voxel); MD within 10 %."""
    tissues = session["planted"]["DWI"]["Tissues"]
    tensor = session["tensor"]
    fa = {name: _median(tensor.fa, mask) for name, mask in session["pure"].items()}
    md = _median(tensor.md, session["pure"]["WM"])
    assert tissues["WM"]["FA"] - 0.1 < fa["WM"] < tissues["WM"]["FA"], fa
    assert fa["GM"] < 0.4 * fa["WM"], fa
    assert md == pytest.approx(1000 * tissues["WM"]["MD"], rel=0.1)


def test_physics_cbf_follows_the_planted_perfusion(session):
    """The white paper's model on the kinetic model's images: grey matter and the basal
    ganglia lose label to tissue T1, later arrival and partial volume with CSF (grey matter read
    0.65-0.80 of the planted value on seed 11's four sessions, the basal ganglia a median 0.66
    on seed 930's thirty); grey above white."""
    planted = session["planted"]["ASL"]
    cbf = {name: _median(session["asl"].cbf, mask) for name, mask in session["pure"].items()}
    assert 0.6 * planted["Tissues"]["GM"]["CBF"] < cbf["GM"] < planted["Tissues"]["GM"]["CBF"]
    assert cbf["WM"] < 0.6 * cbf["GM"], cbf
    bg = float(np.mean(np.asanyarray(nib.load(session["asl"].cbf).dataobj)[session["bg"]]))
    assert 0.5 * planted["BasalGangliaMeanCBF"] < bg < 1.1 * planted["BasalGangliaMeanCBF"]
