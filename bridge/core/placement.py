"""The exactly-once steps after a claim, shared by placeOrder and the overflow placer.

A placement looks the draft up before it creates (a new claim may skip that under `lookup_before_create: false`),
never creates after a lookup that proved nothing, lets a previous owner's create land before creating again, and
never re-sends a create that may have landed: it settles it by a lookup or leaves the record `unknown`. What came of
it is returned, not answered: the service answers Bik, the placer moves the queued draft on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Optional

from bridge.core.deadline import Deadline
from bridge.core.drafts import CLOCK_MARGIN_SECONDS, draft_created_at
from bridge.core.errors import BridgeError, StoreUnavailable
from bridge.core.models import BikOrder, PlaceOrderRequest
from bridge.core.ports import Claim, ClaimOutcome, IdempotencyStore, LookupResult, PlatformAdapter

# What a fresh draft costs the store's quota with the lookup before create: the lookup, then the create.
FRESH_DRAFT_REQUESTS = 2


class PlacementResult(Enum):
    FOUND = "found"  # the draft's order is on the platform (looked up); the claim is still held
    CREATED = "created"  # the create returned the order; the claim is still held
    INCONCLUSIVE = "inconclusive"  # a lookup proved nothing, so nothing was created; the claim is still held
    STILL_LANDING = "still_landing"  # absent so far, but a previous owner's create may land until `until`; held
    NOT_APPLIED = "not_applied"  # `error` surely changed nothing on the platform; the claim is still held
    UNCONFIRMED = "unconfirmed"  # a create may have landed and no lookup found it: the record is left unknown


class Step(Enum):
    LOOKUP = "lookup"  # before any create of this placement
    CREATE = "create"  # the create, or the lookup that settles an ambiguous one


@dataclass(frozen=True)
class Placement:
    """What came of one placement, and at which step."""

    result: PlacementResult
    step: Step
    order: Optional[BikOrder] = None  # FOUND, CREATED
    error: Optional[BridgeError] = None  # NOT_APPLIED
    until: float = 0.0  # STILL_LANDING: the store's clock
    reason: Optional[str] = None  # INCONCLUSIVE: why the lookup proved nothing


def search_from(key: str, now: float) -> Optional[float]:
    """The earliest unix time an order for this draft could have been made, less the clocks' margin.

    Bik's draft time bounds every create of the draft; without it nothing does (None). A record's first start
    is no bound: a record made again after the first was lost (or queued before any lookup) proves nothing
    about creates older than itself. `now` caps a draft time from a clock running ahead.
    """
    drafted = draft_created_at(key)
    return min(drafted, now) - CLOCK_MARGIN_SECONDS if drafted else None


def landing_ends_at(claim: Claim, budget_seconds: float) -> float:
    """By the store's clock, when a create sent by the record's previous owner can no longer land."""
    return (claim.previous or claim.record).started_at + budget_seconds


class DecisionLog:
    """Writes each placement decision to its caller's log and counts it through the metrics hook."""

    def __init__(self, log: logging.Logger, message: str, on_decision: Optional[Callable[[str], None]], *,
                 level: int = logging.INFO, routine: frozenset[str] = frozenset()):
        self.log = log
        self._message = message
        self._on_decision = on_decision
        self._level = level
        self._routine = routine  # written at DEBUG: the request's own line already says them

    def note(self, key: str, decision: str, order_id: Optional[str] = None) -> None:
        level = logging.DEBUG if decision in self._routine else self._level
        self.log.log(level, self._message, extra={"draftOrderId": key, "decision": decision, "orderId": order_id})
        if self._on_decision is not None:
            try:
                self._on_decision(decision)
            except Exception:  # counting must never change what came of a placement
                self.log.exception("decision hook failed", extra={"draftOrderId": key, "decision": decision})


class ExactlyOnce:
    """Places a claimed draft through one adapter and one idempotency store, at most one order per draft."""

    def __init__(self, adapter: PlatformAdapter, store: IdempotencyStore, decisions: DecisionLog, *,
                 budget_seconds: float, lookup_before_create: bool, queued: bool = False,
                 notes_releases: bool = True):
        self.adapter = adapter
        self.store = store
        self._decisions = decisions
        self._log = decisions.log
        self._budget_seconds = budget_seconds
        self._lookup_before_create = lookup_before_create
        self._extra = {"queued": True} if queued else {}
        # placeOrder counts a released claim (Bik's retry runs afresh); a queued draft just goes back to the queue.
        self._notes_releases = notes_releases

    def place(self, request: PlaceOrderRequest, claim: Claim, deadline: Deadline, *,
              before_takeover_create: Optional[Callable[[], None]] = None) -> Placement:
        """Look the draft up, then create it if that is proven safe; `before_takeover_create` may raise to stop."""
        key, fresh = request.draftOrderId, claim.outcome is ClaimOutcome.NEW
        if fresh and not self._lookup_before_create:
            return self._create(request, claim, deadline)
        # A fresh draft's create follows its lookup at once, most often: both take their slots of the quota together.
        deadline.pair_next_slot = fresh
        try:
            lookup = self.adapter.find_by_draft(key, request, deadline, search_from(key, claim.now))
        except BridgeError as exc:
            return Placement(PlacementResult.NOT_APPLIED, Step.LOOKUP, error=exc)
        except BaseException:
            self.let_go(claim, Step.LOOKUP)  # a read sends no order
            raise
        if lookup.result is LookupResult.FOUND:
            return Placement(PlacementResult.FOUND, Step.LOOKUP, order=lookup.order)
        if lookup.result is LookupResult.INCONCLUSIVE:
            self._decisions.note(key, "lookup_inconclusive")
            self._log.warning("lookup could not prove the order absent; not creating",
                              extra={"draftOrderId": key, "reason": lookup.reason, **self._extra})
            return Placement(PlacementResult.INCONCLUSIVE, Step.LOOKUP, reason=lookup.reason)
        if fresh:
            # No record, yet the store may have lost it a moment ago with a create of it still on its way: a lookup
            # proves absence only once a budget has passed since the store began holding records again. Read with
            # the claim, that is when the store last began holding them before this claim: a loss after it cannot
            # make a second owner of this draft, since any claim after the loss holds as this one would.
            began = claim.memory_began if claim.memory_began is not None else self.store.memory_began()
            until = began + self._budget_seconds
            if claim.now < until:
                self._decisions.note(key, "held_after_records_lost")
                return Placement(PlacementResult.STILL_LANDING, Step.LOOKUP, until=until)
        else:
            # The previous owner's create (in flight, or answered ambiguously) may still be landing; a lookup
            # proves absence only once that owner's whole budget has passed, by the store's clock.
            until = landing_ends_at(claim, self._budget_seconds)
            if claim.now < until:
                return Placement(PlacementResult.STILL_LANDING, Step.LOOKUP, until=until)
            if before_takeover_create is not None:
                before_takeover_create()
        return self._create(request, claim, deadline)

    def _create(self, request: PlaceOrderRequest, claim: Claim, deadline: Deadline) -> Placement:
        key = request.draftOrderId
        # Written before the create leaves, so the log shows it even if this process dies before the answer.
        self._log.info("sending the create", extra={"draftOrderId": key, **self._extra})
        try:
            order = self.adapter.place(request, deadline)
        except BridgeError as exc:
            if exc.maybe_applied:
                return self._settle_ambiguous(request, claim, deadline)
            # Never sent, or refused before or by the platform: a later placement may create.
            return Placement(PlacementResult.NOT_APPLIED, Step.CREATE, error=exc)
        except BaseException:
            # An unexpected failure may have followed a create: keep the record for lookup.
            self.mark_unknown(claim)
            raise
        return Placement(PlacementResult.CREATED, Step.CREATE, order=order)

    def _settle_ambiguous(self, request: PlaceOrderRequest, claim: Claim, deadline: Deadline) -> Placement:
        """A create that may have landed: look it up now if the budget allows, never re-send it."""
        key = request.draftOrderId
        lookup = None
        try:
            if deadline.remaining() > 1.0:
                # Only a find counts here (absence changes nothing), so the search may start at this claim.
                lookup = self.adapter.find_by_draft(key, request, deadline, search_from(key, claim.now))
        except BridgeError as exc:
            self._log.warning("lookup after an ambiguous create failed",
                              extra={"draftOrderId": key, "error": exc.message, **self._extra})
        if lookup is not None and lookup.result is LookupResult.FOUND:
            return Placement(PlacementResult.FOUND, Step.CREATE, order=lookup.order)
        self.mark_unknown(claim)
        self._decisions.note(key, "unknown")
        return Placement(PlacementResult.UNCONFIRMED, Step.CREATE)

    # the claim, given back ----------------------------------------------------------------------

    def let_go(self, claim: Claim, step: Step) -> None:
        """Give a claim up: released when nothing of it can be on the platform unseen, else left `unknown`."""
        if may_release(claim, step):
            self.release(claim.record.key, claim.token)
        else:
            # Before its create this owner sent none: the last create that may be landing is its predecessor's, so
            # the next owner waits out that one's budget, not a new one from this claim.
            self.mark_unknown(claim, sent_nothing=step is Step.LOOKUP)

    def release(self, key: str, token: str) -> None:
        self.give_back(key, token)
        if self._notes_releases:
            self._decisions.note(key, "released")

    def give_back(self, key: str, token: str) -> None:
        """Release a claim that sent nothing; while the store is away it expires with its lease instead."""
        try:
            self.store.release(key, token)
        except StoreUnavailable:
            self._log.error("could not release a claim; it expires with its lease", extra={"draftOrderId": key})

    def mark_unknown(self, claim: Claim, *, sent_nothing: bool = False) -> None:
        key = claim.record.key
        handed_back = claim.previous.started_at if sent_nothing and claim.previous is not None else None
        try:
            self.store.mark_unknown(key, claim.token, claim.record.fingerprint, handed_back)
        except StoreUnavailable:
            # The record stays in flight; after its lease a new owner looks the draft up anyway.
            self._log.error("could not mark a record unknown", extra={"draftOrderId": key})


def may_release(claim: Claim, step: Step) -> bool:
    """Whether a claim that placed nothing may be released rather than left `unknown`.

    After a create that surely changed nothing it may: its lookup had proved the draft absent, or none was due.
    Before any create it may only on a new claim: a taken-over record's earlier create may be on the platform.
    """
    return step is Step.CREATE or claim.outcome is ClaimOutcome.NEW
