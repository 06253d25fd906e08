"""Duplicates racing each other: many at once over two instances, and a second owner after a lease ran out."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from .support import (
    HeldCall,
    expire_lease,
    fault_config,
    order_id,
    place_like_bik,
    posts_to_orders,
    record_key,
)

pytestmark = pytest.mark.integration

DUPLICATES = 50


@pytest.fixture(scope="module")
def pair(start_bridges, shared_config):
    """Two bridge instances, two workers each, sharing one Redis namespace: a deployment behind a balancer."""
    return start_bridges(shared_config, "left"), start_bridges(shared_config, "right")


def assert_one_order_for_all(responses, fake) -> None:
    placed = [r for r in responses if r.status_code == 200]
    assert placed, [r.status_code for r in responses]
    assert {order_id(r) for r in placed} == {str(next(iter(fake.orders)))}
    assert len({r.content for r in placed}) == 1  # the replays are the first answer, byte for byte
    for refused in (r for r in responses if r.status_code != 200):
        assert refused.status_code == 409, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
    assert fake.create_count == 1
    assert posts_to_orders(fake) == 1


def test_fifty_identical_orders_over_two_instances_make_one_order(pair, fake, place_body):
    fake.latency_ms = 50  # a slow store keeps the duplicates overlapping the first create
    with ThreadPoolExecutor(max_workers=DUPLICATES) as pool:
        responses = list(pool.map(lambda i: pair[i % 2].post("placeOrder", place_body), range(DUPLICATES)))

    assert_one_order_for_all(responses, fake)


def test_fifty_identical_orders_on_sqlite_across_workers_make_one_order(start_bridges, fake, place_body,
                                                                         redis_url, tmp_path):
    config = fault_config(fake, redis_url, server={"workers": 3},
                          idempotency={"backend": "sqlite", "sqlite_path": str(tmp_path / "idempotency.db")})
    bridge = start_bridges(config, "sqlite")
    fake.latency_ms = 50
    with ThreadPoolExecutor(max_workers=DUPLICATES) as pool:
        responses = list(pool.map(lambda _: bridge.post("placeOrder", place_body), range(DUPLICATES)))

    assert_one_order_for_all(responses, fake)


@pytest.mark.parametrize("landed_before_takeover", [True, False], ids=["created-then-held", "held-then-created"])
def test_a_lease_running_out_mid_create_never_makes_a_second_order(pair, fake, place_body, redis_client,
                                                                  shared_config, landed_before_takeover):
    held = HeldCall(apply_first=landed_before_takeover)
    fake.faults.script("create", held)
    first: dict = {}
    owner = threading.Thread(target=lambda: first.update(response=pair[0].post("placeOrder", place_body)))
    owner.start()
    try:
        assert held.arrived.wait(10)
        expire_lease(redis_client, shared_config, place_body["draftOrderId"])

        second = pair[1].post("placeOrder", place_body)
    finally:
        held.release.set()
        owner.join(15)

    placed = order_id(first["response"])
    if landed_before_takeover:
        # The new owner looked the draft up before anything else and found the first create.
        assert order_id(second) == placed
    else:
        # Nothing on the store yet and the first owner's budget not over: the new owner holds off.
        assert second.status_code == 409 and int(second.headers["Retry-After"]) >= 1
    settled = place_like_bik(pair[1], place_body)
    assert order_id(settled.final) == placed
    assert fake.create_count == 1
    assert posts_to_orders(fake) == 1
    assert redis_client.hget(record_key(shared_config, place_body["draftOrderId"]), "state") == b"done"
