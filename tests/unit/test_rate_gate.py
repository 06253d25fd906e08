"""The quota gate: at most the announced quota in any window's length, a few requests until one is announced,
and nothing at all while the platform says the quota is spent."""
from __future__ import annotations

import heapq
import itertools
import math

import pytest
import requests

from adapters.bigcommerce.adapter import BigCommerceRateLimit
from adapters.bitbybit.adapter import BitbybitRateLimit
from bridge.upstream.quota import (
    FIRST_CONTACT,
    FIRST_CONTACT_POLL_SECONDS,
    RESET_MARGIN_SECONDS,
    Ledger,
    LocalQuota,
    QuotaNews,
    RateGate,
    counted,
    news_of,
    spread,
    take_slot,
)

from .fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def quota(clock) -> LocalQuota:
    return LocalQuota(clock)


def takes(quota: LocalQuota, count: int) -> list[float]:
    return [quota.reserve() for _ in range(count)]


def answer(status: int = 200, **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    return response


def test_until_a_quota_is_announced_only_a_few_requests_go_and_the_rest_ask_again_soon(quota, clock):
    first, window = FIRST_CONTACT
    assert takes(quota, first) == [0.0] * first
    assert quota.reserve() == pytest.approx(FIRST_CONTACT_POLL_SECONDS)
    assert quota.blocked_for() == 0
    clock.advance(0.05)
    quota.learn(QuotaNews(quota=100, window=30.0))  # the first answer
    assert quota.reserve() == 0.0


def test_without_an_announcement_the_first_contact_pace_holds(quota, clock):
    first, window = FIRST_CONTACT
    sent = 0
    while clock.now < 1000.0 + window + spread(window):
        if quota.reserve() == 0.0:
            sent += 1
        clock.advance(FIRST_CONTACT_POLL_SECONDS)
    assert sent == first


def test_an_answer_without_quota_headers_leaves_the_bridge_unmetered(quota):
    quota.reserve()
    quota.learn(QuotaNews())
    assert takes(quota, 500) == [0.0] * 500


def test_a_429_that_announces_nothing_teaches_nothing(quota):
    first, _ = FIRST_CONTACT
    quota.learn(QuotaNews(limited=True))
    assert takes(quota, first + 1)[-1] > 0  # still holding to the first-contact pace


def test_the_announced_quota_is_never_exceeded_in_any_window(quota, clock):
    quota.learn(QuotaNews(quota=3, window=10.0))

    assert takes(quota, 3) == [0.0] * 3
    span = 10.0 + spread(10.0)
    assert quota.reserve() == pytest.approx(span)
    clock.advance(4)
    assert quota.reserve() == pytest.approx(span - 4)
    clock.advance(span - 4)
    assert quota.reserve() == 0.0  # the oldest send has aged out: one slot


def test_a_slot_for_the_next_request_is_taken_only_when_one_is_free_now(quota, clock):
    quota.learn(QuotaNews(quota=3, window=10.0))

    assert quota.reserve_with_next() == (0.0, pytest.approx(spread(10.0)))  # two of the three slots
    assert quota.reserve_with_next() == (0.0, 0.0)  # the last one: none left for the next request
    span = 10.0 + spread(10.0)
    assert quota.reserve_with_next() == (pytest.approx(span), 0.0)


def test_the_next_requests_slot_counts_from_the_latest_time_it_may_be_used(quota, clock):
    """Logged the spread ahead: a request sent with it, however late it may be, counts a whole window."""
    quota.learn(QuotaNews(quota=2, window=10.0))
    span = 10.0 + spread(10.0)

    assert quota.reserve_with_next() == (0.0, pytest.approx(spread(10.0)))
    clock.advance(span)
    assert quota.reserve() == 0.0  # the first send has aged out, the next one's has not
    assert quota.reserve() == pytest.approx(spread(10.0))
    clock.advance(spread(10.0))
    assert quota.reserve() == 0.0


@pytest.mark.parametrize("news", [
    QuotaNews(quota=1, window=10.0),  # a quota of one never has a second slot
    QuotaNews(),  # unmetered: nothing is logged, so a slot held for later could not be counted if a quota came
    None,  # before any announcement: first contact's window is too short for a lookup to answer within the spread
])
def test_no_next_slot_under_a_quota_of_one_none_or_none_announced_yet(quota, news):
    if news is not None:
        quota.learn(news)
    assert quota.reserve_with_next() == (0.0, 0.0)


def test_a_spent_quota_takes_no_next_slot(quota, clock):
    quota.learn(QuotaNews(quota=100, window=30.0, spent_for=2.0))
    wait, next_for = quota.reserve_with_next()
    assert wait > 0 and next_for == 0.0


def test_sends_before_the_announcement_count_against_the_quota(quota, clock):
    assert takes(quota, 2) == [0.0, 0.0]
    quota.learn(QuotaNews(quota=3, window=10.0))
    assert quota.reserve() == 0.0
    assert quota.reserve() > 0


def test_a_lower_quota_waits_until_enough_sends_have_aged_out(quota, clock):
    quota.learn(QuotaNews(quota=10, window=10.0))
    for _ in range(10):
        assert quota.reserve() == 0.0
        clock.advance(1.0)
    quota.learn(QuotaNews(quota=2, window=10.0))  # the plan changed: 10 sends in the log, 2 allowed
    # Free again once only one send is younger than the span: when the ninth (sent at 8 s) ages out.
    assert quota.reserve() == pytest.approx(8.0 + 10.0 + spread(10.0) - 10.0)


@pytest.mark.parametrize("news", [QuotaNews(spent_for=2.0, limited=True),
                                  QuotaNews(quota=100, window=30.0, spent_for=2.0)])
def test_a_spent_quota_stops_every_request_until_the_reset(quota, clock, news):
    quota.learn(QuotaNews(quota=100, window=30.0))
    quota.learn(news)

    assert quota.reserve() == pytest.approx(2.0 + RESET_MARGIN_SECONDS)
    assert quota.blocked_for() == pytest.approx(2.0 + RESET_MARGIN_SECONDS)
    clock.advance(2.0 + RESET_MARGIN_SECONDS)
    assert quota.reserve() == 0.0
    assert quota.blocked_for() == 0


def test_an_earlier_reset_does_not_shorten_a_longer_one(quota, clock):
    quota.learn(QuotaNews(spent_for=5.0, limited=True))
    quota.learn(QuotaNews(spent_for=1.0, limited=True))  # a late answer: still spent for at least the 5 s
    assert quota.blocked_for() == pytest.approx(5.0 + RESET_MARGIN_SECONDS)


@pytest.mark.parametrize("limit", [(3, 10.0), (2, 10.0), None])
@pytest.mark.parametrize("now", [1005.0, 1012.0, 1014.9, 1016.0, 1030.0])
def test_two_entries_of_the_log_decide_as_the_whole_log_would(limit, now):
    """What the shared ledger reads of its log: the send `quota` places from the newest decides for all of them,
    and the one a place newer whether the next request's slot is free too."""
    log = [1000.0 + i for i in range(10)]
    quota = counted(limit)
    span = (limit or FIRST_CONTACT)[1] + spread((limit or FIRST_CONTACT)[1])
    live = [sent for sent in log if sent > now - span]
    expected_wait = max(1e-6, live[len(live) - quota] + span - now) if len(live) >= quota else 0.0
    if not limit:
        expected_wait = min(expected_wait, FIRST_CONTACT_POLL_SECONDS) if expected_wait else 0.0

    slot = take_slot(Ledger(limit, log[-quota], next_deciding_send=log[1 - quota]), now, with_next=True)
    assert slot.wait == pytest.approx(expected_wait)
    assert (slot.next_for > 0) is (limit is not None and len(live) + 2 <= quota)  # only once announced


@pytest.mark.parametrize("status, headers, expected", [
    (200, {"X_Rate_Limit_Requests_Quota": "150", "X_Rate_Limit_Time_Window_Ms": "30000",
           "X_Rate_Limit_Time_Reset_Ms": "4000", "X_Rate_Limit_Requests_Left": "7"}, QuotaNews(150, 30.0)),
    (200, {"X_Rate_Limit_Requests_Quota": "150", "X_Rate_Limit_Time_Window_Ms": "30000",
           "X_Rate_Limit_Time_Reset_Ms": "4000", "X_Rate_Limit_Requests_Left": "0"}, QuotaNews(150, 30.0, 4.0)),
    (429, {"X_Rate_Limit_Time_Reset_Ms": "800"}, QuotaNews(spent_for=0.8, limited=True)),
    (429, {}, None),  # load shedding: nothing to learn, the retry backs off
    (200, {}, QuotaNews()),
    (200, {"X_Rate_Limit_Requests_Quota": "0", "X_Rate_Limit_Time_Window_Ms": "30000"}, QuotaNews()),
    (200, {"X_Rate_Limit_Requests_Quota": "lots", "X_Rate_Limit_Time_Window_Ms": "30000"}, QuotaNews()),
])
def test_what_bigcommerce_answers_say(status, headers, expected):
    assert news_of(BigCommerceRateLimit(), answer(status, **headers)) == expected


def test_bitbybit_announces_the_quota_in_the_configured_window():
    headers = {"RateLimit_Limit": "100", "RateLimit_Remaining": "0", "RateLimit_Reset": "12"}
    assert news_of(BitbybitRateLimit(60.0), answer(200, **headers)) == QuotaNews(100, 60.0, 12.0)


def test_the_gate_learns_from_the_answers_it_sees(clock):
    gate = RateGate(BigCommerceRateLimit(), clock=clock)
    gate.observe(answer(200, X_Rate_Limit_Requests_Quota="2", X_Rate_Limit_Time_Window_Ms="4000",
                        X_Rate_Limit_Time_Reset_Ms="4000", X_Rate_Limit_Requests_Left="1"))

    assert [gate.reserve(), gate.reserve()] == [0.0, 0.0]
    assert gate.reserve() == pytest.approx(4.0 + spread(4.0))


# ------------------------------------------------------------------------------- against a simulated platform


class WindowedPlatform:
    """BigCommerce's fixed window: it opens with the first request after the last one ended."""

    def __init__(self, clock: FakeClock, quota: int, window: float, whole_seconds: bool = False) -> None:
        self.clock, self.quota, self.window, self.whole_seconds = clock, quota, window, whole_seconds
        self.start: float | None = None
        self.used = 0
        self.accepted = 0
        self.refused = 0

    def receive(self) -> QuotaNews:
        now = self.clock()
        if self.start is None or now >= self.start + self.window:
            self.start, self.used = now, 0
        limited = self.used >= self.quota
        if limited:
            self.refused += 1
        else:
            self.used += 1
            self.accepted += 1
        remaining = self.start + self.window - now
        # BigCommerce sends whole milliseconds rounded down; bitbybit whole seconds rounded up.
        reset = math.ceil(remaining) if self.whole_seconds else int(remaining * 1000) / 1000
        spent = limited or self.quota == self.used
        return QuotaNews(self.quota, self.window, reset if spent else None, limited)


@pytest.mark.parametrize("latency", [0.0002, 0.01, 0.06])
@pytest.mark.parametrize("clients", [3, 12, 40])
@pytest.mark.parametrize("headers", ["milliseconds", "seconds"])
def test_from_the_first_request_on_the_gate_never_sends_over_the_quota(latency, clients, headers):
    """Many clients sharing one gate, each sending again as soon as it may, against a platform with a small quota."""
    clock = FakeClock(1000.0)
    quota = LocalQuota(clock)
    window = 0.5 if headers == "milliseconds" else 2.0
    platform = WindowedPlatform(clock, quota=5, window=window, whole_seconds=headers == "seconds")
    events: list = []  # (time, seq, kind, client): a client waking, its request arriving, its answer arriving
    seq = itertools.count()

    def at(when: float, kind: str, client: int, payload=None) -> None:
        heapq.heappush(events, (when, next(seq), kind, client, payload))

    for client in range(clients):
        at(clock.now, "wake", client)
    while events and clock.now < 1000.0 + 6.0:
        when, _, kind, client, payload = heapq.heappop(events)
        clock.now = when
        if kind == "wake":
            wait = quota.reserve()
            if wait > 0:
                at(clock.now + wait, "wake", client)
            else:
                at(clock.now + latency / 2, "arrive", client)
        elif kind == "arrive":
            at(clock.now + latency / 2, "answer", client, platform.receive())
        else:
            quota.learn(payload)
            at(clock.now, "wake", client)

    assert platform.refused == 0
    assert platform.accepted >= 5 * (6.0 / window) * 0.6  # and it keeps using most of the quota it has
