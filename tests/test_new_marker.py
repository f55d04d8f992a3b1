"""A new marker is one module and one ``register`` call: a toy marker, loaded as a plugin
(CSVD_BIDS_MARKER_PLUGINS), reaches the masks, the label map and its lookup, the lesion table,
the summary, the session report and csvd-bids-eval without any other edit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from helpers import UNREAD_BY_WMH_TESTS, participant_args, remove_images
from scipy import ndimage

PLUGINS = Path(__file__).parent / "plugins"

# one xdist worker runs the module, so the toy run happens once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("toy_marker")]


def _run(module: str, args: list[str]) -> subprocess.CompletedProcess:
    """A command of the app in its own process, with the toy plugin, as a user runs it."""
    path = os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "CSVD_BIDS_MARKER_PLUGINS": "toy_marker", "PYTHONPATH": path}
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=800)


@pytest.fixture(scope="module")
def toy_run(_single_bids, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("toy")
    # a copy without the DWI and ASL, whose maps of the lenticulostriate territory run
    # whatever the markers (a third of a 3 mm session's node time) and the toy never reads
    bids = root / "bids"
    shutil.copytree(_single_bids, bids)
    remove_images(bids, *UNREAD_BY_WMH_TESTS)
    args = participant_args(bids, root, "--participant-label", "01", "--markers", "toy")
    run = _run("csvd_bids.cli.run", [*args, "--nprocs", "2"])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = root / "out"
    anat = out / "sub-01" / "anat"
    mask = np.asanyarray(nib.load(anat / "sub-01_space-T1w_label-TOY_mask.nii.gz").dataobj) > 0
    return {"root": root, "out": out, "anat": anat, "mask": mask}


def test_the_toy_mask_and_its_sidecar(toy_run):
    assert toy_run["mask"].any()
    sidecar = json.loads((toy_run["anat"] / "sub-01_space-T1w_label-TOY_mask.json").read_text())
    assert "a toy" in sidecar["Method"]
    assert sidecar["Notes"] == ["a toy marker"]
    assert (toy_run["anat"] / "sub-01_space-T1w_label-TOY_probseg.nii.gz").is_file()


def test_the_toy_is_painted_in_the_label_map(toy_run):
    dseg = np.asanyarray(
        nib.load(toy_run["anat"] / "sub-01_space-T1w_seg-csvd_dseg.nii.gz").dataobj
    )
    assert np.array_equal(dseg == 6, toy_run["mask"])
    assert set(np.unique(dseg)) == {0, 6}  # the other markers were not selected
    lookup = pd.read_csv(toy_run["out"] / "seg-csvd_dseg.tsv", sep="\t").set_index("index")
    assert lookup.loc[6, "abbreviation"] == "TOY"
    assert lookup.loc[6, "name"] == "toy lesion"


def test_the_toy_lesions_in_the_tables(toy_run):
    anat = toy_run["anat"]
    lesions = pd.read_csv(anat / "sub-01_desc-lesions_stats.tsv", sep="\t")
    _, n = ndimage.label(toy_run["mask"], np.ones((3, 3, 3)))
    assert (lesions["marker"] == "TOY").sum() == n
    assert set(lesions["region"]) <= {"left", "right"}
    summary = pd.read_csv(anat / "sub-01_desc-summary_stats.tsv", sep="\t").iloc[0]
    assert summary["TOY_status"] == "assessed"
    assert summary["TOY_count"] == n
    assert summary["TOY_left_count"] + summary["TOY_right_count"] == n
    assert "TOY: a toy marker" in summary["qc_warnings"]
    assert summary["WMH_status"] == "not assessed"
    dictionary = json.loads((anat / "sub-01_desc-summary_stats.json").read_text())
    assert "toy lesion" in dictionary["TOY_left_count"]["Description"]


def test_the_toy_in_the_session_report(toy_run):
    report = (toy_run["out"] / "sub-01.html").read_text()
    assert "TOY" in report
    assert "a toy" in report  # its method text
    assert (toy_run["out"] / "sub-01" / "figures" / "sub-01_desc-TOY_FLAIR.png").is_file()


def test_the_toy_is_evaluated(toy_run):
    truth = toy_run["root"] / "truth"
    (truth / "sub-01" / "anat").mkdir(parents=True)
    shutil.copy(
        toy_run["anat"] / "sub-01_space-T1w_label-TOY_mask.nii.gz",
        truth / "sub-01" / "anat" / "sub-01_label-TOY_mask.nii.gz",
    )
    results = toy_run["root"] / "eval"
    run = _run("csvd_bids.evaluate.cli", [str(truth), str(toy_run["out"]), "--out", str(results)])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    sessions = pd.read_csv(results / "eval_sessions.tsv", sep="\t")
    toy = sessions[sessions["marker"] == "TOY"]
    assert len(toy) == 1 and toy["status"].iloc[0] == "evaluated"
    assert toy["dice"].iloc[0] == pytest.approx(1.0)
