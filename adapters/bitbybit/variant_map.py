"""The optional map from Bik's variantId to bitbybit's productVariantId, read once from CSV or YAML.

CSV: two columns, `bik_variant_id,bitbybit_variant_id`; the header row, blank lines and `#` comments are
optional. YAML: one mapping `{bik variant id: bitbybit variant id}`. Ids are opaque strings either way.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from bridge.config import load_yaml, yaml_problem
from bridge.core.errors import ConfigError

KEY = "bitbybit.variant_map"
HEADERS = frozenset({"bik_variant_id", "bik", "variantid", "variant_id", "bik_variantid"})


class VariantMap:
    """Bik variantId → bitbybit productVariantId, and back for reading orders."""

    def __init__(self, pairs: dict[str, str], source: str = ""):
        self.source = source
        self._to_bitbybit = dict(pairs)
        # Several Bik variants may share one bitbybit variant: reading back names the first.
        self._to_bik: dict[str, str] = {}
        for bik_id, bbb_id in pairs.items():
            self._to_bik.setdefault(bbb_id, bik_id)

    def __len__(self) -> int:
        return len(self._to_bitbybit)

    def bitbybit_id(self, bik_variant_id: Any) -> Optional[str]:
        """The bitbybit variant for a Bik variant, or None when the map has none."""
        return self._to_bitbybit.get(str(bik_variant_id).strip())

    def bik_id(self, bitbybit_variant_id: str) -> Optional[str]:
        """The Bik variant a bitbybit variant came from, or None."""
        return self._to_bik.get(bitbybit_variant_id)


def _collect(rows: Iterable[tuple[str, Any, Any]], source: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for where, raw_bik, raw_bbb in rows:
        if isinstance(raw_bik, float) or isinstance(raw_bbb, float):
            # A float has already lost the digits of a long id.
            raise ConfigError(f"{KEY}: {source} {where}: write ids as text or whole numbers, not decimals")
        bik_id, bbb_id = _id(raw_bik), _id(raw_bbb)
        if not bik_id or not bbb_id:
            raise ConfigError(f"{KEY}: {source} {where}: both a Bik and a bitbybit variant id are needed")
        if pairs.get(bik_id, bbb_id) != bbb_id:
            raise ConfigError(f"{KEY}: {source} {where}: Bik variant {bik_id} is mapped twice "
                              f"({pairs[bik_id]} and {bbb_id})")
        pairs[bik_id] = bbb_id
    return pairs


def _id(value: Any) -> str:
    if isinstance(value, (bool, dict, list)) or value is None:
        return ""
    return str(value).strip()


def parse_csv(text: str, source: str = "csv") -> VariantMap:
    """A map from CSV text."""
    rows = []
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not rows and cells[0].lower().replace(" ", "_") in HEADERS:
            continue
        if len(cells) < 2 or any(cells[2:]):
            raise ConfigError(f"{KEY}: {source} line {line}: expected two columns, "
                              "bik_variant_id,bitbybit_variant_id")
        rows.append((f"line {line}", cells[0], cells[1]))
    return VariantMap(_collect(rows, source), source)


def parse_yaml(text: str, source: str = "yaml") -> VariantMap:
    """A map from YAML text holding one mapping."""
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{KEY}: {source} is not valid YAML{yaml_problem(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{KEY}: {source} must hold one mapping of Bik variant id: bitbybit variant id")
    rows = [(f"entry {index}", key, value) for index, (key, value) in enumerate(data.items(), start=1)]
    return VariantMap(_collect(rows, source), source)


def load_variant_map(path: str) -> VariantMap:
    """Read the file `bitbybit.variant_map` names; its extension says CSV or YAML."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        raise ConfigError(f"{KEY}: {path} must end in .csv, .yaml or .yml")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{KEY}: cannot read {path}: {exc.strerror}") from None
    return parse_csv(text, file.name) if suffix == ".csv" else parse_yaml(text, file.name)


def check_variant_map(settings: Any) -> None:
    """Read the map the settings name, as the adapter will at start: a ConfigError says what is wrong with it."""
    if settings.variant_map:
        load_variant_map(settings.variant_map)
