"""Stage configs as plain dataclasses, loaded from a small JSON or TOML file and `--set key=value`.

    cfg = load_config(MyConfig, "stage.toml", ["lr=3e-4", "model.d=256"])

Nested dataclasses are TOML tables / JSON objects, or dotted keys in `--set`. Unknown keys and
values of the wrong type raise ValueError naming the key. Torch-free.
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Turn a JSON/TOML/--set value into the field's declared type."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None or value == "None" else _coerce(value, args[0], key)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r} is a section: give a table, got {value!r}")
        return _update(tp(), value, key + ".")
    if tp is bool:
        if isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(f"config key {key!r} wants true/false, got {value!r}")
            return value.lower() in ("1", "true", "yes")
        return bool(value)
    if origin in (tuple, list):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return (tuple if origin is tuple else list)(value)
    if tp in (int, float, str):
        try:
            return tp(value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"config key {key!r} wants {tp.__name__}, got {value!r}") from e
    return value


def _update(cfg: Any, values: dict, prefix: str = "") -> Any:
    try:
        hints = typing.get_type_hints(type(cfg))
    except NameError as e:
        raise TypeError(f"config class {type(cfg).__name__} has annotations that cannot be resolved ({e}): "
                        "define config dataclasses at module level") from e
    known = {f.name for f in fields(cfg)}
    for k, v in values.items():
        if k not in known:
            raise ValueError(f"unknown config key {prefix + k!r}; {type(cfg).__name__} has: {', '.join(sorted(known))}")
        cur = getattr(cfg, k)
        if is_dataclass(cur) and isinstance(v, dict):
            _update(cur, v, prefix + k + ".")
        else:
            setattr(cfg, k, _coerce(v, hints[k], prefix + k))
    return cfg


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """`cls()` updated from a JSON or TOML file, then from `key=value` overrides (dotted keys nest).

    Unknown keys and values of the wrong type raise ValueError naming the key.
    """
    cfg = cls()
    if path:
        p = Path(path)
        if not p.exists():
            raise ValueError(f"config file {p} does not exist")
        try:
            values = tomllib.loads(p.read_text()) if p.suffix == ".toml" else json.loads(p.read_text())
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"config file {p} is not valid {p.suffix[1:].upper() or 'JSON'}: {e}") from e
        _update(cfg, values)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set wants key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        *parents, leaf = key.strip().split(".")
        nested: dict = {leaf: val}
        for parent in reversed(parents):
            nested = {parent: nested}
        _update(cfg, nested)
    return cfg


STAGE_SKIPPED = 75
"""Exit status of a stage module that cannot run here (its data is absent): the rebuild reports it
"skipped" with the stage's last output line as the reason, not "failed"."""


def skip_stage(reason: str):
    """Print why this stage cannot run here and exit with `STAGE_SKIPPED`."""
    import sys

    print(f"skipped: {reason}", flush=True)
    sys.exit(STAGE_SKIPPED)


def stage_parser(description: str):
    """The command line every stage module shares (the rebuild calls `python -m <stage> --smoke --out DIR`).

    --smoke: toy sizes, seconds to a minute; --out DIR: where outputs go (default: the stage's own);
    --config FILE / --set key=value: config values. Read $EDGE_XEMO_REBUILD_DIR/<stage> for an
    earlier stage's outputs when the rebuild runs you.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="toy sizes: runs end to end in about a minute")
    parser.add_argument("--out", help="output folder (default: the stage's own)")
    add_config_args(parser)
    return parser


def add_config_args(parser) -> None:
    """Add `--config FILE` and repeatable `--set key=value` to an argparse parser."""
    parser.add_argument("--config", help="JSON or TOML file with config values")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one value")
