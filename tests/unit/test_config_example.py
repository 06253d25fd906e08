"""config.example.yaml documents every key the config accepts, and loads as it is.

The example is valid YAML whose active keys load with `load_config`; optional keys are shown commented out as
`# key: value`, at the indentation they would have. These tests read both: the active file, and the file with
every commented-out key line uncommented, which must be a valid config too.
"""
from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from bridge.bootstrap import config_class, load_config, parse_config, platforms
from bridge.config import PLACE_ORDER_TARGET_SECONDS, Config
from bridge.core.errors import ConfigError

# `# key: value` or `# key:` (a plain or quoted key, then a space or the line's end); prose never starts that way.
COMMENTED_KEY = re.compile(r"^(?P<indent>[ ]*)# (?P<line>[ ]*(?:[A-Za-z_][\w/.-]*|\"[^\"]+\"|'[^']+'):(?:[ ].*)?)$")
REQUIRED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # `${VAR}`: no default, so it must be set


@pytest.fixture
def example(project_root) -> Path:
    return project_root / "config.example.yaml"


def required_vars(text: str) -> dict[str, str]:
    """A value for every `${VAR}` without a default in the YAML's values; letters only, to fit any pattern."""
    names = REQUIRED_VAR.findall(" ".join(_strings(yaml.safe_load(text))))
    return {name: "example" + name.replace("_", "").lower() for name in names}


def _strings(node: typing.Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [node] if isinstance(node, str) else []


def uncommented(text: str) -> str:
    """The example with every commented-out key line made active; prose comments stay comments."""
    lines = []
    for line in text.splitlines():
        match = COMMENTED_KEY.match(line)
        lines.append(match["indent"] + match["line"] if match else line)
    return "\n".join(lines) + "\n"


def parse_uncommented(text: str) -> typing.Any:
    try:
        return yaml.safe_load(uncommented(text))
    except yaml.YAMLError as exc:
        pytest.fail(f"with its `# key: value` lines uncommented the example is not YAML (a prose comment that "
                    f"starts with `word: ` reads as a key; reword it): {exc}")


def _without_none(annotation: typing.Any) -> typing.Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kept = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return kept[0] if len(kept) == 1 else annotation
    return annotation


def _is_model(annotation: typing.Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def missing_keys(model: type[BaseModel], shown: typing.Any, prefix: str = "") -> list[str]:
    """The dotted keys `model` accepts that `shown` (a parsed YAML mapping) lacks, recursively."""
    # A section (a nested model, optional or not) must show each of its keys. A dict-valued key must be shown;
    # when its keys are a fixed set (a Literal) each must be shown, and when its values are sections the
    # entries shown must, together, show every key of that section (`auth_overrides.*.scheme`). A dict with
    # free keys (bitbybit.status_map) needs only its own key.
    shown = shown if isinstance(shown, dict) else {}
    missing = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in shown:
            missing.append(prefix + key)
            continue
        missing += _missing_in_value(field.annotation, shown[key], prefix + key)
    return missing


def _missing_in_value(annotation: typing.Any, value: typing.Any, path: str) -> list[str]:
    annotation = _without_none(annotation)
    if _is_model(annotation):
        return missing_keys(annotation, value, path + ".")
    if typing.get_origin(annotation) is not dict:
        return []
    key_type, value_type = typing.get_args(annotation)
    entries = value if isinstance(value, dict) else {}
    missing = []
    if typing.get_origin(key_type) is typing.Literal:
        missing += [f"{path}.{key}" for key in typing.get_args(key_type) if key not in entries]
    value_type = _without_none(value_type)
    if _is_model(value_type):
        together: dict = {}
        for entry in entries.values():
            together.update(entry if isinstance(entry, dict) else {})
        missing += missing_keys(value_type, together, path + ".*.")
    return missing


def missing_in_config(shown: typing.Any) -> list[str]:
    """The keys of the core's sections, and of each registered platform's section under its name, `shown` lacks."""
    missing = missing_keys(Config, shown)
    sections = shown if isinstance(shown, dict) else {}
    for name, platform in platforms().items():
        missing += missing_keys(platform.settings, sections[name], name + ".") if name in sections else [name]
    return missing


def test_the_walk_covers_the_config_the_registry_makes():
    """The core's sections and the registered platforms' sections are all the keys the loaded Config has."""
    walked = set(Config.model_fields) | set(platforms())
    assert walked == set(config_class().model_fields)


def test_the_example_shows_every_key_the_config_accepts(example):
    """Every key of Config, of its sections and of each registered platform's section appears in the example."""
    missing = missing_in_config(parse_uncommented(example.read_text()))
    assert not missing, f"config.example.yaml lacks {', '.join(missing)}"


def test_the_example_loads_as_it_is(example):
    """The active example is a valid config once the variables it requires are set."""
    text = example.read_text()
    environ = required_vars(text)
    config = load_config(str(example), environ=environ)
    assert config.platform == "bigcommerce"
    assert config.bigcommerce.store_hash == environ["BIGCOMMERCE_STORE_HASH"]
    assert config.idempotency.sqlite_path == str(Path.cwd() / "bik-bridge.db")
    assert config.place_order_worst_case_seconds() < PLACE_ORDER_TARGET_SECONDS


def test_the_example_with_every_commented_key_uncommented_is_valid(example, tmp_path):
    """Each optional key is shown with a value the config accepts, so uncommenting it is safe."""
    text = uncommented(example.read_text())
    assert text != example.read_text()
    config = parse_config(parse_uncommented(example.read_text()), required_vars(text), base_dir=tmp_path)
    assert config.bitbybit is not None and config.bitbybit.variant_map == str(tmp_path / "variants.csv")
    assert set(config.auth_overrides) == {"getOrder", "placeOrder"}


def test_the_example_names_every_unset_variable_at_once(example):
    """Without its environment the example fails naming each variable it requires, not only the first."""
    with pytest.raises(ConfigError) as raised:
        load_config(str(example), environ={})
    names = required_vars(example.read_text())
    assert len(names) >= 3
    for name in names:
        assert f"environment variable {name} is not set" in raised.value.message


def test_a_key_the_example_lacks_is_named():
    """The walk names a missing key of a section, of a fixed-key dict and of a dict's section values."""
    shown = yaml.safe_load(uncommented(
        "server: {}\n"
        "# auth_overrides:\n"
        "#   getOrder: {scheme: basic}\n"
        "bigcommerce:\n"
        "  # status_map: {ORDERED: [0]}\n"))
    missing = missing_in_config(shown)
    assert "server.port" in missing and "platform" in missing
    assert "auth_overrides.placeOrder" in missing and "auth_overrides.getOrder" not in missing
    assert "auth_overrides.*.token" in missing and "auth_overrides.*.scheme" not in missing
    assert "bigcommerce.status_map.DELIVERED" in missing and "bigcommerce.status_map.ORDERED" not in missing
    assert "bigcommerce.store_hash" in missing and "bitbybit" in missing


def test_prose_comments_stay_comments():
    """Only `# key: value` lines are uncommented; sentences and commented values are not."""
    text = ("# For bitbybit, set `platform: bitbybit` here.\n"
            "#   redis://host:6379/0 is the URL form\n"
            "a:\n"
            "  # b: 1   # a comment\n"
            "  #   # continued\n")
    assert uncommented(text) == ("# For bitbybit, set `platform: bitbybit` here.\n"
                                 "#   redis://host:6379/0 is the URL form\n"
                                 "a:\n"
                                 "  b: 1   # a comment\n"
                                 "  #   # continued\n")
