"""The `bitbybit` config section: its checks, and the store scope that keeps idempotency records apart."""
from __future__ import annotations

import dataclasses

import pytest

from bridge.bootstrap import parse_config
from bridge.core.errors import ConfigError
from bridge.core.presentation import Presentation


def bitbybit(**section) -> dict:
    return {"platform": "bitbybit", "bitbybit": {"api_key": "bbb_live_one", **section}}


def test_defaults_follow_the_rendered_docs():
    settings = parse_config(bitbybit(), {}).bitbybit

    assert settings.api_base_url == "https://api.bitbybit.studio/customer/open/v1"
    assert settings.auth_header == "x-api-key"
    assert (settings.marker_prefix, settings.lookup_max_pages, settings.default_country_code) == ("bik:", 5, "91")


def test_a_store_id_keeps_the_records_when_the_key_rotates():
    before = parse_config(bitbybit(store_id="my-shop"), {})
    after = parse_config({"platform": "bitbybit", "bitbybit": {"api_key": "bbb_live_two", "store_id": "my-shop"}}, {})

    assert before.idempotency_namespace() == after.idempotency_namespace() == "bik-bridge:bitbybit:my-shop"


def test_without_a_store_id_the_scope_is_a_digest_of_the_key():
    one, two = parse_config(bitbybit(), {}), parse_config(bitbybit(api_key="bbb_live_two"), {})

    assert one.store_scope() != two.store_scope()
    assert "bbb_live_one" not in one.store_scope()


@pytest.mark.parametrize(("section", "key"), [
    ({"auth_header": "x-api-key: injected"}, "bitbybit.auth_header"),
    ({"api_base_url": "api.bitbybit.studio/customer/open/v1"}, "bitbybit.api_base_url"),
    ({"store_id": "my shop"}, "bitbybit.store_id"),
    ({"default_country_code": "+91"}, "bitbybit.default_country_code"),
    ({"lookup_max_pages": 0}, "bitbybit.lookup_max_pages"),
    ({"status_map": {"archived": "DONE"}}, "bitbybit.status_map.archived"),
])
def test_mistakes_name_the_key(section, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(bitbybit(**section), {})


def test_an_unset_name_format_takes_the_platforms_default_and_a_set_one_wins():
    unset = Presentation.from_config(parse_config(bitbybit(), {}).store)
    chosen = Presentation.from_config(parse_config({**bitbybit(), "store": {"name_format": "#{id}"}}, {}).store)

    assert unset.name("ord_1", "1001") == "#ord_1"  # BigCommerce and local: the id is what the merchant sees
    assert dataclasses.replace(unset, default_name_format="#{number}").name("ord_1", "1001") == "#1001"
    assert dataclasses.replace(chosen, default_name_format="#{number}").name("ord_1", "1001") == "#ord_1"
