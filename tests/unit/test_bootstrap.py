"""The composition root: its registry of platforms, and what it builds for each of them."""
from __future__ import annotations

import importlib

import pytest

from bridge.bootstrap import PLATFORMS, build_adapter, config_class, parse_config, platforms
from bridge.core.platform import Platform
from bridge.upstream.client import Upstream

SECTIONS = {
    "bigcommerce": {"store_hash": "abc123", "access_token": "t", "api_base_url": "http://127.0.0.1:9"},
    "bitbybit": {"api_key": "k", "api_base_url": "http://127.0.0.1:9/v1"},
    "local": {},
}


def test_each_registered_platform_is_one_folder_with_one_descriptor():
    """The registry names a package under adapters/ whose PLATFORM holds the platform's own settings model."""
    assert set(PLATFORMS) == set(SECTIONS)
    for name, package in PLATFORMS.items():
        descriptor = importlib.import_module(package).PLATFORM
        assert isinstance(descriptor, Platform)
        assert package == f"adapters.{name}" and descriptor.settings.__module__ == f"{package}.settings"
    assert platforms() == {name: importlib.import_module(p).PLATFORM for name, p in PLATFORMS.items()}


@pytest.mark.parametrize("name", list(SECTIONS))
def test_the_root_builds_what_the_descriptor_asks_for(name, tmp_path):
    """An Upstream (with its quota gate) only for a platform that talks HTTP; a read pool only for one that asks."""
    raw = {"platform": name, name: {**SECTIONS[name]}, "local": {"db_path": str(tmp_path / "orders.db")}}
    config = parse_config(raw, {})
    descriptor = config.platforms[name]

    adapter = build_adapter(config)

    upstream = getattr(adapter, "upstream", None)
    assert isinstance(upstream, Upstream) is (descriptor.http is not None)
    if upstream is not None:
        assert upstream.platform == name and upstream.gate is not None
    assert (getattr(adapter, "pool", None) is not None) is bool(descriptor.http and descriptor.http.parallel_reads)
    # The name format is the descriptor's, given by the root: no adapter rewrites what it is given.
    presentation = adapter.mapping.presentation if hasattr(adapter, "mapping") else adapter.presentation
    assert presentation.default_name_format == descriptor.default_name_format


def test_one_registry_makes_one_config_class():
    """Configs of one registry compare equal; another registry makes another class."""
    assert config_class() is config_class(dict(PLATFORMS))
    assert parse_config({}, {}) == config_class()()
    assert config_class({**PLATFORMS, "toy": "tests.toy_platform"}) is not config_class()
