"""The platform's request quota, kept by the bridge so that it never sends more than the platform announced.

The rules, written as pure functions over a `Ledger` (`take_slot`, `learned`, `blocked_for`), are applied in one
process (`LocalQuota`) or atomically to a ledger shared through Redis (`adapters.stores.redis_quota`, where
`take_slot` runs again as a Lua script, checked against this one by tests/stores/test_redis_quota.py):

1. Every request, retries included, first takes a slot. With a quota of Q requests per window of W seconds, at
   most Q requests are sent in any W + `spread(W)` seconds: a sliding log of send times. Whatever instant the
   platform's own fixed windows start at, none of them can then receive more than Q from the bridge. Once a
   quota is announced, a request may take a second slot with its own, for the request its caller sends next,
   when one is free at that moment (a fresh draft's lookup, for its create). That slot is logged `spread(W)`
   later than the first and may be used only until then: a send is never logged earlier than it leaves, so it
   never counts for less than W. It is not used once this process has seen the quota spent (rule 4).
2. Until an answer has announced the quota, the log holds to `FIRST_CONTACT` (a few requests a second, far below
   any platform's quota), so a burst at start-up cannot overrun a small quota before the first answer arrives.
3. An answer that announces no quota (a platform or proxy without the headers) leaves the bridge unmetered.
4. A 429, or an answer saying no requests are left, stops every request until the announced reset.

Requests the platform received from other apps sharing the quota are not in the log: those show up as a 429 and
rule 4 waits them out.
"""
from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional, Protocol

import requests

# Until the platform has announced its quota: this many requests per this many seconds; a request held back
# then asks again this often, since the first answer (and so the real quota) can come at any moment.
FIRST_CONTACT = (4, 1.0)
FIRST_CONTACT_POLL_SECONDS = 0.05
# Added to every announced reset: headers round it down (to whole milliseconds, or seconds), which on a fast
# link is more than the answer's travel time, so without it the bridge could think a window over a little early.
RESET_MARGIN_SECONDS = 0.01
# The limit of a platform whose answers announce no quota.
UNMETERED = (0, 0.0)


# How much later than another a request sent earlier may reach the platform (a new connection's handshake): a share
# of the window, at most a cap.
SPREAD_SHARE = 1 / 20
SPREAD_CAP_SECONDS = 0.5


def spread(window: float) -> float:
    """How much later than another a request sent earlier may reach the platform (a new connection's handshake)."""
    return min(SPREAD_CAP_SECONDS, window * SPREAD_SHARE)


@dataclass(frozen=True)
class QuotaNews:
    """What one answer said about the quota."""

    quota: Optional[int] = None  # requests per window, when announced
    window: Optional[float] = None  # the window's length in seconds, when announced or documented
    spent_for: Optional[float] = None  # seconds until the reset, when the quota is spent (429 or none left)
    limited: bool = False  # the answer was a 429

    @property
    def announced(self) -> bool:
        return self.quota is not None and self.window is not None


class RateLimitHeaders(Protocol):
    """How a platform announces its quota."""

    def reset_seconds(self, response: requests.Response) -> Optional[float]: ...

    def requests_left(self, response: requests.Response) -> Optional[int]: ...

    def quota(self, response: requests.Response) -> Optional[tuple[int, float]]:
        """Requests per window and the window in seconds, when the answer says."""


def news_of(headers: RateLimitHeaders, response: requests.Response) -> Optional[QuotaNews]:
    """What an answer says about the quota; None for a 429 that says nothing (the platform shedding load)."""
    limited = response.status_code == 429
    reset = headers.reset_seconds(response)
    announced = headers.quota(response)
    spent = reset is not None and (limited or headers.requests_left(response) == 0)
    if limited and reset is None and announced is None:
        return None
    quota, window = announced if announced else (None, None)
    return QuotaNews(quota, window, reset if spent else None, limited)


class QuotaState(Protocol):
    """The quota as the bridge knows it: in this process, or shared by every worker and instance."""

    def reserve(self) -> float:
        """Take a slot to send now (0.0), or say how many seconds to wait before asking again."""

    def reserve_with_next(self) -> tuple[float, float]:
        """As `reserve`; when it takes a slot under an announced quota, it also takes one for the next request if
        one is free now, and says for how many seconds that one may be used (0.0: none taken)."""

    def learn(self, news: QuotaNews) -> None:
        """Take in what one answer said."""

    def blocked_for(self) -> float:
        """Seconds until a spent quota resets; 0 when it is not spent."""

    def seen_spent(self) -> bool:
        """Whether an answer this process took in says the quota is spent now; asks nothing of a shared state."""

    def warm_up(self) -> None:
        """Connect to where the state is kept, if anywhere; never raises."""

    def usage(self) -> Optional["Usage"]:
        """How much of the announced quota the last window used; None before a quota is announced."""


@dataclass(frozen=True)
class Usage:
    """The sends of the last window against the announced quota, for the metrics."""

    sent: int  # requests that took a slot within the last window's length
    quota: int  # requests the platform allows per window

    @property
    def ratio(self) -> float:
        return self.sent / self.quota


@dataclass(frozen=True)
class Ledger:
    """What the rule needs of the quota at one moment: the announced limit, one entry of the send log, a reset."""

    limit: Optional[tuple[int, float]] = None  # requests per window of seconds; None: not announced; UNMETERED
    # When the send `counted(limit)` places from the newest took its slot; None while fewer sends are logged.
    # The sends are in time order, so whether that one still counts says whether `counted` of them do.
    deciding_send: Optional[float] = None
    blocked_until: float = 0.0  # a spent quota resets then
    # The send one place newer than `deciding_send` (None likewise): whether it still counts says whether a slot
    # taken now leaves another free for the next request.
    next_deciding_send: Optional[float] = None


def counted(limit: Optional[tuple[int, float]]) -> int:
    """How many sends may count at once under `limit`: which entry of the log, from the newest, decides."""
    return (limit or FIRST_CONTACT)[0]


@dataclass(frozen=True)
class Slot:
    """What `take_slot` decided for a request at one moment."""

    wait: float = 0.0  # seconds to wait before asking again; 0.0: send now
    logged: bool = False  # the send goes into the log (the quota is metered)
    span: float = 0.0  # how long a logged send counts: sends at or before `now - span` have aged out of the log
    # A slot for the next request was taken too, to be used within this many seconds (0.0: none), and logged that
    # much later than `now`. Only under an announced quota: before it, or unmetered, the next request asks anew.
    next_for: float = 0.0


def take_slot(ledger: Ledger, now: float, with_next: bool = False) -> Slot:
    """Rules 1, 2 and 4: whether a request may be sent at `now`, or how long until it should ask again; with
    `with_next`, whether the next request's slot is free now as well."""
    if now < ledger.blocked_until:
        return Slot(wait=ledger.blocked_until - now)
    quota, window = ledger.limit or FIRST_CONTACT
    if quota == 0:
        return Slot()
    span = window + spread(window)
    if ledger.deciding_send is not None and ledger.deciding_send > now - span:
        # `quota` sends still count: the slot frees when the oldest of them (more than one if the quota fell) ages out.
        wait = max(1e-6, ledger.deciding_send + span - now)
        return Slot(wait=wait if ledger.limit else min(wait, FIRST_CONTACT_POLL_SECONDS))
    # Once this send is logged, the one a place newer than the deciding send decides: free if absent or aged out.
    next_free = bool(ledger.limit) and quota > 1 and (
        ledger.next_deciding_send is None or ledger.next_deciding_send <= now - span)
    return Slot(logged=True, span=span, next_for=span - window if with_next and next_free else 0.0)


def learned(ledger: Ledger, news: QuotaNews, now: float) -> Ledger:
    """Rules 2, 3 and 4: the ledger once an answer that said `news` arrived at `now`."""
    limit = ledger.limit
    if news.announced:
        limit = (news.quota, news.window)
    elif limit is None and not news.limited:
        limit = UNMETERED
    blocked_until = ledger.blocked_until
    if news.spent_for is not None:
        blocked_until = max(blocked_until, now + news.spent_for + RESET_MARGIN_SECONDS)
    return replace(ledger, limit=limit, blocked_until=blocked_until)


def blocked_for(ledger: Ledger, now: float) -> float:
    """Seconds until a spent quota resets; 0 when it is not spent."""
    return max(0.0, ledger.blocked_until - now)


def usage(limit: Optional[tuple[int, float]], sent_in_window: int) -> Optional[Usage]:
    """The sends of the last window against the announced quota; None unless one is announced."""
    if limit is None or limit == UNMETERED:
        return None
    return Usage(sent_in_window, limit[0])


class LocalQuota:
    """`QuotaState` for one process: the ledger in memory, the rules applied under a lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._limit: Optional[tuple[int, float]] = None
        self._sent: list[float] = []  # in time order; a next request's slot is logged ahead of now
        self._blocked_until = 0.0

    def reserve(self) -> float:
        return self._take(False)[0]

    def reserve_with_next(self) -> tuple[float, float]:
        return self._take(True)

    def _take(self, with_next: bool) -> tuple[float, float]:
        with self._lock:
            now = self._clock()
            slot = take_slot(self._ledger(), now, with_next)
            if slot.logged:
                del self._sent[:bisect.bisect_right(self._sent, now - slot.span)]
                bisect.insort(self._sent, now)
                if slot.next_for:
                    bisect.insort(self._sent, now + slot.next_for)
            return slot.wait, slot.next_for

    def learn(self, news: QuotaNews) -> None:
        with self._lock:
            ledger = learned(self._ledger(), news, self._clock())
            self._limit, self._blocked_until = ledger.limit, ledger.blocked_until

    def blocked_for(self) -> float:
        with self._lock:
            return blocked_for(self._ledger(), self._clock())

    def seen_spent(self) -> bool:
        return self.blocked_for() > 0

    def warm_up(self) -> None:
        return None

    def send_ages(self) -> list[float]:
        """How long ago each logged send was, in seconds (negative: a next request's slot, logged ahead)."""
        with self._lock:
            now = self._clock()
            return [now - sent for sent in self._sent]

    def forget_sends(self) -> None:
        """Drop the send log: another ledger now holds those sends."""
        with self._lock:
            self._sent.clear()

    def usage(self) -> Optional[Usage]:
        with self._lock:
            window = self._limit[1] if self._limit else 0.0
            since = self._clock() - window
            return usage(self._limit, sum(1 for sent in self._sent if sent > since))

    def _ledger(self) -> Ledger:
        quota = counted(self._limit)
        deciding = self._sent[-quota] if 0 < quota <= len(self._sent) else None
        following = self._sent[1 - quota] if 1 < quota <= len(self._sent) + 1 else None
        return Ledger(self._limit, deciding, self._blocked_until, following)


class RateGate:
    """Holds requests back so the bridge never sends more than the platform's quota."""

    def __init__(self, headers: RateLimitHeaders, clock: Callable[[], float] = time.monotonic,
                 state: Optional[QuotaState] = None):
        self._headers = headers
        self._state = state or LocalQuota(clock)

    def blocked_for(self) -> float:
        return self._state.blocked_for()

    def seen_spent(self) -> bool:
        """Whether this process has seen the quota spent until later (no Redis call): a slot held for the next
        request is not used then."""
        return self._state.seen_spent()

    def reserve(self) -> float:
        """0.0 when a request may be sent now (it took a slot), else the seconds to wait before asking again."""
        return self._state.reserve()

    def reserve_with_next(self) -> tuple[float, float]:
        """As `reserve`, also taking the next request's slot when one is free now: the seconds it may be used in."""
        return self._state.reserve_with_next()

    def warm_up(self) -> None:
        self._state.warm_up()

    def usage(self) -> Optional[Usage]:
        """The share of the announced quota the last window used, as the send log holds it (shared or this process's)."""
        return self._state.usage()

    def observe(self, response: requests.Response) -> None:
        """Learn from a response's quota headers."""
        news = news_of(self._headers, response)
        if news is not None:
            self._state.learn(news)
