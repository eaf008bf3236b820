"""Times as people write them to the receiver and read them from it: Unix
seconds or ISO 8601 in (a time without a zone is UTC), ISO 8601 UTC out.
The CLI and the console's API both read and write times here.  A leaf
module."""

from __future__ import annotations

import datetime as _dt


def parse_instant(text: str) -> float | None:
    """Unix seconds from ``text`` (Unix seconds, or ISO 8601; no zone
    means UTC; a trailing Z is UTC); None when it is neither."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def iso_utc(t: float) -> str:
    """``t`` (Unix seconds) as ISO 8601 UTC to the second: 2025-01-01T10:00:00Z."""
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
