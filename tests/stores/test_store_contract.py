"""The `IdempotencyStore` contract, run against every backend."""
from __future__ import annotations

import threading
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
