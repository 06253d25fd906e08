"""The platform's quota shared through Redis, so every worker and instance of one store holds back together.

The rules are `bridge.upstream.quota`'s pure functions. A reservation, the one call every upstream request makes
(or the request before it made for it: a fresh draft's lookup takes its create's slot too), is `take_slot` stated
again as a Lua script (`RESERVE`): it reads the ledger with the server's clock (TIME, the one clock every process
shares), decides, and logs the send (or the two) in one atomic round trip, however many requests ask at once
(tests/stores/test_redis_quota.py checks that it decides as `take_slot` does). What answers say is learnt by
an optimistic transaction, the rule deciding in Python: one round trip WATCHes the hash and reads it, a second
writes in MULTI/EXEC, which Redis refuses if another process wrote the hash in between; then the whole is tried
again on a fresh read. Answers seldom say anything new, so that is seldom.

Two keys per store, outside the `<namespace>:` keys of the idempotency records: a hash at
`{<namespace>|ratelimit}` with what the answers said (`quota`, `window_us`, `blocked_until_us`) and a sorted set at
`{<namespace>|ratelimit}|sent`, the send log (microseconds of the server's clock). The braces are a hash tag: on a
Redis Cluster both keys live in one slot, as a script or a transaction over them requires. A reservation costs one
round trip; an answer costs two more only when it says something the hash did not hold at this process's last call
(a quota first announced or changed, a spent quota). When Redis does not answer, each process falls back to its
own `LocalQuota` for a moment: pacing is an efficiency, never a reason to refuse an order or a read. What it sent
meanwhile is added to the shared send log (`LOG_SENDS`) before its next reservation there, so that every process
counts it until its window has passed.
"""
from __future__ import annotations

import itertools
import logging
import secrets
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from adapters.stores.redis_optional import OptionalRedis
from adapters.stores.redis_pipe import CommandPipe
from adapters.stores.redis_store import SERVER_CLOCK, load_scripts
from adapters.stores.redis_url import is_cluster, redis_client
from bridge.upstream.quota import (
    FIRST_CONTACT,
    FIRST_CONTACT_POLL_SECONDS,
    SPREAD_CAP_SECONDS,
    SPREAD_SHARE,
    UNMETERED,
    Ledger,
    LocalQuota,
    QuotaNews,
    Usage,
    blocked_for,
    learned,
    usage,
)

log = logging.getLogger("bik_bridge.ratelimit")
T = TypeVar("T")

# What the answers said is kept at least half this long after the last request (a reservation renews it only
# once half is gone), so a quiet store need not learn it again.
KEEP_MS = 3_600_000
UNKNOWN = (-1, -1)  # what `known` holds before the hash says anything
# Transactions refused because other processes wrote the ledger first, before a reservation asks again later.
MAX_CONFLICTS = 8
FIELDS = ("quota", "window_us", "blocked_until_us")

# `take_slot` (bridge/upstream/quota.py) on the shared ledger, and the send logged when it says so, atomically.
# KEYS[1] the hash, KEYS[2] the send log. ARGV member, FIRST_CONTACT's quota and window (us),
# FIRST_CONTACT_POLL_SECONDS (us), SPREAD_CAP_SECONDS (us), SPREAD_SHARE, KEEP_MS, '1' to take the next request's
# slot too when it is free. Answers 'send' or 'wait', the wait in microseconds, the hash's quota and window_us
# ('' when absent) for the caller to remember, and the microseconds the next request's slot may be used in ('0':
# none taken; only under an announced quota).
RESERVE = SERVER_CLOCK + """
local state = redis.call('HMGET', KEYS[1], 'quota', 'window_us', 'blocked_until_us')
local known_quota, known_window = state[1] or '', state[2] or ''
local quota, window = tonumber(state[1]), tonumber(state[2])
local blocked_until = tonumber(state[3]) or 0
if now < blocked_until then return {'wait', us(blocked_until - now), known_quota, known_window, '0'} end
local announced = quota ~= nil and quota >= 0
if not announced then quota, window = tonumber(ARGV[2]), tonumber(ARGV[3]) end
if quota == 0 then return {'send', '0', known_quota, known_window, '0'} end
local span = window + math.min(tonumber(ARGV[5]), window * tonumber(ARGV[6]))
-- The send `quota` places from the newest: while it still counts, so do `quota` sends, and no slot is free.
local deciding = redis.call('ZRANGE', KEYS[2], -quota, -quota, 'WITHSCORES')
if deciding[2] and tonumber(deciding[2]) > now - span then
  local wait = math.max(1, tonumber(deciding[2]) + span - now)
  if not announced then wait = math.min(wait, tonumber(ARGV[4])) end
  return {'wait', us(wait), known_quota, known_window, '0'}
end
-- Once this send is logged, the send a place newer than the deciding one decides whether the next slot is free.
-- That slot is logged `span - window` (the spread) ahead, the longest it may wait to be used.
local next_for = 0
if ARGV[8] == '1' and announced and quota > 1 then
  local following = redis.call('ZRANGE', KEYS[2], 1 - quota, 1 - quota, 'WITHSCORES')
  if not (following[2] and tonumber(following[2]) > now - span) then next_for = span - window end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', us(now - span))
redis.call('ZADD', KEYS[2], us(now), ARGV[1])
if next_for > 0 then redis.call('ZADD', KEYS[2], us(now + next_for), ARGV[1] .. '+') end
redis.call('PEXPIRE', KEYS[2], math.floor(span / 1000) + 1000)
-- Touched only now and then, so that learning (which watches the hash alone) rarely conflicts.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[7]) / 2 then redis.call('PEXPIRE', KEYS[1], ARGV[7]) end
return {'send', '0', known_quota, known_window, us(next_for)}
"""


# Sends a process made while it paced alone, logged in the shared send log once Redis answers again, so that the
# processes that shared the quota meanwhile do not all count on a window that has received them. KEYS[1] the send
# log; ARGV member prefix, then how long ago each send was, in microseconds (negative: a slot logged ahead).
LOG_SENDS = SERVER_CLOCK + """
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], us(now - tonumber(ARGV[i])), ARGV[1] .. ':' .. i)
end
return #ARGV - 1
"""


def quota_keys(key: str) -> tuple[str, str]:
    """The Redis keys of the quota at `key`: its hash and its send log."""
    # One hash tag for both: on a Redis Cluster a transaction may only name keys of one slot.
    return f"{{{key}}}", f"{{{key}}}|sent"


class RedisQuota:
    """`QuotaState` in Redis at `key`, with this process's own state to fall back on."""

    def __init__(self, client: redis.Redis | RedisCluster, key: str, *, clock: Callable[[], float] = time.monotonic):
        self._client = client
        self._state_key, self._log_key = quota_keys(key)
        self._fallback = LocalQuota(clock)
        self._redis = OptionalRedis(log, "shared rate limit unavailable; pacing this process alone", clock)
        # Send-log members must be unique across processes and hosts: a random prefix and a counter.
        self._member_prefix = secrets.token_hex(6)
        self._member_count = itertools.count()
        # Every upstream request reserves: those of concurrent requests share one connection's trips (`CommandPipe`).
        self._runner = client if is_cluster(client) else CommandPipe(client)
        self._reserve_script = client.register_script(RESERVE)
        self._log_sends_script = client.register_script(LOG_SENDS)
        self._paced_alone = False  # sends taken from the fallback are not in the shared log yet
        self._rule = (FIRST_CONTACT[0], _us(FIRST_CONTACT[1]), _us(FIRST_CONTACT_POLL_SECONDS), _us(SPREAD_CAP_SECONDS),
                      SPREAD_SHARE)
        # The quota and window the state held at the last call: an answer that says the same needs no call.
        self._known = UNKNOWN

    @classmethod
    def from_url(cls, url: str, key: str, *, socket_timeout: float = 0.5) -> "RedisQuota":
        """A quota with its own client: short timeouts, since every upstream request asks it first."""
        client = redis_client(url, socket_connect_timeout=socket_timeout, socket_timeout=socket_timeout,
                              retry=Retry(NoBackoff(), 0), decode_responses=False)
        return cls(client, key)

    def reserve(self) -> float:
        return self._take(False)[0]

    def reserve_with_next(self) -> tuple[float, float]:
        return self._take(True)

    def _take(self, with_next: bool) -> tuple[float, float]:
        if self._paced_alone:
            self._call(self._log_sends_made_alone)
        taken = None if self._paced_alone else self._call(lambda: self._reserve(with_next))
        if taken is None:
            self._paced_alone = True
            return self._fallback.reserve_with_next() if with_next else (self._fallback.reserve(), 0.0)
        return taken

    def seen_spent(self) -> bool:
        # What this process's own answers said, kept by its fallback: asking Redis would cost the round trip a held
        # slot saves. Another process's 429 reaches this one at its next reservation, as for any request already
        # past its reservation.
        return self._fallback.seen_spent()

    def learn(self, news: QuotaNews) -> None:
        self._fallback.learn(news)  # kept current for the moments Redis is away
        if self._is_new(news):
            self._call(lambda: self._learn(news))

    def warm_up(self) -> None:
        """Open a connection and load the reservation script, so that the first request waits for neither."""
        self._call(lambda: load_scripts(self._client, [self._reserve_script, self._log_sends_script]))
        if isinstance(self._runner, CommandPipe):
            self._call(self._runner.open)

    def blocked_for(self) -> float:
        def read() -> float:
            with self._connection() as conn:
                clock, state = _round_trip(conn, ("TIME",), ("HMGET", self._state_key, *FIELDS))
            return blocked_for(_ledger(state), _seconds(clock))

        blocked = self._call(read)
        return self._fallback.blocked_for() if blocked is None else blocked

    def usage(self) -> Optional[Usage]:
        """The shared log's sends of the last window against the shared quota: every worker's and instance's."""
        def read() -> Optional[Usage]:
            with self._connection() as conn:
                clock, state = _round_trip(conn, ("TIME",), ("HMGET", self._state_key, *FIELDS))
                limit = _ledger(state).limit
                if limit is None or limit == UNMETERED:
                    return None
                since_us = _us_of(clock) - _us(limit[1])
                sent = _command(conn, "ZCOUNT", self._log_key, f"({since_us}", "+inf")
            return usage(limit, int(sent))

        if self._redis.set_aside:
            return self._fallback.usage()
        try:
            return read()
        except RedisError:
            return self._fallback.usage()  # a scrape never marks Redis down for the requests

    # ------------------------------------------------------------------------------------ the transactions

    def _reserve(self, with_next: bool) -> tuple[float, float]:
        member = f"{self._member_prefix}:{next(self._member_count)}"
        decided, wait_us, quota, window_us, next_us = self._reserve_script(
            keys=[self._state_key, self._log_key], args=[member, *self._rule, KEEP_MS, "1" if with_next else "0"],
            client=self._runner)
        # What the hash said, remembered so that an answer saying the same needs no call (`_is_new`).
        self._known = _limit_fields(_ledger([quota or None, window_us or None, None]))
        if decided != b"send":
            return int(wait_us) / 1_000_000, 0.0
        return 0.0, int(next_us) / 1_000_000

    def _log_sends_made_alone(self) -> None:
        ages = self._fallback.send_ages()
        if ages:
            prefix = f"{self._member_prefix}:{next(self._member_count)}"
            self._log_sends_script(keys=[self._log_key], args=[prefix, *(_us_signed(age) for age in ages)])
        self._fallback.forget_sends()  # logged: a later outage starts its own count
        self._paced_alone = False

    def _learn(self, news: QuotaNews) -> None:
        for _ in range(MAX_CONFLICTS):
            with self._connection() as conn:
                _, clock, state = _round_trip(conn, ("WATCH", self._state_key), ("TIME",),
                                              ("HMGET", self._state_key, *FIELDS))
                ledger = _ledger(state)
                after = learned(ledger, news, _seconds(clock))
                writes: list[tuple[Any, ...]] = []
                if after.limit != ledger.limit:
                    writes.append(("HSET", self._state_key, *_limit_items(after)))
                if after.blocked_until > ledger.blocked_until:
                    writes.append(("HSET", self._state_key, "blocked_until_us", _us(after.blocked_until)))
                writes.append(("PEXPIRE", self._state_key, KEEP_MS))
                if _transaction(conn, writes):
                    self._known = _limit_fields(after)
                    return
        log.warning("shared rate limit busy; this answer was learnt by this process only")

    # ------------------------------------------------------------------------------------------ plumbing

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection of the client's pool to the primary holding the ledger, held for one transaction."""
        client = self._client
        if isinstance(client, RedisCluster):
            client = client.get_redis_connection(client.get_node_from_key(self._state_key))
        pool = client.connection_pool
        conn = pool.get_connection()
        try:
            yield conn
        except BaseException:
            conn.disconnect()  # a reply may be left unread or a key watched: never hand it back as it is
            raise
        finally:
            pool.release(conn)

    def _is_new(self, news: QuotaNews) -> bool:
        """Whether the answer says something the shared state did not hold at this process's last call."""
        if news.spent_for is not None:
            return True
        if news.announced:
            return (news.quota, _us(news.window)) != self._known
        return self._known == UNKNOWN and not news.limited

    def _call(self, fn: Callable[[], T]) -> Optional[T]:
        return self._redis.call(fn)


def _round_trip(conn: Any, *commands: tuple[Any, ...]) -> list[Any]:
    """Send `commands` at once and read their replies: one round trip."""
    conn.send_packed_command(conn.pack_commands(commands))
    return [conn.read_response() for _ in commands]


def _command(conn: Any, *command: Any) -> Any:
    return _round_trip(conn, command)[0]


def _transaction(conn: Any, writes: list[tuple[Any, ...]]) -> bool:
    """Apply `writes` at once unless a watched key changed since WATCH; whether they were applied."""
    *_, applied = _round_trip(conn, ("MULTI",), *writes, ("EXEC",))
    if applied is None:
        return False  # another process wrote the ledger first
    failed = [reply for reply in applied if isinstance(reply, Exception)]
    if failed:
        raise ResponseError(f"the shared rate limit's write failed: {failed[0]}")
    return True


def _ledger(state: list[Any]) -> Ledger:
    """The ledger in seconds from the hash's fields (`FIELDS`); the send log is read only by the script."""
    quota, window_us, blocked_until_us = (int(value) if value is not None else None for value in state)
    if quota is None or quota < 0:
        limit = None
    elif quota == 0:
        limit = UNMETERED
    else:
        limit = (quota, window_us / 1_000_000)
    return Ledger(limit, blocked_until=(blocked_until_us or 0) / 1_000_000)


def _limit_fields(ledger: Ledger) -> tuple[int, int]:
    """The hash's `quota` and `window_us` for the ledger's limit, UNKNOWN when none was announced."""
    if ledger.limit is None:
        return UNKNOWN
    return ledger.limit[0], _us(ledger.limit[1])


def _limit_items(ledger: Ledger) -> tuple[Any, ...]:
    quota, window_us = _limit_fields(ledger)
    return "quota", quota, "window_us", window_us


def _us_of(clock: list[Any]) -> int:
    """Microseconds of the server's clock from a TIME reply."""
    return int(clock[0]) * 1_000_000 + int(clock[1])


def _seconds(clock: list[Any]) -> float:
    return _us_of(clock) / 1_000_000


def _us_signed(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))
