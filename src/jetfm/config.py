"""Dataclass configs: YAML presets, dotted ``key.sub=value`` overrides, and the resolved config
written next to every run's outputs.

A config is a (nested) dataclass. ``load_config(Cls, "configs/small.yaml", ["model.width=64"])``
builds it from defaults, then the YAML, then the overrides; unknown keys are errors.
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from typing import Any, Sequence, TypeVar

import yaml

from jetfm.errors import InputError

T = TypeVar("T")

#: presets shipped with the package (configs/*.yaml at the repository root mirror them)
PRESET_DIR = os.path.join(os.path.dirname(__file__), "configs")


def _coerce(value: Any, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ) and isinstance(value, dict):
        return from_dict(typ, value)
    if typ is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if typ in (int, float, str) and not isinstance(value, typ):
        return typ(value)
    if origin in (list, tuple) and isinstance(value, str):
        items = [v for v in value.split(",") if v]
        (inner, *_) = typing.get_args(typ) or (str,)
        return origin(_coerce(v, inner) for v in items)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0]) if len(args) == 1 else value
    return value


def from_dict(cls: type[T], data: dict) -> T:
    """Build dataclass ``cls`` from a (nested) dict; unknown keys raise InputError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise InputError(f"unknown config key(s) {sorted(unknown)} for {cls.__name__}")
    kw = {}
    for k, v in data.items():
        try:
            kw[k] = _coerce(v, hints[k])
        except (TypeError, ValueError) as err:
            raise InputError(f"config key '{k}': {err}") from err
    base = cls()
    return dataclasses.replace(base, **kw) if kw else base


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply ``a.b=value`` strings (values parsed as YAML scalars) to a nested dict."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override '{item}' is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InputError(f"override '{item}': '{p}' is not a section")
        node[leaf] = yaml.safe_load(raw) if raw else ""
    return data


def resolve_preset(name_or_path: str) -> str:
    """A preset name (``small``) or a YAML path -> the YAML path."""
    if os.path.exists(name_or_path):
        return name_or_path
    for folder in (PRESET_DIR, os.path.join(os.getcwd(), "configs")):
        cand = os.path.join(folder, f"{name_or_path}.yaml")
        if os.path.exists(cand):
            return cand
    raise InputError(f"no such preset or config file '{name_or_path}'")


def load_yaml(path: str) -> dict:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        raise InputError(f"invalid YAML ({err.__class__.__name__})", path) from err
    if not isinstance(data, dict):
        raise InputError("a config file must hold a mapping", path)
    return data


def load_config(cls: type[T], preset: str | None = None, overrides: Sequence[str] = (),
                section: str | None = None) -> T:
    """Defaults <- preset YAML (optionally one ``section`` of it) <- dotted overrides."""
    data: dict = {}
    if preset:
        data = load_yaml(resolve_preset(preset))
        if section is not None:
            data = data.get(section, {}) or {}
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)


def save_config(cfg: Any, folder: str, name: str = "config.yaml") -> str:
    """Write the resolved config beside a run's outputs."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as fh:
        yaml.safe_dump(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, fh, sort_keys=False)
    return path
