"""Makes sure the suite has a real Redis: the one on 127.0.0.1:6379, else a throwaway redis-server."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile

from tests.support.waiting import WaitTimedOut, wait_until

ENV = "BIK_BRIDGE_TEST_REDIS_URL"
_started: list[subprocess.Popen] = []


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_configure(config) -> None:
    if os.environ.get(ENV) or _answers(6379):
        os.environ.setdefault(ENV, "redis://127.0.0.1:6379/15")
        return
    binary = shutil.which("redis-server")
    if binary is None:
        return  # the Redis tests then fail and say how to get one
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="bik-bridge-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _started.append(proc)
    try:
        wait_until(lambda: _answers(port), f"redis-server on port {port}", every=0.05)
    except WaitTimedOut:
        pass  # the Redis tests then fail and say why; the others still run
    os.environ[ENV] = f"redis://127.0.0.1:{port}/15"


def pytest_unconfigure(config) -> None:
    for proc in _started:
        proc.terminate()
        proc.wait(timeout=10)
