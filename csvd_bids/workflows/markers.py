"""One marker's detection, through the marker interface."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from csvd_bids.config import RunConfig
from csvd_bids.interfaces.markers import DetectMarker
from csvd_bids.markers import REGISTRY
from csvd_bids.workflows.preproc import MARKER_INPUTS

MARKER_OUTPUTS = ("score", "mask", "located", "status")


def init_marker_wf(
    *,
    marker: str,
    modalities: tuple[str, ...],
    excludes: tuple[str, ...] = (),
    model: dict | None = None,
    config: RunConfig | None = None,
    name: str | None = None,
) -> pe.Workflow:
    """Inputs: the modalities the marker uses, the priors and the region map, and for each
    marker it excludes ``<key>_mask`` and ``<key>_status`` (that marker's node outputs);
    outputs: ``MARKER_OUTPUTS``. ``model``: the marker's plan entry; when it names a model
    bundle, the bundle replaces the detector (device and threads from ``config``)."""
    wf = pe.Workflow(name=name or f"{marker}_wf")
    spec = REGISTRY[marker]
    method = (model or {}).get("method", spec.method)  # a model bundle's own description
    plural = spec.label.plural
    wf.__desc__ = f"{plural[0].upper()}{plural[1:]}: {method.rstrip('.')}."
    excluded_fields = [f"{key}_{kind}" for key in excludes for kind in ("mask", "status")]
    inputnode = pe.Node(
        niu.IdentityInterface(fields=[*modalities, *MARKER_INPUTS, *excluded_fields]),
        name="inputnode",
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
    outputnode = pe.Node(niu.IdentityInterface(fields=list(MARKER_OUTPUTS)), name="outputnode")
    wf.connect(
        [
            (inputnode, detect, [(field, field) for field in (*modalities, *MARKER_INPUTS)]),
            (detect, outputnode, [(kind, kind) for kind in MARKER_OUTPUTS]),
        ]
    )
    if excludes:
        detect.inputs.excluded_keys = list(excludes)
        for kind in ("mask", "status"):
            merge = pe.Node(niu.Merge(len(excludes)), name=f"merge_excluded_{kind}")
            for index, key in enumerate(excludes, start=1):
                wf.connect(inputnode, f"{key}_{kind}", merge, f"in{index}")
            wf.connect(merge, "out", detect, f"excluded_{kind}_files")
    return wf
