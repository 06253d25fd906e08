"""The idempotency store on Redis: one hash per draft, every decision in a Lua script.

Each record lives at `{namespace}:{key}` as a hash with the fields `state`, `fingerprint`, `token`,
`created_at_us`, `started_at_us`, `lease_until_us`, `updated_at_us` and, once done, `order_id`, `response` and
`body_digest` (the SHA-256 of the request body that placed it, which a byte-identical retry is answered by).
A draft's first request claims it before its payload is read (`replay_or_claim`): its `fingerprint` stays empty
until the owner's next write.
Times are whole microseconds from the server's `TIME`, so instances on different hosts agree and
lease comparisons are exact. Only the holder of the record's token may complete, mark or release it,
and only while the record is in flight: a done or unknown record is never downgraded or deleted.

Queued drafts (overflow placement) are records that carry `request` and `enqueued_at_us` (then `platform_order_id`
once placed, or `reason` once refused). A sorted set `{<namespace>|queue}` indexes them by queue time, and
`{<namespace>|queue}|refused` the refused ones; `{<namespace>|queue}|placer` is the placer's lease. Every script
touches one key (a new claim also reads the memory marker when one server holds every key), so each runs on one
slot of a cluster; the index is written before a record enters the queue and
cleared after it leaves, so a crash in between leaves a stale entry (dropped when read), never a lost draft.
"""
from __future__ import annotations

import secrets
from typing import Callable, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from adapters.stores.redis_pipe import CommandPipe
from adapters.stores.redis_url import is_cluster, redis_client
from bridge.core.errors import StoreUnavailable
from bridge.core.ports import Claim, ClaimOutcome, IdempotencyRecord, QueueStats, RecordState, Replay

T = TypeVar("T")

SCAN_BATCH = 500
HEALTH_CHECK_INTERVAL = 15
QUEUE_BATCH = 200
# An index entry whose record is in flight without a request may be a draft about to enter the queue; only once its
# owner's lease is this far gone is it surely a leftover.
STALE_ENTRY_SECONDS = 60

# Every script that reads the clock starts with this: `now` in whole microseconds of the server's `TIME`, `us(n)`
# to write one. Redis 7 replicates script effects by default; older servers need the call before `TIME` + writes.
SERVER_CLOCK = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function us(n) return string.format('%.0f', n) end
"""

# A new claim of a draft without record, shared by CLAIM and REPLAY_OR_CLAIM: KEYS[1] record, KEYS[2] (when the
# memory marker shares the record's server) the memory marker; ARGV token, fingerprint, lease_us, ttl_seconds. It
# also answers the marker, as MEMORY does.
_NEW_CLAIM = """
local function claim_new()
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'state', 'in_flight', 'fingerprint', ARGV[2], 'token', ARGV[1],
    'created_at_us', us(now), 'started_at_us', us(now), 'lease_until_us', us(now + tonumber(ARGV[3])),
    'updated_at_us', us(now))
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  local memory = ''
  if KEYS[2] then
    redis.call('SET', KEYS[2], us(now), 'NX')
    memory = redis.call('GET', KEYS[2])
  end
  return {'new', redis.call('HGETALL', KEYS[1]), us(now), memory}
end
"""

# KEYS and ARGV as _NEW_CLAIM's.
CLAIM = SERVER_CLOCK + _NEW_CLAIM + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return claim_new() end
-- A queued draft was answered when it was accepted: every retry replays that answer.
if state == 'done' or redis.call('HEXISTS', KEYS[1], 'request') == 1 then
  return {'done', redis.call('HGETALL', KEYS[1]), us(now)}
end
local lease_until = tonumber(redis.call('HGET', KEYS[1], 'lease_until_us'))
if state == 'in_flight' and lease_until and lease_until > now then
  return {'busy', redis.call('HGETALL', KEYS[1]), us(now)}
end
local previous = redis.call('HGETALL', KEYS[1])
-- created_at_us stays: it bounds how far back a lookup must search, across every owner
redis.call('HSETNX', KEYS[1], 'created_at_us', redis.call('HGET', KEYS[1], 'started_at_us'))
redis.call('HSET', KEYS[1], 'state', 'in_flight', 'token', ARGV[1],
  'started_at_us', us(now), 'lease_until_us', us(now + tonumber(ARGV[3])), 'updated_at_us', us(now))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {'takeover', redis.call('HGETALL', KEYS[1]), us(now), previous}
"""

# The fence shared by the owner's writes: the record is in flight and still carries our token.
_FENCE = """
local held = redis.call('HMGET', KEYS[1], 'state', 'token')
if held[1] ~= 'in_flight' or held[2] ~= ARGV[1] then return 0 end
"""

# KEYS and ARGV[1..4] as _NEW_CLAIM's (fingerprint '': the payload is read after), ARGV[5] body_digest. A
# byte-identical retry of a placed order gets its answer, a draft without record is claimed, and anything else is
# left to CLAIM, once the payload is read. Only a claim reads the clock: a replay costs a read and no more.
REPLAY_OR_CLAIM = """
local held = redis.call('HMGET', KEYS[1], 'state', 'body_digest', 'order_id', 'response')
if held[1] then
  if held[1] == 'done' and held[2] == ARGV[5] and held[3] then return {'replay', held[3], held[4]} end
  return {'other'}
end
""" + SERVER_CLOCK + _NEW_CLAIM + """
return claim_new()
"""

# Written by the owner's next write when the claim was made before its payload was read: KEYS[1] record; the
# fingerprint given ('' when not known) is recorded where the record has none.
_FINGERPRINT = """
local function note_fingerprint(given)
  if given ~= '' and redis.call('HGET', KEYS[1], 'fingerprint') == '' then
    redis.call('HSET', KEYS[1], 'fingerprint', given)
  end
end
"""

# KEYS[1] record; ARGV token, order_id, response, ttl_seconds, body_digest ('' when not known), fingerprint
COMPLETE = SERVER_CLOCK + _FENCE + _FINGERPRINT + """
redis.call('HSET', KEYS[1], 'state', 'done', 'order_id', ARGV[2], 'response', ARGV[3], 'updated_at_us', us(now))
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'body_digest', ARGV[5]) end
note_fingerprint(ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1] record; ARGV token, ttl_seconds, fingerprint, the start to hand back in microseconds ('': keep this one's)
MARK_UNKNOWN = SERVER_CLOCK + _FENCE + _FINGERPRINT + """
redis.call('HSET', KEYS[1], 'state', 'unknown', 'lease_until_us', us(now), 'updated_at_us', us(now))
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'started_at_us', ARGV[4]) end
note_fingerprint(ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] record; ARGV token. Bik was told a queued draft is ordered: it goes back to the queue, never away.
RELEASE = SERVER_CLOCK + _FENCE + """
if redis.call('HEXISTS', KEYS[1], 'request') == 1 then
  redis.call('HSET', KEYS[1], 'state', 'queued', 'lease_until_us', us(now), 'updated_at_us', us(now))
  return 1
end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS[1] record; ARGV token, request, order_id, response, enqueued_at_us, ttl_seconds, fingerprint
ENQUEUE = SERVER_CLOCK + _FENCE + _FINGERPRINT + """
redis.call('HSET', KEYS[1], 'state', 'queued', 'request', ARGV[2], 'order_id', ARGV[3], 'response', ARGV[4],
  'enqueued_at_us', ARGV[5], 'lease_until_us', us(now), 'updated_at_us', us(now))
note_fingerprint(ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 1
"""

# KEYS[1] the queue index; ARGV member. Scored by the server's clock, which it answers.
INDEX = SERVER_CLOCK + """
redis.call('ZADD', KEYS[1], now, ARGV[1])
return us(now)
"""

# KEYS[1] the queue index; ARGV member, score: removed only if nothing indexed it again since it was read.
UNINDEX = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and string.format('%.0f', tonumber(score)) == ARGV[2] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS[1] record; ARGV token, lease_us, ttl_seconds
CLAIM_QUEUED = SERVER_CLOCK + """
if redis.call('HEXISTS', KEYS[1], 'request') == 0 then return {'none'} end
local state = redis.call('HGET', KEYS[1], 'state')
local lease_until = tonumber(redis.call('HGET', KEYS[1], 'lease_until_us'))
local lapsed = state == 'in_flight' and lease_until and lease_until <= now
if not (state == 'queued' or state == 'unknown' or lapsed) then return {'none'} end
local previous = redis.call('HGETALL', KEYS[1])
redis.call('HSETNX', KEYS[1], 'created_at_us', redis.call('HGET', KEYS[1], 'started_at_us'))
redis.call('HSET', KEYS[1], 'state', 'in_flight', 'token', ARGV[1],
  'started_at_us', us(now), 'lease_until_us', us(now + tonumber(ARGV[2])), 'updated_at_us', us(now))
redis.call('EXPIRE', KEYS[1], ARGV[3])
local outcome = 'takeover'
if state == 'queued' then outcome = 'new' end
return {outcome, redis.call('HGETALL', KEYS[1]), us(now), previous}
"""

# KEYS[1] record; ARGV token, state (done or refused), field (platform_order_id or reason), value, ttl_seconds
SETTLE_QUEUED = SERVER_CLOCK + _FENCE + """
if redis.call('HEXISTS', KEYS[1], 'request') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], ARGV[3], ARGV[4], 'updated_at_us', us(now))
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS[1] record; ARGV from_state, to_state, reason ('' to clear it), enqueued_at_us ('' to keep it), ttl_seconds
MOVE_QUEUED = SERVER_CLOCK + """
if redis.call('HEXISTS', KEYS[1], 'request') == 0 or redis.call('HGET', KEYS[1], 'state') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'lease_until_us', us(now), 'updated_at_us', us(now))
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], 'reason') else redis.call('HSET', KEYS[1], 'reason', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'enqueued_at_us', ARGV[4]) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS[1] the placer lease; ARGV holder, lease_ms
TAKE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS[1] the placer lease; ARGV holder
DROP_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


def queue_keys(namespace: str) -> tuple[str, str, str]:
    """The Redis keys of a namespace's overflow queue: its index, its refused drafts and its placer lease."""
    tag = f"{{{namespace}|queue}}"
    return tag, f"{tag}|refused", f"{tag}|placer"


# KEYS[1] the memory marker. When this Redis began to hold the namespace's records, in microseconds (0: before
# any worker of this bridge started); found missing, it is set to now: the records were lost.
MEMORY = SERVER_CLOCK + """
redis.call('SET', KEYS[1], us(now), 'NX')
return redis.call('GET', KEYS[1])
"""


def store_client(url: str, socket_timeout: float = 2.0) -> redis.Redis | redis.RedisCluster:
    """The client the store makes for itself: short timeouts and no automatic retries."""
    return redis_client(
        url,
        socket_connect_timeout=socket_timeout,
        socket_timeout=socket_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        # A script whose reply was lost may have run; sending it again could turn our own claim
        # into BUSY or our own completion into a lost race, so a failure surfaces as
        # StoreUnavailable instead. A dropped connection is replaced on the next command.
        # (`retry_on_timeout=False` alone no longer does this: since redis-py 6 the default
        # Retry covers timeouts whatever that flag says, and the flag is deprecated.)
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )


def load_scripts(client: redis.Redis, scripts: list) -> None:
    """Load scripts (opening connections) so their first EVALSHA finds them: one round trip, or one per script
    on a cluster, whose client loads each on every primary and allows no SCRIPT LOAD in a pipeline."""
    if is_cluster(client):
        for script in scripts:
            client.script_load(script.script)
        return
    pipe = client.pipeline(transaction=False)
    for script in scripts:
        pipe.script_load(script.script)
    pipe.execute()


def _escape_glob(text: str) -> str:
    """`text` matched literally by SCAN's MATCH pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def durability_risks(info: dict, save: str | None) -> list[str]:
    """How a Redis whose `INFO` reads so (and `CONFIG GET save`, None where refused) could lose records."""
    risks = []
    if str(info.get("aof_enabled", "1")) == "0":
        if save is not None and not save.strip():
            risks.append("it keeps records in memory only (appendonly no, no save points): a restart forgets every "
                         "record")
        else:
            risks.append("it has no append-only file: a restart forgets the records written since its last snapshot")
    policy = info.get("maxmemory_policy")
    if policy is not None and policy != "noeviction":
        risks.append(f"its maxmemory-policy is {policy}: records carry a TTL and can be evicted under memory "
                     "pressure (noeviction is the only policy that keeps them)")
    return risks


def _micros(seconds: float) -> int:
    """A duration or a time of the server's clock in whole microseconds, as the scripts take it (never negative)."""
    return max(0, round(seconds * 1_000_000))


def _seconds(raw: bytes) -> float:
    return int(raw) / 1_000_000


class RedisIdempotencyStore:
    """`IdempotencyStore` on a shared Redis, scoped by `namespace`."""

    def __init__(self, client: redis.Redis, *, namespace: str, ttl_seconds: int):
        if not namespace:
            raise ValueError("namespace must not be empty")
        if int(ttl_seconds) < 1:
            raise ValueError("ttl_seconds must be at least 1")
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the Redis client must return bytes (decode_responses=False)")
        self._client = client
        self._namespace = namespace
        self._prefix = f"{namespace}:"
        self._ttl = int(ttl_seconds)
        # One server holds every key: a new claim reads the memory marker in the same script, saving a round trip.
        # On a cluster the marker lives in a slot of its own, so `memory_began` asks for it separately.
        self._claim_reads_memory = not is_cluster(client)
        self._owns_client = False
        # The scripts each placeOrder runs share one connection's trips with the other requests' (`CommandPipe`); a
        # cluster routes each by its key, so there they go through the client.
        self._pipe = None if is_cluster(client) else CommandPipe(client)
        self._runner = self._pipe or client
        # Script objects run EVALSHA and load the source again on NOSCRIPT (after a restart or SCRIPT FLUSH).
        self._claim = client.register_script(CLAIM)
        self._replay_or_claim = client.register_script(REPLAY_OR_CLAIM)
        self._complete = client.register_script(COMPLETE)
        self._mark_unknown = client.register_script(MARK_UNKNOWN)
        self._release = client.register_script(RELEASE)
        # Set by the workers at start (0) and kept without a TTL: found missing, this Redis lost its records.
        self._memory_key = f"{namespace}|memory"
        self._memory = client.register_script(MEMORY)
        self._queue_key, self._refused_key, self._placer_key = queue_keys(namespace)
        self._enqueue = client.register_script(ENQUEUE)
        self._index = client.register_script(INDEX)
        self._unindex = client.register_script(UNINDEX)
        self._claim_queued = client.register_script(CLAIM_QUEUED)
        self._settle_queued = client.register_script(SETTLE_QUEUED)
        self._move_queued = client.register_script(MOVE_QUEUED)
        self._take_lease = client.register_script(TAKE_LEASE)
        self._drop_lease = client.register_script(DROP_LEASE)

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str, ttl_seconds: int, socket_timeout: float = 2.0
    ) -> "RedisIdempotencyStore":
        """A store with its own client: short timeouts and no automatic retries."""
        store = cls(store_client(url, socket_timeout), namespace=namespace, ttl_seconds=ttl_seconds)
        store._owns_client = True
        return store

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def client(self) -> redis.Redis:
        """The underlying client, for health checks and diagnostics."""
        return self._client

    def redis_key(self, key: str) -> str:
        """The Redis key holding the record for draft `key`."""
        return self._prefix + key

    def claim(self, key: str, fingerprint: str, lease_seconds: float) -> Claim:
        token = secrets.token_hex(16)
        reply = self._call(lambda: self._run_claim(self._claim, key, [token, fingerprint, _micros(lease_seconds),
                                                                      self._ttl]))
        return self._claim_from_reply(key, token, reply)

    def replay_or_claim(self, key: str, body_digest: str, lease_seconds: float) -> Replay | Claim | None:
        # One round trip for what a fresh draft needs twice otherwise (a replay read, then a claim).
        token = secrets.token_hex(16)
        args = [token, "", _micros(lease_seconds), self._ttl, body_digest]
        reply = self._call(lambda: self._run_claim(self._replay_or_claim, key, args))
        if reply[0] == b"replay":
            return Replay(reply[1].decode(), reply[2] or b"")
        if reply[0] == b"other":
            return None
        return self._claim_from_reply(key, token, reply)

    def _claim_from_reply(self, key: str, token: str, reply: list) -> Claim:
        outcome = ClaimOutcome(reply[0].decode())
        record, now = self._record_from_hash(key, reply[1]), _seconds(reply[2])
        if outcome is ClaimOutcome.NEW:
            return Claim(outcome, record, token, now=now, memory_began=_seconds(reply[3]) if reply[3] else None)
        if outcome is ClaimOutcome.TAKEOVER:
            return Claim(outcome, record, token, previous=self._record_from_hash(key, reply[3]), now=now)
        return Claim(outcome, record, now=now)

    def _run_claim(self, script: Script, key: str, args: list) -> list:
        if self._claim_reads_memory:
            try:
                return script(keys=[self.redis_key(key), self._memory_key], args=args, client=self._runner)
            except ResponseError as exc:
                if "CROSSSLOT" not in str(exc):
                    raise
                # A proxy that shards one endpoint refuses a script over two slots before running it: from now on
                # the marker is asked for on its own, as on a cluster.
                self._claim_reads_memory = False
        return script(keys=[self.redis_key(key)], args=args, client=self._runner)

    def complete(self, key: str, token: str, order_id: str, response: bytes, body_digest: str = "",
                 fingerprint: str = "") -> bool:
        args = [token, order_id, bytes(response), self._ttl, body_digest, fingerprint]
        return bool(self._call(lambda: self._complete(keys=[self.redis_key(key)], args=args, client=self._runner)))

    def replay(self, key: str, body_digest: str) -> Replay | None:
        # One plain read: a record is done for good, so no script (and no clock) is needed to trust it.
        state, digest, order_id, response = self._call(
            lambda: self._client.hmget(self.redis_key(key), "state", "body_digest", "order_id", "response"))
        if state != b"done" or digest is None or digest.decode() != body_digest or order_id is None:
            return None
        return Replay(order_id.decode(), response or b"")

    def mark_unknown(self, key: str, token: str, fingerprint: str = "", started_at: float | None = None) -> bool:
        args = [token, self._ttl, fingerprint, "" if started_at is None else _micros(started_at)]
        return bool(self._call(lambda: self._mark_unknown(keys=[self.redis_key(key)], args=args, client=self._runner)))

    def release(self, key: str, token: str) -> bool:
        return bool(self._call(lambda: self._release(keys=[self.redis_key(key)], args=[token], client=self._runner)))

    def get(self, key: str) -> IdempotencyRecord | None:
        fields = self._call(lambda: self._client.hgetall(self.redis_key(key)))
        return self._record_from_hash(key, fields) if b"state" in fields else None

    def unsettled(self, older_than: float) -> list[IdempotencyRecord]:
        return self._call(lambda: self._unsettled(older_than))

    # overflow placement -------------------------------------------------------------------

    def enqueue(self, key: str, token: str, request: bytes, order_id: str, response: bytes,
                fingerprint: str = "") -> bool:
        def run() -> bool:
            # Indexed first: a crash before the record changes leaves an entry `queued` drops, never a lost draft.
            score = self._index(keys=[self._queue_key], args=[key])
            args = [token, bytes(request), order_id, bytes(response), score, self._ttl, fingerprint]
            return bool(self._enqueue(keys=[self.redis_key(key)], args=args))

        return self._call(run)

    def queued(self, limit: int) -> list[IdempotencyRecord]:
        return self._call(lambda: self._scan_queue(limit, awaiting_only=True)[0])

    def queue_stats(self) -> QueueStats:
        def read() -> QueueStats:
            head, now = self._scan_queue(1, awaiting_only=False)
            depth = self._client.zcard(self._queue_key)
            return QueueStats(depth, head[0].enqueued_at if head else None, now)

        return self._call(read)

    def claim_queued(self, key: str, lease_seconds: float) -> Claim | None:
        token = secrets.token_hex(16)
        args = [token, _micros(lease_seconds), self._ttl]
        reply = self._call(lambda: self._claim_queued(keys=[self.redis_key(key)], args=args))
        outcome = reply[0].decode()
        if outcome == "none":
            return None
        return Claim(ClaimOutcome(outcome), self._record_from_hash(key, reply[1]), token,
                     previous=self._record_from_hash(key, reply[3]), now=_seconds(reply[2]))

    def complete_queued(self, key: str, token: str, platform_order_id: str) -> bool:
        def run() -> bool:
            args = [token, "done", "platform_order_id", platform_order_id, self._ttl]
            if not self._settle_queued(keys=[self.redis_key(key)], args=args):
                return False
            self._client.zrem(self._queue_key, key)
            return True

        return self._call(run)

    def refuse(self, key: str, token: str, reason: str) -> bool:
        def run() -> bool:
            args = [token, "refused", "reason", reason, self._ttl]
            if not self._settle_queued(keys=[self.redis_key(key)], args=args):
                return False
            self._list_refused(key)
            return True

        return self._call(run)

    def refused(self, limit: int) -> list[IdempotencyRecord]:
        def read() -> list[IdempotencyRecord]:
            keys = [name.decode() for name in self._client.zrange(self._refused_key, 0, max(0, int(limit) - 1))]
            records = [(key, self._client.hgetall(self.redis_key(key))) for key in keys]
            return [self._record_from_hash(key, fields) for key, fields in records
                    if fields.get(b"state") == b"refused" and b"request" in fields]

        return self._call(read)

    def requeue(self, key: str) -> bool:
        def run() -> bool:
            if self._client.hget(self.redis_key(key), "state") != b"refused":
                return False  # asked before indexing, so a draft already waiting keeps its place
            score = self._index(keys=[self._queue_key], args=[key])
            moved = self._move_queued(keys=[self.redis_key(key)], args=["refused", "queued", "", score, self._ttl])
            if moved:
                self._client.zrem(self._refused_key, key)
            return bool(moved)  # an entry indexed in vain is dropped when the queue is next read

        return self._call(run)

    def cancel_queued(self, key: str, reason: str) -> bool:
        def run() -> bool:
            if not self._move_queued(keys=[self.redis_key(key)], args=["queued", "refused", reason, "", self._ttl]):
                return False
            self._list_refused(key)
            return True

        return self._call(run)

    def take_placer_lease(self, holder: str, seconds: float) -> bool:
        ms = max(1, round(seconds * 1000))
        return bool(self._call(lambda: self._take_lease(keys=[self._placer_key], args=[holder, ms])))

    def drop_placer_lease(self, holder: str) -> None:
        self._call(lambda: self._drop_lease(keys=[self._placer_key], args=[holder]))

    def _list_refused(self, key: str) -> None:
        """Move a draft from the queue's index to the refused drafts' (the record already says `refused`)."""
        score = self._client.zscore(self._queue_key, key)
        self._client.zadd(self._refused_key, {key: score if score is not None else 0})
        self._client.zrem(self._queue_key, key)

    def _scan_queue(self, limit: int, *, awaiting_only: bool) -> tuple[list[IdempotencyRecord], float]:
        """Up to `limit` queued drafts oldest first (those a placer may take, or every unsettled one), and `now`.

        Entries whose record has left the queue (placed, refused, expired) are dropped from the index on the way.
        """
        seconds, micros = self._client.time()
        now = seconds + micros / 1_000_000
        found: list[IdempotencyRecord] = []
        start = 0
        while len(found) < limit:
            entries = self._client.zrange(self._queue_key, start, start + QUEUE_BATCH - 1, withscores=True)
            if not entries:
                break
            start += len(entries)
            pipe = self._client.pipeline(transaction=False)
            for name, _ in entries:
                pipe.hgetall(self.redis_key(name.decode()))
            for (name, score), fields in zip(entries, pipe.execute(raise_on_error=False)):
                key = name.decode()
                verdict = self._queue_entry(key, fields, now)
                if verdict is None:
                    self._unindex(keys=[self._queue_key], args=[key, f"{score:.0f}"])
                    start -= 1
                    continue
                record, takeable = verdict
                if record is not None and (takeable or not awaiting_only):
                    found.append(record)
                    if len(found) >= limit:
                        break
        return found, now

    def _queue_entry(self, key: str, fields, now: float) -> tuple[IdempotencyRecord | None, bool] | None:
        """An index entry's record and whether a placer may take it; None when the entry is a leftover."""
        if not isinstance(fields, dict) or b"state" not in fields:
            return None  # placed and expired, or lost
        record = self._record_from_hash(key, fields)
        if not record.queued:
            # Perhaps a draft entering the queue right now (indexed first): a leftover once its owner is long gone.
            leftover = record.state is not RecordState.IN_FLIGHT or record.lease_until + STALE_ENTRY_SECONDS < now
            return None if leftover else (None, False)
        if record.state in (RecordState.DONE, RecordState.REFUSED):
            return None
        return record, not (record.state is RecordState.IN_FLIGHT and record.lease_until > now)

    def ping(self) -> None:
        self._call(self._client.ping)

    def warm_up(self, first_start: bool = True) -> None:
        self._call(lambda: load_scripts(self._client, [self._claim, self._replay_or_claim, self._complete,
                                                       self._mark_unknown, self._release, self._enqueue,
                                                       self._memory]))
        if self._pipe is not None:
            self._call(self._pipe.open)
        if first_start:
            # An instance starting holds no create from before: whatever this Redis holds now, it held before.
            # A replacement worker must not say so: its siblings may have creates on their way while Redis, a moment
            # ago, restarted empty; the marker left missing, the next claim finds the records lost.
            self._call(lambda: self._client.set(self._memory_key, 0, nx=True))

    def memory_began(self) -> float:
        reply = self._call(lambda: self._memory(keys=[self._memory_key], args=[]))
        return _seconds(reply)

    def durability_risks(self) -> list[str]:
        """How this Redis could lose records, read from `INFO` (empty when it keeps them, or will not say)."""
        try:
            info = {**self._client.info("persistence"), **self._client.info("memory")}
        except redis.RedisError:
            return []  # some managed services refuse INFO; nothing to tell
        try:
            reply = self._client.config_get("save")  # redis-py decodes CONFIG GET's keys and values itself
            save = next(iter(reply.values()), "") if reply else ""
            save = save.decode() if isinstance(save, bytes) else str(save)
        except redis.RedisError:
            save = None  # managed services often refuse CONFIG
        return durability_risks(info, save)

    def close(self) -> None:
        # A client handed in belongs to the caller, who may share it with other stores.
        if self._pipe is not None:
            self._pipe.close()
        if self._owns_client:
            self._call(self._client.close)

    def _unsettled(self, older_than: float) -> list[IdempotencyRecord]:
        seconds, micros = self._client.time()
        now = seconds + micros / 1_000_000
        found = []
        batch: list[bytes] = []
        pattern = _escape_glob(self._namespace) + ":*"
        for name in self._client.scan_iter(match=pattern, count=SCAN_BATCH):
            batch.append(name)
            if len(batch) >= SCAN_BATCH:
                found.extend(self._stale_in(batch, now, older_than))
                batch = []
        found.extend(self._stale_in(batch, now, older_than))
        return found

    def _stale_in(self, names: list[bytes], now: float, older_than: float) -> list[IdempotencyRecord]:
        if not names:
            return []
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(name)
        stale = []
        # A key of another type under our prefix is not ours to judge; skip it rather than fail the sweep.
        for name, fields in zip(names, pipe.execute(raise_on_error=False)):
            if not isinstance(fields, dict) or b"state" not in fields or b"request" in fields:
                continue  # a queued draft is the placer's to settle
            record = self._record_from_hash(name.decode("utf-8", "replace")[len(self._prefix):], fields)
            if record.updated_at > now - older_than:
                continue
            if record.state is RecordState.UNKNOWN or (
                record.state is RecordState.IN_FLIGHT and record.lease_until <= now
            ):
                stale.append(record)
        return stale

    @staticmethod
    def _record_from_hash(key: str, raw: list[bytes] | dict[bytes, bytes]) -> IdempotencyRecord:
        fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2]))
        order_id = fields.get(b"order_id")
        created_at = fields.get(b"created_at_us")
        enqueued_at = fields.get(b"enqueued_at_us")
        platform_order_id = fields.get(b"platform_order_id")
        reason = fields.get(b"reason")
        return IdempotencyRecord(
            key=key,
            state=RecordState(fields[b"state"].decode()),
            fingerprint=fields[b"fingerprint"].decode(),
            token=fields[b"token"].decode(),
            started_at=_seconds(fields[b"started_at_us"]),
            lease_until=_seconds(fields[b"lease_until_us"]),
            order_id=order_id.decode() if order_id is not None else None,
            response=fields.get(b"response"),
            updated_at=_seconds(fields[b"updated_at_us"]),
            created_at=_seconds(created_at) if created_at is not None else 0.0,
            request=fields.get(b"request"),
            enqueued_at=_seconds(enqueued_at) if enqueued_at is not None else 0.0,
            platform_order_id=platform_order_id.decode() if platform_order_id is not None else None,
            reason=reason.decode() if reason is not None else None,
        )

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RedisError as exc:
            # The public message is what Bik sees; the cause (host, error) stays in the chain for the logs.
            raise StoreUnavailable() from exc
