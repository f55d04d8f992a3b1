"""Exit codes and the errors that map onto them.

The codes follow the BIDS Apps execution-spec draft where it defines one (16, 17, 18, 64, 66)
and sysexits.h elsewhere. README.md lists them for users; keep the two in step.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    SESSION_FAILED = 1  # the run finished but one or more sessions failed in processing
    VALIDATION_FAILED = 16  # not a BIDS dataset, or the BIDS validator reported errors
    UNKNOWN_LEVEL = 17  # analysis level other than participant / group
    NO_SELECTION = 18  # labels or filters selected no subject, session or file
    USAGE = 64  # bad command line (including output or work dir inside bids_dir)
    INPUT_DATA = 65  # an input image is unreadable, truncated, 4D where 3D is expected, singular...
    NO_INPUT = 66  # bids_dir (or a file named on the command line) does not exist
    CANNOT_WRITE = 73  # the output or work dir cannot be created or written, or the disk is full
    WORK_DIR_BUSY = 75  # another run holds the work dir's lock (sysexits EX_TEMPFAIL: retry later)


class CsvdBidsError(Exception):
    """An error that ends the run with a message for the user and a documented exit code."""

    exit_code: ExitCode = ExitCode.SESSION_FAILED

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CsvdBidsError):
    exit_code = ExitCode.USAGE


class ValidationError(CsvdBidsError):
    exit_code = ExitCode.VALIDATION_FAILED


class NoSelectionError(CsvdBidsError):
    exit_code = ExitCode.NO_SELECTION


class NoInputError(CsvdBidsError):
    exit_code = ExitCode.NO_INPUT


class OutputError(CsvdBidsError):
    exit_code = ExitCode.CANNOT_WRITE


class WorkDirBusyError(CsvdBidsError):
    exit_code = ExitCode.WORK_DIR_BUSY


class InputFileError(CsvdBidsError):
    """An input file that cannot be used; the message always names the file."""

    exit_code = ExitCode.INPUT_DATA

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class InputImageError(InputFileError):
    """An input image that cannot be used (unreadable, truncated, constant...)."""
