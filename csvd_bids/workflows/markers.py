"""One marker's detection, through the marker interface."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from csvd_bids.interfaces.markers import DetectMarker
from csvd_bids.workflows.preproc import MARKER_INPUTS


def init_marker_wf(
    *, marker: str, modalities: tuple[str, ...], name: str | None = None
) -> pe.Workflow:
    """Inputs: the modalities the marker uses, the priors and the region map;
    outputs: score, mask, lesions."""
    wf = pe.Workflow(name=name or f"{marker}_wf")
    inputnode = pe.Node(
        niu.IdentityInterface(fields=[*modalities, *MARKER_INPUTS]), name="inputnode"
    )
    detect = pe.Node(DetectMarker(marker=marker), name="detect", mem_gb=2.0)
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["score", "mask", "lesions"]), name="outputnode"
    )
    wf.connect(
        [
            (inputnode, detect, [(field, field) for field in (*modalities, *MARKER_INPUTS)]),
            (detect, outputnode, [("score", "score"), ("mask", "mask"), ("lesions", "lesions")]),
        ]
    )
    return wf
