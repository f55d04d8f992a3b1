"""Small helpers for wiring nipype graphs."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe


def connect_merged(
    wf: pe.Workflow,
    source: pe.Node,
    fields: list[str],
    targets: list[tuple[pe.Node, str]],
    name: str,
) -> None:
    """Gather ``fields`` of ``source``, in order, into the list input of every target."""
    merge = pe.Node(niu.Merge(len(fields)), name=name, run_without_submitting=True)
    for index, field in enumerate(fields, start=1):
        wf.connect(source, field, merge, f"in{index}")
    for node, field in targets:
        wf.connect(merge, "out", node, field)
