"""`redis+sentinel://` URLs: the store finds the primary through a real Sentinel and works on it."""
from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from urllib.parse import urlsplit

import pytest
import redis

from adapters.stores import RedisIdempotencyStore
from adapters.stores.redis_url import redis_client
from bridge.core.errors import StoreUnavailable
from bridge.core.ports import ClaimOutcome
from tests.support.waiting import wait_until

from .conftest import TTL_SECONDS, redis_url

pytestmark = pytest.mark.redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory):
    """A Sentinel watching the test Redis as service `bikbridge-<hex>`; yields (port, service)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed: no Sentinel to start")
    primary = urlsplit(redis_url())
    port, service = free_port(), f"bikbridge-{uuid.uuid4().hex[:8]}"
    workdir = tmp_path_factory.mktemp("sentinel")
    conf = workdir / "sentinel.conf"
    # A long down-after: this Sentinel must never try a failover of the shared test Redis.
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                    f"sentinel monitor {service} {primary.hostname} {primary.port or 6379} 1\n"
                    f"sentinel down-after-milliseconds {service} 600000\n")
    proc = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=1)

    def knows_the_primary() -> bool:
        try:
            return bool(client.sentinel_get_master_addr_by_name(service))
        except redis.RedisError:
            return False  # not listening yet

    try:
        wait_until(knows_the_primary, "the Sentinel to start", timeout=5, every=0.05)
        yield port, service
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_store_claims_and_completes_through_a_sentinel_url(sentinel):
    port, service = sentinel
    db = urlsplit(redis_url()).path.strip("/") or "0"
    store = RedisIdempotencyStore.from_url(f"redis+sentinel://127.0.0.1:{port}/{service}/{db}",
                                           namespace=f"bik-bridge-test:{uuid.uuid4().hex}", ttl_seconds=TTL_SECONDS)
    try:
        store.ping()
        claim = store.claim("d-1", "fp", 30)
        assert claim.outcome is ClaimOutcome.NEW
        assert store.complete("d-1", claim.token, "order-1", b"{}")

        again = store.claim("d-1", "fp", 30)
        assert again.outcome is ClaimOutcome.DONE and again.record.order_id == "order-1"
        # The record landed on the primary the Sentinel named, in the URL's database.
        direct = redis.Redis.from_url(redis_url())
        assert direct.hget(store.redis_key("d-1"), "order_id") == b"order-1"
        direct.close()
    finally:
        store.close()


def test_unknown_service_is_store_unavailable(sentinel):
    port, _ = sentinel
    store = RedisIdempotencyStore.from_url(f"redis+sentinel://127.0.0.1:{port}/no-such-service/0",
                                           namespace="bik-bridge-test:none", ttl_seconds=TTL_SECONDS)
    with pytest.raises(StoreUnavailable):
        store.ping()


@pytest.mark.parametrize("url", ["redis+sentinel://127.0.0.1:26379", "redis+sentinel://h:26379/svc/db0",
                                 "redis+sentinel://h:port/svc"])
def test_malformed_sentinel_url_is_refused(url):
    with pytest.raises(ValueError):
        redis_client(url)


def test_several_sentinels_with_credentials_are_read():
    client = redis_client("rediss+sentinel://app:p%40ss@s1:26380,[::1],s3/orders/2?sentinel_password=sp",
                          socket_timeout=1.5)
    pool = client.connection_pool
    manager = pool.sentinel_manager
    assert [s.get_connection_kwargs()["host"] for s in manager.sentinels] == ["s1", "::1", "s3"]
    assert [s.get_connection_kwargs()["port"] for s in manager.sentinels] == [26380, 26379, 26379]
    assert manager.sentinels[0].get_connection_kwargs()["password"] == "sp"
    assert pool.service_name == "orders"
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"], kwargs["socket_timeout"]) == (2, "app", "p@ss", 1.5)
    assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
