"""Pure construction of BigCommerce v2 requests from Bik's terms; nothing here sends."""
from __future__ import annotations

from decimal import Decimal
from typing import Optional

from adapters.bigcommerce.settings import BigCommerceConfig
from bridge.core.errors import OrderRejected
from bridge.core.models import BikAddress, PlaceOrderRequest, money_to_json
from bridge.upstream.outbound import OutboundRequest

AUTH_HEADER = "X-Auth-Token"
# GET /v2/orders/{id}'s `order_includes`: consignments with their line items, in the object structure.
CONSIGNMENTS_INLINED = {"include": "consignments.line_items", "consignment_structure": "object"}


def money(value: Decimal) -> str:
    """BigCommerce's "Float-As-String" money, exact."""
    return format(value, "f")


def catalog_id(value, what: str, item_no: int) -> int:
    """An id BigCommerce can take for a catalog line: a non-negative integer."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise OrderRejected(f"order.items.{item_no}.{what}: {value!r} is not a BigCommerce catalog id")


class BigCommerceRequests:
    """Builds every request the adapter sends; `dry-run` prints what these return."""

    def __init__(self, settings: BigCommerceConfig):
        self.settings = settings
        self.base = f"{settings.api_base_url.rstrip('/')}/stores/{settings.store_hash}/v2"

    def headers(self, with_body: bool = False) -> dict[str, str]:
        headers = {AUTH_HEADER: self.settings.access_token.get_secret_value(), "Accept": "application/json"}
        if with_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _request(self, method: str, path: str, operation: str, **kwargs) -> OutboundRequest:
        return OutboundRequest(
            method, self.base + path, operation, headers=self.headers(method in ("POST", "PUT")),
            secret_headers=frozenset({AUTH_HEADER}), **kwargs,
        )

    def create(self, request: PlaceOrderRequest) -> OutboundRequest:
        return self._request("POST", "/orders", "create", json=self.create_body(request))

    def get_order(self, order_id: int) -> OutboundRequest:
        # The order with its consignments inlined: its lines (whole order products) and shipping addresses come
        # in the same answer, so a status read costs one request instead of three. Without
        # `consignment_structure=object` BigCommerce answers its older array form, which this bridge does not read.
        return self._request("GET", f"/orders/{order_id}", "get_order", params=dict(CONSIGNMENTS_INLINED))

    def products(self, order_id: int) -> OutboundRequest:
        # Read only when an order came back without its consignments inlined.
        # Bik caps an order at 250 lines, which is one page at BigCommerce's largest page size.
        return self._request("GET", f"/orders/{order_id}/products", "products", params={"limit": "250"})

    def shipments(self, order_id: int) -> OutboundRequest:
        return self._request("GET", f"/orders/{order_id}/shipments", "shipments", params={"limit": "250"})

    def shipping_addresses(self, order_id: int) -> OutboundRequest:
        return self._request("GET", f"/orders/{order_id}/shipping_addresses", "shipping_addresses")

    def find_by_draft(self, draft_order_id: str) -> OutboundRequest:
        return self._request("GET", "/orders", "list_orders", params={"external_order_id": draft_order_id})

    def create_body(self, request: PlaceOrderRequest) -> dict:
        """The `order_Post` body: Bik's prices win, the draft id is written on the order."""
        s = self.settings
        order = request.order
        if order.address is None:
            raise OrderRejected("order.address: BigCommerce needs a billing address with a postcode")
        if len(order.address.zip.strip()) < 2:
            raise OrderRejected("order.address.zip: BigCommerce needs a postcode of two or more characters")
        phone = order.phoneNumber or order.address.phoneNumber or ""
        address = self.address(order.address, phone=phone, email=order.email or "")
        products = [
            {
                "product_id": catalog_id(item.productId, "productId", i),
                "variant_id": catalog_id(item.variantId, "variantId", i),
                "quantity": item.quantity,
                "price_inc_tax": money_to_json(item.price),
                "price_ex_tax": money_to_json(item.price),
            }
            for i, item in enumerate(order.items)
        ]
        paid = not request.paymentPending
        tags = ", ".join(order.tag_list())
        notes = f"Placed through Bik. draftOrderId: {request.draftOrderId}" + (f". Bik tags: {tags}" if tags else "")
        return {
            "customer_id": s.customer_id,
            "status_id": s.status_id_paid if paid else s.status_id_pending,
            "billing_address": address,
            "shipping_addresses": [{**address, "shipping_method": s.shipping_method}],
            "products": products,
            "shipping_cost_inc_tax": money(order.shippingCharge),
            "shipping_cost_ex_tax": money(order.shippingCharge),
            "discount_amount": money(order.discount),
            "payment_method": s.payment_method_paid if paid else s.payment_method_pending,
            "external_source": s.external_source,
            "external_order_id": request.draftOrderId,
            "staff_notes": notes[:65535],
        }

    @staticmethod
    def address(address: BikAddress, *, phone: str, email: str) -> dict:
        """A BigCommerce address from Bik's; strings only, never a null state."""
        fields: dict[str, Optional[str]] = {
            "first_name": address.firstName,
            "last_name": address.lastName,
            "street_1": address.address1,
            "street_2": address.address2 or "",
            "city": address.city,
            "state": address.state or "",
            "zip": address.zip.strip(),
            "country": address.country,
            "country_iso2": (address.countryCode or "").upper(),
            "phone": phone,
            "email": email,
        }
        return {k: v for k, v in fields.items() if v is not None}
