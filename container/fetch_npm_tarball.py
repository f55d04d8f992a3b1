"""Download an npm package tarball and check it against the registry's sha512 integrity.

    python3 fetch_npm_tarball.py NAME VERSION SHA512_BASE64 OUT.tgz [REGISTRY]

Used by the Dockerfile's validator stage (Python is in every base image, npm is not). Exits
non-zero, naming the URL and both digests, when the tarball is not the pinned one.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import urllib.request


def main(argv: list[str]) -> int:
    name, version, expected, out = argv[:4]
    registry = (argv[4] if len(argv) > 4 else "https://registry.npmjs.org").rstrip("/")
    url = f"{registry}/{name}/-/{name.split('/')[-1]}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != expected.removeprefix("sha512-"):
        print(f"{url}: sha512 {digest}, expected {expected}", file=sys.stderr)
        return 1
    with open(out, "wb") as handle:
        handle.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
