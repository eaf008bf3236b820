"""Token buckets: how often something may happen, counted when it may not.

A leaf module (it imports nothing of the receiver's), shared by the
listeners, the receiver core and the console: log lines under a flood,
security events stored per second, NAKs answered per second.  What was
refused is counted in ``suppressed`` so the caller can report it later
("... and 312 more") instead of losing it silently.
"""

from __future__ import annotations

import time


class RateLimit:
    """Token bucket: :meth:`allow` is true at most ``rate`` times per
    second on average, ``burst`` times in a row after a quiet spell.

    ``now`` (monotonic seconds) may be passed in, here and to the
    constructor, so the bucket can be fed explicit time in tests; by
    default it reads ``time.monotonic()``.
    """

    def __init__(self, rate: float, burst: float = 20.0, now: float | None = None):
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._t = time.monotonic() if now is None else now
        self.suppressed = 0

    def allow(self, now: float | None = None) -> bool:
        if now is None:
            now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate)
        self._t = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.suppressed += 1
        return False
