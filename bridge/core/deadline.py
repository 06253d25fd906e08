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

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())
