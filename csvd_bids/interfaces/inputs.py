"""Reading the inputs a node receives: optional lists and JSON files."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import isdefined


def listed(value) -> list:
    """A list input as a list; [] when it is unset (e.g. a session with no marker)."""
    return list(value) if isdefined(value) else []


def read_json(path: str) -> dict:
    return json.loads(Path(path).read_text())
