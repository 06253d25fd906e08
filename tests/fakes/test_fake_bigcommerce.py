"""The fake BigCommerce store and its server behave as the tests built on them assume."""
from __future__ import annotations

import copy
import http.client
import json
import subprocess
import sys
import threading
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests
from flask import Flask, jsonify
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.contract import BIGCOMMERCE_ORDERS_SCHEMA
from tests.fakes import server as faults
from tests.fakes.bigcommerce import SPEC_URI, FakeBigCommerce
from tests.fakes.server import FakeServer, FaultScript
from tests.unit.fakes import FakeClock

HEADERS = {"X-Auth-Token": "bc-test-token", "Accept": "application/json"}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def valid_body() -> dict:
    """The create body the bridge is expected to send for a COD order."""
    address = {
        "first_name": "Asha", "last_name": "Rao", "street_1": "12 Residency Road", "street_2": "",
        "city": "Bengaluru", "state": "Karnataka", "zip": "560102", "country": "India", "country_iso2": "IN",
        "phone": "+919800000001", "email": "asha@example.com",
    }
    return {
        "billing_address": address,
        "shipping_addresses": [dict(address)],
        "products": [
            {"product_id": 6862, "variant_id": 4094, "quantity": 2, "price_inc_tax": 499, "price_ex_tax": 499},
        ],
        "shipping_cost_inc_tax": "49.00",
        "shipping_cost_ex_tax": "49.00",
        "discount_amount": "100.00",
        "customer_id": 0,
        "status_id": 7,
        "payment_method": "Cash on Delivery",
        "external_source": "Bik",
        "external_order_id": "nb_1",
        "staff_notes": "Bik draft nb_1",
    }


@pytest.fixture
def fake(fake_bigcommerce):
    return fake_bigcommerce


def post(fake: FakeBigCommerce, body, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 5)
    return requests.post(f"{fake.store_url}/orders", json=body, headers=HEADERS, **kwargs)


def get(fake: FakeBigCommerce, path: str, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("headers", HEADERS)
    return requests.get(f"{fake.store_url}{path}", **kwargs)


# creating and reading orders

def test_valid_body_is_created_with_computed_totals(fake):
    response = post(fake, valid_body())

    assert response.status_code == 201
    order = response.json()
    assert order["id"] == 100
    assert order["subtotal_inc_tax"] == order["subtotal_ex_tax"] == "998.0000"
    assert order["shipping_cost_inc_tax"] == "49.0000"
    assert order["discount_amount"] == "100.0000"
    assert order["total_inc_tax"] == order["total_ex_tax"] == "947.0000"
    assert (order["status_id"], order["status"], order["payment_status"]) == (7, "Awaiting Payment", "")
    assert (order["external_source"], order["external_order_id"]) == ("Bik", "nb_1")
    assert order["currency_code"] == order["default_currency_code"] == "INR"
    assert order["items_total"] == 2
    assert order["billing_address"]["email"] == "asha@example.com"
    assert order["products"] == {"url": f"{fake.store_url}/orders/100/products", "resource": "/orders/100/products"}
    assert parsedate_to_datetime(order["date_created"]).utcoffset().total_seconds() == 0
    assert fake.create_count == 1
    assert fake.orders[100].body == valid_body()
    assert fake.invalid_requests == []


def test_created_order_reads_back_through_every_endpoint(fake):
    order_id = post(fake, valid_body()).json()["id"]

    assert get(fake, f"/orders/{order_id}").json() == fake.orders[order_id].header
    [line] = get(fake, f"/orders/{order_id}/products").json()
    assert line["order_id"] == order_id and (line["product_id"], line["variant_id"]) == (6862, 4094)
    assert (line["name"], line["sku"], line["quantity"], line["quantity_shipped"]) == ("Product 6862", "", 2, 0)
    assert (line["price_inc_tax"], line["price_ex_tax"], line["base_price"]) == ("499.0000",) * 3
    assert line["total_inc_tax"] == "998.0000"
    [address] = get(fake, f"/orders/{order_id}/shipping_addresses").json()
    assert (address["city"], address["state"], address["zip"]) == ("Bengaluru", "Karnataka", "560102")
    assert address["id"] == line["order_address_id"] and "shipping_method" in address
    assert get(fake, "/orders", params={"external_order_id": "nb_1"}).json()[0]["id"] == order_id


INLINED = {"include": "consignments.line_items", "consignment_structure": "object"}


def consignment_errors(consignments: dict) -> list[str]:
    """Where an inlined consignments object breaks the spec's `orderConsignment_Get` and `orderProducts`."""
    document = json.loads(BIGCOMMERCE_ORDERS_SCHEMA.read_text())
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(document, default_specification=DRAFT4))

    def validator(name: str) -> OAS30Validator:
        return OAS30Validator({"$ref": f"{SPEC_URI}#/components/schemas/{name}"}, registry=registry)

    # The spec's `line_items` is oneOf links or order products, and a whole product is an object as a link is:
    # the lines are checked against `orderProducts` on their own, the consignments without them.
    lines = [line for group in consignments["shipping"] + consignments["downloads"] for line in group["line_items"]]
    bare = copy.deepcopy(consignments)
    for group in bare["shipping"] + bare["downloads"]:
        del group["line_items"]
    errors = [*validator("orderConsignment_Get").iter_errors(bare),
              *(e for line in lines for e in validator("orderProducts").iter_errors(line))]
    return [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_the_order_inlines_its_consignments_with_whole_lines_as_asked(fake):
    """`include=consignments.line_items&consignment_structure=object`: the order, its lines and its addresses at once."""
    order_id = post(fake, valid_body()).json()["id"]
    [line] = fake.orders[order_id].products
    fake.add_shipment(order_id, [(line["id"], 1)])

    order = get(fake, f"/orders/{order_id}", params=INLINED).json()

    consignments = order.pop("consignments")
    assert order == {k: v for k, v in fake.orders[order_id].header.items() if k != "consignments"}
    assert consignment_errors(consignments) == []
    assert (consignments["pickups"], consignments["downloads"], consignments["email"]) == (
        [], [], {"gift_certificates": []})
    [shipping] = consignments["shipping"]
    [address] = get(fake, f"/orders/{order_id}/shipping_addresses").json()
    assert {k: shipping[k] for k in ("id", "street_1", "city", "zip", "items_total", "items_shipped")} == {
        k: address[k] for k in ("id", "street_1", "city", "zip", "items_total", "items_shipped")}
    assert shipping["line_items"] == get(fake, f"/orders/{order_id}/products").json()
    assert shipping["line_items"][0]["quantity_shipped"] == 1


def test_consignments_without_line_items_link_to_the_lines(fake):
    order_id = post(fake, valid_body()).json()["id"]
    [line] = fake.orders[order_id].products

    consignments = get(fake, f"/orders/{order_id}", params={"include": "consignments",
                                                            "consignment_structure": "object"}).json()["consignments"]

    assert consignments["shipping"][0]["line_items"] == [{
        "url": f"{fake.store_url}/orders/{order_id}/products/{line['id']}",
        "resource": f"/orders/{order_id}/products/{line['id']}"}]


def test_lines_on_no_shipping_address_are_a_digital_consignment(fake):
    order_id = fake.add_order(external_source="Bik", shipping_addresses=[])

    consignments = get(fake, f"/orders/{order_id}", params=INLINED).json()["consignments"]

    assert consignments["shipping"] == []
    [download] = consignments["downloads"]
    assert download["line_items"] == get(fake, f"/orders/{order_id}/products").json()
    assert consignment_errors(consignments) == []


def test_consignments_keep_the_older_array_form_without_the_object_structure(fake):
    order_id = post(fake, valid_body()).json()["id"]

    older = get(fake, f"/orders/{order_id}", params={"include": "consignments.line_items"}).json()["consignments"]

    assert older == [get(fake, f"/orders/{order_id}", params=INLINED).json()["consignments"]]


@pytest.mark.parametrize(("answer", "expected"), [("array", list), ("link", dict)])
def test_a_store_can_answer_the_older_forms_whatever_is_asked(fake, answer, expected):
    order_id = post(fake, valid_body()).json()["id"]
    fake.consignments_answer = answer

    consignments = get(fake, f"/orders/{order_id}", params=INLINED).json()["consignments"]

    assert isinstance(consignments, expected)
    if answer == "link":
        assert consignments == {"url": f"{fake.store_url}/orders/{order_id}/consignments",
                                "resource": f"/orders/{order_id}/consignments"}


@pytest.mark.parametrize("params", [{"include": "coupons"}, {"include": "consignments", "consignment_structure": "x"}])
def test_unknown_includes_and_structures_are_refused(fake, params):
    order_id = post(fake, valid_body()).json()["id"]

    assert get(fake, f"/orders/{order_id}", params=params).status_code == 400


def test_empty_results_are_204_without_body(fake):
    order_id = post(fake, valid_body()).json()["id"]

    for path, params in ((f"/orders/{order_id}/shipments", None), ("/orders", {"external_order_id": "nb_other"})):
        response = get(fake, path, params=params)
        assert (response.status_code, response.content) == (204, b"")


def test_shipments_show_tracking_and_shipped_quantities(fake):
    order_id = post(fake, valid_body()).json()["id"]
    [line] = fake.orders[order_id].products

    fake.add_shipment(order_id, [(line["id"], 2)], tracking_number="AWB1", tracking_link="https://t.example/AWB1")
    fake.set_status(order_id, 2, payment_status="paid")

    [shipment] = get(fake, f"/orders/{order_id}/shipments").json()
    assert (shipment["tracking_number"], shipment["tracking_link"]) == ("AWB1", "https://t.example/AWB1")
    assert shipment["items"] == [{"order_product_id": line["id"], "product_id": 6862, "quantity": 2}]
    assert get(fake, f"/orders/{order_id}/products").json()[0]["quantity_shipped"] == 2
    order = get(fake, f"/orders/{order_id}").json()
    assert (order["status_id"], order["status"], order["payment_status"]) == (2, "Shipped", "paid")
    with pytest.raises(ValueError):
        fake.add_shipment(order_id)  # nothing left to ship


def test_seeded_orders_are_listed_with_their_options(fake):
    options = [{"id": 7, "value": "70", "display_name": "Size", "display_value": "M"}]
    foreign = fake.add_order(external_source="Amazon", external_order_id="nb_1",
                             products=[{"product_id": 5, "quantity": 1, "price_inc_tax": 10, "price_ex_tax": 10,
                                        "product_options": options}])
    mine = post(fake, valid_body()).json()["id"]

    listed = get(fake, "/orders", params={"external_order_id": "nb_1"}).json()
    assert [(o["id"], o["external_source"]) for o in listed] == [(foreign, "Amazon"), (mine, "Bik")]
    [option] = get(fake, f"/orders/{foreign}/products").json()[0]["product_options"]
    assert (option["display_name"], option["display_value"], option["product_option_id"]) == ("Size", "M", 7)
    assert fake.create_count == 1


def test_total_adjustment_simulates_store_side_drift(fake):
    fake.total_adjustment = Decimal("12.50")
    assert post(fake, valid_body()).json()["total_inc_tax"] == "959.5000"


def test_known_customers_are_accepted(fake):
    fake.add_customer(42)
    assert post(fake, {**valid_body(), "customer_id": 42}).status_code == 201


# rejections

def _with(**changes):
    body = valid_body()
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    "body, message",
    [
        (_with(foo="bar"), "The field 'foo' is not supported by this resource."),
        (_with(products__0__price_ex_tax=_DELETE),
         "The field 'price_ex_tax' is required when 'price_inc_tax' is given."),
        (_with(billing_address__state=None), "The field 'state' does not allow null values."),
        (_with(products__0__quantity="2"), "The field 'products' is invalid."),
        (_with(external_id="x"), "The field 'external_id' cannot be written to. Please remove it from your request "
                                 "before trying again."),
        (_with(customer_id=42), "The field 'customer_id' is invalid."),
        (_with(shipping_cost_ex_tax=_DELETE),
         "The field 'shipping_cost_ex_tax' is required when 'shipping_cost_inc_tax' is given."),
        (_with(discount_amount="-1"), "The field 'discount_amount' is invalid."),
        (_with(discount_amount=100), "The field 'discount_amount' is invalid."),
        (_with(billing_address__zip="5"), "The field 'zip' is invalid."),
        (_with(products__0__sku="SKU-1"), "The field 'sku' is not supported by this resource."),
        (_with(products=_DELETE), "The field 'products' is required."),
    ],
    ids=["unknown-field", "lone-price", "null-state", "string-quantity", "read-only", "unknown-customer",
         "lone-shipping-cost", "negative-money", "money-as-number", "short-zip", "catalog-sku", "no-products"],
)
def test_invalid_bodies_are_rejected_and_recorded(fake, body, message):
    response = post(fake, body)

    assert response.status_code == 400
    assert response.json() == [{"status": 400, "message": message}]
    assert fake.create_count == 0 and fake.orders == {}
    [invalid] = fake.invalid_requests
    assert (invalid.method, invalid.status, invalid.body) == ("POST", 400, body)


@pytest.mark.parametrize(
    "path, headers, status",
    [
        ("/stores/abc123/v2/orders", {"Accept": "application/json"}, 401),
        ("/stores/abc123/v2/orders", {**HEADERS, "X-Auth-Token": "wrong"}, 401),
        ("/stores/nope/v2/orders", HEADERS, 404),
        ("/stores/abc123/v2/orders", {**HEADERS, "Accept": "*/*"}, 406),
        ("/stores/abc123/v2/orders", {**HEADERS, "Content-Type": "text/plain"}, 415),
    ],
    ids=["no-token", "wrong-token", "unknown-store", "accept-any", "text-body"],
)
def test_auth_store_and_media_types_are_enforced(fake, path, headers, status):
    response = requests.post(f"{fake.url}{path}", data=b"{}", headers=headers, timeout=5)

    assert response.status_code == status
    assert response.json()[0]["status"] == status
    assert [invalid.status for invalid in fake.invalid_requests] == [status]


def test_unknown_query_parameters_are_rejected(fake):
    response = get(fake, "/orders", params={"id": "100"})
    assert response.json() == [{"status": 400, "message": "The field 'id' is not supported by this resource."}]


@pytest.mark.parametrize("path", ["/orders/999", "/orders/abc", "/orders/999/products", "/orders/999/shipments"])
def test_missing_orders_are_404(fake, path):
    response = get(fake, path)

    assert response.status_code == 404
    assert response.json() == [{"status": 404, "message": "The requested resource was not found."}]
    assert fake.invalid_requests == []


def test_out_of_stock_is_409_and_creates_nothing(fake):
    fake.set_stock(6862, 4094, 1)

    response = post(fake, valid_body())

    assert response.status_code == 409
    [error] = response.json()
    assert error["message"].startswith("Quantities of one or more products are out of stock")
    assert error["details"]["errors"][0]["type"] == "OutOfStock"
    assert (fake.create_count, fake.stock(6862, 4094), fake.invalid_requests) == (0, 1, [])
    fake.set_stock(6862, 4094, 5)
    assert post(fake, valid_body()).status_code == 201
    assert fake.stock(6862, 4094) == 3


# faults

def test_status_fault_answers_without_creating_then_normal_service_resumes(fake):
    fake.faults.script("create", faults.status(503))

    response = post(fake, valid_body())

    assert (response.status_code, response.json()) == (503, [{"status": 503, "message": "Service Unavailable"}])
    assert fake.create_count == 0
    assert post(fake, valid_body()).status_code == 201


def test_scripted_429_carries_only_the_scripted_headers(fake):
    fake.faults.script("list_orders", faults.status(429),
                       faults.status(429, headers={"X-Rate-Limit-Time-Reset-Ms": "50"}))

    shedding, limited = get(fake, "/orders"), get(fake, "/orders")

    assert shedding.status_code == limited.status_code == 429
    assert not any(name.lower().startswith("x-rate-limit") for name in shedding.headers)
    assert limited.headers["X-Rate-Limit-Time-Reset-Ms"] == "50"
    assert "X-Rate-Limit-Requests-Quota" in get(fake, "/orders").headers


def test_delay_then_apply_creates_after_the_client_timed_out(fake):
    fake.faults.script("create", faults.delay_then_apply(0.4))

    with pytest.raises(requests.ReadTimeout):
        post(fake, valid_body(), timeout=(2, 0.1))

    assert fake.wait_until(lambda: fake.create_count == 1)
    assert get(fake, "/orders", params={"external_order_id": "nb_1"}).status_code == 200


def test_delay_without_apply_times_out_without_creating(fake):
    fake.faults.script("create", faults.delay_without_apply(0.05))

    assert post(fake, valid_body()).status_code == 504
    assert fake.create_count == 0


def test_apply_then_status_creates_and_answers_500(fake):
    fake.faults.script("create", faults.apply_then_status(500))

    assert post(fake, valid_body()).status_code == 500
    assert fake.create_count == 1


@pytest.mark.parametrize("apply_first", [True, False])
def test_hold_blocks_until_released(fake, apply_first):
    held = faults.hold(apply_first=apply_first)
    fake.faults.script("create", held)
    responses = []
    client = threading.Thread(target=lambda: responses.append(post(fake, valid_body())))
    client.start()
    try:
        assert held.arrived.wait(5)
        assert fake.faults.pending("create") == 0
        assert responses == []
        assert fake.create_count == (1 if apply_first else 0)
    finally:
        held.release.set()
        client.join(5)
    assert responses[0].status_code == 201 and fake.create_count == 1


@pytest.mark.parametrize("apply_first", [True, False])
def test_drop_connection_is_a_connection_error(fake, apply_first):
    fake.faults.script("create", faults.drop_connection(apply_first=apply_first))

    with requests.Session() as session:
        session.headers.update(HEADERS)
        with pytest.raises(requests.ConnectionError):
            session.post(f"{fake.store_url}/orders", json=valid_body(), timeout=5)
        assert fake.create_count == (1 if apply_first else 0)
        # The same session recovers on a fresh connection.
        assert session.get(f"{fake.store_url}/orders/999", timeout=5).status_code == 404
    assert fake.requests[0].status is None


def test_faults_are_scripted_per_operation_in_order(fake):
    order_id = post(fake, valid_body()).json()["id"]
    fake.faults.script("get_order", faults.status(500), faults.status(502, body="upstream down"))

    assert get(fake, f"/orders/{order_id}/products").status_code == 200
    assert get(fake, f"/orders/{order_id}").status_code == 500
    second = get(fake, f"/orders/{order_id}")
    assert (second.status_code, second.text) == (502, "upstream down")
    assert get(fake, f"/orders/{order_id}").status_code == 200


# rate limit

def test_quota_is_enforced_with_headers(fake):
    fake.set_quota(3, window_ms=60_000)

    lefts = [get(fake, "/orders").headers["X-Rate-Limit-Requests-Left"] for _ in range(3)]
    limited = get(fake, "/orders")

    assert lefts == ["2", "1", "0"]
    assert limited.status_code == 429
    assert limited.headers["X-Rate-Limit-Requests-Quota"] == "3"
    assert limited.headers["X-Rate-Limit-Time-Window-Ms"] == "60000"
    assert 0 < int(limited.headers["X-Rate-Limit-Time-Reset-Ms"]) <= 60_000
    assert (fake.over_quota_attempts, fake.max_requests_in_any_window) == (1, 3)


def test_quota_refreshes_after_the_window(fake):
    clock = FakeClock(1000.0)
    fake.clock = clock
    fake.set_quota(1, window_ms=150)

    assert get(fake, "/orders").status_code == 204
    limited = get(fake, "/orders")
    assert limited.status_code == 429
    assert 0 < int(limited.headers["X-Rate-Limit-Time-Reset-Ms"]) <= 150
    clock.advance(0.150)  # the whole window
    assert get(fake, "/orders").status_code == 204
    assert (fake.over_quota_attempts, fake.max_requests_in_any_window) == (1, 1)


# the generic server

def _echo_server(script: FaultScript) -> FakeServer:
    app = Flask(__name__)
    hits = []
    app.add_url_rule("/op", "op", lambda: script.run("op", lambda: (hits.append(1), jsonify(hits=len(hits)))[1]))
    return FakeServer(app)


def test_server_counts_connections_logs_requests_and_adds_latency():
    script = FaultScript()
    with _echo_server(script) as server:
        with requests.Session() as session:
            for _ in range(3):
                session.get(f"{server.url}/op", timeout=5)
        requests.get(f"{server.url}/op?x=1", timeout=5)
        script.script("op", faults.status(418))
        requests.get(f"{server.url}/op", timeout=5)

        assert server.connections_accepted == 3
        assert server.requests[3] == ("GET", "/op", "x=1", 200)
        assert server.status_counts == {200: 4, 418: 1}
        pauses: list[float] = []
        server.sleep = pauses.append
        server.latency_ms = 100
        requests.get(f"{server.url}/op", timeout=5)
        assert pauses == [0.1]  # the latency, spent before the request was answered


def test_server_stops_fast_with_an_idle_keep_alive_connection():
    """stop() closes an idle kept-alive connection itself instead of waiting for its client to."""
    with requests.Session() as session:
        server = _echo_server(FaultScript()).start()
        session.get(f"{server.url}/op", timeout=5)
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        idle.request("GET", "/op")
        answer = idle.getresponse()
        answer.read()
        assert answer.status == 200 and not answer.will_close  # kept alive, now idle
        server.stop()
        assert idle.sock.recv(1) == b""  # the server closed its end without the client asking
        idle.close()
        with pytest.raises(requests.ConnectionError):
            session.get(f"{server.url}/op", timeout=5)


def test_command_line_serves_until_terminated():
    command = [sys.executable, "-m", "tests.fakes.bigcommerce", "--port", "0", "--token", "T", "--store-hash", "s1"]
    with subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            base_url = process.stdout.readline().strip()
            response = requests.get(f"{base_url}/stores/s1/v2/orders", timeout=5,
                                    headers={"X-Auth-Token": "T", "Accept": "application/json"})
            assert response.status_code == 204
        finally:
            process.terminate()
        assert process.wait(timeout=5) == 0
