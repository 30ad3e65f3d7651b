"""Durations as people write them and read them: ``1h30m`` in an input, and a wait of
599.93 s shown as ``10m``, not ``599.931s``."""

from __future__ import annotations

import re

MAX_DURATION_S = 24 * 3600.0  # no wait ci_shark takes is longer than a day


def duration(seconds: float) -> str:
    """``90`` as ``1m30s``, ``600`` as ``10m``, ``3600`` as ``1h``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{secs}s" if secs or not (hours or minutes) else "")
    return "".join(parts)


_DURATION_PART = re.compile(
    r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d)?",
    re.IGNORECASE,
)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> float:
    """``300``, ``300s``, ``15m``, ``10min``, ``1h30m``, ``1.5 hours`` as seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        if text.startswith("-"):
            raise ValueError("must be more than 0 (and at most 24h)")
        parts = list(_DURATION_PART.finditer(text))
        if not parts or "".join(part.group(0) for part in parts).replace(" ", "") != text.replace(
            " ", ""
        ):
            raise ValueError("is not a duration: use seconds or units, e.g. 300, 15m, 1h30m")
        seconds = sum(
            float(part.group(1)) * _UNIT_S[(part.group(2) or "s")[0].lower()] for part in parts
        )
    if not 0 < seconds <= MAX_DURATION_S:
        raise ValueError("must be more than 0 and at most 24h")
    return seconds
