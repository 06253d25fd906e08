"""The getOrder freshness cache: on its own with a fake clock, and inside the service with a counting platform."""
from __future__ import annotations

import json

import pytest

from bridge.core.errors import OrderNotFound
from bridge.core.freshness import FreshnessCache
from bridge.core.models import PlaceOrderRequest
from bridge.core.service import OrderService, ServiceSettings

from .fakes import FakeAdapter, FakeClock, RecordingSleep

DRAFT = "nb_1715200000_a1b2c3d4"


class CountingAdapter(FakeAdapter):
    """The fake platform, counting getOrder reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, order_id, deadline):
        self.reads += 1
        return super().get(order_id, deadline)


class MonotonicClock(FakeClock):
    def __init__(self) -> None:
        super().__init__(start=1000.0)


@pytest.fixture
def adapter() -> CountingAdapter:
    return CountingAdapter()


def make_service(adapter, store, cache_seconds: float) -> OrderService:
    clock = FakeClock()
    settings = ServiceSettings(get_order_cache_seconds=cache_seconds)
    return OrderService(adapter, store, settings, sleep=RecordingSleep(clock))


@pytest.fixture
def placed(place_order_body) -> PlaceOrderRequest:
    return PlaceOrderRequest.model_validate(place_order_body)


def test_an_entry_is_served_until_it_is_older_than_its_seconds():
    clock = MonotonicClock()
    cache = FreshnessCache(5, clock=clock)
    cache.put("118", b"first")
    clock.advance(4.9)
    assert cache.get("118") == b"first"
    clock.advance(0.1)
    assert cache.get("118") is None
    assert len(cache) == 0


def test_the_least_recently_used_entry_goes_first_when_full():
    cache = FreshnessCache(60, max_entries=2, clock=MonotonicClock())
    cache.put("1", b"one")
    cache.put("2", b"two")
    assert cache.get("1") == b"one"  # now the most recently used
    cache.put("3", b"three")
    assert (cache.get("1"), cache.get("2"), cache.get("3")) == (b"one", None, b"three")


def test_a_new_answer_replaces_the_old_one_and_its_age():
    clock = MonotonicClock()
    cache = FreshnessCache(5, clock=clock)
    cache.put("118", b"old")
    clock.advance(4)
    cache.put("118", b"new")
    clock.advance(4)
    assert cache.get("118") == b"new"


@pytest.mark.parametrize("seconds, entries", [(0, 10), (-1, 10), (5, 0)])
def test_a_cache_that_could_hold_nothing_is_refused(seconds, entries):
    with pytest.raises(ValueError):
        FreshnessCache(seconds, max_entries=entries)


def test_repeated_status_checks_are_answered_without_the_platform(adapter, store, placed):
    service = make_service(adapter, store, cache_seconds=30)
    order_id = service.place_order(placed).order_id
    reads_after_place = adapter.reads

    first = service.get_order(order_id)
    adapter.orders[DRAFT] = adapter.orders[DRAFT].model_copy(update={"status": "DELIVERED"})
    second = service.get_order(order_id)

    assert adapter.reads == reads_after_place + 1
    assert second == first  # the fresh answer, not yet the change


def test_without_cache_seconds_every_check_reads_the_platform(adapter, store, placed):
    service = make_service(adapter, store, cache_seconds=0)
    order_id = service.place_order(placed).order_id
    service.get_order(order_id)
    adapter.orders[DRAFT] = adapter.orders[DRAFT].model_copy(update={"status": "DELIVERED"})

    assert json.loads(service.get_order(order_id))["order"]["status"] == "DELIVERED"
    assert adapter.reads == 2


def test_place_order_neither_fills_nor_reads_the_cache(adapter, store, placed):
    service = make_service(adapter, store, cache_seconds=30)
    placed_body = service.place_order(placed).body
    replayed = service.place_order(placed)

    assert replayed.outcome == "replayed" and replayed.body == placed_body
    assert adapter.reads == 0  # placeOrder answered from the record; the cache was not involved
    service.get_order(replayed.order_id)
    assert adapter.reads == 1  # the first getOrder still reads the platform


def test_an_unknown_order_is_not_remembered(adapter, store, placed):
    service = make_service(adapter, store, cache_seconds=30)
    with pytest.raises(OrderNotFound):
        service.get_order("F-1")
    order_id = service.place_order(placed).order_id

    assert order_id == "F-1"
    assert json.loads(service.get_order(order_id))["order"]["id"] == "F-1"
