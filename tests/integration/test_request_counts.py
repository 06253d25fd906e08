"""What a Bik call costs the store's quota, end to end: real gunicorn workers against the fake stores.

BigCommerce allows a Standard store 150 requests per 30 s for all its apps; bitbybit 100 a minute per key. These
tests count the requests the fake store received for each call, and read what /metrics reports of them.
"""
from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import bigcommerce_config, bitbybit_config

pytestmark = pytest.mark.integration

INLINED = {"include": ["consignments.line_items"], "consignment_structure": ["object"]}


def sent(fake, since: int = 0) -> list[tuple[str, str, dict]]:
    """(method, path after /v2, query) of the requests the fake store received, from the `since`-th on."""
    return [(r.method, r.path.split("/v2")[-1], parse_qs(r.query)) for r in fake.requests[since:]]


def metric(bridge, name: str, **labels) -> float:
    text = bridge.session.get(f"{bridge.url}/metrics").text
    values = {(s.name, frozenset(s.labels.items())): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    return values.get((name, frozenset(labels.items())), 0.0)


def place(bridge, body) -> str:
    response = bridge.post("placeOrder", body)
    assert response.status_code == 200, response.text
    return response.json()["order"]["id"]


def read(bridge, order_id: str) -> dict:
    response = bridge.post("getOrder", {"orderId": order_id})
    assert response.status_code == 200, response.text
    return response.json()["order"]


def test_bigcommerce_status_reads_cost_one_request_and_two_once_shipped(fake_bc, redis_url, start_bridge,
                                                                        place_body):
    bridge = start_bridge(bigcommerce_config(fake_bc, redis_url))
    order_id = place(bridge, place_body)
    before = len(fake_bc.requests)

    unshipped = read(bridge, order_id)

    assert sent(fake_bc, before) == [("GET", f"/orders/{order_id}", INLINED)]
    assert (unshipped["fulfillmentStatus"], unshipped["items"][0]["quantity"]) == ("unfulfilled", 2)
    assert unshipped["address"]["address1"] == place_body["order"]["address"]["address1"]

    fake_bc.add_shipment(int(order_id), tracking_link="https://track.example/T1")
    for _ in range(4):  # the first read by each worker learns it shipped; later ones ask for shipments at once
        before = len(fake_bc.requests)
        shipped = read(bridge, order_id)
        assert sorted(sent(fake_bc, before)) == [("GET", f"/orders/{order_id}", INLINED),
                                                  ("GET", f"/orders/{order_id}/shipments", {"limit": ["250"]})]
        assert (shipped["fulfillmentStatus"], shipped["deliveryInfo"]["trackingURL"]) == (
            "fulfilled", "https://track.example/T1")
    assert fake_bc.invalid_requests == []


@pytest.mark.parametrize("answer", ["array", "link"])
def test_a_store_answering_without_the_consignments_object_costs_the_fallback_reads_and_counts_them(
        fake_bc, redis_url, start_bridge, place_body, answer):
    bridge = start_bridge(bigcommerce_config(fake_bc, redis_url))
    order_id = place(bridge, place_body)
    fake_bc.consignments_answer = answer  # the older array form, or the include ignored
    before = len(fake_bc.requests)

    order = read(bridge, order_id)

    assert sorted(sent(fake_bc, before)) == [("GET", f"/orders/{order_id}", INLINED),
                                              ("GET", f"/orders/{order_id}/products", {"limit": ["250"]}),
                                              ("GET", f"/orders/{order_id}/shipping_addresses", {})]
    assert order["items"][0]["variantId"] == place_body["order"]["items"][0]["variantId"]
    assert metric(bridge, "bik_bridge_read_fallbacks_total", platform="bigcommerce",
                  reason="consignments_not_inlined") == 1
    assert metric(bridge, "bik_bridge_upstream_requests_per_call_sum", endpoint="getOrder", platform="bigcommerce",
                  operation="all") == 3


def test_metrics_count_requests_per_call_and_the_share_of_the_quota_used(fake_bc, redis_url, start_bridge,
                                                                         place_body):
    """On the defaults placeOrder costs 2 requests and getOrder 1; the gauge is their share of 150 per 30 s."""
    fake_bc.set_quota(150, 30_000)
    bridge = start_bridge(bigcommerce_config(fake_bc, redis_url))
    order_id = place(bridge, place_body)
    read(bridge, order_id)

    labels = {"platform": "bigcommerce"}
    assert metric(bridge, "bik_bridge_upstream_requests_per_call_sum", endpoint="placeOrder", operation="all",
                  **labels) == 2
    assert metric(bridge, "bik_bridge_upstream_requests_per_call_sum", endpoint="placeOrder",
                  operation="list_orders", **labels) == 1
    assert metric(bridge, "bik_bridge_upstream_requests_per_call_sum", endpoint="getOrder", operation="all",
                  **labels) == 1
    assert len(fake_bc.requests) == 3
    assert metric(bridge, "bik_bridge_quota_used_ratio", **labels) == pytest.approx(3 / 150)


def test_a_status_read_another_instance_just_answered_costs_no_request(fake_bc, redis_url, start_bridge,
                                                                       place_body):
    """With Redis records and `get_order_cache_seconds`, every worker and instance serves one fresh answer."""
    # The cache is off by default; this test is about turning it on.
    config = bigcommerce_config(fake_bc, redis_url, store={"get_order_cache_seconds": 30})
    one, other = start_bridge(config, name="one"), start_bridge(config, name="other")
    order_id = place(one, place_body)
    before = len(fake_bc.requests)

    first = other.post("getOrder", {"orderId": order_id})
    answers = [bridge.post("getOrder", {"orderId": order_id}) for bridge in (one, other, one, other)]

    assert len(fake_bc.requests) == before + 1
    assert {answer.content for answer in answers} == {first.content}


def test_without_the_lookup_before_create_an_order_costs_one_request(fake_bc, redis_url, start_bridge, place_body):
    # Not the default: the figure docs/performance.md gives for `lookup_before_create: false`.
    bridge = start_bridge(bigcommerce_config(fake_bc, redis_url, idempotency={"lookup_before_create": False}))
    place(bridge, place_body)
    place(bridge, place_body)  # a replay: the record answers

    assert sent(fake_bc) == [("POST", "/orders", {})]


def test_bitbybit_orders_cost_two_requests_and_status_reads_one(fake_bbb, redis_url, start_bridge, place_body):
    bridge = start_bridge(bitbybit_config(fake_bbb, redis_url))
    order_id = place(bridge, place_body)
    assert [r.method for r in fake_bbb.requests] == ["GET", "POST"]  # on a quiet store one page of the lookup
    before = len(fake_bbb.requests)

    for _ in range(3):
        read(bridge, order_id)

    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in fake_bbb.requests[before:]] == [("GET", order_id)] * 3
    assert metric(bridge, "bik_bridge_upstream_requests_per_call_sum", endpoint="getOrder", platform="bitbybit",
                  operation="all") == 3
