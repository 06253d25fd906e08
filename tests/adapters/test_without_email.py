"""What each platform is sent for a customer without an email, as many WhatsApp customers are."""
from __future__ import annotations

import pytest

from adapters.bigcommerce.builder import BigCommerceRequests
from adapters.bitbybit.builder import BitbybitRequests
from adapters.local.adapter import LocalAdapter
from bridge.core.deadline import Deadline
from bridge.core.models import PlaceOrderRequest
from bridge.core.presentation import Presentation
from tests.adapters.bitbybit_support import bbb_settings
from tests.adapters.conftest import bc_settings
from tests.spec import bigcommerce_validator

NO_EMAIL = ["absent", "empty", "null"]


def without_email(payload: dict, how: str) -> PlaceOrderRequest:
    """Bik's sample request with its email left out, sent empty, or sent as null."""
    order = payload["order"]
    if how == "absent":
        del order["email"]
    else:
        order["email"] = "" if how == "empty" else None
    return PlaceOrderRequest.model_validate(payload)


@pytest.mark.parametrize("how", NO_EMAIL)
def test_bigcommerce_sends_an_empty_email_on_both_addresses(example_payload, how):
    """BigCommerce keeps the email only on addresses: both carry "", and the body still meets the official spec."""
    call = BigCommerceRequests(bc_settings()).create(without_email(example_payload, how))
    body = call.json
    assert body["billing_address"]["email"] == ""
    assert [address["email"] for address in body["shipping_addresses"]] == [""]
    assert body["billing_address"]["phone"] == "+919876543210"
    assert list(bigcommerce_validator("order_Post").iter_errors(body)) == []


@pytest.mark.parametrize("how", NO_EMAIL)
def test_bitbybit_finds_the_customer_by_phone_alone(example_payload, how):
    """bitbybit's customer is matched by phone or email: without an email, the key is left out, the phone stays."""
    body = BitbybitRequests(bbb_settings()).create(without_email(example_payload, how)).json
    assert body["customer"] == {"firstName": "Bik", "lastName": "Tester", "phone": "+919876543210"}


@pytest.mark.parametrize("how", NO_EMAIL)
def test_local_keeps_the_order_without_an_email(tmp_path, example_payload, how):
    """The local store saves the order and answers with the email as Bik sent it: empty or null."""
    adapter = LocalAdapter(str(tmp_path / "local.db"), Presentation())
    request = without_email(example_payload, how)
    assert adapter.build_create(request)[0].json["order"]["email"] == request.order.email
    placed = adapter.place(request, Deadline(5))
    assert placed.id == "L-1001"
    assert placed.email == request.order.email and not placed.email
    assert adapter.get("L-1001", Deadline(5)).email == request.order.email
