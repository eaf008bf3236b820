"""Test placements: an account, a partition or a zone placed on test for
a bounded time (sans-I/O).

An alarm system under service must not send patrols.  An installer or an
operator places it on test, with a reason, for a bounded time; events
still arrive and are stored, marked with the placement they fell under,
but open no alarm and are not routed.  The end is automatic: the scheduler
ends each placement at ``ends_at`` and the store writes the audit row, as
it does when an operator ends one early.

What a placement covers (:meth:`Placement.covers`):

- an **account** placement: every event of the account, the receiver's
  own included (a panel powered down for service fails its supervision,
  misses its closing time: nobody is to be paged for it);
- a **partition** placement: the events carrying that partition number
  (a panel-wide report, partition 0, is not in it);
- a **zone** placement: the events whose number is that zone
  (``protocol.contactid.number_kind`` says ZONE): a user or path number 4
  is never zone 4.

Every class is covered, hold-up included: testing hold-up buttons is what
a walk test does, and the bounded time is the safeguard (an operator sees
the account on test in the console for its whole duration).  Invariants:
a placement lasts from ``starts_at`` to ``ends_at`` (or to ``ended_at``
when ended early), at most :data:`MAX_TEST_S`; it has a reason and a
person; nothing here reads a clock.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, replace

from protocol import contactid

# The longest a placement may run: a weekend's service visit, never an
# account switched off for good (that is deleting it from supervision).
MAX_TEST_S = 72 * 3600
# What the console and the API offer when none is given.
DEFAULT_TEST_S = 2 * 3600

ACCOUNT = "account"
PARTITION = "partition"
ZONE = "zone"


class PlacementError(ValueError):
    """A placement that cannot be made, in words."""


@dataclass(frozen=True)
class Placement:
    """``partition`` and ``zone`` None: the whole account; ``zone`` set: that
    zone (``partition`` is then ignored); else that partition."""

    account: str
    starts_at: float
    ends_at: float
    reason: str
    by: str
    partition: int | None = None
    zone: int | None = None
    id: int | None = None
    ended_at: float | None = None  # ended early by someone, or at ends_at by the receiver
    ended_by: str | None = None

    @property
    def scope(self) -> str:
        if self.zone is not None:
            return ZONE
        return PARTITION if self.partition is not None else ACCOUNT

    def words(self) -> str:
        """'zone 4 of account 1001', 'partition 2 of account 1001',
        'account 1001'."""
        if self.zone is not None:
            return "zone %d of account %s" % (self.zone, self.account)
        if self.partition is not None:
            return "partition %d of account %s" % (self.partition, self.account)
        return "account %s" % self.account

    def to_json(self) -> dict:
        return {"id": self.id, "account": self.account, "partition": self.partition,
                "zone": self.zone, "scope": self.scope, "words": self.words(),
                "starts_at": self.starts_at, "ends_at": self.ends_at,
                "reason": self.reason, "by": self.by, "ended_at": self.ended_at,
                "ended_by": self.ended_by}

    @classmethod
    def from_row(cls, row) -> "Placement":
        """From a ``test_placements`` row (both store backends)."""
        r = dict(row)
        return cls(r["account"], r["starts_at"], r["ends_at"], r["reason"], r["placed_by"],
                   r["partition"], r["zone"], r["id"], r["ended_at"], r["ended_by"])

    def place_sentence(self) -> str:
        """The audit line: 'Zone 4 of account 1001 placed on test by ivan
        until 2026-03-27 15:30 UTC: detector swap.'"""
        return "%s placed on test by %s until %s: %s." % (
            self.words()[:1].upper() + self.words()[1:], self.by, _utc(self.ends_at),
            self.reason)

    def active(self, at: float) -> bool:
        end = self.ends_at if self.ended_at is None else min(self.ends_at, self.ended_at)
        return self.starts_at <= at < end

    def covers(self, account: str, partition: int, zone: int, code: int, at: float) -> bool:
        if account != self.account or not self.active(at):
            return False
        if self.zone is not None:
            return zone == self.zone and contactid.number_kind(code) == contactid.ZONE
        if self.partition is not None:
            return partition == self.partition
        return True

    def check(self, now: float) -> None:
        """Refuse what cannot be meant (the store calls it before writing)."""
        if not self.reason or not self.reason.strip():
            raise PlacementError("placing %s on test needs a reason" % self.words())
        if not self.by:
            raise PlacementError("placing %s on test needs who asks for it" % self.words())
        for name in ("partition", "zone"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise PlacementError("the %s to place on test is a number from 1" % name)
        past = PlacementError("a test of %s that ends in the past places nothing on test"
                              % self.words())
        if self.ends_at < min(self.starts_at, now):
            raise past  # (before it starts, too: the past is what is wrong)
        if not self.ends_at > self.starts_at:
            raise PlacementError("a test of %s must end after it starts" % self.words())
        if self.ends_at - self.starts_at > MAX_TEST_S:
            raise PlacementError("a test lasts at most %d h (asked: %.1f h for %s)" % (
                MAX_TEST_S // 3600, (self.ends_at - self.starts_at) / 3600, self.words()))
        if self.ends_at <= now:
            raise past


# What a placement is doing at a time (:func:`status`), for the console's
# lists: the code and its words.
ON_TEST = "on_test"
NOT_STARTED = "not_started"
TIME_UP = "time_up"
ENDED = "ended"


def status(p: Placement, now: float) -> tuple[str, str]:
    """(code, words) of ``p`` at ``now``: ON_TEST 'on test' only while it
    covers events (:meth:`Placement.active`); a placement whose time is up
    is TIME_UP 'ended (time up)' whether or not the receiver's timer has
    written its end yet (it covers nothing either way); ENDED 'ended early
    by olga'; NOT_STARTED 'not started yet'."""
    if p.active(now):
        return ON_TEST, "on test"
    if p.ended_at is not None and p.ended_at < p.ends_at:
        return ENDED, "ended early by %s" % p.ended_by
    if now >= p.ends_at or p.ended_at is not None:
        return TIME_UP, "ended (time up)"
    return NOT_STARTED, "not started yet"


def what_words(p: Placement, zone_name: str = "", partition_name: str = "") -> str:
    """What ``p`` covers beside its site's name: 'the whole account',
    'partition 2 (vault)', 'zone 4 (teller hold-up button)' (the account's
    names, when it has them)."""
    if p.zone is not None:
        return "zone %d" % p.zone + (" (%s)" % zone_name if zone_name else "")
    if p.partition is not None:
        return "partition %d" % p.partition + (" (%s)" % partition_name if partition_name else "")
    return "the whole account"


def under_test(placements, account: str, partition: int, zone: int, code: int,
               at: float) -> Placement | None:
    """The placement an event (received at ``at``) falls under, or None.
    Of several, the one that runs longest (the console names it)."""
    best = None
    for p in placements:
        if p.covers(account, partition, zone, code, at) and (
                best is None or p.ends_at > best.ends_at):
            best = p
    return best


def due_to_end(placements, now: float) -> list[Placement]:
    """The placements whose time is up by ``now`` and that nobody ended:
    the scheduler ends each (``end(p, p.ends_at, 'receiver')``) with an
    audit row, in order."""
    return sorted((p for p in placements if p.ended_at is None and p.ends_at <= now),
                  key=lambda p: (p.ends_at, p.id or 0))


def end(p: Placement, at: float, by: str) -> Placement:
    """The placement ended at ``at`` by ``by`` ('receiver': its time was
    up).  Ending one that has ended is refused."""
    if p.ended_at is not None:
        raise PlacementError("the test of %s has already ended" % p.words())
    return replace(p, ended_at=min(at, p.ends_at), ended_by=by)


def _utc(t: float) -> str:
    return _time.strftime("%Y-%m-%d %H:%M UTC", _time.gmtime(t))


def end_sentence(p: Placement) -> str:
    """The audit line: 'Test of zone 4 of account 1001 ended by the
    receiver: its time was up (placed by ivan: detector replacement).'"""
    if p.ended_by == "receiver":
        how = "ended by the receiver: its time was up"
    else:
        how = "ended early by %s" % p.ended_by
    return "Test of %s %s (placed by %s: %s)." % (p.words(), how, p.by, p.reason)
