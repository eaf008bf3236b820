"""Event classification and the operator alarm queue's state machine.

Every stored event is classified once, at ingest, through the Contact ID
table (``protocol.contactid``): class (holdup, fire, medical, burglary,
environmental, tamper, trouble, status, test, other), priority (1 = most
urgent) and the operator's one-line description.  What an event *does* is
decided per code by the :class:`AlarmPolicy` (receiver.toml ``[alarms]``):

- ``alarm``: a new event (qualifier 1, DC-05) opens an alarm in the operator
  queue and is routed to the dispatch centres;
- ``status``: no alarm; the site view lists it as an open condition until
  it is restored;
- ``event``: stored and shown in the history only (a panel's boot report,
  305 "System reset", is this by default: it comes with every start).

An alarm then moves through:

    pending --acknowledge--> acknowledged --resolve--> resolved
    pending --resolve-----------------------------------^

An operator may resolve straight from pending (a false alarm closed from
the list); nothing leaves ``resolved``.  Every transition is written to
``alarm_audit`` in the same transaction as the state change, with who and
when.  A restore (qualifier 3) of the same account/code/partition/zone
stamps ``restored_at`` on the open alarm but never resolves it: closing an
alarm is an operator's decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol import contactid

PENDING = "pending"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
STATES = (PENDING, ACKNOWLEDGED, RESOLVED)

ACKNOWLEDGE = "acknowledge"
RESOLVE = "resolve"

# TRANSITIONS[state][action] -> next state; a missing entry is refused.
TRANSITIONS = {
    PENDING: {ACKNOWLEDGE: ACKNOWLEDGED, RESOLVE: RESOLVED},
    ACKNOWLEDGED: {RESOLVE: RESOLVED},
    RESOLVED: {},
}

# Default: the Contact ID table's own list (every class but status, test,
# other).  A site may narrow it in receiver.toml ([alarms] queue_classes).
DEFAULT_QUEUE_CLASSES = frozenset(contactid.ALARM_CLASSES)
CLASSES = tuple(contactid.CLASSES)


class AlarmStateError(Exception):
    """The operator asked for a transition the state machine does not allow
    (or the alarm does not exist)."""


def next_state(state: str, action: str) -> str:
    try:
        return TRANSITIONS[state][action]
    except KeyError:
        raise AlarmStateError("cannot %s an alarm that is %s" % (action, state)) from None


def classify(code: int, qualifier: int, zone: int | None = None,
             partition: int | None = None, zone_name: str | None = None,
             partition_name: str | None = None,
             detail: str | None = None) -> tuple[str, int, str]:
    """(event class, priority, description) of a Contact ID event."""
    cls = contactid.event_class(code)
    desc = contactid.describe(code, qualifier, zone=zone, zone_name=zone_name,
                              partition=partition, partition_name=partition_name,
                              detail=detail)
    return cls, contactid.priority(cls, code), desc


# What an event does (see the module docstring).
ALARM = "alarm"
STATUS = "status"
EVENT = "event"
DISPOSITIONS = (ALARM, STATUS, EVENT)

# Per-code decisions that differ from the code's class.  receiver.toml
# [alarms.codes] adds to and overrides these (docs/receiver.md).
DEFAULT_CODES = {
    # 305 "System reset": the firmware sends it once per start
    # (firmware/device/app.py), so a clean restart (an update, a planned
    # power-down) must not page anyone.  A restart that matters shows by
    # itself: a power loss as 301 "AC loss", a panel silent past its
    # supervision time as the receiver's 350, a watchdog reset in the
    # history next to what preceded it.
    305: EVENT,
}
_CONDITION_CLASSES = frozenset(("trouble", "tamper"))


@dataclass(frozen=True)
class AlarmPolicy:
    """Which events open an alarm: per code (``codes``), else by class (a
    class in ``queue_classes`` is ``alarm``; trouble and tamper outside it
    are ``status``; anything else ``event``)."""

    queue_classes: frozenset = DEFAULT_QUEUE_CLASSES
    codes: dict = field(default_factory=lambda: dict(DEFAULT_CODES))

    def disposition(self, code: int, event_class: str | None = None) -> str:
        d = self.codes.get(code)
        if d is not None:
            return d
        cls = contactid.event_class(code) if event_class is None else event_class
        if cls in self.queue_classes:
            return ALARM
        return STATUS if cls in _CONDITION_CLASSES else EVENT

    def opens_alarm(self, qualifier: int, code: int, event_class: str | None = None) -> bool:
        """A new (qualifier 1) event whose code is an alarm."""
        return qualifier == 1 and self.disposition(code, event_class) == ALARM

    def is_condition(self, code: int, event_class: str) -> bool:
        """Is an unrestored report of this code an open condition of the site
        (trouble and tamper alarms, and every ``status`` code)?"""
        d = self.disposition(code, event_class)
        return d == STATUS or (d == ALARM and event_class in _CONDITION_CLASSES)


DEFAULT_POLICY = AlarmPolicy()


# -- the audit trail in words -------------------------------------------------------

# Routing levels in the order an operator reads them (receiver.routing).
LEVEL_WORDS = (("police_station", "police station"),
               ("district_command", "district command"),
               ("municipal_center", "municipal centre"))


def and_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c' (the audit trail's and the workflow's lists)."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def routing_sentence(routed_to: dict | None, center_names: dict) -> str:
    """'routed to Central Police Station (police station) and District 1
    Command (district command)'; ``center_names`` maps a centre id to its
    name (an id no longer configured is shown as it is)."""
    parts = ["%s (%s)" % (center_names.get(cid) or cid, words)
             for level, words in LEVEL_WORDS
             for cid in [(routed_to or {}).get(level)] if cid]
    return "routed to " + and_list(parts) if parts else "not routed to any dispatch centre"


def audit_sentence(row: dict, routed_to: dict | None, center_names: dict) -> str:
    """One ``alarm_audit`` row as a sentence: 'Raised by the receiver and
    routed to ...', 'Acknowledged by olga.', 'Resolved by olga.'  (The
    operator's note is shown as written, next to it.)  A row that leaves
    the state as it was (:func:`is_note_row`) is its own sentence."""
    actor, to = row.get("actor") or "someone", row.get("to_state")
    if is_note_row(row) and row.get("note"):
        # something done about the alarm that does not move its state (a
        # patrol dispatched, arrived: receiver.vehicles.patrols): the
        # sentence was written with it
        return row["note"]
    if row.get("from_state") is None and to == PENDING:
        who = "the receiver" if actor == "receiver" else actor
        return "Raised by %s and %s." % (who, routing_sentence(routed_to, center_names))
    if to == ACKNOWLEDGED:
        return "Acknowledged by %s." % actor
    if to == RESOLVED:
        return "Resolved by %s." % actor
    return "%s by %s." % (str(to).capitalize(), actor)


def is_note_row(row: dict) -> bool:
    """An audit row that records something done without a state change
    (its note is its sentence, not an operator's note)."""
    return row.get("from_state") is not None and row.get("from_state") == row.get("to_state")
