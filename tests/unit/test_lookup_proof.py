"""Absence only by proof, one clock, one budget: what the service does with each lookup answer."""
from __future__ import annotations

import dataclasses
import json

import pytest

from bridge.core.deadline import Deadline
from bridge.core.drafts import CLOCK_MARGIN_SECONDS
from bridge.core.errors import InFlight, LookupInconclusive, PayloadMismatch, UpstreamAmbiguous
from bridge.core.models import PlaceOrderRequest
from bridge.core.ports import ClaimOutcome, RecordState
from bridge.core.service import OrderService, ServiceSettings, body_digest

from .fakes import FakeAdapter, FakeClock, RecordingSleep

BUDGET = 20.0
DRAFT_TIME = 1715200000.0  # inside the example's draft id, nb_1715200000_a1b2c3d4


def make_service(adapter, store, clock, **settings) -> OrderService:
    values = {"lease_seconds": BUDGET + 5, "upstream_budget_seconds": BUDGET, "wait_seconds": 0.0, **settings}
    return OrderService(adapter, store, ServiceSettings(**values), sleep=RecordingSleep(clock))


@pytest.fixture
def adapter() -> FakeAdapter:
    return FakeAdapter()


@pytest.fixture
def service(adapter, store, clock) -> OrderService:
    return make_service(adapter, store, clock)


def with_draft(request: PlaceOrderRequest, draft: str) -> PlaceOrderRequest:
    body = json.loads(request.model_dump_json())
    body["draftOrderId"] = draft
    return PlaceOrderRequest.model_validate(body)


def test_an_inconclusive_lookup_before_a_fresh_create_creates_nothing(service, adapter, store, request_):
    """503 with Retry-After; the fresh claim is dropped, since it knows no more than the lookup did."""
    adapter.leave_lookups_inconclusive(1)

    with pytest.raises(LookupInconclusive) as caught:
        service.place_order(request_)

    assert caught.value.status == 503 and caught.value.retry_after >= 1
    assert adapter.creates == 0
    assert store.get(request_.draftOrderId) is None
    assert service.place_order(request_).decision == "created"  # a later lookup that proves absence creates
    assert adapter.creates == 1


@pytest.mark.parametrize(("later", "created"), [(BUDGET + 1, True), (BUDGET - 1, False)])
def test_a_retry_that_sent_nothing_starts_no_new_landing_budget(service, adapter, store, clock, request_, later,
                                                                 created):
    """Only a create can be landing: the next retry waits out the budget of the one that may have been sent."""
    adapter.fail_next(UpstreamAmbiguous("read timed out"))
    with pytest.raises(UpstreamAmbiguous):
        service.place_order(request_)  # a create that may land until one budget from now
    clock.advance(BUDGET - 5)
    adapter.leave_lookups_inconclusive(1)
    with pytest.raises(LookupInconclusive):
        service.place_order(request_)  # a retry that took the record over, proved nothing and sent nothing
    clock.advance(later - (BUDGET - 5))

    if created:
        assert service.place_order(request_).decision == "created"
    else:
        with pytest.raises(InFlight):
            service.place_order(request_)
    assert adapter.creates == (1 if created else 0)


def test_an_inconclusive_lookup_on_a_takeover_keeps_the_record_unknown(service, adapter, store, clock, request_):
    adapter.fail_next(UpstreamAmbiguous("read timed out"))
    with pytest.raises(UpstreamAmbiguous):
        service.place_order(request_)
    clock.advance(BUDGET + 1)
    adapter.leave_lookups_inconclusive(1)

    with pytest.raises(LookupInconclusive):
        service.place_order(request_)

    assert store.get(request_.draftOrderId).state is RecordState.UNKNOWN
    assert adapter.creates == 0


def test_reconcile_reports_an_inconclusive_draft_and_never_releases_it(service, adapter, store, clock, request_):
    adapter.fail_next(UpstreamAmbiguous("read timed out"))
    with pytest.raises(UpstreamAmbiguous):
        service.place_order(request_)
    clock.advance(BUDGET + 1)
    adapter.leave_lookups_inconclusive(1)

    assert service.reconcile(older_than=0) == [(request_.draftOrderId, "inconclusive", None)]
    assert store.get(request_.draftOrderId).state is RecordState.UNKNOWN
    assert adapter.creates == 0


def test_a_fresh_claim_searches_back_from_the_time_in_bik_s_draft_id(service, adapter, request_):
    service.place_order(request_)

    assert adapter.lookup_since == [DRAFT_TIME - CLOCK_MARGIN_SECONDS]


def test_a_draft_time_ahead_of_the_store_clock_is_capped_at_the_claim(service, adapter, clock, request_):
    clock.now = DRAFT_TIME - 3600  # Bik's clock an hour ahead of the store's

    service.place_order(request_)

    assert adapter.lookup_since == [DRAFT_TIME - 3600 - CLOCK_MARGIN_SECONDS]


def test_a_fresh_claim_for_a_draft_id_without_a_time_searches_without_a_bound(service, adapter, request_):
    service.place_order(with_draft(request_, "merchant-draft-17"))

    assert adapter.lookup_since == [None]


def test_a_takeover_of_a_draft_id_without_a_time_searches_without_a_bound(service, adapter, store, clock, request_):
    """A record's first start bounds nothing: it may have been made again after an older one, and its order, was lost."""
    draft = "merchant-draft-18"
    request = with_draft(request_, draft)
    store.claim(draft, request.fingerprint(), 1)
    clock.advance(2)
    assert store.claim(draft, request.fingerprint(), 1).outcome is ClaimOutcome.TAKEOVER  # a second owner
    clock.advance(BUDGET + 5)

    service.place_order(request)

    assert adapter.lookup_since == [None]


def test_a_takeover_of_a_bik_draft_searches_back_from_the_draft_time(service, adapter, store, clock, request_):
    store.claim(request_.draftOrderId, request_.fingerprint(), 1)
    clock.advance(BUDGET + 5)

    service.place_order(request_)

    assert adapter.lookup_since == [DRAFT_TIME - CLOCK_MARGIN_SECONDS]


def test_the_budget_guard_reads_the_store_clock_not_this_host_s(adapter, tmp_path, request_):
    """A store clock a day ahead of this host: a record past its budget by the store's clock is taken over."""
    from adapters.stores.sqlite_store import SqliteIdempotencyStore

    clock = FakeClock(DRAFT_TIME + 86_400)
    store = SqliteIdempotencyStore(str(tmp_path / "skewed.db"), namespace="t", ttl_seconds=3600, clock=clock)
    store.claim(request_.draftOrderId, request_.fingerprint(), 1)
    clock.advance(BUDGET + 1)

    result = make_service(adapter, store, clock).place_order(request_)

    assert (result.decision, adapter.creates) == ("created", 1)
    store.close()


class Events:
    """An ordered log of what the service did, to see which came first."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.deadlines: list[Deadline] = []


def test_one_budget_starts_before_the_claim_and_covers_lookup_and_create(adapter, store, clock, request_):
    events = Events()

    def deadline() -> Deadline:
        events.log.append("deadline")
        made = Deadline(BUDGET)
        events.deadlines.append(made)
        return made

    class LoggingStore:
        def __getattr__(self, name):
            return getattr(store, name)

        def claim(self, *args):
            events.log.append("claim")
            return store.claim(*args)

    seen: list[Deadline] = []
    real_find, real_place = adapter.find_by_draft, adapter.place
    adapter.find_by_draft = lambda key, request, budget, since: (seen.append(budget), real_find(key, request, budget,
                                                                                                since))[1]
    adapter.place = lambda request, budget: (seen.append(budget), real_place(request, budget))[1]
    settings = ServiceSettings(lease_seconds=BUDGET + 5, upstream_budget_seconds=BUDGET)
    service = OrderService(adapter, LoggingStore(), settings, sleep=RecordingSleep(clock), deadline=deadline)

    service.place_order(request_)

    assert events.log[:2] == ["deadline", "claim"]
    assert len(seen) == 2 and seen[0] is seen[1] is events.deadlines[0]


def test_a_duplicate_s_wait_for_a_busy_owner_comes_out_of_its_budget(adapter, store, clock, request_):
    """Waiting for a crashed owner's lease to end and then taking over leaves only the rest of the one budget."""
    store.claim(request_.draftOrderId, request_.fingerprint(), 1)  # an owner that will never finish
    budgets: list[float] = []
    real_find = adapter.find_by_draft
    adapter.find_by_draft = lambda *args: (budgets.append(args[2].remaining()), real_find(*args))[1]
    settings = ServiceSettings(lease_seconds=BUDGET + 5, upstream_budget_seconds=BUDGET, wait_seconds=5)
    service = OrderService(adapter, store, settings, sleep=RecordingSleep(clock),
                           deadline=lambda: Deadline(BUDGET, clock=clock))

    with pytest.raises(InFlight):
        service.place_order(request_)  # the owner's create may still land: held off with 409

    assert len(budgets) == 1 and BUDGET - 1.5 <= budgets[0] <= BUDGET - 1
    assert adapter.creates == 0


class LostRecords:
    """The store as a Redis that came back empty `ago` seconds before `clock`'s now."""

    def __init__(self, store, clock, ago: float):
        self._store, self.began = store, clock.now - ago

    def __getattr__(self, name):
        return getattr(self._store, name)

    def memory_began(self) -> float:
        return self.began


def test_a_new_draft_just_after_the_store_lost_its_records_waits_out_a_budget(adapter, store, clock, request_):
    """A create sent before the loss may still land: the lookup proves absence only a budget after it."""
    lost = LostRecords(store, clock, ago=5)
    service = make_service(adapter, lost, clock)

    with pytest.raises(InFlight) as held:
        service.place_order(request_)

    assert held.value.retry_after == BUDGET - 5 and adapter.creates == 0
    clock.advance(BUDGET + 6)  # past the loss's budget and the holding claim's lease
    assert service.place_order(request_).decision == "created"
    assert adapter.creates == 1


class ClaimsReadMemory(LostRecords):
    """The store as one Redis server: each new claim answers the memory marker, which came back `ago` s ago."""

    def claim(self, *args):
        claim = self._store.claim(*args)
        return dataclasses.replace(claim, memory_began=self.began) if claim.outcome is ClaimOutcome.NEW else claim

    def memory_began(self) -> float:
        raise AssertionError("the claim already said when the store began holding records")


def test_the_memory_marker_read_with_the_claim_holds_a_new_draft_alike(adapter, store, clock, request_):
    service = make_service(adapter, ClaimsReadMemory(store, clock, ago=5), clock)

    with pytest.raises(InFlight) as held:
        service.place_order(request_)
    assert held.value.retry_after == BUDGET - 5 and adapter.creates == 0


def test_a_store_that_kept_its_records_holds_no_new_draft(adapter, store, clock, request_):
    service = make_service(adapter, LostRecords(store, clock, ago=BUDGET + 1), clock)

    assert service.place_order(request_).decision == "created"


def test_another_payload_that_took_a_record_over_is_never_replayed_by_its_bytes(adapter, store, clock, request_):
    """Under `on_mismatch: reject`, a changed payload that took over an unsure record and found the first order is
    refused, and its byte-identical retry too: only the payload the record holds is kept for replays."""
    service = make_service(adapter, store, clock, on_mismatch="reject")
    first = body_digest(json.dumps(json.loads(request_.model_dump_json())).encode())
    adapter.create_then_fail()
    adapter.miss_lookups(2)  # the lookup before the create, and the one after it: the landed order is not seen yet
    with pytest.raises(UpstreamAmbiguous):
        service.place_order(request_, first)  # the order landed; the record is left unknown
    clock.advance(BUDGET + 1)
    changed_body = json.loads(request_.model_dump_json())
    changed_body["order"]["items"][0]["quantity"] += 1
    changed = PlaceOrderRequest.model_validate(changed_body)
    raw = body_digest(json.dumps(changed_body).encode())

    with pytest.raises(PayloadMismatch):
        service.place_order(changed, raw)  # takes over, finds the first order, refuses the payload
    assert store.replay(changed.draftOrderId, raw) is None
    with pytest.raises(PayloadMismatch):
        service.place_order(changed, raw)
    assert store.replay(request_.draftOrderId, first) is None  # recorded by the other payload: the claim answers
    assert service.place_order(request_, first).decision == "replayed"
    assert adapter.creates == 1


def test_a_record_left_without_a_payload_is_placed_by_its_next_owner_under_reject(adapter, store, clock, request_):
    """A record whose first owner ended before recording a payload (claimed before its body was read) holds nothing
    to compare: under `on_mismatch: reject` the next owner proves the draft absent, creates it and records its own."""
    service = make_service(adapter, store, clock, on_mismatch="reject")
    store.claim(request_.draftOrderId, "", 0.0)
    clock.advance(BUDGET + 1)

    assert service.place_order(request_, "digest").decision == "created"
    assert adapter.creates == 1
    assert store.get(request_.draftOrderId).fingerprint == request_.fingerprint()
