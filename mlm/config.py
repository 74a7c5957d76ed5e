"""Dataclass configs: filling them from YAML dicts and from argparse, with clear errors.

Every step's config is a dataclass that lives beside its step. This module knows how to fill any of them
from a recipe section (`config_from_dict`) or a command line (`add_arguments` / `config_from_args`), so the
CLI, the YAML recipes and Python callers share one set of names.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import json
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from data_prep.errors import UserError

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _union_args(tp: Any) -> tuple[list[Any], bool]:
    """The non-None members of a union (or `[tp]`), and whether None is one of them."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def _kind(tp: Any) -> Any:
    """The plain kind of a type: `list` for `list[str]`, `str` for an enum or a Literal, else the type."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return str
    if origin is not None:
        return origin
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return str
    return tp


def _coerce(value: Any, tp: Any, name: str, where: str) -> Any:
    """`value` (from YAML or the command line) as field type `tp`; a UserError naming `name` otherwise."""
    members, optional = _union_args(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise UserError(f"{where}: '{name}' must not be empty")
    kinds = [_kind(m) for m in members]
    if object in kinds:  # any value (a suite's `train:`: a path or a mapping), checked where it is read
        return value
    for kind in kinds:  # a value that already has one of the union's kinds is kept as it is
        if kind in (bool, int, float, str, list, dict) and _is_kind(value, kind):
            return [str(v) for v in value] if kind is list else value
    for kind in kinds:
        try:
            return _convert(value, kind)
        except (TypeError, ValueError, json.JSONDecodeError):
            continue
    raise UserError(f"{where}: '{name}' should be {_type_name(tp)}, got {value!r}") from None


def _is_kind(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, float)
    if kind is list:
        return isinstance(value, (list, tuple)) and not any(isinstance(v, (list, dict)) for v in value)
    return isinstance(value, kind)


def _convert(value: Any, kind: Any) -> Any:
    """`value` converted to `kind`, or a TypeError / ValueError."""
    if kind is bool:
        text = str(value).lower() if isinstance(value, str) else None
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ValueError(value)
    if isinstance(value, (bool, list, dict)) and kind in (int, float, str):
        raise ValueError(value)  # YAML `true` is not 1, a list is not a number or a string
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if kind in (float, str):
        return kind(value)
    if kind is list and isinstance(value, str):
        return [v for v in (s.strip() for s in value.split(",")) if v]
    if kind is dict and isinstance(value, str):
        value = json.loads(value)
        if not isinstance(value, dict):
            raise ValueError(value)
        return value
    if isinstance(kind, type) and dataclasses.is_dataclass(kind) and isinstance(value, dict):
        return kind(**value)  # e.g. TrainingArguments' parallelism_config
    raise TypeError(value)


def _type_name(tp: Any) -> str:
    members, optional = _union_args(tp)
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping"}  # fmt: skip
    kinds = [names.get(_kind(m), getattr(m, "__name__", str(m))) for m in members]
    name = " or ".join(dict.fromkeys(kinds))
    return f"{name} or null" if optional else name


def closest(name: str, valid: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest valid names, or '' when none is close."""
    scored = sorted(((difflib.SequenceMatcher(None, name, v).ratio(), v) for v in valid), reverse=True)
    best = scored[0][0] if scored else 0.0
    near = [v for ratio, v in scored[:2] if ratio >= max(0.6, best - 0.05)]
    return f" (did you mean {' or '.join(near)}?)" if near else ""


def check_keys(cls: type, data: dict, where: str) -> None:
    """Every key of `data` is an option of `cls`: an unknown one is a UserError with the closest names."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        hints = "; ".join(f"'{k}'{closest(k, names)}" for k in unknown)
        raise UserError(f"{where}: unknown key(s) {hints}; `mlm COMMAND --help` lists every option")


def config_from_dict(cls: type[T], data: dict | None, where: str) -> T:
    """Build `cls` from a recipe section, a suite or parsed arguments: keys and types are checked here; the
    values are checked once, by the step that runs the config."""
    data = dict(data or {})
    check_keys(cls, data, where)
    hints = _field_types(cls)
    kwargs = {k: _coerce(v, hints[k], k, where) for k, v in data.items()}
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in kwargs
    ]
    if required:
        raise UserError(f"{where}: missing required key(s): {', '.join(required)}")
    try:
        return cls(**kwargs)
    except ValueError as e:  # a library's own check in __post_init__
        raise UserError(f"{where}: {str(e).strip().splitlines()[0]}") from None


def option_group(cls: type, name: str) -> str:
    """The `--help` heading of option `name`: the title (`GROUP`) of the first class that defines it, or
    that class's name when it is a library's (`TrainingArguments`)."""
    for klass in reversed(cls.__mro__):
        if name in klass.__dict__.get("__annotations__", {}):
            library = klass.__module__.split(".")[0] not in ("mlm", "data_prep")
            return klass.__dict__.get("GROUP") or (klass.__name__ if library else "")
    return ""


def add_arguments(parser: argparse.ArgumentParser, cls: type, positional: tuple[str, ...] = ()) -> None:
    """One option per dataclass field, under a heading per option group, the required ones first; the
    `--max-seq-length` spelling of `--max_seq_length` is accepted too, without being listed twice."""
    hints = _field_types(cls)
    groups: dict[str, Any] = {"": parser}  # options of no group: under the parser's own heading
    if any(is_required(f) for f in dataclasses.fields(cls) if f.name not in positional):
        groups[REQUIRED] = parser.add_argument_group(REQUIRED)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    # our own groups first, then the library's long list (TrainingArguments)
    for f in sorted(fields, key=lambda f: option_group(cls, f.name) == "TrainingArguments"):
        help_text = f.metadata.get("help", "")
        if f.name in positional:
            parser.add_argument(f.name, help=help_text)
            continue
        title = REQUIRED if is_required(f) else option_group(cls, f.name)
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        if f.default is not dataclasses.MISSING and f.default not in (None, "") and not is_required(f):
            help_text += f" (default: {getattr(f.default, 'value', f.default)})"
        kwargs = _argument_kwargs(f, hints[f.name], help_text.replace("%", "%%"))
        groups[title].add_argument(f"--{f.name}", **kwargs)
        if "_" in f.name:
            groups[title].add_argument(
                f"--{f.name.replace('_', '-')}", **{**kwargs, "help": argparse.SUPPRESS}
            )


REQUIRED = "required"


def is_required(f: dataclasses.Field) -> bool:
    """A field without a default, or marked `metadata={"required": True}`."""
    missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    return missing or bool(f.metadata.get("required"))


def _argument_kwargs(f: dataclasses.Field, tp: Any, help_text: str) -> dict[str, Any]:
    kinds = [_kind(m) for m in _union_args(tp)[0]]
    kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
    if "const" in f.metadata:  # `--resume_from_checkpoint` alone means `latest`
        kwargs.update(nargs="?", const=f.metadata["const"])
    elif bool in kinds:
        kwargs.update(nargs="?", const="true", metavar="BOOL")
    elif list in kinds and str not in kinds:
        kwargs.update(nargs="+", metavar="X")
    elif kinds == [dict]:
        kwargs.update(metavar="JSON")
    return kwargs


def config_from_args(cls: type[T], ns: argparse.Namespace, base: dict | None = None, where: str = "") -> T:
    """Fill `cls` from parsed arguments on top of `base` (e.g. a recipe section given with --config)."""
    names = {f.name for f in dataclasses.fields(cls)}
    data = dict(base or {})
    data.update({k: v for k, v in vars(ns).items() if k in names})
    return config_from_dict(cls, data, where or cls.__name__)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing or malformed file is a UserError naming it."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"recipe not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(
            f"{p} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as e:
        raise UserError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{p}: a recipe must be a mapping of sections (prepare, tokenizer, ...)")
    return data


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
