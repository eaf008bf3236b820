"""Opening schedules end to end, with explicit time (issue 18):

- the property over random schedules, temporary changes and arm/disarm
  reports around daylight-saving changes, through a real receiver and its
  real store (SQLite and PostgreSQL): the panel's reports are ingested in
  time order, the scheduler ticks at each deadline it names, and what the
  store holds is exactly what the core (receiver.rules.schedules.evaluate,
  held to a minute-by-minute oracle in tests/test_rules_schedules.py) says
  is due, each raised once (no duplicate was even tried twice by one
  evaluation path that should not have);
- two receivers on one PostgreSQL database: each deadline raised by one of
  them (the supervision shard's owner), each event stored once, and after
  one receiver stops the other raises what falls due.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.config import Config
from receiver.records import Account
from receiver.rules import schedules as s
from receiver.rules.schedules import DayPlan, Schedule, TemporaryChange
from receiver.testing import running_receiver
from testkit.wait import wait_until
from tests.pg_fixture import pg_server, pg_url  # noqa: F401
from tests.test_rules_schedules import day_plans, draw_changes

ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC")
YEAR = 2031  # far from the clock the receiver's own timer reads
LOOKBACK_S = 6 * 86400  # covers a scenario's days and the half day before


@functools.lru_cache(maxsize=None)
def transitions(zone: str) -> list[dt.date]:
    tz = ZoneInfo(zone)
    t = dt.datetime(YEAR, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    out, prev = [], None
    for h in range(0, 366 * 24, 1):
        off = dt.datetime.fromtimestamp(t + h * 3600, tz).utcoffset()
        if prev is not None and off != prev:
            out.append(dt.datetime.fromtimestamp(t + h * 3600, tz).date())
        prev = off
    return out or [dt.date(YEAR, 3, 26)]


@st.composite
def scenarios(draw):
    zone = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(zone)
    first = draw(st.sampled_from(transitions(zone))) - dt.timedelta(draw(st.integers(0, 1)))
    days = [first + dt.timedelta(i) for i in range(draw(st.integers(1, 3)))]
    tol = draw(st.sampled_from((0, 5, 15)))
    week = tuple(draw(day_plans(tol)) for _ in range(7))
    holidays = frozenset(draw(st.lists(st.sampled_from(days), max_size=1)))
    exceptions = {d: draw(day_plans(tol)) for d in draw(st.lists(st.sampled_from(days),
                                                                 max_size=1))}
    require_open = draw(st.booleans())
    t0 = int(s.day_start(tz, days[0]))
    t_end = int(s.day_start(tz, days[-1] + dt.timedelta(1)))
    grid = st.integers(t0 // 60 - 720, t_end // 60 - 1).map(lambda m: float(m * 60))
    changes = draw_changes(draw, tz, days, tol, grid, 2)
    hist = sorted({draw(grid): (draw(st.sampled_from((1, 1, 0, 2))), draw(st.booleans()),
                                draw(st.integers(1, 9)))
                   for _ in range(draw(st.integers(0, 10)))}.items())
    now = float(draw(st.integers(t0 // 60, t_end // 60 - 1)) * 60)
    return (zone, week, tol, require_open, holidays, exceptions, changes, hist, now)


_numbers = itertools.count(2000)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "rx.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def rx(db):
    cfg = Config(db=db)
    cfg.schedules_lookback_s = LOOKBACK_S
    async with running_receiver(cfg) as r:
        yield r


async def drive(rx, account: str, hist, now: float) -> None:
    """The panel's reports in time order, the scheduler ticking at each
    deadline it names before them, then up to ``now``."""
    loop = rx.rules
    seq = itertools.count(1)
    for when, (partition, armed, user) in hist:
        if when > now:
            break
        while (nd := loop.next_deadline()) is not None and nd <= when:
            await loop.tick(nd)
        n = next(seq)
        await rx.ingest({"account": account, "protocol": "native",
                         "dedupe_key": "native:%d" % n, "seq": n,
                         "qualifier": 3 if armed else 1, "code": 401,
                         "partition": partition, "zone": user, "received_at": when})
        await loop.judged()
    while (nd := loop.next_deadline()) is not None and nd <= now + loop.settle_s:
        await loop.tick(nd)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(sc=scenarios())
async def test_each_due_event_raised_once_through_the_real_store(rx, sc):
    zone, week, tol, require_open, holidays, exceptions, changes, hist, now = sc
    account = str(next(_numbers))
    await rx.store.add_account(Account(account, bytes(32), partitions={"1": "vault"}))
    sch = Schedule(account, 1, zone, week, tol, require_open, holidays, exceptions)
    await rx.store.set_schedule(sch, "hypothesis", at=0.0)
    stored_changes = [
        await rx.store.add_schedule_change(TemporaryChange(
            account, 1, d, plan, created, expires, "op", "drawn"))
        for d, plan, created, expires in changes]
    first = hist[0][0] if hist else now
    await rx.rules.reload(first - LOOKBACK_S)
    raised, dups = rx.rules.raised, rx.rules.duplicates
    try:
        await drive(rx, account, hist, now)
    finally:
        await rx.store.delete_schedule(account, 1, "hypothesis", at=0.0)
        await rx.rules.reload(now)
    history = [s.OpenClose(when, p, armed, user) for when, (p, armed, user) in hist]
    want = s.evaluate(sch, stored_changes, history, first - LOOKBACK_S, now)
    got = [e for e in await rx.store.list_events(account=account) if e.source == "schedule"]
    assert sorted((e.dedupe_key, e.received_at) for e in got) == sorted(
        (e.dedupe_key, e.at) for e in want)
    # each once: what the scheduler raised is what is stored, nothing twice
    assert rx.rules.raised - raised == len(want)
    assert {e.dedupe_key for e in got} == {e.dedupe_key for e in want}
    del dups


# -- two receivers on one PostgreSQL database ------------------------------------------------

BERLIN = "Europe/Berlin"
DAY = DayPlan(s.parse_window("08:00-08:30", "t"), s.parse_window("17:00-17:30", "t"))
THU, FRI, MON = dt.date(YEAR, 3, 20), dt.date(YEAR, 3, 21), dt.date(YEAR, 3, 24)
ACCOUNTS = [str(3000 + i) for i in range(24)]


def at(day, hhmm):
    h, m = map(int, hhmm.split(":"))
    return s.boundary(ZoneInfo(BERLIN), day, h * 60 + m)


async def test_two_receivers_raise_each_deadline_once(pg_url):
    cfgs = [Config(db=pg_url, cluster_instance="rx-%s" % n) for n in "ab"]
    accounts = [Account(a, bytes(32), partitions={"1": "vault"}) for a in ACCOUNTS]
    async with running_receiver(cfgs[0], accounts) as a, running_receiver(cfgs[1]) as b:
        # both hold shards (the lease rounds balance them)
        await wait_until(lambda: a.cluster.owned and b.cluster.owned and (
            len(a.cluster.owned) + len(b.cluster.owned) == a.cluster.shards) and
            not a.cluster.owned & b.cluster.owned, timeout=60, what="shards split")
        owners = {acct: [r for r in (a, b) if r.cluster.owns(acct)] for acct in ACCOUNTS}
        assert all(len(o) == 1 for o in owners.values())
        assert {id(o[0]) for o in owners.values()} == {id(a), id(b)}  # both own some
        sch = [Schedule(acct, 1, BERLIN, (DAY,) * 5 + (s.CLOSED,) * 2, 15)
               for acct in ACCOUNTS]
        for x in sch:
            await a.store.set_schedule(x, "ada", at=0.0)
        for i, acct in enumerate(ACCOUNTS):  # armed Thursday, opened Friday on time
            for n, (when, q) in enumerate(((at(THU, "17:10"), 3), (at(FRI, "08:10"), 1))):
                await (a if i % 2 else b).ingest({
                    "account": acct, "protocol": "native", "dedupe_key": "native:%d" % n,
                    "seq": n + 1, "qualifier": q, "code": 401, "partition": 1, "zone": 3,
                    "received_at": when})
        for r in (a, b):
            await r.rules.judged()
            await r.rules.reload(at(FRI, "12:00"))
            r.rules.raised = r.rules.duplicates = 0
        # the deadline passes on both at once
        tick = at(FRI, "17:45") + a.rules.settle_s
        await asyncio.gather(a.rules.tick(tick), b.rules.tick(tick))
        events = [e for e in await a.store.list_events(limit=10_000) if e.code == 454]
        assert sorted(e.account for e in events) == ACCOUNTS  # each once
        # each by its owner: neither tried one of the other's
        for r in (a, b):
            assert r.rules.raised == sum(1 for o in owners.values() if o[0] is r)
            assert r.rules.duplicates == 0
        # a second tick (a restart, a retry) changes nothing
        await asyncio.gather(a.rules.tick(tick + 60), b.rules.tick(tick + 60))
        assert len([e for e in await a.store.list_events(limit=10_000)
                    if e.code == 454]) == len(ACCOUNTS)
        # b stops; a takes its shards over and raises Monday's deadlines alone
        await b.stop()
        await wait_until(lambda: len(a.cluster.owned) == a.cluster.shards, timeout=60,
                         what="a takes every shard over")
        for i, acct in enumerate(ACCOUNTS):
            await a.ingest({"account": acct, "protocol": "native", "dedupe_key": "native:9",
                            "seq": 10, "qualifier": 1, "code": 401, "partition": 1, "zone": 3,
                            "received_at": at(MON, "08:05")})
        await a.rules.judged()
        await a.rules.tick(at(MON, "17:45") + a.rules.settle_s)
        mon = [e for e in await a.store.list_events(limit=10_000)
               if e.code == 454 and e.received_at == at(MON, "17:45")]
        assert sorted(e.account for e in mon) == ACCOUNTS
