"""One marker's detection, through the marker interface."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from csvd_bids.config import RunConfig
from csvd_bids.interfaces.markers import DetectMarker
from csvd_bids.workflows.preproc import MARKER_INPUTS


def init_marker_wf(
    *,
    marker: str,
    modalities: tuple[str, ...],
    model: dict | None = None,
    config: RunConfig | None = None,
    name: str | None = None,
) -> pe.Workflow:
    """Inputs: the modalities the marker uses, the priors and the region map;
    outputs: score, mask, lesions. ``model``: the marker's plan entry; when it names a model
    bundle, the bundle replaces the detector (device and threads from ``config``)."""
    wf = pe.Workflow(name=name or f"{marker}_wf")
    inputnode = pe.Node(
        niu.IdentityInterface(fields=[*modalities, *MARKER_INPUTS]), name="inputnode"
    )
    detect = pe.Node(DetectMarker(marker=marker), name="detect", mem_gb=2.0)
    if model and model.get("model"):
        detect.inputs.bundle = model["model"]
        detect.inputs.bundle_sha256 = model["model_sha256"]  # new weights, new results
        if config is not None:
            detect.inputs.device = config.device
            detect.inputs.tta = config.tta
            detect.inputs.num_threads = config.omp_nthreads
            detect.n_procs = config.omp_nthreads
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
