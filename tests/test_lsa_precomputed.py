"""FA, MD and CBF that other BIDS Apps made (``--derivatives``): which files are taken, which
are passed over, and a participant run that uses them instead of fitting or quantifying."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from csvd_bids.bids.precomputed import find_precomputed
from csvd_bids.cli.run import main
from csvd_bids.errors import ExitCode
from csvd_bids.preproc.lsa_inputs import precomputed_tensor_plan

FA, MD_MM2_S, CBF = 0.42, 0.0008, 50.0


def _map(path: Path, value: float, like: nib.Nifti1Image, shape=None) -> Path:
    """A map of ``value`` over the image's head (where it is not 0), in its space."""
    head = np.asanyarray(like.dataobj) > 0
    data = np.where(head, value, 0.0).astype(np.float32)
    if shape is not None:
        data = np.repeat(data[..., None], shape, axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, like.affine), path)
    return path


def _apps(root: Path, sub: str, t1w: nib.Nifti1Image) -> dict[str, Path]:
    """A QSIRecon-like and an ASLPrep-like derivative folder for ``sub``."""
    qsi = root / "qsirecon" / f"sub-{sub}" / "dwi"
    asl = root / "aslprep" / f"sub-{sub}" / "perf"
    return {
        "fa": _map(qsi / f"sub-{sub}_space-T1w_model-tensor_param-fa_dwimap.nii.gz", FA, t1w),
        "md": _map(qsi / f"sub-{sub}_space-T1w_model-tensor_param-md_dwimap.nii.gz", MD_MM2_S, t1w),
        "acpc": _map(qsi / f"sub-{sub}_space-ACPC_model-tensor_param-fa_dwimap.nii.gz", 0.9, t1w),
        "cbf": _map(asl / f"sub-{sub}_space-T1w_desc-mean_cbf.nii.gz", CBF, t1w),
        "basil": _map(asl / f"sub-{sub}_space-T1w_desc-basil_cbf.nii.gz", 99.0, t1w),
        "series": _map(asl / f"sub-{sub}_space-T1w_desc-timeseries_cbf.nii.gz", 1.0, t1w, 3),
    }


def test_maps_are_found_by_name_space_and_session(tmp_path):
    t1w = nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4))
    files = _apps(tmp_path, "01", t1w)
    _map(
        tmp_path / "qsirecon" / "sub-02" / "dwi" / "sub-02_space-T1w_param-fa_dwimap.nii.gz",
        FA,
        t1w,
    )
    roots = (tmp_path / "qsirecon", tmp_path / "aslprep")
    found = find_precomputed(roots, "01", None)
    assert found == {k: str(files[k]) for k in ("fa", "md", "cbf")}  # mean CBF, T1w space
    assert find_precomputed(roots, "01", "1") == {}  # sessions must match
    # the first folder wins: this app's own FA, given first, over QSIRecon's
    ours = _map(
        tmp_path / "ours" / "sub-01" / "dwi" / "sub-01_space-T1w_desc-fa_dwi.nii.gz", 0.3, t1w
    )
    assert find_precomputed((tmp_path / "ours", *roots), "01", None)["fa"] == str(ours)


def test_an_fa_out_of_range_is_refused_and_md_units_are_detected(tmp_path):
    t1w = nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4))
    fa1000 = _map(tmp_path / "fa.nii.gz", 420.0, t1w)
    assert "not an FA map in 0-1" in precomputed_tensor_plan({"fa": str(fa1000)})["reason"]
    fa = _map(tmp_path / "fa_ok.nii.gz", FA, t1w)
    md = _map(tmp_path / "md.nii.gz", MD_MM2_S, t1w)
    plan = precomputed_tensor_plan({"fa": str(fa), "md": str(md)})
    assert plan["precomputed"] == {"fa": str(fa), "md": str(md)} and plan["md_scale"] == 1e6
    odd = _map(tmp_path / "md_odd.nii.gz", 50.0, t1w)
    plan = precomputed_tensor_plan({"fa": str(fa), "md": str(odd)})
    assert "md" not in plan["precomputed"] and "median MD" in plan["md_reason"]


@pytest.fixture(scope="module")
def precomputed_run(_single_bids, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("precomputed")
    t1w = nib.load(_single_bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    files = _apps(root / "derivatives", "01", t1w)
    out, work = root / "out", root / "work"
    args = [str(_single_bids), str(out), "participant", "-w", str(work), "--nprocs", "2"]
    args += ["--participant-label", "01", "--skip-bids-validation", "--markers", "cmb"]
    args += [
        "--derivatives",
        str(root / "derivatives" / "qsirecon"),
        str(root / "derivatives" / "aslprep"),
    ]
    return {"code": main(args), "out": out / "sub-01", "work": work, "files": files}


def test_a_run_uses_the_precomputed_maps(precomputed_run):
    assert precomputed_run["code"] == ExitCode.OK
    out, files = precomputed_run["out"], precomputed_run["files"]
    table = pd.read_csv(out / "anat" / "sub-01_desc-basalganglia_stats.tsv", sep="\t")
    assert np.allclose(table["fa_mean"], FA, atol=0.01)
    assert np.allclose(table["md_mean"], MD_MM2_S * 1e6, rtol=0.01)  # in 1e-6 mm2/s
    assert np.allclose(table["cbf_mean"], CBF, rtol=0.01)
    assert set(table["fa_source"]) == {f"precomputed: {files['fa']}"}
    assert set(table["cbf_source"]) == {f"precomputed: {files['cbf']}"}
    sidecar = json.loads((out / "perf" / "sub-01_space-T1w_cbf.json").read_text())
    assert sidecar["Sources"] == [str(files["cbf"])]
    assert not (out / "perf" / "sub-01_space-T1w_m0scan.nii.gz").exists()  # not quantified here
    nodes = {p.name for p in precomputed_run["work"].rglob("*") if p.is_dir()}
    assert "fit_dti" not in nodes and "prepare_asl" not in nodes
    assert {"resample_precomputed_dti", "resample_precomputed_asl"} <= nodes


def test_a_missing_derivatives_folder_is_a_clear_error(_single_bids, tmp_path):
    args = [str(_single_bids), str(tmp_path / "out"), "participant"]
    code = main([*args, "--derivatives", str(tmp_path / "nowhere")])
    assert code == ExitCode.NO_INPUT
    assert not (tmp_path / "out").exists()
