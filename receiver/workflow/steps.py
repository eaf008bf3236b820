"""An alarm's plan steps: their state machine, and the copy of a plan an
alarm keeps.

When an alarm opens, :func:`instantiate` copies its plan's steps into
:class:`StepRecord` rows of the alarm's own, with the titles in words
(the dispatch centre the alarm was routed to, the call list's class): a
later edit of the plans file changes nothing for an alarm already open.

Each step then moves through one table (:data:`TRANSITIONS`):

    open --start--> waiting          (a wait step: its minutes start)
    open | waiting --complete--> completed
    open | waiting --skip------> skipped    (a reason is required)
    open | waiting --fail------> failed     (a reason is required)

completed, skipped and failed are final: a mistake is put right with a
note, never by rewriting what was recorded.  A (state, action) pair not in
the table is refused (:class:`ActionRefused`), as are two rules of kind:
only a ``wait`` step is started, and a ``verify_passcode`` step is
completed only by a correct passcode entered on a call (``via`` =
:data:`VIA_PASSCODE`, receiver.workflow.handling), never by a tick.

Every change returns the new record and its :class:`AuditRecord`.  The
store applies it with a compare-and-set on the state it was decided from
(``... WHERE alarm_id = ? AND position = ? AND state = ?``), so two clicks
on the same step change it once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from protocol import contactid
from receiver.alarms import LEVEL_WORDS
from receiver.workflow import audit as _audit
from receiver.workflow import plans as _plans
from receiver.workflow.common import ActionRefused, reason_text
from receiver.workflow.escalation import STEP_WAITING

OPEN = "open"
WAITING = STEP_WAITING
COMPLETED = "completed"
SKIPPED = "skipped"
FAILED = "failed"
STATES = (OPEN, WAITING, COMPLETED, SKIPPED, FAILED)
FINAL = frozenset((COMPLETED, SKIPPED, FAILED))

START = "start"
COMPLETE = "complete"
SKIP = "skip"
FAIL = "fail"
ACTIONS = (START, COMPLETE, SKIP, FAIL)

# TRANSITIONS[state][action] -> next state; a missing entry is refused.
TRANSITIONS = {
    OPEN: {START: WAITING, COMPLETE: COMPLETED, SKIP: SKIPPED, FAIL: FAILED},
    WAITING: {COMPLETE: COMPLETED, SKIP: SKIPPED, FAIL: FAILED},
    COMPLETED: {},
    SKIPPED: {},
    FAILED: {},
}
NEEDS_REASON = frozenset((SKIP, FAIL))
_AUDIT_ACTION = {START: _audit.STEP_START, COMPLETE: _audit.STEP_COMPLETE,
                 SKIP: _audit.STEP_SKIP, FAIL: _audit.STEP_FAIL}
_ACTION_WORDS = {START: "started", COMPLETE: "completed", SKIP: "skipped", FAIL: "marked failed"}

VIA_OPERATOR = "operator"  # a person ticked, skipped or failed it
VIA_PASSCODE = "passcode"  # a correct passcode entered on a call
VIAS = (VIA_OPERATOR, VIA_PASSCODE)

_LEVEL_WORDS = dict(LEVEL_WORDS)


@dataclass(frozen=True)
class StepRecord:
    """One step of one alarm (a row of ``alarm_steps``)."""

    alarm_id: int | None  # None until the alarm is stored (its opening rows)
    position: int  # 1-based, the plan's order
    kind: str
    title: str  # in words, fixed when the alarm opened
    mandatory: bool
    text: str = ""
    params: dict = field(default_factory=dict)  # the kind's keys (call_order, target, ...)
    state: str = OPEN
    reason: str | None = None
    changed_by: str | None = None
    changed_at: float | None = None
    started_at: float | None = None  # a wait step: when it was started
    due_at: float | None = None  # a wait step: when to recheck
    reminded_at: float | None = None  # a wait step: when the scheduler reminded

    @property
    def is_open(self) -> bool:
        return self.state not in FINAL

    @property
    def label(self) -> str:
        return _audit.step_label(self.position, self.title)


def next_state(state: str, action: str) -> str:
    try:
        return TRANSITIONS[state][action]
    except KeyError:
        raise ActionRefused("a step that is %s cannot be %s" % (
            state, _ACTION_WORDS.get(action, action))) from None


def title_of(step: _plans.StepDef, event_class: str, routed_to: dict | None = None,
             center_names: dict | None = None) -> str:
    """The step's title in words, for this alarm."""
    if step.title:
        return step.title
    k = step.kind
    if k == _plans.CALL:
        order = step.call_order or event_class
        if order == _plans.DEFAULT_ORDER:
            return "Call the site's call list in order"
        return "Call the %s call list in order" % contactid.CLASS_LABELS.get(order, order)
    if k == _plans.VERIFY_PASSCODE:
        return "Verify the caller's passcode"
    if k == _plans.DISPATCH:
        if step.target == _plans.PATROL:
            return "Dispatch a patrol"
        words = _LEVEL_WORDS[step.target]
        cid = (routed_to or {}).get(step.target)
        if cid is None:
            return "Dispatch to the %s (none is routed for this alarm: call it directly)" % words
        return "Dispatch to the %s (%s)" % (words, (center_names or {}).get(cid) or cid)
    if k == _plans.NOTIFY:
        if step.to == _plans.NOTIFY_SUPERVISORS:
            return "Notify the supervisors"
        if step.to == _plans.NOTIFY_CONTACTS:
            return "Notify the site's %s" % (step.role or "contacts")
        return "Notify: %s" % _first_line(step.text)
    if k == _plans.WAIT:
        return "Wait %d minute%s, then recheck" % (step.minutes, "" if step.minutes == 1 else "s")
    return _first_line(step.text)


def _first_line(text: str, at_most: int = 80) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= at_most else line[:at_most - 1] + "…"


def instantiate(resolution: _plans.Resolution, event_class: str,
                routed_to: dict | None = None, center_names: dict | None = None,
                alarm_id: int | None = None) -> tuple:
    """The alarm's own copy of its plan's steps, all open."""
    out = []
    for i, s in enumerate(resolution.plan.steps):
        params = {k: v for k, v in s.to_json().items()
                  if k not in _plans.COMMON_KEYS and v not in ("", 0)}
        out.append(StepRecord(alarm_id, i + 1, s.kind, title_of(s, event_class, routed_to,
                                                                 center_names),
                              s.mandatory, s.text, params))
    return tuple(out)


@dataclass(frozen=True)
class StepChange:
    before: StepRecord
    after: StepRecord
    audit: _audit.AuditRecord


def apply(step: StepRecord, action: str, actor: str, now: float, reason: str | None = None,
          via: str = VIA_OPERATOR) -> StepChange:
    """Decide one change to a step; raises ActionRefused (nothing changed)."""
    if via not in VIAS:
        raise ValueError("via must be one of %s" % ", ".join(VIAS))
    new_state = next_state(step.state, action)
    if action == START and step.kind != _plans.WAIT:
        raise ActionRefused("only a wait step is started; %s is completed, skipped or failed"
                            % step.label)
    if action == COMPLETE and step.kind == _plans.VERIFY_PASSCODE and via != VIA_PASSCODE:
        raise ActionRefused("%s is completed by entering the passcode a contact gives on a "
                            "call, not by hand (skip or fail it with a reason instead)"
                            % step.label)
    if action in NEEDS_REASON:
        reason = reason_text(reason, "%s %s" % (_ACTION_WORDS[action].capitalize(), step.label))
    else:
        reason = None
    after = replace(step, state=new_state, reason=reason, changed_by=actor, changed_at=now)
    detail = {"position": step.position, "title": step.title}
    if action == START:
        minutes = int(step.params.get("minutes", 0))
        after = replace(after, started_at=now, due_at=now + 60 * minutes)
        detail["minutes"] = minutes
    if reason:
        detail["reason"] = reason
    if via != VIA_OPERATOR:
        detail["via"] = via
    return StepChange(step, after, _audit.AuditRecord(step.alarm_id, now, actor,
                                                      _AUDIT_ACTION[action], detail))


def open_mandatory(steps) -> list[StepRecord]:
    """The mandatory steps still open (open or waiting), in plan order."""
    return sorted((s for s in steps if s.mandatory and s.is_open), key=lambda s: s.position)


def left_to_a_person(steps) -> str:
    """Why the receiver must not close an alarm by itself because of its
    plan ("" when the plan does not stop it): a person began the plan and
    left a mandatory step open; they come back to it.  An alarm whose plan
    nobody touched may be closed: its open steps are moot, skipped with why
    (docs/workflow-design.md, section 5).  The receiver's every close asks
    this: a restore by policy (receiver.ingest) and a panel's cancel
    (receiver.workflow.handling.auto_close)."""
    left = open_mandatory(steps)
    started = [s for s in steps if s.changed_by not in (None, _audit.RECEIVER)]
    if left and started:
        return "%d mandatory step%s open" % (len(left), "" if len(left) == 1 else "s")
    return ""


def from_row(r) -> StepRecord:
    """A row of ``alarm_steps`` (either backend's row mapping)."""
    return StepRecord(r["alarm_id"], r["position"], r["kind"], r["title"], bool(r["mandatory"]),
                      r["text"], json.loads(r["params"] or "{}"), r["state"], r["reason"],
                      r["changed_by"], r["changed_at"], r["started_at"], r["due_at"],
                      r["reminded_at"])
