"""CommandPipe on a real Redis: commands that arrive together share a trip, and each caller learns only its own fate."""
from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from adapters.stores import redis_pipe
from adapters.stores.redis_pipe import CommandPipe, NotSent
from tests.stores.conftest import redis_url
from tests.support.waiting import wait_until

pytestmark = pytest.mark.redis


class Caller:
    """One command sent through the pipe from a thread of its own, as a request would."""

    def __init__(self, pipe: CommandPipe, *command: Any):
        self.reply: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(pipe, command), daemon=True)
        self._thread.start()

    def _run(self, pipe: CommandPipe, command: tuple) -> None:
        try:
            self.reply = pipe.execute_command(*command)
        except BaseException as exc:  # noqa: BLE001 - the test reads what the caller got
            self.error = exc

    def result(self) -> Any:
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the caller never got an answer"
        if self.error is not None:
            raise self.error
        return self.reply


@pytest.fixture
def key() -> str:
    return f"bik-bridge-test:pipe:{uuid.uuid4().hex}"


@pytest.fixture
def pipe():
    client = redis.Redis.from_url(redis_url(), socket_timeout=10, decode_responses=False)
    made = CommandPipe(client)
    made.execute_command("PING")  # the connection it holds is open
    yield made
    made.close()
    client.close()


def writes(pipe: CommandPipe) -> list[int]:
    """From now on, how many commands each write to Redis carried."""
    counted: list[int] = []
    conn = pipe._conn
    pack = conn.pack_commands

    def counting(commands):
        commands = list(commands)
        counted.append(len(commands))
        return pack(commands)

    conn.pack_commands = counting
    return counted


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def blocked_client_id(admin: redis.Redis) -> int | None:
    for client in admin.client_list():
        if client.get("cmd") == "blpop":
            return int(client["id"])
    return None


@contextmanager
def out_on_the_wire(pipe: CommandPipe, admin: redis.Redis, key: str) -> Iterator[Caller]:
    """A batch out and unanswered (a BLPOP on `key`:go) while the test lines up the next callers."""
    blocker = Caller(pipe, "BLPOP", f"{key}:go", 0)
    wait_until(lambda: blocked_client_id(admin), "the pipe's BLPOP to block on the server")
    yield blocker


def waiting(pipe: CommandPipe, count: int) -> None:
    wait_until(lambda: len(pipe._waiting) == count, f"{count} commands waiting for the pipe")


def test_commands_arriving_while_a_batch_is_out_go_together_and_each_gets_its_own_reply(pipe, redis_admin, key):
    with out_on_the_wire(pipe, redis_admin, key) as blocker:
        sent = writes(pipe)
        callers = [Caller(pipe, "SET", f"{key}:{n}", n, "GET") for n in range(10)]
        waiting(pipe, 10)
        redis_admin.rpush(f"{key}:go", "x")
        assert blocker.result() == [f"{key}:go".encode(), b"x"]
    assert [c.result() for c in callers] == [None] * 10  # SET ... GET: nothing there before
    assert [pipe.execute_command("GET", f"{key}:{n}") for n in range(10)] == [str(n).encode() for n in range(10)]
    assert sent[:1] == [10]  # the ten commands went out in one write
    redis_admin.delete(*(f"{key}:{n}" for n in range(10)))


def test_an_error_reply_reaches_its_own_caller_alone(pipe, redis_admin, key):
    redis_admin.set(key, "not a number")
    with out_on_the_wire(pipe, redis_admin, key):
        before = Caller(pipe, "GET", key)
        waiting(pipe, 1)
        failing = Caller(pipe, "INCR", key)
        waiting(pipe, 2)
        after = Caller(pipe, "STRLEN", key)
        waiting(pipe, 3)
        redis_admin.rpush(f"{key}:go", "x")
    assert before.result() == b"not a number"
    with pytest.raises(redis.ResponseError):
        failing.result()
    assert after.result() == 12
    assert pipe.execute_command("PING") == b"PONG"
    redis_admin.delete(key)


def test_when_the_connection_fails_the_batch_out_may_have_run_and_the_commands_waiting_did_not(pipe, redis_admin,
                                                                                                 key):
    with out_on_the_wire(pipe, redis_admin, key) as blocker:
        later = Caller(pipe, "SET", key, "written")
        waiting(pipe, 1)
        redis_admin.client_kill_filter(_id=blocked_client_id(redis_admin))
    with pytest.raises(redis.ConnectionError) as out:
        blocker.result()
    assert not isinstance(out.value, NotSent)
    with pytest.raises(NotSent):
        later.result()
    assert redis_admin.get(key) is None  # never written
    assert pipe.execute_command("SET", key, "next") == b"OK"  # the next command opens a new connection
    assert redis_admin.get(key) == b"next"
    redis_admin.delete(key)


class Gone(BaseException):
    """A caller's greenlet killed while it waits for its turn (GreenletExit, say)."""


def test_a_caller_gone_while_it_waited_for_its_turn_does_not_stall_the_pipe(pipe, redis_admin, key, monkeypatch):
    class GoneOnceWoken(threading.Event):
        def wait(self, timeout=None):
            super().wait(timeout)
            raise Gone()

    class Doomed(redis_pipe._Call):
        def __init__(self, command):
            super().__init__(command)
            if command[:2] == ("SET", f"{key}:doomed"):
                self.woken = GoneOnceWoken()

    monkeypatch.setattr(redis_pipe, "_Call", Doomed)
    with out_on_the_wire(pipe, redis_admin, key):
        doomed = Caller(pipe, "SET", f"{key}:doomed", "1")
        waiting(pipe, 1)
        following = Caller(pipe, "SET", key, "2")
        waiting(pipe, 2)
        redis_admin.rpush(f"{key}:go", "x")  # the doomed caller is handed the next turn, and is gone
    with pytest.raises(Gone):
        doomed.result()
    assert following.result() == b"OK"
    assert redis_admin.get(f"{key}:doomed") is None and redis_admin.get(key) == b"2"
    redis_admin.delete(key)


def test_a_forked_process_opens_a_connection_of_its_own(pipe, monkeypatch):
    inherited = pipe._conn
    monkeypatch.setattr(redis_pipe.os, "getpid", lambda: -1)
    assert pipe.execute_command("PING")
    assert pipe._conn is not inherited
    assert inherited._sock is not None  # the parent's connection is left alone


def test_a_connection_the_server_closed_while_idle_is_opened_again_before_anything_is_written(pipe, redis_admin,
                                                                                              key):
    """A restart or an idle timeout closes the held connection between batches: the next command still runs, once."""
    mine = pipe.execute_command("CLIENT", "ID")
    redis_admin.client_kill_filter(_id=mine)
    assert pipe.execute_command("INCR", key) == 1
    assert pipe.execute_command("CLIENT", "ID") != mine
    redis_admin.delete(key)


def test_commands_that_could_not_reach_the_server_are_known_not_to_have_run():
    """Nothing listens where the pipe connects: what it was given was never written, and says so."""
    nowhere = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1, socket_timeout=1,
                          retry=Retry(NoBackoff(), 0))
    with pytest.raises(NotSent):
        CommandPipe(nowhere).execute_command("SET", "k", "v")
