"""The gate an instance's workers start through: one at a time, the first told so, never jammed by a dead worker."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading

import pytest

from bridge.http.start_gate import StartGate

fork = multiprocessing.get_context("fork")


@pytest.fixture
def gate():
    made = StartGate()
    yield made
    made.close()


def _hold(gate: StartGate, inside, leave, left) -> None:
    """A worker starting: pass through the gate, staying inside until told to leave."""
    with gate.passing():
        inside.set()
        leave.wait(30)
        left.value = 1


def _pass_in_thread(gate: StartGate) -> tuple[threading.Event, list[bool]]:
    through, first = threading.Event(), []

    def run() -> None:
        with gate.passing() as is_first:
            first.append(is_first)
        through.set()

    threading.Thread(target=run, daemon=True).start()
    return through, first


def test_only_the_first_worker_through_is_told_it_is_first(gate):
    seen = []
    for _ in range(3):
        with gate.passing() as first:
            seen.append(first)
    assert seen == [True, False, False]


def test_a_worker_that_fails_inside_leaves_the_next_one_first(gate):
    with pytest.raises(RuntimeError):
        with gate.passing():
            raise RuntimeError("the store would not warm up")
    with gate.passing() as first:
        assert first


def test_a_worker_waits_while_a_sibling_is_inside(gate):
    inside, leave, left = fork.Event(), fork.Event(), fork.RawValue("b", 0)
    sibling = fork.Process(target=_hold, args=(gate, inside, leave, left))
    sibling.start()
    try:
        assert inside.wait(10)
        through, _ = _pass_in_thread(gate)
        # A gate that let it in would do so at once; half a second is long enough to see that, and a gate that
        # works passes this whatever the machine's speed.
        assert not through.wait(0.5), "got through while a sibling was inside"
        leave.set()
        assert through.wait(10)
        assert left.value == 1  # it got through only after the sibling had left
    finally:
        leave.set()
        sibling.join(10)


def test_a_worker_killed_inside_does_not_jam_the_gate(gate):
    """A worker SIGKILLed while it starts (OOM, an operator) leaves the gate open for the one replacing it."""
    inside, leave, left = fork.Event(), fork.Event(), fork.RawValue("b", 0)
    sibling = fork.Process(target=_hold, args=(gate, inside, leave, left))
    sibling.start()
    assert inside.wait(10)
    os.kill(sibling.pid, signal.SIGKILL)
    sibling.join(10)

    through, first = _pass_in_thread(gate)

    assert through.wait(10), "the gate stayed shut after its holder died"
    assert first == [True]  # the dead worker never served
