"""The per-session HTML report, ``sub-<label>[_ses-<label>].html`` at the output root.

Everything comes from the session's finished outputs (summary and lesion tables with their
data dictionaries, sidecars, figures), never from the work directory, so ``--reports-only``
can rebuild a report at any time. A session's summary TSV is written last, so a session with
one is complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from csvd_bids.bids import derivatives as ds
from csvd_bids.bids.discovery import MODALITIES, SUFFIXES
from csvd_bids.labels import MARKER_LABELS
from csvd_bids.markers import REGISTRY
from csvd_bids.quant.ratings import RATING_COLUMNS
from csvd_bids.quant.scores import SCORE_RANGES, SCORE_TITLES
from csvd_bids.reports.methods import methods_paragraph
from csvd_bids.reports.render import generated_by, render

NA = "n/a"
QC_FIGURES = (  # (figure desc prefix, caption)
    ("brainmask", "Brain mask outline on the reference image"),
    ("coreg", "Edges of the coregistered image on the reference: they should follow the anatomy"),
    ("regions", "Anatomical regions"),
)


@dataclass(frozen=True)
class SessionFiles:
    """Where one session's outputs are."""

    output_dir: Path
    prefix: str  # sub-<label>[_ses-<label>]
    folder: Path  # sub-<label>[/ses-<label>]

    @property
    def summary(self) -> Path:
        return self.folder / "anat" / f"{self.prefix}_desc-summary_stats.tsv"

    @property
    def report(self) -> Path:
        return self.output_dir / f"{self.prefix}.html"

    def sidecars(self, pattern: str) -> list[Path]:
        return sorted((self.folder / "anat").glob(f"{self.prefix}_{pattern}.json"))

    def figures(self, desc: str) -> list[Path]:
        # one figures folder per subject, as fMRIPrep: sub-<label>/figures
        folder = self.output_dir / self.prefix.split("_")[0] / "figures"
        return sorted(folder.glob(f"{self.prefix}_desc-{desc}*.png"))


def finished_sessions(output_dir: Path) -> list[SessionFiles]:
    """Every session of ``output_dir`` that has a summary (i.e. finished)."""
    found = []
    for summary in sorted(output_dir.glob("sub-*/**/anat/*_desc-summary_stats.tsv")):
        prefix = summary.name.removesuffix("_desc-summary_stats.tsv")
        found.append(SessionFiles(output_dir, prefix, summary.parent.parent))
    return found


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _inputs(row: pd.Series) -> list[dict]:
    return [
        {"modality": SUFFIXES[m], "source": row.get(f"source_{m}", NA)}
        for m in MODALITIES
        if f"source_{m}" in row
    ]


def _preprocessing(files: SessionFiles) -> list[dict]:
    rows = []
    for sidecar in files.sidecars("*desc-preproc_*"):
        meta = _read_json(sidecar)
        registration = meta.get("Registration", {})
        same = meta.get("SameSubjectCheck", {})
        rows.append(
            {
                "image": sidecar.name.removesuffix(".json").rsplit("_", 1)[1],
                "coverage": meta.get("BrainCoverage", NA),
                "initialisation": registration.get("Initialisation", "reference"),
                "mi_before": registration.get("MutualInformationBefore", NA),
                "mi_after": registration.get("MutualInformationAfter", NA),
                "same_subject": (
                    NA
                    if not same
                    else ("DIFFERENT?" if same["different_subject_suspected"] else "ok")
                ),
            }
        )
    return rows


def _figure(files: SessionFiles, path: Path) -> str:
    return path.relative_to(files.output_dir).as_posix()


def _markers(files: SessionFiles, row: pd.Series) -> list[dict]:
    markers = []
    for marker in MARKER_LABELS:
        label = marker.label
        assessed = row.get(f"{label}_status") == "assessed"
        mask_meta = next(iter(files.sidecars(f"*label-{label}_mask")), None)
        regions = [
            {
                "region": region,
                "count": row.get(f"{label}_{region}_count", NA),
                "volume": row.get(f"{label}_{region}_volume_mm3", NA),
            }
            for region in REGISTRY[marker.key].regions
        ]
        markers.append(
            {
                "key": marker.key,
                "label": label,
                "name": marker.plural,
                "assessed": assessed,
                "reason": row.get(f"{label}_reason", NA),
                "count": row.get(f"{label}_count", NA),
                "volume": row.get(f"{label}_volume_mm3", NA),
                "regions": regions,
                "figures": [_figure(files, f) for f in files.figures(label + "_")],
                "method": _read_json(mask_meta).get("Method", NA) if mask_meta else NA,
            }
        )
    return markers


def _described(columns, row: pd.Series, dictionary: dict) -> list[dict]:
    return [
        {
            "name": column,
            "value": row.get(column, NA),
            "rule": dictionary.get(column, {}).get("Description", ""),
        }
        for column in columns
        if column in row
    ]


def session_context(files: SessionFiles) -> dict:
    """Everything the session template shows, read from the session's outputs."""
    summary = pd.read_csv(files.summary, sep="\t", keep_default_na=False, dtype=str)
    row = summary.iloc[0].map(_as_number)
    dictionary = _read_json(files.summary.with_suffix(".json"))
    run = generated_by(files.output_dir)
    version = run.get("Version", NA)
    markers = _markers(files, row)
    warnings = [w for w in str(row.get("qc_warnings", NA)).split("; ") if w and w != NA]
    warnings += [
        f"{m['label']} not assessed: {m['reason']}"
        for m in markers
        if not m["assessed"] and not any(str(m["reason"]) in w for w in warnings)
    ]
    preprocessing = _preprocessing(files)
    reference = str(row.get("reference", NA))
    basal_ganglia = _basal_ganglia(files, reference)
    warnings += basal_ganglia["notes"] if basal_ganglia else []
    paragraph, references = methods_paragraph(
        _read_json(ds.methods_file(files.output_dir, files.prefix)).get("sections", []),
        {m["key"] for m in markers if m["assessed"]},
        [m["name"] for m in markers if not m["assessed"]],
    )
    qc_figures = [
        {"caption": caption, "path": _figure(files, path)}
        for desc, caption in QC_FIGURES
        for path in files.figures(desc)
    ]
    volumes = _described(
        (
            "icv_mm3",
            "brain_volume_mm3",
            "gm_volume_mm3",
            "wm_volume_mm3",
            "csf_volume_mm3",
            "lateral_ventricles_volume_mm3",
        ),
        row,
        dictionary,
    )
    scores = [
        {**e, "title": SCORE_TITLES[e["name"]], "reason": row.get(f"{e['name']}_reason", NA)}
        for e in _described(SCORE_RANGES, row, dictionary)
    ]
    return {
        "title": files.prefix,
        "version": version,
        "software": run.get("Description", ""),
        "reference": reference,
        "inputs": _inputs(row),
        "warnings": warnings,
        "preprocessing": preprocessing,
        "volumes": volumes,
        "qc_figures": qc_figures,
        "markers": markers,
        "ratings": _described(RATING_COLUMNS, row, dictionary),
        "scores": scores,
        "basal_ganglia": basal_ganglia,
        "methods": paragraph,
        "references": references,
    }


def _basal_ganglia(files: SessionFiles, reference: str) -> dict | None:
    """The lenticulostriate table (rows) and each map's source, or None when not written."""
    path = files.folder / "anat" / f"{files.prefix}_desc-basalganglia_stats.tsv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    sources = {m.upper(): ", ".join(sorted(set(table[f"{m}_source"]))) for m in ("fa", "cbf")}
    rows = table[["roi", "volume_mm3", "fa_mean", "md_mean", "cbf_mean"]].to_dict("records")
    cbf = files.folder / "perf" / f"{files.prefix}_space-{reference}_cbf.json"
    notes = [f"CBF: {note}" for note in _read_json(cbf).get("Notes", [])]
    return {"rows": rows, "sources": sources, "notes": notes}


def _as_number(value: str):
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value else number


def write_session_report(files: SessionFiles) -> Path:
    """Render ``sub-<label>[_ses-<label>].html`` at the output root."""
    return render("report_session.html", files.report, **session_context(files))
