"""Bik's payloads as pydantic models: strict readers for requests (unknown fields ignored), one BikOrder for
responses."""
from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
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

# Unicode category Cc, and the lone surrogates a JSON escape such as "\ud83d" yields (no UTF-8 encoder takes them).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_RUN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]+")
# Pragmatic, not RFC 5322: one @, a local part, a dotted domain, no whitespace.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$")
_DRAFT_ID = re.compile(r"^[\x21-\x7e]+$")


def _control_free(value: Any) -> Any:
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _display(value: Any) -> Any:
    # Names and tags only label the order: a line break or NUL in them is noise, not a reason to lose the order.
    return _CONTROL_RUN.sub(" ", value) if isinstance(value, str) else value


def _as_sent(value: str) -> str:
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    return value


def looks_like_draft_id(value: Any) -> bool:
    """Whether `value` passes as a draftOrderId as sent: printable ASCII without spaces, of a draft id's length."""
    return isinstance(value, str) and 0 < len(value) <= DRAFT_ID_MAX_LENGTH and _DRAFT_ID.fullmatch(value) is not None


def _draft_id(value: str) -> str:
    if not _DRAFT_ID.match(_as_sent(value)):
        raise ValueError("must be printable ASCII without spaces")
    return value


def _bik_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    if not isinstance(value, str):
        raise ValueError("must be a non-negative integer or a non-empty id string")
    _control_free(value)
    if not 0 < len(_as_sent(value)) <= 64:
        raise ValueError("must be a non-empty id string of at most 64 characters")
    if not value.isprintable():
        raise ValueError("must contain only printable characters")
    return value


def _email(value: str) -> str:
    address = value.strip().lower()
    if address and not _EMAIL.match(address):
        raise ValueError("must look like an email address (name@domain.tld) or be empty")
    return address


def _json_number(value: Any) -> Any:
    if isinstance(value, (str, bool)):
        raise ValueError("must be a JSON number")
    return value


# Bik's request as sent: ids untrimmed, booleans and counts of their JSON type, money as JSON numbers.
BikId = Annotated[Union[int, str], BeforeValidator(_bik_id)]
DRAFT_ID_MAX_LENGTH = 128
DraftOrderId = Annotated[
    str, StringConstraints(min_length=1, max_length=DRAFT_ID_MAX_LENGTH), BeforeValidator(_control_free),
    AfterValidator(_draft_id)
]
# Room for the bridge's own id of a queued order, `BK-` + a draft id of the longest kind.
OrderId = Annotated[
    str, StringConstraints(min_length=1, max_length=131), BeforeValidator(_control_free), AfterValidator(_as_sent)
]
ContactText = Annotated[str, StringConstraints(max_length=1000), BeforeValidator(_control_free)]
DisplayText = Annotated[str, StringConstraints(max_length=1000), BeforeValidator(_display)]
Email = Annotated[str, StringConstraints(max_length=1000), BeforeValidator(_control_free), AfterValidator(_email)]
Count = Annotated[StrictInt, Field(ge=1, le=100_000)]
MoneyIn = Annotated[
    Money, BeforeValidator(_json_number),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1e12}, mode="validation"),
]

OrderStatus = Literal["ORDERED", "IN PROGRESS", "DELIVERED", "CANCELLED"]
PaymentStatus = Literal["pending", "paid", "refunded"]
FulfillmentStatus = Literal["unfulfilled", "partial", "fulfilled"]


class _Reader(BaseModel):
    """Reads fields by name; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class BikAddress(_Reader):
    """An address as answers carry it; the stores' own addresses are read into it as they are."""

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


class BikAddressIn(BikAddress):
    """The address in Bik's placeOrder: no control characters, since it goes to the store as written."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        # Every field BikAddress declares: one rule over them, rather than a second list of the same fields.
        return _control_free(value)


class BikOrderItem(_Reader):
    """An order line as answers carry it; the stores' own lines are read into it."""

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


class BikOrderItemIn(BikOrderItem):
    """A line of Bik's placeOrder: ids as sent, a JSON integer quantity, a JSON number price."""

    productId: Optional[BikId] = None
    variantId: BikId
    name: DisplayText = ""
    variantName: Optional[DisplayText] = None
    quantity: Count
    price: MoneyIn


class BikOrderIn(_Reader):
    """The order inside a placeOrder request: what Bik priced."""

    items: Annotated[list[BikOrderItemIn], Field(min_length=1, max_length=250)]
    subTotal: MoneyIn
    # Validated defaults: a JSON number in the schema, a Decimal on the model.
    shippingCharge: MoneyIn = Field(0, validate_default=True)
    discount: MoneyIn = Field(0, validate_default=True)
    total: MoneyIn
    currency: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=3), BeforeValidator(_control_free)
    ] = ""
    address: Optional[BikAddressIn] = None
    phoneNumber: Optional[ContactText] = None
    # Many WhatsApp customers have none: empty or absent is fine, only a malformed one is refused.
    email: Optional[Email] = None
    tags: Union[Text, list[Text], None] = None

    @field_validator("tags", mode="before")
    @classmethod
    def _display_tags(cls, value: Any) -> Any:
        # Here rather than on the union's branches, whose generated names would stand in the error's field path.
        return [_display(tag) for tag in value] if isinstance(value, list) else _display(value)

    def tag_list(self) -> list[str]:
        """Bik's tags as a list (Bik sends one comma-separated string, or a list)."""
        raw = self.tags or []
        parts = raw.split(",") if isinstance(raw, str) else raw
        return [p.strip() for p in parts if p and p.strip()]


class PlaceOrderRequest(_Reader):
    draftOrderId: DraftOrderId
    paymentPending: StrictBool = True  # when Bik leaves it out, assume nothing was collected
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
