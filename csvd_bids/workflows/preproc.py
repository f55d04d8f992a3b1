"""Anatomical preprocessing of one session."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from csvd_bids.interfaces.preproc import PrepareImage, TemplatePriors
from csvd_bids.preproc.template import PRIORS

PRIOR_OUTPUTS = tuple("brain_mask" if p == "brain" else p for p in PRIORS)


def init_preproc_wf(
    *, modalities: list[str], reference: str, omp_nthreads: int = 1, name: str = "preproc_wf"
) -> pe.Workflow:
    """Prepare every anatomical modality on the reference grid and bring in template priors.

    Inputs: one field per modality (raw file). Outputs: the same fields (preprocessed files on
    the reference grid), ``<modality>_report`` (JSON: coregistration), ``transform``
    (template -> subject) and the priors (brain_mask, wm, gm, csf, ventricles).
    """
    if reference not in modalities:
        raise ValueError(f"reference {reference!r} is not among {modalities}")
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=modalities), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(
            fields=[*modalities, *(f"{m}_report" for m in modalities), "transform", *PRIOR_OUTPUTS]
        ),
        name="outputnode",
    )
    prepared = {}
    for modality in [reference] + [m for m in modalities if m != reference]:
        node = pe.Node(
            PrepareImage(modality=modality, num_threads=omp_nthreads),
            name=f"prepare_{modality}",
            n_procs=omp_nthreads,
            mem_gb=1.5,
        )
        wf.connect(inputnode, modality, node, "in_file")
        if modality != reference:
            wf.connect(prepared[reference], "out_file", node, "reference")
        wf.connect(node, "out_file", outputnode, modality)
        wf.connect(node, "report", outputnode, f"{modality}_report")
        prepared[modality] = node

    template = pe.Node(
        TemplatePriors(num_threads=omp_nthreads),
        name="template_priors",
        n_procs=omp_nthreads,
        mem_gb=2.0,
    )
    wf.connect(prepared[reference], "out_file", template, "reference")
    for field in ("transform", *PRIOR_OUTPUTS):
        wf.connect(template, field, outputnode, field)
    return wf
