"""Fixtures for the fault-injection suite: one fake store and its bridges per module, a plain Redis client."""
from __future__ import annotations

import os
import signal
import subprocess
import uuid
from typing import Callable

import pytest
import redis

from adapters.stores.redis_quota import quota_keys
from tests.fakes.bigcommerce import FakeBigCommerce
from tests.integration.bridge_process import BridgeProcess
from tests.integration.conftest import place_body, redis_url  # noqa: F401  (fixtures, re-exported)

from .support import fault_config


@pytest.fixture
def fake(fake_bigcommerce: FakeBigCommerce) -> FakeBigCommerce:
    """The module's fake store, emptied for each test."""
    return fake_bigcommerce


def stop_all(bridges: list[BridgeProcess]) -> None:
    """Stop bridges together: each takes a second or two to drain, so signal them all before waiting."""
    for bridge in bridges:
        bridge.session.close()
        if bridge.proc is not None and bridge.proc.poll() is None:
            os.killpg(bridge.proc.pid, signal.SIGTERM)
    for bridge in bridges:
        if bridge.proc is not None:
            try:
                bridge.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        bridge.stop()  # kills what did not drain in time


@pytest.fixture(scope="module")
def start_bridges(tmp_path_factory) -> Callable[..., BridgeProcess]:
    """Start bridges that live for the whole module, stopped at its end."""
    started: list[BridgeProcess] = []

    def start(config: dict, name: str = "bridge") -> BridgeProcess:
        bridge = BridgeProcess(config, tmp_path_factory.mktemp(name), name=name)
        started.append(bridge)
        return bridge.start()

    yield start
    stop_all(started)

@pytest.fixture(scope="module")
def shared_config(bigcommerce_server, redis_url) -> dict:  # noqa: F811
    """The config the module's default bridge(s) run: short budgets, a namespace of their own."""
    return fault_config(bigcommerce_server, redis_url, idempotency={"namespace": f"faults:{uuid.uuid4().hex}"})


@pytest.fixture(scope="session")
def redis_client(redis_url) -> redis.Redis:  # noqa: F811
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def forget_quota(redis_client, config):
    """Each test starts with no shared knowledge of the quota: neither what the answers said nor the send log."""
    namespace = config["idempotency"]["namespace"]
    keys = quota_keys(f"{namespace}|ratelimit")
    redis_client.delete(*keys)
    yield
    redis_client.delete(*keys)
