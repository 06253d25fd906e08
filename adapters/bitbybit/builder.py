"""Pure construction of bitbybit open API requests from Bik's terms; nothing here sends."""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Optional
from urllib.parse import quote

from adapters.bitbybit.settings import BitbybitConfig
from adapters.bitbybit.variant_map import VariantMap
from bridge.core.errors import OrderRejected
from bridge.core.models import PlaceOrderRequest, money_to_json
from bridge.upstream.outbound import OutboundRequest

PAGE_LIMIT = 100  # bitbybit's largest page
# Written on orders whose payment Bik collected: bitbybit takes no financialStatus on create.
PAID_TAG = "paid-via-bik"
_PHONE_NOISE = re.compile(r"[\s().\-/]")
# Loose on purpose: only what bitbybit's `format: email` would surely refuse is left out.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def e164(raw: Optional[str], default_country_code: str) -> Optional[str]:
    """A phone number as +<country><number>: national numbers get the default country code.

    Text that does not look like a phone number is passed on trimmed rather than guessed at.
    """
    if raw is None or not raw.strip():
        return None
    text = _PHONE_NOISE.sub("", raw.strip())
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00"):
        digits = text[2:]
    elif text.isdigit() and text.startswith("0"):
        digits = default_country_code + text.lstrip("0")  # a trunk prefix: 098765 43210
    elif text.isdigit() and len(text) > 10 and text.startswith(default_country_code):
        digits = text  # already carries the country code, without the +
    else:
        digits = default_country_code + text
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        return raw.strip()
    return f"+{digits}"


def _notes_amount(value: Decimal) -> str:
    """An amount as people read it in the notes: 998, 49.5."""
    return str(money_to_json(value))


class BitbybitRequests:
    """Builds every request the adapter sends; `dry-run` prints what these return."""

    def __init__(self, settings: BitbybitConfig, variant_map: Optional[VariantMap] = None):
        self.settings = settings
        self.variant_map = variant_map
        self.base = settings.api_base_url.rstrip("/")

    def headers(self, with_body: bool = False) -> dict[str, str]:
        headers = {self.settings.auth_header: self.settings.api_key.get_secret_value(), "Accept": "application/json"}
        if with_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _request(self, method: str, path: str, operation: str, **kwargs) -> OutboundRequest:
        return OutboundRequest(method, self.base + path, operation, headers=self.headers(method in ("POST", "PUT")),
                               secret_headers=frozenset({self.settings.auth_header}), **kwargs)

    def create(self, request: PlaceOrderRequest) -> OutboundRequest:
        return self._request("POST", "/orders", "create", json=self.create_body(request))

    def get_order(self, order_id: str) -> OutboundRequest:
        return self._request("GET", f"/orders/{quote(order_id, safe='')}", "get_order")

    def list_orders(self, page: int, search: Optional[str] = None, operation: str = "list_orders") -> OutboundRequest:
        params = {"page": str(page), "limit": str(PAGE_LIMIT)}
        if search:
            params["search"] = search
        return self._request("GET", "/orders", operation, params=params)

    def marker(self, draft_order_id: str) -> str:
        """The tag that carries the draft id on the order: how the bridge finds its orders again."""
        return f"{self.settings.marker_prefix}{draft_order_id}"

    @staticmethod
    def customer_name(request: PlaceOrderRequest) -> str:
        """The name the order's customer is created with, which bitbybit's order search matches."""
        address = request.order.address
        if address is None:
            return ""
        return " ".join(part.strip() for part in (address.firstName, address.lastName) if part.strip())

    def variant_id(self, variant_id: Any, item_no: int) -> str:
        """bitbybit's productVariantId for a Bik variantId: the map's, else the same id as text."""
        if self.variant_map is None:
            return str(variant_id)
        mapped = self.variant_map.bitbybit_id(variant_id)
        if mapped is None:
            raise OrderRejected(f"order.items.{item_no}.variantId: {variant_id} has no bitbybit variant in "
                                f"bitbybit.variant_map ({self.variant_map.source})")
        return mapped

    def create_body(self, request: PlaceOrderRequest) -> dict:
        """The POST /orders body: lines by variant, the address, the customer, the draft id as a tag."""
        order = request.order
        if order.address is None:
            raise OrderRejected("order.address: bitbybit needs a shipping address")
        line_items = [{"productVariantId": self.variant_id(item.variantId, i), "quantity": item.quantity}
                      for i, item in enumerate(order.items)]
        address = order.address
        phone = e164(order.phoneNumber or address.phoneNumber, self.settings.default_country_code)
        shipping = {
            "firstName": address.firstName,
            "lastName": address.lastName,
            "phone": phone or "",
            "address1": address.address1,
            "address2": address.address2 or "",
            "city": address.city,
            "province": address.state or "",
            "zip": address.zip.strip(),
            "country": (address.countryCode or "").upper() or address.country,
        }
        if not shipping["address2"]:
            del shipping["address2"]
        customer = {"firstName": address.firstName, "lastName": address.lastName}
        if phone:
            customer["phone"] = phone
        if order.email and _EMAIL.match(order.email):
            # A malformed email would make bitbybit refuse the whole order; the phone still finds the customer.
            customer["email"] = order.email
        tags = [*order.tag_list(), self.marker(request.draftOrderId)]
        if not request.paymentPending:
            tags.append(PAID_TAG)
        return {
            "lineItems": line_items,
            "shippingAddress": shipping,
            "customer": customer,
            "notes": self.notes(request),
            "tags": list(dict.fromkeys(tags)),
        }

    @staticmethod
    def notes(request: PlaceOrderRequest) -> str:
        """What bitbybit has no field for: the draft id, how payment stands, and Bik's own figures."""
        order = request.order
        currency = f" {order.currency}" if order.currency else ""
        payment = "pending (collect on delivery)" if request.paymentPending else "collected by Bik"
        return (f"Placed through Bik. draftOrderId: {request.draftOrderId}. Payment: {payment}. "
                f"Bik's figures: subtotal {_notes_amount(order.subTotal)}, "
                f"shipping {_notes_amount(order.shippingCharge)}, discount {_notes_amount(order.discount)}, "
                f"total {_notes_amount(order.total)}{currency}.")
