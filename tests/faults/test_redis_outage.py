"""Redis stops under a running bridge, then comes back: placeOrder refuses safely, getOrder carries on."""
from __future__ import annotations

import copy
import shutil
import socket
import subprocess
import threading
import uuid

import pytest
import redis

from tests.integration.bridge_process import free_port
from tests.support.waiting import wait_until

from .support import HeldCall, fault_config, order_id, place_like_bik

pytestmark = pytest.mark.integration


class PrivateRedis:
    """A redis-server of this test's own, without persistence, stoppable and restartable on the same port."""

    def __init__(self, workdir, *args: str) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.args = args  # more redis-server options, such as a memory limit and an eviction policy
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *self.args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(lambda: self._answers(client), "redis-server to answer")
        client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        with socket.socket() as probe:  # nothing listens on the port any more
            assert probe.connect_ex(("127.0.0.1", self.port)) != 0

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return client.ping()
        except redis.RedisError:
            return False


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("this test needs redis-server on the PATH")
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


def test_redis_down_refuses_place_order_and_recovers_without_a_restart(start_bridges, fake, private_redis,
                                                                       place_body):
    config = fault_config(fake, private_redis.url, idempotency={"namespace": f"outage:{uuid.uuid4().hex}"})
    bridge = start_bridges(config, "outage")
    placed = order_id(bridge.post("placeOrder", place_body))
    sent_before = len(fake.requests)
    other = copy.deepcopy(place_body)
    other["draftOrderId"] = other["order"]["id"] = f"nb_outage_{uuid.uuid4().hex[:8]}"

    private_redis.stop()
    refused = [bridge.post("placeOrder", other) for _ in range(4)]  # reaching both workers, several connections
    read = bridge.post("getOrder", {"orderId": placed})
    ready = bridge.session.get(f"{bridge.url}/readyz")

    for response in refused:
        assert response.status_code == 503, response.text
        assert int(response.headers["Retry-After"]) >= 1 and "error" in response.json()
    assert len([r for r in fake.requests[sent_before:] if r.path.endswith("/v2/orders")]) == 0
    assert read.status_code == 200 and read.json()["order"]["id"] == placed
    assert ready.status_code == 503

    private_redis.start()  # empty: no persistence, every record is gone
    # A create sent before the loss could still be landing: a new draft waits one budget, then is placed once.
    attempts = place_like_bik(bridge, other)
    replay = bridge.post("placeOrder", other)
    again = bridge.post("placeOrder", place_body)

    assert attempts.responses[0].status_code == 409 and int(attempts.responses[0].headers["Retry-After"]) >= 1
    assert order_id(attempts.final) and replay.content == attempts.final.content
    # The lost record of the first order is made good by the lookup before any create.
    assert order_id(again) == placed
    assert fake.create_count == 2
    assert bridge.session.get(f"{bridge.url}/readyz").status_code == 200


def test_redis_lost_between_the_create_and_its_record_still_makes_one_order(start_bridges, fake, private_redis,
                                                                          place_body):
    config = fault_config(fake, private_redis.url, idempotency={"namespace": f"outage:{uuid.uuid4().hex}"})
    bridge = start_bridges(config, "lost")
    held = HeldCall(apply_first=True)
    fake.faults.script("create", held)
    first: dict = {}
    caller = threading.Thread(target=lambda: first.update(response=bridge.post("placeOrder", place_body)))
    caller.start()
    try:
        assert held.arrived.wait(10)
        private_redis.stop()  # the claim is gone with it; the order already exists
    finally:
        held.release.set()
        caller.join(15)

    placed = order_id(first["response"])  # placed, though the bridge could not record it
    private_redis.start()
    retried = bridge.post("placeOrder", place_body)

    assert order_id(retried) == placed
    assert fake.create_count == 1
