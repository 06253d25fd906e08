"""The platform's quota shared through Redis, so every worker and instance of one store holds back together.

The rules are those of `bridge.upstream.quota`, run as Lua on the server's clock. Two keys per store, outside the
`{namespace}:` keys of the idempotency records: a hash at `{namespace}|ratelimit` with what the answers said
(`quota`, `window_us`, `blocked_until_us`) and a sorted set at `{namespace}|ratelimit|sent`, the send log.
One script call takes a slot; an answer costs another only when it says something the hash does not hold yet
(a quota first announced or changed, a spent quota). When Redis does not answer, each process falls back to
its own `LocalQuota` for a moment: pacing is an efficiency, never a reason to refuse an order or a read.
"""
from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from typing import Callable, Optional, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from adapters.stores.redis_store import SERVER_CLOCK, load_scripts
from adapters.stores.redis_url import redis_client
from bridge.upstream.quota import FIRST_CONTACT, FIRST_CONTACT_POLL_SECONDS, RESET_MARGIN_SECONDS, LocalQuota, QuotaNews

log = logging.getLogger("bik_bridge.ratelimit")
T = TypeVar("T")

# After a Redis failure, this process paces alone for this long before trying Redis again.
FALLBACK_SECONDS = 1.0
# What the answers said is kept this long after the last request, so a quiet store need not learn it again.
KEEP_MS = 3_600_000
UNKNOWN = (-1, -1)  # what `known` holds before the hash says anything

# The clock, then the state every script reads.
_PRELUDE = SERVER_CLOCK + """local state = redis.call('HMGET', KEYS[1], 'quota', 'window_us', 'blocked_until_us')
local quota = tonumber(state[1] or '-1')
local window = tonumber(state[2] or '-1')
local blocked_until = tonumber(state[3] or '0')
"""

# KEYS[1] state, KEYS[2] send log; ARGV member, first-contact quota, first-contact window_us, keep_ms,
# first-contact poll_us.
# Returns {microseconds to wait (0: took a slot), quota, window_us} as the state holds them.
RESERVE = _PRELUDE + """
if now < blocked_until then return {blocked_until - now, quota, window} end
local q, w = quota, window
if q < 0 then q, w = tonumber(ARGV[2]), tonumber(ARGV[3]) end
if q == 0 then return {0, quota, window} end
local span = w + math.min(500000, w / 20)  -- bridge.upstream.quota.spread
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', us(now - span))
local sent = redis.call('ZCARD', KEYS[2])
if sent >= q then
  local oldest = redis.call('ZRANGE', KEYS[2], sent - q, sent - q, 'WITHSCORES')
  local wait = math.max(1, tonumber(oldest[2]) + span - now)
  if quota < 0 then wait = math.min(wait, tonumber(ARGV[5])) end
  return {wait, quota, window}
end
redis.call('ZADD', KEYS[2], us(now), ARGV[1])
redis.call('PEXPIRE', KEYS[2], math.floor(span / 1000) + 1000)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {0, quota, window}
"""

# KEYS[1] state; ARGV quota (-1: not announced), window_us, spent_for_us (-1: not spent), limited (0/1), keep_ms.
# Returns {quota, window_us} as the state now holds them.
LEARN = _PRELUDE + """
if tonumber(ARGV[1]) >= 0 then
  quota, window = tonumber(ARGV[1]), tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'quota', ARGV[1], 'window_us', ARGV[2])
elseif quota < 0 and ARGV[4] == '0' then
  quota, window = 0, 0
  redis.call('HSET', KEYS[1], 'quota', 0, 'window_us', 0)
end
local spent_for = tonumber(ARGV[3])
if spent_for >= 0 and now + spent_for > blocked_until then
  redis.call('HSET', KEYS[1], 'blocked_until_us', us(now + spent_for))
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {quota, window}
"""

# KEYS[1] state. Microseconds until a spent quota resets, else 0.
BLOCKED = _PRELUDE + """
if now < blocked_until then return blocked_until - now end
return 0
"""


class RedisQuota:
    """`QuotaState` in Redis at `key`, with this process's own state to fall back on."""

    def __init__(self, client: redis.Redis, key: str, *, clock: Callable[[], float] = time.monotonic):
        self._client = client
        self._keys = [key, f"{key}|sent"]
        self._clock = clock
        self._fallback = LocalQuota(clock)
        self._down_until = 0.0
        self._lock = threading.Lock()
        # Send-log members must be unique across processes and hosts: a random prefix and a counter.
        self._member_prefix = secrets.token_hex(6)
        self._member_count = itertools.count()
        # The quota and window the state held at the last call: an answer that says the same needs no call.
        self._known = UNKNOWN
        self._reserve = client.register_script(RESERVE)
        self._learn = client.register_script(LEARN)
        self._blocked = client.register_script(BLOCKED)

    @classmethod
    def from_url(cls, url: str, key: str, *, socket_timeout: float = 0.5) -> "RedisQuota":
        """A quota with its own client: short timeouts, since every upstream request asks it first."""
        client = redis_client(url, socket_connect_timeout=socket_timeout, socket_timeout=socket_timeout,
                              retry=Retry(NoBackoff(), 0), decode_responses=False)
        return cls(client, key)

    def reserve(self) -> float:
        first_quota, first_window = FIRST_CONTACT
        args = [f"{self._member_prefix}:{next(self._member_count)}", first_quota, _us(first_window), KEEP_MS,
                _us(FIRST_CONTACT_POLL_SECONDS)]
        reply = self._call(lambda: self._reserve(keys=self._keys, args=args))
        if reply is None:
            return self._fallback.reserve()
        waited, *known = (int(v) for v in reply)
        self._known = tuple(known)
        return waited / 1_000_000

    def learn(self, news: QuotaNews) -> None:
        self._fallback.learn(news)  # kept current for the moments Redis is away
        if not self._is_new(news):
            return
        args = [news.quota if news.announced else -1, _us(news.window) if news.announced else -1,
                _us(news.spent_for + RESET_MARGIN_SECONDS) if news.spent_for is not None else -1,
                int(news.limited), KEEP_MS]
        reply = self._call(lambda: self._learn(keys=self._keys[:1], args=args))
        if reply is not None:
            self._known = tuple(int(v) for v in reply)

    def warm_up(self) -> None:
        self._call(lambda: load_scripts(self._client, [self._reserve, self._learn, self._blocked]))

    def blocked_for(self) -> float:
        blocked = self._call(lambda: self._blocked(keys=self._keys[:1], args=[]))
        return self._fallback.blocked_for() if blocked is None else int(blocked) / 1_000_000

    def _is_new(self, news: QuotaNews) -> bool:
        """Whether the answer says something the shared state did not hold at this process's last call."""
        if news.spent_for is not None:
            return True
        if news.announced:
            return (news.quota, _us(news.window)) != self._known
        return self._known == UNKNOWN and not news.limited

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
