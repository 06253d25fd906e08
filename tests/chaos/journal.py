"""What happened during a run, in time order: faults, creates, answers and process events, per draft where known."""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Entry:
    """One thing that happened `at` seconds into the run; `draft` is None for events that concern every draft."""

    at: float
    what: str
    draft: Optional[str] = None
    detail: str = ""

    def line(self) -> str:
        return f"{self.at:7.2f}s  {self.what}" + (f"  {self.detail}" if self.detail else "")


class Journal:
    """A thread-safe log of entries plus a count of every fault injected, by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._entries: list[Entry] = []
        self._faults: collections.Counter = collections.Counter()

    def now(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self._start

    def add(self, what: str, draft: Optional[str] = None, detail: str = "") -> None:
        entry = Entry(self.now(), what, draft, detail)
        with self._lock:
            self._entries.append(entry)

    def fault(self, name: str, draft: Optional[str] = None, detail: str = "") -> None:
        """Count one injected fault and note it."""
        with self._lock:
            self._faults[name] += 1
        self.add(f"fault: {name}", draft, detail)

    @property
    def faults(self) -> collections.Counter:
        with self._lock:
            return collections.Counter(self._faults)

    def entries(self) -> list[Entry]:
        """Every entry so far, in time order."""
        with self._lock:
            return list(self._entries)

    def about(self, draft: str, margin: float = 2.0) -> list[Entry]:
        """Every entry of one draft, and the run-wide events from its first entry to its last (plus a margin)."""
        with self._lock:
            entries = list(self._entries)
        own = [e for e in entries if e.draft == draft]
        if not own:
            return []
        first, last = own[0].at - margin, own[-1].at + margin
        return [e for e in entries if e.draft == draft or (e.draft is None and first <= e.at <= last)]
