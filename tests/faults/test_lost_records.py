"""Records lost under two running instances, on the defaults: a Redis restarted empty, records evicted."""
from __future__ import annotations

import copy
import shutil
import uuid

import pytest
import redis

from .support import fault_config, order_id, posts_to_orders
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
