"""The request being served: its id reaches every log line and upstream call made on its behalf."""
from __future__ import annotations

import contextvars
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass
class RequestContext:
    """What one Bik request has done so far, for its log line and metrics."""

    request_id: str
    upstream: list[dict] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)  # why a read took a slower path than usual, if it did
    # Set by the views and error handlers: a request that names no endpoint (health, metrics) leaves no line.
    endpoint: Optional[str] = None
    draft_order_id: Optional[str] = None
    order_id: Optional[str] = None
    decision: Optional[str] = None  # how placeOrder settled the draft (created, replayed, ...)
    error_type: Optional[str] = None
    # Work to run once the answer has left, whatever the answer was (a placed order's record, say).
    after_answer: list[Callable[[], None]] = field(default_factory=list)


_current: contextvars.ContextVar[Optional[RequestContext]] = contextvars.ContextVar("bik_bridge_request",
                                                                                     default=None)


def begin(request_id: str) -> RequestContext:
    """Start serving a request in this thread; `end` closes it."""
    context = RequestContext(request_id)
    _current.set(context)
    return context


def end() -> None:
    """No request is being served any more; later lines carry no stale id."""
    _current.set(None)


def current() -> Optional[RequestContext]:
    """The request being served, if any."""
    return _current.get()


def note_upstream(call: dict) -> None:
    """Remember one upstream attempt for the request's log line."""
    context = _current.get()
    if context is not None:
        context.upstream.append(call)  # list.append is atomic: parallel reads of one request may add at once


def note_fallback(reason: str) -> None:
    """Remember that serving the request took a slower path than usual (more upstream reads), and why."""
    context = _current.get()
    if context is not None:
        context.fallbacks.append(reason)


class ContextThreadPool(ThreadPoolExecutor):
    """A thread pool whose tasks run in the submitter's context, so parallel reads keep the request id."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
