"""Run the participant graph with nipype and report which sessions failed, and why."""

from __future__ import annotations

import builtins
import importlib
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from csvd_bids.config import RunConfig
from csvd_bids.errors import CsvdBidsError, ExitCode

LOGGER = logging.getLogger("csvd_bids")
_NO_SPACE = re.compile(r"\[Errno (28|122)\]")  # ENOSPC, EDQUOT: a full or over-quota disk


@dataclass
class Failure:
    session_wf: str  # e.g. sub_01_ses_1_wf
    node: str
    message: str
    crash_file: Path
    error: type[BaseException] | None  # the exception's class, None when it cannot be found

    @property
    def exit_code(self) -> ExitCode:
        """The error's own code (e.g. 65 for an InputImageError), else a session failure."""
        if self.error is not None and issubclass(self.error, CsvdBidsError):
            return self.error.exit_code
        os_error = self.error is not None and issubclass(self.error, OSError)
        if os_error and _NO_SPACE.search(self.message):  # the work dir's disk
            return ExitCode.CANNOT_WRITE
        return ExitCode.SESSION_FAILED


# the last line of a Python traceback: "package.module.ErrorClass: message"
_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*)(?::\s|$)")


def exception_class(name: str) -> type[BaseException] | None:
    """The exception class a traceback names (``csvd_bids.errors.InputImageError``,
    ``ValueError``), if it can be imported."""
    module, _, attribute = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module) if module else builtins, attribute)
    except (ImportError, AttributeError, ValueError):
        return None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def configure_nipype(config: RunConfig) -> Path:
    """Apply the run's nipype settings; returns this run's crash folder.

    Must run before the graph is built: nodes read some settings (such as
    remove_unnecessary_outputs, which enters their hashes) when they are created.
    """
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    crash_dir = (
        config.work_dir / "crash" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    )

    nipype_config.update_config(
        {
            "execution": {
                "crashdump_dir": str(crash_dir),
                "crashfile_format": "txt",
                "stop_on_first_crash": config.stop_on_first_crash,
                "remove_unnecessary_outputs": False,
                "create_report": False,
                "check_version": False,
                # how long the plugin sleeps between looks at its running nodes (cli/parser.py)
                "poll_sleep_duration": config.plugin_args.get("poll_sleep_duration", 2),
            },
            "logging": {
                "workflow_level": "INFO" if config.verbosity else "WARNING",
                "interface_level": "INFO" if config.verbosity > 1 else "WARNING",
                "utils_level": "WARNING",
            },
            "monitoring": {"enabled": False},
        }
    )
    nipype_logging.update_logging(nipype_config)
    return crash_dir


def read_crash(path: Path) -> Failure:
    lines = path.read_text(errors="replace").splitlines()
    node = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Node:")), "?")
    tail = [ln for ln in lines if ln.strip()]
    message = next(
        (ln.strip() for ln in reversed(tail) if "Error" in ln or "Exception" in ln),
        tail[-1].strip() if tail else "unknown error",
    )
    parts = node.split(".")
    session_wf = next((p for p in parts if p.startswith("sub_") and p.endswith("_wf")), "?")
    error = None
    for line in reversed(tail):  # the innermost exception is the last traceback line
        match = _EXCEPTION_LINE.match(line)
        if match and (error := exception_class(match.group(1))) is not None:
            break
    return Failure(session_wf, node, message, path, error)


def plugin_runner(config: RunConfig):
    """The plugin ``workflow.run`` takes: ours for MultiProc (longest chain first) and SLURM
    (one squeue per poll), else the name of nipype's."""
    if config.plugin == "MultiProc":
        from csvd_bids.workflows.scheduling import MultiProcPlugin

        return MultiProcPlugin(plugin_args=config.plugin_args)
    if config.plugin == "SLURM":
        from csvd_bids.workflows.cluster import SLURMPlugin

        return SLURMPlugin(plugin_args=config.plugin_args)
    return config.plugin


def run_graph(workflow, config: RunConfig, crash_dir: Path) -> list[Failure]:
    """Run; return one Failure per crashed node (the first per session is what matters)."""
    if config.write_graph:
        try:
            workflow.write_graph(graph2use="colored", format="svg", simple_form=True)
        except Exception as exc:  # graphviz missing is not a reason to stop
            LOGGER.warning("could not write the workflow graph (%s)", exc)
    try:
        workflow.run(plugin=plugin_runner(config), plugin_args=config.plugin_args)
    except Exception as exc:
        # nipype raises once a node crashed (at the end, or at once with stop_on_first_crash);
        # the crash files say what failed. Without them the error is ours: let it through.
        if not crash_dir.exists():
            raise
        LOGGER.debug("nipype: %s", exc)
    if not crash_dir.exists():
        return []
    return [read_crash(path) for path in sorted(crash_dir.glob("crash-*"))]
