"""Pure translation of BigCommerce v2 order JSON into Bik's terms."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, Optional

from adapters.bigcommerce.settings import BigCommerceConfig
from bridge.core.models import BikAddress, BikOrder, BikOrderItem, DeliveryInfo, PlaceOrderRequest
from bridge.core.presentation import Presentation

log = logging.getLogger("bik_bridge.bigcommerce")

DEFAULT_STATUS_MAP: dict[str, list[int]] = {
    "ORDERED": [0, 1, 7, 11, 12, 13],
    "IN PROGRESS": [2, 3, 8, 9],
    "DELIVERED": [10, 14],
    "CANCELLED": [4, 5, 6],
}
PAID = frozenset({"paid", "captured", "partially refunded"})


def decimal(value: Any) -> Decimal:
    """BigCommerce money ("69.8400", numbers, null) as a non-negative Decimal."""
    try:
        amount = Decimal(str(value)) if value not in (None, "") else Decimal(0)
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    try:
        return max(amount, Decimal(0)).quantize(Decimal("0.0001")).normalize()
    except InvalidOperation:  # too many digits to hold at four decimal places
        raise ValueError(f"not an amount: {value!r}") from None


@dataclass(frozen=True)
class Consigned:
    """An order's lines and shipping addresses, as its inlined consignments carry them."""

    lines: list[dict]  # whole order products, as GET /orders/{id}/products lists them
    addresses: list[dict]  # the shipping consignments: the address fields of GET /orders/{id}/shipping_addresses


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _whole_lines(consignment: dict) -> Optional[list[dict]]:
    """A consignment's lines when inlined whole; None when they are `{url, resource}` links (or unreadable)."""
    lines = consignment.get("line_items", [])
    if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
        return None  # a digital consignment may carry one link object instead of a list
    if any("resource" in line and "quantity" not in line for line in lines):
        return None  # `include=consignments` alone inlines links to the lines, not the lines
    return lines


def consigned(order: dict) -> Optional[Consigned]:
    """The lines and addresses of an order read with `include=consignments.line_items&consignment_structure=object`.

    None when the answer has no consignments object (the older array form, a `{url, resource}` link because the
    include was ignored) or its lines are not inlined: then /products and /shipping_addresses hold them.
    """
    consignments = order.get("consignments")
    if not isinstance(consignments, dict):
        return None
    email = consignments.get("email")
    shipping = _dicts(consignments.get("shipping"))
    groups = [*shipping, *_dicts(consignments.get("pickups")), *_dicts(consignments.get("downloads")),
              *_dicts(email.get("gift_certificates") if isinstance(email, dict) else None)]
    lines: list[dict] = []
    seen: set = set()
    for group in groups:
        whole = _whole_lines(group)
        if whole is None:
            return None
        for line in whole:
            key = line.get("id")
            if key is None or key not in seen:  # a line belongs to one consignment; never count it twice
                seen.add(key)
                lines.append(line)
    if not lines and order.get("items_total"):
        return None  # items without a line among the consignments: they were not inlined after all
    return Consigned(lines, shipping)


class BigCommerceMapping:
    """Maps order headers, lines, shipments and addresses to BikOrder."""

    def __init__(self, settings: BigCommerceConfig, presentation: Presentation):
        self.settings = settings
        self.presentation = presentation
        # A custom map moves the ids it names; every other id keeps its default meaning.
        self._status_of = {sid: status for status, ids in DEFAULT_STATUS_MAP.items() for sid in ids}
        self._status_of.update({sid: status for status, ids in (settings.status_map or {}).items() for sid in ids})

    def status(self, status_id: Any) -> str:
        return self._status_of.get(status_id, "ORDERED")

    def payment_status(self, order: dict) -> str:
        value = str(order.get("payment_status") or "").lower()
        if value in PAID:
            return "paid"
        if value == "refunded":
            return "refunded"
        # API orders carry no payment record; one the bridge created as paid stays paid.
        created_paid = (
            order.get("status_id") == self.settings.status_id_paid
            and order.get("payment_method") == self.settings.payment_method_paid
        )
        return "paid" if not value and created_paid else "pending"

    def is_ours(self, order: dict) -> bool:
        """Whether Bik may read this order: placed through the bridge, or scope `all`."""
        return self.presentation.scope_all or order.get("external_source") == self.settings.external_source

    def placed(self, request: PlaceOrderRequest, created: dict) -> BikOrder:
        """The placeOrder answer: Bik's lines and customer, the store's id and totals."""
        order_id = str(int(created["id"]))
        bik = request.order
        total = decimal(created.get("total_inc_tax"))
        if total != bik.total:
            log.warning("store total differs from Bik's", extra={"draftOrderId": request.draftOrderId,
                        "orderId": order_id, "bik_total": str(bik.total), "store_total": str(total)})
        return BikOrder(
            id=order_id,
            name=self.presentation.name(order_id, draft_id=request.draftOrderId),
            status=self.status(created.get("status_id")),
            paymentStatus="pending" if request.paymentPending else "paid",
            items=list(bik.items),
            subTotal=decimal(created.get("subtotal_inc_tax")),
            shippingCharge=decimal(created.get("shipping_cost_inc_tax")),
            discount=decimal(created.get("discount_amount")),
            total=total,
            currency=self.presentation.currency_for(bik.currency, created.get("currency_code")),
            address=bik.address,
            phoneNumber=bik.phoneNumber or (bik.address.phoneNumber if bik.address else None),
            email=bik.email,
            invoiceUrl=self.presentation.invoice_url(order_id, draft_id=request.draftOrderId),
            fulfillmentStatus="unfulfilled",
            partnersData={"id": request.draftOrderId},
        )

    def current(self, order: dict, products: list[dict], shipments: list[dict], addresses: list[dict]) -> BikOrder:
        """The getOrder answer: the store's current state.

        `products` and `addresses` come from the order's consignments (`consigned`), or from /products and
        /shipping_addresses when the order was answered without them.
        """
        order_id = str(int(order["id"]))
        draft_id = order.get("external_order_id") or ""
        billing = order.get("billing_address") or {}
        shipping = addresses[0] if addresses else billing
        return BikOrder(
            id=order_id,
            name=self.presentation.name(order_id, draft_id=draft_id),
            status=self.status(order.get("status_id")),
            paymentStatus=self.payment_status(order),
            items=[self.item(line) for line in products],
            subTotal=decimal(order.get("subtotal_inc_tax")),
            shippingCharge=decimal(order.get("shipping_cost_inc_tax")),
            discount=decimal(order.get("discount_amount")),
            total=decimal(order.get("total_inc_tax")),
            currency=order.get("currency_code") or self.presentation.currency,
            address=self.address(shipping),
            phoneNumber=shipping.get("phone") or billing.get("phone") or None,
            email=(billing.get("email") or "").lower() or None,
            invoiceUrl=self.presentation.invoice_url(order_id, draft_id=draft_id),
            fulfillmentStatus=fulfillment_status(products),
            deliveryInfo=DeliveryInfo(trackingURL=tracking_url(shipments)),
            partnersData={"id": draft_id} if draft_id else None,
        )

    @staticmethod
    def item(line: dict) -> BikOrderItem:
        options = [str(o.get("display_value") or "") for o in line.get("product_options") or []]
        variant_name = " / ".join(o for o in options if o) or None
        return BikOrderItem(
            productId=int(line.get("product_id") or 0),
            variantId=int(line.get("variant_id") or 0),
            name=str(line.get("name") or "")[:1000],
            variantName=variant_name,
            quantity=max(1, int(line.get("quantity") or 1)),
            price=decimal(line.get("price_inc_tax")),
        )

    @staticmethod
    def address(raw: dict) -> Optional[BikAddress]:
        if not raw:
            return None
        return BikAddress(
            firstName=raw.get("first_name") or "",
            lastName=raw.get("last_name") or "",
            address1=raw.get("street_1") or "",
            address2=raw.get("street_2") or None,
            city=raw.get("city") or "",
            state=raw.get("state") or None,
            country=raw.get("country") or "",
            countryCode=(raw.get("country_iso2") or None),
            zip=raw.get("zip") or "",
            phoneNumber=raw.get("phone") or None,
        )


def fulfillment_status(products: list[dict]) -> str:
    """unfulfilled / partial / fulfilled from shipped quantities."""
    ordered = sum(int(p.get("quantity") or 0) for p in products)
    shipped = sum(min(int(p.get("quantity_shipped") or 0), int(p.get("quantity") or 0)) for p in products)
    if ordered and shipped >= ordered:
        return "fulfilled"
    return "partial" if shipped else "unfulfilled"


def _shipment_order(shipment: dict) -> tuple:
    try:
        created = parsedate_to_datetime(shipment.get("date_created") or "").timestamp()
    except (TypeError, ValueError, AttributeError):
        created = 0.0
    return (created, int(shipment.get("id") or 0))


def tracking_url(shipments: list[dict]) -> Optional[str]:
    """The newest shipment's custom link, else the one BigCommerce generated."""
    for shipment in sorted(shipments, key=_shipment_order, reverse=True):
        link = shipment.get("tracking_link") or shipment.get("generated_tracking_link")
        if link:
            return link
    return None
