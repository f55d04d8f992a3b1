"""MultiProc that starts the node with the most work still after it first.

nipype's MultiProc starts ready nodes in topological order. In a session that order put the
FLAIR, T2w, SWI and DWI preparations before brain extraction and the template registration,
the chain every marker waits for: at 1 mm on 2 cores the template registration, ready at 21 s,
waited for a free core until 28 s, and the detectors started at 54 s. Here a ready node goes
first when the costliest path from it to the end of the graph is longer (critical-path list
scheduling), with each node's cost its typical share of a session's time (measured with
benchmarks/session_profile.py; 1 for the small nodes); ties keep nipype's order. Outputs do not
depend on the order.

Between two looks at the graph the runner waits for a running node to end (or ``WAKE_S``)
instead of polling: nipype looks every ``poll_sleep_duration`` (0.05 s here, so that a free core
gets its next node at once), and each look sums the whole dependency matrix: this process's
CPU time for a 1 mm session went from 8.6 to 4.4 s with the wait (the rest is its start-up),
time taken from the workers on 2 cores, and the looks cost more the larger the cohort's graph.
"""

from __future__ import annotations

import gc
import threading

import networkx as nx
import numpy as np
from nipype.pipeline.plugins.multiproc import MultiProcPlugin as NipypeMultiProcPlugin

# The longest wait between two looks at the graph while nodes run (s); a node's end ends it.
WAKE_S = 2.0

# Seconds of a 1 mm session with every modality on 2 cores (session_profile.py), by node name;
# only their ratios matter.
NODE_COSTS = {
    "template_cache": 4.0,
    "template_priors": 20.0,
    "prepare_dwi": 15.0,
    "prepare_swi": 8.5,  # N4 runs in bias_<modality> (a third of the SWI's time at 1 mm)
    "bias_swi": 4.5,
    "check_same_subject": 11.0,
    "prepare_t2w": 8.0,
    "bias_t2w": 2.0,
    "prepare_flair": 8.0,
    "bias_flair": 2.0,
    "prepare_t1w": 8.0,
    "detect": 5.0,
    "segment_regions": 7.0,
    "brain_extraction": 4.5,
    "render_qc": 4.5,
    "quantify": 3.5,
    "write_derivatives": 3.5,
}


def node_cost(node) -> float:
    return NODE_COSTS.get(getattr(node, "name", str(node)), 1.0)


def chain_lengths(graph: nx.DiGraph, cost=node_cost) -> dict:
    """Each node's cost plus the costliest path after it to the end of the graph."""
    lengths: dict = {}
    for node in reversed(list(nx.topological_sort(graph))):
        after = max((lengths[n] for n in graph.successors(node)), default=0.0)
        lengths[node] = cost(node) + after
    return lengths


class MultiProcPlugin(NipypeMultiProcPlugin):
    """nipype's MultiProc, costliest remaining path first. The class keeps nipype's name:
    nipype names the plugin of MapNodes after the runner's class."""

    wake_s = WAKE_S

    def __init__(self, plugin_args=None):
        super().__init__(plugin_args=plugin_args)
        self._node_ended = threading.Event()

    def _async_callback(self, args):
        try:
            super()._async_callback(args)
        finally:  # a failed node ends too
            self._node_ended.set()

    def _send_procs_to_workers(self, updatehash=False, graph=None):
        ended = self.proc_done & ~self.proc_pending
        ended_before = int(np.count_nonzero(ended))
        super()._send_procs_to_workers(updatehash=updatehash, graph=graph)
        # a node run here (a merge) may have readied others: look again at once
        ran_here = int(np.count_nonzero(self.proc_done & ~self.proc_pending)) > ended_before
        if self.pending_tasks and not ran_here:
            self._node_ended.wait(self.wake_s)
            self._node_ended.clear()

    def run(self, graph, config, updatehash=False):
        # nipype collects garbage in this process before every submission and after every node
        # it runs here (the merges); with the graph and the BIDS layout on the heap each
        # collection took 0.13 s, during which a finished core waited for its next node.
        # Frozen objects are skipped by the collector; objects made later are collected.
        gc.freeze()
        try:
            return super().run(graph, config, updatehash=updatehash)
        finally:
            gc.unfreeze()

    def _generate_dependency_list(self, graph) -> None:
        super()._generate_dependency_list(graph)
        lengths = chain_lengths(graph)
        self._chain = [lengths.get(node, 0) for node in self.procs]

    def _sort_jobs(self, jobids, scheduler="tsort"):
        chain = getattr(self, "_chain", [])
        # sorted() is stable: equal chains keep nipype's topological order
        return sorted(jobids, key=lambda job: -(chain[job] if job < len(chain) else 0))
