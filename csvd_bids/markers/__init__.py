"""Marker detectors; importing this package fills ``REGISTRY``.

Markers outside the package (a lab's own detector) are modules named in the environment
variable ``CSVD_BIDS_MARKER_PLUGINS`` (comma-separated, importable from ``sys.path``), each of
which calls ``register`` once; they are imported here, so every process of a run (nipype's
workers included) sees the same markers. See CONTRIBUTING.md.
"""

import importlib
import os

from csvd_bids.markers import rssi, specs, wmh  # noqa: F401  (registration, in this order)
from csvd_bids.markers.base import REGISTRY, Detection, MarkerSpec, SessionImages

PLUGINS_VARIABLE = "CSVD_BIDS_MARKER_PLUGINS"


def load_plugins() -> None:
    """Import the modules named in CSVD_BIDS_MARKER_PLUGINS (already imported: no-op)."""
    for name in filter(None, os.environ.get(PLUGINS_VARIABLE, "").split(",")):
        importlib.import_module(name.strip())


load_plugins()

__all__ = ["REGISTRY", "Detection", "MarkerSpec", "SessionImages", "load_plugins"]
