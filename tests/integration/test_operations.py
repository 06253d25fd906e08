"""Operating the real server: its log lines, /metrics across two workers, simulate and healthcheck.

One bridge (gunicorn, two workers, settings from the environment) serves the whole module; each
test looks only at what its own requests added.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from flask import Flask, jsonify, request
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from bridge.ops.cli import EXIT_FAILED, EXIT_OK, main
from tests.fakes.bigcommerce import FakeBigCommerce, error_body
from tests.fakes.server import FakeServer, status
from tests.integration.bridge_process import BridgeProcess, free_port
from tests.integration.conftest import TOKEN, bigcommerce_config
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

METRICS_TOKEN = "metrics-secret-5b1e"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}
CUSTOMER = ("+919876543210", "9876543210", "buyer@example.com", "Tester", "Bik Office, HSR Layout")


@pytest.fixture(scope="module")
def fake():
    with FakeBigCommerce() as store:
        yield store


@pytest.fixture(scope="module")
def bridge(fake, redis_url, tmp_path_factory):
    """The config says one worker on a closed port; BIK_BRIDGE_PORT and BIK_BRIDGE_WORKERS say otherwise.

    It logs at DEBUG, as an operator following requests one by one would: every upstream attempt gets a line.
    """
    config = bigcommerce_config(fake, redis_url, server={"workers": 1},
                                metrics={"token": METRICS_TOKEN}, logging={"format": "json", "level": "DEBUG"})
    port = free_port()
    process = BridgeProcess(config, tmp_path_factory.mktemp("ops"),
                            env={"BIK_BRIDGE_PORT": str(port), "BIK_BRIDGE_WORKERS": "2"})
    process.port = port  # where the environment moved it: start() waits for it to answer there
    with process:
        yield process


@pytest.fixture
def body(place_body):
    return place_body


def log_lines(bridge: BridgeProcess, *answers: requests.Response) -> list[dict]:
    """Every line the server wrote, with the request lines of `answers`, each parsed as JSON (or the test fails)."""
    return [json.loads(line) for line in bridge.logged(*answers).splitlines() if line.strip()]


def scrape(bridge: BridgeProcess) -> dict:
    """One scrape on a fresh connection: {(name, frozenset(labels)): value}."""
    response = requests.get(f"{bridge.url}/metrics", headers={**SCRAPE, "Connection": "close"}, timeout=5)
    assert response.status_code == 200, response.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def metric(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# logs -------------------------------------------------------------------------------------


def test_request_lines_carry_the_request_id_upstream_calls_and_outcome(bridge, fake, body):
    placed = bridge.post("placeOrder", body, headers={"X-Request-Id": "rid-place-1"})
    replayed = bridge.post("placeOrder", body, headers={"X-Request-Id": "rid-place-2"})
    order_id = placed.json()["order"]["id"]
    fake.add_shipment(int(order_id), tracking_link="https://track.example/rid")  # a shipped order takes two reads
    read = bridge.post("getOrder", {"orderId": order_id}, headers={"X-Request-Id": "rid-get-1"})
    unnamed = bridge.post("getOrder", {"orderId": order_id})

    assert placed.headers["X-Request-Id"] == "rid-place-1" and read.status_code == 200
    generated = unnamed.headers["X-Request-Id"]
    assert len(generated) == 32
    lines = log_lines(bridge, placed, replayed, read, unnamed)
    summary = {line["request_id"]: line for line in lines if line["msg"] == "request" and "request_id" in line}

    first = summary["rid-place-1"]
    assert (first["endpoint"], first["status"], first["platform"]) == ("placeOrder", 200, "bigcommerce")
    assert (first["draftOrderId"], first["orderId"]) == (body["draftOrderId"], order_id)
    assert (first["outcome"], first["idempotency"]) == ("created", "fresh")
    create = first["upstream"][-1]  # any lookup of the draft comes before the create
    assert (create["operation"], create["method"], create["status"], create["attempt"]) == (
        "create", "POST", 201, 1)
    assert create["path"] == f"/stores/{bridge.config['bigcommerce']['store_hash']}/v2/orders"
    assert isinstance(first["ms"], float) and isinstance(create["ms"], float)
    calls = [line["upstream"] for line in lines if line["msg"] == "upstream call"
             and line.get("request_id") == "rid-place-1"]
    assert calls == first["upstream"]  # at DEBUG each attempt has its own line too, with the request's id
    second = summary["rid-place-2"]
    assert (second["outcome"], second["idempotency"], second["upstream"]) == ("replayed", "replay", [])

    # A shipped order is read with its shipments: after the order on the first read, which learns that it shipped,
    # and at once on a pool thread on the next (one worker here); each line still names the request.
    for rid in ("rid-get-1", generated):
        calls = [line for line in lines if line["msg"] == "upstream call" and line.get("request_id") == rid]
        assert sorted(c["upstream"]["operation"] for c in calls) == sorted(
            c["operation"] for c in summary[rid]["upstream"])
        assert len(calls) == 2
    assert replayed.content == placed.content


def test_no_customer_data_or_secret_reaches_the_log(bridge, fake, body):
    order_id = bridge.post("placeOrder", body).json()["order"]["id"]
    # The store's error message quotes the customer; the bridge logs it as the reason of its 502.
    fake.faults.script("get_order", status(400, error_body(
        400, f"Invalid customer {CUSTOMER[2]} (phone {CUSTOMER[0]})")))

    failed = bridge.post("getOrder", {"orderId": order_id}, headers={"X-Request-Id": "rid-masked"})

    assert failed.status_code == 502
    lines = log_lines(bridge, failed)  # every line is JSON
    raw = bridge.logs()
    for secret in (TOKEN, fake.access_token, METRICS_TOKEN, *CUSTOMER):
        assert secret not in raw, secret
    warning = next(line for line in lines if line.get("request_id") == "rid-masked" and line["level"] == "warning")
    assert "b***@example.com" in warning["error"] and "+91********10" in warning["error"]


# metrics ----------------------------------------------------------------------------------


def _per_worker(directory: str, name: str, **labels) -> dict[int, float]:
    """A counter's value in each worker's own file: proof of which workers served the traffic."""
    found = {}
    for path in glob.glob(os.path.join(directory, "counter_*.db")):
        pid = int(Path(path).stem.split("_")[-1])
        for family in MultiProcessCollector.merge([path]):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    found[pid] = found.get(pid, 0) + sample.value
    return found


def test_metrics_add_up_across_both_workers(bridge, fake, body):
    directory = next(line["metrics_dir"] for line in log_lines(bridge) if line["msg"] == "starting")
    labels = {"endpoint": "getOrder", "status": "404"}
    before = scrape(bridge)
    sent = 0
    # New connections until both workers have answered some: the kernel picks the worker per connection.
    while len([v for v in _per_worker(directory, "bik_bridge_requests_total", **labels).values() if v]) < 2:
        assert sent < 300, "one worker took every connection"
        response = requests.post(f"{bridge.url}/getOrder", json={"orderId": "999999"},
                                 headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"}, timeout=10)
        assert response.status_code == 404
        sent += 1
    fake.total_adjustment = Decimal(18)  # the store adds tax: its total differs from Bik's
    try:
        bridge.post("placeOrder", body)
    finally:
        fake.total_adjustment = Decimal(0)
    bridge.post("placeOrder", body)

    assert len(set(bridge.worker_pids())) == 2
    for _ in range(4):  # whichever worker answers the scrape reports the same totals
        after = scrape(bridge)

        def delta(name: str, _after: dict = after, **labels) -> float:
            return metric(_after, name, **labels) - metric(before, name, **labels)

        assert delta("bik_bridge_requests_total", **labels) == sent
        assert delta("bik_bridge_request_duration_seconds_count", endpoint="getOrder") == sent
        assert delta("bik_bridge_upstream_calls_total", platform="bigcommerce", operation="get_order",
                     status="404") == sent
        assert delta("bik_bridge_requests_total", endpoint="placeOrder", status="200") == 2
        assert delta("bik_bridge_replays_total") == 1
        assert delta("bik_bridge_total_mismatches_total", platform="bigcommerce") == 1
        assert delta("bik_bridge_place_order_decisions_total", decision="created") == 1


def test_counts_of_a_dead_worker_stay_in_the_totals(bridge):
    before = scrape(bridge)
    total = metric(before, "bik_bridge_requests_total", endpoint="getOrder", status="404")
    assert total > 0
    victim = bridge.worker_pids()[0]

    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in bridge.worker_pids() and len(bridge.worker_pids()) >= 2,
               "gunicorn to replace the worker", timeout=15)

    for _ in range(3):
        assert metric(scrape(bridge), "bik_bridge_requests_total", endpoint="getOrder", status="404") == total


def test_metrics_need_the_token(bridge):
    assert requests.get(f"{bridge.url}/metrics", timeout=5).status_code == 401
    assert requests.get(f"{bridge.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=5).status_code == 401


# simulate ---------------------------------------------------------------------------------


def test_simulate_passes_against_the_real_server(bridge, fake, capsys):
    code = main(["simulate", "--url", bridge.url, "--auth-scheme", "bearer", "--token", TOKEN])

    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert "PASS: 6 of 6 checks passed" in out
    for step in range(1, 7):
        assert f"[{step}/6]" in out
    assert "byte-identical answer" in out
    assert "FAIL" not in out


def test_simulate_skips_the_credential_steps_when_auth_is_none(bridge, capsys):
    # The bridge wants a token, so the unauthenticated placeOrder itself fails: a plain, named failure.
    code = main(["simulate", "--url", f"{bridge.url}/placeOrder"])

    out = capsys.readouterr().out
    assert code == EXIT_FAILED
    assert "[1/6] placeOrder places a new draft" in out and "answered 401, expected 2xx" in out
    assert "skipped  --auth-scheme none" in out


class BrokenBik:
    """A Bik backend with one chosen flaw, to prove simulate catches it."""

    def __init__(self, flaw: str):
        self.flaw = flaw
        self.placed = 0

    def app(self) -> Flask:
        app = Flask("broken")

        def order(order_id: str) -> dict:
            return {"id": order_id, "name": f"#{order_id}", "status": "ORDERED", "paymentStatus": "pending",
                    "items": [{"variantId": 1, "quantity": 1, "price": 10}], "subTotal": 10, "shippingCharge": 0,
                    "discount": 0, "total": 10, "currency": "INR"}

        @app.post("/placeOrder")
        def place():
            if request.headers.get("Authorization") != "Bearer right" and self.flaw != "no_auth":
                return jsonify(error="unauthorized"), 401
            self.placed += 1
            order_id = str(100 + self.placed) if self.flaw == "new_id_on_retry" else "101"
            body = order(order_id)
            if self.flaw == "bad_status":
                body["status"] = "SHIPPED"
            return jsonify(order=body)

        @app.post("/getOrder")
        def get():
            if request.headers.get("Authorization") != "Bearer right" and self.flaw != "no_auth":
                return jsonify(error="unauthorized"), 401
            order_id = request.get_json()["orderId"]
            if order_id not in ("101", "102"):
                if self.flaw == "html_not_found":
                    return "<h1>Not Found</h1>", 404
                return jsonify(error="not found"), 404
            return jsonify(order=order(order_id))

        return app


@pytest.mark.parametrize("flaw, step, message, failures", [
    ("new_id_on_retry", "[2/6] placeOrder again replays the same order",
     "the same draftOrderId made another order: 102 after 101", 1),
    ("no_auth", "[5/6] placeOrder with wrong credentials is 401", "answered 200, expected 401", 2),
    ("bad_status", "[1/6] placeOrder places a new draft", "order.status: Input should be 'ORDERED'", 1),
    ("html_not_found", "[4/6] getOrder on an unknown id is refused", "not application/json", 1),
])
def test_simulate_fails_a_broken_backend_naming_the_flaw(flaw, step, message, failures, capsys):
    with FakeServer(BrokenBik(flaw).app()) as server:
        code = main(["simulate", "--url", server.url, "--auth-scheme", "bearer", "--token", "right"])

    out = capsys.readouterr().out
    assert code == EXIT_FAILED
    failing = next(line for line in out.splitlines() if line.startswith(step))
    assert "FAIL" in failing and message in failing, out
    assert f"FAIL: {failures} of 6 checks failed" in out
    assert f"  - {step.split('] ')[1]}: " in out  # the summary repeats what failed


# healthcheck ------------------------------------------------------------------------------


def _healthcheck(bridge: BridgeProcess, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge.ops.cli", "healthcheck", "--config", str(bridge.config_path)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=20, check=False)


def test_healthcheck_follows_the_port_from_the_environment(bridge):
    healthy = _healthcheck(bridge, BIK_BRIDGE_PORT=str(bridge.port))

    assert healthy.returncode == 0, healthy.stderr
    assert f"healthy: http://127.0.0.1:{bridge.port}/healthz answered 200" in healthy.stdout


def test_healthcheck_fails_when_nothing_answers(bridge):
    # The config file's own port: nothing listens there, since the environment moved the server.
    sick = _healthcheck(bridge, BIK_BRIDGE_PORT="")

    assert sick.returncode == 1
    assert "unhealthy" in sick.stderr
