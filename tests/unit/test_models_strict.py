"""Bik's placeOrder and getOrder bodies are read strictly: JSON types as the contract gives them, ids as sent."""
from __future__ import annotations

import json
import unicodedata
from decimal import Decimal

import pytest
from pydantic import ValidationError

from bridge.core.models import (
    BikAddressIn,
    BikOrder,
    BikOrderIn,
    BikOrderItemIn,
    GetOrderRequest,
    PlaceOrderRequest,
)

ITEM = {"variantId": 1, "quantity": 1, "price": 1}
ORDER = {"items": [ITEM], "subTotal": 1, "total": 1}


def refused_fields(model, data) -> list[str]:
    """The dotted field of each error `model` finds in `data` (empty when it is taken)."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return [".".join(map(str, e["loc"])) for e in exc.errors()]
    return []


def test_control_characters_are_category_cc_and_lone_surrogates():
    """Every code point of the Basic Multilingual Plane: refused in an address exactly when it is Cc or a surrogate."""
    wrong = [chr(c) for c in range(0x10000) if (unicodedata.category(chr(c)) == "Cc") != bool(refused_fields(
        BikAddressIn, {"city": f"a{chr(c)}b"})) and not 0xD800 <= c <= 0xDFFF]
    assert wrong == []
    assert all(refused_fields(BikAddressIn, {"city": chr(c)}) == ["city"] for c in range(0xD800, 0xE000, 0x7F))
    assert refused_fields(BikAddressIn, {"city": "Bengaluru \u00e9\u0939 \u2014 \U0001f600"}) == []


@pytest.mark.parametrize("value, expected", [
    ("Skin Renew Cream", "Skin Renew Cream"),
    ("Red\r\nL", "Red L"),
    ("a\x00\x01\x02b", "a b"),
    ("\x85lead", " lead"),
    ("Red \ud83d L", "Red   L"),
])
def test_display_text_turns_each_run_of_control_characters_into_one_space(value, expected):
    item = BikOrderItemIn.model_validate({**ITEM, "name": value, "variantName": value})
    assert (item.name, item.variantName) == (expected, expected)


def test_tags_lose_their_control_characters_too():
    assert BikOrderIn.model_validate({**ORDER, "tags": "vip\n,\x00new"}).tag_list() == ["vip", "new"]
    assert BikOrderIn.model_validate({**ORDER, "tags": ["v\ti\rp", "x"]}).tags == ["v i p", "x"]


@pytest.mark.parametrize("email", ["buyer@example.com", "a.b+c@sub.example.co.in", "x@y.z", "", None])
def test_plausible_or_missing_emails_are_taken(email):
    assert refused_fields(BikOrderIn, {**ORDER, "email": email}) == []


@pytest.mark.parametrize("email", ["buyer", "buyer@", "@example.com", "buyer@example", "buyer@.com",
                                   "buyer@example..com", "a@b@example.com", "buy er@example.com",
                                   "buyer@exa mple.com", "buyer@example.com\n", "buyer@example.com\x00"])
def test_malformed_emails_are_refused(email):
    assert refused_fields(BikOrderIn, {**ORDER, "email": email}) == ["email"]


@pytest.mark.parametrize("field", ["subTotal", "total", "shippingCharge", "discount"])
@pytest.mark.parametrize("value", ["1", "1.00", True])
def test_money_must_be_a_json_number(field, value):
    assert refused_fields(BikOrderIn, {**ORDER, field: value}) == [field]


@pytest.mark.parametrize("value, amount", [(0, Decimal(0)), (499, Decimal(499)), (49.5, Decimal("49.5")),
                                           (0.1, Decimal("0.1"))])
def test_money_as_json_numbers_is_taken(value, amount):
    assert BikOrderItemIn.model_validate({**ITEM, "price": value}).price == amount


@pytest.mark.parametrize("value", ["2", 2.0, True, None])
def test_quantity_must_be_a_json_integer(value):
    assert refused_fields(BikOrderItemIn, {**ITEM, "quantity": value}) == ["quantity"]


@pytest.mark.parametrize("value", ["true", "false", 1, 0, None])
def test_payment_pending_must_be_a_json_boolean(value):
    body = {"draftOrderId": "nb_1", "paymentPending": value, "order": ORDER}
    assert refused_fields(PlaceOrderRequest, body) == ["paymentPending"]


def test_payment_pending_defaults_to_true_when_left_out():
    assert PlaceOrderRequest.model_validate({"draftOrderId": "nb_1", "order": ORDER}).paymentPending is True


@pytest.mark.parametrize("field", ["variantId", "productId"])
@pytest.mark.parametrize("value", [" 12", "12 ", "\t12", "12\n", "1\x002"])
def test_item_ids_are_refused_rather_than_trimmed(field, value):
    assert refused_fields(BikOrderItemIn, {**ITEM, field: value}) == [field]


@pytest.mark.parametrize("value", ["SKU 12", "12", 12, 0])
def test_item_ids_are_kept_as_sent(value):
    assert BikOrderItemIn.model_validate({**ITEM, "variantId": value}).variantId == value


@pytest.mark.parametrize("value", ["  d1  ", "d1 ", " d1", "d1\n", "d\x001"])
def test_draft_ids_are_refused_rather_than_trimmed(value):
    assert refused_fields(PlaceOrderRequest, {"draftOrderId": value, "order": ORDER}) == ["draftOrderId"]
    assert PlaceOrderRequest.model_validate({"draftOrderId": "d1", "order": ORDER}).draftOrderId == "d1"


@pytest.mark.parametrize("value", [" L-1001", "L-1001 ", "L-1001\r\n", "L-10\x0001"])
def test_order_ids_are_refused_rather_than_trimmed(value):
    assert refused_fields(GetOrderRequest, {"orderId": value}) == ["orderId"]


def test_order_ids_are_kept_as_sent():
    assert GetOrderRequest.model_validate({"orderId": "L 1001"}).orderId == "L 1001"
    assert GetOrderRequest.model_validate({"orderId": 1001}).orderId == "1001"


def test_a_stored_request_reads_back_the_same(place_order_body):
    """The local platform keeps the request as JSON and reads it again: the strict reader takes its own output."""
    request = PlaceOrderRequest.model_validate(place_order_body)
    assert PlaceOrderRequest.model_validate_json(request.model_dump_json()) == request


def test_answers_carry_request_lines_and_address_as_the_plain_shapes(place_order_body):
    """BikOrder takes the request's lines and address as they are and writes them in the answer's shape."""
    bik = PlaceOrderRequest.model_validate(place_order_body).order
    order = BikOrder(id="L-1", name="#L-1", status="ORDERED", paymentStatus="pending", items=list(bik.items),
                     subTotal=bik.subTotal, shippingCharge=bik.shippingCharge, discount=bik.discount,
                     total=bik.total, currency="INR", address=bik.address)
    answer = json.loads(order.to_json_bytes())["order"]
    assert answer["items"][0] == {**place_order_body["order"]["items"][0], "image": None}
    assert answer["address"]["city"] == "Bengaluru" and answer["subTotal"] == 998
