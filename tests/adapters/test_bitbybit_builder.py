"""The bitbybit request builder: what POST /orders carries, pure, before anything is sent."""
from __future__ import annotations

import pytest

from adapters.bitbybit.builder import PAID_TAG, BitbybitRequests, e164
from adapters.bitbybit.variant_map import VariantMap
from bridge.core.errors import OrderRejected
from bridge.upstream.outbound import MASK
from tests.adapters.bitbybit_support import API_BASE, DRAFT, KEY, MARKER, bbb_settings


@pytest.fixture
def builder() -> BitbybitRequests:
    return BitbybitRequests(bbb_settings())


def test_create_body_has_exactly_the_documented_fields(builder, place_request):
    body = builder.create_body(place_request)

    assert set(body) == {"lineItems", "shippingAddress", "customer", "notes", "tags"}
    assert body["lineItems"] == [{"productVariantId": "40946134352009", "quantity": 2}]
    assert body["shippingAddress"] == {
        "firstName": "Bik", "lastName": "Tester", "phone": "+919876543210",
        "address1": "Bik Office, HSR Layout, Sector 6", "city": "Bengaluru", "province": "Karnataka",
        "zip": "560102", "country": "IN",
    }
    assert body["customer"] == {"firstName": "Bik", "lastName": "Tester", "phone": "+919876543210",
                                "email": "buyer@example.com"}


def test_the_draft_id_rides_as_a_marker_tag_after_biks_own_tags(builder, make_request):
    body = builder.create_body(make_request(order={"tags": "vip, ordered_via_bik,vip"}))

    assert body["tags"] == ["vip", "ordered_via_bik", MARKER]


def test_the_marker_prefix_is_configurable(make_request):
    body = BitbybitRequests(bbb_settings(marker_prefix="bikdraft-")).create_body(make_request())

    assert f"bikdraft-{DRAFT}" in body["tags"]


def test_notes_carry_the_draft_id_payment_and_biks_figures(builder, make_request):
    notes = builder.create_body(make_request(order={"currency": "INR", "shippingCharge": 49.5}))["notes"]

    assert f"draftOrderId: {DRAFT}" in notes
    assert "Payment: pending (collect on delivery)" in notes
    assert "subtotal 998, shipping 49.5, discount 100, total 947 INR" in notes


def test_notes_never_carry_customer_data(builder, place_request):
    notes = builder.create_body(place_request)["notes"]

    for personal in ("+919876543210", "buyer@example.com", "Tester", "HSR Layout", "560102"):
        assert personal not in notes


def test_a_paid_order_says_so_in_notes_and_tags(builder, make_request):
    body = builder.create_body(make_request(paymentPending=False))

    assert "Payment: collected by Bik" in body["notes"]
    assert body["tags"][-1] == PAID_TAG


def test_variant_ids_default_to_biks_id_as_text(builder, make_request):
    body = builder.create_body(make_request(order={"items": [
        {"variantId": 7, "quantity": 1, "price": 10}, {"variantId": "gid-v-9", "quantity": 3, "price": 5}]}))

    assert body["lineItems"] == [{"productVariantId": "7", "quantity": 1},
                                 {"productVariantId": "gid-v-9", "quantity": 3}]


def test_a_variant_map_translates_ids(make_request):
    builder = BitbybitRequests(bbb_settings(), VariantMap({"40946134352009": "pv_abc"}, "map.csv"))

    assert builder.create_body(make_request())["lineItems"] == [{"productVariantId": "pv_abc", "quantity": 2}]


def test_an_unmapped_variant_is_refused_naming_it(make_request):
    builder = BitbybitRequests(bbb_settings(), VariantMap({"1": "pv_1"}, "map.csv"))
    request = make_request(order={"items": [{"variantId": 1, "quantity": 1, "price": 5},
                                            {"variantId": 40946134352009, "quantity": 1, "price": 5}]})

    with pytest.raises(OrderRejected) as refused:
        builder.create(request)

    assert refused.value.status == 422
    assert "order.items.1.variantId: 40946134352009" in refused.value.message
    assert "map.csv" in refused.value.message


def test_an_order_without_address_is_refused(builder, make_request):
    with pytest.raises(OrderRejected, match="shipping address"):
        builder.create_body(make_request(order={"address": None}))


@pytest.mark.parametrize(("address", "expected"), [
    ({"address2": "Flat 4"}, {"address2": "Flat 4"}),
    ({"address2": ""}, {}),
    ({"state": None}, {"province": ""}),
    ({"countryCode": "id"}, {"country": "ID"}),
    ({"countryCode": None}, {"country": "India"}),
    ({"zip": " 560102 "}, {"zip": "560102"}),
])
def test_shipping_address_fields(builder, make_request, address, expected):
    shipping = builder.create_body(make_request(address=address))["shippingAddress"]

    assert {k: shipping.get(k) for k in expected} == expected
    if not expected:
        assert "address2" not in shipping


def test_customer_without_phone_or_with_a_malformed_email(builder, make_request):
    request = make_request(order={"phoneNumber": None}, address={"phoneNumber": None})
    # The request model refuses such an email with a 400; the builder still keeps it from costing the order.
    request = request.model_copy(update={"order": request.order.model_copy(update={"email": "not-an-email"})})
    body = builder.create_body(request)

    assert body["customer"] == {"firstName": "Bik", "lastName": "Tester"}
    assert body["shippingAddress"]["phone"] == ""


def test_the_order_phone_wins_over_the_address_phone(builder, make_request):
    body = builder.create_body(make_request(order={"phoneNumber": "98000 11111"}))

    assert body["customer"]["phone"] == body["shippingAddress"]["phone"] == "+919800011111"


@pytest.mark.parametrize(("raw", "country", "expected"), [
    ("+91 98765 43210", "91", "+919876543210"),
    ("+91-98765-43210", "91", "+919876543210"),
    ("9876543210", "91", "+919876543210"),
    ("919876543210", "91", "+919876543210"),
    ("09876543210", "91", "+919876543210"),
    ("0091 98765 43210", "91", "+919876543210"),
    ("(987) 654-3210", "1", "+19876543210"),
    ("081234567890", "62", "+6281234567890"),
    ("6281234567890", "62", "+6281234567890"),
    ("81234567890", "62", "+6281234567890"),
    ("9198765432", "91", "+919198765432"),  # ten digits starting 91: a national number, not a country code
    ("ext. 12", "91", "ext. 12"),  # not a phone number: passed on, not guessed at
    ("+1234", "91", "+1234"),
    ("", "91", None),
    (None, "91", None),
])
def test_phone_numbers_become_e164(raw, country, expected):
    assert e164(raw, country) == expected


def test_the_default_country_code_is_configurable(make_request):
    builder = BitbybitRequests(bbb_settings(default_country_code="62"))

    body = builder.create_body(make_request(order={"phoneNumber": "0812-3456-7890"}))

    assert body["customer"]["phone"] == "+6281234567890"


def test_requests_carry_the_key_in_the_configured_header_and_mask_it(make_request):
    builder = BitbybitRequests(bbb_settings(auth_header="x-bitbybit-key",
                                            api_base_url="https://api.bitbybit.studio/customer/api/open/v1/"))
    call = builder.create(make_request())

    assert call.method == "POST" and call.url == "https://api.bitbybit.studio/customer/api/open/v1/orders"
    assert call.headers["x-bitbybit-key"] == KEY
    assert call.headers["Content-Type"] == "application/json"
    shown = call.masked()
    assert shown["headers"]["x-bitbybit-key"] == MASK
    assert KEY not in str(shown)


def test_reads_quote_the_id_and_page_with_the_largest_limit(builder):
    assert builder.get_order("ord/../x").url == f"{API_BASE}/orders/ord%2F..%2Fx"
    listing = builder.list_orders(3, "Bik Tester")
    assert listing.method == "GET" and "Content-Type" not in listing.headers
    assert listing.params == {"page": "3", "limit": "100", "search": "Bik Tester"}
    assert builder.list_orders(1).params == {"page": "1", "limit": "100"}


def test_dry_run_prints_the_create_with_the_key_masked(tmp_path, monkeypatch, capsys, project_root):
    import json

    from bridge.config import CONFIG_ENV
    from bridge.ops.cli import EXIT_OK, main

    monkeypatch.delenv(CONFIG_ENV, raising=False)
    config = tmp_path / "bridge.yaml"
    config.write_text(f"platform: local\nbitbybit:\n  api_key: {KEY}\n  api_base_url: {API_BASE}\n")

    code = main(["dry-run", str(project_root / "examples" / "place-order.json"), "--config", str(config),
                 "--platform", "bitbybit"])

    out = capsys.readouterr().out
    assert code == EXIT_OK and KEY not in out
    [shown] = json.loads(out)["requests"]
    assert (shown["method"], shown["url"], shown["headers"]["x-api-key"]) == ("POST", f"{API_BASE}/orders", MASK)
    assert shown["json"]["tags"][-1] == MARKER
