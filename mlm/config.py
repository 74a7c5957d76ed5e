"""Dataclass configs: filling them from YAML dicts and from argparse, with clear errors.

Every step's config is a dataclass that lives beside its step. This module knows how to fill any of them
from a recipe section (`config_from_dict`) or a command line (`add_arguments` / `config_from_args`), so the
CLI, the YAML recipes and Python callers share one set of names.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from data_prep.errors import UserError

T = TypeVar("T")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(`int`, True) for `int | None`; (`list`, False) for `list[str]`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner, _ = _base_type(args[0]) if len(args) == 1 else (str, False)
        if len(args) > 1 and bool in args:  # `bool | str`: keep as string-ish, parsed below
            inner = bool
        return inner, True
    if origin is not None:
        return origin, False
    return tp, False


def _coerce(value: Any, tp: Any, name: str, where: str) -> Any:
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"{where}: '{name}' must not be empty")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError(value)
        if base in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
            raise ValueError(value)  # YAML `true` is not 1, a list is not a number
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            if isinstance(value, (list, dict)):
                raise ValueError(value)
            return str(value)
        if base is list:
            if isinstance(value, str):
                return [v for v in (s.strip() for s in value.split(",")) if v]
            if not isinstance(value, (list, tuple)) or any(isinstance(v, (list, dict)) for v in value):
                raise ValueError(value)
            return [str(v) for v in value]
        if base is dict:
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: '{name}' should be {_type_name(tp)}, got {value!r}") from None
    return value


def _type_name(tp: Any) -> str:
    base, optional = _base_type(tp)
    name = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(base, str(base))
    return f"{name} or null" if optional else name


def config_from_dict(cls: type[T], data: dict | None, where: str, validate: bool = True) -> T:
    """Build `cls` from a recipe section; unknown keys end with a UserError listing the valid ones.

    `validate=False` skips the config's own checks (which may look for input folders not made yet)."""
    data = dict(data or {})
    hints = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(names)}")
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
    cfg = cls(**kwargs)
    if validate and hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def add_arguments(parser: argparse.ArgumentParser, cls: type, positional: tuple[str, ...] = ()) -> None:
    """Add one option per dataclass field, in argument groups by option group (`mlm.options`), the required
    ones first in their own group; the `--max-seq-length` spelling of `--max_seq_length` is accepted too,
    without being listed twice."""
    from mlm.options import group_of

    hints = _field_types(cls)
    groups: dict[str, Any] = {}
    if any(is_required(f) for f in dataclasses.fields(cls) if f.name not in positional):
        groups[REQUIRED] = parser.add_argument_group(REQUIRED)
    for f in dataclasses.fields(cls):
        title = REQUIRED if is_required(f) else group_of(cls, f.name) or "options"
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        target = groups[title]
        help_text = f.metadata.get("help", "")
        if f.name in positional:
            parser.add_argument(f.name, help=help_text)
            continue
        if f.default is not dataclasses.MISSING and f.default not in (None, ""):
            help_text += f" (default: {f.default})"
        kwargs = _argument_kwargs(f, hints[f.name], help_text)
        target.add_argument(f"--{f.name}", **kwargs)
        if "_" in f.name:
            target.add_argument(f"--{f.name.replace('_', '-')}", **{**kwargs, "help": argparse.SUPPRESS})


REQUIRED = "required (here, or in the recipe section given with --config)"


def is_required(f: dataclasses.Field) -> bool:
    """A field without a default, or marked `metadata={"required": True}`."""
    missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    return missing or bool(f.metadata.get("required"))


def _argument_kwargs(f: dataclasses.Field, tp: Any, help_text: str) -> dict[str, Any]:
    base, _ = _base_type(tp)
    kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
    if "const" in f.metadata:  # `--resume` alone means `--resume latest`
        kwargs.update(nargs="?", const=f.metadata["const"])
    elif base is bool:
        kwargs.update(nargs="?", const="true", metavar="BOOL")
    elif base is list:
        kwargs.update(nargs="+", metavar="X")
    elif base is dict:
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
