"""The platform's quota shared through Redis, so every worker and instance of one store holds back together.

One hash per store at `{namespace}|ratelimit` (outside the `{namespace}:` keys of the idempotency records) with
`until_us`, `slots` and `probe_us`; the rules are those of `bridge.upstream.LocalQuota`, run as Lua on the
server's clock. When Redis does not answer, each process falls back to its own `LocalQuota` for a moment:
pacing is an efficiency, never a reason to refuse an order or a read.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from adapters.stores.redis_url import redis_client
from bridge.upstream import (
    POLL_SECONDS,
    PROBE_SECONDS,
    RESET_MARGIN_SECONDS,
    WINDOW_TOLERANCE_SECONDS,
    LocalQuota,
)

log = logging.getLogger("bik_bridge.ratelimit")
T = TypeVar("T")

# After a Redis failure, this process paces alone for this long before trying Redis again.
FALLBACK_SECONDS = 1.0
# The state outlives its window by this much, so the window after a spent one is still probed.
KEEP_MS = 60_000

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function us(n) return string.format('%.0f', n) end
local state = redis.call('HMGET', KEYS[1], 'until_us', 'slots', 'probe_us')
local until_us = tonumber(state[1] or '0')
local slots = tonumber(state[2] or '-1')
local probe = tonumber(state[3] or '0')
"""

# KEYS[1] gate; ARGV probe_us, poll_us. Returns the microseconds to wait; 0 took a slot.
RESERVE = "if redis.replicate_commands then redis.replicate_commands() end" + _NOW + """
if now < until_us then
  if slots < 0 then return 0 end
  if slots > 0 then redis.call('HINCRBY', KEYS[1], 'slots', -1) return 0 end
  return until_us - now
end
if slots ~= 0 then return 0 end
if probe > now then return math.min(tonumber(ARGV[2]), probe - now) end
redis.call('HSET', KEYS[1], 'probe_us', us(now + tonumber(ARGV[1])))
return 0
"""

# KEYS[1] gate; ARGV reset_us, left (-1: not said), limited (0/1), tolerance_us, keep_ms
LEARN = "if redis.replicate_commands then redis.replicate_commands() end" + _NOW + """
local finish = now + tonumber(ARGV[1])
local left = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[4])
if ARGV[3] == '1' or left == 0 then
  redis.call('HSET', KEYS[1], 'until_us', us(finish), 'slots', 0, 'probe_us', 0)
elseif left < 0 or (until_us > 0 and finish < until_us - tolerance) then
  return 0
elseif now >= until_us or finish > until_us + tolerance then
  redis.call('HSET', KEYS[1], 'until_us', us(finish), 'slots', left, 'probe_us', 0)
else
  if slots >= 0 and slots < left then left = slots end
  redis.call('HSET', KEYS[1], 'slots', left, 'probe_us', 0)
end
local last = math.max(finish, until_us)
redis.call('PEXPIRE', KEYS[1], math.floor((last - now) / 1000) + tonumber(ARGV[5]))
return 1
"""

# KEYS[1] gate. Microseconds until a spent window resets, else 0.
BLOCKED = _NOW + """
if slots == 0 and now < until_us then return until_us - now end
return 0
"""


class RedisQuota:
    """`QuotaState` in Redis at `key`, with this process's own state to fall back on."""

    def __init__(self, client: redis.Redis, key: str, *, clock: Callable[[], float] = time.monotonic):
        self._client = client
        self._key = key
        self._clock = clock
        self._fallback = LocalQuota(clock)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._reserve = client.register_script(RESERVE)
        self._learn = client.register_script(LEARN)
        self._blocked = client.register_script(BLOCKED)

    @classmethod
    def from_url(cls, url: str, key: str, *, socket_timeout: float = 0.5) -> "RedisQuota":
        """A quota with its own client: short timeouts, since every upstream request asks it first."""
        client = redis_client(url, socket_connect_timeout=socket_timeout, socket_timeout=socket_timeout,
                              retry=Retry(NoBackoff(), 0), decode_responses=False)
        return cls(client, key)

    @property
    def key(self) -> str:
        return self._key

    def reserve(self) -> float:
        waited = self._call(lambda: self._reserve(keys=[self._key], args=[_us(PROBE_SECONDS), _us(POLL_SECONDS)]))
        return self._fallback.reserve() if waited is None else int(waited) / 1_000_000

    def learn(self, reset_seconds: float, left: Optional[int], limited: bool) -> None:
        self._fallback.learn(reset_seconds, left, limited)  # kept current for the moments Redis is away
        args = [_us(reset_seconds + RESET_MARGIN_SECONDS), -1 if left is None else int(left), int(limited),
                _us(WINDOW_TOLERANCE_SECONDS), KEEP_MS]
        self._call(lambda: self._learn(keys=[self._key], args=args))

    def blocked_for(self) -> float:
        blocked = self._call(lambda: self._blocked(keys=[self._key], args=[]))
        return self._fallback.blocked_for() if blocked is None else int(blocked) / 1_000_000

    def _call(self, fn: Callable[[], T]) -> Optional[T]:
        if self._clock() < self._down_until:
            return None
        try:
            return fn()
        except RedisError as exc:
            with self._lock:
                first = self._clock() >= self._down_until
                self._down_until = self._clock() + FALLBACK_SECONDS
            if first:
                log.warning("shared rate limit unavailable; pacing this process alone",
                             extra={"error": type(exc).__name__})
            return None


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))
