"""BigCommerce's Orders v2 schemas, from the repository's extract of the official spec, as OpenAPI 3.0 validators."""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

from openapi_schema_validator import OAS30Validator

from tests.contract import BIGCOMMERCE_ORDERS_SCHEMA as BIGCOMMERCE_SPEC


@lru_cache(maxsize=1)
def _spec() -> dict:
    """The extract, parsed once."""
    with BIGCOMMERCE_SPEC.open(encoding="utf-8") as handle:
        return json.load(handle)


def pointer(document: dict, ref: str) -> Any:
    """The node an internal `#/a/b` reference names."""
    if not ref.startswith("#/"):
        raise ValueError(f"only internal references are supported, not {ref!r}")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _resolve(node: Any, document: dict, seen: tuple[str, ...] = ()) -> Any:
    """A copy of `node` with every internal $ref replaced by its target."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in seen:
                raise ValueError(f"circular reference {' -> '.join(seen + (ref,))}")
            return _resolve(pointer(document, ref), document, seen + (ref,))
        return {key: _resolve(value, document, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, document, seen) for value in node]
    return node


@lru_cache(maxsize=None)
def _resolved_schema(schema_name: str) -> dict:
    document = _spec()
    schemas = document["components"]["schemas"]
    if schema_name not in schemas:
        raise KeyError(f"{schema_name} is not in #/components/schemas of {BIGCOMMERCE_SPEC.name}")
    return _resolve(schemas[schema_name], document)


def bigcommerce_validator(schema_name: str) -> OAS30Validator:
    """An OAS 3.0 validator for `#/components/schemas/<schema_name>` of the Orders v2 spec."""
    schema = copy.deepcopy(_resolved_schema(schema_name))
    OAS30Validator.check_schema(schema)
    return OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER)


def schema_properties(schema_name: str) -> set[str]:
    """Every property name the schema declares, through allOf/anyOf/oneOf."""
    names: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            names.update((node.get("properties") or {}).keys())
            for key in ("allOf", "anyOf", "oneOf"):
                for part in node.get(key) or []:
                    collect(part)

    collect(_resolved_schema(schema_name))
    return names
