"""The `bik-bridge` command, run in-process."""
from __future__ import annotations

import json

import pytest
import yaml

from bridge.app import create_app
from bridge.cli import main
from bridge.config import CONFIG_ENV, load_config

SECRET = "tok-from-env-7f3a9c"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each command runs in an empty directory, with no config inherited from the environment."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path, text: str) -> str:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    return str(path)


def test_check_config_prints_the_masked_config(tmp_path, monkeypatch, capsys):
    """check-config prints the resolved config; secrets from the environment never appear."""
    monkeypatch.setenv("BIK_TOKEN", SECRET)
    monkeypatch.setenv("BC_TOKEN", SECRET + "-bc")
    path = write_config(tmp_path, """
platform: bigcommerce
auth: {scheme: bearer, token: "${BIK_TOKEN}"}
idempotency: {backend: redis, redis_url: "redis://:${BIK_TOKEN}@cache:6379/0"}
bigcommerce: {store_hash: abc123, access_token: "${BC_TOKEN}"}
""")
    assert main(["check-config", "--config", path]) == 0
    out, err = capsys.readouterr()
    assert SECRET not in out and SECRET not in err
    shown = yaml.safe_load(out)
    assert shown["platform"] == "bigcommerce"
    assert shown["bigcommerce"]["store_hash"] == "abc123"
    assert shown["auth"]["scheme"] == "bearer"
    assert shown["auth"]["token"] and shown["bigcommerce"]["access_token"]


def test_check_config_reads_the_env_variable(tmp_path, monkeypatch, capsys):
    """Without --config, BIK_BRIDGE_CONFIG names the file."""
    monkeypatch.setenv(CONFIG_ENV, write_config(tmp_path, "server: {port: 9321}\n"))
    assert main(["check-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["server"]["port"] == 9321


@pytest.mark.parametrize("text, named", [
    ("platform: bigcommerce\nbigcommerce: {access_token: x}\n", "bigcommerce.store_hash: field required"),
    ("server: {prot: 1}\n", "server.prot: unknown key"),
    ("bigcommerce: {store_hash: a, access_token: '${UNSET_SECRET_VAR}'}\n", "bigcommerce.access_token"),
    ("server: [1, 2\n", "not valid YAML"),
])
def test_invalid_config_exits_2_naming_the_key(tmp_path, capsys, text, named):
    """An invalid config is exit 2 with the key and the problem on stderr."""
    assert main(["check-config", "--config", write_config(tmp_path, text)]) == 2
    out, err = capsys.readouterr()
    assert named in err
    assert out == ""


def test_dry_run_prints_the_bigcommerce_request(project_root, capsys):
    """dry-run shows the POST it would send, with the token masked and Bik's draft id on it."""
    assert main(["dry-run", str(project_root / "examples" / "place-order.json"), "--platform", "bigcommerce"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["platform"] == "bigcommerce"
    [request] = out["requests"]
    assert request["method"] == "POST"
    assert request["url"] == "https://api.bigcommerce.com/stores/STOREHASH/v2/orders"
    assert request["headers"]["X-Auth-Token"] == "********"
    assert request["json"]["external_order_id"] == "nb_1715200000_a1b2c3d4"
    assert request["json"]["products"][0]["quantity"] == 2


def test_dry_run_masks_a_configured_token(tmp_path, project_root, monkeypatch, capsys):
    """A real access token from the config is masked too, and the configured store hash is used."""
    monkeypatch.setenv("BC_TOKEN", SECRET)
    path = write_config(tmp_path, "platform: bigcommerce\nbigcommerce: {store_hash: abc123, "
                                  "access_token: '${BC_TOKEN}'}\n")
    assert main(["dry-run", str(project_root / "examples" / "place-order.json"), "--config", path]) == 0
    out, err = capsys.readouterr()
    assert SECRET not in out and SECRET not in err
    request = json.loads(out)["requests"][0]
    assert request["url"] == "https://api.bigcommerce.com/stores/abc123/v2/orders"
    assert request["headers"]["X-Auth-Token"] == "********"


def test_dry_run_rejects_a_bad_payload(tmp_path, place_order_body, capsys):
    """A payload Bik's contract refuses is exit 2 with the field errors on stderr."""
    place_order_body["order"]["items"][0]["quantity"] = 0
    del place_order_body["draftOrderId"]
    payload = tmp_path / "bad.json"
    payload.write_text(json.dumps(place_order_body))
    assert main(["dry-run", str(payload), "--platform", "bigcommerce"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    fields = [d["field"] for d in json.loads(err)["details"]]
    assert "order.items.0.quantity" in fields and "draftOrderId" in fields


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_dry_run_rejects_a_file_that_is_not_a_json_object(tmp_path, capsys, content):
    """A payload file that is not a JSON object is exit 2."""
    payload = tmp_path / "bad.json"
    payload.write_text(content)
    assert main(["dry-run", str(payload)]) == 2
    assert str(payload) in capsys.readouterr().err


def test_dry_run_sends_and_stores_nothing(tmp_path, project_root, capsys):
    """dry-run on the local platform leaves no database behind."""
    assert main(["dry-run", str(project_root / "examples" / "place-order.json")]) == 0
    assert json.loads(capsys.readouterr().out)["requests"][0]["method"] == "INSERT"
    assert list(tmp_path.iterdir()) == []


def test_local_set_status_shows_in_get_order(tmp_path, place_order_body, capsys):
    """An order placed through the app and moved with `local set-status` shows the new state in getOrder."""
    path = write_config(tmp_path, f"""
local: {{db_path: "{tmp_path / 'local.db'}"}}
idempotency: {{sqlite_path: "{tmp_path / 'idempotency.db'}"}}
""")
    app = create_app(load_config(path, environ={}))
    client = app.test_client()
    assert client.post("/placeOrder", json=place_order_body).get_json()["order"]["id"] == "L-1001"
    assert main(["local", "set-status", "L-1001", "--config", path, "--status", "DELIVERED", "--payment", "paid",
                 "--tracking-url", "https://t.example/1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "DELIVERED" and printed["trackingURL"] == "https://t.example/1"
    order = client.post("/getOrder", json={"orderId": "L-1001"}).get_json()["order"]
    assert order["status"] == "DELIVERED"
    assert order["paymentStatus"] == "paid"
    assert order["deliveryInfo"]["trackingURL"] == "https://t.example/1"
    app.extensions["bik_bridge"].store.close()


def test_local_set_status_of_an_unknown_order_fails(tmp_path, capsys):
    """Moving an order that does not exist is exit 1 with the reason."""
    path = write_config(tmp_path, f"local: {{db_path: \"{tmp_path / 'local.db'}\"}}\n")
    assert main(["local", "set-status", "L-4242", "--config", path, "--status", "DELIVERED"]) == 1
    assert "L-4242 not found" in capsys.readouterr().err
