"""The methods paragraph of a session report, with the references it cites.

Written from what the session actually used (reference modality, coregistered modalities,
assessed markers and their detectors' own method text), so that it can be pasted into a paper.
"""

from __future__ import annotations

REFERENCES = {
    "strive1": "Wardlaw JM, et al. Neuroimaging standards for research into small vessel disease "
    "and its contribution to ageing and neurodegeneration. Lancet Neurol 2013;12:822-838.",
    "strive2": "Duering M, et al. Neuroimaging standards for research into small vessel "
    "disease-advances since 2013. Lancet Neurol 2023;22:602-618.",
    "nipype": "Gorgolewski K, et al. Nipype: a flexible, lightweight and extensible neuroimaging "
    "data processing framework in Python. Front Neuroinform 2011;5:13.",
    "simpleitk": "Lowekamp BC, et al. The design of SimpleITK. Front Neuroinform 2013;7:45.",
    "mattes": "Mattes D, et al. PET-CT image registration in the chest using free-form "
    "deformations. IEEE Trans Med Imaging 2003;22:120-128.",
    "n4": "Tustison NJ, et al. N4ITK: improved N3 bias correction. IEEE Trans Med Imaging "
    "2010;29:1310-1320.",
    "deepbet": "Fisch L, et al. deepbet: fast brain extraction of T1-weighted MRI using "
    "convolutional neural networks. Comput Biol Med 2024;179:108845.",
    "mni": "Fonov V, et al. Unbiased average age-appropriate atlases for pediatric studies. "
    "NeuroImage 2011;54:313-327.",
    "harvard_oxford": "Desikan RS, et al. An automated labeling system for subdividing the human "
    "cerebral cortex on MRI scans into gyral based regions of interest. NeuroImage "
    "2006;31:968-980.",
    "fazekas": "Fazekas F, et al. MR signal abnormalities at 1.5 T in Alzheimer's dementia and "
    "normal aging. AJR Am J Roentgenol 1987;149:351-356.",
    "potter": "Potter GM, et al. Cerebral perivascular spaces visible on magnetic resonance "
    "imaging: development of a qualitative rating scale and its observer reliability. "
    "Cerebrovasc Dis 2015;39:224-231.",
    "mars": "Gregoire SM, et al. The Microbleed Anatomical Rating Scale (MARS): reliability of "
    "a tool to map brain microbleeds. Neurology 2009;73:1759-1766.",
    "staals": "Staals J, et al. Stroke subtype, vascular risk factors, and total MRI brain "
    "small-vessel disease burden. Neurology 2014;83:1228-1234.",
    "lau": "Lau KK, et al. Total small vessel disease score and risk of recurrent stroke: "
    "validation in 2 large cohorts. Neurology 2017;88:2260-2267.",
    "charidimou": "Charidimou A, et al. Total magnetic resonance imaging burden of small "
    "vessel disease in cerebral amyloid angiopathy: an imaging-pathologic study of concept "
    "validation. JAMA Neurol 2016;73:994-1001.",
}
_ORDER = list(REFERENCES)


def _cite(*keys: str) -> str:
    return "[" + ", ".join(str(_ORDER.index(k) + 1) for k in keys) + "]"


def methods_paragraph(
    version: str,
    reference: str,
    coregistered: list[str],
    coregistration_method: str,
    markers: list[tuple[str, str]],
    not_assessed: list[str],
) -> tuple[str, list[str]]:
    """(paragraph, references in the order of their numbers). ``markers``: (name, method)
    of the assessed markers; ``not_assessed``: names of the others."""
    parts = [
        f"MRI markers of cerebral small vessel disease, as defined by STRIVE and STRIVE-2 "
        f"{_cite('strive1', 'strive2')}, were measured with csvd-bids {version}, a nipype "
        f"workflow {_cite('nipype')}. The {reference} image was the reference space: it was "
        f"reoriented to RAS and corrected for intensity inhomogeneity with N4 {_cite('n4')} "
        f"in SimpleITK {_cite('simpleitk')}."
    ]
    if coregistered:
        parts.append(
            f"The {', '.join(coregistered)} image(s) were bias-corrected in the same way and "
            f"registered to it ({coregistration_method}; Mattes mutual information "
            f"{_cite('mattes')}), then resampled once onto its grid."
        )
    parts.append(
        f"The brain was extracted with deepbet {_cite('deepbet')}. The ICBM 2009 template "
        f"{_cite('mni')} was registered to the subject (affine, then deformable) to bring the "
        f"Harvard-Oxford atlas {_cite('harvard_oxford')} into subject space; with a tissue "
        "segmentation it defined the lateral ventricles, periventricular and deep white matter, "
        "basal ganglia, centrum semiovale and lobes."
    )
    for name, method in markers:
        parts.append(f"{name[0].upper()}{name[1:]}: {method.rstrip('.')}.")
    if not_assessed:
        parts.append(f"Not assessed (missing or unusable images): {', '.join(not_assessed)}.")
    parts.append(
        f"Visual ratings were estimated from the segmentations: Fazekas periventricular and "
        f"deep grades {_cite('fazekas')}, PVS grades in the basal ganglia and centrum "
        f"semiovale {_cite('potter')} and microbleed counts by MARS region {_cite('mars')}; "
        f"the total SVD score {_cite('staals')}, the hypertensive-arteriopathy score "
        f"{_cite('lau')} and the CAA-SVD score {_cite('charidimou')} were computed from them."
    )
    return " ".join(parts), list(REFERENCES.values())
