"""Recovering without the record: the lookup before every create, and the reconciler that settles leftovers."""
from __future__ import annotations

import pytest

from adapters.stores.sqlite_store import SqliteIdempotencyStore
from bridge.core.errors import UpstreamAmbiguous, UpstreamUnreachable
from bridge.core.models import PlaceOrderRequest
from bridge.core.ports import ClaimOutcome, RecordState
from bridge.core.service import OrderService, ServiceSettings

from .fakes import FakeAdapter, FakeClock, RecordingSleep

BUDGET = 20.0


class FlakyLookups(FakeAdapter):
    """A platform whose next lookups fail as a read can: unreachable, nothing created."""

    def __init__(self) -> None:
        super().__init__()
        self.failing_lookups = 0

    def find_by_draft(self, draft_order_id, request, deadline, since):
        if self.failing_lookups:
            self.failing_lookups -= 1
            self.lookups += 1
            raise UpstreamUnreachable("lookup: connection refused")
        return super().find_by_draft(draft_order_id, request, deadline, since)


@pytest.fixture
def adapter() -> FlakyLookups:
    return FlakyLookups()


def make_service(adapter, store, clock, **settings) -> OrderService:
    values = {"lease_seconds": BUDGET + 5, "upstream_budget_seconds": BUDGET, "wait_seconds": 0.0, **settings}
    return OrderService(adapter, store, ServiceSettings(**values), sleep=RecordingSleep(clock))


@pytest.fixture
def service(adapter, store, clock) -> OrderService:
    return make_service(adapter, store, clock)


def left_behind(store, clock, request: PlaceOrderRequest, state: RecordState):
    """A record whose owner crashed: its lease already over, in flight or marked unknown."""
    claim = store.claim(request.draftOrderId, request.fingerprint(), 1)
    assert claim.outcome is ClaimOutcome.NEW
    if state is RecordState.UNKNOWN:
        assert store.mark_unknown(request.draftOrderId, claim.token)
    clock.advance(1.5)
    return claim.record


# ----------------------------------------------------------------------------------- lookup before create


def test_a_fresh_claim_looks_the_draft_up_before_creating(service, adapter, request_):
    result = service.place_order(request_)

    assert (result.decision, adapter.lookups, adapter.creates) == ("created", 1, 1)


def test_a_lost_record_is_made_good_by_the_lookup_without_a_second_create(service, adapter, store, request_):
    first = service.place_order(request_)
    store.close()
    lost = SqliteIdempotencyStore(":memory:", namespace="test", ttl_seconds=3600)  # every record gone

    again = make_service(adapter, lost, FakeClock()).place_order(request_)

    assert (again.decision, again.order_id, adapter.creates) == ("recovered", first.order_id, 1)
    assert lost.get(request_.draftOrderId).state is RecordState.DONE


def test_a_failed_lookup_sends_nothing_and_frees_the_draft(service, adapter, store, request_):
    adapter.failing_lookups = 1

    with pytest.raises(UpstreamUnreachable):
        service.place_order(request_)

    assert adapter.creates == 0
    assert store.get(request_.draftOrderId) is None  # Bik's retry runs afresh
    assert service.place_order(request_).decision == "created"


def test_the_lookup_is_on_by_default():
    """A merchant who sets nothing gets the lookup: a lost record costs a read, never a second order."""
    assert ServiceSettings().lookup_before_create is True


def test_the_lookup_can_be_turned_off(adapter, store, clock, request_):
    service = make_service(adapter, store, clock, lookup_before_create=False)

    service.place_order(request_)

    assert (adapter.lookups, adapter.creates) == (0, 1)


# ------------------------------------------------------------------------------------------- reconcile


def test_reconcile_records_an_order_a_crashed_owner_placed(service, adapter, store, clock, request_):
    left_behind(store, clock, request_, RecordState.IN_FLIGHT)
    adapter.create_behind_the_bridge(request_)

    assert service.reconcile(older_than=0) == [(request_.draftOrderId, "recorded", "F-1")]
    record = store.get(request_.draftOrderId)
    assert (record.state, record.order_id) == (RecordState.DONE, "F-1")
    assert service.place_order(request_).decision == "replayed"
    assert adapter.creates == 1


def test_reconcile_releases_a_surely_absent_order_so_the_retry_creates_once(service, adapter, store, clock,
                                                                           request_):
    left_behind(store, clock, request_, RecordState.UNKNOWN)
    clock.advance(BUDGET + 1)

    assert service.reconcile(older_than=0) == [(request_.draftOrderId, "released", None)]
    assert store.get(request_.draftOrderId) is None
    assert service.place_order(request_).decision == "created"
    assert adapter.creates == 1


def test_reconcile_holds_a_record_whose_create_may_still_land(service, adapter, store, clock, request_):
    left_behind(store, clock, request_, RecordState.UNKNOWN)

    assert service.reconcile(older_than=0) == [(request_.draftOrderId, "still_in_flight", None)]
    assert store.get(request_.draftOrderId).state is RecordState.IN_FLIGHT
    assert adapter.creates == 0


def test_reconcile_keeps_a_record_whose_lookup_failed_unknown(service, adapter, store, clock, request_):
    left_behind(store, clock, request_, RecordState.IN_FLIGHT)
    adapter.failing_lookups = 1

    assert service.reconcile(older_than=0) == [(request_.draftOrderId, "lookup_failed", None)]
    assert store.get(request_.draftOrderId).state is RecordState.UNKNOWN
    assert adapter.creates == 0


def test_a_reconcile_that_sent_nothing_starts_no_new_landing_budget(service, adapter, store, clock, request_):
    """The crashed owner's create is the last that may land: the retry after its budget creates at once."""
    crashed = left_behind(store, clock, request_, RecordState.UNKNOWN)
    adapter.failing_lookups = 1
    service.reconcile(older_than=0)

    assert store.get(request_.draftOrderId).started_at == pytest.approx(crashed.started_at)
    clock.now = crashed.started_at + BUDGET + 1
    assert service.place_order(request_).decision == "created"


def test_reconcile_leaves_live_and_settled_records_alone(service, adapter, store, request_, place_order_body):
    service.place_order(request_)
    live = PlaceOrderRequest.model_validate({**place_order_body, "draftOrderId": "nb_live"})
    store.claim(live.draftOrderId, live.fingerprint(), 60)
    lookups = adapter.lookups

    assert service.reconcile(older_than=0) == []
    assert adapter.lookups == lookups
    assert store.get(live.draftOrderId).state is RecordState.IN_FLIGHT


def test_reconcile_after_an_ambiguous_create_finds_the_order(service, adapter, store, clock, request_):
    adapter.create_then_fail()
    adapter.miss_lookups(2)  # neither the lookup before the create nor the one right after it sees the order
    with pytest.raises(UpstreamAmbiguous):
        service.place_order(request_)

    assert service.reconcile(older_than=0) == [(request_.draftOrderId, "recorded", "F-1")]
    assert service.place_order(request_).order_id == "F-1"
    assert adapter.creates == 1
