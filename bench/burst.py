"""`python -m bench.burst`: a flash sale against a small quota, on `placement: overflow`, with both instances restarted.

600 distinct placeOrders arrive within 60 s at two `bik-bridge serve` instances sharing one Redis (its own
redis-server, AOF with fsync always), in front of the fake BigCommerce announcing and enforcing 150 requests per
30 s. The instances are restarted one after the other in the middle of the burst (SIGTERM, as a deploy does).
The run ends by itself once every draft has its order in the store, or at a bound. It reports every answer's
status and latency, when the last order was placed against the quota's arithmetic minimum, the requests the
store received in each of its windows, and the orders per draft; and writes bench/results/burst.{md,json}.
Everything listens on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import json
import math
import random
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import requests
from flask import request

from bench.machine import machine_facts
from bench.platform import operation_of
from tests.chaos.clients import order_id_in
from tests.chaos.processes import ChaosRedis, Instance
from tests.fakes.bigcommerce import FakeBigCommerce
from tests.integration.bridge_process import PROJECT_ROOT

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token-0123456789abcdef"
QUEUED_PREFIX = "BK-"  # the id an overflow bridge answers for an order it queued
ANSWER_TIMEOUT = 30.0
# Client threads: enough that a send never waits for a free one, even when every answer takes the longest the
# bridge may hold one (10 placeOrders a second × 25 s).
CLIENT_THREADS = 256
# What this scenario sets besides `placement: overflow`: nothing, the overflow section's defaults hold its queue.
OVERFLOW_SECTION: dict = {}


@dataclass(frozen=True)
class Plan:
    """The scenario's numbers."""

    drafts: int = 600
    burst_seconds: float = 60.0
    quota: int = 150
    window_seconds: float = 30.0
    latency_ms: float = 50.0
    restarts: tuple[float, ...] = (0.35, 0.65)  # instance a, then b, at these fractions of the burst
    seed: int = 1

    def arrivals(self) -> list[float]:
        """When each placeOrder leaves, seconds after the start: seeded, uniform over the burst."""
        rng = random.Random(f"burst:{self.seed}")
        return sorted(rng.uniform(0, self.burst_seconds) for _ in range(self.drafts))

    def bound(self, requests_per_order: int = 2) -> float:
        """When the run gives up waiting for the last order: the quota's minimum twice over, plus a minute."""
        return self.burst_seconds + 2 * self.minimum(self.drafts * requests_per_order) + 60

    @property
    def stall_seconds(self) -> float:
        """The run stops early once no order was placed for this long: three windows, and at least a minute."""
        return max(3 * self.window_seconds, 60.0)

    def minimum(self, requests_: int) -> float:
        """The quota's arithmetic minimum for sending `requests_`: at `quota` per `window_seconds`."""
        return requests_ * self.window_seconds / self.quota

    def window_floor(self, requests_: int) -> float:
        """The least time the store's fixed windows allow when each window's quota is spent at its very start."""
        return (math.ceil(requests_ / self.quota) - 1) * self.window_seconds


@dataclass(frozen=True)
class Take:
    """One request reaching the store's quota check."""

    at: float
    window: float  # the start of the store's window it counted in
    allowed: bool
    operation: str
    draft: Optional[str]


class BurstStore(FakeBigCommerce):
    """The fake BigCommerce, noting when each request reached its quota check and when each order was created."""

    def __init__(self, **kwargs) -> None:
        self.takes: list[Take] = []
        self.created: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
        super().__init__(**kwargs)

    def _take_quota(self) -> tuple[bool, dict]:
        operation, draft = operation_of(request.method, request.path), None
        if operation == "list_orders":
            draft = request.args.get("external_order_id")
        elif operation == "create":
            body = request.get_json(silent=True)
            draft = body.get("external_order_id") if isinstance(body, dict) else None
        with self._state:  # reentrant: the window this request counted in is the one noted
            allowed, headers = super()._take_quota()
            self.takes.append(Take(self.clock(), self._window_start, allowed, operation, draft))
        return allowed, headers

    def _build_order(self, body: dict, stored_body: Optional[dict]):
        order = super()._build_order(body, stored_body)  # the caller holds the state lock and stores it next
        draft = order.header.get("external_order_id")
        if draft:
            self.created[draft].append((self.clock(), order.id))
        return order

    def orders_of(self, draft: str) -> int:
        with self._state:
            return len(self.created.get(draft, ()))


@dataclass
class Answer:
    """One placeOrder as Bik saw it."""

    draft: str
    sent: float
    seconds: float
    status: Optional[int]
    order_id: Optional[str] = None
    instances: list[str] = field(default_factory=list)  # tried in order: a refused connection moves to the other
    error: str = ""


def draft_body(template: dict, draft: str) -> dict:
    body = json.loads(json.dumps(template))
    body["draftOrderId"] = body["order"]["id"] = draft
    return body


class Bik:
    """Sends each draft once; a connection an instance refused or closed unanswered (it is restarting) goes to the
    other one, as a load balancer in front of both does: placeOrder is safe to send again."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self.answers: list[Answer] = []
        self._lock = threading.Lock()

    def place(self, draft: str, body: dict, first: int) -> None:
        started = time.monotonic()
        tried: list[str] = []
        answer = Answer(draft, started, 0.0, None)
        for index in (first, 1 - first, first):
            instance = self.instances[index]
            tried.append(instance.name)
            try:
                response = requests.post(f"{instance.url}/placeOrder", json=body, timeout=ANSWER_TIMEOUT,
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            except requests.ConnectionError as exc:
                answer = Answer(draft, started, 0.0, None, instances=list(tried), error=type(exc).__name__)
                continue
            except requests.RequestException as exc:
                answer = Answer(draft, started, 0.0, None, instances=list(tried), error=type(exc).__name__)
                break
            answer = Answer(draft, started, 0.0, response.status_code, order_id_in(response), tried)
            break
        answer.seconds = time.monotonic() - started
        with self._lock:
            self.answers.append(answer)


def say(message: str) -> None:
    print(f"[burst {time.strftime('%H:%M:%S')}] {message}", flush=True)


def bridge_config(store: BurstStore, redis_url: str) -> dict:
    """Production-shaped: bearer auth, Redis idempotency, JSON logs; `placement: overflow`."""
    config = {
        "platform": "bigcommerce",
        "placement": "overflow",
        "auth": {"scheme": "bearer", "token": TOKEN},
        "idempotency": {"backend": "redis", "redis_url": redis_url},
        "bigcommerce": {"store_hash": store.store_hash, "access_token": store.access_token,
                        "api_base_url": store.api_base_url},
        "logging": {"format": "json", "level": "INFO"},
    }
    if OVERFLOW_SECTION:
        config["overflow"] = dict(OVERFLOW_SECTION)
    return config


def run(plan: Plan, workdir: Path) -> dict:
    """The scenario from start to stop; returns what was measured."""
    template = json.loads((PROJECT_ROOT / "examples" / "place-order.json").read_text(encoding="utf-8"))
    stamp = int(time.time())
    drafts = [f"nb_{stamp - 60}_{plan.seed:04d}{index:06d}" for index in range(plan.drafts)]
    store = BurstStore(latency_ms=plan.latency_ms).start()
    store.set_quota(plan.quota, int(plan.window_seconds * 1000))
    redis_server = ChaosRedis(workdir)
    redis_server.persistent = True  # a queued order lives only in Redis until it is placed
    instances: list[Instance] = []
    events: list[tuple[float, str]] = []
    try:
        redis_server.start()
        config = bridge_config(store, redis_server.url)
        instances = [Instance(config, workdir, name) for name in ("a", "b")]
        for instance in instances:
            instance.start(timeout=60)
        say(f"2 instances on Redis :{redis_server.port} (AOF), fake BigCommerce with {plan.quota} requests per "
            f"{plan.window_seconds:g} s and {plan.latency_ms:g} ms latency; logs in {workdir}")
        bik = Bik(instances)
        arrivals = plan.arrivals()
        restarts = sorted((fraction * plan.burst_seconds, index) for index, fraction in enumerate(plan.restarts))
        origin = time.monotonic()
        restarter = threading.Thread(target=_restart, args=(instances, restarts, origin, events), name="restarts")
        restarter.start()
        with ThreadPoolExecutor(max_workers=CLIENT_THREADS, thread_name_prefix="bik") as pool:
            for index, (draft, at) in enumerate(zip(drafts, arrivals)):
                time.sleep(max(0.0, origin + at - time.monotonic()))  # the burst's own pacing
                pool.submit(bik.place, draft, draft_body(template, draft), index % 2)
            say(f"{plan.drafts} placeOrders sent in {time.monotonic() - origin:.1f} s; waiting for the store")
        restarter.join()
        bound = origin + plan.bound()
        progress = itertools.count()
        last_placed, moved = -1, time.monotonic()
        while time.monotonic() < bound:
            placed = sum(1 for d in drafts if store.orders_of(d))
            if placed == len(drafts):
                break
            if placed != last_placed:
                last_placed, moved = placed, time.monotonic()
            elif time.monotonic() - moved > plan.stall_seconds:
                say(f"no order placed for {plan.stall_seconds:g} s: giving up")
                break
            if next(progress) % 40 == 0:
                say(f"{placed} of {len(drafts)} orders placed, {time.monotonic() - origin:.0f} s in")
            time.sleep(0.25)  # polling the in-process store: the orders come from the bridges' processes
        finished = time.monotonic()
    finally:
        for instance in instances:
            instance.stop()
        redis_server.kill()
        store.stop()
    return measure(plan, drafts, bik.answers, store, origin, finished, events)


def _restart(instances: list[Instance], restarts: list[tuple[float, int]], origin: float,
             events: list[tuple[float, str]]) -> None:
    """Restart each instance at its moment: SIGTERM (in-flight requests finish), then start it again."""
    for at, index in restarts:
        time.sleep(max(0.0, origin + at - time.monotonic()))  # the scenario's schedule
        instance = instances[index]
        stopped = time.monotonic()
        instance.stop()
        instance.start(timeout=60)
        events.append((stopped - origin, f"instance {instance.name} restarted ({time.monotonic() - stopped:.1f} s "
                                         "from SIGTERM to answering again)"))
        say(events[-1][1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)] if ordered else 0.0


def measure(plan: Plan, drafts: list[str], answers: list[Answer], store: BurstStore, origin: float,
            finished: float, events: list[tuple[float, str]]) -> dict:
    """Every figure of the report, as plain data."""
    statuses = collections.Counter(str(a.status) if a.status is not None else f"no answer ({a.error})"
                                   for a in answers)
    seconds = [a.seconds for a in answers]
    ok = [a for a in answers if a.status is not None and 200 <= a.status < 300]
    queued_seconds = [a.seconds for a in ok if str(a.order_id).startswith(QUEUED_PREFIX)]
    direct_seconds = [a.seconds for a in ok if not str(a.order_id).startswith(QUEUED_PREFIX)]
    queued = len(queued_seconds)
    failed_over = sum(1 for a in answers if len(a.instances) > 1)

    with store._state:
        takes = list(store.takes)
        created = {draft: list(times) for draft, times in store.created.items()}
    per_draft = collections.Counter(t.draft for t in takes if t.allowed and t.draft)
    placed_once = [d for d in drafts if len(created.get(d, ())) == 1]
    counts = collections.Counter(per_draft[d] for d in placed_once)
    needed = counts.most_common(1)[0][0] if counts else 2
    by_operation = collections.Counter(t.operation for t in takes if t.allowed)
    accepted = sum(1 for t in takes if t.allowed)
    refused = sum(1 for t in takes if not t.allowed)
    create_times = [at for times in created.values() for at, _ in times]
    first_sent = min((a.sent for a in answers), default=origin)
    last_order = max(create_times, default=finished)
    elapsed = last_order - first_sent
    minimum = plan.minimum(plan.drafts * needed)

    windows: dict[float, list[int]] = {}
    for take in takes:
        counted = windows.setdefault(take.window, [0, 0])
        counted[0] += 1
        counted[1] += int(take.allowed)
    window_rows = [{"starts_s": round(start - first_sent, 1), "received": sent, "accepted": kept}
                   for start, (sent, kept) in sorted(windows.items())]
    orders_per_draft = collections.Counter(len(created.get(d, ())) for d in drafts)
    # The promise itself: a draft answered 2xx (queued or not) has its order, whatever else the run shows.
    ok_without_order = sorted({a.draft for a in ok} - set(created))
    placed = sum(1 for d in drafts if created.get(d))

    return {
        "plan": asdict(plan),
        "answers": {"total": len(answers), "by_status": dict(statuses), "queued": queued, "placed_at_once":
                    len(ok) - queued, "failed_over": failed_over,
                    "p50_s": percentile(seconds, 0.50), "p90_s": percentile(seconds, 0.90),
                    "p99_s": percentile(seconds, 0.99), "max_s": max(seconds, default=0.0),
                    "queued_p50_s": percentile(queued_seconds, 0.50), "queued_p99_s": percentile(queued_seconds, 0.99),
                    "placed_at_once_p50_s": percentile(direct_seconds, 0.50),
                    "placed_at_once_p99_s": percentile(direct_seconds, 0.99),
                    "each": [{"draft": a.draft, "sent_s": round(a.sent - origin, 3), "seconds": round(a.seconds, 4),
                              "status": a.status, "order_id": a.order_id, "instances": a.instances}
                             for a in sorted(answers, key=lambda a: a.sent)]},
        "placing": {"requests_per_order": needed, "requests_per_order_seen": dict(sorted(counts.items())),
                    "last_order_s": elapsed, "minimum_s": minimum,
                    "window_floor_s": plan.window_floor(plan.drafts * needed),
                    "orders_placed": placed, "ran_until_s": finished - first_sent,
                    "gave_up": placed < len(drafts)},
        "store": {"accepted": accepted, "refused_over_quota": refused, "by_operation": dict(by_operation),
                  "windows": window_rows, "most_in_a_window": max((w["received"] for w in window_rows), default=0)},
        "orders_per_draft": {str(k): v for k, v in sorted(orders_per_draft.items())},
        "answered_2xx_without_an_order": ok_without_order,
        "events": [{"at_s": round(at, 1), "what": what} for at, what in events],
    }


@dataclass(frozen=True)
class Row:
    figure: str
    target: str
    value: str
    passed: Optional[bool]
    note: str = ""


def rows(data: dict) -> list[Row]:
    plan, answers, placing, store = data["plan"], data["answers"], data["placing"], data["store"]
    total = answers["total"]
    ok = sum(v for k, v in answers["by_status"].items() if k.isdigit() and 200 <= int(k) < 300)
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(answers["by_status"].items()))
    within = placing["last_order_s"] / placing["minimum_s"] - 1 if placing["minimum_s"] else 0.0
    once = data["orders_per_draft"].get("1", 0)
    last = (f"{placing['last_order_s']:.0f} s" if not placing["gave_up"]
            else f"{placing['orders_placed']} of {plan['drafts']} placed after {placing['ran_until_s']:.0f} s")
    return [
        Row("placeOrder answers 2xx", f"all {plan['drafts']}", f"{ok} of {total}", ok == total == plan["drafts"],
            f"{statuses}; {answers['queued']} queued ({QUEUED_PREFIX}<draft>), {answers['placed_at_once']} placed at "
            f"once; {answers['failed_over']} moved to the other instance after a refused connection"),
        Row("placeOrder latency, p99", "≤ 1 s", f"{answers['p99_s'] * 1000:.0f} ms", answers["p99_s"] <= 1.0,
            f"p50 {answers['p50_s'] * 1000:.0f} ms, p90 {answers['p90_s'] * 1000:.0f} ms, max "
            f"{answers['max_s'] * 1000:.0f} ms; queued answers p50 {answers['queued_p50_s'] * 1000:.0f} ms / p99 "
            f"{answers['queued_p99_s'] * 1000:.0f} ms, placed at once p50 "
            f"{answers['placed_at_once_p50_s'] * 1000:.0f} ms / p99 {answers['placed_at_once_p99_s'] * 1000:.0f} ms"),
        Row("time until the last order is placed", f"≤ minimum + 10 % ({placing['minimum_s'] * 1.1:.0f} s)",
            last, not placing["gave_up"] and placing["last_order_s"] <= placing["minimum_s"] * 1.1,
            f"minimum {placing['minimum_s']:.0f} s = {plan['drafts']} orders × {placing['requests_per_order']} "
            f"requests ÷ {plan['quota']} per {plan['window_seconds']:g} s ({within:+.0%}); fixed windows spent "
            f"at their start would allow {placing['window_floor_s']:.0f} s"),
        Row("requests the store received in one window", f"≤ {plan['quota']}", str(store["most_in_a_window"]),
            store["most_in_a_window"] <= plan["quota"],
            f"{len(store['windows'])} windows; {store['refused_over_quota']} refused over the quota; "
            + ", ".join(f"{k} {v}" for k, v in sorted(store["by_operation"].items()))),
        Row("orders per draft", "exactly 1", f"{once} of {plan['drafts']} drafts",
            data["orders_per_draft"] == {"1": plan["drafts"]},
            ", ".join(f"{k} order(s): {v} drafts" for k, v in data["orders_per_draft"].items())
            + f"; answered 2xx without an order: {len(data['answered_2xx_without_an_order'])}"),
    ]


def text_table(table: list[Row]) -> str:
    header = ("figure", "target", "measured", "", "note")
    cells = [header, *((r.figure, r.target, r.value, {True: "pass", False: "FAIL", None: ""}[r.passed], r.note)
                       for r in table)]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(4)) + "  " + c[4] for c in cells)


def markdown(data: dict, table: list[Row]) -> str:
    m, plan = data["machine"], data["plan"]
    out = [
        f"# Flash-sale burst, {m['date']}",
        "",
        f"{plan['drafts']} distinct placeOrders within {plan['burst_seconds']:g} s at two `bik-bridge serve` "
        f"instances (`placement: overflow`) on one Redis with AOF; the fake BigCommerce announces and enforces "
        f"{plan['quota']} requests per {plan['window_seconds']:g} s and answers after {plan['latency_ms']:g} ms; "
        f"each instance restarted once mid-burst (SIGTERM, then started again). Machine: {m['nproc']} cores, "
        f"{m['cpu']}, Python {m['python']}; commit {m['commit']}; {m['seconds']} s.",
        "",
        "| figure | target | measured | | note |",
        "|---|---|---|---|---|",
        *(f"| {r.figure} | {r.target} | {r.value} | {({True: 'pass', False: 'FAIL', None: ''})[r.passed]} | "
          f"{r.note} |" for r in table),
        "",
        "Requests the store received per window (its fixed windows, from their first request):",
        "",
        "| window starts | received | accepted |",
        "|---|---|---|",
        *(f"| {w['starts_s']:g} s | {w['received']} | {w['accepted']} |" for w in data["store"]["windows"]),
        "",
        "Events: " + ("; ".join(f"{e['at_s']:g} s: {e['what']}" for e in data["events"]) or "none"),
        "",
    ]
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=Plan.drafts)
    parser.add_argument("--burst-seconds", type=float, default=Plan.burst_seconds)
    parser.add_argument("--quota", type=int, default=Plan.quota, help="requests per window the store announces")
    parser.add_argument("--window-seconds", type=float, default=Plan.window_seconds)
    parser.add_argument("--latency-ms", type=float, default=Plan.latency_ms)
    parser.add_argument("--seed", type=int, default=Plan.seed)
    parser.add_argument("--keep-logs", action="store_true", help="keep the instances' logs and configs")
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("bench.burst: needs redis-server on the PATH", file=sys.stderr)
        return 2
    plan = Plan(drafts=args.drafts, burst_seconds=args.burst_seconds, quota=args.quota,
                window_seconds=args.window_seconds, latency_ms=args.latency_ms, seed=args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="bik-burst-"))
    started = time.monotonic()
    try:
        data = run(plan, workdir)
    finally:
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    data["machine"] = {**machine_facts(), "seconds": round(time.monotonic() - started)}
    table = rows(data)
    print()
    print(text_table(table))
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    data["figures"] = [asdict(r) for r in table]
    (results / "burst.json").write_text(json.dumps(data, indent=2) + "\n")
    (results / "burst.md").write_text(markdown(data, table))
    say(f"wrote {results / 'burst.md'} and {results / 'burst.json'}")
    return 0 if all(r.passed is not False for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
