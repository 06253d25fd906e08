"""What differs between the fake stores: how to start one, how the bridge reaches it, how orders carry drafts."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from tests.fakes.bigcommerce import FakeBigCommerce
from tests.fakes.bitbybit import FakeBitbybit

# Stores answer almost at once unless a fault says otherwise; a little latency keeps duplicates overlapping.
BASE_LATENCY_MS = 20
# The fake's own quota, high enough that only the scripted 429 storms limit the run (the quota rules have
# their own fault tests); announced in every answer, as the stores do.
BIGCOMMERCE_QUOTA = (1_000_000, 30_000)
BITBYBIT_QUOTA = (100_000, 60)
MARKER_PREFIX = "bik:"  # bitbybit.marker_prefix's default


@dataclass(frozen=True)
class Platform:
    """One fake store kind, as the chaos run needs it."""

    name: str
    start_fake: Callable[[], Any]
    config_section: Callable[[Any], dict]
    draft_of: Callable[[Any], Optional[str]]
    orders_by_draft: Callable[[Any], dict[str, list[str]]]
    storm_headers: Callable[[float], dict]


def _start_bigcommerce() -> FakeBigCommerce:
    fake = FakeBigCommerce(latency_ms=BASE_LATENCY_MS).start()
    fake.set_quota(*BIGCOMMERCE_QUOTA)
    return fake


def _bigcommerce_section(fake: FakeBigCommerce) -> dict:
    return {"bigcommerce": {"store_hash": fake.store_hash, "access_token": fake.access_token,
                            "api_base_url": fake.api_base_url}}


def _bigcommerce_draft(body: Any) -> Optional[str]:
    return body.get("external_order_id") if isinstance(body, dict) else None


def _bigcommerce_orders(fake: FakeBigCommerce) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for order in fake.orders.values():
        draft = order.header.get("external_order_id")
        if draft:
            found.setdefault(draft, []).append(str(order.id))
    return found


def _bigcommerce_storm(seconds_left: float) -> dict:
    quota, window_ms = BIGCOMMERCE_QUOTA
    return {"X-Rate-Limit-Time-Window-Ms": str(window_ms), "X-Rate-Limit-Time-Reset-Ms": str(int(seconds_left * 1000)),
            "X-Rate-Limit-Requests-Quota": str(quota), "X-Rate-Limit-Requests-Left": "0"}


def _start_bitbybit() -> FakeBitbybit:
    quota, window = BITBYBIT_QUOTA
    return FakeBitbybit(latency_ms=BASE_LATENCY_MS, rate_limit=quota, rate_window_seconds=window).start()


def _bitbybit_section(fake: FakeBitbybit) -> dict:
    return {"bitbybit": {"api_key": fake.api_key, "api_base_url": fake.api_base_url}}


def _bitbybit_draft(body: Any) -> Optional[str]:
    tags = body.get("tags") if isinstance(body, dict) else None
    for tag in tags or ():
        if isinstance(tag, str) and tag.startswith(MARKER_PREFIX):
            return tag[len(MARKER_PREFIX):]
    return None


def _bitbybit_orders(fake: FakeBitbybit) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for order in fake.orders.values():
        draft = _bitbybit_draft(order)
        if draft:
            found.setdefault(draft, []).append(order["id"])
    return found


def _bitbybit_storm(seconds_left: float) -> dict:
    quota, _ = BITBYBIT_QUOTA
    return {"RateLimit-Limit": str(quota), "RateLimit-Remaining": "0", "RateLimit-Reset": str(math.ceil(seconds_left))}


PLATFORMS = {
    "bigcommerce": Platform("bigcommerce", _start_bigcommerce, _bigcommerce_section, _bigcommerce_draft,
                            _bigcommerce_orders, _bigcommerce_storm),
    "bitbybit": Platform("bitbybit", _start_bitbybit, _bitbybit_section, _bitbybit_draft, _bitbybit_orders,
                         _bitbybit_storm),
}
