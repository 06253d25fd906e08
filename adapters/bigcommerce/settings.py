"""The `bigcommerce:` config section, how it names the store, and what to change when the store refuses the token."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, SecretStr

from bridge.config import Section


class BigCommerceConfig(Section):
    store_hash: str = Field(min_length=1, pattern=r"^[A-Za-z0-9]+$")
    access_token: SecretStr
    api_base_url: str = "https://api.bigcommerce.com"
    customer_id: int = Field(0, ge=0)
    status_id_pending: int = Field(7, ge=0, le=14)
    status_id_paid: int = Field(11, ge=0, le=14)
    payment_method_pending: str = "Cash on Delivery"
    payment_method_paid: str = "Bik"
    external_source: str = Field("Bik", min_length=1, max_length=100)
    shipping_method: str = "Bik"
    status_map: Optional[dict[Literal["ORDERED", "IN PROGRESS", "DELIVERED", "CANCELLED"], list[int]]] = None


def store_scope(settings: BigCommerceConfig) -> str:
    """The store hash: one store, whichever API account the token belongs to."""
    return settings.store_hash


def auth_hint(status: Optional[int], message: str = "") -> str:
    """What to change when BigCommerce refuses the access token: 401 is the token, 403 its scopes."""
    if status == 401:
        return "bigcommerce.access_token is not valid for this store (create an API account token)"
    return "the API account lacks the Orders scope (store_v2_orders): edit its OAuth scopes"
