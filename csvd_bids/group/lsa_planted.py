"""Participant-level outputs with a planted relation between the T1w patches and FA/CBF, for
the tests and ``benchmarks/lsa_model.py`` of the group level's ``--lsa-model``.

Written in the participant level's exact format (summary, basal-ganglia table with its
sidecar, six patches per session), so the group level reads them as it reads a real run: a
blob in each patch whose brightness encodes the region's FA, another its CBF.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from csvd_bids.bids import derivatives as ds
from csvd_bids.group.lsa_data import ROIS, patch_path

ROI_FA = {"caudate": 0.20, "putamen": 0.25, "pallidum": 0.35}  # region means, as in adults
ROI_CBF = {"caudate": 45.0, "putamen": 50.0, "pallidum": 40.0}


def _blob(centre: tuple[int, int, int], radius: float = 4.0) -> np.ndarray:
    grid = np.indices((32, 32, 32)).astype(np.float32)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return np.exp(-d2 / (2 * radius**2)).astype(np.float32)


FA_BLOB, CBF_BLOB = _blob((12, 16, 16)), _blob((22, 16, 16))


def write_planted_outputs(
    root: Path,
    n_subjects: int,
    seed: int = 0,
    sessions: tuple[str | None, ...] = (None,),
    shuffle: bool = False,
    without_asl: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """(bids_dir, output_dir): participants.tsv with a two-level ``group`` (patients have a
    lower FA), and per session a summary, the basal-ganglia table and the six patches.

    Each patch: noise plus two blobs whose amplitudes are the region's FA and CBF (centred
    and scaled). ``shuffle``: the tables' FA and CBF are permuted across regions afterwards, so
    the patches tell nothing about them (nor the group)."""
    rng = np.random.default_rng(seed)
    bids, out = root / "bids", root / "out"
    bids.mkdir(parents=True)
    out.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "planted", "BIDSVersion": "1.10.0"})
    )
    subjects = [f"sub-{i:03d}" for i in range(1, n_subjects + 1)]
    latent = rng.normal(size=n_subjects)  # a subject's FA level (z)
    groups = np.where(latent + rng.normal(0, 0.5, n_subjects) < 0, "patient", "control")
    if shuffle:
        groups = rng.permutation(groups)
    ages = rng.uniform(50, 80, n_subjects).round(1)
    pd.DataFrame({"participant_id": subjects, "group": groups, "age": ages}).to_csv(
        bids / "participants.tsv", sep="\t", index=False
    )
    records = []
    for subject, z_subject in zip(subjects, latent, strict=True):
        for session in sessions:
            prefix = subject if session is None else f"{subject}_{session}"
            folder = out / subject / (session or "") / "anat"
            folder.mkdir(parents=True, exist_ok=True)
            summary = pd.DataFrame([{"participant_id": subject, "session_id": session or "n/a"}])
            ds.write_tsv(folder / f"{prefix}_desc-summary_stats.tsv", summary)
            rows = []
            for roi in ROIS:
                structure, side = roi.split("_")
                z_fa = 0.8 * z_subject + 0.6 * rng.normal()
                z_cbf = rng.normal()
                fa = ROI_FA[structure] + 0.03 * z_fa
                cbf = ROI_CBF[structure] + 6.0 * z_cbf
                noise = rng.normal(0, 1, (32, 32, 32)).astype(np.float32)
                # the blobs encode the values themselves (region differences included)
                fa_blob = (fa - 0.27) / 0.03 * FA_BLOB
                cbf_blob = (cbf - 45.0) / 6.0 * CBF_BLOB
                patch = 0.5 * noise + fa_blob + cbf_blob
                image = nib.Nifti1Image(patch.astype(np.float32), np.diag([1.5, 1.5, 1.5, 1]))
                ds.write_nifti(patch_path(folder, prefix, roi), image)
                asl = subject not in without_asl
                rows.append(
                    {
                        "roi": roi,
                        "structure": structure,
                        "hemisphere": side,
                        "n_voxels": 1000,
                        "volume_mm3": round(float(rng.normal(4000, 400)), 1),
                        "fa_mean": fa,
                        "fa_sd": 0.05,
                        "md_mean": 750.0,
                        "md_sd": 60.0,
                        "cbf_mean": cbf if asl else "n/a",
                        "cbf_sd": 8.0 if asl else "n/a",
                        "fa_source": "dwi",
                        "md_source": "dwi",
                        "cbf_source": "asl" if asl else "n/a: no ASL series",
                    }
                )
            records.append((folder / f"{prefix}_desc-basalganglia_stats.tsv", rows))
    if shuffle:  # break every link between the patches and the targets
        every = pd.DataFrame([row for _, rows in records for row in rows])
        for column in ("fa_mean", "cbf_mean"):
            every[column] = rng.permutation(every[column].to_numpy())
        for i, (path, _rows) in enumerate(records):
            records[i] = (path, every.iloc[6 * i : 6 * i + 6].to_dict("records"))
    for path, rows in records:
        ds.write_tsv(path, pd.DataFrame(rows))
        ds.write_json(path.with_suffix(".json"), {"roi": {"Description": "region"}})
    return bids, out
