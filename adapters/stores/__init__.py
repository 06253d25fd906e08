"""Idempotency stores: the implementations of `bridge.core.ports.IdempotencyStore`."""
from adapters.stores.redis_store import RedisIdempotencyStore
from adapters.stores.sqlite_store import SqliteIdempotencyStore

__all__ = ["RedisIdempotencyStore", "SqliteIdempotencyStore"]
