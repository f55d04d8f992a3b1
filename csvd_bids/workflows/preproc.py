"""Anatomical preprocessing of one session."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from csvd_bids.bids.discovery import SUFFIXES
from csvd_bids.interfaces.dwi import PrepareDWI
from csvd_bids.interfaces.preproc import (
    BiasCorrect,
    BrainExtraction,
    CheckSameSubject,
    PrepareImage,
    SegmentRegions,
    TemplatePriors,
)
from csvd_bids.preproc.coregister import METHOD as COREGISTRATION_METHOD

# Template priors in subject space (the detectors' inputs), then the atlas maps.
PRIOR_OUTPUTS = ("brain_mask", "wm", "gm", "csf", "ventricles")
ATLAS_MAPS = ("structures", "lobes", "cortex", "supraventricular")
TISSUE_OUTPUTS = ("gm_probseg", "wm_probseg", "csf_probseg")
MARKER_INPUTS = (*PRIOR_OUTPUTS, "regions")  # what every detector receives besides images
# What the derivatives writer receives besides the images and the detections.
DWI_OUTPUTS = ("dwi_b0", "dwi_trace", "dwi_adc", "dwi_report")
DS_ANATOMY = (
    "same_subject",
    "brain_mask",
    "brain_report",
    "transform",
    *TISSUE_OUTPUTS,
    "regions",
    "volumes",
)


def preproc_methods(modalities: list[str], reference: str) -> str:
    """This workflow's part of the methods text ([@key]: csvd_bids.reports.methods.REFERENCES)."""
    others = [SUFFIXES[m] for m in modalities if m != reference]
    text = (
        f"The {SUFFIXES[reference]} image was the reference space: it was reoriented to RAS and "
        "corrected for intensity inhomogeneity with N4 [@n4] in SimpleITK [@simpleitk]."
    )
    if others:
        text += (
            f" The {', '.join(others)} image(s) were bias-corrected in the same way and "
            f"registered to it ({COREGISTRATION_METHOD}; Mattes mutual information [@mattes]), "
            "then resampled once onto its grid."
        )
    return text + (
        " The brain was extracted with deepbet [@deepbet]. The ICBM 2009 template [@mni] was "
        "registered to the subject (affine, then deformable) to bring the Harvard-Oxford atlas "
        "[@harvard_oxford] into subject space; with a tissue segmentation it defined the "
        "lateral ventricles, periventricular and deep white matter, basal ganglia, centrum "
        "semiovale and lobes."
    )


def init_preproc_wf(
    *,
    modalities: list[str],
    reference: str,
    dwi_bval: str | None = None,
    omp_nthreads: int = 1,
    name: str = "preproc_wf",
) -> pe.Workflow:
    """Prepare every anatomical modality on the reference grid, extract the brain, bring in the
    template and atlas, and segment tissues and regions.

    Inputs: one field per modality (raw file). Outputs: the same fields (preprocessed files on
    the reference grid), ``<modality>_report`` (JSON: coregistration), ``brain_mask`` and
    ``brain_report``, ``transform`` (composite, template -> subject) and ``affine`` (its affine
    part), the priors (wm, gm, csf, ventricles), the tissue posteriors (``*_probseg``),
    ``regions`` and ``volumes``. With ``dwi_bval`` (the DWI's .bval file), the input ``dwi``
    gives ``DWI_OUTPUTS``: b0, trace and ADC on the reference grid and their report.
    """
    if reference not in modalities:
        raise ValueError(f"reference {reference!r} is not among {modalities}")
    wf = pe.Workflow(name=name)
    wf.__desc__ = preproc_methods(modalities, reference)
    dwi_fields = ["dwi"] if dwi_bval else []
    inputnode = pe.Node(niu.IdentityInterface(fields=[*modalities, *dwi_fields]), name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(
            fields=[
                *modalities,
                *(f"{m}_report" for m in modalities),
                *PRIOR_OUTPUTS,
                "brain_report",
                "transform",
                "affine",
                *TISSUE_OUTPUTS,
                "regions",
                "volumes",
                "same_subject",
                "structures",
                *(DWI_OUTPUTS if dwi_bval else ()),
                *(["dwi_transform"] if dwi_bval else []),
            ]
        ),
        name="outputnode",
    )
    threaded = {"n_procs": omp_nthreads}
    prepared = {}
    for modality in [reference] + [m for m in modalities if m != reference]:
        node = pe.Node(
            PrepareImage(modality=modality, num_threads=omp_nthreads),
            name=f"prepare_{modality}",
            mem_gb=1.5,
            **threaded,
        )
        if modality == reference:
            wf.connect(inputnode, modality, node, "in_file")
        else:  # N4 in a node of its own, which starts before the reference is ready
            bias = pe.Node(
                BiasCorrect(modality=modality, num_threads=omp_nthreads),
                name=f"bias_{modality}",
                mem_gb=1.5,
                **threaded,
            )
            node.inputs.corrected = True
            wf.connect(inputnode, modality, bias, "in_file")
            wf.connect(bias, "out_file", node, "in_file")
            wf.connect(prepared[reference], "out_file", node, "reference")
        wf.connect(node, "out_file", outputnode, modality)
        wf.connect(node, "report", outputnode, f"{modality}_report")
        prepared[modality] = node

    brain = pe.Node(
        BrainExtraction(num_threads=omp_nthreads), name="brain_extraction", mem_gb=2.0, **threaded
    )
    template = pe.Node(
        TemplatePriors(num_threads=omp_nthreads), name="template_priors", mem_gb=2.5, **threaded
    )
    regions = pe.Node(SegmentRegions(), name="segment_regions", mem_gb=2.0)
    wf.connect(
        [
            (prepared[reference], brain, [("out_file", "in_file")]),
            (prepared[reference], template, [("out_file", "reference")]),
            (brain, template, [("out_mask", "brain_mask")]),
            (prepared[reference], regions, [("out_file", "reference")]),
            (brain, regions, [("out_mask", "brain_mask")]),
            (template, regions, [(f, f) for f in (*PRIOR_OUTPUTS[1:], *ATLAS_MAPS)]),
            (brain, outputnode, [("out_mask", "brain_mask"), ("report", "brain_report")]),
            (
                template,
                outputnode,
                [(f, f) for f in ("transform", "affine", "structures", *PRIOR_OUTPUTS[1:])],
            ),
            (regions, outputnode, [(f, f) for f in (*TISSUE_OUTPUTS, "regions", "volumes")]),
        ]
    )
    # QC: every coregistered image (and the DWI's b0) against the reference's anatomy.
    others = [m for m in modalities if m != reference]
    checked = [SUFFIXES[m] for m in others] + (["dwi"] if dwi_bval else [])
    if not checked:  # the reference alone: nothing to compare
        return _add_dwi(wf, inputnode, outputnode, prepared[reference], None, dwi_bval, threaded)
    # The b0 of the DWI (when there is one) is the last image checked.
    same_subject = pe.Node(
        CheckSameSubject(names=checked, num_threads=omp_nthreads),
        name="check_same_subject",
        mem_gb=1.0,
        **threaded,
    )
    merge_checked = pe.Node(niu.Merge(len(checked)), name="merge_checked")
    for index, modality in enumerate(others, start=1):
        wf.connect(prepared[modality], "out_file", merge_checked, f"in{index}")
    wf.connect(
        [
            (prepared[reference], same_subject, [("out_file", "reference")]),
            (brain, same_subject, [("out_mask", "brain_mask")]),
            (merge_checked, same_subject, [("out", "in_files")]),
            (same_subject, outputnode, [("report", "same_subject")]),
        ]
    )
    b0_slot = (merge_checked, f"in{len(checked)}")
    return _add_dwi(wf, inputnode, outputnode, prepared[reference], b0_slot, dwi_bval, threaded)


def _add_dwi(
    wf: pe.Workflow,
    inputnode: pe.Node,
    outputnode: pe.Node,
    reference: pe.Node,
    b0_slot: tuple[pe.Node, str] | None,
    dwi_bval: str | None,
    threaded: dict,
) -> pe.Workflow:
    """The DWI's b0, trace and ADC on the reference grid; its b0 goes to ``b0_slot`` (the
    same-subject check) when given."""
    if dwi_bval:
        dwi = pe.Node(
            PrepareDWI(bval=dwi_bval, num_threads=threaded["n_procs"]),
            name="prepare_dwi",
            mem_gb=2.0,
            **threaded,
        )
        wf.connect(
            [
                (inputnode, dwi, [("dwi", "in_file")]),
                (reference, dwi, [("out_file", "reference")]),
                (
                    dwi,
                    outputnode,
                    [(f, f"dwi_{f}") for f in ("b0", "trace", "adc", "transform")]
                    + [("report", "dwi_report")],
                ),
            ]
        )
        if b0_slot is not None:
            wf.connect(dwi, "b0", *b0_slot)
    return wf
