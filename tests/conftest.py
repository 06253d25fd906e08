"""Fixtures shared by every test level."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_PLACE_ORDER = json.loads((PROJECT_ROOT / "examples" / "place-order.json").read_text(encoding="utf-8"))


@pytest.fixture
def project_root() -> Path:
    """The repository root."""
    return PROJECT_ROOT


@pytest.fixture
def place_order_body() -> dict:
    """A fresh copy of examples/place-order.json, free to mutate."""
    return copy.deepcopy(_PLACE_ORDER)
