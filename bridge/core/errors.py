"""The one error tree of bik-bridge; each class knows the HTTP status Bik sees.

    BridgeError                      500  anything unexpected (rendered without details)
    ├── ConfigError                   -   invalid configuration (CLI exit 2)
    ├── RequestError                 4xx  Bik's request cannot be served as sent
    │   ├── Unauthorized             401
    │   ├── BadRequest               400  (carries field details)
    │   ├── OrderNotFound            404
    │   ├── MethodNotAllowed         405
    │   ├── RequestTimeout           408  the body did not arrive within server.read_timeout_seconds
    │   ├── PayloadTooLarge          413
    │   ├── UnsupportedMediaType     415
    │   ├── InFlight                 409  same draftOrderId still being placed (Retry-After)
    │   ├── PayloadMismatch          422  same draftOrderId, other payload, policy "reject"
    │   └── CurrencyMismatch         422  Bik's currency is not the store's; nothing stored or sent
    ├── OrderRejected                422  the platform refused the order deterministically
    ├── StoreUnavailable             503  the idempotency store did not answer; nothing was sent
    └── UpstreamError                5xx  the platform could not be reached or failed
        ├── UpstreamUnavailable      503  surely not applied (connect error, 429 beyond budget)
        ├── UpstreamAmbiguous        504  may have been applied (timeout, 5xx, 3xx, unreadable 2xx after sending)
        ├── LookupInconclusive       503  a search for the draft's order proved neither presence nor absence
        └── UpstreamAuthError        502  the platform refused the bridge's own credentials

Adapters translate `requests` exceptions and platform status codes into this tree once, in
`bridge.upstream.client`; the app renders every one of them as JSON `{"error": ...}`.
"""
from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    status = 500
    public_message = "internal error"

    def __init__(self, message: str | None = None, *, retry_after: float | None = None):
        super().__init__(message or self.public_message)
        self.message = message or self.public_message
        self.retry_after = retry_after

    def body(self) -> dict:
        """The JSON body Bik receives."""
        return {"error": self.message}


class ConfigError(BridgeError):
    """The configuration is invalid; the message names the key and the problem."""


class RequestError(BridgeError):
    """Bik's request cannot be served as sent."""

    status = 400


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
    status = 409


class PayloadMismatch(RequestError):
    status = 422


class CurrencyMismatch(RequestError):
    """Bik priced the order in another currency than the store's: placing it would mislabel every amount."""

    status = 422


class OrderRejected(BridgeError):
    """The platform refused the order (out of stock, invalid options): a corrected retry may pass."""

    status = 422


class StoreUnavailable(BridgeError):
    """The idempotency store did not answer."""

    status = 503
    public_message = "idempotency store unavailable; nothing was sent, retry later"

    def __init__(self, message: str | None = None, *, retry_after: float | None = 5):
        super().__init__(message, retry_after=retry_after)


class UpstreamError(BridgeError):
    """The platform could not be reached or failed; `maybe_applied` says if a write may have landed."""

    status = 502
    maybe_applied = False

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = 5,
        upstream_status: int | None = None,
        status: int | None = None,
    ):
        super().__init__(message, retry_after=retry_after)
        self.upstream_status = upstream_status
        if status is not None:
            self.status = status


class UpstreamUnavailable(UpstreamError):
    status = 503


class UpstreamAmbiguous(UpstreamError):
    status = 504
    maybe_applied = True


class LookupInconclusive(UpstreamError):
    """The platform was searched for a draft's order and the search proved nothing: never create blind."""

    status = 503
    maybe_applied = True

    def __init__(self, message: str, *, retry_after: float | None = 30):
        super().__init__(message, retry_after=retry_after)


class UpstreamAuthError(UpstreamError):
    status = 502

    def __init__(self, message: str, *, upstream_status: int | None = None):
        super().__init__(message, retry_after=None, upstream_status=upstream_status)
