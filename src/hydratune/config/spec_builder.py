"""The Hydra boundary: a composed DictConfig (or plain dict) becomes a frozen RunSpec.

This is the only module that reads untyped configuration. It checks every key
against the dataclasses in `spec.py` (unknown keys get a "did you mean"), every
value against its annotated type and range, gathers all problems and raises them
together as one `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Mapping, Union, get_args, get_origin

from hydratune.config.problems import ConfigError, Problem, closest, did_you_mean
from hydratune.config.spec import KEY_ALIASES, RunSpec


def build_run_spec(cfg: Any, *, output_dir: str | None = None) -> RunSpec:
    """Turn a composed config into a RunSpec, or raise ConfigError listing every problem."""
    data = _to_plain(cfg)
    if not isinstance(data, Mapping):
        raise ConfigError([Problem("<root>", "the configuration must be a mapping")])
    data = dict(data)
    data.pop("hydra", None)  # Hydra's own node, present when the config is composed with return_hydra_config
    if output_dir is not None:
        data.setdefault("run", {})
        data["run"] = {**data["run"], "output_dir": str(output_dir)}
    problems: list[Problem] = []
    spec = _build_dataclass(RunSpec, data, "", problems)
    if problems:
        raise ConfigError(problems)
    return spec


def _to_plain(cfg: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return cfg
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


# --------------------------------------------------------------- schema paths
@dataclasses.dataclass(frozen=True)
class SchemaKey:
    hint: Any  # the resolved type annotation
    field: dataclasses.Field

    @property
    def free_mapping(self) -> bool:
        """A dict field without a registry: any key below it is the user's (`model.config_overrides.x`)."""
        return get_origin(self.hint) is dict and "registry" not in self.field.metadata


def schema_keys(cls: type = RunSpec, prefix: str = "") -> dict[str, SchemaKey]:
    """Every dotted key of the schema (sections included), each with its type and field."""
    keys: dict[str, SchemaKey] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        keys[path] = SchemaKey(hints[f.name], f)
        inner = _dataclass_in(hints[f.name])
        if inner is not None:
            keys.update(schema_keys(inner, path + "."))
        for name, task_cls in _registry(f).items():
            keys[f"{path}.{name}"] = SchemaKey(task_cls, f)
            keys.update(schema_keys(task_cls, f"{path}.{name}."))
    return keys


def check_key(path: str) -> Problem | None:
    """A Problem when a dotted key is not in the schema (with a suggestion), else None."""
    path = KEY_ALIASES.get(path, path)
    keys = schema_keys()
    if path in keys:
        return None
    parts = path.split(".")
    if any(keys.get(".".join(parts[:i])) and keys[".".join(parts[:i])].free_mapping for i in range(1, len(parts))):
        return None
    return Problem(path, "unknown key", _suggest(path, keys) or "see docs/configuration.md for every key")


def _suggest(path: str, keys: Mapping[str, SchemaKey]) -> str:
    """A close sibling (`optim.lerning_rate` -> `optim.learning_rate`), else the same name elsewhere."""
    parent, _, leaf = path.rpartition(".")
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    by_leaf = {k.rpartition(".")[2]: k for k in siblings}
    match = closest(leaf, by_leaf)
    if match:
        return f"did you mean `{by_leaf[match]}`?"
    elsewhere = [k for k in keys if k.rpartition(".")[2] == leaf]
    return f"did you mean `{elsewhere[0]}`?" if elsewhere else ""


def _registry(f: dataclasses.Field) -> dict[str, type]:
    """A field's registry of named option classes (given as a function, resolved late)."""
    registry = f.metadata.get("registry", {})
    return registry() if callable(registry) else registry


def _dataclass_in(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


# ------------------------------------------------------------------ building
def _build_dataclass(cls: type, data: Any, prefix: str, problems: list[Problem]) -> Any:
    where = prefix.rstrip(".") or "<root>"
    if not isinstance(data, Mapping):
        problems.append(Problem(where, f"expected a mapping of {cls.__name__} keys, got {data!r}"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    data = dict(data)
    for alias, target in KEY_ALIASES.items():
        a_parent, _, a_leaf = alias.rpartition(".")
        t_parent, _, t_leaf = target.rpartition(".")
        if a_parent + "." == prefix and t_parent + "." == prefix and a_leaf in data:
            if t_leaf in data and data[t_leaf] != data[a_leaf]:
                problems.append(Problem(alias, f"both `{alias}` and `{target}` are set", f"set only `{target}`"))
            data[t_leaf] = data.pop(a_leaf)
    for key in data:
        if key not in fields:
            problem = check_key(prefix + str(key))
            problems.append(problem or Problem(prefix + str(key), "unknown key"))
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if name in data:
            values[name] = _convert(hints[name], data[name], key, f, problems)
            _check_range(f, values[name], key, problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            inner = _dataclass_in(hints[name])
            if inner is not None and all(_has_default(x) for x in dataclasses.fields(inner)):
                values[name] = inner()
            else:
                problems.append(Problem(key, "missing required key", f"set `{key}=...` or pick a config group"))
    if any(v is None and name in data and data[name] is not None for name, v in values.items()):
        return None
    try:
        return cls(**values)
    except TypeError as exc:  # a required field was reported missing above
        if not problems:
            problems.append(Problem(where, str(exc)))
        return None


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING  # type: ignore[misc]


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _convert(tp: Any, value: Any, key: str, f: dataclasses.Field, problems: list[Problem]) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key, f, problems)
    if value is None:
        problems.append(Problem(key, "must not be null", "remove the override to keep the default"))
        return None
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, key + ".", problems)
    if origin is Literal:
        if value in args and type(value) is type(args[args.index(value)]):
            return value
        if isinstance(value, str) and value.lower() in [str(a).lower() for a in args]:
            return next(a for a in args if str(a).lower() == value.lower())
        choices = ", ".join(str(a) for a in args)
        hint = did_you_mean(str(value), [str(a) for a in args])
        problems.append(Problem(key, f"{value!r} is not one of: {choices}", hint or f"pick one of: {choices}"))
        return None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            if isinstance(value, str) and args and args[0] is str:
                value = [value]  # a single name where a list is expected
            else:
                problems.append(Problem(key, f"expected a list, got {value!r}", f"write `{key}=[...]`"))
                return None
        elem = args[0]
        items = [_convert(elem, v, f"{key}[{i}]", f, problems) for i, v in enumerate(value)]
        return tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.append(Problem(key, f"expected a mapping, got {value!r}", f"write `{key}={{name: value}}`"))
            return None
        registry = _registry(f) if "registry" in f.metadata else None
        if registry is None:
            return {str(k): v for k, v in value.items()}
        out = {}
        for name, options in value.items():
            if name not in registry:
                hint = did_you_mean(str(name), registry) or f"known: {', '.join(sorted(registry))}"
                problems.append(Problem(f"{key}.{name}", "unknown name", hint))
                continue
            out[name] = _build_dataclass(registry[name], options or {}, f"{key}.{name}.", problems)
        return out
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in _TYPE_NAMES:
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        problems.append(
            Problem(key, f"expected {_TYPE_NAMES[tp]}, got {value!r}", f"write e.g. `{key}={_example(tp)}`")
        )
        return None
    raise TypeError(f"spec_builder cannot convert the annotation {tp!r} of {key}")  # a bug in spec.py, not user input


def _example(tp: type) -> str:
    return {bool: "true", int: "8", float: "0.1", str: "name"}[tp]


def _check_range(f: dataclasses.Field, value: Any, key: str, problems: list[Problem]) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    meta = f.metadata
    hint = meta.get("hint", "")
    for name, op, words in (
        ("ge", float.__ge__, ">="),
        ("gt", float.__gt__, ">"),
        ("le", float.__le__, "<="),
        ("lt", float.__lt__, "<"),
    ):
        if name in meta and not op(float(value), float(meta[name])):
            problems.append(
                Problem(f"{key}={value}", f"must be {words} {meta[name]}", hint or f"use a value {words} {meta[name]}")
            )
