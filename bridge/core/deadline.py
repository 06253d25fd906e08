"""The time budget of one Bik request, shared by every upstream call made for it."""
from __future__ import annotations

import time
from typing import Callable


class Deadline:
    """A time budget shared by every upstream call made for one Bik request."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())
