"""A short-lived, bounded memory of getOrder answers, per worker process.

BigCommerce allows a store 150 requests per 30 s shared by all its apps, and a customer asking
"where is my order?" twice in a minute would otherwise cost a full set of reads each time. With
`store.get_order_cache_seconds` above 0, an answer is served again for that long; placeOrder never
reads it.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Optional


class FreshnessCache:
    """Answers by key for `seconds`, at most `max_entries` of them, the least recently used dropped first."""

    def __init__(self, seconds: float, max_entries: int = 2048, clock: Callable[[], float] = time.monotonic):
        if seconds <= 0 or max_entries < 1:
            raise ValueError("a freshness cache needs seconds > 0 and room for one entry")
        self.seconds = seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[bytes]:
        """The answer stored for `key` if it is still fresh."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: bytes) -> None:
        """Keep `value` for `key` from now on."""
        with self._lock:
            self._entries[key] = (self._clock() + self.seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
