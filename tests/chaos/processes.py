"""The processes a chaos run controls: its own redis-server, two `bik-bridge serve` instances, the reconciler."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import redis

from tests.integration.bridge_process import BridgeProcess, free_port
from tests.support.waiting import wait_until

START_SECONDS = 30.0


def alive(pid: int) -> bool:
    """Whether a process still exists (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def clean_env(extra: Optional[dict] = None) -> dict:
    """This environment without BIK_BRIDGE_* settings, which would override the generated config files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIK_BRIDGE_")}
    env.update(extra or {})
    return env


class ChaosRedis:
    """A redis-server of the run's own, on a free port with its own directory; killed and started at will."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("the chaos run needs redis-server on the PATH")
        self.binary = binary
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "redis.log"
        self.persistent = False
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=2)

    def start(self) -> "ChaosRedis":
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
                       else ["--appendonly", "no"])
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
                 *persistence], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = self.client()
        try:
            wait_until(lambda: self._answers(client), "redis-server to answer", timeout=START_SECONDS)
        finally:
            client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: whatever was not on disk is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def keys(self) -> int:
        client = self.client()
        try:
            return client.dbsize()
        finally:
            client.close()

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            # Loading an AOF answers LOADING errors until done.
            return bool(client.ping())
        except redis.RedisError:
            return False


class Instance(BridgeProcess):
    """One `bik-bridge serve` (gunicorn master and workers) that can be crashed and started again on its port."""

    def __init__(self, config: dict, workdir: Path, name: str) -> None:
        super().__init__(config, workdir, name=name)
        self.name = name
        self.metrics_dir = self.workdir / f"{name}-metrics"
        # The metrics directory is the run's own, so a killed master leaves nothing behind outside it.
        self.env = clean_env({"PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)})
        self.workers = int(config.get("server", {}).get("workers") or _default_workers())

    def start(self, timeout: float = START_SECONDS) -> "Instance":
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.metrics_dir.mkdir()
        super().start(timeout)
        wait_until(lambda: len(self.worker_pids()) >= self.workers, f"{self.name}'s workers", timeout=timeout)
        return self

    def kill_worker(self, pick: float) -> Optional[int]:
        """SIGKILL one worker (chosen by `pick` in [0, 1)); wait until the master has replaced it."""
        workers = sorted(self.worker_pids())
        if not workers:
            return None
        victim = workers[int(pick * len(workers))]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not alive(victim), f"worker {victim} to die", timeout=START_SECONDS)
        wait_until(lambda: victim not in self.worker_pids() and len(self.worker_pids()) >= self.workers,
                   f"{self.name} to replace worker {victim}", timeout=START_SECONDS)
        return victim

    def crash(self) -> None:
        """SIGKILL the master and its workers at once, as a crashed container; wait until all are gone."""
        pids = [self.proc.pid, *self.worker_pids()]
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        wait_until(lambda: not any(alive(pid) for pid in pids), f"{self.name}'s processes to exit",
                   timeout=START_SECONDS)


def _default_workers() -> int:
    from bridge.config import ServerConfig

    return ServerConfig().workers


@dataclass(frozen=True)
class Reconciled:
    code: int
    summary: str
    seconds: float


def reconcile(instance: Instance) -> Reconciled:
    """`bik-bridge reconcile --older-than 0` against an instance's config file, as cron would run it."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bridge.ops.cli", "reconcile", "--config", str(instance.config_path), "--older-than", "0"],
        cwd=instance.workdir, env=clean_env(), capture_output=True, text=True, timeout=120, check=False)
    (instance.workdir / "reconcile.log").write_text(done.stdout + done.stderr)
    lines = done.stdout.strip().splitlines()
    summary = lines[-1] if lines else (done.stderr.strip().splitlines() or ["no output"])[-1]
    return Reconciled(done.returncode, summary, time.monotonic() - started)


# The draft ids the chaos clients make (tests/chaos/clients.py make_drafts).
DRAFT_ID = re.compile(r"\bnb_\d+_[0-9a-f]+\b")


def queued_drafts(instance: Instance) -> str:
    """What `bik-bridge queue list` says against an instance's config: how many drafts it lists as queued."""
    done = subprocess.run(
        [sys.executable, "-m", "bridge.ops.cli", "queue", "list", "--config", str(instance.config_path)],
        cwd=instance.workdir, env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
        return f"failed (exit {done.returncode}: {last})"
    summary = next((line for line in reversed(done.stdout.splitlines()) if line.startswith("queue:")), None)
    return summary or f"{len(set(DRAFT_ID.findall(done.stdout)))} drafts listed"
