"""Bad anatomical images are refused when the run is planned (exit 65, naming the file), before
the graph starts: a single slice, wrapped-round negatives, zero or negative voxel sizes in the
header, no usable values, and a git-annex link whose content was not fetched."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import flair_path, participant_args
from nibabel.openers import ImageOpener
from scipy import ndimage

from csvd_bids.cli.run import main
from csvd_bids.errors import ExitCode, InputImageError
from csvd_bids.preproc.images import check_input_image, load_3d

SHAPE = (20, 24, 20)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _head(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """A bright box on a dark, noisy background: values 10-200."""
    rng = np.random.default_rng(7)
    data = rng.uniform(10, 30, shape)
    inner = tuple(slice(s // 5, s - s // 5) if s >= 5 else slice(None) for s in shape)
    data[inner] += 150
    return data


def _save(path: Path, data: np.ndarray, dtype=None) -> Path:
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype or data.dtype), AFFINE)
    img.set_data_dtype(dtype or data.dtype)  # no nibabel rescaling into another type
    nib.save(img, path)
    return path


def _refused(path: Path, words: str, **kwargs) -> InputImageError:
    with pytest.raises(InputImageError, match=words) as caught:
        check_input_image(path, **kwargs)
    assert str(path) in str(caught.value)
    assert caught.value.exit_code == ExitCode.INPUT_DATA == 65
    return caught.value


# --- 1. too few voxels along an axis ---


@pytest.mark.parametrize("slices", [1, 2, 3])
def test_single_slice_or_thin_slab(tmp_path, slices):
    path = _save(tmp_path / "sub-01_FLAIR.nii.gz", _head((22, 26, slices)).astype(np.float32))
    _refused(path, f"{slices} voxel\\(s\\) along axis 2 .*at least 4 voxels")


def test_four_slices_pass(tmp_path):
    path = _save(tmp_path / "sub-01_FLAIR.nii.gz", _head((22, 26, 4)).astype(np.float32))
    assert check_input_image(path) == (22, 26, 4)


# --- 2. negative values in a magnitude image ---


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_signed_integers_with_negatives(tmp_path, dtype):
    """Unsigned data written as signed: the bright end wraps round to negative values."""
    bits = np.iinfo(dtype).bits
    unsigned = np.rint(_head() / 210 * (2**bits - 1))  # bright voxels above the signed maximum
    wrapped = ((unsigned + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)).astype(dtype)
    assert wrapped.min() < 0
    path = _save(tmp_path / "sub-01_FLAIR.nii.gz", wrapped)
    error = _refused(path, "negative values in a magnitude image stored as " + np.dtype(dtype).name)
    assert "probably unsigned data written as signed; convert it" in str(error)


def test_float_with_many_deep_negatives(tmp_path):
    """The same mix-up after a conversion to float: a third of the head far below zero."""
    unsigned = np.rint(_head() / 210 * 65535)
    wrapped = unsigned.astype(np.uint16).view(np.int16).astype(np.float32)
    path = _save(tmp_path / "sub-01_FLAIR.nii.gz", wrapped)
    _refused(path, "negative values in a magnitude image stored as float32")


def test_load_3d_repeats_the_value_checks(tmp_path):
    """The node that reads an image checks its values again (the check is not only up front)."""
    wrapped = (_head() / 210 * 255).astype(np.uint8).view(np.int8)
    path = _save(tmp_path / "sub-01_FLAIR.nii.gz", wrapped)
    with pytest.raises(InputImageError, match="stored as int8") as caught:
        load_3d(path)
    assert str(path) in str(caught.value)


# --- 3. voxel sizes in the raw header ---


def _with_pixdim(path: Path, sizes: tuple[float, float, float]) -> Path:
    """Rewrite pixdim[1:4] in the file itself (nibabel fixes them up when it loads a header)."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    with ImageOpener(path) as stream:
        header = nib.Nifti1Header.from_fileobj(stream, check=False)
    header["pixdim"][1:4] = sizes
    raw[: header.sizeof_hdr] = header.binaryblock
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


@pytest.mark.parametrize("sizes", [(2.0, 2.0, 0.0), (2.0, -2.0, 2.0), (np.nan, 2.0, 2.0)])
def test_zero_negative_or_nan_voxel_sizes(tmp_path, sizes):
    path = _save(tmp_path / "sub-01_T1w.nii.gz", _head().astype(np.int16))
    _with_pixdim(path, sizes)
    _refused(path, r"voxel sizes \(.*\) in the header \(pixdim\[1:4\]\)")


# --- 4. no usable values ---


@pytest.mark.parametrize(
    ("fill", "words"),
    [(np.nan, "no finite voxel values"), (0.0, "constant image"), (120.0, "constant image")],
)
def test_all_nan_zero_or_constant(tmp_path, fill, words):
    path = _save(tmp_path / "sub-01_FLAIR.nii.gz", np.full(SHAPE, fill, np.float32))
    _refused(path, words)


def test_nan_and_infinite_voxels_read_as_zero(tmp_path):
    data = _head().astype(np.float32)
    bad = [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    for index, value in zip(bad, (np.nan, np.inf, -np.inf), strict=True):
        data[index] = value
    read = np.asanyarray(load_3d(_save(tmp_path / "sub-01_T1w.nii.gz", data)).dataobj)
    expected = data.copy()
    for index in bad:
        expected[index] = 0.0
    assert read.dtype == np.float32 and np.array_equal(read, expected)  # AFFINE is RAS


def test_constant_apart_from_nan(tmp_path):
    data = np.full(SHAPE, 5.0, np.float32)
    data[:, :, :5] = np.nan
    _refused(_save(tmp_path / "sub-01_FLAIR.nii.gz", data), "constant image")


# --- 5. a git-annex link whose content is absent ---


def test_dangling_symbolic_link(tmp_path):
    path = tmp_path / "sub-01_T1w.nii.gz"
    path.symlink_to("../.git/annex/objects/Xy/Zw/MD5E-s1--0.nii.gz/MD5E-s1--0.nii.gz")
    error = _refused(path, "broken symbolic link")
    assert "datalad get" in str(error) and "git annex get" in str(error)


# --- the 4D DWI series: the value checks look at its first volume ---


def test_dwi_first_volume_checked(tmp_path):
    good = np.stack([_head()] * 3, axis=-1)
    assert check_input_image(_save(tmp_path / "a_dwi.nii.gz", good, np.int16), expect_4d=True)
    wrapped = good.copy()
    wrapped[..., 0] = -wrapped[..., 0]
    _refused(_save(tmp_path / "b_dwi.nii.gz", wrapped, np.int16), "stored as int16", expect_4d=True)
    blank = good.copy()
    blank[..., 0] = 0
    _refused(_save(tmp_path / "c_dwi.nii.gz", blank, np.int16), "constant image", expect_4d=True)
    thin = good[:, :, :1]
    _refused(_save(tmp_path / "d_dwi.nii.gz", thin, np.int16), "along axis 2", expect_4d=True)


# --- legitimate images pass ---


def test_legitimate_images_pass(tmp_path):
    """uint8, int16 without negatives or with shallow ones, and a skull-stripped float32 image
    resampled with a cubic spline: its undershoot at the brain's edge makes over a third of the
    non-zero voxels negative, but shallow ones (about 10 % of the maximum)."""
    brain = np.zeros(SHAPE)
    brain[4:16, 5:19, 4:16] = _head()[4:16, 5:19, 4:16]
    resampled = ndimage.shift(brain, (0.4, 0.3, 0.2), order=3).astype(np.float32)
    negative = resampled < 0
    assert negative.sum() > 0.3 * np.count_nonzero(resampled)
    assert 0.05 * resampled.max() < -resampled.min() < 0.15 * resampled.max()
    images = {
        "uint8": (_head() * 255 / 210).astype(np.uint8),
        "int16": _head().astype(np.int16),
        "int16, shallow negatives": np.rint(resampled).astype(np.int16),  # a converter's noise
        "float32": resampled,
    }
    for name, data in images.items():
        path = _save(tmp_path / f"sub-01_acq-{name.split(',')[0]}{len(name)}_T1w.nii.gz", data)
        assert check_input_image(path) == SHAPE
        assert load_3d(path).shape == SHAPE


# --- the whole command line: the session is refused at planning, no graph runs ---


def test_single_slice_flair_refused_before_the_graph(single_bids, tmp_path, capsys):
    flair = flair_path(single_bids, "01")
    img = nib.load(flair)
    middle = img.shape[2] // 2
    data = np.asanyarray(img.dataobj)[:, :, middle : middle + 1]
    nib.save(nib.Nifti1Image(data, img.affine), flair)
    start = time.monotonic()
    code = main(participant_args(single_bids, tmp_path, "--participant-label", "01"))
    elapsed = time.monotonic() - start
    assert code == ExitCode.INPUT_DATA
    printed = capsys.readouterr().out
    assert str(flair) in printed and "along axis 2" in printed
    assert not list((tmp_path / "work").rglob("*_wf"))  # rejected before any workflow was built
    assert not (tmp_path / "out" / "sub-01").exists()
    assert elapsed < 60, f"{elapsed:.0f} s: the session should be rejected at planning"
