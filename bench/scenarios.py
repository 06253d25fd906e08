"""Each measurement of the benchmark: one kind of load against one bridge, and what the fake store saw."""
from __future__ import annotations

import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import requests

from bench.load import LoadResult, Workload
from bench.processes import TOKEN, Bridge, Platform

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Plan:
    """How long and how much each measurement runs; the bare stack runs the same as the bridge."""

    one_client_seconds: float
    replay_seconds: float
    replay_pool: int
    fresh_requests: int
    get_seconds: float
    shipped_orders: int
    cache_ids: int
    quota_requests: int
    quota_window_ms: int


FULL = Plan(one_client_seconds=15, replay_seconds=15, replay_pool=200, fresh_requests=10_000, get_seconds=10,
            shipped_orders=40, cache_ids=20, quota_requests=60, quota_window_ms=10_000)
QUICK = Plan(one_client_seconds=5, replay_seconds=5, replay_pool=100, fresh_requests=1_500, get_seconds=4,
             shipped_orders=10, cache_ids=10, quota_requests=30, quota_window_ms=4_000)


@dataclass
class Seen:
    """A load run and what reached the store meanwhile."""

    load: LoadResult
    stats: dict
    cpu_ms_per_request: Optional[float] = None
    service: dict = field(default_factory=dict)  # the store's own service times (ms) by operation, when asked for

    @property
    def upstream(self) -> int:
        return self.stats["requests"]

    def upstream_per(self, operation: str) -> Optional[float]:
        """Upstream requests per Bik request, counting Bik requests by an operation each makes exactly once.

        The generator's own count misses requests still in flight when it stopped; the store sees them all.
        """
        once = self.stats["by_operation"].get(operation, 0)
        return self.upstream / once if once else None

    def operations(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.stats["by_operation"].items())) or "none"

    def per_request(self, operation: str) -> str:
        """Upstream requests per Bik request by store operation, Bik requests counted as in `upstream_per`."""
        once = self.stats["by_operation"].get(operation, 0)
        if not once:
            return "none"
        return ", ".join(f"{k} {v / once:.2f}".rstrip("0").rstrip(".")
                         for k, v in sorted(self.stats["by_operation"].items()))


def combine(slices: list[Seen]) -> Seen:
    """One figure from the slices of a load: counts and CPU summed, the median of the slices' medians, the highest
    of their tails; what the store saw, per operation, summed."""
    loads = [seen.load for seen in slices]
    load = LoadResult(sum(x.requests for x in loads), sum(x.seconds for x in loads), sum(x.errors for x in loads),
                      statistics.median(x.p50_ms for x in loads), max(x.p90_ms for x in loads),
                      max(x.p99_ms for x in loads), max(x.max_ms for x in loads))
    by_operation: dict = {}
    for seen in slices:
        for operation, count in seen.stats["by_operation"].items():
            by_operation[operation] = by_operation.get(operation, 0) + count
    stats = {**slices[-1].stats, "requests": sum(seen.upstream for seen in slices), "by_operation": by_operation,
             "connections_accepted": sum(seen.stats["connections_accepted"] for seen in slices)}
    cpu = None
    if all(seen.cpu_ms_per_request is not None for seen in slices) and load.requests:
        cpu = sum(seen.cpu_ms_per_request * seen.load.requests for seen in slices) / load.requests
    return Seen(load, stats, cpu, {op: [ms for seen in slices for ms in seen.service.get(op, [])]
                                   for op in slices[-1].service})


def percentile(values: list[float], p: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


class Files:
    """Request bodies and id lists the load generators read."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        example = json.loads((PROJECT_ROOT / "examples" / "place-order.json").read_text())
        example["draftOrderId"] = example["order"]["id"] = "__DRAFT__"
        self.place = workdir / "place-order.json"
        self.place.write_text(json.dumps(example, separators=(",", ":")))
        self.create = workdir / "bigcommerce-create.json"

    def write_create(self, config: dict) -> None:
        """The order_Post body the bridge sends for the example, to send it straight to the store."""
        from adapters.bigcommerce.builder import BigCommerceRequests
        from bridge.bootstrap import parse_config
        from bridge.core.models import PlaceOrderRequest

        parsed = parse_config(config, environ={})
        example = json.loads((PROJECT_ROOT / "examples" / "place-order.json").read_text())
        body = BigCommerceRequests(parsed.bigcommerce).create_body(PlaceOrderRequest.model_validate(example))
        text = json.dumps(body, separators=(",", ":")).replace(example["draftOrderId"], "__DRAFT__")
        self.create.write_text(text)

    def ids(self, name: str, ids: list[int]) -> Path:
        path = self.workdir / f"{name}.ids"
        path.write_text("".join(f"{i}\n" for i in ids))
        return path


class Scenarios:
    """The measurements, sharing one fake store and one load generator."""

    def __init__(self, platform: Platform, generator, files: Files, plan: Plan):
        self.platform = platform
        self.generator = generator
        self.files = files
        self.plan = plan

    def measure(self, bridge: Optional[Bridge], work: Workload, connections: int, seconds: float,
                creates: int = 0, service: tuple[str, ...] = ()) -> Seen:
        """One load run; with `creates`, it ends once the store has created that many orders; with `service`, the
        store's own service times of those operations are kept."""
        self.platform.reset()
        cpu_before = bridge.cpu_seconds() if bridge else 0.0
        until = None
        if creates:
            start = self.platform.create_count()
            until = lambda: self.platform.create_count() - start >= creates  # noqa: E731
        load = self.generator.run(work, connections=connections, seconds=seconds, until=until)
        self.platform.settle()  # requests still in the bridge when the generator stopped belong to this run
        stats = self.platform.stats()
        cpu = None
        if bridge and load.requests:
            cpu = (bridge.cpu_seconds() - cpu_before) * 1000 / load.requests
        return Seen(load, stats, cpu, {op: self.platform.service_ms(op) for op in service})

    # the bare stack: the same upstream calls without the bridge

    def direct_read(self, ids: Path, seconds: float) -> Seen:
        """One bare upstream GET of an order, straight at the store: what getOrder's one request costs."""
        url = f"{self.platform.api}/stores/{self.platform.store_hash}/v2/orders"
        return self.measure(None, Workload(url, "read", ids, self.platform.token), 1, seconds)

    # through a bridge

    def place_fresh(self, bridge: Bridge, prefix: str, *, connections: int, seconds: float = 0,
                    requests_: int = 0, service: tuple[str, ...] = ()) -> Seen:
        work = Workload(f"{bridge.url}/placeOrder", "fresh", self.files.place, TOKEN, prefix)
        return self.measure(bridge, work, connections, seconds or 600, creates=requests_, service=service)

    def prefill(self, bridge: Bridge, prefix: str, count: int) -> None:
        """Place drafts <prefix>0 .. <prefix>count-1 so that they can be replayed."""
        template = self.files.place.read_text()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

        def place(n: int) -> int:
            body = template.replace("__DRAFT__", f"{prefix}{n}")
            return requests.post(f"{bridge.url}/placeOrder", data=body, headers=headers, timeout=60).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(place, range(count)))
        if any(status != 200 for status in statuses):
            raise RuntimeError(f"prefill failed: {sorted(set(statuses))}")

    def replay(self, bridge: Bridge, prefix: str, *, connections: int, seconds: float) -> Seen:
        work = Workload(f"{bridge.url}/placeOrder", "replay", self.files.place, TOKEN, prefix, self.plan.replay_pool)
        return self.measure(bridge, work, connections, seconds)

    def get_orders(self, bridge: Bridge, ids: Path, *, connections: int, seconds: float) -> Seen:
        return self.measure(bridge, Workload(f"{bridge.url}/getOrder", "get", ids, TOKEN), connections, seconds)

    def quota(self, bridge: Bridge, ids: Path, seconds: float) -> Seen:
        """getOrder load while the store allows only a small quota per window."""
        plan = self.plan
        self.platform.set_quota(plan.quota_requests, plan.quota_window_ms)
        try:
            return self.get_orders(bridge, ids, connections=16, seconds=seconds)
        finally:
            self.platform.set_quota(1_000_000, 30_000)

    def bare_place(self, bare: Bridge, prefix: str, *, connections: int, seconds: float = 0,
                   requests_: int = 0, service: tuple[str, ...] = ()) -> Seen:
        """The bare lookup-then-create (bench/reference.py), each request a new draft."""
        work = Workload(f"{bare.url}/place", "fresh", self.files.place, "", prefix)
        return self.measure(bare, work, connections, seconds or 600, creates=requests_, service=service)

    def bare_prefill(self, bare: Bridge, prefix: str) -> None:
        """Store every key the bare replay will read: it stores a key the first time it misses it."""
        work = Workload(f"{bare.url}/replay", "replay", self.files.place, "", prefix, self.plan.replay_pool)
        self.generator.run(work, connections=8, seconds=2)

    def bare_replay(self, bare: Bridge, prefix: str, *, connections: int, seconds: float) -> Seen:
        """The bare Redis lookup (bench/reference.py) of the same pool of drafts the bridge replays."""
        work = Workload(f"{bare.url}/replay", "replay", self.files.place, "", prefix, self.plan.replay_pool)
        return self.measure(bare, work, connections, seconds)

    def order_ids(self) -> list[int]:
        ids = self.platform.stats()["order_ids"]
        return list(range(ids[0], ids[1] + 1)) if ids else []


def median(values: list[float]) -> Optional[float]:
    return statistics.median(values) if values else None
