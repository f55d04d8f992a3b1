"""Jinja2 rendering of the HTML reports from the templates in ``csvd_bids/data``.

Reports are self-contained: no script, font or style sheet from the network; session figures
are the PNGs under ``sub-<label>/[ses-<label>/]figures`` (relative links), group figures are
embedded as data URIs.
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from matplotlib.figure import Figure

from csvd_bids.bids import derivatives as ds

_ENV = Environment(
    loader=PackageLoader("csvd_bids", "data"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,  # a missing field is a bug, not an empty cell
    trim_blocks=True,
    lstrip_blocks=True,
)


def _number(value, digits: int = 3) -> str:
    """Numbers as people read them: integers plain, others to ``digits`` significant digits."""
    if isinstance(value, str):
        try:  # TSV cells read as text
            value = float(value)
        except ValueError:
            return value
    if value is None or math.isnan(value):
        return "n/a"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"


_ENV.filters["number"] = _number


def generated_by(output_dir: Path) -> dict:
    """The run's own entry of ``dataset_description.json`` (version, software versions);
    empty when the file is missing or unreadable."""
    try:
        description = json.loads((output_dir / "dataset_description.json").read_text())
    except (OSError, ValueError):
        return {}
    return next(iter(description.get("GeneratedBy", [])), {})


def render(template: str, path: Path, **context) -> Path:
    """Render ``template`` to ``path`` (written to a temporary file, then renamed)."""
    return ds.write_text(path, _ENV.get_template(template).render(**context))


def png_data_uri(fig: Figure) -> str:
    """A matplotlib figure as an embeddable ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
