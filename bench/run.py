"""`python -m bench [--quick]`: the bridge under gunicorn against the fake store, figures against the targets.

One run starts the fake BigCommerce (its own process, 50 ms injected latency by default), the bridge exactly
as `bik-bridge serve` runs it (Redis idempotency in a namespace of its own), and wrk in its own process; then
the same load against the naïve baseline (bench/baseline.py), so every gain is a ratio from one run. Results
go to bench/results/latest.{json,md} (latest-quick.* for --quick).
"""
from __future__ import annotations

import argparse
import os
import platform as python_platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import redis

from bench.baseline import SERVER as BASELINE_SERVER
from bench.load import PythonLoad, Workload, load_generator
from bench.processes import Bridge, MachineLoad, Platform, Reference, bridge_config, cpu_seconds
from bench.report import Figure, Report
from bench.scenarios import FULL, QUICK, Files, Scenarios, median, percentile
from bridge.config import IdempotencyConfig

HERE = Path(__file__).resolve().parent
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine_facts(generator, mode: str) -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")), cpu)
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout
    # The results of an earlier run are not changes to what is measured.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":!/bench/results"],
                           capture_output=True, text=True, cwd=HERE).stdout
    return {
        "mode": mode, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": cpu, "python": python_platform.python_version(),
        "load_generator": generator.name, "commit": commit.strip() + (" (with uncommitted changes)" if dirty else ""),
    }


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


def measure_bridge(s: Scenarios, bridge: Bridge, tag: str, plan, *, full_run: bool,
                   shipped: Optional[list[int]] = None) -> dict:
    """Every measurement through one bridge; `full_run` adds memory, connections, cache-free shipped reads."""
    out: dict = {"connections_before": s.platform.stats()["connections_total"]}
    # Steady state: a worker thread's first order also opens its connection to the store, once per process.
    s.place_fresh(bridge, f"{tag}_warm_", connections=1, seconds=1)
    say(f"{tag}: placeOrder, 1 client, {plan.one_client_seconds:.0f} s")
    out["place1"] = s.place_fresh(bridge, f"{tag}_one_", connections=1, seconds=plan.one_client_seconds)
    out["place1_service"] = s.service_ms("create")
    say(f"{tag}: replay, placing {plan.replay_pool} drafts first")
    s.prefill(bridge, f"{tag}_replay_", plan.replay_pool)
    out["replay1"] = s.replay(bridge, f"{tag}_replay_", connections=1, seconds=plan.replay_seconds / 2)
    say(f"{tag}: replay, 32 clients, {plan.replay_seconds:.0f} s")
    out["replay32"] = s.replay(bridge, f"{tag}_replay_", connections=32, seconds=plan.replay_seconds)
    requests_ = plan.fresh_requests if full_run else plan.baseline_fresh_requests
    say(f"{tag}: fresh placeOrder, {FRESH_CLIENTS} clients, {requests_} requests")
    out["fresh64"] = s.place_fresh(bridge, f"{tag}_fresh_", connections=FRESH_CLIENTS, requests_=requests_)
    out["rss1"] = bridge.rss_mib()
    if full_run:
        say(f"{tag}: fresh placeOrder, {FRESH_CLIENTS} clients, {requests_} more requests (memory growth)")
        out["fresh64b"] = s.place_fresh(bridge, f"{tag}_fresh2_", connections=FRESH_CLIENTS, requests_=requests_)
        out["rss2"] = bridge.rss_mib()
    out["connections"] = s.platform.stats()["connections_total"] - out["connections_before"]
    out["requests"] = plan.replay_pool + sum(out[k].load.requests for k in ("place1", "replay1", "replay32",
                                                                           "fresh64", "fresh64b") if k in out)
    ids = s.order_ids()
    unshipped = ids[len(ids) // 2: len(ids) // 2 + 200]
    say(f"{tag}: getOrder, 1 client, {plan.get_seconds:.0f} s")
    out["get1"] = s.get_orders(bridge, s.files.ids(f"{tag}-unshipped", unshipped), connections=1,
                               seconds=plan.get_seconds)
    if shipped is None:
        shipped = ids[len(ids) // 4: len(ids) // 4 + plan.shipped_orders]
        for order_id in shipped:
            s.platform.ship(order_id)
    out["shipped"] = shipped
    say(f"{tag}: getOrder of shipped orders, 1 client, {plan.get_seconds:.0f} s")
    out["get1_shipped"] = s.get_orders(bridge, s.files.ids(f"{tag}-shipped", shipped), connections=1,
                                       seconds=plan.get_seconds)
    out["ids"] = ids
    return out


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

    def start(config: dict, name: str, module: str = "bridge.ops.cli") -> Bridge:
        bridge = Bridge(config, workdir, name, module).start()
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
        say(f"one store round trip without the bridge, 1 client, {plan.one_client_seconds:.0f} s")
        direct = s.direct_create(plan.one_client_seconds)
        ours = measure_bridge(s, bridge, "bridge", plan, full_run=True)
        direct_read = s.direct_read(files.ids("direct", ours["ids"][:200]), plan.get_seconds)

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

        base: Optional[dict] = None
        if not args.no_baseline:
            say("naïve baseline: new connection per call, sequential reads, 2 workers × 8 threads")
            # Its worker class and threads are its own (bench/baseline.py); only the process count goes in the file.
            base_config = bridge_config(platform, args.redis_url, f"{namespace}:baseline",
                                        server={"workers": BASELINE_SERVER["workers"]})
            baseline = start(base_config, "baseline", module="bench.baseline")
            base = measure_bridge(s, baseline, "baseline", plan, full_run=False, shipped=ours["shipped"])
            stop(baseline)

        ref: Optional[dict] = None
        if not args.no_baseline:
            say("bare reference apps (Flask + Redis lookup; Flask forwarding with requests), same gunicorn settings")
            ref = measure_reference(s, workdir, config, platform, args.redis_url, f"{namespace}:reference")

        fill(report, plan, config, direct, direct_read, ours, base, cached, quota, other_lookup, ref)
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


def measure_reference(s: Scenarios, workdir: Path, config: dict, platform: Platform, redis_url: str,
                      namespace: str) -> dict:
    """The issue's two reference points, measured here: what the bridge's throughput is a share of."""
    workers, _ = parse_server(config)
    env = {"BENCH_REFERENCE_REDIS_URL": redis_url, "BENCH_REFERENCE_NAMESPACE": namespace,
           "BENCH_REFERENCE_STORE_URL": f"{platform.api}/stores/{platform.store_hash}/v2/orders",
           "BENCH_REFERENCE_STORE_TOKEN": platform.token, "BENCH_REFERENCE_CREATE_BODY": str(s.files.create)}
    reference = Reference(workdir, workers=workers, env=env).start()
    try:
        plan = s.plan
        replay = Workload(f"{reference.url}/replay", "replay", s.files.place, "", "ref_", plan.replay_pool)
        s.generator.run(replay, connections=8, seconds=2)  # stores every key once
        out = {"replay": s.measure(reference, replay, 32, plan.replay_seconds)}
        forward = Workload(f"{reference.url}/forward", "fresh", s.files.place, "", "ref_fresh_")
        one = Workload(f"{reference.url}/forward", "fresh", s.files.place, "", "ref_one_")
        out["forward1"] = s.measure(reference, one, 1, plan.one_client_seconds)
        out["forward"] = s.measure(reference, forward, 64, 600, creates=plan.baseline_fresh_requests)
        return out
    finally:
        reference.stop()


def parse_server(config: dict) -> tuple[int, int]:
    """The bridge's workers and connections per worker, as the config gives them."""
    from bridge.bootstrap import parse_config

    server = parse_config(config, environ={}).server
    return server.workers, server.worker_connections


def fill(report: Report, plan, config: dict, direct, direct_read, ours: dict, base: Optional[dict], cached, quota,
         other_lookup, ref: Optional[dict]) -> None:
    """The figures of the issue's target list, in its order, with the baseline's where it ran the same load."""
    def b(key: str, fn):
        return fn(base[key]) if base else None

    def overhead(seen, pct: str) -> float:
        return getattr(seen.load, pct) - getattr(direct.load, pct)

    place1 = ours["place1"]
    report.add(Figure("place.upstream_requests", "placeOrder: upstream requests per order (happy path)",
                      place1.upstream_per("create"), "", 1, "<=", b("place1", lambda x: x.upstream_per("create")),
                      note=place1.operations()))
    report.add(Figure("place.overhead_p50", "placeOrder: bridge overhead over one store round trip, 1 client, "
                      "median", overhead(place1, "p50_ms"), "ms", 3, "<=", b("place1", lambda x: overhead(x, "p50_ms")),
                      note=f"bridge {place1.load.p50_ms:.1f} ms − store round trip {direct.load.p50_ms:.1f} ms"))
    report.add(Figure("place.overhead_p99", "placeOrder: bridge overhead, 1 client, p99", overhead(place1, "p99_ms"),
                      "ms", 10, "<=", b("place1", lambda x: overhead(x, "p99_ms")),
                      note=f"bridge {place1.load.p99_ms:.1f} ms − store round trip {direct.load.p99_ms:.1f} ms"))
    if other_lookup is not None:
        flipped, seen = other_lookup
        name = f"placeOrder with idempotency.lookup_before_create: {str(flipped).lower()} (not the default)"
        report.add(Figure("place.other_lookup.upstream_requests", f"{name}: upstream requests per order",
                          seen.upstream_per("create"), note=seen.operations()))
        report.add(Figure("place.other_lookup.overhead_p50", f"{name}: overhead, median",
                          overhead(seen, "p50_ms"), "ms", note=f"p99 overhead {overhead(seen, 'p99_ms'):.1f} ms"))
    if ref:
        report.add(Figure("reference.forward_overhead_p50", "reference: bare Flask forwarding the create with "
                          "requests, 1 client, overhead over one store round trip, median",
                          overhead(ref["forward1"], "p50_ms"), "ms",
                          note=f"what gunicorn, Flask and requests alone add; the bridge adds "
                               f"{overhead(place1, 'p50_ms') - overhead(ref['forward1'], 'p50_ms'):.1f} ms more"))
    service = ours["place1_service"]
    report.add(Figure("place.store_service_p50", "placeOrder: the store's own time per create (50 ms injected)",
                      median(service), "ms", note=f"p99 {percentile(service, 0.99) or 0:.1f} ms; bridge median minus "
                      f"this: {place1.load.p50_ms - (median(service) or 0):.1f} ms"))

    replay1, replay32 = ours["replay1"], ours["replay32"]
    report.add(Figure("replay.upstream_requests", "replay: upstream requests", replay1.upstream + replay32.upstream,
                      "", 0, "<=", b("replay32", lambda x: x.upstream + base["replay1"].upstream),
                      note=f"over {replay1.load.requests + replay32.load.requests:,} replays"))
    report.add(Figure("replay.p50", "replay: 1 client, median", replay1.load.p50_ms, "ms", 2, "<=",
                      b("replay1", lambda x: x.load.p50_ms)))
    report.add(Figure("replay.rps", "replay: 32 clients, throughput", replay32.load.rps, "req/s", 1200, ">=",
                      b("replay32", lambda x: x.load.rps), better="higher",
                      note=f"p99 {replay32.load.p99_ms:.0f} ms; bridge CPU {replay32.cpu_ms_per_request or 0:.2f} ms "
                           f"per request; {replay32.load.errors} errors"))

    if ref:
        share = replay32.load.rps / ref["replay"].load.rps if ref["replay"].load.rps else 0
        report.add(Figure("reference.replay_rps", "reference: bare Flask + Redis lookup, 32 clients",
                          ref["replay"].load.rps, "req/s", better="higher",
                          note=f"the issue measured about 1,800; the bridge's replay keeps {share:.0%} of it here"))

    fresh = ours["fresh64"]
    report.add(Figure("fresh.rps", "fresh placeOrder: 64 clients, throughput", fresh.load.rps, "req/s", 300, ">=",
                      b("fresh64", lambda x: x.load.rps), better="higher",
                      note=f"{fresh.load.requests:,} requests, p50 {fresh.load.p50_ms:.0f} ms, p99 "
                           f"{fresh.load.p99_ms:.0f} ms; bridge CPU {fresh.cpu_ms_per_request or 0:.2f} ms per "
                           f"request; {fresh.load.errors} errors"))

    if ref:
        share = fresh.load.rps / ref["forward"].load.rps if ref["forward"].load.rps else 0
        report.add(Figure("reference.forward_rps", "reference: bare Flask forwarding the create with requests, "
                          "64 clients", ref["forward"].load.rps, "req/s", better="higher",
                          note=f"the issue measured about 370; the bridge's fresh placeOrder keeps {share:.0%} of it "
                               f"here; its CPU {ref['forward'].cpu_ms_per_request or 0:.2f} ms per request"))

    get1, shipped = ours["get1"], ours["get1_shipped"]
    read_rtt = direct_read.load.p50_ms
    report.add(Figure("get.p50", "getOrder: 1 client, median wall time", get1.load.p50_ms, "ms",
                      round(1.3 * read_rtt + 5, 1), "<=", b("get1", lambda x: x.load.p50_ms),
                      note=f"target 1.3 × one store read ({read_rtt:.1f} ms) + 5 ms; p99 {get1.load.p99_ms:.1f} ms"))
    report.add(Figure("get.upstream_cold", "getOrder: upstream requests, cold, nothing shipped",
                      get1.upstream_per("get_order"), "", 4, "<=", b("get1", lambda x: x.upstream_per("get_order")),
                      note=get1.operations()))
    report.add(Figure("get.upstream_shipped", "getOrder: upstream requests, shipped orders",
                      shipped.upstream_per("get_order"), "", 4, "<=",
                      b("get1_shipped", lambda x: x.upstream_per("get_order")),
                      note=f"median {shipped.load.p50_ms:.1f} ms, p99 {shipped.load.p99_ms:.1f} ms (the first read "
                           "of a shipped order in a worker takes a second round trip)"))
    # Each worker keeps its own cache: its first read of an order is a cold one, wherever the warm-up landed.
    workers, worker_connections = parse_server(config)
    first_reads = cached.stats["by_operation"].get("get_order", 0)
    repeated = cached.load.requests - first_reads
    report.add(Figure("get.upstream_cached", "getOrder: upstream requests per repeated check, freshness cache on",
                      (cached.upstream - 3 * first_reads) / max(1, repeated), "", 0, "<=",
                      note=f"{repeated:,} repeated checks of {plan.cache_ids} orders, get_order_cache_seconds 30; "
                           f"{first_reads} first reads by a worker (at most {workers} per order) read the store"))

    connections = ours["connections"]
    # The most placeOrders the workers' pools can have held at once: each worker's peak is all of the load's
    # clients, or its threads when it has fewer (the baseline's thread workers).
    in_flight = workers * min(FRESH_CLIENTS, worker_connections)
    base_in_flight = BASELINE_SERVER["workers"] * min(FRESH_CLIENTS, BASELINE_SERVER["threads"])
    report.add(Figure("connections.per_thread", "upstream connections per placeOrder in flight",
                      connections / in_flight, "", 1, "<=",
                      base["connections"] / base_in_flight if base else None,
                      note=f"{connections} connections over {ours['requests']:,} placeOrders, at most {in_flight} "
                           f"in the workers at once ({workers} workers, {FRESH_CLIENTS} clients)"))
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
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline and the reference apps")
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
