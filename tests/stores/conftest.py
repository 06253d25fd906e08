"""Fixtures running every store test against both backends, each test in its own namespace."""
from __future__ import annotations

import os
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import pytest
import redis

from adapters.stores import RedisIdempotencyStore, SqliteIdempotencyStore
from adapters.stores.redis_store import queue_keys

REDIS_URL_ENV = "BIK_BRIDGE_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
TTL_SECONDS = 3600


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS_URL)


@dataclass
class Backend:
    """Makes stores of one kind and inspects what they wrote, outside the port."""

    name: str
    make: Callable[[str], object]
    expiry: Callable[[object, str], float | None]  # seconds until the record's expiry, None if it has none
    made: list = field(default_factory=list)

    def store(self, namespace: str | None = None):
        store = self.make(namespace or f"bik-bridge-test:{uuid.uuid4().hex}")
        self.made.append(store)
        return store


@pytest.fixture(scope="session")
def redis_admin():
    """A plain client on the test database; a test run without Redis fails here, loudly."""
    client = redis.Redis.from_url(redis_url(), socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {redis_url()} does not answer ({exc}); set {REDIS_URL_ENV}", pytrace=False)
    yield client
    client.close()


def _literal(text: str) -> str:
    """`text` as a glob pattern matching only itself."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _redis_backend(admin: redis.Redis) -> Backend:
    def make(namespace: str) -> RedisIdempotencyStore:
        return RedisIdempotencyStore.from_url(redis_url(), namespace=namespace, ttl_seconds=TTL_SECONDS)

    def expiry(store: RedisIdempotencyStore, key: str) -> float | None:
        ttl = admin.pttl(store.redis_key(key))
        return ttl / 1000 if ttl >= 0 else None

    return Backend("redis", make, expiry)


def _sqlite_backend(path: str) -> Backend:
    def make(namespace: str) -> SqliteIdempotencyStore:
        return SqliteIdempotencyStore(path, namespace=namespace, ttl_seconds=TTL_SECONDS)

    def expiry(store: SqliteIdempotencyStore, key: str) -> float | None:
        store.ping()  # the table is created on first use
        conn = sqlite3.connect(path)
        try:
            row = conn.execute(
                "SELECT expires_at FROM idempotency_records WHERE namespace = ? AND key = ?",
                (store.namespace, key),
            ).fetchone()
        finally:
            conn.close()
        return row[0] - time.time() if row else None

    return Backend("sqlite", make, expiry)


@pytest.fixture
def redis_backend(redis_admin):
    """Redis stores; their keys are removed and their clients closed afterwards."""
    made = _redis_backend(redis_admin)
    yield made
    for store in made.made:
        names = list(redis_admin.scan_iter(match=_literal(store.namespace) + ":*", count=500))
        if names:
            redis_admin.delete(*names)
        redis_admin.delete(*queue_keys(store.namespace))
        store.close()


@pytest.fixture
def sqlite_backend(tmp_path):
    """SQLite stores sharing one file in the test's own directory."""
    made = _sqlite_backend(str(tmp_path / "idempotency.db"))
    yield made
    for store in made.made:
        store.close()


@pytest.fixture
def redis_cluster_backend(redis_cluster):
    """Redis stores on a cluster; the cluster goes away with the session, so nothing is cleaned per test."""
    def make(namespace: str) -> RedisIdempotencyStore:
        return RedisIdempotencyStore.from_url(redis_cluster.url, namespace=namespace, ttl_seconds=TTL_SECONDS)

    def expiry(store: RedisIdempotencyStore, key: str) -> float | None:
        ttl = store.client.pttl(store.redis_key(key))
        return ttl / 1000 if ttl >= 0 else None

    made = Backend("redis-cluster", make, expiry)
    yield made
    for store in made.made:
        store.close()


@pytest.fixture(params=["redis", "redis_cluster", "sqlite"])
def backend(request):
    """Every backend in turn: one Redis, a Redis Cluster, SQLite."""
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture
def store(backend):
    """A fresh store in a namespace of its own."""
    return backend.store()
