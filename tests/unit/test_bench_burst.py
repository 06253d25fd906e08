"""The flash-sale burst's bookkeeping: the quota's arithmetic, what the store saw, how each figure is judged."""
from __future__ import annotations

import requests

from bench.burst import Answer, BurstStore, Plan, measure, rows, text_table
from tests.fakes.test_fake_bigcommerce import valid_body


def test_the_minimum_is_the_requests_the_orders_need_at_the_announced_rate():
    plan = Plan()

    assert plan.minimum(600 * 2) == 240.0
    assert plan.window_floor(600 * 2) == 210.0  # 8 windows, the last one's quota spent at its start
    assert plan.bound() == 60 + 2 * 240 + 60


def create(store: BurstStore, draft: str) -> requests.Response:
    body = {**valid_body(), "external_order_id": draft}
    return requests.post(f"{store.store_url}/orders", json=body, timeout=5,
                         headers={"X-Auth-Token": store.access_token, "Accept": "application/json"})


def lookup(store: BurstStore, draft: str) -> requests.Response:
    return requests.get(f"{store.store_url}/orders", params={"external_order_id": draft}, timeout=5,
                        headers={"X-Auth-Token": store.access_token, "Accept": "application/json"})


def test_the_store_notes_each_request_with_its_draft_window_and_verdict_and_each_create():
    with BurstStore() as store:
        store.set_quota(3, 60_000)
        assert lookup(store, "nb_1_a").status_code == 204
        assert create(store, "nb_1_a").status_code == 201, store.invalid_requests
        assert lookup(store, "nb_1_b").status_code == 204
        assert lookup(store, "nb_1_b").status_code == 429  # the window's quota is spent

        assert [(t.operation, t.draft, t.allowed) for t in store.takes] == [
            ("list_orders", "nb_1_a", True), ("create", "nb_1_a", True), ("list_orders", "nb_1_b", True),
            ("list_orders", "nb_1_b", False)]
        assert len({t.window for t in store.takes}) == 1
        assert store.orders_of("nb_1_a") == 1 and store.orders_of("nb_1_b") == 0


def test_each_figure_is_judged_against_its_target():
    plan = Plan(drafts=2, quota=2, window_seconds=10.0)
    with BurstStore() as store:
        store.set_quota(2, 10_000)
        for draft in ("d1", "d2"):
            lookup(store, draft)
            create(store, draft)
        origin = min(t.at for t in store.takes)
        answers = [Answer("d1", origin, 0.02, 200, "BK-d1", ["a"]), Answer("d2", origin, 1.5, 200, "101", ["a", "b"])]
        data = measure(plan, ["d1", "d2"], answers, store, origin, origin + 1, [])

    verdicts = {row.figure: row.passed for row in rows(data)}

    assert data["placing"]["requests_per_order"] == 2 and data["placing"]["minimum_s"] == 20.0
    assert data["answers"]["queued"] == 1 and data["answers"]["failed_over"] == 1
    assert data["store"]["refused_over_quota"] == 2 and data["store"]["most_in_a_window"] == 4
    assert verdicts == {
        "placeOrder answers 2xx": True,
        "placeOrder latency, p99": False,                           # 1.5 s
        "time until the last order is placed": False,               # the second draft never got its order
        "requests the store received in one window": False,         # 4 arrived where 2 were announced
        "orders per draft": False,                                  # the second draft's create was refused
    }
    assert "FAIL" in text_table(rows(data))


def test_every_figure_passes_when_each_draft_has_its_order_in_time_within_the_quota():
    plan = Plan(drafts=1, quota=10, window_seconds=10.0)
    with BurstStore() as store:
        store.set_quota(10, 10_000)
        lookup(store, "d1")
        create(store, "d1")
        origin = min(t.at for t in store.takes)
        data = measure(plan, ["d1"], [Answer("d1", origin, 0.01, 200, "BK-d1", ["a"])], store, origin, origin + 1, [])

    assert all(row.passed for row in rows(data)), text_table(rows(data))
    assert data["placing"]["last_order_s"] <= data["placing"]["minimum_s"] == 2.0
