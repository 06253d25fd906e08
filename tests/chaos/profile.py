"""How big and how rough a run is: the knobs on the command line and the figures derived from them."""
from __future__ import annotations

from dataclasses import dataclass

PLATFORMS = ("bigcommerce", "bitbybit")


@dataclass(frozen=True)
class Profile:
    """One platform's run: its seed, how many drafts over how many seconds of faults, and how rough."""

    seed: int
    platform: str
    duration: float = 60.0
    drafts: int = 300
    short: bool = False

    @classmethod
    def short_one(cls, seed: int, platform: str) -> "Profile":
        """The CI profile: a few dozen drafts, every kind of fault at least once, both platforms within 90 s."""
        return cls(seed=seed, platform=platform, duration=14.0, drafts=36, short=True)

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
