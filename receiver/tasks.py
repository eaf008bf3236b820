"""Background tasks of the receiver's parts (supervision timer,
housekeeping, cluster leases): how they are ended.  A leaf module."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def cancel_all(tasks: Iterable[asyncio.Task]) -> None:
    """Cancel ``tasks`` and wait until each has ended, whatever it raised
    (a task that failed has said so in the log already)."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    for t in tasks:
        try:
            await t
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass
