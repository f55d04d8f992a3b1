#!/bin/sh
# Regenerates container/requirements-{cpu,cuda}.lock: every Python package of the image, pinned
# with its sha256 hashes (pip-tools' pip-compile --generate-hashes), from pyproject.toml's
# dependencies plus torch 2.13.0 (container/torch-{cpu,cuda}.in). Run it on Linux x86_64 with
# Python 3.11 (the image's platform): markers are resolved for the machine that runs it.
#   pip install pip-tools && sh container/lock.sh            (or: make lock)
# Environment: COMPILER (the pip-compile command; not PIP_..., which pip reads as its own
# option), INDEX_URL (default PyPI), TORCH_INDEX_URL
# (where torch 2.13.0+cpu lies; default the PyTorch CPU index), TORCH_FIND_LINKS (a folder or
# URL of wheels to use instead of TORCH_INDEX_URL), VARIANTS (default "cpu cuda"), UPGRADE=1
# (newer versions of everything; otherwise pip-compile keeps the pins already in the locks).
# The hashes are those of the files the indexes serve: a lock made against a local rebuild of a
# wheel only installs that rebuild.
set -eu
cd "$(dirname "$0")/.."

COMPILER=${COMPILER:-pip-compile}
INDEX_URL=${INDEX_URL:-https://pypi.org/simple}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
export PIP_CONFIG_FILE=/dev/null # no site or user pip configuration in the lock
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT || true

for variant in ${VARIANTS:-cpu cuda}; do
    set -- --index-url "$INDEX_URL"
    if [ "$variant" = cpu ]; then
        if [ -n "${TORCH_FIND_LINKS:-}" ]; then
            set -- "$@" --find-links "$TORCH_FIND_LINKS"
        else
            set -- "$@" --extra-index-url "$TORCH_INDEX_URL"
        fi
    fi
    [ "${UPGRADE:-0}" = 1 ] && set -- "$@" --upgrade
    "$COMPILER" --quiet --generate-hashes --allow-unsafe --strip-extras --no-header \
        --no-emit-index-url --no-emit-find-links --no-emit-trusted-host "$@" \
        --output-file "container/requirements-$variant.lock" \
        pyproject.toml "container/torch-$variant.in"
    lock=container/requirements-$variant.lock
    { printf '%s\n' "# Made by container/lock.sh (make lock): pip-compile --generate-hashes of" \
        "# pyproject.toml and container/torch-$variant.in. Do not edit; regenerate." \
        && cat "$lock"; } >"$lock.tmp" && mv "$lock.tmp" "$lock"
    echo "lock.sh: $lock"
done
