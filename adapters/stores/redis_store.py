"""The idempotency store on Redis: one hash per draft, every decision in a Lua script.

Each record lives at `{namespace}:{key}` as a hash with the fields `state`, `fingerprint`, `token`,
`created_at_us`, `started_at_us`, `lease_until_us`, `updated_at_us` and, once done, `order_id` and `response`.
Times are whole microseconds from the server's `TIME`, so instances on different hosts agree and
lease comparisons are exact. Only the holder of the record's token may complete, mark or release it,
and only while the record is in flight: a done or unknown record is never downgraded or deleted.
"""
from __future__ import annotations

import secrets
from typing import Callable, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from adapters.stores.redis_url import is_cluster, redis_client
from bridge.core.errors import StoreUnavailable
from bridge.core.ports import Claim, ClaimOutcome, IdempotencyRecord, RecordState

T = TypeVar("T")

SCAN_BATCH = 500
HEALTH_CHECK_INTERVAL = 15

# Every script that reads the clock starts with this: `now` in whole microseconds of the server's `TIME`, `us(n)`
# to write one. Redis 7 replicates script effects by default; older servers need the call before `TIME` + writes.
SERVER_CLOCK = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function us(n) return string.format('%.0f', n) end
"""

# KEYS[1] record; ARGV token, fingerprint, lease_us, ttl_seconds
CLAIM = SERVER_CLOCK + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'state', 'in_flight', 'fingerprint', ARGV[2], 'token', ARGV[1],
    'created_at_us', us(now), 'started_at_us', us(now), 'lease_until_us', us(now + tonumber(ARGV[3])),
    'updated_at_us', us(now))
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {'new', redis.call('HGETALL', KEYS[1]), us(now)}
end
if state == 'done' then
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

# KEYS[1] record; ARGV token, order_id, response, ttl_seconds
COMPLETE = SERVER_CLOCK + _FENCE + """
redis.call('HSET', KEYS[1], 'state', 'done', 'order_id', ARGV[2], 'response', ARGV[3], 'updated_at_us', us(now))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1] record; ARGV token, ttl_seconds
MARK_UNKNOWN = SERVER_CLOCK + _FENCE + """
redis.call('HSET', KEYS[1], 'state', 'unknown', 'lease_until_us', us(now), 'updated_at_us', us(now))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] record; ARGV token
RELEASE = _FENCE + """
redis.call('DEL', KEYS[1])
return 1
"""


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
        self._owns_client = False
        # Script objects run EVALSHA and load the source again on NOSCRIPT (after a restart or SCRIPT FLUSH).
        self._claim = client.register_script(CLAIM)
        self._complete = client.register_script(COMPLETE)
        self._mark_unknown = client.register_script(MARK_UNKNOWN)
        self._release = client.register_script(RELEASE)

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str, ttl_seconds: int, socket_timeout: float = 2.0
    ) -> "RedisIdempotencyStore":
        """A store with its own client: short timeouts and no automatic retries."""
        client = redis_client(
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
        store = cls(client, namespace=namespace, ttl_seconds=ttl_seconds)
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
        lease_us = max(0, round(lease_seconds * 1_000_000))
        reply = self._call(
            lambda: self._claim(keys=[self.redis_key(key)], args=[token, fingerprint, lease_us, self._ttl])
        )
        outcome = ClaimOutcome(reply[0].decode())
        record, now = self._record(key, reply[1]), _seconds(reply[2])
        if outcome is ClaimOutcome.NEW:
            return Claim(outcome, record, token, now=now)
        if outcome is ClaimOutcome.TAKEOVER:
            return Claim(outcome, record, token, previous=self._record(key, reply[3]), now=now)
        return Claim(outcome, record, now=now)

    def complete(self, key: str, token: str, order_id: str, response: bytes) -> bool:
        args = [token, order_id, bytes(response), self._ttl]
        return bool(self._call(lambda: self._complete(keys=[self.redis_key(key)], args=args)))

    def mark_unknown(self, key: str, token: str) -> bool:
        return bool(self._call(lambda: self._mark_unknown(keys=[self.redis_key(key)], args=[token, self._ttl])))

    def release(self, key: str, token: str) -> bool:
        return bool(self._call(lambda: self._release(keys=[self.redis_key(key)], args=[token])))

    def get(self, key: str) -> IdempotencyRecord | None:
        fields = self._call(lambda: self._client.hgetall(self.redis_key(key)))
        return self._record(key, fields) if b"state" in fields else None

    def unsettled(self, older_than: float) -> list[IdempotencyRecord]:
        return self._call(lambda: self._unsettled(older_than))

    def ping(self) -> None:
        self._call(self._client.ping)

    def warm_up(self) -> None:
        self._call(lambda: load_scripts(self._client, [self._claim, self._complete, self._mark_unknown,
                                                       self._release]))

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
            if not isinstance(fields, dict) or b"state" not in fields:
                continue
            record = self._record(name.decode("utf-8", "replace")[len(self._prefix):], fields)
            if record.updated_at > now - older_than:
                continue
            if record.state is RecordState.UNKNOWN or (
                record.state is RecordState.IN_FLIGHT and record.lease_until <= now
            ):
                stale.append(record)
        return stale

    @staticmethod
    def _record(key: str, raw: list[bytes] | dict[bytes, bytes]) -> IdempotencyRecord:
        fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2]))
        order_id = fields.get(b"order_id")
        created_at = fields.get(b"created_at_us")
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
        )

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RedisError as exc:
            # The public message is what Bik sees; the cause (host, error) stays in the chain for the logs.
            raise StoreUnavailable() from exc
