"""One marker's detection, through the marker interface."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from csvd_bids.config import RunConfig
from csvd_bids.interfaces.markers import DetectMarker, SecondOpinion
from csvd_bids.markers import REGISTRY
from csvd_bids.models.second_opinion import CHECK_MODEL_ML, LOW_SHARE, MIN_MODEL_ML, SHARE
from csvd_bids.workflows.preproc import MARKER_INPUTS

MARKER_OUTPUTS = ("score", "mask", "located", "status")
SECOND_OPINION_METHOD = (
    "A second model ran beside it ({method}); where the detector found less than "
    f"{SHARE:g} x a model volume over {MIN_MODEL_ML:g} ml, less than {LOW_SHARE:g} x one over "
    f"{CHECK_MODEL_ML:g} ml, or could not assess the images, the model's mask was used; less "
    f"than {SHARE:g} x one over {CHECK_MODEL_ML:g} ml was otherwise noted as a warning (the "
    "mask's sidecar and the session's QC warnings say so)."
)


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
    bundle, the bundle replaces the detector (device and threads from ``config``); its
    "second_opinion" is a shipped model that runs beside the detector, whose mask is kept where
    the detector missed a large burden (``csvd_bids.models.second_opinion``)."""
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
    detect = _detect_node(marker, "detect", model if model and model.get("model") else {}, config)
    nodes = [detect]
    outputnode = pe.Node(niu.IdentityInterface(fields=list(MARKER_OUTPUTS)), name="outputnode")
    second = (model or {}).get("second_opinion")
    if second:  # the shipped model beside the detector: one of the two masks is kept
        wf.__desc__ += " " + SECOND_OPINION_METHOD.format(method=second["method"].rstrip("."))
        nodes.append(_detect_node(marker, "second_opinion", second, config))
        choose = pe.Node(SecondOpinion(method=second["method"]), name="choose", mem_gb=0.5)
        for source, prefix in ((detect, "detector"), (nodes[1], "model")):
            wf.connect([(source, choose, [(kind, f"{prefix}_{kind}") for kind in MARKER_OUTPUTS])])
        wf.connect([(choose, outputnode, [(kind, kind) for kind in MARKER_OUTPUTS])])
    else:
        wf.connect([(detect, outputnode, [(kind, kind) for kind in MARKER_OUTPUTS])])
    fields = [(f, f) for f in (*modalities, *MARKER_INPUTS)]
    wf.connect([(inputnode, node, fields) for node in nodes])
    if excludes:
        for kind in ("mask", "status"):
            merge = pe.Node(niu.Merge(len(excludes)), name=f"merge_excluded_{kind}")
            for index, key in enumerate(excludes, start=1):
                wf.connect(inputnode, f"{key}_{kind}", merge, f"in{index}")
            for node in nodes:  # the second opinion leaves them out as the detector does
                node.inputs.excluded_keys = list(excludes)
                wf.connect(merge, "out", node, f"excluded_{kind}_files")
    return wf


def _detect_node(marker: str, name: str, model: dict, config: RunConfig | None) -> pe.Node:
    """A DetectMarker node: the marker's detector, or the model bundle ``model`` names (a plan
    entry with "model" and "model_sha256"; device and threads from ``config``)."""
    node = pe.Node(DetectMarker(marker=marker), name=name, mem_gb=2.0)
    if model.get("model"):
        node.inputs.bundle = model["model"]
        node.inputs.bundle_sha256 = model["model_sha256"]  # new weights, new results
        node.inputs.threshold = model["threshold"]  # the second opinion's is not the bundle's
        if config is not None:
            node.inputs.device = config.device
            node.inputs.tta = config.tta
            node.inputs.num_threads = config.omp_nthreads
            node.n_procs = config.omp_nthreads
    return node
