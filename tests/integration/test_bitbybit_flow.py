"""End to end on bitbybit: the real server under gunicorn, a fake bitbybit store that checks every request.

One bridge serves most tests (starting gunicorn dominates the runtime); each test resets the fake store and
uses a draft id of its own, so the tests stay independent.
"""
from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fakes import server as faults
from tests.fakes.bitbybit import FakeBitbybit
from tests.integration.bridge_process import BridgeProcess
from tests.integration.conftest import TOKEN, bitbybit_config

pytestmark = pytest.mark.integration

# Short budgets keep the timeout tests quick: one attempt 1 s, a whole Bik call 2.5 s.
UPSTREAM = {"timeout_seconds": 1, "total_timeout_seconds": 2.5, "connect_timeout_seconds": 1}


@pytest.fixture
def fake(fake_bitbybit) -> FakeBitbybit:
    return fake_bitbybit


@pytest.fixture(scope="module")
def bridge(bitbybit_server, redis_url, tmp_path_factory):
    # A short lease grace: a draft whose create timed out is retried soon after its budget ends.
    config = bitbybit_config(bitbybit_server, redis_url, upstream=UPSTREAM,
                             idempotency={"lease_grace_seconds": 0.5, "wait_seconds": 2})
    process = BridgeProcess(config, tmp_path_factory.mktemp("bitbybit"), name="bitbybit")
    with process:
        yield process


def creates(fake: FakeBitbybit) -> list:
    return [r for r in fake.requests if r.method == "POST"]


def place_until_settled(bridge: BridgeProcess, body: dict, limit: float = 15.0):
    """placeOrder again while the bridge says the draft is still settling (409 + Retry-After), bounded."""
    deadline = time.monotonic() + limit
    while True:
        response = bridge.post("placeOrder", body)
        if response.status_code != 409 or time.monotonic() > deadline:
            return response
        # Bik's pause before its next try, as the bridge asked (shortened): the retry is the flow under test.
        time.sleep(min(0.5, float(response.headers.get("Retry-After", "1"))))


def test_place_order_creates_one_order_and_answers_bik_shape(bridge, fake, place_body):
    response = bridge.post("placeOrder", place_body)

    assert response.status_code == 200, response.text
    order = response.json()["order"]
    assert fake.create_count == 1 and len(creates(fake)) == 1
    assert fake.invalid_requests == []
    stored = fake.order(order["id"])
    assert f"bik:{place_body['draftOrderId']}" in stored["tags"] and "ordered_via_bik" in stored["tags"]
    assert f"draftOrderId: {place_body['draftOrderId']}" in stored["notes"]
    assert stored["customer"]["phoneNumber"] == "+919876543210"
    assert order["name"] == f"#{stored['orderNumber']}"
    assert (order["status"], order["paymentStatus"], order["fulfillmentStatus"]) == ("ORDERED", "pending",
                                                                                    "unfulfilled")
    # bitbybit priced the lines from its catalog and took no shipping or discount: its total is the answer.
    assert (order["subTotal"], order["shippingCharge"], order["discount"], order["total"]) == (998, 0, 0, 998)
    assert order["currency"] == "INR"
    assert order["partnersData"] == {"id": place_body["draftOrderId"]}
    assert order["items"][0]["variantId"] == place_body["order"]["items"][0]["variantId"]
    mismatch = [json.loads(line) for line in bridge.logs().splitlines()
                if place_body["draftOrderId"] in line and "store total differs" in line]
    assert [(m["bik_total"], m["store_total"]) for m in mismatch] == [("947", "998")]


def test_placed_order_is_replayed_byte_for_byte_without_touching_the_store(bridge, fake, place_body):
    first = bridge.post("placeOrder", place_body)
    seen = len(fake.requests)

    second = bridge.post("placeOrder", place_body)

    assert second.status_code == 200 and second.content == first.content
    assert len(fake.requests) == seen
    assert fake.create_count == 1


def test_get_order_follows_the_store(bridge, fake, place_body):
    order_id = bridge.post("placeOrder", place_body).json()["order"]["id"]

    def current() -> dict:
        response = bridge.post("getOrder", {"orderId": order_id})
        assert response.status_code == 200, response.text
        return response.json()["order"]

    fresh = current()
    assert (fresh["status"], fresh["paymentStatus"], fresh["fulfillmentStatus"]) == ("ORDERED", "pending",
                                                                                    "unfulfilled")
    assert fresh["items"][0]["variantId"] == place_body["order"]["items"][0]["variantId"]
    assert fresh["deliveryInfo"] == {"trackingURL": None}

    fake.set_fulfillment(order_id, "partially_fulfilled")
    fake.set_financial(order_id, "paid")
    assert (current()["status"], current()["fulfillmentStatus"], current()["paymentStatus"]) == (
        "IN PROGRESS", "partial", "paid")

    fake.set_fulfillment(order_id, "fulfilled")
    fake.set_status(order_id, "archived")
    assert (current()["status"], current()["fulfillmentStatus"]) == ("DELIVERED", "fulfilled")

    fake.set_status(order_id, "refunded")
    fake.set_financial(order_id, "refunded")
    assert (current()["status"], current()["paymentStatus"]) == ("CANCELLED", "refunded")


def test_get_order_hides_orders_bik_did_not_place(bridge, fake):
    foreign = fake.add_order(tags=["walk-in"])

    assert bridge.post("getOrder", {"orderId": foreign}).status_code == 404
    assert bridge.post("getOrder", {"orderId": "ord_missing"}).status_code == 404
    assert bridge.post("getOrder", {"orderId": "../orders"}).status_code == 404


def test_get_order_scope_all_reads_foreign_orders(fake, redis_url, start_bridge):
    everything = start_bridge(bitbybit_config(fake, redis_url, store={"get_order_scope": "all"}), name="scope-all")
    foreign = fake.add_order(tags=["walk-in"], status="archived")

    response = everything.post("getOrder", {"orderId": foreign})

    assert response.status_code == 200
    order = response.json()["order"]
    assert (order["id"], order["status"], order["partnersData"]) == (foreign, "DELIVERED", None)


def test_an_ambiguous_create_is_found_by_its_marker_tag_and_never_sent_twice(bridge, fake, place_body):
    # bitbybit creates the order, but only after the bridge's 1 s attempt has timed out.
    fake.faults.script("create", faults.delay_then_apply(1.6))

    first = bridge.post("placeOrder", place_body)
    assert first.status_code in (200, 504), first.text  # 504 unless the lookup already saw the late order
    assert fake.wait_until(lambda: fake.create_count == 1, timeout=5)
    retry = place_until_settled(bridge, place_body)

    assert retry.status_code == 200, retry.text
    [stored] = fake.orders.values()
    assert retry.json()["order"]["id"] == stored["id"]
    assert fake.create_count == 1 and len(creates(fake)) == 1
    decisions = [json.loads(line).get("decision") for line in bridge.logs().splitlines()
                 if place_body["draftOrderId"] in line and '"decision"' in line]
    assert "recovered" in decisions and "created" not in decisions


def test_a_create_that_timed_out_without_landing_is_sent_once_more(bridge, fake, place_body):
    fake.faults.script("create", faults.delay_without_apply(1.5))

    first = bridge.post("placeOrder", place_body)
    assert first.status_code == 504 and first.headers.get("Retry-After")
    assert fake.create_count == 0
    retry = place_until_settled(bridge, place_body)

    assert retry.status_code == 200, retry.text
    assert fake.create_count == 1
    assert len(creates(fake)) == 2  # the one that timed out without creating, and the one that did


@pytest.mark.parametrize(("refuse", "code"), [
    (lambda fake: fake.revoke_api_key(fake.api_key), "INVALID_API_KEY"),
    (lambda fake: fake.set_ip_allowed(False), "IP_NOT_ALLOWED"),
    (lambda fake: fake.set_scopes(), "INSUFFICIENT_SCOPE"),
])
def test_a_refused_key_is_502_named_in_the_log_and_a_later_retry_places_the_order(bridge, fake, place_body,
                                                                                   refuse, code):
    refuse(fake)

    refused = bridge.post("placeOrder", place_body)

    assert refused.status_code == 502
    assert "error" in refused.json()
    assert fake.create_count == 0
    lines = [json.loads(line) for line in bridge.logs().splitlines() if line.startswith("{")]
    assert any(entry.get("msg", "").startswith(f"bitbybit refused the bridge's API key: {code}")
               and entry.get("code") == code for entry in lines)
    fake.reset()  # the merchant fixed the key
    assert bridge.post("placeOrder", place_body).status_code == 200
    assert fake.create_count == 1


def test_a_variant_bitbybit_does_not_know_is_422_and_a_corrected_retry_places_it(bridge, fake, place_body):
    place_body["order"]["items"][0]["variantId"] = 123456

    refused = bridge.post("placeOrder", place_body)
    assert refused.status_code == 422 and "123456" in refused.json()["error"]

    fake.add_variant("123456", 499, "Skin Renew Cream")
    assert bridge.post("placeOrder", place_body).status_code == 200
    assert fake.create_count == 1


def test_concurrent_duplicates_make_one_order(bridge, fake, place_body):
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda _: bridge.post("placeOrder", place_body), range(12)))

    assert fake.create_count == 1
    assert len({r.json()["order"]["id"] for r in responses if r.status_code == 200}) == 1
    assert all(r.status_code in (200, 409) for r in responses)


def test_changed_payload_for_a_placed_draft_replays_the_first_order(bridge, fake, place_body):
    first = bridge.post("placeOrder", place_body)
    changed = copy.deepcopy(place_body)
    changed["order"]["items"][0]["quantity"] = 5

    assert bridge.post("placeOrder", changed).content == first.content
    assert fake.create_count == 1


def test_logs_carry_no_customer_data_or_secrets(bridge, fake, place_body):
    answers = [bridge.post("placeOrder", place_body),
               bridge.post("placeOrder", place_body, headers={"Authorization": "Bearer wrong"})]

    logs = bridge.logged(*answers)
    assert place_body["draftOrderId"] in logs
    for secret in (TOKEN, fake.api_key, place_body["order"]["phoneNumber"], place_body["order"]["email"],
                   place_body["order"]["address"]["address1"]):
        assert secret not in logs


def test_the_bridge_keeps_within_bitbybits_quota(bridge, fake, place_body):
    # Three requests a second: one order's lookup and create spend the window, the next order waits for the reset.
    fake.set_rate_limit(3, window_seconds=1)
    second = copy.deepcopy(place_body)
    second["draftOrderId"] = second["order"]["id"] = place_body["draftOrderId"] + "-2"

    answers = [bridge.post("placeOrder", body) for body in (place_body, second)]

    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert fake.create_count == 2
    assert fake.rate_limited == 0  # every request came inside the quota: the bridge kept to RateLimit-Limit
