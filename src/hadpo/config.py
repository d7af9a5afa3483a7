"""One way to load a config: YAML, then `key=value` overrides, into a typed model, with one error format.

Every config of hadpo (the pair build, training, the scene world, its pretraining, the demo) goes through
`load_config` or `validate_config`. Sections are pydantic models deriving from `Config`: unknown keys are errors,
kinds are `Literal`s, values are checked before any work starts. Every problem is one line,
"SOURCE: key.path: problem", raised as `ConfigError` (a ValueError: the CLI prints it as `hadpo: error: ...`);
an unknown key is named with the closest known one ("did you mean 'beta'?").

Training's `HADPOConfig` is the one exception to pydantic: it must be a `transformers.TrainingArguments`
subclass (a dataclass) for the Trainer to take it. The same loader reads it: unknown keys fail the same way, YAML
scalars are converted to the declared field types, and what its `__post_init__` rejects is reported with the
source in front.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

C = TypeVar("C")


class ConfigError(ValueError):
    """A config that cannot work; the message is one line naming the source and the key."""


class Config(BaseModel):
    """Base of every config section: unknown keys are errors (a typo must never pass silently)."""

    # NaN and infinity are refused too: `beta: .nan` would pass every range check and train on NaN.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def config_error(source: str, key_path: Sequence[str | int], problem: str) -> ConfigError:
    """The one error format of configs: "SOURCE: key.path: problem" (no key path for the whole config)."""
    where = ".".join(str(key) for key in key_path)
    return ConfigError(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")


def unknown_key(name: str, known: Iterable[str], value: Any, nested: bool) -> str:
    """ "unknown key 'x' (did you mean 'y'?)": a mapping value is a section, a key at the top a config key."""
    known = sorted(known)
    what = "section" if isinstance(value, dict) else "key" if nested else "config key"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        hint = f" (did you mean '{close[0]}'?)"
    else:
        hint = f" (known: {', '.join(known)})" if len(known) <= 12 else ""
    return f"unknown {what} '{name}'{hint}"


# --- reading ------------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.1 without its base-60 numbers: `data_mix: 1:3` is the string "1:3", not the integer 63 (a silent trap
    that quoting cannot avoid on a command line, where the shell removes the quotes)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if not tag.endswith((":int", ":float"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# YAML 1.1's int and float patterns (PyYAML's resolver) less their base-60 alternatives
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def load_yaml(text: str):
    """YAML text as data, read by the loader every hadpo config goes through."""
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file (an empty file is an empty mapping); a file that is not YAML is one line naming
    the line it breaks on."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a YAML config file")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{where}: invalid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (is it a YAML config?)") from None
    if not isinstance(data, dict):
        raise config_error(str(path), (), f"a config must be a YAML mapping, not {type(data).__name__}")
    return data


def parse_overrides(items: Iterable[str]) -> dict:
    """`key=value` strings as a mapping; values are YAML scalars and dotted keys reach into sections
    ("judge.kind=llm" -> {"judge": {"kind": "llm"}})."""
    values: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' is not key=value")
        *sections, leaf = key.strip().split(".")
        node = values
        for section in sections:
            node = node.setdefault(section, {})
        try:
            node[leaf] = load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"override '{item}': the value is not a YAML scalar") from None
    return values


def merge(base: dict, *updates: dict) -> dict:
    """`base` with each update applied in turn; sections (mappings) merge key by key, other values replace."""
    merged = dict(base)
    for update in updates:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                value = merge(merged[key], value)
            merged[key] = value
    return merged


# --- validating ---------------------------------------------------------------------------------------------


def load_config(
    model: type[C],
    path: str | Path | None = None,
    *updates: dict | Sequence[str],
    source: str | None = None,
    section: str | None = None,
) -> C:
    """`model` from a YAML file (None: defaults only; with `section`, that section of the file when it has one),
    then each update in turn: a mapping, or a list of `key=value` strings."""
    source = source or (str(path) if path is not None else "config")
    data = read_yaml(path) if path is not None else {}
    if section is not None and isinstance(data.get(section), dict):
        data = data[section]
    for update in updates:
        data = merge(data, update if isinstance(update, dict) else parse_overrides(update))
    return validate_config(model, data, source)


def validate_config(model: type[C], data: dict, source: str) -> C:
    """`model` built from `data`, or one ConfigError line naming `source` and the key."""
    if not isinstance(data, dict):
        raise config_error(source, (), f"expected a mapping, got {type(data).__name__}")
    if dataclasses.is_dataclass(model):
        return _validate_dataclass(model, data, source)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _pydantic_error(model, error, source) from None


def _pydantic_error(model: type[BaseModel], error: ValidationError, source: str) -> ConfigError:
    first = error.errors()[0]
    location = first["loc"]
    if first["type"] == "extra_forbidden":
        parent = _model_at(model, location[:-1])
        known = parent.model_fields if parent is not None else ()
        problem = unknown_key(str(location[-1]), known, first["input"], nested=len(location) > 1)
        return config_error(source, location[:-1], problem)
    problem = first["msg"].removeprefix("Value error, ")
    if first["type"] == "literal_error":
        problem += f", not {first['input']!r}"
    return config_error(source, location, problem)


def _model_at(model: type[BaseModel] | None, location: Sequence[str | int]) -> type[BaseModel] | None:
    """The config section a key path leads to (list indices pass through to the item model)."""
    for key in location:
        if model is None:
            return None
        if isinstance(key, str):
            field = model.model_fields.get(key)
            model = _section_model(field.annotation) if field is not None else None
    return model


def _section_model(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(_section_model, typing.get_args(annotation))), None)


def _validate_dataclass(model: type[C], data: dict, source: str) -> C:
    known = {field.name: str(field.type) for field in dataclasses.fields(model) if field.init}
    for key, value in data.items():
        if key not in known:
            raise config_error(source, (), unknown_key(key, known, value, nested=False))
    try:
        return model(**{key: _coerce(value, known[key]) for key, value in data.items()})
    except ValueError as error:  # what __post_init__ rejects; its message names the key
        raise config_error(source, (), str(error)) from None


def _coerce(value, annotation: str):
    # YAML 1.1 reads "2e-6" as a string and "no" as False; values are converted to the field's declared type.
    if isinstance(value, bool) and "bool" not in annotation:
        return "yes" if value else "no"
    if isinstance(value, int | float) and "str" in annotation and not ("int" in annotation or "float" in annotation):
        return str(value)
    if isinstance(value, str) and "str" not in annotation:
        for kind, convert in (("float", float), ("int", int)):
            if kind in annotation:
                try:
                    return convert(value)
                except ValueError:
                    pass
    return value


# --- saving -------------------------------------------------------------------------------------------------


def config_values(config) -> dict:
    """Every value of a config, defaults included, as plain YAML-able data."""
    if isinstance(config, BaseModel):
        return config.model_dump(mode="json")
    known = {field.name for field in dataclasses.fields(config) if field.init}
    return {key: value for key, value in config.to_dict().items() if key in known}


def save_config(config, path: str | Path, sort_keys: bool = False) -> Path:
    """The resolved config beside a run's outputs, loadable again with `load_config`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_values(config), sort_keys=sort_keys), encoding="utf-8")
    return path
