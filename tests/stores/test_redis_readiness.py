"""The quicker check of a pooled Redis connection still refuses a connection that is not ready for a command."""
from __future__ import annotations

import select

import pytest
import redis

from adapters.stores.redis_readiness import QuickReadinessParser, os_poll
from adapters.stores.redis_store import store_client
from adapters.stores.redis_url import redis_client
from tests.stores.conftest import redis_url

pytestmark = pytest.mark.redis


@pytest.fixture
def client():
    # The idempotency store's own client: no retries, so a connection handed out unready would fail the command.
    made = store_client(redis_url())
    yield made
    made.close()


def wait_readable(connection) -> None:
    """Block until the connection's socket has something to read (the reply sent without being read)."""
    assert select.select([connection._sock], [], [], 5)[0], "no reply arrived"


def test_clients_from_a_url_use_the_quick_parser(client):
    connection = client.connection_pool.get_connection()
    try:
        assert isinstance(connection._parser, QuickReadinessParser)
    finally:
        client.connection_pool.release(connection)
    # Made without connecting: a local socket's client takes it too.
    assert redis_client("unix:///tmp/none.sock").connection_pool.connection_kwargs["parser_class"] is QuickReadinessParser


def test_a_connection_the_server_closed_is_replaced_before_the_next_command(client):
    client.set("readiness:key", b"v")
    killer = redis.Redis.from_url(redis_url())
    assert killer.client_kill_filter(_id=client.client_id()) == 1
    killer.close()
    assert client.get("readiness:key") == b"v"


def test_a_reply_left_unread_is_seen_by_the_check(client):
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        assert connection.can_read() is False
        connection.send_command("ECHO", "stray")  # its reply is never read
        wait_readable(connection)
        assert connection.can_read() is True  # what redis-py's pool asks before handing the connection out
    finally:
        connection.disconnect()
        pool.release(connection)


def test_the_quick_check_polls_with_the_operating_systems_poll():
    # Without gevent's patching (as in this test process) that is select's own poll.
    assert type(os_poll()) is type(select.poll())
