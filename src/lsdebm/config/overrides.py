"""Changing a configuration: dotted-field replacement and ``--set SECTION.FIELD=VALUE`` parsing.

Every change returns a new frozen :class:`~lsdebm.config.schema.Config`; nothing is modified in
place, so a loaded checkpoint's config never changes under its model.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from lsdebm.config.schema import SECTIONS, Config, ConfigError
from lsdebm.errors import InputError


def replace_fields(config: Config, sections: dict[str, Any]) -> Config:
    """A copy of ``config`` with whole sections or dotted fields replaced.

    ``replace_fields(cfg, {"langevin.K": 50, "model.grid": 32})`` or ``{"preset": "x"}``.

    Raises:
        ConfigError: For an unknown section or field, or a value the section refuses.
    """
    updates: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in sections.items():
        if "." in key:
            sec, name = key.split(".", 1)
            if sec not in SECTIONS:
                raise ConfigError(f"unknown config section {sec!r}; expected one of {', '.join(SECTIONS)}")
            updates.setdefault(sec, {})[name] = value
        else:
            top[key] = value
    for sec, fields_ in updates.items():
        current = getattr(config, sec)
        known = {f.name for f in dataclasses.fields(current)}
        unknown = set(fields_) - known
        if unknown:
            raise ConfigError(f"unknown {sec} option(s) {sorted(unknown)}; expected one of {sorted(known)}")
        top[sec] = dataclasses.replace(current, **fields_)
    return dataclasses.replace(config, **top)


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, lists, true/null), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["langevin.K=50", "model.channels=[4,8]"]`` -> ``{"langevin.K": 50, "model.channels": (4, 8)}``.

    Raises:
        InputError: For an item that is not ``SECTION.FIELD=VALUE``.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise InputError(f"--set {item!r}: expected SECTION.FIELD=VALUE, e.g. --set langevin.K=50")
        v = parse_value(value)
        out[key.strip()] = tuple(v) if isinstance(v, list) else v
    return out
