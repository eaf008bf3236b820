"""Event classification and the operator alarm queue's state machine.

Every stored event is classified once, at ingest, through the Contact ID
table (``protocol.contactid``): class (holdup, fire, medical, burglary,
environmental, tamper, trouble, status, test, other), priority (1 = most
urgent) and the operator's one-line description.  A *new* event (qualifier
1, DC-05) of an alarm class opens an alarm in the operator queue:

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
             partition_name: str | None = None) -> tuple[str, int, str]:
    """(event class, priority, description) of a Contact ID event."""
    cls = contactid.event_class(code)
    desc = contactid.describe(code, qualifier, zone=zone, zone_name=zone_name,
                              partition=partition, partition_name=partition_name)
    return cls, contactid.priority(cls), desc


def opens_alarm(qualifier: int, event_class: str, queue_classes=DEFAULT_QUEUE_CLASSES) -> bool:
    return qualifier == 1 and event_class in queue_classes
