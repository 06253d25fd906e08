"""What differs between the fake stores: how to start one, how the bridge reaches it, how orders carry drafts."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from tests.fakes.bigcommerce import FakeBigCommerce
from tests.fakes.bitbybit import FakeBitbybit

# Stores answer almost at once unless a fault says otherwise; a little latency keeps duplicates overlapping.
BASE_LATENCY_MS = 20
# The fake's own quota (requests per window of seconds), high enough that only the scripted 429 storms limit the
# standard run (the quota rules have their own fault tests); announced in every answer, as the stores do. A
# profile may set a small one instead (Profile.quota).
BIGCOMMERCE_QUOTA = (1_000_000, 30.0)
BITBYBIT_QUOTA = (100_000, 60.0)
BITBYBIT_DOCUMENTED_WINDOW = 60.0  # bitbybit.rate_limit_window_seconds' default
MARKER_PREFIX = "bik:"  # bitbybit.marker_prefix's default

Quota = tuple[int, float]


@dataclass(frozen=True)
class Platform:
    """One fake store kind, as the chaos run needs it; `quota` is what its fake announces unless a profile says."""

    name: str
    quota: Quota
    start_fake: Callable[[Quota], Any]
    config_section: Callable[[Any, Quota], dict]
    draft_of: Callable[[Any], Optional[str]]
    orders_by_draft: Callable[[Any], dict[str, list[str]]]
    storm_headers: Callable[[float, Quota], dict]
    quota_refusals: Callable[[Any], int]


def _start_bigcommerce(quota: Quota) -> FakeBigCommerce:
    fake = FakeBigCommerce(latency_ms=BASE_LATENCY_MS).start()
    requests, window = quota
    fake.set_quota(requests, int(window * 1000))
    return fake


def _bigcommerce_section(fake: FakeBigCommerce, quota: Quota) -> dict:
    # The window travels in X-Rate-Limit-Time-Window-Ms: the bridge needs no setting for it.
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


def _bigcommerce_storm(seconds_left: float, quota: Quota) -> dict:
    requests, window = quota
    return {"X-Rate-Limit-Time-Window-Ms": str(int(window * 1000)),
            "X-Rate-Limit-Time-Reset-Ms": str(int(seconds_left * 1000)),
            "X-Rate-Limit-Requests-Quota": str(requests), "X-Rate-Limit-Requests-Left": "0"}


def _bigcommerce_refusals(fake: FakeBigCommerce) -> int:
    return fake.over_quota_attempts


def _start_bitbybit(quota: Quota) -> FakeBitbybit:
    requests, window = quota
    return FakeBitbybit(latency_ms=BASE_LATENCY_MS, rate_limit=requests, rate_window_seconds=window).start()


def _bitbybit_section(fake: FakeBitbybit, quota: Quota) -> dict:
    section = {"api_key": fake.api_key, "api_base_url": fake.api_base_url}
    _, window = quota
    if window != BITBYBIT_DOCUMENTED_WINDOW:
        # bitbybit announces no window, only the limit; a fake whose window is scaled down must be told to the bridge.
        section["rate_limit_window_seconds"] = window
    return {"bitbybit": section}


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


def _bitbybit_storm(seconds_left: float, quota: Quota) -> dict:
    requests, _ = quota
    return {"RateLimit-Limit": str(requests), "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(math.ceil(seconds_left))}


def _bitbybit_refusals(fake: FakeBitbybit) -> int:
    return fake.rate_limited


PLATFORMS = {
    "bigcommerce": Platform("bigcommerce", BIGCOMMERCE_QUOTA, _start_bigcommerce, _bigcommerce_section,
                            _bigcommerce_draft, _bigcommerce_orders, _bigcommerce_storm, _bigcommerce_refusals),
    "bitbybit": Platform("bitbybit", BITBYBIT_QUOTA, _start_bitbybit, _bitbybit_section, _bitbybit_draft,
                         _bitbybit_orders, _bitbybit_storm, _bitbybit_refusals),
}
