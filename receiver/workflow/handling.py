"""Working an alarm: the decisions the API, the CLI and the console share.

Each function takes what the store read (the alarm's state, its claim, its
steps and calls) and the request, and returns what to write: typed changes,
each with its compare-and-set condition and its audit records.  Nothing
here reads a clock or the store; the edge (the store's transaction) applies
the result or, when a condition no longer holds, reads again and asks
again.

- :func:`open_alarm`: at ingest, the plan an alarm gets (its steps copied),
  its escalation deadlines and the first workflow audit row.
- :func:`acknowledge`: acknowledging takes the alarm.
- :func:`act_on_step`: complete / skip / fail / start a step.
- :func:`record_call`: an operator's call outcome (reached, no answer,
  wrong number).
- :func:`check_passcode`: what a contact said on the phone, checked
  against their hashes: completes the passcode step, counts a wrong try,
  or, for the duress passcode, raises a hold-up alarm at once
  (:class:`DuressAlarm`).
- :func:`decide_resolve`: resolving needs a disposition and no open
  mandatory step, unless a supervisor overrides with a reason.
- :func:`auto_close`: the receiver's own resolutions (a restore, a
  panel's cancel) only when nobody works the alarm and nothing mandatory is
  open.

Every action by a person goes through :func:`receiver.workflow.claims.authorize`:
the handler acts, an unclaimed alarm is claimed by acting on it, an alarm
someone else handles is refused until taken over.
"""

from __future__ import annotations

from dataclasses import dataclass

import argon2

from protocol import contactid
from receiver import alarms as _alarms
from receiver.workflow import audit as _audit
from receiver.workflow import claims as _claims
from receiver.workflow import contacts as _contacts
from receiver.workflow import dispositions as _dispositions
from receiver.workflow import plans as _plans
from receiver.workflow import steps as _steps
from receiver.workflow.common import ActionRefused, reason_text
from receiver.workflow.escalation import Deadlines

# Wrong passcodes one contact may give on one alarm before checking stops:
# a person who knows the passcode gets it right within three tries; a caller
# guessing does not get a fourth.  The step is then failed by the operator
# ("caller not verified") and the plan goes on (dispatch).
MAX_PASSCODE_TRIES = 3
DURESS_CODE = 121  # Contact ID 121 "Duress": class hold-up


# -- opening ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Opening:
    """What the store writes with a new alarm (in the ingest transaction)."""

    resolution: _plans.Resolution
    steps: tuple  # StepRecords, alarm_id None until stored
    deadlines: Deadlines
    audit: _audit.AuditRecord

    def columns(self) -> dict:
        """The alarm row's workflow columns."""
        return {"plan_name": self.resolution.plan.name,
                "plan_hash": self.resolution.plan.hash,
                "plan_version": self.resolution.plan.version_label,
                "ack_due_at": self.deadlines.ack_due_at,
                "resolve_due_at": self.deadlines.resolve_due_at,
                "ack_within_s": self.deadlines.ack_within_s,
                "resolve_within_min": self.deadlines.resolve_within_min}


def open_alarm(ps: _plans.PlanSet, account: str, region: str, event_class: str, code: int,
               priority: int, created_at: float, routed_to: dict | None = None,
               center_names: dict | None = None) -> Opening:
    res = _plans.resolve(ps, account, region, event_class, code)
    return Opening(res, _steps.instantiate(res, event_class, routed_to, center_names),
                   ps.escalation.deadlines(event_class, priority, created_at),
                   res.audit(created_at))


# -- acting on the alarm ----------------------------------------------------------------


def acknowledge(alarm_id: int, alarm_state: str, claim: _claims.Claim, actor: str,
                now: float) -> _claims.Authorization:
    """Acknowledging takes the alarm (an acknowledged alarm always has a
    handler); refused when someone else handles it, or the alarm's own
    table refuses (AlarmStateError: it is not pending)."""
    _alarms.next_state(alarm_state, _alarms.ACKNOWLEDGE)
    return _claims.authorize(alarm_id, claim, alarm_state, actor, now)



@dataclass(frozen=True)
class StepAction:
    authorization: _claims.Authorization
    change: _steps.StepChange

    @property
    def audit(self) -> tuple:
        first = (self.authorization.claim.audit,) if self.authorization.claim else ()
        return first + (self.change.audit,)


def act_on_step(alarm_id: int, alarm_state: str, claim: _claims.Claim,
                step: _steps.StepRecord, action: str, actor: str, now: float,
                reason: str | None = None) -> StepAction:
    auth = _claims.authorize(alarm_id, claim, alarm_state, actor, now)
    return StepAction(auth, _steps.apply(step, action, actor, now, reason))


@dataclass(frozen=True)
class DuressAlarm:
    """The hold-up alarm a duress passcode raises: the edge ingests it as
    a receiver-generated event (source ``operator``, qualifier 1, Contact ID
    121, class hold-up), so it is stored, routed to the police, gets its own
    plan and escalation, and is on every console like a panel's hold-up."""

    account: str
    partition: int
    from_alarm_id: int
    contact: str
    by: str
    at: float
    code: int = DURESS_CODE

    @property
    def event_class(self) -> str:
        return contactid.event_class(self.code)

    @property
    def dedupe_key(self) -> str:
        """One duress alarm per contact and alarm: a second check of the
        same passcode (a double click) does not raise another."""
        return "duress:%d:%s" % (self.from_alarm_id, self.contact)

    @property
    def text(self) -> str:
        return "duress passcode given by %s on a call (alarm %d)" % (self.contact,
                                                                     self.from_alarm_id)


@dataclass(frozen=True)
class CallResult:
    authorization: _claims.Authorization
    call: _contacts.CallRecord
    audit: tuple  # AuditRecords, in order
    step_change: _steps.StepChange | None = None
    duress: DuressAlarm | None = None

    @property
    def effect(self) -> _contacts.Effect:
        return _contacts.EFFECTS[self.call.outcome]


def _phone_of(contact: _contacts.Contact, phone: str) -> str:
    for p in contact.phones:
        if p.number == phone:
            return phone
    raise ActionRefused("%s has no phone %s on file" % (contact.name, phone))


def _audits(auth, *records) -> tuple:
    return ((auth.claim.audit,) if auth.claim else ()) + tuple(r for r in records if r)


def record_call(alarm_id: int, alarm_state: str, claim: _claims.Claim,
                contact: _contacts.Contact, phone: str, outcome: str, actor: str,
                now: float) -> CallResult:
    """An operator's call outcome (RECORDED: reached, no answer, wrong number)."""
    if outcome not in _contacts.RECORDED:
        raise ActionRefused("a call is recorded as %s; passcode outcomes come from checking "
                            "the passcode the contact gives" % ", ".join(_contacts.RECORDED))
    auth = _claims.authorize(alarm_id, claim, alarm_state, actor, now)
    phone = _phone_of(contact, phone)
    call = _contacts.CallRecord(alarm_id, now, actor, contact.name, phone, outcome)
    rec = _audit.AuditRecord(alarm_id, now, actor, _audit.CALL, {
        "contact": contact.name, "role": contact.role, "phone": phone, "outcome": outcome})
    return CallResult(auth, call, _audits(auth, rec))


def passcode_tries(calls, contact: str) -> int:
    """Wrong passcodes ``contact`` gave on this alarm so far."""
    return sum(1 for c in calls
               if c.contact == contact and c.outcome == _contacts.PASSCODE_WRONG)


def check_passcode(alarm_id: int, alarm_state: str, claim: _claims.Claim, account: str,
                   partition: int, contact: _contacts.Contact, phone: str, given,
                   calls, steps, actor: str, now: float,
                   hasher: argon2.PasswordHasher = _contacts.HASHER) -> CallResult:
    """Check what ``contact`` said on the phone (blocking: two argon2
    verifies).  ``calls`` and ``steps`` are the alarm's, as read.  The
    passcode goes nowhere but into the check."""
    auth = _claims.authorize(alarm_id, claim, alarm_state, actor, now)
    phone = _phone_of(contact, phone)
    tries = passcode_tries(calls, contact.name)
    if tries >= MAX_PASSCODE_TRIES:
        raise ActionRefused("%s gave %d wrong passcodes on this alarm: checking stops. Treat "
                            "the caller as not verified (fail the passcode step with a reason)"
                            % (contact.name, tries))
    outcome = _contacts.verify_passcode(contact, given, hasher)
    call = _contacts.CallRecord(alarm_id, now, actor, contact.name, phone, outcome)
    detail: dict = {"contact": contact.name, "role": contact.role, "phone": phone,
                    "outcome": outcome}
    if outcome == _contacts.PASSCODE_WRONG:
        detail.update({"try": tries + 1, "tries": MAX_PASSCODE_TRIES})
    rec = _audit.AuditRecord(alarm_id, now, actor, _audit.PASSCODE, detail)
    step_change, duress, extra = None, None, None
    if outcome == _contacts.PASSCODE_CORRECT:
        todo = [s for s in sorted(steps, key=lambda s: s.position)
                if s.kind == _plans.VERIFY_PASSCODE and s.is_open]
        if todo:
            step_change = _steps.apply(todo[0], _steps.COMPLETE, actor, now,
                                       via=_steps.VIA_PASSCODE)
            extra = step_change.audit
    elif outcome == _contacts.DURESS:
        duress = DuressAlarm(account, partition, alarm_id, contact.name, actor, now)
        extra = _audit.AuditRecord(alarm_id, now, actor, _audit.DURESS_RAISED, {
            "contact": contact.name, "role": contact.role})
    return CallResult(auth, call, _audits(auth, rec, extra), step_change, duress)


# -- resolving --------------------------------------------------------------------------


@dataclass(frozen=True)
class Closing:
    """A resolution to write: the alarm's new columns and its audit."""

    authorization: _claims.Authorization | None  # None: the receiver's own
    disposition: _dispositions.Disposition
    note: str | None
    override: bool
    open_mandatory: tuple  # StepRecords left open (only with an override)
    audit: tuple
    actor: str
    at: float
    override_reason: str | None = None
    # the receiver's own close: the steps nobody acted on, skipped with why
    step_changes: tuple = ()

    def columns(self) -> dict:
        return {"state": _alarms.RESOLVED, "resolved_by": self.actor, "resolved_at": self.at,
                "note": self.note, "disposition": self.disposition.code,
                "disposition_category": self.disposition.category,
                "override_reason": self.override_reason}


def decide_resolve(alarm_id: int, alarm_state: str, event_class: str, claim: _claims.Claim,
                   steps, dispositions: _dispositions.Dispositions, code, note,
                   actor: str, now: float, may_override: bool,
                   override_reason: str | None = None) -> Closing:
    """Resolve with disposition ``code``.  Open mandatory steps refuse it,
    unless ``override_reason`` is given by someone who ``may_override``
    (supervisors and administrators: the edge asks the permission table)."""
    _alarms.next_state(alarm_state, _alarms.RESOLVE)  # AlarmStateError when resolved
    auth = _claims.authorize(alarm_id, claim, alarm_state, actor, now)
    d = dispositions.choose(code, event_class, note)
    note = note.strip() if isinstance(note, str) and note.strip() else None
    left = tuple(_steps.open_mandatory(steps))
    override = False
    if left:
        labels = ["%d. %s" % (s.position, s.title.rstrip(".")) for s in left]  # ". Complete"
        if override_reason is None or (isinstance(override_reason, str)
                                       and not override_reason.strip()):
            raise ActionRefused(
                "%d mandatory step%s still open: %s. Complete, skip or fail %s, or ask a "
                "supervisor to override" % (len(left), " is" if len(left) == 1 else "s are",
                                            "; ".join(labels),
                                            "it" if len(left) == 1 else "them"))
        if not may_override:
            raise ActionRefused("only a supervisor or an administrator may resolve an alarm "
                                "with mandatory steps open")
        override_reason = reason_text(override_reason, "A supervisor override")
        override = True
    else:
        override_reason = None  # nothing to override: every mandatory step is done
    detail: dict = {"disposition": d.code, "disposition_label": d.label,
                    "category": d.category}
    if override:
        detail.update({"override": True, "override_reason": override_reason,
                       "open_steps": ["%d. %s" % (s.position, s.title) for s in left]})
    rec = _audit.AuditRecord(alarm_id, now, actor, _audit.RESOLVE, detail)
    return Closing(auth, d, note, override, left if override else (), _audits(auth, rec),
                   actor, now, override_reason)


@dataclass(frozen=True)
class AutoClose:
    closing: Closing | None
    why_not: str = ""  # when closing is None: why the receiver left it open


def auto_close(alarm_id: int, alarm_state: str, claim: _claims.Claim, steps,
               dispositions: _dispositions.Dispositions, key: str, now: float,
               note: str | None = None) -> AutoClose:
    """The receiver resolving by itself (``key``: "restored",
    "cancelled_by_user").  Only an alarm nobody works is closed: nobody
    handles it, and nobody has started its plan and left a mandatory step
    open (a person who began and stepped away comes back to it).  An alarm
    nobody touched is closed with its open steps skipped, each with why
    (the disposition's label): the event made them moot.  Otherwise the
    person working it decides, and the event shows on the alarm."""
    if alarm_state == _alarms.RESOLVED:
        return AutoClose(None, "the alarm is already resolved")
    if claim.handler is not None:
        return AutoClose(None, "%s works the alarm" % claim.handler)
    why_not = _steps.left_to_a_person(steps)
    if why_not:
        return AutoClose(None, why_not)
    d = dispositions.automatic(key)
    why = "closed by the receiver: %s" % d.label
    skips = tuple(_steps.apply(s, _steps.SKIP, _audit.RECEIVER, now, why)
                  for s in sorted(steps, key=lambda s: s.position) if s.is_open)
    rec = _audit.AuditRecord(alarm_id, now, _audit.RECEIVER, _audit.RESOLVE, {
        "disposition": d.code, "disposition_label": d.label, "category": d.category})
    return AutoClose(Closing(None, d, note, False, (), tuple(c.audit for c in skips) + (rec,),
                             _audit.RECEIVER, now, step_changes=skips))
