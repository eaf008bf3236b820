"""The operator's workflow in the store, run against both backends (the
``store`` fixture of tests/test_store_contract.py: a real SQLite file and a
fresh PostgreSQL database): alarms opening with their plan, every
compare-and-set with its losing case, escalation stamps, a panel's cancel
and recent closing, sites, notes and the workflow files in force, and the
migration of a store with alarms open."""

import asyncio
import os
import time
from pathlib import Path

import argon2
import pytest

from receiver import ingest, workflow_db
from receiver.alarms import AlarmStateError
from receiver.records import Account, EventRecord
from receiver.rules import hygiene
from receiver.store import RowMoved
from receiver.workflow import claims, escalation, handling, steps
from receiver.workflow.common import ActionRefused, WorkflowConfigError
from receiver.workflow_service import NotFound, Workflow, trail
from tests.pg_fixture import pg_server, pg_url  # noqa: F401
from tests.test_store_contract import PGBackend, SQLiteBackend, backend, store  # noqa: F401

EX = Path(__file__).resolve().parent.parent / "examples"
CHEAP = argon2.PasswordHasher.from_parameters(argon2.profiles.CHEAPEST)
CENTERS = {"ps-1": "Central Police Station"}


async def workflow(store, **kw) -> Workflow:
    wf = Workflow(store, hasher=CHEAP, **kw)
    for kind in ("plans", "dispositions"):
        text = (EX / ("%s.toml" % kind)).read_text()
        await wf.load_file(kind, text, "examples/%s.toml" % kind, "test")
    return wf


async def bank(store, wf) -> None:
    """Account 1001 (the demo's bank) with its site file; the contacts'
    passcodes set again cheaply (the demo's passcodes)."""
    await store.add_account(Account("1001", os.urandom(32), region="central",
                                    site_name="City Bank", partitions={"1": "vault"}))
    await wf.import_site(str(EX / "sites" / "1001-city-bank.toml"), "test")
    await wf.set_passcode("1001", "Branch security desk", "granite 2290", "velvet 31", "sam")
    await wf.set_passcode("1001", "Anna Berg", "orchid 4417", "harbour 9", "sam")


def event(wf, seq, code, cls, prio, account="1001", partition=1, zone=4, at=None, q=1,
          user=None, opens=True) -> EventRecord:
    r = EventRecord(account=account, protocol="native", dedupe_key="native:%d" % seq,
                    qualifier=q, code=code, partition=partition, zone=zone,
                    received_at=at or time.time(), seq=seq, event_class=cls, priority=prio,
                    description="%s %d" % (cls, code), user=user,
                    open_alarm=opens and q == 1, routed_to={"police_station": "ps-1"})
    if r.open_alarm:
        r.opening = wf.opening(r, "central", CENTERS)
    if code == 406:
        r.cancel_closes = wf.cancel_policy()
    return r


async def test_an_alarm_opens_with_its_plan_steps_and_deadlines(store):
    wf = await workflow(store)
    await bank(store, wf)
    t = time.time()
    r = event(wf, 1, 122, "holdup", 1, at=t)
    out = await store.ingest(r)
    a = await store.get_alarm(out.alarm_id)
    assert (a.plan_name, a.plan_version) == ("holdup-bank", r.opening.resolution.plan
                                             .version_label)
    assert (a.ack_due_at, a.resolve_due_at, a.ack_within_s) == (t + 15, t + 1800, 15)
    w = await wf.work(a.id, trail=True)
    assert [s.kind for s in w.steps] == ["dispatch", "dispatch", "notify", "call",
                                         "verify_passcode", "wait", "instruction"]
    assert w.steps[0].title == "Dispatch to the police station (Central Police Station)"
    assert w.steps[3].params == {"call_order": "holdup"} and w.steps[5].params == {"minutes": 10}
    assert [s.mandatory for s in w.steps] == [True] * 6 + [False]
    assert [e.action for e in w.trail] == [None, "plan"]
    assert w.trail[1].detail["scope"] == "site"
    # a retransmission opens nothing, copies no steps again
    again = await store.ingest(r)
    assert again.duplicate and len((await wf.work(a.id)).steps) == 7
    # an alarm keeps its plan: a new plans file changes new alarms only
    text = (EX / "plans.toml").read_text().replace("version = 7", "version = 8")
    await wf.load_file("plans", text, "edited", "ada")
    r2 = event(wf, 2, 122, "holdup", 1)
    b = await store.get_alarm((await store.ingest(r2)).alarm_id)
    assert (await store.get_alarm(a.id)).plan_version.startswith("v7, ")
    assert b.plan_version.startswith("v8, ") and b.plan_hash != a.plan_hash


async def test_claims_race_once_and_a_take_over_names_whom_it_takes(store):
    wf = await workflow(store)
    await bank(store, wf)
    aid = (await store.ingest(event(wf, 1, 130, "burglary", 5))).alarm_id
    got = await asyncio.gather(wf.claim(aid, "olga"), wf.claim(aid, "piotr"),
                               return_exceptions=True)
    won = [g for g in got if not isinstance(g, Exception)]
    lost = [g for g in got if isinstance(g, Exception)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], ActionRefused)
    holder = won[0].handler
    other = "piotr" if holder == "olga" else "olga"
    assert "Being handled by %s" % holder in str(lost[0])
    a = await store.get_alarm(aid)
    assert a.claim_rev == 1
    # the compare-and-set itself: a stale revision writes nothing
    stale = claims.ClaimChange(0, claims.Claim(other, 1.0, 1),
                               claims.claim(aid, claims.Claim(), "pending", other, 1.0).audit)
    with pytest.raises(RowMoved):
        await store.transact(lambda tx: workflow_db.apply_claim(tx, aid, stale))
    assert (await store.get_alarm(aid)).handler == holder
    # acting on another's alarm is refused; a take-over of a claim not seen too
    with pytest.raises(ActionRefused, match="take it over"):
        await wf.step(aid, 1, "complete", other)
    with pytest.raises(ActionRefused, match="changed hands since you looked"):
        await wf.take_over(aid, other, 0)
    a = await wf.take_over(aid, other, 1)
    assert (a.handler, a.claim_rev) == (other, 2)
    with pytest.raises(ActionRefused, match="take it over"):
        await wf.release(aid, holder, False)
    a = await wf.release(aid, "sam", True)  # a supervisor releases anyone's
    assert a.handler is None
    trail = [(e.actor, e.action) for e in (await wf.work(aid, trail=True)).trail]
    assert trail[2:] == [(holder, "claim"), (other, "take_over"), ("sam", "release")]


async def test_a_step_changes_once_and_a_passcode_try_counts_once(store):
    wf = await workflow(store)
    await bank(store, wf)
    aid = (await store.ingest(event(wf, 1, 122, "holdup", 1))).alarm_id
    got = await asyncio.gather(wf.step(aid, 1, "complete", "olga"),
                               wf.step(aid, 1, "complete", "olga"), return_exceptions=True)
    assert sum(not isinstance(g, Exception) for g in got) == 1
    assert [str(g) for g in got if isinstance(g, Exception)] == [
        "a step that is completed cannot be completed"]
    with pytest.raises(ActionRefused, match="needs a reason"):
        await wf.step(aid, 7, "skip", "olga")
    with pytest.raises(NotFound):
        await wf.step(aid, 9, "complete", "olga")
    # the step's own compare-and-set: decided from "open", it is completed now
    w = await wf.work(aid)
    act = handling.act_on_step(aid, w.alarm.state, w.claim,
                               w.steps[0].__class__(**{**w.steps[0].__dict__,
                                                       "state": "open"}),
                               "fail", "olga", time.time(), "stale view")
    with pytest.raises(RowMoved):
        await store.transact(lambda tx: workflow_db.act_on_step(tx, aid, act))
    assert (await wf.work(aid)).steps[0].state == "completed"

    # a wrong passcode: the call row goes in only while the count it was
    # decided from holds (two checks at once cannot both be "try 1")
    r = await wf.passcode(aid, "Branch security desk", "+00 555 0100", "granite 2291", "olga")
    assert (r.outcome, r.sentence) == ("passcode_wrong", "Branch security desk (security desk) "
                                       "gave a wrong passcode to olga (try 1 of 3).")
    w = await wf.work(aid)
    c = (await wf.site("1001")).contact("Branch security desk")
    res = handling.check_passcode(aid, w.alarm.state, w.claim, "1001", 1, c, "+00 555 0100",
                                  "nope nope", (), w.steps, "olga", time.time(), CHEAP)
    with pytest.raises(RowMoved):
        await store.transact(lambda tx: workflow_db.record_call(tx, aid, res, 0))
    assert len((await wf.work(aid)).calls) == 1
    r = await wf.passcode(aid, "Branch security desk", "+00 555 0100", "Granite-2290", "olga")
    assert r.outcome == "passcode_correct" and r.step.position == 5
    assert r.step.state == "completed"


async def test_a_refusal_names_a_step_titled_with_a_full_stop_once(store):
    wf = Workflow(store, hasher=CHEAP)
    await wf.load_file("plans", """
[assign]
default = "lock"
[plans.lock]
title = "Lock up"
[[plans.lock.steps]]
kind = "instruction"
mandatory = true
title = "Ask the guard to lock the door."
text = "The guard is on the site's call list."
""", "plans.toml", "test")
    await wf.load_file("dispositions", (EX / "dispositions.toml").read_text(),
                       "examples/dispositions.toml", "test")
    await bank(store, wf)
    aid = (await store.ingest(event(wf, 1, 130, "burglary", 2))).alarm_id
    with pytest.raises(ActionRefused) as refused:
        await wf.resolve(aid, "olga", "false-user")
    assert "1. Ask the guard to lock the door. Complete, skip or fail it" in str(refused.value)


async def test_resolve_needs_a_disposition_and_no_open_mandatory_step(store):
    wf = await workflow(store)
    await bank(store, wf)
    aid = (await store.ingest(event(wf, 1, 122, "holdup", 1))).alarm_id
    with pytest.raises(ActionRefused, match="needs a disposition"):
        await wf.resolve(aid, "olga", None)
    with pytest.raises(ActionRefused, match="6 mandatory steps are still open"):
        await wf.resolve(aid, "olga", "real-holdup")
    with pytest.raises(ActionRefused, match="only a supervisor"):
        await wf.resolve(aid, "olga", "real-holdup", override_reason="police took over")
    assert (await store.get_alarm(aid)).handler is None  # a refusal changes nothing
    await wf.claim(aid, "ada")
    a = await wf.resolve(aid, "ada", "real-holdup", "police on site",
                         "police took over on site", may_override=True)
    assert (a.state, a.disposition, a.disposition_category, a.override_reason) == (
        "resolved", "real-holdup", "real", "police took over on site")
    last = (await wf.work(aid, trail=True)).trail[-1]
    assert (last.from_state, last.to_state, last.note) == ("pending", "resolved",
                                                            "police on site")
    assert last.detail["open_steps"][0] == "1. Dispatch to the police station (Central " \
                                           "Police Station)"
    with pytest.raises(ActionRefused, match="resolved"):
        await wf.step(aid, 1, "complete", "ada")


async def test_each_escalation_fires_once_and_only_while_due(store):
    wf = await workflow(store)
    await bank(store, wf)
    t0 = time.time() - 100
    aid = (await store.ingest(event(wf, 1, 130, "burglary", 5, at=t0))).alarm_id
    t = await store.read(workflow_db.timers)
    due = escalation.due(t.alarms, t.waits, time.time())
    assert [(e.kind, e.alarm_id) for e in due] == [("ack", aid)]
    notify = ("pager", {"type": "escalation"})
    got = await asyncio.gather(*[store.transact(
        lambda tx: workflow_db.stamp(tx, due[0], time.time(), notify)) for _ in range(2)])
    assert sorted(got) == [False, True]
    assert [r.output for r in await store.list_outbox("pager")] == ["pager"]
    t = await store.read(workflow_db.timers)
    assert escalation.due(t.alarms, t.waits, time.time()) == []
    [a] = await wf.escalated()
    assert a.id == aid
    trail = (await wf.work(aid, trail=True)).trail
    assert trail[-1].action == "escalation.ack" and trail[-1].actor == "receiver"
    # acknowledged: no longer in the alert
    await wf.acknowledge(aid, "olga")
    assert await wf.escalated() == []
    # a wait step started: its reminder fires once
    await wf.step(aid, 5, "start", "olga")
    w = (await wf.work(aid)).steps[4]
    assert w.state == "waiting" and w.due_at is not None
    t = await store.read(workflow_db.timers)
    [wait] = [e for e in escalation.due(t.alarms, t.waits, w.due_at + 1) if e.kind == "wait"]
    assert await store.transact(lambda tx: workflow_db.stamp(tx, wait, w.due_at + 1))
    assert not await store.transact(lambda tx: workflow_db.stamp(tx, wait, w.due_at + 2))


async def test_a_panel_cancel_attaches_to_its_alarms_and_closes_those_nobody_works(store):
    wf = await workflow(store)
    await bank(store, wf)
    t = time.time() - 60
    await store.ingest(event(wf, 1, 401, "status", 9, q=1, zone=3, user=3, opens=False, at=t))
    old = (await store.ingest(event(wf, 2, 130, "burglary", 5, at=t + 1))).alarm_id
    await store.ingest(event(wf, 3, 401, "status", 9, q=3, zone=3, user=3, opens=False,
                             at=t + 2))
    await store.ingest(event(wf, 4, 401, "status", 9, q=1, zone=3, user=3, opens=False,
                             at=t + 3))  # the latest opening: the span starts after it
    burg = (await store.ingest(event(wf, 5, 134, "burglary", 5, zone=1, at=t + 10))).alarm_id
    tamp = (await store.ingest(event(wf, 6, 137, "tamper", 7, zone=9, at=t + 11))).alarm_id
    held = (await store.ingest(event(wf, 7, 130, "burglary", 5, zone=2, at=t + 12))).alarm_id
    hold = (await store.ingest(event(wf, 8, 122, "holdup", 1, zone=5, at=t + 13))).alarm_id
    other = (await store.ingest(event(wf, 9, 130, "burglary", 5, partition=2,
                                      at=t + 14))).alarm_id
    await wf.step(held, 1, "complete", "olga")  # olga works this one
    out = await store.ingest(event(wf, 10, 406, "status", 9, zone=3, user=3, opens=False,
                                   at=t + 50))
    assert sorted(out.touched) == sorted([burg, tamp, held])
    b = await store.get_alarm(burg)
    assert (b.state, b.resolved_by, b.disposition, b.cancel_user) == (
        "resolved", "receiver", "cancelled-user", 3)
    assert b.cancel_after_s == pytest.approx(40, abs=0.01)
    assert (await store.get_alarm(tamp)).state == "resolved"
    h = await store.get_alarm(held)
    assert (h.state, h.cancel_user) == ("pending", 3)
    for untouched in (old, hold, other):
        a = await store.get_alarm(untouched)
        assert a.cancel_event_id is None and a.state == "pending"
    trail = (await wf.work(burg, trail=True)).trail
    texts = [e.action for e in trail]
    assert texts[-2:] == ["resolve", "cancel"] and texts.count("step.skip") == 5
    ht = (await wf.work(held, trail=True)).trail[-1]
    assert ht.action == "cancel" and ht.detail["left_open"] == "olga works the alarm"
    # a retransmitted 406 changes nothing
    again = await store.ingest(event(wf, 10, 406, "status", 9, zone=3, user=3, opens=False,
                                     at=t + 50))
    assert again.duplicate and again.touched == ()


async def test_a_restore_by_policy_leaves_an_alarm_whose_plan_someone_began(store):
    """The restore policy resolves a trouble nobody works (its open steps
    skipped as moot, as a cancel's close does), but not one whose action
    plan an operator began and left a mandatory step open, even once they
    released it: an operator's own resolve would be refused then; the
    restore is shown on it and its trail says why it is open."""
    wf = await workflow(store)
    await bank(store, wf)
    store.hygiene = ingest.Hygiene(restore=hygiene.RestorePolicy(frozenset(("trouble",))))
    t = time.time()

    def trouble(seq, code, at, q=1):  # mains (301) / battery (302) trouble, and restores
        return event(wf, seq, code, "trouble", 8, partition=0, zone=0, at=at, q=q)

    untouched = (await store.ingest(trouble(1, 302, t))).alarm_id
    begun = (await store.ingest(trouble(2, 301, t + 1))).alarm_id
    await wf.claim(begun, "olga")
    await wf.step(begun, 2, "skip", "olga", "installer already on site")  # step 1 still open
    await wf.release(begun, "olga", may_release_others=False)  # pending, nobody handles it
    back = await store.ingest(trouble(3, 302, t + 60, q=3))
    ac_back = await store.ingest(trouble(4, 301, t + 61, q=3))
    assert ac_back.resolved == ()  # olga's plan keeps it open
    assert back.resolved == (untouched,)
    a = await wf.work(untouched, trail=True)
    assert (a.alarm.state, a.alarm.resolved_by, a.alarm.disposition) == (
        "resolved", "receiver", "restored")
    assert [(s.state, s.changed_by) for s in a.steps] == [("skipped", "receiver")] * 3
    assert trail(a.trail, None, {})[-1]["text"] == (
        "Step 3 (Wait 60 minutes, then recheck) skipped by receiver: closed by the "
        "receiver: its restore resolved it (restore policy).")

    b = await wf.work(begun, trail=True)
    assert (b.alarm.state, b.alarm.handler, b.alarm.restored_at) == ("pending", None, t + 61)
    assert [s.state for s in b.steps] == ["open", "skipped", "open"]  # as olga left them
    assert (b.trail[-1].action, b.trail[-1].actor) == ("restore.left_open", "receiver")
    assert trail(b.trail, None, {})[-1]["text"] == (
        "Restored (event #%d): not resolved by the receiver's restore policy, left open: "
        "1 mandatory step open." % ac_back.event_id)
    # the operator who comes back resolves it as usual
    await wf.claim(begun, "olga")
    await wf.step(begun, 1, "complete", "olga")
    done = await wf.resolve(begun, "olga", "restored")
    assert done.state == "resolved" and done.resolved_by == "olga"


async def test_without_close_cancelled_a_cancel_only_attaches(store):
    wf = await workflow(store, close_cancelled=False)
    await bank(store, wf)
    aid = (await store.ingest(event(wf, 5, 134, "burglary", 5, zone=1))).alarm_id
    out = await store.ingest(event(wf, 6, 406, "status", 9, zone=2, user=2, opens=False))
    assert out.touched == (aid,)
    a = await store.get_alarm(aid)
    assert (a.state, a.cancel_user) == ("pending", 2)


async def test_a_recent_closing_names_the_user_who_armed(store):
    wf = await workflow(store)
    await bank(store, wf)
    aid = (await store.ingest(event(wf, 5, 134, "burglary", 5, zone=1))).alarm_id
    out = await store.ingest(event(wf, 6, 459, "status", 9, zone=4, user=4, opens=False))
    assert out.touched == (aid,)
    assert (await store.get_alarm(aid)).recent_close_user == 4
    last = (await wf.work(aid, trail=True)).trail[-1]
    assert last.action == "recent_close" and last.detail["user"] == 4


async def test_sites_contacts_notes_and_their_audit(store):
    wf = await workflow(store)
    await bank(store, wf)
    s = await wf.site("1001")
    assert [c.name for c in s.contacts][:2] == ["Branch security desk", "Anna Berg"]
    assert s.contact("Anna Berg").passcode_hash.startswith("$argon2id$")
    with pytest.raises(ActionRefused, match="--replace"):
        await wf.import_site(str(EX / "sites" / "1001-city-bank.toml"), "test")
    with pytest.raises(NotFound, match="no account 1002"):
        await wf.import_site(str(EX / "sites" / "1002-flat-4b.toml"), "test")
    assert await wf.put_contact("1001", {"name": "Night guard", "phones": ["+00 555 0177"],
                                         "available": ["daily 20:00-06:00"]}, "sam")
    with pytest.raises(WorkflowConfigError, match="never written"):
        await wf.put_contact("1001", {"name": "X", "phones": ["+00 1"], "passcode": "abc"},
                             "sam")
    await wf.set_call_orders("1001", {"holdup": ["Night guard", "Anna Berg"]}, "sam")
    with pytest.raises(WorkflowConfigError, match="names no contact"):
        await wf.set_call_orders("1001", {"holdup": ["Nobody"]}, "sam")
    await wf.delete_contact("1001", "Anna Berg", "sam")
    s = await wf.site("1001")
    assert s.call_orders["holdup"] == ("Night guard",)
    acct = await store.get_account("1001")
    assert "Anna Berg" not in [c["name"] for c in acct.contacts]
    assert all("hash" not in str(c) for c in acct.contacts)
    now = time.time()
    n1 = await wf.add_note("1001", "Owner on holiday", "olga", expires_at=now + 3600)
    with pytest.raises(ActionRefused, match="end before"):
        await wf.add_note("1001", "too late", "olga", expires_at=now - 5)
    shown = await wf.shown_notes("1001", time.time())
    assert [n.text for n in shown][0] == "Owner on holiday" and len(shown) == 3
    with pytest.raises(ActionRefused, match="only its author"):
        await wf.delete_note("1001", n1, "piotr", anyone=False)
    await wf.delete_note("1001", n1, "sam", anyone=True)
    assert n1 not in [n.id for n in await wf.shown_notes("1001", time.time())]
    [(kept, deleted_at, by)] = [x for x in await wf.notes("1001", True) if x[0].id == n1]
    assert deleted_at is not None and by == "sam"
    changes = [(c["action"], c["detail"].get("change")) for c in await wf.site_changes("1001")]
    assert ("site.note", "deleted") in changes and ("site.contact", "deleted") in changes
    assert ("site.passcode", None) in changes and ("site.import", None) in changes
    assert "granite" not in str(await wf.site_changes("1001"))


async def test_the_workflow_files_in_force_follow_the_store(store):
    wf = await workflow(store)
    other = Workflow(store)
    await other.load()
    assert other.planset.hash == wf.planset.hash and "holdup-bank" in other.planset.plans
    with pytest.raises(WorkflowConfigError, match="plan 'x', step 1 \\(wait\\): a wait step "
                                                  "needs minutes"):
        await wf.load_file("plans", '[plans.x]\ntitle = "X"\n[[plans.x.steps]]\n'
                           'kind = "wait"\n[assign]\ndefault = "x"\n', "console (ada)", "ada")
    text = '[plans.x]\ntitle = "X"\n[[plans.x.steps]]\nkind = "instruction"\ntext = "Go"\n' \
           '[assign]\ndefault = "x"\n'
    f, changed = await wf.load_file("plans", text, "console (ada)", "ada")
    assert changed and not (await wf.load_file("plans", text, "console (ada)", "ada"))[1]
    assert await other.refresh() and list(other.planset.plans) == ["x"]
    hist = await store.read(lambda tx: workflow_db.file_history(tx, "plans"))
    assert [h.active for h in hist] == [True, False] and hist[0].loaded_by == "ada"


async def test_a_store_with_open_alarms_migrates(backend, monkeypatch):
    import importlib
    mod = importlib.import_module("receiver.sqlite_store" if backend.name == "sqlite"
                                  else "receiver.pg_store")
    # a store as the receiver before the workflow (version 4: issue 22's tracks) left it
    workflow_at = 4
    assert mod.MIGRATIONS[workflow_at].args == (backend.name if backend.name == "sqlite"
                                                else "postgresql",)  # the workflow's
    monkeypatch.setattr(mod, "SCHEMA_VERSION", workflow_at)
    s = backend.make()
    await s.open()
    await s.add_account(Account("1", os.urandom(32)))


    async def old_alarm(tx):  # as a version 3 receiver wrote it
        eid = await tx.value(
            """INSERT INTO events (account, protocol, source, dedupe_key, seq, qualifier, code,
                   event_class, priority, description, partition, zone, received_at, path,
                   peer) VALUES ('1', 'native', 'panel', 'native:1', 1, 1, 130, 'burglary', 5,
                   'Burglary', 1, 4, :t, 1, '') RETURNING id""", t=time.time())
        await tx.run("""INSERT INTO alarms (event_id, account, event_class, priority, code,
                            partition, zone, description, created_at)
                        VALUES (:e, '1', 'burglary', 5, 130, 1, 4, 'Burglary', :t)""",
                     e=eid, t=time.time())
    await s.transact(old_alarm)
    await s.close()
    monkeypatch.undo()
    s = backend.make()
    await s.open()
    try:
        assert await s.schema_version() == mod.SCHEMA_VERSION
        [a] = await s.list_alarms()
        assert (a.state, a.claim_rev, a.plan_name, a.handler) == ("pending", 0, None, None)
        wf = Workflow(s)
        a = await wf.claim(a.id, "olga")
        assert a.handler == "olga"
        a = await wf.resolve(a.id, "olga", "false", "left over from before the upgrade")
        assert a.disposition == "false"
        with pytest.raises(AlarmStateError):
            await wf.acknowledge(a.id, "olga")
    finally:
        await s.close()


def test_steps_helpers_are_the_store_s():
    # the compare-and-set condition the scheduler and the stamp share
    assert steps.WAITING == escalation.STEP_WAITING
