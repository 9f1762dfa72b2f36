"""Durations and sizes as a spec writes them (``90s``, ``1h30m``, ``2GiB``), parsed once.

Backends' configs use :data:`Duration` too, so they need nothing of the spec loader.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeAlias

from pydantic import BeforeValidator, WithJsonSchema

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s|ms)", re.IGNORECASE)


_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number of seconds or a string such as ``90s``, ``10m``, ``1h30m``.

    Raises:
        ValueError: for anything else, or a duration that is not positive.
    """
    hint = "use a number of seconds or a string such as 90s, 10m, 1h30m or 2d"
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; {hint}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = list(_DURATION_PART.finditer(text))
        if not parts or "".join(p.group(0) for p in parts) != text:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a duration; {hint}") from None
        else:
            seconds = sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2).lower()] for p in parts)
    else:
        raise ValueError(f"{value!r} is not a duration; {hint}")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"a duration must be positive and finite, but got {value!r}; {hint}")
    return seconds


Duration: TypeAlias = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?\s*(d|h|m|s|ms)\s*)+$"},
            ],
            "description": "Seconds, or a string such as 90s, 10m, 1h30m.",
        }
    ),
]


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "m": 1e6,
    "mb": 1e6,
    "g": 1e9,
    "gb": 1e9,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
}


def parse_bytes(value: Any) -> int:
    """Bytes in ``value``: a number, or a string such as ``512MB``, ``2GiB`` or ``4G``.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if match and match.group(2).lower() in _SIZE_UNITS:
            size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
            if size > 0:
                return size
    raise ValueError(f"{value!r} is not a size; write a number of bytes or e.g. 512MB, 2GiB")
