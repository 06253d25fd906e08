"""The `bitbybit:` config section, and how it names the store without putting the API key anywhere."""
from __future__ import annotations

import hashlib
from typing import Literal, Optional

from pydantic import Field, SecretStr

from bridge.config import Section


class BitbybitConfig(Section):
    api_key: SecretStr
    api_base_url: str = Field("https://api.bitbybit.studio/customer/open/v1", pattern=r"^https?://[^\s]+$")
    auth_header: str = Field("x-api-key", pattern=r"^[A-Za-z0-9-]{1,64}$")
    # A stable name for the store (e.g. its bitbybit company id): keeps the idempotency records when the key rotates.
    store_id: Optional[str] = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    default_country_code: str = Field("91", pattern=r"^[0-9]{1,4}$")
    variant_map: Optional[str] = None
    marker_prefix: str = Field("bik:", min_length=1, max_length=20)
    lookup_max_pages: int = Field(5, ge=1, le=50)
    status_map: Optional[dict[str, Literal["ORDERED", "IN PROGRESS", "DELIVERED", "CANCELLED"]]] = None
    # bitbybit announces its quota (RateLimit-Limit) but not the window it counts in: the documented one is a minute.
    rate_limit_window_seconds: float = Field(60.0, gt=0, le=3600)


def store_scope(settings: BitbybitConfig) -> str:
    """`store_id` when set, else a digest of the API key."""
    if settings.store_id:
        return settings.store_id
    # A digest of the key tells stores apart without putting the secret in Redis.
    return hashlib.sha256(settings.api_key.get_secret_value().encode()).hexdigest()[:12]
