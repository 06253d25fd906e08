"""One platform's chaos run: start everything, inject faults on schedule, settle, check the invariants."""
from __future__ import annotations

import collections
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import requests

from bridge.bootstrap import parse_config
from tests.chaos import report
from tests.chaos.clients import ANSWER_TIMEOUT, Answers, BikClient, Draft, make_drafts
from tests.chaos.journal import Journal
from tests.chaos.platforms import PLATFORMS
from tests.chaos.processes import ChaosRedis, Instance, queued_drafts, reconcile
from tests.chaos.profile import Profile
from tests.chaos.schedule import (
    KILL_WORKER,
    REDIS_AOF,
    REDIS_EMPTY,
    RESTART_ALL,
    RESTART_INSTANCE,
    STORM,
    ChaosScript,
    Event,
    timeline,
)

Say = Callable[[str], None]


# What the overflow profile sets besides `placement: overflow`: nothing, the section's defaults hold its queue.
OVERFLOW_SECTION: dict = {}
# How many drafts answered queued are looked up with getOrder once the queue has drained (each costs store reads,
# which the small quota paces).
BK_SAMPLE = 8


def bridge_config(platform: str, redis_url: str, section: dict, overflow: bool = False) -> dict:
    """The merchant's defaults plus only what this setup needs: the fake store, the run's own Redis, the placement."""
    config = {"platform": platform, "idempotency": {"backend": "redis", "redis_url": redis_url}, **section}
    if overflow:
        config["placement"] = "overflow"
        if OVERFLOW_SECTION:
            config["overflow"] = dict(OVERFLOW_SECTION)
    return config


class Run:
    """Everything one platform's run owns, and the steps it goes through."""

    def __init__(self, profile: Profile, workdir: Path, say: Say) -> None:
        self.profile = profile
        self.workdir = workdir
        self.platform = PLATFORMS[profile.platform]
        self.journal = Journal()
        self.answers = Answers(self.journal)
        self.say = lambda text: say(f"[{profile.platform} {self.journal.now():6.1f}s] {text}")
        self.events: collections.Counter = collections.Counter()
        self.event_notes: dict[str, str] = {}
        self.notes: list[str] = []
        self.fake = None
        self.redis = None
        self.instances: list[Instance] = []
        self.threads: list[threading.Thread] = []

    # set-up and tear-down ---------------------------------------------------------------

    def start(self) -> None:
        self.quota = self.profile.quota or self.platform.quota
        self.fake = self.platform.start_fake(self.quota)
        self._journal_quota_refusals()
        self.redis = ChaosRedis(self.workdir)
        # A queued order lives only in Redis until it is placed: the overflow profile's Redis keeps an AOF throughout.
        self.redis.persistent = self.profile.overflow
        self.redis.start()
        config = bridge_config(self.platform.name, self.redis.url, self.platform.config_section(self.fake, self.quota),
                               overflow=self.profile.overflow)
        self.settings = parse_config(config, environ={})
        self.script = ChaosScript(self.profile, self.platform, self.journal, self.settings.upstream.timeout_seconds)
        self.fake.faults = self.script
        self.fake.server.gate = self.script.gate
        self.instances = [Instance(config, self.workdir, name) for name in ("a", "b")]
        starting = [threading.Thread(target=instance.start) for instance in self.instances]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        for instance in self.instances:
            if not instance.worker_pids():
                raise RuntimeError(f"instance {instance.name} did not start:\n{instance.logs()[-3000:]}")
        s = self.settings
        self.notes.append(
            f"bridge defaults in force: lookup_before_create={s.idempotency.lookup_before_create}, "
            f"upstream timeout {s.upstream.timeout_seconds:g} s / total {s.upstream.total_timeout_seconds:g} s, "
            f"lease {s.lease_seconds():g} s, wait {s.idempotency.wait_seconds:g} s, "
            f"{s.server.workers} workers per instance")
        if self.profile.overflow:
            requests, window = self.quota
            self.notes.append(f"placement: overflow; the store announces and enforces {requests} requests per "
                              f"{window:g} s; Redis keeps an AOF (fsync always) from the start")
        self.say(f"2 instances up on Redis :{self.redis.port}, fake store at {self.fake.url}")

    def stop(self) -> None:
        for instance in self.instances:
            instance.stop()
        if self.redis is not None:
            self.redis.kill()
        if self.fake is not None:
            self.fake.stop()

    # the run ----------------------------------------------------------------------------

    def execute(self) -> report.Outcome:
        started = time.monotonic()
        profile = self.profile
        drafts = make_drafts(profile.seed, profile.platform, profile.drafts, profile.launch_window,
                             profile.duplicate_rate)
        stop_faults = threading.Event()
        self.script.on = True
        origin = time.monotonic()
        launcher = threading.Thread(target=self._launch, args=(drafts, origin, stop_faults), name="launcher")
        launcher.start()
        for event in timeline(profile, profile.platform):
            _sleep_until(origin + event.at)
            self._perform(event)
        _sleep_until(origin + profile.duration)
        self.script.on = False
        stop_faults.set()
        launcher.join()
        self.say("faults off")
        self.journal.add("faults off")

        if profile.overflow:
            # Bik stops sending a draft once it has a 2xx, queued or not: every draft gets its answer first, then
            # the placers drain the queue, then the reconciler settles what is left, and only then is it judged.
            self._settle(drafts)
            for thread in self.threads:
                thread.join(ANSWER_TIMEOUT + 5)
            self._drain(drafts)
            self._reconcile()
            self._drain(drafts)
        else:
            self._reconcile()
            self._settle(drafts)
            for thread in self.threads:
                thread.join(ANSWER_TIMEOUT + 5)
        _sleep_until(self.script.quiet_at)  # a create scheduled to land late has landed by now
        orders = self.platform.orders_by_draft(self.fake)
        answers = self.answers.all()
        checks = report.check([d.id for d in drafts], answers, orders,
                              queued_prefix=report.QUEUED_PREFIX if profile.overflow else None)
        if profile.overflow:
            checks.append(report.queued_lookups(self._look_up_queued(answers, orders)))
            checks.append(report.quota_kept(self.platform.quota_refusals(self.fake), self.quota, self.journal))
            self.notes.append(report.queued_note(answers, report.QUEUED_PREFIX))
        return report.Outcome(
            platform=profile.platform, seed=profile.seed, checks=checks,
            faults=report.fault_rows(self.journal, self.script.codes, self.events, self.event_notes),
            answers=report.answer_counts(answers), drafts=len(drafts),
            orders=sum(len(ids) for ids in orders.values()), seconds=time.monotonic() - started,
            notes=self.notes, scenarios=report.scenarios(self.journal, checks),
            causes=report.duplicate_causes(self.journal, orders))

    def _launch(self, drafts: list[Draft], origin: float, stop: threading.Event) -> None:
        """Send each draft at its moment; a duplicate goes to both instances at once."""
        for draft in drafts:
            if stop.wait(max(0.0, origin + draft.at - time.monotonic())):
                return
            copies = [(self.instances[0], ":a"), (self.instances[1], ":b")] if draft.duplicate else [(None, "")]
            for first, suffix in copies:
                client = BikClient(self.instances, self.answers, random.Random(draft.rng_seed + suffix))
                thread = threading.Thread(target=client.until_placed, args=(draft, "faults", stop, first), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _reconcile(self) -> None:
        done = reconcile(self.instances[0])
        self.journal.add("reconcile", detail=f"exit {done.code}: {done.summary}")
        self.notes.append(f"reconcile (--older-than 0) exit {done.code} in {done.seconds:.1f} s: {done.summary}")
        self.say(f"reconcile exit {done.code}: {done.summary}")

    def _drain(self, drafts: list[Draft]) -> None:
        """Overflow: wait until every draft answered 2xx has its order, as the quota allows; bounded, and shorter
        when no order is placed for a while (a stuck queue is then a breach, not a hang)."""
        answered = {a.draft for a in self.answers.all() if a.status is not None and 200 <= a.status < 300}
        started = time.monotonic()
        hard_stop = started + self.profile.drain_seconds
        last_count, last_progress = -1, started

        def missing() -> set[str]:
            return answered - set(self.platform.orders_by_draft(self.fake))

        left = missing()
        while left and time.monotonic() < hard_stop:
            count = len(left)
            if count != last_count:
                last_count, last_progress = count, time.monotonic()
            elif time.monotonic() - last_progress > self.profile.drain_stall_seconds:
                break
            time.sleep(0.5)  # polling the in-process fake: nothing announces an order placed by another process
            left = missing()
        listed = queued_drafts(self.instances[0])
        seconds = time.monotonic() - started
        detail = (f"{len(left)} of {len(answered)} drafts answered 2xx still without an order after {seconds:.0f} s; "
                  f"`bik-bridge queue list`: {listed}")
        self.journal.add("drain", detail=detail)
        self.notes.append(f"queue drain: {detail}")
        self.say(f"drain: {detail}")

    def _look_up_queued(self, answers: list, orders: dict[str, list[str]]) -> list[tuple[str, str]]:
        """getOrder on a seeded sample of the BK- ids answered: (draft, what was wrong, or "" when it was right)."""
        queued = sorted({(a.draft, a.order_id) for a in answers
                         if a.status is not None and 200 <= a.status < 300
                         and str(a.order_id).startswith(report.QUEUED_PREFIX)})
        sample = random.Random(f"{self.profile.seed}:{self.profile.platform}:bk").sample(
            queued, min(BK_SAMPLE, len(queued)))
        found = []
        for draft, order_id in sample:
            try:
                response = requests.post(f"{self.instances[0].url}/getOrder", json={"orderId": order_id},
                                         timeout=ANSWER_TIMEOUT)
                body = response.json() if response.status_code == 200 else None
            except (requests.RequestException, ValueError) as exc:
                found.append((draft, f"getOrder {order_id}: {type(exc).__name__}"))
                continue
            found.append((draft, report.queued_lookup_problem(order_id, response.status_code, body,
                                                              orders.get(draft, []))))
        self.journal.add("getOrder of queued ids", detail=f"{len(found)} looked up")
        return found

    def _journal_quota_refusals(self) -> None:
        """Journal every request the fake refuses because its window's quota is spent, with its moment."""
        take = self.fake._take_quota

        def taken(*args, **kwargs):
            allowed, headers = take(*args, **kwargs)
            if not allowed:
                self.journal.add("store: request over the quota")
            return allowed, headers
        self.fake._take_quota = taken

    def _settle(self, drafts: list[Draft]) -> None:
        """Send every draft again until it gets its order, within the profile's bound."""
        bound = threading.Event()
        # The profile's time budget for settling, not a synchronisation: the clients stop once it is spent.
        timer = threading.Timer(self.profile.settle_seconds, bound.set)
        timer.start()
        settling = []
        for draft in drafts:
            client = BikClient(self.instances, self.answers, random.Random(draft.rng_seed + ":settle"))
            thread = threading.Thread(target=client.until_placed, args=(draft, "settle", bound), daemon=True)
            thread.start()
            settling.append(thread)
        for thread in settling:
            thread.join()
        timer.cancel()
        self.say("settled" if not bound.is_set() else f"settle bound of {self.profile.settle_seconds:g} s reached")

    # process events -------------------------------------------------------------------

    def _perform(self, event: Event) -> None:
        self.events[event.action] += 1
        if event.action == KILL_WORKER:
            instance = self.instances[event.instance]
            victim = instance.kill_worker(event.pick)
            self._note(event, f"worker {victim} of instance {instance.name}")
            previous = self.event_notes.get(KILL_WORKER)
            self.event_notes[KILL_WORKER] = f"{previous}, {instance.name}" if previous else f"in {instance.name}"
        elif event.action == RESTART_ALL:
            queued = queued_drafts(self.instances[0])
            _each(self.instances, Instance.crash)
            self._note(event, f"every instance killed; `bik-bridge queue list` before: {queued}")
            _each(self.instances, Instance.start)
            self.journal.add("every instance started again")
            self.event_notes[event.action] = f"queued before: {queued}"
        elif event.action == RESTART_INSTANCE:
            instance = self.instances[event.instance]
            instance.crash()
            self._note(event, f"instance {instance.name} killed")
            instance.start()
            self.journal.add(f"instance {instance.name} started again")
            self.event_notes[event.action] = f"instance {instance.name}"
        elif event.action in (REDIS_EMPTY, REDIS_AOF):
            before = self.redis.keys()
            self.redis.kill()
            self._note(event, f"{before} keys before the kill, down {event.seconds:.1f} s")
            time.sleep(event.seconds)  # the outage itself
            if event.action == REDIS_EMPTY:
                self.redis.persistent = True  # from now on records survive a restart, for the AOF event
            self.redis.start()
            after = self.redis.keys()
            self.journal.add(f"redis back with {after} keys")
            self.event_notes[event.action] = f"{before} keys before, {after} after"
        elif event.action == STORM:
            self.script.storm(event.seconds, event.with_headers)
            note = f"{event.seconds:.1f} s, {'with' if event.with_headers else 'without'} reset headers"
            self._note(event, note)
            previous = self.event_notes.get(STORM)
            self.event_notes[STORM] = f"{previous}; {note}" if previous else note

    def _note(self, event: Event, detail: str) -> None:
        self.journal.add(event.action, detail=detail)
        self.say(f"{event.action}: {detail}")


def _each(instances: list[Instance], action: Callable[[Instance], object]) -> None:
    """Do the same to every instance at once, as an orchestrator restarting all of them does."""
    failed: list[BaseException] = []

    def act(instance: Instance) -> None:
        try:
            action(instance)
        except BaseException as exc:  # raised below, in the run's own thread
            failed.append(exc)

    threads = [threading.Thread(target=act, args=(instance,)) for instance in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]


def _sleep_until(moment: float) -> None:
    """The schedule's own pacing."""
    time.sleep(max(0.0, moment - time.monotonic()))


def run_platform(profile: Profile, say: Say, keep: bool = False) -> tuple[report.Outcome, Path]:
    """Run one platform from start to report; the work directory is removed unless kept or something broke."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bik-bridge-chaos-{profile.platform}-"))
    run = Run(profile, workdir, say)
    try:
        run.start()
        outcome = run.execute()
    except Exception as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc} (logs in {workdir})") from exc
    finally:
        run.stop()
    if outcome.held and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return outcome, workdir
