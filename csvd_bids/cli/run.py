"""Entry point: ``csvd-bids bids_dir output_dir {participant,group}`` (and ``run.py``)."""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from csvd_bids.cli.environment import configure_environment
from csvd_bids.cli.parser import parse_args
from csvd_bids.cli.workdir import check_work_dir_owner, session_locks
from csvd_bids.config import RunConfig
from csvd_bids.errors import CsvdBidsError, ExitCode, OutputError, UsageError

if TYPE_CHECKING:
    from csvd_bids.planning import Rejection

LOGGER = logging.getLogger("csvd_bids")


def _setup_logging(verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%H:%M:%S"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    LOGGER.propagate = False


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _ensure_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(
            f"{folder}: the {what} cannot be created or written ({exc.strerror})"
        ) from exc


def check_inputs(config: RunConfig) -> None:
    """Everything that can be refused before a single folder is created."""
    from csvd_bids.bids.validate import check_bids_root, validate_dataset

    check_bids_root(config.bids_dir)
    if _inside(config.output_dir, config.bids_dir):
        raise UsageError(
            f"{config.output_dir}: output_dir must not be inside bids_dir "
            f"({config.bids_dir}); csvd-bids never writes into the input dataset"
        )
    if "participant" in config.analysis_levels and _inside(config.work_dir, config.bids_dir):
        raise UsageError(
            f"{config.work_dir}: the work dir (-w) must not be inside bids_dir ({config.bids_dir})"
        )
    if "participant" in config.analysis_levels and not config.reports_only:
        if config.skip_validation:
            LOGGER.info("BIDS validation skipped (--skip-bids-validation)")
        else:
            validate_dataset(config.bids_dir)


def run_participant_level(config: RunConfig) -> ExitCode:
    from csvd_bids.outputs.dataset import init_output_dir
    from csvd_bids.planning import plan_prefix, plan_sessions
    from csvd_bids.reports.build import build_session_reports
    from csvd_bids.workflows.base import init_csvd_wf
    from csvd_bids.workflows.execute import configure_nipype, run_graph

    plans, rejected = plan_sessions(config)
    failures = []
    if plans:
        LOGGER.info("participant level: %d session(s); work dir %s", len(plans), config.work_dir)
        with session_locks(config.work_dir, [plan_prefix(p) for p in plans]):
            init_output_dir(config.output_dir, config.bids_dir)
            try:
                crash_dir = configure_nipype(config)
                failures = run_graph(init_csvd_wf(plans, config), config, crash_dir)
            finally:
                init_output_dir(config.output_dir, config.bids_dir)
        build_session_reports(config.output_dir, prefixes={plan_prefix(p) for p in plans})

    return report_sessions(plans, rejected, failures, config.output_dir)


def report_sessions(
    plans: list[dict], rejected: dict[str, Rejection], failures: list, output_dir: Path
) -> ExitCode:
    """Print one line per session and return the run's exit code."""
    from csvd_bids.planning import plan_prefix
    from csvd_bids.workflows.base import session_wf_name

    failed = {f.session_wf: f for f in reversed(failures)}  # the first crash of each session
    print("\ncsvd-bids participant level:")
    for plan in plans:
        failure = failed.get(session_wf_name(plan))
        if failure:
            print(
                f"  FAILED  {plan_prefix(plan)}: {failure.message}\n"
                f"          crash file: {failure.crash_file}"
            )
        else:
            print(f"  ok      {plan_prefix(plan)}")
    for prefix, rejection in rejected.items():
        print(f"  FAILED  {prefix}: {rejection.message}")
    total = len(plans) + len(rejected)
    print(
        f"  {total - len(rejected) - len(failed)} of {total} session(s) finished; "
        f"outputs in {output_dir}\n"
    )
    # each failure's code comes from its exception's class; bad data (65) wins, then a full
    # disk (73), then a selection that left a session nothing to work on (18), then any fault
    codes = {f.exit_code for f in failed.values()} | {r.exit_code for r in rejected.values()}
    for code in (ExitCode.INPUT_DATA, ExitCode.CANNOT_WRITE, ExitCode.NO_SELECTION):
        if code in codes:
            return code
    return min(codes) if codes else ExitCode.OK


def run_group(config: RunConfig) -> None:
    from csvd_bids.group.aggregate import SkippedSummariesError, run_group_level
    from csvd_bids.reports.build import build_group_report

    lsa = None
    if config.lsa_model:
        from csvd_bids.group.lsa_model import TrainSettings

        lsa = TrainSettings(
            folds=config.lsa_folds,
            epochs=config.lsa_epochs,
            saliency_patches=config.lsa_saliency_patches,
            device=config.device,
        )
    try:
        run_group_level(
            config.output_dir,
            config.bids_dir,
            config.group_outcome,
            config.group_covariates or None,
            lsa,
            config.lsa_permutations,
        )
    except SkippedSummariesError:  # the tables of the other sessions were written: report them
        build_group_report(config.output_dir)
        raise
    build_group_report(config.output_dir)


def rebuild_reports(config: RunConfig) -> None:
    """--reports-only: the HTML reports from the outputs already there; nothing is run."""
    from csvd_bids.reports.build import build_group_report, build_session_reports

    if "participant" in config.analysis_levels:
        build_session_reports(
            config.output_dir, config.participant_labels, config.session_labels, required=True
        )
    if "group" in config.analysis_levels:
        build_group_report(config.output_dir)


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except CsvdBidsError as exc:
        print(f"csvd-bids: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    _setup_logging(config.verbosity)
    code = ExitCode.OK
    try:
        check_inputs(config)
        _ensure_writable(config.output_dir, "output directory")
        _ensure_writable(config.work_dir, "work directory")
        check_work_dir_owner(config.work_dir)
        configure_environment(config.work_dir)
        if config.reports_only:
            rebuild_reports(config)
        else:
            if "participant" in config.analysis_levels:
                code = run_participant_level(config)
            if "group" in config.analysis_levels:
                run_group(config)
    except CsvdBidsError as exc:
        LOGGER.error("%s", exc)
        # both levels in one call: a failed participant level's code stays the run's code
        return int(code or exc.exit_code)
    except KeyboardInterrupt:
        LOGGER.error("interrupted; re-run with the same work dir to resume")
        return 130
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
