"""Commands of concurrent requests sent to one Redis together: one write and one read per batch, not per command.

Under load most of a Redis call's cost is its own: a connection taken from the pool and checked, a write and a read,
each a switch through the worker's event loop. A `CommandPipe` keeps one connection of the client's pool and lets
the caller that finds it idle send every command waiting at that moment in one write, read their replies in order,
hand each to its caller, and pass the turn to a caller that arrived meanwhile. Each command is still one Redis
command (a script runs atomically as before); only the trip is shared.

What a caller can tell about its command is what it could tell over a connection of its own: a reply, an error
reply, or a connection error or timeout while its batch was on the wire, after which the command may have run.
Commands never written (no connection could be opened, or they were waiting when a batch failed) fail at once
with `NotSent`, a `ConnectionError`, and surely did not run. A connection the server closed while idle is opened
again before a batch is written to it, as the pool checks a connection it hands out.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError


class NotSent(RedisConnectionError):
    """The connection failed before this command was written: it did not run."""


def _not_sent(cause: BaseException) -> NotSent:
    return NotSent(f"not sent: the connection to Redis failed ({type(cause).__name__}: {cause})")


class _Call:
    """One command, its caller's wake-up, and what came of it."""

    __slots__ = ("command", "error", "leads", "reply", "woken")

    def __init__(self, command: tuple) -> None:
        self.command = command
        self.woken = threading.Event()
        self.leads = False  # woken to send the next batch, not with a reply
        self.reply: Any = None
        self.error: BaseException | None = None


class CommandPipe:
    """Runs commands over one held connection of `client`'s pool, batching those that arrive together."""

    def __init__(self, client: redis.Redis):
        self._pool = client.connection_pool
        self._lock = threading.Lock()
        self._waiting: list[_Call] = []
        self._sending = False  # a caller is writing a batch or reading its replies
        self._conn: Any = None
        self._pid = 0

    def execute_command(self, *command: Any) -> Any:
        """Send `command` (with any others waiting) and return its reply; raises what redis-py would."""
        call = _Call(command)
        with self._lock:
            self._waiting.append(call)
            leads = not self._sending
            self._sending = True
        if not leads:
            self._wait_for_turn(call)
            leads = call.leads
        if leads:
            self._send_waiting()
        if call.error is not None:
            raise call.error
        return call.reply

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        """EVALSHA through the pipe, so that a `Script` called with `client=pipe` batches too."""
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def script_load(self, script: str) -> str:
        """SCRIPT LOAD (after NOSCRIPT) through the client itself: rare, and it must not wait for a batch."""
        return self._pool_client().script_load(script)

    def open(self) -> None:
        """Open the held connection now (a PING through the pipe), so that the first command does not wait for it."""
        self.execute_command("PING")

    def close(self) -> None:
        """Give the held connection back, closed; the next command opens another."""
        with self._lock:
            self._drop_connection()

    def _pool_client(self) -> redis.Redis:
        return redis.Redis(connection_pool=self._pool)

    def _wait_for_turn(self, call: _Call) -> None:
        try:
            call.woken.wait()
        except BaseException:
            # The caller is gone (its greenlet killed): a command not yet written is dropped, and a turn handed to
            # it is passed on, or the pipe would wait for it for ever.
            with self._lock:
                if call in self._waiting:
                    self._waiting.remove(call)
                handed = call.leads
            if handed:
                self._pass_turn()
            raise

    def _send_waiting(self) -> None:
        """Send everything waiting, read each reply to its caller, then pass the turn on."""
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self._round_trip(batch)
        finally:
            for call in batch:
                call.woken.set()
            self._pass_turn()

    def _pass_turn(self) -> None:
        """Wake the first caller that arrived meanwhile to send the next batch, or leave the pipe idle."""
        with self._lock:
            if self._waiting:
                following = self._waiting[0]
                following.leads = True
                following.woken.set()
            else:
                self._sending = False

    def _round_trip(self, batch: list[_Call]) -> None:
        written = answered = 0
        try:
            conn = self._ready_connection()
            written = len(batch)  # from here a command may reach the server, whatever happens next
            # No health-check PING inside the batch: `_ready_connection` checked the connection before `written`.
            conn.send_packed_command(conn.pack_commands([call.command for call in batch]), check_health=False)
            for call in batch:
                try:
                    call.reply = conn.read_response(disconnect_on_error=False)
                except redis.ResponseError as exc:  # an error reply, this command's alone: the connection is fine
                    call.error = exc
                answered += 1
        except BaseException as exc:
            # Replies may be left unread, so the connection is dropped. The commands written and not answered get
            # the failure (they may have run); those never written, and those that arrived meanwhile, did not run.
            self._drop_connection()
            failure = exc if isinstance(exc, redis.RedisError) else RedisConnectionError(type(exc).__name__)
            for call in batch[answered:written]:
                call.error = failure
            for call in batch[written:]:
                call.error = _not_sent(exc)
            if not isinstance(exc, Exception):
                raise  # the leader itself was stopped: the callers waiting keep their turn on a new connection
            self._fail_waiting(exc)

    def _fail_waiting(self, cause: BaseException) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for call in waiting:
            call.error = _not_sent(cause)
            call.woken.set()

    def _connection(self) -> Any:
        pid = os.getpid()
        if self._conn is None or self._pid != pid:
            # A connection opened by a parent process is the parent's: a forked worker takes its own.
            self._conn, self._pid = self._pool.get_connection(), pid
        return self._conn

    def _ready_connection(self) -> Any:
        """The held connection, opened again if the server closed it while it was idle (a restart, an idle
        timeout), as the pool checks a connection it hands out: nothing of a batch is written to a dead socket."""
        conn = self._connection()
        conn.connect()  # does nothing when it is open
        try:
            if conn.can_read():
                raise RedisConnectionError("the connection has data no command asked for")
        except (RedisConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            conn.connect()
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.disconnect()
            self._pool.release(conn)
