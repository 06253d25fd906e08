"""Sending requests to a platform: one pooled session, bounded retries, errors translated once.

Which attempt may be repeated, and what a write's outcome means, are the pure rules of
`bridge.upstream.outcomes`; this module applies them. A create that may have been applied is never re-sent
here: it surfaces as `UpstreamAmbiguous` and the service looks the draft up before any new create.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Callable, Optional

import requests
from tenacity import RetryCallState, Retrying, retry_if_result

from bridge.config import UpstreamConfig
from bridge.core.deadline import Deadline
from bridge.core.errors import UpstreamAmbiguous, UpstreamAuthError, UpstreamError, UpstreamUnavailable
from bridge.ops import context
from bridge.upstream.outbound import OutboundRequest
from bridge.upstream.outcomes import (
    IDEMPOTENT_METHODS,
    Outcome,
    WriteVerdict,
    backoff_seconds,
    classify_write,
    should_retry,
    was_sent,
)
from bridge.upstream.quota import RateGate, RateLimitHeaders

log = logging.getLogger("bik_bridge.upstream")


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
