"""The files at the root of the output dataset, written before and after every run."""

from __future__ import annotations

from pathlib import Path

from csvd_bids.bids.derivatives import BIDSIGNORE, dataset_description, write_json, write_text
from csvd_bids.labels import dseg_tsv_text
from csvd_bids.preproc.regions import regions_tsv_text


def init_output_dir(output_dir: Path, bids_dir: Path) -> None:
    """dataset_description.json, the dseg lookups and .bidsignore at the output root."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "dataset_description.json", dataset_description(bids_dir))
    write_text(output_dir / "seg-csvd_dseg.tsv", dseg_tsv_text())
    write_text(output_dir / "seg-regions_dseg.tsv", regions_tsv_text())
    write_text(output_dir / ".bidsignore", BIDSIGNORE)
