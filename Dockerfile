# csvd-bids BIDS App image. Build with `make image` (docker or podman), or by hand:
#   docker build -t csvd-bids/csvd-bids:$(cat version) .                          (CPU torch)
#   docker build --build-arg TORCH_VARIANT=cuda --build-arg TORCH_INDEX_URL= \
#     -t csvd-bids/csvd-bids:$(cat version)-cuda .                              (CUDA torch)
# Build arguments:
#   BASE_IMAGE       any Debian bookworm image with python3 3.11 and its venv module; default
#                    the Docker Hub Python image; container/make-base.sh builds one from Debian
#                    packages alone (localhost/csvd-bids-base:bookworm) for sites without Docker Hub
#   TORCH_VARIANT    cpu (torch 2.13.0+cpu) or cuda (torch 2.13.0 and its nvidia-* wheels)
#   TORCH_INDEX_URL  extra index that serves torch; default the PyTorch CPU index; empty: none
#                    (the CUDA build comes from PyPI)
#   PIP_INDEX_URL    the index for everything else; default PyPI
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret (nothing of it stays in
# the image): --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
# Python packages come only from container/requirements-$TORCH_VARIANT.lock, pinned and hashed
# (pip --require-hashes); see README.md for the command that regenerates the lock files.
# The entrypoint is the app; it runs with --read-only and as any user (-u $(id -u)): caches and,
# without a tmpfs on /tmp, the temporary folder go to the work directory given with -w.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# The official BIDS validator, legacy 1.x (the schema validator 2.x is not on this npm registry).
# Its npm tarball already holds the whole command line tool as one esbuild bundle
# (dist/commonjs/cli.js, 12 MB, Node.js built-ins only), so the image takes that file and not
# the 899 npm packages that `npm install` adds (859 MB: next, jest, lerna, ...; 17 of them want
# Node >= 20 where Debian has 18). The tarball is checked against the registry's sha512.
# Same --json report, byte for byte, on valid and invalid datasets as the full install.
FROM ${BASE_IMAGE} AS validator
ARG BIDS_VALIDATOR_VERSION=1.15.0
ARG BIDS_VALIDATOR_SHA512=sha512-gZ0UUTLBt5L3nuhLia/VfvK5OaM0yoTBPJvGmC4slQ8yDzpanWZOHHBS+PAua0riQ7Cwa51HER/Fnd9v17MHUw==
ARG NPM_REGISTRY=https://registry.npmjs.org
RUN --mount=type=bind,source=container/fetch_npm_tarball.py,target=/tmp/fetch_npm_tarball.py \
    --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \
    && python3 /tmp/fetch_npm_tarball.py bids-validator "$BIDS_VALIDATOR_VERSION" \
        "$BIDS_VALIDATOR_SHA512" /tmp/bids-validator.tgz "$NPM_REGISTRY" \
    && mkdir -p /opt/bids-validator/node_modules/bids-validator \
    && tar -xzf /tmp/bids-validator.tgz -C /opt/bids-validator/node_modules/bids-validator \
        --strip-components=1 --no-same-owner \
        package/package.json package/bin package/dist/commonjs/cli.js \
    && mkdir -p /opt/bids-validator/node_modules/.bin \
    && ln -s ../bids-validator/bin/bids-validator /opt/bids-validator/node_modules/.bin/bids-validator \
    && rm /tmp/bids-validator.tgz

FROM ${BASE_IMAGE}

# Node.js runs the validator; graphviz draws --write-graph. Lists and caches go in this layer.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs graphviz \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log

ENV PATH=/opt/venv/bin:/opt/bids-validator/node_modules/.bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NIPYPE_NO_ET=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CSVD_BIDS_DOCKER_TAG=csvd-bids/csvd-bids

# Declared here, not above: the layers above stay shared between the CPU and CUDA builds.
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL=https://pypi.org/simple

# buildah (podman) keys its layer cache on a RUN's text and build arguments, not on the content
# of the files a RUN --mount=type=bind reads: a rebuild after a code change reused the old app.
# `make image` passes a digest of the lock and one of the source; a changed digest reruns its
# layer (plain `docker build`/`podman build` without them: use --no-cache after changes).

# A venv (Debian's Python refuses pip in the system site, PEP 668). Every package, torch
# included, is pinned with its hash in the lock.
ARG LOCK_DIGEST=unset
RUN --mount=type=bind,source=container,target=/mnt/container --mount=type=secret,id=ca \
    echo "lock digest: $LOCK_DIGEST" \
    && if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && case "$TORCH_VARIANT" in cpu|cuda) ;; *) echo "TORCH_VARIANT must be cpu or cuda" >&2; exit 1;; esac \
    && python3 -m venv /opt/venv \
    && pip install --no-cache-dir --require-hashes --no-deps --index-url "$PIP_INDEX_URL" \
        ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        -r /mnt/container/requirements-${TORCH_VARIANT}.lock \
    && rm -rf /root/.cache

# The app, without dependencies, from the build context (a bind mount, so no copy of the source
# stays behind); its own layer, so a code change leaves the 2 GB one above cached. `pip check`
# fails the build if the lock misses a dependency.
ARG SOURCE_DIGEST=unset
RUN --mount=type=bind,source=.,target=/mnt/context \
    echo "source digest: $SOURCE_DIGEST" \
    && cp -r /mnt/context /tmp/src \
    && pip install --no-cache-dir --no-deps --no-build-isolation --no-index /tmp/src \
    && rm -rf /tmp/src \
    && pip check \
    && MPLCONFIGDIR=/tmp/mpl python3 -c "import csvd_bids.preproc.template as t; t.load_template()" \
    && rm -rf /tmp/mpl /root/.cache

# Last: the validator changes independently of the Python layer above.
COPY --from=validator /opt/bids-validator /opt/bids-validator

WORKDIR /tmp
ENTRYPOINT ["csvd-bids"]
