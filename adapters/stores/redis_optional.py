"""Redis as a helper the bridge can do without for a moment: a failure sets it aside for a second, with one warning."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional, TypeVar

from redis.exceptions import RedisError

T = TypeVar("T")

# After a Redis failure, calls skip Redis for this long before they try it again.
FALLBACK_SECONDS = 1.0


class OptionalRedis:
    """Runs calls to Redis until one fails, then answers None (do without) until `FALLBACK_SECONDS` have passed."""

    def __init__(self, logger: logging.Logger, doing_without: str, clock: Callable[[], float] = time.monotonic):
        self._log = logger
        self._doing_without = doing_without  # the warning, once per failure: what the bridge does instead
        self._clock = clock
        self._down_until = 0.0
        self._lock = threading.Lock()

    @property
    def set_aside(self) -> bool:
        """Whether Redis failed a moment ago and is being done without."""
        return self._clock() < self._down_until

    def call(self, fn: Callable[[], T]) -> Optional[T]:
        """`fn()`, or None while Redis is set aside or when it fails now."""
        if self.set_aside:
            return None
        try:
            return fn()
        except RedisError as exc:
            with self._lock:
                first = self._clock() >= self._down_until
                self._down_until = self._clock() + FALLBACK_SECONDS
            if first:
                self._log.warning(self._doing_without, extra={"error": type(exc).__name__})
            return None
