"""The quota gate: every request takes a slot of the window the platform announced, a spent window holds everyone
back until its reset, and the window after a spent one is probed by one request before the rest go."""
from __future__ import annotations

import heapq
import itertools
import math

import pytest
import requests

from adapters.bigcommerce.adapter import BigCommerceRateLimit
from bridge.upstream import POLL_SECONDS, PROBE_SECONDS, RESET_MARGIN_SECONDS, LocalQuota, RateGate


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def quota(clock) -> LocalQuota:
    return LocalQuota(clock)


def takes(quota: LocalQuota, count: int) -> list[float]:
    return [quota.reserve() for _ in range(count)]


def test_an_unknown_quota_lets_everything_through(quota):
    assert takes(quota, 100) == [0.0] * 100
    assert quota.blocked_for() == 0


def test_requests_left_are_slots_and_the_last_one_blocks_until_the_reset(quota, clock):
    quota.learn(10.0, 3, limited=False)

    assert takes(quota, 3) == [0.0] * 3
    assert quota.reserve() == pytest.approx(10.0, abs=0.02)  # the reset, and a few ms of margin
    assert quota.blocked_for() == pytest.approx(10.0, abs=0.02)
    clock.advance(4)
    assert quota.reserve() == pytest.approx(6.0, abs=0.02)


def test_a_429_blocks_until_its_reset_then_one_request_probes_the_new_window(quota, clock):
    quota.learn(2.0, None, limited=True)
    assert quota.reserve() == pytest.approx(2.0 + RESET_MARGIN_SECONDS)

    clock.advance(2.0 + RESET_MARGIN_SECONDS)
    assert quota.reserve() == 0.0  # the probe
    waits = takes(quota, 5)
    assert all(0 < wait <= POLL_SECONDS for wait in waits)  # the rest wait for its answer

    quota.learn(30.0, 2, limited=False)  # the probe's answer: the new window has room for two more
    assert takes(quota, 2) == [0.0, 0.0]
    assert quota.reserve() == pytest.approx(30.0 + RESET_MARGIN_SECONDS)


def test_a_probe_that_never_answers_is_replaced_after_a_while(quota, clock):
    quota.learn(1.0, 0, limited=False)
    clock.advance(1.1)
    assert quota.reserve() == 0.0
    clock.advance(PROBE_SECONDS)
    assert quota.reserve() == 0.0


def test_answers_within_one_window_only_ever_lower_the_count(quota, clock):
    quota.learn(10.0, 5, limited=False)
    clock.advance(0.1)
    quota.learn(9.9, 8, limited=False)  # an answer that left before our other sends were counted

    assert takes(quota, 5) == [0.0] * 5
    assert quota.reserve() > 0


def test_a_late_answer_from_a_finished_window_is_ignored(quota, clock):
    quota.learn(10.0, 5, limited=False)
    clock.advance(10.1)
    quota.learn(9.9, 1, limited=False)  # the new window has one slot left
    quota.learn(0.1, 50, limited=False)  # a straggler from the old window, ending long before this one

    assert quota.reserve() == 0.0
    assert quota.reserve() > 0


def test_a_window_that_ended_with_room_needs_no_probe(quota, clock):
    quota.learn(1.0, 40, limited=False)
    clock.advance(1.5)

    assert takes(quota, 60) == [0.0] * 60


def test_the_gate_learns_from_bigcommerce_headers(clock):
    gate = RateGate(BigCommerceRateLimit(), clock=clock)
    answer = requests.Response()
    answer.status_code = 200
    answer.headers.update({"X-Rate-Limit-Time-Reset-Ms": "4000", "X-Rate-Limit-Requests-Left": "1"})

    gate.observe(answer)

    assert gate.reserve() == 0.0
    assert gate.reserve() == pytest.approx(4.0, abs=0.02)
    assert gate.blocked_for() == pytest.approx(4.0, abs=0.02)


# ------------------------------------------------------------------------------- against a simulated platform


class WindowedPlatform:
    """BigCommerce's fixed window: it opens with the first request after the last one ended."""

    def __init__(self, clock: FakeClock, quota: int, window: float, whole_seconds: bool = False) -> None:
        self.clock, self.quota, self.window, self.whole_seconds = clock, quota, window, whole_seconds
        self.start: float | None = None
        self.used = 0
        self.accepted = 0
        self.refused = 0

    def receive(self) -> tuple[float, int, bool]:
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
        return reset, self.quota - self.used, limited


@pytest.mark.parametrize("latency", [0.0002, 0.01, 0.06])
@pytest.mark.parametrize("clients", [3, 12, 40])
@pytest.mark.parametrize("headers", ["milliseconds", "seconds"])
def test_after_the_first_answer_the_gate_never_sends_over_the_quota(latency, clients, headers):
    """Many clients sharing one gate, each sending again as soon as it may, against a platform with a small quota."""
    clock = FakeClock()
    quota = LocalQuota(clock)
    window = 0.5 if headers == "milliseconds" else 2.0
    platform = WindowedPlatform(clock, quota=5, window=window, whole_seconds=headers == "seconds")
    events: list = []  # (time, seq, kind, client): a client waking, its request arriving, its answer arriving
    seq = itertools.count()

    def at(when: float, kind: str, client: int, payload=None) -> None:
        heapq.heappush(events, (when, next(seq), kind, client, payload))

    for client in range(clients):
        at(clock.now, "wake", client)
    learned = False
    refused_after_learning = 0
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
            answer = platform.receive()
            refused_after_learning += answer[2] and learned
            at(clock.now + latency / 2, "answer", client, answer)
        else:
            quota.learn(*payload)
            learned = True
            at(clock.now, "wake", client)

    assert refused_after_learning == 0
    assert platform.accepted >= 5 * (6.0 / window) * 0.6  # and it keeps using most of the quota it has
