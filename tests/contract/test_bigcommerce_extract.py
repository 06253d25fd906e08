"""The committed BigCommerce extract is what the extractor makes of the official spec, and keeps only structure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.contract import BIGCOMMERCE_ORDERS_SCHEMA
from tests.contract.extract_bigcommerce_spec import SOURCE, extract, read_spec, render

REPO_ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_SPEC = REPO_ROOT.parent / "shared/specs/bigcommerce/orders.v2.oas2.yml"


def test_the_committed_extract_is_what_the_official_spec_gives():
    if not OFFICIAL_SPEC.is_file():
        pytest.skip("../shared/specs/bigcommerce/orders.v2.oas2.yml not beside the checkout: "
                    "nothing to compare the committed extract with")
    regenerated = render(extract(read_spec(OFFICIAL_SPEC)))
    assert BIGCOMMERCE_ORDERS_SCHEMA.read_text(encoding="utf-8") == regenerated, (
        "regenerate it: python -m tests.contract.extract_bigcommerce_spec "
        f"{OFFICIAL_SPEC} {BIGCOMMERCE_ORDERS_SCHEMA.relative_to(REPO_ROOT)}")


def test_the_committed_extract_names_its_source_and_holds_the_get_order_parameters():
    committed = json.loads(BIGCOMMERCE_ORDERS_SCHEMA.read_text(encoding="utf-8"))
    assert committed["x-source"] == SOURCE
    include = {p["name"]: p for p in committed["paths"]["/orders/{order_id}"]["get"]["parameters"]}["include"]
    assert include["in"] == "query"
    assert "consignments.line_items" in include["schema"]["items"]["enum"]


def spec(schemas: dict, paths: dict | None = None) -> dict:
    return {"openapi": "3.0.0", "components": {"schemas": schemas}, "paths": paths or {}}


def test_prose_and_vendor_extensions_go_but_constraints_and_references_stay():
    document = spec({
        "thing": {
            "title": "Thing", "description": "A thing.", "x-internal": False, "example": {"name": "x"},
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "maxLength": 5, "nullable": True, "description": "Its name."},
                "description": {"type": "string", "readOnly": True},  # a property called like a keyword stays
                "parts": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/part"}},
            },
        },
        "part": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "format": "date-time"}],
                 "deprecated": True},
    })
    assert extract(document)["components"]["schemas"] == {
        "thing": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "maxLength": 5, "nullable": True},
                "description": {"type": "string", "readOnly": True},
                "parts": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/part"}},
            },
        },
        "part": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "format": "date-time"}]},
    }


def test_what_only_descriptions_say_is_kept_as_named_facts():
    document = spec({"order": {"properties": {
        "tax_provider_id": {"type": "string", "description": "(Read-only) The tax provider."},
        "total": {"type": "string", "description": "Total. The value can't be negative."},
        "note": {"type": "string", "description": "Free text."},
    }}})
    assert extract(document)["x-from-descriptions"] == {
        "readOnly": {"order": ["tax_provider_id"]}, "nonNegative": {"order": ["total"]},
    }


def test_get_parameters_are_resolved_and_stripped_of_prose():
    document = spec({}, {
        "/orders": {
            "parameters": [{"$ref": "#/components/parameters/Accept"}],
            "get": {"parameters": [{"name": "include", "in": "query", "description": "What to embed.",
                                    "style": "form", "explode": False,
                                    "schema": {"type": "array", "items": {"type": "string", "enum": ["fees"]}}}]},
            "post": {"parameters": [{"name": "ignored", "in": "query", "schema": {"type": "string"}}]},
        },
        "/orders/count": {"parameters": [], "delete": {}},
    })
    document["components"]["parameters"] = {
        "Accept": {"name": "Accept", "in": "header", "required": True, "schema": {"type": "string"},
                   "description": "The MIME type."},
    }
    assert extract(document)["paths"] == {"/orders": {
        "parameters": [{"name": "Accept", "in": "header", "required": True, "schema": {"type": "string"}}],
        "get": {"parameters": [{"name": "include", "in": "query", "style": "form", "explode": False,
                                "schema": {"type": "array", "items": {"type": "string", "enum": ["fees"]}}}]},
    }}


@pytest.mark.parametrize("schemas, message", [
    ({"thing": {"type": "string", "contentEncoding": "base64"}}, "unknown schema keyword 'contentEncoding'"),
    ({"thing": {"$ref": "#/components/schemas/missing"}}, "points outside the extract"),
])
def test_what_the_extract_cannot_carry_faithfully_is_an_error(schemas, message):
    with pytest.raises(ValueError, match=message):
        extract(spec(schemas))


def test_the_rendering_puts_the_source_first_and_sorts_every_object():
    text = render({"paths": {}, "components": {"schemas": {"b": {}, "a": {"required": ["z", "y"]}}},
                   "x-source": {"repository": "r", "commit": "c"}})
    assert text == (
        '{\n  "x-source": {\n    "commit": "c",\n    "repository": "r"\n  },\n'
        '  "components": {\n    "schemas": {\n      "a": {\n        "required": [\n          "z",\n          "y"\n'
        '        ]\n      },\n      "b": {}\n    }\n  },\n  "paths": {}\n}\n'
    )
