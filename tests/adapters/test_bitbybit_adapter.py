"""The bitbybit adapter against a mocked open API and the fake store: what it sends and answers, how it fails,
retries and finds its orders again."""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

import pytest
import requests
import responses
from responses import matchers

from adapters.bitbybit.adapter import BitbybitRateLimit
from adapters.bitbybit.errors import AUTH_CAUSES, auth_hint, error_message
from bridge.config import UpstreamConfig
from bridge.core.errors import (
    OrderNotFound,
    OrderRejected,
    RateLimited,
    UpstreamAmbiguous,
    UpstreamAuthError,
    UpstreamFailed,
    UpstreamMisconfigured,
    UpstreamUnreachable,
)
from bridge.core.ports import Lookup, LookupResult
from bridge.core.presentation import Presentation
from tests.adapters.bitbybit_support import (
    API_BASE,
    DRAFT,
    KEY,
    MARKER,
    ORDERS_URL,
    RecordedLog,
    bbb_order,
    bbb_settings,
    envelope,
    error,
    listing,
    make_adapter,
)


@pytest.fixture
def adapter(sleeps):
    return make_adapter(sleeps)


def body_of(call) -> dict:
    return json.loads(call.request.body)


def search(page: int, term: str | None = None) -> list:
    params = {"page": str(page), "limit": "100", **({"search": term} if term else {})}
    return [matchers.query_param_matcher(params)]


# ----------------------------------------------------------------------------------------------- place


def test_place_sends_one_create_and_answers_with_the_stores_order(adapter, place_request, deadline, rsps):
    rsps.add(responses.POST, ORDERS_URL, status=201, json=envelope(bbb_order()))

    order = adapter.place(place_request, deadline)

    assert len(rsps.calls) == 1
    sent = rsps.calls[0].request
    assert sent.headers["x-api-key"] == KEY and sent.headers["Accept"] == "application/json"
    assert body_of(rsps.calls[0]) == adapter.requests.create_body(place_request)
    assert (order.id, order.name, order.total, order.status) == ("ord_7f3a9c", "#1001", 998, "ORDERED")


def test_any_2xx_is_a_created_order(adapter, place_request, deadline, rsps):
    rsps.add(responses.POST, ORDERS_URL, status=200, json=envelope(bbb_order()))

    assert adapter.place(place_request, deadline).id == "ord_7f3a9c"


@pytest.mark.parametrize(("status", "body", "expected"), [
    (400, error("VALIDATION_ERROR", "shippingAddress.province is required"),
     "VALIDATION_ERROR: shippingAddress.province is required"),
    (404, error("NOT_FOUND", "Product variant 40946134352009 not found"),
     "NOT_FOUND: Product variant 40946134352009 not found"),
    (422, error("OUT_OF_STOCK", "Not enough stock"), "OUT_OF_STOCK: Not enough stock"),
])
def test_refused_orders_are_422_with_bitbybits_reason(adapter, place_request, deadline, rsps, status, body, expected):
    rsps.add(responses.POST, ORDERS_URL, status=status, json=body)

    with pytest.raises(OrderRejected) as refused:
        adapter.place(place_request, deadline)

    assert refused.value.status == 422
    assert expected in refused.value.message
    assert len(rsps.calls) == 1


def test_a_404_without_bitbybits_envelope_points_at_the_base_url(adapter, place_request, deadline, rsps):
    rsps.add(responses.POST, ORDERS_URL, status=404, json={"message": "Cannot POST /orders", "statusCode": 404})

    with pytest.raises(UpstreamMisconfigured) as failed:
        adapter.place(place_request, deadline)

    assert not isinstance(failed.value, OrderRejected)
    assert failed.value.status == 502 and "bitbybit.api_base_url" in failed.value.message


def test_a_key_without_company_is_a_bridge_problem_not_the_orders(adapter, place_request, deadline, rsps):
    rsps.add(responses.POST, ORDERS_URL, status=400, json=error("MISSING_COMPANY_ID"))

    with pytest.raises(UpstreamAuthError) as failed:
        adapter.place(place_request, deadline)

    assert failed.value.status == 502 and "MISSING_COMPANY_ID" in failed.value.message


@pytest.mark.parametrize(("status", "code", "cause"), [
    (401, "MISSING_API_KEY", "no API key reached bitbybit"),
    (401, "INVALID_API_KEY", "invalid, revoked or expired"),
    (403, "INSUFFICIENT_SCOPE", "lacks a scope"),
    (403, "IP_NOT_ALLOWED", "not in the API key's allowlist"),
])
def test_a_refused_key_is_502_and_logged_with_its_cause(adapter, place_request, deadline, rsps, status, code, cause):
    rsps.add(responses.POST, ORDERS_URL, status=status, json=error(code))

    with RecordedLog() as log, pytest.raises(UpstreamAuthError) as refused:
        adapter.place(place_request, deadline)

    assert refused.value.status == 502 and refused.value.upstream_status == status
    assert code in refused.value.message and cause in refused.value.message
    assert len(rsps.calls) == 1
    [line] = [r for r in log.records if r.levelno == logging.ERROR]
    assert line.getMessage() == f"bitbybit refused the bridge's API key: {code}, {AUTH_CAUSES[code][0]}"
    assert (line.code, line.cause, line.upstream_status) == (code, AUTH_CAUSES[code][0], status)
    assert KEY not in log.text


def test_429_waits_the_announced_reset_then_sends_the_create_again(adapter, place_request, deadline, rsps, sleeps):
    rsps.add(responses.POST, ORDERS_URL, status=429, json=error("RATE_LIMIT_EXCEEDED"),
             headers={"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "3"})
    rsps.add(responses.POST, ORDERS_URL, status=201, json=envelope(bbb_order()))

    order = adapter.place(place_request, deadline)

    assert order.id == "ord_7f3a9c"
    assert len(rsps.calls) == 2  # a 429 surely created nothing
    assert sleeps.calls == [pytest.approx(3, abs=0.2)]


def test_429_beyond_the_wait_cap_is_503_with_retry_after(sleeps, place_request, deadline, rsps):
    adapter = make_adapter(sleeps, upstream=UpstreamConfig(rate_limit_wait_cap_seconds=5))
    rsps.add(responses.POST, ORDERS_URL, status=429, json=error("RATE_LIMIT_EXCEEDED"),
             headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "40"})

    with pytest.raises(RateLimited) as limited:
        adapter.place(place_request, deadline)

    assert limited.value.status == 503 and limited.value.retry_after == pytest.approx(40, abs=1)
    assert sleeps.calls == [] and len(rsps.calls) == 1


def test_a_spent_quota_holds_the_next_request_until_the_reset(adapter, deadline, rsps, sleeps):
    rsps.add(responses.GET, f"{ORDERS_URL}/ord_7f3a9c", json=envelope(bbb_order()),
             headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "2"})

    adapter.get("ord_7f3a9c", deadline)
    adapter.get("ord_7f3a9c", deadline)

    assert sleeps.calls == [pytest.approx(2, abs=0.2)]


@pytest.mark.parametrize("failure", [
    {"status": 503, "json": error("SERVICE_UNAVAILABLE")},
    {"status": 500, "json": error("INTERNAL_ERROR")},
    {"body": requests.exceptions.ReadTimeout("read timed out")},
    {"body": requests.exceptions.ConnectionError("connection reset by peer")},
])
def test_a_create_that_may_have_landed_is_never_sent_again(adapter, place_request, deadline, rsps, failure):
    rsps.add(responses.POST, ORDERS_URL, **failure)

    with pytest.raises(UpstreamAmbiguous):
        adapter.place(place_request, deadline)

    assert len(rsps.calls) == 1


def test_a_create_that_surely_never_left_is_sent_again(adapter, place_request, deadline, rsps):
    rsps.add(responses.POST, ORDERS_URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    rsps.add(responses.POST, ORDERS_URL, status=201, json=envelope(bbb_order()))

    assert adapter.place(place_request, deadline).id == "ord_7f3a9c"
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("answer", [
    {"body": "<html>created</html>"},
    {"json": {"id": "ord_1"}},
    {"json": envelope({"orderNumber": "1001"})},
    {"json": envelope(["not", "an", "order"])},
])
def test_a_created_order_with_an_unreadable_answer_is_ambiguous(adapter, place_request, deadline, rsps, answer):
    rsps.add(responses.POST, ORDERS_URL, status=201, **answer)

    with pytest.raises(UpstreamAmbiguous) as unclear:
        adapter.place(place_request, deadline)

    assert unclear.value.status == 504  # what Bik sees for every unconfirmed create
    assert len(rsps.calls) == 1


def test_a_redirected_create_is_not_followed_and_says_where_to(sleeps, place_request, deadline, rsps):
    old = "http://api.bitbybit.test/customer/open/v1"
    adapter = make_adapter(sleeps, settings=bbb_settings(api_base_url=old))
    rsps.add(responses.POST, f"{old}/orders", status=301, headers={"Location": ORDERS_URL})

    with pytest.raises(UpstreamAmbiguous) as moved:
        adapter.place(place_request, deadline)

    # Whoever answered the redirect may have passed the order on: it is looked up, never re-sent.
    assert ORDERS_URL in moved.value.message and "bitbybit.api_base_url" in moved.value.message
    assert moved.value.maybe_applied is True and moved.value.upstream_status == 301
    assert len(rsps.calls) == 1  # a redirected order is never sent again, to the new address or as a GET


# ----------------------------------------------------------------------------------------------- get


def test_get_reads_the_order(adapter, deadline, rsps):
    rsps.add(responses.GET, f"{ORDERS_URL}/ord_7f3a9c", json=envelope(bbb_order(fulfillmentStatus="fulfilled")))

    order = adapter.get("ord_7f3a9c", deadline)

    assert (order.id, order.status, order.fulfillmentStatus) == ("ord_7f3a9c", "IN PROGRESS", "fulfilled")
    assert len(rsps.calls) == 1


@pytest.mark.parametrize(("status", "body"), [
    (404, error("NOT_FOUND", "Order not found")),
    (404, {"message": "not found"}),
    (400, error("VALIDATION_ERROR", "id must be a cuid")),
])
def test_get_unknown_is_not_found(adapter, deadline, rsps, status, body):
    rsps.add(responses.GET, f"{ORDERS_URL}/nope", status=status, json=body)

    with pytest.raises(OrderNotFound):
        adapter.get("nope", deadline)


def test_get_hides_orders_without_the_marker(adapter, deadline, rsps):
    rsps.add(responses.GET, f"{ORDERS_URL}/ord_x", json=envelope(bbb_order(id="ord_x", tags=["walk-in"])))

    with pytest.raises(OrderNotFound):
        adapter.get("ord_x", deadline)


def test_scope_all_reads_every_order(sleeps, deadline, rsps):
    adapter = make_adapter(sleeps, presentation=Presentation(scope_all=True))
    rsps.add(responses.GET, f"{ORDERS_URL}/ord_x", json=envelope(bbb_order(id="ord_x", tags=[])))

    assert adapter.get("ord_x", deadline).partnersData is None


@pytest.mark.parametrize("order_id", ["ord/../x", "a b", "x" * 129, "ord?x=1"])
def test_ids_that_cannot_be_bitbybits_are_not_sent(adapter, deadline, rsps, order_id):
    with pytest.raises(OrderNotFound):
        adapter.get(order_id, deadline)

    assert len(rsps.calls) == 0


@pytest.mark.parametrize("first", [
    {"status": 503, "json": error("SERVICE_UNAVAILABLE")},
    {"body": requests.exceptions.ConnectionError("reset")},
    {"body": requests.exceptions.ReadTimeout("slow")},
])
def test_reads_are_retried(adapter, deadline, rsps, sleeps, first):
    url = f"{ORDERS_URL}/ord_7f3a9c"
    rsps.add(responses.GET, url, **first)
    rsps.add(responses.GET, url, json=envelope(bbb_order()))

    assert adapter.get("ord_7f3a9c", deadline).id == "ord_7f3a9c"
    assert len(rsps.calls) == 2 and len(sleeps.calls) == 1


def test_reads_give_up_after_max_attempts(sleeps, deadline, rsps):
    adapter = make_adapter(sleeps, upstream=UpstreamConfig(max_attempts=3))
    rsps.add(responses.GET, f"{ORDERS_URL}/ord_7f3a9c", status=503, json=error("SERVICE_UNAVAILABLE"))

    with pytest.raises(UpstreamUnreachable):
        adapter.get("ord_7f3a9c", deadline)

    assert len(rsps.calls) == 3


# ----------------------------------------------------------------------------------------------- lookup

SINCE = 1715200000.0 - 300  # DRAFT's own time, less the clock margin


def at(seconds: float) -> str:
    """An ISO-8601 createdAt `seconds` after SINCE (before it when negative)."""
    return datetime.fromtimestamp(SINCE + seconds, timezone.utc).isoformat(timespec="milliseconds")


def walk_in(n: int, seconds: Optional[float], **fields) -> dict:
    """An order of another customer, made in the dashboard `seconds` after SINCE."""
    stamp = at(seconds) if seconds is not None else None
    customer = {"id": f"cus_{n}", "firstName": "Asha", "lastName": "Rao", "email": None, "phoneNumber": None}
    return bbb_order(id=f"ord_f{n}", tags=["walk-in"], customer=customer, createdAt=stamp, updatedAt=stamp,
                     **fields)


def store(newer: int, older: int = 0, ours: Optional[int] = None, stored_name: Optional[str] = None) -> list[dict]:
    """The store's orders, newest first: `newer` made after SINCE, then `older` before it.

    `ours` is the index of the draft's order among them; `stored_name` files it under a returning customer.
    """
    moments = [60.0 * (newer - i) for i in range(newer)] + [-60.0 * (i + 1) for i in range(older)]
    orders = [walk_in(i, moment) for i, moment in enumerate(moments)]
    if ours is not None:
        first, last = (stored_name or "Bik Tester").split()
        orders[ours] = bbb_order(createdAt=at(moments[ours]), updatedAt=at(moments[ours]),
                                 customer={"id": "cus_0", "firstName": first, "lastName": last})
    return orders


class Listing:
    """GET /orders over a list of orders (newest first), `per_page` a page, sorted as bitbybit might sort it."""

    def __init__(self, orders: list[dict], per_page: int = 2, oldest_first: bool = False, meta: bool = True,
                 total: bool = True, miscount: int = 0):
        self.orders = orders[::-1] if oldest_first else orders
        self.per_page = per_page
        self.meta, self.total, self.miscount = meta, total, miscount

    def __call__(self, request) -> tuple[int, dict, str]:
        params = request.params
        term = params.get("search", "").lower()
        found = [o for o in self.orders
                 if term in f"{o['customer']['firstName']} {o['customer']['lastName']}".lower()]
        page = int(params["page"])
        chunk = found[(page - 1) * self.per_page: page * self.per_page]
        body = listing(chunk, page=page, limit=self.per_page, total=len(found) + self.miscount,
                       has_next=page * self.per_page < len(found))
        if not self.meta:
            del body["meta"]
        elif not self.total:
            del body["meta"]["total"]
        return 200, {}, json.dumps(body)


def serve(rsps, orders: list[dict], **listing_options) -> None:
    rsps.add_callback(responses.GET, ORDERS_URL, callback=Listing(orders, **listing_options))


def pages_read(rsps) -> list[str]:
    """The pages the lookup asked for, in order: "3" for the store's page 3, "Bik Tester 1" for a name's."""
    return [" ".join(filter(None, (c.request.params.get("search"), c.request.params["page"]))) for c in rsps.calls]


FOUND, ABSENT, INCONCLUSIVE = LookupResult.FOUND, LookupResult.ABSENT, LookupResult.INCONCLUSIVE
NAME = "Bik Tester"


@pytest.mark.parametrize(("orders", "options", "by_name", "since", "max_pages", "result", "pages"), [
    pytest.param(store(12, ours=7), {}, True, SINCE, 5, FOUND, ["1", f"{NAME} 1"],
                 id="found by name in a busy store"),
    pytest.param(store(12, ours=1, stored_name="Asha Rao"), {}, True, SINCE, 5, FOUND, ["1"],
                 id="a create of the last minutes is on the store's newest page"),
    pytest.param(store(12, ours=5, stored_name="Asha Rao"), {}, True, SINCE, 5, FOUND,
                 ["1", f"{NAME} 1", "2", "3"], id="returning customer under a stored name found by the store scan"),
    pytest.param(store(5, 10), {}, True, SINCE, 5, ABSENT, ["1", f"{NAME} 1", "2", "3"],
                 id="absent: the store scan read back past since"),
    pytest.param(store(1, 10), {}, True, SINCE, 5, ABSENT, ["1"],
                 id="absent in one read on a store of modest traffic"),
    pytest.param(store(5), {}, True, SINCE, 5, ABSENT, ["1", f"{NAME} 1", "2", "3"],
                 id="absent: the store scan reached the end of the orders"),
    pytest.param(store(5), {}, True, None, 5, ABSENT, ["1", f"{NAME} 1", "2", "3"],
                 id="absent without since: the end of the orders"),
    pytest.param(store(20), {}, True, SINCE, 3, INCONCLUSIVE, ["1", f"{NAME} 1", "2"],
                 id="the page bound comes before since"),
    pytest.param(store(2, 30), {}, True, None, 5, INCONCLUSIVE, ["1", f"{NAME} 1", "2", "3", "4"],
                 id="since unknown on a store bigger than the bound"),
    pytest.param(store(20), {}, False, SINCE, 5, INCONCLUSIVE, ["1", "2", "3", "4", "5"],
                 id="reconcile on a busy store"),
    pytest.param(store(3, 10), {}, False, SINCE, 5, ABSENT, ["1", "2"],
                 id="reconcile on a quiet store"),
    pytest.param(store(12, ours=2, stored_name="Asha Rao"), {"oldest_first": True}, False, SINCE, 5, FOUND,
                 ["1", "6", "5"], id="oldest first: the last pages are read first"),
    pytest.param(store(3, 9), {"oldest_first": True}, True, SINCE, 5, ABSENT, ["1", "6", f"{NAME} 1", "5"],
                 id="oldest first: absent once a page starts before since"),
    pytest.param(store(3, 3), {"oldest_first": True, "total": False}, True, SINCE, 5, ABSENT,
                 ["1", f"{NAME} 1", "2", "3"], id="oldest first without a total: the end of the orders"),
    pytest.param(store(3, 9), {"oldest_first": True, "total": False}, False, SINCE, 5, INCONCLUSIVE,
                 ["1", "2", "3", "4", "5"], id="oldest first without a total: only the end proves"),
    pytest.param(store(3, 9, ours=0), {"oldest_first": True, "miscount": -2}, False, SINCE, 5, INCONCLUSIVE,
                 ["1", "5", "4", "3", "2"], id="oldest first with a total that undercounts: never absent"),
    pytest.param(store(3, 9), {"meta": False}, True, SINCE, 5, ABSENT, ["1", f"{NAME} 1", "2"],
                 id="a listing without meta still reaches since"),
    pytest.param(store(3), {"meta": False}, True, SINCE, 5, ABSENT, ["1", f"{NAME} 1", "2", "3"],
                 id="without meta only an empty page is the end"),
])
def test_lookup(sleeps, place_request, deadline, rsps, orders, options, by_name, since, max_pages, result, pages):
    adapter = make_adapter(sleeps, settings=bbb_settings(lookup_max_pages=max_pages))
    serve(rsps, orders, **options)

    found = adapter.find_by_draft(DRAFT, place_request if by_name else None, deadline, since)

    assert found.result is result
    assert pages_read(rsps) == pages
    if result is FOUND:
        assert found.order.id == "ord_7f3a9c" and found.order.partnersData == {"id": DRAFT}
    if result is INCONCLUSIVE:
        assert "raise bitbybit.lookup_max_pages" in found.reason.lower()
        assert "bik-bridge reconcile" in found.reason and MARKER in found.reason


def test_a_name_search_that_saw_every_match_never_proves_absence(sleeps, place_request, deadline, rsps):
    # bitbybit may have filed the order under the returning customer's stored name, which no search for
    # Bik's name finds: only the store scan can prove absence, and here it runs out of pages first.
    adapter = make_adapter(sleeps, settings=bbb_settings(lookup_max_pages=3))
    serve(rsps, store(20, ours=12, stored_name="Asha Rao"))

    found = adapter.find_by_draft(DRAFT, place_request, deadline, SINCE)

    assert found.result is INCONCLUSIVE
    assert pages_read(rsps) == ["1", f"{NAME} 1", "2"]


def test_the_inconclusive_reason_says_why_and_what_to_do(sleeps, deadline, rsps):
    adapter = make_adapter(sleeps, settings=bbb_settings(lookup_max_pages=2))
    serve(rsps, store(20))

    bounded = adapter.find_by_draft(DRAFT, None, deadline, SINCE)
    unknown = adapter.find_by_draft(DRAFT, None, deadline, None)

    assert "4 of 20 orders read (2 pages" in bounded.reason
    assert "created before 2024-05-08T20:21:40+00:00" in bounded.reason
    assert "bitbybit.lookup_max_pages (2)" in bounded.reason
    assert "could have been made is unknown" in unknown.reason


@pytest.mark.parametrize("boundary", [
    pytest.param({"createdAt": None}, id="no createdAt"),
    pytest.param({"createdAt": "2024-05-08T20:20:00"}, id="a time without a zone"),
    pytest.param({"createdAt": "yesterday"}, id="not a time"),
    pytest.param({"updatedAt": at(30)}, id="changed since: the sort may be by last change"),
])
def test_an_order_that_cannot_show_it_is_older_than_since_proves_nothing(sleeps, deadline, rsps, boundary):
    orders = store(2, 9)
    orders[2].update(boundary)  # the last order of page 1, where the scan would first pass SINCE
    adapter = make_adapter(sleeps)
    serve(rsps, orders, per_page=3)

    assert adapter.find_by_draft(DRAFT, None, deadline, SINCE).result is ABSENT
    assert pages_read(rsps) == ["1", "2"]  # page 2 proves it instead


@pytest.mark.parametrize(("max_pages", "result"), [(3, INCONCLUSIVE), (4, ABSENT)])
def test_orders_without_readable_times_prove_absence_only_at_the_end(sleeps, deadline, rsps, max_pages, result):
    adapter = make_adapter(sleeps, settings=bbb_settings(lookup_max_pages=max_pages))
    serve(rsps, [walk_in(n, None) for n in range(8)])  # four pages

    found = adapter.find_by_draft(DRAFT, None, deadline, SINCE)

    assert found.result is result
    assert len(rsps.calls) == max_pages
    assert result is ABSENT or "no creation time" in found.reason


def test_lookup_answers_like_the_create_when_bik_sent_the_request(adapter, place_request, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=listing([walk_in(1, 60), bbb_order()]), match=search(1))

    found = adapter.find_by_draft(DRAFT, place_request, deadline, SINCE)

    assert found.order.items == place_request.order.items  # the placeOrder answer, as for a fresh create
    assert len(rsps.calls) == 1


def test_lookup_without_a_request_reads_the_current_order(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=listing([bbb_order(financialStatus="paid")]), match=search(1))

    found = adapter.find_by_draft(DRAFT, None, deadline, None)

    assert found.order.paymentStatus == "paid" and found.order.items[0].variantId == 40946134352009


def test_lookup_ignores_orders_with_another_drafts_marker(adapter, place_request, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=listing([bbb_order(tags=[MARKER + "0"]), bbb_order(tags=["x" + MARKER])]),
             match=search(1))

    assert adapter.find_by_draft(DRAFT, place_request, deadline, SINCE) == Lookup.absent()


def test_a_lookup_answer_that_is_not_a_listing_is_an_error(adapter, place_request, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=envelope({"id": "x"}))

    with pytest.raises(UpstreamFailed):
        adapter.find_by_draft(DRAFT, place_request, deadline, SINCE)


@pytest.fixture(scope="module")
def bitbybit_api_key() -> str:
    return KEY  # the key the adapter sends


@pytest.fixture
def fake_store(fake_bitbybit):
    return fake_bitbybit


def test_a_returning_customers_order_is_found_past_the_newest_page_of_a_real_listing(sleeps, fake_store,
                                                                                     place_request, deadline):
    adapter = make_adapter(sleeps, settings=bbb_settings(api_base_url=fake_store.api_base_url))
    fake_store.add_customer("Asha", "Rao", phone="+919876543210")  # Bik says "Bik Tester"; bitbybit keeps Asha Rao
    since = time.time() - 300
    placed = adapter.place(place_request, deadline)
    for n in range(150):
        fake_store.add_order(tags=["walk-in"], phone=f"+9198000{n:05d}", email=None)

    found = adapter.find_by_draft(DRAFT, place_request, deadline, since)

    assert fake_store.order(placed.id)["customer"]["firstName"] == "Asha"
    assert found == Lookup.found(placed)
    assert [r.query for r in fake_store.requests if r.method == "GET"] == [
        "page=1&limit=100", "page=1&limit=100&search=Bik+Tester", "page=2&limit=100"]


@pytest.mark.parametrize(("since_known", "result", "reads"), [(True, ABSENT, 1), (False, INCONCLUSIVE, 2)])
def test_a_real_listing_proves_absence_once_it_reads_past_since(sleeps, fake_store, deadline, since_known, result,
                                                                reads):
    adapter = make_adapter(sleeps, settings=bbb_settings(api_base_url=fake_store.api_base_url, lookup_max_pages=2))
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    for n in range(250):
        fake_store.add_order(tags=["walk-in"], phone=f"+9198000{n:05d}", email=None,
                             created_at=yesterday if n < 230 else None)

    found = adapter.find_by_draft(DRAFT, None, deadline, time.time() - 300 if since_known else None)

    assert found.result is result
    assert len(fake_store.requests) == reads


# ----------------------------------------------------------------------------------------------- ping


def test_check_credentials_reads_once_with_a_search_nothing_matches(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=listing([]))

    reached = adapter.check_credentials(deadline)

    assert "orders readable" in reached and API_BASE in reached
    assert len(rsps.calls) == 1
    assert rsps.calls[0].request.params["search"].startswith("bik-bridge-ping-")


def test_check_credentials_refuses_a_search_bitbybit_ignores(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=listing([bbb_order()]))

    with pytest.raises(UpstreamFailed, match="ignores the search parameter"):
        adapter.check_credentials(deadline)


def test_check_credentials_on_a_wrong_base_url(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, status=404, body="Not Found")

    with pytest.raises(UpstreamMisconfigured, match="check bitbybit.api_base_url") as failed:
        adapter.check_credentials(deadline)

    assert failed.value.upstream_status == 404


# ----------------------------------------------------------------------------------------------- helpers


def answer(status: int = 200, **headers) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    return response


@pytest.mark.parametrize(("headers", "reset", "left"), [
    ({"RateLimit-Reset": "30", "RateLimit-Remaining": "7"}, 30.0, 7),
    ({"RateLimit-Reset": "1.5", "RateLimit-Remaining": "0"}, 1.5, 0),
    ({"Retry-After": "4"}, 4.0, None),
    ({"RateLimit-Reset": "soon", "RateLimit-Remaining": "many"}, None, None),
    ({"RateLimit-Reset": "-3"}, 0.0, None),
    ({}, None, None),
])
def test_rate_limit_headers(headers, reset, left):
    assert BitbybitRateLimit.reset_seconds(answer(429, **headers)) == reset
    assert BitbybitRateLimit.requests_left(answer(429, **headers)) == left


def test_a_reset_given_as_a_timestamp_is_read_as_seconds_from_now():
    before = time.time()
    reset = int(before) + 20
    seconds = BitbybitRateLimit.reset_seconds(answer(429, **{"RateLimit-Reset": str(reset)}))
    after = time.time()

    assert reset - after <= seconds <= reset - before  # seconds from the moment it was read


@pytest.mark.parametrize(("status", "message", "hint"), [
    (401, "INVALID_API_KEY: Invalid or revoked API key", "Settings > Developer"),
    (401, "MISSING_API_KEY: header required", "bitbybit.auth_header"),
    (403, "INSUFFICIENT_SCOPE: lacks orders:write", "orders READ and orders WRITE scopes"),
    (403, "IP_NOT_ALLOWED: not allowed", "IP allowlist"),
    (401, "Unauthorized", "bitbybit.api_key is invalid"),
    (403, "Forbidden", "lacks the orders READ/WRITE scopes"),
])
def test_auth_hints_say_what_to_change(status, message, hint):
    assert hint in auth_hint(status, message)


def test_error_messages_read_the_envelope():
    def with_body(body) -> requests.Response:
        response = answer(400)
        response._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return response

    assert error_message(with_body(error("VALIDATION_ERROR", "bad"))) == "VALIDATION_ERROR: bad"
    assert error_message(with_body({"error": "flat"})) == '{"error": "flat"}'
    assert error_message(with_body("gateway down")) == "gateway down"
    assert "not in the API key's allowlist" in error_message(with_body(error("IP_NOT_ALLOWED", "no")))
