"""A new platform is one folder and one registry line: a toy one under tests/, registered here, runs through the app."""
from __future__ import annotations

import pytest

from bridge.bootstrap import PLATFORMS, build_adapter, build_app, parse_config
from bridge.core.errors import ConfigError
from bridge.http.app import EXTENSION
from tests.toy_platform.adapter import ToyAdapter

# The one line a new platform adds, here added to a copy of the registry instead of to bridge/bootstrap.py.
TOY_REGISTRY = {**PLATFORMS, "toy": "tests.toy_platform"}
TOKEN = "toy-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def toy_config(tmp_path, **raw):
    return parse_config({
        "platform": "toy",
        "toy": {"shop": "corner-shop"},
        "auth": {"scheme": "bearer", "token": TOKEN},
        "idempotency": {"sqlite_path": str(tmp_path / "idempotency.db"), "wait_seconds": 0},
        **raw,
    }, {}, registry=TOY_REGISTRY)


@pytest.fixture
def toy_app(tmp_path):
    app = build_app(toy_config(tmp_path))
    yield app
    app.extensions[EXTENSION].store.close()


def test_place_order_and_get_order_run_on_the_toy_platform(toy_app, place_order_body):
    """placeOrder creates the order once, a retry replays it, and getOrder reads it back by its id."""
    client = toy_app.test_client()
    adapter = toy_app.extensions[EXTENSION].adapter

    placed = client.post("/placeOrder", json=place_order_body, headers=AUTH)
    replayed = client.post("/placeOrder", json=place_order_body, headers=AUTH)
    read = client.post("/getOrder", json={"orderId": "T-101"}, headers=AUTH)
    unknown = client.post("/getOrder", json={"orderId": "T-999"}, headers=AUTH)

    assert isinstance(adapter, ToyAdapter) and len(adapter.orders) == 1
    assert placed.status_code == 200 and replayed.data == placed.data
    order = placed.get_json()["order"]
    # The descriptor's name format reaches the adapter: the toy names orders by their number.
    assert (order["id"], order["name"], order["partnersData"]) == ("T-101", "#101", {"id": place_order_body["draftOrderId"]})
    assert read.status_code == 200 and read.get_json()["order"] == order
    assert unknown.status_code == 404


def test_its_section_is_read_by_its_model_and_names_its_store(tmp_path):
    """The `toy:` section is validated by the toy's settings model, and the toy's store scope keys the records."""
    config = toy_config(tmp_path, toy={"shop": "corner-shop", "id_prefix": "C-"})

    assert config.toy.id_prefix == "C-"
    assert config.idempotency_namespace() == "bik-bridge:toy:corner-shop"
    assert "toy" in config.masked()
    assert build_adapter(config).settings.shop == "corner-shop"


@pytest.mark.parametrize(("raw", "named"), [
    ({"toy": None}, "platform is toy but the toy section is missing"),
    ({"toy": {"shop": ""}}, "toy.shop"),
    ({"toy": {"shop": "s", "colour": "red"}}, "toy.colour: unknown key"),
    ({"toys": {}}, "toys: unknown key"),
    ({"platform": "shopify"}, "platform: Input should be 'bigcommerce', 'bitbybit', 'local' or 'toy'"),
])
def test_the_toy_config_is_checked_like_any_platforms(tmp_path, raw, named):
    with pytest.raises(ConfigError) as raised:
        toy_config(tmp_path, **raw)
    assert named in raised.value.message


def test_without_its_registry_line_the_toy_is_unknown():
    """The shipped registry knows nothing of it: `platform: toy` and a `toy:` section are both refused."""
    with pytest.raises(ConfigError) as raised:
        parse_config({"platform": "toy", "toy": {"shop": "corner-shop"}}, {})
    assert "platform: Input should be" in raised.value.message and "toy: unknown key" in raised.value.message
