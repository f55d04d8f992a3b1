"""Who may use a work directory, and one run at a time in it.

nipype trusts the work dir: on resume it unpickles the node results it finds there, and
unpickling runs code. A work dir that another user owns could therefore run that user's code
as whoever resumes from it, so it is refused (root's are accepted: root can do anything
already). Two runs of one session in one work dir race on nipype's own files (``_unfinished.json``);
the second one is stopped at once by an exclusive lock per session that the kernel drops when
the process ends, however it ends (kill -9 included), so a resume never finds a stale lock.
(flock is local to a machine on some network file systems: runs started on two cluster nodes
are not stopped there.)
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from csvd_bids.errors import UsageError, WorkDirBusyError

LOCK_FOLDER = ".locks"


def check_work_dir_owner(work_dir: Path) -> None:
    """Refuse a work dir, or a folder directly inside it, owned by another user than this
    one or root."""
    allowed = {os.geteuid(), 0}
    if not work_dir.exists():
        return
    # the folders directly inside: the node results (csvd_bids_<major>_<minor>_wf), caches,
    # crash files, locks
    for folder in [work_dir, *(p for p in work_dir.iterdir() if p.is_dir())]:
        if folder.stat().st_uid not in allowed:
            raise UsageError(
                f"{folder}: owned by user id {folder.stat().st_uid}, not by this user "
                f"({os.geteuid()}); a work dir's cached results are loaded (unpickled) on "
                "resume, so only your own is used. Give a work dir of your own with -w "
                "(in Docker, run with -u $(id -u):$(id -g))"
            )


@contextmanager
def session_locks(work_dir: Path, prefixes: list[str]) -> Iterator[None]:
    """Hold the work dir's lock of every session (``sub-01_ses-1``) for the duration of the
    block; WorkDirBusyError, naming the sessions and the run that holds them, if another
    process holds any. Runs of different sessions may share a work dir: their nodes live
    in different folders."""
    folder = work_dir / LOCK_FOLDER
    folder.mkdir(exist_ok=True)
    with ExitStack() as held:
        busy = []
        for prefix in sorted(prefixes):
            handle = held.enter_context(open(folder / f"{prefix}.lock", "a+"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                busy.append(f"{prefix} ({handle.read().strip() or 'another process'})")
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.ctime()}")
            handle.flush()
        if busy:
            raise WorkDirBusyError(
                f"{work_dir}: another csvd-bids run is processing {', '.join(busy)} in this "
                "work dir; wait for it to end, or give a different work dir with -w"
            )
        yield
    # the kernel drops each lock as its file is closed (and when a process dies)
