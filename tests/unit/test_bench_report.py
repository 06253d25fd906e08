"""The benchmark's bookkeeping: store operations, upstream requests per Bik request, how a figure is judged."""
from __future__ import annotations

import json

import pytest

from bench.load import LoadResult
from bench.platform import operation_of
from bench.report import Figure, Report
from bench.scenarios import Seen


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


def test_upstream_requests_are_given_per_bik_request_by_operation():
    load = LoadResult(40, 1.0, 0, 1.0, 1.0, 1.0, 1.0)
    seen = Seen(load, {"requests": 80, "by_operation": {"create": 40, "list_orders": 40}})

    assert seen.upstream_per("create") == 2
    assert seen.per_request("create") == "create 1, list_orders 1"
    assert seen.per_request("get_order") == "none"


def test_figures_are_judged_by_themselves_or_against_the_bare_stack():
    memory = Figure("a", "RSS", 60.0, "MiB", 80, "<=")
    throughput = Figure("b", "throughput", 270.0, "req/s", 0.9, ">=", bare=300.0, compare="ratio")
    latency = Figure("c", "median", 2.5, "ms", 0.3, "<=", bare=2.0, compare="difference")
    context = Figure("d", "store time", 52.0, "ms")

    assert (throughput.measured, latency.measured) == (0.9, 0.5)
    assert (memory.passed, throughput.passed, latency.passed, context.passed) == (True, True, False, None)


@pytest.mark.parametrize("value, shown", [(273.0, "0.898×"), (273.5, "0.8997×"), (271.0, "0.89×"), (310.0, "1.02×"),
                                          (273.6, "0.90×")])
def test_a_ratio_that_rounds_to_its_target_shows_the_digit_that_decides(value, shown):
    from bench.report import versus_text

    assert versus_text(Figure("b", "throughput", value, "req/s", 0.9, ">=", bare=304.0, compare="ratio")) == shown


def test_a_comparison_without_its_bare_figure_is_not_judged():
    assert Figure("a", "median", 2.5, "ms", 0.3, "<=", compare="difference").passed is None


def test_a_report_is_written_as_json_and_markdown(tmp_path):
    report = Report({"mode": "quick", "nproc": 2}, {"latency_ms": 50})
    report.add(Figure("a", "latency", 2.5, "ms", 3, "<="))
    report.add(Figure("b", "throughput", None, "req/s", 300, ">="))
    report.add(Figure("c", "replay", 1600, "req/s", 0.8, ">=", bare=2000, compare="ratio"))

    json_path, md_path = report.write(tmp_path, "latest-quick")

    data = json.loads(json_path.read_text())
    assert [f["passed"] for f in data["figures"]] == [True, False, True] and data["passed"] is False
    assert data["figures"][2]["measured"] == 0.8
    markdown = md_path.read_text()
    assert "| latency | ≤ 3 ms | 2.5 ms |" in markdown
    assert "| replay | ≥ 0.8× bare | 1,600 req/s | 2,000 req/s | 0.80× | pass |" in markdown
