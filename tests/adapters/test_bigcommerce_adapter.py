"""The BigCommerce adapter against a mocked v2 Orders API: what it sends, what it answers, how it fails."""
from __future__ import annotations

import json

import pytest
import requests
import responses
from responses import matchers

from adapters.bigcommerce.adapter import FALLBACK_REASON
from bridge.config import ShopConfig, UpstreamConfig
from bridge.core.errors import (
    OrderNotFound,
    OrderRejected,
    UpstreamAmbiguous,
    UpstreamAuthError,
    UpstreamFailed,
    UpstreamMisconfigured,
    UpstreamUnreachable,
)
from bridge.core.models import BikOrder
from bridge.core.ports import Lookup, LookupResult
from bridge.core.presentation import Presentation
from bridge.ops import context
from tests.adapters.conftest import (
    ORDERS_URL,
    STORE_HASH,
    TOKEN,
    bc_consignments,
    bc_order,
    bc_product,
    bc_settings,
    bc_shipment,
    bc_shipping_address,
)

DRAFT = "nb_1715200000_a1b2c3d4"
OUT_OF_STOCK = [{
    "status": 409,
    "message": "The quantities of one or more products are out of stock or did not meet quantity requirements.",
    "details": {"conflict_reason": [{"type": "OutOfStock", "product_id": 77, "inventory_level": 0}]},
}]


def add_order_reads(rsps, order_id=118, *, order=None, products=None, shipments=None, addresses=None, inlined=True):
    """Register getOrder's reads; None shipments means BigCommerce's empty 204.

    `inlined`: the order carries its lines and addresses in its consignments object, as asked; otherwise it is
    answered in the older form (no consignments object) and /products and /shipping_addresses hold them.
    """
    base = f"{ORDERS_URL}/{order_id}"
    order = order if order is not None else bc_order(id=order_id)
    products = products if products is not None else [bc_product()]
    addresses = addresses if addresses is not None else [bc_shipping_address()]
    if inlined:
        rsps.add(responses.GET, base, json={**order, "consignments": bc_consignments(products, addresses)})
    else:
        rsps.add(responses.GET, base, json=order)
        rsps.add(responses.GET, f"{base}/products", json=products)
        rsps.add(responses.GET, f"{base}/shipping_addresses", json=addresses)
    if shipments is None:
        rsps.add(responses.GET, f"{base}/shipments", status=204)
    else:
        rsps.add(responses.GET, f"{base}/shipments", json=shipments)


def paths_of(rsps) -> list[str]:
    """The paths the adapter read, in the order they were sent."""
    return [requests.utils.urlparse(c.request.url).path.rsplit("/v2", 1)[-1] for c in rsps.calls]


def body_of(call) -> dict:
    return json.loads(call.request.body)


# ----------------------------------------------------------------------------------------------- place


def test_place_sends_exactly_one_create_and_maps_the_answer(adapter, place_request, deadline, rsps):
    """One POST with the builder's body; the answer carries the store's id (as text) and totals."""
    created = bc_order(id=4242, subtotal_inc_tax="998.0000", shipping_cost_inc_tax="49.0000",
                       discount_amount="100.0000", total_inc_tax="947.0000", status_id=7)
    rsps.add(responses.POST, ORDERS_URL, json=created, status=201)
    order = adapter.place(place_request, deadline)
    assert len(rsps.calls) == 1
    call = rsps.calls[0]
    assert call.request.method == "POST"
    assert call.request.headers["X-Auth-Token"] == TOKEN
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.headers["Accept"] == "application/json"
    sent = body_of(call)
    assert sent == adapter.requests.create_body(place_request)
    assert sent["external_order_id"] == DRAFT
    body = json.loads(order.to_json_bytes())["order"]
    assert body["id"] == "4242"
    assert body["name"] == "#4242"
    assert (body["subTotal"], body["shippingCharge"], body["discount"], body["total"]) == (998, 49, 100, 947)
    assert body["status"] == "ORDERED"
    assert body["paymentStatus"] == "pending"
    assert body["currency"] == "INR"


def test_place_takes_the_stores_totals_over_bik(adapter, place_request, deadline, rsps):
    """When the store computed tax, its totals are what Bik is told."""
    rsps.add(responses.POST, ORDERS_URL, status=200,
             json=bc_order(id=5, subtotal_inc_tax="1177.6400", total_inc_tax="1126.6400"))
    order = adapter.place(place_request, deadline)
    body = json.loads(order.to_json_bytes())["order"]
    assert body["subTotal"] == 1177.64 and body["total"] == 1126.64


def test_out_of_stock_is_a_rejection_carrying_bigcommerces_message(adapter, place_request, deadline, rsps):
    rsps.add(responses.POST, ORDERS_URL, status=409, json=OUT_OF_STOCK)
    with pytest.raises(OrderRejected) as raised:
        adapter.place(place_request, deadline)
    assert "out of stock" in raised.value.message
    assert raised.value.status == 422
    assert len(rsps.calls) == 1


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, [{"status": 400, "message": "The field 'state' does not allow null values."}],
         "The field 'state' does not allow null values."),
        (400, [{"status": 400, "message": "The options of one or more products are invalid.",
                "details": {"invalid_reason": [{"type": "MandatoryProductOptions"}]}}],
         "The options of one or more products are invalid."),
        (422, {"status": 422, "title": "The field 'customer_id' is invalid.", "errors": {}},
         "The field 'customer_id' is invalid."),
    ],
)
def test_invalid_orders_are_rejections(adapter, place_request, deadline, rsps, status, body, expected):
    """400/422 are the platform's verdict on the order: 422 to Bik with the reason, no retry."""
    rsps.add(responses.POST, ORDERS_URL, status=status, json=body)
    with pytest.raises(OrderRejected) as raised:
        adapter.place(place_request, deadline)
    assert expected in raised.value.message
    assert len(rsps.calls) == 1


def test_a_500_on_create_is_ambiguous_and_not_resent(adapter, place_request, deadline, rsps, sleeps):
    rsps.add(responses.POST, ORDERS_URL, status=500, json=[{"status": 500, "message": "Internal error"}])
    rsps.add(responses.POST, ORDERS_URL, status=201, json=bc_order())
    with pytest.raises(UpstreamAmbiguous) as raised:
        adapter.place(place_request, deadline)
    assert raised.value.maybe_applied is True
    assert len(rsps.calls) == 1
    assert sleeps.calls == []


def test_a_read_timeout_on_create_is_ambiguous_and_not_resent(adapter, place_request, deadline, rsps):
    rsps.add(responses.POST, ORDERS_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(UpstreamAmbiguous):
        adapter.place(place_request, deadline)
    assert len(rsps.calls) == 1


def test_a_rate_limited_create_is_sent_again_once(adapter, place_request, deadline, rsps, sleeps):
    """A 429 means nothing was created: the create goes again after the reset and one order results."""
    rsps.add(responses.POST, ORDERS_URL, status=429, headers={"X-Rate-Limit-Time-Reset-Ms": "800"})
    rsps.add(responses.POST, ORDERS_URL, status=201, json=bc_order(id=9))
    assert adapter.place(place_request, deadline).id == "9"
    assert len(rsps.calls) == 2
    assert sleeps.calls == [pytest.approx(0.8, abs=0.05)]


def test_refused_credentials_on_create(adapter, place_request, deadline, rsps):
    rsps.add(responses.POST, ORDERS_URL, status=401, json=[{"status": 401, "message": "Unauthorized"}])
    with pytest.raises(UpstreamAuthError) as raised:
        adapter.place(place_request, deadline)
    assert raised.value.status == 502
    assert TOKEN not in raised.value.message


def test_a_404_on_create_names_the_store_settings(adapter, place_request, deadline, rsps):
    """A wrong store hash is a configuration problem, surely not an order."""
    rsps.add(responses.POST, ORDERS_URL, status=404, json=[{"status": 404, "message": "Not found"}])
    with pytest.raises(UpstreamMisconfigured) as raised:
        adapter.place(place_request, deadline)
    assert "store_hash" in raised.value.message
    assert raised.value.maybe_applied is False


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>gateway</html>", "content_type": "text/html"},
        {"body": '{"id": 12', "content_type": "application/json"},
        {"json": []},
        {"json": "created"},
        {"json": {"no_id": True}},
        {"json": {"id": 1, "total_inc_tax": "lots"}},
    ],
)
def test_an_unreadable_create_answer_is_ambiguous(adapter, place_request, deadline, rsps, answer):
    """A 2xx create landed even if its answer cannot be read: the draft must be looked up, never re-created."""
    rsps.add(responses.POST, ORDERS_URL, status=200, **answer)
    with pytest.raises(UpstreamAmbiguous) as raised:
        adapter.place(place_request, deadline)
    assert raised.value.status == 504  # what Bik sees for every unconfirmed create
    assert raised.value.maybe_applied is True
    assert len(rsps.calls) == 1


def test_a_request_refused_by_the_builder_sends_nothing(adapter, make_request, deadline, rsps):
    request = make_request(order={"items": [{"productId": 1, "variantId": "abc", "quantity": 1, "price": 1}]})
    with pytest.raises(OrderRejected):
        adapter.place(request, deadline)
    assert len(rsps.calls) == 0


# ------------------------------------------------------------------------------------------------- get


def test_get_of_an_order_with_nothing_shipped_is_one_request(adapter, deadline, rsps):
    """The order with its consignments inlined carries lines and address: one GET makes the whole BikOrder."""
    order = bc_order(id=118, status_id=2, payment_status="captured", items_shipped=0)
    products = [bc_product(quantity=2, quantity_shipped=0,
                           product_options=[{"display_name": "Size", "display_value": "50 ml"}])]
    add_order_reads(rsps, order=order, products=products)
    result = adapter.get("118", deadline)
    assert paths_of(rsps) == ["/orders/118"]
    call = rsps.calls[0]
    assert call.request.method == "GET" and call.request.headers["X-Auth-Token"] == TOKEN
    assert call.request.params == {"include": "consignments.line_items", "consignment_structure": "object"}
    body = json.loads(result.to_json_bytes())["order"]
    assert body["id"] == "118"
    assert body["status"] == "IN PROGRESS"
    assert body["paymentStatus"] == "paid"
    assert body["fulfillmentStatus"] == "unfulfilled"
    assert body["deliveryInfo"] == {"trackingURL": None}
    assert body["items"][0]["variantName"] == "50 ml"
    assert body["address"]["address1"] == "12 MG Road"
    assert body["email"] == "buyer@example.com"
    assert body["total"] == 947


def test_an_order_answered_without_its_consignments_object_reads_lines_and_address_apart(adapter, deadline, rsps):
    """The older answer (no consignments object): /products and /shipping_addresses too, and the fallback is noted."""
    order = bc_order(id=118, status_id=2, payment_status="captured", items_shipped=0)
    products = [bc_product(quantity=2, product_options=[{"display_name": "Size", "display_value": "50 ml"}])]
    add_order_reads(rsps, order=order, products=products, inlined=False)
    served = context.begin("req-1")
    try:
        fallback = json.loads(adapter.get("118", deadline).to_json_bytes())["order"]
    finally:
        context.end()
    assert sorted(paths_of(rsps)) == ["/orders/118", "/orders/118/products", "/orders/118/shipping_addresses"]
    assert served.fallbacks == [FALLBACK_REASON]
    assert (fallback["status"], fallback["paymentStatus"], fallback["fulfillmentStatus"]) == (
        "IN PROGRESS", "paid", "unfulfilled")
    assert fallback["items"][0]["variantName"] == "50 ml"
    assert fallback["address"]["address1"] == "12 MG Road"


@pytest.mark.parametrize("consignments", [
    [bc_consignments([bc_product()], [bc_shipping_address()])],  # the older array form
    {"url": f"{ORDERS_URL}/118/consignments", "resource": "/orders/118/consignments"},  # the include ignored
    bc_consignments([{"url": f"{ORDERS_URL}/118/products/501", "resource": "/orders/118/products/501"}],
                    [bc_shipping_address()]),  # `include=consignments` alone: links to the lines
    {"pickups": [], "shipping": "none", "downloads": [], "email": {}},  # no line where the order counts items
    {"pickups": [], "shipping": [], "downloads": [{"line_items": {"url": "u", "resource": "/orders/118/products"}}]},
])
def test_consignments_without_whole_lines_fall_back_to_the_sub_resources(adapter, deadline, rsps, consignments):
    add_order_reads(rsps, order={**bc_order(), "consignments": consignments}, inlined=False)
    assert adapter.get("118", deadline).items[0].productId == 77
    assert sorted(paths_of(rsps)) == ["/orders/118", "/orders/118/products", "/orders/118/shipping_addresses"]


def test_lines_of_every_consignment_are_read_once_each(adapter, deadline, rsps):
    """Shipping, pickup and digital consignments all carry lines; a line listed twice counts once."""
    first, second = bc_product(id=501, quantity=2), bc_product(id=502, product_id=78, quantity=1)
    consignments = {"pickups": [{"id": 1, "line_items": [second]}], "shipping": [
        {**bc_shipping_address(), "line_items": [first]}], "downloads": [{"line_items": [first]}],
        "email": {"gift_certificates": []}}
    rsps.add(responses.GET, f"{ORDERS_URL}/118", json={**bc_order(), "consignments": consignments})
    order = adapter.get("118", deadline)
    assert [(item.productId, item.quantity) for item in order.items] == [(77, 2), (78, 1)]
    assert order.address.address1 == "12 MG Road"
    assert paths_of(rsps) == ["/orders/118"]


def test_a_pickup_or_digital_order_without_a_shipping_consignment_answers_the_billing_address(adapter, deadline,
                                                                                             rsps):
    add_order_reads(rsps, addresses=[])
    order = adapter.get("118", deadline)
    assert order.address.address1 == "Bik Office, HSR Layout, Sector 6"
    assert paths_of(rsps) == ["/orders/118"]


def test_get_with_shipments_reports_tracking_and_fulfillment(adapter, deadline, rsps):
    add_order_reads(rsps, order=bc_order(status_id=10, items_shipped=2),
                    products=[bc_product(quantity=2, quantity_shipped=2)],
                    shipments=[bc_shipment(generated_tracking_link="https://track.example/AWB123")])
    body = json.loads(adapter.get("118", deadline).to_json_bytes())["order"]
    assert body["status"] == "DELIVERED"
    assert body["fulfillmentStatus"] == "fulfilled"
    assert body["deliveryInfo"] == {"trackingURL": "https://track.example/AWB123"}
    assert paths_of(rsps) == ["/orders/118", "/orders/118/shipments"]


@pytest.mark.parametrize("inlined", [True, False], ids=["consignments", "older answer"])
@pytest.mark.parametrize("order, products", [
    (bc_order(items_shipped=2), [bc_product(quantity_shipped=0)]),
    (bc_order(items_shipped=0), [bc_product(quantity_shipped=1)]),
    ({k: v for k, v in bc_order().items() if k != "items_shipped"}, [bc_product()]),
])
def test_get_reads_shipments_of_an_order_that_may_have_shipped(adapter, deadline, rsps, order, products, inlined):
    """Shipped items on the order or a line (or no count at all) mean the shipments are read, and remembered."""
    add_order_reads(rsps, order=order, products=products, inlined=inlined,
                    shipments=[bc_shipment(tracking_link="https://track.example/T1")])
    assert adapter.get("118", deadline).deliveryInfo.trackingURL == "https://track.example/T1"
    assert adapter.shipped.seen(118)
    first_read = len(rsps.calls)

    again = adapter.get("118", deadline)

    shipment_reads = [c for c in rsps.calls if c.request.url.split("?")[0].endswith("/118/shipments")]
    assert len(shipment_reads) == 2  # once per read: learnt after the first, asked up front on the second
    assert first_read == len(rsps.calls) - first_read == (2 if inlined else 4)
    assert again.deliveryInfo.trackingURL == "https://track.example/T1"


def test_shipped_order_ids_forget_the_least_recently_read_beyond_their_limit():
    from adapters.bigcommerce.adapter import ShippedOrderIds

    ids = ShippedOrderIds(limit=2)
    for order_id in (1, 2, 3):
        ids.add(order_id)
    assert [ids.seen(i) for i in (1, 2, 3)] == [False, True, True]
    ids.add(4)  # 2 was read before 3: it goes first
    assert [ids.seen(i) for i in (2, 3, 4)] == [False, True, True]


def test_get_of_an_unknown_id_is_not_found(adapter, deadline, rsps):
    for suffix in ("", "/products", "/shipments", "/shipping_addresses"):
        rsps.add(responses.GET, f"{ORDERS_URL}/999{suffix}", status=404,
                 json=[{"status": 404, "message": "The requested resource was not found."}])
    with pytest.raises(OrderNotFound) as raised:
        adapter.get("999", deadline)
    assert raised.value.status == 404


@pytest.mark.parametrize("order_id", ["abc", "12a", "-1", "1.0", "", "1" * 19, "\u00b2", "\u0663", "../orders"])
def test_get_of_a_non_numeric_id_is_not_found_without_a_request(adapter, deadline, rsps, order_id):
    with pytest.raises(OrderNotFound):
        adapter.get(order_id, deadline)
    assert len(rsps.calls) == 0


def test_get_of_an_order_placed_elsewhere_is_not_found(adapter, deadline, rsps):
    """Bik reads only orders the bridge placed."""
    add_order_reads(rsps, order=bc_order(external_source="POS (Square)", external_order_id=None))
    with pytest.raises(OrderNotFound):
        adapter.get("118", deadline)


def test_scope_all_makes_other_orders_visible(make_adapter, deadline, rsps):
    adapter = make_adapter(presentation=Presentation.from_config(ShopConfig(get_order_scope="all")))
    add_order_reads(rsps, order=bc_order(external_source=None, external_order_id=None))
    order = adapter.get("118", deadline)
    assert order.id == "118"
    assert order.partnersData is None


def test_a_custom_external_source_is_recognised(make_adapter, deadline, rsps):
    adapter = make_adapter(settings=bc_settings(external_source="bik-app-42"))
    add_order_reads(rsps, order=bc_order(external_source="bik-app-42"))
    assert adapter.get("118", deadline).id == "118"
    add_order_reads(rsps, order_id=119, order=bc_order(id=119, external_source="Bik"))
    with pytest.raises(OrderNotFound):
        adapter.get("119", deadline)


def test_get_retries_a_transient_read(adapter, deadline, rsps):
    """A 503 on one of the reads is retried; the answer is still complete."""
    rsps.add(responses.GET, f"{ORDERS_URL}/118", status=503)
    add_order_reads(rsps)
    assert adapter.get("118", deadline).id == "118"


def test_get_when_the_store_keeps_failing_is_unavailable(make_adapter, deadline, rsps):
    adapter = make_adapter(upstream=UpstreamConfig(max_attempts=2))
    for suffix in ("", "/products", "/shipments", "/shipping_addresses"):
        rsps.add(responses.GET, f"{ORDERS_URL}/118{suffix}", status=503)
    with pytest.raises(UpstreamUnreachable) as raised:
        adapter.get("118", deadline)
    assert raised.value.status == 503


def test_get_with_refused_credentials(adapter, deadline, rsps):
    for suffix in ("", "/products", "/shipments", "/shipping_addresses"):
        rsps.add(responses.GET, f"{ORDERS_URL}/118{suffix}", status=403,
                 json=[{"status": 403, "message": "You don't have a required scope to access the endpoint"}])
    with pytest.raises(UpstreamAuthError) as raised:
        adapter.get("118", deadline)
    assert "scope" in raised.value.message


@pytest.mark.parametrize(
    "reads",
    [
        {"order": "not json at all"},
        {"order": '{"id": 118, "status_id":'},
        {"order": []},
        {"order": "12"},
        {"products": "<html>oops</html>"},
        {"order": {k: v for k, v in bc_order().items() if k != "id"}},
        {"order": {**bc_order(), "total_inc_tax": "a lot"}},
        {"order": {**bc_order(), "billing_address": "somewhere"}},
        {"products": [bc_product(product_options=["Size: 50 ml"])]},
        {"products": [bc_product(product_options="Size: 50 ml")]},
        {"products": [bc_product(quantity="two")]},
        {"addresses": [{**bc_shipping_address(), "zip": 560001}]},
        {"shipments": [bc_shipment(id="x", date_created=17)], "products": [bc_product(quantity_shipped=2)]},
    ],
)
def test_garbage_from_the_store_is_a_502_never_a_bare_exception(adapter, deadline, rsps, reads):
    """Whatever BigCommerce answers (here in its older form, read apart), getOrder fails as an UpstreamFailed 502."""
    base = f"{ORDERS_URL}/118"
    defaults = {"order": bc_order(), "products": [bc_product()], "shipments": [],
                "addresses": [bc_shipping_address()]}
    paths = {"order": base, "products": f"{base}/products", "shipments": f"{base}/shipments",
             "addresses": f"{base}/shipping_addresses"}
    for name, path in paths.items():
        value = reads.get(name, defaults[name])
        if isinstance(value, str):
            rsps.add(responses.GET, path, body=value, content_type="application/json")
        else:
            rsps.add(responses.GET, path, json=value)
    with pytest.raises(UpstreamFailed) as raised:
        adapter.get("118", deadline)
    assert raised.value.status == 502


@pytest.mark.parametrize(
    ("products", "addresses"),
    [
        ([bc_product(product_options=["Size: 50 ml"])], [bc_shipping_address()]),
        ([bc_product(quantity="two")], [bc_shipping_address()]),
        ([bc_product(price_inc_tax="lots")], [bc_shipping_address()]),
        ([bc_product()], [{**bc_shipping_address(), "zip": 560001}]),
    ],
)
def test_garbage_in_the_consignments_is_a_502(adapter, deadline, rsps, products, addresses):
    add_order_reads(rsps, products=products, addresses=addresses)
    with pytest.raises(UpstreamFailed) as raised:
        adapter.get("118", deadline)
    assert raised.value.status == 502
    assert paths_of(rsps) == ["/orders/118"]


# ---------------------------------------------------------------------------------------- find_by_draft


SINCE = 1715200000.0 - 300


@pytest.mark.parametrize("answer", [{"status": 204}, {"json": []}], ids=["204", "empty list"])
def test_find_by_draft_asks_by_external_order_id_and_no_match_proves_absence(adapter, place_request, deadline, rsps,
                                                                               answer):
    rsps.add(responses.GET, ORDERS_URL, match=[matchers.query_param_matcher({"external_order_id": DRAFT})], **answer)
    assert adapter.find_by_draft(DRAFT, place_request, deadline, SINCE) == Lookup.absent()
    assert len(rsps.calls) == 1


def test_find_by_draft_returns_the_placed_order(adapter, place_request, deadline, rsps):
    """A match is answered like the create would have been, without re-reading the order."""
    rsps.add(responses.GET, ORDERS_URL, json=[bc_order(id=118)],
             match=[matchers.query_param_matcher({"external_order_id": DRAFT})])
    found = adapter.find_by_draft(DRAFT, place_request, deadline, SINCE)
    assert found.result is LookupResult.FOUND and isinstance(found.order, BikOrder)
    assert found.order.id == "118"
    assert found.order.items == place_request.order.items
    assert found.order.partnersData == {"id": DRAFT}
    assert len(rsps.calls) == 1


def test_find_by_draft_without_the_request_reads_the_order(adapter, deadline, rsps):
    """Without Bik's payload (reconciler), the match is read in full."""
    rsps.add(responses.GET, ORDERS_URL, json=[bc_order(id=118)],
             match=[matchers.query_param_matcher({"external_order_id": DRAFT})])
    add_order_reads(rsps)
    found = adapter.find_by_draft(DRAFT, None, deadline, None)
    assert found.result is LookupResult.FOUND and found.order.id == "118"
    assert found.order.items[0].productId == 77


def test_find_by_draft_answered_with_other_orders_proves_nothing(adapter, place_request, deadline, rsps):
    """A list of other drafts' orders means the store ignored the filter: the order may exist all the same."""
    rsps.add(responses.GET, ORDERS_URL, json=[
        bc_order(id=1, external_order_id="another-draft"),
        bc_order(id=2, external_source="POS (Square)"),
        bc_order(id=3, external_order_id=None),
    ])
    found = adapter.find_by_draft(DRAFT, place_request, deadline, SINCE)
    assert found.result is LookupResult.INCONCLUSIVE
    assert "ignores the filter" in found.reason and "check-config --ping" in found.reason


def test_find_by_draft_matches_under_another_source_prove_nothing(adapter, place_request, deadline, rsps):
    """The filter held, but the order carrying the draft id names another source: never placed again blind."""
    rsps.add(responses.GET, ORDERS_URL, json=[bc_order(id=2, external_source="POS (Square)")])
    found = adapter.find_by_draft(DRAFT, place_request, deadline, SINCE)
    assert found.result is LookupResult.INCONCLUSIVE and "bigcommerce.external_source" in found.reason


def test_find_by_draft_picks_the_first_order_when_several_match(adapter, place_request, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=[bc_order(id=130), bc_order(id=118), bc_order(id=125)])
    assert adapter.find_by_draft(DRAFT, place_request, deadline, SINCE).order.id == "118"


def test_a_404_on_the_list_endpoint_names_the_store_hash(adapter, place_request, deadline, rsps):
    """The list of orders never 404s on a real store: the hash or base URL is wrong."""
    rsps.add(responses.GET, ORDERS_URL, status=404, json=[{"status": 404, "message": "Not found"}])
    with pytest.raises(UpstreamMisconfigured) as raised:
        adapter.find_by_draft(DRAFT, place_request, deadline, SINCE)
    assert "store_hash" in raised.value.message
    assert raised.value.upstream_status == 404


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "not json", "content_type": "application/json"},
        {"body": "[{", "content_type": "application/json"},
        {"json": [{**bc_order(), "id": "abc"}]},
        {"json": [{**bc_order(), "id": 5}, {**bc_order(), "id": {"value": 6}}]},
        {"json": [{**bc_order(), "total_inc_tax": "???"}]},
        {"json": {"id": 118}},
    ],
)
def test_garbage_on_the_list_endpoint_is_a_502(adapter, place_request, deadline, rsps, answer):
    rsps.add(responses.GET, ORDERS_URL, status=200, **answer)
    with pytest.raises(UpstreamFailed) as raised:
        adapter.find_by_draft(DRAFT, place_request, deadline, SINCE)
    assert raised.value.status == 502


def test_a_failing_list_endpoint_is_unavailable(make_adapter, place_request, deadline, rsps):
    adapter = make_adapter(upstream=UpstreamConfig(max_attempts=2))
    rsps.add(responses.GET, ORDERS_URL, status=502)
    with pytest.raises(UpstreamFailed):
        adapter.find_by_draft(DRAFT, place_request, deadline, SINCE)
    assert len(rsps.calls) == 2


# ----------------------------------------------------------------------------------- check_credentials


def test_check_credentials_probes_the_draft_lookup_once(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, status=204)
    assert STORE_HASH in adapter.check_credentials(deadline)
    assert len(rsps.calls) == 1
    assert rsps.calls[0].request.params["external_order_id"].startswith("bik-bridge-ping-")


def test_check_credentials_fails_when_the_store_ignores_the_draft_filter(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=[bc_order()])
    with pytest.raises(UpstreamFailed, match="external_order_id"):
        adapter.check_credentials(deadline)


def test_check_credentials_with_a_wrong_token(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, status=401, json=[{"status": 401, "message": "Unauthorized"}])
    with pytest.raises(UpstreamAuthError):
        adapter.check_credentials(deadline)
