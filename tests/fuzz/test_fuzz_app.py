"""Property-based fuzzing of placeOrder and getOrder: never a 500, every error JSON, every 2xx a BikOrder."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from bridge.core.models import BikOrder
from bridge.http.openapi import build_openapi

from . import strategies as s
from .conftest import AUTH, FUZZ


@pytest.fixture(scope="module")
def order_response_validator(fuzz_config):
    """The 200 body schema of the bridge's own OpenAPI document."""
    document = build_openapi(fuzz_config)
    return Draft202012Validator({"$ref": "#/components/schemas/OrderResponse", **document})


@pytest.fixture(scope="module")
def check(order_response_validator):
    def check(response):
        """The contract every answer keeps, whatever was sent."""
        assert response.status_code < 500, response.get_data(as_text=True)
        assert response.mimetype == "application/json", response.get_data()[:200]
        body = json.loads(response.get_data())
        if response.status_code >= 400:
            assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
        else:
            assert set(body) == {"order"}, body
            order_response_validator.validate(body)
            BikOrder.model_validate(body["order"])
        return body

    return check


# What an HTTP header can carry at all: latin-1, no line breaks.
HEADER_CHARS = st.characters(max_codepoint=0xFF, exclude_characters="\r\n")


def post(client, endpoint, body, headers=AUTH):
    return client.post(f"/{endpoint}", data=json.dumps(body), content_type="application/json", headers=headers)


@FUZZ
@given(body=s.place_orders)
def test_valid_ish_place_orders_yield_an_order_that_get_order_returns(app_client, check, body):
    """A body built from the model's constraints is placed (or refused with JSON), and getOrder finds it."""
    placed = check(post(app_client, "placeOrder", body))
    if "order" in placed:
        again = check(post(app_client, "getOrder", {"orderId": placed["order"]["id"]}))
        assert again["order"]["id"] == placed["order"]["id"]


@FUZZ
@given(body=s.mutated(s.place_orders))
def test_place_order_with_any_field_replaced_or_removed(app_client, check, body):
    """Wrong types, huge or negative numbers, unicode or nothing at every field: a 4xx JSON error, never a 500."""
    check(post(app_client, "placeOrder", body))


@FUZZ
@given(body=s.odd_text_at_a_leaf(s.place_orders))
def test_place_order_with_odd_text_in_any_field(app_client, check, body):
    """Lone surrogates, control characters and other scripts in any one field."""
    check(post(app_client, "placeOrder", body))


@FUZZ
@given(body=s.json_values, endpoint=st.sampled_from(["placeOrder", "getOrder"]))
def test_arbitrary_json_documents(app_client, check, body, endpoint):
    """Any JSON document at all, object or not."""
    check(post(app_client, endpoint, body))


@FUZZ
@given(body=s.get_orders)
def test_get_order_with_any_order_id(app_client, check, body):
    """Ids that look like ours in other scripts, huge numbers, wrong types: 400 or 404, never a 500."""
    check(post(app_client, "getOrder", body))


@FUZZ
@given(raw=s.raw_bodies(), content_type=s.content_types, endpoint=st.sampled_from(["placeOrder", "getOrder"]))
def test_raw_bytes_with_odd_content_types(app_client, check, raw, content_type, endpoint):
    """Invalid UTF-8, truncated JSON, NaN, deep nesting, under any Content-Type."""
    check(app_client.post(f"/{endpoint}", data=raw, headers={**AUTH, "Content-Type": content_type}))


@FUZZ
@given(authorization=st.text(HEADER_CHARS, max_size=60), request_id=st.text(HEADER_CHARS, max_size=40),
       endpoint=st.sampled_from(["placeOrder", "getOrder"]))
def test_odd_credentials_and_request_ids(app_client, check, authorization, request_id, endpoint):
    """Any Authorization header is a 401 JSON (or let through when it is the token), any X-Request-Id is safe."""
    headers = {"Authorization": authorization, "X-Request-Id": request_id}
    response = post(app_client, endpoint, {"orderId": "L-1"}, headers=headers)
    check(response)
    assert response.status_code in (401, 404)
