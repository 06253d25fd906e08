"""What one attempt at the platform did, and what may follow: pure rules, tested as tables.

The line follows urllib3 and RFC 9110: a request that surely never left (connect error, rate-limited) may be
sent again whatever its method; one that may have been applied (timeout after sending, 5xx) is retried only if
it is a read. A write's outcome has one classification, `classify_write`: it was surely not applied only when
nothing left the machine or the platform refused it in its own words; everything else may have been applied.
"""
from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass
from typing import Optional

import requests
import urllib3.exceptions
from tenacity import RetryCallState
from tenacity.stop import stop_base
from tenacity.wait import WaitBaseT, wait_base, wait_exponential, wait_random_exponential

from bridge.core.deadline import Deadline

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# A platform that answers one of these refused the request in its own words: nothing was applied.
REFUSALS = frozenset({400, 401, 403, 404, 405, 409, 413, 415, 422, 429})
# Refusals only the platform's body explains (out of stock, unknown order, a wrong store): its adapter reads them.
EXPLAINED = frozenset({400, 404, 409, 422})
# Refusals of how the bridge sends (method, size, media type), never of what: its configuration is at fault.
MISCONFIGURED = frozenset({405, 413, 415})



@dataclass(frozen=True)
class Attempt:
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


def classify_write(outcome: Attempt) -> WriteVerdict:
    """Whether a write surely was not applied; every outcome not proven otherwise is ambiguous."""
    if outcome.response is None:
        return WriteVerdict.AMBIGUOUS if outcome.sent else WriteVerdict.NOT_SENT
    status = outcome.response.status_code
    if 200 <= status < 300:
        return WriteVerdict.ANSWERED
    if status in REFUSALS:
        return WriteVerdict.REFUSED
    return WriteVerdict.AMBIGUOUS  # any 5xx (52x from a CDN too), a 3xx, a 1xx, a 4xx outside REFUSALS


def should_retry(outcome: Attempt, *, idempotent: bool) -> bool:
    """Whether another attempt is allowed: never for a write that may have been applied."""
    if not idempotent:
        verdict = classify_write(outcome)
        return verdict is WriteVerdict.NOT_SENT or outcome.status == 429
    if outcome.response is None:
        return True
    status = outcome.response.status_code
    return status == 429 or 500 <= status <= 599


def backoff(jitter: Optional[WaitBaseT] = None) -> wait_base:
    """Exponential backoff with equal jitter: before retry n, half of min(2 s, 0.2 s * 2**(n-1)) plus `jitter`.

    `jitter` is by default a random part of up to that half again; tests pass a fixed tenacity wait instead.
    """
    half = wait_exponential(multiplier=0.1, max=1.0)
    return half + (jitter if jitter is not None else wait_random_exponential(multiplier=0.1, max=1.0))


class stop_before_deadline(stop_base):  # noqa: N801 - named as tenacity names its stops
    """Stop when, after the next wait, less than `room` seconds of the request's budget would be left.

    tenacity's `stop_before_delay` counts from the retry's own start on its own clock; the `Deadline` started with
    the Bik request (lookups and waits for the quota spend it too) and runs on the clock the bridge was given.
    """

    def __init__(self, deadline: Deadline, room: float = 0.05):
        self.deadline = deadline
        self.room = room

    def __call__(self, retry_state: RetryCallState) -> bool:
        return retry_state.upcoming_sleep + self.room >= self.deadline.remaining()


class stop_before_wait_over(stop_base):  # noqa: N801 - named as tenacity names its stops
    """Stop rather than wait more than `cap` seconds for the next attempt (a quota that resets later)."""

    def __init__(self, cap: float):
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> bool:
        return retry_state.upcoming_sleep > self.cap


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
