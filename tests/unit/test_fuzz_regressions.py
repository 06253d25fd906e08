"""Inputs the fuzzers (tests/fuzz) once turned into a 500 or a wrong status, each pinned here."""
from __future__ import annotations

import io
import json

import pytest
from pydantic import ValidationError

from bridge.bootstrap import build_app, parse_config
from bridge.core.models import BikOrderItem, BikOrderItemIn

TOKEN = "bik-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path):
    config = parse_config({
        "auth": {"scheme": "bearer", "token": TOKEN},
        "idempotency": {"sqlite_path": str(tmp_path / "idempotency.db"), "wait_seconds": 0},
        "local": {"db_path": str(tmp_path / "local.db")},
        "server": {"max_body_bytes": 4096},
    }, {})
    app = build_app(config)
    yield app.test_client()
    app.extensions["bik_bridge"].store.close()


def post(client, endpoint, body: str):
    return client.post(f"/{endpoint}", data=body, content_type="application/json", headers=AUTH)


def assert_json_error(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body


def chunked(client, stream):
    """A POST whose body arrives as the WSGI server hands over a chunked one: no Content-Length."""
    return client.post("/getOrder", headers={**AUTH, "Transfer-Encoding": "chunked"}, content_type="application/json",
                       environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True})


@pytest.mark.parametrize("order_id", ["L-፩", "L-²", "L-𝟙𝟘𝟘𝟙"])
def test_get_order_with_digits_int_cannot_read_is_404(client, order_id):
    """Was 500: the local store's id check took any Unicode digit, then int() refused it."""
    assert_json_error(post(client, "getOrder", json.dumps({"orderId": order_id})), 404)


def test_get_order_with_digits_of_another_script_does_not_alias_an_order(client, place_order_body):
    """"L-١٠٠١" (Arabic-Indic digits) once read as L-1001."""
    placed = post(client, "placeOrder", json.dumps(place_order_body)).get_json()["order"]
    assert placed["id"] == "L-1001"
    assert_json_error(post(client, "getOrder", json.dumps({"orderId": "L-١٠٠١"})), 404)


@pytest.mark.parametrize("field", ["variantId", "productId"])
def test_lone_surrogate_in_an_item_id_is_400(client, place_order_body, field):
    """Was 500: a JSON escape like "\\ud83d" passed the id check and broke the UTF-8 encoder further on."""
    place_order_body["order"]["items"][0][field] = "\ud83d"
    raw = json.dumps(place_order_body)
    assert '"\\ud83d"' in raw
    body = assert_json_error(post(client, "placeOrder", raw), 400)
    assert [d["field"] for d in body["details"]] == [f"order.items.0.{field}"]


@pytest.mark.parametrize("model", [BikOrderItem, BikOrderItemIn])
@pytest.mark.parametrize("value", ["\ud83d", "a\x00b", "\x1b[31m"])
def test_item_ids_refuse_unprintable_text(model, value):
    with pytest.raises(ValidationError):
        model.model_validate({"variantId": value, "quantity": 1, "price": 1})


def test_item_ids_from_bik_are_taken_as_sent():
    """Bik's "\t SKU-12 \n" is not SKU-12: refused, not trimmed."""
    with pytest.raises(ValidationError):
        BikOrderItemIn.model_validate({"variantId": "\t SKU-12 \n", "quantity": 1, "price": 1})


class UnreadableBody(io.RawIOBase):
    """A body the server cannot decode, as gunicorn's reader fails on a malformed chunk size."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise ValueError("Invalid chunk size")


def test_body_the_server_cannot_read_is_400(client):
    """Was 500: gunicorn raises its own parse error (not OSError) from inside request.get_data()."""
    body = assert_json_error(chunked(client, UnreadableBody()), 400)
    assert body["error"] == "request body could not be read"


def test_chunked_body_over_the_limit_is_413(client):
    """Was read cut at max_body_bytes without an error: here the first 4096 bytes are a valid getOrder."""
    stream = io.BytesIO(json.dumps({"orderId": "L-1"}).encode() + b" " * 10_000)
    assert_json_error(chunked(client, stream), 413)


def test_chunked_body_under_the_limit_is_read(client):
    assert_json_error(chunked(client, io.BytesIO(json.dumps({"orderId": "L-1"}).encode())), 404)
