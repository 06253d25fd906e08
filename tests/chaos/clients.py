"""Bik as the bridge meets it: drafts confirmed over time, each retried until it gets its order."""
from __future__ import annotations

import copy
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import requests

from tests.chaos.journal import Journal
from tests.integration.bridge_process import PROJECT_ROOT

# Bik's patience for one answer: above the bridge's longest request on the defaults (a 10 s wait for a busy
# draft, then a 20 s upstream budget).
ANSWER_TIMEOUT = 35.0
RETRY_CAP = 8.0  # Bik honours Retry-After, but never waits longer than this between tries
RETRIED = frozenset({409, 429})
CUSTOMERS = (
    ("Asha", "Rao", "+919800000101"), ("Vikram", "Iyer", "+919800000102"), ("Meera", "Nair", "+919800000103"),
    ("Rohan", "Gupta", "+919800000104"), ("Divya", "Menon", "+919800000105"), ("Arjun", "Shah", "+919800000106"),
    ("Kavya", "Reddy", "+919800000107"), ("Sanjay", "Das", "+919800000108"), ("Priya", "Pillai", "+919800000109"),
    ("Nikhil", "Bose", "+919800000110"),
)


def order_id_in(response: requests.Response) -> Optional[str]:
    """The order id a placeOrder answer names: None unless it is a 2xx, a marker when its body cannot be read."""
    if not 200 <= response.status_code < 300:
        return None
    try:
        return str(response.json()["order"]["id"])
    except (ValueError, KeyError, TypeError):
        return "<unreadable 2xx body>"


@dataclass(frozen=True)
class Answer:
    """One placeOrder attempt as Bik saw it: a status, or None when no answer came."""

    draft: str
    phase: str  # "faults" while faults are injected, "settle" afterwards
    instance: str
    status: Optional[int]
    order_id: Optional[str] = None
    retry_after: Optional[str] = None
    error: str = ""


@dataclass(frozen=True)
class Draft:
    """A confirmed Bik draft: its body, when it is sent, and whether Bik sends it twice at once."""

    id: str
    body: dict
    at: float
    duplicate: bool
    rng_seed: str


def make_drafts(seed: int, platform: str, count: int, window: float, duplicate_rate: float,
                clock: Callable[[], float] = time.time) -> list[Draft]:
    """`count` drafts with Bik-like ids (`nb_<unix seconds>_<random>`), spread over `window` seconds."""
    template = json.loads((PROJECT_ROOT / "examples" / "place-order.json").read_text(encoding="utf-8"))
    rng = random.Random(f"{seed}:{platform}:drafts")
    now = int(clock())
    drafts = []
    for index in range(count):
        # Bik made the draft when the cart was built, a little before the customer confirmed it.
        draft_id = f"nb_{now - rng.randint(5, 600)}_{rng.getrandbits(40):010x}"
        body = copy.deepcopy(template)
        body["draftOrderId"] = body["order"]["id"] = draft_id
        body["paymentPending"] = rng.random() < 0.7
        first, last, phone = rng.choice(CUSTOMERS)
        item = body["order"]["items"][0]
        item["quantity"] = rng.randint(1, 3)
        subtotal = item["price"] * item["quantity"]
        body["order"].update(subTotal=subtotal, total=subtotal + body["order"]["shippingCharge"]
                             - body["order"]["discount"], phoneNumber=phone)
        body["order"]["address"].update(firstName=first, lastName=last, phoneNumber=phone)
        drafts.append(Draft(draft_id, body, rng.uniform(0, window), rng.random() < duplicate_rate,
                            f"{seed}:{platform}:draft:{index}"))
    return sorted(drafts, key=lambda d: d.at)


class Answers:
    """Every answer of the run, thread-safe."""

    def __init__(self, journal: Journal) -> None:
        self._lock = threading.Lock()
        self._answers: list[Answer] = []
        self.journal = journal

    def add(self, answer: Answer) -> None:
        with self._lock:
            self._answers.append(answer)
        shown = answer.status if answer.status is not None else f"no answer ({answer.error})"
        detail = f"{answer.instance}: {shown}" + (f" order {answer.order_id}" if answer.order_id else "")
        if answer.retry_after:
            detail += f", Retry-After {answer.retry_after}"
        self.journal.add(f"bik: {answer.phase} answer", answer.draft, detail)

    def all(self) -> list[Answer]:
        with self._lock:
            return list(self._answers)


class BikClient:
    """Posts one draft to the instances, retrying on no answer, 409, 429 and 5xx, honouring Retry-After."""

    def __init__(self, instances: Sequence, answers: Answers, rng: random.Random) -> None:
        self.instances = instances
        self.answers = answers
        self.rng = rng

    def attempt(self, draft: Draft, phase: str, instance=None) -> Answer:
        target = instance if instance is not None else self.rng.choice(self.instances)
        try:
            response = requests.post(f"{target.url}/placeOrder", json=draft.body, timeout=ANSWER_TIMEOUT)
        except requests.RequestException as exc:
            answer = Answer(draft.id, phase, target.name, None, error=type(exc).__name__)
        else:
            answer = Answer(draft.id, phase, target.name, response.status_code, order_id_in(response),
                            response.headers.get("Retry-After"))
        self.answers.add(answer)
        return answer

    def until_placed(self, draft: Draft, phase: str, stop: threading.Event, first_instance=None) -> Optional[Answer]:
        """Retry until a 2xx or a final refusal, or until `stop` is set; returns the last answer."""
        tries = 0
        instance = first_instance
        while not stop.is_set():
            answer = self.attempt(draft, phase, instance)
            instance = None
            tries += 1
            if not retried(answer):
                return answer
            stop.wait(self.pause(answer, tries))
        return None

    def pause(self, answer: Answer, tries: int) -> float:
        """Retry-After when given (capped), else exponential backoff with jitter."""
        if answer.retry_after:
            try:
                return min(RETRY_CAP, max(0.0, float(answer.retry_after)))
            except ValueError:
                pass
        return min(RETRY_CAP, 0.25 * 2 ** min(tries, 6)) * (0.5 + self.rng.random() / 2)


def retried(answer: Answer) -> bool:
    """Bik retries on no answer, 409, 429 and any 5xx."""
    return answer.status is None or answer.status in RETRIED or answer.status >= 500
