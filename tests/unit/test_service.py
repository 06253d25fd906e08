"""OrderService: exactly-once placeOrder on draftOrderId, with a fake platform and the real SQLite store."""
from __future__ import annotations

import json

import pytest

from bridge.core.errors import (
    BridgeError,
    CurrencyMismatch,
    InFlight,
    OrderNotFound,
    OrderRejected,
    PayloadMismatch,
    RateLimited,
    StoreUnavailable,
    UpstreamAmbiguous,
    UpstreamAuthError,
    UpstreamMisconfigured,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from bridge.core.models import PlaceOrderRequest
from bridge.core.ports import ClaimOutcome, RecordState
from bridge.core.service import OrderService, ServiceSettings

from .fakes import DownStore, FakeAdapter, RecordingSleep

BUDGET = 20.0
DRAFT = "nb_1715200000_a1b2c3d4"


@pytest.fixture
def adapter() -> FakeAdapter:
    return FakeAdapter()


def make_service(adapter, store, clock, *, sleep=None, wait_seconds=0.0, on_mismatch="replay") -> OrderService:
    settings = ServiceSettings(lease_seconds=BUDGET + 5, upstream_budget_seconds=BUDGET, wait_seconds=wait_seconds,
                               on_mismatch=on_mismatch)
    return OrderService(adapter, store, settings, sleep=sleep or RecordingSleep(clock))


@pytest.fixture
def service(adapter, store, clock) -> OrderService:
    return make_service(adapter, store, clock)


def changed(request: PlaceOrderRequest, quantity: int) -> PlaceOrderRequest:
    body = json.loads(request.model_dump_json())
    body["order"]["items"][0]["quantity"] = quantity
    return PlaceOrderRequest.model_validate(body)


def stale_in_flight(store, clock, request: PlaceOrderRequest):
    """A record left in flight by an owner whose lease has run out (it crashed or is stuck)."""
    claim = store.claim(request.draftOrderId, request.fingerprint(), 1)
    assert claim.outcome is ClaimOutcome.NEW
    clock.advance(1.5)
    return claim.record


def test_creates_once_and_replays_identical_bytes(service, adapter, store, request_):
    """The first call creates; the second replays the very same bytes without creating."""
    first = service.place_order(request_)
    second = service.place_order(request_)
    assert first.decision == "created" and second.decision == "replayed"
    assert second.body == first.body
    assert second.order_id == first.order_id == "F-1"
    assert adapter.creates == 1
    record = store.get(DRAFT)
    assert record.state is RecordState.DONE and record.order_id == "F-1" and record.response == first.body
    assert json.loads(first.body)["order"]["partnersData"] == {"id": DRAFT}


def test_a_deferred_record_is_written_only_when_its_work_runs(service, adapter, store, request_):
    """Given `defer`, the answer comes first; the record is written by the work handed over, and then replays."""
    deferred = []
    first = service.place_order(request_, defer=deferred.append)

    assert (first.decision, first.order_id, len(deferred)) == ("created", "F-1", 1)
    assert store.get(DRAFT).state is RecordState.IN_FLIGHT
    deferred.pop()()
    assert store.get(DRAFT).state is RecordState.DONE
    assert service.place_order(request_).body == first.body and adapter.creates == 1


@pytest.mark.parametrize("failure", [StoreUnavailable(), RuntimeError("a bug in the store")])
def test_a_record_that_cannot_be_written_after_the_answer_is_logged_not_raised(adapter, store, clock, request_,
                                                                               caplog, monkeypatch, failure):
    """The order exists whatever befalls its record: the deferred work logs the failure and returns."""
    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(store, "complete", fail)
    deferred = []
    result = make_service(adapter, store, clock).place_order(request_, defer=deferred.append)

    deferred.pop()()
    assert result.order_id == "F-1" and "could not record a placed order" in caplog.text
    assert store.get(DRAFT).state is RecordState.IN_FLIGHT  # left for the retry's lookup, as after a crash


def test_rejected_order_releases_the_claim(service, adapter, store, request_):
    """A platform rejection keeps nothing, so the corrected retry creates the order."""
    adapter.fail_next(OrderRejected("out of stock"))
    with pytest.raises(OrderRejected):
        service.place_order(request_)
    assert store.get(DRAFT) is None
    assert service.place_order(request_).decision == "created"
    assert adapter.creates == 1


@pytest.mark.parametrize("error", [
    UpstreamUnreachable("connection refused"), UpstreamAuthError("401 from store"), UpstreamTimeout("connect timed out"),
    RateLimited("quota spent"), UpstreamMisconfigured("405 from store"), CurrencyMismatch("not the store's currency"),
])
def test_upstream_error_before_sending_releases_the_claim(service, adapter, store, request_, error):
    """An upstream failure that surely created nothing releases the claim."""
    adapter.fail_next(error)
    with pytest.raises(type(error)):
        service.place_order(request_)
    assert store.get(DRAFT) is None
    assert adapter.creates == 0
    service.place_order(request_)
    assert adapter.creates == 1


def test_ambiguous_create_that_landed_is_recovered_in_the_same_request(service, adapter, store, request_):
    """A create that timed out after landing is found by its draft id at once: one order, outcome recovered."""
    adapter.create_then_fail()
    result = service.place_order(request_)
    assert result.decision == "recovered"
    assert result.order_id == "F-1"
    assert adapter.creates == 1
    assert store.get(DRAFT).state is RecordState.DONE
    assert service.place_order(request_).body == result.body
    assert adapter.creates == 1


def test_ambiguous_create_that_did_not_land_is_looked_up_before_the_retry_creates(service, adapter, store,
                                                                                  request_, clock):
    """An unconfirmed create leaves the record unknown; a retry past the budget looks up, finds nothing, creates once."""
    adapter.fail_next(UpstreamAmbiguous("read timed out"))
    with pytest.raises(UpstreamAmbiguous) as caught:
        service.place_order(request_)
    assert caught.value.retry_after
    assert store.get(DRAFT).state is RecordState.UNKNOWN
    assert adapter.creates == 0
    clock.advance(BUDGET + 1)
    lookups = adapter.lookups
    result = service.place_order(request_)
    assert adapter.lookups == lookups + 1
    assert result.decision == "created"
    assert adapter.creates == 1
    assert store.get(DRAFT).state is RecordState.DONE


def test_retry_of_an_ambiguous_create_within_its_budget_is_held_off(service, adapter, store, request_):
    """The unconfirmed create may still land: a quick retry that finds nothing gets 409, never a second create."""
    adapter.fail_next(UpstreamAmbiguous("read timed out"))
    with pytest.raises(UpstreamAmbiguous):
        service.place_order(request_)

    with pytest.raises(InFlight) as caught:
        service.place_order(request_)

    assert caught.value.retry_after >= 1
    assert adapter.creates == 0


def test_unknown_record_whose_order_exists_is_recovered(service, adapter, store, request_):
    """A retry after an ambiguous create that did land returns that order and creates nothing."""
    adapter.create_then_fail()
    adapter.miss_lookups(2)  # neither the lookup before the create nor the one right after it sees the order
    with pytest.raises(UpstreamAmbiguous):
        service.place_order(request_)
    assert store.get(DRAFT).state is RecordState.UNKNOWN
    result = service.place_order(request_)
    assert (result.decision, result.order_id, adapter.creates) == ("recovered", "F-1", 1)
    assert store.get(DRAFT).state is RecordState.DONE


def test_crash_after_the_create_is_recovered_by_the_retry(service, adapter, store, request_):
    """An unexpected failure right after the create leaves the record unknown; the retry finds the order."""
    adapter.create_then_fail(RuntimeError("crash right after the create"))
    with pytest.raises(RuntimeError):
        service.place_order(request_)
    assert store.get(DRAFT).state is RecordState.UNKNOWN
    result = service.place_order(request_)
    assert (result.decision, result.order_id, adapter.creates) == ("recovered", "F-1", 1)


def test_stale_in_flight_within_the_budget_is_not_created_again(service, adapter, store, clock, request_):
    """An expired lease whose owner may still be mid-create gives 409, never a second create."""
    previous = stale_in_flight(store, clock, request_)
    clock.now = previous.started_at + BUDGET - 5
    with pytest.raises(InFlight) as caught:
        service.place_order(request_)
    assert caught.value.status == 409
    assert 1 <= caught.value.retry_after <= 5
    assert adapter.lookups == 1
    assert adapter.creates == 0


def test_stale_in_flight_past_the_budget_is_taken_over(service, adapter, store, clock, request_):
    """Once the old owner's whole budget has passed and the order is absent, the new owner creates once."""
    previous = stale_in_flight(store, clock, request_)
    clock.now = previous.started_at + BUDGET + 1
    result = service.place_order(request_)
    assert result.decision == "created"
    assert adapter.lookups == 1
    assert adapter.creates == 1
    assert service.place_order(request_).body == result.body


def test_stale_in_flight_whose_order_exists_is_recovered(service, adapter, store, clock, request_):
    """A crashed owner whose create landed: the next call finds and records that order, even within the budget."""
    previous = stale_in_flight(store, clock, request_)
    adapter.create_behind_the_bridge(request_)
    clock.now = previous.started_at + 1
    result = service.place_order(request_)
    assert (result.decision, result.order_id, adapter.creates) == ("recovered", "F-1", 1)
    assert service.place_order(request_).decision == "replayed"


def test_busy_duplicate_without_waiting_gets_in_flight(service, adapter, store, request_):
    """A duplicate arriving while another request holds the draft gets 409 with Retry-After."""
    store.claim(DRAFT, request_.fingerprint(), 60)
    with pytest.raises(InFlight) as caught:
        service.place_order(request_)
    assert caught.value.status == 409
    assert 1 <= caught.value.retry_after <= 5
    assert adapter.creates == 0
    assert store.get(DRAFT).state is RecordState.IN_FLIGHT


def test_busy_duplicate_waits_and_replays_when_the_owner_completes(adapter, store, clock, request_):
    """A duplicate waiting on the owner replays the owner's answer once it completes."""
    owner = store.claim(DRAFT, request_.fingerprint(), 60)
    answer = b'{"order":{"id":"F-77"}}'

    def owner_finishes(seconds: float) -> None:
        if len(sleep.pauses) == 3:
            assert store.complete(DRAFT, owner.token, "F-77", answer)

    sleep = RecordingSleep(clock, on_sleep=owner_finishes)
    service = make_service(adapter, store, clock, sleep=sleep, wait_seconds=10)
    result = service.place_order(request_)
    assert (result.body, result.order_id, result.decision) == (answer, "F-77", "replayed")
    assert len(sleep.pauses) == 3
    assert adapter.creates == 0


def test_busy_duplicate_gives_up_after_the_wait(adapter, store, clock, request_):
    """The wait for a busy owner is bounded by wait_seconds."""
    store.claim(DRAFT, request_.fingerprint(), 60)
    sleep = RecordingSleep(clock)
    service = make_service(adapter, store, clock, sleep=sleep, wait_seconds=2)
    with pytest.raises(InFlight):
        service.place_order(request_)
    assert 1.5 <= sum(sleep.pauses) <= 2
    assert adapter.creates == 0


def test_payload_mismatch_replays_the_first_order_by_default(service, adapter, request_):
    """Policy replay: the same draft with another quantity gets the first answer and no second create."""
    first = service.place_order(request_)
    again = service.place_order(changed(request_, 5))
    assert again.body == first.body
    assert again.decision == "replayed"
    assert adapter.creates == 1


def test_payload_mismatch_is_rejected_under_strict_policy(adapter, store, clock, request_):
    """Policy reject: the same draft with another quantity gets 422 and no second create."""
    service = make_service(adapter, store, clock, on_mismatch="reject")
    first = service.place_order(request_)
    with pytest.raises(PayloadMismatch) as caught:
        service.place_order(changed(request_, 5))
    assert caught.value.status == 422
    assert adapter.creates == 1
    assert service.place_order(request_).body == first.body


def test_payload_mismatch_on_a_busy_draft_is_rejected_under_strict_policy(adapter, store, clock, request_):
    """Policy reject applies while the first request is still in flight, too."""
    store.claim(DRAFT, request_.fingerprint(), 60)
    service = make_service(adapter, store, clock, on_mismatch="reject", wait_seconds=5)
    with pytest.raises(PayloadMismatch):
        service.place_order(changed(request_, 5))
    assert adapter.creates == 0


def test_store_down_at_claim_sends_nothing(adapter, clock, request_):
    """When the store cannot claim, the error propagates and the platform is never called."""
    service = make_service(adapter, DownStore(), clock)
    with pytest.raises(StoreUnavailable) as caught:
        service.place_order(request_)
    assert caught.value.status == 503
    assert adapter.creates == 0 and adapter.lookups == 0


def test_warm_up_prepares_the_adapter_and_survives_a_store_that_is_not_up_yet(adapter, clock, caplog):
    service = make_service(adapter, DownStore(), clock)

    service.warm_up()

    assert adapter.warmed_up
    assert "idempotency store not reachable at start-up" in caplog.text


@pytest.mark.parametrize("error", [UpstreamAmbiguous("read timed out after sending"), BridgeError("unforeseen")])
def test_a_create_that_may_have_landed_is_settled_by_its_error_alone(service, adapter, store, request_, error):
    """Whatever its class, an error that says `maybe_applied` is looked up, never released: one order."""
    adapter.create_then_fail(error)
    result = service.place_order(request_)
    assert (result.decision, adapter.creates) == ("recovered", 1)
    assert store.get(DRAFT).state is RecordState.DONE


def test_unexpected_adapter_failure_keeps_the_record_unknown(service, adapter, store, request_):
    """A bug after the create may have run leaves the record unknown, not released."""
    adapter.fail_next(RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        service.place_order(request_)
    record = store.get(DRAFT)
    assert record is not None and record.state is RecordState.UNKNOWN


def test_drafts_are_independent(service, adapter, request_, place_order_body):
    """Two draft ids make two orders."""
    other = PlaceOrderRequest.model_validate({**place_order_body, "draftOrderId": "nb_other"})
    assert service.place_order(request_).order_id != service.place_order(other).order_id
    assert adapter.creates == 2


def test_get_order_reads_the_platform_not_the_record(service, adapter, store, request_):
    """getOrder shows the platform's current state, and 404s for unknown ids."""
    service.place_order(request_)
    adapter.orders[DRAFT] = adapter.orders[DRAFT].model_copy(update={"status": "DELIVERED"})
    assert json.loads(service.get_order("F-1"))["order"]["status"] == "DELIVERED"
    with pytest.raises(OrderNotFound):
        service.get_order("F-404")


def test_ready_pings_the_store(service, adapter, clock):
    """ready() passes with a live store and raises StoreUnavailable otherwise."""
    service.ready()
    with pytest.raises(StoreUnavailable):
        make_service(adapter, DownStore(), clock).ready()
