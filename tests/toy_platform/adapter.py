"""The toy platform's adapter: orders kept in a dict, numbered from 101."""
from __future__ import annotations

from typing import Optional

from bridge.core.deadline import Deadline
from bridge.core.errors import OrderNotFound
from bridge.core.models import BikOrder, PlaceOrderRequest
from bridge.core.platform import AdapterParts
from bridge.core.ports import Lookup
from bridge.core.presentation import Presentation
from bridge.upstream.outbound import OutboundRequest
from tests.toy_platform.settings import ToySettings

FIRST_NUMBER = 100


class ToyAdapter:
    """A store in memory: placeOrder keeps the order, getOrder reads it back."""

    name = "toy"

    def __init__(self, settings: ToySettings, presentation: Presentation):
        self.settings = settings
        self.presentation = presentation
        self.orders: dict[str, BikOrder] = {}  # by draft id

    def build_create(self, request: PlaceOrderRequest) -> list[OutboundRequest]:
        return [OutboundRequest("PUT", f"memory://{self.settings.shop}/orders", "create",
                                json={"draft": request.draftOrderId})]

    def place(self, request: PlaceOrderRequest, deadline: Deadline) -> BikOrder:
        if request.draftOrderId not in self.orders:
            number = str(FIRST_NUMBER + len(self.orders) + 1)
            self.orders[request.draftOrderId] = self._order(request, f"{self.settings.id_prefix}{number}", number)
        return self.orders[request.draftOrderId]

    def get(self, order_id: str, deadline: Deadline) -> BikOrder:
        for order in self.orders.values():
            if order.id == order_id:
                return order
        raise OrderNotFound(f"order {order_id} not found")

    def find_by_draft(self, draft_order_id: str, request: Optional[PlaceOrderRequest], deadline: Deadline,
                      since: Optional[float]) -> Lookup:
        # The dict is the whole store: a missing draft is proven absent.
        order = self.orders.get(draft_order_id)
        return Lookup.found(order) if order is not None else Lookup.absent()

    def check_credentials(self, deadline: Deadline) -> str:
        return f"toy shop {self.settings.shop}: {len(self.orders)} orders"

    def warm_up(self) -> None:
        pass

    def _order(self, request: PlaceOrderRequest, order_id: str, number: str) -> BikOrder:
        o = request.order
        draft = request.draftOrderId
        return BikOrder(
            id=order_id, name=self.presentation.name(order_id, number, draft), status="ORDERED",
            paymentStatus="pending" if request.paymentPending else "paid", items=list(o.items),
            subTotal=o.subTotal, shippingCharge=o.shippingCharge, discount=o.discount, total=o.total,
            currency=self.presentation.currency_for(o.currency, None), address=o.address, phoneNumber=o.phoneNumber,
            email=o.email, invoiceUrl=self.presentation.invoice_url(order_id, number, draft),
            partnersData={"id": draft},
        )


def adapter_from(parts: AdapterParts) -> ToyAdapter:
    """The adapter over its settings; it talks no HTTP, so the composition root built nothing else for it."""
    return ToyAdapter(parts.settings, parts.presentation)
