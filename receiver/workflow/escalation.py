"""Escalation: timers per alarm class and priority, and a pure scheduler
that says which escalations are due.

Three escalations (:data:`KINDS`):

- ``ack``: an alarm still *pending* ``ack_within_s`` after it was raised:
  every console shows the escalation alert and the supervisors are
  notified;
- ``resolve``: an alarm not *resolved* ``resolve_within_min`` after it was
  raised goes to the supervisor queue;
- ``wait``: a started ``wait`` step whose minutes are over: the handler is
  told to recheck.

**Policy** (``[escalation]`` in the plans file): a rule's two numbers come
field by field from the alarm's class (``[escalation.classes.holdup]``),
else its priority (``[escalation.priorities]`` ``"2" = {...}``), else the
defaults.  When an alarm opens, :meth:`EscalationPolicy.deadlines` turns
them into two absolute times stored on the alarm row (``ack_due_at``,
``resolve_due_at``): a later change of the policy does not move the
deadlines of alarms already open, and every receiver reads the same row.

**Scheduler** (:func:`due`, :func:`next_due`): fed the open alarms' timer
columns and ``now``; returns the escalations due.  It keeps no state of its
own: whether an escalation has fired is a column of the row
(``ack_escalated_at``, ``resolve_escalated_at``, the step's
``reminded_at``), so a restart, or a takeover by another receiver on
PostgreSQL, neither loses nor repeats one.  Each fires once because the
store stamps the column with a compare-and-set whose condition is
:meth:`Escalation.still_due` (docs/workflow-design.md gives the SQL): of
two receivers seeing the same escalation due, one stamps the row and
alerts, the other's update matches no row.  An escalation whose condition
ended before the scheduler saw it (acknowledged late, after a receiver
outage) does not fire: someone is on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol import contactid
from receiver.alarms import PENDING, RESOLVED
from receiver.workflow import audit as _audit
from receiver.workflow.common import WorkflowConfigError, check_keys, integer

ACK = "ack"
RESOLVE = "resolve"
WAIT = "wait"
KINDS = (ACK, RESOLVE, WAIT)

# The step state a started wait is in (receiver.workflow.steps.WAITING; a
# leaf constant here so the steps module may import this one).
STEP_WAITING = "waiting"

# Defaults, and where the numbers come from.  EN 50518 (monitoring and
# alarm receiving centres) asks that alarms be accepted within 30 s (80 %)
# and 60 s (98.5 %): an alarm pending for 60 s is already outside the
# norm's tail.  A hold-up is a life threat with the attacker present:
# 15 s.  Fire: 30 s (the norm's 80 % figure).  Resolution: an hour, half
# of it for a hold-up (police are on site within minutes; an alarm open
# longer needs a supervisor's eyes); a trouble waits for a technician, so a
# shift (8 h) before a supervisor looks.
DEFAULT_ACK_S = 60
DEFAULT_RESOLVE_MIN = 60
DEFAULT_CLASS_RULES = {
    "holdup": {"ack_within_s": 15, "resolve_within_min": 30},
    "fire": {"ack_within_s": 30},
    "trouble": {"resolve_within_min": 480},
}
MAX_ACK_S = 3600  # an hour: anything longer is not an escalation
MAX_RESOLVE_MIN = 7 * 24 * 60  # a week
_RULE_KEYS = ("ack_within_s", "resolve_within_min")


@dataclass(frozen=True)
class Rule:
    ack_within_s: int
    resolve_within_min: int


@dataclass(frozen=True)
class Deadlines:
    ack_due_at: float
    resolve_due_at: float
    ack_within_s: int
    resolve_within_min: int


@dataclass(frozen=True)
class EscalationPolicy:
    default: Rule = Rule(DEFAULT_ACK_S, DEFAULT_RESOLVE_MIN)
    classes: dict = field(default_factory=lambda: {k: dict(v) for k, v in
                                                   DEFAULT_CLASS_RULES.items()})
    priorities: dict = field(default_factory=dict)  # priority (int) -> partial rule

    def rule_for(self, event_class: str, priority: int) -> Rule:
        """Field by field: the class's, else the priority's, else the default."""
        layers = (self.classes.get(event_class, {}), self.priorities.get(priority, {}),
                  {"ack_within_s": self.default.ack_within_s,
                   "resolve_within_min": self.default.resolve_within_min})
        return Rule(*(next(layer[k] for layer in layers if k in layer) for k in _RULE_KEYS))

    def deadlines(self, event_class: str, priority: int, created_at: float) -> Deadlines:
        r = self.rule_for(event_class, priority)
        return Deadlines(created_at + r.ack_within_s, created_at + 60 * r.resolve_within_min,
                         r.ack_within_s, r.resolve_within_min)

    def to_json(self) -> dict:
        return {"default": {"ack_within_s": self.default.ack_within_s,
                            "resolve_within_min": self.default.resolve_within_min},
                "classes": self.classes,
                "priorities": {str(k): v for k, v in sorted(self.priorities.items())}}


def _partial(t, where: str) -> dict:
    check_keys(t, _RULE_KEYS, where)
    out = {}
    if "ack_within_s" in t:
        out["ack_within_s"] = integer(t["ack_within_s"], where + ".ack_within_s", 1, MAX_ACK_S)
    if "resolve_within_min" in t:
        out["resolve_within_min"] = integer(t["resolve_within_min"],
                                            where + ".resolve_within_min", 1, MAX_RESOLVE_MIN)
    return out


def parse_policy(t, where: str = "[escalation]") -> EscalationPolicy:
    """The ``[escalation]`` table of a plans file.  Classes given there
    replace the built-in class rules (DEFAULT_CLASS_RULES) one class at a
    time; a class left out keeps its built-in rule."""
    check_keys(t, _RULE_KEYS + ("classes", "priorities"), where)
    top = _partial({k: v for k, v in t.items() if k in _RULE_KEYS}, where)
    default = Rule(top.get("ack_within_s", DEFAULT_ACK_S),
                   top.get("resolve_within_min", DEFAULT_RESOLVE_MIN))
    classes = {k: dict(v) for k, v in DEFAULT_CLASS_RULES.items()}
    ct = t.get("classes", {})
    if not isinstance(ct, dict):
        raise WorkflowConfigError(where + ".classes", "must be a table")
    for cls, rule in ct.items():
        w = "%s.classes.%s" % (where, cls)
        if cls not in contactid.CLASSES:
            raise WorkflowConfigError(w, "unknown alarm class (known: %s)"
                                      % ", ".join(contactid.CLASSES))
        classes[cls] = _partial(rule, w)
    priorities = {}
    pt = t.get("priorities", {})
    if not isinstance(pt, dict):
        raise WorkflowConfigError(where + ".priorities", "must be a table")
    for key, rule in pt.items():
        w = "%s.priorities.%s" % (where, key)
        if not (isinstance(key, str) and key.isascii() and key.isdigit()) \
                or not 1 <= int(key) <= len(contactid.CLASSES) + 1:
            raise WorkflowConfigError(w, "a priority is a number from 1 (most urgent) to %d"
                                      % (len(contactid.CLASSES) + 1))
        priorities[int(key)] = _partial(rule, w)
    return EscalationPolicy(default, classes, priorities)


# -- the scheduler ------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmTimers:
    """The timer columns of one alarm row."""

    alarm_id: int
    state: str  # receiver.alarms state
    ack_due_at: float | None
    resolve_due_at: float | None
    ack_within_s: int = 0
    resolve_within_min: int = 0
    ack_escalated_at: float | None = None
    resolve_escalated_at: float | None = None


@dataclass(frozen=True)
class WaitTimer:
    """A started wait step (its alarm's state comes with it)."""

    alarm_id: int
    position: int
    title: str
    minutes: int
    alarm_state: str
    step_state: str
    due_at: float
    reminded_at: float | None = None


@dataclass(frozen=True)
class Escalation:
    kind: str  # ACK | RESOLVE | WAIT
    alarm_id: int
    due_at: float
    position: int | None = None  # WAIT: the step
    detail: dict = field(default_factory=dict, compare=False)

    def still_due(self, row) -> bool:
        """The compare-and-set condition: is the escalation still to fire
        on ``row`` (an AlarmTimers, or a WaitTimer for WAIT) as it is now?"""
        return _open(self.kind, row)

    def audit(self, at: float) -> _audit.AuditRecord:
        action = {ACK: _audit.ESCALATION_ACK, RESOLVE: _audit.ESCALATION_RESOLVE,
                  WAIT: _audit.ESCALATION_WAIT}[self.kind]
        return _audit.AuditRecord(self.alarm_id, at, _audit.RECEIVER, action, dict(self.detail))


def _open(kind: str, row) -> bool:
    """Whether an escalation of ``kind`` is still to fire on ``row`` (not
    yet stamped, and its condition holds); one home for the rule the
    scheduler and the compare-and-set share."""
    if kind == ACK:
        return row.state == PENDING and row.ack_escalated_at is None \
            and row.ack_due_at is not None
    if kind == RESOLVE:
        return row.state != RESOLVED and row.resolve_escalated_at is None \
            and row.resolve_due_at is not None
    return row.alarm_state != RESOLVED and row.step_state == STEP_WAITING \
        and row.reminded_at is None


def _candidates(alarms, waits):
    for a in alarms:
        if _open(ACK, a):
            yield Escalation(ACK, a.alarm_id, a.ack_due_at,
                             detail={"within_s": a.ack_within_s})
        if _open(RESOLVE, a):
            yield Escalation(RESOLVE, a.alarm_id, a.resolve_due_at,
                             detail={"within_s": 60 * a.resolve_within_min})
    for w in waits:
        if _open(WAIT, w):
            yield Escalation(WAIT, w.alarm_id, w.due_at, w.position,
                             {"position": w.position, "title": w.title, "minutes": w.minutes})


def due(alarms, waits, now: float) -> list[Escalation]:
    """The escalations due at ``now``, oldest deadline first."""
    return sorted((e for e in _candidates(alarms, waits) if e.due_at <= now),
                  key=lambda e: (e.due_at, e.alarm_id, KINDS.index(e.kind), e.position or 0))


def next_due(alarms, waits, now: float) -> float | None:
    """When the scheduler next has something to do (None: nothing pending);
    the runner sleeps until then or until an alarm changes."""
    times = [e.due_at for e in _candidates(alarms, waits) if e.due_at > now]
    return min(times) if times else None
