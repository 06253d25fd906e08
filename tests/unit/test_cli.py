"""The `bik-bridge` command, run in-process."""
from __future__ import annotations

import json

import pytest
import yaml

from bridge.bootstrap import build_app, load_config
from bridge.config import CONFIG_ENV
from bridge.ops.cli import main, reconcile_exit_code

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


def test_check_config_shows_the_server_settings_the_environment_overrides(monkeypatch, capsys):
    """check-config shows what serve would run: BIK_BRIDGE_PORT wins over the file, and a bad one stops both."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("BIK_BRIDGE_PORT", "18138")
    assert main(["check-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["server"]["port"] == 18138
    monkeypatch.setenv("BIK_BRIDGE_PORT", "abc")
    assert main(["check-config"]) == 2
    assert "BIK_BRIDGE_PORT='abc' is not a whole number" in capsys.readouterr().err


def test_check_config_reads_the_variant_map_as_serve_would(tmp_path, capsys):
    """A missing or broken bitbybit.variant_map stops check-config, not only serve and dry-run."""
    text = "platform: bitbybit\nbitbybit: {api_key: k-123456789, variant_map: variants.csv}\n"
    path = write_config(tmp_path, text)
    assert main(["check-config", "--config", path]) == 2
    out, err = capsys.readouterr()
    assert "bitbybit.variant_map: cannot read" in err and "variants.csv" in err and out == ""

    (tmp_path / "variants.csv").write_text("bik_variant_id,bitbybit_variant_id\n1,pv_1\n")
    assert main(["check-config", "--config", path]) == 0


def test_a_cli_error_quoting_a_customer_shows_them_masked(capsys):
    """What a platform says when it refuses can quote the order; the CLI prints it as the logs would."""
    from bridge.ops.cli import _fail

    assert _fail("store refused: buyer@example.com / +919876543210 / 9876543210 is invalid", 1) == 1
    err = capsys.readouterr().err
    assert "buyer@example.com" not in err and "9876543210" not in err and "b***@example.com" in err


def test_broken_yaml_is_placed_without_quoting_the_line(tmp_path, capsys):
    """The line PyYAML would quote may hold a secret: the error names where the problem is, not what is there."""
    path = write_config(tmp_path, f'platform: bigcommerce\nbigcommerce: {{access_token: "{SECRET}\n  store_hash: [\n')
    assert main(["check-config", "--config", path]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML at line " in err and SECRET not in err


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


@pytest.mark.parametrize("platform", ["bigcommerce", "bitbybit", "local"])
def test_dry_run_shows_no_customer_data(project_root, capsys, platform):
    """The request's shape is shown with the customer's name, contacts and address as masked hints."""
    assert main(["dry-run", str(project_root / "examples" / "place-order.json"), "--platform", platform]) == 0
    out, err = capsys.readouterr()
    for personal in ("+919876543210", "9876543210", "buyer@example.com", "Tester", "HSR Layout", "560102"):
        assert personal not in out + err, personal
    assert "b***@example.com" in out  # a hint of the shape stays, as in the logs


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


@pytest.mark.parametrize(("change", "field"), [
    (lambda raw: raw.replace('"paymentPending": true', '"paymentPending": true, "paymentPending": false'),
     "paymentPending"),
    (lambda raw: raw.replace('"currency": ""', '"currency": "USD"'), None),
])
def test_dry_run_makes_the_checks_place_order_makes(tmp_path, project_root, capsys, change, field):
    """A repeated key or another currency than the store's stops dry-run as it would stop placeOrder."""
    payload = tmp_path / "payload.json"
    payload.write_text(change((project_root / "examples" / "place-order.json").read_text()))

    assert main(["dry-run", str(payload), "--platform", "bigcommerce"]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    if field:
        assert [d["field"] for d in json.loads(err)["details"]] == [field]
    else:
        assert "USD" in json.loads(err)["error"] and "INR" in json.loads(err)["error"]


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
    app = build_app(load_config(path, environ={}))
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


@pytest.mark.parametrize("url", ["not a url", "track.example/1", "ftp://track.example/1", "https://", "https://a b"])
def test_local_set_status_refuses_a_tracking_url_a_customer_could_not_open(url, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["local", "set-status", "L-1001", "--tracking-url", url])
    assert stopped.value.code == 2 and "is not an http:// or https:// URL" in capsys.readouterr().err


def test_local_set_status_of_an_unknown_order_fails(tmp_path, capsys):
    """Moving an order that does not exist is exit 1 with the reason."""
    path = write_config(tmp_path, f"local: {{db_path: \"{tmp_path / 'local.db'}\"}}\n")
    assert main(["local", "set-status", "L-4242", "--config", path, "--status", "DELIVERED"]) == 1
    assert "L-4242 not found" in capsys.readouterr().err


def test_local_set_status_refuses_a_config_of_another_platform(tmp_path, capsys):
    """Its local section names a database this bridge never places orders in: exit 2, nothing opened."""
    path = write_config(tmp_path, f"""
platform: bigcommerce
bigcommerce: {{store_hash: abc123, access_token: t0k}}
local: {{db_path: "{tmp_path / 'local.db'}"}}
""")
    assert main(["local", "set-status", "L-1001", "--config", path, "--status", "DELIVERED"]) == 2
    assert "this config's platform is bigcommerce" in capsys.readouterr().err
    assert not (tmp_path / "local.db").exists()


@pytest.mark.parametrize("age", ["-5", "nan", "inf", "soon"])
def test_reconcile_refuses_an_age_that_is_no_age(age, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["reconcile", "--older-than", age])
    assert stopped.value.code == 2 and "--older-than" in capsys.readouterr().err


def test_check_config_names_every_unset_variable_at_once(tmp_path, capsys):
    """check-config lists all unset variables in one run, each with the key that uses it."""
    path = write_config(tmp_path, """
platform: bigcommerce
auth: {scheme: bearer, token: "${BIK_TOKEN_UNSET}"}
bigcommerce: {store_hash: "${BC_HASH_UNSET}", access_token: "${BC_TOKEN_UNSET}"}
metrics: {token: "${METRICS_TOKEN_UNSET:-}"}
""")
    assert main(["check-config", "--config", path]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    for key, name in (("auth.token", "BIK_TOKEN_UNSET"), ("bigcommerce.store_hash", "BC_HASH_UNSET"),
                      ("bigcommerce.access_token", "BC_TOKEN_UNSET")):
        assert f"{key}: environment variable {name} is not set" in err
    assert "METRICS_TOKEN_UNSET" not in err


@pytest.mark.parametrize("url, shown", [
    ("redis://cache.internal:6380/2", "redis://cache.internal:6380/2"),
    (f"redis://bridge:{SECRET}@cache:6379/0", "redis://bridge:****@cache:6379/0"),
])
def test_check_config_masks_only_the_redis_password(tmp_path, capsys, url, shown):
    """A Redis URL is shown as it is, but for its password."""
    path = write_config(tmp_path, f"idempotency: {{backend: redis, redis_url: '{url}'}}\n")
    assert main(["check-config", "--config", path]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["idempotency"]["redis_url"] == shown
    assert SECRET not in out


def test_check_config_states_the_place_order_worst_case(tmp_path, capsys):
    """check-config says how long one placeOrder may take, and warns when that reaches 25 s."""
    assert main(["check-config"]) == 0
    assert "placeOrder answers within 23.05 s at worst" in capsys.readouterr().err
    path = write_config(tmp_path, "upstream: {total_timeout_seconds: 30}\nidempotency: {wait_seconds: 10}\n")
    assert main(["check-config", "--config", path]) == 0
    assert "warning: placeOrder answers within 33.05 s at worst" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["serve"], ["check-config"], ["check-config", "--ping"], ["reconcile"], ["dry-run", "place-order.json"],
    ["healthcheck"], ["local", "set-status", "L-1001", "--status", "DELIVERED"],
])
@pytest.mark.parametrize("url", [f"redis://:{SECRET}@cache:port/0", f"http://:{SECRET}@cache:6379/0",
                                 f"redis://:{SECRET}@cache:6379/zero"])
def test_a_bad_redis_url_is_a_config_error_for_every_command(tmp_path, capsys, command, url):
    """Every command stops with exit 2 naming idempotency.redis_url, never with a traceback or the password."""
    path = write_config(tmp_path, f"idempotency: {{backend: redis, redis_url: '{url}'}}\n")
    assert main([*command, "--config", path]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("bik-bridge: invalid config: idempotency.redis_url: ")
    assert SECRET not in out + err


def test_relative_paths_follow_the_config_file_not_the_working_folder(tmp_path, place_order_body, monkeypatch,
                                                                     capsys):
    """An order placed with a config's relative db_path is found by set-status run from another folder."""
    folder = tmp_path / "deploy"
    folder.mkdir()
    config_file = folder / "bridge.yaml"
    config_file.write_text("local: {db_path: orders.db}\nidempotency: {sqlite_path: idempotency.db}\n")
    app = build_app(load_config(str(config_file), environ={}))
    assert app.test_client().post("/placeOrder", json=place_order_body).status_code == 200
    app.extensions["bik_bridge"].store.close()
    assert (folder / "orders.db").exists() and (folder / "idempotency.db").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["local", "set-status", "L-1001", "--config", str(config_file), "--status", "DELIVERED"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "DELIVERED"
    assert list(elsewhere.iterdir()) == []


def test_set_status_names_the_database_it_searched(tmp_path, place_order_body, capsys):
    """An unknown order, or a database that does not exist, is reported with the file's full path."""
    path = write_config(tmp_path, "local: {db_path: orders.db}\nidempotency: {sqlite_path: idempotency.db}\n")
    assert main(["local", "set-status", "L-1001", "--config", path, "--status", "DELIVERED"]) == 1
    assert f"no local order database at {tmp_path / 'orders.db'} (local.db_path)" in capsys.readouterr().err
    assert not (tmp_path / "orders.db").exists()
    app = build_app(load_config(path, environ={}))
    app.test_client().post("/placeOrder", json=place_order_body)
    app.extensions["bik_bridge"].store.close()
    assert main(["local", "set-status", "L-4242", "--config", path, "--status", "DELIVERED"]) == 1
    assert f"L-4242 not found in {tmp_path / 'orders.db'} (local.db_path)" in capsys.readouterr().err


@pytest.mark.parametrize(("actions", "code"), [
    ([], 0), (["recorded", "released", "still_in_flight"], 0), (["recorded", "lookup_failed"], 1),
    (["inconclusive"], 1),
])
def test_reconcile_exits_1_when_a_draft_needs_someone(actions, code):
    """A lookup that failed or proved nothing leaves the draft to a person: cron alerts on the exit status."""
    assert reconcile_exit_code(actions) == code
