"""The processes a benchmark run starts and watches: the fake platform and bridges under gunicorn."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(method: str, url: str, body: Optional[dict] = None, timeout: float = 10) -> dict:
    """A small JSON call with the standard library, so measuring needs no client of its own."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def cpu_seconds(pid: int) -> float:
    """User plus system CPU a process has used so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE / 2**20


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


class Platform:
    """`python -m bench.platform` in its own process group: the fake store and its admin port."""

    def __init__(self, latency_ms: float, workdir: Path):
        self.latency_ms = latency_ms
        self.log_path = workdir / "platform.log"
        self.proc: Optional[subprocess.Popen] = None
        self.api = self.admin = ""
        self.store_hash = self.token = ""

    def start(self) -> "Platform":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.platform", "--latency-ms", str(self.latency_ms)], cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE, stderr=log, start_new_session=True, text=True,
        )
        log.close()
        line = self.proc.stdout.readline()  # printed once the spec is loaded and the port is bound
        if not line:
            raise RuntimeError(f"the fake platform did not start:\n{self.log_path.read_text()}")
        info = json.loads(line)
        self.api, self.admin = info["api"], info["admin"]
        self.store_hash, self.token = info["store_hash"], info["token"]
        return self

    def stats(self) -> dict:
        return http_json("GET", f"{self.admin}/stats")

    def create_count(self) -> int:
        return http_json("GET", f"{self.admin}/count")["create_count"]

    def settle(self, quiet_seconds: float = 0.3, limit_seconds: float = 30) -> None:
        """Wait until no request has reached the store for `quiet_seconds`: the bridge has drained."""
        last, quiet_since = None, time.monotonic()
        end = time.monotonic() + limit_seconds
        while time.monotonic() < end:
            now = http_json("GET", f"{self.admin}/count")
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_seconds:
                return
            time.sleep(0.05)

    def service_ms(self, operation: str) -> list[float]:
        return http_json("GET", f"{self.admin}/service-ms?op={operation}")

    def reset(self) -> None:
        http_json("POST", f"{self.admin}/reset", {})

    def set_quota(self, requests: int, window_ms: int) -> None:
        http_json("POST", f"{self.admin}/quota", {"requests": requests, "window_ms": window_ms})

    def ship(self, order_id: int) -> None:
        http_json("POST", f"{self.admin}/ship", {"order_id": order_id})

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc)
            self.proc.stdout.close()


def bridge_config(platform: Platform, redis_url: str, namespace: str, **sections) -> dict:
    """A production-shaped config for the fake store: bearer auth, Redis idempotency, JSON logs at INFO."""
    config = {
        "platform": "bigcommerce",
        "server": {"host": "127.0.0.1", "port": free_port()},
        "auth": {"scheme": "bearer", "token": TOKEN},
        "idempotency": {"backend": "redis", "redis_url": redis_url, "namespace": namespace},
        "bigcommerce": {"store_hash": platform.store_hash, "access_token": platform.token,
                        "api_base_url": platform.api},
        "logging": {"format": "json", "level": "INFO"},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


class Bridge:
    """A server under gunicorn from a config file: `bik-bridge serve --config FILE`, or the bare stack's."""

    def __init__(self, config: dict, workdir: Path, name: str, module: str = "bridge.ops.cli",
                 env: Optional[dict] = None):
        self.config = config
        self.name = name
        self.module = module
        self.env = env or {}
        self.config_path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def port(self) -> int:
        return self.config["server"]["port"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "Bridge":
        self.config_path.write_text(yaml.safe_dump(self.config))
        log = open(self.log_path, "ab")
        command = [sys.executable, "-m", self.module, "serve", "--config", str(self.config_path)]
        # The server's own environment variables would override the generated file.
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("BIK_BRIDGE_")}, **self.env}
        self.proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        expected = parse_workers(self.config)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                http_json("GET", f"{self.url}/healthz", timeout=1)
                if len(self.workers()) >= expected:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become healthy:\n{self.log_path.read_text()}")

    def workers(self) -> list[int]:
        return children(self.proc.pid) if self.proc else []

    def cpu_seconds(self) -> float:
        """CPU used so far by the master and its workers."""
        total = 0.0
        for pid in [self.proc.pid, *self.workers()]:
            try:
                total += cpu_seconds(pid)
            except OSError:
                pass
        return total

    def rss_mib(self) -> list[float]:
        return [rss_mib(pid) for pid in self.workers()]

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc)


def parse_workers(config: dict) -> int:
    from bridge.bootstrap import parse_config

    return parse_config(config, environ={}).server.workers


class MachineLoad:
    """CPU the whole machine spent between two readings, to tell how much of it others used."""

    def __init__(self) -> None:
        self.busy, self.total = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    def busy_cores(self) -> float:
        """Cores kept busy since this reading was made, on average."""
        busy, total = self._read()
        cores = os.cpu_count() or 1
        return (busy - self.busy) / max(1, total - self.total) * cores
