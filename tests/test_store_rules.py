"""The centre's rules through the real store (issue 18), on SQLite and on
PostgreSQL (the contract suite's ``store`` fixture), with explicit time:
test placements, runaway holds, incidents, the restore policy, schedules
and their temporary changes, the rules' audit, the periodic-test look-ups
and the report rows.  The decisions themselves are the cores' (tests/
test_rules_*.py); here: that both backends execute the ingest plan's rule
rows, and that every change is audited and survives a reopen."""

import asyncio
import datetime as dt

import pytest

from receiver import ingest
from receiver.records import Account, EventRecord
from receiver.rules import hygiene, schedules, testmode
from receiver.rules.schedules import DayPlan, Schedule, TemporaryChange
from receiver.rules_store import RulesError
from receiver.workflow_service import Workflow
from tests.pg_fixture import pg_server, pg_url  # noqa: F401
from tests.test_store_contract import alarm_rec, backend, rec, store  # noqa: F401


async def operator(store, alarm_id, action, by, note, at):
    """An operator acknowledges or resolves (with the built-in disposition
    'other' and the note) through the workflow, at ``at``."""
    wf = Workflow(store, clock=lambda: at)
    if action == "acknowledge":
        return await wf.acknowledge(alarm_id, by)
    if action == "claim":
        return await wf.claim(alarm_id, by)
    return await wf.resolve(alarm_id, by, "other", note=note)

T0 = 1_900_000_000.0  # a Sunday in 2030, far from the clock the receiver would read
ACCT = "1001"


def policy(runaway=(3, 600), group=300, auto=()):
    return ingest.Hygiene(hygiene.RunawayPolicy(*runaway), hygiene.GroupingPolicy(group),
                          hygiene.RestorePolicy(frozenset(auto)))


def burglary(seq, at, zone=4, qualifier=1, **kw):
    return alarm_rec(seq, at, qualifier=qualifier, zone=zone, account=ACCT, **kw)


def trouble(seq, at, qualifier=1, **kw):
    """A low battery (302, trouble): an alarm when new, its restore when 3."""
    d = dict(code=302, zone=0, partition=0, event_class="trouble", priority=8,
             qualifier=qualifier, received_at=at, open_alarm=qualifier == 1, account=ACCT)
    d.update(kw)
    return rec(seq=seq, **d)


def own(dedupe_key, source, code, at, qualifier=1, **kw):
    """One of the receiver's own events (no native sequence)."""
    d = dict(account=ACCT, protocol="native", dedupe_key=dedupe_key, qualifier=qualifier,
             code=code, partition=0, zone=0, received_at=at, source=source,
             event_class="trouble", priority=8)
    d.update(kw)
    return EventRecord(**d)


async def with_account(store):
    await store.add_account(Account(ACCT, bytes(32), site_name="City Bank", region="central",
                                    partitions={"1": "vault"}))
    return store


async def test_events_under_test_are_marked_and_open_no_alarm(store):
    store.hygiene = policy(group=0)
    await with_account(store)
    with pytest.raises(testmode.PlacementError, match="needs a reason"):
        await store.place_on_test(testmode.Placement(ACCT, T0, T0 + 3600, " ", "ivan", zone=4),
                                  now=T0)
    p = await store.place_on_test(testmode.Placement(ACCT, T0, T0 + 3600, "detector swap",
                                                     "ivan", zone=4), now=T0)
    assert p.id is not None and [x.id for x in await store.list_test_placements()] == [p.id]
    page = [("district_command", {"text": "burglary"})]  # each would be routed
    on_test = await store.ingest(burglary(1, T0 + 60, outbox=page))
    other_zone = await store.ingest(burglary(2, T0 + 61, zone=5, outbox=page))
    assert on_test.alarm_id is None and on_test.test_placement == p.id
    assert other_zone.alarm_id is not None and other_zone.test_placement is None
    ev = {e.id: e for e in await store.list_events()}
    assert ev[on_test.event_id].test_placement == p.id
    # only the alarm off test goes to the dispatch centre
    assert [r.alarm_id for r in await store.list_outbox()] == [other_zone.alarm_id]
    # the end: by the receiver at its end time, once; then zone 4 alarms again
    ended = await store.end_test_placement(p.id, "receiver", at=T0 + 4000)
    assert ended.ended_at == T0 + 3600 and ended.ended_by == "receiver"
    assert await store.end_test_placement(p.id, "olga", at=T0 + 4001) is None
    with pytest.raises(RulesError, match="no test placement 99"):
        await store.end_test_placement(99, "olga", at=T0)
    after = await store.ingest(burglary(3, T0 + 3700))
    assert after.alarm_id is not None and after.test_placement is None
    trail = [(a.action, a.actor, a.sentence) for a in await store.list_rules_audit(ACCT)]
    assert trail == [
        ("test.end", "receiver", "Test of zone 4 of account 1001 ended by the receiver: its "
                                 "time was up (placed by ivan: detector swap)."),
        ("test.place", "ivan", "Zone 4 of account 1001 placed on test by ivan until "
                               "2030-03-17 18:46 UTC: detector swap.")]
    assert await store.list_test_placements() == []
    assert [x.id for x in await store.list_test_placements(live=False)] == [p.id]


async def test_an_account_placement_covers_the_receivers_own_events_too(store):
    store.hygiene = policy(group=0)
    await with_account(store)
    await store.place_on_test(testmode.Placement(ACCT, T0, T0 + 600, "service", "ivan"),
                              now=T0)
    out = await store.ingest(own("supervision:1:1:1", "supervision", 350, T0 + 5,
                                 open_alarm=True, zone=1))
    assert out.alarm_id is None and out.test_placement is not None


async def test_a_runaway_zone_is_held_counted_and_released(store):
    store.hygiene = policy(runaway=(3, 600), group=0)
    await with_account(store)
    outs = [await store.ingest(burglary(i, T0 + 10 * i)) for i in range(1, 5)]
    assert all(o.alarm_id for o in outs)  # 3 alarms, the 4th holds the zone
    anchor = outs[3].alarm_id
    [hold] = await store.list_zone_holds()
    assert (hold.zone, hold.alarm_id, hold.signals) == (4, anchor, 0)
    assert hold.reason == "zone 4 held: more than 3 alarms in 10 min"
    # the following alarms open nothing: attached and counted (one batch too)
    more = await store.ingest_many([burglary(i, T0 + 10 * i) for i in range(5, 8)])
    assert [(o.alarm_id, o.attached_to, o.signals) for o in more] == [
        (None, anchor, 1), (None, anchor, 2), (None, anchor, 3)]
    # a hold-up on the same number is never held (a zone's hold-up button)
    holdup = await store.ingest(burglary(8, T0 + 80, code=122, event_class="holdup",
                                         priority=1))
    assert holdup.alarm_id is not None and holdup.attached_to is None
    [hold] = await store.list_zone_holds()
    assert hold.signals == 3 and hold.last_signal_at == T0 + 70
    n, first, last, evs = await store.attached_events(anchor)
    assert (n, first, last) == (3, T0 + 50, T0 + 70) and len(evs) == 3
    assert len(await store.list_alarms()) == 5
    # released: counting starts afresh from the release
    with pytest.raises(RulesError, match="zone 5 of account 1001 is not held"):
        await store.release_zone(ACCT, 5, "sam", at=T0 + 90)
    rel = await store.release_zone(ACCT, 4, "sam", at=T0 + 90)
    assert rel.released_by == "sam"
    assert (await store.ingest(burglary(9, T0 + 100))).alarm_id is not None
    sentences = [a.sentence for a in await store.list_rules_audit(ACCT)]
    assert sentences == [
        "Zone 4 of account 1001 released by sam after 3 more signals (alarm #%d)." % anchor,
        "Zone 4 of account 1001 held by the receiver: more than 3 alarms in 10 min "
        "(alarm #%d)." % anchor]


async def test_resolving_a_held_zones_anchor_releases_it(store):
    store.hygiene = policy(runaway=(1, 600), group=0)
    await with_account(store)
    await store.ingest(burglary(1, T0))
    anchor = (await store.ingest(burglary(2, T0 + 1))).alarm_id
    assert (await store.ingest(burglary(3, T0 + 2))).attached_to == anchor
    await operator(store, anchor, "resolve", "olga", "wiring fault", T0 + 30)
    assert await store.list_zone_holds() == []
    [audit] = [a for a in await store.list_rules_audit(ACCT) if a.action == "zone.release"]
    assert audit.sentence == ("Zone 4 of account 1001 released with the resolution of alarm "
                              "#%d by olga, after 1 more signal." % anchor)


async def test_alarms_of_a_site_are_grouped_into_incidents(store):
    store.hygiene = policy(runaway=(50, 600), group=300)
    await with_account(store)
    a = await store.ingest(burglary(1, T0, zone=1))
    b, c = await store.ingest_many([burglary(2, T0 + 200, zone=2),
                                    trouble(3, T0 + 450)])
    d = await store.ingest(burglary(4, T0 + 800, zone=3))  # 350 s after the last member
    assert a.incident_id == a.alarm_id
    assert b.incident_id == c.incident_id == a.alarm_id
    assert d.incident_id == d.alarm_id
    members = await store.incident_members(a.alarm_id)
    assert [m.id for m in members] == [a.alarm_id, b.alarm_id, c.alarm_id]
    assert all(m.incident_id == a.alarm_id for m in members)
    # the head resolved: the incident takes no newcomers
    await operator(store, d.alarm_id, "resolve", "olga", "checked", T0 + 810)
    e = await store.ingest(burglary(5, T0 + 820, zone=4))
    assert e.incident_id == e.alarm_id


async def test_the_restore_policy_resolves_troubles_with_the_disposition_restored(store):
    store.hygiene = policy(group=0, auto=("trouble",))
    await with_account(store)
    low = await store.ingest(trouble(1, T0))
    acked = await store.ingest(trouble(2, T0 + 1, code=301, dedupe_key="native:2"))
    await operator(store, acked.alarm_id, "acknowledge", "olga", None, T0 + 2)
    intruder = await store.ingest(burglary(3, T0 + 3))
    back = await store.ingest(trouble(4, T0 + 60, qualifier=3))
    ac_back = await store.ingest(trouble(5, T0 + 61, qualifier=3, code=301))
    await store.ingest(burglary(6, T0 + 62, qualifier=3))
    assert back.resolved == (low.alarm_id,) and ac_back.resolved == ()
    a = await store.get_alarm(low.alarm_id)
    assert (a.state, a.resolved_by, a.disposition, a.restored_at, a.restore_event_id) == (
        "resolved", "receiver", "restored", T0 + 60, back.event_id)
    [_, audit] = await store.alarm_audit(low.alarm_id)
    assert (audit.from_state, audit.to_state, audit.actor) == ("pending", "resolved",
                                                               "receiver")
    assert audit.note.startswith("restored at 2030-03-17T17:47:40Z; resolved by the receiver")
    # an acknowledged one (someone works it) and a burglary: shown, not closed
    for aid, ev in ((acked.alarm_id, ac_back.event_id), (intruder.alarm_id, None)):
        x = await store.get_alarm(aid)
        assert x.state != "resolved" and x.restored_at is not None
    # one an operator took (claimed, still pending): left to them, restore shown
    taken = await store.ingest(trouble(9, T0 + 70, code=311, dedupe_key="native:9"))
    await operator(store, taken.alarm_id, "claim", "olga", None, T0 + 71)
    taken_back = await store.ingest(trouble(10, T0 + 72, qualifier=3, code=311,
                                            dedupe_key="native:10"))
    assert taken_back.resolved == ()
    x = await store.get_alarm(taken.alarm_id)
    assert (x.state, x.handler, x.restored_at) == ("pending", "olga", T0 + 72)
    # in one batch: the alarm and its restore
    both = await store.ingest_many([trouble(7, T0 + 100, code=309, dedupe_key="native:7"),
                                    trouble(8, T0 + 101, code=309, qualifier=3,
                                            dedupe_key="native:8")])
    assert both[1].resolved == (both[0].alarm_id,)
    assert (await store.get_alarm(both[0].alarm_id)).state == "resolved"


FRI = dt.date(2030, 3, 22)


def bank_schedule(account=ACCT, partition=1, tolerance=15):
    day = DayPlan(schedules.parse_window("08:00-08:30", "t"),
                  schedules.parse_window("17:00-17:30", "t"))
    return Schedule(account, partition, "Europe/Berlin", (day,) * 5 + (schedules.CLOSED,) * 2,
                    tolerance)


async def test_schedules_and_temporary_changes_are_stored_and_audited(store, backend):
    await with_account(store)
    rev0 = await store.rules_revision()
    with pytest.raises(RulesError, match="no account 2002"):
        await store.set_schedule(bank_schedule("2002"), "ada", at=T0)
    assert await store.set_schedule(bank_schedule(), "ada", at=T0) is True
    assert await store.set_schedule(bank_schedule(), "ada", at=T0 + 1) is False  # the same
    assert await store.list_schedules(ACCT) == [bank_schedule()]
    assert await store.rules_revision() > rev0
    tz = bank_schedule().tz
    late = DayPlan(schedules.parse_window("10:30-11:00", "t"),
                   schedules.parse_window("17:00-17:30", "t"))
    made = schedules.boundary(tz, FRI, 7 * 60)
    with pytest.raises(RulesError, match="partition 2 of account 1001 has no schedule"):
        await store.add_schedule_change(TemporaryChange(ACCT, 2, FRI, late, made, made + 3600,
                                                        "olga"))
    with pytest.raises(schedules.ScheduleError, match="who made it"):
        await store.add_schedule_change(TemporaryChange(ACCT, 1, FRI, late, made, made + 3600))
    c = await store.add_schedule_change(TemporaryChange(
        ACCT, 1, FRI, late, made, made + 12 * 3600, "olga", "staff training"))
    assert c.id is not None
    [got] = await store.list_schedule_changes(ACCT, since=made)
    assert got == c
    gone = await store.cancel_schedule_change(c.id, "sam", at=made + 600)
    assert gone.expires_at == made + 600 and gone.cancelled_by == "sam"
    assert await store.list_schedule_changes(ACCT, since=made + 601) == []
    with pytest.raises(RulesError, match="no longer in force"):
        await store.cancel_schedule_change(c.id, "sam", at=made + 700)
    await store.delete_schedule(ACCT, 1, "ada", at=T0 + 5)
    assert await store.list_schedules() == []
    trail = [(a.action, a.actor) for a in await store.list_rules_audit(ACCT)]
    assert trail == [("schedule.delete", "ada"), ("schedule.cancel", "sam"),
                     ("schedule.change", "olga"), ("schedule.set", "ada")]
    change = next(a for a in await store.list_rules_audit(ACCT) if a.action == "schedule.change")
    assert change.sentence == ("Hours of partition 1 of account 1001 on 2030-03-22 changed by "
                               "olga to open 10:30-11:00, close 17:00-17:30, until "
                               "2030-03-22 18:00 UTC: staff training.")
    # what was written survives a reopen
    await store.close()
    again = backend.make()
    await again.open()
    try:
        assert len(await again.list_rules_audit(ACCT)) == 4
    finally:
        await again.close()


async def test_open_close_history_is_the_partitions_reports_and_the_state_before(store):
    await with_account(store)

    def oc(seq, at, code, q, partition=1, user=3):
        return rec(account=ACCT, seq=seq, code=code, qualifier=q, partition=partition,
                   zone=user, user=user, received_at=at)
    await store.ingest_many([
        oc(1, T0 - 7200, 401, 3), oc(2, T0 - 3600, 401, 1, user=2),  # before; the last counts
        oc(3, T0 + 10, 401, 3, partition=0), oc(4, T0 + 20, 401, 1, partition=2),
        oc(5, T0 + 30, 130, 1), oc(6, T0 + 40, 406, 1), oc(7, T0 + 50, 441, 3, user=5)])
    hist = await store.open_close_history(ACCT, 1, since=T0)
    assert hist == [schedules.OpenClose(T0 - 3600, 1, False, 2),
                    schedules.OpenClose(T0 + 10, 0, True, 3),
                    schedules.OpenClose(T0 + 50, 1, True, 5)]


async def test_periodic_test_look_ups(store):
    await with_account(store)
    await store.ingest_many([rec(account=ACCT, seq=1, code=602, received_at=T0),
                             rec(account=ACCT, seq=2, code=608, received_at=T0 + 5),
                             rec(account=ACCT, seq=3, code=602, qualifier=3,
                                 received_at=T0 + 9)])
    assert await store.last_test_reports([ACCT, "9"]) == {ACCT: T0 + 5}
    await store.ingest(own("periodic:1:1", "periodic", 358, T0 + 90000))
    assert await store.periodic_failed([ACCT]) == {ACCT: T0 + 90000}
    await store.ingest(own("periodic:3:2", "periodic", 358, T0 + 90100, qualifier=3))
    assert await store.periodic_failed([ACCT]) == {}


async def test_report_rows_carry_site_region_operators_and_receiver_events(store):
    store.hygiene = policy(group=0)
    await with_account(store)
    a = await store.ingest(burglary(1, T0))
    await store.ingest(burglary(2, T0 + 99999))  # after the range
    await operator(store, a.alarm_id, "acknowledge", "olga", None, T0 + 30)
    await operator(store, a.alarm_id, "resolve", "olga", "false alarm", T0 + 90)
    await store.ingest(own("schedule:1:x:fail_to_close", "schedule", 454, T0 + 10,
                           partition=1))
    alarms, events = await store.report_rows(T0, T0 + 3600)
    [f] = alarms
    assert (f.id, f.site, f.region, f.acknowledged_by, f.resolved_at, f.note) == (
        a.alarm_id, "City Bank", "central", "olga", T0 + 90, "false alarm")
    [e] = events
    assert (e.code, e.site, e.source) == (454, "City Bank", "schedule")


async def test_two_stores_racing_on_one_zone_hold_it_once(backend, tmp_path):
    """Several writers (PostgreSQL: two receivers) ingesting one runaway zone
    at once: the account lock serialises the decisions, so one hold, and
    every signal is either an alarm or counted on it."""
    if backend.name != "postgresql":
        pytest.skip("one writer on SQLite")
    a, b = backend.make(), backend.make()
    await a.open()
    await b.open()
    try:
        await with_account(a)
        for s in (a, b):
            s.hygiene = policy(runaway=(3, 600), group=0)

        async def feed(s, first):
            outs = []
            for i in range(first, first + 20, 2):
                outs += await s.ingest_many([burglary(i, T0 + i), burglary(i + 1, T0 + i + 1)])
            return outs
        outs = sum(await asyncio.gather(feed(a, 0), feed(b, 100)), [])
        opened = [o for o in outs if o.alarm_id]
        attached = [o for o in outs if o.attached_to]
        assert len(opened) == 4 and len(attached) == 36
        [hold] = await a.list_zone_holds()
        assert hold.signals == 36 and {o.attached_to for o in attached} == {hold.alarm_id}
    finally:
        await a.close()
        await b.close()
