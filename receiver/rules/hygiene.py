"""Signal hygiene: runaway zones, incidents and restores (sans-I/O).

A zone that chatters must not bury a real hold-up, and an operator works
one incident, not twelve rows.  Three decisions the store's ingest plan
takes for each new event that would open an alarm (or, for a restore, for
each alarm it matches), each a function of the event and a small state the
store reads in the same transaction:

**Runaway suppression** (:func:`runaway`).  Per (account, zone), the alarms
opened in the last ``window_s``: when a new one would make more than
``max_alarms`` of them, the zone is *held*.  That alarm is opened as the
hold's anchor ("zone 4 held: more than 5 alarms in 10 min"), and the
zone's following alarms open nothing: each is stored, attached to the
anchor and counted ("zone 4: 37 more signals").  The hold lasts until an
operator releases it; counting then starts again.  Hold-up (duress
included) and fire are never held, nor counted: each opens its alarm.

**Grouping** (:func:`group`).  Per site: an alarm that arrives within
``window_s`` of the latest member of the site's open incident joins it;
otherwise it heads a new one.  The incident is the head alarm's id
(``alarms.incident_id``); the console shows the head with each member and
orders incidents by their most urgent member.  An incident whose head is
resolved is closed to newcomers.

**Restores** (:func:`on_restore`).  A restore never closes an alarm by
itself: it is stamped on the alarm it restores (``restored_at``), which the
operator sees.  Per class, :class:`RestorePolicy` may resolve a trouble
alarm on its restore, with the disposition ``restored`` and the receiver as
actor: only classes in :data:`AUTO_RESOLVABLE`, by default only while
nobody has acknowledged the alarm (an operator working it decides), and
never while someone began its action plan and left a mandatory step open
(left open, the restore shown and audited with why: an operator's own
resolve would be refused then too).

The state each decision needs, and how the store keeps it, is in
docs/rules-design.md ("Ingest: where each rule runs").  Every decision here is a record
in, a record out: batches are decided in arrival order, each decision's new
state feeding the next.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from receiver import alarms as _alarms

# Classes never held however often they come: a real hold-up, duress
# (class holdup, 121) and fire are always an alarm each.
NEVER_HELD = frozenset(("holdup", "fire"))
# Classes whose alarms a restore may resolve by policy: a condition that
# went away.  An intrusion, a hold-up, a fire or a tamper that "restores"
# has not ended what it reported.
AUTO_RESOLVABLE = frozenset(("trouble", "environmental"))
RESTORED = "restored"  # the disposition of an alarm resolved by its restore


class HygieneError(ValueError):
    """A policy that cannot be used (configuration), in words."""


# -- runaway suppression ----------------------------------------------------------------


@dataclass(frozen=True)
class RunawayPolicy:
    """More than ``max_alarms`` alarms of one zone within ``window_s``
    holds it (receiver.toml ``[hygiene] runaway_alarms``,
    ``runaway_window_s``)."""

    max_alarms: int = 5
    window_s: int = 600

    def __post_init__(self):
        if not isinstance(self.max_alarms, int) or self.max_alarms < 1:
            raise HygieneError("runaway_alarms must be a whole number of alarms from 1")
        if not isinstance(self.window_s, int) or not 60 <= self.window_s <= 86400:
            raise HygieneError("runaway_window_s must be whole seconds from 60 to 86400")


@dataclass(frozen=True)
class ZoneState:
    """What the store knows of one (account, zone): the instants of its
    alarms opened within the window since its last release (oldest first),
    and its hold (the anchor alarm and the signals counted on it)."""

    recent: tuple = ()
    held_by: object = None  # the anchor alarm (its id, or a plan placeholder)
    held_signals: int = 0


OPEN = "open"  # an ordinary alarm
HOLD = "hold"  # open this alarm as the zone's anchor, and hold the zone
ATTACH = "attach"  # no alarm: attach the event to the anchor, count it


@dataclass(frozen=True)
class RunawayDecision:
    action: str
    anchor: object = None  # for ATTACH: the alarm it is counted on
    note: str = ""  # the words on the anchor ("zone 4: 37 more signals")


def runaway(policy: RunawayPolicy, state: ZoneState, event_class: str, zone: int,
            at: float, ref) -> tuple[RunawayDecision, ZoneState]:
    """Decide one would-be alarm of ``zone`` at ``at``.  Returns the
    decision and the zone's state after it.  The caller passes only events
    whose number is a zone (``protocol.contactid.number_kind``), not 0,
    that open an alarm.  ``ref`` names the alarm this event would open (an
    alarm id, or the ingest plan's placeholder for an alarm of the same
    batch, resolved to its id when the batch's alarms are inserted): after
    HOLD the zone is held by it."""
    if event_class in NEVER_HELD:
        return RunawayDecision(OPEN), state
    if state.held_by is not None:
        n = state.held_signals + 1
        return (RunawayDecision(ATTACH, state.held_by, signals_sentence(zone, n)),
                replace(state, held_signals=n))
    recent = tuple(t for t in state.recent if t > at - policy.window_s) + (at,)
    if len(recent) > policy.max_alarms:
        return (RunawayDecision(HOLD, None, "zone %d held: more than %d alarms in %s"
                                % (zone, policy.max_alarms, _minutes(policy.window_s))),
                replace(state, recent=recent, held_by=ref, held_signals=0))
    return RunawayDecision(OPEN), replace(state, recent=recent)


def release() -> ZoneState:
    """The state of a zone an operator released: it starts counting afresh
    (the store writes released_at/released_by on the hold)."""
    return ZoneState()


def signals_sentence(zone: int, n: int) -> str:
    return "zone %d: %d more signal%s" % (zone, n, "" if n == 1 else "s")


def _minutes(s: int) -> str:
    return "%d min" % (s // 60) if s % 60 == 0 else "%d s" % s


# -- grouping -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupingPolicy:
    """An alarm within ``window_s`` of its site's open incident's latest
    member joins it (``[hygiene] group_window_s``; 0: no grouping)."""

    window_s: int = 300

    def __post_init__(self):
        if not isinstance(self.window_s, int) or not 0 <= self.window_s <= 3600:
            raise HygieneError("group_window_s must be whole seconds from 0 to 3600")


@dataclass(frozen=True)
class SiteState:
    """The site's newest incident: its head alarm, whether the head is
    resolved, and when its latest member arrived (None: no incident)."""

    incident: object = None  # its head: an alarm id, or a plan's placeholder
    head_resolved: bool = False
    last_member_at: float = 0.0


def group(policy: GroupingPolicy, state: SiteState, at: float) -> object:
    """The incident (head alarm id) a new alarm at ``at`` joins, or None:
    it heads a new one (its own id becomes the incident)."""
    if policy.window_s == 0 or state.incident is None or state.head_resolved:
        return None
    if at - state.last_member_at > policy.window_s:
        return None
    return state.incident


def joined(state: SiteState, incident: object, at: float) -> SiteState:
    """The site's state after an alarm at ``at`` joined or headed
    ``incident``."""
    if incident != state.incident:
        return SiteState(incident, False, at)
    return replace(state, last_member_at=max(state.last_member_at, at))


def incident_priority(member_priorities) -> int:
    """An incident is as urgent as its most urgent member."""
    return min(member_priorities)


# -- restores -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RestorePolicy:
    """``auto_resolve``: classes whose alarms a restore resolves
    (``[hygiene] auto_resolve_on_restore``); ``pending_only``: only while
    nobody has acknowledged them."""

    auto_resolve: frozenset = frozenset()
    pending_only: bool = True

    def __post_init__(self):
        bad = set(self.auto_resolve) - AUTO_RESOLVABLE
        if bad:
            raise HygieneError(
                "auto_resolve_on_restore: %s cannot be resolved by a restore (allowed: %s); "
                "an intrusion, hold-up, fire or tamper that restores has not ended"
                % (", ".join(sorted(bad)), ", ".join(sorted(AUTO_RESOLVABLE))))


STAMP = "stamp"  # show the restore on the alarm
RESOLVE = "resolve"  # and resolve it, disposition 'restored'
LEAVE_OPEN = "leave_open"  # the policy would resolve it, its plan keeps it open: say why


@dataclass(frozen=True)
class RestoreDecision:
    alarm_id: int
    action: str
    note: str


def on_restore(policy: RestorePolicy, alarm_id: int, event_class: str, state: str,
               restored_at_text: str, handler: str | None = None,
               plan_keeps_open: str = "") -> RestoreDecision:
    """What a restore does to an alarm it matches (same account, code,
    partition and zone, not resolved, raised before it: the ingest plan
    finds them).  ``restored_at_text``: the restore's time in words;
    ``handler``: the operator who took the alarm, if any: the receiver never
    resolves an alarm under an operator's hands, it only shows the restore.
    ``plan_keeps_open``: why its action plan keeps it open
    (receiver.workflow.steps.left_to_a_person: someone began the plan and
    left a mandatory step open), "" when it does not: the policy then
    leaves it open too (LEAVE_OPEN, audited with why), as an operator's
    resolve would be refused."""
    if state == _alarms.RESOLVED:
        raise ValueError("a restore matches only alarms that are not resolved")
    if handler:
        return RestoreDecision(alarm_id, STAMP, "restored at %s; %s handles it"
                               % (restored_at_text, handler))
    if event_class in policy.auto_resolve and (
            state == _alarms.PENDING or not policy.pending_only):
        _alarms.next_state(state, _alarms.RESOLVE)  # the state machine allows it
        if plan_keeps_open:
            return RestoreDecision(alarm_id, LEAVE_OPEN, plan_keeps_open)
        return RestoreDecision(alarm_id, RESOLVE,
                               "restored at %s; resolved by the receiver (policy for %s)"
                               % (restored_at_text, event_class))
    return RestoreDecision(alarm_id, STAMP, "restored at %s" % restored_at_text)
