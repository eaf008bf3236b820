"""Claiming: who handles an alarm, since when, and races decided once.

An alarm is handled by at most one person (``handler``, since
``handler_since``); every console shows it ("being handled by olga, 40 s").
The claim carries a revision (``claim_rev``) that every claim change moves
on by one.

- **Claim**: take an alarm nobody handles.  Acknowledging, or any action on
  an unclaimed alarm (a step, a call, resolving), claims it in the same
  transaction (:func:`authorize`).
- **Take over**: only explicit, and only of the handler the person saw:
  the request carries the revision it was decided from.  If the claim moved
  meanwhile (released, taken by a third), the take-over is refused with what
  happened instead, and the person decides again.
- **Release**: the handler gives it back (a supervisor may release anyone's).

Every decision here is made from a :class:`Claim` as it was read, and is
applied by the store as a compare-and-set (:meth:`Claim.cas` is the
reference; docs/workflow-design.md gives the SQL)::

    UPDATE alarms SET handler = :handler, handler_since = :since,
                      claim_rev = :expect_rev + 1
     WHERE id = :id AND claim_rev = :expect_rev AND state <> 'resolved'

One row matched: this request won.  None: someone else's change came first;
the edge reads the row again and decides again (an implicit claim), or
tells the person (an explicit take-over).  Actions on the alarm (steps,
calls, resolving) carry the same ``claim_rev = :expect_rev`` condition, so
an operator acting on a stale view of who handles the alarm changes nothing:
two people never act as its handler at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from receiver.alarms import RESOLVED
from receiver.supervision import duration_text
from receiver.workflow import audit as _audit
from receiver.workflow.common import ActionRefused


@dataclass(frozen=True)
class Claim:
    handler: str | None = None
    since: float | None = None
    rev: int = 0

    def cas(self, change: "ClaimChange", alarm_state: str) -> "Claim | None":
        """The store's compare-and-set: the new claim, or None (lost)."""
        if self.rev != change.expect_rev or alarm_state == RESOLVED:
            return None
        return change.after

    def banner(self, now: float) -> str:
        """'being handled by olga, 40 s' ('' when nobody handles it)."""
        if self.handler is None:
            return ""
        return "being handled by %s, %s" % (self.handler,
                                            duration_text(now - (self.since or now)))


@dataclass(frozen=True)
class ClaimChange:
    expect_rev: int  # the compare-and-set: claim_rev must still be this
    after: Claim
    audit: _audit.AuditRecord


@dataclass(frozen=True)
class Authorization:
    """May ``actor`` act on the alarm: yes, on condition that the claim is
    still at ``expect_rev`` (the action's compare-and-set), after applying
    ``claim`` when the alarm was unclaimed (an implicit claim)."""

    expect_rev: int
    claim: ClaimChange | None = None


def _open(alarm_state: str) -> None:
    if alarm_state == RESOLVED:
        raise ActionRefused("the alarm is resolved: nobody handles it any more")


def _held_by_other(current: Claim, actor: str, now: float) -> ActionRefused:
    return ActionRefused("%s: take it over to act on it" % current.banner(now).capitalize())


def _change(alarm_id, current: Claim, handler, now, action, actor, detail) -> ClaimChange:
    after = Claim(handler, now if handler is not None else None, current.rev + 1)
    return ClaimChange(current.rev, after,
                       _audit.AuditRecord(alarm_id, now, actor, action, detail))


def claim(alarm_id: int, current: Claim, alarm_state: str, actor: str,
          now: float) -> ClaimChange | None:
    """Take an alarm nobody handles; None when ``actor`` already has it."""
    _open(alarm_state)
    if current.handler == actor:
        return None
    if current.handler is not None:
        raise _held_by_other(current, actor, now)
    return _change(alarm_id, current, actor, now, _audit.CLAIM, actor, {})


def take_over(alarm_id: int, current: Claim, alarm_state: str, actor: str, now: float,
              seen_rev: int) -> ClaimChange | None:
    """Take the alarm from the handler ``actor`` saw at ``seen_rev``."""
    _open(alarm_state)
    if current.handler == actor:
        return None
    if current.rev != seen_rev:
        now_words = current.banner(now) or "nobody handles it now"
        raise ActionRefused("the alarm changed hands since you looked (%s): look again "
                            "before taking it over" % now_words)
    if current.handler is None:
        raise ActionRefused("nobody handles the alarm: take it instead")
    return _change(alarm_id, current, actor, now, _audit.TAKE_OVER, actor,
                   {"from": current.handler, "held_s": round(now - (current.since or now), 1)})


def release(alarm_id: int, current: Claim, alarm_state: str, actor: str, now: float,
            may_release_others: bool = False) -> ClaimChange:
    """Give the alarm back (a supervisor's ``may_release_others``: anyone's)."""
    _open(alarm_state)
    if current.handler is None:
        raise ActionRefused("nobody handles the alarm")
    if current.handler != actor and not may_release_others:
        raise _held_by_other(current, actor, now)
    ch = _change(alarm_id, current, None, now, _audit.RELEASE, actor,
                 {"held_s": round(now - (current.since or now), 1)})
    if current.handler != actor:
        ch = replace(ch, audit=replace(ch.audit, detail={**ch.audit.detail,
                                                         "handler": current.handler}))
    return ch


def authorize(alarm_id: int, current: Claim, alarm_state: str, actor: str,
              now: float) -> Authorization:
    """Whether ``actor`` may act on the alarm (a step, a call, resolving):
    its handler may; anyone may when nobody handles it (claiming it); a
    person handled by someone else is refused (take it over first)."""
    _open(alarm_state)
    if current.handler == actor:
        return Authorization(current.rev)
    if current.handler is not None:
        raise _held_by_other(current, actor, now)
    ch = _change(alarm_id, current, actor, now, _audit.CLAIM, actor, {})
    return Authorization(ch.after.rev, ch)
