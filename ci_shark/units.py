"""How ci_shark writes amounts for people: a wait of 599.93 s reads ``10m``, not
``599.931s``."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``90`` as ``1m30s``, ``600`` as ``10m``, ``3600`` as ``1h``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{secs}s" if secs or not (hours or minutes) else "")
    return "".join(parts)
