"""The store answers late, not at all, or with 5xx: creates are looked up, never re-sent blindly; reads retry."""
from __future__ import annotations

import pytest

from tests.fakes.server import apply_then_status, delay_without_apply, status, status_then_apply_later

from .support import TIMEOUT_SECONDS, HeldCall, order_id, place_like_bik, posts_to_orders

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 4  # the default upstream.max_attempts


@pytest.fixture(scope="module")
def bridge(start_bridges, shared_config):
    return start_bridges(shared_config)


def get_calls(fake, operation_path: str) -> int:
    return sum(1 for r in fake.requests if r.method == "GET" and r.path.endswith(operation_path))


def test_created_then_timed_out_is_found_in_the_same_request(bridge, fake, place_body):
    held = HeldCall(apply_first=True)  # created at once, answered only after the bridge gave up waiting
    fake.faults.script("create", held)
    try:
        response = bridge.post("placeOrder", place_body)
    finally:
        held.release.set()

    assert order_id(response) == str(next(iter(fake.orders)))
    assert fake.server.wait_until(lambda: posts_to_orders(fake) >= 1), "the held create was never answered"
    assert fake.create_count == 1 and posts_to_orders(fake) == 1
    assert bridge.post("placeOrder", place_body).content == response.content


def test_created_after_the_bridge_gave_up_is_returned_by_the_retry(bridge, fake, place_body):
    held = HeldCall(apply_first=False)  # the create lands only after the bridge's lookup found nothing
    fake.faults.script("create", held)
    try:
        first = bridge.post("placeOrder", place_body)
    finally:
        held.release.set()
    assert first.status_code == 504 and int(first.headers["Retry-After"]) >= 1
    assert fake.wait_until(lambda: fake.create_count == 1)
    assert fake.server.wait_until(lambda: posts_to_orders(fake) == 1), "the held create was never answered"

    retried = place_like_bik(bridge, place_body)

    assert order_id(retried.final) == str(next(iter(fake.orders)))
    assert fake.create_count == 1 and posts_to_orders(fake) == 1


def test_timed_out_without_creating_then_the_retry_creates_exactly_one(bridge, fake, place_body):
    fake.faults.script("create", delay_without_apply(TIMEOUT_SECONDS + 0.5))

    attempts = place_like_bik(bridge, place_body)

    assert attempts.responses[0].status_code == 504
    assert all(r.status_code in (409, 504) for r in attempts.interim)
    assert order_id(attempts.final) == str(next(iter(fake.orders)))
    assert fake.create_count == 1
    assert posts_to_orders(fake) == 2  # the lost one, and the one sent after the lookup proved it absent


@pytest.mark.parametrize("code", [500, 501, 502, 503, 504, 505, 520, 522, 524, 599, 302, 408])
def test_a_create_answered_with_5xx_after_landing_is_looked_up_not_resent(bridge, fake, place_body, code):
    """Any 5xx (a CDN's 52x too), a 3xx or an unlisted 4xx after the create landed: found, never sent twice."""
    fake.faults.script("create", apply_then_status(code))

    response = bridge.post("placeOrder", place_body)

    assert order_id(response) == str(next(iter(fake.orders)))
    assert fake.create_count == 1 and posts_to_orders(fake) == 1


@pytest.mark.parametrize("code", [520, 503])
def test_a_create_answered_5xx_at_once_that_lands_later_is_found_not_resent(bridge, fake, place_body, code):
    """The store answers an error at once and makes the order a second later: every retry ends on that one order."""
    fake.faults.script("create", status_then_apply_later(code, TIMEOUT_SECONDS))

    attempts = place_like_bik(bridge, place_body)

    assert attempts.responses[0].status_code in (502, 503, 504)
    assert all(r.status_code in (409, 502, 503, 504) for r in attempts.interim)
    assert fake.create_count == 1 and posts_to_orders(fake) == 1
    assert order_id(attempts.final) == str(next(iter(fake.orders)))


def test_a_create_refused_with_5xx_is_not_resent_until_a_lookup_proves_it_absent(bridge, fake, place_body):
    fake.faults.script("create", status(502))

    attempts = place_like_bik(bridge, place_body)

    assert attempts.responses[0].status_code in (502, 504)
    assert posts_to_orders(fake) == 2
    assert fake.create_count == 1
    assert order_id(attempts.final) == str(next(iter(fake.orders)))


def test_a_burst_of_5xx_on_reads_is_retried_and_answered(bridge, fake):
    order = fake.add_order(external_source="Bik", external_order_id="nb_read_burst")
    fake.faults.script("get_order", status(500), status(502), status(503))

    response = bridge.post("getOrder", {"orderId": str(order)})

    assert response.status_code == 200 and response.json()["order"]["id"] == str(order)
    assert get_calls(fake, f"/orders/{order}") == 4


def test_a_burst_of_5xx_on_reads_longer_than_the_attempts_is_a_bounded_5xx(bridge, fake):
    order = fake.add_order(external_source="Bik", external_order_id="nb_read_outage")
    fake.faults.script("get_order", *[status(504)] * (MAX_ATTEMPTS + 2))

    response = bridge.post("getOrder", {"orderId": str(order)})

    assert response.status_code in (502, 503, 504)
    assert "error" in response.json() and int(response.headers["Retry-After"]) >= 1
    assert get_calls(fake, f"/orders/{order}") == MAX_ATTEMPTS


def test_a_burst_of_5xx_on_the_lookup_is_retried_before_the_create(bridge, fake, place_body):
    fake.faults.script("list_orders", status(503), status(500))
    fake.faults.script("create", status(504))  # ambiguous: the bridge must look the draft up, through the burst

    attempts = place_like_bik(bridge, place_body)

    assert order_id(attempts.final) == str(next(iter(fake.orders)))
    assert fake.create_count == 1
