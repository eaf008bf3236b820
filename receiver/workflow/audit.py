"""The workflow's audit trail: one typed record per change to an alarm's
handling, and its sentence for people.

Every core that changes something (a step, a call, a claim, an escalation,
the resolution) returns an :class:`AuditRecord` with the change; the store
writes it in the same transaction as the change (docs/workflow-design.md:
an ``alarm_audit`` row with ``action`` and ``detail``).  The sentence is made
when it is read, from the structured detail, by :data:`SENTENCES` (one table,
one home for the words), so the console, the CLI and the API say the same:

    "Step 2 (Dispatch to the police station (Central Police Station)) completed by olga."
    "Call to Anna Berg (branch manager) on +00 555 0101 by olga: no answer."
    "Taken over by piotr from olga, who had it for 3 min."

Invariants: ``detail`` holds only JSON scalars and lists of them; it never
holds a passcode, a passcode's hash, or anything a caller said on the phone
(tests check every record the cores make); an action not in
:data:`SENTENCES` is refused when the record is made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from protocol import contactid
from receiver.alarms import and_list
from receiver.supervision import duration_text

RECEIVER = "receiver"  # the actor of what the receiver does by itself

PLAN = "plan"
STEP_START = "step.start"
STEP_COMPLETE = "step.complete"
STEP_SKIP = "step.skip"
STEP_FAIL = "step.fail"
CALL = "call"
PASSCODE = "passcode"
CLAIM = "claim"
TAKE_OVER = "take_over"
RELEASE = "release"
ESCALATION_ACK = "escalation.ack"
ESCALATION_RESOLVE = "escalation.resolve"
ESCALATION_WAIT = "escalation.wait"
DURESS_RAISED = "duress.raised"
RESOLVE = "resolve"
# What the panel said after the alarm (issue 22, CP-01): a user's cancel
# (406) and a recent closing (459); the receiver attaches them at ingest.
CANCEL = "cancel"
RECENT_CLOSE = "recent_close"
# A restore the restore policy would have resolved the alarm on (issue 18),
# left open because someone began its action plan and left a mandatory step
# open (receiver.rules.hygiene.on_restore, LEAVE_OPEN).
RESTORE_LEFT_OPEN = "restore.left_open"


@dataclass(frozen=True)
class AuditRecord:
    """One change to an alarm's handling: who (``actor``), when (``at``,
    Unix seconds), what (``action`` and ``detail``)."""

    alarm_id: int | None  # None until the alarm is stored (its opening rows)
    at: float
    actor: str
    action: str
    detail: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.action not in SENTENCES:
            raise ValueError("no words for audit action %r" % self.action)

    def sentence(self) -> str:
        return SENTENCES[self.action](self.actor, self.detail)

    def to_json(self) -> dict:
        d = asdict(self)
        d["sentence"] = self.sentence()
        return d


def step_label(position: int, title: str) -> str:
    """'step 2 (Dispatch to the police station)'."""
    return "step %d (%s)" % (position, title)


def plan_sentence(name: str, version_label: str, scope: str, scope_key: str,
                  selector: str) -> str:
    """"Plan 'holdup-bank' (v3, 1a2b3c4d5e6f), the site's plan for hold-up
    alarms." (receiver.workflow.plans.Resolution)"""
    if selector == "default":
        what = "the center-wide fallback plan"
    else:
        if selector.isdigit():
            code = int(selector)
            sel = "Contact ID %03d (%s)" % (code, contactid.name(code))
        else:
            sel = "%s alarms" % contactid.CLASS_LABELS.get(selector, selector)
        owner = {"site": "the site's", "region": "region %s's" % scope_key,
                 "center": "the center-wide"}.get(scope, scope)
        what = "%s plan for %s" % (owner, sel)
    return "Plan '%s' (%s), %s." % (name, version_label, what)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _step(verb):
    def words(actor, d):
        s = "%s %s by %s" % (_cap(step_label(d["position"], d["title"])), verb, actor)
        if d.get("via") == "passcode":
            s += " (the correct passcode was given on a call)"
        if d.get("reason"):
            s += ": %s" % d["reason"]
        if d.get("minutes"):
            s += ": recheck due in %d min" % d["minutes"]
        return s + "."
    return words


# Call outcomes in words (receiver.workflow.contacts.OUTCOMES).
OUTCOME_WORDS = {
    "reached": "reached",
    "no_answer": "no answer",
    "wrong_number": "wrong number",
    "passcode_correct": "correct passcode",
    "passcode_wrong": "wrong passcode",
    "duress": "DURESS passcode",
}


def _who(d) -> str:
    return "%s (%s)" % (d["contact"], d["role"]) if d.get("role") else d["contact"]


def _call(actor, d):
    return "Call to %s on %s by %s: %s." % (_who(d), d["phone"], actor,
                                           OUTCOME_WORDS.get(d["outcome"], d["outcome"]))


def _passcode(actor, d):
    o = d["outcome"]
    if o == "duress":
        return ("%s gave the DURESS passcode on a call with %s: hold-up handling started at "
                "once." % (_who(d), actor))
    if o == "passcode_correct":
        return "%s gave the correct passcode to %s." % (_who(d), actor)
    return "%s gave a wrong passcode to %s (try %d of %d)." % (_who(d), actor, d["try"],
                                                                 d["tries"])


def _take_over(actor, d):
    return "Taken over by %s from %s, who had it for %s." % (
        actor, d["from"], duration_text(d["held_s"]))


def _resolve(actor, d):
    s = "Resolved by %s as '%s'" % (actor, d["disposition_label"])
    if d.get("override"):
        steps = d.get("open_steps") or []
        s += " with %d mandatory step%s open (%s), by supervisor override: %s" % (
            len(steps), "" if len(steps) == 1 else "s", and_list(steps), d["override_reason"])
    return s + "."


def cancel_words(user, after_s) -> str:
    """'cancelled by user 3 after 40 s' (what the console shows on the
    alarm, and the trail's sentence starts with)."""
    who = "user %d" % user if user is not None else "a user"
    return "cancelled by %s after %s" % (who, duration_text(after_s or 0))


def _cancel(actor, d):
    s = "%s at the panel (cancel report 406)" % _cap(cancel_words(d.get("user"),
                                                                  d.get("after_s")))
    if d.get("left_open"):
        s += "; left open: %s" % d["left_open"]
    return s + "."


def _restore_left_open(actor, d):
    return ("Restored (event #%d): not resolved by the receiver's restore policy, left open: "
            "%s." % (d["event_id"], d["left_open"]))


def _recent_close(actor, d):
    who = "user %d" % d["user"] if d.get("user") is not None else "a user"
    return ("Recent closing: %s armed the partition just before this alarm (report 459)."
            % who)


def _wait_due(actor, d):
    return "%s: the wait of %d min is over, recheck now." % (
        _cap(step_label(d["position"], d["title"])), d["minutes"])


# SENTENCES[action](actor, detail) -> the sentence people read.
SENTENCES = {
    PLAN: lambda actor, d: plan_sentence(d["plan"], d["version_label"], d["scope"],
                                         d["scope_key"], d["selector"]),
    STEP_START: _step("started"),
    STEP_COMPLETE: _step("completed"),
    STEP_SKIP: _step("skipped"),
    STEP_FAIL: _step("marked failed"),
    CALL: _call,
    PASSCODE: _passcode,
    CLAIM: lambda actor, d: "Taken by %s." % actor,
    TAKE_OVER: _take_over,
    RELEASE: lambda actor, d: "Released by %s%s after %s." % (
        actor, " from %s" % d["handler"] if d.get("handler") else "", duration_text(d["held_s"])),
    ESCALATION_ACK: lambda actor, d: (
        "Not acknowledged within %s: every console alerted, supervisors notified."
        % duration_text(d["within_s"])),
    ESCALATION_RESOLVE: lambda actor, d: (
        "Not resolved within %s: moved to the supervisor queue." % duration_text(d["within_s"])),
    ESCALATION_WAIT: _wait_due,
    DURESS_RAISED: lambda actor, d: (
        "Duress passcode given by %s on a call with %s: a hold-up alarm was raised for the "
        "site." % (_who(d), actor)),
    RESOLVE: _resolve,
    CANCEL: _cancel,
    RECENT_CLOSE: _recent_close,
    RESTORE_LEFT_OPEN: _restore_left_open,
}
