"""Fixtures for end-to-end tests: fake platforms, a real Redis, and bridges under gunicorn."""
from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path

import pytest
import redis
import yaml

from bridge.config import CONFIG_ENV
from bridge.ops.cli import main
from tests.fakes.bigcommerce import FakeBigCommerce
from tests.fakes.bitbybit import FakeBitbybit
from tests.integration.bridge_process import PROJECT_ROOT, BridgeProcess

TOKEN = "bik-secret-token-0123456789"


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("BIK_BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"these tests need Redis at {url} (install redis-server): {exc}")
    return url


@pytest.fixture
def check_config_ping(tmp_path, monkeypatch, capsys):
    """Run `check-config --ping` on a config with short upstream timeouts; returns (exit code, stdout, stderr)."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)

    def run(config: dict) -> tuple[int, str, str]:
        upstream = {"max_attempts": 2, "connect_timeout_seconds": 1, "timeout_seconds": 2, "total_timeout_seconds": 4}
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump({**config, "upstream": upstream}))
        code = main(["check-config", "--config", str(path), "--ping"])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def fake_bc():
    with FakeBigCommerce() as fake:
        yield fake


@pytest.fixture
def fake_bbb():
    with FakeBitbybit() as fake:
        yield fake


@pytest.fixture
def place_body():
    """A fresh placeOrder body with a unique draft id."""
    body = json.loads((PROJECT_ROOT / "examples" / "place-order.json").read_text())
    draft = f"nb_{uuid.uuid4().hex[:12]}"
    body["draftOrderId"] = body["order"]["id"] = draft
    return body


def bigcommerce_config(fake: FakeBigCommerce, redis_url: str, **sections) -> dict:
    """A bridge config for the fake store, Redis idempotency in a namespace of its own."""
    config = {
        "platform": "bigcommerce",
        "server": {"workers": 2},
        "auth": {"scheme": "bearer", "token": TOKEN},
        "idempotency": {"backend": "redis", "redis_url": redis_url, "namespace": f"test:{uuid.uuid4().hex}",
                        "wait_seconds": 5},
        "upstream": {"timeout_seconds": 2, "total_timeout_seconds": 4, "connect_timeout_seconds": 1},
        "bigcommerce": {"store_hash": fake.store_hash, "access_token": fake.access_token,
                        "api_base_url": fake.api_base_url},
        "logging": {"format": "json"},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return copy.deepcopy(config)


def bitbybit_config(fake: FakeBitbybit, redis_url: str, **sections) -> dict:
    """A bridge config for the fake bitbybit store, Redis idempotency in a namespace of its own."""
    config = {
        "platform": "bitbybit",
        "server": {"workers": 2},
        "auth": {"scheme": "bearer", "token": TOKEN},
        "idempotency": {"backend": "redis", "redis_url": redis_url, "namespace": f"test:{uuid.uuid4().hex}",
                        "wait_seconds": 5},
        "upstream": {"timeout_seconds": 2, "total_timeout_seconds": 4, "connect_timeout_seconds": 1},
        # The tests' quotas count in one-second windows (`fake.set_rate_limit(n, window_seconds=1)`).
        "bitbybit": {"api_key": fake.api_key, "api_base_url": fake.api_base_url, "auth_header": fake.auth_header,
                     "rate_limit_window_seconds": 1},
        "logging": {"format": "json"},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return copy.deepcopy(config)


@pytest.fixture
def start_bridge(tmp_path: Path):
    """Start bridges for a test and stop them all afterwards."""
    started: list[BridgeProcess] = []

    def start(config: dict, name: str = "bridge", env: dict | None = None) -> BridgeProcess:
        bridge = BridgeProcess(config, tmp_path, env=env, name=name)
        started.append(bridge)
        return bridge.start()

    yield start
    for bridge in started:
        # The test is over: nothing it checks waits on a drain (a graceful stop takes a gevent worker up to a
        # second to notice), and tests of stopping stop their bridges themselves.
        bridge.kill()
