"""The chaos run's own parts: a seed fixes the schedule, and the invariants catch what they name."""
from __future__ import annotations

from tests.chaos.clients import Answer, make_drafts
from tests.chaos.journal import Journal
from tests.chaos.platforms import PLATFORMS
from tests.chaos.profile import OVERFLOW, Profile
from tests.chaos.report import check, queued_lookup_problem, quota_kept
from tests.chaos.schedule import (
    CREATE_FAULTS,
    REDIS_AOF,
    REDIS_EMPTY,
    RESTART_ALL,
    ChaosScript,
    timeline,
)


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


def test_the_overflow_profile_never_empties_redis_and_restarts_every_instance_mid_queue():
    for seed in range(20):
        standard = [e.action for e in timeline(Profile.short_one(seed, "bigcommerce"), "bigcommerce")]
        overflow = timeline(Profile.short_one(seed, "bigcommerce", OVERFLOW), "bigcommerce")
        actions = [e.action for e in overflow]

        assert REDIS_EMPTY in standard and RESTART_ALL not in standard
        assert REDIS_EMPTY not in actions and actions.count(REDIS_AOF) == 2 and actions.count(RESTART_ALL) == 1
        restart = next(e for e in overflow if e.action == RESTART_ALL)
        assert 0.5 * 14.0 <= restart.at <= 0.75 * 14.0


def test_storm_headers_announce_the_quota_the_profile_gives_the_store():
    profile = Profile.short_one(7, "bitbybit", OVERFLOW)
    chaos = ChaosScript(profile, PLATFORMS["bitbybit"], Journal(), read_timeout=10)
    requests, window = profile.quota

    assert chaos.quota == profile.quota
    assert PLATFORMS["bitbybit"].storm_headers(2.2, chaos.quota)["RateLimit-Limit"] == str(requests)
    headers = PLATFORMS["bigcommerce"].storm_headers(2.2, chaos.quota)
    assert headers["X-Rate-Limit-Requests-Quota"] == str(requests)
    assert headers["X-Rate-Limit-Time-Window-Ms"] == str(int(window * 1000))
    assert PLATFORMS["bitbybit"].config_section(type("Fake", (), {"api_key": "k", "api_base_url": "u"}),
                                                chaos.quota)["bitbybit"]["rate_limit_window_seconds"] == window


def test_a_queued_id_names_its_own_drafts_order_and_only_one_id_is_answered():
    answers = [
        ok("queued", "BK-queued"), ok("queued", "BK-queued", "settle"),      # queued, replayed: the same id
        ok("direct", "7", "settle"),                                          # placed at once
        ok("mixed", "BK-mixed"), ok("mixed", "8", "settle"),                  # two ids for one draft
        ok("borrowed", "BK-queued", "settle"),                                # another draft's queued id
        ok("lost", "BK-lost", "settle"),                                      # queued, never placed
    ]
    orders = {"queued": ["5"], "direct": ["7"], "mixed": ["8"], "borrowed": ["9"]}

    checks = {c.name.split(",")[0]: [b.split(":")[0] for b in c.breaches]
              for c in check(["queued", "direct", "mixed", "borrowed", "lost"], answers, orders, queued_prefix="BK-")}

    assert checks["every 2xx for a draft names that order"] == ["mixed", "borrowed", "lost"]
    assert checks["every draft that got a 2xx has exactly one order"] == ["lost"]


def test_getorder_on_a_queued_id_must_not_call_a_placed_order_cancelled():
    placed = {"order": {"id": "BK-x", "status": "ORDERED"}}
    refused = {"order": {"id": "BK-x", "status": "CANCELLED", "reason": "out of stock"}}

    assert queued_lookup_problem("BK-x", 200, placed, ["5"]) == ""
    assert "CANCELLED (out of stock)" in queued_lookup_problem("BK-x", 200, refused, ["5"])
    assert queued_lookup_problem("BK-x", 404, None, ["5"]) == "getOrder BK-x answered 404"


def test_the_quota_invariant_breaks_on_any_request_the_store_refused_over_its_quota():
    journal = Journal()
    journal.add("restart Redis with AOF (fsync always: records kept)", detail="down 1.0 s")
    journal.add("redis back with 3 keys")
    journal.now = lambda: journal.entries()[-1].at + 60  # a minute later: Redis long back
    journal.add("store: request over the quota")

    assert quota_kept(0, (30, 10.0), journal).held
    broken = quota_kept(1, (30, 10.0), journal)
    assert not broken.held and "1 requests arrived in a window whose quota was spent" in broken.breaches[0]
    assert "redis back" in broken.breaches[0]


def test_a_request_over_the_quota_while_redis_was_away_is_counted_apart_not_a_breach():
    """Each process paces alone while Redis is away (documented): the run says so, and holds."""
    journal = Journal()
    journal.add("restart Redis with AOF (fsync always: records kept)", detail="down 1.0 s")
    journal.add("redis back with 3 keys")
    journal.add("store: request over the quota")

    kept = quota_kept(1, (30, 10.0), journal)

    assert kept.held and "while Redis was away or just back" in kept.notes[0]
