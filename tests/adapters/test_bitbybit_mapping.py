"""bitbybit's Order object in Bik's terms: status, payment and fulfilment tables, figures, names, lines."""
from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from adapters.bitbybit.builder import PAID_TAG
from adapters.bitbybit.mapping import BitbybitMapping, fulfillment_status, payment_status
from adapters.bitbybit.variant_map import VariantMap
from bridge.config import ShopConfig
from bridge.core.presentation import Presentation
from tests.adapters.bitbybit_support import DRAFT, MARKER, RecordedLog, bbb_order, bbb_settings

NUMBER_NAMES = dataclasses.replace(Presentation(currency="INR"), default_name_format="#{number}")


@pytest.fixture
def mapping() -> BitbybitMapping:
    return BitbybitMapping(bbb_settings(), NUMBER_NAMES)


def body_of(order) -> dict:
    return json.loads(order.to_json_bytes())["order"]


@pytest.mark.parametrize(("status", "fulfilment", "expected"), [
    ("active", "unfulfilled", "ORDERED"),
    ("active", None, "ORDERED"),
    ("active", "fulfilled", "IN PROGRESS"),
    ("active", "partially_fulfilled", "IN PROGRESS"),
    ("active", "Partially fulfilled", "IN PROGRESS"),
    ("Active", "FULFILLED", "IN PROGRESS"),
    ("archived", "fulfilled", "DELIVERED"),
    ("archived", "unfulfilled", "DELIVERED"),
    ("cancelled", "unfulfilled", "CANCELLED"),
    ("refunded", "fulfilled", "CANCELLED"),
    (None, "unfulfilled", "ORDERED"),
])
def test_status_table(mapping, status, fulfilment, expected):
    assert mapping.status({"status": status, "fulfillmentStatus": fulfilment}) == expected


@pytest.mark.parametrize(("status", "fulfilment", "expected"), [
    ("on_hold", "unfulfilled", "ORDERED"),
    ("done", "fulfilled", "IN PROGRESS"),
])
def test_an_unknown_status_reads_by_its_fulfilment_and_is_logged(mapping, status, fulfilment, expected):
    with RecordedLog() as log:
        assert mapping.status({"status": status, "fulfillmentStatus": fulfilment}) == expected
    assert any("unknown bitbybit order status" in r.getMessage() for r in log.records)


def test_a_custom_status_map_moves_only_the_keys_it_names():
    custom = BitbybitMapping(bbb_settings(status_map={"archived": "IN PROGRESS", "Done": "DELIVERED",
                                                      "active/Partially Fulfilled": "ORDERED"}), NUMBER_NAMES)

    assert custom.status({"status": "archived"}) == "IN PROGRESS"
    assert custom.status({"status": "done", "fulfillmentStatus": "fulfilled"}) == "DELIVERED"
    assert custom.status({"status": "active", "fulfillmentStatus": "partially_fulfilled"}) == "ORDERED"
    assert custom.status({"status": "active", "fulfillmentStatus": "fulfilled"}) == "IN PROGRESS"
    assert custom.status({"status": "cancelled"}) == "CANCELLED"


@pytest.mark.parametrize(("value", "tags", "expected"), [
    ("pending", [], "pending"),
    ("paid", [], "paid"),
    ("PAID", [], "paid"),
    ("refunded", [], "refunded"),
    ("refunded", [PAID_TAG], "refunded"),
    ("partially_refunded", [], "paid"),
    (None, [], "pending"),
    ("unpaid", [], "pending"),
    ("pending", [PAID_TAG], "paid"),  # created as paid: bitbybit takes no financialStatus on create
    ("authorized", [], "pending"),
])
def test_payment_table(value, tags, expected):
    assert payment_status(value, tags) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("unfulfilled", "unfulfilled"),
    (None, "unfulfilled"),
    ("fulfilled", "fulfilled"),
    ("partially_fulfilled", "partial"),
    ("Partially fulfilled", "partial"),
    ("partial", "partial"),
    ("in_transit", None),
])
def test_fulfilment_table(value, expected):
    assert fulfillment_status(value) == expected


def test_an_unknown_fulfilment_is_left_out_and_logged():
    with RecordedLog() as log:
        assert fulfillment_status("in_transit") is None
    assert any("unknown bitbybit fulfillmentStatus" in r.getMessage() for r in log.records)


def test_placed_answer_has_the_stores_id_figures_and_biks_lines(mapping, place_request):
    order = body_of(mapping.placed(place_request, bbb_order()))

    assert order["id"] == "ord_7f3a9c"
    assert order["name"] == "#1001"
    assert (order["status"], order["paymentStatus"], order["fulfillmentStatus"]) == ("ORDERED", "pending",
                                                                                    "unfulfilled")
    assert (order["subTotal"], order["shippingCharge"], order["discount"], order["total"]) == (998, 0, 0, 998)
    assert order["items"] == json.loads(place_request.model_dump_json())["order"]["items"]
    assert order["partnersData"] == {"id": DRAFT}
    assert order["currency"] == "INR"


def test_a_total_mismatch_is_logged_with_both_totals(mapping, place_request):
    with RecordedLog() as log:
        mapping.placed(place_request, bbb_order(total=998))

    warnings = [r for r in log.records if r.levelno == logging.WARNING]
    assert [w.getMessage() for w in warnings] == ["store total differs from Bik's"]
    assert (warnings[0].bik_total, warnings[0].store_total) == ("947", "998")
    assert warnings[0].draftOrderId == DRAFT


def test_matching_totals_log_nothing(mapping, make_request):
    request = make_request(order={"shippingCharge": 0, "discount": 0, "total": 998})

    with RecordedLog() as log:
        mapping.placed(request, bbb_order(total=998))

    assert [r for r in log.records if r.levelno >= logging.WARNING] == []


def test_a_paid_order_is_answered_paid(mapping, make_request):
    assert mapping.placed(make_request(paymentPending=False), bbb_order()).paymentStatus == "paid"


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, "#1001"),
    ({"orderNumber": None}, "#ORD-1001"),
    ({"orderNumber": "", "orderId": None}, "#ord_7f3a9c"),
])
def test_the_name_is_the_order_number(mapping, place_request, fields, expected):
    assert mapping.placed(place_request, bbb_order(**fields)).name == expected


def test_name_format_and_invoice_template_apply(place_request):
    store = ShopConfig(name_format="BBB-{number} ({id})", invoice_url_template="https://s.example/o/{id}?d={draft_id}")
    mapping = BitbybitMapping(bbb_settings(), Presentation.from_config(store))

    order = mapping.current(bbb_order())

    assert order.name == "BBB-1001 (ord_7f3a9c)"
    assert order.invoiceUrl == f"https://s.example/o/ord_7f3a9c?d={DRAFT}"


def test_current_reads_the_stores_state(mapping):
    order = body_of(mapping.current(bbb_order(status="active", fulfillmentStatus="fulfilled",
                                              financialStatus="paid", total=1047)))

    assert (order["status"], order["paymentStatus"], order["fulfillmentStatus"]) == ("IN PROGRESS", "paid",
                                                                                    "fulfilled")
    assert (order["subTotal"], order["total"]) == (998, 1047)
    assert order["items"] == [{"productId": None, "variantId": 40946134352009, "name": "Skin Renew Cream",
                               "variantName": None, "quantity": 2, "price": 499,
                               "image": "https://cdn.example/src.jpg"}]
    assert order["address"] == {"firstName": "Bik", "lastName": "Tester",
                                "address1": "Bik Office, HSR Layout, Sector 6", "address2": None,
                                "city": "Bengaluru", "state": "Karnataka", "country": "IN", "countryCode": "IN",
                                "zip": "560102", "phoneNumber": "+919876543210"}
    assert order["phoneNumber"] == "+919876543210"
    assert order["email"] == "buyer@example.com"
    assert order["deliveryInfo"] == {"trackingURL": None}
    assert order["partnersData"] == {"id": DRAFT}


def test_current_tolerates_nulls_and_slim_lines(mapping):
    order = body_of(mapping.current(bbb_order(
        currency=None, customer=None, shippingAddress=None, total=None, fulfillmentStatus=None,
        lineItems=[{"id": "li_9", "quantity": 1, "price": 150000.0, "title": "Kain"}])))

    assert order["currency"] == "INR"
    assert order["address"] is None and order["email"] is None and order["phoneNumber"] is None
    assert order["items"][0]["variantId"] == "li_9" and order["items"][0]["price"] == 150000
    assert order["subTotal"] == 150000 and order["total"] == 0


def test_lines_read_back_through_the_variant_map():
    mapping = BitbybitMapping(bbb_settings(), NUMBER_NAMES, VariantMap({"77": "pv_a", "78": "pv_a", "x9": "pv_b"}))
    lines = [{"quantity": 1, "price": 5, "productVariant": {"id": "pv_a"}},
             {"quantity": 1, "price": 5, "productVariant": {"id": "pv_b"}},
             {"quantity": 1, "price": 5, "productVariant": {"id": "pv_other"}}]

    items = mapping.current(bbb_order(lineItems=lines)).items

    assert [i.variantId for i in items] == [77, "x9", "pv_other"]


def test_ours_means_carrying_the_marker_unless_scope_is_all(mapping):
    assert mapping.is_ours(bbb_order())
    assert mapping.draft_id(bbb_order()) == DRAFT
    foreign = bbb_order(tags=["vip", "bik:"])
    assert not mapping.is_ours(foreign) and mapping.draft_id(foreign) is None
    assert mapping.carries(bbb_order(), MARKER) and not mapping.carries(bbb_order(), MARKER + "x")
    everything = BitbybitMapping(bbb_settings(), dataclasses.replace(NUMBER_NAMES, scope_all=True))
    assert everything.is_ours(foreign)
    assert everything.current(foreign).partnersData is None


@pytest.mark.parametrize("broken", [
    {"id": None}, {"id": ""}, {"total": "lots"}, {"lineItems": [{"quantity": "two", "price": 1}]},
])
def test_unreadable_orders_raise_value_errors(mapping, broken):
    with pytest.raises((ValueError, KeyError, TypeError)):
        mapping.current(bbb_order(**broken))
