"""The invariants a run must keep, checked against the store and every answer Bik got, and the tables printed."""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

from tests.chaos.clients import Answer
from tests.chaos.journal import Journal

# The id an overflow bridge answers for an order it queued: this prefix and the draft id.
QUEUED_PREFIX = "BK-"


@dataclass
class Check:
    """One invariant and the drafts (or answers) that broke it."""

    name: str
    breaches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what it excused, and why: printed under the table

    @property
    def held(self) -> bool:
        return not self.breaches


@dataclass
class Outcome:
    """What one platform's run found."""

    platform: str
    seed: int
    checks: list[Check]
    faults: list[tuple[str, int, str]]
    answers: dict[str, collections.Counter]
    drafts: int
    orders: int
    seconds: float
    notes: list[str]
    scenarios: dict[str, list[str]]
    causes: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return all(check.held for check in self.checks)


def check(drafts: Iterable[str], answers: list[Answer], orders: dict[str, list[str]],
          queued_prefix: Optional[str] = None) -> list[Check]:
    """The promise, draft by draft: at most one order; a 2xx means exactly that order; no 500; every draft settles.

    With `queued_prefix` (an overflow bridge), a 2xx may name the order as `<prefix><draft id>`, the id of the
    queued order: it names the draft's one order in the store as well as that order's own id does. Either way
    every 2xx for a draft carries the same id.
    """
    drafts = list(drafts)
    by_draft: dict[str, list[Answer]] = collections.defaultdict(list)
    for answer in answers:
        by_draft[answer.draft].append(answer)
    at_most_one = Check("every draft has at most one order in the store")
    ok_means_one = Check("every draft that got a 2xx has exactly one order")
    ok_names_it = Check("every 2xx for a draft names that order" if queued_prefix is None else
                        f"every 2xx for a draft names that order, all with one id: the store's or {queued_prefix}<draft>")
    no_500 = Check("no 500 was ever answered")
    retry_after = Check("every other 5xx carries Retry-After")
    settled = Check("every draft ends with exactly one order and a 2xx (after reconcile and retries)")
    for draft in drafts:
        placed = orders.get(draft, [])
        mine = by_draft.get(draft, [])
        oks = [a for a in mine if a.status is not None and 200 <= a.status < 300]
        if len(placed) > 1:
            at_most_one.breaches.append(f"{draft}: {len(placed)} orders {', '.join(placed)}")
        if oks and len(placed) != 1:
            ok_means_one.breaches.append(f"{draft}: {len(oks)} 2xx, {len(placed)} orders")
        named = sorted({a.order_id for a in oks})
        aliases = {placed[0], f"{queued_prefix}{draft}"} if queued_prefix is not None and placed else set(placed[:1])
        if oks and (len(named) != 1 or len(placed) != 1 or named[0] not in aliases):
            ok_names_it.breaches.append(f"{draft}: 2xx named {', '.join(map(str, named))}; store has "
                                        f"{', '.join(placed) or 'none'}")
        fives = [a for a in mine if a.status == 500]
        if fives:
            no_500.breaches.append(f"{draft}: {len(fives)} x 500 ({', '.join(sorted({a.instance for a in fives}))})")
        bare = [a for a in mine if a.status is not None and 500 < a.status < 600 and not a.retry_after]
        if bare:
            retry_after.breaches.append(f"{draft}: {', '.join(str(a.status) for a in bare)} without Retry-After")
        last = next((a for a in reversed(mine) if a.phase == "settle"), None)
        if len(placed) != 1 or last is None or last.status is None or not 200 <= last.status < 300:
            shown = "no answer" if last is None or last.status is None else last.status
            settled.breaches.append(f"{draft}: {len(placed)} orders, last answer {shown}")
    return [at_most_one, ok_means_one, ok_names_it, no_500, retry_after, settled]


def queued_lookup_problem(order_id: str, status: Optional[int], body: Optional[dict], placed: list[str]) -> str:
    """What is wrong with getOrder's answer for a queued id whose draft has `placed` in the store; "" if nothing."""
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("order"), dict):
        return f"getOrder {order_id} answered {status}"
    order = body["order"]
    if placed and order.get("status") == "CANCELLED":
        return (f"getOrder {order_id} answered CANCELLED ({order.get('reason', 'no reason')}) though the store has "
                f"order {', '.join(placed)}")
    return ""


def queued_lookups(found: list[tuple[str, str]]) -> Check:
    """getOrder on queued ids, once placed, answers the order: (draft, problem or "") for each id looked up."""
    item = Check(f"getOrder on a queued {QUEUED_PREFIX} id answers its placed order ({len(found)} looked up)")
    item.breaches = [f"{draft}: {problem}" for draft, problem in found if problem]
    return item


# After Redis fails, each bridge process paces alone for a second (adapters/stores/redis_optional.py): the
# processes together may then exceed the quota, as docs/reliability.md says. A refusal then is counted apart.
PACING_ALONE_SECONDS = 1.5


def outages(journal: Journal) -> list[tuple[float, float]]:
    """When the run's Redis was away, and the second after, during which processes paced alone."""
    windows, down = [], None
    for entry in journal.entries():
        if entry.draft is None and entry.what.startswith("restart Redis"):
            down = entry.at
        elif entry.draft is None and entry.what.startswith("redis back") and down is not None:
            windows.append((down, entry.at + PACING_ALONE_SECONDS))
            down = None
    return windows


def quota_kept(refusals: int, quota: tuple[int, float], journal: Journal, shown: int = 5) -> Check:
    """No window of the store's received more than its announced quota, but while Redis was away."""
    requests, window = quota
    item = Check(f"no request window at the store exceeded the announced quota ({requests} per {window:g} s)")
    if not refusals:
        return item
    moments = [e.at for e in journal.entries() if e.what == "store: request over the quota"]
    away = outages(journal)
    excused = [m for m in moments if any(start <= m <= end for start, end in away)]
    unexcused = [m for m in moments if m not in excused] if moments else [None] * refusals
    if excused:
        item.notes.append(f"{len(excused)} request(s) over the quota while Redis was away or just back, when each "
                          "process paces alone (documented)")
    if unexcused:
        events = [e for e in journal.entries() if e.draft is None and not e.what.startswith(("fault:", "store:"))]
        first = unexcused[0]
        before = [e for e in events if first is not None and e.at <= first][-2:]
        item.breaches.append(
            f"{len(unexcused)} requests arrived in a window whose quota was spent, at "
            f"{', '.join(f'{m:.1f} s' for m in unexcused[:shown] if m is not None)}"
            f"{' ...' if len(unexcused) > shown else ''}"
            + (f"; the run's events before the first: {'; '.join(e.line().strip() for e in before)}" if before
               else ""))
    return item


def queued_note(answers: list[Answer], prefix: str) -> str:
    """How many drafts were answered with a queued id, and how many with the store's own."""
    ids = {(a.draft, a.order_id) for a in answers if a.status is not None and 200 <= a.status < 300}
    queued = {draft for draft, order_id in ids if str(order_id).startswith(prefix)}
    direct = {draft for draft, order_id in ids if not str(order_id).startswith(prefix)}
    return (f"2xx answers: {len(queued)} drafts answered queued ({prefix}<draft>), {len(direct)} with the store's "
            "order id")


def answer_counts(answers: list[Answer]) -> dict[str, collections.Counter]:
    """Answers per phase by status ("no answer" when the connection gave none)."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for answer in answers:
        counts[answer.phase][str(answer.status) if answer.status is not None else "no answer"] += 1
    return counts


def fault_rows(journal: Journal, codes: dict[str, collections.Counter],
               events: collections.Counter, event_notes: dict[str, str]) -> list[tuple[str, int, str]]:
    """(fault, how many, detail) for every fault the store injected and every process event."""
    rows = []
    for name, count in sorted(journal.faults.items()):
        detail = ""
        if codes.get(name):
            detail = " ".join(f"{code}x{n}" for code, n in sorted(codes[name].items()))
        rows.append((name, count, detail))
    for name, count in events.items():
        rows.append((name, count, event_notes.get(name, "")))
    return rows


def scenarios(journal: Journal, checks: list[Check], limit: int = 4, lines: int = 30) -> dict[str, list[str]]:
    """The journal of a few breached drafts: the faults they met, their answers, the process events around them."""
    drafts: list[str] = []
    for item in checks:
        for breach in item.breaches:
            draft = breach.split(":", 1)[0]
            if draft not in drafts:
                drafts.append(draft)
    shown = {}
    for draft in drafts[:limit]:
        # Faults the store could not tie to a draft (a connection dropped unread) would only be noise here.
        entries = [e for e in journal.about(draft) if e.draft == draft or not e.what.startswith("fault:")]
        if not entries:  # a breach about the run as a whole, not one draft
            continue
        text = [entry.line() for entry in entries]
        if len(text) > lines:
            text = text[:lines // 2] + [f"   ... {len(text) - lines} more ..."] + text[-lines // 2:]
        shown[draft] = [*between_creates(entries, draft), *text]
    return shown


def between_creates(entries: list, draft: str) -> list[str]:
    """One line naming what most likely made a draft's second order, when it has two."""
    creates = [e for e in entries if e.draft == draft and e.what == "store: order created"]
    if len(creates) < 2:
        return []
    gap = creates[1].at - creates[0].at
    return [f"second order {gap:.1f} s after the first; likely cause: {likely_cause(entries, draft)}"]


# The draft's own faults, most telling first: each can leave a created order the bridge then forgets.
OWN_CAUSES = ("create, then answer 5xx", "answer 5xx, create seconds later", "create, then stall past",
              "create, then drop the connection")
# Run-wide events that can make the bridge forget an order, most telling first.
RUN_CAUSES = (("restart Redis empty", "its record was lost (Redis restarted empty)"),
              ("restart an instance", "an instance was killed"), ("kill -9 a gunicorn worker", "a worker was killed"))


def likely_cause(entries: list, draft: str) -> str:
    """What came before a draft's second create that can explain it: its own create's fault, and run events."""
    creates = [e for e in entries if e.draft == draft and e.what == "store: order created"]
    first, second = creates[0].at, creates[1].at
    own = [e for e in entries if e.draft == draft and e.what.startswith("fault: create:") and e.at <= second]
    found = next((f"{e.what[len('fault: create: '):]} {e.detail}".strip()
                  for kind in OWN_CAUSES for e in own if kind in e.what), "")
    found = re.sub(r"( stalls [\d.]+s|, lands [\d.]+s later)", "", found)
    events = [cause for marker, cause in RUN_CAUSES
              if any(e.draft is None and e.what.startswith(marker) and first <= e.at < second for e in entries)]
    return " + ".join([found] * bool(found) + events[:1]) or "none of the injected faults"


def duplicate_causes(journal: Journal, orders: dict[str, list[str]]) -> list[tuple[str, int, str]]:
    """(likely cause, drafts, 5xx codes) over the drafts with two orders."""
    counts: collections.Counter = collections.Counter()
    codes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for draft, placed in orders.items():
        if len(placed) < 2:
            continue
        entries = journal.about(draft)
        if len([e for e in entries if e.draft == draft and e.what == "store: order created"]) < 2:
            counts["(the store's log lacks the creates)"] += 1
            continue
        cause = likely_cause(entries, draft)
        code = re.search(r" (\d{3})\b", cause)
        label = cause.replace(code.group(0), "") if code else cause
        counts[label] += 1
        if code:
            codes[label][code.group(1)] += 1
    return [(label, n, " ".join(f"{c}x{k}" for c, k in sorted(codes[label].items())))
            for label, n in counts.most_common()]


def table(rows: list[tuple], headers: tuple) -> str:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    line = lambda row: "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(tuple("-" * w for w in widths)), *(line(row) for row in rows)])


def render(outcome: Outcome, reproduce: str, max_listed: int = 5) -> str:
    """The report of one platform's run: faults injected, answers, invariants, and how to reproduce a breach."""
    out = [f"== {outcome.platform}, seed {outcome.seed}: {outcome.drafts} drafts, {outcome.orders} orders in the "
           f"store, {outcome.seconds:.0f} s", ""]
    out.append(table([(name, count, detail) for name, count, detail in outcome.faults],
                     ("fault injected", "count", "detail")))
    out.append("")
    statuses = sorted({s for counts in outcome.answers.values() for s in counts}, key=lambda s: (len(s), s))
    rows = [(phase, *(outcome.answers[phase].get(s, 0) for s in statuses)) for phase in ("faults", "settle")
            if phase in outcome.answers]
    out.append(table(rows, ("answers to Bik", *statuses)))
    out.append("")
    rows = [(item.name, "held" if item.held else "BROKEN", len(item.breaches)) for item in outcome.checks]
    out.append(table(rows, ("invariant", "result", "breaches")))
    for note in outcome.notes:
        out.append(note)
    out.extend(f"{item.name}: {note}" for item in outcome.checks for note in item.notes)
    if outcome.causes:
        out.append("")
        out.append(table(outcome.causes, ("drafts with two orders, by likely cause", "drafts", "5xx codes")))
    for item in outcome.checks:
        if item.breaches:
            out.append("")
            out.append(f"{item.name}: {len(item.breaches)} broken" + (f", the first {max_listed}:"
                                                                     if len(item.breaches) > max_listed else ":"))
            out.extend(f"   {breach}" for breach in item.breaches[:max_listed])
    for draft, text in outcome.scenarios.items():
        out.append("")
        out.append(f"-- what happened to {draft}:")
        out.extend(f"   {line}" for line in text)
    if not outcome.held:
        out.append("")
        out.append(f"BROKEN on {outcome.platform} with seed {outcome.seed}; reproduce: {reproduce}")
    return "\n".join(out)


