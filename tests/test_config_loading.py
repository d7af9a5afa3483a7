"""hadpo.config: one loader (YAML, then key=value overrides or mappings) and one error format for every config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
from pydantic import Field

from hadpo.config import (
    Config,
    ConfigError,
    load_config,
    merge,
    parse_overrides,
    save_config,
    validate_config,
)


class Inner(Config):
    kind: Literal["a", "b"] = "a"
    size: int = Field(1, ge=1)


class Outer(Config):
    name: str = "x"
    inner: Inner = Field(default_factory=Inner)
    items: list[Inner] = []


def test_overrides_are_yaml_scalars_and_dotted_keys_reach_into_sections():
    assert parse_overrides(["name=y", "inner.size=3", "inner.kind=b", "flag=no", "empty="]) == {
        "name": "y",
        "inner": {"size": 3, "kind": "b"},
        "flag": False,
        "empty": None,
    }
    with pytest.raises(ConfigError, match="override 'name' is not key=value"):
        parse_overrides(["name"])


def test_sections_merge_key_by_key_and_later_updates_win():
    base = {"name": "x", "inner": {"kind": "a", "size": 1}}
    assert merge(base, {"inner": {"size": 2}}, {"name": "z"}) == {"name": "z", "inner": {"kind": "a", "size": 2}}
    assert base == {"name": "x", "inner": {"kind": "a", "size": 1}}  # not modified


def test_file_then_overrides_then_mappings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: file\ninner:\n  size: 2\n")
    config = load_config(Outer, path, ["inner.kind=b"], {"name": "mapping"})
    assert (config.name, config.inner.kind, config.inner.size) == ("mapping", "b", 2)
    assert load_config(Outer).inner.size == 1  # no file: the defaults


@pytest.mark.parametrize(
    "data, message",
    [
        ({"nmae": "y"}, "c.yaml: unknown config key 'nmae' (did you mean 'name'?)"),
        ({"innr": {}}, "c.yaml: unknown section 'innr' (did you mean 'inner'?)"),
        ({"inner": {"sise": 2}}, "c.yaml: inner: unknown key 'sise' (did you mean 'size'?)"),
        ({"items": [{"kind": "a", "zzz": 1}]}, "c.yaml: items.0: unknown key 'zzz' (known: kind, size)"),
        ({"inner": {"kind": "c"}}, "c.yaml: inner.kind: Input should be 'a' or 'b', not 'c'"),
        ({"inner": {"size": 0}}, "c.yaml: inner.size: Input should be greater than or equal to 1"),
    ],
)
def test_every_problem_is_one_line_naming_source_and_key(data, message):
    with pytest.raises(ConfigError) as error:
        validate_config(Outer, data, "c.yaml")
    assert str(error.value) == message


@dataclass
class Plain:
    rate: float = 0.1
    label: str = "a"

    def __post_init__(self):
        if self.rate <= 0:
            raise ValueError("config key 'rate' must be > 0")


def test_a_dataclass_config_is_read_the_same_way(tmp_path):
    assert validate_config(Plain, {"rate": "2e-6", "label": 5}, "c.yaml") == Plain(rate=2e-6, label="5")
    with pytest.raises(ConfigError, match=r"^c.yaml: unknown config key 'rat' \(did you mean 'rate'\?\)$"):
        validate_config(Plain, {"rat": 1.0}, "c.yaml")
    with pytest.raises(ConfigError, match=r"^c.yaml: config key 'rate' must be > 0$"):
        validate_config(Plain, {"rate": 0}, "c.yaml")


def test_the_resolved_config_loads_again(tmp_path):
    config = load_config(Outer, None, ["inner.kind=b", "name=z"])
    again = load_config(Outer, save_config(config, tmp_path / "resolved.yaml"))
    assert again == config


def test_a_colon_pair_is_a_string_not_yaml_1_1s_base_60_number(tmp_path):
    """`data_mix=1:3` on a command line (where the shell drops any quotes) or unquoted in a file: YAML 1.1 reads
    it as 63; hadpo's loader keeps it the string it is, and every other number as YAML reads it."""
    from hadpo.config import load_yaml, parse_overrides

    values = parse_overrides(["data_mix=1:3", "a=12", "b=0x1f", "c=2.0e-4", "e=12:30:00"])
    assert values == {"data_mix": "1:3", "a": 12, "b": 31, "c": 0.0002, "e": "12:30:00"}
    assert load_yaml("data_mix: 2:1\nsteps: 1_000\nlr: 3.5") == {"data_mix": "2:1", "steps": 1000, "lr": 3.5}
