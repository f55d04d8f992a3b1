"""The pipeline's float images: stored gzip where deflate does not pay, nibabel's bytes elsewhere
(csvd_bids.preproc.image_files)."""

from __future__ import annotations

import filecmp
import gzip

import nibabel as nib
import numpy as np

from csvd_bids.preproc.image_files import STORE_ABOVE, deflate_ratio, save_image


def _head(shape=(60, 70, 50)) -> nib.Nifti1Image:
    """A whole head of float32 intensities with noise in the low bits, as N4 leaves it."""
    rng = np.random.default_rng(3)
    data = (600.0 + 80.0 * rng.standard_normal(shape)).astype(np.float32)
    return nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.5, 1.0]))


def _sparse(shape=(60, 70, 50)) -> nib.Nifti1Image:
    """A map that is zero outside a small block (FA, probabilities, masks)."""
    data = np.zeros(shape, np.float32)
    data[20:30, 20:30, 20:30] = np.random.default_rng(4).uniform(0, 1, (10, 10, 10))
    return nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.5, 1.0]))


def test_a_noisy_head_is_stored_and_reads_back_the_same(tmp_path):
    head = _head()
    assert deflate_ratio(head.to_bytes()) > STORE_ABOVE
    save_image(head, tmp_path / "head.nii.gz")
    path = tmp_path / "head.nii.gz"
    # stored blocks: the file is no smaller than its content, and it is still gzip
    assert path.stat().st_size >= len(head.to_bytes())
    assert gzip.decompress(path.read_bytes()) == head.to_bytes()
    back = nib.load(path)
    assert np.array_equal(back.get_fdata(dtype=np.float32), head.get_fdata(dtype=np.float32))
    assert np.array_equal(back.affine, head.affine)
    # the same image gives the same bytes (no time stamp in the gzip header)
    save_image(head, tmp_path / "again.nii.gz")
    assert filecmp.cmp(path, tmp_path / "again.nii.gz", shallow=False)


def test_a_sparse_map_is_written_as_nibabel_writes_it(tmp_path):
    sparse = _sparse()
    assert deflate_ratio(sparse.to_bytes()) < 0.5
    save_image(sparse, tmp_path / "ours.nii.gz")
    nib.save(sparse, tmp_path / "nibabel.nii.gz")
    assert filecmp.cmp(tmp_path / "ours.nii.gz", tmp_path / "nibabel.nii.gz", shallow=False)
    assert (tmp_path / "ours.nii.gz").stat().st_size < len(sparse.to_bytes()) / 2


def test_uncompressed_names_stay_uncompressed(tmp_path):
    save_image(_head((8, 8, 8)), tmp_path / "plain.nii")
    assert not (tmp_path / "plain.nii").read_bytes().startswith(b"\x1f\x8b")
    assert nib.load(tmp_path / "plain.nii").shape == (8, 8, 8)
