# Cairn: one image for the node (`cairn server`) and the CLI; the example SDK endpoint runs from
# it too (`python -m sdk examples.demo:app`). See README "Deploying".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/cairn
# Dependencies first (a layer that survives code changes), then the code.
COPY pyproject.toml README.md ./
COPY partition_processor ./partition_processor
COPY runtime ./runtime
COPY sdk ./sdk
COPY proto ./proto
COPY examples ./examples
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/cairn --create-home cairn

USER cairn
# A node keeps its RocksDB store (and the local log, if used) here: mount a volume.
VOLUME ["/var/lib/cairn"]
# The internal (node-to-node) port of a cluster node listens on every interface too: a cluster
# node must then be told the name its peers reach it at (--advertised-address).
ENV CAIRN_DATA_DIR=/var/lib/cairn \
    CAIRN_INGRESS_BIND=0.0.0.0:8080 \
    CAIRN_ADMIN_BIND=0.0.0.0:9070 \
    CAIRN_INTERNAL_BIND=0.0.0.0:5122
EXPOSE 8080 9070 5122

ENTRYPOINT ["cairn"]
CMD ["server"]
