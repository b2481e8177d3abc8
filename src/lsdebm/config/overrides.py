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
    """A copy of ``config`` with whole sections or dotted fields replaced (:meth:`Config.replace`).

    ``replace_fields(cfg, {"langevin.K": 50, "model.grid": 32})`` or ``{"preset": "x"}``.
    """
    return config.replace(**sections)


def apply_sets(config: Config, sets: dict[str, Any], **fields: Any) -> Config:
    """``config.replace(**fields, **sets)``; a value the config refuses is named as the ``--set`` item it came
    from (``--set loss.kl_weight=nan must be a finite number``), not by its bare field name."""
    try:
        return config.replace(**fields, **sets)
    except ConfigError as e:
        text = str(e)
        for key, value in sets.items():
            said = f"{key.partition('.')[2]}={value!r} "
            if text.startswith(said):
                shown = value if isinstance(value, str) else json.dumps(value)
                raise ConfigError(f"--set {key}={shown} {text[len(said):]}") from None
        raise


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
        _check_whole(key.strip(), v)
    return out


def _check_whole(key: str, value: Any) -> None:
    """A whole-number field given another value (``train.batch_size=1.5``, ``model.grid=16.0``) is refused by name;
    it was a ``TypeError`` from deep inside training. Unknown names are left to :meth:`Config.replace`."""
    section, _, name = key.partition(".")
    kinds = {f.name: f.type for f in dataclasses.fields(SECTIONS[section])} if section in SECTIONS else {}
    if kinds.get(name) in ("int", "int | None") and not (value is None and kinds[name] != "int") \
            and (isinstance(value, bool) or not isinstance(value, int)):
        also = " or null" if kinds[name] != "int" else ""
        raise InputError(f"--set {key}={value!r}: expected a whole number{also}")
