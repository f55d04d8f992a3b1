"""Markers whose detectors have not landed yet: declared so that they are reported as
"not assessed" with their reason (never as zero), through the same interface."""

from __future__ import annotations

from csvd_bids.markers.base import MarkerSpec, register

register(
    MarkerSpec(
        "cmb", required=("swi",), optional=("t1w",), regions=("lobar", "deep", "infratentorial")
    )
)
register(MarkerSpec("pvs", required=("t2w",), optional=("t1w", "flair"), regions=("BG", "CSO")))
register(
    MarkerSpec("lacunes", required=("flair",), optional=("t1w", "t2w"), regions=("deep", "lobar"))
)
