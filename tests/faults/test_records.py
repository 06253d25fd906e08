"""The idempotency record itself: its key, its scope, stale or lost records, and a draft reused with another payload."""
from __future__ import annotations

import copy

import pytest

from tests.fakes.bigcommerce import FakeBigCommerce

from .support import fault_config, order_id, posts_to_orders, record_key, recorded, seed_record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bridge(start_bridges, shared_config):
    return start_bridges(shared_config)


def changed_quantity(body: dict) -> dict:
    changed = copy.deepcopy(body)
    changed["order"]["items"][0]["quantity"] += 4
    return changed


def namespace_keys(redis_client, config: dict) -> list[bytes]:
    return list(redis_client.scan_iter(match=f"{config['idempotency']['namespace']}:*"))


# ---------------------------------------------------------------------------------- the key (properties 1, 2)


def test_one_redis_keeps_two_stores_apart(start_bridges, fake, redis_url, place_body):
    """Two merchants on one Redis, default namespaces, the same draft id: one order in each store."""
    with FakeBigCommerce(store_hash="otherstore1") as other:
        configs = [fault_config(store, redis_url) for store in (fake, other)]
        for config in configs:
            del config["idempotency"]["namespace"]  # the default: bik-bridge:bigcommerce:<store hash>
        first = start_bridges(configs[0], "store-a").post("placeOrder", place_body)
        second_bridge = start_bridges(configs[1], "store-b")
        second = second_bridge.post("placeOrder", place_body)
        again = second_bridge.post("placeOrder", place_body)

        assert order_id(first) and order_id(second)
        assert (fake.create_count, other.create_count) == (1, 1)
        assert again.content == second.content and other.create_count == 1


@pytest.mark.parametrize("draft", [None, "", "   ", "x" * 10_240], ids=["missing", "empty", "blank", "10kB"])
def test_a_missing_or_absurd_draft_id_is_400_and_nothing_is_stored_or_sent(bridge, fake, place_body, redis_client,
                                                                          shared_config, draft):
    body = copy.deepcopy(place_body)
    if draft is None:
        del body["draftOrderId"]
    else:
        body["draftOrderId"] = draft
    before = namespace_keys(redis_client, shared_config)

    response = bridge.post("placeOrder", body)

    assert response.status_code == 400
    assert any(d["field"] == "draftOrderId" for d in response.json()["details"])
    assert fake.requests == []
    assert namespace_keys(redis_client, shared_config) == before


# ---------------------------------------------------------------------------- stale and lost (12, 14)


def test_a_stale_in_flight_record_is_taken_over_and_the_order_placed(bridge, fake, place_body, redis_client,
                                                                     shared_config):
    seed_record(redis_client, shared_config, place_body, state="in_flight", started_ago=600, lease_ago=300)

    response = bridge.post("placeOrder", place_body)

    assert order_id(response) == str(next(iter(fake.orders)))
    assert fake.create_count == 1


def test_a_stale_record_whose_order_landed_is_recovered_without_a_create(bridge, fake, place_body, redis_client,
                                                                         shared_config):
    landed = fake.add_order(external_source="Bik", external_order_id=place_body["draftOrderId"])
    seed_record(redis_client, shared_config, place_body, state="unknown", started_ago=600, lease_ago=300)

    response = bridge.post("placeOrder", place_body)

    assert order_id(response) == str(landed)
    assert fake.create_count == 0


def test_a_lost_record_neither_breaks_get_order_nor_makes_a_second_order(bridge, fake, place_body, redis_client,
                                                                         shared_config):
    placed = order_id(bridge.post("placeOrder", place_body))
    recorded(redis_client, shared_config, place_body["draftOrderId"])
    redis_client.delete(record_key(shared_config, place_body["draftOrderId"]))  # expired, evicted, or lost

    read = bridge.post("getOrder", {"orderId": placed})
    retried = bridge.post("placeOrder", place_body)

    assert read.status_code == 200 and read.json()["order"]["id"] == placed
    assert order_id(retried) == placed
    assert fake.create_count == 1 and posts_to_orders(fake) == 1
    recorded(redis_client, shared_config, place_body["draftOrderId"])


# ------------------------------------------------------------------------------------- payload mismatch (9)


def test_a_changed_payload_replays_the_first_order_under_the_replay_policy(bridge, fake, place_body):
    first = bridge.post("placeOrder", place_body)

    again = bridge.post("placeOrder", changed_quantity(place_body))

    assert again.status_code == 200 and again.content == first.content
    assert fake.create_count == 1


def test_a_changed_payload_is_422_under_the_reject_policy_and_never_creates(start_bridges, fake, redis_url,
                                                                             place_body):
    strict = start_bridges(fault_config(fake, redis_url, idempotency={"on_mismatch": "reject"}), "strict")
    first = strict.post("placeOrder", place_body)

    refused = strict.post("placeOrder", changed_quantity(place_body))
    same = strict.post("placeOrder", place_body)

    assert refused.status_code == 422 and "another payload" in refused.json()["error"]
    assert same.content == first.content
    assert fake.create_count == 1
