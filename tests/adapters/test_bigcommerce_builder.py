"""The POST /v2/orders request built from Bik's placeOrder, checked against the official spec."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from adapters.bigcommerce.builder import BigCommerceRequests
from bridge.core.errors import OrderRejected
from bridge.core.models import PlaceOrderRequest
from bridge.upstream.outbound import MASK
from tests.adapters.conftest import API_BASE, STORE_HASH, TOKEN, bc_settings
from tests.spec import bigcommerce_validator, schema_properties

ADDRESS_FIELDS = {"first_name", "last_name", "street_1", "street_2", "city", "state", "zip", "country",
                  "country_iso2", "phone", "email"}


def spec_errors(body: dict) -> list[str]:
    """Every way `body` breaks the spec's `order_Post` schema."""
    validator = bigcommerce_validator("order_Post")
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def assert_valid_create(body: dict) -> None:
    """Valid `order_Post`, with the operation's required fields and no field the spec does not know."""
    assert spec_errors(body) == []
    # The operation requires a billing address and, in legacy mode, products (never consignments too).
    assert body["billing_address"] and body["products"]
    assert "consignments" not in body
    assert set(body) <= schema_properties("order_Post"), set(body) - schema_properties("order_Post")
    assert set(body["billing_address"]) <= schema_properties("billingAddress_Base")
    for shipping in body["shipping_addresses"]:
        assert set(shipping) <= schema_properties("shippingAddress_Base") | {"shipping_method"}
    catalog = schema_properties("orderCatalogProduct_Post")
    for line in body["products"]:
        assert set(line) <= catalog
    # The body goes over the wire as JSON.
    assert json.loads(json.dumps(body)) == body


@pytest.fixture
def builder(settings) -> BigCommerceRequests:
    return BigCommerceRequests(settings)


VARIANTS = {
    "example": {},
    "paid": {"paymentPending": False},
    "no address2": {"drop": ("address2",)},
    "with address2": {"address": {"address2": "Near the park"}},
    "no state": {"drop": ("state",)},
    "null state": {"address": {"state": None}},
    "discount 0": {"order": {"discount": 0, "total": 1047}},
    "no discount key": {"order": {"discount": 0}},
    "tags list": {"order": {"tags": ["vip", "whatsapp"]}},
    "no tags": {"order": {"tags": None}},
    "several items": {"order": {"items": [
        {"productId": 77, "variantId": 93, "name": "Cream", "quantity": 2, "price": 499},
        {"productId": "78", "variantId": "94", "name": "Serum", "quantity": 1, "price": 250.5},
        {"productId": 79, "variantId": 0, "name": "Soap", "quantity": 10, "price": 12.25},
    ], "subTotal": 1370.5, "total": 1319.5}},
    "decimal prices": {"order": {"items": [
        {"productId": 77, "variantId": 93, "name": "Cream", "quantity": 3, "price": 499.99}],
        "subTotal": 1499.97, "shippingCharge": 49.5, "discount": 10.01, "total": 1539.46}},
    "free shipping": {"order": {"shippingCharge": 0, "total": 898}},
    "no phone on the order": {"order": {"phoneNumber": None}},
    "no email": {"order": {"email": None}},
    "lower-case country code": {"address": {"countryCode": "in"}},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_create_body_validates_against_order_post(builder, make_request, variant):
    """Every shape Bik may send builds a body the official spec accepts."""
    body = builder.create_body(make_request(**VARIANTS[variant]))
    assert_valid_create(body)


def test_the_spec_validator_catches_a_wrong_type(builder, place_request):
    """The validator is real: a quantity sent as a string fails it."""
    body = builder.create_body(place_request)
    body["products"][0]["quantity"] = "2"
    assert spec_errors(body)


def test_lines_carry_catalog_ids_and_bik_price_both_ways(builder, make_request):
    """product_id/variant_id/quantity as given; Bik's unit price as both inc and ex tax."""
    body = builder.create_body(make_request(**VARIANTS["several items"]))
    assert body["products"] == [
        {"product_id": 77, "variant_id": 93, "quantity": 2, "price_inc_tax": 499, "price_ex_tax": 499},
        {"product_id": 78, "variant_id": 94, "quantity": 1, "price_inc_tax": 250.5, "price_ex_tax": 250.5},
        {"product_id": 79, "variant_id": 0, "quantity": 10, "price_inc_tax": 12.25, "price_ex_tax": 12.25},
    ]


def test_example_line_keeps_bik_ids(builder, place_request):
    """The sample's large numeric ids go through unchanged as integers."""
    (line,) = builder.create_body(place_request)["products"]
    assert line == {"product_id": 6862852391049, "variant_id": 40946134352009, "quantity": 2,
                    "price_inc_tax": 499, "price_ex_tax": 499}
    assert isinstance(line["product_id"], int) and isinstance(line["variant_id"], int)


def test_decimal_prices_are_exact(builder, make_request):
    """499.99 stays 499.99 (no float drift) and money strings are exact."""
    body = builder.create_body(make_request(**VARIANTS["decimal prices"]))
    line = body["products"][0]
    assert line["price_inc_tax"] == line["price_ex_tax"] == 499.99
    assert Decimal(str(line["price_inc_tax"])) == Decimal("499.99")
    assert body["shipping_cost_inc_tax"] == body["shipping_cost_ex_tax"] == "49.5"
    assert body["discount_amount"] == "10.01"


def test_shipping_and_discount(builder, place_request, make_request):
    """shippingCharge fills the inc/ex pair; discount becomes discount_amount (0 stays "0")."""
    body = builder.create_body(place_request)
    assert body["shipping_cost_inc_tax"] == body["shipping_cost_ex_tax"] == "49"
    assert body["discount_amount"] == "100"
    free = builder.create_body(make_request(**VARIANTS["discount 0"]))
    assert free["discount_amount"] == "0"
    assert Decimal(free["discount_amount"]) == 0


def test_addresses_carry_contact_and_country(builder, place_request):
    """Billing and exactly one shipping address, both with email, phone and ISO country."""
    body = builder.create_body(place_request)
    billing = body["billing_address"]
    assert billing == {
        "first_name": "Bik", "last_name": "Tester", "street_1": "Bik Office, HSR Layout, Sector 6",
        "street_2": "", "city": "Bengaluru", "state": "Karnataka", "zip": "560102", "country": "India",
        "country_iso2": "IN", "phone": "+919876543210", "email": "buyer@example.com",
    }
    assert len(body["shipping_addresses"]) == 1
    shipping = body["shipping_addresses"][0]
    assert shipping == {**billing, "shipping_method": "Bik"}


@pytest.mark.parametrize("variant", ["no state", "null state"])
def test_state_is_never_null(builder, make_request, variant):
    """BigCommerce refuses a null state; a missing one is sent as an empty string."""
    body = builder.create_body(make_request(**VARIANTS[variant]))
    for address in [body["billing_address"], *body["shipping_addresses"]]:
        assert address["state"] == ""
        assert all(value is not None for value in address.values())
        assert set(address) - {"shipping_method"} == ADDRESS_FIELDS


def test_country_code_is_upper_case(builder, make_request):
    assert builder.create_body(make_request(**VARIANTS["lower-case country code"]))[
        "billing_address"]["country_iso2"] == "IN"


def test_phone_falls_back_to_the_address_phone(builder, make_request):
    """Without an order-level phone, the address phone is used."""
    body = builder.create_body(make_request(order={"phoneNumber": None}, address={"phoneNumber": "+911111111111"}))
    assert body["billing_address"]["phone"] == "+911111111111"


def test_email_is_lower_cased(builder, make_request):
    body = builder.create_body(make_request(order={"email": " Buyer@Example.COM "}))
    assert body["billing_address"]["email"] == "buyer@example.com"


def test_guest_customer_and_external_reference(builder, place_request):
    """Guest order, tagged as Bik's, with the draft id as the external order id."""
    body = builder.create_body(place_request)
    assert body["customer_id"] == 0
    assert body["external_source"] == "Bik"
    assert body["external_order_id"] == place_request.draftOrderId == "nb_1715200000_a1b2c3d4"


@pytest.mark.parametrize(("pending", "status_id", "method"), [(True, 7, "Cash on Delivery"), (False, 11, "Bik")])
def test_status_and_payment_method_follow_payment_pending(builder, make_request, pending, status_id, method):
    """Unpaid → 7 Awaiting Payment; paid → 11 Awaiting Fulfillment."""
    body = builder.create_body(make_request(paymentPending=pending))
    assert body["status_id"] == status_id
    assert body["payment_method"] == method


def test_configured_status_ids_and_methods_are_used(make_request):
    """Every store-specific choice comes from the config."""
    settings = bc_settings(status_id_pending=1, status_id_paid=10, payment_method_pending="COD",
                           payment_method_paid="Prepaid (UPI)", external_source="bik-app-42", customer_id=5,
                           shipping_method="Express")
    builder = BigCommerceRequests(settings)
    unpaid = builder.create_body(make_request())
    paid = builder.create_body(make_request(paymentPending=False))
    assert (unpaid["status_id"], unpaid["payment_method"]) == (1, "COD")
    assert (paid["status_id"], paid["payment_method"]) == (10, "Prepaid (UPI)")
    assert paid["external_source"] == "bik-app-42"
    assert paid["customer_id"] == 5
    assert paid["shipping_addresses"][0]["shipping_method"] == "Express"


def test_staff_notes_name_the_draft_and_the_tags(builder, make_request):
    """Staff notes carry the draft id and Bik's tags, whether sent as a string or a list."""
    from_string = builder.create_body(make_request(order={"tags": "ordered_via_bik, vip"}))["staff_notes"]
    from_list = builder.create_body(make_request(**VARIANTS["tags list"]))["staff_notes"]
    untagged = builder.create_body(make_request(**VARIANTS["no tags"]))["staff_notes"]
    assert "nb_1715200000_a1b2c3d4" in from_string
    assert "ordered_via_bik" in from_string and "vip" in from_string
    assert "vip" in from_list and "whatsapp" in from_list
    assert "nb_1715200000_a1b2c3d4" in untagged and "tags" not in untagged


def test_create_request_url_method_and_headers(builder, place_request):
    """POST {api_base_url}/stores/{hash}/v2/orders with the token and JSON headers."""
    request = builder.create(place_request)
    assert request.method == "POST"
    assert request.url == f"{API_BASE}/stores/{STORE_HASH}/v2/orders"
    assert request.headers == {"X-Auth-Token": TOKEN, "Accept": "application/json",
                               "Content-Type": "application/json"}
    assert request.json == builder.create_body(place_request)


def test_trailing_slash_in_api_base_url_is_ignored(place_request):
    request = BigCommerceRequests(bc_settings(api_base_url=API_BASE + "/")).create(place_request)
    assert request.url == f"{API_BASE}/stores/{STORE_HASH}/v2/orders"


def test_masked_hides_the_token(builder, place_request):
    """What dry-run prints never contains the access token."""
    shown = builder.create(place_request).masked()
    assert shown["headers"]["X-Auth-Token"] == MASK
    assert TOKEN not in json.dumps(shown)
    assert shown["json"]["external_order_id"] == place_request.draftOrderId


def test_read_requests(builder):
    """The reads use GET with no Content-Type, on the documented paths."""
    base = f"{API_BASE}/stores/{STORE_HASH}/v2/orders"
    expected = {
        "get_order": (builder.get_order(118), f"{base}/118",
                      {"include": "consignments.line_items", "consignment_structure": "object"}),
        "products": (builder.products(118), f"{base}/118/products", {"limit": "250"}),
        "shipments": (builder.shipments(118), f"{base}/118/shipments", {"limit": "250"}),
        "shipping_addresses": (builder.shipping_addresses(118), f"{base}/118/shipping_addresses", None),
        "list_orders": (builder.find_by_draft("d-1"), base, {"external_order_id": "d-1"}),
    }
    for operation, (request, url, params) in expected.items():
        assert (request.method, request.url, request.operation, request.params) == ("GET", url, operation, params)
        assert request.headers == {"X-Auth-Token": TOKEN, "Accept": "application/json"}
        assert TOKEN not in json.dumps(request.masked())


@pytest.mark.parametrize("bad", ["gid://shopify/ProductVariant/1", "12a", "-5", "1.5", "\u00b2", "\u0663"])
def test_a_non_numeric_variant_id_is_rejected_naming_the_item(builder, make_request, bad):
    """A variant id BigCommerce cannot take is refused before anything is sent."""
    request = make_request(order={"items": [
        {"productId": 77, "variantId": 93, "quantity": 1, "price": 10},
        {"productId": 78, "variantId": bad, "quantity": 1, "price": 10},
    ]})
    with pytest.raises(OrderRejected) as raised:
        builder.create_body(request)
    assert "order.items.1.variantId" in raised.value.message
    assert raised.value.status == 422


def test_a_missing_product_id_is_rejected(builder, make_request):
    request = make_request(order={"items": [{"variantId": 93, "quantity": 1, "price": 10}]})
    with pytest.raises(OrderRejected) as raised:
        builder.create_body(request)
    assert "order.items.0.productId" in raised.value.message


@pytest.mark.parametrize("drop_key", [True, False])
def test_a_missing_address_is_rejected(builder, make_request, example_payload, drop_key):
    """No address → no billing address → refused before sending."""
    if drop_key:
        del example_payload["order"]["address"]
        request = PlaceOrderRequest.model_validate(example_payload)
    else:
        request = make_request(order={"address": None})
    with pytest.raises(OrderRejected) as raised:
        builder.create_body(request)
    assert "address" in raised.value.message


@pytest.mark.parametrize("zip_code", ["", " ", "5"])
def test_a_postcode_shorter_than_two_characters_is_rejected(builder, make_request, zip_code):
    """The spec requires a zip of two or more characters."""
    with pytest.raises(OrderRejected) as raised:
        builder.create_body(make_request(address={"zip": zip_code}))
    assert "zip" in raised.value.message


def test_build_create_is_pure(make_adapter, place_request, rsps):
    """The adapter's dry-run view is exactly the one create request, and nothing is sent."""
    adapter = make_adapter()
    (request,) = adapter.build_create(place_request)
    assert request.method == "POST" and request.json == adapter.requests.create_body(place_request)
    assert len(rsps.calls) == 0
