"""The two ports of the core: the platform adapter and the idempotency store."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bridge.core.deadline import Deadline
    from bridge.core.models import BikOrder, PlaceOrderRequest
    from bridge.upstream.outbound import OutboundRequest


class PlatformAdapter(Protocol):
    """A store platform, spoken to in Bik's terms; platform JSON never leaves the adapter."""

    name: str

    def build_create(self, request: PlaceOrderRequest) -> list[OutboundRequest]:
        """The exact request(s) placing this order would send; pure, for dry-run."""

    def place(self, request: PlaceOrderRequest, deadline: Deadline) -> BikOrder:
        """Create the order upstream once; raises from `bridge.core.errors`, never re-sends an ambiguous create."""

    def get(self, order_id: str, deadline: Deadline) -> BikOrder:
        """The order's current state; `OrderNotFound` for unknown or foreign orders."""

    def find_by_draft(
        self, draft_order_id: str, request: PlaceOrderRequest | None, deadline: Deadline, since: float | None
    ) -> Lookup:
        """Search the platform for the order placed for a draft id.

        `since` is the earliest unix time the order could have been created (None: unknown); a search may
        answer `absent` only when it proves the order does not exist, else `inconclusive`.
        """

    def check_credentials(self, deadline: Deadline) -> str:
        """One read-only call with the configured credentials; a line saying what it reached."""

    def warm_up(self) -> None:
        """Prepare what the first call needs (connections to the bridge's own services); sends nothing upstream."""


class LookupResult(str, enum.Enum):
    FOUND = "found"  # the order carrying the draft id
    ABSENT = "absent"  # proven: no order carries the draft id
    INCONCLUSIVE = "inconclusive"  # the search ended (page bound, unknown start) before proving either


@dataclass(frozen=True)
class Lookup:
    """What a search for a draft's order proved."""

    result: LookupResult
    order: BikOrder | None = None
    reason: str = ""

    @classmethod
    def found(cls, order: BikOrder) -> "Lookup":
        return cls(LookupResult.FOUND, order)

    @classmethod
    def absent(cls) -> "Lookup":
        return cls(LookupResult.ABSENT)

    @classmethod
    def inconclusive(cls, reason: str) -> "Lookup":
        return cls(LookupResult.INCONCLUSIVE, reason=reason)


class RecordState(str, enum.Enum):
    IN_FLIGHT = "in_flight"  # an owner holds the lease and may be creating the order right now
    UNKNOWN = "unknown"  # a create may have reached the platform: look the draft up before any new create
    DONE = "done"  # the order exists; `response` is replayed byte for byte
    # Overflow placement (records that carry `request`): in_flight, unknown and done keep their meanings, plus:
    QUEUED = "queued"  # accepted and answered with the bridge's own id; nothing sent yet, the placer will place it
    REFUSED = "refused"  # the platform refused the queued order (or the merchant cancelled it): `reason` says why


@dataclass(frozen=True)
class IdempotencyRecord:
    """What the store keeps per draftOrderId."""

    key: str
    state: RecordState
    fingerprint: str  # "" until known: a claim made before its payload was read (`replay_or_claim`)
    token: str
    started_at: float  # unix seconds the current owner started; a create it sent ends by started_at + budget
    lease_until: float  # unix seconds; past it, another request may take the record over
    order_id: str | None = None
    response: bytes | None = None
    updated_at: float = 0.0
    created_at: float = 0.0  # unix seconds the first owner started: no create for this draft is older
    # Overflow placement only: the validated placeOrder to place later, when it was queued, the platform's order id
    # once placed (`order_id` stays the bridge's id Bik was given), and why the platform refused it.
    request: bytes | None = None
    enqueued_at: float = 0.0
    platform_order_id: str | None = None
    reason: str | None = None

    @property
    def queued(self) -> bool:
        """Whether this draft was accepted into the overflow queue: its answer is the bridge's, whatever its state."""
        return self.request is not None

    @property
    def first_started_at(self) -> float:
        """When the first owner started (records written before `created_at` existed: the current owner)."""
        return self.created_at or self.started_at


class ClaimOutcome(str, enum.Enum):
    NEW = "new"  # no record: the caller owns a fresh claim and may create
    TAKEOVER = "takeover"  # stale in-flight or unknown record: the caller owns it, but must look up first
    BUSY = "busy"  # another owner holds a live lease
    DONE = "done"  # completed, or accepted into the overflow queue: replay `record.response`


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    record: IdempotencyRecord
    token: str | None = None  # set when the caller owns the record (NEW, TAKEOVER)
    previous: IdempotencyRecord | None = None  # for TAKEOVER: the record as it was before
    now: float = 0.0  # the store's clock at the claim: the only clock a record's times are compared with
    # NEW only: what `memory_began` would answer, when the store could read it with the claim (else None: ask it).
    memory_began: float | None = None


@dataclass(frozen=True)
class Replay:
    """What a done record answers a byte-identical retry with, read without a claim."""

    order_id: str
    response: bytes


@dataclass(frozen=True)
class QueueStats:
    """The overflow queue at one moment, by the store's clock."""

    depth: int  # queued drafts not yet placed or refused
    oldest_enqueued_at: float | None  # when the oldest of them was queued; None when there are none
    now: float

    @property
    def oldest_age(self) -> float:
        """Seconds the oldest unplaced draft has waited; 0 when none waits."""
        return max(0.0, self.now - self.oldest_enqueued_at) if self.oldest_enqueued_at is not None else 0.0


class IdempotencyStore(Protocol):
    """Atomic per-draft records; every write by an owner is fenced by its token."""

    def claim(self, key: str, fingerprint: str, lease_seconds: float) -> Claim:
        """Atomically create, take over, or report the record for `key`, with the store's `now`."""

    def complete(self, key: str, token: str, order_id: str, response: bytes, body_digest: str = "",
                 fingerprint: str = "") -> bool:
        """Mark done with the response to replay, and the digest of the request body that placed it (if given);
        False when `token` no longer owns the record. `fingerprint` is recorded if the record has none yet."""

    def replay(self, key: str, body_digest: str) -> Replay | None:
        """The answer of a done record whose placing request's body had `body_digest`; None otherwise."""

    def replay_or_claim(self, key: str, body_digest: str, lease_seconds: float) -> Replay | Claim | None:
        """`replay`'s answer; else, from a store where that saves a round trip, a NEW claim of a draft without record,
        made before its payload is read (so with no fingerprint yet); else None: validate, then `claim`."""

    def mark_unknown(self, key: str, token: str, fingerprint: str = "", started_at: float | None = None) -> bool:
        """Keep the record but drop the lease: a create may have landed and must be looked up. `fingerprint` is
        recorded if the record has none yet; `started_at`, when given, becomes the record's start again (an owner
        that sent nothing hands back the start of the last one that may have)."""

    def release(self, key: str, token: str) -> bool:
        """Nothing reached the platform: delete the record, or put a queued draft back in the queue."""

    def get(self, key: str) -> IdempotencyRecord | None:
        """The record for `key`, or None."""

    def unsettled(self, older_than: float) -> list[IdempotencyRecord]:
        """Unknown records, and in-flight ones past their lease, untouched for `older_than` s by the store's clock."""

    # overflow placement ---------------------------------------------------------------------

    def enqueue(self, key: str, token: str, request: bytes, order_id: str, response: bytes,
                fingerprint: str = "") -> bool:
        """Turn the owner's in-flight claim into a queued draft answered with `response`; False without the token.
        `fingerprint` is recorded if the record has none yet."""

    def queued(self, limit: int) -> list[IdempotencyRecord]:
        """Queued drafts awaiting placement, oldest first: queued, unknown, and in flight past their lease."""

    def queue_stats(self) -> QueueStats:
        """How many queued drafts are not settled yet, and when the oldest of them was queued."""

    def claim_queued(self, key: str, lease_seconds: float) -> Claim | None:
        """Own a queued draft to place it: NEW from `queued`, TAKEOVER from unknown or a lapsed lease; else None."""

    def complete_queued(self, key: str, token: str, platform_order_id: str) -> bool:
        """Mark a queued draft placed as `platform_order_id`, keeping the answer Bik was given; fenced by `token`."""

    def refuse(self, key: str, token: str, reason: str) -> bool:
        """Mark a queued draft refused by the platform, with its reason; fenced by `token`."""

    def refused(self, limit: int) -> list[IdempotencyRecord]:
        """Refused (or cancelled) queued drafts, oldest first."""

    def requeue(self, key: str) -> bool:
        """Put a refused draft back in the queue (the merchant fixed the cause); False unless it was refused."""

    def cancel_queued(self, key: str, reason: str) -> bool:
        """Refuse a draft still waiting in the queue (state `queued`, nothing sent); False otherwise."""

    def take_placer_lease(self, holder: str, seconds: float) -> bool:
        """Take, or renew, the one lease that lets `holder` run the placer for this namespace."""

    def drop_placer_lease(self, holder: str) -> None:
        """Give the placer lease up if `holder` has it."""

    def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store answers."""

    def memory_began(self) -> float:
        """When, by the store's clock, it began to hold its records: 0.0 when from before this bridge started, else
        the first moment it was found without them (a Redis restarted empty or flushed)."""

    def warm_up(self, first_start: bool = True) -> None:
        """Connect and load what the first claim needs; raise `StoreUnavailable` unless the store answers.

        `first_start`: this process starts with its instance, so no create of this bridge can be on its way from
        before (a worker replacing one that died cannot say that of its siblings)."""

    def close(self) -> None:
        """Release connections."""
