"""Reading bitbybit's order listings from the newest order back, and what such a read proves.

bitbybit has no filter by tag or date, and does not document its sort. A scan of the whole store's
listing proves an order absent once it has seen every order created since the earliest moment that
order could have been made (`since`), or every order there is. A scan of a search proves nothing by
missing: it only finds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional

# One page of a listing: (its orders, its `meta`), by page number.
ReadPage = Callable[[int], tuple[list[dict], dict]]


def timestamp(value: Any) -> Optional[float]:
    """An ISO-8601 date-time with a zone as unix seconds; None when unreadable.

    A time without a zone could be hours off either way, so it reads as unreadable, never as a guess.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return moment.timestamp() if moment.tzinfo is not None else None
    except (ValueError, OverflowError, OSError):
        return None


def iso(seconds: float) -> str:
    """Unix seconds as people read them in a log: 2024-05-08T10:00:00+00:00."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def created_at(order: dict) -> Optional[float]:
    return timestamp(order.get("createdAt"))


def settled_before(order: dict, since: float) -> bool:
    """Whether an order was created, and last changed if it says when, before `since`.

    The listing is taken to run by creation time; requiring `updatedAt` too keeps the proof sound
    if bitbybit sorts by last change instead, since an order is never changed before it exists.
    """
    created = created_at(order)
    if created is None or created >= since:
        return False
    updated = timestamp(order.get("updatedAt"))
    return updated is None or updated < since


def newest_first(orders: list[dict]) -> Optional[bool]:
    """Which way a page runs, from its first and last readable creation times; None when it cannot tell."""
    moments = [t for t in map(created_at, orders) if t is not None]
    if len(moments) < 2 or moments[0] == moments[-1]:
        return None
    return moments[0] > moments[-1]


def has_next(meta: dict, page: int, orders: list[dict], limit: int) -> bool:
    """Whether the listing goes on past `page`; without bitbybit's own word, only an empty page ends it."""
    if isinstance(meta.get("hasNextPage"), bool):
        return meta["hasNextPage"]
    total = meta.get("total")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return page * limit < total
    return bool(orders)


class PageBudget:
    """The pages one lookup may still read, shared by its scans."""

    def __init__(self, pages: int):
        self.pages = pages
        self.left = pages

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


@dataclass
class ScanState:
    """What a scan has seen so far."""

    pages_read: int = 0
    orders_seen: int = 0
    oldest_seen: Optional[float] = None  # the earliest readable createdAt among the orders read
    total: Optional[int] = None  # the listing's size, as its first page announced it


class OrderScan:
    """One listing of GET /orders (the whole store's, or a search's), read from its newest orders back.

    The first page tells the sort: newest first, the walk goes on page by page; oldest first (with a
    total to find the last page), it reads the last pages backwards; with no readable times, it goes on
    page by page and only reaching the end settles it.
    """

    def __init__(self, read_page: ReadPage, is_hit: Callable[[list[dict]], Optional[dict]],
                 since: Optional[float], default_limit: int):
        self._read_page = read_page
        self._is_hit = is_hit
        self.since = since
        self._default_limit = default_limit
        self.state = ScanState()
        self.hit: Optional[dict] = None
        self.complete = False  # every order of the listing was read
        self.reached_since = False  # read back past `since`, in a direction the orders' times confirm
        self.direction: Optional[bool] = None  # True newest first, False oldest first, None unknown
        self._pages: Optional[list[int]] = None  # the pages still to read, when reading backwards
        self._last = 0  # the listing's last page by its total; 0 when unknown
        self._next = 1

    @property
    def settled(self) -> bool:
        """Nothing more to learn from this listing: the order is found, or every candidate was read."""
        return self.hit is not None or self.complete or self.reached_since

    @property
    def proves_absence(self) -> bool:
        return self.hit is None and (self.complete or self.reached_since)

    @property
    def reads_backwards(self) -> bool:
        return self._pages is not None

    def read_newest(self, budget: PageBudget) -> None:
        """Read as far as the listing's newest page: page 1, and the last page if page 1 ran oldest first."""
        self.advance(budget, 1)
        if self.reads_backwards:
            self.advance(budget, 1)

    def advance(self, budget: PageBudget, pages: int) -> None:
        """Read up to `pages` more pages within the budget, stopping once settled."""
        for _ in range(pages):
            if self.settled or not budget.take():
                return
            self._read_one()

    def _read_one(self) -> None:
        page = self._pages.pop(0) if self._pages is not None else self._next
        orders, meta = self._read_page(page)
        self.state.pages_read += 1
        self.state.orders_seen += len(orders)
        self.hit = self._is_hit(orders)
        if page == 1:
            self._first_page(orders, meta)
        elif self._pages is not None:
            if page == self._last and has_next(meta, page, orders, self._limit(meta)):
                # The last page by the total says more follow: the total was wrong, so the newest orders may
                # lie beyond what this walk reads. It may still find the order, never prove it absent.
                self.direction = None
            # Backwards through an oldest-first listing: the page's first order is its oldest.
            self.reached_since = self._past_since(orders[:1], self.direction is False)
            self.complete = not self._pages and self.direction is False
        else:
            self._next = page + 1
            self.reached_since = self._past_since(orders[-1:], self.direction is True)
            self.complete = not has_next(meta, page, orders, self._limit(meta))
        if page != 1 or not self.reads_backwards:  # an oldest-first page 1 says nothing of how far back we read
            self._note_times(orders)

    def _first_page(self, orders: list[dict], meta: dict) -> None:
        limit = self._limit(meta)
        total = meta.get("total")
        self.state.total = total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else None
        self._next = 2
        if not has_next(meta, 1, orders, limit):
            self.complete = True
            return
        self.direction = newest_first(orders)
        self._last = math.ceil(self.state.total / limit) if self.state.total is not None else 0
        if self.direction is False and self._last > 1:
            self._pages = list(range(self._last, 1, -1))
            return
        self.reached_since = self._past_since(orders[-1:], self.direction is True)

    def _past_since(self, boundary: list[dict], confirmed_direction: bool) -> bool:
        # The page's end toward older orders was made before `since`; everything further is older still.
        # An order without a readable time there proves nothing: the scan goes on.
        return (confirmed_direction and self.since is not None and bool(boundary)
                and settled_before(boundary[0], self.since))

    def _limit(self, meta: dict) -> int:
        limit = meta.get("limit")
        return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else self._default_limit

    def _note_times(self, orders: list[dict]) -> None:
        moments = [t for t in map(created_at, orders) if t is not None]
        if moments:
            oldest = min(moments)
            seen = self.state.oldest_seen
            self.state.oldest_seen = oldest if seen is None else min(seen, oldest)
