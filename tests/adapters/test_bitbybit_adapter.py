"""The bitbybit adapter against a mocked open API: what it sends, what it answers, how it fails and retries."""
from __future__ import annotations

import json
import logging
import time

import pytest
import requests
import responses
from responses import matchers

from adapters.bitbybit.adapter import BitbybitRateLimit
from adapters.bitbybit.errors import AUTH_CAUSES, auth_hint, error_message
from bridge.config import UpstreamConfig
from bridge.errors import (
    OrderNotFound,
    OrderRejected,
    UpstreamAmbiguous,
    UpstreamAuthError,
    UpstreamError,
    UpstreamUnavailable,
)
from bridge.presentation import Presentation
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

    with pytest.raises(UpstreamError) as failed:
        adapter.place(place_request, deadline)

    assert not isinstance(failed.value, OrderRejected)
    assert failed.value.status == 502 and "bitbybit.api_base_url" in failed.value.message


def test_a_key_without_company_is_a_bridge_problem_not_the_orders(adapter, place_request, deadline, rsps):
    rsps.add(responses.POST, ORDERS_URL, status=400, json=error("MISSING_COMPANY_ID"))

    with pytest.raises(UpstreamError) as failed:
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

    with pytest.raises(UpstreamUnavailable) as limited:
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

    assert unclear.value.status == 502
    assert len(rsps.calls) == 1


def test_a_redirected_create_is_not_followed_and_says_where_to(sleeps, place_request, deadline, rsps):
    old = "http://api.bitbybit.test/customer/open/v1"
    adapter = make_adapter(sleeps, settings=bbb_settings(api_base_url=old))
    rsps.add(responses.POST, f"{old}/orders", status=301, headers={"Location": ORDERS_URL})

    with pytest.raises(UpstreamError) as moved:
        adapter.place(place_request, deadline)

    assert ORDERS_URL in moved.value.message and "bitbybit.api_base_url" in moved.value.message
    assert moved.value.maybe_applied is False and moved.value.upstream_status == 301
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

    with pytest.raises(UpstreamUnavailable):
        adapter.get("ord_7f3a9c", deadline)

    assert len(rsps.calls) == 3


# ----------------------------------------------------------------------------------------------- lookup


def foreign(n: int, **fields) -> dict:
    return bbb_order(id=f"ord_f{n}", tags=["walk-in"], **fields)


def test_lookup_finds_the_order_by_the_customers_name(adapter, place_request, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=listing([foreign(1), bbb_order()]), match=search(1, "Bik Tester"))

    found = adapter.find_by_draft(DRAFT, place_request, deadline)

    assert found.id == "ord_7f3a9c" and found.partnersData == {"id": DRAFT}
    assert found.items == place_request.order.items  # the placeOrder answer, as for a fresh create
    assert len(rsps.calls) == 1


def test_lookup_searches_the_newest_orders_when_the_name_finds_nothing(adapter, place_request, deadline, rsps):
    # bitbybit filed the order under an existing customer with another stored name.
    rsps.add(responses.GET, ORDERS_URL, json=listing([]), match=search(1, "Bik Tester"))
    rsps.add(responses.GET, ORDERS_URL, json=listing([foreign(1), bbb_order()]), match=search(1))

    assert adapter.find_by_draft(DRAFT, place_request, deadline).id == "ord_7f3a9c"
    assert len(rsps.calls) == 2


def test_lookup_answers_none_when_every_name_match_was_seen(sleeps, place_request, deadline, rsps):
    adapter = make_adapter(sleeps, settings=bbb_settings(lookup_max_pages=2))
    rsps.add(responses.GET, ORDERS_URL, json=listing([foreign(1)]), match=search(1, "Bik Tester"))
    rsps.add(responses.GET, ORDERS_URL, json=listing([foreign(2)], total=900, has_next=True), match=search(1))

    assert adapter.find_by_draft(DRAFT, place_request, deadline) is None
    assert len(rsps.calls) == 2  # after the name search, the newest page only: a create of the last minutes


def test_lookup_pages_newest_first_within_the_bound(sleeps, place_request, deadline, rsps):
    adapter = make_adapter(sleeps, settings=bbb_settings(lookup_max_pages=3))
    newest = [foreign(n, createdAt=f"2024-05-08T10:00:{59 - n:02d}.000Z") for n in range(4)]
    rsps.add(responses.GET, ORDERS_URL, json=listing(newest[:2], total=400, has_next=True),
             match=search(1, "Bik Tester"))
    rsps.add(responses.GET, ORDERS_URL, json=listing([newest[2], bbb_order()], page=2, total=400, has_next=True),
             match=search(2, "Bik Tester"))

    assert adapter.find_by_draft(DRAFT, place_request, deadline).id == "ord_7f3a9c"
    assert len(rsps.calls) == 2


def test_lookup_reads_the_last_pages_first_when_bitbybit_lists_oldest_first(sleeps, deadline, rsps):
    adapter = make_adapter(sleeps, settings=bbb_settings(lookup_max_pages=2))
    oldest = [foreign(1, createdAt="2023-01-01T00:00:00.000Z"), foreign(2, createdAt="2023-01-02T00:00:00.000Z")]
    rsps.add(responses.GET, ORDERS_URL, json=listing(oldest, total=450, has_next=True), match=search(1))
    rsps.add(responses.GET, ORDERS_URL, json=listing([foreign(3)], page=5, total=450), match=search(5))
    rsps.add(responses.GET, ORDERS_URL, json=listing([bbb_order()], page=4, total=450, has_next=True),
             match=search(4))

    found = adapter.find_by_draft(DRAFT, None, deadline)  # reconcile: no request, so no name

    assert found.id == "ord_7f3a9c"
    assert [c.request.params["page"] for c in rsps.calls] == ["1", "5", "4"]


def test_lookup_that_could_not_see_every_name_match_refuses_to_say_absent(sleeps, place_request, deadline, rsps):
    adapter = make_adapter(sleeps, settings=bbb_settings(lookup_max_pages=2))
    for page in (1, 2):
        rsps.add(responses.GET, ORDERS_URL, json=listing([foreign(page)], page=page, total=900, has_next=True),
                 match=search(page, "Bik Tester"))
    rsps.add(responses.GET, ORDERS_URL, json=listing([foreign(8)], total=900, has_next=True), match=search(1))

    with pytest.raises(UpstreamUnavailable, match="inconclusive"):
        adapter.find_by_draft(DRAFT, place_request, deadline)

    assert len(rsps.calls) == 3  # two pages by name, the newest page of the store: bounded


def test_lookup_without_a_request_reads_the_current_order(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=listing([bbb_order(financialStatus="paid")]), match=search(1))

    found = adapter.find_by_draft(DRAFT, None, deadline)

    assert found.paymentStatus == "paid" and found.items[0].variantId == 40946134352009


def test_lookup_ignores_orders_with_another_drafts_marker(adapter, place_request, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=listing([bbb_order(tags=[MARKER + "0"])]),
             match=search(1, "Bik Tester"))
    rsps.add(responses.GET, ORDERS_URL, json=listing([bbb_order(tags=["x" + MARKER])]), match=search(1))

    assert adapter.find_by_draft(DRAFT, place_request, deadline) is None


def test_a_lookup_answer_that_is_not_a_listing_is_an_error(adapter, place_request, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=envelope({"id": "x"}))

    with pytest.raises(UpstreamUnavailable):
        adapter.find_by_draft(DRAFT, place_request, deadline)


# ----------------------------------------------------------------------------------------------- ping


def test_check_credentials_reads_once_with_a_search_nothing_matches(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=listing([]))

    reached = adapter.check_credentials(deadline)

    assert "orders readable" in reached and API_BASE in reached
    assert len(rsps.calls) == 1
    assert rsps.calls[0].request.params["search"].startswith("bik-bridge-ping-")


def test_check_credentials_refuses_a_search_bitbybit_ignores(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, json=listing([bbb_order()]))

    with pytest.raises(UpstreamError, match="ignores the search parameter"):
        adapter.check_credentials(deadline)


def test_check_credentials_on_a_wrong_base_url(adapter, deadline, rsps):
    rsps.add(responses.GET, ORDERS_URL, status=404, body="Not Found")

    with pytest.raises(UpstreamError, match="check bitbybit.api_base_url") as failed:
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
    seconds = BitbybitRateLimit.reset_seconds(answer(429, **{"RateLimit-Reset": str(int(time.time()) + 20)}))

    assert 18 <= seconds <= 21


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
