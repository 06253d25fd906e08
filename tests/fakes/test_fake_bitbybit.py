"""The fake bitbybit store behaves as the tests built on it assume: envelopes, validation, auth, quota, faults."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.fakes import server as faults
from tests.fakes.bitbybit import EXAMPLE_VARIANT, FakeBitbybit

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY = "bbb_test_key"


def valid_body(**changes) -> dict:
    """The create body the bridge is expected to send."""
    body = {
        "lineItems": [{"productVariantId": EXAMPLE_VARIANT, "quantity": 2}],
        "shippingAddress": {"firstName": "Asha", "lastName": "Rao", "phone": "+919800000001",
                            "address1": "12 Residency Road", "city": "Bengaluru", "province": "Karnataka",
                            "zip": "560025", "country": "IN"},
        "customer": {"firstName": "Asha", "lastName": "Rao", "phone": "+919800000001", "email": "asha@example.com"},
        "notes": "Placed through Bik. draftOrderId: nb_1.",
        "tags": ["ordered_via_bik", "bik:nb_1"],
    }
    body.update(changes)
    return body


@pytest.fixture
def fake(fake_bitbybit):
    return fake_bitbybit


def call(fake: FakeBitbybit, method: str, path: str, key: str | None = KEY, **kwargs) -> requests.Response:
    headers = {"x-api-key": key} if key else {}
    kwargs.setdefault("timeout", 5)
    return requests.request(method, f"{fake.api_base_url}{path}", headers=headers, **kwargs)


def create(fake: FakeBitbybit, body: dict | None = None, **kwargs) -> requests.Response:
    return call(fake, "POST", "/orders", json=valid_body() if body is None else body, **kwargs)


def test_create_answers_the_order_in_its_envelope_priced_from_the_catalog(fake):
    response = create(fake)

    assert response.status_code == 201
    order = response.json()["data"]
    assert order["id"].startswith("ord_") and order["orderNumber"] == "1001" and order["orderId"] == "ORD-1001"
    assert (order["status"], order["fulfillmentStatus"], order["financialStatus"]) == ("active", "unfulfilled",
                                                                                    "pending")
    assert order["total"] == 998 and order["lineItems"][0]["price"] == 499
    assert order["lineItems"][0]["productVariant"]["id"] == EXAMPLE_VARIANT
    assert order["tags"] == ["ordered_via_bik", "bik:nb_1"]
    assert order["shippingAddress"]["province"] == "Karnataka"
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(response.headers)
    assert fake.create_count == 1 and fake.invalid_requests == []
    assert call(fake, "GET", f"/orders/{order['id']}").json() == {"data": order}


@pytest.mark.parametrize(("change", "reason"), [
    ({"lineItems": []}, "at least 1 item"),
    ({"lineItems": [{"productVariantId": 40946134352009, "quantity": 1}]}, "productVariantId"),
    ({"lineItems": [{"productVariantId": EXAMPLE_VARIANT, "quantity": 0}]}, "quantity"),
    ({"lineItems": [{"productVariantId": EXAMPLE_VARIANT, "quantity": 1.5}]}, "quantity"),
    ({"lineItems": [{"productVariantId": EXAMPLE_VARIANT, "quantity": 1, "price": 10}]}, "unknown field price"),
    ({"shippingAddress": {"firstName": "A", "lastName": "R", "phone": "1", "address1": "x", "city": "y",
                          "zip": "1"}}, "shippingAddress.province"),
    ({"customer": {"firstName": "Asha", "phone": "+91980"}}, "customer.lastName"),
    ({"customer": {"firstName": "A", "lastName": "R", "email": "nope"}}, "customer.email"),
    ({"customer": None}, "customer must be an object"),
    ({"tags": "bik:nb_1"}, "tags"),
    ({"total": 947}, "Unknown field total"),
])
def test_invalid_bodies_are_400_validation_errors_and_recorded(fake, change, reason):
    response = create(fake, valid_body(**change))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert reason in response.json()["error"]["message"]
    assert fake.create_count == 0 and reason in fake.invalid_requests[-1].reason


def test_an_order_needs_a_customer_or_customer_id(fake):
    body = valid_body()
    del body["customer"]

    assert create(fake, body).json()["error"]["message"] == "Provide either customerId or customer"


def test_unknown_variants_are_not_found_without_being_malformed(fake):
    response = create(fake, valid_body(lineItems=[{"productVariantId": "pv_missing", "quantity": 1}]))

    assert response.status_code == 404
    assert response.json()["error"] == {"code": "NOT_FOUND", "message": "Product variant pv_missing not found"}
    assert fake.invalid_requests == [] and fake.create_count == 0


def test_the_customer_is_found_by_phone_and_keeps_its_stored_name(fake):
    create(fake)
    again = create(fake, valid_body(customer={"firstName": "A.", "lastName": "R.", "phone": "+919800000001"}))

    assert again.json()["data"]["customer"]["firstName"] == "Asha"
    assert call(fake, "GET", "/orders", params={"search": "A. R."}).json()["data"] == []


def test_listing_pages_searches_and_filters(fake):
    ids = [create(fake).json()["data"]["id"] for _ in range(3)]
    fake.add_order(first_name="Ravi", last_name="Kumar", phone="+919811111111", email=None, status="archived")

    first = call(fake, "GET", "/orders", params={"limit": 2}).json()
    second = call(fake, "GET", "/orders", params={"limit": 2, "page": 2}).json()
    by_name = call(fake, "GET", "/orders", params={"search": "asha rao"}).json()
    by_number = call(fake, "GET", "/orders", params={"search": "1002"}).json()
    archived = call(fake, "GET", "/orders", params={"status": "archived"}).json()

    assert first["meta"] == {"page": 1, "limit": 2, "total": 4, "hasNextPage": True}
    assert second["meta"]["hasNextPage"] is False
    assert [o["id"] for o in first["data"]][1:] == ids[::-1][:1]  # newest first
    assert [o["id"] for o in by_name["data"]] == ids[::-1]
    assert [o["id"] for o in by_number["data"]] == [ids[1]]
    assert [o["customer"]["firstName"] for o in archived["data"]] == ["Ravi"]


def test_listing_can_run_oldest_first(fake):
    fake.list_order = "oldest"
    try:
        ids = [create(fake).json()["data"]["id"] for _ in range(2)]
        assert [o["id"] for o in call(fake, "GET", "/orders").json()["data"]] == ids
    finally:
        fake.list_order = "newest"


@pytest.mark.parametrize("params", [{"limit": 101}, {"page": 0}, {"status": "done"}, {"sort": "id"}])
def test_bad_list_parameters_are_400(fake, params):
    assert call(fake, "GET", "/orders", params=params).status_code == 400


def test_missing_orders_are_404_not_found(fake):
    response = call(fake, "GET", "/orders/ord_missing")

    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


def test_put_and_admin_hooks_move_orders(fake):
    order_id = create(fake).json()["data"]["id"]

    updated = call(fake, "PUT", f"/orders/{order_id}", json={"status": "archived", "financialStatus": "paid"})
    fake.set_fulfillment(order_id, "partially_fulfilled")

    assert updated.json()["data"]["status"] == "archived"
    assert fake.order(order_id)["fulfillmentStatus"] == "partially_fulfilled"
    assert call(fake, "PUT", f"/orders/{order_id}", json={"status": "done"}).status_code == 400
    assert fake.wait_until(lambda: fake.order(order_id)["financialStatus"] == "paid", timeout=1)


@pytest.mark.parametrize(("setup", "key", "status", "code"), [
    (lambda fake: None, None, 401, "MISSING_API_KEY"),
    (lambda fake: None, "bbb_live_wrong", 401, "INVALID_API_KEY"),
    (lambda fake: fake.set_ip_allowed(False), KEY, 403, "IP_NOT_ALLOWED"),
    (lambda fake: fake.set_scopes("orders:read"), KEY, 403, "INSUFFICIENT_SCOPE"),
])
def test_keys_scopes_and_allowlist(fake, setup, key, status, code):
    setup(fake)

    response = create(fake, key=key)

    assert response.status_code == status and response.json()["error"]["code"] == code
    assert fake.create_count == 0


def test_the_quota_is_per_key_with_headers(fake):
    fake.set_rate_limit(2, window_seconds=60)
    fake.add_api_key("bbb_test_other")

    answers = [call(fake, "GET", "/orders") for _ in range(3)]
    other = call(fake, "GET", "/orders", key="bbb_test_other")

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[1].headers["RateLimit-Remaining"] == "0"
    assert answers[2].json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert 0 < int(answers[2].headers["RateLimit-Reset"]) <= 60
    assert other.status_code == 200 and fake.rate_limited == 1


def test_a_wrong_base_path_is_a_plain_404(fake):
    response = requests.get(f"{fake.url}/customer/api/open/v1/orders", headers={"x-api-key": KEY}, timeout=5)

    assert response.status_code == 404 and "error" not in response.json()


def test_scripted_faults_answer_bitbybits_envelope_without_creating(fake):
    fake.faults.script("create", faults.status(503))

    refused = create(fake)

    assert refused.status_code == 503 and refused.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert fake.create_count == 0
    assert create(fake).status_code == 201


def test_delay_then_apply_creates_after_the_client_gave_up(fake):
    fake.faults.script("create", faults.delay_then_apply(0.3))

    with pytest.raises(requests.Timeout):
        create(fake, timeout=0.1)

    assert fake.wait_until(lambda: fake.create_count == 1, timeout=5)


def test_command_line_serves_until_terminated():
    command = [sys.executable, "-m", "tests.fakes.bitbybit", "--port", "0", "--api-key", "K"]
    with subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            base_url = process.stdout.readline().strip()
            response = requests.get(f"{base_url}/orders", headers={"x-api-key": "K"}, timeout=5)
            assert response.status_code == 200 and response.json()["meta"]["total"] == 0
        finally:
            process.terminate()
        assert process.wait(timeout=5) == 0
