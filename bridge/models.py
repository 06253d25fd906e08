"""Bik's payloads as pydantic models: tolerant readers for requests, one BikOrder for responses."""
from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
)


def money_to_json(value: Decimal) -> int | float:
    """Render money as a JSON number: integral amounts as integers, others as exact short floats."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


Money = Annotated[
    Decimal,
    Field(ge=0, le=Decimal("1e12"), allow_inf_nan=False, max_digits=18, decimal_places=4),
    PlainSerializer(money_to_json, return_type=Union[int, float]),
]


def _external_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    # The union's str branch takes a str as it is: control characters and lone surrogates (from a JSON
    # escape such as "\ud83d") are refused here, before a platform URL or a UTF-8 encoder meets them.
    if isinstance(value, str) and 0 < len(value.strip()) <= 64 and value.strip().isprintable():
        return value.strip()
    raise ValueError("must be a non-negative integer or a non-empty printable id string")


# Other systems' ids stay opaque: Bik sends numbers, a catalog may use strings.
ExternalId = Annotated[Union[int, str], BeforeValidator(_external_id)]
Text = Annotated[str, StringConstraints(max_length=1000)]
DraftOrderId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
]
OrderId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]

OrderStatus = Literal["ORDERED", "IN PROGRESS", "DELIVERED", "CANCELLED"]
PaymentStatus = Literal["pending", "paid", "refunded"]
FulfillmentStatus = Literal["unfulfilled", "partial", "fulfilled"]


class _Reader(BaseModel):
    """Tolerant reader: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class BikAddress(_Reader):
    firstName: Text = ""
    lastName: Text = ""
    address1: Text = ""
    address2: Optional[Text] = None
    city: Text = ""
    state: Optional[Text] = None
    country: Text = ""
    countryCode: Optional[Annotated[str, StringConstraints(max_length=3)]] = None
    zip: Text = ""
    phoneNumber: Optional[Text] = None


class BikOrderItem(_Reader):
    productId: Optional[ExternalId] = None
    variantId: ExternalId
    name: Text = ""
    variantName: Optional[Text] = None
    quantity: Annotated[int, Field(ge=1, le=100_000)]
    price: Money
    image: Optional[Annotated[str, StringConstraints(max_length=2048)]] = None

    @field_validator("quantity", mode="before")
    @classmethod
    def _whole_quantity(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("quantity must be a whole number")
        return value


class BikOrderIn(_Reader):
    """The order inside a placeOrder request: what Bik priced."""

    items: Annotated[list[BikOrderItem], Field(min_length=1, max_length=250)]
    subTotal: Money
    shippingCharge: Money = Decimal(0)
    discount: Money = Decimal(0)
    total: Money
    currency: Annotated[str, StringConstraints(strip_whitespace=True, max_length=3)] = ""
    address: Optional[BikAddress] = None
    phoneNumber: Optional[Text] = None
    email: Optional[Text] = None
    tags: Union[Text, list[Text], None] = None

    @field_validator("email")
    @classmethod
    def _lower_email(cls, value: Optional[str]) -> Optional[str]:
        return value.strip().lower() if value else value

    def tag_list(self) -> list[str]:
        """Bik's tags as a list (Bik sends one comma-separated string)."""
        raw = self.tags or []
        parts = raw.split(",") if isinstance(raw, str) else raw
        return [p.strip() for p in parts if p and p.strip()]


class PlaceOrderRequest(_Reader):
    draftOrderId: DraftOrderId
    paymentPending: bool = True  # when Bik leaves it out, assume nothing was collected
    order: BikOrderIn

    def fingerprint(self) -> str:
        """A digest of the fields that define the order, to spot a retry with another payload."""
        o = self.order
        material = {
            "paymentPending": self.paymentPending,
            "items": [[str(i.productId), str(i.variantId), i.quantity, str(i.price)] for i in o.items],
            "totals": [str(o.subTotal), str(o.shippingCharge), str(o.discount), str(o.total)],
            "currency": o.currency,
            "address": o.address.model_dump(mode="json") if o.address else None,
        }
        canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class GetOrderRequest(_Reader):
    orderId: OrderId

    @field_validator("orderId", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        # Bik echoes the id we returned; accept it as a JSON number too.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class DeliveryInfo(BaseModel):
    trackingURL: Optional[str] = None


class BikOrder(BaseModel):
    """The order as Bik receives it from placeOrder and getOrder."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    status: OrderStatus
    paymentStatus: PaymentStatus
    items: list[BikOrderItem]
    subTotal: Money
    shippingCharge: Money
    discount: Money
    total: Money
    currency: str
    address: Optional[BikAddress] = None
    phoneNumber: Optional[str] = None
    email: Optional[str] = None
    invoiceUrl: Optional[str] = None
    fulfillmentStatus: Optional[FulfillmentStatus] = None
    deliveryInfo: Optional[DeliveryInfo] = None
    partnersData: Optional[dict[str, str]] = None

    def to_json_bytes(self) -> bytes:
        """The response body `{"order": ...}`, byte-stable for replay."""
        body = {"order": self.model_dump(mode="json", exclude_none=False)}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
