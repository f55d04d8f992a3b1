"""FA, MD and CBF that other BIDS Apps made (``--derivatives``): which files are taken, which
are passed over, and a participant run that uses them instead of fitting or quantifying; and
a QSIPrep-like ACPC-space FA, registered through that space's T1w."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from csvd_bids.bids.precomputed import find_precomputed, space_t1w
from csvd_bids.cli.run import main
from csvd_bids.errors import ExitCode
from csvd_bids.planning import use_precomputed
from csvd_bids.preproc.lsa_inputs import precomputed_tensor_plan

# one worker, so that its module-scoped dataset is built once (conftest.py)
pytestmark = pytest.mark.xdist_group("precomputed_run")

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


def test_an_unreadable_map_is_passed_over_with_a_warning(tmp_path, caplog):
    """Another app's broken file costs its map (the next one is used), not the run."""
    t1w = nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4))
    files = _apps(tmp_path, "01", t1w)
    broken = files["cbf"].with_name("sub-01_space-T1w_cbf.nii.gz")  # ranked first: no desc
    broken.write_bytes(b"not a nifti")
    with caplog.at_level("WARNING", logger="csvd_bids"):
        found = find_precomputed((tmp_path / "aslprep",), "01", None)
    assert found == {"cbf": str(files["cbf"])}
    assert f"{broken}: not used (not a readable NIfTI image)" in caplog.text


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
    """One participant run with maps from two apps: a QSIPrep/QSIRecon-like folder (FA in
    ACPC space with its T1w, MD in T1w space: _qsiprep_like) and an ASLPrep-like one (mean,
    BASIL and time-series CBF in T1w space: _apps)."""
    root = tmp_path_factory.mktemp("precomputed")
    t1w = nib.load(_single_bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    files = {**_apps(root / "derivatives", "01", t1w), **_qsiprep_like(root / "qsiprep", t1w)}
    out, work = root / "out", root / "work"
    args = [str(_single_bids), str(out), "participant", "-w", str(work), "--nprocs", "2"]
    args += ["--participant-label", "01", "--skip-bids-validation", "--markers", "cmb"]
    args += ["--derivatives", str(root / "qsiprep"), str(root / "derivatives" / "aslprep")]
    log = io.StringIO()
    with contextlib.redirect_stderr(log):  # the app logs to stderr
        code = main(args)
    return {
        "code": code,
        "out": out / "sub-01",
        "work": work,
        "files": files,
        "log": log.getvalue(),
    }


def test_a_run_uses_the_precomputed_maps(precomputed_run):
    """The mean CBF is used as it is, and nothing is fitted or quantified here (FA and MD:
    test_an_acpc_map_is_registered_through_its_t1w, on the same run)."""
    assert precomputed_run["code"] == ExitCode.OK, precomputed_run["log"]
    out, files = precomputed_run["out"], precomputed_run["files"]
    table = pd.read_csv(out / "anat" / "sub-01_desc-basalganglia_stats.tsv", sep="\t")
    assert np.allclose(table["cbf_mean"], CBF, rtol=0.01)
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


# --- maps in QSIPrep's ACPC space, registered through QSIPrep's T1w in that space ---


def _acpc_t1w(root: Path, sub: str, ses: str | None, like: nib.Nifti1Image) -> Path:
    """A QSIPrep-like ``space-ACPC_desc-preproc_T1w`` at the session's or subject's level."""
    folder = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
    name = f"sub-{sub}{f'_ses-{ses}' if ses else ''}_space-ACPC_desc-preproc_T1w.nii.gz"
    return _map(folder / name, 100.0, like)


def test_a_map_in_another_space_needs_that_spaces_t1w(tmp_path, caplog):
    like = nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4))
    root = tmp_path / "qsirecon"
    dwi = root / "sub-01" / "ses-1" / "dwi"
    fa = _map(dwi / "sub-01_ses-1_space-ACPC_model-tensor_param-fa_dwimap.nii.gz", FA, like)
    with caplog.at_level("INFO", logger="csvd_bids"):
        assert find_precomputed((root,), "01", "1") == {}
    assert f"{fa}: not used (space-ACPC, and no space-ACPC_desc-preproc_T1w" in caplog.text
    # QSIPrep writes the subject's T1w without ses-: it serves every session
    subject_t1w = _acpc_t1w(root, "01", None, like)
    assert find_precomputed((root,), "01", "1") == {"fa": str(fa)}
    assert space_t1w(fa) == subject_t1w
    session_t1w = _acpc_t1w(root, "01", "1", like)
    assert space_t1w(fa) == session_t1w  # the session's own first
    # a map in T1w space needs no registration: it goes first
    plain = _map(dwi / "sub-01_ses-1_space-T1w_model-tensor_param-fa_dwimap.nii.gz", FA, like)
    assert find_precomputed((root,), "01", "1") == {"fa": str(plain)}


def test_template_spaces_are_passed_over_even_with_their_t1w(tmp_path, caplog):
    like = nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4))
    root = tmp_path / "qsirecon" / "sub-01"
    space = "MNI152NLin2009cAsym"
    fa = _map(root / "dwi" / f"sub-01_space-{space}_param-fa_dwimap.nii.gz", FA, like)
    _map(root / "anat" / f"sub-01_space-{space}_desc-preproc_T1w.nii.gz", 100.0, like)
    with caplog.at_level("INFO", logger="csvd_bids"):
        assert find_precomputed((tmp_path / "qsirecon",), "01", None) == {}
    assert f"{fa}: not used (space-{space} is a template space" in caplog.text


def test_a_bad_t1w_of_the_space_falls_back_to_the_fit(tmp_path, caplog):
    like = nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.eye(4))
    root = tmp_path / "qsirecon" / "sub-01"
    fa = _map(root / "dwi" / "sub-01_space-ACPC_param-fa_dwimap.nii.gz", FA, like)
    t1w = root / "anat" / "sub-01_space-ACPC_desc-preproc_T1w.nii"
    t1w.parent.mkdir(parents=True)
    t1w.write_bytes(b"not a NIfTI image")
    maps = find_precomputed((tmp_path / "qsirecon",), "01", None)
    assert maps == {"fa": str(fa)}  # found by name; the image is checked when planned
    fitted = {"dwi": "dwi.nii.gz", "bval": "dwi.bval", "bvec": "dwi.bvec"}
    lsa = {"dti": dict(fitted), "asl": {"reason": "no ASL series"}}
    with caplog.at_level("INFO", logger="csvd_bids"):
        use_precomputed(lsa, maps, "sub-01")
    assert lsa["dti"] == fitted  # the tensor is fitted here instead
    assert f"precomputed FA not used, {t1w}: not a readable NIfTI image" in caplog.text
    assert f"(the space-ACPC T1w to register {fa} through)" in caplog.text
    t1w.unlink()
    _map(t1w.with_suffix(".nii.gz"), 100.0, like, shape=2)  # a 4D "T1w"
    through = {"fa": {"space": "ACPC", "t1w": str(t1w.with_suffix(".nii.gz"))}}
    reason = precomputed_tensor_plan(maps, through)["reason"]
    assert reason.startswith(f"{t1w.with_suffix('.nii.gz')}: a 4D image")


# The rigid transform that takes the T1w's scanner space to the "ACPC" space of the run below:
# 5 and 3 degrees about two axes through the head's centre, and 6, -5, 4 mm.
ACPC_DEGREES, ACPC_SHIFT_MM = (3.0, 0.0, 5.0), (6.0, -5.0, 4.0)
# FA rises by these per mm across the head (world axes), so a map left ~8 mm off its anatomy
# (a registration skipped) reads several hundredths off in a region
GRADIENT_PER_MM = np.array([0.010, 0.007, 0.005])
# FA registered from ACPC against the same gradient from T1w space: 1.0-2.4e-4 apart over the
# six regions (measured); with the registration skipped (the map placed by its ACPC affine
# alone) 0.021-0.052 apart
ACPC_TOLERANCE = 0.005


def _rigid(about: np.ndarray) -> np.ndarray:
    """4 x 4: rotation by ACPC_DEGREES (x, then y, then z) about ``about``, then the shift."""
    rx, ry, rz = np.deg2rad(ACPC_DEGREES)
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rotation = (
        np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    )
    rigid = np.eye(4)
    rigid[:3, :3] = rotation
    rigid[:3, 3] = about + np.asarray(ACPC_SHIFT_MM) - rotation @ about
    return rigid


def _gradient(t1w: nib.Nifti1Image) -> np.ndarray:
    """FA in 0.05-0.95 on the T1w's grid, rising linearly across the head."""
    ijk = np.indices(t1w.shape[:3]).reshape(3, -1).T
    world = nib.affines.apply_affine(t1w.affine, ijk)
    centre = nib.affines.apply_affine(t1w.affine, (np.asarray(t1w.shape[:3]) - 1) / 2)
    fa = 0.5 + (world - centre) @ GRADIENT_PER_MM
    return np.clip(fa, 0.05, 0.95).reshape(t1w.shape[:3]).astype(np.float32)


def _qsiprep_like(root: Path, t1w: nib.Nifti1Image) -> dict[str, Path]:
    """One derivatives folder as QSIPrep and QSIRecon leave it: the T1w and the FA in ACPC
    space (the same data; only their affines moved by _rigid), and, to compare with, the same
    gradient as an MD in T1w space (in mm2/s: FA 0.5 -> MD 0.0005), resampled by world
    coordinates only."""
    sub = root / "sub-01"
    centre = nib.affines.apply_affine(t1w.affine, (np.asarray(t1w.shape[:3]) - 1) / 2)
    acpc = _rigid(centre) @ t1w.affine
    fa, data = _gradient(t1w), np.asanyarray(t1w.dataobj)
    files = {
        "t1w": sub / "anat" / "sub-01_space-ACPC_desc-preproc_T1w.nii.gz",
        "fa": sub / "dwi" / "sub-01_space-ACPC_model-tensor_param-fa_dwimap.nii.gz",
        "md": sub / "dwi" / "sub-01_space-T1w_model-tensor_param-md_dwimap.nii.gz",
    }
    for key, image in (
        ("t1w", nib.Nifti1Image(data, acpc)),
        ("fa", nib.Nifti1Image(fa, acpc)),
        ("md", nib.Nifti1Image(fa * 1e-3, t1w.affine)),
    ):
        files[key].parent.mkdir(parents=True, exist_ok=True)
        nib.save(image, files[key])
    return files


def test_an_acpc_map_is_registered_through_its_t1w(precomputed_run):
    assert precomputed_run["code"] == ExitCode.OK, precomputed_run["log"]
    out, files, log = precomputed_run["out"], precomputed_run["files"], precomputed_run["log"]
    table = pd.read_csv(out / "anat" / "sub-01_desc-basalganglia_stats.tsv", sep="\t")
    # the ACPC FA, registered, reads what the same gradient in T1w space reads (its MD)
    fa, same_in_t1w = table["fa_mean"].to_numpy(), table["md_mean"].to_numpy() / 1000
    assert np.ptp(same_in_t1w) > 0.1  # the regions differ: a misplaced map would show
    assert np.abs(fa - same_in_t1w).max() < ACPC_TOLERANCE, table[["roi", "fa_mean", "md_mean"]]
    via = f"space-ACPC, registered through {files['t1w']}"
    assert set(table["fa_source"]) == {f"precomputed: {files['fa']} ({via})"}
    assert set(table["md_source"]) == {f"precomputed: {files['md']}"}
    assert f"FA/MD: precomputed {files['fa']} (--derivatives, {via}), {files['md']}" in log
    sidecar = json.loads((out / "dwi" / "sub-01_space-T1w_desc-fa_dwi.json").read_text())
    assert sidecar["Sources"] == [str(files["fa"]), str(files["t1w"])]
    assert sidecar["Registration"]["Space"] == "ACPC"
