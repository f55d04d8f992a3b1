"""Named groups of the subject region map's labels (``csvd_bids.preproc.regions``), the one
vocabulary of the marker detectors: each name says what it holds, and no detector defines its
own "white matter" with another meaning.

| name | regions |
|---|---|
| ``NAWM_REGIONS`` | periventricular, deep WM, centrum semiovale (normal-appearing WM) |
| ``CAPSULE_REGIONS`` | internal, external capsule |
| ``JUXTACORTICAL_WM_REGIONS`` | juxtacortical WM of each lobe |
| ``WHITE_MATTER_REGIONS`` | all of the above: every WM region |
| ``NONCAPSULAR_WM_REGIONS`` | NAWM and juxtacortical WM (the capsules left out) |
| ``DEEP_GM_REGIONS`` | basal ganglia, thalamus |
| ``INFRATENTORIAL_REGIONS`` | brainstem, cerebellum |
| ``CORTEX_REGIONS`` | the cortex of each lobe (with hippocampus and amygdala) |
| ``LOBAR_REGIONS`` | cortex and juxtacortical WM (MARS "lobar") |
| ``DEEP_REGIONS`` | NAWM, deep GM, capsules (MARS "deep") |
| ``CSF_REGIONS`` | lateral ventricles, other CSF |
"""

from __future__ import annotations

from csvd_bids.preproc.regions import REGION_INDEX, REGION_LABELS

_R = REGION_INDEX


def _named(prefix: str) -> tuple[int, ...]:
    return tuple(index for index, name in REGION_LABELS.items() if name.startswith(prefix))


LATERAL_VENTRICLES = _R["lateral_ventricles"]
OTHER_CSF = _R["other_csf"]
BASAL_GANGLIA = _R["basal_ganglia"]
THALAMUS = _R["thalamus"]
INTERNAL_CAPSULE = _R["internal_capsule"]
EXTERNAL_CAPSULE = _R["external_capsule"]
BRAINSTEM = _R["brainstem"]
CEREBELLUM = _R["cerebellum"]
CENTRUM_SEMIOVALE = _R["centrum_semiovale"]
DEEP_WM = _R["deep_wm"]
PERIVENTRICULAR_WM = _R["periventricular_wm"]

NAWM_REGIONS = (PERIVENTRICULAR_WM, DEEP_WM, CENTRUM_SEMIOVALE)
CAPSULE_REGIONS = (INTERNAL_CAPSULE, EXTERNAL_CAPSULE)
JUXTACORTICAL_WM_REGIONS = _named("juxtacortical_wm_")
WHITE_MATTER_REGIONS = (*NAWM_REGIONS, *CAPSULE_REGIONS, *JUXTACORTICAL_WM_REGIONS)
NONCAPSULAR_WM_REGIONS = (*NAWM_REGIONS, *JUXTACORTICAL_WM_REGIONS)
DEEP_GM_REGIONS = (BASAL_GANGLIA, THALAMUS)
INFRATENTORIAL_REGIONS = (BRAINSTEM, CEREBELLUM)
CORTEX_REGIONS = _named("cortex_")
LOBAR_REGIONS = (*CORTEX_REGIONS, *JUXTACORTICAL_WM_REGIONS)
DEEP_REGIONS = (*NAWM_REGIONS, *DEEP_GM_REGIONS, *CAPSULE_REGIONS)
CSF_REGIONS = (LATERAL_VENTRICLES, OTHER_CSF)
