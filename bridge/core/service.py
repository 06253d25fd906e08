"""The order service: exactly-once placeOrder on draftOrderId, and current getOrder.

Correctness rests on three facts, not on the lease: the platform order id is recorded as soon as
the create returns; a create that may have landed leaves the record `unknown`; and every new
owner of a record that is not fresh looks the draft up on the platform before it creates.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional

from tenacity import RetryCallState, Retrying, retry_if_result, wait_exponential

from bridge.core.deadline import Deadline
from bridge.core.errors import (
    BridgeError,
    InFlight,
    LookupInconclusive,
    OrderNotFound,
    OrderRejected,
    PayloadMismatch,
    RateLimited,
    StoreUnavailable,
    UpstreamAmbiguous,
    UpstreamUnreachable,
)
from bridge.core.freshness import FreshAnswers, FreshnessCache
from bridge.core.models import BikOrder, PlaceOrderRequest
from bridge.core.overflow import draft_of, placed_answer, queued_answer, refused_answer
from bridge.core.placement import (
    FRESH_DRAFT_REQUESTS,
    DecisionLog,
    ExactlyOnce,
    PlacementResult,
    Step,
    landing_ends_at,
    search_from,
)
from bridge.core.ports import (
    Claim,
    ClaimOutcome,
    IdempotencyRecord,
    IdempotencyStore,
    LookupResult,
    PlatformAdapter,
    RecordState,
    Replay,
)
from bridge.core.presentation import Presentation

log = logging.getLogger("bik_bridge.service")
# Takes work to run once the answer has left (the HTTP layer runs it when the server closes the answer).
Defer = Callable[[Callable[[], None]], None]
ROUTINE_DECISIONS = frozenset({"created", "replayed"})
# How long Bik is asked to wait after a lookup that proved nothing: the store's search may settle, or reconcile runs.
INCONCLUSIVE_RETRY_AFTER = 30
# What a fresh draft may meet that proves the platform did not receive it: under overflow placement it is queued.
QUEUEABLE = (RateLimited, UpstreamUnreachable)
# Under overflow placement a fresh placeOrder waits at most this long for a slot of the store's quota: a queued
# order answered at once beats one held for seconds in the gate.
OVERFLOW_QUOTA_PATIENCE_SECONDS = 0.5


def body_digest(body: bytes) -> str:
    """What identifies a request body byte for byte."""
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class ServiceSettings:
    """The knobs the service needs, taken from the config by the composition root."""

    lease_seconds: float = 25.0
    upstream_budget_seconds: float = 20.0
    wait_seconds: float = 10.0
    on_mismatch: str = "replay"
    get_order_cache_seconds: float = 0.0
    # Look the draft up even when no record exists: a record can be lost (evicted, a Redis restarted without
    # persistence, a SQLite file on an ephemeral disk), and only the platform still knows the order.
    lookup_before_create: bool = True
    # overflow: a fresh draft the platform surely did not receive (quota, unreachable) is queued and answered now.
    placement: str = "direct"
    max_queued: int = 1000
    max_queue_age_seconds: float = 600.0


@dataclass(frozen=True)
class PlaceResult:
    """What placeOrder answers, and how it came to be."""

    body: bytes
    order_id: str
    decision: str  # created | replayed | recovered | queued


class OrderService:
    """Places and reads orders through one platform adapter and one idempotency store."""

    def __init__(
        self,
        adapter: PlatformAdapter,
        store: IdempotencyStore,
        settings: ServiceSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        deadline: Optional[Callable[[], Deadline]] = None,
        on_decision: Optional[Callable[[str], None]] = None,
        presentation: Optional[Presentation] = None,
        fresh: Optional[FreshAnswers] = None,
        room: Optional[Callable[[], Optional[tuple[int, int]]]] = None,
    ):
        self.adapter = adapter
        self.store = store
        self.settings = settings
        self._sleep = sleep
        self._deadline = deadline or (lambda: Deadline(settings.upstream_budget_seconds))
        # A placeOrder that can be queued instead waits only a moment for the quota; reads wait as configured.
        patience = OVERFLOW_QUOTA_PATIENCE_SECONDS if settings.placement == "overflow" else None
        self._place_deadline = deadline or (lambda: Deadline(settings.upstream_budget_seconds,
                                                             quota_patience=patience))
        self._room = room  # slots of the store's quota free now, and the quota; None while none is announced
        # Each decision is logged (routine ones at DEBUG) and counted through `on_decision` (metrics).
        self._decisions = DecisionLog(log, "placeOrder decision", on_decision, routine=ROUTINE_DECISIONS)
        self._note_decision = self._decisions.note
        self._steps = ExactlyOnce(adapter, store, self._decisions, budget_seconds=settings.upstream_budget_seconds,
                                  lookup_before_create=settings.lookup_before_create)
        self._presentation = presentation or Presentation()  # names the answer to a queued draft
        # Repeated status checks within a few seconds are answered without the platform (off by default); the
        # composition root may hand in a cache every worker shares, else this process keeps its own.
        seconds = settings.get_order_cache_seconds
        self._fresh = fresh if fresh is not None else FreshnessCache(seconds) if seconds > 0 else None

    # placeOrder ---------------------------------------------------------------------------

    def place(self, key: Optional[str], digest: str, read: Callable[[], PlaceOrderRequest], *,
              defer: Optional[Defer] = None) -> PlaceResult:
        """Answer a placeOrder body: a retry of a placed order from its record, else the order `read` gives, once.

        `key` is the body's draftOrderId as sent (None when it would not pass validation) and `digest` the body's
        `body_digest`. Bik's retries resend the same bytes: they are answered from the record before `read`
        validates anything. A store may claim a draft it holds no record of in the same step: a claim `read`
        refuses the payload of is given back, before anything was sent. `defer`, when given, is handed the
        record of a placed order to write once the answer has left (`place_order`).
        """
        # One budget for the whole Bik call, started before any claim (`place_order`).
        deadline = self._place_deadline()
        first: Replay | Claim | None = None
        if key is not None:
            # A claim made before the payload is read has no fingerprint until its owner's next write: only under
            # `on_mismatch: replay` is that harmless (another payload meeting it is replayed the first order either
            # way), so `reject` reads first and claims once the payload is known.
            claims_early = self.settings.on_mismatch == "replay"
            first = (self.store.replay_or_claim(key, digest, self.settings.lease_seconds) if claims_early
                     else self.store.replay(key, digest))
        if isinstance(first, Replay):
            self._note_decision(key, "replayed", first.order_id)
            return PlaceResult(first.response, first.order_id, "replayed")
        try:
            request = read()
        except BaseException:
            if first is not None:  # a body refused before anything was sent for it
                self._steps.give_back(key, first.token)
            raise
        if first is not None and request.draftOrderId != key:
            # Validation keeps the id as sent; were it ever to change it, the claim would be another draft's.
            self._steps.give_back(key, first.token)
            first = None
        return self.place_order(request, digest, claim=first, deadline=deadline, defer=defer)

    def place_order(self, request: PlaceOrderRequest, digest: str = "", *, claim: Optional[Claim] = None,
                    deadline: Optional[Deadline] = None, defer: Optional[Defer] = None) -> PlaceResult:
        """Place the order once per draftOrderId; duplicates replay, wait, or get 409.

        `digest` is the `body_digest` of the request as received: the record of an order this request places keeps
        it, so that a byte-identical retry is answered by `place`. `claim` is a NEW claim `place` already made.
        `defer`, when given, takes the writing of a placed order's record, to run it once the answer has left: the
        order exists either way, and a record never written is settled as after a crash (the retry's lookup).
        """
        key = request.draftOrderId
        fingerprint = request.fingerprint()
        # One budget for the whole Bik call, started before any claim: whatever this request sends ends before
        # its record's started_at + budget (which its lease outlasts by a positive grace), and time spent waiting
        # for a busy owner comes out of it.
        deadline = deadline or self._place_deadline()
        if claim is not None:
            # Claimed by `place` before the payload was read: this payload is the one its record will hold.
            claim = replace(claim, record=replace(claim.record, fingerprint=fingerprint))
            return self._place(request, claim, deadline, digest, defer)
        first: Optional[Claim] = None

        def claim_draft() -> Claim:
            nonlocal first
            claim = self.store.claim(key, fingerprint, self.settings.lease_seconds)
            if claim.outcome is ClaimOutcome.DONE or (claim.outcome is ClaimOutcome.BUSY and first is None):
                self._check_payload(claim.record, fingerprint)  # warn once per request, not once per poll
            if first is None:
                first = claim
            return claim

        def waited_enough(state: RetryCallState) -> bool:
            # By the store's clock, the one every instance shares: the next claim would come too late.
            last: Claim = state.outcome.result()
            return last.now + state.upcoming_sleep > first.now + self.settings.wait_seconds

        claim = claim_draft()
        if claim.outcome is ClaimOutcome.BUSY:
            # Another request owns the draft right now; claim again, a little less often each time, bounded. The
            # poller is built only here: most claims are answered at once, and building it costs a replay dearly.
            made = [claim]  # the poller's first attempt is the claim already made
            polling = Retrying(retry=retry_if_result(lambda last: last.outcome is ClaimOutcome.BUSY),
                               wait=wait_exponential(multiplier=0.02, max=0.2), stop=waited_enough,
                               sleep=self._sleep, retry_error_callback=lambda state: state.outcome.result())
            claim = polling(lambda: made.pop() if made else claim_draft())
        if claim.outcome in (ClaimOutcome.NEW, ClaimOutcome.TAKEOVER):
            # A body is kept for replays only with the payload the record holds: another payload for the draft
            # always goes through the claim, which warns or refuses (`on_mismatch`).
            same_payload = claim.record.fingerprint == fingerprint
            return self._place(request, claim, deadline, digest if same_payload else "", defer)
        if claim.outcome is ClaimOutcome.DONE:
            if claim.record.state is RecordState.REFUSED:
                # Queued, then refused by the store (or cancelled): no order exists and none will be placed.
                self._note_decision(key, "refused_replayed", claim.record.order_id)
                raise OrderRejected(f"order {key} was refused after it was accepted: "
                                    f"{claim.record.reason or 'refused by the store'}")
            self._note_decision(key, "replayed", claim.record.order_id)
            return PlaceResult(claim.record.response, claim.record.order_id, "replayed")
        retry_after = max(1, math.ceil(min(5.0, claim.record.lease_until - claim.now)))
        self._note_decision(key, "in_flight")
        raise InFlight(f"order {key} is being placed; retry shortly", retry_after=retry_after)

    def _place(self, request: PlaceOrderRequest, claim: Claim, deadline: Deadline, digest: str,
               defer: Optional[Defer]) -> PlaceResult:
        """Own the draft: place it exactly once, then answer Bik with what came of it."""
        key, token = request.draftOrderId, claim.token
        if claim.outcome is ClaimOutcome.TAKEOVER:
            # Only a fresh draft can be queued before its lookup: a taken-over one waits for the quota as reads do.
            deadline.quota_patience = None
        if claim.outcome is ClaimOutcome.NEW and self._queue_before_sending():
            # Nothing sent yet, and the lookup and the create would not both fit now: the placer does both later.
            return self._queue_or_release(request, token, RateLimited("the store's quota has no room now"))
        placement = self._steps.place(request, claim, deadline,
                                      before_takeover_create=lambda: self._before_takeover_create(request, claim))
        result = placement.result
        if result is PlacementResult.FOUND:
            answer = self._complete_and_answer(claim, placement.order, "recovered", digest, defer)
            if claim.outcome is ClaimOutcome.TAKEOVER and placement.step is Step.LOOKUP:
                self._check_payload(claim.record, request.fingerprint())
            return answer
        if result is PlacementResult.CREATED:
            if placement.order.total != request.order.total:
                self._note_decision(key, "total_mismatch", placement.order.id)
            if not claim.record.fingerprint:
                # Taken over from an owner that ended before recording a payload: the order has this one.
                claim = replace(claim, record=replace(claim.record, fingerprint=request.fingerprint()))
            return self._complete_and_answer(claim, placement.order, "created", digest, defer)
        if result is PlacementResult.INCONCLUSIVE:
            # This claim knows no more than the lookup did: a new one is dropped, so the next retry's search is as
            # wide; a taken-over one stays unknown.
            self._steps.let_go(claim, placement.step)
            raise LookupInconclusive(f"the bridge could not tell whether order {key} exists on the platform; "
                                     "retry later", retry_after=INCONCLUSIVE_RETRY_AFTER)
        if result is PlacementResult.STILL_LANDING:
            # Keep holding the record: retries stay busy until our lease ends, which is after that budget.
            self._note_decision(key, "in_flight")
            raise InFlight(f"order {key} may still be on its way to the store; retry shortly",
                           retry_after=max(1, math.ceil(placement.until - claim.now)))
        if result is PlacementResult.UNCONFIRMED:
            # Before this budget ends a retry could not tell a slow create from a lost one.
            raise UpstreamAmbiguous(
                f"the platform did not confirm order {key}; retry and the bridge will look it up first",
                retry_after=max(1, math.ceil(deadline.remaining())),
            )
        # Not applied. Queued only once the platform is known to hold nothing of the draft: a new claim looked up
        # first (with `lookup_before_create` off Bik gets the answer direct placement gives), or a taken-over one
        # whose lookup proved it absent after the previous owner's budget, which is then as fresh as a new one and
        # must not starve behind the placer that drains the queue.
        error = placement.error
        proven_absent = claim.outcome is ClaimOutcome.NEW or placement.step is Step.CREATE
        if proven_absent and self.settings.lookup_before_create and isinstance(error, QUEUEABLE):
            return self._queue_or_release(request, token, error)
        self._steps.let_go(claim, placement.step)
        raise error

    def _queue_before_sending(self) -> bool:
        """Under overflow placement, whether the quota lacks room now for a fresh draft's lookup and create."""
        if self.settings.placement != "overflow" or not self.settings.lookup_before_create or self._room is None:
            return False
        room = self._room()
        return room is not None and room[0] < FRESH_DRAFT_REQUESTS

    def _before_takeover_create(self, request: PlaceOrderRequest, claim: Claim) -> None:
        """A taken-over draft proven absent is created again, unless its payload changed under `on_mismatch: reject`."""
        key = request.draftOrderId
        recorded = claim.record.fingerprint  # "" when its first owner ended before recording a payload
        if recorded not in ("", request.fingerprint()) and self.settings.on_mismatch == "reject":
            self._steps.mark_unknown(claim, sent_nothing=True)
            raise PayloadMismatch(f"draftOrderId {key} was first sent with another payload")
        self._note_decision(key, "absent_after_lookup")

    def _queue_or_release(self, request: PlaceOrderRequest, token: str, error: BridgeError) -> PlaceResult:
        """A fresh draft the platform surely did not receive: queued under overflow placement, else released."""
        if self.settings.placement == "overflow":
            queued = self._enqueue(request, token)
            if queued is not None:
                return queued
        self._steps.release(request.draftOrderId, token)
        raise error

    def _enqueue(self, request: PlaceOrderRequest, token: str) -> Optional[PlaceResult]:
        """Keep the draft for the placer and answer it now, unless the queue is full or too old to promise more."""
        key = request.draftOrderId
        try:
            stats = self.store.queue_stats()
            if stats.depth >= self.settings.max_queued or stats.oldest_age >= self.settings.max_queue_age_seconds:
                self._note_decision(key, "queue_full")
                log.warning("overflow queue full; answering 503", extra={
                    "draftOrderId": key, "depth": stats.depth, "oldest_age_seconds": round(stats.oldest_age, 1)})
                return None
            order = queued_answer(request, self._presentation)
            body = order.to_json_bytes()
            if not self.store.enqueue(key, token, request.model_dump_json().encode(), order.id, body,
                                      request.fingerprint()):
                log.warning("record was taken over before it could be queued", extra={"draftOrderId": key})
                return None
        except StoreUnavailable:
            log.error("could not queue a draft; answering 503", extra={"draftOrderId": key})
            return None
        self._note_decision(key, "queued", order.id)
        return PlaceResult(body, order.id, "queued")

    def _complete_and_answer(self, claim: Claim, order: BikOrder, decision: str, digest: str,
                             defer: Optional[Defer]) -> PlaceResult:
        """Answer the placed order, and record it on the claim with the digest of the request body that placed it."""
        key, body = claim.record.key, order.to_json_bytes()

        def record() -> None:
            try:
                if not self.store.complete(key, claim.token, order.id, body, digest, claim.record.fingerprint):
                    log.warning("record was taken over before completion", extra={"draftOrderId": key})
            except StoreUnavailable:
                # The order exists; a retry will find it by its draft id on the platform.
                log.error("could not record a placed order", extra={"draftOrderId": key, "orderId": order.id})
            except Exception:  # the order exists whatever befalls its record: Bik is answered it all the same
                log.exception("could not record a placed order", extra={"draftOrderId": key, "orderId": order.id})

        if defer is None:
            record()
        else:
            defer(record)
        self._note_decision(key, decision, order.id)
        return PlaceResult(body, order.id, decision)

    def _check_payload(self, record: IdempotencyRecord, fingerprint: str) -> None:
        if record.fingerprint in ("", fingerprint):
            return  # the same payload, or one not recorded yet: nothing to compare with
        if self.settings.on_mismatch == "reject":
            raise PayloadMismatch(f"draftOrderId {record.key} was already used with another payload")
        log.warning("same draftOrderId with another payload; replaying the first order",
                    extra={"draftOrderId": record.key, "orderId": record.order_id})

    # getOrder -----------------------------------------------------------------------------

    def get_order(self, order_id: str) -> bytes:
        """The order's current state, read from the platform (a queued draft's, from its record until placed)."""
        draft = draft_of(order_id)
        if draft is not None:
            record = self.store.get(draft)
            if record is None:
                # The record is gone (expired after 30 days, evicted, lost): the store still knows the draft's order.
                return self._placed_by_draft(draft, order_id)
            queued = self._get_queued(record, order_id)
            if queued is not None:
                return queued
        if self._fresh is not None:
            cached = self._fresh.get(order_id)
            if cached is not None:
                return cached
        body = self.adapter.get(order_id, self._deadline()).to_json_bytes()
        if self._fresh is not None:
            self._fresh.put(order_id, body)
        return body

    def _placed_by_draft(self, draft: str, bridge_id: str) -> bytes:
        """The platform's order for a draft, found by its draft id, under the bridge id Bik keeps."""
        deadline = self._deadline()
        lookup = self.adapter.find_by_draft(draft, None, deadline, search_from(draft, time.time()))
        if lookup.result is LookupResult.FOUND:
            return placed_answer(lookup.order, bridge_id)
        if lookup.result is LookupResult.INCONCLUSIVE:
            raise LookupInconclusive(f"the bridge could not tell whether order {bridge_id} exists on the platform; "
                                     "retry later", retry_after=INCONCLUSIVE_RETRY_AFTER)
        raise OrderNotFound(f"order {bridge_id} not found")

    def _get_queued(self, record: IdempotencyRecord, order_id: str) -> Optional[bytes]:
        """A queued draft under its bridge id: as answered while waiting, then the platform's order, or CANCELLED."""
        if not record.queued or record.order_id != order_id:
            return None
        if record.state is RecordState.DONE and record.platform_order_id:
            return placed_answer(self.adapter.get(record.platform_order_id, self._deadline()), order_id)
        if record.state is RecordState.REFUSED:
            return refused_answer(record.response, record.reason or "refused by the store")
        return record.response

    # operations ---------------------------------------------------------------------------

    def reconcile(self, older_than: float = 60.0) -> list[tuple[str, str, Optional[str]]]:
        """Settle records left in flight or unknown: record found orders, release proven absent ones."""
        settled = []
        for stale in self.store.unsettled(older_than):
            claim = self.store.claim(stale.key, stale.fingerprint, self.settings.lease_seconds)
            if claim.outcome is ClaimOutcome.NEW:
                self.store.release(stale.key, claim.token)  # settled by someone else meanwhile
                continue
            if claim.outcome is not ClaimOutcome.TAKEOVER:
                continue  # live, or completed by traffic since the scan
            settled.append(self._reconcile_one(claim))
        return settled

    def _reconcile_one(self, claim: Claim) -> tuple[str, str, Optional[str]]:
        key, token = claim.record.key, claim.token
        try:
            since = search_from(key, claim.now)
            lookup = self.adapter.find_by_draft(key, None, self._deadline(), since)
        except BridgeError as exc:
            self._steps.mark_unknown(claim, sent_nothing=True)  # a reconciler never creates
            log.warning("reconcile lookup failed", extra={"draftOrderId": key, "error": exc.message})
            return key, "lookup_failed", None
        if lookup.result is LookupResult.FOUND:
            self.store.complete(key, token, lookup.order.id, lookup.order.to_json_bytes())
            self._note_decision(key, "reconciled_found", lookup.order.id)
            return key, "recorded", lookup.order.id
        if lookup.result is LookupResult.INCONCLUSIVE:
            # Never released without proof: the next run, or the merchant, decides.
            self._steps.mark_unknown(claim, sent_nothing=True)
            self._note_decision(key, "lookup_inconclusive")
            log.warning("reconcile could not prove the order absent", extra={"draftOrderId": key,
                                                                              "reason": lookup.reason})
            return key, "inconclusive", None
        if claim.now < landing_ends_at(claim, self.settings.upstream_budget_seconds):
            # The previous owner's create may still land: hold the record until our lease ends; the next run decides.
            self._note_decision(key, "reconcile_deferred")
            return key, "still_in_flight", None
        self.store.release(key, token)
        self._note_decision(key, "reconciled_absent")
        return key, "released", None

    def ready(self) -> None:
        """Raise unless the idempotency store answers."""
        self.store.ping()

    def warm_up(self, first_start: bool = True) -> None:
        """Open connections and load scripts now, so the first order does not wait for them; `first_start` as the
        store's `warm_up` takes it."""
        self.adapter.warm_up()
        try:
            self.store.warm_up(first_start)
        except StoreUnavailable as exc:
            # Not fatal: the store may come up later, and every request connects again.
            log.warning("idempotency store not reachable at start-up", extra={"error": exc.message})
