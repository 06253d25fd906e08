"""The benchmark's bookkeeping: which store operation a request is, and how a figure is judged."""
from __future__ import annotations

import json

import pytest

from bench.platform import operation_of
from bench.report import Figure, Report


@pytest.mark.parametrize("method, path, operation", [
    ("POST", "/stores/abc/v2/orders", "create"),
    ("GET", "/stores/abc/v2/orders", "list_orders"),
    ("GET", "/stores/abc/v2/orders/118", "get_order"),
    ("GET", "/stores/abc/v2/orders/118/products", "products"),
    ("GET", "/stores/abc/v2/orders/118/shipments", "shipments"),
    ("GET", "/stores/abc/v2/orders/118/shipping_addresses", "shipping_addresses"),
])
def test_requests_are_named_by_store_operation(method, path, operation):
    assert operation_of(method, path) == operation


def test_figures_are_judged_against_their_targets_and_the_baseline():
    under = Figure("a", "latency", 2.5, "ms", 3, "<=", baseline=10)
    over = Figure("b", "throughput", 250, "req/s", 300, ">=", baseline=100, better="higher")
    context = Figure("c", "store time", 52.0, "ms")

    assert (under.passed, over.passed, context.passed) == (True, False, None)
    assert (under.gain, over.gain) == (4.0, 2.5)


def test_a_report_is_written_as_json_and_markdown(tmp_path):
    report = Report({"mode": "quick", "nproc": 2}, {"latency_ms": 50})
    report.add(Figure("a", "latency", 2.5, "ms", 3, "<="))
    report.add(Figure("b", "throughput", None, "req/s", 300, ">="))

    json_path, md_path = report.write(tmp_path, "latest-quick")

    data = json.loads(json_path.read_text())
    assert [f["passed"] for f in data["figures"]] == [True, False] and data["passed"] is False
    assert "| latency | ≤ 3 ms | 2.5 ms |" in md_path.read_text()
