"""`python -m bench.profile`: where a bridge worker spends its time under the benchmark's loads, with py-spy.

Starts the fake store and the bridge as `make bench` does, then for each load (fresh placeOrder at 1 client,
replay at 32 clients, fresh placeOrder at 64 clients) runs wrk and, meanwhile, `py-spy record --format raw` on every gunicorn worker. Prints
the samples' self time (the innermost Python frame) grouped by library, and the top functions. Idle waits (a
worker's event loop waiting for sockets) are not sampled, so the shares are of the time a worker was busy.
Needs py-spy (`.venv/bin/pip install py-spy`) and permission to trace the workers (root, or ptrace allowed).
"""
from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Optional

from bench.load import load_generator
from bench.processes import Bridge, Platform, bridge_config
from bench.run import DEFAULT_REDIS, cleanup_redis, say
from bench.scenarios import QUICK, Files, Scenarios

# Library of a frame, by the first pattern its file path matches; the rest is "other".
GROUPS = [
    ("gevent/greenlet (event loop, cooperative sockets)", r"(^|/)(gevent|greenlet)/"),
    ("gunicorn", r"(^|/)gunicorn/"),
    ("Flask/werkzeug", r"(^|/)(flask|werkzeug)/"),
    ("requests/urllib3/http.client", r"(^|/)(requests|urllib3|http|email)/"),
    ("redis-py", r"(^|/)redis/"),
    ("pydantic", r"(^|/)pydantic(_core)?/"),
    ("tenacity", r"(^|/)tenacity/"),
    ("prometheus_client", r"(^|/)prometheus_client/"),
    ("logging", r"((^|/)logging/|bridge/ops/logs\.py)"),
    ("json", r"(^|/)json/"),
    ("the bridge's own code", r"(^|/)(bridge|adapters)/"),
    ("socket/ssl/selectors", r"(^|/)(socket|ssl|selectors)\.py"),
]
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*)\)$")


def group_of(path: str) -> str:
    return next((name for name, pattern in GROUPS if re.search(pattern, path)), "other")


def short_path(path: str) -> str:
    """The path from the package on: site-packages/flask/app.py -> flask/app.py."""
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" else tail
    return path


def self_time(raw_files: list[Path]) -> tuple[int, collections.Counter, collections.Counter]:
    """Samples, and self samples by library and by function, from py-spy's raw (collapsed stack) output."""
    total = 0
    groups: collections.Counter = collections.Counter()
    functions: collections.Counter = collections.Counter()
    for raw in raw_files:
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            leaf = stack.rsplit(";", 1)[-1]
            match = FRAME.match(leaf)
            function, path = (match["function"], match["path"]) if match else (leaf, "")
            path = path.rsplit(":", 1)[0]  # without the line number, if py-spy gave one
            total += int(count)
            groups[group_of(path)] += int(count)
            functions[f"{function} ({short_path(path)})"] += int(count)
    return total, groups, functions


def print_profile(title: str, raw_files: list[Path], top: int) -> None:
    total, groups, functions = self_time(raw_files)
    print(f"\n## {title}: {total} busy samples over {len(raw_files)} workers\n")
    if not total:
        return
    print("| library | self time |\n|---|---|")
    for name, count in groups.most_common():
        print(f"| {name} | {count / total:.0%} |")
    print(f"\n| function (top {top}) | self time |\n|---|---|")
    for name, count in functions.most_common(top):
        print(f"| `{name}` | {count / total:.1%} |")


def record(bridge: Bridge, out: Path, seconds: int, rate: int) -> list[subprocess.Popen]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return [subprocess.Popen([spy, "record", "--format", "raw", "--nolineno", "--rate", str(rate), "--duration",
                              str(seconds), "--nonblocking", "--output", str(out / f"{pid}.txt"), "--pid", str(pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for pid in bridge.workers()]


def profile(s: Scenarios, bridge: Bridge, name: str, run_load, seconds: int, rate: int, workdir: Path,
            top: int) -> None:
    out = workdir / name
    out.mkdir()
    spies = record(bridge, out, seconds, rate)
    seen = run_load(seconds + 1)  # the load outlasts the recording
    for spy in spies:
        _, err = spy.communicate(timeout=60)
        if spy.returncode:
            say(f"py-spy failed: {err.strip()[-300:]}")
    say(f"{name}: {seen.load.requests} requests, median {seen.load.p50_ms:.2f} ms, {seen.load.rps:.0f} req/s")
    print_profile(name, sorted(out.glob("*.txt")), top)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="each profile's length (default 20)")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second (default 500)")
    parser.add_argument("--top", type=int, default=15, help="functions listed per profile (default 15)")
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bik-profile-"))
    namespace = f"bench:{uuid.uuid4().hex[:12]}"
    platform = Platform(args.latency_ms, workdir)
    bridge: Optional[Bridge] = None
    try:
        platform.start()
        files = Files(workdir)
        s = Scenarios(platform, load_generator(), files, QUICK)
        config = bridge_config(platform, args.redis_url, namespace)
        files.write_create(config)
        bridge = Bridge(config, workdir, "bridge").start()
        s.place_fresh(bridge, "warm_", connections=1, seconds=1)
        profile(s, bridge, "fresh placeOrder, 1 client",
                lambda secs: s.place_fresh(bridge, "one_", connections=1, seconds=secs),
                args.seconds, args.rate, workdir, args.top)
        s.prefill(bridge, "replay_", QUICK.replay_pool)
        profile(s, bridge, "replay, 32 clients",
                lambda secs: s.replay(bridge, "replay_", connections=32, seconds=secs),
                args.seconds, args.rate, workdir, args.top)
        profile(s, bridge, "fresh placeOrder, 64 clients",
                lambda secs: s.place_fresh(bridge, "fresh_", connections=64, seconds=secs),
                args.seconds, args.rate, workdir, args.top)
    finally:
        if bridge:
            bridge.stop()
        platform.stop()
        cleanup_redis(args.redis_url, namespace)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
