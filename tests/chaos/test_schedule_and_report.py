"""The chaos run's own parts: a seed fixes the schedule, and the invariants catch what they name."""
from __future__ import annotations

from tests.chaos.clients import Answer, make_drafts
from tests.chaos.journal import Journal
from tests.chaos.platforms import PLATFORMS
from tests.chaos.profile import Profile
from tests.chaos.report import check
from tests.chaos.schedule import CREATE_FAULTS, ChaosScript, timeline


def script(seed: int) -> ChaosScript:
    return ChaosScript(Profile.short_one(seed, "bigcommerce"), PLATFORMS["bigcommerce"], Journal(), read_timeout=10)


def test_a_seed_fixes_the_faults_the_events_and_the_drafts():
    profile = Profile.short_one(42, "bitbybit")

    assert script(42)._plan == script(42)._plan
    assert script(42)._plan != script(43)._plan
    assert timeline(profile, "bitbybit") == timeline(profile, "bitbybit")
    first = make_drafts(42, "bitbybit", 20, 10.0, 0.2, clock=lambda: 1_800_000_000)
    again = make_drafts(42, "bitbybit", 20, 10.0, 0.2, clock=lambda: 1_800_000_000)
    assert [(d.id, d.body, d.at, d.duplicate) for d in first] == [(d.id, d.body, d.at, d.duplicate) for d in again]
    assert all(d.id.startswith("nb_17999") or d.id.startswith("nb_1800") for d in first)


def test_a_short_run_meets_every_kind_of_create_fault_early():
    for seed in range(20):
        chaos = script(seed)
        early = chaos._plan[:chaos.profile.drafts // 3]
        assert set(CREATE_FAULTS) <= set(early), seed


def ok(draft: str, order: str, phase: str = "faults") -> Answer:
    return Answer(draft, phase, "a", 200, order)


def test_the_invariants_name_each_broken_draft():
    answers = [
        ok("one", "1"), ok("one", "1", "settle"),                       # kept every promise
        ok("twice", "2"), ok("twice", "3", "settle"),                   # two orders, 2xx naming both
        ok("wrong", "9", "settle"),                                     # a 2xx naming an order the store lacks
        Answer("crash", "faults", "b", 500), ok("crash", "5", "settle"),
        Answer("bare", "faults", "b", 502), ok("bare", "6", "settle"),
        Answer("stuck", "settle", "a", 409, retry_after="3"),
    ]
    orders = {"one": ["1"], "twice": ["2", "3"], "wrong": ["4"], "crash": ["5"], "bare": ["6"]}

    checks = {c.name: [b.split(":")[0] for b in c.breaches]
              for c in check(["one", "twice", "wrong", "crash", "bare", "stuck"], answers, orders)}

    assert checks == {
        "every draft has at most one order in the store": ["twice"],
        "every draft that got a 2xx has exactly one order": ["twice"],
        "every 2xx for a draft names that order": ["twice", "wrong"],
        "no 500 was ever answered": ["crash"],
        "every other 5xx carries Retry-After": ["bare"],
        "every draft ends with exactly one order and a 2xx (after reconcile and retries)": ["twice", "stuck"],
    }
