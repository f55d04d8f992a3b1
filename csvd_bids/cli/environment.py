"""Make the process safe for read-only containers and non-root users.

Libraries that keep caches or settings under $HOME (matplotlib, torch, nipype, numba, ...) are
pointed at the work directory before they are imported, so ``docker run --read-only -u UID``
works with only the output and work directories writable. So is the temporary folder when
there is no usable one: Docker's ``--read-only`` gives no tmpfs on /tmp (nipype's workers then
found no temporary folder), and ``apptainer --containall`` may pass a host ``$TMPDIR`` that is
not bound inside. And so is ``$LOGNAME``, which nipype's SLURM plugin names its jobs after and
which cron, ``env -i``, ``apptainer --cleanenv`` and many containers leave unset. The worker
processes also start with numpy's huge-page advice off (``NUMPY_MADVISE_HUGEPAGE``, below).
"""

from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path

_CACHE_VARIABLES = {
    "MPLCONFIGDIR": "matplotlib",
    "TORCH_HOME": "torch",
    "XDG_CACHE_HOME": "xdg-cache",
    "XDG_CONFIG_HOME": "xdg-config",
    "NUMBA_CACHE_DIR": "numba",
    "NIPYPE_CONFIG_DIR": "nipype",
}


def _writable(path: str | None) -> bool:
    return bool(path) and os.path.isdir(path) and os.access(path, os.W_OK)


def _usable_tempdir() -> bool:
    """Whether $TMPDIR (when set) and the folder ``tempfile`` would use are writable folders."""
    if "TMPDIR" in os.environ and not _writable(os.environ["TMPDIR"]):
        return False
    try:
        return _writable(tempfile.gettempdir())
    except FileNotFoundError:  # no usable temporary folder anywhere
        return False


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry (``docker run -u 1234``)
        return str(os.getuid())


def configure_environment(work_dir: Path) -> None:
    cache = work_dir / ".cache"
    for variable, folder in _CACHE_VARIABLES.items():
        if not _writable(os.environ.get(variable)):
            os.environ[variable] = str(cache / folder)
            (cache / folder).mkdir(parents=True, exist_ok=True)
    if not _writable(os.environ.get("HOME")):
        os.environ["HOME"] = str(cache / "home")
        (cache / "home").mkdir(parents=True, exist_ok=True)
    if not _usable_tempdir():
        os.environ["TMPDIR"] = str(cache / "tmp")
        (cache / "tmp").mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = None  # ``tempfile`` caches its choice: choose again
    # nipype's SLURM plugin reads os.environ["LOGNAME"] for each job's name: a KeyError
    # at the first submission without it.
    os.environ.setdefault("LOGNAME", _user_name())
    # No network calls: nipype's version check (etelemetry) is off.
    os.environ["NIPYPE_NO_ET"] = "1"
    # numpy asks the kernel for transparent huge pages for every large array; where the kernel
    # then compacts memory to find them (THP defrag "madvise", the common default), the worker
    # processes, which numpy imports anew, spent more time in the kernel than computing: the
    # DWI split of a 1.5 mm series 12.5-13.2 s instead of 3.6-3.7 s, a 1 mm session 122 s
    # instead of 106-112 s (2 cores). Outputs do not depend on it; a caller's setting is kept.
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
