"""Turn BigCommerce's official Orders v2 OpenAPI spec into the structural extract the tests validate against.

Usage: `python -m tests.contract.extract_bigcommerce_spec SRC OUT`, e.g.
`python -m tests.contract.extract_bigcommerce_spec ../shared/specs/bigcommerce/orders.v2.oas2.yml
tests/contract/bigcommerce_orders_v2.schema.json`. When the spec is copied anew, update SOURCE first.

The extract keeps every schema under `components.schemas` with only the keywords that constrain a value
(`$ref`s stay as they are and still point inside it), and the parameters of every GET operation with their
`$ref`s resolved. Two facts the spec states only in prose, which the fake BigCommerce enforces, are kept
under `x-from-descriptions`. An unknown keyword is an error rather than silently dropped.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tests.spec import pointer

SOURCE = {
    "repository": "bigcommerce/docs",
    "path": "reference/orders.v2.oas2.yml",
    "commit": "24f580ca6d2981728b7ed70a2049e00fc602c335",
    "date": "2026-04-01",
}

# Keywords that constrain or shape a value; everything in PROSE_KEYWORDS (and any `x-`) is documentation.
SCHEMA_KEYWORDS = frozenset({
    "$ref", "type", "format", "enum", "default", "nullable", "readOnly", "writeOnly", "required",
    "properties", "additionalProperties", "items", "allOf", "anyOf", "oneOf", "not", "discriminator",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
})
PROSE_KEYWORDS = frozenset({"description", "title", "example", "examples", "externalDocs", "deprecated", "xml"})
PARAMETER_KEYWORDS = frozenset({"name", "in", "required", "schema", "style", "explode", "allowEmptyValue",
                                "allowReserved"})
SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")

# What the spec says about a property only in its description, e.g. "(Read-only) ..." and
# "The value can't be negative."; the fake refuses writes of the one and negative amounts of the other.
READ_ONLY_PROSE = "Read-only"
NON_NEGATIVE_PROSE = "can't be negative"


def _is_prose(key: str) -> bool:
    return key in PROSE_KEYWORDS or key.startswith("x-")


def _schema(node: Any, where: str) -> Any:
    """A schema object with only SCHEMA_KEYWORDS, recursively."""
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict):
        raise ValueError(f"{where}: a schema must be an object, not {type(node).__name__}")
    kept: dict[str, Any] = {}
    for key, value in node.items():
        if _is_prose(key):
            continue
        if key not in SCHEMA_KEYWORDS:
            raise ValueError(f"{where}: unknown schema keyword {key!r}")
        if key == "properties":
            value = {name: _schema(prop, f"{where}/properties/{name}") for name, prop in value.items()}
        elif key in ("items", "not", "additionalProperties"):
            value = _schema(value, f"{where}/{key}")
        elif key in SUBSCHEMA_LISTS:
            value = [_schema(part, f"{where}/{key}/{index}") for index, part in enumerate(value)]
        kept[key] = value
    return kept


def _parameter(node: dict, document: dict, where: str) -> dict:
    """A parameter object with its $ref resolved and only PARAMETER_KEYWORDS."""
    if "$ref" in node:
        where = node["$ref"]
        node = pointer(document, node["$ref"])
    kept: dict[str, Any] = {}
    for key, value in node.items():
        if _is_prose(key):
            continue
        if key not in PARAMETER_KEYWORDS:
            raise ValueError(f"{where}: unknown parameter keyword {key!r}")
        kept[key] = _schema(value, f"{where}/schema") if key == "schema" else value
    return kept


def _get_parameters(document: dict) -> dict:
    """The parameters of every path that has a GET operation: the path's own and the operation's."""
    paths: dict[str, Any] = {}
    for path, item in document.get("paths", {}).items():
        if "get" not in item:
            continue
        kept: dict[str, Any] = {}
        if item.get("parameters"):
            kept["parameters"] = [_parameter(p, document, f"{path}/parameters") for p in item["parameters"]]
        kept["get"] = {"parameters": [_parameter(p, document, f"{path}/get/parameters")
                                      for p in item["get"].get("parameters", [])]}
        paths[path] = kept
    return paths


def _described(schemas: dict) -> dict:
    """Property names, per schema, that a description declares read-only or non-negative."""
    facts: dict[str, dict[str, list[str]]] = {"readOnly": {}, "nonNegative": {}}
    for schema_name, schema in schemas.items():
        for name, prop in (schema.get("properties") or {}).items():
            text = prop.get("description", "") if isinstance(prop, dict) else ""
            if text.lstrip("(").startswith(READ_ONLY_PROSE):
                facts["readOnly"].setdefault(schema_name, []).append(name)
            if NON_NEGATIVE_PROSE in text:
                facts["nonNegative"].setdefault(schema_name, []).append(name)
    return {fact: {schema: sorted(names) for schema, names in by_schema.items()} for fact, by_schema in facts.items()}


def _check_refs(node: Any, extract: dict) -> None:
    """Raise unless every $ref in `node` names a node inside `extract`."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            try:
                pointer(extract, ref)
            except (KeyError, TypeError) as missing:
                raise ValueError(f"{ref} points outside the extract") from missing
        for key, value in node.items():
            if key not in ("enum", "default"):
                _check_refs(value, extract)
    elif isinstance(node, list):
        for value in node:
            _check_refs(value, extract)


def extract(document: dict) -> dict:
    """The structural extract of an OpenAPI 3.0 Orders spec: schemas, GET parameters and prose-only facts."""
    schemas = document["components"]["schemas"]
    result = {
        "x-source": dict(SOURCE),
        "openapi": document["openapi"],
        "components": {"schemas": {name: _schema(schema, f"#/components/schemas/{name}")
                                   for name, schema in schemas.items()}},
        "paths": _get_parameters(document),
        "x-from-descriptions": _described(schemas),
    }
    _check_refs(result, result)
    return result


def _sorted(node: Any) -> Any:
    """`node` with every object's keys in sorted order; lists keep theirs (`required` and `enum` mean it)."""
    if isinstance(node, dict):
        return {key: _sorted(node[key]) for key in sorted(node)}
    if isinstance(node, list):
        return [_sorted(value) for value in node]
    return node


def render(extracted: dict) -> str:
    """The extract as the committed file holds it: source first, then sorted keys, 2-space indent, final newline."""
    head = {key: extracted[key] for key in ("x-source",) if key in extracted}
    ordered = _sorted(head) | _sorted({key: value for key, value in extracted.items() if key not in head})
    return json.dumps(ordered, indent=2, ensure_ascii=False) + "\n"


def read_spec(path: Path) -> dict:
    """The spec document from its YAML file."""
    import yaml  # only the extractor reads YAML; nothing loads the spec itself at run time

    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def main(argv: list[str] | None = None) -> None:
    """Write the extract of SRC to OUT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="BigCommerce's orders.v2.oas2.yml")
    parser.add_argument("out", type=Path, help="where to write the extract")
    args = parser.parse_args(argv)
    args.out.write_text(render(extract(read_spec(args.src))), encoding="utf-8")


if __name__ == "__main__":
    main()
