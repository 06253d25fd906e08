"""The error tree: one status per class, and the tree drawn in its docstring is the tree in the code."""
from __future__ import annotations

import inspect
import re

import pytest

from bridge.core import errors
from bridge.core.errors import BridgeError, UpstreamAuthError, UpstreamUnreachable

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, BridgeError)]
# "    │   ├── InFlight              409   yes         same draftOrderId ..."
ROW = re.compile(r"^[ │├└─]*(?P<name>[A-Z]\w+)\s+(?P<status>\d{3}|4xx|-)(?:\s+(?P<retry>yes|no)\b)?"
                 r"(?:\s+(?P<applied>no|maybe)\b)?")


def drawn() -> dict[str, dict]:
    """The docstring's rows by class name, with the parent each row hangs from."""
    rows: dict[str, dict] = {}
    parents: list[tuple[int, str]] = []
    for line in errors.__doc__.splitlines():
        match = ROW.match(line)
        if not match:
            continue
        depth = line.index(match["name"])
        while parents and parents[-1][0] >= depth:
            parents.pop()
        rows[match["name"]] = {**match.groupdict(), "parent": parents[-1][1] if parents else None}
        parents.append((depth, match["name"]))
    return rows


def test_the_drawn_tree_names_every_class_once():
    assert sorted(drawn()) == sorted(c.__name__ for c in CLASSES)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_each_class_is_drawn_where_it_is_and_as_it_behaves(cls):
    row = drawn()[cls.__name__]
    parent = cls.__bases__[0]
    assert row["parent"] == (None if cls is BridgeError else parent.__name__)
    if row["status"].isdigit():
        assert cls.status == int(row["status"])
    # A blank cell inherits; a filled one is the class's own answer.
    if row["retry"]:
        assert cls.retryable is (row["retry"] == "yes")
    if row["applied"]:
        assert cls.maybe_applied is (row["applied"] == "maybe")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_status_belongs_to_the_class_never_to_an_instance(cls):
    assert "status" not in inspect.signature(cls.__init__).parameters
    assert "status" not in vars(cls("what happened"))


@pytest.mark.parametrize("cls", [c for c in CLASSES if c.retryable], ids=lambda c: c.__name__)
def test_every_retryable_error_says_when_to_retry(cls):
    assert cls.retry_after is not None and cls.retry_after >= 1


def test_an_error_that_is_not_retryable_takes_no_retry_after():
    with pytest.raises(TypeError):
        UpstreamAuthError("refused", retry_after=5)
    assert UpstreamUnreachable("refused", retry_after=12).retry_after == 12
    assert UpstreamUnreachable("refused").retry_after == 5
