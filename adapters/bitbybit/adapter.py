"""The bitbybit open API adapter: sends what the builder makes, maps what comes back.

bitbybit has no idempotency key on order create, so the bridge tags each order with a marker carrying
the draft id and finds it again by listing orders: the store's newest, those matching the customer's
name, then the store's older ones, `bitbybit.lookup_max_pages` pages in all. Only the store's listing,
read back past the earliest moment the order could have been made (or to its end), proves it absent.
"""
from __future__ import annotations

import logging
import math
import re
import secrets
import time
from typing import Any, Optional

import requests

from adapters import UNREADABLE
from adapters.bitbybit.builder import PAGE_LIMIT, BitbybitRequests
from adapters.bitbybit.errors import AUTH_CAUSES, auth_code_in, error_code, error_message
from adapters.bitbybit.lookup import OrderScan, PageBudget, iso
from adapters.bitbybit.mapping import BitbybitMapping
from adapters.bitbybit.settings import BitbybitConfig
from adapters.bitbybit.variant_map import VariantMap, load_variant_map
from bridge.core.deadline import Deadline
from bridge.core.errors import (
    OrderNotFound,
    OrderRejected,
    UpstreamAmbiguous,
    UpstreamAuthError,
    UpstreamFailed,
    UpstreamMisconfigured,
)
from bridge.core.models import BikOrder, PlaceOrderRequest
from bridge.core.platform import AdapterParts
from bridge.core.ports import Lookup
from bridge.core.presentation import Presentation
from bridge.upstream.client import Upstream
from bridge.upstream.outbound import OutboundRequest

log = logging.getLogger("bik_bridge.bitbybit")

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


class BitbybitAdapter:
    """Bik's placeOrder and getOrder on a bitbybit store."""

    name = "bitbybit"

    def __init__(self, settings: BitbybitConfig, presentation: Presentation, upstream: Upstream,
                 variant_map: Optional[VariantMap] = None):
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
        except (UpstreamFailed, *UNREADABLE) as exc:
            # Created, but the answer is unreadable: the service finds the order by its marker tag.
            raise UpstreamAmbiguous(f"bitbybit create answered {code} without a readable order ({exc})") from exc

    @staticmethod
    def _refusal(response: requests.Response) -> UpstreamMisconfigured | UpstreamAuthError | OrderRejected:
        """The error for a create bitbybit refused in its body (400, 404, 409, 422: `Upstream.send` raised the rest)."""
        status, code, message = response.status_code, error_code(response), error_message(response)
        if status == 404 and code is None:
            return UpstreamMisconfigured(f"bitbybit answered 404 for POST /orders without its error body: check "
                                         f"bitbybit.api_base_url ({message[:80]})", upstream_status=404)
        if code == "MISSING_COMPANY_ID":
            return UpstreamAuthError(f"bitbybit could not tell which store the API key belongs to ({message}): "
                                     "create the key again in the store's Settings > Developer",
                                     upstream_status=status)
        return OrderRejected(f"bitbybit refused the order: {message}")

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
            raise UpstreamFailed(f"bitbybit answered order {order_id} with a {type(order).__name__}, "
                                 "not an order")
        if not self.mapping.is_ours(order):
            raise OrderNotFound(f"order {order_id} not found")
        return self._readable(self.mapping.current, order)

    # lookup -------------------------------------------------------------------------------

    def find_by_draft(self, draft_order_id: str, request: Optional[PlaceOrderRequest], deadline: Deadline,
                      since: Optional[float]) -> Lookup:
        marker = self.requests.marker(draft_order_id)
        name = self.requests.customer_name(request) if request is not None else ""
        budget = PageBudget(self.settings.lookup_max_pages)
        store = self._scan(marker, None, since, deadline)
        # The budget is shared, the proof first. 1. The store's newest page: a create of the last minutes
        # is there, and on a store of modest traffic that page already reaches `since` and settles the lookup
        # in one read (two when bitbybit lists oldest first). 2. The customer's name, only if that did not
        # settle it: it finds an older order among many in a page or two, but proves nothing by missing,
        # as bitbybit files a returning customer's order under the name it stored; it gets a quarter of the
        # budget, two pages at least so an oldest-first listing reaches its newest page. 3. The rest of the
        # store, newest first, with whatever is left: only this scan can prove the order absent.
        store.read_newest(budget)
        if not store.settled and name:
            by_name = self._scan(marker, name, since, deadline)
            by_name.advance(budget, max(2, budget.pages // 4))
            if by_name.hit is not None:
                return Lookup.found(self._answer(by_name.hit, request))
        store.advance(budget, budget.left)
        if store.hit is not None:
            return Lookup.found(self._answer(store.hit, request))
        if store.proves_absence:
            return Lookup.absent()
        return Lookup.inconclusive(self._inconclusive(draft_order_id, marker, since, store))

    def _scan(self, marker: str, search: Optional[str], since: Optional[float], deadline: Deadline) -> OrderScan:
        return OrderScan(lambda page: self._page(page, search, deadline), lambda orders: self._hit(orders, marker),
                         since, PAGE_LIMIT)

    def _inconclusive(self, draft_order_id: str, marker: str, since: Optional[float], store: OrderScan) -> str:
        """Why the scan proved nothing, and what settles the draft."""
        seen = store.state
        back_to = f", back to one created {iso(seen.oldest_seen)}" if seen.oldest_seen is not None else ""
        of_total = f" of {seen.total}" if seen.total else ""
        if since is None:
            why = ("the moment its order could have been made is unknown (no record of a first attempt, and the "
                   "draft id carries no time), so only the end of the store's orders proves it absent")
        elif store.direction is None:
            why = ("bitbybit's orders carry no creation time the bridge can read, so only the end of the store's "
                   "orders proves it absent")
        else:
            why = (f"proving it absent means reading back to orders created before {iso(since)}, the earliest "
                   "it could have been made")
        return (f"bitbybit lookup of draft {draft_order_id} is inconclusive: {seen.orders_seen}{of_total} orders "
                f"read ({seen.pages_read} pages{back_to}) do not carry its tag; {why}, and "
                f"bitbybit.lookup_max_pages ({self.settings.lookup_max_pages}) ends the scan before that. Raise "
                f"bitbybit.lookup_max_pages and run `bik-bridge reconcile`, or look in the store for an order "
                f"tagged {marker}")

    def _answer(self, order: dict, request: Optional[PlaceOrderRequest]) -> BikOrder:
        if request is None:
            return self._readable(self.mapping.current, order)
        return self._readable(lambda o: self.mapping.placed(request, o), order)

    def _hit(self, orders: list[dict], marker: str) -> Optional[dict]:
        mine = [o for o in orders if self.mapping.carries(o, marker)]
        # Two orders with one marker would be a duplicate made outside the bridge: Bik gets the first.
        return min(mine, key=lambda o: str(o.get("createdAt") or "")) if mine else None

    def _page(self, page: int, search: Optional[str], deadline: Deadline,
              operation: str = "list_orders") -> tuple[list[dict], dict]:
        response = self._send(self.requests.list_orders(page, search, operation), deadline)
        if response.status_code == 404:
            raise UpstreamMisconfigured(f"bitbybit answered 404 for GET /orders: check bitbybit.api_base_url "
                                        f"(now {self.requests.base})", upstream_status=404)
        self._raise_for_status(response, operation)
        try:
            body = response.json()
        except ValueError:
            raise UpstreamFailed(f"bitbybit {operation} answered with invalid JSON") from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise UpstreamFailed(f"bitbybit {operation} answered without a list of orders")
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
            raise UpstreamFailed("bitbybit ignores the search parameter of GET /orders; after a timeout the bridge "
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
            raise UpstreamFailed(f"bitbybit {operation} answered {response.status_code}: "
                                 f"{error_message(response)}", upstream_status=response.status_code)

    @staticmethod
    def _data(response: requests.Response, operation: str) -> Any:
        try:
            body = response.json()
        except ValueError:
            raise UpstreamFailed(f"bitbybit {operation} answered with invalid JSON") from None
        if not isinstance(body, dict) or "data" not in body:
            raise UpstreamFailed(f"bitbybit {operation} answered without its data envelope")
        return body["data"]

    @staticmethod
    def _readable(read, order: dict) -> BikOrder:
        try:
            return read(order)
        except UNREADABLE as exc:
            raise UpstreamFailed(f"bitbybit answered an order the bridge cannot read ({exc})") from exc


def rate_limit_headers(settings: BitbybitConfig) -> BitbybitRateLimit:
    """How bitbybit announces the key's quota, counted in the configured window."""
    return BitbybitRateLimit(settings.rate_limit_window_seconds)


def adapter_from(parts: AdapterParts) -> BitbybitAdapter:
    """The adapter over the `Upstream` the composition root built, with the configured variant map read."""
    settings = parts.settings
    variant_map = load_variant_map(settings.variant_map) if settings.variant_map else None
    return BitbybitAdapter(settings, parts.presentation, parts.upstream, variant_map)
