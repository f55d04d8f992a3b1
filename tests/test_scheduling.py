"""MultiProc starts the ready node with the longest chain after it first (workflows/scheduling.py):
in a session the template registration, which every marker waits for, went after the FLAIR, T2w,
SWI and DWI preparations that nipype's topological order put first."""

from __future__ import annotations

import functools
import gc
from datetime import datetime

import networkx as nx
from nipype.interfaces.utility import Function
from nipype.pipeline import engine as pe
from nipype.utils.filemanip import loadpkl

from csvd_bids.workflows.scheduling import MultiProcPlugin, chain_lengths


def _passthrough(value: int) -> int:
    return value


def _nap(value: int) -> int:
    """Sleeps ``value`` seconds and passes it on."""
    import time

    time.sleep(value)
    return value


def _function_node(name: str, function=_passthrough, **kwargs) -> pe.Node:
    node = Function(input_names=["value"], output_names=["value"], function=function)
    return pe.Node(node, name=name, **kwargs)


def _runtime(folder, name: str):
    """The runtime record (startTime, endTime) of a node that ran in ``folder``."""
    return loadpkl(next((folder / name).glob("result_*.pklz"))).runtime


def test_chain_lengths():
    graph = nx.DiGraph([("root", "a1"), ("a1", "a2"), ("a2", "a3"), ("root", "x")])
    assert chain_lengths(graph) == {"root": 4, "a1": 3, "a2": 2, "a3": 1, "x": 1}
    # costs: a heavy leaf outranks a light chain
    heavy = chain_lengths(graph, cost=lambda node: 10.0 if node == "x" else 1.0)
    assert heavy["x"] == 10 and heavy["a1"] == 3 and heavy["root"] == 11


def test_the_longer_chain_runs_first(tmp_path):
    """One process: after ``root``, the leaf ``x`` (first in nipype's order: added first) and
    the head of a three-node chain are ready; the chain (cost 1 per node, as these names are
    not in NODE_COSTS) must run before the leaf."""
    workflow = pe.Workflow("order", base_dir=str(tmp_path))
    node = _function_node
    root, leaf = node("root"), node("x")
    root.inputs.value = 1
    workflow.connect(root, "value", leaf, "value")  # the leaf first, as nipype would order it
    chain = [node(f"a{i}") for i in range(1, 4)]
    workflow.connect(root, "value", chain[0], "value")
    for before, after in zip(chain, chain[1:], strict=False):
        workflow.connect(before, "value", after, "value")
    workflow.config["execution"]["poll_sleep_duration"] = 0.01
    workflow.run(plugin=MultiProcPlugin(plugin_args={"n_procs": 1, "mp_context": "forkserver"}))

    def started(name: str) -> datetime:
        return datetime.fromisoformat(_runtime(tmp_path / "order", name).startTime)

    # a1 (3 to go) and a2 (2) before x (1); a3 ties with x, and ties keep nipype's order
    assert started("a1") < started("a2") < started("x")


def test_the_graph_is_left_out_of_garbage_collection_while_it_runs(tmp_path):
    """nipype calls gc.collect() before every submission; with the graph frozen (gc.freeze)
    the collector skips it (0.13 s a call in a session's run before). After the run the
    objects are collectable again."""
    frozen_while_sending = []

    class Recording(MultiProcPlugin):
        def _send_procs_to_workers(self, updatehash=False, graph=None):
            frozen_while_sending.append(gc.get_freeze_count())
            return super()._send_procs_to_workers(updatehash=updatehash, graph=graph)

    workflow = pe.Workflow("frozen", base_dir=str(tmp_path))
    first = _function_node("a")
    first.inputs.value = 1
    workflow.add_nodes([first])
    workflow.config["execution"]["poll_sleep_duration"] = 0.01
    workflow.run(plugin=Recording(plugin_args={"n_procs": 1, "mp_context": "forkserver"}))
    assert frozen_while_sending and min(frozen_while_sending) > 0
    assert gc.get_freeze_count() == 0


def test_the_runner_waits_for_a_node_to_end_instead_of_polling(tmp_path):
    """Two 1 s nodes in a chain, polled every 0.01 s by nipype's loop: the runner looks at the
    graph a few times, not a hundred, and the second node still starts as the first ends."""
    looks = []

    class Counting(MultiProcPlugin):
        wake_s = 30.0  # a node's end, not the timeout, must wake it

        def _send_procs_to_workers(self, updatehash=False, graph=None):
            looks.append(1)
            return super()._send_procs_to_workers(updatehash=updatehash, graph=graph)

    workflow = pe.Workflow("wait", base_dir=str(tmp_path))
    first, second = _function_node("first", _nap), _function_node("second", _nap)
    first.inputs.value = 1  # 1 s each
    workflow.connect(first, "value", second, "value")
    workflow.config["execution"]["poll_sleep_duration"] = 0.01
    workflow.run(plugin=Counting(plugin_args={"n_procs": 1, "mp_context": "forkserver"}))

    runtime = functools.partial(_runtime, tmp_path / "wait")
    gap = datetime.fromisoformat(runtime("second").startTime) - datetime.fromisoformat(
        runtime("first").endTime
    )
    assert len(looks) < 20  # polling alone: about 200
    assert gap.total_seconds() < 0.5


def test_a_node_readied_by_a_merge_run_here_starts_without_waiting(tmp_path):
    """``quick`` -> ``merge`` (run in the runner's process, as nipype runs merges) -> ``leaf``,
    beside a 3 s node: the leaf must start while that node still runs, not after it ends."""

    class Patient(MultiProcPlugin):
        wake_s = 30.0

    workflow = pe.Workflow("merge", base_dir=str(tmp_path))
    quick, leaf = _function_node("quick"), _function_node("leaf")
    merge = _function_node("merge", run_without_submitting=True)
    long = _function_node("long", _nap)
    quick.inputs.value, long.inputs.value = 1, 3
    workflow.connect([(quick, merge, [("value", "value")]), (merge, leaf, [("value", "value")])])
    workflow.add_nodes([long])
    workflow.config["execution"]["poll_sleep_duration"] = 0.01
    workflow.run(plugin=Patient(plugin_args={"n_procs": 2, "mp_context": "forkserver"}))
    runtime = functools.partial(_runtime, tmp_path / "merge")
    assert runtime("leaf").startTime < runtime("long").endTime
