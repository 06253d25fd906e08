"""BigCommerce order JSON translated into the BikOrder Bik receives."""
from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest

from adapters.bigcommerce.mapping import (
    DEFAULT_STATUS_MAP,
    BigCommerceMapping,
    consigned,
    decimal,
    fulfillment_status,
    tracking_url,
)
from bridge.config import ShopConfig
from bridge.core.presentation import Presentation
from tests.adapters.conftest import (
    bc_consignments,
    bc_order,
    bc_product,
    bc_settings,
    bc_shipment,
    bc_shipping_address,
)

DEFAULT_STATUS = {
    0: "ORDERED", 1: "ORDERED", 2: "IN PROGRESS", 3: "IN PROGRESS", 4: "CANCELLED", 5: "CANCELLED",
    6: "CANCELLED", 7: "ORDERED", 8: "IN PROGRESS", 9: "IN PROGRESS", 10: "DELIVERED", 11: "ORDERED",
    12: "ORDERED", 13: "ORDERED", 14: "DELIVERED",
}


@pytest.fixture
def mapping(settings, presentation) -> BigCommerceMapping:
    return BigCommerceMapping(settings, presentation)


def as_json(order) -> dict:
    """The order exactly as Bik reads it on the wire."""
    return json.loads(order.to_json_bytes())["order"]


# ------------------------------------------------------------------------------------------------ status


def test_default_status_map_covers_every_status_id_once():
    """BigCommerce's ids 0–14 each map to exactly one Bik status."""
    ids = [sid for group in DEFAULT_STATUS_MAP.values() for sid in group]
    assert sorted(ids) == list(range(15))


@pytest.mark.parametrize(("status_id", "expected"), sorted(DEFAULT_STATUS.items()))
def test_status_ids_map_to_the_defaults(mapping, status_id, expected):
    assert mapping.status(status_id) == expected
    assert expected in [name for name, ids in DEFAULT_STATUS_MAP.items() if status_id in ids]


@pytest.mark.parametrize("status_id", [None, 15, 99, "11"])
def test_an_unknown_status_id_reads_as_ordered(mapping, status_id):
    assert mapping.status(status_id) == "ORDERED"


def test_a_configured_status_map_moves_only_the_ids_it_names(presentation):
    """A merchant's status_map decides for the ids it lists; the others keep their defaults."""
    settings = bc_settings(status_map={"DELIVERED": [2, 10], "IN PROGRESS": [11], "CANCELLED": [5]})
    custom = BigCommerceMapping(settings, presentation)
    assert custom.status(2) == "DELIVERED"
    assert custom.status(10) == "DELIVERED"
    assert custom.status(11) == "IN PROGRESS"
    assert custom.status(5) == "CANCELLED"
    assert custom.status(4) == "CANCELLED"
    assert custom.status(14) == "DELIVERED"
    assert custom.status(7) == "ORDERED"


def test_status_reaches_the_get_order_answer(mapping):
    order = mapping.current(bc_order(status_id=10), [bc_product()], [], [])
    assert order.status == "DELIVERED"


# ---------------------------------------------------------------------------------------- payment status


@pytest.mark.parametrize(
    ("payment_status", "expected"),
    [
        ("paid", "paid"),
        ("captured", "paid"),
        ("partially refunded", "paid"),
        ("Partially Refunded", "paid"),
        ("PAID", "paid"),
        ("refunded", "refunded"),
        ("authorized", "pending"),
        ("pending", "pending"),
        ("declined", "pending"),
        ("void", "pending"),
        ("", "pending"),
        (None, "pending"),
    ],
)
def test_payment_status_mapping(mapping, payment_status, expected):
    """The store's payment_status in Bik's three values."""
    assert mapping.payment_status(bc_order(payment_status=payment_status)) == expected


def test_an_order_created_as_paid_without_a_payment_record_reads_paid(mapping):
    """API orders carry no payment; one placed as paid (status 11, Bik method) stays paid."""
    created_paid = bc_order(payment_status="", status_id=11, payment_method="Bik")
    assert mapping.payment_status(created_paid) == "paid"
    assert mapping.current(created_paid, [bc_product()], [], []).paymentStatus == "paid"


@pytest.mark.parametrize(
    "order",
    [
        bc_order(payment_status="", status_id=11, payment_method="Cash on Delivery"),
        bc_order(payment_status="", status_id=7, payment_method="Bik"),
        bc_order(payment_status="pending", status_id=11, payment_method="Bik"),
    ],
)
def test_only_the_created_as_paid_combination_reads_paid(mapping, order):
    assert mapping.payment_status(order) == "pending"


def test_created_as_paid_follows_the_configured_status_and_method(presentation):
    settings = bc_settings(status_id_paid=9, payment_method_paid="UPI")
    custom = BigCommerceMapping(settings, presentation)
    assert custom.payment_status(bc_order(payment_status="", status_id=9, payment_method="UPI")) == "paid"
    assert custom.payment_status(bc_order(payment_status="", status_id=11, payment_method="Bik")) == "pending"


# ------------------------------------------------------------------------------------------- fulfillment


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], "unfulfilled"),
        ([bc_product(quantity=2, quantity_shipped=0)], "unfulfilled"),
        ([bc_product(quantity=2, quantity_shipped=1)], "partial"),
        ([bc_product(quantity=2, quantity_shipped=2)], "fulfilled"),
        ([bc_product(quantity=2, quantity_shipped=2), bc_product(id=502, quantity=1, quantity_shipped=0)],
         "partial"),
        ([bc_product(quantity=2, quantity_shipped=2), bc_product(id=502, quantity=1, quantity_shipped=1)],
         "fulfilled"),
        # Over-reporting on one line must not hide an unshipped one.
        ([bc_product(quantity=1, quantity_shipped=5), bc_product(id=502, quantity=3, quantity_shipped=0)],
         "partial"),
    ],
)
def test_fulfillment_from_shipped_quantities(mapping, lines, expected):
    assert fulfillment_status(lines) == expected
    assert mapping.current(bc_order(), lines, [], []).fulfillmentStatus == expected


# ------------------------------------------------------------------------------------------- tracking URL


def test_no_shipment_means_no_tracking_url(mapping):
    assert tracking_url([]) is None
    body = as_json(mapping.current(bc_order(), [bc_product()], [], []))
    assert body["deliveryInfo"] == {"trackingURL": None}


def test_tracking_url_is_from_the_newest_shipment():
    """Newest by date_created, whatever order the list comes in."""
    older = bc_shipment(id=1, date_created="Thu, 09 May 2024 08:00:00 +0000",
                        generated_tracking_link="https://track.example/old")
    newer = bc_shipment(id=2, date_created="Fri, 10 May 2024 08:00:00 +0000",
                        generated_tracking_link="https://track.example/new")
    assert tracking_url([older, newer]) == "https://track.example/new"
    assert tracking_url([newer, older]) == "https://track.example/new"


def test_newest_is_by_date_not_by_id():
    later_but_lower_id = bc_shipment(id=1, date_created="Sat, 11 May 2024 08:00:00 +0000",
                                     tracking_link="https://track.example/latest")
    earlier_higher_id = bc_shipment(id=9, date_created="Fri, 10 May 2024 08:00:00 +0000",
                                    tracking_link="https://track.example/earlier")
    assert tracking_url([earlier_higher_id, later_but_lower_id]) == "https://track.example/latest"


def test_custom_tracking_link_is_preferred_over_the_generated_one():
    shipment = bc_shipment(tracking_link="https://carrier.example/custom",
                           generated_tracking_link="https://www.fedex.com/track?n=1")
    assert tracking_url([shipment]) == "https://carrier.example/custom"


def test_generated_tracking_link_is_used_when_no_custom_one():
    shipment = bc_shipment(tracking_link="", generated_tracking_link="https://www.fedex.com/track?n=1")
    assert tracking_url([shipment]) == "https://www.fedex.com/track?n=1"


def test_shipments_without_any_link_give_no_url():
    assert tracking_url([bc_shipment(tracking_link="", generated_tracking_link="")]) is None
    assert tracking_url([bc_shipment(tracking_link=None, generated_tracking_link=None)]) is None


def test_tracking_url_reaches_the_get_order_answer(mapping):
    shipments = [bc_shipment(tracking_link="https://carrier.example/awb123")]
    order = mapping.current(bc_order(), [bc_product(quantity_shipped=2)], shipments, [])
    assert as_json(order)["deliveryInfo"] == {"trackingURL": "https://carrier.example/awb123"}


# ----------------------------------------------------------------------------------------------- lines


def test_variant_name_joins_option_display_values(mapping):
    line = bc_product(product_options=[
        {"id": 1, "display_name": "Size", "display_value": "50 ml"},
        {"id": 2, "display_name": "Scent", "display_value": "Rose"},
    ])
    item = mapping.item(line)
    assert item.variantName == "50 ml / Rose"


def test_variant_name_skips_empty_values_and_is_null_without_options(mapping):
    assert mapping.item(bc_product(product_options=[{"display_value": ""}, {"display_value": "Rose"}])) \
        .variantName == "Rose"
    assert mapping.item(bc_product(product_options=[])).variantName is None
    assert mapping.item(bc_product(product_options=None)).variantName is None


def test_line_fields(mapping):
    """Ids, name, quantity and the unit price including tax."""
    item = mapping.item(bc_product(product_id=77, variant_id=93, name="Skin Renew Cream", quantity=3,
                                   price_inc_tax="69.8400", price_ex_tax="60.0000"))
    dumped = item.model_dump(mode="json")
    assert dumped["productId"] == 77 and dumped["variantId"] == 93
    assert dumped["name"] == "Skin Renew Cream"
    assert dumped["quantity"] == 3
    assert dumped["price"] == 69.84


# ----------------------------------------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("69.8400", Decimal("69.84")), ("998.0000", Decimal("998")), ("0.0000", Decimal(0)), (None, Decimal(0)),
     ("", Decimal(0)), (12.5, Decimal("12.5")), (7, Decimal(7)), ("12.34567", Decimal("12.3457")), ("-5.0000", Decimal(0))],
)
def test_money_strings_are_read_exactly(raw, expected):
    assert decimal(raw) == expected


@pytest.mark.parametrize("raw", ["abc", "NaN", "Infinity", "1e30", "9" * 30, [1], {}])
def test_unreadable_money_is_a_value_error(raw):
    with pytest.raises(ValueError):
        decimal(raw)


def test_money_is_a_json_number_in_the_answer(mapping):
    """Money strings become JSON numbers: 69.8400 → 69.84, 998.0000 → 998."""
    order = bc_order(subtotal_inc_tax="69.8400", shipping_cost_inc_tax="10.5000", discount_amount="0.0000",
                     total_inc_tax="80.3400")
    body = as_json(mapping.current(order, [bc_product(price_inc_tax="69.8400", quantity=1)], [], []))
    assert body["subTotal"] == 69.84
    assert body["shippingCharge"] == 10.5
    assert body["discount"] == 0
    assert body["total"] == 80.34
    assert body["items"][0]["price"] == 69.84
    raw = mapping.current(bc_order(), [bc_product()], [], []).to_json_bytes()
    assert b'"total":947,' in raw and b'"subTotal":998,' in raw


# -------------------------------------------------------------------------------------------- currency


@pytest.mark.parametrize(
    ("bik", "store", "expected"),
    [("", "USD", "USD"), ("INR", "USD", "INR"), ("", "", "EUR"), ("", None, "EUR")],
)
def test_place_answer_currency(settings, make_request, bik, store, expected):
    """Bik's currency when it sends one, else the store's, else the configured default."""
    mapping = BigCommerceMapping(settings, Presentation(currency="EUR"))
    created = bc_order(currency_code=store)
    assert mapping.placed(make_request(order={"currency": bik}), created).currency == expected


@pytest.mark.parametrize(("store", "expected"), [("USD", "USD"), ("", "EUR"), (None, "EUR")])
def test_get_answer_currency(settings, store, expected):
    mapping = BigCommerceMapping(settings, Presentation(currency="EUR"))
    assert mapping.current(bc_order(currency_code=store), [bc_product()], [], []).currency == expected


# ----------------------------------------------------------------------------------- name and invoice


def test_name_format_and_invoice_template(settings, place_request):
    """Store settings shape the name and invoice link from the id and the draft id."""
    store = ShopConfig(name_format="BC-{id}", invoice_url_template="https://shop.example/invoice/{id}?d={draft_id}")
    mapping = BigCommerceMapping(settings, Presentation.from_config(store))
    placed = mapping.placed(place_request, bc_order(id=118))
    current = mapping.current(bc_order(id=118), [bc_product()], [], [])
    for order in (placed, current):
        assert order.name == "BC-118"
        assert order.invoiceUrl == "https://shop.example/invoice/118?d=nb_1715200000_a1b2c3d4"


def test_default_name_and_no_invoice(mapping, place_request):
    order = mapping.placed(place_request, bc_order(id=118))
    assert order.name == "#118"
    assert order.invoiceUrl is None


def test_name_may_use_the_draft_id(settings, place_request):
    mapping = BigCommerceMapping(settings, Presentation.from_config(ShopConfig(name_format="{draft_id}/{number}")))
    assert mapping.placed(place_request, bc_order(id=5)).name == "nb_1715200000_a1b2c3d4/5"


# ----------------------------------------------------------------------------------------- placed answer


def test_placed_answer_uses_the_stores_id_and_totals(mapping, place_request):
    """The id is a string; totals are the store's; lines, customer and address are Bik's."""
    created = bc_order(id=118, subtotal_inc_tax="998.0000", shipping_cost_inc_tax="49.0000",
                       discount_amount="100.0000", total_inc_tax="947.0000", status_id=7)
    body = as_json(mapping.placed(place_request, created))
    assert body["id"] == "118"
    assert (body["subTotal"], body["shippingCharge"], body["discount"], body["total"]) == (998, 49, 100, 947)
    assert body["status"] == "ORDERED"
    assert body["paymentStatus"] == "pending"
    assert body["fulfillmentStatus"] == "unfulfilled"
    assert body["items"] == [item.model_dump(mode="json") for item in place_request.order.items]
    assert body["address"] == place_request.order.address.model_dump(mode="json")
    assert body["email"] == "buyer@example.com"
    assert body["phoneNumber"] == "+919876543210"
    assert body["partnersData"] == {"id": "nb_1715200000_a1b2c3d4"}


def test_placed_answer_is_paid_when_bik_collected_payment(mapping, make_request):
    order = mapping.placed(make_request(paymentPending=False), bc_order(status_id=11, payment_method="Bik"))
    assert order.paymentStatus == "paid"


def test_a_total_mismatch_is_logged_with_both_totals(mapping, place_request, caplog):
    """The store's total wins, and the drift from Bik's total is logged as a warning."""
    created = bc_order(total_inc_tax="1017.6100", subtotal_inc_tax="1068.6100")
    with caplog.at_level(logging.WARNING, logger="bik_bridge.bigcommerce"):
        order = mapping.placed(place_request, created)
    assert order.total == Decimal("1017.61")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    record = warnings[0]
    assert record.bik_total == "947"
    assert record.store_total == "1017.61"
    assert record.draftOrderId == "nb_1715200000_a1b2c3d4"
    assert record.orderId == "118"


def test_matching_totals_log_no_warning(mapping, place_request, caplog):
    with caplog.at_level(logging.WARNING, logger="bik_bridge.bigcommerce"):
        mapping.placed(place_request, bc_order(total_inc_tax="947.0000"))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# ---------------------------------------------------------------------------------------- current answer


def test_current_answer_reads_the_store(mapping):
    """getOrder: lines from /products, address from /shipping_addresses, contact from billing."""
    order = mapping.current(bc_order(id=118), [bc_product()], [], [bc_shipping_address()])
    body = as_json(order)
    assert body["id"] == "118"
    assert body["items"] == [{"productId": 77, "variantId": 93, "name": "Skin Renew Cream", "variantName": None,
                              "quantity": 2, "price": 499, "image": None}]
    assert body["address"] == {"firstName": "Ship", "lastName": "To", "address1": "12 MG Road",
                               "address2": "Flat 4", "city": "Bengaluru", "state": "Karnataka",
                               "country": "India", "countryCode": "IN", "zip": "560001",
                               "phoneNumber": "+919800000000"}
    assert body["phoneNumber"] == "+919800000000"
    assert body["email"] == "buyer@example.com"
    assert body["partnersData"] == {"id": "nb_1715200000_a1b2c3d4"}


def test_current_answer_falls_back_to_the_billing_address(mapping):
    body = as_json(mapping.current(bc_order(), [bc_product()], [], []))
    assert body["address"]["address1"] == "Bik Office, HSR Layout, Sector 6"
    assert body["address"]["address2"] is None
    assert body["phoneNumber"] == "+919876543210"


def test_current_answer_without_a_draft_id_has_no_partners_data(mapping):
    body = as_json(mapping.current(bc_order(external_order_id=None, external_source=None), [bc_product()], [], []))
    assert body["partnersData"] is None
    assert body["name"] == "#118"


# ------------------------------------------------------------------------------------------ consignments


@pytest.mark.parametrize("shipped", [0, 1, 2])
def test_consignments_give_the_same_answer_as_the_sub_resources(mapping, shipped):
    """Lines and address read from the inlined consignments map exactly as /products and /shipping_addresses do."""
    products = [bc_product(quantity=2, quantity_shipped=shipped,
                           product_options=[{"display_name": "Size", "display_value": "50 ml"}]),
                bc_product(id=502, product_id=78, variant_id=0, quantity=1, price_inc_tax="0.0000")]
    addresses = [bc_shipping_address()]
    shipments = [bc_shipment(tracking_link="https://carrier.example/awb123")] if shipped else []
    order = bc_order(status_id=3, payment_status="captured", items_shipped=shipped)
    inlined = consigned({**order, "consignments": bc_consignments(products, addresses)})

    assert inlined.lines == products and inlined.addresses[0]["street_1"] == "12 MG Road"
    assert mapping.current(order, inlined.lines, shipments, inlined.addresses) == mapping.current(
        order, products, shipments, addresses)


@pytest.mark.parametrize("consignments", [
    None,
    [bc_consignments([bc_product()], [bc_shipping_address()])],
    {"url": "https://api.example/orders/118/consignments", "resource": "/orders/118/consignments"},
    bc_consignments([{"url": "https://api.example/orders/118/products/501", "resource": "/orders/118/products/501"}],
                    [bc_shipping_address()]),
    bc_consignments([], []),
])
def test_no_consignments_object_with_whole_lines_means_none(consignments):
    """The older array form, a link, links to the lines, or no line at all while the order counts items."""
    order = bc_order(items_total=2) if consignments is None else {**bc_order(items_total=2),
                                                                  "consignments": consignments}
    assert consigned(order) is None
