"""Backoff jitter for tests: fixed fractions of its range, as an injected rng would give (stripe-python's isolation)."""
from __future__ import annotations

import itertools

from tenacity.wait import wait_exponential


def jitter_at(*fractions: float):
    """A backoff jitter taking these fractions of its range in turn (the range: half the backoff's ceiling)."""
    span = wait_exponential(multiplier=0.1, max=1.0)
    values = itertools.cycle(fractions)
    return lambda state: next(values) * span(state)


# Halfway through its range on every retry.
HALF_JITTER = jitter_at(0.5)
