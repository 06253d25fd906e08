"""placement: overflow under gunicorn: a burst beyond the store's quota is accepted, and every queued order is placed
once, through every instance being stopped mid-queue, on SQLite and on a Redis that keeps an append-only file."""
from __future__ import annotations

import json
import os
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.chaos.processes import ChaosRedis
from tests.integration.bridge_process import BridgeProcess
from tests.integration.conftest import bigcommerce_config
from tests.support.waiting import wait_until

DRAFTS = 30
QUOTA_PER_SECOND = 20


def overflow_config(fake, store: dict) -> dict:
    # rate_limit_wait_cap_seconds 0: a placeOrder the quota cannot take at once is queued at once, so the burst
    # overflows within the test's seconds instead of Bik's 15-second wait. lease_grace_seconds 1: the instances
    # started after the kill wait out the killed placer's lease (a draft's lease plus 10 s) before placing the rest.
    return bigcommerce_config(fake, "redis://127.0.0.1:6379/15", idempotency={"lease_grace_seconds": 1, **store},
                              placement="overflow", upstream={"rate_limit_wait_cap_seconds": 0})


def orders_per_draft(fake) -> Counter:
    return Counter(order.header.get("external_order_id") for order in fake.orders.values())


def burst(bridges: list[BridgeProcess], bodies: list[dict]) -> list:
    """Every confirmation at once, spread over the instances, as a flash sale's broadcast brings them."""
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(lambda pair: bridges[pair[0] % len(bridges)].post("placeOrder", pair[1]),
                             enumerate(bodies)))


def kill(bridge: BridgeProcess) -> None:
    """SIGKILL the whole instance, master and workers: nothing gets to finish."""
    os.killpg(bridge.proc.pid, signal.SIGKILL)
    bridge.proc.wait(10)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_a_burst_beyond_the_quota_is_accepted_and_every_order_placed_once_across_restarts(
        backend, fake_bc, place_body, tmp_path):
    fake_bc.set_quota(QUOTA_PER_SECOND, window_ms=1000)
    redis = None
    if backend == "redis":
        redis = ChaosRedis(tmp_path)
        redis.persistent = True  # appendonly yes, appendfsync always
        redis.start()
        store = {"backend": "redis", "redis_url": redis.url}
    else:
        store = {"backend": "sqlite", "sqlite_path": str(tmp_path / "records.db")}
    config = overflow_config(fake_bc, store)
    names = ["a", "b"] if backend == "redis" else ["a"]
    bridges = [BridgeProcess(config, tmp_path, name=name).start() for name in names]
    bodies = []
    for n in range(DRAFTS):
        body = json.loads(json.dumps(place_body))
        body["draftOrderId"] = body["order"]["id"] = f"{place_body['draftOrderId']}_{n}"
        bodies.append(body)
    try:
        answers = burst(bridges, bodies)

        assert [a.status_code for a in answers] == [200] * DRAFTS, [a.text for a in answers if a.status_code != 200]
        ids = {body["draftOrderId"]: a.json()["order"]["id"] for body, a in zip(bodies, answers)}
        queued = [draft for draft, order_id in ids.items() if order_id == f"BK-{draft}"]
        assert len(queued) >= DRAFTS // 2, "the quota should have sent most of the burst to the queue"
        assert all(a.json()["order"]["status"] == "ORDERED" for a in answers)
        # Mid-queue: some queued orders placed, not all; then every instance goes.
        wait_until(lambda: 0 < sum(orders_per_draft(fake_bc)[d] for d in queued) < len(queued) - 5,
                   "the placer to have placed some of the queue", timeout=30)
        for bridge in bridges:
            kill(bridge) if backend == "redis" else bridge.stop()
        if redis is not None:
            redis.kill()  # and Redis with them: only what its append-only file kept survives
            redis.start()
        stopped_with = fake_bc.create_count
        assert stopped_with < DRAFTS
        bridges = [BridgeProcess(config, tmp_path, name=f"{name}2").start() for name in names]

        wait_until(lambda: set(orders_per_draft(fake_bc)) >= set(ids), "every draft to have its order", timeout=60)
        per_draft = orders_per_draft(fake_bc)
        assert all(per_draft[draft] == 1 for draft in ids), per_draft
        assert fake_bc.create_count == DRAFTS
        for body, answer in zip(bodies, answers):
            again = bridges[0].post("placeOrder", body)
            assert (again.status_code, again.content) == (200, answer.content)  # Bik's retry: the same bytes
        for draft in queued:
            order = wait_until(lambda: _read(bridges[0], f"BK-{draft}"), f"getOrder of BK-{draft}", timeout=20)
            platform_id = next(o.id for o in fake_bc.orders.values() if o.header["external_order_id"] == draft)
            assert (order["id"], order["name"]) == (f"BK-{draft}", f"#{platform_id}")
    finally:
        for bridge in bridges:
            bridge.stop()
        if redis is not None:
            redis.kill()


def _read(bridge: BridgeProcess, order_id: str):
    answer = bridge.post("getOrder", {"orderId": order_id})
    return answer.json()["order"] if answer.status_code == 200 else None  # a read the quota holds back: again
