"""BIDS-Derivatives names, URIs, dataset_description.json and the atomic writers."""

from __future__ import annotations

import json
import os
import platform
import re
import stat
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from csvd_bids import __version__
from csvd_bids.bids import derivatives as ds
from csvd_bids.labels import dseg_tsv_text
from csvd_bids.outputs.dataset import init_output_dir

REPO = Path(__file__).resolve().parent.parent
CONTAINER_VARIABLES = ("CSVD_BIDS_DOCKER_TAG", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".tmp-*"))


@pytest.fixture
def raw(tmp_path) -> Path:
    root = tmp_path / "raw"
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "raw", "BIDSVersion": "1.10.0"})
    )
    return root


@pytest.fixture
def no_container(monkeypatch):
    for variable in CONTAINER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


# --- names ---


def test_bids_name_entity_order():
    entities = {
        "desc": "preproc",
        "label": "WMH",
        "res": "2",
        "seg": "csvd",
        "space": "T1w",
        "hemi": "L",
        "run": "2",
        "acq": "swi",
        "ses": "1",
        "sub": "01",
    }
    assert ds.bids_name(entities, "mask", ".nii.gz") == (
        "sub-01_ses-1_acq-swi_run-2_hemi-L_space-T1w_seg-csvd_res-2_label-WMH_desc-preproc_"
        "mask.nii.gz"
    )
    assert ds.ENTITY_ORDER == (
        "sub",
        "ses",
        "acq",
        "run",
        "hemi",
        "space",
        "seg",
        "res",
        "label",
        "desc",
    )


def test_bids_name_drops_empty_entities():
    name = ds.bids_name({"sub": "01", "ses": None, "desc": "", "space": "T1w"}, "T1w", ".json")
    assert name == "sub-01_space-T1w_T1w.json"


@pytest.mark.parametrize("entity", ["task", "echo", "part", "suffix", "extension"])
def test_bids_name_refuses_unknown_entities(entity):
    with pytest.raises(ValueError, match=entity):
        ds.bids_name({"sub": "01", entity: "x"}, "mask", ".nii.gz")


def test_session_dir(tmp_path):
    assert ds.session_dir(tmp_path, "01", "1") == tmp_path / "sub-01" / "ses-1" / "anat"
    assert ds.session_dir(tmp_path, "01", None, "dwi") == tmp_path / "sub-01" / "dwi"


# --- URIs ---


def test_raw_uri(raw, monkeypatch):
    t1w = raw / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    assert ds.raw_uri(raw, t1w) == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    monkeypatch.chdir(raw.parent)  # a relative bids_dir gives the same URI
    assert ds.raw_uri(Path("raw"), str(t1w)) == "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    with pytest.raises(ValueError):
        ds.raw_uri(raw, raw.parent / "elsewhere.nii.gz")


def test_raw_uri_of_a_link_to_content_outside_the_dataset(tmp_path):
    """DataLad/git-annex: the image is a link to .git/annex/objects or further away; the URI
    is its name inside the dataset (was: a ValueError after the whole graph had run)."""
    raw, content = tmp_path / "raw", tmp_path / "annex" / "objects" / "XX" / "key"
    content.parent.mkdir(parents=True)
    content.write_bytes(b"data")
    link = raw / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz"
    link.parent.mkdir(parents=True)
    link.symlink_to(content)
    assert ds.raw_uri(raw, link) == "bids:raw:sub-01/anat/sub-01_FLAIR.nii.gz"


def test_raw_uri_through_a_linked_dataset_root(tmp_path):
    """bids_dir given as a link, files listed under its target (or the other way round)."""
    real = tmp_path / "real"
    t1w = real / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    t1w.parent.mkdir(parents=True)
    t1w.write_bytes(b"data")
    (tmp_path / "link").symlink_to(real)
    expected = "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"
    assert ds.raw_uri(tmp_path / "link", t1w) == expected
    assert ds.raw_uri(real, tmp_path / "link" / "sub-01" / "anat" / t1w.name) == expected


def test_local_uri(tmp_path):
    out = tmp_path / "out"
    mask = out / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_desc-brain_mask.nii.gz"
    assert ds.local_uri(out, mask) == "bids::sub-01/ses-1/anat/sub-01_ses-1_desc-brain_mask.nii.gz"
    assert ds.local_uri(out, str(out / "seg-csvd_dseg.tsv")) == "bids::seg-csvd_dseg.tsv"


# --- atomic writers ---


def _nifti() -> nib.Nifti1Image:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    return nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0]))


def test_writers_write_and_leave_no_temporary_files(tmp_path):
    out = tmp_path / "out" / "sub-01" / "anat"  # parents are created
    table = pd.DataFrame({"lesion_id": [1, 2], "volume_mm3": [3.0, None]})
    written = [
        ds.write_text(out / "a.txt", "hello\n"),
        ds.write_json(out / "a.json", {"b": 1, "a": [1, 2]}),
        ds.write_tsv(out / "a.tsv", table),
        ds.write_nifti(out / "a.nii.gz", _nifti()),
        ds.write_nifti(out / "b.nii", _nifti()),
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    assert _leftovers(tmp_path) == []
    assert (out / "a.txt").read_text() == "hello\n"
    text = (out / "a.json").read_text()
    assert json.loads(text) == {"b": 1, "a": [1, 2]} and text.endswith("}\n")
    assert list(json.loads(text)) == ["b", "a"]  # key order kept
    assert (out / "a.tsv").read_text() == "lesion_id\tvolume_mm3\n1\t3.0\n2\tn/a\n"
    for name in ("a.nii.gz", "b.nii"):
        img = nib.load(out / name)
        np.testing.assert_array_equal(img.get_fdata(), _nifti().get_fdata())
        np.testing.assert_allclose(img.affine, _nifti().affine)
    with open(out / "a.nii.gz", "rb") as stream:
        assert stream.read(2) == b"\x1f\x8b"  # compressed, as the final extension says
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_copy_file(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("content")
    ds.copy_file(src, tmp_path / "out" / "dst.txt")
    assert (tmp_path / "out" / "dst.txt").read_text() == "content"
    assert _leftovers(tmp_path) == []


def test_overwrite_replaces_content(tmp_path):
    path = tmp_path / "f.json"
    ds.write_json(path, {"v": 1})
    ds.write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2}
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_keeps_the_old_file(tmp_path, error):
    path = tmp_path / "f.txt"
    ds.write_text(path, "old")
    seen = []

    def half_write(tmp: Path) -> None:
        tmp.write_text("half")
        seen.append(tmp)
        raise error("stopped halfway")

    with pytest.raises(error):
        ds._atomic(path, half_write)
    assert seen and seen[0].parent == tmp_path and seen[0].name.startswith(".tmp-")
    assert path.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_failed_tsv_write_keeps_the_old_file(tmp_path):
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot be written")

    path = tmp_path / "t.tsv"
    ds.write_tsv(path, pd.DataFrame({"a": [1]}))
    with pytest.raises(RuntimeError, match="cannot be written"):
        ds.write_tsv(path, pd.DataFrame({"a": [1, 2], "b": ["x", Unprintable()]}))
    assert path.read_text() == "a\n1\n"
    assert _leftovers(tmp_path) == []


def test_failed_nifti_write_keeps_the_old_file(tmp_path):
    source = tmp_path / "source.nii"
    nib.save(_nifti(), source)
    damaged = nib.load(source)  # data read lazily, from a file truncated below
    os.truncate(source, 400)
    path = tmp_path / "out.nii.gz"
    ds.write_nifti(path, nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4)))
    before = path.read_bytes()
    with pytest.raises(OSError):
        ds.write_nifti(path, damaged)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_failed_json_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.json"
    ds.write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        ds.write_json(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert _leftovers(tmp_path) == []


# --- dataset_description.json and the output root ---


def test_dataset_description(raw, no_container):
    description = ds.dataset_description(raw)
    assert description["DatasetType"] == "derivative"
    assert re.fullmatch(r"1\.\d+\.\d+", description["BIDSVersion"])
    assert description["Name"]
    (generated_by,) = description["GeneratedBy"]
    software = generated_by.pop("Description")
    assert generated_by == {
        "Name": "csvd-bids",
        "Version": __version__,
        "CodeURL": "https://github.com/csvd-bids/csvd-bids",
    }
    # the versions that change the outputs, as installed
    for name in ("nipype", "SimpleITK", "torch", "monai", "deepbet"):
        assert f"{name} {metadata.version(name)}" in software
    assert software.startswith(f"Software: Python {platform.python_version()}, ")
    assert __version__ == (REPO / "version").read_text().strip()
    assert description["SourceDatasets"] == [{"URL": raw.resolve().as_uri()}]
    assert description["DatasetLinks"] == {"raw": raw.resolve().as_uri()}
    assert description["DatasetLinks"]["raw"].startswith("file:///")
    json.dumps(description)  # JSON-able


def test_dataset_description_source_doi(raw, no_container):
    (raw / "dataset_description.json").write_text(
        json.dumps({"Name": "raw", "BIDSVersion": "1.10.0", "DatasetDOI": "doi:10.1/x"})
    )
    assert ds.dataset_description(raw)["SourceDatasets"] == [
        {"URL": raw.resolve().as_uri(), "DOI": "doi:10.1/x"}
    ]


def test_dataset_description_survives_a_bad_raw_description(raw, no_container):
    (raw / "dataset_description.json").write_text("{not json")
    assert ds.dataset_description(raw)["SourceDatasets"] == [{"URL": raw.resolve().as_uri()}]


def test_container_docker(raw, no_container, monkeypatch):
    monkeypatch.setenv("CSVD_BIDS_DOCKER_TAG", "csvd-bids/csvd-bids:0.1.0")
    (generated_by,) = ds.dataset_description(raw)["GeneratedBy"]
    assert generated_by["Container"] == {"Type": "docker", "Tag": "csvd-bids/csvd-bids:0.1.0"}


@pytest.mark.parametrize("variable", ["APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"])
def test_container_apptainer(raw, no_container, monkeypatch, variable):
    monkeypatch.setenv(variable, "/images/csvd-bids.sif")
    monkeypatch.setenv("CSVD_BIDS_DOCKER_TAG", "csvd-bids/csvd-bids:0.1.0")  # image built from it
    (generated_by,) = ds.dataset_description(raw)["GeneratedBy"]
    assert generated_by["Container"] == {"Type": "singularity", "URI": "/images/csvd-bids.sif"}


def test_no_container_key_outside_containers(raw, no_container):
    assert "Container" not in ds.dataset_description(raw)["GeneratedBy"][0]


def test_init_output_dir(raw, tmp_path, no_container):
    out = tmp_path / "out" / "csvd"
    init_output_dir(out, raw)
    assert sorted(p.name for p in out.iterdir()) == [
        ".bidsignore",
        "dataset_description.json",
        "seg-csvd_dseg.tsv",
        "seg-regions_dseg.tsv",
    ]
    assert json.loads((out / "dataset_description.json").read_text()) == (
        ds.dataset_description(raw)
    )
    lookup = (out / "seg-csvd_dseg.tsv").read_text()
    assert lookup == dseg_tsv_text()
    assert lookup.splitlines()[0].split("\t")[:2] == ["index", "name"]
    ignored = (out / ".bidsignore").read_text().splitlines()
    assert ".tmp-*" in ignored and "figures/" in ignored and "logs/" in ignored
    init_output_dir(out, raw)  # a second call (resume) rewrites in place
    assert _leftovers(out) == []


# --- a session's outputs published together; reproducible transforms ---


def test_publish_folder_moves_every_file_the_last_one_last(tmp_path):
    staging, out = tmp_path / ".staging", tmp_path / "out"
    for name in ("sub-01/anat/a.nii.gz", "sub-01/figures/b.png", "sub-01/anat/summary.tsv"):
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(name)
    order = []
    real_replace = os.replace

    def recorded(src, dst):
        order.append(Path(dst).name)
        real_replace(src, dst)

    last = staging / "sub-01/anat/summary.tsv"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ds.os, "replace", recorded)
        assert ds.publish_folder(staging, out, last=last) == out / "sub-01/anat/summary.tsv"
    assert order[-1] == "summary.tsv" and len(order) == 3
    assert (out / "sub-01/figures/b.png").read_text() == "sub-01/figures/b.png"


def test_publish_folder_takes_back_what_it_moved_when_a_move_fails(tmp_path):
    staging, out = tmp_path / ".staging", tmp_path / "out"
    for name in ("a.tsv", "b.tsv", "z.tsv"):
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(name)
    real_replace = os.replace

    def failing(src, dst):
        if Path(src).name == "b.tsv":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ds.os, "replace", failing)
        with pytest.raises(OSError):
            ds.publish_folder(staging, out, last=staging / "z.tsv")
    assert not list(out.iterdir())


def test_staging_folder_turns_a_full_disk_into_exit_73_and_cleans_up(tmp_path):
    from csvd_bids.errors import ExitCode, OutputError
    from csvd_bids.outputs.session import staging_folder

    words = "No space left on device while writing the outputs of sub-01"
    with pytest.raises(OutputError, match=words) as caught, staging_folder(tmp_path, "sub-01") as s:
        (s / "partial.nii.gz").write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert caught.value.exit_code == ExitCode.CANNOT_WRITE
    assert not list(tmp_path.iterdir())


def test_copy_hdf5_gives_the_same_bytes_for_the_same_transform(tmp_path):
    """ITK stamps the time on every HDF5 object: two writes a second apart differ; the copies
    do not, and read back as the same transform."""
    import time

    import SimpleITK as sitk

    field = sitk.Image([6, 6, 6], sitk.sitkVectorFloat64, 3)
    field.SetOrigin((-3.0, 2.0, 1.0))
    rigid = sitk.Euler3DTransform((0, 0, 0), 0.1, -0.2, 0.05, (1.0, -2.0, 3.0))
    transform = sitk.CompositeTransform([rigid, sitk.DisplacementFieldTransform(field)])
    written = []
    for name in ("a", "b"):
        sitk.WriteTransform(transform, str(tmp_path / f"{name}.h5"))
        written.append((tmp_path / f"{name}.h5").read_bytes())
        time.sleep(1.1)
    assert written[0] != written[1]  # else this test shows nothing
    copies = [ds.copy_hdf5(tmp_path / f"{n}.h5", tmp_path / "out" / f"{n}.h5") for n in "ab"]
    assert copies[0].read_bytes() == copies[1].read_bytes()
    read = sitk.ReadTransform(str(copies[0]))
    for point in [(0.0, 0.0, 0.0), (10.0, -5.0, 2.0)]:
        assert read.TransformPoint(point) == pytest.approx(transform.TransformPoint(point))
