"""The registry entries of the markers whose detector modules do not register themselves:
which modalities each needs, its detector, and the regions its summary reports.

A marker whose modality is missing is reported as "not assessed" with its reason (never
as zero), through the same interface.
"""

from __future__ import annotations

from csvd_bids.markers.base import MarkerSpec, register
from csvd_bids.markers.cmb import CMB_METHOD, CMB_REGIONS, detect_cmb, locate_cmb
from csvd_bids.markers.lacunes import (
    LACUNE_METHOD,
    LACUNE_REGIONS,
    detect_lacunes,
    locate_lacunes,
)
from csvd_bids.markers.pvs import PVS_METHOD, PVS_REGIONS, detect_pvs, locate_pvs

register(
    MarkerSpec(
        "cmb",
        required=("swi",),
        optional=("t1w",),
        detect=detect_cmb,
        locate=locate_cmb,
        method=CMB_METHOD,
        regions=CMB_REGIONS,
    )
)
register(
    MarkerSpec(
        "pvs",
        required=("t2w",),
        optional=("t1w", "flair"),
        detect=detect_pvs,
        locate=locate_pvs,
        method=PVS_METHOD,
        regions=PVS_REGIONS,
    )
)
register(
    MarkerSpec(
        "lacunes",
        required=("flair",),
        optional=("t1w", "t2w"),
        detect=detect_lacunes,
        locate=locate_lacunes,
        method=LACUNE_METHOD,
        regions=LACUNE_REGIONS,
    )
)
