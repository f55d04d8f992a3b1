#!/bin/sh
# Builds a minimal Debian bookworm base image with Python 3.11 from Debian packages only, and
# imports it into podman or docker. For sites that reach a Debian mirror (or a local mirror or
# apt cache) but not Docker Hub: build the app on it with
#   make image BASE_IMAGE=localhost/csvd-bids-base:bookworm
# Needs mmdebstrap (apt-get install mmdebstrap) and root, or a user namespace (mmdebstrap
# --mode=unshare). Environment: MIRROR (default http://deb.debian.org/debian), SECURITY_MIRROR,
# TAG (default localhost/csvd-bids-base:bookworm), ENGINE (podman or docker; default: whichever
# is on PATH, podman first).
set -eu

MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
TAG=${TAG:-localhost/csvd-bids-base:bookworm}
ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}

command -v mmdebstrap >/dev/null 2>&1 || { echo "make-base.sh: mmdebstrap not found (apt-get install mmdebstrap)" >&2; exit 1; }
command -v "$ENGINE" >/dev/null 2>&1 || { echo "make-base.sh: $ENGINE not found" >&2; exit 1; }

tarball=$(mktemp /tmp/csvd-bids-base.XXXXXX.tar)
trap 'rm -f "$tarball"' EXIT

# minbase + what the Dockerfile needs from the base: python3 (3.11 in bookworm) with venv and
# ca-certificates. Documentation, man pages and locales are left out (as in the slim images);
# the apt lists and caches are removed so the image carries no index.
mmdebstrap --variant=minbase --format=tar \
  --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/apt/* "$1"/var/log/dpkg.log' \
  bookworm "$tarball" \
  "deb $MIRROR bookworm main" \
  "deb $MIRROR bookworm-updates main" \
  "deb $SECURITY_MIRROR bookworm-security main"

"$ENGINE" import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  "$tarball" "$TAG"
"$ENGINE" run --rm "$TAG" python3 -c 'import sys, venv, ssl; assert sys.version_info[:2] == (3, 11), sys.version; print("base ok:", sys.version.split()[0])'
echo "make-base.sh: built $TAG"
