"""The bitbybit open API adapter: sends what the builder makes, maps what comes back.

bitbybit has no idempotency key on order create, so the bridge tags each order with a marker carrying
the draft id and, after an ambiguous create, finds it again by listing orders: first those matching the
customer's name, then the newest orders of the store, each bounded by `bitbybit.lookup_max_pages`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import secrets
import time
from datetime import datetime
from typing import Any, Optional

import requests

from adapters.bitbybit.builder import PAGE_LIMIT, BitbybitRequests
from adapters.bitbybit.errors import AUTH_CAUSES, auth_code_in, error_code, error_message
from adapters.bitbybit.mapping import BitbybitMapping
from adapters.bitbybit.variant_map import VariantMap, load_variant_map
from bridge.config import BitbybitConfig, Config
from bridge.errors import (
    ConfigError,
    OrderNotFound,
    OrderRejected,
    UpstreamAmbiguous,
    UpstreamAuthError,
    UpstreamError,
    UpstreamUnavailable,
)
from bridge.models import BikOrder, PlaceOrderRequest
from bridge.outbound import OutboundRequest
from bridge.presentation import Presentation
from bridge.quota import RateGate
from bridge.upstream import Deadline, Upstream

log = logging.getLogger("bik_bridge.bitbybit")

REJECTIONS = frozenset({400, 404, 409, 422})
# What reading an order of an unexpected shape raises (a string where an object was expected, ...).
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError)
# bitbybit's ids are opaque; anything else cannot be one and must not reach the URL path.
ORDER_ID = re.compile(r"^[A-Za-z0-9._~:-]{1,128}$")
EPOCH_SECONDS = 1_000_000_000  # a reset "in seconds" this large is a timestamp


class BitbybitRateLimit:
    """bitbybit announces its quota (100 requests a minute per key) in seconds, but not the window's length."""

    def __init__(self, window_seconds: float = 60.0):
        self.window_seconds = window_seconds

    @staticmethod
    def reset_seconds(response: requests.Response) -> Optional[float]:
        value = response.headers.get("RateLimit-Reset") or response.headers.get("Retry-After")
        try:
            seconds = float(value) if value is not None else None
        except ValueError:
            return None
        if seconds is None or not math.isfinite(seconds):
            return None
        if seconds > EPOCH_SECONDS:
            seconds -= time.time()
        return max(0.0, seconds)

    @staticmethod
    def requests_left(response: requests.Response) -> Optional[int]:
        value = response.headers.get("RateLimit-Remaining")
        return int(value) if value is not None and value.strip().lstrip("-").isdigit() else None

    def quota(self, response: requests.Response) -> Optional[tuple[int, float]]:
        value = response.headers.get("RateLimit-Limit", "").strip()
        return (int(value), self.window_seconds) if value.isdigit() and int(value) >= 1 else None


def _created_at(order: dict) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(str(order.get("createdAt")).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None


def _oldest_first(orders: list[dict]) -> bool:
    """Whether a page lists orders oldest first (the API does not document its sort)."""
    first, last = (_created_at(orders[0]), _created_at(orders[-1])) if orders else (None, None)
    try:
        return first is not None and last is not None and first < last
    except TypeError:  # one timestamp with a zone, one without
        return False


class BitbybitAdapter:
    """Bik's placeOrder and getOrder on a bitbybit store."""

    name = "bitbybit"

    def __init__(self, settings: BitbybitConfig, presentation: Presentation, upstream: Upstream,
                 variant_map: Optional[VariantMap] = None):
        # bitbybit's order id is internal; the name shows the order number the merchant sees.
        presentation = dataclasses.replace(presentation, default_name_format="#{number}")
        self.settings = settings
        self.requests = BitbybitRequests(settings, variant_map)
        self.mapping = BitbybitMapping(settings, presentation, variant_map)
        self.upstream = upstream

    def build_create(self, request: PlaceOrderRequest) -> list[OutboundRequest]:
        return [self.requests.create(request)]

    # placeOrder ---------------------------------------------------------------------------

    def place(self, request: PlaceOrderRequest, deadline: Deadline) -> BikOrder:
        call = self.requests.create(request)  # an unmapped variant is refused here, before anything is sent
        response = self._send(call, deadline)
        code = response.status_code
        if not 200 <= code < 300:
            raise self._refusal(response)
        try:
            return self.mapping.placed(request, self._data(response, "create"))
        except (UpstreamError, *UNREADABLE) as exc:
            # Created, but the answer is unreadable: the service finds the order by its marker tag.
            raise UpstreamAmbiguous(f"bitbybit create answered {code} without a readable order ({exc})",
                                    status=502) from exc

    @staticmethod
    def _refusal(response: requests.Response) -> UpstreamError | OrderRejected:
        """The error for a create bitbybit answered below 500 without creating."""
        status, code, message = response.status_code, error_code(response), error_message(response)
        if status == 404 and code is None:
            return UpstreamError(f"bitbybit answered 404 for POST /orders without its error body: check "
                                 f"bitbybit.api_base_url ({message[:80]})", upstream_status=404)
        if code == "MISSING_COMPANY_ID":
            return UpstreamError(f"bitbybit could not tell which store the API key belongs to ({message}): "
                                 "create the key again in the store's Settings > Developer", upstream_status=status)
        if status in REJECTIONS:
            return OrderRejected(f"bitbybit refused the order: {message}")
        return UpstreamUnavailable(f"bitbybit create answered {status}: {message}", status=502,
                                   upstream_status=status)

    # getOrder -----------------------------------------------------------------------------

    def get(self, order_id: str, deadline: Deadline) -> BikOrder:
        if not ORDER_ID.match(order_id):
            raise OrderNotFound(f"order {order_id} not found")
        response = self._send(self.requests.get_order(order_id), deadline)
        if response.status_code == 404 or (response.status_code == 400
                                           and error_code(response) == "VALIDATION_ERROR"):
            raise OrderNotFound(f"order {order_id} not found")
        self._raise_for_status(response, "get_order")
        order = self._data(response, "get_order")
        if not isinstance(order, dict):
            raise UpstreamUnavailable(f"bitbybit answered order {order_id} with a {type(order).__name__}, "
                                      "not an order", status=502)
        if not self.mapping.is_ours(order):
            raise OrderNotFound(f"order {order_id} not found")
        return self._readable(self.mapping.current, order)

    # lookup -------------------------------------------------------------------------------

    def find_by_draft(self, draft_order_id: str, request: Optional[PlaceOrderRequest],
                      deadline: Deadline) -> Optional[BikOrder]:
        marker = self.requests.marker(draft_order_id)
        name = self.requests.customer_name(request) if request is not None else ""
        max_pages = self.settings.lookup_max_pages
        exhaustive = True
        if name:
            found, exhaustive = self._scan(marker, name, deadline, max_pages)
            if found is not None:
                return self._answer(found, request)
        # bitbybit files the order under an existing customer found by phone or email, whose stored name may
        # differ from Bik's; a create of the last minutes is among the store's newest orders. Without a name
        # (reconcile) these are all there is to search, as far as the bound allows.
        found, _ = self._scan(marker, None, deadline, 1 if name else max_pages)
        if found is not None:
            return self._answer(found, request)
        if not exhaustive:
            raise UpstreamUnavailable(
                f"bitbybit lookup of draft {draft_order_id} is inconclusive: more than "
                f"{self.settings.lookup_max_pages} pages of orders match its customer's name, so the bridge "
                "will not create it again blind; raise bitbybit.lookup_max_pages or check the store", status=503)
        return None

    def _answer(self, order: dict, request: Optional[PlaceOrderRequest]) -> BikOrder:
        if request is None:
            return self._readable(self.mapping.current, order)
        return self._readable(lambda o: self.mapping.placed(request, o), order)

    def _scan(self, marker: str, search: Optional[str], deadline: Deadline,
              max_pages: int) -> tuple[Optional[dict], bool]:
        """(the order carrying `marker`, whether every matching order was seen), newest `max_pages` pages."""
        orders, meta = self._page(1, search, deadline)
        if (hit := self._hit(orders, marker)) is not None or not meta.get("hasNextPage"):
            return hit, True
        limit = meta.get("limit") if isinstance(meta.get("limit"), int) and meta["limit"] > 0 else PAGE_LIMIT
        total = meta.get("total")
        total_pages = math.ceil(total / limit) if isinstance(total, int) and total > 0 else None
        if total_pages and _oldest_first(orders):
            # Oldest first (the sort is undocumented): page 1 told so; the newest orders are on the last pages.
            for page in range(total_pages, 1, -1)[:max_pages]:
                if (hit := self._hit(self._page(page, search, deadline)[0], marker)) is not None:
                    return hit, True
            return None, total_pages - 1 <= max_pages
        for page in range(2, max_pages + 1):
            orders, meta = self._page(page, search, deadline)
            if (hit := self._hit(orders, marker)) is not None or not meta.get("hasNextPage"):
                return hit, True
        return None, False

    def _hit(self, orders: list[dict], marker: str) -> Optional[dict]:
        mine = [o for o in orders if self.mapping.carries(o, marker)]
        # Two orders with one marker would be a duplicate made outside the bridge: Bik gets the first.
        return min(mine, key=lambda o: str(o.get("createdAt") or "")) if mine else None

    def _page(self, page: int, search: Optional[str], deadline: Deadline,
              operation: str = "list_orders") -> tuple[list[dict], dict]:
        response = self._send(self.requests.list_orders(page, search, operation), deadline)
        if response.status_code == 404:
            raise UpstreamError(f"bitbybit answered 404 for GET /orders: check bitbybit.api_base_url "
                                f"(now {self.requests.base})", upstream_status=404)
        self._raise_for_status(response, operation)
        try:
            body = response.json()
        except ValueError:
            raise UpstreamUnavailable(f"bitbybit {operation} answered with invalid JSON", status=502) from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise UpstreamUnavailable(f"bitbybit {operation} answered without a list of orders", status=502)
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        return [o for o in data if isinstance(o, dict)], meta

    # operations ---------------------------------------------------------------------------

    def warm_up(self) -> None:
        self.upstream.warm_up()

    def check_credentials(self, deadline: Deadline) -> str:
        # A search no order matches: proves the key reads orders, and that bitbybit honours the search
        # the lookup after a timeout relies on (an ignored search would answer with other orders).
        probe = f"bik-bridge-ping-{secrets.token_hex(8)}"
        orders, _ = self._page(1, probe, deadline, operation="ping")
        if orders:
            raise UpstreamError("bitbybit ignores the search parameter of GET /orders; after a timeout the bridge "
                                "could search only the newest orders for its own, so it refuses to run blind",
                                upstream_status=200)
        return (f"bitbybit at {self.requests.base}: orders readable with this key, search works "
                "(orders WRITE is proven by the first order)")

    # sending ------------------------------------------------------------------------------

    def _send(self, call: OutboundRequest, deadline: Deadline) -> requests.Response:
        try:
            return self.upstream.send(call, deadline)
        except UpstreamAuthError as exc:
            code = auth_code_in(exc.message)
            cause, fix = AUTH_CAUSES.get(code, ("bitbybit refused the API key", "check bitbybit.api_key"))
            log.error("bitbybit refused the bridge's API key: %s, %s", code or "no code", cause, extra={
                "operation": call.operation, "upstream_status": exc.upstream_status, "code": code or "unknown",
                "cause": cause, "fix": fix})
            raise

    @staticmethod
    def _raise_for_status(response: requests.Response, operation: str) -> None:
        if response.status_code >= 400:
            raise UpstreamUnavailable(f"bitbybit {operation} answered {response.status_code}: "
                                      f"{error_message(response)}", status=502, upstream_status=response.status_code)

    @staticmethod
    def _data(response: requests.Response, operation: str) -> Any:
        try:
            body = response.json()
        except ValueError:
            raise UpstreamUnavailable(f"bitbybit {operation} answered with invalid JSON", status=502) from None
        if not isinstance(body, dict) or "data" not in body:
            raise UpstreamUnavailable(f"bitbybit {operation} answered without its data envelope", status=502)
        return body["data"]

    @staticmethod
    def _readable(read, order: dict) -> BikOrder:
        try:
            return read(order)
        except UNREADABLE as exc:
            raise UpstreamUnavailable(f"bitbybit answered an order the bridge cannot read ({exc})",
                                      status=502) from exc


def build_bitbybit_adapter(config: Config, presentation: Presentation, session: requests.Session,
                           observer=None, gate: Optional[RateGate] = None) -> BitbybitAdapter:
    """The adapter for `platform: bitbybit`, wired as the composition root wants it."""
    settings = config.bitbybit
    if settings is None:
        raise ConfigError("platform is bitbybit but the bitbybit section is missing")
    variant_map = load_variant_map(settings.variant_map) if settings.variant_map else None
    upstream = Upstream(session, config.upstream, platform="bitbybit",
                        rate_headers=BitbybitRateLimit(settings.rate_limit_window_seconds),
                        message_of=error_message, observer=observer, gate=gate)
    return BitbybitAdapter(settings, presentation, upstream, variant_map)
