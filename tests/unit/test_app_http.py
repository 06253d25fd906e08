"""The HTTP surface: Flask test client, the real local platform and the real SQLite store."""
from __future__ import annotations

import base64
import copy
import json
import logging
import os
import uuid
from collections import Counter

import pytest

from adapters.stores.sqlite_store import SqliteIdempotencyStore
from bridge.bootstrap import build_service, parse_config
from bridge.core.errors import (
    InFlight,
    LookupInconclusive,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    StoreUnavailable,
    UpstreamAmbiguous,
    UpstreamAuthError,
    UpstreamFailed,
    UpstreamMisconfigured,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from bridge.core.models import PlaceOrderRequest
from bridge.core.ports import RecordState
from bridge.core.service import OrderService, ServiceSettings, body_digest
from bridge.http.app import create_app
from bridge.ops import context

from .fakes import DownStore, FakeAdapter, FakeClock

TOKEN = "bik-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DRAFT = "nb_1715200000_a1b2c3d4"
REDIS_URL = os.environ.get("BIK_BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def make_config(tmp_path, **sections):
    raw = {
        "auth": {"scheme": "bearer", "token": TOKEN},
        "idempotency": {"sqlite_path": str(tmp_path / "idempotency.db"), "wait_seconds": 0},
        "local": {"db_path": str(tmp_path / "local.db")},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(raw, {})


def make_client(config, service=None):
    service = service or build_service(config)
    return create_app(config, service=service).test_client(), service


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


@pytest.fixture
def client(config):
    client, service = make_client(config)
    yield client
    service.store.close()


def post(client, path, body, headers=AUTH, **kwargs):
    if isinstance(body, (dict, list)):
        return client.post(path, json=body, headers=headers, **kwargs)
    return client.post(path, data=body, headers=headers, content_type=kwargs.pop("content_type", "application/json"),
                       **kwargs)


def assert_json_error(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
    return body


# placeOrder and getOrder ------------------------------------------------------------------


def test_place_order_returns_the_bik_shape(client, place_order_body):
    """placeOrder answers {"order": BikOrder} with our id, Bik's totals, INR and the draft link."""
    response = post(client, "/placeOrder", place_order_body)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    order = response.get_json()["order"]
    assert order["id"] == "L-1001"
    assert order["name"] == "#L-1001"
    assert order["status"] == "ORDERED"
    assert order["paymentStatus"] == "pending"
    assert order["total"] == 947 and order["subTotal"] == 998
    assert order["shippingCharge"] == 49 and order["discount"] == 100
    assert order["currency"] == "INR"
    assert "invoiceUrl" in order and order["invoiceUrl"] is None
    assert order["partnersData"]["id"] == DRAFT
    assert order["items"][0]["variantId"] == 40946134352009 and order["items"][0]["quantity"] == 2
    assert order["email"] == "buyer@example.com"


def test_same_draft_again_is_byte_identical(client, place_order_body):
    """A retried placeOrder gets the very same bytes and no second order."""
    first = post(client, "/placeOrder", place_order_body)
    second = post(client, "/placeOrder", place_order_body)
    assert second.status_code == 200
    assert second.get_data() == first.get_data()
    other = post(client, "/placeOrder", {**place_order_body, "draftOrderId": "nb_other"})
    assert other.get_json()["order"]["id"] == "L-1002"


def test_the_answer_leaves_before_the_placed_order_is_recorded(client, place_order_body):
    """The order is answered first; its record is written when the server closes the answer."""
    service = client.application.extensions["bik_bridge"]
    answer = post(client, "/placeOrder", place_order_body, buffered=False)  # as sent: not closed yet

    assert answer.status_code == 200 and answer.get_json()["order"]["id"] == "L-1001"
    assert service.store.get(DRAFT).state is RecordState.IN_FLIGHT
    answer.close()  # what a WSGI server does once the answer has left
    record = service.store.get(DRAFT)
    assert record.state is RecordState.DONE and record.response == answer.get_data()


def test_a_found_order_refused_for_its_changed_payload_is_still_recorded(tmp_path, place_order_body, caplog):
    """Whatever the answer, the record is written after it: a takeover finds the crashed owner's order, refuses
    the changed payload under `on_mismatch: reject` (422), and the record holds the order it found."""
    clock = FakeClock()
    store = SqliteIdempotencyStore(str(tmp_path / "records.db"), namespace="test", ttl_seconds=3600, clock=clock)
    adapter = FakeAdapter()
    service = OrderService(adapter, store, ServiceSettings(lease_seconds=25, upstream_budget_seconds=20,
                                                           on_mismatch="reject"))
    first = PlaceOrderRequest.model_validate(place_order_body)
    store.claim(DRAFT, first.fingerprint(), 1)  # its owner sent the create, which landed, and died
    adapter.create_behind_the_bridge(first)
    clock.advance(1.5)
    changed = copy.deepcopy(place_order_body)
    changed["order"]["items"][0]["quantity"] = 5
    client = create_app(make_config(tmp_path, idempotency={"on_mismatch": "reject"}), service=service).test_client()

    with caplog.at_level(logging.INFO, logger="bik_bridge"):
        answer = post(client, "/placeOrder", changed)

    assert_json_error(answer, 422)
    record = store.get(DRAFT)
    assert (record.state, record.order_id, adapter.creates) == (RecordState.DONE, "F-1", 1)
    assert [r.status for r in caplog.records if r.getMessage() == "request"] == [422]
    store.close()


def test_work_left_for_after_the_answer_that_fails_still_leaves_the_request_line(config, caplog):
    """A failure of that work (a greenlet killed at shutdown, say) neither loses the request's line nor its context."""
    app = create_app(config, service=build_service(config))

    @app.post("/fails-after")
    def fails_after():
        served = context.current()
        served.endpoint = "placeOrder"
        served.after_answer.append(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
        return "{}"

    answer = app.test_client().post("/fails-after", buffered=False)
    with caplog.at_level(logging.INFO, logger="bik_bridge"), pytest.raises(KeyboardInterrupt):
        answer.close()

    assert [r.status for r in caplog.records if r.getMessage() == "request"] == [200]
    assert context.current() is None
    app.extensions["bik_bridge"].store.close()


class StoreCalls:
    """The service's store, counting the calls made through it by name."""

    def __init__(self, store):
        self.store, self.calls = store, Counter()

    def __getattr__(self, name):
        method = getattr(self.store, name)
        if not callable(method):
            return method

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


@pytest.fixture
def counted(config):
    service = build_service(config)
    service.store = calls = StoreCalls(service.store)
    yield create_app(config, service=service).test_client(), calls
    calls.store.close()


def test_a_byte_identical_retry_is_answered_without_a_claim(counted, place_order_body):
    """Bik's retry of a placed order, byte for byte, is answered from its record with one read."""
    client, store = counted
    raw = json.dumps(place_order_body).encode()
    first = post(client, "/placeOrder", raw)
    assert first.status_code == 200 and store.calls["claim"] == 1

    again = post(client, "/placeOrder", raw)
    assert again.status_code == 200 and again.get_data() == first.get_data()
    assert store.calls["claim"] == 1


def test_the_same_payload_in_other_bytes_is_still_replayed(counted, place_order_body):
    """Reformatted (spaces, key order), the same payload is replayed through the claim, never placed again."""
    client, store = counted
    first = post(client, "/placeOrder", json.dumps(place_order_body).encode())
    reformatted = json.dumps(place_order_body, indent=2, sort_keys=True).encode()

    again = post(client, "/placeOrder", reformatted)
    assert again.status_code == 200 and again.get_data() == first.get_data()
    assert store.calls["claim"] == 2
    assert post(client, "/placeOrder", {**place_order_body, "draftOrderId": "nb_other"}).get_json()["order"]["id"] \
        == "L-1002"


def redis_app(tmp_path, **idempotency):
    """The app over a Redis idempotency store (a namespace of its own), and the store, its calls counted."""
    config = make_config(tmp_path, idempotency={"backend": "redis", "redis_url": REDIS_URL, **idempotency,
                                                "namespace": f"test-app-{uuid.uuid4().hex[:12]}"})
    service = build_service(config)
    service.warm_up(first_start=True)  # as a worker does: this Redis held its records before the bridge started
    service.store = calls = StoreCalls(service.store)
    return create_app(config, service=service).test_client(), calls


@pytest.fixture
def on_redis(tmp_path):
    client, calls = redis_app(tmp_path)
    yield client, calls
    calls.store.close()


def test_on_redis_a_fresh_draft_takes_one_store_call_before_it_is_sent(on_redis, place_order_body):
    """Looking for a replay and claiming a fresh draft are one round trip: no separate claim follows."""
    client, store = on_redis
    first = post(client, "/placeOrder", place_order_body)
    assert first.status_code == 200
    assert store.calls["replay_or_claim"] == 1 and store.calls["claim"] == 0
    record = store.get(DRAFT)
    assert record.state is RecordState.DONE
    assert record.fingerprint == PlaceOrderRequest.model_validate(place_order_body).fingerprint()

    again = post(client, "/placeOrder", place_order_body)
    assert again.get_data() == first.get_data() and store.calls["claim"] == 0


@pytest.mark.parametrize("change", ["no items", "another currency"])
def test_on_redis_a_fresh_draft_refused_after_its_claim_leaves_no_record(on_redis, place_order_body, change):
    """A body that fails validation after its draft was claimed gives the claim back: a good retry places it."""
    client, store = on_redis
    bad = copy.deepcopy(place_order_body)
    if change == "no items":
        bad["order"]["items"] = []
    else:
        bad["order"]["currency"] = "USD"

    refused = post(client, "/placeOrder", bad)
    assert refused.status_code in (400, 422) and store.calls["replay_or_claim"] == 1
    assert store.get(DRAFT) is None
    placed = post(client, "/placeOrder", place_order_body)
    assert placed.status_code == 200 and store.get(DRAFT).state is RecordState.DONE


def test_on_redis_another_payload_meeting_a_fresh_claim_is_replayed_the_first_order(on_redis, place_order_body):
    """A draft claimed before its payload was read holds no fingerprint yet: another payload meeting it is told the
    draft is in flight, then replayed the first order (`on_mismatch: replay`), never placed."""
    client, store = on_redis
    raw = json.dumps(place_order_body).encode()
    claim = store.replay_or_claim(DRAFT, body_digest(raw), 60)
    assert claim.record.fingerprint == ""
    changed = copy.deepcopy(place_order_body)
    changed["order"]["items"][0]["quantity"] += 1
    assert_json_error(post(client, "/placeOrder", changed), 409)

    request_ = PlaceOrderRequest.model_validate(place_order_body)
    assert store.complete(DRAFT, claim.token, "L-1", b'{"x":1}', body_digest(raw), request_.fingerprint())
    assert post(client, "/placeOrder", changed).get_data() == b'{"x":1}'
    assert post(client, "/placeOrder", raw).get_data() == b'{"x":1}'


def test_on_redis_under_reject_a_fresh_draft_is_claimed_once_its_payload_is_read(tmp_path, place_order_body):
    """`on_mismatch: reject` compares every payload with the first: its drafts are claimed with their fingerprint."""
    client, store = redis_app(tmp_path, on_mismatch="reject")
    try:
        assert post(client, "/placeOrder", place_order_body).status_code == 200
        assert (store.calls["replay"], store.calls["claim"], store.calls["replay_or_claim"]) == (1, 1, 0)
        changed = copy.deepcopy(place_order_body)
        changed["order"]["items"][0]["quantity"] += 1
        assert_json_error(post(client, "/placeOrder", changed), 422)
    finally:
        store.store.close()


def test_a_byte_identical_retry_still_needs_credentials(client, place_order_body):
    raw = json.dumps(place_order_body).encode()
    assert post(client, "/placeOrder", raw).status_code == 200
    assert_json_error(post(client, "/placeOrder", raw, headers={}), 401)


@pytest.mark.parametrize("raw", [b'{"draftOrderId": "nb_x"', b'{"draftOrderId": 7}', b'[]', b'{"draftOrderId": ""}',
                                 b'{"draftOrderId": "' + b"x" * 129 + b'"}', b'{"draftOrderId": "\\ud800"}',
                                 b'{"draftOrderId": "nb x"}', b'{"draftOrderId": "nb_x\\n"}',
                                 b'{"draftOrderId": "nb_x", "draftOrderId": "nb_x"}', b"\xff"])
def test_a_body_that_is_no_retry_gets_the_full_checks(client, raw):
    """Nothing read to find a replay lets a bad body through: it gets the 400 it always got."""
    assert_json_error(post(client, "/placeOrder", raw), 400)


def test_get_order_returns_the_current_state(client, place_order_body):
    """getOrder on the id placeOrder returned shows the order, including later changes."""
    order_id = post(client, "/placeOrder", place_order_body).get_json()["order"]["id"]
    response = post(client, "/getOrder", {"orderId": order_id})
    assert response.status_code == 200
    assert response.get_json()["order"]["id"] == order_id
    assert response.get_json()["order"]["status"] == "ORDERED"
    client.application.extensions["bik_bridge"].adapter.set_status(order_id, "DELIVERED", "paid", "fulfilled",
                                                                   "https://t.example/1")
    order = post(client, "/getOrder", {"orderId": order_id}).get_json()["order"]
    assert (order["status"], order["paymentStatus"], order["fulfillmentStatus"]) == ("DELIVERED", "paid", "fulfilled")
    assert order["deliveryInfo"] == {"trackingURL": "https://t.example/1"}


def test_get_order_for_an_unknown_id_is_404(client):
    """An id the store does not know is 404 with a JSON error."""
    body = assert_json_error(post(client, "/getOrder", {"orderId": "L-9999"}), 404)
    assert "L-9999" in body["error"]
    assert_json_error(post(client, "/getOrder", {"orderId": 1001}), 404)


# auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_wrong_or_missing_token_is_401(client, place_order_body, headers):
    """Without the right bearer token both endpoints answer 401 JSON."""
    assert_json_error(post(client, "/placeOrder", place_order_body, headers=headers), 401)
    assert_json_error(post(client, "/getOrder", {"orderId": "L-1001"}, headers=headers), 401)


def test_auth_is_checked_before_the_body(client):
    """A bad body with bad credentials is 401, not 400 or 415: the body is never looked at."""
    wrong = {"Authorization": "Bearer wrong"}
    assert_json_error(post(client, "/placeOrder", b"{not json", headers=wrong), 401)
    assert_json_error(post(client, "/placeOrder", b"hello", headers=wrong, content_type="text/plain"), 401)
    assert_json_error(post(client, "/getOrder", b"[1,2", headers=wrong), 401)


def test_401_places_nothing(client, place_order_body):
    """A refused placeOrder creates no order."""
    post(client, "/placeOrder", place_order_body, headers={"Authorization": "Bearer wrong"})
    assert_json_error(post(client, "/getOrder", {"orderId": "L-1001"}), 404)


def test_auth_overrides_per_endpoint(tmp_path, place_order_body):
    """getOrder may use basic while placeOrder keeps bearer; each refuses the other's credentials."""
    config = make_config(tmp_path, auth_overrides={"getOrder": {"scheme": "basic", "username": "bik",
                                                                "password": "pw"}})
    client, service = make_client(config)
    basic = {"Authorization": "Basic " + base64.b64encode(b"bik:pw").decode()}
    assert_json_error(post(client, "/placeOrder", place_order_body, headers=basic), 401)
    assert post(client, "/placeOrder", place_order_body, headers=AUTH).status_code == 200
    assert_json_error(post(client, "/getOrder", {"orderId": "L-1001"}, headers=AUTH), 401)
    assert post(client, "/getOrder", {"orderId": "L-1001"}, headers=basic).status_code == 200
    service.store.close()


def test_api_key_scheme_over_http(tmp_path, place_order_body):
    """An api_key scheme reads its custom header."""
    config = make_config(tmp_path, auth={"scheme": "api_key", "token": "k3y", "header": "X-Bik-Key"})
    client, service = make_client(config)
    assert post(client, "/placeOrder", place_order_body, headers={"x-bik-key": "k3y"}).status_code == 200
    assert_json_error(post(client, "/placeOrder", place_order_body, headers={"X-Bik-Key": "nope"}), 401)
    service.store.close()


# malformed requests ----------------------------------------------------------------------


def test_text_plain_is_415(client, place_order_body):
    """A body that is not declared as JSON is 415."""
    assert_json_error(post(client, "/placeOrder", json.dumps(place_order_body), content_type="text/plain"), 415)
    assert_json_error(post(client, "/getOrder", b'{"orderId":"L-1"}', content_type="text/plain"), 415)


def test_json_with_charset_is_accepted(client, place_order_body):
    """application/json with a charset parameter is JSON."""
    response = post(client, "/placeOrder", json.dumps(place_order_body).encode(),
                    content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_two_mebibyte_body_is_413(client):
    """A body over server.max_body_bytes is 413."""
    assert_json_error(post(client, "/placeOrder", b" " * (2 * 1024 * 1024)), 413)


def test_oversized_body_limit_follows_config(tmp_path, place_order_body):
    """The limit is server.max_body_bytes."""
    config = make_config(tmp_path, server={"max_body_bytes": 1024})
    client, service = make_client(config)
    place_order_body["order"]["tags"] = "x" * 2000
    assert_json_error(post(client, "/placeOrder", place_order_body), 413)
    service.store.close()


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"draftOrderId": "nb_1",', b"\xff\xfe\x00garbage",
                                 b"[" * 100_000 + b"]" * 100_000,
                                 b'{"draftOrderId":"nb_1","order":' + b"[" * 100_000 + b"]" * 100_000 + b"}"])
def test_not_json_is_400(client, raw):
    """Unparseable bodies, deep nesting included, are 400, never 500."""
    assert_json_error(post(client, "/placeOrder", raw), 400)


@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b'"order"', b"42", b"null"])
def test_json_that_is_not_an_object_is_400(client, raw):
    """A JSON array or scalar body is 400."""
    body = assert_json_error(post(client, "/placeOrder", raw), 400)
    assert "object" in body["error"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_literal_is_400(client, place_order_body, literal):
    """Python's NaN and Infinity extensions are not JSON."""
    raw = json.dumps(place_order_body).replace('"total": 947', '"total": ' + literal.decode()).encode()
    assert literal in raw
    assert_json_error(post(client, "/placeOrder", raw), 400)


@pytest.mark.parametrize("replacement", ['"total": 1e400', '"total": 1' + "0" * 5000, '"total": -0.5',
                                         '"total": 947.123456', '"total": "947"x'])
def test_odd_numbers_are_400_never_500(client, place_order_body, replacement):
    """Overflowing, over-long, negative, over-precise and broken numbers are all 400."""
    raw = json.dumps(place_order_body).replace('"total": 947', replacement).encode()
    assert_json_error(post(client, "/placeOrder", raw), 400)


def mutate(body: dict, path: str, value) -> dict:
    """Set (or delete, for value ...) the dotted `path` in `body`."""
    *parents, last = path.split(".")
    node = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


@pytest.mark.parametrize("path, value, field", [
    ("order.items.0.quantity", 0, "order.items.0.quantity"),
    ("order.items.0.quantity", 1.5, "order.items.0.quantity"),
    ("order.items.0.quantity", True, "order.items.0.quantity"),
    ("order.items", [], "order.items"),
    ("order.items.0.price", -1, "order.items.0.price"),
    ("order.items.0.variantId", ..., "order.items.0.variantId"),
    ("order.total", "lots", "order.total"),
    ("order", ..., "order"),
    ("draftOrderId", ..., "draftOrderId"),
    ("draftOrderId", "", "draftOrderId"),
    ("draftOrderId", "   ", "draftOrderId"),
    ("draftOrderId", "x" * 10_000, "draftOrderId"),
    ("draftOrderId", "nb 1 2", "draftOrderId"),
    ("draftOrderId", 12345, "draftOrderId"),
    ("draftOrderId", None, "draftOrderId"),
])
def test_invalid_place_order_is_400_with_details(client, place_order_body, path, value, field):
    """Each invalid field is named in `details`, and nothing is placed."""
    response = post(client, "/placeOrder", mutate(place_order_body, path, value))
    body = assert_json_error(response, 400)
    assert field in [d["field"] for d in body["details"]]
    assert all(set(d) == {"field", "message"} for d in body["details"])
    assert_json_error(post(client, "/getOrder", {"orderId": "L-1001"}), 404)


@pytest.mark.parametrize("body", [{}, {"orderId": ""}, {"orderId": None}, {"orderId": "x" * 10_000},
                                  {"order_id": "L-1001"}])
def test_invalid_get_order_is_400(client, body):
    """getOrder without a usable orderId is 400 naming the field."""
    details = assert_json_error(post(client, "/getOrder", body), 400)["details"]
    assert "orderId" in [d["field"] for d in details]


def test_unknown_fields_are_ignored(client, place_order_body):
    """Bik may add fields; the bridge reads only what it uses."""
    place_order_body["somethingNew"] = {"nested": [1, 2]}
    place_order_body["order"]["items"][0]["colour"] = "red"
    assert post(client, "/placeOrder", place_order_body).status_code == 200


# strict input: refused before anything is stored or sent ---------------------------------------


@pytest.fixture
def watched(config):
    """A client whose platform counts every call, and its service (to look into the idempotency store)."""
    adapter = FakeAdapter()
    client, service = make_client(config, build_service(config, adapter=adapter))
    yield client, service, adapter
    service.store.close()


def assert_untouched(service, adapter, draft=DRAFT):
    """Nothing reached the platform and no idempotency record was written for the draft."""
    assert (adapter.creates, adapter.lookups) == (0, 0)
    assert service.store.get(draft) is None


@pytest.mark.parametrize("path, value", [
    ("paymentPending", "false"),
    ("paymentPending", 0),
    ("paymentPending", None),
    ("order.items.0.quantity", "2"),
    ("order.items.0.quantity", 2.0),
    ("order.items.0.price", "499"),
    ("order.items.0.price", True),
    ("order.subTotal", "998"),
    ("order.total", "947.00"),
    ("order.shippingCharge", "49"),
    ("order.discount", "100"),
    ("draftOrderId", "  nb_1  "),
    ("draftOrderId", "nb_1 "),
    ("draftOrderId", "nb_1\n"),
    ("draftOrderId", "nb\x00_1"),
    ("order.items.0.variantId", " 40946134352009"),
    ("order.items.0.variantId", "SKU-1\t"),
    ("order.items.0.productId", "SKU\r\n1"),
    ("order.items.0.productId", "SKU\x85"),
    ("order.items.0.variantId", "SKU\ud83d"),
    ("order.email", "buyer@example.com\r\nBcc: all@example.com"),
    ("order.email", "buyer\x00@example.com"),
    ("order.email", "buyer.example.com"),
    ("order.email", "buyer@@example.com"),
    ("order.email", "a@b@example.com"),
    ("order.email", "@example.com"),
    ("order.email", "buyer@example"),
    ("order.email", "buyer@example."),
    ("order.email", "buy er@example.com"),
    ("order.phoneNumber", "+91 98765\n43210"),
    ("order.phoneNumber", "+919876543210\x00"),
    ("order.address.phoneNumber", "+91\ud83d"),
    ("order.address.firstName", "Bik\r\nTester"),
    ("order.address.lastName", "\x00"),
    ("order.address.address1", "HSR Layout\x7f"),
    ("order.address.address2", "Sector 6\x1b[31m"),
    ("order.address.city", "Bengaluru\x9f"),
    ("order.address.state", "Karna\ntaka"),
    ("order.address.country", "India\x0b"),
    ("order.address.countryCode", "I\tN"),
    ("order.address.zip", "560102\r"),
    ("order.currency", "IN\x00"),
])
def test_strict_field_is_400_naming_it_and_nothing_is_stored_or_sent(watched, place_order_body, path, value):
    """A string for a boolean or a count, a padded id, a control character where the store would keep it,
    a malformed email: 400 naming exactly that field, no idempotency record, no platform call."""
    client, service, adapter = watched
    body = assert_json_error(post(client, "/placeOrder", mutate(place_order_body, path, value)), 400)
    assert [d["field"] for d in body["details"]] == [path], body
    assert body["details"][0]["message"] and not body["details"][0]["message"].startswith("Value error")
    assert_untouched(service, adapter)
    assert_untouched(service, adapter, draft=place_order_body["draftOrderId"])


def test_a_corrected_body_with_the_same_draft_is_placed(watched, place_order_body):
    """The refusal leaves no trace: the same draft, corrected, is placed once."""
    client, service, adapter = watched
    assert_json_error(post(client, "/placeOrder", mutate(copy.deepcopy(place_order_body), "paymentPending",
                                                          "false")), 400)
    assert_json_error(post(client, "/placeOrder", mutate(copy.deepcopy(place_order_body), "order.currency",
                                                          "USD")), 422)
    assert_untouched(service, adapter)
    assert post(client, "/placeOrder", place_order_body).status_code == 200
    assert adapter.creates == 1


@pytest.mark.parametrize("email", ["", "   ", None, ...])
def test_an_order_without_an_email_is_placed(client, place_order_body, email):
    """Many WhatsApp customers have no email: empty, blank, null or absent still places the order."""
    order = post(client, "/placeOrder", mutate(place_order_body, "order.email", email))
    assert order.status_code == 200, order.get_data(as_text=True)
    assert not order.get_json()["order"]["email"]


@pytest.mark.parametrize("email, kept", [(" Buyer@Example.COM ", "buyer@example.com"),
                                         ("first.last+bik@mail.example.co.in", "first.last+bik@mail.example.co.in"),
                                         ("o'neil@xn--80ak6aa92e.com", "o'neil@xn--80ak6aa92e.com")])
def test_a_plausible_email_is_kept_lower_cased(client, place_order_body, email, kept):
    response = post(client, "/placeOrder", mutate(place_order_body, "order.email", email))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["order"]["email"] == kept


def test_control_characters_in_display_text_become_one_space(client, place_order_body):
    """Item and variant names only label the order: each run of control characters becomes one space."""
    item = place_order_body["order"]["items"][0]
    item["name"], item["variantName"] = "Skin\r\nRenew\x00Cream", "Red\ud83d/\x1f\x7fL"
    placed = post(client, "/placeOrder", place_order_body)
    assert placed.status_code == 200, placed.get_data(as_text=True)
    line = placed.get_json()["order"]["items"][0]
    assert (line["name"], line["variantName"]) == ("Skin Renew Cream", "Red / L")
    stored = post(client, "/getOrder", {"orderId": "L-1001"}).get_json()["order"]["items"][0]
    assert (stored["name"], stored["variantName"]) == ("Skin Renew Cream", "Red / L")


@pytest.mark.parametrize("raw, fields", [
    ('{"draftOrderId": "nb_1", "draftOrderId": "nb_2", "order": {}}', ["draftOrderId"]),
    ('{"draftOrderId": "nb_1", "paymentPending": true, "paymentPending": false, "order": {}}', ["paymentPending"]),
    ('{"draftOrderId": "nb_1", "order": {"items": [{"variantId": 1, "quantity": 1, "quantity": 9}]}}',
     ["order.items.0.quantity"]),
    ('{"draftOrderId": "nb_1", "order": {"address": {"city": "A", "zip": "1", "city": "B"}}}', ["order.address.city"]),
    ('{"x": [[{"a": null}], [{"b": null, "b": 2}]], "y": null, "draftOrderId": "nb_1"}', ["x.1.0.b"]),
    ('{"unknown": {"k": 1, "k": 1}, "draftOrderId": "nb_1", "draftOrderId": "nb_1"}',
     ["unknown.k", "draftOrderId"]),
])
def test_a_repeated_key_at_any_depth_is_400_naming_its_path(watched, raw, fields):
    """Which of two values would win differs between parsers: the bridge refuses, naming each repeated key."""
    client, service, adapter = watched
    body = assert_json_error(post(client, "/placeOrder", raw.encode()), 400)
    assert [d["field"] for d in body["details"]] == fields
    assert all(d["message"] == "duplicate key" for d in body["details"])
    assert_untouched(service, adapter, draft="nb_1")


def test_a_repeated_draft_id_in_the_sample_is_refused(watched, place_order_body):
    """The sample with draftOrderId twice (last one different) is refused, not placed under either id."""
    client, service, adapter = watched
    raw = json.dumps(place_order_body)[:-1] + ', "draftOrderId": "nb_other"}'
    body = assert_json_error(post(client, "/placeOrder", raw.encode()), 400)
    assert body["details"] == [{"field": "draftOrderId", "message": "duplicate key"}]
    assert_untouched(service, adapter)
    assert_untouched(service, adapter, draft="nb_other")


def test_get_order_with_a_repeated_key_is_400(client):
    body = assert_json_error(post(client, "/getOrder", b'{"orderId": "L-1001", "orderId": "L-1002"}'), 400)
    assert body["details"] == [{"field": "orderId", "message": "duplicate key"}]


@pytest.mark.parametrize("order_id", [" L-1001", "L-1001 ", "L-1001\n", "L-\x001001", "L-1001\ud83d"])
def test_get_order_takes_the_id_as_sent(client, place_order_body, order_id):
    """A padded id or one with a control character is 400 naming orderId, never trimmed onto another order."""
    assert post(client, "/placeOrder", place_order_body).status_code == 200
    body = assert_json_error(post(client, "/getOrder", {"orderId": order_id}), 400)
    assert [d["field"] for d in body["details"]] == ["orderId"]


@pytest.mark.parametrize("currency", ["USD", "inr", "EU"])
def test_another_currency_than_the_stores_is_422_naming_both(watched, place_order_body, currency):
    """Bik's amounts in USD for an INR store would be mislabelled: 422 before anything is stored or sent."""
    client, service, adapter = watched
    body = assert_json_error(post(client, "/placeOrder", mutate(place_order_body, "order.currency", currency)), 422)
    assert f'"{currency}"' in body["error"] and '"INR"' in body["error"] and "order.currency" in body["error"]
    assert_untouched(service, adapter)


@pytest.mark.parametrize("currency", ["", "INR", " INR "])
def test_the_stores_currency_or_none_is_placed(client, place_order_body, currency):
    response = post(client, "/placeOrder", mutate(place_order_body, "order.currency", currency))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["order"]["currency"] == "INR"


def test_the_store_currency_comes_from_the_config(tmp_path, place_order_body):
    """store.currency USD: Bik's USD is placed, its INR is refused."""
    client, service = make_client(make_config(tmp_path, store={"currency": "USD"}))
    assert_json_error(post(client, "/placeOrder", mutate(place_order_body, "order.currency", "INR")), 422)
    placed = post(client, "/placeOrder", mutate(place_order_body, "order.currency", "USD"))
    assert placed.status_code == 200 and placed.get_json()["order"]["currency"] == "USD"
    service.store.close()


# routing, health and request ids -----------------------------------------------------------


def test_unknown_route_is_404_json(client):
    """Paths the bridge does not serve are 404 JSON."""
    assert_json_error(client.get("/nope"), 404)
    assert_json_error(post(client, "/cancelOrder", {}), 404)


def test_wrong_method_is_405_json(client):
    """GET on placeOrder is 405 JSON."""
    assert_json_error(client.get("/placeOrder", headers=AUTH), 405)
    assert_json_error(client.put("/getOrder", headers=AUTH), 405)


def test_base_path_mounts_the_endpoints(tmp_path, place_order_body):
    """With base_path /bik the endpoints live under it and not at the root."""
    config = make_config(tmp_path, server={"base_path": "bik/"})
    client, service = make_client(config)
    assert post(client, "/bik/placeOrder", place_order_body).status_code == 200
    assert post(client, "/bik/getOrder", {"orderId": "L-1001"}).status_code == 200
    assert_json_error(post(client, "/placeOrder", place_order_body), 404)
    assert client.get("/bik/healthz").status_code == 200
    assert client.get("/healthz").status_code == 200
    service.store.close()


def test_healthz_and_readyz(client):
    """Liveness is always 200; readiness is 200 while the store answers."""
    assert client.get("/healthz").get_json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "platform": "local"}


def test_readyz_is_503_when_the_store_is_down(config):
    """Readiness fails with JSON when the idempotency store does not answer."""
    client, _ = make_client(config, build_service(config, store=DownStore()))
    body = assert_json_error(client.get("/readyz"), 503)
    assert body["status"] == "unavailable"
    assert client.get("/healthz").status_code == 200


def test_store_down_on_place_order_is_503_and_sends_nothing(config, place_order_body):
    """placeOrder with the store down is 503 with Retry-After, the platform is never called, and the request line
    names the draft."""
    adapter = FakeAdapter()
    client, _ = make_client(config, build_service(config, adapter=adapter, store=DownStore()))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger, level = logging.getLogger("bik_bridge.http"), logging.getLogger("bik_bridge.http").level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        response = post(client, "/placeOrder", place_order_body)
        response.close()  # the line is written once the answer has gone
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert_json_error(response, 503)
    assert int(response.headers["Retry-After"]) >= 1
    assert adapter.creates == 0 and adapter.lookups == 0
    [line] = [r for r in records if r.getMessage() == "request"]
    assert (line.status, line.draftOrderId, line.outcome) == (503, DRAFT, "StoreUnavailable")


def test_in_flight_duplicate_is_409_with_retry_after(client, place_order_body):
    """A duplicate while another request holds the draft is 409 with Retry-After."""
    service: OrderService = client.application.extensions["bik_bridge"]
    request = PlaceOrderRequest.model_validate(place_order_body)
    service.store.claim(DRAFT, request.fingerprint(), 60)
    response = post(client, "/placeOrder", place_order_body)
    assert_json_error(response, 409)
    assert 1 <= int(response.headers["Retry-After"]) <= 5


def test_payload_mismatch_under_strict_policy_is_422(tmp_path, place_order_body):
    """on_mismatch reject answers 422 to a changed payload for a used draft."""
    config = make_config(tmp_path, idempotency={"on_mismatch": "reject"})
    client, service = make_client(config)
    assert post(client, "/placeOrder", place_order_body).status_code == 200
    place_order_body["order"]["items"][0]["quantity"] = 3
    assert_json_error(post(client, "/placeOrder", place_order_body), 422)
    service.store.close()


def test_upstream_and_unexpected_errors_are_json(config, place_order_body):
    """An ambiguous platform failure is 504 with Retry-After; an unexpected bug is a bare 500 JSON."""
    adapter = FakeAdapter()
    client, service = make_client(config, build_service(config, adapter=adapter))
    adapter.fail_next(UpstreamAmbiguous("read timed out"))
    response = post(client, "/placeOrder", place_order_body)
    assert_json_error(response, 504)
    assert "Retry-After" in response.headers
    adapter.fail_next(RuntimeError("secret internals"))
    body = assert_json_error(post(client, "/placeOrder", {**place_order_body, "draftOrderId": "nb_2"}), 500)
    assert body == {"error": "internal error"}
    service.store.close()


class FailingReads(FakeAdapter):
    """A platform whose every read raises the same error."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get(self, order_id, deadline):
        raise self.error


@pytest.mark.parametrize(("error", "status", "retry_after"), [
    (UpstreamUnreachable("connection refused"), 503, "5"),
    (RateLimited("quota spent", retry_after=41.6), 503, "42"),
    (UpstreamTimeout("read timed out"), 504, "5"),
    (UpstreamFailed("platform error 500"), 502, "5"),
    (UpstreamAmbiguous("not confirmed", retry_after=0.2), 504, "1"),
    (LookupInconclusive("proved nothing"), 503, "30"),
    (StoreUnavailable(), 503, "5"),
    (InFlight("being placed", retry_after=3), 409, "3"),
    (UpstreamAuthError("401 from the store"), 502, None),
    (UpstreamMisconfigured("moved to another address"), 502, None),
    (OrderRejected("out of stock"), 422, None),
    (OrderNotFound("order 1 not found"), 404, None),
])
def test_every_error_is_rendered_from_its_class(config, error, status, retry_after):
    """The status is the class's; Retry-After is sent exactly when the class says a retry may succeed."""
    client, service = make_client(config, build_service(config, adapter=FailingReads(error)))
    response = post(client, "/getOrder", {"orderId": "1"})
    assert assert_json_error(response, status) == {"error": error.message}
    assert response.headers.get("Retry-After") == retry_after
    service.store.close()


def test_request_id_is_echoed_or_generated(client, place_order_body):
    """A sane X-Request-Id is echoed; a missing or unsafe one is replaced by a fresh id."""
    given = post(client, "/placeOrder", place_order_body, headers={**AUTH, "X-Request-Id": "bik-req-42"})
    assert given.headers["X-Request-Id"] == "bik-req-42"
    generated = [post(client, "/getOrder", {"orderId": "L-1001"}).headers["X-Request-Id"] for _ in range(2)]
    assert all(len(r) >= 16 for r in generated) and generated[0] != generated[1]
    unsafe = client.get("/healthz", headers={"X-Request-Id": "a b\tc"}).headers["X-Request-Id"]
    assert unsafe and unsafe != "a b\tc"
    assert client.get("/nope", headers={"X-Request-Id": "r-404"}).headers["X-Request-Id"] == "r-404"
    assert post(client, "/placeOrder", {}, headers={"X-Request-Id": "r-401"}).headers["X-Request-Id"] == "r-401"


def test_every_error_is_json_with_an_error_key(client, place_order_body):
    """No error path answers HTML or an empty body."""
    wrong = {"Authorization": "Bearer wrong"}
    cases = [
        (post(client, "/placeOrder", place_order_body, headers=wrong), 401),
        (post(client, "/placeOrder", b"x", content_type="text/plain"), 415),
        (post(client, "/placeOrder", b"x" * (2 * 1024 * 1024)), 413),
        (post(client, "/placeOrder", b"{"), 400),
        (post(client, "/placeOrder", {"draftOrderId": "nb_1"}), 400),
        (post(client, "/getOrder", {"orderId": "L-5"}), 404),
        (client.get("/missing"), 404),
        (client.delete("/placeOrder"), 405),
    ]
    for response, status in cases:
        assert_json_error(response, status)
