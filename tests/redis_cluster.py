"""A real Redis Cluster of three primaries on loopback ports, started for the tests that need one."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import redis

from tests.support.waiting import wait_until

PRIMARIES = 3
START_SECONDS = 30
CLUSTER_BUS_OFFSET = 10000  # each node also listens on its port + 10000 for the other nodes


def _free_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is a free port too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + CLUSTER_BUS_OFFSET > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port


class LocalCluster:
    """`redis-server --cluster-enabled yes` three times, joined by `redis-cli --cluster create`; no persistence."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bik-bridge-cluster-"))
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> "LocalCluster":
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("a Redis Cluster test needs redis-server and redis-cli on the PATH (apt-get install "
                               "redis-server); .ci/run installs them")
        for _ in range(PRIMARIES):
            self._start_node(server)
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run([cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=START_SECONDS)
        wait_until(self._ready, "the cluster to cover all 16384 slots on every node", timeout=START_SECONDS)
        return self

    def _start_node(self, server: str) -> None:
        """One node on a free port; another port if that one was taken between the probe and the start."""
        for _ in range(5):
            port = _free_port()
            folder = self.workdir / str(port)
            folder.mkdir()
            proc = subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(folder / "nodes.conf"), "--dir", str(folder), "--save", "",
                 "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda: proc.poll() is not None or self._answers(port), f"redis-server on port {port}")
            if proc.poll() is None:
                self.procs.append(proc)
                self.ports.append(port)
                return
        raise RuntimeError("no redis-server of the cluster could start: every port tried was taken")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _ready(self) -> bool:
        for port in self.ports:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True)
            try:
                text = client.execute_command("CLUSTER", "INFO")
            except redis.RedisError:
                return False
            finally:
                client.close()
            info = dict(line.split(":", 1) for line in text.split() if ":" in line)
            if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != PRIMARIES:
                return False
        return True

    @staticmethod
    def _answers(port: int) -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()
