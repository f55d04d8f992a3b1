"""The methods paragraph of a session report, with the references it cites.

Assembled from the text each workflow carries beside its code (its ``__desc__``, citing
``[@key]`` of REFERENCES), as the session's graph was built: what the session actually used,
so that it can be pasted into a paper.
"""

from __future__ import annotations

import re

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
    "dipy": "Garyfallidis E, et al. Dipy, a library for the analysis of diffusion MRI data. "
    "Front Neuroinform 2014;8:8.",
    "alsop2015": "Alsop DC, et al. Recommended implementation of arterial spin-labeled "
    "perfusion MRI for clinical applications: a consensus of the ISMRM perfusion study group "
    "and the European consortium for ASL in dementia. Magn Reson Med 2015;73:102-116.",
}
NUMBERS = {key: number for number, key in enumerate(REFERENCES, start=1)}


_CITATION = re.compile(r"\[(@[\w]+(?:;\s*@[\w]+)*)\]")


def cite(text: str) -> str:
    """``[@n4; @simpleitk]`` -> ``[6, 5]``: the numbers of REFERENCES (unknown key: KeyError)."""

    def number(match: re.Match) -> str:
        keys = [k.strip().lstrip("@") for k in match.group(1).split(";")]
        return "[" + ", ".join(str(NUMBERS[k]) for k in keys) + "]"

    return _CITATION.sub(number, text)


def methods_paragraph(
    sections: list[dict], assessed: set[str], not_assessed: list[str]
) -> tuple[str, list[str]]:
    """(paragraph, references in the order of their numbers) from the sections the workflows
    wrote (csvd_bids.workflows.base.methods_sections): a marker's section only when it was
    assessed (``assessed``: marker keys); ``not_assessed``: names of the other markers."""
    parts = [
        cite(s["text"])
        for s in sections
        if s["section"] not in ("marker", "ratings") or s.get("marker") in assessed
    ]
    if not_assessed:
        parts.append(f"Not assessed (missing or unusable images): {', '.join(not_assessed)}.")
    parts += [cite(s["text"]) for s in sections if s["section"] == "ratings"]
    return " ".join(parts), list(REFERENCES.values())
