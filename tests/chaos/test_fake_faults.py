"""The fault kinds the chaos run added to the fakes: a create that stalls, one that lands late, a refused connection."""
from __future__ import annotations

import threading

import pytest
import requests

from tests.fakes import server as faults
from tests.fakes.test_fake_bitbybit import create


@pytest.fixture
def fake(fake_bitbybit):
    return fake_bitbybit


def test_apply_then_delay_creates_before_the_client_times_out(fake):
    fake.faults.script("create", faults.apply_then_delay(0.5))

    with pytest.raises(requests.Timeout):
        create(fake, timeout=0.2)

    assert fake.create_count == 1  # already applied when the client gave up


def test_status_then_apply_later_answers_at_once_and_creates_afterwards(fake):
    fake.faults.script("create", faults.status_then_apply_later(520, 0.2, "<html>520</html>"))

    answered = create(fake)

    assert answered.status_code == 520 and answered.text == "<html>520</html>"
    assert fake.create_count == 0
    assert fake.wait_until(lambda: fake.create_count == 1, timeout=5)
    assert next(iter(fake.orders.values()))["tags"] == ["ordered_via_bik", "bik:nb_1"]


def test_the_gate_drops_a_request_unread_and_applies_nothing(fake):
    asked = threading.Event()

    def refuse(environ: dict) -> bool:
        asked.set()
        return environ["REQUEST_METHOD"] == "POST"

    fake.server.gate = refuse

    with pytest.raises(requests.ConnectionError):
        create(fake)

    assert asked.is_set() and fake.create_count == 0
    assert [(r.method, r.status) for r in fake.requests] == [("POST", None)]
    fake.server.gate = None
    assert create(fake).status_code == 201
