# syntax=docker/dockerfile:1
# Build: docker build -t bik-bridge .
# Run:   docker run -p 8080:8080 -v $PWD/bik-bridge.yaml:/etc/bik-bridge/config.yaml:ro \
#          -v bik-bridge-data:/var/lib/bik-bridge \
#          -e BIK_BRIDGE_TOKEN=... -e BIGCOMMERCE_STORE_HASH=... -e BIGCOMMERCE_ACCESS_TOKEN=... bik-bridge
# Server settings from the environment (they win over the config file): BIK_BRIDGE_HOST, BIK_BRIDGE_PORT,
# BIK_BRIDGE_WORKERS, BIK_BRIDGE_WORKER_CONNECTIONS. See docs/deploy.md.

# Stage 1: wheels for the bridge and every dependency; build tools stay in this stage.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY adapters ./adapters
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Stage 2: the runtime, installed from those wheels only, run as an unprivileged user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIK_BRIDGE_CONFIG=/etc/bik-bridge/config.yaml \
    BIK_BRIDGE_HOST=0.0.0.0 \
    BIK_BRIDGE_PORT=8080 \
    BIK_BRIDGE_WORKERS=2 \
    BIK_BRIDGE_WORKER_CONNECTIONS=1000
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/bik-bridge --create-home bik
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/bik_bridge-*.whl && rm -rf /wheels
# A starting config (the BigCommerce example, secrets from the environment); mount your own over it.
COPY config.example.yaml /etc/bik-bridge/config.yaml
# SQLite files (idempotency, local platform) are relative to this directory: keep it on a volume.
WORKDIR /var/lib/bik-bridge
VOLUME ["/var/lib/bik-bridge"]
# Numeric, so that a platform enforcing a non-root user (runAsNonRoot) can check it.
USER 10001
EXPOSE 8080
# Asks the running server on this container's loopback; reads BIK_BRIDGE_PORT and the config's base_path.
# `|| exit 1`: Docker reserves exit code 2, which the CLI uses for an unreadable config.
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 CMD ["sh", "-c", "bik-bridge healthcheck || exit 1"]
ENTRYPOINT ["bik-bridge"]
CMD ["serve"]
