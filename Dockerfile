# zonectl images (build context: the repository root).
#   controller: podman build -t zonectl .                        (default target)
#   gateway:    podman build --target gateway -t zonectl-gateway .
# Multi-stage: wheels are built in a throw-away stage, the runtime stages only install them; both
# runtime images run as a fixed non-root uid unless the gateway's NET_ADMIN work needs root (the
# DaemonSet then drops every capability except NET_ADMIN).

ARG PYTHON=python:3.11-slim-bookworm

FROM ${PYTHON} AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml ./
COPY zonectl ./zonectl
# README.md is the package's readme in pyproject; an empty one keeps the build independent of docs
RUN touch README.md && pip wheel --wheel-dir /wheels . prometheus-client

FROM ${PYTHON} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels zonectl prometheus-client \
    && useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin zonectl
ENTRYPOINT ["zonectl"]

# ----- the gateway: NAT64 egress on hostNetwork nodes --------------------------------------------
FROM runtime AS gateway
# Tayga (NAT64), ip6tables/iptables (zone filter), nftables (masquerade/SNAT), iproute2 (routes, rules)
RUN apt-get update \
    && apt-get install -y --no-install-recommends tayga iptables nftables iproute2 \
    && rm -rf /var/lib/apt/lists/*
USER 0
CMD ["run", "gateway", "--config", "/etc/zonectl/zonectl.yaml", "--inputs", "/etc/zonectl/gateway/gateway.json"]

# ----- the controller: kopf operator + webhooks (last stage: the default target) -----------------
FROM runtime AS controller
USER 65532:65532
CMD ["run", "controller", "--config", "/etc/zonectl/zonectl.yaml"]
