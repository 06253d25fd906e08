"""GET /metrics in one process: what Bik's traffic and the service's decisions add up to."""
from __future__ import annotations

from decimal import Decimal

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bridge.bootstrap import build_app, build_service, build_store
from bridge.core.models import PlaceOrderRequest
from bridge.core.service import OrderService, ServiceSettings
from bridge.http.app import create_app
from bridge.ops import context
from bridge.ops.metrics import Metrics
from bridge.upstream.quota import RateGate

from .fakes import FakeAdapter, FakeClock
from .test_app_http import DRAFT, make_config, post

METRICS_TOKEN = "scrape-token-123"


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of an exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def app_config(tmp_path):
    return make_config(tmp_path)


@pytest.fixture
def client(app_config):
    metrics = Metrics(app_config.platform)
    service = build_service(app_config, on_decision=metrics.decision)
    yield create_app(app_config, service=service, metrics=metrics).test_client()
    service.store.close()


@pytest.fixture
def request_(place_order_body) -> PlaceOrderRequest:
    return PlaceOrderRequest.model_validate({**place_order_body, "draftOrderId": DRAFT})


def test_requests_replays_and_latency_are_counted(client, place_order_body):
    post(client, "/placeOrder", place_order_body)
    post(client, "/placeOrder", place_order_body)
    post(client, "/getOrder", {"orderId": "L-404"})
    post(client, "/placeOrder", place_order_body, headers={})

    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "bik_bridge_requests_total", endpoint="placeOrder", status="200") == 2
    assert value(text, "bik_bridge_requests_total", endpoint="placeOrder", status="401") == 1
    assert value(text, "bik_bridge_requests_total", endpoint="getOrder", status="404") == 1
    assert value(text, "bik_bridge_request_duration_seconds_count", endpoint="placeOrder") == 3
    assert value(text, "bik_bridge_replays_total") == 1
    assert value(text, "bik_bridge_place_order_decisions_total", decision="created") == 1


def test_the_root_builds_the_apps_metrics_and_wires_the_service(app_config, place_order_body):
    client = build_app(app_config).test_client()
    post(client, "/placeOrder", place_order_body)
    post(client, "/placeOrder", place_order_body)

    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "bik_bridge_replays_total") == 1


def test_metrics_token_is_required_when_configured(tmp_path):
    config = make_config(tmp_path, metrics={"token": METRICS_TOKEN})
    client = build_app(config).test_client()

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).get_json()["error"]
    assert client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200


def test_metrics_can_be_turned_off(tmp_path):
    config = make_config(tmp_path, metrics={"enabled": False})

    assert build_app(config).test_client().get("/metrics").status_code == 404


def test_metrics_live_under_the_base_path_too(tmp_path):
    client = build_app(make_config(tmp_path, server={"base_path": "/bik"})).test_client()

    assert client.get("/bik/metrics").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_upstream_attempts_and_retries_are_counted():
    metrics = Metrics("bigcommerce")
    metrics.upstream(platform="bigcommerce", operation="create_order", status=503, ms=12.0, attempt=1)
    metrics.upstream(platform="bigcommerce", operation="get_order", status="ConnectTimeout", ms=3000.0, attempt=1)
    metrics.upstream(platform="bigcommerce", operation="get_order", status=200, ms=40.0, attempt=2)

    text = metrics.exposition()[0].decode()
    assert value(text, "bik_bridge_upstream_calls_total", platform="bigcommerce", operation="get_order",
                 status="ConnectTimeout") == 1
    assert value(text, "bik_bridge_upstream_retries_total", platform="bigcommerce", operation="get_order") == 1
    assert value(text, "bik_bridge_upstream_retries_total", platform="bigcommerce", operation="create_order") == 0
    assert value(text, "bik_bridge_upstream_duration_seconds_count", platform="bigcommerce",
                 operation="get_order") == 2


class TaxingAdapter(FakeAdapter):
    """A store that adds tax: its total differs from Bik's."""

    def place(self, request, deadline):
        order = super().place(request, deadline)
        return order.model_copy(update={"total": order.total + Decimal(18)})


def test_total_mismatch_is_counted_when_the_store_total_differs(store, request_):
    metrics = Metrics("fake")
    service = OrderService(TaxingAdapter(), store, ServiceSettings(wait_seconds=0), on_decision=metrics.decision)

    service.place_order(request_)

    text = metrics.exposition()[0].decode()
    assert value(text, "bik_bridge_total_mismatches_total", platform="fake") == 1
    assert value(text, "bik_bridge_place_order_decisions_total", decision="total_mismatch") == 1


def test_equal_totals_are_no_mismatch(store, request_):
    metrics = Metrics("fake")
    service = OrderService(FakeAdapter(), store, ServiceSettings(wait_seconds=0), on_decision=metrics.decision)

    service.place_order(request_)

    assert value(metrics.exposition()[0].decode(), "bik_bridge_total_mismatches_total", platform="fake") == 0


@pytest.mark.parametrize("decision, via, result", [
    ("recovered", "request", "found"), ("absent_after_lookup", "request", "absent"),
    ("reconciled_found", "reconcile", "found"), ("reconciled_absent", "reconcile", "absent"),
])
def test_lookups_that_settle_a_record_count_as_reconciliations(decision, via, result):
    metrics = Metrics("fake")
    metrics.decision(decision)

    text = metrics.exposition()[0].decode()
    assert value(text, "bik_bridge_reconciliations_total", via=via, result=result) == 1


def test_a_failing_decision_hook_never_fails_the_order(store, request_):
    def broken(decision: str) -> None:
        raise RuntimeError("metrics backend down")

    service = OrderService(FakeAdapter(), store, ServiceSettings(wait_seconds=0), on_decision=broken)

    assert service.place_order(request_).decision == "created"
    assert service.place_order(request_).decision == "replayed"


# ------------------------------------------------------------------------------------------ quota accounting


class CountingPlatform(FakeAdapter):
    """The fake platform, noting in the request's context the upstream calls a real one would make."""

    def find_by_draft(self, draft_order_id, request, deadline, since):
        context.note_upstream({"operation": "list_orders", "status": 204})
        return super().find_by_draft(draft_order_id, request, deadline, since)

    def place(self, request, deadline):
        context.note_upstream({"operation": "create", "status": 201})
        return super().place(request, deadline)

    def get(self, order_id, deadline):
        context.note_upstream({"operation": "get_order", "status": 200})
        if order_id == "F-2":  # answered the slower way: two more reads
            context.note_fallback("consignments_not_inlined")
            context.note_upstream({"operation": "products", "status": 200})
            context.note_upstream({"operation": "shipping_addresses", "status": 200})
        return super().get(order_id, deadline)


def per_call(text: str, endpoint: str, operation: str) -> tuple[float, float]:
    """(calls observed, requests they cost) of the per-call histogram's series."""
    labels = {"endpoint": endpoint, "platform": "fake", "operation": operation}
    return (value(text, "bik_bridge_upstream_requests_per_call_count", **labels),
            value(text, "bik_bridge_upstream_requests_per_call_sum", **labels))


def test_upstream_requests_are_counted_per_bik_call_by_endpoint_and_operation(app_config, place_order_body):
    """A new order costs the lookup and the create, a replay nothing, a status read one request."""
    metrics = Metrics("fake")
    service = OrderService(CountingPlatform(), build_store(app_config), ServiceSettings(wait_seconds=0),
                           on_decision=metrics.decision)
    client = create_app(app_config, service=service, metrics=metrics).test_client()

    order_id = post(client, "/placeOrder", place_order_body).get_json()["order"]["id"]
    post(client, "/placeOrder", place_order_body)
    post(client, "/getOrder", {"orderId": order_id})
    post(client, "/getOrder", {"orderId": order_id})

    text = client.get("/metrics").get_data(as_text=True)
    assert per_call(text, "placeOrder", "all") == (2, 2)  # two calls: the first cost 2 requests, the replay 0
    assert per_call(text, "placeOrder", "list_orders") == (1, 1)
    assert per_call(text, "placeOrder", "create") == (1, 1)
    assert per_call(text, "getOrder", "all") == (2, 2)
    assert per_call(text, "getOrder", "get_order") == (2, 2)
    assert value(text, "bik_bridge_upstream_requests_per_call_bucket", endpoint="placeOrder", platform="fake",
                 operation="all", le="0.0") == 1
    service.store.close()


def test_a_read_that_fell_back_to_more_requests_is_counted(app_config, place_order_body):
    metrics = Metrics("fake")
    platform = CountingPlatform()
    service = OrderService(platform, build_store(app_config), ServiceSettings(wait_seconds=0))
    client = create_app(app_config, service=service, metrics=metrics).test_client()
    post(client, "/placeOrder", place_order_body)
    second = {**place_order_body, "draftOrderId": "nb_1715200001_other"}
    assert post(client, "/placeOrder", second).get_json()["order"]["id"] == "F-2"

    post(client, "/getOrder", {"orderId": "F-1"})
    post(client, "/getOrder", {"orderId": "F-2"})

    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "bik_bridge_read_fallbacks_total", platform="fake", reason="consignments_not_inlined") == 1
    assert per_call(text, "getOrder", "all") == (2, 4)
    service.store.close()


class AnnouncedQuota:
    """A platform whose every answer announces 150 requests per 30 s."""

    def reset_seconds(self, response):
        return None

    def requests_left(self, response):
        return None

    def quota(self, response):
        return 150, 30.0


def answer() -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    return response


def test_the_quota_used_ratio_is_the_last_windows_sends_over_the_announced_quota():
    clock = FakeClock(start=1000.0)
    gate = RateGate(AnnouncedQuota(), clock=clock)
    metrics = Metrics("fake")
    metrics.watch_quota(gate.usage)
    assert gate.reserve() == 0.0

    text = metrics.exposition()[0].decode()
    assert ("bik_bridge_quota_used_ratio", frozenset({("platform", "fake")})) not in samples(text)  # none announced

    gate.observe(answer())
    for _ in range(29):
        assert gate.reserve() == 0.0
    assert value(metrics.exposition()[0].decode(), "bik_bridge_quota_used_ratio", platform="fake") == 0.2
    clock.advance(30.0)
    assert value(metrics.exposition()[0].decode(), "bik_bridge_quota_used_ratio", platform="fake") == 0.0
