"""Waiting for a condition without timed assertions.

Tests poll for what they expect with a generous deadline and fail with a
description of what was last seen; how long it took is measured and
reported, never asserted (STYLE.md, "Tests")."""

from __future__ import annotations

import time

from receiver.testing import ConditionTimeout, wait_until

__all__ = ["ConditionTimeout", "DEFAULT_TIMEOUT_S", "until", "until_sync"]

# Generous: a loaded CI machine with two cores running the MicroPython VM,
# a receiver and pytest at once can stall for seconds.
DEFAULT_TIMEOUT_S = 30.0


async def until(cond, timeout: float = DEFAULT_TIMEOUT_S, interval: float = 0.02,
                what: str = "", seen=None):
    """Poll `cond()` (sync or async) until it returns a truthy value, which
    is returned.  On timeout raise ConditionTimeout naming `what` and, if
    given, `seen()` (what was observed instead)."""
    return await wait_until(cond, timeout, interval, what, seen)


def until_sync(cond, timeout: float = DEFAULT_TIMEOUT_S, interval: float = 0.02,
               what: str = "", seen=None):
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if r:
            return r
        if time.monotonic() > deadline:
            extra = "; saw: %r" % (seen(),) if seen is not None else ""
            raise ConditionTimeout("timed out after %.1f s waiting for %s%s" % (
                timeout, what or getattr(cond, "__name__", "condition"), extra))
        time.sleep(interval)
