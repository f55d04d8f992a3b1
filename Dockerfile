# csvd-bids BIDS App image.
#   docker build -t csvd-bids/csvd-bids:$(cat version) .                      (CPU torch)
#   docker build --build-arg TORCH_VARIANT=cuda -t csvd-bids/csvd-bids:$(cat version)-cuda .
# The entrypoint is the app; it runs with --read-only and as any user (-u $(id -u)): caches go
# to the work directory given with -w (see README.md).
FROM python:3.11-slim-bookworm

ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG BIDS_VALIDATOR_VERSION=1.15.0

# Node.js for the official BIDS validator; graphviz for --write-graph.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm graphviz \
    && npm install -g --no-fund --no-audit bids-validator@${BIDS_VALIDATOR_VERSION} \
    && npm cache clean --force \
    && apt-get clean && rm -rf /var/lib/apt/lists/*

# torch first and pinned, from the CPU index unless the CUDA build is asked for.
RUN if [ "$TORCH_VARIANT" = "cuda" ]; then \
        pip install --no-cache-dir torch==${TORCH_VERSION}; \
    else \
        pip install --no-cache-dir torch==${TORCH_VERSION} --index-url https://download.pytorch.org/whl/cpu; \
    fi

WORKDIR /src
COPY pyproject.toml constraints.txt version README.md /src/
COPY csvd_bids /src/csvd_bids
COPY run.py /src/run.py
RUN pip install --no-cache-dir -c constraints.txt /src \
    && python -c "import csvd_bids.preproc.template as t; t.load_template()"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NIPYPE_NO_ET=1 \
    CSVD_BIDS_DOCKER_TAG=csvd-bids/csvd-bids

# Any user may run it and nothing under / needs to be writable: the files are world-readable
# as pip and COPY leave them (a `chmod -R` here copied all of /usr/local into a 2.7 GB layer),
# caches and, without a tmpfs on /tmp, the temporary folder go to the work directory (-w).
WORKDIR /tmp
ENTRYPOINT ["csvd-bids"]
