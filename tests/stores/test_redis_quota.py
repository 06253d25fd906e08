"""The platform's quota shared through Redis: the rules of LocalQuota, one state for every process of a store."""
from __future__ import annotations

import time
import uuid

import pytest
import redis

from adapters.stores.redis_quota import FALLBACK_SECONDS, RedisQuota
from adapters.stores.redis_store import RedisIdempotencyStore
from bridge.upstream import POLL_SECONDS

from .conftest import redis_url

pytestmark = pytest.mark.redis


@pytest.fixture
def key(redis_admin):
    namespace = f"bik-bridge-test:{uuid.uuid4().hex}"
    yield f"{namespace}|ratelimit"
    redis_admin.delete(f"{namespace}|ratelimit")


def quota_at(key: str) -> RedisQuota:
    return RedisQuota.from_url(redis_url(), key)


def wait_until_unblocked(quota: RedisQuota, limit: float = 5.0) -> None:
    end = time.monotonic() + limit
    while quota.blocked_for() > 0:
        assert time.monotonic() < end, "the quota never reset"
        time.sleep(0.01)


def test_an_unknown_quota_lets_everything_through(key):
    quota = quota_at(key)
    assert [quota.reserve() for _ in range(20)] == [0.0] * 20
    assert quota.blocked_for() == 0


def test_slots_are_shared_by_every_process_of_the_store(key):
    one, other = quota_at(key), quota_at(key)
    one.learn(10.0, 3, limited=False)

    assert [one.reserve(), other.reserve(), one.reserve()] == [0.0, 0.0, 0.0]
    assert other.reserve() == pytest.approx(10.0, abs=0.1)
    assert one.blocked_for() == pytest.approx(10.0, abs=0.1)


def test_a_429_seen_by_one_process_holds_back_all_then_one_probes(key):
    one, other = quota_at(key), quota_at(key)
    one.learn(0.05, None, limited=True)
    assert other.reserve() > 0

    wait_until_unblocked(other)
    assert other.reserve() == 0.0  # the probe
    assert 0 < one.reserve() <= POLL_SECONDS  # waits for the probe's answer
    other.learn(10.0, 1, limited=False)
    assert one.reserve() == 0.0
    assert one.reserve() == pytest.approx(10.0, abs=0.1)


def test_a_late_answer_from_a_finished_window_does_not_add_slots(key):
    quota = quota_at(key)
    quota.learn(10.0, 1, limited=False)
    quota.learn(0.5, 40, limited=False)  # ends long before the window in force: an older window's answer

    assert quota.reserve() == 0.0
    assert quota.reserve() > 0


def test_the_state_expires_and_stays_out_of_the_record_keys(key, redis_admin):
    quota = quota_at(key)
    quota.learn(2.0, 5, limited=False)

    assert 0 < redis_admin.pttl(key) <= 2_000 + 60_000 + 100
    namespace = key.split("|")[0]
    store = RedisIdempotencyStore.from_url(redis_url(), namespace=namespace, ttl_seconds=3600)
    assert store.unsettled(0) == []  # the reconciler's sweep never meets it
    assert store.get("ratelimit") is None


class DownClient:
    """Stands in for a Redis client whose server is gone: every script call fails, and is counted."""

    def __init__(self) -> None:
        self.calls = 0

    def register_script(self, source: str):
        def call(**_kwargs):
            self.calls += 1
            raise redis.ConnectionError("Connection refused")
        return call


def test_without_redis_each_process_paces_alone_and_asks_redis_again_later():
    now = [100.0]
    client = DownClient()
    quota = RedisQuota(client, "nowhere|ratelimit", clock=lambda: now[0])

    assert quota.reserve() == 0.0
    quota.learn(10.0, 1, limited=False)
    assert quota.reserve() == 0.0
    assert quota.reserve() == pytest.approx(10.0, abs=0.1)
    assert client.calls == 1  # after one failure it stops asking for a while
    now[0] += FALLBACK_SECONDS
    quota.reserve()
    assert client.calls == 2
