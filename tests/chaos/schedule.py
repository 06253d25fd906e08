"""The seeded fault schedule: what the fake store does to each request, and when processes are killed.

Every choice comes from `random.Random` streams derived from the seed, one per kind of decision, so a
seed always yields the same sequence of faults; which request meets which fault still depends on the
order requests arrive in.
"""
from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from flask import Response, request

from tests.chaos.journal import Journal
from tests.chaos.platforms import Platform
from tests.chaos.profile import Profile
from tests.fakes.server import (
    ErrorResponse,
    Fault,
    FaultScript,
    apply_then_delay,
    apply_then_status,
    delay_then_apply,
    drop_connection,
    json_error,
    status,
    status_then_apply_later,
)

# Any 5xx: the platform's own, and those a CDN in front of it answers (520-526, 530) with an HTML page.
SERVER_ERRORS = (500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511, 520, 521, 522, 523, 524, 525, 526, 530, 599)
CDN_ERRORS = frozenset({520, 521, 522, 523, 524, 525, 526, 530})

CREATE_THEN_TIMEOUT = "create, then stall past the read timeout"
CREATE_THEN_5XX = "create, then answer 5xx"
FIVE_XX_WITHOUT_CREATE = "5xx without create"
CREATE_AFTER_5XX = "answer 5xx, create seconds later"
CREATE_THEN_DROP = "create, then drop the connection"
LATENCY = "latency, then create"
CREATE_FAULTS = (CREATE_THEN_TIMEOUT, CREATE_THEN_5XX, FIVE_XX_WITHOUT_CREATE, CREATE_AFTER_5XX, CREATE_THEN_DROP,
                 LATENCY)
READ_5XX = "read: 5xx"
READ_LATENCY = "read: latency"
DROPPED_UNREAD = "dropped before reading"
STORM_429 = "requests answered 429 in a storm"


def _error_body(code: int) -> Optional[str]:
    """A CDN's HTML page for its own codes; None lets the fake answer in the platform's error shape."""
    if code in CDN_ERRORS:
        return f"<html><head><title>{code}</title></head><body><h1>Error {code}</h1>origin error</body></html>"
    return None


class ChaosScript(FaultScript):
    """A fault script that, while on, draws a fault for each request from the seed; scripted faults go first."""

    def __init__(self, profile: Profile, platform: Platform, journal: Journal, read_timeout: float) -> None:
        super().__init__()
        self.profile = profile
        self.platform = platform
        self.journal = journal
        self.read_timeout = read_timeout
        self.quota = profile.quota or platform.quota  # what a storm's reset headers announce
        self.on = False
        self._draw = threading.Lock()
        self._creates = random.Random(f"{profile.seed}:{platform.name}:create")
        self._reads = random.Random(f"{profile.seed}:{platform.name}:read")
        self._gate = random.Random(f"{profile.seed}:{platform.name}:gate")
        self._plan = self._create_plan()
        self._storm_until = 0.0
        self._storm_headers = True
        # The 5xx codes answered, per fault name.
        self.codes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        # When the last create the store delays on its own (late, slow) has surely landed.
        self.quiet_at = 0.0

    def _create_plan(self) -> list[Optional[str]]:
        """Which fault the n-th create meets; every kind appears among the first third of the drafts."""
        rng = self._creates
        plan = [rng.choice(CREATE_FAULTS) if rng.random() < self.profile.create_fault_rate else None
                for _ in range(self.profile.drafts * 6)]
        early = max(len(CREATE_FAULTS), self.profile.drafts // 3)
        for kind in CREATE_FAULTS:
            if kind not in plan[:early]:
                # A free spot, or one whose kind also appears elsewhere early, so no kind placed before is lost.
                spots = [i for i in range(early) if plan[i] is None or plan[:early].count(plan[i]) > 1]
                plan[rng.choice(spots)] = kind
        return plan

    # the store's side -------------------------------------------------------------------

    def storm(self, seconds: float, with_headers: bool) -> None:
        """Answer every request 429 for `seconds`, with the platform's reset headers or without (load shedding)."""
        with self._draw:
            self._storm_until = time.monotonic() + seconds
            self._storm_headers = with_headers

    def gate(self, environ: dict) -> bool:
        """FakeServer's gate: drop some connections before reading anything."""
        if not self.on:
            return False
        with self._draw:
            drop = self._gate.random() < self.profile.drop_before_rate
        if drop:
            kind = "create" if environ.get("REQUEST_METHOD") == "POST" else "read"
            self.journal.fault(f"{kind}: {DROPPED_UNREAD}")
        return drop

    def run(self, operation: str, apply: Callable[[], Response],
            error_response: ErrorResponse = json_error) -> Response:
        fault = self.pop(operation)
        draft = None
        if operation == "create":
            draft = self.platform.draft_of(request.get_json(silent=True))
            apply = self._journaled(apply, draft)
        if fault is None and self.on:
            fault = self._choose(operation, draft)
        if fault is None:
            return apply()
        return fault.run(apply, error_response)

    def _journaled(self, apply: Callable[[], Response], draft: Optional[str]) -> Callable[[], Response]:
        def applied() -> Response:
            response = apply()
            if response.status_code < 300:
                self.journal.add("store: order created", draft)
            return response
        return applied

    def _choose(self, operation: str, draft: Optional[str]) -> Optional[Fault]:
        with self._draw:
            left = self._storm_until - time.monotonic()
            if left > 0:
                headers = self.platform.storm_headers(left, self.quota) if self._storm_headers else None
                self.journal.fault(STORM_429, draft, f"{operation}, {'with' if headers else 'without'} reset headers")
                return status(429, headers=headers)
            if operation == "create":
                return self._create_fault(draft)
            return self._read_fault(operation)

    def _create_fault(self, draft: Optional[str]) -> Optional[Fault]:
        kind = self._plan.pop(0) if self._plan else None
        if kind is None:
            return None
        rng = self._creates
        code = rng.choice(SERVER_ERRORS)
        if kind == CREATE_THEN_TIMEOUT:
            seconds = self.read_timeout + rng.uniform(0.5, 2.0)
            fault, detail = apply_then_delay(seconds), f"stalls {seconds:.1f}s"
        elif kind == CREATE_THEN_5XX:
            fault, detail = apply_then_status(code, _error_body(code)), f"{code}"
        elif kind == FIVE_XX_WITHOUT_CREATE:
            fault, detail = status(code, _error_body(code)), f"{code}"
        elif kind == CREATE_AFTER_5XX:
            seconds = rng.uniform(1.0, 4.0)
            fault = status_then_apply_later(code, seconds, _error_body(code))
            detail = f"{code}, lands {seconds:.1f}s later"
        elif kind == CREATE_THEN_DROP:
            fault, detail = drop_connection(apply_first=True), ""
        else:
            seconds = rng.uniform(0.2, 3.0)
            fault, detail = delay_then_apply(seconds), f"{seconds:.1f}s"
        if kind in (CREATE_AFTER_5XX, LATENCY):
            self.quiet_at = max(self.quiet_at, time.monotonic() + seconds + 0.5)
        self.journal.fault(f"create: {kind}", draft, detail)
        if kind in (CREATE_THEN_5XX, FIVE_XX_WITHOUT_CREATE, CREATE_AFTER_5XX):
            self.codes[f"create: {kind}"][code] += 1
        return fault

    def _read_fault(self, operation: str) -> Optional[Fault]:
        rng = self._reads
        if rng.random() >= self.profile.read_fault_rate:
            return None
        if rng.random() < 0.6:
            code = rng.choice(SERVER_ERRORS)
            self.journal.fault(READ_5XX, None, f"{operation} {code}")
            self.codes[READ_5XX][code] += 1
            return status(code, _error_body(code))
        seconds = rng.uniform(0.2, 2.0)
        self.journal.fault(READ_LATENCY, None, f"{operation} {seconds:.1f}s")
        return delay_then_apply(seconds)


# the processes' side -------------------------------------------------------------------

KILL_WORKER = "kill -9 a gunicorn worker"
RESTART_INSTANCE = "restart an instance (kill -9 its master and workers)"
REDIS_EMPTY = "restart Redis empty (no persistence: records lost)"
REDIS_AOF = "restart Redis with AOF (fsync always: records kept)"
RESTART_ALL = "stop every instance (kill -9) and start them again mid-queue"
STORM = "429 storm"


@dataclass(frozen=True, order=True)
class Event:
    """One process-level fault, `at` seconds into the fault window."""

    at: float
    action: str = field(compare=False)
    instance: int = field(default=0, compare=False)
    pick: float = field(default=0.0, compare=False)  # which worker, as a fraction of the live ones
    seconds: float = field(default=0.0, compare=False)  # downtime, or storm length
    with_headers: bool = field(default=True, compare=False)


def timeline(profile: Profile, platform: str) -> list[Event]:
    """The run's process events, in time order; early enough in a short run that every draft can still settle."""
    rng = random.Random(f"{profile.seed}:{platform}:timeline")
    span = profile.duration
    late = 0.6 if profile.short else 0.85
    # A queued order lives only in the idempotency store until it is placed: the overflow profile's Redis keeps
    # its AOF from the start and is never restarted empty.
    first_redis = REDIS_AOF if profile.overflow else REDIS_EMPTY
    events = [
        Event(rng.uniform(0.15, 0.3) * span, first_redis, seconds=rng.uniform(0.3, 1.5)),
        Event(rng.uniform(0.3, 0.5) * span, RESTART_INSTANCE, instance=rng.randrange(2)),
        Event(rng.uniform(0.55, 0.7) * span, REDIS_AOF, seconds=rng.uniform(0.3, 1.5)),
    ]
    if profile.overflow:
        # Late enough that the small quota has left a queue behind, early enough that faults still follow.
        events.append(Event(rng.uniform(0.5, 0.75) * span, RESTART_ALL))
    for _ in range(profile.worker_kills):
        events.append(Event(rng.uniform(0.05, late) * span, KILL_WORKER, instance=rng.randrange(2), pick=rng.random()))
    for index in range(profile.storms):
        events.append(Event(rng.uniform(0.1, 0.8) * span, STORM, seconds=rng.uniform(1.0, 3.0),
                            with_headers=index % 2 == 0))
    return sorted(events)
