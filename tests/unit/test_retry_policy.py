"""Which upstream failures are retried, how long the bridge waits, and when it gives up."""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

import pytest
import requests
import responses
import urllib3.exceptions
from tenacity import RetryCallState, Retrying

from adapters.bigcommerce.adapter import BigCommerceRateLimit, error_message
from bridge.bootstrap import build_session
from bridge.config import UpstreamConfig
from bridge.core.deadline import Deadline
from bridge.core.errors import (
    RateLimited,
    UpstreamAmbiguous,
    UpstreamAuthError,
    UpstreamFailed,
    UpstreamMisconfigured,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from bridge.upstream.attempts import (
    Attempt,
    WriteVerdict,
    backoff,
    classify_write,
    should_retry,
    was_sent,
)
from bridge.upstream.client import Upstream
from bridge.upstream.outbound import OutboundRequest
from bridge.upstream.quota import FIRST_CONTACT, LocalQuota, QuotaNews, RateGate, spread
from tests.support.jitter import jitter_at

from .fakes import FakeClock

URL = "https://api.bigcommerce.test/stores/abc123/v2/orders"
RESET_HEADER = "X-Rate-Limit-Time-Reset-Ms"


# ---------------------------------------------------------------------------------------------- helpers


class Sleeps:
    """A sleep that returns at once, records each wait and optionally moves a fake clock."""

    def __init__(self, clock: Optional[FakeClock] = None) -> None:
        self.calls: list[float] = []
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


def response(status: int) -> requests.Response:
    """A bare response with a status code."""
    resp = requests.Response()
    resp.status_code = status
    return resp


def refused() -> requests.exceptions.ConnectionError:
    """What requests raises when the TCP connection is refused: nothing left the machine."""
    reason = urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, URL, reason=reason))


def before_retry(attempt: int) -> RetryCallState:
    """tenacity's state after attempt number `attempt` failed."""
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return state


def backoff_seconds(attempt: int, jitter) -> float:
    return backoff(jitter)(before_retry(attempt))


def make_upstream(sleep: Sleeps, **settings) -> Upstream:
    """An Upstream as bootstrap builds it for BigCommerce, with a sleep that returns at once."""
    # The quota gate waits on its own clock; the sleep moves it, so a wait it asked for is a wait it sees done.
    sleep.clock = sleep.clock or FakeClock(1000.0)
    return Upstream(build_session(4), UpstreamConfig(**settings), platform="bigcommerce",
                    rate_headers=BigCommerceRateLimit(), message_of=error_message, sleep=sleep, jitter=jitter_at(0.5),
                    gate=RateGate(BigCommerceRateLimit(), clock=sleep.clock))


def budget(upstream: Upstream) -> Deadline:
    """A fresh budget for one Bik request, as the service gives each."""
    return Deadline(upstream.settings.total_timeout_seconds)


def post() -> OutboundRequest:
    return OutboundRequest("POST", URL, "create", headers={"Content-Type": "application/json"}, json={"a": 1})


def get() -> OutboundRequest:
    return OutboundRequest("GET", URL + "/118", "get_order")


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def test_the_request_headers_replace_the_session_defaults_whatever_their_case(rsps, sleeps):
    rsps.add(responses.GET, URL + "/118", json={"id": 118})
    upstream = make_upstream(sleeps)

    upstream.send(OutboundRequest("GET", URL + "/118", "get_order", headers={"accept": "application/json"}),
                  budget(upstream))

    sent = rsps.calls[0].request.headers
    assert sent["Accept"] == "application/json" and sent["User-Agent"] == "bik-bridge/0.1"
    assert [name for name in sent if name.lower() == "accept"] == ["accept"]  # sent once, not twice


# ------------------------------------------------------------------------------------------ should_retry

CONNECT_ERROR = Attempt(error=refused(), sent=False)
READ_TIMEOUT = Attempt(error=requests.exceptions.ReadTimeout("read timed out"), sent=True)


@pytest.mark.parametrize(
    ("name", "outcome", "retry_read", "retry_create"),
    [
        ("connect error, nothing sent", CONNECT_ERROR, True, True),
        ("read timeout after sending", READ_TIMEOUT, True, False),
        ("429", Attempt(response=response(429)), True, True),
        ("500", Attempt(response=response(500)), True, False),
        ("502", Attempt(response=response(502)), True, False),
        ("503", Attempt(response=response(503)), True, False),
        ("504", Attempt(response=response(504)), True, False),
        ("400", Attempt(response=response(400)), False, False),
        ("401", Attempt(response=response(401)), False, False),
        ("403", Attempt(response=response(403)), False, False),
        ("404", Attempt(response=response(404)), False, False),
        ("409", Attempt(response=response(409)), False, False),
        ("422", Attempt(response=response(422)), False, False),
        ("200", Attempt(response=response(200)), False, False),
        ("201", Attempt(response=response(201)), False, False),
        ("501", Attempt(response=response(501)), True, False),
        ("505", Attempt(response=response(505)), True, False),
        ("520 from a CDN", Attempt(response=response(520)), True, False),
        ("524 from a CDN", Attempt(response=response(524)), True, False),
        ("599", Attempt(response=response(599)), True, False),
        ("302", Attempt(response=response(302)), False, False),
        ("408", Attempt(response=response(408)), False, False),
    ],
)
def test_should_retry_table(name, outcome, retry_read, retry_create):
    """Reads retry anything transient; creates retry only what surely never landed."""
    assert should_retry(outcome, idempotent=True) is retry_read, name
    assert should_retry(outcome, idempotent=False) is retry_create, name


# -------------------------------------------------------------------------------------- classify_write

NOT_SENT, REFUSED, ANSWERED, AMBIGUOUS = (WriteVerdict.NOT_SENT, WriteVerdict.REFUSED, WriteVerdict.ANSWERED,
                                          WriteVerdict.AMBIGUOUS)
WRITE_TABLE = [
    ("connection refused", CONNECT_ERROR, NOT_SENT),
    ("read timeout after sending", READ_TIMEOUT, AMBIGUOUS),
    ("reset after sending", Attempt(error=requests.exceptions.ConnectionError("reset"), sent=True), AMBIGUOUS),
    *[(str(code), Attempt(response=response(code)), REFUSED)
      for code in (400, 401, 403, 404, 405, 409, 413, 415, 422, 429)],
    *[(str(code), Attempt(response=response(code)), ANSWERED) for code in (200, 201, 202, 204)],
    *[(str(code), Attempt(response=response(code)), AMBIGUOUS)
      for code in (100, 301, 302, 304, 307, 308, 402, 406, 408, 410, 411, 418, 425, 451, 499)],
    *[(str(code), Attempt(response=response(code)), AMBIGUOUS) for code in range(500, 600)],
]


@pytest.mark.parametrize(("name", "outcome", "verdict"), WRITE_TABLE, ids=[row[0] for row in WRITE_TABLE])
def test_classify_write_table(name, outcome, verdict):
    """A write is surely not applied only when nothing left or the platform refused it; all else is ambiguous."""
    assert classify_write(outcome) is verdict


# -------------------------------------------------------------------------------------------- was_sent


@pytest.mark.parametrize(
    ("name", "exc", "sent"),
    [
        ("connect timeout", requests.exceptions.ConnectTimeout(
            urllib3.exceptions.MaxRetryError(None, URL, reason=urllib3.exceptions.ConnectTimeoutError(
                None, "Connection timed out"))), False),
        ("connection refused", refused(), False),
        ("DNS failure", requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(
            None, URL, reason=urllib3.exceptions.NameResolutionError(
                "api.bigcommerce.test", None, socket.gaierror(-2, "Name or service not known")))), False),
        ("invalid URL", requests.exceptions.InvalidURL("bad"), False),
        ("read timeout", requests.exceptions.ReadTimeout("read timed out"), True),
        ("reset after sending", requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError(
            "Connection aborted.", http.client.RemoteDisconnected("Remote end closed connection"))), True),
        ("connection error without a cause", requests.exceptions.ConnectionError("boom"), True),
        ("chunked encoding error", requests.exceptions.ChunkedEncodingError("broken"), True),
        ("certificate refused", requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(
            None, URL, reason=urllib3.exceptions.SSLError(ssl.SSLCertVerificationError(
                1, "certificate verify failed")))), False),
        ("TLS handshake failed", requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(
            None, URL, reason=urllib3.exceptions.SSLError(ssl.SSLError(1, "sslv3 alert handshake failure")))),
         False),
        ("TLS error after sending", requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(
            None, URL, reason=urllib3.exceptions.SSLError(ssl.SSLError(1, "bad record mac")))), True),
    ],
)
def test_was_sent_on_constructed_exceptions(name, exc, sent):
    """Only errors raised before any byte left count as unsent."""
    assert was_sent(exc) is sent, name


@pytest.mark.parametrize("url", ["api.bigcommerce.test/v2/orders", "ftp://api.bigcommerce.test/v2/orders"])
def test_a_url_requests_refuses_before_connecting_was_not_sent(url):
    """MissingSchema / InvalidSchema are raised before any connection is opened."""
    with pytest.raises((requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)) as raised:
        build_session(1).post(url, json={}, timeout=1)
    assert was_sent(raised.value) is False


def test_a_header_requests_refuses_was_not_sent():
    """A token with a line break (a stray newline from the environment) is refused before connecting."""
    with pytest.raises(requests.exceptions.InvalidHeader) as raised:
        build_session(1).post("http://127.0.0.1:9/v2/orders", headers={"X-Auth-Token": "abc\n"}, json={}, timeout=1)
    assert was_sent(raised.value) is False


@contextmanager
def tcp_server(behaviour: str) -> Iterator[int]:
    """A loopback server that closes each connection at once ("close") or never answers ("silent")."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            if behaviour == "close":
                conn.recv(65536)
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(1)
        for conn in held:
            conn.close()
        server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_was_sent_is_false_for_a_real_refused_connection():
    """A closed loopback port gives the exception the retry line relies on."""
    with pytest.raises(requests.exceptions.ConnectionError) as raised:
        build_session(1).post(f"http://127.0.0.1:{free_port()}/v2/orders", json={}, timeout=1)
    assert was_sent(raised.value) is False


def test_was_sent_is_true_for_a_real_disconnect_after_sending():
    """A server that reads the request and hangs up may have applied it."""
    with tcp_server("close") as port:
        with pytest.raises(requests.exceptions.ConnectionError) as raised:
            build_session(1).post(f"http://127.0.0.1:{port}/v2/orders", json={}, timeout=2)
    assert was_sent(raised.value) is True


def test_was_sent_is_true_for_a_real_read_timeout():
    """A server that never answers leaves the request's fate unknown."""
    with tcp_server("silent") as port:
        with pytest.raises(requests.exceptions.ReadTimeout) as raised:
            build_session(1).post(f"http://127.0.0.1:{port}/v2/orders", json={}, timeout=(1, 0.2))
    assert was_sent(raised.value) is True


# --------------------------------------------------------------------------------------------- backoff


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 0.1, 0.2), (2, 0.2, 0.4), (3, 0.4, 0.8), (4, 0.8, 1.6), (5, 1.0, 2.0), (9, 1.0, 2.0)],
)
def test_backoff_is_exponential_with_jitter_and_capped(attempt, low, high):
    """The jitter spans half the ceiling to the full ceiling; the ceiling doubles up to 2 s."""
    assert backoff_seconds(attempt, jitter_at(0.0)) == pytest.approx(low)
    assert backoff_seconds(attempt, jitter_at(1.0)) == pytest.approx(high)
    assert backoff_seconds(attempt, jitter_at(0.5)) == pytest.approx((low + high) / 2)
    # The default jitter is random (tenacity's, on the `random` module): every wait falls within the same bounds.
    waits = [backoff(None)(before_retry(attempt)) for _ in range(200)]
    assert all(low <= wait <= high for wait in waits)
    assert len(set(waits)) > 1


def test_backoff_is_deterministic_for_an_injected_rng():
    """The same rng sequence gives the same waits."""
    jitter = jitter_at(0.3, 0.9, 0.1)
    first = [backoff_seconds(n, jitter) for n in (1, 2, 3)]
    second = [backoff_seconds(n, jitter) for n in (1, 2, 3)]
    assert first == second == pytest.approx([0.13, 0.38, 0.44])


# ---------------------------------------------------------------------------------------- RateGate


def test_rate_gate_blocks_until_the_announced_reset():
    """A 429 or a spent quota blocks the gate for the reset time; a healthy answer does not."""
    clock = FakeClock(1000.0)
    gate = RateGate(BigCommerceRateLimit(), clock=clock)
    healthy = response(200)
    healthy.headers.update({RESET_HEADER: "9000", "X-Rate-Limit-Requests-Left": "120"})
    gate.observe(healthy)
    assert gate.blocked_for() == 0
    spent = response(200)
    spent.headers.update({RESET_HEADER: "2500", "X-Rate-Limit-Requests-Left": "0"})
    gate.observe(spent)
    assert gate.blocked_for() == pytest.approx(2.5, abs=0.02)  # a few ms of margin over the announced reset
    clock.advance(2.0)
    assert gate.blocked_for() == pytest.approx(0.5, abs=0.02)
    clock.advance(1.0)
    assert gate.blocked_for() == 0


# --------------------------------------------------------------------------------------- Upstream.send


class CountedQuota(LocalQuota):
    """The local quota, counting the slots it gave out."""

    def __init__(self, clock):
        super().__init__(clock)
        self.slots = 0
        self.calls = 0  # reservations asked for: with Redis, a round trip each

    def reserve(self) -> float:
        self.calls += 1
        wait = super().reserve()
        self.slots += wait == 0
        return wait

    def reserve_with_next(self) -> tuple[float, float]:
        self.calls += 1
        wait, next_for = super().reserve_with_next()
        self.slots += (wait == 0) + (next_for > 0)
        return wait, next_for


def paired(sleep: Sleeps) -> tuple[Upstream, CountedQuota, Deadline]:
    """An Upstream whose quota counts its slots, and a budget on `sleep.clock` whose next two requests go together."""
    upstream = make_upstream(sleep)
    quota = CountedQuota(sleep.clock)
    quota.learn(QuotaNews(quota=150, window=30.0))
    upstream.gate = RateGate(BigCommerceRateLimit(), state=quota)
    deadline = Deadline(upstream.settings.total_timeout_seconds, clock=sleep.clock)
    deadline.pair_next_slot = True
    return upstream, quota, deadline


def test_a_paired_request_takes_the_next_ones_slot_with_its_own(rsps, sleeps):
    """A lookup then a create on a paired budget: two slots, taken in one reservation, one per request sent."""
    rsps.add(responses.GET, URL + "/118", json={"id": 118}, status=200)
    rsps.add(responses.POST, URL, json={"id": 1}, status=201)
    upstream, quota, deadline = paired(sleeps)
    upstream.send(get(), deadline)
    assert quota.slots == 2
    upstream.send(post(), deadline)
    assert quota.slots == 2 and quota.calls == 1  # one reservation for the lookup and the create
    upstream.send(get(), deadline)
    assert quota.slots == 3  # the pairing was for the next request only
    assert len(rsps.calls) == 3


def test_a_slot_held_past_the_time_it_was_logged_for_is_not_used(rsps, sleeps):
    """A create later than the spread after its lookup's reservation takes a slot of its own."""
    rsps.add(responses.GET, URL + "/118", json={"id": 118}, status=200)
    rsps.add(responses.POST, URL, json={"id": 1}, status=201)
    upstream, quota, deadline = paired(sleeps)
    upstream.send(get(), deadline)
    sleeps.clock.advance(spread(30.0))
    upstream.send(post(), deadline)
    assert quota.slots == 3 and len(rsps.calls) == 2


def test_a_held_slot_is_not_used_once_the_lookups_answer_says_the_quota_is_spent(rsps, sleeps):
    """Rule 4 holds for the create too: it waits for the announced reset instead of using its held slot."""
    rsps.add(responses.GET, URL + "/118", json={"id": 118}, status=200,
             headers={"X-Rate-Limit-Requests-Left": "0", RESET_HEADER: "1500",
                      "X-Rate-Limit-Requests-Quota": "150", "X-Rate-Limit-Time-Window-Ms": "30000"})
    rsps.add(responses.POST, URL, json={"id": 1}, status=201)
    upstream, quota, deadline = paired(sleeps)
    upstream.send(get(), deadline)
    upstream.send(post(), deadline)
    assert sleeps.calls == [pytest.approx(1.5, abs=0.05)]
    assert quota.slots == 3 and len(rsps.calls) == 2


def test_a_retry_takes_a_slot_of_its_own_and_leaves_the_held_one_to_the_next_request(rsps, sleeps):
    rsps.add(responses.GET, URL + "/118", status=503)
    rsps.add(responses.GET, URL + "/118", json={"id": 118}, status=200)
    rsps.add(responses.POST, URL, json={"id": 1}, status=201)
    upstream, quota, deadline = paired(sleeps)
    upstream.send(get(), deadline)
    upstream.send(post(), deadline)
    assert len(rsps.calls) == quota.slots == 3


def test_get_is_retried_after_a_503(rsps, sleeps):
    """A read that met a 503 is sent again after a backoff and its 200 returned."""
    rsps.add(responses.GET, URL + "/118", status=503)
    rsps.add(responses.GET, URL + "/118", json={"id": 118}, status=200)
    upstream = make_upstream(sleeps)
    result = upstream.send(get(), budget(upstream))
    assert result.status_code == 200 and result.json() == {"id": 118}
    assert len(rsps.calls) == 2
    assert sleeps.calls == [pytest.approx(backoff_seconds(1, jitter_at(0.5)))]


@pytest.mark.parametrize("status", [500, 501, 502, 503, 504, 505, 520, 522, 524, 599, 302, 408])
def test_post_is_not_resent_after_a_5xx(rsps, sleeps, status):
    """A create that met a 5xx may have landed: it is reported ambiguous, never sent twice."""
    rsps.add(responses.POST, URL, status=status)
    rsps.add(responses.POST, URL, json={"id": 1}, status=201)
    upstream = make_upstream(sleeps)
    with pytest.raises(UpstreamAmbiguous) as raised:
        upstream.send(post(), budget(upstream))
    assert raised.value.maybe_applied is True
    assert raised.value.upstream_status == status
    assert len(rsps.calls) == 1
    assert sleeps.calls == []


def test_post_is_not_resent_after_a_read_timeout(rsps, sleeps):
    """A create whose answer timed out may have landed."""
    rsps.add(responses.POST, URL, body=requests.exceptions.ReadTimeout("read timed out"))
    rsps.add(responses.POST, URL, json={"id": 1}, status=201)
    upstream = make_upstream(sleeps)
    with pytest.raises(UpstreamAmbiguous) as raised:
        upstream.send(post(), budget(upstream))
    assert raised.value.status == 504
    assert len(rsps.calls) == 1


def test_post_is_resent_after_a_429_once_the_quota_resets(rsps, sleeps):
    """A rate-limited create was refused, so it is sent again after the announced reset."""
    rsps.add(responses.POST, URL, status=429, headers={RESET_HEADER: "1500"})
    rsps.add(responses.POST, URL, json={"id": 1}, status=201)
    upstream = make_upstream(sleeps)
    result = upstream.send(post(), budget(upstream))
    assert result.status_code == 201
    assert len(rsps.calls) == 2
    assert sleeps.calls == [pytest.approx(1.5, abs=0.05)]


def test_post_is_resent_after_a_429_without_headers_with_backoff(rsps, sleeps):
    """A 429 with no quota headers is load shedding: back off and try again."""
    rsps.add(responses.POST, URL, status=429)
    rsps.add(responses.POST, URL, json={"id": 1}, status=201)
    upstream = make_upstream(sleeps)
    assert upstream.send(post(), budget(upstream)).status_code == 201
    assert len(rsps.calls) == 2
    assert sleeps.calls == [pytest.approx(backoff_seconds(1, jitter_at(0.5)))]


def test_post_is_resent_after_a_refused_connection(rsps, sleeps):
    """A create that never left the machine is safe to send again."""
    rsps.add(responses.POST, URL, body=refused())
    rsps.add(responses.POST, URL, json={"id": 7}, status=201)
    upstream = make_upstream(sleeps)
    result = upstream.send(post(), budget(upstream))
    assert result.json() == {"id": 7}
    assert len(rsps.calls) == 2
    assert len(sleeps.calls) == 1


def test_refused_connections_until_the_end_are_unreachable_not_ambiguous(rsps, sleeps):
    """A create that was never sent is reported as surely not applied."""
    rsps.add(responses.POST, URL, body=refused())
    upstream = make_upstream(sleeps, max_attempts=3)
    with pytest.raises(UpstreamUnreachable) as raised:
        upstream.send(post(), budget(upstream))
    assert not isinstance(raised.value, UpstreamAmbiguous)
    assert raised.value.maybe_applied is False
    assert raised.value.status == 503
    assert len(rsps.calls) == 3


@pytest.mark.parametrize(("status", "method"), [(401, "POST"), (403, "POST"), (401, "GET"), (403, "GET")])
def test_refused_credentials_raise_an_auth_error_at_once(rsps, sleeps, status, method):
    """401/403 are the bridge's own credentials: no retry, a 502 naming the platform's message."""
    rsps.add(method, URL if method == "POST" else URL + "/118", status=status,
             json=[{"status": status, "message": "You don't have a valid token"}])
    upstream = make_upstream(sleeps)
    with pytest.raises(UpstreamAuthError) as raised:
        upstream.send(post() if method == "POST" else get(), budget(upstream))
    assert raised.value.status == 502
    assert raised.value.upstream_status == status
    assert "You don't have a valid token" in raised.value.message
    assert len(rsps.calls) == 1
    assert sleeps.calls == []


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_deterministic_refusals_are_returned_without_retry(rsps, sleeps, status):
    """A 4xx answer is the platform's decision: returned to the adapter as is, once."""
    rsps.add(responses.POST, URL, status=status, json=[{"status": status, "message": "no"}])
    upstream = make_upstream(sleeps)
    assert upstream.send(post(), budget(upstream)).status_code == status
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("status", [405, 413, 415])
def test_refusals_of_how_the_bridge_sends_are_its_configuration(rsps, sleeps, method, status):
    """405/413/415 refuse the bridge's way of calling, never the order: a 502 without Retry-After, sent once."""
    rsps.add(method, URL if method == "POST" else URL + "/118", status=status,
             json=[{"status": status, "message": "not here"}])
    upstream = make_upstream(sleeps)
    with pytest.raises(UpstreamMisconfigured) as raised:
        upstream.send(post() if method == "POST" else get(), budget(upstream))
    assert (raised.value.status, raised.value.retryable, raised.value.maybe_applied) == (502, False, False)
    assert raised.value.upstream_status == status and "not here" in raised.value.message
    assert len(rsps.calls) == 1


def test_a_redirected_read_is_not_followed_and_names_the_new_address(rsps, sleeps):
    rsps.add(responses.GET, URL + "/118", status=301, headers={"Location": "https://elsewhere.test/v2/orders/118"})
    upstream = make_upstream(sleeps)
    with pytest.raises(UpstreamMisconfigured) as raised:
        upstream.send(get(), budget(upstream))
    assert "https://elsewhere.test" in raised.value.message and "api_base_url" in raised.value.message
    assert raised.value.retryable is False
    assert len(rsps.calls) == 1


@pytest.mark.parametrize(("status", "error", "bik_sees"), [
    (503, UpstreamUnreachable, 503), (504, UpstreamTimeout, 504), (500, UpstreamFailed, 502),
    (502, UpstreamFailed, 502), (520, UpstreamFailed, 502), (410, UpstreamFailed, 502), (406, UpstreamFailed, 502),
])
def test_a_read_that_keeps_failing_raises_one_class_per_meaning(rsps, sleeps, status, error, bik_sees):
    """A read's 503 is the platform unavailable, its 504 a timeout, any other 5xx or unexplained 4xx a failure."""
    rsps.add(responses.GET, URL + "/118", status=status)
    upstream = make_upstream(sleeps, max_attempts=2)
    with pytest.raises(error) as raised:
        upstream.send(get(), budget(upstream))
    assert type(raised.value) is error
    assert raised.value.status == bik_sees and raised.value.upstream_status == status
    assert raised.value.retryable is True and raised.value.maybe_applied is False


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 4, 6])
@pytest.mark.parametrize(("request_kind", "error"), [("get_503", UpstreamUnreachable), ("post_429", RateLimited),
                                                     ("post_refused", UpstreamUnreachable),
                                                     ("get_timeout", UpstreamTimeout)])
def test_attempts_never_exceed_max_attempts(rsps, sleeps, max_attempts, request_kind, error):
    """Whatever keeps failing, the platform sees at most `max_attempts` requests."""
    if request_kind == "get_503":
        rsps.add(responses.GET, URL + "/118", status=503)
    elif request_kind == "get_timeout":
        rsps.add(responses.GET, URL + "/118", body=requests.exceptions.ReadTimeout("slow"))
    elif request_kind == "post_429":
        rsps.add(responses.POST, URL, status=429)
    else:
        rsps.add(responses.POST, URL, body=refused())
    upstream = make_upstream(sleeps, max_attempts=max_attempts)
    with pytest.raises(error):
        upstream.send(get() if request_kind.startswith("get") else post(), budget(upstream))
    assert len(rsps.calls) == max_attempts
    assert len(sleeps.calls) == max_attempts - 1


def test_a_429_resetting_beyond_the_cap_gives_up_at_once(rsps, sleeps):
    """A quota that resets later than the cap is not waited for: 503 with Retry-After."""
    rsps.add(responses.POST, URL, status=429, headers={RESET_HEADER: "30000"})
    upstream = make_upstream(sleeps, rate_limit_wait_cap_seconds=15)
    with pytest.raises(RateLimited) as raised:
        upstream.send(post(), budget(upstream))
    assert raised.value.status == 503
    assert raised.value.upstream_status == 429
    assert raised.value.retry_after == pytest.approx(30, abs=0.5)
    assert len(rsps.calls) == 1
    assert sleeps.calls == []


def test_a_spent_quota_holds_the_next_request_back_without_sending(rsps, sleeps):
    """After a long 429 the next call is refused locally, so the bridge never exceeds the quota."""
    rsps.add(responses.GET, URL + "/118", status=429, headers={RESET_HEADER: "60000"})
    upstream = make_upstream(sleeps, rate_limit_wait_cap_seconds=10)
    with pytest.raises(RateLimited):
        upstream.send(get(), budget(upstream))
    with pytest.raises(RateLimited) as raised:
        upstream.send(get(), budget(upstream))
    assert raised.value.retry_after == pytest.approx(60, abs=0.5)
    assert len(rsps.calls) == 1


def test_a_budget_with_little_patience_for_the_quota_is_refused_at_once(rsps, sleeps):
    """A placeOrder that can be queued instead waits at most its budget's patience for a slot, and sends nothing."""
    rsps.add(responses.POST, URL, status=429, headers={RESET_HEADER: "5000"})
    upstream = make_upstream(sleeps, rate_limit_wait_cap_seconds=15)
    with pytest.raises(RateLimited):
        upstream.send(post(), Deadline(20, quota_patience=0.5))  # the 429 spends the quota for 5 s
    waited_before = list(sleeps.calls)

    with pytest.raises(RateLimited):
        upstream.send(post(), Deadline(20, quota_patience=0.5))

    assert sleeps.calls == waited_before  # no wait at all: 5 s is past its patience
    assert len(rsps.calls) == 1


def test_waits_for_the_quota_add_up_to_the_cap_at_most():
    """Many short waits for a slot count together against the cap, not each on its own."""
    clock = FakeClock(1000.0)
    sleeps = Sleeps(clock)
    upstream = make_upstream(sleeps, rate_limit_wait_cap_seconds=0.1)
    for _ in range(FIRST_CONTACT[0]):  # before any quota is announced: a few requests a second, asked again often
        upstream._wait_for_quota(Deadline(20, clock=clock))
    assert sleeps.calls == []

    with pytest.raises(RateLimited):
        upstream._wait_for_quota(Deadline(20, clock=clock))

    assert 0 < sum(sleeps.calls) <= 0.1


def test_the_deadline_bounds_retries():
    """Waits stop once the next one would not fit in the budget, whatever max_attempts says."""
    clock = FakeClock(1000.0)
    sleep = Sleeps(clock)
    upstream = Upstream(build_session(1), UpstreamConfig(max_attempts=10), platform="bigcommerce",
                        rate_headers=BigCommerceRateLimit(), message_of=error_message, sleep=sleep,
                        jitter=jitter_at(1.0))
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, URL + "/118", status=503)
        with pytest.raises(UpstreamUnreachable):
            upstream.send(get(), Deadline(1.0, clock=clock))
        calls = len(rsps.calls)
    # Waits of 0.2 s and 0.4 s fit in 1 s; the third (0.8 s) would not.
    assert sleep.calls == pytest.approx([0.2, 0.4])
    assert calls == 3
    assert sum(sleep.calls) <= 1.0


def test_a_spent_budget_sends_nothing():
    """With no time left, no request goes out and the answer is 'surely not applied'."""
    clock = FakeClock(1000.0)
    upstream = Upstream(build_session(1), UpstreamConfig(), platform="bigcommerce",
                        rate_headers=BigCommerceRateLimit(), message_of=error_message, sleep=Sleeps(clock))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, URL, json={"id": 1}, status=201)
        deadline = Deadline(5.0, clock=clock)
        clock.advance(6.0)
        with pytest.raises(UpstreamTimeout) as raised:
            upstream.send(post(), deadline)
        assert len(rsps.calls) == 0
    assert raised.value.maybe_applied is False


def test_each_attempt_timeout_fits_the_remaining_budget():
    """The read timeout handed to requests never exceeds what is left of the deadline."""
    clock = FakeClock(1000.0)
    upstream = Upstream(build_session(1), UpstreamConfig(timeout_seconds=10, connect_timeout_seconds=3),
                        platform="bigcommerce", rate_headers=BigCommerceRateLimit(), message_of=error_message,
                        sleep=Sleeps(clock))
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, URL + "/118", json={}, status=200)
        upstream.send(get(), Deadline(2.5, clock=clock))
        connect, read = rsps.calls[0].request.req_kwargs["timeout"]
    assert connect == pytest.approx(2.5)
    assert read == pytest.approx(2.5)


# ------------------------------------------------------------------------------ what goes on the wire

QUERIES = [None, {}, {"external_order_id": "d-1"}, {"search": "a b&c=d/é+ü", "page": "2"}]


@pytest.mark.parametrize("params", QUERIES)
@pytest.mark.parametrize("url", [URL, f"{URL}?limit=250"])
@responses.activate
def test_a_request_goes_out_as_requests_would_prepare_it(url, params):
    """The leaner preparation sends the method, URL, headers and body `requests.Request.prepare` would."""
    responses.add(responses.POST, url.split("?")[0], json={"id": 1})
    request = OutboundRequest("POST", url, "create", headers={"Content-Type": "application/json", "X-Auth-Token": "t"},
                              json={"a": "é", "b": [1, 2]}, params=params)
    upstream = make_upstream(Sleeps())
    upstream.send(request, budget(upstream))
    sent = responses.calls[0].request
    expected = requests.Request("POST", url, headers={**upstream.session.headers, **request.headers},
                                json=request.json, params=params).prepare()
    assert (sent.method, sent.url, sent.body) == (expected.method, expected.url, expected.body)
    assert dict(sent.headers) == dict(expected.headers)
