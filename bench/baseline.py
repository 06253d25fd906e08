"""The naïve baseline the benchmark compares against: the same bridge, built the way it was first written.

A new connection for every platform call (as `requests.post(...)` makes), getOrder's four reads one after
another, the environment read by requests on every call, and the server settings the bridge shipped with
(2 workers × 8 threads). Everything else — the app, the service, the idempotency store — is the real one,
so the ratio in the table is what pooling, concurrency and the settings are worth.

`python -m bench.baseline serve --config FILE` runs it under gunicorn like `bik-bridge serve`.
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import Executor, Future
from typing import Any, Optional

import requests

from bridge.bootstrap import load_config
from bridge.config import Config
from bridge.http.server import BridgeServer
from bridge.ops.logs import configure_logging

SERVER = {"workers": 2, "threads": 8}


class InlineExecutor(Executor):
    """Runs each task at once in the caller's thread: reads one after another."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future, as a pool would
            future.set_exception(exc)
        return future


def naive_adapter(config: Config):
    from adapters.bigcommerce.adapter import BigCommerceAdapter, BigCommerceRateLimit, error_message
    from bridge.core.presentation import Presentation
    from bridge.upstream.client import Upstream

    class SequentialBigCommerceAdapter(BigCommerceAdapter):
        """All four getOrder reads, whatever the order, each waiting for the one before."""

        def _fetch(self, numeric: int, deadline) -> tuple[Any, Any, Any, Any]:
            r = self.requests
            return (self._read(r.get_order(numeric), deadline), self._read(r.products(numeric), deadline),
                    self._read(r.shipments(numeric), deadline), self._read(r.shipping_addresses(numeric), deadline))

    class OneShotUpstream(Upstream):
        """Each call as `requests.post(...)` makes it: a fresh session and connection, the environment read again."""

        def _send(self, request, timeout):
            with requests.Session() as session:
                session.headers["User-Agent"] = "bik-bridge/0.1"
                return session.request(request.method, request.url, headers=request.headers, json=request.json,
                                       params=request.params, timeout=timeout)

    upstream = OneShotUpstream(requests.Session(), config.upstream, platform="bigcommerce",
                               rate_headers=BigCommerceRateLimit(), message_of=error_message)
    return SequentialBigCommerceAdapter(config.bigcommerce, Presentation.from_config(config.store), upstream,
                                        InlineExecutor())


class BaselineServer(BridgeServer):
    def load_config(self) -> None:
        super().load_config()
        # The server it shipped with: thread workers, whatever the bridge runs now.
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", SERVER["threads"])

    def load(self):
        from bridge.bootstrap import build_app

        return build_app(self.config_model, adapter=naive_adapter(self.config_model))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    configure_logging(config.logging.format, config.logging.level)
    BaselineServer(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
