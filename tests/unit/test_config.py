"""Configuration: defaults, `${VAR}` expansion, error messages, masking, revision."""
from __future__ import annotations

import json

import pytest

from bridge.bootstrap import config_class, load_config, parse_config
from bridge.config import CONFIG_ENV, PLACE_ORDER_TARGET_SECONDS, expand_env, revise
from bridge.core.errors import ConfigError

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


@pytest.mark.parametrize("text", ["", "\n", "# platform: bigcommerce\n"])
def test_a_config_file_that_says_nothing_is_refused(tmp_path, text):
    """An empty file is a mistake (a secret not mounted), never the embedded defaults' local platform without auth."""
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="empty.yaml is empty; name at least the platform"):
        load_config(str(path), environ={})


def test_an_empty_mapping_asks_for_the_defaults(tmp_path):
    path = tmp_path / "defaults.yaml"
    path.write_text("{}\n")
    assert load_config(str(path), environ={}) == config_class()()


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


def test_every_unset_variable_is_named_at_once():
    """All unset variables are named in one error, each with its key, not one per attempt."""
    message = config_error({"auth": {"scheme": "bearer", "token": "${BIK_TOKEN}"},
                            "bigcommerce": {"store_hash": "${BC_HASH}", "access_token": "${BC_TOKEN}"},
                            "auth_overrides": {"getOrder": {"password": "pre-${BC_TOKEN}-${OTHER:-x}"}},
                            "store": {"currency": "${CUR:-INR}"}})
    assert message.split("; ") == [
        "auth.token: environment variable BIK_TOKEN is not set",
        "bigcommerce.store_hash: environment variable BC_HASH is not set",
        "bigcommerce.access_token: environment variable BC_TOKEN is not set",
        "auth_overrides.getOrder.password: environment variable BC_TOKEN is not set",
    ]


def test_a_key_written_twice_is_an_error_naming_its_line(tmp_path):
    """Two `port:` lines would leave the last one in force, unseen: refused, with the line of the second."""
    path = tmp_path / "twice.yaml"
    path.write_text("platform: local\nserver:\n  port: 9000\n  port: 9001\n")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path), environ={})
    assert raised.value.message.endswith("is not valid YAML at line 4, column 3: key 'port' is written twice")


@pytest.mark.parametrize("token", ["${BIK_TOKEN", "pre-${BIK_TOKEN:-x"])
def test_a_reference_left_open_is_an_error_not_the_value(token):
    """A `${` without its `}` would otherwise become the secret itself, letting in whoever sends it."""
    message = config_error({"auth": {"scheme": "bearer", "token": token}})
    assert message.startswith("auth.token: a ${ with no matching }")


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


def test_redis_url_shows_its_password_masked_and_nothing_else():
    """A Redis URL is printed as given, except for its password (and a Sentinel's password)."""
    def shown(url: str) -> str:
        return parse_config({"idempotency": {"redis_url": url}}, {}).masked()["idempotency"]["redis_url"]

    assert shown("redis://cache.internal:6380/2") == "redis://cache.internal:6380/2"
    assert shown("rediss://:s3cret@cache:6379/0") == "rediss://:****@cache:6379/0"
    assert shown("redis://bridge:s3cret@cache:6379/0") == "redis://bridge:****@cache:6379/0"
    assert shown("redis+sentinel://:s3cret@s1:26379,s2/mymaster?sentinel_password=other") == (
        "redis+sentinel://:****@s1:26379,s2/mymaster?sentinel_password=****")
    assert shown("unix:///run/redis.sock?db=1") == "unix:///run/redis.sock?db=1"


def test_secret_fields_are_masked_and_other_fields_shown():
    """SecretStr fields print as a mask; plain fields and unset secrets print as they are."""
    shown = parse_config({"platform": "bitbybit", "bitbybit": {"api_key": "bbb-key", "store_id": "shop-1"},
                          "metrics": {"token": "scrape-me"}}, {}).masked()
    assert shown["bitbybit"]["api_key"] == shown["metrics"]["token"] == "**********"
    assert shown["bitbybit"]["store_id"] == "shop-1"
    assert shown["auth"]["token"] is None


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "redis://cache", "rediss://user:p%40ss@cache.example:6380/15",
    "redis://[::1]:6379/0", "unix:///run/redis/redis.sock", "redis+sentinel://s1:26379,s2,[::1]:26380/mymaster/2",
    "rediss+sentinel://:pw@s1/mymaster?sentinel_password=x", "redis://cache/0?socket_timeout=0.5&ssl_cert_reqs=none",
])
def test_usable_redis_urls_are_accepted(url):
    """Every URL form the Redis stores understand loads."""
    assert parse_config({"idempotency": {"redis_url": url}}, {}).idempotency.redis_url.get_secret_value() == url


@pytest.mark.parametrize("url, problem", [
    ("http://:pw@cache:6379/0", "must start with redis://"),
    ("cache:6379", "must start with redis://"),
    ("", "must start with redis://"),
    ("redis://:pw@cache:notaport/0", "port from 1 to 65535"),
    ("redis://:pw@cache:70000/0", "port from 1 to 65535"),
    ("redis://:pw@:6379/0", "needs a host"),
    ("redis://:pw@cache:6379/zero", "not a database number"),
    ("redis://[::1/0", "not a valid URL"),
    ("unix://", "socket's path"),
    ("redis+sentinel://:pw@s1:26379", "/service"),
    ("redis+sentinel://:pw@s1:x/mymaster", "sentinels"),
    ("redis+sentinel://:pw@s1/mymaster/db", "/service or /service/db"),
    ("redis://:pw@cache:6379/0?socket_timeout=soon", "socket_timeout that is not a number"),
])
def test_unusable_redis_url_is_a_config_error_naming_the_key(url, problem):
    """A Redis URL the store could not use fails when the config loads, naming the key and never the password."""
    message = config_error({"idempotency": {"backend": "redis", "redis_url": url}})
    assert message.startswith("idempotency.redis_url: ")
    assert problem in message
    assert "pw" not in message


def test_relative_paths_in_a_file_are_taken_from_its_folder(tmp_path, monkeypatch):
    """sqlite_path, db_path and variant_map a file sets mean the same from any working folder."""
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "bridge.yaml"
    path.write_text("idempotency: {sqlite_path: data/idem.db}\nlocal: {db_path: /var/lib/orders.db}\n"
                    "bitbybit: {api_key: k, variant_map: ../maps/variants.csv}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(str(path.relative_to(tmp_path)), environ={})
    assert config.idempotency.sqlite_path == str(folder / "data" / "idem.db")
    assert config.local.db_path == "/var/lib/orders.db"
    assert config.bitbybit.variant_map == str(folder / ".." / "maps" / "variants.csv")


def test_built_in_default_paths_are_taken_from_the_working_folder(tmp_path, monkeypatch):
    """Without a file, and for the paths a file leaves unset, the files live where the bridge is started."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "bridge.yaml").write_text("local: {db_path: orders.db}\n")
    workdir = tmp_path / "data"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    config = load_config(None, environ={})
    assert config.idempotency.sqlite_path == config.local.db_path == str(workdir / "bik-bridge.db")
    from_file = load_config(str(folder / "bridge.yaml"), environ={})
    assert from_file.local.db_path == str(folder / "orders.db")
    assert from_file.idempotency.sqlite_path == str(workdir / "bik-bridge.db")
    assert parse_config({"local": {"db_path": "orders.db"}}, {}).local.db_path == str(workdir / "orders.db")


def test_sqlite_special_names_are_not_paths(tmp_path):
    """`:memory:` and `file:` URIs reach SQLite as given."""
    raw = {"idempotency": {"sqlite_path": ":memory:"}, "local": {"db_path": "file:orders.db?mode=rwc"}}
    config = parse_config(raw, {}, base_dir=tmp_path)
    assert (config.idempotency.sqlite_path, config.local.db_path) == (":memory:", "file:orders.db?mode=rwc")


def test_revise_keeps_resolved_paths(tmp_path):
    """A revised config keeps the paths its file resolved, wherever it is revised."""
    config = parse_config({"local": {"db_path": "orders.db"}}, {}, base_dir=tmp_path)
    assert revise(config, {"server": {"port": 9000}}).local.db_path == str(tmp_path / "orders.db")


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


def test_default_place_order_worst_case_is_under_25_seconds():
    """With the defaults one placeOrder answers within 25 s, even a duplicate that waits and then creates."""
    # One budget covers the call: a duplicate's wait for the draft's owner comes out of it, and so do the
    # lookup and the create; the last attempt's connect may start just before that budget ends and run
    # `connect_timeout_seconds` past it.
    config = load_config(None, environ={})
    worst = (max(config.idempotency.wait_seconds, config.upstream.total_timeout_seconds)
             + config.upstream.connect_timeout_seconds)
    assert config.place_order_worst_case_seconds() == worst
    assert worst < PLACE_ORDER_TARGET_SECONDS == 25


def test_auth_for_uses_overrides():
    """An endpoint override replaces the default scheme for that endpoint only."""
    config = parse_config({"auth": {"scheme": "bearer", "token": "t"},
                           "auth_overrides": {"getOrder": {"scheme": "none"}}}, {})
    assert config.auth_for("getOrder").scheme == "none"
    assert config.auth_for("placeOrder").scheme == "bearer"
