"""The platform's quota shared through Redis: the rules of LocalQuota, one state for every process of a store."""
from __future__ import annotations

import time
import uuid

import pytest
import redis

from adapters.stores.redis_quota import FALLBACK_SECONDS, RedisQuota
from adapters.stores.redis_store import RedisIdempotencyStore
from bridge.upstream.quota import FIRST_CONTACT, FIRST_CONTACT_POLL_SECONDS, RESET_MARGIN_SECONDS, QuotaNews, spread

from .conftest import redis_url

pytestmark = pytest.mark.redis

BIGCOMMERCE = QuotaNews(quota=3, window=10.0)


@pytest.fixture
def key(redis_admin):
    namespace = f"bik-bridge-test:{uuid.uuid4().hex}"
    yield f"{namespace}|ratelimit"
    redis_admin.delete(f"{namespace}|ratelimit", f"{namespace}|ratelimit|sent")


def quota_at(key: str) -> RedisQuota:
    return RedisQuota.from_url(redis_url(), key)


class CountingClient:
    """A real client that counts the script calls made through it."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.calls = 0

    def register_script(self, source: str):
        script = self.client.register_script(source)

        def call(**kwargs):
            self.calls += 1
            return script(**kwargs)
        return call


def test_until_a_quota_is_announced_the_store_takes_a_few_requests_a_second(key):
    one, other = quota_at(key), quota_at(key)
    first, _ = FIRST_CONTACT

    assert [q.reserve() for q in (one, other) * (first // 2)] == [0.0] * first
    assert 0 < one.reserve() <= FIRST_CONTACT_POLL_SECONDS  # asks again soon: the announcement may be on its way
    assert one.blocked_for() == 0
    other.learn(BIGCOMMERCE)
    assert one.reserve() == pytest.approx(10.0 + spread(10.0), abs=0.1)  # the four count against the quota of 3


def test_the_quota_is_shared_by_every_process_of_the_store(key):
    one, other = quota_at(key), quota_at(key)
    one.learn(BIGCOMMERCE)

    assert [one.reserve(), other.reserve(), one.reserve()] == [0.0, 0.0, 0.0]
    assert other.reserve() == pytest.approx(10.0 + spread(10.0), abs=0.1)


def test_an_answer_that_says_what_the_store_knows_costs_no_call(key, redis_admin):
    counting = CountingClient(redis.Redis.from_url(redis_url()))
    quota = RedisQuota(counting, key)
    quota.reserve()
    quota.learn(BIGCOMMERCE)  # the first announcement: written
    calls = counting.calls

    for _ in range(2):
        quota.reserve()
        quota.learn(BIGCOMMERCE)

    assert counting.calls == calls + 2  # the two reservations, no learning
    other = quota_at(key)
    other.learn(QuotaNews(quota=5, window=10.0))  # the plan changed, as another process heard
    quota.reserve()
    quota.learn(QuotaNews(quota=5, window=10.0))
    assert counting.calls == calls + 3  # the reservation brought the news along


def test_an_answer_without_quota_headers_leaves_the_store_unmetered(key):
    quota = quota_at(key)
    quota.reserve()
    quota.learn(QuotaNews())
    assert [quota.reserve() for _ in range(50)] == [0.0] * 50


def test_a_429_seen_by_one_process_holds_back_all_until_the_reset(key):
    one, other = quota_at(key), quota_at(key)
    one.learn(BIGCOMMERCE)
    one.learn(QuotaNews(spent_for=0.2, limited=True))

    assert other.reserve() == pytest.approx(0.2 + RESET_MARGIN_SECONDS, abs=0.05)
    assert other.blocked_for() == pytest.approx(0.2 + RESET_MARGIN_SECONDS, abs=0.05)
    end = time.monotonic() + 5
    while other.blocked_for() > 0:
        assert time.monotonic() < end, "the quota never reset"
        time.sleep(0.01)
    assert other.reserve() == 0.0


def test_the_state_expires_and_stays_out_of_the_record_keys(key, redis_admin):
    quota = quota_at(key)
    quota.learn(BIGCOMMERCE)
    quota.reserve()

    assert 0 < redis_admin.pttl(key)
    assert 0 < redis_admin.pttl(f"{key}|sent") <= (10.0 + spread(10.0)) * 1000 + 1000
    namespace = key.split("|")[0]
    store = RedisIdempotencyStore.from_url(redis_url(), namespace=namespace, ttl_seconds=3600)
    assert store.unsettled(0) == []  # the reconciler's sweep never meets it
    assert store.get("ratelimit") is None


def test_warm_up_loads_the_scripts_and_a_missing_redis_is_no_error(key, redis_admin):
    quota = quota_at(key)
    redis_admin.script_flush()

    quota.warm_up()

    assert redis_admin.script_exists(quota._reserve.sha, quota._learn.sha, quota._blocked.sha) == [True] * 3
    RedisQuota.from_url("redis://127.0.0.1:1/0", key).warm_up()  # no Redis: pacing falls back to the process


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
    quota.learn(QuotaNews(quota=2, window=10.0))
    assert quota.reserve() == 0.0
    assert quota.reserve() == pytest.approx(10.0 + spread(10.0), abs=0.1)
    assert client.calls == 1  # after one failure it stops asking for a while
    now[0] += FALLBACK_SECONDS
    quota.reserve()
    assert client.calls == 2
