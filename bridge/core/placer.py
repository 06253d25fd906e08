"""The overflow placer: places queued drafts oldest first, within the store's quota, exactly once.

Every `serve` worker runs one placer in the background; a lease in the idempotency store lets one of them, across
workers and instances, place at a time. Each draft is placed by the steps of direct placement (`ExactlyOnce`): the
placer owns it by a claim fenced with a token, looks the draft up before creating, never re-sends a create that may
have landed (the draft becomes `unknown` and is looked up again), and never creates after a lookup that proved
nothing.

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

from pydantic import ValidationError

from bridge.core.deadline import Deadline
from bridge.core.errors import OrderRejected, RateLimited, StoreUnavailable
from bridge.core.models import PlaceOrderRequest
from bridge.core.overflow import short_reason
from bridge.core.placement import FRESH_DRAFT_REQUESTS, DecisionLog, ExactlyOnce, PlacementResult, Step
from bridge.core.ports import Claim, IdempotencyStore, PlatformAdapter

log = logging.getLogger("bik_bridge.placer")

# The share of each quota window the placer leaves to Bik's own requests (placeOrder, getOrder): enough for a few
# status reads and direct orders per window, small enough that a queue drains within 5% of the quota's pace.
DIRECT_SHARE = 0.05
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
        decisions = DecisionLog(log, "placer decision", on_decision, level=logging.DEBUG)
        self._note_decision = decisions.note
        self._steps = ExactlyOnce(adapter, store, decisions, budget_seconds=settings.upstream_budget_seconds,
                                  lookup_before_create=settings.lookup_before_create, queued=True,
                                  notes_releases=False)
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
        cost = FRESH_DRAFT_REQUESTS if self.settings.lookup_before_create else 1
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
        deadline = self._deadline()  # started before the claim, as every owner's budget is
        claim = self.store.claim_queued(key, self.settings.lease_seconds)
        if claim is None:
            return "skipped"  # placed, refused, cancelled or owned by someone else since it was listed
        try:
            request = PlaceOrderRequest.model_validate_json(claim.record.request)
        except ValidationError:
            # Kept by an earlier version whose checks were looser: nothing was ever sent for it, so refusing it
            # leaves no order behind, and the merchant sees why in `bik-bridge queue list`.
            return self._refuse(claim, OrderRejected("the queued order could not be read by this version"))
        placement = self._steps.place(request, claim, deadline)
        result = placement.result
        if result is PlacementResult.FOUND:
            return self._placed(claim, placement.order.id, "recovered")
        if result is PlacementResult.CREATED:
            return self._placed(claim, placement.order.id, "placed")
        if result is PlacementResult.INCONCLUSIVE:
            self._steps.let_go(claim, placement.step)
            return self._retry_later(key)
        if result is PlacementResult.STILL_LANDING:
            # Held by this claim's lease, taken over after it.
            self._later[key] = self._clock() + (placement.until - claim.now)
            return "deferred"
        if result is PlacementResult.UNCONFIRMED:
            self._later[key] = self._clock() + self.settings.upstream_budget_seconds
            return "unknown"
        error = placement.error
        if placement.step is Step.CREATE and isinstance(error, OrderRejected):
            return self._refuse(claim, error)
        # Back to `queued` when nothing of it can be on the platform, else `unknown`: looked up again later.
        self._steps.let_go(claim, placement.step)
        log.warning("queued draft: lookup failed; kept" if placement.step is Step.LOOKUP
                    else "queued draft: create not sent; kept", extra={"draftOrderId": key, "error": error.message})
        return "quota" if isinstance(error, RateLimited) else self._retry_later(key)

    def _refuse(self, claim: Claim, error: OrderRejected) -> str:
        key, reason = claim.record.key, short_reason(error.message)
        self.store.refuse(key, claim.token, reason)
        self._note_decision(key, "refused_from_queue")
        # The customer was told ORDERED: the merchant must reach them.
        log.warning("queued order refused by the store; the customer must be told",
                    extra={"draftOrderId": key, "orderId": claim.record.order_id, "reason": reason})
        return "refused"

    def _placed(self, claim: Claim, platform_order_id: str, how: str) -> str:
        key = claim.record.key
        if not self.store.complete_queued(key, claim.token, platform_order_id):
            log.warning("queued draft was taken over before completion", extra={"draftOrderId": key})
        self._note_decision(key, "placed_from_queue", platform_order_id)
        log.info("queued order placed", extra={"draftOrderId": key, "orderId": claim.record.order_id,
                                               "platformOrderId": platform_order_id, "how": how})
        return "placed"

    def _retry_later(self, key: str) -> str:
        self._later[key] = self._clock() + RETRY_LATER_SECONDS
        return "kept"
