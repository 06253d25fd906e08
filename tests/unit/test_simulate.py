"""simulate's contract checks, one answer at a time (the whole run is in tests/integration)."""
from __future__ import annotations

import base64
import json

import pytest
import requests

from bridge.ops.cli import EXIT_USAGE, main
from bridge.ops.simulate import (
    ContractBreach,
    Credentials,
    endpoint_urls,
    new_draft_id,
    order_of,
    refusal_of,
    with_draft_id,
)

ORDER = {"id": "1001", "name": "#1001", "status": "ORDERED", "paymentStatus": "pending",
         "items": [{"variantId": 1, "quantity": 1, "price": 10}], "subTotal": 10, "shippingCharge": 0, "discount": 0,
         "total": 10, "currency": "INR"}


def answer(status: int, body, content_type: str = "application/json") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response.headers["Content-Type"] = content_type
    return response


@pytest.mark.parametrize("url, place, get", [
    ("https://h/bik", "https://h/bik/placeOrder", "https://h/bik/getOrder"),
    ("https://h/bik/", "https://h/bik/placeOrder", "https://h/bik/getOrder"),
    ("https://h/api/placeOrder", "https://h/api/placeOrder", "https://h/api/getOrder"),
])
def test_endpoint_urls_from_a_base_or_the_place_order_url(url, place, get):
    assert endpoint_urls(url) == (place, get)


def test_a_separate_get_order_url_wins():
    assert endpoint_urls("https://h/p/placeOrder", "https://other/g")[1] == "https://other/g"


def test_every_run_uses_a_fresh_draft_id(place_order_body):
    first, second = new_draft_id(), new_draft_id()
    body = with_draft_id(place_order_body, first)

    assert first != second and first.startswith("sim_")
    assert body["draftOrderId"] == body["order"]["id"] == first
    assert place_order_body["draftOrderId"] != first  # the caller's payload is left alone


@pytest.mark.parametrize("credentials, expected", [
    (Credentials("bearer", token="t1"), {"Authorization": "Bearer t1"}),
    (Credentials("api_key", token="k1", header="X-Bik-Key"), {"X-Bik-Key": "k1"}),
    (Credentials("basic", username="bik", password="pw"),
     {"Authorization": "Basic " + base64.b64encode(b"bik:pw").decode()}),
    (Credentials("none"), {}),
])
def test_credentials_become_the_headers_bik_sends(credentials, expected):
    assert credentials.headers() == expected
    assert credentials.wrong_headers() != expected or credentials.scheme == "none"


def test_a_valid_order_passes():
    assert order_of(answer(200, {"order": ORDER})).id == "1001"


@pytest.mark.parametrize("response, says", [
    (answer(500, {"error": "boom"}), "answered 500, expected 2xx"),
    (answer(200, b"<html>", "text/html"), "not application/json"),
    (answer(200, b"{oops", "application/json"), "not JSON"),
    (answer(200, ORDER), 'not {"order": {...}}'),
    (answer(200, {"order": {**ORDER, "paymentStatus": "unpaid"}}), "order.paymentStatus"),
    (answer(200, {"order": {k: v for k, v in ORDER.items() if k != "total"}}), "order.total: Field required"),
    (answer(200, {"order": {**ORDER, "id": " "}}), "order.id is empty"),
])
def test_an_order_bik_cannot_read_is_a_breach(response, says):
    with pytest.raises(ContractBreach) as caught:
        order_of(response)
    assert says in str(caught.value)


@pytest.mark.parametrize("response", [
    answer(200, {**ORDER, "email": "buyer@example.com",
                 "address": {"firstName": "Asha", "phoneNumber": "+919876543210"}}),
    answer(502, b"upstream said: buyer@example.com +919876543210 is not deliverable", "text/plain"),
])
def test_a_breach_shows_the_answer_with_customer_data_masked(response):
    with pytest.raises(ContractBreach) as caught:
        order_of(response)
    said = str(caught.value)
    assert "buyer@example.com" not in said and "9876543210" not in said and "Asha" not in said, said
    assert "b***@example.com" in said  # enough of the answer to see what went wrong


def test_a_refusal_needs_a_json_error_message():
    assert refusal_of(answer(404, {"error": "order x not found"})) == "order x not found"
    with pytest.raises(ContractBreach, match="expected a non-2xx"):
        refusal_of(answer(200, {"order": ORDER}))
    with pytest.raises(ContractBreach, match='no "error" message'):
        refusal_of(answer(404, {"message": "nope"}))
    with pytest.raises(ContractBreach, match="answered 403, expected 401"):
        refusal_of(answer(403, {"error": "forbidden"}), 401)


@pytest.mark.parametrize("argv", [["--url", "127.0.0.1:8080"], ["--url", "http://h/bik", "--get-order-url", "h/g"]])
def test_a_url_without_its_scheme_is_a_usage_error(capsys, argv):
    assert main(["simulate", *argv]) == EXIT_USAGE
    assert "needs its scheme" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["simulate", "--url", "http://127.0.0.1:9"], ["healthcheck"]])
@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "soon"])
def test_a_timeout_that_is_not_above_zero_is_a_usage_error(capsys, command, timeout):
    with pytest.raises(SystemExit) as stopped:
        main([*command, "--timeout", timeout])
    assert stopped.value.code == EXIT_USAGE
    assert "--timeout" in capsys.readouterr().err


def test_missing_token_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.delenv("BIK_BRIDGE_TOKEN", raising=False)
    assert main(["simulate", "--url", "http://127.0.0.1:9", "--auth-scheme", "bearer"]) == EXIT_USAGE
    assert "needs --token" in capsys.readouterr().err


def test_unreachable_bridge_fails_every_step_plainly(capsys):
    assert main(["simulate", "--url", "http://127.0.0.1:9", "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "cannot reach http://127.0.0.1:9/placeOrder: ConnectionError" in out
    assert "FAIL:" in out
