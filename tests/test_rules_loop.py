"""The rules' timer task (receiver.rules_loop) in a real receiver on a
real store, with explicit time: every tick is given its ``now`` (days of
2031, far from the clock the receiver's own timer reads, so the two never
meet), nothing sleeps through a day.

- opening schedules: a fail to close raised at its deadline once, through
  the normal ingest path (classified, alarmed, routed), again after a
  restart only as a duplicate; an early opening judged the moment the
  disarm is stored; a temporary change moving the deadline, audited;
- test placements ended at their time, once, audited, told to consoles;
- periodic tests: a missed 602 raises 358, the next 602 restores it.
The property over random schedules through the real store, and two
receivers on PostgreSQL, are in tests/test_rules_loop_property.py."""

import datetime as dt
import logging

import pytest

from receiver import routing
from receiver.config import Config
from receiver.ingest import Hygiene
from receiver.messages import RulesUpdate
from receiver.records import Account
from receiver.rules import hygiene, schedules, testmode
from receiver.rules.schedules import CLOSED, DayPlan, Schedule, TemporaryChange
from receiver.testing import running_receiver
from testkit.wait import wait_until

BERLIN = "Europe/Berlin"
THU, FRI = dt.date(2031, 3, 20), dt.date(2031, 3, 21)
ACCT = "1001"


def W(text):
    return schedules.parse_window(text, "test")


BANK = Schedule(ACCT, 1, BERLIN, (DayPlan(W("08:00-08:30"), W("17:00-17:30")),) * 5
                + (CLOSED,) * 2, 15)


def at(day, hhmm):
    h, m = map(int, hhmm.split(":"))
    return schedules.boundary(BANK.tz, day, h * 60 + m)


def oc(seq, when, qualifier, user=3, partition=1, code=401):
    """A panel's opening (qualifier 1) or closing (3) report."""
    return {"account": ACCT, "protocol": "native", "dedupe_key": "native:%d" % seq,
            "seq": seq, "qualifier": qualifier, "code": code, "partition": partition,
            "zone": user, "received_at": when}


def config(tmp_path, **kw) -> Config:
    cfg = Config(db=str(tmp_path / "rx.db"), **kw)
    cfg.router = routing.parse({
        "centers": {"dc-1": {"level": "district_command", "name": "District 1 Command"}},
        "routes": [{"regions": ["*"], "classes": ["trouble", "burglary"],
                    "district_command": "dc-1"}]}, known_classes=None)
    return cfg


def bank_account(**kw) -> Account:
    return Account(ACCT, bytes(32), site_name="City Bank", region="central",
                   partitions={"1": "vault"}, **kw)


async def events_of(rx, code):
    return [e for e in await rx.store.list_events(account=ACCT) if e.code == code]


async def test_fail_to_close_raised_once_at_its_deadline_and_once_after_a_restart(tmp_path):
    cfg = config(tmp_path)
    async with running_receiver(cfg, [bank_account()]) as rx:
        await rx.set_schedule(BANK, "ada")
        await rx.ingest(oc(1, at(THU, "17:10"), 3))
        await rx.ingest(oc(2, at(FRI, "08:10"), 1, user=2))  # on time: nothing
        await rx.rules.tick(at(FRI, "17:44"))
        assert await events_of(rx, 454) == []
        assert rx.rules.next_deadline() == at(FRI, "17:45")
        await rx.rules.tick(at(FRI, "17:45"))
        [ftc] = await events_of(rx, 454)
        assert (ftc.received_at, ftc.source, ftc.peer, ftc.event_class) == (
            at(FRI, "17:45"), "schedule", "receiver", "trouble")
        assert ftc.description == ("Failed to close, vault: not armed by 17:45 "
                                   "(close 17:00-17:30, 15 min tolerance)")
        [alarm] = await rx.store.list_alarms()
        assert (alarm.code, alarm.routed_to) == (454, {"district_command": "dc-1"})
        await rx.rules.tick(at(FRI, "18:30"))
        assert len(await events_of(rx, 454)) == 1
        # armed at last: the restore, stamped on the alarm (shown, not closed)
        await rx.ingest(oc(3, at(FRI, "19:42"), 3, user=5))
        await wait_until(lambda: rx.rules.raised == 2, what="the 454 restore")
        a = await rx.store.get_alarm(alarm.id)
        assert a.restored_at == at(FRI, "19:42") and a.state == "pending"
    # a restart evaluates the lookback again: everything is there already
    async with running_receiver(cfg) as rx:
        await rx.rules.catch_up(at(FRI, "23:00"))
        assert rx.rules.raised == 0 and rx.rules.duplicates == 2
        assert len(await events_of(rx, 454)) == 2


async def test_a_receiver_down_over_the_deadline_raises_it_when_back(tmp_path):
    cfg = config(tmp_path)
    async with running_receiver(cfg, [bank_account()]) as rx:
        await rx.set_schedule(BANK, "ada")
        await rx.ingest(oc(1, at(THU, "17:10"), 3))
        await rx.ingest(oc(2, at(FRI, "08:10"), 1))
    async with running_receiver(cfg) as rx:
        await rx.rules.catch_up(at(FRI, "21:00"))
        [ftc] = await events_of(rx, 454)
        assert ftc.received_at == at(FRI, "17:45")  # stamped with its deadline


async def test_a_deadline_the_store_refuses_is_kept_and_stored_at_the_next_tick(tmp_path):
    async with running_receiver(config(tmp_path), [bank_account()]) as rx:
        await rx.set_schedule(BANK, "ada")
        await rx.ingest(oc(1, at(THU, "17:10"), 3))
        await rx.ingest(oc(2, at(FRI, "08:10"), 1))
        # the database refuses writes at the deadline (a failover's standby)
        await rx.store.run_maintenance(lambda c: c.execute("PRAGMA query_only=1"))
        await rx.rules.tick(at(FRI, "17:45"))
        assert rx.rules.raised == 0
        await rx.store.run_maintenance(lambda c: c.execute("PRAGMA query_only=0"))
        # the next tick, long before the schedule's next deadline, stores it
        assert rx.rules.next_deadline() > at(FRI, "23:00")
        await rx.rules.tick(at(FRI, "17:46"))
        [ftc] = await events_of(rx, 454)
        assert ftc.received_at == at(FRI, "17:45")  # stamped with its deadline
        [alarm] = await rx.store.list_alarms()
        assert alarm.code == 454


async def test_an_early_opening_is_judged_when_the_disarm_is_stored(tmp_path):
    async with running_receiver(config(tmp_path), [bank_account()]) as rx:
        await rx.set_schedule(BANK, "ada")
        await rx.ingest(oc(1, at(THU, "17:10"), 3))
        await rx.ingest(oc(2, at(FRI, "06:12"), 1, user=2))
        evs = await wait_until(lambda: events_of(rx, 451), what="451 early open")
        [e] = evs
        assert (e.user, e.zone, e.event_class, e.received_at) == (2, 2, "burglary",
                                                                  at(FRI, "06:12"))
        assert e.description == ("Early open/close, user 2, vault: disarmed at 06:12 by "
                                 "user 2, before the opening window 08:00-08:30")
        [alarm] = await rx.store.list_alarms()
        assert alarm.event_class == "burglary" and alarm.priority < 8


async def test_a_late_opening_today_moves_the_deadlines_and_is_audited(tmp_path):
    sch = Schedule(ACCT, 1, BERLIN, BANK.week, 15, require_open=True)
    async with running_receiver(config(tmp_path), [bank_account()]) as rx:
        await rx.set_schedule(sch, "ada")
        await rx.ingest(oc(1, at(THU, "17:10"), 3))
        late = DayPlan(W("10:30-11:00"), W("17:00-17:30"))
        c = await rx.change_schedule(TemporaryChange(
            ACCT, 1, FRI, late, at(FRI, "07:00"), at(FRI, "23:59"), "olga", "staff training"))
        await rx.rules.tick(at(FRI, "08:45"))  # the planned opening deadline: moved
        assert await events_of(rx, 453) == []
        await rx.rules.tick(at(FRI, "11:15"))
        [fto] = await events_of(rx, 453)
        assert fto.received_at == at(FRI, "11:15")
        assert "still armed at 11:15 (open 10:30-11:00" in fto.description
        [audit] = [a for a in await rx.store.list_rules_audit(ACCT)
                   if a.action == "schedule.change"]
        assert audit.actor == "olga" and "staff training" in audit.sentence
        # cancelled: the plan is the week's again for what is still to come
        await rx.cancel_schedule_change(c.id, "sam")
        assert rx.rules.changes[(ACCT, 1)][0].cancelled_by == "sam"


async def test_placements_end_at_their_time_once_audited_and_told(tmp_path):
    async with running_receiver(config(tmp_path), [bank_account()]) as rx:
        sub = rx.subscribe()
        t = at(FRI, "09:00")
        p = await rx.store.place_on_test(testmode.Placement(ACCT, t, t + 5400, "detector swap",
                                                            "ivan", zone=4), now=t)
        assert await rx.rules.end_due_tests(t + 5399) == []
        [ended] = await rx.rules.end_due_tests(t + 5460)
        assert (ended.id, ended.ended_at, ended.ended_by) == (p.id, t + 5400, "receiver")
        assert await rx.rules.end_due_tests(t + 6000) == []  # once
        msgs = []
        while not sub.empty():
            msgs.append(sub.get_nowait())
        [m] = [m for m in msgs if isinstance(m, RulesUpdate) and m.action == "test.end"]
        assert m.sentence == ("Test of zone 4 of account 1001 ended by the receiver: its time "
                              "was up (placed by ivan: detector swap).")
        assert [a.action for a in await rx.store.list_rules_audit(ACCT)] == ["test.end",
                                                                             "test.place"]


async def test_a_missed_periodic_test_raises_358_and_the_next_test_restores_it(tmp_path):
    cfg = config(tmp_path)
    cfg.hygiene = Hygiene(restore=hygiene.RestorePolicy(frozenset({"trouble"})))
    acct = bank_account(test_interval_s=86400, test_grace_s=3600)
    t = at(THU, "06:00")
    async with running_receiver(cfg, [acct]) as rx:
        await rx.ingest({"account": ACCT, "protocol": "native", "dedupe_key": "native:1",
                         "seq": 1, "qualifier": 1, "code": 602, "received_at": t})
        await rx.rules.load_tests(t + 60)
        await rx.rules.tick(t + 86400 + 3599)
        assert await events_of(rx, 358) == []
        await rx.rules.tick(t + 86400 + 3600)
        [miss] = await events_of(rx, 358)
        assert (miss.qualifier, miss.source, miss.event_class) == (1, "periodic", "trouble")
        assert miss.description == ("Periodic test missed: no periodic test for 25 h 0 min "
                                    "(expected within 25 h 0 min)")
        [alarm] = await rx.store.list_alarms()
        await rx.ingest({"account": ACCT, "protocol": "native", "dedupe_key": "native:2",
                         "seq": 2, "qualifier": 1, "code": 602, "received_at": t + 90000})
        await wait_until(lambda: rx.rules.raised == 2, what="the 358 restore")
        back = [e for e in await events_of(rx, 358) if e.qualifier == 3]
        assert len(back) == 1
        # the restore policy resolves a trouble nobody picked up
        a = await rx.store.get_alarm(alarm.id)
        assert (a.state, a.disposition, a.resolved_by) == ("resolved", "restored", "receiver")


async def test_a_358_the_store_refuses_is_raised_at_the_next_tick_once(tmp_path, caplog):
    """The periodic test's supervisor fails the line once: a 358 the store
    refuses then (a failover's standby) lives only in the retry, and must be
    stored at the next tick, once, counted and logged as raised."""
    caplog.set_level(logging.INFO, logger="receiver.rules_loop")
    acct = bank_account(test_interval_s=86400, test_grace_s=3600)
    t = at(THU, "06:00")
    async with running_receiver(config(tmp_path), [acct]) as rx:
        await rx.ingest({"account": ACCT, "protocol": "native", "dedupe_key": "native:1",
                         "seq": 1, "qualifier": 1, "code": 602, "received_at": t})
        await rx.rules.load_tests(t + 60)
        await rx.store.run_maintenance(lambda c: c.execute("PRAGMA query_only=1"))
        await rx.rules.tick(t + 86400 + 3600)  # missed: the 358 is refused
        assert rx.rules.raised == 0
        assert "rules events not stored yet (retrying) count=1" in caplog.text
        await rx.store.run_maintenance(lambda c: c.execute("PRAGMA query_only=0"))
        assert await events_of(rx, 358) == []
        await rx.rules.tick(t + 86400 + 3601)
        [miss] = await events_of(rx, 358)
        assert (miss.qualifier, miss.source, miss.received_at) == (1, "periodic",
                                                                   t + 86400 + 3600)
        assert rx.rules.raised == 1 and "rules event raised account=1001 code=358" \
            in caplog.text
        [alarm] = await rx.store.list_alarms()
        assert alarm.code == 358
        await rx.rules.tick(t + 86400 + 7200)  # nothing more: raised once
        assert len(await events_of(rx, 358)) == 1 and rx.rules.raised == 1


@pytest.mark.parametrize("bad, message", [
    ("[[schedule]]\naccount = \"1001\"\npartitions = [1]\ntimezone = \"Mars/Olympus\"\n",
     "unknown time zone"),
    ("[[schedule]\n", "schedules file"),
])
async def test_a_schedules_file_that_cannot_be_used_stops_the_start(tmp_path, bad, message):
    f = tmp_path / "schedules.toml"
    f.write_text(bad)
    cfg = config(tmp_path)
    cfg.schedules_file = str(f)
    with pytest.raises(schedules.ScheduleError, match=message):
        async with running_receiver(cfg, [bank_account()]):
            pass
