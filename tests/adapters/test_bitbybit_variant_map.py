"""The optional variant map: CSV and YAML files, their mistakes, and its use before anything is sent."""
from __future__ import annotations

import json

import pytest
import responses

from adapters.bitbybit.variant_map import load_variant_map, parse_csv, parse_yaml
from bridge.bootstrap import build_adapter, parse_config
from bridge.core.deadline import Deadline
from bridge.core.errors import ConfigError, OrderRejected
from tests.adapters.bitbybit_support import API_BASE, KEY, ORDERS_URL, bbb_order, envelope


def test_csv_with_header_comments_and_blank_lines():
    variants = parse_csv("bik_variant_id,bitbybit_variant_id\n"
                         "# launch catalog\n"
                         "40946134352009, pv_cream \n"
                         "\n"
                         "\"12\",\"pv,with,commas\"\n")

    assert len(variants) == 2
    assert variants.bitbybit_id(40946134352009) == "pv_cream"
    assert variants.bitbybit_id("12") == "pv,with,commas"
    assert variants.bitbybit_id(13) is None
    assert variants.bik_id("pv_cream") == "40946134352009"


def test_csv_without_header():
    assert parse_csv("1,a\n2,b\n").bitbybit_id(2) == "b"


@pytest.mark.parametrize(("text", "message"), [
    ("1,a\n2\n", "line 2: expected two columns"),
    ("1,a,extra\n", "line 1: expected two columns"),
    ("1,a\n,b\n", "line 2: both a Bik and a bitbybit variant id are needed"),
    ("1,a\n1,b\n", "Bik variant 1 is mapped twice (a and b)"),
])
def test_csv_mistakes_name_the_line(text, message):
    with pytest.raises(ConfigError) as raised:
        parse_csv(text, "variants.csv")

    assert "bitbybit.variant_map: variants.csv" in raised.value.message
    assert message in raised.value.message


def test_csv_repeating_the_same_pair_is_fine():
    assert len(parse_csv("1,a\n1,a\n")) == 1


def test_yaml_mapping_with_numeric_keys():
    variants = parse_yaml("40946134352009: pv_cream\n'12': pv_12\n13: 9001\n")

    assert variants.bitbybit_id(40946134352009) == "pv_cream"
    assert variants.bitbybit_id(12) == "pv_12"
    assert variants.bitbybit_id("13") == "9001"


@pytest.mark.parametrize(("text", "message"), [
    ("- 1\n- 2\n", "must hold one mapping"),
    ("1: [a]\n", "entry 1: both a Bik and a bitbybit variant id are needed"),
    ("1: 2.5\n", "not decimals"),
    ("a: [", "not valid YAML"),
    ("1: pv_a\n2: pv_b\n1: pv_c\n", "not valid YAML at line 3, column 1: key 1 is written twice"),
])
def test_yaml_mistakes(text, message):
    with pytest.raises(ConfigError, match="bitbybit.variant_map") as raised:
        parse_yaml(text, "variants.yaml")

    assert message in raised.value.message


def test_empty_yaml_is_an_empty_map():
    assert len(parse_yaml("")) == 0


def test_files_are_read_by_extension(tmp_path):
    (tmp_path / "v.csv").write_text("\ufeffbik_variant_id,bitbybit_variant_id\n1,a\n", encoding="utf-8")
    (tmp_path / "v.yml").write_text("1: b\n", encoding="utf-8")

    assert load_variant_map(str(tmp_path / "v.csv")).bitbybit_id(1) == "a"
    assert load_variant_map(str(tmp_path / "v.yml")).bitbybit_id(1) == "b"
    with pytest.raises(ConfigError, match="must end in .csv, .yaml or .yml"):
        load_variant_map(str(tmp_path / "v.json"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_variant_map(str(tmp_path / "missing.csv"))


def adapter_with_map(path):
    config = parse_config({"platform": "bitbybit", "upstream": {"max_attempts": 1},
                           "bitbybit": {"api_key": KEY, "api_base_url": API_BASE, "variant_map": str(path)}}, {})
    return build_adapter(config)


def test_the_adapter_sends_mapped_ids(tmp_path, place_request, rsps):
    path = tmp_path / "variants.yaml"
    path.write_text("40946134352009: pv_cream\n")
    rsps.add(responses.POST, ORDERS_URL, status=201, json=envelope(bbb_order(
        lineItems=[{"quantity": 2, "price": 499, "title": "Cream", "productVariant": {"id": "pv_cream"}}])))

    order = adapter_with_map(path).place(place_request, Deadline(10))

    assert json.loads(rsps.calls[0].request.body)["lineItems"] == [{"productVariantId": "pv_cream", "quantity": 2}]
    assert order.items[0].variantId == 40946134352009


def test_an_unmapped_variant_is_422_before_anything_is_sent(tmp_path, make_request, rsps):
    path = tmp_path / "variants.csv"
    path.write_text("1,pv_one\n")
    request = make_request(order={"items": [{"variantId": 555, "quantity": 1, "price": 10}]})

    with pytest.raises(OrderRejected) as refused:
        adapter_with_map(path).place(request, Deadline(10))

    assert refused.value.status == 422
    assert "variantId: 555" in refused.value.message
    assert len(rsps.calls) == 0


def test_a_broken_map_stops_the_adapter_from_being_built(tmp_path):
    path = tmp_path / "variants.csv"
    path.write_text("1,a\n1,b\n")

    with pytest.raises(ConfigError, match="mapped twice"):
        adapter_with_map(path)
