"""What only the Redis store promises: its key layout, failure translation and recovery."""
from __future__ import annotations

import uuid

import pytest
import redis

from adapters.stores import RedisIdempotencyStore
from adapters.stores.redis_store import SCAN_BATCH, durability_risks
from bridge.core.errors import StoreUnavailable
from bridge.core.ports import ClaimOutcome, RecordState

from .conftest import TTL_SECONDS, redis_url

UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_store(redis_backend):
    return redis_backend.store()


def _every_call(store):
    return {
        "claim": lambda: store.claim("d-1", "fp", 30),
        "complete": lambda: store.complete("d-1", "t" * 32, "order-1", b"x"),
        "mark_unknown": lambda: store.mark_unknown("d-1", "t" * 32),
        "release": lambda: store.release("d-1", "t" * 32),
        "get": lambda: store.get("d-1"),
        "unsettled": lambda: store.unsettled(0),
        "ping": lambda: store.ping(),
        "warm_up": lambda: store.warm_up(),
    }


@pytest.mark.parametrize("method", list(_every_call(None)))
def test_unreachable_redis_raises_store_unavailable(method):
    store = RedisIdempotencyStore.from_url(UNREACHABLE, namespace="ns", ttl_seconds=TTL_SECONDS, socket_timeout=0.5)

    with pytest.raises(StoreUnavailable) as raised:
        _every_call(store)[method]()

    assert isinstance(raised.value.__cause__, redis.RedisError)
    assert raised.value.status == 503
    store.close()


def test_record_is_a_hash_under_the_namespace_with_server_time(redis_store, redis_admin):
    before = redis_admin.time()
    claim = redis_store.claim("d-1", "fp", 30)
    after = redis_admin.time()

    name = f"{redis_store.namespace}:d-1"
    assert redis_store.redis_key("d-1") == name
    assert redis_admin.type(name) == b"hash"
    fields = redis_admin.hgetall(name)
    assert fields[b"state"] == b"in_flight" and fields[b"token"] == claim.token.encode()
    assert 0 < redis_admin.ttl(name) <= TTL_SECONDS
    # Stamped by the server's clock: between its readings just before and just after the claim.
    assert before <= divmod(round(claim.record.started_at * 1e6), 1_000_000) <= after


def test_scripts_survive_script_flush(redis_store, redis_admin):
    claim = redis_store.claim("d-1", "fp", 30)
    redis_admin.script_flush()

    assert redis_store.complete("d-1", claim.token, "order-1", b"body") is True
    redis_admin.script_flush()
    assert redis_store.claim("d-1", "fp", 30).outcome is ClaimOutcome.DONE


def test_store_reconnects_after_its_connection_is_dropped(redis_store, redis_admin):
    # A server restart closes every client connection; killing ours has the same effect on the client.
    old_id = redis_store.client.client_id()
    assert redis_admin.client_kill_filter(_id=old_id) == 1

    claim = redis_store.claim("d-1", "fp", 30)

    assert claim.outcome is ClaimOutcome.NEW
    assert redis_store.get("d-1") == claim.record
    assert redis_store.client.client_id() != old_id


def test_stores_sharing_a_client_stay_apart_and_leave_it_open(redis_admin):
    client = redis.Redis.from_url(redis_url())
    base = f"bik-bridge-test:{uuid.uuid4().hex}"
    first = RedisIdempotencyStore(client, namespace=f"{base}:a", ttl_seconds=TTL_SECONDS)
    second = RedisIdempotencyStore(client, namespace=f"{base}:b", ttl_seconds=TTL_SECONDS)
    try:
        assert first.claim("d-1", "fp", 30).outcome is ClaimOutcome.NEW
        assert second.claim("d-1", "fp", 30).outcome is ClaimOutcome.NEW
        first.close()
        assert client.ping()
    finally:
        names = list(redis_admin.scan_iter(match=f"{base}:*"))
        if names:
            redis_admin.delete(*names)
        client.close()


def test_unsettled_treats_namespace_literally(redis_backend):
    base = f"bik-bridge-test:{uuid.uuid4().hex}"
    starred, plain = redis_backend.store(f"{base}:a*"), redis_backend.store(f"{base}:ab")
    starred.claim("k", "fp", 0)
    plain.claim("k", "fp", 0)

    assert [(record.key, record.state) for record in starred.unsettled(0)] == [("k", RecordState.IN_FLIGHT)]
    assert len(plain.unsettled(0)) == 1


def test_unsettled_walks_more_keys_than_one_batch(redis_store):
    count = SCAN_BATCH * 2 + 7
    for index in range(count):
        redis_store.claim(f"d-{index}", "fp", 0)
    redis_store.claim("live", "fp", 30)

    keys = {record.key for record in redis_store.unsettled(0)}

    assert keys == {f"d-{index}" for index in range(count)}


def test_client_decoding_responses_is_refused():
    client = redis.Redis.from_url(redis_url(), decode_responses=True)
    try:
        with pytest.raises(ValueError):
            RedisIdempotencyStore(client, namespace="ns", ttl_seconds=TTL_SECONDS)
    finally:
        client.close()


def test_warm_up_loads_every_script_so_the_first_claim_finds_it(redis_store, redis_admin):
    redis_admin.script_flush()

    redis_store.warm_up()

    shas = [redis_store._claim.sha, redis_store._complete.sha, redis_store._mark_unknown.sha,
            redis_store._release.sha]
    assert redis_admin.script_exists(*shas) == [True] * 4


@pytest.mark.parametrize(
    ("info", "save", "risks"),
    [
        ({"aof_enabled": 1, "maxmemory_policy": "noeviction"}, "", []),
        ({"aof_enabled": 0, "maxmemory_policy": "noeviction"}, "", ["memory only"]),
        ({"aof_enabled": 0, "maxmemory_policy": "noeviction"}, "3600 1", ["since its last snapshot"]),
        ({"aof_enabled": 0, "maxmemory_policy": "noeviction"}, None, ["since its last snapshot"]),
        ({"aof_enabled": 1, "maxmemory_policy": "volatile-lru"}, "", ["volatile-lru"]),
        ({"aof_enabled": 1, "maxmemory_policy": "allkeys-lru"}, "", ["allkeys-lru"]),
        ({"aof_enabled": 0, "maxmemory_policy": "volatile-ttl"}, "", ["memory only", "volatile-ttl"]),
        ({}, None, []),  # a Redis that will not say
    ],
)
def test_durability_risks_table(info, save, risks):
    """Only AOF keeps every record over a restart, and only noeviction keeps records that carry a TTL."""
    found = durability_risks(info, save)
    assert len(found) == len(risks)
    for line, expected in zip(found, risks):
        assert expected in line


def test_durability_risks_read_the_real_server(redis_store, redis_admin):
    """The store reads INFO and CONFIG from the server it uses."""
    aof = redis_admin.info("persistence")["aof_enabled"]
    policy = redis_admin.info("memory")["maxmemory_policy"]
    save = redis_admin.config_get("save")["save"]

    assert redis_store.durability_risks() == durability_risks({"aof_enabled": aof, "maxmemory_policy": policy}, save)


def test_a_redis_that_lost_its_records_says_when_it_began_again(redis_store, redis_admin):
    """Workers mark it at start (0: from before them); found without the mark, Redis began again just now."""
    redis_store.warm_up()
    assert redis_store.memory_began() == 0.0

    redis_admin.delete(f"{redis_store.namespace}|memory")  # a restart without persistence, a FLUSHALL
    seconds, micros = redis_admin.time()
    began = redis_store.memory_began()

    assert seconds + micros / 1e6 <= began <= seconds + micros / 1e6 + 5
    assert redis_store.memory_began() == began  # kept: the first moment it was found empty
    redis_admin.delete(f"{redis_store.namespace}|memory")


def test_a_new_claim_reads_when_redis_began_holding_records(redis_store, redis_admin):
    """On one server the claim answers the memory marker itself, as `memory_began` would: no second round trip."""
    redis_store.warm_up()
    assert redis_store.claim("d-1", "fp", 60).memory_began == 0.0

    redis_admin.delete(f"{redis_store.namespace}|memory")  # records lost
    claim = redis_store.claim("d-2", "fp", 60)
    assert claim.memory_began == claim.now == redis_store.memory_began()
    assert redis_store.claim("d-2", "fp", 60).memory_began is None  # only a new claim reads it
    redis_admin.delete(f"{redis_store.namespace}|memory")


def test_on_a_cluster_a_new_claim_leaves_the_memory_marker_to_its_own_call(redis_cluster):
    store = RedisIdempotencyStore.from_url(redis_cluster.url, namespace=f"bik-bridge-test:{uuid.uuid4().hex}",
                                           ttl_seconds=60)
    store.warm_up()
    claim = store.claim("d-1", "fp", 60)
    assert claim.outcome is ClaimOutcome.NEW and claim.memory_began is None
    assert store.memory_began() == 0.0


def test_behind_a_proxy_that_refuses_two_slots_the_claim_leaves_the_marker_to_its_own_call(redis_store):
    """A sharding proxy behind one `redis://` endpoint refuses a script naming keys of two slots before running it:
    the claim is made again with the record alone, and the marker is asked for separately from then on."""
    real, calls = redis_store._claim, []

    def proxied(keys, args, client=None):
        calls.append(len(keys))
        if len(keys) > 1:
            raise redis.exceptions.ResponseError("CROSSSLOT Keys in request don't hash to the same slot")
        return real(keys=keys, args=args, client=client)

    redis_store.warm_up()
    redis_store._claim = proxied
    first, second = redis_store.claim("d-1", "fp", 60), redis_store.claim("d-2", "fp", 60)

    assert (first.outcome, second.outcome) == (ClaimOutcome.NEW, ClaimOutcome.NEW)
    assert first.memory_began is None and calls == [2, 1, 1]
    assert redis_store.memory_began() == 0.0


def test_a_replacement_worker_does_not_vouch_for_records_a_restart_may_have_lost(redis_store, redis_admin):
    """Redis restarted empty a moment ago while other workers' creates may be on their way: a worker replacing a
    dead one leaves the marker missing, so the next new claim finds the records lost and holds."""
    redis_admin.delete(f"{redis_store.namespace}|memory")
    redis_store.warm_up(first_start=False)
    assert redis_admin.get(f"{redis_store.namespace}|memory") is None

    claim = redis_store.claim("d-1", "fp", 60)
    assert claim.memory_began == claim.now  # a budget of holding starts now
    redis_store.warm_up(first_start=True)  # an instance starting later changes nothing
    assert redis_store.memory_began() == claim.now
    redis_admin.delete(f"{redis_store.namespace}|memory")
