"""The core names no platform: outside the composition root, bridge/ neither names a platform nor imports adapters/."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import bridge
from bridge.bootstrap import PLATFORMS

BRIDGE = Path(bridge.__file__).parent
ROOT = BRIDGE / "bootstrap.py"  # the one place that may: its registry names every platform
# `local` is also an ordinary word of the core (localhost, LocalQuota); every other registered name is not.
NAMES = re.compile("|".join(re.escape(name) for name in PLATFORMS if name != "local"), re.IGNORECASE)


def core_files() -> list[Path]:
    return sorted(path for path in BRIDGE.rglob("*.py") if path != ROOT)


def test_the_check_reads_the_whole_core_and_knows_the_names():
    assert {"config.py", "platform.py", "app.py", "client.py", "cli.py"} <= {path.name for path in core_files()}
    assert NAMES.search("BigCommerceConfig") and NAMES.search('"bitbybit"')


def test_no_core_file_names_a_platform():
    """No identifier, string, docstring or comment in bridge/ but the composition root says a platform's name."""
    named = [f"{path.relative_to(BRIDGE.parent)}:{number}: {line.strip()}"
             for path in core_files()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if NAMES.search(line)]
    assert not named, "the core names a platform:\n" + "\n".join(named)


def test_only_the_composition_root_imports_adapters():
    """Dependencies point from adapters/ to bridge/; bridge/ reaches adapters/ through the registry only."""
    importing = []
    for path in core_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            importing += [f"{path.relative_to(BRIDGE.parent)}: {m}" for m in modules if m.split(".")[0] == "adapters"]
    assert not importing, "the core imports adapters:\n" + "\n".join(importing)


def test_reading_every_descriptor_imports_no_platform_client():
    """The master parses the config, so every platform's descriptor is read there: its clients wait for the workers."""
    code = ("import sys; from bridge.bootstrap import parse_config; "
            "parse_config({'platform': 'bigcommerce', 'bigcommerce': {'store_hash': 'a', 'access_token': 't'}}, {}); "
            "print(sorted(m for m in ('urllib3', 'requests', 'redis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
