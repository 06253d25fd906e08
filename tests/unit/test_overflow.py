"""placement: overflow: a draft the quota cannot take is queued and answered, then placed once by the placer."""
from __future__ import annotations

import json
import math

import pytest

from bridge.core.errors import (
    OrderRejected,
    RateLimited,
    UpstreamAmbiguous,
    UpstreamAuthError,
    UpstreamUnreachable,
)
from bridge.core.models import PlaceOrderRequest
from bridge.core.placer import DIRECT_SHARE, RETRY_LATER_SECONDS, Placer, PlacerSettings
from bridge.core.ports import Lookup, RecordState
from bridge.core.presentation import Presentation
from bridge.core.service import OVERFLOW_QUOTA_PATIENCE_SECONDS, OrderService, ServiceSettings
from tests.support.waiting import wait_until

from .fakes import FakeAdapter, RecordingSleep

BUDGET = 20.0
DRAFT = "nb_1715200000_a1b2c3d4"
BRIDGE_ID = f"BK-{DRAFT}"


class QuotaAdapter(FakeAdapter):
    """The fake platform whose lookups can also be held back by the quota gate before anything is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.lookup_errors: list[BaseException] = []

    def find_by_draft(self, draft_order_id, request, deadline, since) -> Lookup:
        if self.lookup_errors:
            raise self.lookup_errors.pop(0)
        return super().find_by_draft(draft_order_id, request, deadline, since)


@pytest.fixture
def adapter() -> QuotaAdapter:
    return QuotaAdapter()


def overflow_service(adapter, store, clock, *, max_queued=1000, max_age=600.0, placement="overflow",
                     presentation=None, decisions=None, room=None) -> OrderService:
    settings = ServiceSettings(lease_seconds=BUDGET + 5, upstream_budget_seconds=BUDGET, wait_seconds=0.0,
                               placement=placement, max_queued=max_queued, max_queue_age_seconds=max_age)
    return OrderService(adapter, store, settings, sleep=RecordingSleep(clock), presentation=presentation,
                        on_decision=decisions.append if decisions is not None else None, room=room)


def make_placer(adapter, store, clock, *, room=None, decisions=None, holder="placer-a") -> Placer:
    settings = PlacerSettings(lease_seconds=BUDGET + 5, upstream_budget_seconds=BUDGET)
    return Placer(adapter, store, settings, room=room, clock=clock, holder=holder,
                  on_decision=decisions.append if decisions is not None else None)


def draft(request: PlaceOrderRequest, draft_id: str) -> PlaceOrderRequest:
    body = json.loads(request.model_dump_json())
    body["draftOrderId"] = draft_id
    return PlaceOrderRequest.model_validate(body)


def queue(service, adapter, request) -> bytes:
    """Place `request` while the quota has no room: it is queued."""
    adapter.fail_next(RateLimited("quota spent"))
    result = service.place_order(request)
    assert result.decision == "queued"
    return result.body


# accepting --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("free", "queued"), [(0, True), (1, True), (2, False), (None, False)])
def test_a_fresh_draft_the_quota_has_no_room_for_now_is_queued_before_anything_is_sent(adapter, store, clock,
                                                                                        request_, free, queued):
    """No lookup is spent on a draft whose create could not follow it now: the placer does both later."""
    room = (lambda: None) if free is None else (lambda: (free, 150))
    service = overflow_service(adapter, store, clock, room=room)

    result = service.place_order(request_)

    assert (result.decision == "queued") is queued
    assert (adapter.lookups, adapter.creates) == ((0, 0) if queued else (1, 1))


def test_under_overflow_a_placeorder_waits_only_a_moment_for_the_quota(adapter, store, clock, request_):
    """Its budget's patience for the quota is short, so the gate answers at once and the draft is queued."""
    budgets = []
    real_find = adapter.find_by_draft
    adapter.find_by_draft = lambda *args: (budgets.append(args[2]), real_find(*args))[1]

    overflow_service(adapter, store, clock).place_order(request_)
    overflow_service(adapter, store, clock, placement="direct").place_order(draft(request_, "nb_1715200003_direct"))

    assert [b.quota_patience for b in budgets] == [OVERFLOW_QUOTA_PATIENCE_SECONDS, None]


def test_a_create_the_quota_cannot_fit_is_queued_and_answered_ordered_under_the_bridge_id(adapter, store, clock,
                                                                                        request_):
    decisions: list[str] = []
    service = overflow_service(adapter, store, clock, decisions=decisions)
    adapter.fail_next(RateLimited("quota spent"))

    result = service.place_order(request_)

    assert (result.decision, result.order_id) == ("queued", BRIDGE_ID)
    order = json.loads(result.body)["order"]
    assert (order["id"], order["name"], order["status"], order["paymentStatus"]) == (
        BRIDGE_ID, f"#{BRIDGE_ID}", "ORDERED", "pending" if request_.paymentPending else "paid")
    assert order["total"] == float(request_.order.total) and order["partnersData"] == {"id": DRAFT}
    assert adapter.creates == 0
    record = store.get(DRAFT)
    assert record.state is RecordState.QUEUED and record.response == result.body
    assert PlaceOrderRequest.model_validate_json(record.request) == request_
    assert "queued" in decisions


def test_a_retry_of_a_queued_draft_replays_the_same_bytes_and_sends_nothing(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    body = queue(service, adapter, request_)

    again = service.place_order(request_)

    assert (again.decision, again.body) == ("replayed", body)
    assert adapter.creates == 0 and adapter.lookups == 1


@pytest.mark.parametrize("error", [RateLimited("quota spent"), UpstreamUnreachable("connection refused")])
def test_a_lookup_before_create_the_platform_never_served_queues_the_draft(adapter, store, clock, request_, error):
    service = overflow_service(adapter, store, clock)
    adapter.lookup_errors.append(error)

    result = service.place_order(request_)

    assert result.decision == "queued" and store.get(DRAFT).state is RecordState.QUEUED
    assert adapter.creates == 0


def test_a_create_that_never_reached_the_platform_is_queued(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    adapter.fail_next(UpstreamUnreachable("connection refused"))

    assert service.place_order(request_).decision == "queued"


@pytest.mark.parametrize("error", [UpstreamAmbiguous("read timed out"), OrderRejected("out of stock"),
                                   UpstreamAuthError("401 from store")])
def test_what_may_have_landed_or_what_the_store_refused_is_never_queued(adapter, store, clock, request_, error):
    service = overflow_service(adapter, store, clock)
    adapter.fail_next(error)

    with pytest.raises(type(error)):
        service.place_order(request_)

    record = store.get(DRAFT)
    assert record is None or (record.state is RecordState.UNKNOWN and not record.queued)
    assert store.queue_stats().depth == 0


def test_a_taken_over_draft_proven_absent_whose_create_the_quota_cannot_fit_is_queued(adapter, store, clock,
                                                                                     request_):
    """Its owner crashed; once a lookup after that owner's budget proved it absent it is as fresh as a new draft."""
    store.claim(DRAFT, request_.fingerprint(), 1)  # an owner that crashed, its create never landed
    clock.advance(BUDGET + 5)
    service = overflow_service(adapter, store, clock)
    adapter.fail_next(RateLimited("quota spent"))

    result = service.place_order(request_)

    assert (result.decision, result.order_id, adapter.creates) == ("queued", BRIDGE_ID, 0)
    assert store.get(DRAFT).state is RecordState.QUEUED
    make_placer(adapter, store, clock).step()
    record = store.get(DRAFT)
    assert (adapter.creates, record.state, record.platform_order_id) == (1, RecordState.DONE, "F-1")


def test_a_taken_over_draft_not_proven_absent_is_never_queued(adapter, store, clock, request_):
    """A lookup the quota held back proved nothing: the earlier create may be on the platform, so nothing is queued."""
    store.claim(DRAFT, request_.fingerprint(), 1)
    clock.advance(BUDGET + 5)
    adapter.lookup_errors.append(RateLimited("quota spent"))

    with pytest.raises(RateLimited):
        overflow_service(adapter, store, clock).place_order(request_)

    assert store.get(DRAFT).state is RecordState.UNKNOWN and store.queue_stats().depth == 0


def test_direct_placement_the_default_answers_503_and_keeps_nothing(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock, placement="direct")
    adapter.fail_next(RateLimited("quota spent"))

    with pytest.raises(RateLimited):
        service.place_order(request_)

    assert store.get(DRAFT) is None and store.queue_stats().depth == 0
    assert ServiceSettings().placement == "direct"


def test_a_full_queue_answers_503_as_direct_placement_does(adapter, store, clock, request_):
    decisions: list[str] = []
    service = overflow_service(adapter, store, clock, max_queued=1, decisions=decisions)
    queue(service, adapter, request_)
    adapter.fail_next(RateLimited("quota spent", retry_after=7))

    with pytest.raises(RateLimited) as refused:
        service.place_order(draft(request_, "nb_1715200001_second"))

    assert refused.value.retry_after == 7
    assert store.get("nb_1715200001_second") is None and "queue_full" in decisions


def test_a_queue_whose_oldest_waited_too_long_answers_503(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock, max_age=60)
    queue(service, adapter, request_)
    clock.advance(61)
    adapter.fail_next(RateLimited("quota spent"))

    with pytest.raises(RateLimited):
        service.place_order(draft(request_, "nb_1715200001_second"))

    assert store.queue_stats().depth == 1


@pytest.mark.parametrize("template, expected", [
    ("https://shop.example/track/{draft_id}", f"https://shop.example/track/{DRAFT}"),
    ("https://shop.example/orders/{id}", None),
])
def test_the_invoice_link_is_given_only_when_it_needs_no_platform_id(adapter, store, clock, request_, template,
                                                                     expected):
    presentation = Presentation(name_format="Order {id}", invoice_url_template=template)
    service = overflow_service(adapter, store, clock, presentation=presentation)

    order = json.loads(queue(service, adapter, request_))["order"]

    assert (order["name"], order["invoiceUrl"]) == (f"Order {BRIDGE_ID}", expected)


# placing ----------------------------------------------------------------------------------------------------------

def test_the_placer_places_queued_drafts_oldest_first_exactly_once(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    drafts = [draft(request_, f"nb_17152000{n:02d}_d") for n in range(3)]
    answers = []
    for request in drafts:
        answers.append(queue(service, adapter, request))
        clock.advance(1)
    placer = make_placer(adapter, store, clock)

    assert placer.step() == 0.0
    placer.step()

    assert [adapter.orders[r.draftOrderId].id for r in drafts] == ["F-1", "F-2", "F-3"]
    assert adapter.creates == 3
    for request, answer in zip(drafts, answers):
        record = store.get(request.draftOrderId)
        assert (record.state, record.platform_order_id, record.response) == (
            RecordState.DONE, adapter.orders[request.draftOrderId].id, answer)
        assert service.place_order(request).body == answer  # Bik's retry still gets what it was told
    assert store.queue_stats().depth == 0


def test_get_order_answers_the_record_while_queued_then_the_platform_order_under_the_bridge_id(adapter, store, clock,
                                                                                             request_):
    service = overflow_service(adapter, store, clock)
    body = queue(service, adapter, request_)
    assert service.get_order(BRIDGE_ID) == body

    make_placer(adapter, store, clock).step()

    order = json.loads(service.get_order(BRIDGE_ID))["order"]
    assert (order["id"], order["name"], order["status"]) == (BRIDGE_ID, "#F-1", "ORDERED")
    assert json.loads(service.get_order("F-1"))["order"]["id"] == "F-1"


def test_a_bridge_id_without_a_queued_draft_is_looked_up_on_the_platform(adapter, store, clock, request_):
    from bridge.core.errors import OrderNotFound

    service = overflow_service(adapter, store, clock)
    service.place_order(request_)  # placed directly: its id is the platform's

    with pytest.raises(OrderNotFound):
        service.get_order(BRIDGE_ID)


def test_a_queued_order_the_store_refuses_reads_cancelled_with_its_reason(adapter, store, clock, request_):
    decisions: list[str] = []
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    adapter.fail_next(OrderRejected("Quantities of one or more products are out of stock."))

    make_placer(adapter, store, clock, decisions=decisions).step()

    order = json.loads(service.get_order(BRIDGE_ID))["order"]
    assert (order["id"], order["status"]) == (BRIDGE_ID, "CANCELLED")
    assert order["cancelReason"] == "Quantities of one or more products are out of stock."
    assert "refused_from_queue" in decisions and adapter.creates == 0
    assert store.requeue(DRAFT)  # the merchant restocked: `bik-bridge queue retry`
    make_placer(adapter, store, clock).step()
    assert adapter.creates == 1 and store.get(DRAFT).state is RecordState.DONE


def test_a_retry_of_a_refused_queued_draft_is_refused_not_answered_ordered(adapter, store, clock, request_):
    """Once the store refused it, no order exists and none will be placed: Bik's retry hears so, with the reason."""
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    adapter.fail_next(OrderRejected("Quantities of one or more products are out of stock."))
    make_placer(adapter, store, clock).step()

    with pytest.raises(OrderRejected) as refused:
        service.place_order(request_)

    assert refused.value.status == 422 and "out of stock" in refused.value.message
    assert adapter.creates == 0


def test_a_placed_bridge_id_is_found_on_the_platform_once_its_record_is_gone(adapter, store, clock, request_):
    """Records expire after 30 days (or are lost): the store's order is found by its draft id, under Bik's id."""
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    make_placer(adapter, store, clock).step()
    assert store.get(DRAFT).state is RecordState.DONE
    _drop_record(store, DRAFT)

    order = json.loads(service.get_order(BRIDGE_ID))["order"]

    assert (order["id"], order["status"]) == (BRIDGE_ID, "ORDERED")
    assert adapter.creates == 1


def _drop_record(store, key: str) -> None:
    """The record expires, is evicted or is lost, as only the store's own file can show."""
    import sqlite3

    conn = sqlite3.connect(store.path)
    conn.execute("DELETE FROM idempotency_records WHERE namespace = ? AND key = ?", (store.namespace, key))
    conn.commit()
    conn.close()


def test_a_create_that_may_have_landed_is_looked_up_never_sent_again(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    placer = make_placer(adapter, store, clock)
    adapter.create_then_fail()
    adapter.miss_lookups(2)  # before the create, and right after it: the order is not visible yet

    placer.step()
    assert store.get(DRAFT).state is RecordState.UNKNOWN
    clock.advance(BUDGET + 1)
    placer.step()

    assert adapter.creates == 1
    record = store.get(DRAFT)
    assert (record.state, record.platform_order_id) == (RecordState.DONE, "F-1")


def test_an_unconfirmed_create_is_not_sent_again_before_its_budget_has_passed(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    placer = make_placer(adapter, store, clock)
    adapter.fail_next(UpstreamAmbiguous("read timed out"))  # it did not land

    placer.step()
    assert store.get(DRAFT).state is RecordState.UNKNOWN
    clock.advance(BUDGET / 2)
    placer.step()  # this placer knows to wait
    store.drop_placer_lease("placer-a")
    other = make_placer(adapter, store, clock, holder="placer-b")
    other.step()  # another one takes the draft over, finds nothing, and holds it: the create may still land
    assert adapter.creates == 0 and store.get(DRAFT).state is RecordState.IN_FLIGHT
    clock.advance(BUDGET + 6)  # past the first create's budget, and past the holding claim's lease
    other.step()

    assert adapter.creates == 1 and store.get(DRAFT).state is RecordState.DONE


def test_a_lookup_that_proves_nothing_creates_nothing_and_is_tried_later(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    placer = make_placer(adapter, store, clock)
    adapter.leave_lookups_inconclusive(1)

    placer.step()
    placer.step()
    assert adapter.creates == 0 and adapter.lookups == 2  # the one at placeOrder, the placer's one
    assert store.get(DRAFT).state is RecordState.QUEUED
    clock.advance(RETRY_LATER_SECONDS + 1)
    placer.step()

    assert adapter.creates == 1


def test_a_create_the_quota_still_cannot_fit_goes_back_to_the_queue(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    placer = make_placer(adapter, store, clock)
    adapter.fail_next(RateLimited("quota spent"))

    assert placer.step() > 0

    assert store.get(DRAFT).state is RecordState.QUEUED and adapter.creates == 0
    placer.step()
    assert adapter.creates == 1


def test_a_draft_the_placer_puts_back_is_not_counted_as_a_released_claim(adapter, store, clock, request_):
    """Only placeOrder counts `released` (Bik's retry runs afresh); a draft back in the queue is still waiting."""
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    decisions: list[str] = []
    placer = make_placer(adapter, store, clock, decisions=decisions)
    adapter.fail_next(RateLimited("quota spent"))

    placer.step()

    assert store.get(DRAFT).state is RecordState.QUEUED and "released" not in decisions


def test_an_unexpected_lookup_failure_puts_the_queued_draft_back_at_once(adapter, store, clock, request_):
    """A lookup sends no order: a failure nobody foresaw leaves the draft queued, not held until its lease lapses."""
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    placer = make_placer(adapter, store, clock)
    adapter.lookup_errors.append(KeyError("a field the mapping did not expect"))

    with pytest.raises(KeyError):
        placer.place(DRAFT)

    assert store.get(DRAFT).state is RecordState.QUEUED
    placer.step()
    assert adapter.creates == 1


def test_the_placer_leaves_a_share_of_the_quota_to_bik_requests(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    quota = 150
    reserved = math.ceil(quota * DIRECT_SHARE)
    room = {"free": reserved + 1}  # a lookup and a create would eat into the reserved share
    placer = make_placer(adapter, store, clock, room=lambda: (room["free"], quota))

    assert placer.step() > 0
    assert adapter.creates == 0 and adapter.lookups == 1
    room["free"] = reserved + 2
    placer.step()
    assert adapter.creates == 1


def test_one_placer_at_a_time_per_store(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    first, second = make_placer(adapter, store, clock, holder="a"), make_placer(adapter, store, clock, holder="b")

    assert first.step() == 0.0
    queue(service, adapter, draft(request_, "nb_1715200001_second"))
    second.step()
    assert adapter.creates == 1  # the second placer has no lease while the first holds it
    store.drop_placer_lease("a")  # the first placer stops (its worker exits) and gives the lease up
    second.step()

    assert adapter.creates == 2
    assert store.get(DRAFT).platform_order_id == "F-1"
    assert store.get("nb_1715200001_second").platform_order_id == "F-2"


def test_a_placer_that_holds_no_lease_places_nothing(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    assert store.take_placer_lease("someone-else", 60)

    make_placer(adapter, store, clock).step()

    assert adapter.creates == 0 and store.get(DRAFT).state is RecordState.QUEUED


def test_the_placer_runs_in_the_background_until_stopped_and_gives_its_lease_up(adapter, store, clock, request_):
    service = overflow_service(adapter, store, clock)
    queue(service, adapter, request_)
    placer = make_placer(adapter, store, clock)

    placer.start()
    wait_until(lambda: store.get(DRAFT).state is RecordState.DONE, "the placer to place the queued draft")
    placer.stop(timeout=5)

    assert not placer._thread.is_alive()
    assert store.take_placer_lease("next", 60)  # given up on the way out, not left to lapse


def test_a_taken_over_draft_waits_for_the_quota_as_configured_not_only_a_moment(adapter, store, clock, request_):
    """It cannot be queued, so a short patience would only starve it behind the placer."""
    budgets = []
    real_find = adapter.find_by_draft
    adapter.find_by_draft = lambda *args: (budgets.append(args[2].quota_patience), real_find(*args))[1]
    store.claim(request_.draftOrderId, request_.fingerprint(), 1)  # an owner that crashed
    clock.advance(BUDGET + 5)

    overflow_service(adapter, store, clock).place_order(request_)

    assert budgets == [None]
