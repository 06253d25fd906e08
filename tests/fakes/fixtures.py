"""Fixtures over the fake stores: one server per test module, handed to each test as new."""
from __future__ import annotations

import pytest

from tests.fakes.bigcommerce import FakeBigCommerce
from tests.fakes.bitbybit import FakeBitbybit


@pytest.fixture(scope="module")
def bitbybit_api_key() -> str:
    """The key the module's fake bitbybit store accepts; a module whose adapter sends another key overrides it."""
    return "bbb_test_key"


@pytest.fixture(scope="module")
def bitbybit_server(bitbybit_api_key):
    """One fake bitbybit store serving the whole module."""
    with FakeBitbybit(api_key=bitbybit_api_key) as fake:
        yield fake


@pytest.fixture
def fake_bitbybit(bitbybit_server):
    """The module's fake bitbybit store as new: no orders, faults, latency or gate, before and after the test."""
    _as_new(bitbybit_server)
    yield bitbybit_server
    _as_new(bitbybit_server)


@pytest.fixture(scope="module")
def bigcommerce_server():
    """One fake BigCommerce store serving the whole module."""
    with FakeBigCommerce() as fake:
        yield fake


@pytest.fixture
def fake_bigcommerce(bigcommerce_server):
    """The module's fake BigCommerce store as new: no orders, faults, latency or gate, before and after the test."""
    _as_new(bigcommerce_server)
    yield bigcommerce_server
    _as_new(bigcommerce_server)


def _as_new(fake) -> None:
    fake.reset()
    fake.server.latency_ms = 0
    fake.server.gate = None
