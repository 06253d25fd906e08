"""Safe by default: the lookup before create is on, the lease outlasts the budget, and `serve` names each risk."""
from __future__ import annotations

import os
import uuid

import pytest
import redis

from bridge.bootstrap import build_store, durability_warnings, load_config, parse_config
from bridge.core.errors import ConfigError

REDIS_URL = os.environ.get("BIK_BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def config(**idempotency):
    return parse_config({"idempotency": {"namespace": f"test:{uuid.uuid4().hex}", **idempotency}})


def warnings_of(config):
    """The start-up warnings, asked of the store the composition root builds, as a worker asks its own."""
    store = build_store(config)
    try:
        return durability_warnings(config, store)
    finally:
        store.close()


def test_serve_without_a_config_looks_every_draft_up_before_creating():
    assert load_config(None, environ={}).idempotency.lookup_before_create is True


@pytest.mark.parametrize("grace", [0, -1])
def test_a_lease_no_longer_than_the_budget_is_refused(grace):
    with pytest.raises(ConfigError, match="idempotency.lease_grace_seconds"):
        parse_config({"idempotency": {"lease_grace_seconds": grace}})


def test_sqlite_with_the_lookup_on_needs_no_warning(tmp_path):
    assert warnings_of(config(sqlite_path=str(tmp_path / "i.db"))) == []


def test_the_lookup_turned_off_is_named_with_what_it_risks(tmp_path):
    warnings = warnings_of(config(sqlite_path=str(tmp_path / "i.db"), lookup_before_create=False))

    assert len(warnings) == 1
    assert "lookup_before_create is false" in warnings[0] and "second order" in warnings[0]


@pytest.mark.redis
def test_each_way_the_real_redis_could_lose_records_is_named_with_its_cost():
    """Every risk the server's INFO shows becomes a line saying what it costs with the lookup on and off."""
    admin = redis.Redis.from_url(REDIS_URL)
    aof = admin.info("persistence")["aof_enabled"]
    admin.close()

    on = warnings_of(config(backend="redis", redis_url=REDIS_URL))
    off = warnings_of(config(backend="redis", redis_url=REDIS_URL, lookup_before_create=False))

    assert all(w.startswith("Redis: ") and "costs a read, not a second order" in w for w in on)
    assert any("restart forgets" in w for w in on) is (not aof)
    assert len(off) == len(on) + 1 and all("SECOND order" in w for w in off[:-1])


def test_the_old_thread_count_is_refused_with_what_replaced_it():
    """A key that would load and do nothing is refused, naming the key that took its place."""
    with pytest.raises(ConfigError, match="server.worker_connections"):
        parse_config({"server": {"threads": 16}})
