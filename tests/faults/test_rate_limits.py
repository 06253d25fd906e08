"""A 429 storm: the store's quota spent for several windows while two instances of the bridge take orders."""
from __future__ import annotations

import copy
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from .support import TOTAL_TIMEOUT_SECONDS, fault_config, order_id

pytestmark = pytest.mark.integration

QUOTA = 4  # as small as a quota can be for the first contact (bridge.upstream.quota.FIRST_CONTACT) to keep within it
WINDOW_MS = 600
ORDERS = 6  # a lookup and a create each: three windows' worth of quota, asked for at once
# Bik's patience in this test: the bridge must answer within its budget (plus the time to say so).
PATIENCE = TOTAL_TIMEOUT_SECONDS + 2


@pytest.fixture(scope="module")
def config(bigcommerce_server, redis_url):
    return fault_config(bigcommerce_server, redis_url, idempotency={"namespace": f"quota:{uuid.uuid4().hex}"})


@pytest.fixture(scope="module")
def pair(start_bridges, config):
    return start_bridges(config, "quota-left"), start_bridges(config, "quota-right")


def drafts(body: dict, count: int) -> list[dict]:
    bodies = []
    for _ in range(count):
        other = copy.deepcopy(body)
        other["draftOrderId"] = other["order"]["id"] = f"nb_quota_{uuid.uuid4().hex[:10]}"
        bodies.append(other)
    return bodies


@pytest.mark.parametrize("heard_before", [True, False], ids=["quota-known", "first-contact"])
def test_a_429_storm_is_waited_out_as_the_headers_say_never_over_the_quota(pair, fake, place_body, forget_quota,
                                                                           heard_before):
    fake.set_quota(QUOTA, window_ms=WINDOW_MS)
    # Either the instances have heard the quota, or the storm is their very first contact with the store.
    first = [order_id(pair[0].post("placeOrder", place_body)) and place_body["draftOrderId"]] if heard_before else []
    bodies = drafts(place_body, ORDERS)

    with ThreadPoolExecutor(max_workers=ORDERS) as pool:
        responses = list(pool.map(lambda i: pair[i % 2].post("placeOrder", bodies[i], timeout=PATIENCE),
                                  range(ORDERS)))

    assert fake.over_quota_attempts == 0  # no request ever met a spent window
    assert fake.max_requests_in_any_window <= QUOTA
    placed = [body["draftOrderId"] for body, r in zip(bodies, responses, strict=True) if r.status_code == 200]
    assert placed, [r.status_code for r in responses]  # the storm is waited out, not just refused
    for response in responses:
        if response.status_code != 200:
            # Gave up within its budget: a 503 saying when to come back, and no order left behind.
            assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1, response.text
    by_draft = [order.header["external_order_id"] for order in fake.orders.values()]
    assert sorted(by_draft) == sorted([*first, *placed])


def test_a_quota_that_resets_beyond_the_budget_is_refused_at_once_without_sending(pair, fake, place_body,
                                                                                  forget_quota):
    fake.set_quota(2, window_ms=20_000)
    order_id(pair[0].post("placeOrder", place_body))  # a lookup and a create: the window is spent
    sent = len(fake.requests)

    refused = [bridge.post("placeOrder", body, timeout=PATIENCE)
               for bridge, body in zip(pair, drafts(place_body, 2), strict=True)]
    read = pair[1].post("getOrder", {"orderId": "100"}, timeout=PATIENCE)

    for response in [*refused, read]:
        assert response.status_code == 503, response.text
        assert int(response.headers["Retry-After"]) > TOTAL_TIMEOUT_SECONDS
    assert len(fake.requests) == sent  # the other instance knew too, and sent nothing
    assert fake.over_quota_attempts == 0
