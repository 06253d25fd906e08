"""Tools the fault tests share: short-budget configs, a client that retries as Bik does, held faults, records."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import redis
import requests

from bridge.core.models import PlaceOrderRequest
from tests.fakes.bitbybit import FakeBitbybit
from tests.fakes.server import HeldCall
from tests.integration.bridge_process import BridgeProcess
from tests.integration.conftest import bigcommerce_config, bitbybit_config
from tests.support.waiting import wait_until

# Budgets small enough for a fast suite, large enough that an ambiguous create still gets its lookup in the
# same request (the service looks up only with more than 1 s of the budget left).
TIMEOUT_SECONDS = 1.0
TOTAL_TIMEOUT_SECONDS = 2.5
LEASE_GRACE_SECONDS = 0.5
LEASE_SECONDS = TOTAL_TIMEOUT_SECONDS + LEASE_GRACE_SECONDS
# How long a client waits for one answer: Bik's patience, well above every budget of the bridge.
CLIENT_TIMEOUT = 15.0
RETRYABLE = (409, 503, 504)


def fault_config(fake, redis_url: str, **sections) -> dict:
    """A bridge config for the fake store on the defaults, with budgets shortened so leases end within seconds.

    Only time is scaled down (a fault test cannot wait out 20-second budgets); every safety setting is the default.
    """
    base = {
        "upstream": {"timeout_seconds": TIMEOUT_SECONDS, "total_timeout_seconds": TOTAL_TIMEOUT_SECONDS,
                     "connect_timeout_seconds": 0.5},
        "idempotency": {"lease_grace_seconds": LEASE_GRACE_SECONDS, "wait_seconds": 1},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    build = bitbybit_config if isinstance(fake, FakeBitbybit) else bigcommerce_config
    return build(fake, redis_url, **base)


@dataclass
class Attempts:
    """Every answer one Bik confirmation got, oldest first."""

    responses: list[requests.Response] = field(default_factory=list)

    @property
    def final(self) -> requests.Response:
        return self.responses[-1]

    @property
    def interim(self) -> list[requests.Response]:
        return self.responses[:-1]


def place_like_bik(bridge: BridgeProcess, body: dict, *, limit: float = 20.0,
                   wait: Callable[[float], None] = time.sleep) -> Attempts:
    """Post placeOrder until it answers something final; 409/503/504 are retried after their Retry-After."""
    attempts = Attempts()
    give_up = time.monotonic() + limit
    while True:
        response = bridge.post("placeOrder", body, timeout=CLIENT_TIMEOUT)
        attempts.responses.append(response)
        if response.status_code not in RETRYABLE or time.monotonic() > give_up:
            return attempts
        retry_after = response.headers.get("Retry-After")
        assert retry_after, f"{response.status_code} without Retry-After: {response.text}"
        # The contract: Bik waits what the bridge asks before the next try.
        wait(min(float(retry_after), max(0.0, give_up - time.monotonic())))


def order_id(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["order"]["id"]


def posts_to_orders(fake) -> int:
    """How many creates reached the fake store, applied or not."""
    return sum(1 for r in fake.requests if r.method == "POST" and r.path.endswith("/orders"))


def kill_mid_create(bridge: BridgeProcess, fake, body: dict):
    """Send placeOrder, let the store create the order, SIGKILL every worker before the answer is read."""
    held = HeldCall(apply_first=True)
    fake.faults.script("create", held)
    outcome: dict = {}

    def post() -> None:
        try:
            outcome["response"] = bridge.post("placeOrder", body)
        except requests.ConnectionError as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=post)
    caller.start()
    try:
        assert held.arrived.wait(10)
        assert fake.wait_until(lambda: fake.create_count == 1)
        for pid in bridge.worker_pids():
            os.kill(pid, signal.SIGKILL)
        caller.join(15)
    finally:
        held.release.set()
    assert "error" in outcome, "the killed worker's client should lose its connection"
    return next(iter(fake.orders))


def take_over_mid_create(pair: list[BridgeProcess], fake, body: dict, client: redis.Redis, config: dict, *,
                         apply_first: bool) -> tuple[requests.Response, requests.Response]:
    """Hold the first bridge's create, end its lease, send the draft to the second; returns both answers."""
    held = HeldCall(apply_first=apply_first)
    fake.faults.script("create", held)
    first: dict = {}
    owner = threading.Thread(target=lambda: first.update(response=pair[0].post("placeOrder", body)))
    owner.start()
    try:
        assert held.arrived.wait(10)
        expire_lease(client, config, body["draftOrderId"])
        second = pair[1].post("placeOrder", body)
    finally:
        held.release.set()
        owner.join(15)
    return first["response"], second


# -------------------------------------------------------------------------------------------- records


def record_key(config: dict, draft: str) -> str:
    return f"{config['idempotency']['namespace']}:{draft}"


def recorded(client: redis.Redis, config: dict, draft: str) -> None:
    """Wait until the draft's record says done: the bridge writes it just after its answer has left."""
    wait_until(lambda: client.hget(record_key(config, draft), "state") == b"done", f"the record of {draft} to be done",
               timeout=5)


def server_time_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1_000_000 + micros


def expire_lease(client: redis.Redis, config: dict, draft: str) -> None:
    """Move a record's lease into the past, as if its owner had run out of time."""
    key = record_key(config, draft)
    assert client.hget(key, "state") == b"in_flight"
    client.hset(key, "lease_until_us", str(server_time_us(client) - 1_000_000))


def seed_record(client: redis.Redis, config: dict, body: dict, *, state: str, started_ago: float,
                lease_ago: float) -> None:
    """Write a record as a crashed owner would have left it, in the layout of the Redis store."""
    now = server_time_us(client)
    fingerprint = PlaceOrderRequest.model_validate(body).fingerprint()
    client.hset(record_key(config, body["draftOrderId"]), mapping={
        "state": state, "fingerprint": fingerprint, "token": "crashed-owner",
        "started_at_us": str(now - int(started_ago * 1_000_000)),
        "lease_until_us": str(now - int(lease_ago * 1_000_000)),
        "updated_at_us": str(now - int(lease_ago * 1_000_000)),
    })
    client.expire(record_key(config, body["draftOrderId"]), 3600)


def lease_has_ended(client: redis.Redis, config: dict, draft: str) -> Callable[[], bool]:
    key = record_key(config, draft)

    def ended() -> bool:
        lease = client.hget(key, "lease_until_us")
        return lease is not None and int(lease) < server_time_us(client)
    return ended


# -------------------------------------------------------------------------------------------- CLI


@dataclass
class Reconciled:
    code: int
    lines: list[str]
    logs: list[dict]


def run_reconcile(bridge: BridgeProcess, older_than: float = 0.0) -> Reconciled:
    """`bik-bridge reconcile` against a bridge's config file, as cron would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "bridge.ops.cli", "reconcile", "--config", str(bridge.config_path),
         "--older-than", str(older_than)],
        cwd=bridge.workdir, capture_output=True, text=True, timeout=60, check=False,
    )
    logs = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    return Reconciled(done.returncode, done.stdout.splitlines(), logs)


def log_entries(bridge: BridgeProcess) -> list[dict]:
    return [json.loads(line) for line in bridge.logs().splitlines() if line.startswith("{")]


def creates_sent(entries: list[dict], draft: str) -> int:
    """Creates the bridge logged as sent for a draft (written before the request leaves)."""
    return sum(1 for e in entries if e.get("msg") == "sending the create" and e.get("draftOrderId") == draft)

