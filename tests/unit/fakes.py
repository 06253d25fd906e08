"""Hand-written fakes for the service's ports and its clock."""
from __future__ import annotations

import time
from typing import Callable, Optional

from bridge.core.deadline import Deadline
from bridge.core.errors import OrderNotFound, StoreUnavailable, UpstreamAmbiguous
from bridge.core.models import BikOrder, PlaceOrderRequest
from bridge.core.ports import Lookup
from bridge.upstream.outbound import OutboundRequest


class FakeAdapter:
    """A platform that keeps created orders by draft id and can be told how its next create goes."""

    name = "fake"

    def __init__(self) -> None:
        self.orders: dict[str, BikOrder] = {}  # by draft id
        self.creates = 0
        self.warmed_up = False
        self.lookups = 0
        self._next: list[tuple[BaseException, bool]] = []
        self._missed_lookups = 0
        self._inconclusive_lookups = 0
        self.lookup_since: list[Optional[float]] = []  # the `since` of every lookup, in order

    # scripting ------------------------------------------------------------------------------

    def fail_next(self, error: BaseException) -> None:
        """The next create raises `error` and creates nothing."""
        self._next.append((error, False))

    def create_then_fail(self, error: Optional[BaseException] = None) -> None:
        """The next create lands on the platform, then raises (by default an ambiguous timeout)."""
        self._next.append((error or UpstreamAmbiguous("read timed out after sending"), True))

    def miss_lookups(self, count: int = 1) -> None:
        """The next `count` lookups by draft id find nothing yet (a lagging search index)."""
        self._missed_lookups += count

    def leave_lookups_inconclusive(self, count: int = 1) -> None:
        """The next `count` lookups prove nothing either way (a page bound reached first)."""
        self._inconclusive_lookups += count

    # the port -------------------------------------------------------------------------------

    def build_create(self, request: PlaceOrderRequest) -> list[OutboundRequest]:
        return [OutboundRequest("POST", "fake://orders", "create", json={"draft": request.draftOrderId})]

    def place(self, request: PlaceOrderRequest, deadline: Deadline) -> BikOrder:
        error, create_first = self._next.pop(0) if self._next else (None, True)
        if create_first:
            self._create(request)
        if error is not None:
            raise error
        return self.orders[request.draftOrderId]

    def get(self, order_id: str, deadline: Deadline) -> BikOrder:
        for order in self.orders.values():
            if order.id == order_id:
                return order
        raise OrderNotFound(f"order {order_id} not found")

    def find_by_draft(self, draft_order_id: str, request: Optional[PlaceOrderRequest], deadline: Deadline,
                      since: Optional[float]) -> Lookup:
        self.lookups += 1
        self.lookup_since.append(since)
        if self._inconclusive_lookups:
            self._inconclusive_lookups -= 1
            return Lookup.inconclusive("fake: the lookup reached its page bound")
        if self._missed_lookups:
            self._missed_lookups -= 1
            return Lookup.absent()
        order = self.orders.get(draft_order_id)
        return Lookup.found(order) if order is not None else Lookup.absent()

    def check_credentials(self, deadline: Deadline) -> str:
        return f"fake platform: {len(self.orders)} orders"

    def warm_up(self) -> None:
        self.warmed_up = True

    def create_behind_the_bridge(self, request: PlaceOrderRequest) -> None:
        """An order for this draft lands on the platform, as a crashed owner's create would."""
        self._create(request)

    def _create(self, request: PlaceOrderRequest) -> None:
        self.creates += 1
        order_id = f"F-{self.creates}"
        o = request.order
        self.orders[request.draftOrderId] = BikOrder(
            id=order_id, name=f"#{order_id}", status="ORDERED",
            paymentStatus="pending" if request.paymentPending else "paid", items=list(o.items),
            subTotal=o.subTotal, shippingCharge=o.shippingCharge, discount=o.discount, total=o.total,
            currency=o.currency or "INR", address=o.address, phoneNumber=o.phoneNumber, email=o.email,
            partnersData={"id": request.draftOrderId},
        )


class DownStore:
    """An idempotency store that never answers."""

    def _down(self, *args, **kwargs):
        raise StoreUnavailable()

    claim = complete = replay = replay_or_claim = mark_unknown = release = get = unsettled = ping = warm_up = _down
    memory_began = _down

    def close(self) -> None:
        pass


class FakeClock:
    """Wall-clock seconds that move only when told to; starts at the real time the stores use."""

    def __init__(self, start: Optional[float] = None):
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """A sleep that returns at once, advances the fake clock, records pauses and can run a hook."""

    def __init__(self, clock: Optional[FakeClock] = None, on_sleep: Optional[Callable[[float], None]] = None):
        self.clock = clock
        self.on_sleep = on_sleep
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)
        if self.on_sleep is not None:
            self.on_sleep(seconds)
