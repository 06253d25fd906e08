"""Pure translation of bitbybit order JSON into Bik's terms.

bitbybit's enums are read as open strings: the dashboard shows values ("Partially fulfilled", "Done")
the API reference does not list, so an unknown value maps to the nearest safe answer and is logged.
"""
from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

from adapters.bitbybit.builder import PAID_TAG
from adapters.bitbybit.settings import BitbybitConfig
from adapters.bitbybit.variant_map import VariantMap
from bridge.core.models import BikAddress, BikOrder, BikOrderItem, DeliveryInfo, PlaceOrderRequest
from bridge.core.presentation import Presentation

log = logging.getLogger("bik_bridge.bitbybit")

# Keys are a `status`, or a `status/fulfillmentStatus` pair, which wins over the status alone.
DEFAULT_STATUS_MAP: dict[str, str] = {
    "cancelled": "CANCELLED",
    "refunded": "CANCELLED",
    "archived": "DELIVERED",  # the dashboard's "Done"
    "active/unfulfilled": "ORDERED",
    "active": "IN PROGRESS",  # fulfilled, partially fulfilled, or on its way in some other way
}
ZERO = Decimal(0)


def norm(value: Any) -> str:
    """An enum value as a key: "Partially fulfilled" and "partially-fulfilled" read partially_fulfilled."""
    return str(value or "").strip().lower().replace("-", "_").replace(" ", "_")


def _status_key(key: str) -> str:
    return "/".join(norm(part) for part in key.split("/"))


def amount(value: Any) -> Decimal:
    """bitbybit money (a JSON number; null when absent) as a non-negative Decimal."""
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    try:
        result = Decimal(str(value)) if value not in (None, "") else ZERO
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    try:
        return max(result, ZERO).quantize(Decimal("0.0001")).normalize()
    except InvalidOperation:  # too many digits to hold at four decimal places
        raise ValueError(f"not an amount: {value!r}") from None


def fulfillment_status(value: Any) -> Optional[str]:
    """unfulfilled / partial / fulfilled; None for a value bitbybit has not documented."""
    key = norm(value)
    if key in ("", "unfulfilled"):
        return "unfulfilled"
    if "partial" in key:
        return "partial"
    if key == "fulfilled":
        return "fulfilled"
    log.warning("unknown bitbybit fulfillmentStatus; fulfilment left out", extra={"bitbybit_value": key[:40]})
    return None


def payment_status(value: Any, tags: list[str]) -> str:
    """Bik's paymentStatus from financialStatus; an order created as paid stays paid until bitbybit says more."""
    key = norm(value)
    if key == "paid":
        return "paid"
    if "refund" in key:
        return "paid" if "partial" in key else "refunded"
    if key not in ("", "pending", "unpaid"):
        log.warning("unknown bitbybit financialStatus; read as pending", extra={"bitbybit_value": key[:40]})
    return "paid" if PAID_TAG in tags else "pending"


def _tags(order: dict) -> list[str]:
    tags = order.get("tags")
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def external_id(value: str) -> int | str:
    """An id for Bik: digits as a number (Bik's catalog ids are numbers), anything else as text."""
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return value


class BitbybitMapping:
    """Maps bitbybit's Order object to BikOrder."""

    def __init__(self, settings: BitbybitConfig, presentation: Presentation,
                 variant_map: Optional[VariantMap] = None):
        self.settings = settings
        self.presentation = presentation
        self.variant_map = variant_map
        # A custom map moves the keys it names; every other value keeps its default meaning.
        self._status_of = dict(DEFAULT_STATUS_MAP)
        self._status_of.update({_status_key(k): v for k, v in (settings.status_map or {}).items()})

    def status(self, order: dict) -> str:
        status = norm(order.get("status")) or "active"
        fulfilment = norm(order.get("fulfillmentStatus")) or "unfulfilled"
        for key in (f"{status}/{fulfilment}", status):
            if key in self._status_of:
                return self._status_of[key]
        log.warning("unknown bitbybit order status; read by its fulfilment", extra={"bitbybit_value": status[:40]})
        return "ORDERED" if fulfilment == "unfulfilled" else "IN PROGRESS"

    def draft_id(self, order: dict) -> Optional[str]:
        """The draft id of the bridge's marker tag on an order, or None."""
        prefix = self.settings.marker_prefix
        return next((t[len(prefix):] for t in _tags(order) if t.startswith(prefix) and len(t) > len(prefix)), None)

    def carries(self, order: dict, marker: str) -> bool:
        """Whether an order carries exactly this marker tag."""
        return marker in _tags(order)

    def is_ours(self, order: dict) -> bool:
        """Whether Bik may read this order: placed through the bridge, or scope `all`."""
        return self.presentation.scope_all or self.draft_id(order) is not None

    @staticmethod
    def order_id(order: dict) -> str:
        value = order["id"]
        if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
            raise ValueError(f"order id {value!r} is not an id")
        return str(value).strip()

    @staticmethod
    def number(order: dict) -> Optional[str]:
        """The order number the merchant sees: orderNumber, else orderId."""
        for name in ("orderNumber", "orderId"):
            value = order.get(name)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
                return str(value).strip()
        return None

    def _totals(self, order: dict) -> tuple[Decimal, Decimal]:
        """(subtotal, total): bitbybit reports only a total; the subtotal is the sum of its priced lines."""
        total = amount(order.get("total"))
        lines = [line for line in order.get("lineItems") or [] if isinstance(line, dict)]
        if not lines:
            return total, total
        subtotal = sum((amount(line.get("price")) * int(line.get("quantity") or 0) for line in lines), ZERO)
        return amount(subtotal), total

    def placed(self, request: PlaceOrderRequest, created: dict) -> BikOrder:
        """The placeOrder answer: Bik's lines and customer, the store's id and figures."""
        order_id, number = self.order_id(created), self.number(created)
        bik = request.order
        subtotal, total = self._totals(created)
        if total != bik.total:
            # bitbybit prices lines from its catalog and takes no shipping or discount: its total is the truth.
            log.warning("store total differs from Bik's", extra={
                "draftOrderId": request.draftOrderId, "orderId": order_id, "bik_total": str(bik.total),
                "store_total": str(total)})
        draft = request.draftOrderId
        return BikOrder(
            id=order_id,
            name=self.presentation.name(order_id, number, draft_id=draft),
            status=self.status(created),
            paymentStatus="pending" if request.paymentPending else "paid",
            items=list(bik.items),
            subTotal=subtotal,
            shippingCharge=ZERO,
            discount=ZERO,
            total=total,
            currency=self.presentation.currency_for(bik.currency, _text(created.get("currency")) or None),
            address=bik.address,
            phoneNumber=bik.phoneNumber or (bik.address.phoneNumber if bik.address else None),
            email=bik.email,
            invoiceUrl=self.presentation.invoice_url(order_id, number, draft_id=draft),
            fulfillmentStatus=fulfillment_status(created.get("fulfillmentStatus")) or "unfulfilled",
            partnersData={"id": draft},
        )

    def current(self, order: dict) -> BikOrder:
        """The getOrder answer: the store's current state."""
        order_id, number = self.order_id(order), self.number(order)
        draft = self.draft_id(order) or ""
        shipping, customer = _dict(order.get("shippingAddress")), _dict(order.get("customer"))
        subtotal, total = self._totals(order)
        return BikOrder(
            id=order_id,
            name=self.presentation.name(order_id, number, draft_id=draft),
            status=self.status(order),
            paymentStatus=payment_status(order.get("financialStatus"), _tags(order)),
            items=[self.item(line) for line in order.get("lineItems") or [] if isinstance(line, dict)],
            subTotal=subtotal,
            shippingCharge=ZERO,
            discount=ZERO,
            total=total,
            currency=_text(order.get("currency")) or self.presentation.currency,
            address=self.address(shipping),
            phoneNumber=_text(shipping.get("phone")) or _text(customer.get("phoneNumber")) or None,
            email=_text(customer.get("email")).lower() or None,
            invoiceUrl=self.presentation.invoice_url(order_id, number, draft_id=draft),
            fulfillmentStatus=fulfillment_status(order.get("fulfillmentStatus")),
            deliveryInfo=DeliveryInfo(trackingURL=None),  # bitbybit's order carries no tracking link
            partnersData={"id": draft} if draft else None,
        )

    def item(self, line: dict) -> BikOrderItem:
        variant = _dict(line.get("productVariant"))
        bbb_id = str(variant.get("id") or line.get("productVariantId") or line.get("id") or "")
        bik_id = self.variant_map.bik_id(bbb_id) if self.variant_map is not None else None
        media = _text(variant.get("media"))
        price = line.get("price") if line.get("price") is not None else variant.get("price")
        return BikOrderItem(
            productId=None,
            variantId=external_id(bik_id or bbb_id),
            name=_text(line.get("title"))[:1000],
            quantity=max(1, int(line.get("quantity") or 1)),
            price=amount(price),
            image=media if media.startswith(("https://", "http://")) and len(media) <= 2048 else None,
        )

    @staticmethod
    def address(raw: dict) -> Optional[BikAddress]:
        if not raw:
            return None
        country = _text(raw.get("country")).strip()
        return BikAddress(
            firstName=_text(raw.get("firstName")),
            lastName=_text(raw.get("lastName")),
            address1=_text(raw.get("address1")),
            address2=_text(raw.get("address2")) or None,
            city=_text(raw.get("city")),
            state=_text(raw.get("province")) or None,
            country=country,
            countryCode=country.upper() if len(country) == 2 and country.isalpha() else None,
            zip=_text(raw.get("zip")),
            phoneNumber=_text(raw.get("phone")) or None,
        )
