"""End to end on BigCommerce: the real server under gunicorn, a fake store that checks every request."""
from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

import pytest

from tests.integration.conftest import TOKEN, bigcommerce_config

pytestmark = pytest.mark.integration


@pytest.fixture
def bridge(fake_bc, redis_url, start_bridge):
    return start_bridge(bigcommerce_config(fake_bc, redis_url))


def test_place_order_creates_one_valid_order_and_answers_bik_shape(bridge, fake_bc, place_body):
    response = bridge.post("placeOrder", place_body)

    assert response.status_code == 200, response.text
    order = response.json()["order"]
    assert fake_bc.create_count == 1
    assert fake_bc.invalid_requests == []
    stored = fake_bc.orders[int(order["id"])].header
    assert stored["external_order_id"] == place_body["draftOrderId"]
    assert stored["external_source"] == "Bik"
    assert order["status"] == "ORDERED" and order["paymentStatus"] == "pending"
    assert order["total"] == 947 and order["subTotal"] == 998 and order["currency"] == "INR"
    assert order["name"] == f"#{order['id']}"
    assert order["partnersData"] == {"id": place_body["draftOrderId"]}
    assert order["invoiceUrl"] is None


def test_placed_order_is_replayed_byte_for_byte_without_touching_the_store(bridge, fake_bc, place_body):
    first = bridge.post("placeOrder", place_body)
    requests_after_first = len(fake_bc.requests)

    second = bridge.post("placeOrder", place_body)

    assert second.status_code == 200
    assert second.content == first.content
    assert fake_bc.create_count == 1
    assert len(fake_bc.requests) == requests_after_first


def test_happy_path_looks_the_draft_up_then_creates_once(bridge, fake_bc, place_body):
    """On the defaults a fresh order costs two requests: the lookup by draft id, then the one create."""
    bridge.post("placeOrder", place_body)

    sent = [(r.method, r.path.split("/v2")[-1], parse_qs(r.query)) for r in fake_bc.requests]
    assert sent == [("GET", "/orders", {"external_order_id": [place_body["draftOrderId"]]}), ("POST", "/orders", {})]


def test_get_order_follows_the_store(bridge, fake_bc, place_body):
    order_id = bridge.post("placeOrder", place_body).json()["order"]["id"]

    fresh = bridge.post("getOrder", {"orderId": order_id}).json()["order"]
    assert (fresh["status"], fresh["fulfillmentStatus"]) == ("ORDERED", "unfulfilled")
    assert fresh["deliveryInfo"] == {"trackingURL": None}
    assert fresh["items"][0]["variantId"] == place_body["order"]["items"][0]["variantId"]

    fake_bc.add_shipment(int(order_id), tracking_link="https://track.example/T1")
    fake_bc.set_status(int(order_id), 2, payment_status="captured")
    shipped = bridge.post("getOrder", {"orderId": order_id}).json()["order"]

    assert shipped["status"] == "IN PROGRESS"
    assert shipped["paymentStatus"] == "paid"
    assert shipped["fulfillmentStatus"] == "fulfilled"
    assert shipped["deliveryInfo"]["trackingURL"] == "https://track.example/T1"


@pytest.mark.parametrize("order_id", ["999999", "not-a-number", "12abc"])
def test_get_order_unknown_is_404(bridge, order_id):
    response = bridge.post("getOrder", {"orderId": order_id})

    assert response.status_code == 404
    assert "error" in response.json()


def test_get_order_hides_orders_bik_did_not_place(bridge, fake_bc):
    foreign = fake_bc.add_order(external_source="POS (Square)", external_order_id="sq-1")

    response = bridge.post("getOrder", {"orderId": str(foreign)})

    assert response.status_code == 404


def test_wrong_credentials_get_401_and_nothing_reaches_the_store(bridge, fake_bc, place_body):
    response = bridge.post("placeOrder", place_body, headers={"Authorization": "Bearer wrong"})

    assert response.status_code == 401
    assert response.json() == {"error": "missing or invalid credentials"}
    assert fake_bc.requests == []


def test_out_of_stock_is_422_and_a_corrected_retry_places_the_order(bridge, fake_bc, place_body):
    item = place_body["order"]["items"][0]
    fake_bc.set_stock(item["productId"], item["variantId"], 1)

    refused = bridge.post("placeOrder", place_body)
    assert refused.status_code == 422
    assert "out of stock" in refused.json()["error"]

    fake_bc.set_stock(item["productId"], item["variantId"], 10)
    placed = bridge.post("placeOrder", place_body)
    assert placed.status_code == 200
    assert fake_bc.create_count == 1


def test_concurrent_duplicates_make_one_order(bridge, fake_bc, place_body):
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda _: bridge.post("placeOrder", place_body), range(16)))

    assert fake_bc.create_count == 1
    ids = {r.json()["order"]["id"] for r in responses if r.status_code == 200}
    assert len(ids) == 1
    assert all(r.status_code in (200, 409) for r in responses)
    assert all(r.headers.get("Retry-After") for r in responses if r.status_code == 409)


def test_changed_payload_for_a_placed_draft_replays_the_first_order(bridge, fake_bc, place_body):
    first = bridge.post("placeOrder", place_body)
    changed = copy.deepcopy(place_body)
    changed["order"]["items"][0]["quantity"] = 5

    again = bridge.post("placeOrder", changed)

    assert again.content == first.content
    assert fake_bc.create_count == 1


def test_logs_carry_no_customer_data_or_secrets(bridge, fake_bc, place_body):
    answers = [bridge.post("placeOrder", place_body),
               bridge.post("placeOrder", place_body, headers={"Authorization": "Bearer wrong"})]

    logs = bridge.logged(*answers)
    assert place_body["draftOrderId"] in logs
    for secret in (TOKEN, fake_bc.access_token, place_body["order"]["phoneNumber"], place_body["order"]["email"],
                   place_body["order"]["address"]["address1"]):
        assert secret not in logs
    for line in logs.splitlines():
        if line.startswith("{"):
            json.loads(line)


def test_redis_down_refuses_placeorder_with_503_and_getorder_still_works(fake_bc, redis_url, start_bridge,
                                                                         place_body):
    placed_id = str(fake_bc.add_order(external_source="Bik", external_order_id="nb_earlier"))
    bridge = start_bridge(bigcommerce_config(fake_bc, redis_url, idempotency={"redis_url": "redis://127.0.0.1:1/0"}))

    refused = bridge.post("placeOrder", place_body)
    read = bridge.post("getOrder", {"orderId": placed_id})
    ready = bridge.session.get(f"{bridge.url}/readyz")

    assert refused.status_code == 503 and refused.headers.get("Retry-After")
    assert fake_bc.create_count == 0
    assert read.status_code == 200
    assert ready.status_code == 503


def test_sqlite_backend_shares_claims_across_workers(fake_bc, redis_url, start_bridge, place_body, tmp_path):
    config = bigcommerce_config(fake_bc, redis_url, server={"workers": 3},
                                idempotency={"backend": "sqlite", "sqlite_path": str(tmp_path / "idem.db")})
    bridge = start_bridge(config)

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda _: bridge.post("placeOrder", place_body), range(12)))

    assert fake_bc.create_count == 1
    assert {r.json()["order"]["id"] for r in responses if r.status_code == 200}.__len__() == 1
