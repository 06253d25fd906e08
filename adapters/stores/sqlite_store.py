"""The idempotency store in one SQLite file, shared safely by the worker processes of one host.

Every decision runs in a `BEGIN IMMEDIATE` transaction, so atomicity holds across threads and
processes alike; WAL lets readers proceed while one writer decides. Each OS thread opens its own
connection on first use. A path of ":memory:" gives every thread a separate empty database, so it
only suits single-threaded use. Rows past `expires_at` count as absent and are purged on claim.
Only the holder of the record's token may complete, mark or release it, and only while the record
is in flight: a done or unknown record is never downgraded or deleted. Queued drafts (overflow
placement) are rows that carry their `request`; an index on state and queue time finds them oldest first,
and one row per namespace in `placer_leases` says which process places them.
"""
from __future__ import annotations

import os
import random
import secrets
import sqlite3
import threading
import time
from typing import Callable, TypeVar

from adapters.sqlite import os_thread_local
from bridge.core.errors import StoreUnavailable
from bridge.core.ports import Claim, ClaimOutcome, IdempotencyRecord, QueueStats, RecordState, Replay

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
PURGE_BATCH = 64

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS idempotency_records (
        namespace   TEXT NOT NULL,
        key         TEXT NOT NULL,
        state       TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        token       TEXT NOT NULL,
        started_at  REAL NOT NULL,
        lease_until REAL NOT NULL,
        order_id    TEXT,
        response    BLOB,
        updated_at  REAL NOT NULL,
        expires_at  REAL NOT NULL,
        created_at  REAL,
        request     BLOB,
        enqueued_at REAL,
        platform_order_id TEXT,
        reason      TEXT,
        body_digest TEXT,
        PRIMARY KEY (namespace, key)
    )""",
    "CREATE INDEX IF NOT EXISTS idempotency_records_expiry ON idempotency_records (namespace, expires_at)",
    "CREATE INDEX IF NOT EXISTS idempotency_records_state ON idempotency_records (namespace, state, updated_at)",
    """CREATE TABLE IF NOT EXISTS placer_leases (
        namespace   TEXT NOT NULL PRIMARY KEY,
        holder      TEXT NOT NULL,
        lease_until REAL NOT NULL
    )""",
)
# Columns added since the first schema: a file made before them gets them on first use (`_add_columns`).
ADDED_COLUMNS = (("created_at", "REAL"), ("request", "BLOB"), ("enqueued_at", "REAL"), ("platform_order_id", "TEXT"),
                 ("reason", "TEXT"), ("body_digest", "TEXT"))
QUEUE_INDEX = ("CREATE INDEX IF NOT EXISTS idempotency_records_queue ON idempotency_records"
               " (namespace, state, enqueued_at)")

COLUMNS = ("key, state, fingerprint, token, started_at, lease_until, order_id, response, updated_at, created_at,"
           " request, enqueued_at, platform_order_id, reason")

# The fence shared by the owner's writes: the live record is in flight and still carries our token.
FENCE = "namespace = ? AND key = ? AND state = 'in_flight' AND token = ? AND expires_at > ?"
# An owner's write records the payload's fingerprint (its parameter) on a record claimed without one.
NOTE_FINGERPRINT = "fingerprint = CASE WHEN fingerprint = '' THEN ? ELSE fingerprint END"
# Queued drafts not placed or refused yet; the placer takes those whose lease, if any, has lapsed.
UNSETTLED_QUEUED = "request IS NOT NULL AND state IN ('queued', 'unknown', 'in_flight')"


def _record_from_row(row: sqlite3.Row) -> IdempotencyRecord:
    response, request = row["response"], row["request"]
    return IdempotencyRecord(
        key=row["key"],
        state=RecordState(row["state"]),
        fingerprint=row["fingerprint"],
        token=row["token"],
        started_at=row["started_at"],
        lease_until=row["lease_until"],
        order_id=row["order_id"],
        response=bytes(response) if response is not None else None,
        updated_at=row["updated_at"],
        created_at=row["created_at"] or 0.0,
        request=bytes(request) if request is not None else None,
        enqueued_at=row["enqueued_at"] or 0.0,
        platform_order_id=row["platform_order_id"],
        reason=row["reason"],
    )


def _add_columns(conn: sqlite3.Connection) -> None:
    """Give a file made by an older version the columns added since; its old rows read them as empty."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(idempotency_records)")}
    for name, kind in ADDED_COLUMNS:
        if name in columns:
            continue
        try:
            conn.execute(f"ALTER TABLE idempotency_records ADD COLUMN {name} {kind}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process added it a moment ago
                raise
    conn.execute(QUEUE_INDEX)


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL once, waiting out the other processes that try at the same moment."""
    # Changing the journal mode answers SQLITE_BUSY at once, without consulting the busy handler,
    # so workers opening a fresh file together take turns here instead.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] in ("wal", "memory"):
                return
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(random.uniform(0.005, 0.02))


class SqliteIdempotencyStore:
    """`IdempotencyStore` in the SQLite file at `path`, scoped by `namespace`."""

    def __init__(self, path: str, *, namespace: str, ttl_seconds: int, clock: Callable[[], float] = time.time):
        if not namespace:
            raise ValueError("namespace must not be empty")
        if int(ttl_seconds) < 1:
            raise ValueError("ttl_seconds must be at least 1")
        self._path = path
        self._namespace = namespace
        self._ttl = int(ttl_seconds)
        self._clock = clock
        # One connection per OS thread: a SQLite call never lets another greenlet run, so the greenlets of a
        # gevent worker share one instead of opening one per client connection.
        self._local = os_thread_local()
        self._lock = threading.Lock()
        self._generation = 0
        self._connections: list[tuple[int, sqlite3.Connection]] = []

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def path(self) -> str:
        return self._path

    def claim(self, key: str, fingerprint: str, lease_seconds: float) -> Claim:
        def decide(conn: sqlite3.Connection) -> Claim:
            # The clock is read once the write lock is held, so waiting for it cannot age the decision.
            now = self._clock()
            token = secrets.token_hex(16)
            lease_until = now + max(0.0, lease_seconds)
            conn.execute(
                "DELETE FROM idempotency_records WHERE rowid IN (SELECT rowid FROM idempotency_records"
                " WHERE namespace = ? AND expires_at <= ? LIMIT ?)",
                (self._namespace, now, PURGE_BATCH),
            )
            row = conn.execute(
                f"SELECT {COLUMNS}, expires_at FROM idempotency_records WHERE namespace = ? AND key = ?",
                (self._namespace, key),
            ).fetchone()
            if row is None or row["expires_at"] <= now:
                record = IdempotencyRecord(
                    key, RecordState.IN_FLIGHT, fingerprint, token, now, lease_until, updated_at=now, created_at=now
                )
                conn.execute(
                    "INSERT OR REPLACE INTO idempotency_records (namespace, key, state, fingerprint, token,"
                    " started_at, lease_until, order_id, response, updated_at, expires_at, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)",
                    (self._namespace, key, record.state.value, fingerprint, token, now, lease_until, now,
                     now + self._ttl, now),
                )
                return Claim(ClaimOutcome.NEW, record, token, now=now)
            previous = _record_from_row(row)
            if previous.state is RecordState.DONE or previous.queued:
                # A queued draft was answered when it was accepted: every retry replays that answer.
                return Claim(ClaimOutcome.DONE, previous, now=now)
            if previous.state is RecordState.IN_FLIGHT and previous.lease_until > now:
                return Claim(ClaimOutcome.BUSY, previous, now=now)
            # created_at stays: it bounds how far back a lookup must search, across every owner.
            created_at = previous.first_started_at
            conn.execute(
                "UPDATE idempotency_records SET state = 'in_flight', token = ?, started_at = ?, lease_until = ?,"
                " updated_at = ?, expires_at = ?, created_at = ? WHERE namespace = ? AND key = ?",
                (token, now, lease_until, now, now + self._ttl, created_at, self._namespace, key),
            )
            record = IdempotencyRecord(
                key, RecordState.IN_FLIGHT, previous.fingerprint, token, now, lease_until,
                order_id=previous.order_id, response=previous.response, updated_at=now, created_at=created_at,
            )
            return Claim(ClaimOutcome.TAKEOVER, record, token, previous=previous, now=now)

        return self._write(decide)

    def complete(self, key: str, token: str, order_id: str, response: bytes, body_digest: str = "",
                 fingerprint: str = "") -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            cursor = conn.execute(
                "UPDATE idempotency_records SET state = 'done', order_id = ?, response = ?, body_digest = ?,"
                f" {NOTE_FINGERPRINT}, updated_at = ?, expires_at = ? WHERE {FENCE}",
                (order_id, bytes(response), body_digest or None, fingerprint, now, now + self._ttl, self._namespace,
                 key, token, now),
            )
            return cursor.rowcount == 1

        return self._write(apply)

    def replay(self, key: str, body_digest: str) -> Replay | None:
        def read() -> Replay | None:
            row = self._conn().execute(
                "SELECT order_id, response FROM idempotency_records WHERE namespace = ? AND key = ?"
                " AND expires_at > ? AND state = 'done' AND body_digest = ?",
                (self._namespace, key, self._clock(), body_digest),
            ).fetchone()
            return Replay(row["order_id"], bytes(row["response"] or b"")) if row is not None else None

        return self._call(read)

    def replay_or_claim(self, key: str, body_digest: str, lease_seconds: float) -> Replay | Claim | None:
        # A claim here would take the file's write lock for every retry: on one file, the read alone is cheaper.
        return self.replay(key, body_digest)

    def mark_unknown(self, key: str, token: str, fingerprint: str = "", started_at: float | None = None) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            cursor = conn.execute(
                f"UPDATE idempotency_records SET state = 'unknown', {NOTE_FINGERPRINT}, lease_until = ?,"
                f" started_at = COALESCE(?, started_at), updated_at = ?, expires_at = ? WHERE {FENCE}",
                (fingerprint, now, started_at, now, now + self._ttl, self._namespace, key, token, now),
            )
            return cursor.rowcount == 1

        return self._write(apply)

    def release(self, key: str, token: str) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            # Bik was told a queued draft is ordered: it goes back to the queue, never away.
            cursor = conn.execute(
                f"UPDATE idempotency_records SET state = 'queued', lease_until = ?, updated_at = ? WHERE {FENCE}"
                " AND request IS NOT NULL", (now, now, self._namespace, key, token, now))
            if cursor.rowcount == 1:
                return True
            cursor = conn.execute(f"DELETE FROM idempotency_records WHERE {FENCE}", (self._namespace, key, token, now))
            return cursor.rowcount == 1

        return self._write(apply)

    def get(self, key: str) -> IdempotencyRecord | None:
        def read() -> IdempotencyRecord | None:
            row = self._conn().execute(
                f"SELECT {COLUMNS} FROM idempotency_records WHERE namespace = ? AND key = ? AND expires_at > ?",
                (self._namespace, key, self._clock()),
            ).fetchone()
            return _record_from_row(row) if row is not None else None

        return self._call(read)

    def unsettled(self, older_than: float) -> list[IdempotencyRecord]:
        def read() -> list[IdempotencyRecord]:
            now = self._clock()
            rows = self._conn().execute(
                f"SELECT {COLUMNS} FROM idempotency_records WHERE namespace = ? AND expires_at > ?"
                " AND updated_at <= ? AND (state = 'unknown' OR (state = 'in_flight' AND lease_until <= ?))"
                " AND request IS NULL ORDER BY updated_at",
                (self._namespace, now, now - older_than, now),
            ).fetchall()
            return [_record_from_row(row) for row in rows]

        return self._call(read)

    # overflow placement -------------------------------------------------------------------

    def enqueue(self, key: str, token: str, request: bytes, order_id: str, response: bytes,
                fingerprint: str = "") -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            cursor = conn.execute(
                "UPDATE idempotency_records SET state = 'queued', request = ?, order_id = ?, response = ?,"
                f" {NOTE_FINGERPRINT}, enqueued_at = ?, lease_until = ?, updated_at = ?, expires_at = ? WHERE {FENCE}",
                (bytes(request), order_id, bytes(response), fingerprint, now, now, now, now + self._ttl,
                 self._namespace, key, token, now),
            )
            return cursor.rowcount == 1

        return self._write(apply)

    def queued(self, limit: int) -> list[IdempotencyRecord]:
        def read() -> list[IdempotencyRecord]:
            now = self._clock()
            rows = self._conn().execute(
                f"SELECT {COLUMNS} FROM idempotency_records WHERE namespace = ? AND expires_at > ?"
                f" AND {UNSETTLED_QUEUED} AND NOT (state = 'in_flight' AND lease_until > ?)"
                " ORDER BY enqueued_at, key LIMIT ?",
                (self._namespace, now, now, int(limit)),
            ).fetchall()
            return [_record_from_row(row) for row in rows]

        return self._call(read)

    def queue_stats(self) -> QueueStats:
        def read() -> QueueStats:
            now = self._clock()
            depth, oldest = self._conn().execute(
                "SELECT COUNT(*), MIN(enqueued_at) FROM idempotency_records WHERE namespace = ? AND expires_at > ?"
                f" AND {UNSETTLED_QUEUED}", (self._namespace, now),
            ).fetchone()
            return QueueStats(depth, oldest, now)

        return self._call(read)

    def claim_queued(self, key: str, lease_seconds: float) -> Claim | None:
        def decide(conn: sqlite3.Connection) -> Claim | None:
            now = self._clock()
            select = f"SELECT {COLUMNS}, expires_at FROM idempotency_records WHERE namespace = ? AND key = ?"
            row = conn.execute(select, (self._namespace, key)).fetchone()
            if row is None or row["expires_at"] <= now:
                return None
            previous = _record_from_row(row)
            lapsed = previous.state is RecordState.IN_FLIGHT and previous.lease_until <= now
            if not previous.queued or not (previous.state in (RecordState.QUEUED, RecordState.UNKNOWN) or lapsed):
                return None
            token = secrets.token_hex(16)
            conn.execute(
                "UPDATE idempotency_records SET state = 'in_flight', token = ?, started_at = ?, lease_until = ?,"
                " updated_at = ?, expires_at = ?, created_at = ? WHERE namespace = ? AND key = ?",
                (token, now, now + max(0.0, lease_seconds), now, now + self._ttl, previous.first_started_at,
                 self._namespace, key),
            )
            record = _record_from_row(conn.execute(select, (self._namespace, key)).fetchone())
            outcome = ClaimOutcome.NEW if previous.state is RecordState.QUEUED else ClaimOutcome.TAKEOVER
            return Claim(outcome, record, token, previous=previous, now=now)

        return self._write(decide)

    def complete_queued(self, key: str, token: str, platform_order_id: str) -> bool:
        return self._settle_queued(key, token, "done", platform_order_id=platform_order_id)

    def refuse(self, key: str, token: str, reason: str) -> bool:
        return self._settle_queued(key, token, "refused", reason=reason)

    def _settle_queued(self, key: str, token: str, state: str, *, platform_order_id: str | None = None,
                       reason: str | None = None) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            cursor = conn.execute(
                "UPDATE idempotency_records SET state = ?, platform_order_id = ?, reason = ?, updated_at = ?,"
                f" expires_at = ? WHERE {FENCE} AND request IS NOT NULL",
                (state, platform_order_id, reason, now, now + self._ttl, self._namespace, key, token, now),
            )
            return cursor.rowcount == 1

        return self._write(apply)

    def refused(self, limit: int) -> list[IdempotencyRecord]:
        def read() -> list[IdempotencyRecord]:
            rows = self._conn().execute(
                f"SELECT {COLUMNS} FROM idempotency_records WHERE namespace = ? AND expires_at > ?"
                " AND request IS NOT NULL AND state = 'refused' ORDER BY enqueued_at, key LIMIT ?",
                (self._namespace, self._clock(), int(limit)),
            ).fetchall()
            return [_record_from_row(row) for row in rows]

        return self._call(read)

    def requeue(self, key: str) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            cursor = conn.execute(
                "UPDATE idempotency_records SET state = 'queued', reason = NULL, enqueued_at = ?, lease_until = ?,"
                " updated_at = ?, expires_at = ? WHERE namespace = ? AND key = ? AND expires_at > ?"
                " AND request IS NOT NULL AND state = 'refused'",
                (now, now, now, now + self._ttl, self._namespace, key, now),
            )
            return cursor.rowcount == 1

        return self._write(apply)

    def cancel_queued(self, key: str, reason: str) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            cursor = conn.execute(
                "UPDATE idempotency_records SET state = 'refused', reason = ?, updated_at = ?, expires_at = ?"
                " WHERE namespace = ? AND key = ? AND expires_at > ? AND request IS NOT NULL AND state = 'queued'",
                (reason, now, now + self._ttl, self._namespace, key, now),
            )
            return cursor.rowcount == 1

        return self._write(apply)

    def take_placer_lease(self, holder: str, seconds: float) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            row = conn.execute("SELECT holder, lease_until FROM placer_leases WHERE namespace = ?",
                               (self._namespace,)).fetchone()
            if row is not None and row["holder"] != holder and row["lease_until"] > now:
                return False
            conn.execute("INSERT OR REPLACE INTO placer_leases (namespace, holder, lease_until) VALUES (?, ?, ?)",
                         (self._namespace, holder, now + seconds))
            return True

        return self._write(apply)

    def drop_placer_lease(self, holder: str) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM placer_leases WHERE namespace = ? AND holder = ?",
                                              (self._namespace, holder)))

    def ping(self) -> None:
        self._call(lambda: self._conn().execute("SELECT 1 FROM idempotency_records LIMIT 1").fetchall())

    def warm_up(self, first_start: bool = True) -> None:
        self.ping()

    def memory_began(self) -> float:
        # The file lives beside the bridge on one host: it is lost with the bridge, not under it.
        return 0.0

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            pid = os.getpid()
            mine = [conn for owner, conn in self._connections if owner == pid]
            # Connections inherited over fork belong to the parent: closing them here could disturb its
            # locks, and dropping them would let the collector close them, so they stay referenced.
            self._connections = [(owner, conn) for owner, conn in self._connections if owner != pid]
        for conn in mine:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _write(self, decide: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = decide(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

        return self._call(run)

    def _conn(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        pid = os.getpid()
        if held is not None and held[0] == self._generation and held[1] == pid:
            return held[2]
        conn = self._connect()
        with self._lock:
            self._connections.append((pid, conn))
            self._local.held = (self._generation, pid, conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: every transaction is opened explicitly, so none is left open by a read.
        # check_same_thread is off only so close() can close every thread's connection; each thread
        # still uses its own.
        conn = sqlite3.connect(
            self._path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(conn)
            # A committed claim or completion must survive power loss, or a create could run twice.
            conn.execute("PRAGMA synchronous = FULL")
            for statement in SCHEMA:
                conn.execute(statement)
            _add_columns(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _call(fn: Callable[[], T]) -> T:
        try:
            return fn()
        except sqlite3.Error as exc:
            # The public message is what Bik sees; the cause stays in the chain for the logs.
            raise StoreUnavailable() from exc
