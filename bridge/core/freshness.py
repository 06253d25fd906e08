"""A short-lived memory of getOrder answers: in this process, or shared through Redis by every worker and instance.

A store's quota can be as small as 150 requests per 30 s shared by all its apps, and a customer asking
"where is my order?" twice in a minute would otherwise cost a full read each time. With
`store.get_order_cache_seconds` above 0, an answer is served again for that long; placeOrder never
reads it. The composition root picks the kind: shared (`adapters.stores.redis_freshness`) when the
idempotency store is Redis, `FreshnessCache` otherwise.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Protocol

from cachetools import TTLCache


class FreshAnswers(Protocol):
    """Where getOrder answers are kept for a few seconds, by order id."""

    def get(self, key: str) -> Optional[bytes]:
        """The answer stored for `key` if it is still fresh; None when there is none, or it cannot be read."""

    def put(self, key: str, value: bytes) -> None:
        """Keep `value` for `key` from now on; never raises."""


class FreshnessCache:
    """`FreshAnswers` in this process: for `seconds`, at most `max_entries`, the least recently used dropped first."""

    def __init__(self, seconds: float, max_entries: int = 2048, clock: Callable[[], float] = time.monotonic):
        if seconds <= 0 or max_entries < 1:
            raise ValueError("a freshness cache needs seconds > 0 and room for one entry")
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: TTLCache[str, bytes] = TTLCache(maxsize=max_entries, ttl=seconds, timer=clock)
        # Even a read reorders the entries, and the worker's greenlets and reader threads share them.
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[bytes]:
        """The answer stored for `key` if it is still fresh."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, value: bytes) -> None:
        """Keep `value` for `key` from now on."""
        with self._lock:
            self._entries[key] = value

    def __len__(self) -> int:
        """How many fresh answers are kept."""
        with self._lock:
            self._entries.expire()
            return len(self._entries)
