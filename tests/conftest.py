"""Fixtures shared by every test level."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.redis_cluster import LocalCluster

# The fake stores' per-module servers and per-test views, for every level that talks to a fake.
pytest_plugins = ["tests.fakes.fixtures"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_PLACE_ORDER = json.loads((PROJECT_ROOT / "examples" / "place-order.json").read_text(encoding="utf-8"))


class ServedClient(FlaskClient):
    """Flask's test client answering as a WSGI server does: the whole answer read, then closed.

    The bridge writes a placed order's record and the request line when the server closes the answer; Flask's own
    client leaves a streamed answer open until the test closes it.
    """

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture(autouse=True)
def served_test_client(monkeypatch) -> None:
    """Every Flask test client in the suite is a ServedClient."""
    monkeypatch.setattr(Flask, "test_client_class", ServedClient)


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
