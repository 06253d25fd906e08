"""The bare stack the bridge is measured against: the same upstream calls with nothing of the bridge around them.

POST /replay looks the draft id up in Redis and returns what is stored there (storing the body it was sent the
first time: an answer of about the size the bridge replays), with the Redis client the bridge's idempotency store
makes (its timeouts, no retries). POST /place looks the draft up on the store (`GET /v2/orders?external_order_id=`,
the bridge's lookup before create) and, when the store answers that no order carries it, sends the create body for
the draft (the bridge's create), with one pooled requests session; it returns the store's answer. No auth, validation,
idempotency record, quota gate, mapping or logging: what is left is gunicorn, Flask, Redis and requests.

`python -m bench.reference serve --config FILE` serves it under gunicorn with exactly the options
`bik-bridge serve` derives from FILE (`gunicorn_options`: worker class, workers, connections per worker,
keep-alive), and the store and Redis the file names. The create body template comes from
BENCH_REFERENCE_CREATE_BODY (a file with __DRAFT__ where the draft id goes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional

from gunicorn.app.base import BaseApplication

from bridge.bootstrap import load_config
from bridge.config import Config
from bridge.http.server import gunicorn_options


def create_app(config: Config, create_body: str):
    """The two bare endpoints, built inside a worker after gevent has patched it."""
    import requests
    from flask import Flask, Response, request
    from requests.adapters import HTTPAdapter

    from adapters.stores.redis_store import store_client

    app = Flask("bench_reference")
    # The client the bridge's idempotency store makes (timeouts, no retries), so that both pay the same per command.
    client = store_client(config.idempotency.redis_url.get_secret_value())
    namespace = f"{config.idempotency_namespace()}:reference"
    settings = config.bigcommerce
    orders_url = f"{settings.api_base_url.rstrip('/')}/stores/{settings.store_hash}/v2/orders"
    headers = {"X-Auth-Token": settings.access_token.get_secret_value(), "Accept": "application/json"}
    post_headers = {**headers, "Content-Type": "application/json"}
    session = requests.Session()
    # As the bridge sizes its pool: a connection for every request a worker may hold, opened only when needed.
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=config.server.worker_connections,
                                         max_retries=0))
    timeout = (config.upstream.connect_timeout_seconds, config.upstream.timeout_seconds)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', mimetype="application/json")

    @app.post("/replay")
    def replay() -> Response:
        body = request.get_data()
        key = f"{namespace}:{json.loads(body)['draftOrderId']}"
        stored = client.get(key)
        if stored is None:
            stored = body  # an answer of about the size the bridge replays
            client.set(key, stored, ex=3600)
        return Response(stored, mimetype="application/json")

    @app.post("/place")
    def place() -> Response:
        draft = json.loads(request.get_data())["draftOrderId"]
        found = session.get(orders_url, params={"external_order_id": draft}, headers=headers, timeout=timeout)
        if found.status_code != 204:
            return Response(found.content, status=found.status_code if found.status_code >= 400 else 409,
                            mimetype="application/json")
        answer = session.post(orders_url, data=create_body.replace("__DRAFT__", draft), headers=post_headers,
                              timeout=timeout)
        return Response(answer.content, status=answer.status_code, mimetype="application/json")

    return app


class ReferenceServer(BaseApplication):
    """gunicorn with the options `bik-bridge serve` would use for the same config, serving the bare app."""

    def __init__(self, config: Config, create_body: str):
        self.config_model = config
        self.create_body = create_body
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.config_model).items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)
        self.cfg.set("post_fork", self._post_fork)

    def _post_fork(self, server, worker) -> None:
        # The bridge's worker reads each request within this deadline; the bare app's does the same work.
        worker.read_timeout = self.config_model.server.read_timeout_seconds

    def load(self):
        return create_app(self.config_model, self.create_body)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reference")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    with open(os.environ["BENCH_REFERENCE_CREATE_BODY"], encoding="utf-8") as handle:
        create_body = handle.read()
    ReferenceServer(load_config(args.config), create_body).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
