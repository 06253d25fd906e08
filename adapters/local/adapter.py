"""The `local` platform: orders kept in SQLite, so the whole Bik flow runs with no store account."""
from __future__ import annotations

import sqlite3
import time
from typing import Optional

from pydantic import ValidationError

from adapters.sqlite import os_thread_local
from bridge.core.deadline import Deadline
from bridge.core.errors import BadRequest, OrderNotFound, UpstreamAmbiguous, UpstreamFailed, UpstreamUnreachable
from bridge.core.models import BikOrder, DeliveryInfo, PlaceOrderRequest
from bridge.core.platform import AdapterParts
from bridge.core.ports import Lookup
from bridge.core.presentation import Presentation
from bridge.upstream.outbound import OutboundRequest

SCHEMA = """
CREATE TABLE IF NOT EXISTS local_orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    draft_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'ORDERED',
    payment_status TEXT NOT NULL,
    fulfillment_status TEXT NOT NULL DEFAULT 'unfulfilled',
    tracking_url TEXT,
    placed TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)
"""
FIRST_NUMBER = 1000  # ids read L-1001, L-1002, ...
STATUSES = ("ORDERED", "IN PROGRESS", "DELIVERED", "CANCELLED")
PAYMENTS = ("pending", "paid", "refunded")
FULFILLMENTS = ("unfulfilled", "partial", "fulfilled")


def order_id_of(seq: int) -> str:
    return f"L-{FIRST_NUMBER + seq}"


def seq_of(order_id: str) -> Optional[int]:
    prefix, _, number = order_id.partition("-")
    # isdigit() alone lets through digits of other scripts that int() then refuses, or reads as another id.
    if prefix != "L" or not (number.isascii() and number.isdigit()) or len(number) > 12:
        return None
    return int(number) - FIRST_NUMBER


class LocalAdapter:
    """A persistent echo store: placeOrder saves, getOrder reads, `local set-status` moves orders along."""

    name = "local"

    def __init__(self, path: str, presentation: Presentation):
        self.path = path
        self.presentation = presentation
        # One connection per OS thread: a SQLite call never lets another greenlet run, so the greenlets of a
        # gevent worker share one instead of opening one per client connection.
        self._local = os_thread_local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)
            self._local.db = db
        return db

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._db().execute(sql, args)
        except sqlite3.Error as exc:
            # This file is the local platform, not the idempotency store: the platform is unreachable.
            raise UpstreamUnreachable(f"local order store: {exc}") from exc

    def build_create(self, request: PlaceOrderRequest) -> list[OutboundRequest]:
        record = {"draft_id": request.draftOrderId, "order": request.order.model_dump(mode="json")}
        return [OutboundRequest("INSERT", f"sqlite:///{self.path}#local_orders", "create", json=record)]

    def place(self, request: PlaceOrderRequest, deadline: Deadline) -> BikOrder:
        placed = request.model_dump_json(include={"draftOrderId", "paymentPending", "order"})
        now = time.time()
        # The draft id is unique in the table, so even a replay with a lost record cannot duplicate.
        # WHERE NOT EXISTS keeps a replay from reaching the insert: an ignored insert still uses up an
        # AUTOINCREMENT number, a gap in the order ids. OR IGNORE covers two writers passing that check at once.
        self._run(
            "INSERT OR IGNORE INTO local_orders (draft_id, payment_status, placed, created_at, updated_at) "
            "SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM local_orders WHERE draft_id = ?)",
            (request.draftOrderId, "pending" if request.paymentPending else "paid", placed, now, now,
             request.draftOrderId),
        )
        try:
            return self._order(self._row_of(request.draftOrderId))
        except (UpstreamUnreachable, UpstreamFailed) as exc:
            # The order is in the table now: whatever keeps it from being read back, it must be found, not re-sent.
            message = f"local order store: the order was saved but not read back ({exc.message})"
            raise UpstreamAmbiguous(message) from exc

    def get(self, order_id: str, deadline: Deadline) -> BikOrder:
        seq = seq_of(order_id)
        row = self._run("SELECT * FROM local_orders WHERE seq = ?", (seq,)).fetchone() if seq is not None else None
        if row is None:
            raise OrderNotFound(f"order {order_id} not found")
        return self._order(row)

    def find_by_draft(self, draft_order_id: str, request: Optional[PlaceOrderRequest], deadline: Deadline,
                      since: Optional[float]) -> Lookup:
        # The table is the whole store and the draft id is unique in it: a missing row proves absence.
        row = self._row_of(draft_order_id)
        return Lookup.found(self._order(row)) if row else Lookup.absent()

    def _row_of(self, draft_order_id: str) -> Optional[tuple]:
        return self._run("SELECT * FROM local_orders WHERE draft_id = ?", (draft_order_id,)).fetchone()

    def warm_up(self) -> None:
        self._run("SELECT 1")

    def check_credentials(self, deadline: Deadline) -> str:
        count = self._run("SELECT COUNT(*) FROM local_orders").fetchone()[0]
        return f"local order store {self.path}: {count} orders"

    def set_status(self, order_id: str, status: Optional[str] = None, payment: Optional[str] = None,
                   fulfillment: Optional[str] = None, tracking_url: Optional[str] = None) -> BikOrder:
        """Move an order along, as a merchant would in a real store."""
        for value, allowed, what in ((status, STATUSES, "status"), (payment, PAYMENTS, "payment"),
                                     (fulfillment, FULFILLMENTS, "fulfillment")):
            if value is not None and value not in allowed:
                raise BadRequest(f"{what} must be one of {', '.join(allowed)}")
        seq = seq_of(order_id)
        changes = {"status": status, "payment_status": payment, "fulfillment_status": fulfillment,
                   "tracking_url": tracking_url}
        changes = {k: v for k, v in changes.items() if v is not None}
        if seq is not None and changes:
            assignments = ", ".join(f"{k} = ?" for k in changes)
            self._run(f"UPDATE local_orders SET {assignments}, updated_at = ? WHERE seq = ?",
                      (*changes.values(), time.time(), seq))
        return self.get(order_id, Deadline(1))

    def _order(self, row: tuple) -> BikOrder:
        seq, draft_id, status, payment, fulfillment, tracking, placed, _, _ = row
        try:
            request = PlaceOrderRequest.model_validate_json(placed)
        except ValidationError:
            # A row written before the request checks tightened: unreadable, not a crash.
            raise UpstreamFailed(f"local order {order_id_of(seq)} was stored in a form this version cannot "
                                 "read") from None
        bik = request.order
        order_id = order_id_of(seq)
        return BikOrder(
            id=order_id,
            name=self.presentation.name(order_id, number=str(FIRST_NUMBER + seq), draft_id=draft_id),
            status=status,
            paymentStatus=payment,
            items=list(bik.items),
            subTotal=bik.subTotal,
            shippingCharge=bik.shippingCharge,
            discount=bik.discount,
            total=bik.total,
            currency=self.presentation.currency_for(bik.currency, None),
            address=bik.address,
            phoneNumber=bik.phoneNumber or (bik.address.phoneNumber if bik.address else None),
            email=bik.email,
            invoiceUrl=self.presentation.invoice_url(order_id, number=str(FIRST_NUMBER + seq), draft_id=draft_id),
            fulfillmentStatus=fulfillment,
            deliveryInfo=DeliveryInfo(trackingURL=tracking) if tracking else None,
            partnersData={"id": draft_id},
        )


def adapter_from(parts: AdapterParts) -> LocalAdapter:
    """The adapter over the configured orders file; it talks no HTTP, so it takes no `Upstream`."""
    return LocalAdapter(parts.settings.db_path, parts.presentation)
