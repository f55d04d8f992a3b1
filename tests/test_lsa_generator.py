"""FA and CBF through the pipeline's own interfaces against the values the generator planted
(``desc-tissue_stats.json``), on a misaligned session: DWI registration, tensor fit and
resampling; ASL quantification, M0 registration and resampling."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import run_interface
from scipy import ndimage

from csvd_bids.interfaces.dwi import PrepareDWI
from csvd_bids.interfaces.lsa import FitDTI, PrepareASL
from csvd_bids.synth import generate_dataset
from csvd_bids.synth.anatomy import make_anatomy

# one worker, so that its module-scoped dataset is built once (conftest.py)
pytestmark = pytest.mark.xdist_group("lsa_generator_session")

SEED = 5
RESOLUTION_MM = 3.0
MISALIGN = (10.0, 10.0)  # degrees, mm


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("lsa")
    bids = generate_dataset(root / "bids", 1, 1, SEED, RESOLUTION_MM, misalign=MISALIGN)
    truth = bids / "derivatives" / "groundtruth" / "sub-01" / "anat"
    anat = make_anatomy(
        np.random.default_rng(np.random.SeedSequence([SEED, 1]).spawn(5)[1]), RESOLUTION_MM
    )
    lesions = np.asanyarray(nib.load(truth / "sub-01_space-T1w_seg-csvd_dseg.nii.gz").dataobj)
    regions = np.asanyarray(nib.load(truth / "sub-01_space-T1w_seg-regions_dseg.nii.gz").dataobj)
    planted = json.loads((truth / "sub-01_desc-tissue_stats.json").read_text())
    # Pure tissue away from the basal ganglia (whose values carry the subject's effect) and
    # one voxel in from every other tissue, so that two resamplings do not mix tissues.
    outside = regions != int(planted["BasalGangliaRegion"].split("index ")[1].split()[0])
    pure = {
        name: (fraction > 0.99) & (lesions == 0) & outside
        for name, fraction in (("WM", anat.wm), ("GM", anat.gm))
    }
    dwi = bids / "sub-01" / "dwi" / "sub-01_dwi"
    reference = str(bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    registered = run_interface(
        PrepareDWI(),
        root / "work",
        in_file=f"{dwi}.nii.gz",
        bval=f"{dwi}.bval",
        reference=reference,
    )
    tensor_inputs = {
        "in_file": f"{dwi}.nii.gz",
        "bval": f"{dwi}.bval",
        "bvec": f"{dwi}.bvec",
        "reference": reference,
        "transform": registered.transform,
    }
    tensor = run_interface(FitDTI(), root / "work", **tensor_inputs)
    brain_mask = truth / "sub-01_space-T1w_desc-brain_mask.nii.gz"
    near_brain = run_interface(
        FitDTI(brain_mask=str(brain_mask)), root / "work_brain", **tensor_inputs
    )
    perf = bids / "sub-01" / "perf"
    asl = run_interface(
        PrepareASL(),
        root / "work",
        in_file=str(perf / "sub-01_asl.nii.gz"),
        aslcontext=str(perf / "sub-01_aslcontext.tsv"),
        metadata=(perf / "sub-01_asl.json").read_text(),
        m0scan=str(perf / "sub-01_m0scan.nii.gz"),
        m0_metadata=(perf / "sub-01_m0scan.json").read_text(),
        reference=reference,
    )
    brain = np.asanyarray(nib.load(brain_mask).dataobj) > 0
    return {
        "pure": pure,
        "planted": planted,
        "tensor": tensor,
        "near_brain": near_brain,
        "brain": brain,
        "asl": asl,
    }


def _median(path: str, where: np.ndarray) -> float:
    return float(np.median(np.asanyarray(nib.load(path).dataobj)[where]))


def test_fa_and_md_are_the_planted_tensors(session):
    tissues = session["planted"]["DWI"]["Tissues"]
    fa = {name: _median(session["tensor"].fa, mask) for name, mask in session["pure"].items()}
    md = {name: _median(session["tensor"].md, mask) for name, mask in session["pure"].items()}
    assert fa["WM"] == pytest.approx(tissues["WM"]["FA"], rel=0.15), fa
    assert fa["GM"] < 0.5 * fa["WM"], fa
    for name in ("WM", "GM"):  # MD in 1e-6 mm2/s, planted in 1e-3 mm2/s
        assert md[name] == pytest.approx(1000 * tissues[name]["MD"], rel=0.1), md


def test_a_fit_near_the_brain_keeps_the_brain_and_skips_the_scalp(session):
    """With the brain mask, FA is the whole fit's inside the brain (through a 10 degree, 10 mm
    misregistration, so the mask reaches the DWI grid the right way round) and 0 on the scalp,
    which the whole fit covered."""
    brain = session["brain"]
    for name in ("fa", "md"):
        whole = np.asanyarray(nib.load(getattr(session["tensor"], name)).dataobj)
        near = np.asanyarray(nib.load(getattr(session["near_brain"], name)).dataobj)
        np.testing.assert_array_equal(near[brain], whole[brain])
        far = ~ndimage.binary_dilation(brain, iterations=6)  # beyond the 2-voxel DWI margin
        assert np.count_nonzero(whole[far]) > 0.05 * np.count_nonzero(whole)
        assert np.count_nonzero(near[far]) == 0


def test_cbf_is_the_planted_perfusion(session):
    tissues = session["planted"]["ASL"]["Tissues"]
    report = json.loads(Path(session["asl"].report).read_text())
    used, planted = report["Quantification"], session["planted"]["ASL"]
    assert used["PostLabelingDelay"] == planted["PostLabelingDelay"]
    assert used["LabelingEfficiency"] == planted["LabelingEfficiency"]
    cbf = {name: _median(session["asl"].cbf, mask) for name, mask in session["pure"].items()}
    assert cbf["GM"] == pytest.approx(tissues["GM"]["CBF"], rel=0.15), cbf
    assert cbf["WM"] == pytest.approx(tissues["WM"]["CBF"], rel=0.25), cbf
