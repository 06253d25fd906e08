"""Sending requests to a platform: one pooled session, bounded retries, failures translated into the error tree.

Which attempt may be repeated, and what a write's outcome means, are the pure rules of
`bridge.upstream.attempts`; this module applies them. A create that may have been applied is never re-sent
here: it surfaces as `UpstreamAmbiguous` and the service looks the draft up before any new create. Every other
failure becomes an error of `bridge.core.errors` here, except the refusals only the platform's body explains
(`EXPLAINED`): `send` returns those, and the adapter translates them.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional
from urllib.parse import urlencode

import requests
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt
from tenacity.wait import WaitBaseT

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
from bridge.ops import context
from bridge.upstream.attempts import (
    EXPLAINED,
    IDEMPOTENT_METHODS,
    MISCONFIGURED,
    Attempt,
    WriteVerdict,
    backoff,
    classify_write,
    should_retry,
    stop_before_deadline,
    stop_before_wait_over,
    was_sent,
)
from bridge.upstream.outbound import OutboundRequest
from bridge.upstream.quota import RateGate, RateLimitHeaders

log = logging.getLogger("bik_bridge.upstream")


def with_query(url: str, params: Optional[dict[str, str]]) -> str:
    """`url` with `params` added to its query, encoded as requests encodes them."""
    if not params:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params, doseq=True)}"


class Upstream:
    """Sends `OutboundRequest`s through the quota gate with bounded retries: how every adapter reaches its platform."""

    def __init__(
        self,
        session: requests.Session,
        settings: UpstreamConfig,
        *,
        platform: str,
        rate_headers: RateLimitHeaders,
        message_of: Callable[[requests.Response], str],
        sleep: Callable[[float], None] = time.sleep,
        jitter: Optional[WaitBaseT] = None,
        observer: Optional[Callable[..., None]] = None,
        gate: Optional[RateGate] = None,
    ):
        self.session = session
        self.settings = settings
        self.platform = platform
        self.gate = gate or RateGate(rate_headers)
        self._message_of = message_of
        self._sleep = sleep
        self._backoff = backoff(jitter)
        self._observer = observer

    def warm_up(self) -> None:
        """Connect the quota gate; the platform itself is not called before Bik asks for something."""
        self.gate.warm_up()

    def send(self, request: OutboundRequest, deadline: Deadline) -> requests.Response:
        """Send with retries; return a 2xx or a refusal only the platform's body explains (EXPLAINED), else raise."""
        idempotent = request.method.upper() in IDEMPOTENT_METHODS
        attempt_no = 0

        def attempt() -> Attempt:
            nonlocal attempt_no
            # Every attempt, retries included, takes its slot of the quota first; it raises, sending nothing,
            # when the quota will not come back within the budget. A first attempt may use the slot the request
            # before it took for it (`Deadline.pair_next_slot`) unless the quota was seen spent since; a retry,
            # after a 429 perhaps, never does.
            if not (attempt_no == 0 and deadline.use_held_slot() and not self.gate.seen_spent()):
                self._wait_for_quota(deadline)
            attempt_no += 1
            return self._attempt(request, deadline, attempt_no)

        def wait(state: RetryCallState) -> float:
            # A 429 that said when the quota resets waits for exactly that; one that said nothing backs off.
            if state.outcome.result().status == 429:
                return self.gate.blocked_for() or self._backoff(state)
            return self._backoff(state)

        outcome = attempt()
        if should_retry(outcome, idempotent=idempotent):
            # Built only now: most calls succeed at once, and building the retry policy costs a call dearly.
            made = [outcome]  # the policy's first attempt is the one already made
            retrying = Retrying(
                # The budget leaves room for the next attempt to do real work; a quota resetting after the cap is
                # not waited for (the 429 is answered 503 with Retry-After).
                stop=(stop_after_attempt(self.settings.max_attempts) | stop_before_deadline(deadline)
                      | stop_before_wait_over(self._quota_patience(deadline))),
                wait=wait,
                retry=retry_if_result(lambda o: should_retry(o, idempotent=idempotent)),
                sleep=self._sleep,
                reraise=True,
                retry_error_callback=lambda state: state.outcome.result(),
            )
            outcome = retrying(lambda: made.pop() if made else attempt())
        return self._settle(request, outcome, idempotent)

    def _quota_patience(self, deadline: Deadline) -> float:
        """How long this call may wait for the quota: the configured cap, or less if its budget says so."""
        cap = self.settings.rate_limit_wait_cap_seconds
        return cap if deadline.quota_patience is None else min(cap, deadline.quota_patience)

    def _wait_for_quota(self, deadline: Deadline) -> None:
        """Take a slot of the platform's quota, waiting as its headers said, never past the cap, the budget or
        the budget's own patience for the quota."""
        patience = self._quota_patience(deadline)
        waited = 0.0
        while True:
            if deadline.pair_next_slot:
                # Read before asking: the slot's time on this clock is then never later than the one logged.
                asked = deadline.now()
                wait, next_for = self.gate.reserve_with_next()
                if wait <= 0 and next_for > 0:
                    deadline.hold_slot(asked, next_for)
            else:
                wait = self.gate.reserve()
            if wait <= 0:
                deadline.pair_next_slot = False
                return
            if waited + wait > min(patience, deadline.remaining()):
                blocked = max(wait, self.gate.blocked_for())
                raise RateLimited(f"{self.platform} rate limit reached; quota resets in {blocked:.1f}s",
                                  retry_after=max(1, blocked))
            self._sleep(wait)
            waited += wait

    def _attempt(self, request: OutboundRequest, deadline: Deadline, attempt_no: int) -> Attempt:
        remaining = deadline.remaining()
        if remaining <= 0:
            return Attempt(error=TimeoutError("upstream budget exhausted"), sent=False)
        timeout = (min(self.settings.connect_timeout_seconds, remaining), min(self.settings.timeout_seconds, remaining))
        started = time.perf_counter()
        try:
            response = self._send(request, timeout)
        except requests.RequestException as exc:
            outcome = Attempt(error=exc, sent=was_sent(exc))
        else:
            outcome = Attempt(response=response)
        self._report_attempt(request, outcome, attempt_no, (time.perf_counter() - started) * 1000)
        if outcome.response is not None:
            self.gate.observe(outcome.response)
        return outcome

    def _send(self, request: OutboundRequest, timeout: tuple[float, float]) -> requests.Response:
        """One request through the session's pooled transport, without `Session.send`'s extras.

        Cookies, hooks and redirects serve browsers, not an API client, and cost a third of a call's CPU here
        (docs/performance.md). A redirect is answered, never followed: following one could send an order again.
        The request is prepared as `requests.Request.prepare` would, less the cookies and hooks.
        """
        session = self.session
        prepared = requests.PreparedRequest()
        prepared.prepare_method(request.method)
        # The query encoded here as requests encodes it (`urlencode`, `doseq`), without its generic checks of what
        # params may be, which cost more than the rest of the preparation; no cookie jar or hooks either.
        prepared.prepare_url(with_query(request.url, request.params), None)
        prepared.prepare_headers({**session.headers, **request.headers})
        prepared.prepare_body(None, None, request.json)
        prepared.prepare_auth(None, prepared.url)
        response = session.get_adapter(request.url).send(prepared, stream=False, timeout=timeout,
                                                         verify=session.verify, cert=session.cert,
                                                         proxies=session.proxies)
        response.content  # noqa: B018 - read the whole body now, so the connection goes back to the pool
        return response

    def _report_attempt(self, request: OutboundRequest, outcome: Attempt, attempt_no: int, ms: float) -> None:
        """One attempt to the debug log, the request's own log line and the metrics observer."""
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

    def _settle(self, request: OutboundRequest, outcome: Attempt, idempotent: bool) -> requests.Response:
        """The last attempt's response for the adapter to read, or the error of the tree it means."""
        what = f"{self.platform} {request.operation}"
        ambiguous = not idempotent and classify_write(outcome) is WriteVerdict.AMBIGUOUS
        if outcome.response is None:
            error = outcome.error
            timed_out = isinstance(error, (requests.exceptions.Timeout, TimeoutError))
            message = f"{what}: {'timed out' if timed_out else 'unreachable'} ({type(error).__name__})"
            if ambiguous:
                raise UpstreamAmbiguous(message) from error
            raise (UpstreamTimeout if timed_out else UpstreamUnreachable)(message) from error
        response = outcome.response
        code = response.status_code
        if ambiguous:
            # Whatever the code says, the platform may have applied the write: the service looks it up.
            moved = (f" (moved to {response.headers.get('Location')}: check {self.platform}.api_base_url)"
                     if 300 <= code < 400 else "")
            raise UpstreamAmbiguous(f"{what}: the platform answered {code} without confirming{moved}",
                                    upstream_status=code)
        if code == 429:
            raise RateLimited(f"{what}: rate limited by the platform", retry_after=max(1.0, self.gate.blocked_for()),
                              upstream_status=429)
        if 300 <= code < 400:
            # Not followed (see `_send`), so nothing was applied: the platform's address has changed.
            moved_to = response.headers.get("Location")
            raise UpstreamMisconfigured(f"{what}: the platform answered {code} and moved to {moved_to}; "
                                        f"set {self.platform}.api_base_url to the address it moved to",
                                        upstream_status=code)
        if code in (401, 403):
            raise UpstreamAuthError(f"{what}: the platform refused the bridge's credentials ({code}: "
                                    f"{self._message_of(response)})", upstream_status=code)
        if code in MISCONFIGURED:
            raise UpstreamMisconfigured(f"{what}: the platform refused how the bridge sent the request ({code}: "
                                        f"{self._message_of(response)}); check {self.platform}.api_base_url",
                                        upstream_status=code)
        if code >= 500:
            # A read's 503 and 504 say what they are; any other 5xx is a failure of the platform's own.
            error_class = {503: UpstreamUnreachable, 504: UpstreamTimeout}.get(code, UpstreamFailed)
            raise error_class(f"{what}: platform error {code}", upstream_status=code)
        if not 200 <= code < 300 and code not in EXPLAINED:
            raise UpstreamFailed(f"{what}: the platform answered {code}: {self._message_of(response)}",
                                 upstream_status=code)
        return response
