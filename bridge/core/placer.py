"""The overflow placer: places queued drafts oldest first, within the store's quota, exactly once.

Every `serve` worker runs one placer in the background; a lease in the idempotency store lets one of them, across
workers and instances, place at a time. Each draft is placed under the rules of direct placement: the placer owns
it by a claim fenced with a token, looks the draft up before creating, never re-sends a create that may have
landed (the draft becomes `unknown` and is looked up again), and never creates after a lookup that proved nothing.

Bik's own requests come first: the placer takes a draft only when the quota has room for its requests now, beyond
`DIRECT_SHARE` of the window, which stays free for placeOrder and getOrder calls.
"""
from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from bridge.core.deadline import Deadline
from bridge.core.drafts import CLOCK_MARGIN_SECONDS, draft_created_at
from bridge.core.errors import BridgeError, OrderRejected, RateLimited, StoreUnavailable
from bridge.core.models import PlaceOrderRequest
from bridge.core.overflow import short_reason
from bridge.core.ports import Claim, ClaimOutcome, IdempotencyStore, LookupResult, PlatformAdapter

log = logging.getLogger("bik_bridge.placer")

# The share of each quota window the placer leaves to Bik's own requests (placeOrder, getOrder).
DIRECT_SHARE = 0.2
# A draft the placer could not settle (a lookup that proved nothing, a store that refused the credentials) waits
# this long before it is tried again, so one stuck draft does not spend the quota meant for the others.
RETRY_LATER_SECONDS = 30.0
# How long the placer rests when the queue is empty, or the quota has no room for it, before it looks again.
IDLE_SECONDS = 1.0
QUOTA_POLL_SECONDS = 0.25
BATCH = 50

# room() -> (free slots now, the quota they count in), or None when the platform announced no quota.
Room = Callable[[], Optional[tuple[int, int]]]


@dataclass(frozen=True)
class PlacerSettings:
    """The placer's knobs, taken from the config by the composition root."""

    lease_seconds: float = 25.0  # a draft's claim: the upstream budget plus the lease grace
    upstream_budget_seconds: float = 20.0
    lookup_before_create: bool = True

    @property
    def placer_lease_seconds(self) -> float:
        """The placer's own lease: renewed before each draft, so it outlasts one draft's placement."""
        return self.lease_seconds + 10.0


def room_leaves_direct_share(room: Optional[tuple[int, int]], cost: int) -> bool:
    """Whether `cost` more requests fit now and still leave `DIRECT_SHARE` of the quota free."""
    if room is None:
        return True  # unmetered, or not announced yet: the gate paces the first requests itself
    free, quota = room
    return free - cost >= math.ceil(quota * DIRECT_SHARE)


class Placer:
    """Places queued drafts through one adapter and one idempotency store."""

    def __init__(self, adapter: PlatformAdapter, store: IdempotencyStore, settings: PlacerSettings, *,
                 room: Optional[Room] = None, clock: Callable[[], float] = time.monotonic,
                 deadline: Optional[Callable[[], Deadline]] = None,
                 on_decision: Optional[Callable[[str], None]] = None, holder: Optional[str] = None):
        self.adapter = adapter
        self.store = store
        self.settings = settings
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._room = room or (lambda: None)
        self._clock = clock
        self._deadline = deadline or (lambda: Deadline(settings.upstream_budget_seconds))
        self._on_decision = on_decision
        self._later: dict[str, float] = {}  # draft -> this clock's moment it may be tried again
        self._stop = threading.Event()
        self._alive: Callable[[], bool] = lambda: True
        self._thread: Optional[threading.Thread] = None

    # running in the background --------------------------------------------------------------

    def start(self, alive: Optional[Callable[[], bool]] = None) -> None:
        """Run in a daemon thread (a greenlet under gevent) until `stop`, or until `alive()` turns false."""
        self._stop.clear()
        self._alive = alive or (lambda: True)
        self._thread = threading.Thread(target=self.run, name="bik-bridge-placer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Finish the draft in hand, give the lease up and return; at most `timeout` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Place until stopped: a pass whenever there is work and room, a rest otherwise."""
        log.info("placer started", extra={"holder": self.holder})
        while self._running():
            try:
                rest = self.step()
            except Exception:  # the next pass tries again; a placer that died would strand the queue
                log.exception("placer pass failed")
                rest = IDLE_SECONDS
            if rest and self._running():
                self._stop.wait(rest)
        try:
            self.store.drop_placer_lease(self.holder)
        except StoreUnavailable:
            pass  # it lapses on its own
        log.info("placer stopped", extra={"holder": self.holder})

    def step(self) -> float:
        """One pass over the queue, oldest first; the seconds to rest before the next (0: go on at once)."""
        if not self.store.take_placer_lease(self.holder, self.settings.placer_lease_seconds):
            return IDLE_SECONDS
        now = self._clock()
        self._later = {key: at for key, at in self._later.items() if at > now}
        waiting = [record for record in self.store.queued(BATCH) if record.key not in self._later]
        if not waiting:
            return IDLE_SECONDS
        cost = 2 if self.settings.lookup_before_create else 1
        for record in waiting:
            if not self._running():
                return 0.0
            if not room_leaves_direct_share(self._room(), cost):
                return QUOTA_POLL_SECONDS
            if self.place(record.key) == "quota":
                return QUOTA_POLL_SECONDS
            if not self.store.take_placer_lease(self.holder, self.settings.placer_lease_seconds):
                return IDLE_SECONDS  # another placer has it now
        return 0.0

    def _running(self) -> bool:
        return not self._stop.is_set() and self._alive()

    # one draft ------------------------------------------------------------------------------

    def place(self, key: str) -> str:
        """Place one queued draft if it is still waiting; what came of it."""
        claim = self.store.claim_queued(key, self.settings.lease_seconds)
        if claim is None:
            return "skipped"  # placed, refused, cancelled or owned by someone else since it was listed
        request = PlaceOrderRequest.model_validate_json(claim.record.request)
        deadline = self._deadline()
        fresh = claim.outcome is ClaimOutcome.NEW
        if fresh and not self.settings.lookup_before_create:
            return self._create(request, claim, deadline)
        try:
            lookup = self.adapter.find_by_draft(key, request, deadline, self._search_from(claim))
        except BridgeError as exc:
            self._keep(claim)
            log.warning("queued draft: lookup failed; kept", extra={"draftOrderId": key, "error": exc.message})
            return "quota" if isinstance(exc, RateLimited) else self._retry_later(key)
        if lookup.result is LookupResult.FOUND:
            return self._placed(claim, lookup.order.id, "recovered")
        if lookup.result is LookupResult.INCONCLUSIVE:
            self._keep(claim)
            self._decide(key, "lookup_inconclusive")
            log.warning("queued draft: lookup could not prove the order absent; not creating",
                        extra={"draftOrderId": key, "reason": lookup.reason})
            return self._retry_later(key)
        if not fresh:
            # A create of an earlier placement may still land until that placement's budget has passed.
            settled_at = claim.previous.started_at + self.settings.upstream_budget_seconds
            if claim.now < settled_at:
                self._later[key] = self._clock() + (settled_at - claim.now)
                return "deferred"  # held by this claim's lease, taken over after it
        return self._create(request, claim, deadline)

    def _create(self, request: PlaceOrderRequest, claim: Claim, deadline: Deadline) -> str:
        key, token = request.draftOrderId, claim.token
        log.info("sending the create", extra={"draftOrderId": key, "queued": True})
        try:
            order = self.adapter.place(request, deadline)
        except OrderRejected as exc:
            reason = short_reason(exc.message)
            self.store.refuse(key, token, reason)
            self._decide(key, "refused_from_queue")
            # The customer was told ORDERED: the merchant must reach them.
            log.warning("queued order refused by the store; the customer must be told",
                        extra={"draftOrderId": key, "orderId": claim.record.order_id, "reason": reason})
            return "refused"
        except BridgeError as exc:
            if exc.maybe_applied:
                return self._settle_ambiguous(request, claim, deadline)
            self.store.release(key, token)  # nothing was applied: back in the queue
            log.warning("queued draft: create not sent; kept", extra={"draftOrderId": key, "error": exc.message})
            return "quota" if isinstance(exc, RateLimited) else self._retry_later(key)
        except BaseException:
            self.store.mark_unknown(key, token)
            raise
        return self._placed(claim, order.id, "placed")

    def _settle_ambiguous(self, request: PlaceOrderRequest, claim: Claim, deadline: Deadline) -> str:
        key = request.draftOrderId
        try:
            if deadline.remaining() > 1.0:
                lookup = self.adapter.find_by_draft(key, request, deadline, self._search_from(claim))
                if lookup.result is LookupResult.FOUND:
                    return self._placed(claim, lookup.order.id, "recovered")
        except BridgeError as exc:
            log.warning("lookup after an ambiguous create failed", extra={"draftOrderId": key, "error": exc.message})
        self.store.mark_unknown(key, claim.token)
        self._decide(key, "unknown")
        self._later[key] = self._clock() + self.settings.upstream_budget_seconds
        return "unknown"

    def _placed(self, claim: Claim, platform_order_id: str, how: str) -> str:
        key = claim.record.key
        if not self.store.complete_queued(key, claim.token, platform_order_id):
            log.warning("queued draft was taken over before completion", extra={"draftOrderId": key})
        self._decide(key, "placed_from_queue", platform_order_id)
        log.info("queued order placed", extra={"draftOrderId": key, "orderId": claim.record.order_id,
                                               "platformOrderId": platform_order_id, "how": how})
        return "placed"

    def _keep(self, claim: Claim) -> None:
        """Leave a draft for a later pass: back to `queued` if nothing was ever sent for it, else `unknown`."""
        if claim.outcome is ClaimOutcome.NEW:
            self.store.release(claim.record.key, claim.token)
        else:
            self.store.mark_unknown(claim.record.key, claim.token)

    def _retry_later(self, key: str) -> str:
        self._later[key] = self._clock() + RETRY_LATER_SECONDS
        return "kept"

    @staticmethod
    def _search_from(claim: Claim) -> float:
        """No order for the draft is older than Bik's draft time or the record's first start, less the margin."""
        moments = [t for t in (draft_created_at(claim.record.key), claim.record.first_started_at) if t]
        return min(*moments, claim.now) - CLOCK_MARGIN_SECONDS

    def _decide(self, key: str, decision: str, order_id: Optional[str] = None) -> None:
        log.debug("placer decision", extra={"draftOrderId": key, "decision": decision, "orderId": order_id})
        if self._on_decision is not None:
            try:
                self._on_decision(decision)
            except Exception:  # counting must never stop the placer
                log.exception("decision hook failed", extra={"draftOrderId": key, "decision": decision})
