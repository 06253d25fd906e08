"""`python -m bench [--quick]`: the bridge under gunicorn against the fake store, figures against the targets.

One run starts the fake BigCommerce (its own process, 50 ms injected latency by default), the bridge exactly
as `bik-bridge serve` runs it (Redis idempotency in a namespace of its own), the bare stack under the same
gunicorn settings (bench/reference.py: the same upstream calls and nothing else), and wrk in its own process.
Each load runs against the bare stack and the bridge in turns (`SLICES` each), so every target is a ratio or a
difference from one run and measures what the bridge adds, not how many calls it makes. Results go to
bench/results/latest.{json,md} (latest-quick.* for --quick).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

import redis

from bench.load import PythonLoad, load_generator
from bench.machine import machine_facts as shared_machine_facts
from bench.processes import Bridge, MachineLoad, Platform, bridge_config, cpu_seconds, free_port
from bench.report import Figure, Report
from bench.scenarios import FULL, QUICK, Files, Scenarios, Seen, combine, median
from bridge.config import IdempotencyConfig

HERE = Path(__file__).resolve().parent
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine_facts(generator, mode: str) -> dict:
    return {"mode": mode, **shared_machine_facts(), "load_generator": generator.name}


def redis_cpu() -> float:
    """CPU used by local redis-server processes, counted as the benchmark's own."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "redis-server":
                    total += cpu_seconds(int(entry.name))
            except OSError:
                continue
    return total


class OwnCpu:
    """CPU the benchmark's own processes used, read once they have all been waited for."""

    def __init__(self) -> None:
        self.redis_start = redis_cpu()

    def total(self) -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        # Every process the run started (fake store, gunicorn masters and so their workers, wrk) has been waited for.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime + redis_cpu() - self.redis_start


FRESH_CLIENTS = 64  # wrk connections of the fresh placeOrder runs: the most the benchmark holds in flight
REPLAY_CLIENTS = 32


# Each comparison alternates the bare stack and the bridge this many times, each slice a share of the load: a
# shared machine that slows down for a while slows both alike, instead of whichever ran then.
SLICES = 3
STORE_OPERATIONS = ("list_orders", "create")  # the store's own service times kept for the 1-client placeOrder


def alternate(name: str, bare_slice: Optional[Callable[[int], Seen]], bridge_slice: Callable[[int], Seen],
              ours: dict, theirs: dict, bare_name: str = "") -> None:
    """`ours[name]` and `theirs[bare_name or name]`: SLICES slices of each, bare first, combined; the bridge alone
    in one slice when there is no bare load."""
    mine: list[Seen] = []
    others: list[Seen] = []
    for n in range(SLICES if bare_slice else 1):
        if bare_slice:
            others.append(bare_slice(n))
        mine.append(bridge_slice(n))
    ours[name] = combine(mine)
    if others:
        theirs[bare_name or name] = combine(others)


def measure_pairs(s: Scenarios, bridge: Bridge, bare: Optional[Bridge], plan) -> tuple[dict, dict]:
    """Every load against the bare stack and the bridge in alternating slices; the bridge also for memory."""
    ours: dict = {}
    theirs: dict = {}
    slices = SLICES if bare else 1
    # Steady state: a worker's first orders also open its connections to the store.
    s.place_fresh(bridge, "bridge_warm_", connections=1, seconds=1)
    if bare:
        s.bare_place(bare, "bare_warm_", connections=1, seconds=1)
    seconds = plan.one_client_seconds / slices
    say(f"placeOrder, 1 client: {slices} × {seconds:.0f} s each" + (", bare and bridge in turn" if bare else ""))
    alternate("place1",
              bare and (lambda n: s.bare_place(bare, f"bare_one_{n}_", connections=1, seconds=seconds,
                                               service=STORE_OPERATIONS)),
              lambda n: s.place_fresh(bridge, f"bridge_one_{n}_", connections=1, seconds=seconds,
                                      service=STORE_OPERATIONS), ours, theirs)

    say(f"replay: placing {plan.replay_pool} drafts first")
    s.prefill(bridge, "bridge_replay_", plan.replay_pool)
    if bare:
        s.bare_prefill(bare, "bare_replay_")
    for clients, total in ((1, plan.replay_seconds / 2), (REPLAY_CLIENTS, plan.replay_seconds)):
        seconds = total / slices
        say(f"replay, {clients} client(s): {slices} × {seconds:.0f} s")
        alternate(f"replay{clients}",
                  bare and (lambda n: s.bare_replay(bare, "bare_replay_", connections=clients, seconds=seconds)),
                  lambda n: s.replay(bridge, "bridge_replay_", connections=clients, seconds=seconds), ours, theirs)

    requests_ = plan.fresh_requests
    share = -(-requests_ // slices)
    say(f"fresh placeOrder, {FRESH_CLIENTS} clients: {slices} × {share} requests")
    stats = s.platform.stats()
    first_id = stats["order_ids"][1] + 1 if stats["order_ids"] else 0
    alternate("fresh64",
              bare and (lambda n: s.bare_place(bare, f"bare_fresh_{n}_", connections=FRESH_CLIENTS, requests_=share)),
              lambda n: s.place_fresh(bridge, f"bridge_fresh_{n}_", connections=FRESH_CLIENTS, requests_=share),
              ours, theirs)
    ours["rss1"] = bridge.rss_mib()
    say(f"bridge: fresh placeOrder, {FRESH_CLIENTS} clients, {requests_} more requests (memory growth)")
    ours["fresh64b"] = s.place_fresh(bridge, "bridge_more_", connections=FRESH_CLIENTS, requests_=requests_)
    ours["rss2"] = bridge.rss_mib()
    # Connections the store accepted while the bridge's fresh loads ran (the bare app's slices not counted).
    ours["connections"] = sum(ours[k].stats["connections_accepted"] for k in ("fresh64", "fresh64b"))
    ours["requests"] = sum(ours[k].load.requests for k in ("fresh64", "fresh64b"))

    # getOrder reads orders placed by the 64-client runs above (the bare app's creates carry the bridge's create
    # bodies, so they are the same orders to read); the bare GET reads the same ones.
    ids = [i for i in s.order_ids() if i >= first_id]
    unshipped = s.files.ids("unshipped", ids[len(ids) // 2: len(ids) // 2 + 200])
    seconds = plan.get_seconds / SLICES
    say(f"getOrder, 1 client: {SLICES} × {seconds:.0f} s, a bare GET straight at the store and the bridge in turn")
    alternate("get1", lambda n: s.direct_read(unshipped, seconds),
              lambda n: s.get_orders(bridge, unshipped, connections=1, seconds=seconds), ours, theirs, "read1")
    shipped = ids[len(ids) // 4: len(ids) // 4 + plan.shipped_orders]
    for order_id in shipped:
        s.platform.ship(order_id)
    say(f"bridge: getOrder of shipped orders, 1 client, {plan.get_seconds:.0f} s")
    ours["get1_shipped"] = s.get_orders(bridge, s.files.ids("shipped", shipped), connections=1,
                                        seconds=plan.get_seconds)
    ours["ids"] = ids
    return ours, theirs


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    generator = PythonLoad() if args.python_load else load_generator()
    mode = "quick" if args.quick else "full"
    machine = machine_facts(generator, mode)
    report = Report(machine, {"latency_ms": args.latency_ms, "quick": args.quick})
    if isinstance(generator, PythonLoad):
        report.notes.append("wrk was not available: the Python load generator measured these figures, and above "
                            "a few hundred requests a second it measures itself rather than the bridge.")
    workdir = Path(tempfile.mkdtemp(prefix="bik-bench-"))
    namespace = f"bench:{uuid.uuid4().hex[:12]}"
    load = MachineLoad()
    started = time.monotonic()
    platform = Platform(args.latency_ms, workdir)
    own = OwnCpu()
    bridges: list[Bridge] = []

    def start(config: dict, name: str, module: str = "bridge.ops.cli", env: Optional[dict] = None) -> Bridge:
        bridge = Bridge(config, workdir, name, module, env).start()
        bridges.append(bridge)
        return bridge

    def stop(bridge: Bridge) -> None:
        bridge.stop()
        bridges.remove(bridge)

    try:
        say(f"fake store with {args.latency_ms:g} ms latency; logs in {workdir}"
            + ("" if args.keep_logs else " (removed at the end; --keep-logs keeps them)"))
        platform.start()
        files = Files(workdir)
        s = Scenarios(platform, generator, files, plan)
        server = {k: v for k, v in (("workers", args.workers), ("worker_connections", args.worker_connections)) if v}
        config = bridge_config(platform, args.redis_url, f"{namespace}:bridge", server=server)
        files.write_create(config)
        bridge = start(config, "bridge")
        workers, worker_connections = parse_server(config)
        report.settings.update(workers=workers, worker_connections=worker_connections)
        bare: Optional[Bridge] = None
        if not args.no_baseline:
            # The same file on a port of its own: gunicorn_options gives both the same worker class and counts.
            say("the bare stack (bench/reference.py) under the same gunicorn settings")
            bare = start({**config, "server": {**config["server"], "port": free_port()}}, "bare",
                         module="bench.reference", env={"BENCH_REFERENCE_CREATE_BODY": str(files.create)})
        else:
            report.notes.append("--no-baseline: the bare stack was not measured, so the targets set against it "
                                "are not judged.")
        ours, theirs = measure_pairs(s, bridge, bare, plan)
        if bare:
            stop(bare)

        cache_ids = files.ids("cached", ours["ids"][-plan.cache_ids:])
        quota_ids = files.ids("quota", ours["ids"][:200])
        stop(bridge)

        # A bridge that has never heard from the store meets the small quota with its very first requests.
        say(f"quota: {plan.quota_requests} requests per {plan.quota_window_ms / 1000:g} s window, getOrder, 16 "
            "clients, a bridge that has not seen the store before")
        quota_bridge = start(bridge_config(platform, args.redis_url, f"{namespace}:quota", server=server),
                             "bridge-quota")
        quota = s.quota(quota_bridge, quota_ids, plan.quota_window_ms / 1000 * 1.5)
        stop(quota_bridge)

        say("freshness cache: a bridge with store.get_order_cache_seconds 30")
        cached_bridge = start(bridge_config(platform, args.redis_url, f"{namespace}:cached", server=server,
                                            store={"get_order_cache_seconds": 30}), "bridge-cached")
        s.get_orders(cached_bridge, cache_ids, connections=8, seconds=2)  # warms the worker(s) these reach
        cached = s.get_orders(cached_bridge, cache_ids, connections=8, seconds=plan.get_seconds)
        stop(cached_bridge)

        other_lookup = None
        field = IdempotencyConfig.model_fields.get("lookup_before_create")
        if field is not None:
            flipped = not field.default
            say(f"placeOrder, 1 client, with idempotency.lookup_before_create: {str(flipped).lower()}")
            variant = start(bridge_config(platform, args.redis_url, f"{namespace}:lookup", server=server,
                                          idempotency={"lookup_before_create": flipped}), "bridge-lookup")
            other_lookup = (flipped, s.place_fresh(variant, "lookup_one_", connections=1,
                                                   seconds=plan.one_client_seconds))
            stop(variant)

        fill(report, plan, config, ours, theirs, cached, quota, other_lookup)
    finally:
        for bridge in list(bridges):
            stop(bridge)
        platform.stop()
        cleanup_redis(args.redis_url, namespace)
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)  # the bridge's log of a full run is tens of MB
    elapsed = time.monotonic() - started
    busy = load.busy_cores()
    background = max(0.0, busy - own.total() / elapsed)
    report.machine["background_cores"] = round(background, 2)
    report.machine["seconds"] = round(elapsed)
    if background > 0.25:
        report.notes.append(f"Other processes kept {background:.2f} of {os.cpu_count()} cores busy during this run; "
                            "throughput and tail latency are lower than on a quiet machine.")
    print()
    print(report.text())
    name = "latest-quick" if args.quick else "latest"
    json_path, md_path = report.write(Path(args.results), name)
    say(f"{mode} run took {elapsed:.0f} s; wrote {json_path} and {md_path}")
    return 0


def parse_server(config: dict) -> tuple[int, int]:
    """The bridge's workers and connections per worker, as the config gives them."""
    from bridge.bootstrap import parse_config

    server = parse_config(config, environ={}).server
    return server.workers, server.worker_connections


def fill(report: Report, plan, config: dict, ours: dict, theirs: dict, cached, quota, other_lookup) -> None:
    """The figures against their targets: each timing next to the bare stack's making the same upstream calls."""
    def bare(key: str, fn):
        return fn(theirs[key]) if key in theirs else None

    def store_ms(service: dict) -> str:
        return " + ".join(f"{op} {median(ms) or 0:.1f}" for op, ms in service.items() if ms)

    place1 = ours["place1"]
    report.add(Figure("place.upstream_requests", "fresh placeOrder: upstream requests per order",
                      place1.upstream_per("create"), "", 2, "<=", bare("place1", lambda x: x.upstream_per("create")),
                      note=f"per order: {place1.per_request('create')}"))
    report.add(Figure("place.p50", "fresh placeOrder: 1 client, median", place1.load.p50_ms, "ms", 1, "<=",
                      bare("place1", lambda x: x.load.p50_ms), "difference",
                      note=f"p99 {place1.load.p99_ms:.1f} ms (bare "
                           f"{bare('place1', lambda x: f'{x.load.p99_ms:.1f}') or '–'} ms); the store's own "
                           f"median ms: {store_ms(ours['place1'].service)}"))
    fresh = ours["fresh64"]
    report.add(Figure("fresh.rps", f"fresh placeOrder: {FRESH_CLIENTS} clients, throughput", fresh.load.rps,
                      "req/s", 0.9, ">=", bare("fresh64", lambda x: x.load.rps), "ratio",
                      note=f"{fresh.load.requests:,} requests, p50 {fresh.load.p50_ms:.0f} ms, p99 "
                           f"{fresh.load.p99_ms:.0f} ms, {fresh.load.errors} errors; CPU per request "
                           f"{fresh.cpu_ms_per_request or 0:.2f} ms (bare "
                           f"{bare('fresh64', lambda x: f'{x.cpu_ms_per_request or 0:.2f}') or '–'} ms)"))
    if other_lookup is not None:
        flipped, seen = other_lookup
        name = f"placeOrder with idempotency.lookup_before_create: {str(flipped).lower()} (not the default)"
        report.add(Figure("place.other_lookup.p50", f"{name}: 1 client, median", seen.load.p50_ms, "ms",
                          note=f"per order: {seen.per_request('create')}; p99 {seen.load.p99_ms:.1f} ms"))

    replay1, replay32 = ours["replay1"], ours["replay32"]
    report.add(Figure("replay.upstream_requests", "replay: upstream requests", replay1.upstream + replay32.upstream,
                      "", 0, "<=", note=f"over {replay1.load.requests + replay32.load.requests:,} replays"))
    report.add(Figure("replay.p50", "replay: 1 client, median", replay1.load.p50_ms, "ms", 0.3, "<=",
                      bare("replay1", lambda x: x.load.p50_ms), "difference",
                      note=f"p99 {replay1.load.p99_ms:.2f} ms (bare "
                           f"{bare('replay1', lambda x: f'{x.load.p99_ms:.2f}') or '–'} ms)"))
    report.add(Figure("replay.rps", f"replay: {REPLAY_CLIENTS} clients, throughput", replay32.load.rps, "req/s",
                      0.8, ">=", bare(f"replay{REPLAY_CLIENTS}", lambda x: x.load.rps), "ratio",
                      note=f"p99 {replay32.load.p99_ms:.0f} ms, {replay32.load.errors} errors; CPU per request "
                           f"{replay32.cpu_ms_per_request or 0:.2f} ms (bare "
                           f"{bare('replay32', lambda x: f'{x.cpu_ms_per_request or 0:.2f}') or '–'} ms)"))

    get1, shipped = ours["get1"], ours["get1_shipped"]
    report.add(Figure("get.p50", "getOrder, unshipped orders: 1 client, median", get1.load.p50_ms, "ms", 1.1,
                      "<=", bare("read1", lambda x: x.load.p50_ms), "ratio",
                      note=f"bare: one upstream GET of the same orders straight at the store; p99 "
                           f"{get1.load.p99_ms:.1f} ms (bare {bare('read1', lambda x: f'{x.load.p99_ms:.1f}') or '–'}"
                           " ms)"))
    report.add(Figure("get.upstream_unshipped", "getOrder: upstream requests per unshipped order",
                      get1.upstream_per("get_order"), "", 1, "<=",
                      note=f"per getOrder: {get1.per_request('get_order')}"))
    report.add(Figure("get.upstream_shipped", "getOrder: upstream requests per shipped order",
                      shipped.upstream_per("get_order"), "",
                      note=f"per getOrder: {shipped.per_request('get_order')}; median {shipped.load.p50_ms:.1f} ms, "
                           f"p99 {shipped.load.p99_ms:.1f} ms"))
    # A check the cache cannot answer (a first read) costs what a cold getOrder costs.
    workers, worker_connections = parse_server(config)
    first_reads = cached.stats["by_operation"].get("get_order", 0)
    cold = get1.upstream_per("get_order") or 1
    repeated = cached.load.requests - first_reads
    report.add(Figure("get.upstream_cached", "getOrder: upstream requests per repeated check, freshness cache on",
                      max(0.0, cached.upstream - cold * first_reads) / max(1, repeated), "", 0, "<=",
                      note=f"{repeated:,} repeated checks of {plan.cache_ids} orders after a warm-up, "
                           f"get_order_cache_seconds 30; {first_reads} of the checks read the store (a first read)"))

    connections = ours["connections"]
    # The most placeOrders the workers' pools can have held at once: each worker may hold all of the clients.
    in_flight = workers * min(FRESH_CLIENTS, worker_connections)
    report.add(Figure("connections.per_in_flight", "upstream connections per placeOrder in flight",
                      connections / in_flight, "", 1, "<=",
                      note=f"{connections} connections over {ours['requests']:,} fresh placeOrders, at most "
                           f"{in_flight} in the workers at once ({workers} workers, {FRESH_CLIENTS} clients)"))
    rss1, rss2 = ours["rss1"], ours["rss2"]
    report.add(Figure("memory.rss", f"RSS per worker after {ours['fresh64'].load.requests:,} requests",
                      max(rss1), "MiB", 80, "<=", note=" / ".join(f"{r:.1f}" for r in rss1)))
    growth = max(after - before for before, after in zip(rss1, rss2))
    report.add(Figure("memory.growth", f"RSS growth per worker over {ours['fresh64b'].load.requests:,} more",
                      growth, "MiB", 2, "<=", note="target: no growth; 2 MiB allows for allocator noise"))

    windows = quota.stats["windows"]
    most = max((w["sent"] for w in windows), default=0)
    report.add(Figure("quota.sent", f"exhausted quota: most requests sent in one window (quota "
                      f"{plan.quota_requests} per {plan.quota_window_ms / 1000:g} s)", most, "", plan.quota_requests,
                      "<=", note=f"{quota.stats['over_quota_attempts']} requests sent over the quota (answered 429); "
                                 f"{len(windows)} windows"))
    shares = [w["sent"] / plan.quota_requests for w in windows]
    report.add(Figure("quota.share", "exhausted quota: share of the announced quota used per window",
                      max(shares, default=0) * 100, "%",
                      note=", ".join(f"{w['sent']}/{plan.quota_requests}" for w in windows)
                      + " (the last window is cut short by the end of the run)"))


def cleanup_redis(url: str, namespace: str) -> None:
    try:
        client = redis.Redis.from_url(url, socket_timeout=5)
        names = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(names), 1000):
            client.delete(*names[i:i + 1000])
    except redis.RedisError as exc:
        say(f"could not remove the benchmark's Redis keys under {namespace}: {exc}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts: about two minutes")
    parser.add_argument("--latency-ms", type=float, default=50, help="latency the fake store adds (default 50)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the bare stack (its targets are then not judged)")
    parser.add_argument("--workers", type=int, help="server.workers for the bridge (default: the config default)")
    parser.add_argument("--worker-connections", type=int,
                        help="server.worker_connections for the bridge (default: the config default)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs and configs")
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even with wrk")
    parser.add_argument("--redis-url", default=os.environ.get("BIK_BRIDGE_BENCH_REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    try:
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        print(f"bench: needs Redis at {args.redis_url}: {exc}", file=sys.stderr)
        return 2
    return run(args)
