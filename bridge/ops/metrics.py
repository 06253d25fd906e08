"""Prometheus metrics: made once per process by the composition root, summed across gunicorn workers.

Under `bik-bridge serve` every worker writes its samples to files in PROMETHEUS_MULTIPROC_DIR (set
by the server before the workers fork) and a scrape of any worker reads all of them.
"""
from __future__ import annotations

import os
from typing import Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from bridge.ops.multiproc import MULTIPROC_ENV

# Bik waits seconds, not minutes: resolution where answers are fast, and up to the worst upstream budget.
REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
UPSTREAM_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)

# How a placeOrder decision of the service counts as a reconciliation: a record left uncertain,
# settled by looking the draft up on the platform.
RECONCILED = {
    "recovered": ("request", "found"),
    "absent_after_lookup": ("request", "absent"),
    "reconciled_found": ("reconcile", "found"),
    "reconciled_absent": ("reconcile", "absent"),
}


class Metrics:
    """Every metric the bridge exports, and the hooks that feed them."""

    def __init__(self, platform: str, *, multiprocess_dir: Optional[str] = None):
        self.platform = platform
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("bik_bridge_requests", "Bik requests answered, by endpoint and HTTP status.",
                                ["endpoint", "status"], registry=r)
        self.request_seconds = Histogram("bik_bridge_request_duration_seconds",
                                         "Time to answer a Bik request, by endpoint.", ["endpoint"],
                                         buckets=REQUEST_BUCKETS, registry=r)
        self.upstream_calls = Counter("bik_bridge_upstream_calls",
                                      "Calls to the platform (each attempt), by platform, operation and status "
                                      "(HTTP status or the error that stopped the call).",
                                      ["platform", "operation", "status"], registry=r)
        self.upstream_seconds = Histogram("bik_bridge_upstream_duration_seconds",
                                          "Time of one call to the platform, by platform and operation.",
                                          ["platform", "operation"], buckets=UPSTREAM_BUCKETS, registry=r)
        self.upstream_retries = Counter("bik_bridge_upstream_retries",
                                        "Attempts after the first one, by platform and operation.",
                                        ["platform", "operation"], registry=r)
        self.decisions = Counter("bik_bridge_place_order_decisions",
                                 "How placeOrder records were settled (created, replayed, recovered, in_flight, ...).",
                                 ["decision"], registry=r)
        self.replays = Counter("bik_bridge_replays", "placeOrder answered from the idempotency record.",
                               registry=r)
        self.reconciliations = Counter("bik_bridge_reconciliations",
                                       "Uncertain placeOrder records settled by a lookup on the platform, by where "
                                       "(request or the reconcile command) and result (found or absent).",
                                       ["via", "result"], registry=r)
        self.total_mismatches = Counter("bik_bridge_total_mismatches",
                                        "Orders created whose store total differs from the total Bik priced.",
                                        ["platform"], registry=r)

    @classmethod
    def from_environment(cls, platform: str) -> "Metrics":
        """Metrics shared across worker processes when the server set PROMETHEUS_MULTIPROC_DIR."""
        return cls(platform, multiprocess_dir=os.environ.get(MULTIPROC_ENV) or None)

    # hooks ----------------------------------------------------------------------------------

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        """One Bik request answered."""
        self.requests.labels(endpoint, str(status)).inc()
        self.request_seconds.labels(endpoint).observe(seconds)

    def upstream(self, *, platform: str, operation: str, status, ms: float, attempt: int) -> None:
        """One attempt at the platform; the `observer` of `bridge.upstream.client.Upstream`."""
        self.upstream_calls.labels(platform, operation, str(status)).inc()
        self.upstream_seconds.labels(platform, operation).observe(ms / 1000)
        if attempt > 1:
            self.upstream_retries.labels(platform, operation).inc()

    def decision(self, decision: str) -> None:
        """One placeOrder decision of the service; the `on_decision` hook of `OrderService`."""
        self.decisions.labels(decision).inc()
        if decision == "replayed":
            self.replays.inc()
        elif decision == "total_mismatch":
            self.total_mismatches.labels(self.platform).inc()
        if decision in RECONCILED:
            self.reconciliations.labels(*RECONCILED[decision]).inc()

    # exposition -----------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape returns, and its content type."""
        if not self.multiprocess_dir:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        # A fresh registry per scrape reads every worker's files, dead workers' counts included.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
