"""The real server as a user runs it: `bik-bridge serve` under gunicorn, in a subprocess."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import requests
import yaml

from tests.support.waiting import WaitTimedOut, wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BridgeProcess:
    """One bridge instance: a config file, a gunicorn master with its workers, and its log."""

    def __init__(self, config: dict, workdir: Path, *, env: dict | None = None, name: str = "bridge"):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.config = {**config, "server": {**config.get("server", {}), "host": "127.0.0.1", "port": self.port}}
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        # Metrics files in the test's own directory: a bridge killed at the end of its test leaves nothing elsewhere.
        metrics = tempfile.mkdtemp(prefix=f"{name}-metrics-", dir=self.workdir)
        self.env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()

    @property
    def url(self) -> str:
        base = self.config["server"].get("base_path", "")
        return f"http://127.0.0.1:{self.port}{base}"

    def start(self, timeout: float = 30) -> "BridgeProcess":
        self.config_path.write_text(yaml.safe_dump(self.config))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.ops.cli", "serve", "--config", str(self.config_path)],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        try:
            wait_until(self._healthy, "the bridge to answer /healthz", timeout=timeout, every=0.05)
        except WaitTimedOut:
            self.stop()
            raise RuntimeError(f"bridge did not become healthy:\n{self.logs()}") from None
        return self

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"bridge exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False  # not listening yet, or listening while its workers still boot

    def worker_pids(self) -> list[int]:
        """The gunicorn workers of this instance."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        # Idle keep-alive connections would hold a graceful shutdown until they time out.
        self.session.close()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL master and workers at once: for a bridge whose test is over and needs no drain."""
        self.session.close()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def logged(self, *answers: requests.Response, timeout: float = 10) -> str:
        """The log once the request line of every answer is in it (written just after the answer leaves)."""
        wanted = [f'"request_id": "{answer.headers["X-Request-Id"]}"' for answer in answers]

        def text_with_every_line() -> str:
            text = self.logs()
            lines = [line for line in text.splitlines() if '"msg": "request"' in line]
            return text if all(any(w in line for line in lines) for w in wanted) else ""

        return wait_until(text_with_every_line, f"a request line for each of {wanted}", timeout=timeout)

    def post(self, endpoint: str, body, *, headers: dict | None = None, timeout: float = 30) -> requests.Response:
        token = self.config.get("auth", {}).get("token")
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        sent.update(headers or {})
        return self.session.post(f"{self.url}/{endpoint}", json=body, headers=sent, timeout=timeout)

    def __enter__(self) -> "BridgeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
