"""Load generators in their own processes: wrk (C, with bench/load.lua), or a Python fallback that says so.

A Python generator with threads shares the GIL with its own clients and measures itself at a few hundred
requests a second, so wrk is the one the targets are judged with; the fallback runs only where wrk cannot
be installed, and the table names it.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Workload:
    """What each request is: `mode` fresh | replay | get (to the bridge) or create | read (straight at the fake)."""

    url: str
    mode: str
    data_file: Path  # a body template with __DRAFT__, or order ids one a line
    token: str = ""
    prefix: str = ""
    pool: int = 0  # replay: drafts <prefix>0 .. <prefix>pool-1

    @property
    def direct(self) -> bool:
        return self.mode in ("create", "read")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class Wrk:
    """wrk with a Lua script; latencies are wrk's own (HdrHistogram, corrected for coordinated omission off)."""

    name = "wrk"

    def __init__(self, binary: str):
        self.binary = binary

    def run(self, work: Workload, *, connections: int, seconds: float,
            until: Optional[Callable[[], bool]] = None) -> LoadResult:
        """Run for `seconds`, or until `until()` holds (checked four times a second), whichever comes first."""
        threads = min(2, connections)
        args = [str(work.data_file), work.mode, work.prefix, str(work.pool), work.token]
        command = [self.binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
                   "-s", str(HERE / "load.lua"), work.url, "--", *args]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if until is not None:
                while proc.poll() is None and not until():
                    time.sleep(0.25)
                if proc.poll() is None:
                    # wrk stops its threads on SIGINT and reports the time it really ran.
                    proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=seconds + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no result ({proc.returncode}): {stdout}\n{stderr}")
        data = json.loads(line.split(" ", 1)[1])
        errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
        return LoadResult(data["requests"], data["duration_us"] / 1e6, errors, data["p50_us"] / 1000,
                          data["p90_us"] / 1000, data["p99_us"] / 1000, data["max_us"] / 1000)


class PythonLoad:
    """Threads with keep-alive connections; only for machines without wrk."""

    name = "python (wrk missing: throughput is the generator's, not the bridge's)"

    def run(self, work: Workload, *, connections: int, seconds: float,
            until: Optional[Callable[[], bool]] = None) -> LoadResult:
        text = work.data_file.read_text()
        ids = [line for line in text.splitlines() if line]
        parts = urlsplit(work.url)
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        end = time.monotonic() + seconds
        finished = threading.Event()

        def request(n: int, tid: int) -> tuple[str, str, dict, Optional[bytes]]:
            if work.mode == "read":
                return "GET", f"{parts.path}/{ids[(n + tid * 7919) % len(ids)]}", {"X-Auth-Token": work.token,
                                                                                     "Accept": "application/json"}, None
            if work.mode == "get":
                body = json.dumps({"orderId": ids[(n + tid * 7919) % len(ids)]})
            else:
                draft = {"fresh": f"{work.prefix}{tid}_{n}", "create": f"direct_{tid}_{n}",
                         "replay": f"{work.prefix}{(n + tid * 7919) % max(1, work.pool)}"}[work.mode]
                body = text.replace("__DRAFT__", draft)
            headers = {"Content-Type": "application/json"}
            if work.direct:
                headers.update({"X-Auth-Token": work.token, "Accept": "application/json"})
            elif work.token:
                headers["Authorization"] = f"Bearer {work.token}"
            return "POST", parts.path, headers, body.encode()

        def client(tid: int) -> None:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            mine: list[float] = []
            n = 0
            while time.monotonic() < end and not finished.is_set():
                n += 1
                method, path, headers, body = request(n, tid)
                started = time.perf_counter()
                try:
                    connection.request(method, path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    ok = response.status < 400
                except OSError:
                    connection.close()
                    ok = False
                mine.append((time.perf_counter() - started) * 1000)
                if not ok:
                    with lock:
                        errors[0] += 1
            with lock:
                latencies.extend(mine)

        started = time.monotonic()
        workers = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
        for worker in workers:
            worker.start()
        while until is not None and any(w.is_alive() for w in workers) and not until():
            time.sleep(0.25)
        finished.set()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started
        latencies.sort()

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else 0.0

        return LoadResult(len(latencies), elapsed, errors[0], statistics.median(latencies) if latencies else 0.0,
                          pct(0.90), pct(0.99), latencies[-1] if latencies else 0.0)


def load_generator(install: bool = True):
    """wrk when it is on the machine (installed from Debian's packages when we may), else the Python fallback."""
    binary = shutil.which("wrk")
    if binary is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=300)
        binary = shutil.which("wrk")
    return Wrk(binary) if binary else PythonLoad()
