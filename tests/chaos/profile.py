"""How big and how rough a run is: the knobs on the command line and the figures derived from them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

PLATFORMS = ("bigcommerce", "bitbybit")
STANDARD = "standard"
OVERFLOW = "overflow"
PROFILES = (STANDARD, OVERFLOW)
# The overflow profile's store announces a quota far below what the drafts need, so most of them queue: requests
# per window of seconds. The window is BigCommerce's 30 s: longer than `upstream.rate_limit_wait_cap_seconds`, so
# a request that meets a spent window is queued at once rather than waiting for room.
OVERFLOW_QUOTA = (100, 30.0)
OVERFLOW_QUOTA_SHORT = (40, 30.0)


@dataclass(frozen=True)
class Profile:
    """One platform's run: its seed, how many drafts over how many seconds of faults, and how rough."""

    seed: int
    platform: str
    duration: float = 60.0
    drafts: int = 300
    short: bool = False
    kind: str = STANDARD

    @classmethod
    def short_one(cls, seed: int, platform: str, kind: str = STANDARD) -> "Profile":
        """The CI profile: a few dozen drafts, every kind of fault at least once, both platforms within 90 s."""
        return cls(seed=seed, platform=platform, duration=14.0, drafts=36, short=True, kind=kind)

    @property
    def overflow(self) -> bool:
        """The bridge runs `placement: overflow` against a store whose small quota makes orders queue."""
        return self.kind == OVERFLOW

    @property
    def quota(self) -> Optional[tuple[int, float]]:
        """The quota the fake store announces and enforces, or None for the platform's near-unlimited default."""
        if not self.overflow:
            return None
        return OVERFLOW_QUOTA_SHORT if self.short else OVERFLOW_QUOTA

    # What the fake does to each request while faults are on.
    @property
    def create_fault_rate(self) -> float:
        return 0.35

    @property
    def read_fault_rate(self) -> float:
        return 0.08

    @property
    def drop_before_rate(self) -> float:
        return 0.03

    # Process events over the fault window.
    @property
    def worker_kills(self) -> int:
        return 2 if self.short else max(3, int(self.duration // 10))

    @property
    def storms(self) -> int:
        return 1 if self.short else max(2, int(self.duration // 25))

    @property
    def duplicate_rate(self) -> float:
        """The share of drafts Bik sends twice at once, one copy to each instance."""
        return 0.2

    @property
    def launch_window(self) -> float:
        """Drafts start within this part of the fault window, so the last ones still meet faults."""
        return self.duration * 0.8

    @property
    def settle_seconds(self) -> float:
        """How long the final retries may take, once faults stop, before an unsettled draft is a breach."""
        return 40.0 if self.short else 75.0

    @property
    def drain_seconds(self) -> float:
        """Overflow: how long the queue may take to drain once faults stop: its arithmetic at the quota, doubled."""
        if self.quota is None:
            return 0.0
        requests, window = self.quota
        # Two requests per order (the lookup, the create) and a third for retries, from a queue that may hold every
        # draft; then a few windows of slack. A drain that stalls ends sooner (drain_stall_seconds).
        return 3 * self.drafts * window / requests + 6 * window

    @property
    def drain_stall_seconds(self) -> float:
        """Overflow: the drain gives up early once no order was placed for this long (a stuck queue)."""
        _, window = self.quota or (0, 0.0)
        return 3 * window + 25.0
