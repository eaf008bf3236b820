"""Capped, jittered exponential backoff: the one place every reconnect and
retry loop in the receiver takes its delays from (house style: reconnects
with capped, jittered backoff and cancellable handles, in one place).

The delay after the n-th consecutive failure is
``min(cap, base * 2**(n-1))`` plus up to ``jitter`` of itself, so that many
forwarders or serial lines that lost the same far end do not come back in
step.  ``reset()`` after a success.
"""

from __future__ import annotations

import asyncio
import random


class Backoff:
    def __init__(self, base_s: float = 0.5, cap_s: float = 60.0, jitter: float = 0.25,
                 rng=random.random):
        if base_s <= 0 or cap_s < base_s or jitter < 0:
            raise ValueError("backoff needs 0 < base <= cap and jitter >= 0")
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter = jitter
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait."""
        self.failures += 1
        # 2**n overflows float for absurd n; the cap is reached long before.
        d = self.base_s * (2 ** min(self.failures - 1, 30))
        if d > self.cap_s:
            d = self.cap_s
        return d + d * self.jitter * self._rng()

    def reset(self) -> None:
        self.failures = 0

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Sleep the next delay; return early (True) if ``stop`` is set."""
        d = self.next_delay()
        if stop is None:
            await asyncio.sleep(d)
            return False
        try:
            await asyncio.wait_for(stop.wait(), d)
            return True
        except asyncio.TimeoutError:
            return False
