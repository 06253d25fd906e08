"""Hypothesis strategies for what Bik (or anything posing as Bik) may send the bridge."""
from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import strategies as st

# Lone surrogates survive json.dumps as \udXXX escapes and come back as unencodable str.
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec=None), max_size=12),
    st.text(surrogates, min_size=1, max_size=3),
    st.sampled_from(["", " ", "\x00", "null", "NaN", "1e999", "-0", "L-1001", "L-²", "L-١٢٣", "𝟙𝟚𝟛"]),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.integers(max_value=-1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 1e-9, 1e12, 1e12 + 1, 1e308, 10**30, 0.1 + 0.2]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)

# Any JSON document: nested objects and arrays of every scalar, unicode keys included.
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(texts, children, max_size=4),
    ),
    max_leaves=20,
)


def money(max_value: int = 10**6):
    """An amount the model should take: an int or a short decimal float (a JSON number, as Bik's contract says)."""
    cents = st.integers(min_value=0, max_value=max_value * 100)
    return st.one_of(
        st.integers(min_value=0, max_value=max_value),
        cents.map(lambda c: float(Decimal(c) / 100)),
    )


draft_ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128)
external_ids = st.one_of(
    st.integers(min_value=0, max_value=2**63 - 1),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=64).filter(lambda s: s == s.strip()),
)
# Control characters are refused in contact fields: odd_text_at_a_leaf puts them in one field at a time.
short_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), max_size=30)

addresses = st.fixed_dictionaries(
    {},
    optional={
        "firstName": short_text, "lastName": short_text, "address1": short_text,
        "address2": st.none() | short_text, "city": short_text, "state": st.none() | short_text,
        "country": short_text, "countryCode": st.none() | st.text(max_size=3), "zip": short_text,
        "phoneNumber": st.none() | short_text,
    },
)
items = st.fixed_dictionaries(
    {"variantId": external_ids, "quantity": st.integers(min_value=1, max_value=100_000), "price": money()},
    optional={
        "productId": st.none() | external_ids, "name": short_text, "variantName": st.none() | short_text,
        "image": st.none() | st.text(max_size=60),
    },
)
orders = st.fixed_dictionaries(
    {"items": st.lists(items, min_size=1, max_size=4), "subTotal": money(), "total": money()},
    optional={
        "shippingCharge": money(10_000), "discount": money(10_000), "currency": st.sampled_from(["", "INR", "usd"]),
        "address": st.none() | addresses, "phoneNumber": st.none() | short_text,
        "email": st.none() | st.just("") | st.emails(),
        "tags": st.none() | short_text | st.lists(short_text, max_size=3),
        "id": draft_ids, "name": short_text,
    },
)
# Bodies built from the model's own constraints: the bridge should take nearly all of them.
place_orders = st.fixed_dictionaries(
    {"draftOrderId": draft_ids, "order": orders}, optional={"paymentPending": st.booleans()},
)


def _paths(node, prefix=()):
    """Every path into a JSON document, the root excluded."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


def _replace(node, path, value, drop: bool):
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(node) if isinstance(node, dict) else list(node)
    if drop and not rest:
        del copy[head]
    else:
        copy[head] = _replace(copy[head], rest, value, drop)
    return copy


@st.composite
def mutated(draw, bodies):
    """A body with one field anywhere in it replaced by any JSON value, or removed."""
    body = draw(bodies)
    paths = list(_paths(body))
    path = draw(st.sampled_from(paths))
    return _replace(body, path, draw(json_values), draw(st.booleans()))


@st.composite
def odd_text_at_a_leaf(draw, bodies):
    """A body with one leaf turned into odd text: surrogates, controls, other scripts (one, so no other error hides it)."""
    body = draw(bodies)
    leaves = [path for path in _paths(body) if not isinstance(_at(body, path), (dict, list))]
    return _replace(body, draw(st.sampled_from(leaves)), draw(texts), False)


def _at(node, path):
    for key in path:
        node = node[key]
    return node


order_ids = st.one_of(
    texts,
    st.integers(),
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=14).map(lambda s: f"L-{s}"),
    st.integers(min_value=0, max_value=10**16).map(lambda n: f"L-{n}"),
    json_values,
)
get_orders = st.one_of(st.fixed_dictionaries({"orderId": order_ids}), st.dictionaries(texts, json_values))

content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/json; charset=latin-1",
    "Application/JSON", "application/json-patch+json", "text/plain", "text/json",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/octet-stream", "",
])


@st.composite
def raw_bodies(draw):
    """Bytes no JSON encoder would produce: junk, truncated JSON, NaN and friends, deep nesting."""
    valid = json.dumps(draw(place_orders)).encode()
    return draw(st.one_of(
        st.binary(max_size=200),
        st.just(valid[: draw(st.integers(min_value=0, max_value=max(0, len(valid) - 1)))]),
        st.sampled_from([
            b'{"draftOrderId": NaN}', b'{"orderId": Infinity}', b"-Infinity", b"NaN", b"\xff\xfe{}",
            b'{"orderId": "\xc3\x28"}', b'{"orderId": "\\ud800"}', b"\xef\xbb\xbf{}", b"", b"null", b"[]",
            b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
            b'{"orderId": 1e99999}', b'{"draftOrderId": "x", "order": {"items": [{"quantity": 1e400}]}}',
            b'{"orderId": "L-1001", "orderId": 7}', b'{"orderId": "L-1001"}garbage',
        ]),
        st.text(max_size=60).map(lambda s: s.encode("utf-8", "surrogatepass")),
    ))
