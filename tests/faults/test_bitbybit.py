"""The same faults on bitbybit, whose orders are found again by a marker tag and whose quota is counted in seconds."""
from __future__ import annotations

import copy
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fakes.bitbybit import FakeBitbybit

from .support import (
    TOTAL_TIMEOUT_SECONDS,
    fault_config,
    kill_mid_create,
    order_id,
    place_like_bik,
    posts_to_orders,
    record_key,
    recorded,
    take_over_mid_create,
)

pytestmark = pytest.mark.integration

DUPLICATES = 50


@pytest.fixture
def fake(fake_bitbybit):
    return fake_bitbybit


@pytest.fixture(scope="module")
def config(bitbybit_server, redis_url):
    return fault_config(bitbybit_server, redis_url, idempotency={"namespace": f"faults-bb:{uuid.uuid4().hex}"})


@pytest.fixture(scope="module")
def pair(start_bridges, config):
    return start_bridges(config, "bb-left"), start_bridges(config, "bb-right")


def the_order(fake: FakeBitbybit) -> str:
    (only,) = fake.orders
    return only


def test_fifty_identical_orders_over_two_instances_make_one_order(pair, fake, place_body, forget_quota):
    fake.server.latency_ms = 50
    with ThreadPoolExecutor(max_workers=DUPLICATES) as pool:
        responses = list(pool.map(lambda i: pair[i % 2].post("placeOrder", place_body), range(DUPLICATES)))

    placed = [r for r in responses if r.status_code == 200]
    assert {order_id(r) for r in placed} == {the_order(fake)}
    assert len({r.content for r in placed}) == 1
    assert all(r.status_code == 409 and r.headers["Retry-After"] for r in responses if r.status_code != 200)
    assert fake.create_count == 1 and posts_to_orders(fake) == 1


def test_a_lease_running_out_mid_create_never_makes_a_second_order(pair, fake, place_body, redis_client, config,
                                                                  forget_quota):
    first, second = take_over_mid_create(pair, fake, place_body, redis_client, config, apply_first=False)

    assert second.status_code == 409
    settled = place_like_bik(pair[1], place_body)
    assert order_id(settled.final) == order_id(first) == the_order(fake)
    assert fake.create_count == 1


def test_a_worker_killed_after_the_create_is_recovered_by_the_retry(pair, fake, place_body, forget_quota):
    placed = kill_mid_create(pair[0], fake, place_body)

    attempts = place_like_bik(pair[1], place_body)

    assert order_id(attempts.final) == placed
    assert fake.create_count == 1 and posts_to_orders(fake) == 1


def test_a_lost_record_is_found_by_its_marker_and_not_placed_twice(pair, fake, place_body, redis_client, config,
                                                                   forget_quota):
    placed = order_id(pair[0].post("placeOrder", place_body))
    recorded(redis_client, config, place_body["draftOrderId"])
    redis_client.delete(record_key(config, place_body["draftOrderId"]))

    retried = pair[1].post("placeOrder", place_body)

    assert order_id(retried) == placed
    assert pair[1].post("getOrder", {"orderId": placed}).status_code == 200
    assert fake.create_count == 1


def test_a_quota_spent_for_several_windows_is_shared_by_both_instances(pair, fake, place_body, forget_quota):
    fake.set_rate_limit(6, window_seconds=1)
    order_id(pair[0].post("placeOrder", place_body))  # teaches both instances the window in force
    bodies = []
    for _ in range(3):
        body = copy.deepcopy(place_body)
        body["draftOrderId"] = body["order"]["id"] = f"nb_bbquota_{uuid.uuid4().hex[:10]}"
        bodies.append(body)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        responses = list(pool.map(lambda i: pair[i % 2].post("placeOrder", bodies[i],
                                                             timeout=TOTAL_TIMEOUT_SECONDS + 2), range(len(bodies))))

    assert fake.rate_limited == 0  # no request met a spent window
    assert any(r.status_code == 200 for r in responses), [r.text for r in responses]
    for response in responses:
        assert response.status_code == 200 or (response.status_code == 503 and response.headers["Retry-After"])
    assert fake.create_count == 1 + sum(r.status_code == 200 for r in responses)


def busy(fake: FakeBitbybit, orders: int) -> None:
    """Other customers' orders, newer than anything placed so far."""
    for i in range(orders):
        fake.add_order(first_name="Other", last_name=f"Buyer{i}", phone=f"+9198{i:08d}", email=None)


def test_a_returning_customer_on_a_busy_store_is_found_after_a_lost_record(pair, fake, place_body, redis_client,
                                                                           config, forget_quota):
    """bitbybit files the order under the customer's stored name, and 250 orders land after it."""
    fake.add_customer("Asha", "R.", phone=place_body["order"]["phoneNumber"], email=place_body["order"]["email"])
    placed = order_id(pair[0].post("placeOrder", place_body))
    recorded(redis_client, config, place_body["draftOrderId"])
    busy(fake, 250)
    redis_client.delete(record_key(config, place_body["draftOrderId"]))  # lost: evicted, or Redis restarted

    retried = pair[1].post("placeOrder", place_body)

    assert order_id(retried) == placed
    assert fake.create_count == 1


def test_a_lookup_that_cannot_reach_the_draft_s_time_creates_nothing(pair, fake, place_body, redis_client, config,
                                                                     forget_quota):
    """Past `lookup_max_pages` pages of newer orders the bridge cannot prove absence: 503, never a second order."""
    draft = f"nb_{int(time.time()) - 60}_{uuid.uuid4().hex[:8]}"  # Bik's shape: made a minute ago
    body = copy.deepcopy(place_body)
    body["draftOrderId"] = body["order"]["id"] = draft
    fake.add_customer("Asha", "R.", phone=body["order"]["phoneNumber"], email=body["order"]["email"])
    placed = order_id(pair[0].post("placeOrder", body))
    recorded(redis_client, config, draft)
    busy(fake, 600)  # six pages of 100 above it; the default bound is five
    redis_client.delete(record_key(config, draft))

    refused = pair[1].post("placeOrder", body)

    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1, refused.text
    assert fake.create_count == 1 and placed in fake.orders
