"""Dataclass configs: YAML presets, dotted ``key.sub=value`` overrides, and the resolved config
written next to every run's outputs.

A config is a (nested) dataclass. ``load_config(Cls, "configs/small.yaml", ["model.width=64"])``
builds it from defaults, then the YAML, then the overrides; unknown keys are errors.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

import yaml

from jetfm.errors import InputError

T = TypeVar("T")

#: presets shipped with the package (configs/*.yaml at the repository root mirror them)
PRESET_DIR = os.path.join(os.path.dirname(__file__), "configs")


class ConfigValueError(ValueError):
    """An invalid value, raised by a config dataclass's ``validate()``; ``key`` names the field
    (relative to that dataclass: :func:`from_dict` adds the section path)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


def check_range(cfg: Any, key: str, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False, allow: tuple = ()) -> None:
    """Raise ConfigValueError unless ``cfg.<key>`` lies within the bounds (or is in ``allow``,
    e.g. ``(None,)`` or ``(-1,)`` for an "off" value)."""
    value = getattr(cfg, key)
    if any(value is a or (a is not None and value == a) for a in allow):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigValueError(key, f"must be a number, got {value!r}")
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high or value != value:
        parts = [f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else "",
                 f"{'<' if hi_open else '<='} {hi:g}" if hi is not None else ""]
        also = "".join(f" or {a}" for a in allow)
        raise ConfigValueError(key, f"must be {' and '.join(p for p in parts if p)}{also}, "
                                    f"got {value!r}")


def check_choice(cfg: Any, key: str, choices: Sequence) -> None:
    """Raise ConfigValueError unless ``cfg.<key>`` is one of ``choices``."""
    if getattr(cfg, key) not in choices:
        raise ConfigValueError(key, f"must be one of {list(choices)}, got {getattr(cfg, key)!r}")


#: bytes of memory per parameter when training: float32 weights, gradients and two Adam moments
TRAIN_BYTES_PER_PARAMETER = 16


def check_model_size(key: str, n_parameters: float) -> None:
    """Raise ConfigValueError naming ``key`` when a model of ``n_parameters`` could not be trained
    in this machine's memory (a typo such as an extra zero in a width), before anything is
    allocated."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf: no bound
        return
    if n_parameters * TRAIN_BYTES_PER_PARAMETER > memory:
        raise ConfigValueError(key, f"gives a model of about {n_parameters / 1e6:,.0f} M "
                                    f"parameters, more than this machine's {memory / 2**30:.0f} "
                                    "GiB of memory can train")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"not an integer: {value!r}")
        return int(value)
    return int(value)


def _coerce(value: Any, typ: Any, key: str = "") -> Any:
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ValueError(f"must be a section (a mapping of keys), got {value!r}")
        return from_dict(typ, value, prefix=key + ".")
    if typ is int:
        return _to_int(value)
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
    if origin is list and isinstance(value, (list, tuple)):
        (inner, *_) = typing.get_args(typ) or (Any,)
        return [v if inner is Any else _coerce(v, inner) for v in value]
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0]) if len(args) == 1 else value
    return value


def _floats(value: Any):
    """The floats in a field value (a float, or a list or tuple of numbers)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if isinstance(v, float)]


def validate(cfg: Any, prefix: str = "") -> None:
    """Check a config dataclass: every float finite, then its own ``validate()`` (ranges and
    rules between fields), if it has one. Raises InputError naming the dotted key."""
    for f in dataclasses.fields(cfg):
        if any(not math.isfinite(v) for v in _floats(getattr(cfg, f.name))):
            raise InputError(f"config key '{prefix}{f.name}': must be finite, got "
                             f"{getattr(cfg, f.name)!r}")
    check = getattr(cfg, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigValueError as err:
            raise InputError(f"config key '{prefix}{err.key}': {err}") from err


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict and :func:`validate` it; unknown keys and
    invalid values raise InputError naming the dotted key (``prefix`` is the section's path)."""
    if not isinstance(data, dict):
        raise InputError(f"config section '{prefix.rstrip('.') or cls.__name__}' must be a "
                         f"mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise InputError(f"unknown config key(s) {sorted(prefix + str(k) for k in unknown)} "
                         f"for {cls.__name__}")
    kw = {}
    for k, v in data.items():
        try:
            kw[k] = _coerce(v, hints[k], prefix + k)
        except (TypeError, ValueError) as err:
            raise InputError(f"config key '{prefix}{k}': {err}") from err
    base = cls()
    cfg = dataclasses.replace(base, **kw) if kw else base
    validate(cfg, prefix)
    return cfg


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
    if os.path.isdir(path):
        raise InputError("is a folder, expected a YAML config file", path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(f"not a YAML config file ({err.__class__.__name__})", path) from err
    except OSError as err:
        raise InputError(f"cannot read the config file ({err.strerror})", path) from err
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
