"""getOrder answers shared through Redis: one worker's answer serves every other for a few seconds."""
from __future__ import annotations

import uuid

import pytest

from adapters.stores.redis_freshness import RedisFreshness, fresh_key
from adapters.stores.redis_optional import FALLBACK_SECONDS
from tests.support.waiting import wait_until

from .conftest import redis_url
from .test_redis_quota import CountingClient

pytestmark = pytest.mark.redis


@pytest.fixture
def namespace(redis_admin):
    namespace = f"bik-bridge-test:{uuid.uuid4().hex}"
    yield namespace
    for name in redis_admin.scan_iter(match=f"{namespace}|fresh:*"):
        redis_admin.delete(name)


def test_an_answer_one_process_kept_is_served_to_another(namespace):
    one, other = (RedisFreshness.from_url(redis_url(), namespace, 30) for _ in range(2))

    assert other.get("118") is None
    one.put("118", b'{"order": {"id": "118"}}')

    assert other.get("118") == b'{"order": {"id": "118"}}'
    assert other.get("119") is None


def test_an_answer_is_one_key_per_order_that_expires_with_the_cache_seconds(namespace, redis_admin):
    cache = RedisFreshness.from_url(redis_url(), namespace, 0.2)
    cache.put("118", b"first")

    assert 0 < redis_admin.pttl(fresh_key(namespace, "118")) <= 200
    assert not redis_admin.keys(f"{namespace}:*")  # nothing among the idempotency records the reconciler scans
    wait_until(lambda: cache.get("118") is None, "the answer to expire", timeout=5, every=0.05)


def test_without_redis_nothing_is_served_and_redis_is_asked_again_later():
    now = [100.0]
    client = CountingClient("redis://127.0.0.1:1/0")  # nothing listens there: every connection is refused
    cache = RedisFreshness(client.client, "nowhere", 30, clock=lambda: now[0])

    cache.put("118", b"answer")
    assert cache.get("118") is None
    assert client.connects == 1  # after one failure the platform answers alone for a moment
    now[0] += FALLBACK_SECONDS
    assert cache.get("118") is None
    assert client.connects == 2


@pytest.mark.parametrize("seconds, namespace", [(0, "ns"), (-1, "ns"), (5, "")])
def test_a_cache_that_could_hold_nothing_is_refused(seconds, namespace):
    with pytest.raises(ValueError):
        RedisFreshness(object(), namespace, seconds)


def test_on_a_redis_cluster_each_order_key_is_routed_alone(redis_cluster):
    """One key per command: ids that would be hash tags, or spread over every slot, are kept and read back."""
    namespace = f"bik-bridge-test:{uuid.uuid4().hex}"
    cache, other = (RedisFreshness.from_url(redis_cluster.url, namespace, 30) for _ in range(2))
    ids = [str(n) for n in range(100, 140)] + ["{tag}", "a{b}c", "{}"]
    for order_id in ids:
        cache.put(order_id, order_id.encode())

    assert [other.get(order_id) for order_id in ids] == [order_id.encode() for order_id in ids]
