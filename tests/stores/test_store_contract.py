"""The `IdempotencyStore` contract, run against every backend."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from bridge.core.ports import ClaimOutcome, RecordState

from .conftest import TTL_SECONDS

LIVE = 60.0  # a lease no test outlives
STALE = 0.0  # a lease that has already run out when the next call arrives
BINARY = bytes(range(256)) + b"\xff\xfe\x00\xc3\x28 not utf-8"


def test_claim_on_absent_record_is_new(store):
    claim = store.claim("d-1", "fp-1", LIVE)

    assert claim.outcome is ClaimOutcome.NEW
    assert claim.token and len(claim.token) == 32
    record = claim.record
    assert (record.key, record.state, record.fingerprint, record.token) == ("d-1", RecordState.IN_FLIGHT, "fp-1", claim.token)
    assert record.started_at == record.updated_at == record.created_at == claim.now
    assert record.lease_until == pytest.approx(record.started_at + LIVE)
    assert record.order_id is None and record.response is None
    assert claim.previous is None
    assert store.get("d-1") == record


def test_every_claim_reports_the_store_clock(store):
    """BUSY and DONE answers carry the store's `now` too: a record's times are compared with nothing else."""
    first = store.claim("d-1", "fp", LIVE)
    busy = store.claim("d-1", "fp", LIVE)
    assert store.complete("d-1", first.token, "order-1", b"{}")
    done = store.claim("d-1", "fp", LIVE)

    assert first.now <= busy.now <= done.now
    assert busy.record.lease_until - busy.now == pytest.approx(LIVE - (busy.now - first.now), abs=1e-6)


def test_takeovers_keep_the_first_owner_start(store):
    """However many owners a record has had, it remembers when the first one started: no create is older."""
    first = store.claim("d-1", "fp", STALE)
    second = store.claim("d-1", "fp", STALE)
    assert store.mark_unknown("d-1", second.token)
    third = store.claim("d-1", "fp", LIVE)

    assert second.outcome is third.outcome is ClaimOutcome.TAKEOVER
    assert third.record.created_at == second.record.created_at == first.record.created_at
    assert third.record.started_at == third.now >= first.record.started_at
    assert store.get("d-1").first_started_at == first.record.started_at


def test_get_of_absent_record_is_none(store):
    assert store.get("nothing-here") is None


def test_tokens_are_fresh_per_claim(store):
    first = store.claim("d-1", "fp", STALE)
    second = store.claim("d-1", "fp", STALE)

    assert first.token != second.token


def test_claim_on_live_lease_is_busy_and_changes_nothing(store):
    first = store.claim("d-1", "fp-1", LIVE)

    again = store.claim("d-1", "fp-2", LIVE)

    assert again.outcome is ClaimOutcome.BUSY
    assert again.token is None
    assert again.record == first.record
    assert store.get("d-1") == first.record


def test_claim_on_done_replays_and_changes_nothing(store):
    first = store.claim("d-1", "fp-1", LIVE)
    assert store.complete("d-1", first.token, "order-7", b'{"id":"order-7"}')
    done = store.get("d-1")

    again = store.claim("d-1", "fp-1", LIVE)

    assert again.outcome is ClaimOutcome.DONE
    assert again.token is None
    assert again.record == done
    assert again.record.response == b'{"id":"order-7"}'
    assert store.get("d-1") == done


def test_claim_on_expired_lease_takes_over_and_keeps_fingerprint(store):
    stale = store.claim("d-1", "fp-original", STALE)

    takeover = store.claim("d-1", "fp-changed", LIVE)

    assert takeover.outcome is ClaimOutcome.TAKEOVER
    assert takeover.token and takeover.token != stale.token
    assert takeover.previous == stale.record
    record = takeover.record
    assert record.state is RecordState.IN_FLIGHT
    assert record.fingerprint == "fp-original"
    assert record.token == takeover.token
    assert record.started_at >= stale.record.started_at
    assert record.updated_at == record.started_at
    assert record.lease_until == pytest.approx(record.started_at + LIVE)
    assert store.get("d-1") == record


def test_claim_on_unknown_takes_over(store):
    first = store.claim("d-1", "fp-original", LIVE)
    assert store.mark_unknown("d-1", first.token)
    unknown = store.get("d-1")

    takeover = store.claim("d-1", "fp-changed", LIVE)

    assert takeover.outcome is ClaimOutcome.TAKEOVER
    assert takeover.previous == unknown
    assert takeover.record.state is RecordState.IN_FLIGHT
    assert takeover.record.fingerprint == "fp-original"
    assert takeover.record.order_id is None


def test_complete_by_owner(store):
    claim = store.claim("d-1", "fp", LIVE)

    assert store.complete("d-1", claim.token, "order-7", b"body") is True

    record = store.get("d-1")
    assert record.state is RecordState.DONE
    assert (record.order_id, record.response, record.token, record.fingerprint) == ("order-7", b"body", claim.token, "fp")
    assert record.updated_at >= claim.record.updated_at


def test_complete_after_own_lease_ran_out_still_counts_while_nobody_took_over(store):
    claim = store.claim("d-1", "fp", STALE)

    assert store.complete("d-1", claim.token, "order-7", b"body") is True
    assert store.get("d-1").state is RecordState.DONE


def test_mark_unknown_by_owner_drops_the_lease(store):
    claim = store.claim("d-1", "fp", LIVE)

    assert store.mark_unknown("d-1", claim.token) is True

    record = store.get("d-1")
    assert record.state is RecordState.UNKNOWN
    assert record.lease_until == record.updated_at
    assert record.lease_until < claim.record.lease_until
    assert (record.fingerprint, record.token, record.started_at) == ("fp", claim.token, claim.record.started_at)


def test_mark_unknown_can_hand_back_an_earlier_start(store):
    """An owner that sent nothing gives the record the start of the last owner that may have sent a create."""
    first = store.claim("d-1", "fp", LIVE)
    assert store.mark_unknown("d-1", first.token)
    second = store.claim("d-1", "fp", LIVE)
    assert second.outcome is ClaimOutcome.TAKEOVER and second.record.started_at >= first.record.started_at

    assert store.mark_unknown("d-1", second.token, "fp", second.previous.started_at) is True

    assert store.get("d-1").started_at == pytest.approx(first.record.started_at, abs=1e-6)
    third = store.claim("d-1", "fp", LIVE)
    assert third.previous.started_at == pytest.approx(first.record.started_at, abs=1e-6)


def test_release_by_owner_deletes_and_a_retry_starts_afresh(store):
    claim = store.claim("d-1", "fp", LIVE)

    assert store.release("d-1", claim.token) is True

    assert store.get("d-1") is None
    assert store.claim("d-1", "fp-2", LIVE).outcome is ClaimOutcome.NEW


@pytest.mark.parametrize("action", ["complete", "mark_unknown", "release"])
def test_wrong_token_is_refused_and_changes_nothing(store, action):
    claim = store.claim("d-1", "fp", LIVE)

    assert _act(store, action, "d-1", "0" * 32) is False
    assert store.get("d-1") == claim.record


@pytest.mark.parametrize("action", ["complete", "mark_unknown", "release"])
def test_superseded_token_is_refused_and_changes_nothing(store, action):
    stale = store.claim("d-1", "fp", STALE)
    takeover = store.claim("d-1", "fp", LIVE)

    assert _act(store, action, "d-1", stale.token) is False
    assert store.get("d-1") == takeover.record


@pytest.mark.parametrize("action", ["complete", "mark_unknown", "release"])
def test_absent_record_is_refused(store, action):
    assert _act(store, action, "d-1", "0" * 32) is False
    assert store.get("d-1") is None


@pytest.mark.parametrize("action", ["complete", "mark_unknown", "release"])
def test_done_record_is_final_even_for_its_owner(store, action):
    claim = store.claim("d-1", "fp", LIVE)
    assert store.complete("d-1", claim.token, "order-7", b"body")
    done = store.get("d-1")

    assert _act(store, action, "d-1", claim.token) is False
    assert store.get("d-1") == done


@pytest.mark.parametrize("action", ["complete", "mark_unknown", "release"])
def test_unknown_record_waits_for_a_takeover(store, action):
    # After a possible create only a new owner, who looks the order up first, may settle the record.
    claim = store.claim("d-1", "fp", LIVE)
    assert store.mark_unknown("d-1", claim.token)
    unknown = store.get("d-1")

    assert _act(store, action, "d-1", claim.token) is False
    assert store.get("d-1") == unknown


@pytest.mark.parametrize("response", [BINARY, b"", b"\x00", "{\"name\":\"Zoë ✓\"}".encode()])
def test_response_bytes_round_trip_exactly(store, response):
    claim = store.claim("d-1", "fp", LIVE)
    assert store.complete("d-1", claim.token, "order-7", response)

    assert store.get("d-1").response == response
    assert store.claim("d-1", "fp", LIVE).record.response == response


def test_text_fields_round_trip(store):
    key, fingerprint = "draft:ünï/cødé 42", "sha256:ü✓"
    claim = store.claim(key, fingerprint, LIVE)
    assert store.complete(key, claim.token, "order/ü-1", b"x")

    record = store.get(key)
    assert (record.key, record.fingerprint, record.order_id) == (key, fingerprint, "order/ü-1")


def test_every_write_sets_the_expiry(backend, store):
    assert backend.expiry(store, "d-1") is None

    claim = store.claim("d-1", "fp", LIVE)
    assert 0 < backend.expiry(store, "d-1") <= TTL_SECONDS

    assert store.complete("d-1", claim.token, "order-7", b"body")
    assert TTL_SECONDS - 60 < backend.expiry(store, "d-1") <= TTL_SECONDS

    unknown = store.claim("d-2", "fp", LIVE)
    assert store.mark_unknown("d-2", unknown.token)
    assert TTL_SECONDS - 60 < backend.expiry(store, "d-2") <= TTL_SECONDS


def test_namespaces_are_independent(backend):
    first, second = backend.store(), backend.store()

    claims = [first.claim("d-1", "fp", LIVE), second.claim("d-1", "fp", LIVE)]

    assert [claim.outcome for claim in claims] == [ClaimOutcome.NEW, ClaimOutcome.NEW]
    assert first.complete("d-1", claims[0].token, "order-a", b"a")
    assert second.get("d-1").state is RecordState.IN_FLIGHT
    assert first.release("d-1", claims[1].token) is False
    assert second.unsettled(0) == []


def test_concurrent_claims_yield_exactly_one_owner(store):
    threads = 32
    barrier = threading.Barrier(threads)
    outcomes: list[ClaimOutcome] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claim() -> None:
        try:
            barrier.wait(timeout=10)
            outcome = store.claim("d-race", "fp", LIVE).outcome
            with lock:
                outcomes.append(outcome)
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            with lock:
                errors.append(exc)

    workers = [threading.Thread(target=claim) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)

    assert errors == []
    assert Counter(outcomes) == {ClaimOutcome.NEW: 1, ClaimOutcome.BUSY: threads - 1}


def test_unsettled_lists_stale_in_flight_and_unknown_records_only(store):
    store.claim("stale", "fp", STALE)
    unknown = store.claim("unknown", "fp", LIVE)
    assert store.mark_unknown("unknown", unknown.token)
    store.claim("live", "fp", LIVE)
    done = store.claim("done", "fp", STALE)
    assert store.complete("done", done.token, "order-7", b"body")

    assert sorted(record.key for record in store.unsettled(0)) == ["stale", "unknown"]
    assert {record.key: record.state for record in store.unsettled(0)} == {
        "stale": RecordState.IN_FLIGHT,
        "unknown": RecordState.UNKNOWN,
    }
    assert store.unsettled(3600) == []


def _act(store, action: str, key: str, token: str) -> bool:
    if action == "complete":
        return store.complete(key, token, "order-x", b"x")
    return getattr(store, action)(key, token)


# overflow placement -----------------------------------------------------------------------------------------------

REQUEST = b'{"draftOrderId": "q-1"}'
ANSWER = b'{"order": {"id": "BK-q-1", "status": "ORDERED"}}'


def _enqueued(store, key: str = "q-1"):
    """A draft accepted into the queue, as placeOrder leaves it: claimed, then queued with the bridge's answer."""
    claim = store.claim(key, "fp", LIVE)
    assert store.enqueue(key, claim.token, REQUEST, f"BK-{key}", ANSWER)
    return store.get(key)


def test_enqueue_keeps_the_request_and_the_answer_and_retries_replay_it(store):
    record = _enqueued(store)

    assert (record.state, record.request, record.order_id, record.response) == (
        RecordState.QUEUED, REQUEST, "BK-q-1", ANSWER)
    assert record.queued and record.enqueued_at >= record.started_at
    again = store.claim("q-1", "fp", LIVE)
    assert again.outcome is ClaimOutcome.DONE and again.record.response == ANSWER
    assert store.get("q-1") == record


def test_enqueue_needs_the_owner_token(store):
    claim = store.claim("q-1", "fp", LIVE)

    assert store.enqueue("q-1", "0" * 32, REQUEST, "BK-q-1", ANSWER) is False
    assert store.get("q-1") == claim.record
    assert store.queued(10) == []


def test_queued_lists_waiting_drafts_oldest_first(store):
    for key in ("q-1", "q-2", "q-3"):
        _enqueued(store, key)
    direct = store.claim("direct", "fp", LIVE)
    assert store.complete("direct", direct.token, "order-1", b"{}")

    assert [record.key for record in store.queued(10)] == ["q-1", "q-2", "q-3"]
    assert [record.key for record in store.queued(2)] == ["q-1", "q-2"]
    stats = store.queue_stats()
    assert stats.depth == 3
    assert stats.oldest_enqueued_at == store.get("q-1").enqueued_at
    assert stats.oldest_age == pytest.approx(stats.now - stats.oldest_enqueued_at)


def test_an_empty_queue_has_no_oldest(store):
    stats = store.queue_stats()

    assert (stats.depth, stats.oldest_enqueued_at, stats.oldest_age) == (0, None, 0.0)


def test_claim_queued_owns_a_queued_draft_once(store):
    queued = _enqueued(store)

    claim = store.claim_queued("q-1", LIVE)

    assert claim.outcome is ClaimOutcome.NEW and claim.previous == queued
    assert claim.record.state is RecordState.IN_FLIGHT and claim.record.token == claim.token
    assert claim.record.request == REQUEST and claim.record.response == ANSWER
    assert claim.record.created_at == queued.created_at
    assert store.claim_queued("q-1", LIVE) is None
    assert store.queued(10) == []
    assert store.queue_stats().depth == 1  # still waiting for its placement
    assert store.claim("q-1", "fp", LIVE).outcome is ClaimOutcome.DONE  # Bik's retry still replays


def test_claim_queued_refuses_what_is_not_a_waiting_queued_draft(store):
    direct = store.claim("direct", "fp", STALE)

    assert store.claim_queued("absent", LIVE) is None
    assert store.claim_queued("direct", LIVE) is None
    assert store.get("direct") == direct.record


def test_a_lapsed_or_unknown_placement_is_taken_over_and_listed_again(store):
    _enqueued(store, "q-1")
    _enqueued(store, "q-2")
    lapsed = store.claim_queued("q-1", STALE)
    unknown = store.claim_queued("q-2", LIVE)
    assert store.mark_unknown("q-2", unknown.token)

    assert [record.key for record in store.queued(10)] == ["q-1", "q-2"]
    first, second = store.claim_queued("q-1", LIVE), store.claim_queued("q-2", LIVE)
    assert first.outcome is second.outcome is ClaimOutcome.TAKEOVER
    assert first.previous.token == lapsed.token and second.previous.state is RecordState.UNKNOWN
    assert store.complete_queued("q-1", lapsed.token, "123") is False  # the lapsed owner is fenced off


def test_complete_queued_keeps_the_answer_and_records_the_platform_order(store):
    _enqueued(store)
    claim = store.claim_queued("q-1", LIVE)

    assert store.complete_queued("q-1", "0" * 32, "123") is False
    assert store.complete_queued("q-1", claim.token, "123") is True

    record = store.get("q-1")
    assert (record.state, record.order_id, record.platform_order_id, record.response) == (
        RecordState.DONE, "BK-q-1", "123", ANSWER)
    assert store.queued(10) == [] and store.queue_stats().depth == 0
    assert store.claim("q-1", "fp", LIVE).record.response == ANSWER
    assert store.claim_queued("q-1", LIVE) is None


def test_release_puts_a_queued_draft_back_in_the_queue(store):
    _enqueued(store)
    claim = store.claim_queued("q-1", LIVE)

    assert store.release("q-1", claim.token) is True

    record = store.get("q-1")
    assert record.state is RecordState.QUEUED and record.response == ANSWER
    assert [r.key for r in store.queued(10)] == ["q-1"]


def test_refuse_records_the_reason_and_requeue_puts_it_back(store):
    _enqueued(store)
    claim = store.claim_queued("q-1", LIVE)

    assert store.refuse("q-1", claim.token, "out of stock") is True

    record = store.get("q-1")
    assert (record.state, record.reason, record.response) == (RecordState.REFUSED, "out of stock", ANSWER)
    assert store.queued(10) == [] and store.queue_stats().depth == 0
    assert [r.key for r in store.refused(10)] == ["q-1"]
    assert store.claim("q-1", "fp", LIVE).outcome is ClaimOutcome.DONE
    assert store.requeue("q-1") is True
    assert store.requeue("q-1") is False
    assert store.get("q-1").state is RecordState.QUEUED and store.get("q-1").reason is None
    assert store.refused(10) == [] and [r.key for r in store.queued(10)] == ["q-1"]


def test_cancel_takes_only_a_draft_still_waiting(store):
    _enqueued(store, "q-1")
    _enqueued(store, "q-2")
    placing = store.claim_queued("q-2", LIVE)

    assert store.cancel_queued("q-1", "cancelled by the merchant") is True
    assert store.cancel_queued("q-2", "cancelled by the merchant") is False  # a create may be on its way
    assert store.cancel_queued("absent", "cancelled by the merchant") is False

    assert store.get("q-1").state is RecordState.REFUSED and store.get("q-1").reason == "cancelled by the merchant"
    assert store.get("q-2").token == placing.token
    assert [r.key for r in store.refused(10)] == ["q-1"]


def test_queued_drafts_are_not_the_reconcilers(store):
    _enqueued(store, "q-1")
    claim = store.claim_queued("q-1", LIVE)
    assert store.mark_unknown("q-1", claim.token)

    assert store.unsettled(0) == []


def test_one_placer_lease_per_namespace(backend):
    first, second = backend.store(), backend.store(backend.made[0].namespace if backend.made else None)
    other = backend.store()

    assert first.take_placer_lease("a", LIVE) is True
    assert first.take_placer_lease("a", LIVE) is True  # renewed
    assert second.take_placer_lease("b", LIVE) is False
    assert other.take_placer_lease("b", LIVE) is True  # another store
    first.drop_placer_lease("b")  # not its holder: nothing changes
    assert second.take_placer_lease("b", LIVE) is False
    first.drop_placer_lease("a")
    assert second.take_placer_lease("b", LIVE) is True


def test_a_lapsed_placer_lease_passes_to_another_holder(store):
    assert store.take_placer_lease("a", 0.001) is True
    deadline = time.monotonic() + 5
    while not store.take_placer_lease("b", LIVE):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert store.take_placer_lease("a", LIVE) is False


# replay: a byte-identical retry answered with one read --------------------------------------------------------

def test_replay_answers_a_done_record_only_for_the_body_that_placed_it(store):
    claim = store.claim("d-1", "fp", LIVE)
    assert store.replay("d-1", "digest-a") is None  # in flight: nothing to replay yet
    assert store.complete("d-1", claim.token, "order-7", BINARY, "digest-a")

    replay = store.replay("d-1", "digest-a")
    assert (replay.order_id, replay.response) == ("order-7", BINARY)
    assert store.replay("d-1", "digest-b") is None  # another body: the claim decides (replay or mismatch)
    assert store.replay("d-2", "digest-a") is None  # another draft
    assert store.get("d-1").state is RecordState.DONE


def test_replay_or_claim_replays_what_replay_would(store):
    claim = store.claim("d-1", "fp", LIVE)
    assert store.replay_or_claim("d-1", "digest-a", LIVE) is None  # in flight: left to the claim
    assert store.complete("d-1", claim.token, "order-7", BINARY, "digest-a")

    replay = store.replay_or_claim("d-1", "digest-a", LIVE)
    assert (replay.order_id, replay.response) == ("order-7", BINARY)
    assert store.replay_or_claim("d-1", "digest-b", LIVE) is None  # another body: the claim decides
    assert store.get("d-1").state is RecordState.DONE


def test_replay_or_claim_leaves_every_settled_or_unsure_record_to_the_claim(store):
    unknown = store.claim("d-1", "fp", LIVE)
    assert store.mark_unknown("d-1", unknown.token)
    queued = store.claim("d-2", "fp", LIVE)
    assert store.enqueue("d-2", queued.token, b"{}", "BK-d-2", b"queued answer")
    store.claim("d-3", "fp", STALE)  # in flight past its lease

    for key in ("d-1", "d-2", "d-3"):
        before = store.get(key)
        assert store.replay_or_claim(key, "digest-a", LIVE) is None
        assert store.get(key) == before  # nothing taken over before the payload is read


def test_replay_or_claim_of_a_draft_without_record_claims_it_or_leaves_it_to_the_claim(store):
    """A store may claim a fresh draft in the same step (a NEW claim with no fingerprint yet), or leave it."""
    first = store.replay_or_claim("d-1", "digest-a", LIVE)
    if first is None:
        assert store.get("d-1") is None
        return
    assert first.outcome is ClaimOutcome.NEW and first.token
    assert (first.record.state, first.record.fingerprint, first.record.token) == (RecordState.IN_FLIGHT, "",
                                                                                    first.token)
    assert first.record.lease_until == pytest.approx(first.now + LIVE)
    assert store.claim("d-1", "fp", LIVE).outcome is ClaimOutcome.BUSY  # owned like any new claim
    assert store.replay_or_claim("d-1", "digest-a", LIVE) is None
    assert store.complete("d-1", first.token, "order-7", b"answer", "digest-a", "fp")
    assert store.get("d-1").fingerprint == "fp"
    assert store.replay_or_claim("d-1", "digest-a", LIVE).order_id == "order-7"


def test_an_owner_write_records_the_fingerprint_only_where_none_is(store):
    """complete, mark_unknown and enqueue write the payload's fingerprint on a record claimed without one, and never
    replace one the record holds."""
    writes = {
        "complete": lambda key, token, fp: store.complete(key, token, "order-1", b"{}", "", fp),
        "mark_unknown": lambda key, token, fp: store.mark_unknown(key, token, fp),
        "enqueue": lambda key, token, fp: store.enqueue(key, token, b"{}", f"BK-{key}", b"queued", fp),
    }
    for name, write in writes.items():
        blank = store.claim(f"blank-{name}", "", LIVE)
        assert write(f"blank-{name}", blank.token, "fp-new")
        assert store.get(f"blank-{name}").fingerprint == "fp-new", name
        held = store.claim(f"held-{name}", "fp-first", LIVE)
        assert write(f"held-{name}", held.token, "fp-new")
        assert store.get(f"held-{name}").fingerprint == "fp-first", name


def test_replay_needs_a_digest_recorded_with_the_order(store):
    """Orders recorded without a body (reconcile, records written before digests) are replayed by the claim only."""
    claim = store.claim("d-1", "fp", LIVE)
    assert store.complete("d-1", claim.token, "order-7", b"body")

    assert store.replay("d-1", "") is None
    assert store.replay("d-1", "digest-a") is None
    assert store.claim("d-1", "fp", LIVE).outcome is ClaimOutcome.DONE


def test_replay_never_answers_an_unsettled_record(store):
    unknown = store.claim("d-1", "fp", LIVE)
    assert store.mark_unknown("d-1", unknown.token)
    assert store.replay("d-1", "digest-a") is None

    queued = store.claim("d-2", "fp", LIVE)
    assert store.enqueue("d-2", queued.token, b"{}", "BK-d-2", b"queued answer")
    placing = store.claim_queued("d-2", LIVE)
    assert store.complete_queued("d-2", placing.token, "order-9")
    assert store.replay("d-2", "") is None  # a queued draft's answer comes from its claim, never from here
