"""A worker killed between the store's create and the bridge's record of it; the reconciler that settles leftovers."""
from __future__ import annotations

import copy
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.waiting import wait_until

from .support import (
    LEASE_SECONDS,
    creates_sent,
    fault_config,
    kill_mid_create,
    lease_has_ended,
    log_entries,
    order_id,
    place_like_bik,
    posts_to_orders,
    record_key,
    run_reconcile,
    seed_record,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bridge(start_bridges, shared_config):
    return start_bridges(shared_config)


@pytest.fixture(scope="module")
def sqlite_bridge(start_bridges, bigcommerce_server, redis_url, tmp_path_factory):
    """One host, several workers, the SQLite store: the same guarantees without Redis."""
    path = tmp_path_factory.mktemp("sqlite") / "idempotency.db"
    config = fault_config(bigcommerce_server, redis_url, server={"workers": 3},
                          idempotency={"backend": "sqlite", "sqlite_path": str(path)})
    return start_bridges(config, "sqlite")


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_a_worker_killed_after_the_create_is_recovered_by_the_retry(request, fake, place_body, backend):
    bridge = request.getfixturevalue("bridge" if backend == "redis" else "sqlite_bridge")
    placed = kill_mid_create(bridge, fake, place_body)

    attempts = place_like_bik(bridge, place_body)

    assert order_id(attempts.final) == str(placed)
    assert all(r.status_code == 409 for r in attempts.interim)  # held off until the dead owner's lease ends
    assert fake.create_count == 1 and posts_to_orders(fake) == 1


def test_a_worker_killed_after_the_create_is_settled_by_the_reconciler(bridge, fake, place_body, redis_client,
                                                                        shared_config):
    draft = place_body["draftOrderId"]
    placed = kill_mid_create(bridge, fake, place_body)
    wait_until(lease_has_ended(redis_client, shared_config, draft), "the dead owner's lease to end",
               timeout=LEASE_SECONDS + 5)

    reconciled = run_reconcile(bridge)

    assert reconciled.code == 0, reconciled
    assert f"{draft}\trecorded\t{placed}" in reconciled.lines
    assert any(e.get("draftOrderId") == draft and e.get("decision") == "reconciled_found" for e in reconciled.logs)
    assert redis_client.hget(record_key(shared_config, draft), "state") == b"done"
    replay = bridge.post("placeOrder", place_body)
    assert order_id(replay) == str(placed)
    # The logs tell the story: one create sent for this draft, by the worker that died.
    assert creates_sent(log_entries(bridge), draft) == 1
    assert fake.create_count == 1 and posts_to_orders(fake) == 1


def test_reconcile_settles_leftovers_while_bik_retries_the_same_drafts(bridge, fake, place_body, redis_client,
                                                                       shared_config):
    drafts = []
    for index in range(6):
        body = copy.deepcopy(place_body)
        body["draftOrderId"] = body["order"]["id"] = f"nb_rec_{uuid.uuid4().hex[:8]}_{index}"
        if index % 2 == 0:  # a crashed owner's create that did land
            fake.add_order(external_source="Bik", external_order_id=body["draftOrderId"])
        seed_record(redis_client, shared_config, body, state="unknown" if index < 3 else "in_flight",
                    started_ago=60, lease_ago=30)
        drafts.append(body)
    seeded = {order.header["external_order_id"]: str(oid) for oid, order in fake.orders.items()}

    fake.latency_ms = 60  # a slow store keeps the sweep going while Bik's retries arrive
    with ThreadPoolExecutor(max_workers=len(drafts) + 1) as pool:
        sweep = pool.submit(run_reconcile, bridge, 10)
        wait_until(lambda: len(fake.requests) > 0 or sweep.done(), "the sweep to reach the store")
        retries = list(pool.map(lambda body: place_like_bik(bridge, body), drafts))
        reconciled = sweep.result()

    assert reconciled.code == 0, reconciled
    settled_by_sweep = [line.split("\t") for line in reconciled.lines[:-1]]
    assert settled_by_sweep, reconciled.lines  # the sweep settled at least the record it was on
    for draft, action, *_order in settled_by_sweep:
        assert action == ("recorded" if draft in seeded else "released"), (draft, action)
    orders_by_draft: dict[str, list[int]] = {}
    for oid, order in fake.orders.items():
        orders_by_draft.setdefault(order.header["external_order_id"], []).append(oid)
    for body, attempts in zip(drafts, retries, strict=True):
        draft = body["draftOrderId"]
        assert len(orders_by_draft[draft]) == 1, draft  # exactly one order per draft, whoever settled it
        assert order_id(attempts.final) == str(orders_by_draft[draft][0])
        if draft in seeded:
            assert order_id(attempts.final) == seeded[draft]
    assert fake.create_count == 3


def test_reconcile_with_nothing_to_do_says_so(bridge, fake):
    reconciled = run_reconcile(bridge, 3600)

    assert reconciled.code == 0
    assert reconciled.lines == ["reconcile: nothing to settle"]
    assert fake.requests == []
