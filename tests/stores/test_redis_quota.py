"""The platform's quota shared through Redis: the rules LocalQuota applies, one ledger for every process of a store."""
from __future__ import annotations

import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from adapters.stores.redis_optional import FALLBACK_SECONDS
from adapters.stores.redis_quota import RedisQuota, quota_keys
from adapters.stores.redis_store import RedisIdempotencyStore
from bridge.upstream.quota import (
    FIRST_CONTACT,
    FIRST_CONTACT_POLL_SECONDS,
    RESET_MARGIN_SECONDS,
    UNMETERED,
    Ledger,
    QuotaNews,
    spread,
    take_slot,
)
from tests.chaos.processes import ChaosRedis
from tests.support.waiting import wait_until

from .conftest import redis_url

pytestmark = pytest.mark.redis

BIGCOMMERCE = QuotaNews(quota=3, window=10.0)
# A reservation is one script: it reads the ledger, decides and logs the send in one round trip.
RESERVE_ROUND_TRIPS = 1


@pytest.fixture
def key(redis_admin):
    namespace = f"bik-bridge-test:{uuid.uuid4().hex}"
    yield f"{namespace}|ratelimit"
    redis_admin.delete(*quota_keys(f"{namespace}|ratelimit"))


def quota_at(key: str) -> RedisQuota:
    return RedisQuota.from_url(redis_url(), key)


def server_now(admin: redis.Redis) -> float:
    """Redis's own clock, the one the shared quota reads: a wait is checked against it, not against a tolerance."""
    seconds, micros = admin.time()
    return seconds + micros / 1e6


def within(wait: float, full: float, since: float, admin: redis.Redis) -> bool:
    """Whether `wait` is the `full` wait less at most what Redis's clock counted since `since` (to the microsecond)."""
    return full - (server_now(admin) - since) - 1e-6 <= wait <= full


class CountingClient:
    """A real client counting its connections made, the times they were asked to connect, and round trips."""

    def __init__(self, url: str) -> None:
        self.calls = 0  # round trips
        self.connects = 0
        self.made = 0
        counter = self

        class CountingConnection(redis.Connection):
            def connect(self, *args, **kwargs):
                counter.connects += 1
                return super().connect(*args, **kwargs)

            def __init__(self, *args, **kwargs):
                counter.made += 1
                super().__init__(*args, **kwargs)

            def send_packed_command(self, command, check_health=True):
                counter.calls += 1
                return super().send_packed_command(command, check_health)

        self.client = redis.Redis.from_url(url, connection_class=CountingConnection, socket_connect_timeout=0.5,
                                           socket_timeout=0.5, retry=Retry(NoBackoff(), 0))


def test_until_a_quota_is_announced_the_store_takes_a_few_requests_a_second(key, redis_admin):
    one, other = quota_at(key), quota_at(key)
    first, _ = FIRST_CONTACT
    started = server_now(redis_admin)

    assert [q.reserve() for q in (one, other) * (first // 2)] == [0.0] * first
    assert 0 < one.reserve() <= FIRST_CONTACT_POLL_SECONDS  # asks again soon: the announcement may be on its way
    assert one.blocked_for() == 0
    other.learn(BIGCOMMERCE)
    # The four count against the quota of 3.
    assert within(one.reserve(), 10.0 + spread(10.0), started, redis_admin)


def test_the_quota_is_shared_by_every_process_of_the_store(key, redis_admin):
    one, other = quota_at(key), quota_at(key)
    one.learn(BIGCOMMERCE)
    started = server_now(redis_admin)

    assert [one.reserve(), other.reserve(), one.reserve()] == [0.0, 0.0, 0.0]
    assert within(other.reserve(), 10.0 + spread(10.0), started, redis_admin)


def test_an_answer_that_says_what_the_store_knows_costs_no_call(key, redis_admin):
    counting = CountingClient(redis_url())
    quota = RedisQuota(counting.client, key)
    quota.reserve()
    quota.learn(BIGCOMMERCE)  # the first announcement: written
    calls = counting.calls

    for _ in range(2):
        quota.reserve()
        quota.learn(BIGCOMMERCE)

    assert counting.calls == calls + 2 * RESERVE_ROUND_TRIPS  # the two reservations, no learning
    other = quota_at(key)
    other.learn(QuotaNews(quota=5, window=10.0))  # the plan changed, as another process heard
    quota.reserve()
    quota.learn(QuotaNews(quota=5, window=10.0))
    # The reservation brought the news along.
    assert counting.calls == calls + 3 * RESERVE_ROUND_TRIPS


def test_an_answer_without_quota_headers_leaves_the_store_unmetered(key):
    quota = quota_at(key)
    quota.reserve()
    quota.learn(QuotaNews())
    assert [quota.reserve() for _ in range(50)] == [0.0] * 50


def test_a_429_seen_by_one_process_holds_back_all_until_the_reset(key, redis_admin):
    one, other = quota_at(key), quota_at(key)
    one.learn(BIGCOMMERCE)
    started = server_now(redis_admin)
    one.learn(QuotaNews(spent_for=0.2, limited=True))

    assert within(other.reserve(), 0.2 + RESET_MARGIN_SECONDS, started, redis_admin)
    assert within(other.blocked_for(), 0.2 + RESET_MARGIN_SECONDS, started, redis_admin)
    wait_until(lambda: other.blocked_for() == 0, "the quota to reset", timeout=5, every=0.01)
    assert other.reserve() == 0.0


def test_the_state_expires_and_stays_out_of_the_record_keys(key, redis_admin):
    quota = quota_at(key)
    quota.learn(BIGCOMMERCE)
    quota.reserve()

    state_key, log_key = quota_keys(key)
    assert 0 < redis_admin.pttl(state_key)
    assert 0 < redis_admin.pttl(log_key) <= (10.0 + spread(10.0)) * 1000 + 1000
    namespace = key.split("|")[0]
    store = RedisIdempotencyStore.from_url(redis_url(), namespace=namespace, ttl_seconds=3600)
    assert store.unsettled(0) == []  # the reconciler's sweep never meets it
    assert store.get("ratelimit") is None


def test_warm_up_opens_the_connection_the_first_request_uses_and_a_missing_redis_is_no_error(key):
    counting = CountingClient(redis_url())
    quota = RedisQuota(counting.client, key)

    quota.warm_up()
    assert counting.made == 1 and counting.calls > 0
    assert quota.reserve() == 0.0
    assert counting.made == 1  # the first request found the connection open
    RedisQuota.from_url("redis://127.0.0.1:1/0", key).warm_up()  # no Redis: pacing falls back to the process


def test_the_next_requests_slot_is_logged_the_spread_after_the_first(key, redis_admin):
    """Shared, as in one process: logged at the latest time it may be used, it never counts for less than W."""
    quota = quota_at(key)
    quota.learn(QuotaNews(quota=3, window=10.0))

    assert quota.reserve_with_next() == (0.0, pytest.approx(spread(10.0)))
    (_, first), (_, second) = redis_admin.zrange(quota_keys(key)[1], 0, -1, withscores=True)
    assert second - first == pytest.approx(spread(10.0) * 1e6, abs=1)
    assert quota.reserve_with_next() == (0.0, 0.0)  # one slot was left: none for a next request


def test_without_redis_each_process_paces_alone_and_asks_redis_again_later():
    now = [100.0]
    client = CountingClient("redis://127.0.0.1:1/0")  # nothing listens there: every connection is refused
    quota = RedisQuota(client.client, "nowhere|ratelimit", clock=lambda: now[0])

    assert quota.reserve() == 0.0
    quota.learn(QuotaNews(quota=2, window=10.0))
    assert quota.reserve() == 0.0
    assert quota.reserve() == pytest.approx(10.0 + spread(10.0), abs=0.1)
    assert client.connects == 1  # after one failure it stops asking for a while
    now[0] += FALLBACK_SECONDS
    quota.reserve()
    assert client.connects == 2


def test_sends_made_while_redis_was_away_join_the_shared_log_when_it_answers_again(tmp_path):
    """Another process, back on the shared log, must count what this one sent alone: the window received it."""
    now = [100.0]
    server = ChaosRedis(tmp_path)  # a redis-server of the test's own, started only later: away at first
    client = redis.Redis(port=server.port, socket_connect_timeout=0.2, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    alone = RedisQuota(client, "back|ratelimit", clock=lambda: now[0])
    alone.learn(QuotaNews(quota=3, window=10.0))
    assert alone.reserve() == 0.0 and alone.reserve() == 0.0  # paced alone: two sends the shared log missed
    server.start()
    try:
        now[0] += FALLBACK_SECONDS
        assert alone.reserve() == 0.0  # Redis again: the two sends are logged first, then this one
        other = RedisQuota(redis.Redis(port=server.port), "back|ratelimit")
        other.learn(QuotaNews(quota=3, window=10.0))

        assert other.reserve() > 0  # three sends in the window: none left for the other process
        assert server.client().zcard(quota_keys("back|ratelimit")[1]) == 3
    finally:
        server.kill()


def test_on_a_redis_cluster_every_process_shares_one_quota(redis_cluster, caplog):
    """Both keys of a quota share a slot, so the transaction runs on the cluster: no process falls back alone."""
    key = f"bik-bridge-test:{uuid.uuid4().hex}|ratelimit"
    processes = [RedisQuota.from_url(redis_cluster.url, key) for _ in range(3)]
    processes[0].learn(QuotaNews(quota=5, window=30.0))

    with caplog.at_level("WARNING", logger="bik_bridge.ratelimit"):
        taken = [q.reserve() == 0.0 for q in processes * 4]

    assert taken.count(True) == 5
    assert not [r for r in caplog.records if "unavailable" in r.getMessage()]


def test_usage_counts_every_process_sends_of_the_last_window_against_the_shared_quota(key):
    """What the quota-used gauge shows: the shared log's sends within one window, whichever process sent them."""
    one, other = quota_at(key), quota_at(key)
    assert one.usage() is None  # nothing announced yet: no share to show

    one.learn(QuotaNews(quota=4, window=10.0))
    sent = [q.reserve() for q in (one, other, one)]

    assert sent == [0.0] * 3
    assert (other.usage().sent, other.usage().quota, other.usage().ratio) == (3, 4, 0.75)


def test_usage_without_redis_is_this_process_own():
    now = [100.0]
    quota = RedisQuota(CountingClient("redis://127.0.0.1:1/0").client, "nowhere|ratelimit", clock=lambda: now[0])
    quota.learn(QuotaNews(quota=2, window=10.0))
    quota.reserve()

    assert (quota.usage().sent, quota.usage().quota) == (1, 2)
    now[0] += 10.0
    assert quota.usage().sent == 0


def _write_ledger(admin: redis.Redis, key: str, ledger: Ledger, sends: list[float]) -> None:
    """Put a ledger in Redis as RedisQuota keeps it: the hash's fields and the send log's times."""
    state_key, log_key = quota_keys(key)
    admin.delete(state_key, log_key)
    if ledger.limit is not None:
        quota, window = ledger.limit
        admin.hset(state_key, mapping={"quota": quota, "window_us": round(window * 1e6)})
    if ledger.blocked_until:
        admin.hset(state_key, "blocked_until_us", round(ledger.blocked_until * 1e6))
    for n, sent in enumerate(sends):
        admin.zadd(log_key, {f"m{n}": round(sent * 1e6)})


@pytest.mark.parametrize("seed", range(60))
def test_the_reservation_script_decides_as_take_slot_does(key, redis_admin, seed):
    """The Lua reservation is `take_slot` again: on the same ledger it sends or waits alike, for as long, and takes
    the next request's slot too alike."""
    import random

    rng = random.Random(seed)
    now = server_now(redis_admin)
    limit = rng.choice([None, UNMETERED, (3, 10.0), (1, 2.0), (5, 30.0), (2, 10.0)])
    quota, window = limit if limit and limit != UNMETERED else FIRST_CONTACT
    span = window + spread(window)
    # Sends from just before now to two spans back, none within 0.2 s of the span's edge: the decision cannot flip
    # while the script runs a few milliseconds after `now`.
    sends = sorted(now - rng.uniform(0.2, rng.choice([0.6, 2 * span])) for _ in range(rng.randint(0, 6)))
    sends = [t for t in sends if abs(t - (now - span)) > 0.2]
    if rng.random() < 0.3:
        sends.append(now + rng.uniform(0.05, 0.4))  # a slot held for a next request, logged ahead of now
    blocked = now + rng.uniform(0.5, 3.0) if rng.random() < 0.2 else 0.0
    metered = limit != UNMETERED
    deciding = sends[-quota] if metered and 0 < quota <= len(sends) else None
    following = sends[1 - quota] if metered and 1 < quota <= len(sends) + 1 else None
    ledger = Ledger(limit, deciding, blocked, following)
    _write_ledger(redis_admin, key, ledger, sends)
    with_next = rng.random() < 0.5

    expected = take_slot(ledger, now, with_next)
    started = server_now(redis_admin)
    wait, next_for = quota_at(key).reserve_with_next() if with_next else (quota_at(key).reserve(), 0.0)

    if expected.wait == 0:
        assert wait == 0.0 and next_for == pytest.approx(expected.next_for, abs=1e-6)
        logged = redis_admin.zcard(quota_keys(key)[1])
        taken = 1 + (expected.next_for > 0)
        assert logged == (len([t for t in sends if t > now - span]) + taken if expected.logged else len(sends))
    elif limit is None and expected.wait == FIRST_CONTACT_POLL_SECONDS:
        assert wait == FIRST_CONTACT_POLL_SECONDS  # before an announcement: ask again soon, whatever the log says
        assert next_for == 0.0
    else:
        assert within(wait, expected.wait - (started - now), started, redis_admin)
        assert next_for == 0.0


def test_concurrent_reservations_never_take_more_than_the_quota(key):
    """Many processes asking at once: each slot is taken once, with no conflict to retry."""
    from concurrent.futures import ThreadPoolExecutor

    quota_at(key).learn(QuotaNews(quota=20, window=30.0))
    processes = [quota_at(key) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(lambda n: processes[n % 8].reserve(), range(200)))

    assert waits.count(0.0) == 20
