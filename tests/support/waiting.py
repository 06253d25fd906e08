"""Waiting on what another process does where nothing announces it: bounded polling that names what it awaited."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.02


class WaitTimedOut(AssertionError):
    """What a test waited for did not happen within its bound."""


def wait_until(condition: Callable[[], T], what: str, *, timeout: float = 10.0, every: float = POLL_SECONDS) -> T:
    """Call `condition` every `every` s until it returns something true and return that; fail naming `what`."""
    give_up = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= give_up:
            raise WaitTimedOut(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
