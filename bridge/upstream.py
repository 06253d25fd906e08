"""Sending requests to a platform: one pooled session, bounded retries, errors translated once.

The retry line follows urllib3 and RFC 9110: a request that surely never left (connect error,
rate-limited) may be sent again whatever its method; one that may have been applied (timeout
after sending, 5xx) is retried only if it is a read. A write's outcome has one classification,
`classify_write`: it was surely not applied only when nothing left the machine or the platform
refused it in its own words; everything else may have been applied, surfaces as
`UpstreamAmbiguous`, and the service looks the draft up before any new create.
"""
from __future__ import annotations

import enum
import logging
import random
import ssl
import time
from dataclasses import dataclass
from typing import Callable, Optional

import requests
import urllib3.exceptions
from tenacity import RetryCallState, Retrying, retry_if_result

from bridge import context
from bridge.config import UpstreamConfig
from bridge.errors import UpstreamAmbiguous, UpstreamAuthError, UpstreamError, UpstreamUnavailable
from bridge.outbound import OutboundRequest
from bridge.quota import RateGate, RateLimitHeaders

log = logging.getLogger("bik_bridge.upstream")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# A platform that answers one of these refused the request in its own words: nothing was applied.
REFUSALS = frozenset({400, 401, 403, 404, 405, 409, 413, 415, 422, 429})


class Deadline:
    """A time budget shared by every upstream call made for one Bik request."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt: a response, or an error and whether the request may have been sent."""

    response: Optional[requests.Response] = None
    error: Optional[Exception] = None
    sent: bool = True

    @property
    def status(self) -> Optional[int]:
        return self.response.status_code if self.response is not None else None


class WriteVerdict(str, enum.Enum):
    """What one attempt at a write did to the platform."""

    NOT_SENT = "not_sent"  # nothing left the machine
    REFUSED = "refused"  # the platform refused it in its own words (REFUSALS): nothing was applied
    ANSWERED = "answered"  # a 2xx: applied, and the answer says how (an unreadable one is still ambiguous)
    AMBIGUOUS = "ambiguous"  # anything else: it may have been applied


def classify_write(outcome: Outcome) -> WriteVerdict:
    """Whether a write surely was not applied; every outcome not proven otherwise is ambiguous."""
    if outcome.response is None:
        return WriteVerdict.AMBIGUOUS if outcome.sent else WriteVerdict.NOT_SENT
    status = outcome.response.status_code
    if 200 <= status < 300:
        return WriteVerdict.ANSWERED
    if status in REFUSALS:
        return WriteVerdict.REFUSED
    return WriteVerdict.AMBIGUOUS  # any 5xx (52x from a CDN too), a 3xx, a 1xx, a 4xx outside REFUSALS


def should_retry(outcome: Outcome, *, idempotent: bool) -> bool:
    """Whether another attempt is allowed: never for a write that may have been applied."""
    if not idempotent:
        verdict = classify_write(outcome)
        return verdict is WriteVerdict.NOT_SENT or outcome.status == 429
    if outcome.response is None:
        return True
    status = outcome.response.status_code
    return status == 429 or 500 <= status <= 599


def backoff_seconds(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: 0.2 s, 0.4 s, 0.8 s ... capped at 2 s."""
    ceiling = min(2.0, 0.2 * (2 ** (attempt - 1)))
    return ceiling * (0.5 + rng() / 2)


def _causes(exc: BaseException) -> list[object]:
    """The exception, the reasons urllib3 wraps in it and the exceptions chained to them."""
    seen: list[object] = []
    node: object = exc
    while node is not None and node not in seen and len(seen) < 8:
        seen.append(node)
        args = getattr(node, "args", ())
        wrapped = getattr(node, "reason", None) or (args[0] if args and isinstance(args[0], BaseException) else None)
        node = wrapped or getattr(node, "__cause__", None) or getattr(node, "__context__", None)
    return seen


def was_sent(exc: requests.RequestException) -> bool:
    """False only when the request surely never reached the platform."""
    # Raised before a connection is opened: a timeout connecting, or a URL or header requests refuses to send.
    unsendable = (requests.exceptions.ConnectTimeout, requests.exceptions.InvalidURL, requests.exceptions.URLRequired,
                  requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                  requests.exceptions.InvalidHeader)
    if isinstance(exc, unsendable):
        return False
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return True
    causes = _causes(exc)
    # No connection (refused, DNS) or no TLS session (handshake or certificate refused): the request never left.
    unsent = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError,
              ssl.SSLCertVerificationError)
    if any(isinstance(cause, unsent) for cause in causes):
        return False
    return not any(isinstance(cause, ssl.SSLError) and "handshake" in str(cause).lower() for cause in causes)


class Upstream:
    """Sends `OutboundRequest`s with bounded retries; the only place that touches `requests`."""

    def __init__(
        self,
        session: requests.Session,
        settings: UpstreamConfig,
        *,
        platform: str,
        rate_headers: RateLimitHeaders,
        message_of: Callable[[requests.Response], str],
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        observer: Optional[Callable[..., None]] = None,
        gate: Optional[RateGate] = None,
    ):
        self.session = session
        self.settings = settings
        self.platform = platform
        self.gate = gate or RateGate(rate_headers)
        self._message_of = message_of
        self._sleep = sleep
        self._rng = rng
        self._observer = observer

    def deadline(self) -> Deadline:
        """A fresh budget for one Bik request."""
        return Deadline(self.settings.total_timeout_seconds)

    def warm_up(self) -> None:
        """Connect the quota gate; the platform itself is not called before Bik asks for something."""
        self.gate.warm_up()

    def send(self, request: OutboundRequest, deadline: Deadline) -> requests.Response:
        """Send with retries; return any response below 500 except 401/403/429, else raise."""
        idempotent = request.method.upper() in IDEMPOTENT_METHODS
        attempt_no = 0

        def attempt() -> Outcome:
            nonlocal attempt_no
            # Every attempt, retries included, takes its slot of the quota first; it raises, sending nothing,
            # when the quota will not come back within the budget.
            self._wait_for_quota(deadline)
            attempt_no += 1
            return self._attempt(request, deadline, attempt_no)

        def wait(state: RetryCallState) -> float:
            outcome: Outcome = state.outcome.result()
            if outcome.status == 429:
                return self.gate.blocked_for() or backoff_seconds(state.attempt_number, self._rng)
            return backoff_seconds(state.attempt_number, self._rng)

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= self.settings.max_attempts:
                return True
            upcoming = state.upcoming_sleep or 0.0
            if upcoming > self.settings.rate_limit_wait_cap_seconds:
                return True
            # Leave room for the next attempt to do real work inside the budget.
            return upcoming + 0.05 >= deadline.remaining()

        retrying = Retrying(
            stop=stop,
            wait=wait,
            retry=retry_if_result(lambda o: should_retry(o, idempotent=idempotent)),
            sleep=self._sleep,
            reraise=True,
            retry_error_callback=lambda state: state.outcome.result(),
        )
        outcome = retrying(attempt)
        return self._settle(request, outcome, idempotent)

    def _wait_for_quota(self, deadline: Deadline) -> None:
        """Take a slot of the platform's quota, waiting as its headers said, never past the cap or the budget."""
        while True:
            wait = self.gate.reserve()
            if wait <= 0:
                return
            if wait > min(self.settings.rate_limit_wait_cap_seconds, deadline.remaining()):
                blocked = max(wait, self.gate.blocked_for())
                raise UpstreamUnavailable(f"{self.platform} rate limit reached; quota resets in {blocked:.1f}s",
                                          retry_after=max(1, blocked))
            self._sleep(wait)

    def _attempt(self, request: OutboundRequest, deadline: Deadline, attempt_no: int) -> Outcome:
        remaining = deadline.remaining()
        if remaining <= 0:
            return Outcome(error=TimeoutError("upstream budget exhausted"), sent=False)
        timeout = (min(self.settings.connect_timeout_seconds, remaining), min(self.settings.timeout_seconds, remaining))
        started = time.perf_counter()
        try:
            response = self._send(request, timeout)
        except requests.RequestException as exc:
            outcome = Outcome(error=exc, sent=was_sent(exc))
        else:
            outcome = Outcome(response=response)
        self._record(request, outcome, attempt_no, (time.perf_counter() - started) * 1000)
        if outcome.response is not None:
            self.gate.observe(outcome.response)
        return outcome

    def _send(self, request: OutboundRequest, timeout: tuple[float, float]) -> requests.Response:
        """One request through the session's pooled transport, without `Session.send`'s extras.

        Cookies, hooks and redirects serve browsers, not an API client, and cost a third of a call's CPU here
        (docs/performance.md). A redirect is answered, never followed: following one could send an order again.
        """
        session = self.session
        prepared = requests.Request(request.method, request.url, headers={**session.headers, **request.headers},
                                    json=request.json, params=request.params).prepare()
        response = session.get_adapter(request.url).send(prepared, stream=False, timeout=timeout,
                                                         verify=session.verify, cert=session.cert,
                                                         proxies=session.proxies)
        response.content  # noqa: B018 - read the whole body now, so the connection goes back to the pool
        return response

    def _record(self, request: OutboundRequest, outcome: Outcome, attempt_no: int, ms: float) -> None:
        path = requests.utils.urlparse(request.url).path
        result = outcome.status if outcome.status is not None else type(outcome.error).__name__
        call = {"platform": self.platform, "operation": request.operation, "method": request.method, "path": path,
                "status": result, "ms": round(ms, 1), "attempt": attempt_no}
        # The request's own line lists every call; this one is for following a request as it happens.
        log.debug("upstream call", extra={"upstream": call})
        context.note_upstream(call)
        if self._observer:
            self._observer(platform=self.platform, operation=request.operation, status=result, ms=ms,
                           attempt=attempt_no)

    def _settle(self, request: OutboundRequest, outcome: Outcome, idempotent: bool) -> requests.Response:
        what = f"{self.platform} {request.operation}"
        if outcome.response is None:
            error = outcome.error
            timed_out = isinstance(error, (requests.exceptions.Timeout, TimeoutError))
            status = 504 if timed_out else 503
            message = f"{what}: {'timed out' if timed_out else 'unreachable'} ({type(error).__name__})"
            if outcome.sent and not idempotent:
                raise UpstreamAmbiguous(message, status=status) from error
            raise UpstreamUnavailable(message, status=status) from error
        response = outcome.response
        code = response.status_code
        if not idempotent and classify_write(outcome) is WriteVerdict.AMBIGUOUS:
            # Whatever the code says, the platform may have applied the write: the service looks it up.
            status = {503: 503, 504: 504}.get(code, 502)
            moved = (f" (moved to {response.headers.get('Location')}: check {self.platform}.api_base_url)"
                     if 300 <= code < 400 else "")
            raise UpstreamAmbiguous(f"{what}: the platform answered {code} without confirming{moved}",
                                    upstream_status=code, status=status)
        if code == 429:
            retry_after = max(1.0, self.gate.blocked_for())
            raise UpstreamUnavailable(f"{what}: rate limited by the platform", retry_after=retry_after,
                                      upstream_status=429)
        if 300 <= code < 400:
            # Not followed (see `_send`), so nothing was applied: the platform's address has changed.
            moved_to = response.headers.get("Location")
            raise UpstreamError(f"{what}: the platform answered {code} and moved to {moved_to}; "
                                f"set {self.platform}.api_base_url to the address it moved to",
                                retry_after=None, upstream_status=code)
        if code in (401, 403):
            raise UpstreamAuthError(f"{what}: the platform refused the bridge's credentials ({code}: "
                                    f"{self._message_of(response)})", upstream_status=code)
        if code >= 500:
            status = {503: 503, 504: 504}.get(code, 502)
            raise UpstreamUnavailable(f"{what}: platform error {code}", upstream_status=code, status=status)
        return response


def classify_unexpected(exc: Exception) -> UpstreamError:
    """An error the platform's answer could not be parsed from."""
    return UpstreamUnavailable(f"unexpected answer from the platform ({type(exc).__name__})", status=502)
