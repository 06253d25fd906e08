"""Configuration: defaults, `${VAR}` expansion, error messages, masking, revision."""
from __future__ import annotations

import json

import pytest

from bridge.config import CONFIG_ENV, Config, expand_env, load_config, parse_config, revise
from bridge.errors import ConfigError

BIGCOMMERCE = {"store_hash": "abc123", "access_token": "bc-token-value"}


def config_error(raw, environ=None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, environ or {})
    return caught.value.message


def test_no_file_gives_the_local_platform_on_sqlite():
    """Without a file the bridge runs the local platform with the SQLite store and no auth."""
    config = load_config(None, environ={})
    assert config.platform == "local"
    assert config.idempotency.backend == "sqlite"
    assert config.auth.scheme == "none"
    assert config.server.base_path == ""
    assert config.idempotency.on_mismatch == "replay"


def test_empty_yaml_file_gives_defaults(tmp_path):
    """An empty file means the defaults."""
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(str(path), environ={}) == Config()


def test_variables_are_expanded():
    """`${VAR}` takes the environment's value, also inside a longer string and in lists."""
    raw = {"auth": {"scheme": "bearer", "token": "${TOKEN}"}, "server": {"host": "${HOST}", "port": "${PORT}"},
           "store": {"invoice_url_template": "https://${SHOP}/pay/{id}"}}
    config = parse_config(raw, {"TOKEN": "t0k", "HOST": "0.0.0.0", "PORT": "9090", "SHOP": "shop.example"})
    assert config.auth.token.get_secret_value() == "t0k"
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 9090
    assert config.store.invoice_url_template == "https://shop.example/pay/{id}"
    assert expand_env({"a": ["${X}", 3]}, {"X": "x"}) == {"a": ["x", 3]}


def test_defaults_apply_when_a_variable_is_unset_or_empty():
    """`${VAR:-default}` falls back when VAR is unset or empty, and keeps a set value."""
    raw = {"server": {"host": "${HOST:-127.0.0.2}", "port": "${PORT:-8181}"}}
    assert parse_config(raw, {}).server.host == "127.0.0.2"
    assert parse_config(raw, {"HOST": ""}).server.host == "127.0.0.2"
    assert parse_config(raw, {"PORT": "7000"}).server.port == 7000


def test_unset_variable_without_default_names_the_key_path():
    """An unset `${VAR}` is an error naming both the key and the variable."""
    message = config_error({"bigcommerce": {"access_token": "${BC_TOKEN}"}})
    assert "bigcommerce.access_token" in message
    assert "BC_TOKEN" in message


def test_missing_platform_field_is_named():
    """platform bigcommerce without a store hash says which field is required."""
    message = config_error({"platform": "bigcommerce", "bigcommerce": {"access_token": "x"}})
    assert "bigcommerce.store_hash: field required" in message


def test_missing_platform_section_is_named():
    """platform bigcommerce with no bigcommerce section says so."""
    assert "bigcommerce section is missing" in config_error({"platform": "bigcommerce"})


def test_unknown_key_is_named():
    """A misspelt key is an error, not silently ignored."""
    assert "server.prot: unknown key" in config_error({"server": {"prot": 8080}})
    assert "colour: unknown key" in config_error({"colour": "blue"})


def test_bad_values_name_key_and_problem():
    """Out-of-range and wrong-choice values name the key."""
    assert config_error({"server": {"port": 0}}).startswith("server.port: ")
    assert "idempotency.on_mismatch" in config_error({"idempotency": {"on_mismatch": "ignore"}})
    assert "platform" in config_error({"platform": "shopify"})


def test_auth_scheme_needs_its_credentials():
    """bearer without a token, basic without a password, and a bad header name are rejected."""
    assert "auth: " in config_error({"auth": {"scheme": "bearer"}})
    assert "non-empty token" in config_error({"auth": {"scheme": "bearer", "token": ""}})
    assert "username and password" in config_error({"auth_overrides": {"getOrder": {"scheme": "basic",
                                                                                    "username": "bik"}}})
    assert "auth_overrides.getOrder" in config_error({"auth_overrides": {"getOrder": {"scheme": "basic"}}})
    assert "header" in config_error({"auth": {"scheme": "api_key", "token": "t", "header": "X Bad:Header"}})
    assert "auth_overrides" in config_error({"auth_overrides": {"cancelOrder": {"scheme": "none"}}})


def test_file_that_is_not_a_mapping_is_rejected(tmp_path):
    """A YAML list or broken YAML is a ConfigError, as is a missing file."""
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(listed), environ={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(broken), environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "absent.yaml"), environ={})


def test_masked_never_contains_secrets():
    """Every secret is masked in the printable config."""
    secrets = {"BEARER": "bearer-secret-1", "BASIC": "basic-secret-2", "BC": "bc-secret-3",
               "REDIS": "redis://:redis-secret-4@cache:6379/0", "KEY": "api-secret-5"}
    raw = {
        "platform": "bigcommerce",
        "auth": {"scheme": "bearer", "token": "${BEARER}"},
        "auth_overrides": {"getOrder": {"scheme": "basic", "username": "bik", "password": "${BASIC}"},
                           "placeOrder": {"scheme": "api_key", "token": "${KEY}", "header": "X-Bik-Key"}},
        "idempotency": {"backend": "redis", "redis_url": "${REDIS}"},
        "bigcommerce": {"store_hash": "abc123", "access_token": "${BC}"},
        "bitbybit": {"api_key": "${KEY}"},
    }
    config = parse_config(raw, secrets)
    shown = json.dumps(config.masked())
    for secret in secrets.values():
        assert secret not in shown
    assert "redis-secret-4" not in shown
    assert config.masked()["bigcommerce"]["store_hash"] == "abc123"
    assert config.masked()["auth_overrides"]["getOrder"]["username"] == "bik"


def test_config_env_variable_is_respected(tmp_path, monkeypatch):
    """BIK_BRIDGE_CONFIG names the file when no path is given, from `environ` or the process environment."""
    path = tmp_path / "bridge.yaml"
    path.write_text("server:\n  port: 9191\nstore:\n  currency: ${CUR:-USD}\n")
    assert load_config(environ={CONFIG_ENV: str(path)}).server.port == 9191
    monkeypatch.setenv(CONFIG_ENV, str(path))
    monkeypatch.setenv("CUR", "EUR")
    config = load_config()
    assert config.server.port == 9191
    assert config.store.currency == "EUR"


def test_explicit_path_wins_over_env(tmp_path):
    """A path given on the command line beats BIK_BRIDGE_CONFIG."""
    chosen, other = tmp_path / "chosen.yaml", tmp_path / "other.yaml"
    chosen.write_text("server: {port: 1111}\n")
    other.write_text("server: {port: 2222}\n")
    assert load_config(str(chosen), environ={CONFIG_ENV: str(other)}).server.port == 1111


def test_request_timeout_above_total_budget_is_rejected():
    """One attempt may not outlast the whole upstream budget."""
    message = config_error({"upstream": {"timeout_seconds": 30, "total_timeout_seconds": 20}})
    assert "timeout_seconds must not exceed upstream.total_timeout_seconds" in message
    assert parse_config({"upstream": {"timeout_seconds": 20, "total_timeout_seconds": 20}}, {})


@pytest.mark.parametrize("given, expected", [
    ("", ""), ("/", ""), ("bik", "/bik"), ("/bik", "/bik"), ("/bik/", "/bik"), (" /api/bik/ ", "/api/bik"),
])
def test_base_path_is_normalised(given, expected):
    """base_path gains a leading slash and loses a trailing one; "/" means the root."""
    assert parse_config({"server": {"base_path": given}}, {}).server.base_path == expected


@pytest.mark.parametrize("given", ["/bik path", "/bik?x=1", "/bik//x", "/b%20k"])
def test_malformed_base_path_is_rejected(given):
    """A base_path that is not a plain path is an error naming the key."""
    message = config_error({"server": {"base_path": given}})
    assert message.startswith("server: ")
    assert "base_path must look like" in message


def test_templates_accept_known_fields():
    """name_format and invoice_url_template may use {id}, {number} and {draft_id}."""
    store = parse_config({"store": {"name_format": "BIK-{number}",
                                    "invoice_url_template": "https://s.example/pay/{id}?d={draft_id}"}}, {}).store
    assert store.name_format == "BIK-{number}"


@pytest.mark.parametrize("key, template", [
    ("name_format", "#{order_id}"),
    ("invoice_url_template", "https://s.example/{customer}"),
    ("name_format", "#{}"),
    ("name_format", "#{0}"),
    ("invoice_url_template", "https://s.example/{id.__class__}"),
    ("name_format", "#{id"),
    ("name_format", "#id}"),
])
def test_templates_with_unknown_or_broken_fields_are_rejected(key, template):
    """A template that could not be filled at request time is rejected when the config loads."""
    message = config_error({"store": {key: template}})
    assert message.startswith("store: ")
    assert key in message


def test_revise_merges_sections_and_validates_again():
    """revise changes the named keys, keeps the rest, and leaves the original untouched."""
    config = parse_config({"auth": {"scheme": "bearer", "token": "keep-me"}, "server": {"port": 8000}}, {})
    changed = revise(config, {"server": {"port": 9000}, "platform": "bigcommerce", "bigcommerce": BIGCOMMERCE})
    assert changed.server.port == 9000
    assert changed.server.host == config.server.host
    assert changed.platform == "bigcommerce"
    assert changed.bigcommerce.access_token.get_secret_value() == "bc-token-value"
    assert changed.auth.token.get_secret_value() == "keep-me"
    assert config.server.port == 8000 and config.platform == "local"
    with pytest.raises(ConfigError, match="server.port"):
        revise(config, {"server": {"port": 70000}})
    with pytest.raises(ConfigError, match="unknown key"):
        revise(config, {"server": {"prot": 1}})


def test_store_scope_keeps_stores_apart_without_the_secret():
    """The idempotency namespace differs per store and never holds the bitbybit key."""
    one = parse_config({"platform": "bigcommerce", "bigcommerce": BIGCOMMERCE}, {})
    two = parse_config({"platform": "bigcommerce", "bigcommerce": {**BIGCOMMERCE, "store_hash": "zzz9"}}, {})
    bbb = parse_config({"platform": "bitbybit", "bitbybit": {"api_key": "very-secret-key"}}, {})
    assert one.idempotency_namespace() == "bik-bridge:bigcommerce:abc123"
    assert one.idempotency_namespace() != two.idempotency_namespace()
    assert "very-secret-key" not in bbb.idempotency_namespace()
    assert parse_config({"idempotency": {"namespace": "mine"}}, {}).idempotency_namespace() == "mine"


def test_lease_outlasts_the_upstream_budget():
    """The lease is the whole upstream budget plus the grace."""
    config = parse_config({"upstream": {"total_timeout_seconds": 12}, "idempotency": {"lease_grace_seconds": 3}}, {})
    assert config.lease_seconds() == 15


def test_auth_for_uses_overrides():
    """An endpoint override replaces the default scheme for that endpoint only."""
    config = parse_config({"auth": {"scheme": "bearer", "token": "t"},
                           "auth_overrides": {"getOrder": {"scheme": "none"}}}, {})
    assert config.auth_for("getOrder").scheme == "none"
    assert config.auth_for("placeOrder").scheme == "bearer"
