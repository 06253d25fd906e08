"""Strict input end to end: a body the bridge refuses reaches neither the store nor the idempotency records."""
from __future__ import annotations

import copy
import json

import pytest
import redis

from tests.integration.conftest import TOKEN, bigcommerce_config

pytestmark = pytest.mark.integration

JSON = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def with_value(body: dict, path: str, value) -> dict:
    """A copy of `body` with the dotted `path` set to `value`."""
    changed = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = changed
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return changed


@pytest.fixture
def bridge_config(fake_bc, redis_url):
    return bigcommerce_config(fake_bc, redis_url)


@pytest.fixture
def bridge(bridge_config, start_bridge):
    return start_bridge(bridge_config)


def records(redis_url: str, namespace: str) -> list[bytes]:
    """Every idempotency key the bridge wrote under its namespace."""
    client = redis.Redis.from_url(redis_url)
    try:
        return list(client.scan_iter(match=f"{namespace}:*"))
    finally:
        client.close()


def test_refused_bodies_send_nothing_and_store_nothing(bridge, bridge_config, fake_bc, redis_url, place_body):
    """Each bad body is answered 400 (422 for the currency) naming the field; the fake store sees no request and
    Redis holds no record; then the corrected body with the same draft id places exactly one order."""
    draft = place_body["draftOrderId"]
    refused = [
        (with_value(place_body, "paymentPending", "false"), "paymentPending"),
        (with_value(place_body, "order.items.0.quantity", "2"), "order.items.0.quantity"),
        (with_value(place_body, "order.items.0.price", "499"), "order.items.0.price"),
        (with_value(place_body, "draftOrderId", f"  {draft}  "), "draftOrderId"),
        (with_value(place_body, "order.items.0.variantId", " 40946134352009"), "order.items.0.variantId"),
        (with_value(place_body, "order.email", "buyer@example.com\r\nBcc: all@example.com"), "order.email"),
        (with_value(place_body, "order.email", "buyer-at-example.com"), "order.email"),
        (with_value(place_body, "order.phoneNumber", "+919876543210\x00"), "order.phoneNumber"),
        (with_value(place_body, "order.address.firstName", "Bik\nTester"), "order.address.firstName"),
    ]
    for body, field in refused:
        response = bridge.post("placeOrder", body)
        assert response.status_code == 400, (field, response.text)
        assert [d["field"] for d in response.json()["details"]] == [field], response.text

    other_currency = bridge.post("placeOrder", with_value(place_body, "order.currency", "USD"))
    assert other_currency.status_code == 422, other_currency.text
    assert all(word in other_currency.json()["error"] for word in ("order.currency", '"USD"', '"INR"'))

    # draftOrderId twice: the first is this draft, the second another one; neither is placed.
    repeated = json.dumps(place_body)[:-1] + ', "draftOrderId": "nb_someone_else"}'
    response = bridge.session.post(f"{bridge.url}/placeOrder", data=repeated, headers=JSON, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["details"] == [{"field": "draftOrderId", "message": "duplicate key"}]

    assert fake_bc.requests == []
    assert fake_bc.create_count == 0
    assert records(redis_url, bridge_config["idempotency"]["namespace"]) == []

    placed = bridge.post("placeOrder", place_body)
    assert placed.status_code == 200, placed.text
    assert fake_bc.create_count == 1 and fake_bc.invalid_requests == []
    header = fake_bc.orders[int(placed.json()["order"]["id"])].header
    assert header["external_order_id"] == draft
    assert len(records(redis_url, bridge_config["idempotency"]["namespace"])) == 1


def test_an_order_without_an_email_is_placed_with_an_empty_one(bridge, fake_bc, place_body):
    """No email is no reason to lose the order: BigCommerce gets "" on the billing address and takes it."""
    del place_body["order"]["email"]
    placed = bridge.post("placeOrder", place_body)
    assert placed.status_code == 200, placed.text
    assert fake_bc.invalid_requests == []
    assert fake_bc.orders[int(placed.json()["order"]["id"])].header["billing_address"]["email"] == ""


def test_display_text_reaches_the_store_with_spaces_for_control_characters(bridge, fake_bc, place_body):
    """Tags go into BigCommerce's staff notes: a line break in them arrives as a space."""
    place_body["order"]["tags"] = "vip\r\nwhatsapp"
    placed = bridge.post("placeOrder", place_body)
    assert placed.status_code == 200, placed.text
    notes = fake_bc.orders[int(placed.json()["order"]["id"])].header["staff_notes"]
    assert "Bik tags: vip whatsapp" in notes and "\n" not in notes and "\r" not in notes
