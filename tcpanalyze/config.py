"""Configuration files: `[tool.tcpanalyze]` in pyproject.toml or top-level keys in
`.tcpanalyze.toml`, found by walking up from the working directory.

Keys: every `settings.Settings` field (written with '-' or '_'; a number, or for a
switch such as `vlan-tracking` true/false, 1/0 on the command line), `fail-on`, `ignore`,
`format`, `baseline`. Anything else, or a value of the wrong type, is a `ConfigError`
naming the file and the key. Command-line values win over the file (`merge_overrides`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcpanalyze.gate import (
    FailPolicy,
    GateError,
    IgnoreRule,
    ignore_rule_from_mapping,
    parse_fail_on,
)
from tcpanalyze.settings import Settings

DOTFILE = ".tcpanalyze.toml"
PYPROJECT = "pyproject.toml"
_OWN_KEYS = ("fail_on", "ignore", "format", "baseline")


class ConfigError(Exception):
    """str(e) is 'FILE: key KEY: what is wrong'."""

    def __init__(self, path: str, key: str | None, message: str) -> None:
        self.path = path
        self.key = key
        where = f"{path}: key {key!r}: " if key else f"{path}: "
        super().__init__(where + message)


@dataclass
class Config:
    settings: Settings = field(default_factory=Settings)
    fail_on: list[str] | None = None  # raw specs; None = the default policy
    ignore: list[IgnoreRule] = field(default_factory=list)
    format: str | None = None
    baseline: str | None = None  # resolved against the config file's directory
    path: str | None = None  # the file this came from, None for defaults

    @property
    def policy(self) -> FailPolicy:
        return parse_fail_on(self.fail_on)


def find_config(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest `.tcpanalyze.toml`, or pyproject.toml that has [tool.tcpanalyze],
    from `start` (default: the working directory) up to the filesystem root. In one
    directory the dotfile wins."""
    here = Path(start or os.getcwd()).resolve()
    for directory in (here, *here.parents):
        dotfile = directory / DOTFILE
        if dotfile.is_file():
            return dotfile
        pyproject = directory / PYPROJECT
        if pyproject.is_file():
            try:
                with pyproject.open("rb") as stream:
                    data = tomllib.load(stream)
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue  # someone else's broken pyproject is not our configuration
            if isinstance(data.get("tool"), dict) and "tcpanalyze" in data["tool"]:
                return pyproject
    return None


def load_config(
    path: str | os.PathLike[str] | None = None, start: str | os.PathLike[str] | None = None
) -> Config:
    """Load an explicit file, or the one `find_config(start)` finds, or defaults."""
    found = Path(path) if path is not None else find_config(start)
    if found is None:
        return Config()
    source = str(found)
    try:
        with open(found, "rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigError(source, None, "no such file") from None
    except OSError as e:
        raise ConfigError(source, None, f"cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, None, f"not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(source, None, f"not valid TOML: not UTF-8 text (byte {e.start})"
                          ) from None
    # pyproject.toml keeps its settings under [tool.tcpanalyze]; any other file may hold
    # the keys plainly or the same table (README's snippet pasted as it is)
    tool = data.get("tool")
    if found.name == PYPROJECT or (set(data) == {"tool"} and isinstance(tool, dict)
                                   and "tcpanalyze" in tool):
        table = tool.get("tcpanalyze", {}) if isinstance(tool, dict) else {}
        if not isinstance(table, dict):
            raise ConfigError(source, "tool.tcpanalyze", "must be a table")
        data = table
    return parse_config(data, source, base_dir=str(found.parent))


def _settings_types() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _check_number(source: str, key: str, value: Any, kind: type) -> float | int | bool:
    if kind is bool:  # a switch: true/false in TOML, 1/0 on the command line (-s)
        if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
            return bool(value)
        raise ConfigError(source, key, f"must be true or false (1 or 0), not {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(source, key, f"must be a number ({kind.__name__}), not {value!r}")
    if kind is int and not isinstance(value, int):
        raise ConfigError(source, key, f"must be an integer, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(source, key, f"must be finite, not {value!r}")
    if value < 0:
        raise ConfigError(source, key, f"must not be negative, got {value!r}")
    least = _LEAST.get(key.replace("-", "_"), 0)
    if value < least:
        raise ConfigError(source, key, f"must be at least {least}, got {value!r}")
    return kind(value)


# settings for which 0 means nothing sensible (no connection could be tracked at all)
_LEAST = {"max_connections": 1}


def parse_config(data: Mapping[str, Any], source: str, base_dir: str | None = None) -> Config:
    """Validate a table of keys (already parsed TOML); `source` names the file in errors."""
    from tcpanalyze.output import FORMATS

    types = _settings_types()
    settings_values: dict[str, Any] = {}
    config = Config(path=source)
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key in types:
            settings_values[key] = _check_number(source, raw_key, value, types[key])
        elif key == "fail_on":
            specs = [value] if isinstance(value, str) else value
            if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
                raise ConfigError(source, raw_key, "must be a list of strings")
            try:
                parse_fail_on(specs)
            except GateError as e:
                raise ConfigError(source, raw_key, str(e)) from None
            config.fail_on = list(specs)
        elif key == "ignore":
            if not isinstance(value, list):
                raise ConfigError(source, raw_key, "must be a list of tables ([[ignore]] ...)")
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    raise ConfigError(source, f"{raw_key}[{i}]", "must be a table")
                try:
                    config.ignore.append(ignore_rule_from_mapping(item))
                except GateError as e:
                    raise ConfigError(source, f"{raw_key}[{i}]", str(e)) from None
        elif key == "format":
            if not isinstance(value, str) or value not in FORMATS:
                raise ConfigError(
                    source, raw_key, f"must be one of {', '.join(FORMATS)}, not {value!r}"
                )
            config.format = value
        elif key == "baseline":
            if not isinstance(value, str) or not value:
                raise ConfigError(source, raw_key, f"must be a file path, not {value!r}")
            config.baseline = os.path.join(base_dir, value) if base_dir else value
        else:
            known = sorted(k.replace("_", "-") for k in (*types, *_OWN_KEYS))
            raise ConfigError(source, raw_key, f"unknown key (known keys: {', '.join(known)})")
    config.settings = Settings(**settings_values)
    return config


def merge_overrides(
    config: Config,
    settings: Mapping[str, Any] | None = None,
    fail_on: list[str] | tuple[str, ...] | None = None,
    ignore: list[IgnoreRule] | tuple[IgnoreRule, ...] | None = None,
    format: str | None = None,
    baseline: str | None = None,
) -> Config:
    """A new Config with command-line values applied: given settings and fail_on / format /
    baseline replace the file's; ignore rules are added to the file's. None (or an empty
    fail_on) means "not given on the command line"."""
    types = _settings_types()
    values = dataclasses.asdict(config.settings)
    for raw_key, value in (settings or {}).items():
        if value is None:
            continue
        key = raw_key.replace("-", "_")
        if key not in types:
            raise ConfigError("command line", raw_key, "unknown setting")
        values[key] = _check_number("command line", raw_key, value, types[key])
    if fail_on:
        try:
            parse_fail_on(list(fail_on))
        except GateError as e:
            raise ConfigError("command line", "--fail-on", str(e)) from None
    return Config(
        settings=Settings(**values),
        fail_on=list(fail_on) if fail_on else config.fail_on,
        ignore=[*config.ignore, *(ignore or ())],
        format=format or config.format,
        baseline=baseline or config.baseline,
        path=config.path,
    )
