"""Opening schedules (receiver.rules.schedules) with explicit time.

The property test drives the evaluator with random schedules, holidays,
planned exceptions, temporary changes and arm/disarm reports around DST
transitions, and compares what it raises with an oracle that simply
lives through the days minute by minute, as a receiver watching the clock
would, reading local time the other way round (instant -> wall clock)."""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import contactid
from receiver.rules import schedules as s
from receiver.rules.schedules import (CLOSED, DayPlan, OpenClose, Schedule, ScheduleError,
                                      TemporaryChange, Window)

ROOT = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")


def W(text):
    return s.parse_window(text, "test")


BANK_DAY = DayPlan(W("08:00-08:30"), W("17:00-17:30"))


def bank(require_open=False, holidays=(), exceptions=None, tz="Europe/Berlin"):
    return Schedule("1001", 1, tz, (BANK_DAY,) * 5 + (CLOSED,) * 2, 15, require_open,
                    frozenset(holidays), exceptions or {})


def at(day, hhmm, tz=BERLIN):
    h, m = map(int, hhmm.split(":"))
    return s.boundary(tz, day, h * 60 + m)


def kinds(events):
    return [(e.kind, e.day.isoformat(), s.local(BERLIN, e.at)[1]) for e in events]


FRI = dt.date(2026, 3, 27)  # the Friday before Europe's spring-forward night
THU = dt.date(2026, 3, 26)


def armed(day, hhmm, user=3, partition=1):
    return OpenClose(at(day, hhmm), partition, True, user)


def disarmed(day, hhmm, user=2, partition=1):
    return OpenClose(at(day, hhmm), partition, False, user)


def run(sch, hist, day, until, changes=()):
    return s.evaluate(sch, changes, hist, s.day_start(sch.tz, day), until)


# -- the rules, one example each ---------------------------------------------------------


def test_a_normal_day_raises_nothing_and_a_lunch_break_is_not_a_late_opening():
    hist = [armed(THU, "17:10"), disarmed(FRI, "08:10"), armed(FRI, "12:00"),
            disarmed(FRI, "13:00"), armed(FRI, "17:20")]
    assert run(bank(require_open=True), hist, FRI, at(FRI, "23:59")) == []


def test_fail_to_close_at_the_deadline_once_and_its_restore_when_armed():
    hist = [armed(THU, "17:10"), disarmed(FRI, "08:10")]
    sch = bank()
    assert run(sch, hist, FRI, at(FRI, "17:44")) == []  # not due yet
    [ftc] = run(sch, hist, FRI, at(FRI, "17:45"))
    assert (ftc.kind, ftc.code, ftc.qualifier) == ("fail_to_close", 454, 1)
    assert ftc.at == at(FRI, "17:45") and ftc.dedupe_key == "schedule:1:2026-03-27:fail_to_close"
    assert ftc.text == "not armed by 17:45 (close 17:00-17:30, 15 min tolerance)"
    later = hist + [armed(FRI, "19:42", user=5)]
    evs = run(sch, later, FRI, at(FRI, "23:00"))
    assert kinds(evs) == [("fail_to_close", "2026-03-27", 17 * 60 + 45),
                          ("fail_to_close_restored", "2026-03-27", 19 * 60 + 42)]
    assert evs[1].text == "armed at 19:42 by user 5, 117 min after the deadline"
    rec = evs[1].record_fields()
    # the restore matches its alarm: same code, partition and zone (0)
    assert (rec["code"], rec["qualifier"], rec["partition"], rec["zone"]) == (454, 3, 1, 0)
    assert contactid.event_class(454) == "trouble"


def test_early_open_is_a_burglary_class_event_naming_the_user():
    hist = [armed(THU, "17:10"), disarmed(FRI, "06:12", user=2), armed(FRI, "06:20"),
            disarmed(FRI, "06:40", user=2), disarmed(FRI, "08:05")]
    [e] = run(bank(), hist, FRI, at(FRI, "12:00"))
    assert (e.kind, e.code, e.user) == ("early_open", 451, 2)  # once a day
    assert e.text == "disarmed at 06:12 by user 2, before the opening window 08:00-08:30"
    rec = e.record_fields()
    assert rec["zone"] == 2 and rec["source"] == "schedule" and rec["received_at"] == e.at
    assert contactid.event_class(451) == "burglary"
    assert contactid.describe(451, 1, zone=2, partition=1, partition_name="vault",
                              detail=e.text).startswith("Early open/close, user 2, vault")


def test_late_open_only_for_the_first_opening_of_the_day():
    hist = [armed(THU, "17:10"), disarmed(FRI, "09:30", user=4), armed(FRI, "12:00"),
            disarmed(FRI, "13:00")]
    [e] = run(bank(), hist, FRI, at(FRI, "16:00"))
    assert (e.kind, e.code, s.local(BERLIN, e.at)[1]) == ("late_open", 452, 9 * 60 + 30)


def test_fail_to_open_where_required_then_the_late_opening_restores_it():
    hist = [armed(THU, "17:10"), disarmed(FRI, "10:12", user=4)]
    assert [e.kind for e in run(bank(), hist, FRI, at(FRI, "16:00"))] == ["late_open"]
    evs = run(bank(require_open=True), hist, FRI, at(FRI, "16:00"))
    assert kinds(evs) == [("fail_to_open", "2026-03-27", 8 * 60 + 45),
                          ("fail_to_open_restored", "2026-03-27", 10 * 60 + 12)]
    assert evs[0].text == "still armed at 08:45 (open 08:00-08:30, 15 min tolerance)"


def test_closed_days_holidays_and_after_hours_openings_are_unscheduled():
    sat = dt.date(2026, 3, 28)
    hist = [armed(FRI, "17:10"), disarmed(sat, "10:00", user=7), armed(sat, "10:30"),
            disarmed(sat, "11:00")]
    [e] = run(bank(), hist, sat, at(sat, "23:00"))
    assert (e.kind, e.code, e.user) == ("unscheduled_open", 450, 7)
    assert e.text == "disarmed at 10:00 by user 7, on a closed day"
    hol = bank(holidays={FRI})
    hist = [armed(THU, "17:10"), disarmed(FRI, "08:10")]
    assert [e.kind for e in run(hol, hist, FRI, at(FRI, "23:00"))] == ["unscheduled_open"]
    hist = [armed(THU, "17:10"), disarmed(FRI, "08:10"), armed(FRI, "17:20"),
            disarmed(FRI, "21:05")]
    [e] = run(bank(), hist, FRI, at(FRI, "23:00"))
    assert e.text == "disarmed at 21:05 by user 2, after closing (17:00-17:30)"


def test_a_planned_short_day_and_partition_zero_reports():
    eve = bank(exceptions={FRI: DayPlan(W("08:00-08:30"), W("12:00-12:30"))})
    hist = [armed(THU, "17:10", partition=0), disarmed(FRI, "08:10", partition=0),
            armed(FRI, "12:10", partition=2)]  # another partition's closing counts not
    [e] = run(eve, hist, FRI, at(FRI, "23:00"))
    assert (e.kind, s.local(BERLIN, e.at)[1]) == ("fail_to_close", 12 * 60 + 45)


def test_no_known_state_raises_no_deadline():
    assert run(bank(require_open=True), [], FRI, at(FRI, "23:00")) == []


def test_temporary_change_late_opening_today_with_expiry():
    sch = bank(require_open=True)
    late = DayPlan(W("10:30-11:00"), W("17:00-17:30"))
    ch = TemporaryChange("1001", 1, FRI, late, at(FRI, "07:00"), at(FRI + dt.timedelta(1), "00:00"),
                         by="olga", reason="staff training, opens 10:30")
    ch.check(sch)
    hist = [armed(THU, "17:10"), disarmed(FRI, "10:40")]
    assert run(sch, hist, FRI, at(FRI, "16:00"), [ch]) == []
    # entered after the 08:45 deadline fired: what was raised stays raised,
    # and the disarm restores it rather than counting as a late opening
    ch2 = TemporaryChange("1001", 1, FRI, late, at(FRI, "09:30"), at(FRI, "23:00"), by="olga",
                          reason="staff training")
    assert [e.kind for e in run(sch, hist, FRI, at(FRI, "16:00"), [ch2])] == [
        "fail_to_open", "fail_to_open_restored"]
    # a change that moves the closing later: the later deadline is checked too
    stay = DayPlan(W("08:00-08:30"), W("20:00-20:30"))
    ch3 = TemporaryChange("1001", 1, FRI, stay, at(FRI, "18:00"), at(FRI, "23:00"), by="olga",
                          reason="late audit")
    hist = [armed(THU, "17:10"), disarmed(FRI, "08:10"), armed(FRI, "17:20"),
            disarmed(FRI, "18:05")]
    [e] = run(sch, hist, FRI, at(FRI, "23:00"), [ch3])
    assert (e.kind, s.local(BERLIN, e.at)[1]) == ("fail_to_close", 20 * 60 + 45)


def test_temporary_change_refusals_say_why():
    sch = bank()
    good = DayPlan(W("10:30-11:00"), W("17:00-17:30"))
    t = at(FRI, "07:00")
    with pytest.raises(ScheduleError, match="that day is over"):
        TemporaryChange("1001", 1, THU, good, t, t + 3600, by="olga").check(sch)
    with pytest.raises(ScheduleError, match="expire after"):
        TemporaryChange("1001", 1, FRI, good, t, t, by="olga").check(sch)
    with pytest.raises(ScheduleError, match="at most 7 days"):
        TemporaryChange("1001", 1, FRI, good, t, t + 8 * 86400, by="olga").check(sch)
    with pytest.raises(ScheduleError, match="who made it"):
        TemporaryChange("1001", 1, FRI, good, t, t + 3600).check(sch)
    with pytest.raises(ScheduleError, match="a reason is required"):
        TemporaryChange("1001", 1, FRI, good, t, t + 3600, by="olga", reason=" ").check(sch)
    bad = DayPlan(W("10:30-11:00"), W("09:00-09:30"))
    with pytest.raises(ScheduleError, match="follow each other"):
        TemporaryChange("1001", 1, FRI, bad, t, t + 3600, by="olga").check(sch)


def test_dst_spring_forward_deadline_in_the_gap_is_the_first_instant_after_it():
    sun = dt.date(2026, 3, 29)  # Europe/Berlin: 02:00 CET -> 03:00 CEST
    assert s.boundary(BERLIN, sun, 150) == s.boundary(BERLIN, sun, 180)
    assert dt.datetime.fromtimestamp(s.boundary(BERLIN, sun, 150), BERLIN).strftime(
        "%H:%M %Z") == "03:00 CEST"
    night = DayPlan(W("01:00-01:10"), W("02:00-02:15"))
    sch = Schedule("1001", 1, "Europe/Berlin", (night,) * 7, 15)
    hist = [OpenClose(s.boundary(BERLIN, sun, 30), 1, False)]
    end = s.day_start(BERLIN, sun + dt.timedelta(1)) - 1
    assert end - s.day_start(BERLIN, sun) == 23 * 3600 - 1  # a 23-hour day
    early, e = s.evaluate(sch, [], hist, s.day_start(BERLIN, sun), end)
    assert early.kind == "early_open"  # 00:30, before 01:00 - 15 min
    assert e.kind == "fail_to_close" and e.at == s.boundary(BERLIN, sun, 180)


def test_dst_fall_back_a_repeated_time_is_its_first_occurrence():
    sun = dt.date(2026, 10, 25)  # 03:00 CEST -> 02:00 CET
    first = s.boundary(BERLIN, sun, 150)
    assert dt.datetime.fromtimestamp(first, BERLIN).strftime("%H:%M %Z") == "02:30 CEST"
    assert s.day_start(BERLIN, sun + dt.timedelta(1)) - s.day_start(BERLIN, sun) == 25 * 3600


def test_next_check_is_the_next_deadline():
    sch = bank(require_open=True)
    assert s.next_check(sch, [], at(FRI, "07:00")) == at(FRI, "08:45")
    assert s.next_check(sch, [], at(FRI, "08:45")) == at(FRI, "17:45")
    mon = dt.date(2026, 3, 30)  # across the weekend (and the DST change)
    assert s.next_check(sch, [], at(FRI, "18:00")) == at(mon, "08:45")
    closed = Schedule("1", 1, "UTC", (CLOSED,) * 7)
    assert s.next_check(closed, [], 0.0) is None


def test_arm_state_reads_open_close_reports_only():
    assert s.arm_state(401, 3) is True and s.arm_state(401, 1) is False
    assert s.arm_state(441, 3) is True and s.arm_state(407, 1) is False
    assert s.arm_state(406, 1) is None and s.arm_state(404, 1) is None
    assert s.arm_state(130, 1) is None and s.arm_state(401, 6) is None


# -- the file ---------------------------------------------------------------------------


def test_the_example_file_loads_and_round_trips():
    doc = tomllib.loads((ROOT / "examples" / "schedules.toml").read_text())
    scheds = s.load(doc)
    assert {(x.account, x.partition) for x in scheds} >= {("1001", 1)}
    vault = next(x for x in scheds if (x.account, x.partition) == ("1001", 1))
    assert vault.require_open and vault.timezone == "Europe/Berlin"
    assert vault.week[0] == BANK_DAY or vault.week[0].business
    assert vault.week[6] == CLOSED
    assert dt.date(2026, 12, 25) in vault.holidays
    for x in scheds:
        assert Schedule.from_dict(x.to_dict()) == x


@pytest.mark.parametrize("doc, message", [
    ({"schedule": [{"account": "1", "partitions": [1], "timezone": "Mars/Olympus"}]},
     "unknown time zone 'Mars/Olympus'"),
    ({"schedule": [{"account": "1", "partitions": [1], "timezone": "UTC",
                    "week": {"mon": {"open": "8:00-08:30", "close": "17:00"}}}]},
     r"schedule 1.week.mon.close: expected a window like \"08:30-09:00\", got '17:00'"),
    ({"schedule": [{"account": "1", "partitions": [1], "timezone": "UTC",
                    "week": {"mon-fri": {"open": "08:00-08:30", "close": "17:00-17:30"},
                             "fri": "closed"}}]}, "fri is given twice"),
    ({"schedule": [{"account": "1", "partitions": [1], "timezone": "UTC",
                    "week": {"fri-mon": "closed"}}]}, "'fri-mon' is not a weekday"),
    ({"schedule": [{"account": "1", "partitions": [1], "timezone": "UTC",
                    "holidays": ["christmas"]}]},
     "'christmas' is neither a date"),
    ({"schedule": [{"account": "1", "partitions": [1], "timezone": "UTC",
                    "tolerance_min": 30,
                    "week": {"mon": {"open": "00:10-00:30", "close": "17:00-17:30"}}}]},
     "must stay within the day"),
    ({"schedule": [{"account": "1", "partitions": [1, 1], "timezone": "UTC"}]},
     "partition 1 has two schedules"),
    ({"schedule": [{"account": 1001, "partitions": [1], "timezone": "UTC"}]},
     "account: the account number, as a string"),
    ({"schedule": [{"account": "1", "partitions": [1], "timezone": "UTC", "tz": "x"}]},
     "unknown key"),
    ({"schedules": []}, "unknown top-level key"),
])
def test_bad_files_name_the_key(doc, message):
    with pytest.raises(ScheduleError, match=message):
        s.load(doc)


# -- the property: exactly the expected events, once each --------------------------------

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Sao_Paulo",
         "America/Havana", "Asia/Kolkata", "UTC")
YEAR = 2018  # Sao Paulo still changed its clocks then (at midnight)


@functools.lru_cache(maxsize=None)
def transitions(zone: str) -> list[dt.date]:
    """The local dates on which ``zone`` changed its UTC offset in YEAR."""
    tz = ZoneInfo(zone)
    t = dt.datetime(YEAR, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    out, prev = [], None
    for h in range(366 * 24):
        d = dt.datetime.fromtimestamp(t + h * 3600, tz)
        off = d.utcoffset()
        if prev is not None and off != prev:
            out.append(d.date())
        prev = off
    return out or [dt.date(YEAR, 3, 25)]


minute = st.integers(0, 1439)


@st.composite
def day_plans(draw, tol):
    if draw(st.booleans()) and draw(st.booleans()):
        return CLOSED
    lo, hi = tol, 1439 - tol - 1
    # often around the small hours, where the clocks change; or office hours
    pool = draw(st.sampled_from((st.integers(60, 240), st.integers(lo, hi),
                                 st.integers(420, 1140))))
    m = sorted(min(max(draw(pool), lo), hi) for _ in range(4))
    return DayPlan(Window(m[0], m[1]), Window(m[2], m[3]))


def draw_changes(draw, tz, days, tol, grid, most: int) -> list:
    """Up to ``most`` temporary changes (day, plan, created, expires) of
    ``days``, each made at a distinct instant of ``grid`` before its day is
    over (the property tests of the core and of the receiver share it)."""
    out, used = [], set()
    for _ in range(draw(st.integers(0, most))):
        d = draw(st.sampled_from(days))
        created = draw(grid)
        if created in used or created >= s.day_start(tz, d + dt.timedelta(1)):
            continue
        used.add(created)
        out.append((d, draw(day_plans(tol)), float(created),
                    float(created + 60 * draw(st.integers(1, 2880)))))
    return out


@st.composite
def scenarios(draw):
    zone = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(zone)
    first = draw(st.sampled_from(transitions(zone))) - dt.timedelta(draw(st.integers(0, 1)))
    ndays = draw(st.integers(1, 3))
    days = [first + dt.timedelta(i) for i in range(ndays)]
    tol = draw(st.sampled_from((0, 5, 15, 30)))
    week = tuple(draw(day_plans(tol)) for _ in range(7))
    holidays = frozenset(draw(st.lists(st.sampled_from(days), max_size=2)))
    exceptions = {d: draw(day_plans(tol)) for d in draw(st.lists(st.sampled_from(days),
                                                                 max_size=2))}
    sch = Schedule("9", 1, zone, week, tol, draw(st.booleans()), holidays, exceptions)
    t0 = int(s.day_start(tz, days[0]))
    t_end = int(s.day_start(tz, days[-1] + dt.timedelta(1)))
    grid = st.integers(t0 // 60 - 720, t_end // 60 - 1).map(lambda m: m * 60)
    changes = [TemporaryChange("9", 1, d, plan, created, expires, by="op")
               for d, plan, created, expires in draw_changes(draw, tz, days, tol, grid, 3)]
    hist = sorted((OpenClose(float(draw(grid)), draw(st.sampled_from((1, 1, 0, 2))),
                             draw(st.booleans()), draw(st.integers(0, 9)))
                   for _ in range(draw(st.integers(0, 14)))), key=lambda h: h.at)
    now = float(draw(st.integers(t0 // 60, t_end // 60 - 1)) * 60)
    return sch, changes, hist, days, now


def oracle(sch, changes, hist, first_day, now):
    """Live through every minute: the reports of that minute, then each
    deadline that is past and in force, the way the rules read in words."""
    tz = ZoneInfo(sch.timezone)
    tol = sch.tolerance_min

    def plan(day, t):
        live = [c for c in changes if c.day == day and c.created_at <= t < c.expires_at]
        if live:
            return max(live, key=lambda c: c.created_at).plan
        if day in sch.exceptions:
            return sch.exceptions[day]
        if day in sch.holidays:
            return CLOSED
        return sch.week[day.weekday()]

    mine = [h for h in hist if h.partition in (0, 1)]
    out = set()
    state = None
    fired, checked, restored = {}, {}, set()
    in_hours, seen, latest = set(), set(), {}
    t = (int(dt.datetime.combine(first_day, dt.time(), dt.timezone.utc).timestamp())
         - 15 * 3600)
    i = 0
    while t <= now:
        local = dt.datetime.fromtimestamp(t, tz)
        day, wall = local.date(), local.hour * 60 + local.minute
        while i < len(mine) and mine[i].at <= t:  # (the first minute: all before too)
            h = mine[i]
            i += 1
            state = h.armed
            for (d, kind), ft in fired.items():
                back = {"fail_to_close": True, "fail_to_open": False}[kind]
                if ft < t and h.armed == back and (d, kind) not in restored:
                    restored.add((d, kind))
                    out.add((d, kind + "_restored", t))
            if h.armed or day < first_day:
                continue
            p = plan(day, t)
            kind = None
            if not p.business or wall > p.close.end + tol:
                kind = "unscheduled_open"
            elif wall < p.open.start - tol:
                kind = "early_open"
            elif day not in in_hours:
                in_hours.add(day)
                if wall > p.open.end + tol and (day, "fail_to_open") not in fired:
                    kind = "late_open"
            if kind and (day, kind) not in seen:
                seen.add((day, kind))
                out.add((day, kind, t))
        if day >= first_day:
            latest[day] = max(latest.get(day, -1), wall)
            p = plan(day, t)
            for kind, window, want in (("fail_to_open", "open", True),
                                       ("fail_to_close", "close", False)):
                if not p.business or (day, kind) in fired:
                    continue
                if kind == "fail_to_open" and not sch.require_open:
                    continue
                deadline = getattr(p, window).end + tol
                done = checked.setdefault((day, kind), set())
                if latest[day] >= deadline and deadline not in done:
                    done.add(deadline)
                    if state is want:
                        fired[(day, kind)] = t
                        out.add((day, kind, t))
        t += 60
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 3 * 1440))
def test_each_expected_event_exactly_once_and_no_other(sc, later_min):
    sch, changes, hist, days, now = sc
    events = s.evaluate(sch, changes, hist, s.day_start(sch.tz, days[0]), now)
    got = [(e.day, e.kind, int(e.at)) for e in events]
    assert len(got) == len(set(got))
    assert len({e.dedupe_key for e in events}) == len(events)  # once per (partition, day, kind)
    assert set(got) == oracle(sch, changes, hist, days[0], now)
    # evaluated again later (a restart, another receiver): the same events,
    # at the same instants, and only new ones added
    again = s.evaluate(sch, changes, hist, s.day_start(sch.tz, days[0]), now + later_min * 60)
    assert set(got) <= {(e.day, e.kind, int(e.at)) for e in again}


# -- the dedupe key against the real store ----------------------------------------------


def _f(row, key):
    return row[key] if isinstance(row, dict) else getattr(row, key)


async def test_raised_twice_stored_once_and_the_restore_stamps_its_alarm(tmp_path):
    """A restart (or a second receiver) evaluating the same day again
    ingests the same events: the store's unique (account, dedupe_key)
    keeps one of each, one alarm; the 454 restore (zone 0) matches it."""
    from receiver.config import Config
    from receiver.store import Account
    from receiver.testing import running_receiver

    sch = bank()
    hist = [armed(THU, "17:10"), disarmed(FRI, "06:12"), armed(FRI, "19:42", user=5)]
    events = run(sch, hist, FRI, at(FRI, "23:00"))
    assert [e.kind for e in events] == ["early_open", "fail_to_close", "fail_to_close_restored"]
    cfg = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)])
    acct = Account("1001", bytes(32), partitions={"1": "vault"})
    async with running_receiver(cfg, [acct]) as rx:
        first = [await rx.ingest(dict(e.record_fields(), protocol="native")) for e in events]
        again = [await rx.ingest(dict(e.record_fields(), protocol="native")) for e in events]
        assert [o.duplicate for o in first] == [False] * 3
        assert [o.duplicate for o in again] == [True] * 3
        assert [o.event_id for o in again] == [o.event_id for o in first]
        alarms = await rx.store.list_alarms()
        assert sorted((_f(a, "code"), _f(a, "event_class")) for a in alarms) == [
            (451, "burglary"), (454, "trouble")]
        ftc = next(a for a in alarms if _f(a, "code") == 454)
        assert _f(ftc, "restored_at") == at(FRI, "19:42")  # shown, not resolved
        assert _f(ftc, "state") == "pending"
