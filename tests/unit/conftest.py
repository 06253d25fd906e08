"""Fixtures the service-level unit tests share: a fake clock, a SQLite store on it, Bik's example order."""
import pytest

from adapters.stores.sqlite_store import SqliteIdempotencyStore
from bridge.core.models import PlaceOrderRequest

from .fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    """The real SQLite store, reading the test's clock: the service compares record times only with it."""
    store = SqliteIdempotencyStore(str(tmp_path / "idempotency.db"), namespace="test", ttl_seconds=3600, clock=clock)
    yield store
    store.close()


@pytest.fixture
def request_(place_order_body) -> PlaceOrderRequest:
    return PlaceOrderRequest.model_validate(place_order_body)
