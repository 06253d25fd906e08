"""The getOrder freshness cache: on its own with a fake clock, and inside the service with a counting platform."""
from __future__ import annotations

import json
import os
import uuid

import pytest
import redis

from bridge.core.errors import OrderNotFound
from bridge.core.freshness import FreshnessCache
from bridge.core.models import PlaceOrderRequest
from bridge.core.service import OrderService, ServiceSettings

from .fakes import FakeAdapter, FakeClock, RecordingSleep

DRAFT = "nb_1715200000_a1b2c3d4"
REDIS_URL = os.environ.get("BIK_BRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


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

    assert replayed.decision == "replayed" and replayed.body == placed_body
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


# ---------------------------------------------------------------------------------------- the root's choice


def test_the_root_keeps_answers_in_this_process_unless_the_records_are_in_redis(tmp_path):
    from adapters.stores.redis_freshness import RedisFreshness
    from bridge.bootstrap import build_freshness

    from .test_app_http import make_config

    assert build_freshness(make_config(tmp_path)) is None  # off by default
    assert isinstance(build_freshness(make_config(tmp_path, store={"get_order_cache_seconds": 5})), FreshnessCache)
    shared = make_config(tmp_path, store={"get_order_cache_seconds": 5},
                         idempotency={"backend": "redis", "redis_url": "redis://127.0.0.1:6379/15"})
    assert isinstance(build_freshness(shared), RedisFreshness)


@pytest.mark.redis
def test_a_status_read_one_worker_answered_costs_another_worker_nothing(store, placed, tmp_path):
    """Two workers' services over one Redis-backed cache, as the root builds them: the second read is served."""
    from bridge.bootstrap import build_service

    from .test_app_http import make_config

    namespace = f"bik-bridge-test:{uuid.uuid4().hex}"
    config = make_config(tmp_path, store={"get_order_cache_seconds": 30},
                         idempotency={"backend": "redis", "redis_url": REDIS_URL, "namespace": namespace})
    platform = CountingAdapter()
    order_id = make_service(platform, store, cache_seconds=0).place_order(placed).order_id
    workers = [build_service(config, adapter=platform, store=store) for _ in range(2)]

    first = workers[0].get_order(order_id)
    platform.orders[DRAFT] = platform.orders[DRAFT].model_copy(update={"status": "DELIVERED"})
    second = workers[1].get_order(order_id)

    assert platform.reads == 1
    assert second == first
    redis.Redis.from_url(REDIS_URL).delete(f"{namespace}|fresh:{order_id}")
