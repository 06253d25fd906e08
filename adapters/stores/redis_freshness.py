"""getOrder answers kept in Redis for a few seconds, so a status read any worker or instance answered is served again.

One key per order id, `<namespace>|fresh:<order id>`, written with SET ... PX and read with GET: every command names
one key, so a Redis Cluster routes each on its own and the keys spread over its slots (the namespace is not a hash
tag). The `|` keeps them out of the idempotency records' `<namespace>:` keys, which the reconciler scans. Redis
failing is never a reason to fail a read: the answer then comes from the platform, and for a moment this process
does not ask Redis again.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from adapters.stores.redis_optional import OptionalRedis
from adapters.stores.redis_url import redis_client

log = logging.getLogger("bik_bridge.freshness")
T = TypeVar("T")

# After a Redis failure, status reads go to the platform alone for this long before Redis is asked again.


def fresh_key(namespace: str, order_id: str) -> str:
    """The Redis key of one order's fresh answer."""
    return f"{namespace}|fresh:{order_id}"


class RedisFreshness:
    """`FreshAnswers` in Redis under `namespace`, each kept `seconds`."""

    def __init__(self, client: redis.Redis | RedisCluster, namespace: str, seconds: float, *,
                 clock: Callable[[], float] = time.monotonic):
        if seconds <= 0 or not namespace:
            raise ValueError("a shared freshness cache needs seconds > 0 and a namespace")
        self._client = client
        self._namespace = namespace
        self._px = max(1, round(seconds * 1000))
        self._redis = OptionalRedis(log, "shared getOrder cache unavailable; reading the platform", clock)

    @classmethod
    def from_url(cls, url: str, namespace: str, seconds: float, *, socket_timeout: float = 0.5) -> "RedisFreshness":
        """A cache with its own client: short timeouts, since a read waits for it before it asks the platform."""
        client = redis_client(url, socket_connect_timeout=socket_timeout, socket_timeout=socket_timeout,
                              retry=Retry(NoBackoff(), 0), decode_responses=False)
        return cls(client, namespace, seconds)

    def get(self, key: str) -> Optional[bytes]:
        return self._redis.call(lambda: self._client.get(fresh_key(self._namespace, key)))

    def put(self, key: str, value: bytes) -> None:
        self._redis.call(lambda: self._client.set(fresh_key(self._namespace, key), value, px=self._px))
