"""What only the SQLite store promises: one file shared by processes, expiry, lazy connections."""
from __future__ import annotations

import multiprocessing
import queue
import sqlite3
import threading
import time
import uuid

import pytest

from adapters.stores import SqliteIdempotencyStore
from bridge.core.errors import StoreUnavailable
from bridge.core.ports import ClaimOutcome

from .conftest import TTL_SECONDS

PROCESSES = 8
THREADS = 4


def _claim_from_process(path: str, namespace: str, barrier, results) -> None:
    """Runs in a spawned process: THREADS threads claim the same key once the whole fleet is ready."""
    store = SqliteIdempotencyStore(path, namespace=namespace, ttl_seconds=TTL_SECONDS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def claim() -> None:
        try:
            barrier.wait(timeout=60)
            outcome = store.claim("d-race", "fp", 60).outcome.value
        except Exception as exc:  # reported to the parent, which fails the test with it
            outcome = f"error: {exc!r} caused by {exc.__cause__!r}"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=claim) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    results.put(outcomes)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "idempotency.db")


def test_concurrent_claims_from_many_processes_yield_exactly_one_owner(path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES * THREADS)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_claim_from_process, args=(path, "ns", barrier, results)) for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [outcome for _ in workers for outcome in results.get(timeout=60)]
    except queue.Empty:
        pytest.fail("a claiming process did not report back")
    finally:
        for worker in workers:
            worker.join(timeout=10)

    assert sorted(outcomes) == ["busy"] * (PROCESSES * THREADS - 1) + ["new"]


def test_nothing_is_opened_before_first_use(path, tmp_path):
    store = SqliteIdempotencyStore(path, namespace="ns", ttl_seconds=TTL_SECONDS)
    assert list(tmp_path.iterdir()) == []

    store.ping()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    store.close()


def test_expired_rows_count_as_absent_and_are_purged_on_claim(sqlite_backend, path):
    store = sqlite_backend.store()
    old = store.claim("old", "fp", 60)
    done = store.claim("done", "fp", 60)
    assert store.complete("done", done.token, "order-1", b"body")
    _age(path, "old", "done")

    assert store.get("old") is None and store.get("done") is None
    assert store.complete("old", old.token, "order-2", b"x") is False
    assert store.unsettled(0) == []

    again = store.claim("done", "fp-new", 60)
    assert again.outcome is ClaimOutcome.NEW and again.record.fingerprint == "fp-new"
    assert _keys(path) == ["done"]


def test_close_then_use_reopens(sqlite_backend):
    store = sqlite_backend.store()
    claim = store.claim("d-1", "fp", 60)

    store.close()

    assert store.get("d-1") == claim.record


def test_connections_are_per_thread(sqlite_backend):
    store = sqlite_backend.store()
    claim = store.claim("d-1", "fp", 60)
    seen = []

    worker = threading.Thread(target=lambda: seen.append(store.get("d-1")))
    worker.start()
    worker.join()

    assert seen == [claim.record]


def test_unopenable_file_raises_store_unavailable(tmp_path):
    store = SqliteIdempotencyStore(str(tmp_path / "missing" / "x.db"), namespace="ns", ttl_seconds=TTL_SECONDS)

    for call in (lambda: store.claim("d-1", "fp", 1), lambda: store.get("d-1"), store.ping,
                 lambda: store.unsettled(0), lambda: store.release("d-1", "t")):
        with pytest.raises(StoreUnavailable) as raised:
            call()
        assert isinstance(raised.value.__cause__, sqlite3.Error)


class _TracedStore(SqliteIdempotencyStore):
    """The SQLite store, saying when a connection of its own starts a write transaction."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.writing = threading.Event()

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        conn.set_trace_callback(lambda statement: statement == "BEGIN IMMEDIATE" and self.writing.set())
        return conn


def test_locked_database_is_waited_for(path):
    happened: list[str] = []
    store = _TracedStore(path, namespace=f"bik-bridge-test:{uuid.uuid4().hex}", ttl_seconds=TTL_SECONDS,
                         clock=lambda: happened.append("decided") or time.time())
    store.ping()
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    claims: list = []
    claimer = threading.Thread(target=lambda: claims.append(store.claim("d-1", "fp", 60)))
    claimer.start()
    try:
        # The claim asks for the write lock while another connection holds it ...
        assert store.writing.wait(10), "the claim never asked for the write lock"
        happened.append("released")
        blocker.execute("COMMIT")
        claimer.join(10)
        # ... and is decided once the lock is free, instead of failing as "database is locked".
        assert [claim.outcome for claim in claims] == [ClaimOutcome.NEW]
        assert happened[:2] == ["released", "decided"]
    finally:
        blocker.close()
        store.close()


def _age(path: str, *keys: str) -> None:
    """Moves the rows' expiry into the past, as if the retention had run out."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(
                "UPDATE idempotency_records SET expires_at = ? WHERE key = ?", [(time.time() - 1, key) for key in keys]
            )
    finally:
        conn.close()


def _keys(path: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT key FROM idempotency_records ORDER BY key")]
    finally:
        conn.close()


def test_a_file_from_before_created_at_gets_the_column_and_keeps_its_records(tmp_path):
    """An older file is upgraded in place; its records read the owner's start as their first start."""
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE idempotency_records (namespace TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,"
        " fingerprint TEXT NOT NULL, token TEXT NOT NULL, started_at REAL NOT NULL, lease_until REAL NOT NULL,"
        " order_id TEXT, response BLOB, updated_at REAL NOT NULL, expires_at REAL NOT NULL,"
        " PRIMARY KEY (namespace, key))")
    now = time.time()
    conn.execute("INSERT INTO idempotency_records VALUES ('ns', 'd-1', 'unknown', 'fp', 't', ?, ?, NULL, NULL, ?, ?)",
                 (now - 100, now - 90, now - 90, now + 3600))
    conn.commit()
    conn.close()
    store = SqliteIdempotencyStore(path, namespace="ns", ttl_seconds=TTL_SECONDS)

    record = store.get("d-1")
    takeover = store.claim("d-1", "fp", 60)

    assert record.created_at == 0.0 and record.first_started_at == pytest.approx(now - 100)
    assert takeover.outcome is ClaimOutcome.TAKEOVER
    assert takeover.record.created_at == pytest.approx(now - 100)
    store.close()
