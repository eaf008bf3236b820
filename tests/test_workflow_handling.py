"""Working an alarm (receiver.workflow.handling) with the example files:
a hold-up worked step by step to a disposition, a duress passcode given on
a call, the resolve gate and its supervisor override, the receiver's own
closes; dispositions and their rates; panel command words; and no passcode
anywhere in what the cores return."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import argon2
import pytest

from protocol import contactid
from protocol.lean import glwire as w
from receiver.alarms import ACKNOWLEDGED, PENDING, RESOLVED, AlarmStateError
from receiver.workflow import (audit, claims, commands, contacts, dispositions, handling, plans,
                               steps)
from receiver.workflow.common import ActionRefused, WorkflowConfigError

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"
CHEAP = argon2.PasswordHasher.from_parameters(argon2.profiles.CHEAPEST)
ROUTED = {"police_station": "ps-central", "district_command": "dc-1"}
CENTERS = {"ps-central": "Central Police Station", "dc-1": "District Command 1"}
T0 = 1_750_000_000.0


@pytest.fixture(scope="module")
def ps():
    return plans.load(str(EX / "plans.toml"))


@pytest.fixture(scope="module")
def disp():
    return dispositions.load(str(EX / "dispositions.toml"))


@pytest.fixture(scope="module")
def bank():
    """The bank's site file with its contacts' passcodes re-hashed cheaply
    (same passcodes as the demo's; argon2id at the smallest parameters)."""
    site = contacts.load_site(str(EX / "sites" / "1001-city-bank.toml"))
    codes = {"Branch security desk": ("granite 2290", "velvet 31"),
             "Anna Berg": ("orchid 4417", "harbour 9"), "Piotr Nowak": ("maple 7731", None)}
    out = []
    for c in site.contacts:
        if c.name in codes:
            h, d = contacts.passcode_hashes(*codes[c.name], CHEAP)
            c = replace(c, passcode_hash=h, duress_hash=d)
        out.append(c)
    return replace(site, contacts=tuple(out))


class Alarm:
    """What a store row and its child rows hold, for these tests: the edge
    applies each decision the way the design says (compare-and-set on the
    claim revision and the step state)."""

    def __init__(self, opening: handling.Opening, alarm_id=17):
        self.id = alarm_id
        self.state = PENDING
        self.claim = claims.Claim()
        self.steps = {s.position: replace(s, alarm_id=alarm_id) for s in opening.steps}
        self.calls: list = []
        self.trail = [replace(opening.audit, alarm_id=alarm_id)]
        self.columns = opening.columns()

    def _authorised(self, auth):
        if auth.claim is not None:
            new = self.claim.cas(auth.claim, self.state)
            assert new is not None
            self.claim = new
        assert self.claim.rev == auth.expect_rev

    def step(self, position, action, actor, now, reason=None):
        r = handling.act_on_step(self.id, self.state, self.claim, self.steps[position], action,
                                 actor, now, reason)
        self._authorised(r.authorization)
        assert self.steps[position].state == r.change.before.state  # the step's CAS
        self.steps[position] = r.change.after
        self.trail += r.audit
        return r

    def call(self, result: handling.CallResult):
        self._authorised(result.authorization)
        self.calls.append(result.call)
        if result.step_change is not None:
            self.steps[result.step_change.after.position] = result.step_change.after
        self.trail += result.audit
        return result

    def resolve(self, closing: handling.Closing):
        if closing.authorization is not None:
            self._authorised(closing.authorization)
        self.state = RESOLVED
        self.columns.update(closing.columns())
        self.trail += closing.audit
        return closing


def _open(ps, code=122, account="1001"):
    return handling.open_alarm(ps, account, "central", contactid.event_class(code), code,
                               contactid.priority(contactid.event_class(code)), T0, ROUTED,
                               CENTERS)


def test_a_hold_up_worked_through_its_plan_to_a_disposition(ps, disp, bank):
    op = _open(ps)
    assert op.columns()["plan_name"] == "holdup-bank"
    assert op.columns()["ack_due_at"] == T0 + 15
    a = Alarm(op)
    t = T0 + 8
    a.step(1, steps.COMPLETE, "olga", t)  # police station: duty desk confirmed
    assert a.claim.handler == "olga"  # acting claimed it
    a.step(2, steps.COMPLETE, "olga", t + 20)
    a.step(3, steps.COMPLETE, "olga", t + 25)
    cl = contacts.call_list(bank, a.steps[4].params["call_order"], t + 30)
    first = contacts.next_to_call(cl, a.calls)
    a.call(handling.record_call(17, a.state, a.claim, first.contact, first.contact.phones[0].number,
                                contacts.NO_ANSWER, "olga", t + 60))
    nxt = contacts.next_to_call(cl, a.calls)
    assert nxt.contact.name != first.contact.name
    r = a.call(handling.check_passcode(17, a.state, a.claim, "1001", 3, nxt.contact,
                                       nxt.contact.phones[0].number, "Orchid-4417"
                                       if nxt.contact.name == "Anna Berg" else "granite 2290",
                                       a.calls, a.steps.values(), "olga", t + 90, CHEAP))
    assert r.call.outcome == contacts.PASSCODE_CORRECT and r.duress is None
    assert a.steps[5].state == steps.COMPLETED and a.steps[5].changed_by == "olga"
    a.step(4, steps.COMPLETE, "olga", t + 95)
    a.step(6, steps.START, "olga", t + 100)
    assert a.steps[6].due_at == t + 100 + 600
    with pytest.raises(ActionRefused, match="1 mandatory step is still open: 6. Wait 10 "
                                            "minutes, then recheck"):
        handling.decide_resolve(17, a.state, "holdup", a.claim, a.steps.values(), disp,
                                "real-holdup", None, "olga", t + 200, may_override=False)
    a.step(6, steps.COMPLETE, "olga", t + 700)
    with pytest.raises(ActionRefused, match="is not a disposition for hold-up alarms"):
        handling.decide_resolve(17, a.state, "holdup", a.claim, a.steps.values(), disp,
                                "false-animal", None, "olga", t + 710, may_override=False)
    c = a.resolve(handling.decide_resolve(17, a.state, "holdup", a.claim, a.steps.values(),
                                          disp, "real-holdup", "two arrested", "olga", t + 720,
                                          may_override=False))
    assert a.columns["disposition"] == "real-holdup"
    assert a.columns["disposition_category"] == "real"
    assert a.columns["note"] == "two arrested" and not c.override
    trail = [x.sentence() for x in a.trail]
    assert trail[0].startswith("Plan 'holdup-bank' (v7, ")
    assert trail[1] == "Taken by olga."
    assert trail[2] == ("Step 1 (Dispatch to the police station (Central Police Station)) "
                        "completed by olga.")
    assert "Call to %s (%s) on %s by olga: no answer." % (
        first.contact.name, first.contact.role, first.contact.phones[0].number) in trail
    assert any(s.endswith("gave the correct passcode to olga.") for s in trail)
    assert ("Step 5 (Verify the caller's passcode) completed by olga (the correct passcode was "
            "given on a call).") in trail
    assert ("Step 6 (Wait 10 minutes, then recheck) started by olga: recheck due in 10 min."
            in trail)
    assert trail[-1] == "Resolved by olga as 'Real: hold-up confirmed'."
    assert [x.alarm_id for x in a.trail] == [17] * len(a.trail)
    with pytest.raises(AlarmStateError):
        handling.decide_resolve(17, a.state, "holdup", a.claim, a.steps.values(), disp,
                                "real-holdup", None, "olga", t + 800, may_override=True)


def test_duress_passcode_on_a_call_raises_a_hold_up(ps, bank):
    a = Alarm(_open(ps, code=134), alarm_id=21)  # a burglary at the bank
    anna = bank.contact("Anna Berg")
    r = a.call(handling.check_passcode(21, a.state, a.claim, "1001", 1, anna, anna.phones[0].number,
                                       "HARBOUR 9", a.calls, a.steps.values(), "olga", T0 + 30,
                                       CHEAP))
    assert r.call.outcome == contacts.DURESS and r.effect.escalate_to == "holdup"
    d = r.duress
    assert d is not None and d.event_class == "holdup" and d.code == 121
    assert (d.account, d.partition, d.from_alarm_id, d.contact, d.by) == ("1001", 1, 21,
                                                                          "Anna Berg", "olga")
    assert d.text == "duress passcode given by Anna Berg on a call (alarm 21)"
    assert d.dedupe_key == "duress:21:Anna Berg"
    # the passcode step stays open: a duress passcode is not a correct one
    assert all(s.state == steps.OPEN for s in a.steps.values() if s.kind == plans.VERIFY_PASSCODE)
    sentences = [x.sentence() for x in r.audit]
    assert sentences[-2:] == [
        "Anna Berg (branch manager) gave the DURESS passcode on a call with olga: hold-up "
        "handling started at once.",
        "Duress passcode given by Anna Berg (branch manager) on a call with olga: a hold-up "
        "alarm was raised for the site."]
    # the hold-up the edge raises from it gets the bank's hold-up plan
    op = handling.open_alarm(ps, d.account, "central", d.event_class, d.code,
                             contactid.priority(d.event_class), d.at, ROUTED, CENTERS)
    assert op.resolution.plan.name == "holdup-bank"
    assert op.deadlines.ack_within_s == 15


def test_wrong_passcodes_stop_after_three(ps, bank):
    a = Alarm(_open(ps), alarm_id=5)
    desk = bank.contact("Branch security desk")
    for i in range(1, 4):
        r = a.call(handling.check_passcode(5, a.state, a.claim, "1001", 3, desk,
                                           desk.phones[0].number, "guess %d" % i, a.calls,
                                           a.steps.values(), "olga", T0 + i, CHEAP))
        assert r.call.outcome == contacts.PASSCODE_WRONG
        assert r.audit[-1].sentence() == ("Branch security desk (security desk) gave a wrong "
                                          "passcode to olga (try %d of 3)." % i)
    with pytest.raises(ActionRefused, match="gave 3 wrong passcodes on this alarm: checking "
                                            "stops"):
        handling.check_passcode(5, a.state, a.claim, "1001", 3, desk, desk.phones[0].number,
                                "granite 2290", a.calls, a.steps.values(), "olga", T0 + 9, CHEAP)
    # another contact still may
    anna = bank.contact("Anna Berg")
    r = handling.check_passcode(5, a.state, a.claim, "1001", 3, anna, anna.phones[1].number,
                                "orchid 4417", a.calls, a.steps.values(), "olga", T0 + 9, CHEAP)
    assert r.call.outcome == contacts.PASSCODE_CORRECT


def test_calls_are_checked(ps, bank):
    a = Alarm(_open(ps))
    anna = bank.contact("Anna Berg")
    with pytest.raises(ActionRefused, match="passcode outcomes come from checking"):
        handling.record_call(17, a.state, a.claim, anna, anna.phones[0].number,
                             contacts.PASSCODE_CORRECT, "olga", T0)
    with pytest.raises(ActionRefused, match="Anna Berg has no phone \\+00 555 9999 on file"):
        handling.record_call(17, a.state, a.claim, anna, "+00 555 9999", contacts.REACHED,
                             "olga", T0)
    a.call(handling.record_call(17, a.state, a.claim, anna, anna.phones[0].number,
                                contacts.REACHED, "olga", T0))
    with pytest.raises(ActionRefused, match="Being handled by olga, 5 s: take it over"):
        handling.record_call(17, a.state, a.claim, anna, anna.phones[0].number,
                             contacts.NO_ANSWER, "piotr", T0 + 5)


def test_passcodes_never_leave_the_check(ps, bank):
    """Whatever the outcome, no passcode (given, normalised or hashed) is in
    what the check returns: records, audit details, sentences, JSON."""
    anna = bank.contact("Anna Berg")
    for given in ("orchid 4417", "HARBOUR-9", "totally wrong 123"):
        a = Alarm(_open(ps))
        r = handling.check_passcode(17, a.state, a.claim, "1001", 3, anna, anna.phones[0].number,
                                    given, a.calls, a.steps.values(), "olga", T0, CHEAP)
        blob = repr(r) + json.dumps([x.to_json() for x in r.audit])
        for secret in (given, contacts.normalise_passcode(given), anna.passcode_hash,
                       anna.duress_hash, "$argon2"):
            assert secret not in blob


def test_supervisor_override(ps, disp):
    a = Alarm(_open(ps))
    a.step(1, steps.COMPLETE, "olga", T0 + 5)
    args = (17, a.state, "holdup", a.claim, a.steps.values(), disp, "real-police", None)
    with pytest.raises(ActionRefused, match="5 mandatory steps are still open: 2. Dispatch to "
                                            "the district command"):
        handling.decide_resolve(*args, "olga", T0 + 60, may_override=False)
    with pytest.raises(ActionRefused, match="only a supervisor or an administrator"):
        handling.decide_resolve(*args, "olga", T0 + 60, may_override=False,
                                override_reason="police on site")
    with pytest.raises(ActionRefused, match="ask a supervisor to override"):
        handling.decide_resolve(*args, "olga", T0 + 60, may_override=True, override_reason="  ")
    # ada handles it only after taking it over
    with pytest.raises(ActionRefused, match="take it over"):
        handling.decide_resolve(*args[:3], a.claim, *args[4:], "ada", T0 + 60,
                                may_override=True, override_reason="police on site")
    a.claim = a.claim.cas(claims.take_over(17, a.claim, a.state, "ada", T0 + 60, a.claim.rev),
                          a.state)
    c = a.resolve(handling.decide_resolve(17, a.state, "holdup", a.claim, a.steps.values(), disp,
                                          "real-police", None, "ada", T0 + 61, may_override=True,
                                          override_reason="police took over on site"))
    assert c.override and len(c.open_mandatory) == 5
    assert a.columns["override_reason"] == "police took over on site"
    assert a.trail[-1].sentence() == (
        "Resolved by ada as 'Real: police dispatched' with 5 mandatory steps open (2. Dispatch "
        "to the district command (District Command 1), 3. Notify the supervisors, 4. Call the "
        "hold-up call list in order, 5. Verify the caller's passcode and 6. Wait 10 minutes, "
        "then recheck), by supervisor override: police took over on site.")


def test_override_reason_with_nothing_open_is_not_an_override(ps, disp):
    op = handling.open_alarm(ps, "9", "north", "other", 999, 10, T0)  # the generic plan
    a = Alarm(op)
    for p in a.steps:
        a.step(p, steps.SKIP, "olga", T0 + p, reason="nothing to do")
    c = handling.decide_resolve(17, a.state, "other", a.claim, a.steps.values(), disp,
                                "duplicate", "same as 16", "olga", T0 + 9, may_override=True,
                                override_reason="just in case")
    assert not c.override and c.override_reason is None
    assert c.audit[-1].sentence() == "Resolved by olga as 'Duplicate of another alarm'."
    with pytest.raises(ActionRefused, match="needs a note saying what happened"):
        handling.decide_resolve(17, a.state, "other", a.claim, a.steps.values(), disp,
                                "duplicate", "  ", "olga", T0 + 9, may_override=False)
    with pytest.raises(ActionRefused, match="resolving needs a disposition"):
        handling.decide_resolve(17, a.state, "other", a.claim, a.steps.values(), disp,
                                None, None, "olga", T0 + 9, may_override=False)
    with pytest.raises(ActionRefused, match="'restoredd' is not a disposition"):
        handling.decide_resolve(17, a.state, "other", a.claim, a.steps.values(), disp,
                                "restoredd", None, "olga", T0 + 9, may_override=False)


def test_auto_close_only_when_nobody_works_it(ps, disp):
    # nobody touched it: closed, its open steps skipped with why
    op = handling.open_alarm(ps, "9", "north", "burglary", 130, 5, T0)  # burglary plan
    a = Alarm(op)
    got = handling.auto_close(17, a.state, a.claim, a.steps.values(), disp,
                              "cancelled_by_user", T0 + 9)
    assert got.closing is not None and got.closing.authorization is None
    assert [c.after.state for c in got.closing.step_changes] == [steps.SKIPPED] * 5
    assert got.closing.audit[0].sentence() == (
        "Step 1 (Call the burglary call list in order) skipped by receiver: closed by the "
        "receiver: Cancelled by a user at the panel.")
    assert got.closing.audit[-1].sentence() == (
        "Resolved by receiver as 'Cancelled by a user at the panel'.")

    op = handling.open_alarm(ps, "9", "north", "trouble", 301, 7, T0)  # trouble plan
    a = Alarm(op)
    a.step(2, steps.SKIP, "olga", T0 + 10, "installer already on site")
    got = handling.auto_close(17, a.state, a.claim, a.steps.values(), disp, "restored", T0 + 11)
    assert got.closing is None and got.why_not == "olga works the alarm"
    a.claim = a.claim.cas(claims.release(17, a.claim, a.state, "olga", T0 + 12), a.state)
    # olga started the plan and left a mandatory step open: she decides
    got = handling.auto_close(17, a.state, a.claim, a.steps.values(), disp, "restored", T0 + 13)
    assert got.closing is None and got.why_not == "1 mandatory step open"
    a.step(1, steps.COMPLETE, "olga", T0 + 14)
    a.claim = a.claim.cas(claims.release(17, a.claim, a.state, "olga", T0 + 15), a.state)
    got = handling.auto_close(17, a.state, a.claim, a.steps.values(), disp, "restored", T0 + 16)
    assert got.closing is not None and got.closing.authorization is None
    assert [c.before.position for c in got.closing.step_changes] == [3]  # the optional wait
    a.resolve(got.closing)
    assert a.columns["disposition"] == "restored" and a.columns["resolved_by"] == "receiver"
    assert a.trail[-1].sentence() == ("Resolved by receiver as 'Restored: the condition "
                                      "cleared by itself'.")
    again = handling.auto_close(17, a.state, a.claim, a.steps.values(), disp, "restored", T0 + 17)
    assert again.closing is None and again.why_not == "the alarm is already resolved"


def test_acting_on_a_resolved_alarm_is_refused(ps):
    a = Alarm(_open(ps))
    a.state = RESOLVED
    with pytest.raises(ActionRefused, match="the alarm is resolved"):
        handling.act_on_step(17, a.state, a.claim, a.steps[1], steps.COMPLETE, "olga", T0)


# -- dispositions ----------------------------------------------------------------------------


def test_dispositions_file(disp):
    assert disp.automatic("restored").code == "restored"
    assert disp.automatic("cancelled_by_user").label == "Cancelled by a user at the panel"
    offered = [d.code for d in disp.offered("burglary")]
    assert offered[:4] == ["false-user", "false-equipment", "false-weather", "false-animal"]
    assert "real-holdup" not in offered and "restored" not in offered
    assert {d.category for d in disp.items} == set(dispositions.CATEGORIES)


@pytest.mark.parametrize("doc, expected", [
    ({}, "d.toml: defines no dispositions"),
    ({"dispositions": {"Bad Code": {"label": "x", "category": "false"}}},
     "d.toml: disposition 'Bad Code': a code is 1-40 lower-case"),
    ({"dispositions": {"x": {"label": "x", "category": "maybe"}}},
     "d.toml: disposition 'x': category: must be one of false, real, test, other"),
    ({"dispositions": {"x": {"label": "x", "category": "false", "classes": ["robbery"]}}},
     "d.toml: disposition 'x': classes: must be one of holdup"),
    ({"dispositions": {"x": {"label": "x", "category": "false", "colour": "red"}}},
     "d.toml: disposition 'x': unknown key(s) colour"),
    ({"dispositions": {"x": {"label": "x", "category": "false", "pick": False}}},
     "d.toml: no disposition can be picked"),
    ({"dispositions": {"x": {"label": "x", "category": "false"}}},
     "d.toml: [auto] restored: must name a disposition of this file (got None)"),
    ({"dispositions": {"x": {"label": "x", "category": "false"}},
      "auto": {"restored": "x", "cancelled_by_user": "y"}},
     "d.toml: [auto] cancelled_by_user: must name a disposition of this file (got 'y')"),
    ({"dispositions": {"x": {"label": "x", "category": "false"}},
      "auto": {"restored": "x", "cancelled_by_user": "x", "abort": "x"}},
     "d.toml: [auto]: unknown key(s) abort"),
])
def test_disposition_file_errors(doc, expected):
    with pytest.raises(WorkflowConfigError) as e:
        dispositions.parse(doc, "d.toml")
    assert str(e.value).startswith(expected)


def test_false_codes_for_the_reports(disp):
    assert disp.codes_in(dispositions.FALSE) == {
        "false-user", "false-equipment", "false-weather", "false-animal",
        "cancelled-passcode", "cancelled-user"}
    assert disp.codes_in(dispositions.TEST) == {"test"}


# -- panel commands in words -----------------------------------------------------------------


def test_command_confirmation_and_reply_words():
    parts = {"1": "vault", "2": "ATM room", "3": "teller line", "4": "lobby"}
    assert commands.confirmation("arm-away", "City Bank, Main Street branch", "1001", 1,
                                 parts) == ("Arm away partition 1 (vault) of City Bank, Main "
                                            "Street branch (account 1001)?")
    assert commands.confirmation("disarm", "", "1002", 9, {}) == "Disarm partition 9 of account 1002?"
    assert commands.confirmation("status", "Flat 4B", "1002", 1, {}) == (
        "Ask the panel of Flat 4B (account 1002) for its status?")
    with pytest.raises(ValueError):
        commands.confirmation("bypass", "x", "1", 1, {})
    reply = {"result": w.R_OK, "result_name": "ok",
             "partitions": [{"position": 1, "state": w.P_ARMED_AWAY, "state_name": "armed_away"},
                            {"position": 2, "state": w.P_DISARMED, "state_name": "disarmed"},
                            {"position": 3, "state": 9, "state_name": "9"}],
             "troubles": w.T_AC_LOSS | w.T_PATH2_FAIL | 0x0400}
    words = commands.reply_words(reply, parts)
    assert words.lines() == [
        "The panel did it.", "Partition 1 (vault): armed away.",
        "Partition 2 (ATM room): disarmed.",
        "Partition 3 (teller line): in a state this receiver has no name for (9).",
        "Troubles: mains power lost, backup path (2) failed, a trouble this receiver has no "
        "name for (number 10)."]
    refused = commands.reply_words({"result": 1, "result_name": "refused", "partitions": [],
                                    "troubles": 0}, {})
    assert refused.result.startswith("The panel refused") and refused.troubles == "No troubles."
    # partition ids not starting at 1: positions follow the ids in ascending order
    words = commands.reply_words({"result_name": "ok", "troubles": 0, "partitions": [
        {"position": 1, "state_name": "disarmed"}, {"position": 2, "state_name": "alarm"}]},
        {"10": "shop", "3": "office"})
    assert words.partitions == ("Partition 3 (office): disarmed.",
                                "Partition 10 (shop): IN ALARM.")


def test_every_trouble_bit_has_words():
    bits = [getattr(w, n) for n in dir(w) if n.startswith("T_")]
    assert sorted(bits) == sorted(b for b, _ in commands.TROUBLE_WORDS)
    assert set(commands.STATE_WORDS) == {"disarmed", "exit_delay", "armed_away", "armed_stay",
                                         "entry_delay", "alarm"}


# -- audit ------------------------------------------------------------------------------------


def test_every_audit_action_has_words_and_unknown_ones_are_refused():
    with pytest.raises(ValueError):
        audit.AuditRecord(1, 0.0, "olga", "step.teleport", {})
    assert set(audit.SENTENCES) == {
        audit.PLAN, audit.STEP_START, audit.STEP_COMPLETE, audit.STEP_SKIP, audit.STEP_FAIL,
        audit.CALL, audit.PASSCODE, audit.CLAIM, audit.TAKE_OVER, audit.RELEASE,
        audit.ESCALATION_ACK, audit.ESCALATION_RESOLVE, audit.ESCALATION_WAIT,
        audit.DURESS_RAISED, audit.RESOLVE, audit.CANCEL, audit.RECENT_CLOSE,
        audit.RESTORE_LEFT_OPEN}
    assert audit.AuditRecord(3, 5.0, "receiver", audit.RESTORE_LEFT_OPEN, {
        "event_id": 41, "left_open": "1 mandatory step open"}).sentence() == (
        "Restored (event #41): not resolved by the receiver's restore policy, left open: 1 "
        "mandatory step open.")
    assert audit.AuditRecord(3, 5.0, "receiver", audit.CANCEL, {
        "user": 3, "after_s": 40.2, "left_open": "olga works the alarm"}).sentence() == (
        "Cancelled by user 3 after 40 s at the panel (cancel report 406); left open: olga "
        "works the alarm.")
    assert audit.AuditRecord(3, 5.0, "receiver", audit.RECENT_CLOSE, {"user": 2}).sentence() \
        == "Recent closing: user 2 armed the partition just before this alarm (report 459)."
    rec = audit.AuditRecord(3, 5.0, "olga", audit.STEP_FAIL,
                            {"position": 4, "title": "Call the hold-up call list in order",
                             "reason": "nobody answered"})
    assert rec.to_json() == {"alarm_id": 3, "at": 5.0, "actor": "olga", "action": "step.fail",
                             "detail": rec.detail, "sentence": "Step 4 (Call the hold-up call "
                             "list in order) marked failed by olga: nobody answered."}


def test_acknowledged_alarm_can_still_be_claimed_and_worked(ps):
    a = Alarm(_open(ps))
    a.state = ACKNOWLEDGED
    a.step(3, steps.COMPLETE, "anna", T0)
    assert a.claim.handler == "anna"


def test_acknowledge_takes_the_alarm():
    a = handling.acknowledge(9, PENDING, claims.Claim(), "olga", T0)
    assert a.claim is not None and a.claim.after.handler == "olga"
    assert handling.acknowledge(9, PENDING, claims.Claim("olga", T0, 1), "olga", T0).claim is None
    with pytest.raises(ActionRefused, match="take it over"):
        handling.acknowledge(9, PENDING, claims.Claim("olga", T0, 1), "piotr", T0 + 3)
    with pytest.raises(AlarmStateError, match="cannot acknowledge an alarm that is acknowledged"):
        handling.acknowledge(9, ACKNOWLEDGED, claims.Claim("olga", T0, 1), "olga", T0)


def test_builtin_plan_and_dispositions_for_a_receiver_without_files():
    ps = plans.builtin()
    op = handling.open_alarm(ps, "1001", "central", "holdup", 122, 1, T0)
    assert op.resolution.sentence().startswith("Plan 'builtin' (")
    assert [(s.kind, s.mandatory) for s in op.steps] == [("instruction", True), ("call", False)]
    assert op.deadlines.ack_within_s == 15  # the built-in hold-up rule
    d = dispositions.builtin()
    assert [x.code for x in d.offered("holdup")] == ["false", "real", "test", "other"]
    assert d.automatic("restored").pick is False
