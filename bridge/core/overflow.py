"""What Bik is told about an order placed later (`placement: overflow`): the bridge's own id and answers."""
from __future__ import annotations

import json
import re
import string
from typing import Optional

from bridge.core.models import BikOrder, PlaceOrderRequest
from bridge.core.presentation import Presentation

# Bik's reference to a queued order, stable per draft: `BK-` + the draft id.
BRIDGE_ID_PREFIX = "BK-"
CANCELLED_BY_MERCHANT = "cancelled by the merchant"
# Refusals reach Bik and the merchant in the store's own words; a runaway message is cut here.
REASON_MAX_CHARS = 500
_FIELDS_OF_PLATFORM_ID = frozenset({"id", "number"})


def bridge_order_id(draft_order_id: str) -> str:
    return BRIDGE_ID_PREFIX + draft_order_id


def draft_of(order_id: str) -> Optional[str]:
    """The draft id inside a bridge id, or None when `order_id` is not one."""
    if order_id.startswith(BRIDGE_ID_PREFIX) and len(order_id) > len(BRIDGE_ID_PREFIX):
        return order_id[len(BRIDGE_ID_PREFIX):]
    return None


def queued_answer(request: PlaceOrderRequest, presentation: Presentation) -> BikOrder:
    """The answer to a queued draft: ORDERED under the bridge's id, with the order as Bik priced it."""
    order_id, draft, bik = bridge_order_id(request.draftOrderId), request.draftOrderId, request.order
    return BikOrder(
        id=order_id,
        name=presentation.name(order_id, draft_id=draft),
        status="ORDERED",
        paymentStatus="pending" if request.paymentPending else "paid",
        items=list(bik.items),
        subTotal=bik.subTotal,
        shippingCharge=bik.shippingCharge,
        discount=bik.discount,
        total=bik.total,
        currency=presentation.currency_for(bik.currency, None),
        address=bik.address,
        phoneNumber=bik.phoneNumber or (bik.address.phoneNumber if bik.address else None),
        email=bik.email,
        invoiceUrl=_invoice_url(presentation, draft),
        fulfillmentStatus="unfulfilled",
        partnersData={"id": draft},
    )


def _invoice_url(presentation: Presentation, draft: str) -> Optional[str]:
    """The invoice link when its template needs no platform id (only `{draft_id}`): the store has no order yet."""
    template = presentation.invoice_url_template
    if not template:
        return None
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    return None if fields & _FIELDS_OF_PLATFORM_ID else template.format(draft_id=draft)


def placed_answer(order: BikOrder, bridge_id: str) -> bytes:
    """The platform's current order under the bridge's id, which Bik keeps as its reference."""
    return order.model_copy(update={"id": bridge_id}).to_json_bytes()


def refused_answer(response: bytes, reason: str) -> bytes:
    """The queued answer turned CANCELLED, with the store's reason in `cancelReason`."""
    body = json.loads(response)
    body["order"]["status"] = "CANCELLED"
    body["order"]["cancelReason"] = reason
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def short_reason(message: str) -> str:
    """A refusal's message as kept on the record: one line, bounded."""
    return re.sub(r"\s+", " ", message).strip()[:REASON_MAX_CHARS]
