"""The BigCommerce v2 Orders adapter: sends what the builder makes, maps what comes back."""
from __future__ import annotations

import logging
import secrets
import threading
from concurrent.futures import Executor
from typing import Any, Optional

import requests
from cachetools import LRUCache

from adapters import UNREADABLE
from adapters.bigcommerce.builder import BigCommerceRequests
from adapters.bigcommerce.mapping import BigCommerceMapping, consigned
from adapters.bigcommerce.settings import BigCommerceConfig
from bridge.core.deadline import Deadline
from bridge.core.errors import (
    OrderNotFound,
    OrderRejected,
    UpstreamAmbiguous,
    UpstreamFailed,
    UpstreamMisconfigured,
)
from bridge.core.models import BikOrder, PlaceOrderRequest
from bridge.core.platform import AdapterParts
from bridge.core.ports import Lookup
from bridge.core.presentation import Presentation
from bridge.ops.context import note_fallback
from bridge.upstream.client import Upstream
from bridge.upstream.outbound import OutboundRequest

log = logging.getLogger("bik_bridge.bigcommerce")

# Why a status read took the slower path, as `bik_bridge_read_fallbacks_total` counts it.
FALLBACK_REASON = "consignments_not_inlined"
# BigCommerce's refusals of the order itself; its 404 means a wrong store. `Upstream.send` raised every other one.
REJECTIONS = frozenset({400, 409, 422})


class BigCommerceRateLimit:
    """BigCommerce announces its quota in milliseconds."""

    @staticmethod
    def reset_seconds(response: requests.Response) -> Optional[float]:
        value = response.headers.get("X-Rate-Limit-Time-Reset-Ms")
        try:
            return max(0.0, float(value) / 1000) if value is not None else None
        except ValueError:
            return None

    @staticmethod
    def requests_left(response: requests.Response) -> Optional[int]:
        value = response.headers.get("X-Rate-Limit-Requests-Left")
        return int(value) if value is not None and value.lstrip("-").isdigit() else None

    @staticmethod
    def quota(response: requests.Response) -> Optional[tuple[int, float]]:
        quota = response.headers.get("X-Rate-Limit-Requests-Quota", "")
        window = response.headers.get("X-Rate-Limit-Time-Window-Ms", "")
        if not (quota.isdigit() and window.isdigit()) or int(quota) < 1 or int(window) < 1:
            return None
        return int(quota), int(window) / 1000


def error_message(response: requests.Response) -> str:
    """The human message from a v2 error array or a v3 error object."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "")[:300]
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return str(body[0].get("message") or body[0])[:300]
    if isinstance(body, dict):
        return str(body.get("title") or body.get("message") or body)[:300]
    return str(body)[:300]


def _list(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 1  # unreadable: assume something shipped, so the shipments are read


def has_shipped(order: Any, products: Any) -> bool:
    """Whether an order may have shipments: BigCommerce ships items, and counts them on the order and its lines."""
    if not isinstance(order, dict):
        return False  # not found or unreadable: get() answers that without the shipments
    if "items_shipped" not in order or _count(order["items_shipped"]):
        return True
    return any(_count(line.get("quantity_shipped")) for line in _list(products))


class ShippedOrderIds:
    """Ids of orders known to have shipped, the least recently read forgotten first beyond `limit`.

    Such an order reads its shipments in the first round trip; a forgotten one costs one more if read again.
    """

    def __init__(self, limit: int = 10_000):
        self._ids: LRUCache[int, bool] = LRUCache(maxsize=limit)
        # A read reorders the ids, and the adapter's reader threads share them.
        self._lock = threading.Lock()

    def seen(self, order_id: int) -> bool:
        with self._lock:
            return self._ids.get(order_id, False)

    def add(self, order_id: int) -> None:
        with self._lock:
            self._ids[order_id] = True


class BigCommerceAdapter:
    """Bik's placeOrder and getOrder on a BigCommerce store."""

    name = "bigcommerce"

    def __init__(self, settings: BigCommerceConfig, presentation: Presentation, upstream: Upstream, pool: Executor):
        self.requests = BigCommerceRequests(settings)
        self.mapping = BigCommerceMapping(settings, presentation)
        self.upstream = upstream
        self.pool = pool
        self.shipped = ShippedOrderIds()
        self._fallback_logged = False  # the older answer is logged once per process; the metric counts each

    def build_create(self, request: PlaceOrderRequest) -> list[OutboundRequest]:
        return [self.requests.create(request)]

    def place(self, request: PlaceOrderRequest, deadline: Deadline) -> BikOrder:
        response = self.upstream.send(self.requests.create(request), deadline)
        if response.status_code in REJECTIONS:
            raise OrderRejected(f"BigCommerce refused the order: {error_message(response)}")
        if response.status_code == 404:
            raise UpstreamMisconfigured("BigCommerce create: store or resource not found "
                                        "(check bigcommerce.store_hash and api_base_url)", upstream_status=404)
        try:
            return self.mapping.placed(request, response.json())
        except UNREADABLE as exc:  # invalid JSON is a ValueError too
            # A 2xx created the order even when its answer cannot be read: the service finds it by its draft id.
            raise UpstreamAmbiguous(f"BigCommerce create answered without a readable order ({exc})") from exc

    def get(self, order_id: str, deadline: Deadline) -> BikOrder:
        numeric = self._order_number(order_id)
        order, products, shipments, addresses = self._fetch(numeric, deadline)
        if order is not None and not isinstance(order, dict):
            raise UpstreamFailed(f"BigCommerce answered order {order_id} with a {type(order).__name__}, "
                                 "not an order")
        if order is None or not self.mapping.is_ours(order):
            raise OrderNotFound(f"order {order_id} not found")
        try:
            return self.mapping.current(order, _list(products), _list(shipments), _list(addresses))
        except UNREADABLE as exc:
            raise UpstreamFailed(f"BigCommerce answered an order the bridge cannot read ({exc})") from exc

    def _fetch(self, numeric: int, deadline: Deadline) -> tuple[Any, Any, Any, Any]:
        """The order with its lines and addresses in one request; its shipments only once items shipped.

        An order known to have shipped reads its shipments alongside the order: two requests, one round trip.
        """
        shipments_read = None
        if self.shipped.seen(numeric):
            shipments_read = self.pool.submit(self._read, self.requests.shipments(numeric), deadline)
        order = self._read(self.requests.get_order(numeric), deadline)
        if not isinstance(order, dict) or not self.mapping.is_ours(order):
            return order, None, None, None  # not found, unreadable or not Bik's: get() answers that as it is
        try:
            inlined = consigned(order)
        except UNREADABLE:
            inlined = None
        if inlined is not None:
            products, addresses = inlined.lines, inlined.addresses
        else:
            products, addresses = self._sub_resources(numeric, deadline)
        if shipments_read is not None:
            return order, products, shipments_read.result(), addresses
        shipments = None
        if has_shipped(order, products):
            # The first read of an order that has shipped: one more round trip, then remembered.
            shipments = self._read(self.requests.shipments(numeric), deadline)
            self.shipped.add(numeric)
        return order, products, shipments, addresses

    def _sub_resources(self, numeric: int, deadline: Deadline) -> tuple[Any, Any]:
        """Lines and addresses of an order answered without its consignments object: two more reads, at once."""
        note_fallback(FALLBACK_REASON)
        if not self._fallback_logged:
            self._fallback_logged = True
            log.warning("BigCommerce answered an order without its consignments object; reading its lines and "
                        "addresses apart (two more requests per status read)", extra={"orderId": str(numeric)})
        addresses_read = self.pool.submit(self._read, self.requests.shipping_addresses(numeric), deadline)
        products = self._read(self.requests.products(numeric), deadline)
        return products, addresses_read.result()

    def find_by_draft(self, draft_order_id: str, request: Optional[PlaceOrderRequest], deadline: Deadline,
                      since: Optional[float]) -> Lookup:
        # The filter answers exactly, so `since` has nothing to add.
        found = self._read(self.requests.find_by_draft(draft_order_id), deadline)
        if found is None or found == []:
            return Lookup.absent()  # 204: no order carries the draft id
        if not isinstance(found, list):
            raise UpstreamFailed(f"BigCommerce answered the lookup with a {type(found).__name__}, "
                                 "not a list of orders")
        carrying = [o for o in found if isinstance(o, dict) and o.get("external_order_id") == draft_order_id]
        try:
            ours = sorted((o for o in carrying if self.mapping.is_ours(o)), key=lambda o: int(o.get("id") or 0))
            if ours:
                if request is None:
                    return Lookup.found(self.get(str(ours[0]["id"]), deadline))
                return Lookup.found(self.mapping.placed(request, ours[0]))
        except UNREADABLE as exc:
            raise UpstreamFailed(f"BigCommerce answered an order the bridge cannot read ({exc})") from exc
        if len(carrying) == len(found):
            # The filter held, but its orders carry another external_source (the setting changed, or another app
            # rewrote it): creating again could make a second order for this draft.
            return Lookup.inconclusive(
                f"BigCommerce holds an order carrying draft {draft_order_id} whose external_source is not "
                f"{self.mapping.settings.external_source!r}: check bigcommerce.external_source")
        return Lookup.inconclusive(
            f"BigCommerce answered the lookup of draft {draft_order_id} by external_order_id with other orders: "
            "the store ignores the filter, so nothing proves whether the order exists. Run `bik-bridge "
            "check-config --ping`, and look in the store for an order whose external_order_id is the draft id")

    def warm_up(self) -> None:
        self.upstream.warm_up()

    def check_credentials(self, deadline: Deadline) -> str:
        # A draft id no order carries: it proves the token and that the store honours the filter
        # that exactly-once depends on (an ignored filter would answer with other orders).
        probe = f"bik-bridge-ping-{secrets.token_hex(8)}"
        found = self._read(self.requests.find_by_draft(probe), deadline)
        if found:
            raise UpstreamFailed("BigCommerce ignores the external_order_id filter on GET /v2/orders; the bridge "
                                 "could not find its orders after a timeout, so it refuses to run exactly-once blind",
                                 upstream_status=200)
        return f"BigCommerce store {self.requests.settings.store_hash}: orders readable, lookup by draft id works"

    @staticmethod
    def _order_number(order_id: str) -> int:
        if not (order_id.isascii() and order_id.isdigit()) or len(order_id) > 18:
            raise OrderNotFound(f"order {order_id} not found")
        return int(order_id)

    def _read(self, call: OutboundRequest, deadline: Deadline) -> Any:
        """A GET's JSON; None for BigCommerce's empty 204 and an order's 404 (the order list's 404 is a wrong store)."""
        response = self.upstream.send(call, deadline)
        if response.status_code == 404 and call.operation == "list_orders":
            raise UpstreamMisconfigured("BigCommerce store not found: check bigcommerce.store_hash and api_base_url",
                                        upstream_status=404)
        if response.status_code in (204, 404):
            return None
        if response.status_code >= 400:
            raise UpstreamFailed(f"BigCommerce {call.operation} failed: {response.status_code} "
                                 f"{error_message(response)}", upstream_status=response.status_code)
        try:
            return response.json()
        except ValueError:
            raise UpstreamFailed(f"BigCommerce {call.operation} answered with invalid JSON") from None


def rate_limit_headers(settings: BigCommerceConfig) -> BigCommerceRateLimit:
    """How BigCommerce announces a store's quota: the same headers on every store."""
    return BigCommerceRateLimit()


def adapter_from(parts: AdapterParts) -> BigCommerceAdapter:
    """The adapter over what the composition root built: its `Upstream` and its parallel read pool."""
    return BigCommerceAdapter(parts.settings, parts.presentation, parts.upstream, parts.pool)
