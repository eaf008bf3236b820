"""How long the receiver keeps what an unauthenticated peer can make it
write, and how much of it (docs/receiver.md, "Retention").

A leaf module (constants, the :class:`Bound` records and :func:`prune`;
it imports nothing of the receiver's).  The receiver's housekeeping prunes security events, the
console's sweeper prunes its audit rows of rejected logins; both delete
in batches between group commits, oldest first.

What is never pruned: events, alarms and their audit trail, the outbox,
and console audit rows of authenticated actions (logins, acknowledges,
exports, user changes).  Those are the monitoring record; only rows an
attacker can produce without a key or a password are bounded here.  Log
lines are bounded in rate (receiver.logfmt) and kept by the log system.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

_LOGGER = logging.getLogger(__name__)

DAY_S = 86400.0

# Security events (rejected frames: unknown account, bad MAC, replay...).
# Stored at most receiver.link_policy.SECURITY_STORE_PER_S (50/s); 1,000,000 rows
# (~90 MB in SQLite, measured: 88 bytes a row) hold 5.5 hours of a sustained flood at that rate, or
# 90 days of the few a day a healthy network sees.
SECURITY_EVENTS_DAYS = 90
SECURITY_EVENTS_MAX_ROWS = 1_000_000
# Console audit rows of rejected logins (login.failed, login.throttled).
# Failed logins are bounded by argon2 (2 verifies at once) and throttled
# ones are one row per address per minute (receiver.web.auth); 100,000
# rows are ~8 MB (measured: 72 bytes a row).
CONSOLE_REJECTED_DAYS = 90
CONSOLE_REJECTED_MAX_ROWS = 100_000
# The console audit actions that count as rejected attempts.
CONSOLE_REJECTED_ACTIONS = ("login.failed", "login.throttled")
# How often both prunes run, and rows deleted per statement: a minute of
# the heaviest flood (50/s -> 3,000 rows) is deleted in one batch, and a
# batch is a few milliseconds of the writer's time.
PRUNE_EVERY_S = 60.0
PRUNE_BATCH = 10_000




@dataclass(frozen=True)
class Bound:
    """How long and how many rows of one kind are kept."""

    what: str  # words for the log line
    days: float
    max_rows: int


SECURITY_EVENTS = Bound("security events", SECURITY_EVENTS_DAYS, SECURITY_EVENTS_MAX_ROWS)
CONSOLE_REJECTED = Bound("console audit rows of rejected logins", CONSOLE_REJECTED_DAYS,
                         CONSOLE_REJECTED_MAX_ROWS)


def cutoff(days: float, now: float | None = None) -> float:
    """The time before which rows kept ``days`` days are deleted."""
    return (time.time() if now is None else now) - days * DAY_S


async def prune(bound: Bound, delete, now: float) -> int:
    """One pruning pass: ``await delete(before, keep, batch)`` (a store's
    prune method) with ``bound``'s limits; logs what went."""
    n = await delete(cutoff(bound.days, now), bound.max_rows, PRUNE_BATCH)
    if n:
        _LOGGER.info("pruned what=%s rows=%d keep_days=%d keep_rows=%d", bound.what, n,
                     bound.days, bound.max_rows)
    return n
