"""Duplicates racing each other: many at once over two instances, and a second owner after a lease ran out."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from .support import (
    fault_config,
    order_id,
    place_like_bik,
    posts_to_orders,
    recorded,
    take_over_mid_create,
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


def test_fifty_identical_orders_over_two_instances_on_a_redis_cluster_make_one_order(start_bridges, fake, place_body,
                                                                                     redis_cluster):
    """A managed Redis is often a cluster: the claim, the record and the shared quota work across its slots."""
    config = fault_config(fake, redis_cluster.url, idempotency={"namespace": f"cluster:{uuid.uuid4().hex}"})
    on_cluster = start_bridges(config, "cluster-left"), start_bridges(config, "cluster-right")
    fake.latency_ms = 50
    with ThreadPoolExecutor(max_workers=DUPLICATES) as pool:
        responses = list(pool.map(lambda i: on_cluster[i % 2].post("placeOrder", place_body), range(DUPLICATES)))

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
    first, second = take_over_mid_create(pair, fake, place_body, redis_client, shared_config,
                                         apply_first=landed_before_takeover)

    placed = order_id(first)
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
    recorded(redis_client, shared_config, place_body["draftOrderId"])
