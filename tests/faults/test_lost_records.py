"""Records lost under two running instances, on the defaults: a Redis restarted empty, records evicted."""
from __future__ import annotations

import copy
import os
import shutil
import signal
import threading
import uuid

import pytest
import redis

from tests.fakes.server import HeldCall
from tests.support.waiting import wait_until

from .support import fault_config, order_id, place_like_bik, posts_to_orders
from .test_redis_outage import PrivateRedis

pytestmark = pytest.mark.integration

DRAFTS = 12


def drafts(place_body: dict) -> list[dict]:
    bodies = []
    for _ in range(DRAFTS):
        body = copy.deepcopy(place_body)
        body["draftOrderId"] = body["order"]["id"] = f"nb_lost_{uuid.uuid4().hex[:10]}"
        bodies.append(body)
    return bodies


def place_over(pair, bodies: list[dict]) -> dict[str, str]:
    """Each draft placed through one instance of the pair, in turn: draft id -> order id."""
    return {body["draftOrderId"]: order_id(pair[i % 2].post("placeOrder", body)) for i, body in enumerate(bodies)}


@pytest.fixture
def redis_server(tmp_path, request):
    if shutil.which("redis-server") is None:
        pytest.fail("this test needs redis-server on the PATH")
    server = PrivateRedis(tmp_path, *getattr(request, "param", ())).start()
    yield server
    server.stop()


def test_a_redis_restarted_empty_under_two_instances_makes_no_second_order(start_bridges, fake, redis_server,
                                                                           place_body):
    config = fault_config(fake, redis_server.url, idempotency={"namespace": f"restart:{uuid.uuid4().hex}"})
    pair = [start_bridges(config, "restart-a"), start_bridges(config, "restart-b")]
    bodies = drafts(place_body)
    placed = place_over(pair, bodies)

    redis_server.stop()
    redis_server.start()  # no persistence: every record is gone
    retried = place_over(list(reversed(pair)), bodies)

    assert retried == placed
    assert fake.create_count == DRAFTS and posts_to_orders(fake) == DRAFTS


# Another tenant's keys carry a TTL too; under volatile-lru and a small memory limit they push records out.
EVICTING = ("--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru")


@pytest.mark.parametrize("redis_server", [EVICTING], indirect=True)
def test_records_evicted_by_another_tenant_make_no_second_order(start_bridges, fake, redis_server, place_body):
    config = fault_config(fake, redis_server.url, idempotency={"namespace": f"evict:{uuid.uuid4().hex}"})
    pair = [start_bridges(config, "evict-a"), start_bridges(config, "evict-b")]
    bodies = drafts(place_body)
    placed = place_over(pair, bodies)
    tenant = redis.Redis(port=redis_server.port)
    namespace = config["idempotency"]["namespace"]

    blob = b"x" * 4096
    for i in range(4000):  # about 16 MB of another tenant's cache entries, with a TTL, through a 2 MB limit
        tenant.set(f"tenant:cache:{i}", blob, ex=3600)
    evicted = [b for b in bodies if not tenant.exists(f"{namespace}:{b['draftOrderId']}")]
    retried = place_over(pair, bodies)
    tenant.close()

    assert evicted, "the memory limit evicted no record: the test proves nothing"
    assert retried == placed
    assert fake.create_count == DRAFTS and posts_to_orders(fake) == DRAFTS


def ready_workers(bridge) -> set[int]:
    """The running workers of an instance that have said `worker ready`."""
    logs = bridge.logs()
    return {pid for pid in bridge.worker_pids() if f'"worker ready", "pid": {pid},' in logs}


def test_a_worker_replaced_just_after_redis_came_back_empty_does_not_hide_the_loss(start_bridges, fake,
                                                                                     redis_server, place_body):
    """Redis restarts empty while a create is on its way, and a worker dies: its replacement starts before any claim.
    A retry of the draft is held, not created again; once the create has landed, the retry is answered with it."""
    config = fault_config(fake, redis_server.url, idempotency={"namespace": f"replaced:{uuid.uuid4().hex}"})
    first, other = start_bridges(config, "replaced-a"), start_bridges(config, "replaced-b")
    for bridge in (first, other):  # every worker an instance starts with has warmed up before Redis is lost
        wait_until(lambda: len(ready_workers(bridge)) == 2, "both workers to be ready", timeout=30)
    held = HeldCall(apply_first=False)  # the create lands only when released, after its caller gave up
    fake.faults.script("create", held)
    caller = threading.Thread(target=lambda: first.post("placeOrder", place_body))
    caller.start()
    try:
        assert held.arrived.wait(10)
        redis_server.stop()
        redis_server.start()  # no persistence: the draft's record is gone, its create still on its way
        started_with = set(other.worker_pids())
        os.kill(next(iter(started_with)), signal.SIGKILL)
        wait_until(lambda: len(ready_workers(other) - started_with) == 1, "the replacement worker to be ready",
                   timeout=30)
        retry = other.post("placeOrder", place_body)
        assert retry.status_code == 409, retry.text  # held: the create sent before the loss may still land
    finally:
        held.release.set()
        caller.join(15)

    settled = place_like_bik(other, place_body)
    assert order_id(settled.final) == str(next(iter(fake.orders)))
    assert fake.create_count == 1 and posts_to_orders(fake) == 1
