# syntax=docker/dockerfile:1
# Build: docker build -t bik-bridge .
# Run:   docker run -p 8080:8080 -v $PWD/bik-bridge.yaml:/etc/bik-bridge/config.yaml:ro \
#          -e BIK_BRIDGE_TOKEN=... -e BIGCOMMERCE_STORE_HASH=... -e BIGCOMMERCE_ACCESS_TOKEN=... bik-bridge

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY adapters ./adapters
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIK_BRIDGE_CONFIG=/etc/bik-bridge/config.yaml
RUN useradd --system --uid 10001 --home-dir /var/lib/bik-bridge --create-home bik
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
COPY config.example.yaml /etc/bik-bridge/config.yaml
WORKDIR /var/lib/bik-bridge
USER bik
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2).status == 200 else 1)"]
ENTRYPOINT ["bik-bridge"]
CMD ["serve", "--host", "0.0.0.0"]
