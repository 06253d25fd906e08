"""`bik-bridge queue`: list, retry and cancel the drafts placement: overflow queued."""
from __future__ import annotations

import json

import pytest
import yaml

from adapters.stores.sqlite_store import SqliteIdempotencyStore
from bridge.bootstrap import build_metrics, load_config
from bridge.core.ports import QueueStats, RecordState
from bridge.ops.cli import main


@pytest.fixture
def config_path(tmp_path, monkeypatch):
    monkeypatch.delenv("BIK_BRIDGE_CONFIG", raising=False)
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"platform": "local", "placement": "overflow",
                                    "idempotency": {"sqlite_path": str(tmp_path / "records.db")}}))
    return str(path)


@pytest.fixture
def store(config_path):
    config = load_config(config_path)
    store = SqliteIdempotencyStore(config.idempotency.sqlite_path, namespace=config.idempotency_namespace(),
                                   ttl_seconds=3600)
    yield store
    store.close()


def enqueue(store, key: str) -> None:
    claim = store.claim(key, "fp", 60)
    assert store.enqueue(key, claim.token, b"{}", f"BK-{key}", b"{}")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_waiting_drafts_oldest_first_then_refused_ones(store, config_path, capsys):
    for key in ("d-1", "d-2", "d-3"):
        enqueue(store, key)
    store.refuse("d-2", store.claim_queued("d-2", 60).token, "out of stock")

    code, out, _ = run(capsys, "queue", "list", "--config", config_path)

    lines = out.splitlines()
    assert code == 0
    assert [line.split("\t")[:3] for line in lines[:3]] == [
        ["d-1", "queued", "BK-d-1"], ["d-3", "queued", "BK-d-3"], ["d-2", "refused", "BK-d-2"]]
    assert lines[2].split("\t")[4] == "out of stock"
    assert lines[3].startswith("queue: 2 waiting, 1 refused, oldest ")
    code, out, _ = run(capsys, "queue", "list", "--json", "--config", config_path)
    assert [(e["draftOrderId"], e["state"], e["orderId"], e["reason"]) for e in json.loads(out)] == [
        ("d-1", "queued", "BK-d-1", None), ("d-3", "queued", "BK-d-3", None), ("d-2", "refused", "BK-d-2",
                                                                              "out of stock")]


def test_a_refusal_quoting_the_customer_is_listed_masked(store, config_path, capsys):
    """A store's refusal can quote the order it refused; the customer's contacts show only as hints."""
    enqueue(store, "d-1")
    store.refuse("d-1", store.claim_queued("d-1", 60).token, "email buyer@example.com or phone +919876543210 invalid")

    for argv in (("queue", "list"), ("queue", "list", "--json")):
        code, out, err = run(capsys, *argv, "--config", config_path)
        assert code == 0 and "invalid" in out
        assert "buyer@example.com" not in out + err and "9876543210" not in out + err


def test_retry_puts_a_refused_draft_back_and_cancel_refuses_a_waiting_one(store, config_path, capsys):
    enqueue(store, "d-1")
    enqueue(store, "d-2")
    store.refuse("d-1", store.claim_queued("d-1", 60).token, "out of stock")

    assert run(capsys, "queue", "retry", "d-1", "--config", config_path)[:2] == (0, "d-1\tqueued\n")
    assert run(capsys, "queue", "cancel", "d-2", "--config", config_path)[0] == 0

    assert store.get("d-1").state is RecordState.QUEUED
    assert (store.get("d-2").state, store.get("d-2").reason) == (RecordState.REFUSED, "cancelled by the merchant")


def test_retry_and_cancel_refuse_what_they_cannot_do(store, config_path, capsys):
    enqueue(store, "d-1")
    store.claim_queued("d-1", 60)  # being placed right now: a create may be on its way

    code, _, err = run(capsys, "queue", "cancel", "d-1", "--config", config_path)
    assert code == 1 and "only state queued can be cancelled" in err
    code, _, err = run(capsys, "queue", "retry", "d-1", "--config", config_path)
    assert code == 1 and "not a refused queued draft" in err
    assert store.get("d-1").state is RecordState.IN_FLIGHT


def test_the_queue_metrics_are_read_from_the_store_when_scraped(config_path):
    metrics = build_metrics(load_config(config_path))
    metrics.watch_queue(lambda: QueueStats(depth=7, oldest_enqueued_at=100.0, now=142.5))
    for decision in ("queued", "queued", "placed_from_queue", "refused_from_queue", "queue_full"):
        metrics.decision(decision)

    text = metrics.exposition()[0].decode()

    assert "bik_bridge_overflow_queue_depth 7.0" in text
    assert "bik_bridge_overflow_oldest_age_seconds 42.5" in text
    for result, count in (("queued", 2.0), ("placed", 1.0), ("refused", 1.0), ("full", 1.0)):
        assert f'bik_bridge_overflow_drafts_total{{result="{result}"}} {count}' in text
