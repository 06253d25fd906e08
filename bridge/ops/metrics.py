"""Prometheus metrics: made once per process by the composition root, summed across gunicorn workers.

Under `bik-bridge serve` every worker writes its samples to files in PROMETHEUS_MULTIPROC_DIR (set
by the server before the workers fork) and a scrape of any worker reads all of them.
"""
from __future__ import annotations

import os
from collections import Counter as Tally
from typing import TYPE_CHECKING, Any, Callable, Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bridge.ops import context
from bridge.ops.multiproc import MULTIPROC_ENV

if TYPE_CHECKING:
    from bridge.core.ports import QueueStats
    from bridge.upstream.quota import Usage

# Bik waits seconds, not minutes: resolution where answers are fast, and up to the worst upstream budget.
REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
UPSTREAM_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)
# Upstream requests one Bik call cost: 0 (a replay, a fresh answer), 1 or 2 on the happy paths, more for retries
# and for lookups that page through a store's orders.
REQUESTS_PER_CALL_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 32)
# The `operation` label of the per-call histogram's series that counts every request of the call.
ALL_OPERATIONS = "all"

# placeOrder and placer decisions that count toward `bik_bridge_overflow_drafts`, by result.
OVERFLOW = {"queued": "queued", "placed_from_queue": "placed", "refused_from_queue": "refused", "queue_full": "full"}

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
        self.requests_per_call = Histogram("bik_bridge_upstream_requests_per_call",
                                           "Platform requests (attempts) one Bik request cost, by endpoint, platform "
                                           f"and operation; operation=\"{ALL_OPERATIONS}\" counts them all, for every "
                                           "call.", ["endpoint", "platform", "operation"],
                                           buckets=REQUESTS_PER_CALL_BUCKETS, registry=r)
        self.read_fallbacks = Counter("bik_bridge_read_fallbacks",
                                      "Bik requests served by a slower path than usual (more platform reads), "
                                      "by platform and reason.", ["platform", "reason"], registry=r)
        # Computed when scraped, by the process answering the scrape, from its quota gate: with a shared gate that
        # is every worker's and instance's share, so the most recent scrape's value is the one to show.
        self.quota_used = Gauge("bik_bridge_quota_used_ratio",
                                "Share of the platform's announced quota the bridge's requests used in the last "
                                "window, from the quota gate's send log.", ["platform"], registry=r,
                                multiprocess_mode="livemostrecent")
        self._quota_usage: Optional[Callable[[], Optional["Usage"]]] = None
        # placement: overflow. The queue is read from the idempotency store when scraped, like the quota's use.
        self.overflow = Counter("bik_bridge_overflow_drafts",
                                "Drafts of placement: overflow, by what came of them: queued (accepted and answered "
                                "at once), placed (by the placer), refused (by the store, after the customer was told "
                                "ORDERED), full (answered 503: the queue was at overflow.max_queued or its oldest "
                                "past overflow.max_age_seconds).", ["result"], registry=r)
        self.queue_depth = Gauge("bik_bridge_overflow_queue_depth", "Queued drafts not yet placed or refused.",
                                 registry=r, multiprocess_mode="livemostrecent")
        self.queue_oldest = Gauge("bik_bridge_overflow_oldest_age_seconds",
                                  "Seconds the oldest queued draft not yet placed has waited (0 when none).",
                                  registry=r, multiprocess_mode="livemostrecent")
        self._queue_stats: Optional[Callable[[], "QueueStats"]] = None
        self._children: dict[tuple, Any] = {}

    @classmethod
    def from_environment(cls, platform: str) -> "Metrics":
        """Metrics shared across worker processes when the server set PROMETHEUS_MULTIPROC_DIR."""
        return cls(platform, multiprocess_dir=os.environ.get(MULTIPROC_ENV) or None)

    def _labelled(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, kept: each call of `labels` takes a lock and checks the values again."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # hooks ----------------------------------------------------------------------------------

    def request(self, endpoint: str, status: int, seconds: float, served: context.RequestContext) -> None:
        """One Bik request answered; what it cost upstream is read from its context."""
        self._labelled(self.requests, endpoint, str(status)).inc()
        self._labelled(self.request_seconds, endpoint).observe(seconds)
        calls = list(served.upstream)  # parallel reads of this request have all returned by now
        self._labelled(self.requests_per_call, endpoint, self.platform, ALL_OPERATIONS).observe(len(calls))
        if calls:
            for operation, count in Tally(call.get("operation", "other") for call in calls).items():
                self._labelled(self.requests_per_call, endpoint, self.platform, operation).observe(count)
        for reason in served.fallbacks:
            self._labelled(self.read_fallbacks, self.platform, reason).inc()

    def watch_quota(self, usage: Callable[[], Optional["Usage"]]) -> None:
        """Read the quota's use from `usage` (the quota gate's) at every scrape."""
        self._quota_usage = usage

    def watch_queue(self, stats: Callable[[], "QueueStats"]) -> None:
        """Read the overflow queue's depth and oldest age from `stats` (the idempotency store's) at every scrape."""
        self._queue_stats = stats

    def upstream(self, *, platform: str, operation: str, status, ms: float, attempt: int) -> None:
        """One attempt at the platform; the `observer` of `bridge.upstream.client.Upstream`."""
        self._labelled(self.upstream_calls, platform, operation, str(status)).inc()
        self._labelled(self.upstream_seconds, platform, operation).observe(ms / 1000)
        if attempt > 1:
            self._labelled(self.upstream_retries, platform, operation).inc()

    def decision(self, decision: str) -> None:
        """One placeOrder decision of the service; the `on_decision` hook of `OrderService`."""
        self._labelled(self.decisions, decision).inc()
        if decision == "replayed":
            self.replays.inc()
        elif decision == "total_mismatch":
            self._labelled(self.total_mismatches, self.platform).inc()
        if decision in OVERFLOW:
            self._labelled(self.overflow, OVERFLOW[decision]).inc()
        if decision in RECONCILED:
            self._labelled(self.reconciliations, *RECONCILED[decision]).inc()

    # exposition -----------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape returns, and its content type."""
        self._measure_quota()
        self._measure_queue()
        if not self.multiprocess_dir:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        # A fresh registry per scrape reads every worker's files, dead workers' counts included.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def _measure_quota(self) -> None:
        used = self._quota_usage() if self._quota_usage is not None else None
        if used is not None:  # before the platform announced a quota there is no share to show
            self.quota_used.labels(self.platform).set(used.ratio)

    def _measure_queue(self) -> None:
        if self._queue_stats is None:
            return
        try:
            stats = self._queue_stats()
        except Exception:  # noqa: BLE001 - a scrape shows the last values rather than fail while the store is away
            return
        self.queue_depth.set(stats.depth)
        self.queue_oldest.set(stats.oldest_age)
