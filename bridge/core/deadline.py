"""The time budget of one Bik request, shared by every upstream call made for it."""
from __future__ import annotations

import time
from typing import Callable, Optional


class Deadline:
    """A time budget shared by every upstream call made for one Bik request."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic, *,
                 quota_patience: Optional[float] = None):
        self._clock = clock
        self._end = clock() + seconds
        # How long one call on this budget may wait for a slot of the platform's quota; None: as configured.
        # A placeOrder that can be queued instead (placement: overflow) is better answered at once than held.
        self.quota_patience = quota_patience
        # Set by a caller whose next two requests go together (a fresh draft's lookup, then its create): the next
        # slot taken on this budget takes the following request's too when one is free (`hold_slot`).
        self.pair_next_slot = False
        self._held_until: Optional[float] = None

    def now(self) -> float:
        """The time on this budget's clock."""
        return self._clock()

    def hold_slot(self, taken_at: float, seconds: float) -> None:
        """Keep a slot of the quota, taken at `taken_at` (this budget's clock), for a request sent within `seconds`."""
        self._held_until = taken_at + seconds

    def use_held_slot(self) -> bool:
        """Whether a slot taken ahead is still there for the request about to be sent; it is used up if so."""
        held, self._held_until = self._held_until, None
        return held is not None and self._clock() < held

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())
