"""The one error tree of bik-bridge: each class has one meaning, one HTTP status and one answer to "retry?".

                                status retry applied
    BridgeError                   500   no   maybe  anything unexpected (rendered without details)
    ├── ConfigError                -    no   no     invalid configuration (CLI exit 2)
    ├── RequestError              4xx   no   no     Bik's request cannot be served as sent (never raised itself)
    │   ├── Unauthorized          401               missing or wrong credentials
    │   ├── BadRequest            400               not JSON, or a field is wrong (carries field details)
    │   ├── OrderNotFound         404               unknown order, or one not placed through the bridge
    │   ├── MethodNotAllowed      405
    │   ├── RequestTimeout        408               the body did not arrive within server.read_timeout_seconds
    │   ├── PayloadTooLarge       413
    │   ├── UnsupportedMediaType  415
    │   ├── InFlight              409   yes         same draftOrderId still being placed
    │   ├── PayloadMismatch       422               same draftOrderId, other payload, policy "reject"
    │   └── CurrencyMismatch      422               Bik's currency is not the store's; nothing stored or sent
    ├── OrderRejected             422   no   no     the order cannot be placed as sent (out of stock, unknown variant)
    ├── StoreUnavailable          503   yes  no     the idempotency store did not answer; nothing was sent
    └── UpstreamError             502               the platform did not serve the call (never raised itself)
        ├── UpstreamUnreachable   503   yes  no     not reached (refused, DNS, TLS, dropped) by a read or by a write
        │                                           that never left; or a read answered 503
        ├── RateLimited           503   yes  no     the platform's quota is spent, or the gate holds the call back
        ├── UpstreamTimeout       504   yes  no     no answer in time to a read or to a write that never left,
        │                                           or a read answered 504
        ├── UpstreamFailed        502   yes  no     a read answered with a 5xx, a 4xx its adapter cannot read,
        │                                           an unreadable body or an unexpected shape
        ├── UpstreamAmbiguous     504   yes  maybe  a write may have been applied and was not confirmed
        ├── LookupInconclusive    503   yes  maybe  a search for the draft's order proved neither presence nor absence
        ├── UpstreamAuthError     502   no   no     the platform refused the bridge's own credentials
        └── UpstreamMisconfigured 502   no   no     the platform refused what the configuration got wrong: 404 for
                                                    the store or base URL, 405/413/415, a read's redirect

`retryable` (retry): the same request may succeed later; Bik's answer says when, in `Retry-After`.
`maybe_applied` (applied): a write may have landed, so the draft is looked up and the write never sent again.
`UpstreamAmbiguous` is a 504, not a 502: the platform's answer is not known yet, and time and a lookup (Bik's
retry) settle it, not a fix; the service answers every unconfirmed create with it, whatever the platform said.

`bridge.upstream.client` translates `requests` exceptions and platform status codes into this tree, all but the
refusals only a platform's body explains, which its adapter translates with what that body and the answers'
shapes tell; the app renders every error from these class attributes.
"""
from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    status = 500
    public_message = "internal error"
    retryable = False  # the same request may succeed later: the answer carries Retry-After
    retry_after: float | None = None  # seconds Bik is asked to wait when retryable; an instance may be more exact
    maybe_applied = True  # unexpected: a write may have landed, so it is looked up before any new one

    def __init__(self, message: str | None = None, *, retry_after: float | None = None):
        super().__init__(message or self.public_message)
        self.message = message or self.public_message
        if retry_after is not None:
            if not self.retryable:
                raise TypeError(f"{type(self).__name__} is not retryable, so it takes no retry_after")
            self.retry_after = retry_after

    def body(self) -> dict:
        """The JSON body Bik receives."""
        return {"error": self.message}


class ConfigError(BridgeError):
    """The configuration is invalid; the message names the key and the problem."""

    maybe_applied = False


class RequestError(BridgeError):
    """Bik's request cannot be served as sent."""

    status = 400
    maybe_applied = False


class Unauthorized(RequestError):
    status = 401
    public_message = "unauthorized"


class BadRequest(RequestError):
    status = 400

    def __init__(self, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.details = details or []

    def body(self) -> dict:
        body = super().body()
        if self.details:
            body["details"] = self.details
        return body


class OrderNotFound(RequestError):
    status = 404


class MethodNotAllowed(RequestError):
    status = 405


class RequestTimeout(RequestError):
    """The client sent its request too slowly; the connection closes after this answer."""

    status = 408


class PayloadTooLarge(RequestError):
    status = 413


class UnsupportedMediaType(RequestError):
    status = 415


class InFlight(RequestError):
    """Another request is placing the same draft right now; Bik retries after Retry-After."""

    status = 409
    retryable = True
    retry_after = 1


class PayloadMismatch(RequestError):
    status = 422


class CurrencyMismatch(RequestError):
    """Bik priced the order in another currency than the store's: placing it would mislabel every amount."""

    status = 422


class OrderRejected(BridgeError):
    """The platform refused the order (out of stock, invalid options): a corrected retry may pass."""

    status = 422
    maybe_applied = False


class StoreUnavailable(BridgeError):
    """The idempotency store did not answer."""

    status = 503
    public_message = "idempotency store unavailable; nothing was sent, retry later"
    retryable = True
    retry_after = 5
    maybe_applied = False


class UpstreamError(BridgeError):
    """The platform did not serve the call; `upstream_status` is its answer's code, None when none came."""

    status = 502

    def __init__(self, message: str, *, retry_after: float | None = None, upstream_status: int | None = None):
        super().__init__(message, retry_after=retry_after)
        self.upstream_status = upstream_status


class UpstreamUnreachable(UpstreamError):
    """A read, or a write that never left, did not reach the platform, or a read was answered 503: nothing applied."""

    status = 503
    retryable = True
    retry_after = 5
    maybe_applied = False


class RateLimited(UpstreamError):
    """The platform's quota is spent, or will not come back within the budget: nothing was sent past it."""

    status = 503
    retryable = True
    retry_after = 5
    maybe_applied = False


class UpstreamTimeout(UpstreamError):
    """Time ran out before an answer to a read or to a write that never left, or a read was answered 504."""

    status = 504
    retryable = True
    retry_after = 5
    maybe_applied = False


class UpstreamFailed(UpstreamError):
    """The platform answered a read with something the bridge cannot use."""

    status = 502
    retryable = True
    retry_after = 5
    maybe_applied = False


class UpstreamAmbiguous(UpstreamError):
    """A write may have been applied and the platform did not confirm it: look it up, never send it again."""

    status = 504
    retryable = True
    retry_after = 5
    maybe_applied = True


class LookupInconclusive(UpstreamError):
    """The platform was searched for a draft's order and the search proved nothing: never create blind."""

    status = 503
    retryable = True
    retry_after = 30
    maybe_applied = True


class UpstreamAuthError(UpstreamError):
    """The platform refused the bridge's own credentials: nothing changes until they are fixed."""

    status = 502
    maybe_applied = False


class UpstreamMisconfigured(UpstreamError):
    """The platform refused how the bridge is set up to call it (base URL, store, method): nothing was applied."""

    status = 502
    maybe_applied = False
