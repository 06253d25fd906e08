"""Fixtures for fuzzing: one app per module on the local platform, SQLite in a temporary folder."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from bridge.bootstrap import build_service, parse_config
from bridge.http.app import create_app

TOKEN = "bik-fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# Derandomized so a run in CI is the same run every time; BIK_BRIDGE_FUZZ_EXAMPLES=N searches anew by hand.
EXPLORE = int(os.environ.get("BIK_BRIDGE_FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples: int) -> settings:
    """`examples` per test in CI, or as many random ones as BIK_BRIDGE_FUZZ_EXAMPLES asks for."""
    return settings(max_examples=EXPLORE or examples, deadline=None, derandomize=not EXPLORE, database=None,
                    suppress_health_check=list(HealthCheck))


FUZZ = fuzz_settings(150)


def local_config(folder, **sections):
    """The local platform with bearer auth and SQLite idempotency, all files under `folder`."""
    raw = {
        "platform": "local",
        "auth": {"scheme": "bearer", "token": TOKEN},
        "idempotency": {"backend": "sqlite", "sqlite_path": str(folder / "idempotency.db"), "wait_seconds": 0},
        "local": {"db_path": str(folder / "local.db")},
    }
    raw.update(sections)
    return parse_config(raw, {})


@pytest.fixture(scope="module")
def fuzz_config(tmp_path_factory):
    return local_config(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def app_client(fuzz_config):
    """A test client shared by every example of a module: hypothesis reruns the body, not the fixture."""
    service = build_service(fuzz_config)
    yield create_app(fuzz_config, service=service).test_client()
    service.store.close()
