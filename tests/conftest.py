"""Fixtures shared by every test level."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.redis_cluster import LocalCluster

# The fake stores' per-module servers and per-test views, for every level that talks to a fake.
pytest_plugins = ["tests.fakes.fixtures"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_PLACE_ORDER = json.loads((PROJECT_ROOT / "examples" / "place-order.json").read_text(encoding="utf-8"))


@pytest.fixture
def project_root() -> Path:
    """The repository root."""
    return PROJECT_ROOT


@pytest.fixture
def place_order_body() -> dict:
    """A fresh copy of examples/place-order.json, free to mutate."""
    return copy.deepcopy(_PLACE_ORDER)


@pytest.fixture(scope="session")
def redis_cluster():
    """A real three-primary Redis Cluster on loopback ports, for the session."""
    cluster = LocalCluster().start()
    yield cluster
    cluster.stop()
