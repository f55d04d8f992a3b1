"""Marker detectors; importing this package fills ``REGISTRY``."""

from csvd_bids.markers import rssi, specs, wmh  # noqa: F401  (registration side effects)
from csvd_bids.markers.base import REGISTRY, Detection, MarkerSpec, SessionImages

__all__ = ["REGISTRY", "Detection", "MarkerSpec", "SessionImages"]
