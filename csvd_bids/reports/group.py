"""The group report, ``group_csvd.html`` at the output root, from the group level's files.

Shows the distributions of volumes, counts and scores (by group when participants.tsv has a
group column), the total SVD score against age, the regression and descriptive tables, the
sessions with QC warnings (linked to their reports) and outliers, and, after a run with
``--lsa-model``, the lenticulostriate-territory model (its cross-validation, classification and
occlusion-sensitivity maps, from the ``group_lsa_*`` files). Figures are embedded.

Outlier rule: a session is flagged for a figure when its robust z-score,
(value - median) / (1.4826 x median absolute deviation), is beyond +-3.5 (Iglewicz and Hoaglin);
figures whose MAD is 0 are not screened.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import median_abs_deviation

from csvd_bids.reports.render import generated_by, png_data_uri, render

NA = "n/a"
OUTLIER_Z = 3.5
SCREENED = (
    "icv_mm3",
    "brain_volume_mm3",
    "lateral_ventricles_volume_mm3",
    "WMH_volume_mm3",
    "CMB_count",
    "LAC_count",
    "PVS_count",
)
DISTRIBUTIONS = (  # (column, axis label)
    ("WMH_volume_mm3", "WMH volume (mm³)"),
    ("CMB_count", "microbleeds"),
    ("LAC_count", "lacunes"),
    ("PVS_count", "PVS"),
    ("svd_score", "total SVD score (0-4)"),
    ("ha_score", "HA score (0-4)"),
    ("fazekas_pv", "Fazekas periventricular"),
    ("fazekas_deep", "Fazekas deep"),
)


def _numeric(table: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(table[column], errors="coerce") if column in table else pd.Series()


def _groups(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if "group" in table and table["group"].dropna().nunique() > 1:
        return {str(name): part for name, part in table.groupby("group")}
    return {"all sessions": table}


def distributions_figure(table: pd.DataFrame) -> str | None:
    """Box plots (with the points) of each figure present, one box per group."""
    present = [(c, label) for c, label in DISTRIBUTIONS if _numeric(table, c).notna().any()]
    if not present:
        return None
    groups = _groups(table)
    columns = 4
    rows = -(-len(present) // columns)
    fig = Figure(figsize=(3.2 * columns, 2.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    rng = np.random.default_rng(0)  # jitter of the points only
    for ax, (column, label) in zip(axes, present, strict=False):
        values = [_numeric(part, column).dropna().to_numpy() for part in groups.values()]
        ax.boxplot(values, showfliers=False)
        for position, data in enumerate(values, start=1):
            ax.plot(position + rng.uniform(-0.12, 0.12, len(data)), data, "o", ms=3, alpha=0.6)
        ax.set_xticks(range(1, len(groups) + 1), list(groups), fontsize=8)
        ax.set_title(label, fontsize=9)
    for ax in axes[len(present) :]:
        ax.set_axis_off()
    fig.tight_layout()
    return png_data_uri(fig)


def score_against_age_figure(table: pd.DataFrame) -> str | None:
    if "age" not in table or _numeric(table, "svd_score").isna().all():
        return None
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    for name, part in _groups(table).items():
        score = _numeric(part, "svd_score")
        ax.plot(_numeric(part, "age"), score + rng.uniform(-0.1, 0.1, len(score)), "o", label=name)
    ax.set_xlabel("age (years)")
    ax.set_ylabel("total SVD score (jittered)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return png_data_uri(fig)


def outliers(table: pd.DataFrame) -> list[dict]:
    """Sessions whose robust z-score of a screened figure is beyond OUTLIER_Z."""
    found = []
    for column in SCREENED:
        values = _numeric(table, column)
        if values.notna().sum() < 3:
            continue
        mad = median_abs_deviation(values.dropna(), scale="normal")
        if mad == 0:
            continue
        z = (values - values.median()) / mad
        for index in z.index[z.abs() > OUTLIER_Z]:
            found.append(
                {
                    **_session(table.loc[index]),
                    "figure": column,
                    "value": values[index],
                    "z": round(float(z[index]), 1),
                }
            )
    return found


def _session(row: pd.Series) -> dict:
    session = row.get("session_id", NA)
    has_session = isinstance(session, str) and session != NA
    prefix = row["participant_id"] + (f"_{session}" if has_session else "")
    return {"session": prefix, "report": f"{prefix}.html"}


def flagged_sessions(table: pd.DataFrame) -> list[dict]:
    """Sessions with a QC warning or a marker not assessed, with what was flagged."""
    flagged = []
    not_assessed = [c for c in table.columns if c.endswith("_status")]
    for _, row in table.iterrows():
        notes = [w for w in str(row.get("qc_warnings", NA)).split("; ") if w not in ("", NA, "nan")]
        notes += [
            f"{c.removesuffix('_status')} not assessed"
            for c in not_assessed
            if row[c] != "assessed"
        ]
        if notes:
            flagged.append({**_session(row), "notes": notes})
    return flagged


def _read_table(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, sep="\t", keep_default_na=False) if path.is_file() else None


def saliency_figure(output_dir: Path) -> str | None:
    """Mean occlusion map over the mean T1w patch (middle axial slice), one row per outcome
    group and target, one column per region; one colour scale per target."""
    image, sidecar = (
        output_dir / "group_lsa_saliency.nii.gz",
        output_dir / "group_lsa_saliency.json",
    )
    if not image.is_file() or not sidecar.is_file():
        return None
    volumes = np.asanyarray(nib.load(image).dataobj)
    entries = json.loads(sidecar.read_text())["Volumes"]
    at = {(e["group"], e["roi"], e["map"]): i for i, e in enumerate(entries)}
    groups = list(dict.fromkeys(e["group"] for e in entries))
    rois = list(dict.fromkeys(e["roi"] for e in entries))
    maps = [m for m in dict.fromkeys(e["map"] for e in entries) if m != "T1w"]
    rows = [(g, m) for g in groups for m in maps]
    fig = Figure(figsize=(1.6 * len(rois) + 0.6, 1.7 * len(rows)))
    axes = np.atleast_2d(fig.subplots(len(rows), len(rois), squeeze=False))
    middle = volumes.shape[2] // 2
    top = {
        kind: max(float(volumes[..., i].max()) for i, e in enumerate(entries) if e["map"] == kind)
        or 1.0
        for kind in maps
    }
    for r, (group, kind) in enumerate(rows):
        for c, roi in enumerate(rois):
            ax = axes[r, c]
            ax.set_axis_off()
            if (group, roi, kind) not in at:
                continue
            t1w = volumes[:, :, middle, at[(group, roi, "T1w")]]
            cam = volumes[:, :, middle, at[(group, roi, kind)]]
            ax.imshow(t1w.T, cmap="gray", origin="lower")
            ax.imshow(cam.T, cmap="inferno", alpha=0.5, origin="lower", vmin=0, vmax=top[kind])
            if r == 0:
                ax.set_title(roi.replace("_", " "), fontsize=8)
        axes[r, 0].text(
            -0.1,
            0.5,
            f"{group}\n{kind.removeprefix('occlusion_').upper()}",
            fontsize=8,
            ha="right",
            va="center",
            transform=axes[r, 0].transAxes,
        )
    fig.tight_layout()
    return png_data_uri(fig)


def _frame(path: Path) -> dict | None:
    frame = _read_table(path)
    if frame is None:
        return None
    return {"columns": list(frame.columns), "rows": frame.values.tolist()}


def lsa_context(output_dir: Path) -> dict | None:
    """The lenticulostriate-territory model's files (None: the run had no --lsa-model)."""
    path = output_dir / "group_lsa_model.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return {
        "summary": summary,
        "warnings": summary.get("Warnings", []),
        "reported": summary.get("Reported", False),
        "cv": _frame(output_dir / "group_lsa_cv.tsv"),
        "classification": summary.get("Classification"),
        "classification_folds": _frame(output_dir / "group_lsa_classification.tsv"),
        "saliency": saliency_figure(output_dir) if summary.get("Reported") else None,
    }


def group_context(output_dir: Path) -> dict:
    table = pd.read_csv(output_dir / "group_csvd.tsv", sep="\t", na_values=[NA])
    stats_meta = output_dir / "group_stats.json"
    run = generated_by(output_dir)
    tables: dict[str, dict | None] = {}
    for name in ("stats", "descriptives", "change"):  # change: only with several sessions
        frame = _read_table(output_dir / f"group_{name}.tsv")
        tables[name] = (
            None
            if frame is None
            else {"columns": list(frame.columns), "rows": frame.values.tolist()}
        )
    return {
        "version": run.get("Version", NA),
        "software": run.get("Description", ""),
        "n_sessions": len(table),
        "n_subjects": table["participant_id"].nunique(),
        "groups": {name: len(part) for name, part in _groups(table).items()},
        "distributions": distributions_figure(table),
        "score_age": score_against_age_figure(table),
        "tables": tables,
        "stats_warnings": (
            json.loads(stats_meta.read_text()).get("Warnings", []) if stats_meta.is_file() else []
        ),
        "flagged": flagged_sessions(table),
        "outliers": outliers(table),
        "outlier_z": OUTLIER_Z,
        "existing_reports": {p.name for p in output_dir.glob("sub-*.html")},
        "lsa": lsa_context(output_dir),
    }


def write_group_report(output_dir: Path) -> Path:
    """Render ``group_csvd.html`` from the group level's TSVs in ``output_dir``."""
    return render("report_group.html", output_dir / "group_csvd.html", **group_context(output_dir))
