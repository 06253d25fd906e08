"""Fixtures the service-level unit tests share: a SQLite store, a fake clock, Bik's example order."""
import pytest

from adapters.stores.sqlite_store import SqliteIdempotencyStore
from bridge.models import PlaceOrderRequest

from .fakes import FakeClock


@pytest.fixture
def store(tmp_path):
    store = SqliteIdempotencyStore(str(tmp_path / "idempotency.db"), namespace="test", ttl_seconds=3600)
    yield store
    store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def request_(place_order_body) -> PlaceOrderRequest:
    return PlaceOrderRequest.model_validate(place_order_body)
