"""csvd-bids: a BIDS App for the MRI markers of cerebral small vessel disease."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("csvd-bids")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    from pathlib import Path

    __version__ = (Path(__file__).resolve().parent.parent / "version").read_text().strip()
