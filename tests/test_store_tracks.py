"""The Store contract for vehicle units (issue 19), on both backends: track
points stored once and read back by account and time, by arrival and by
area (SQLite's R*Tree, PostgreSQL's (lat, lon) index: the answers of both
are checked against a plain filter of every point), the position an event
carries (one shape for native and DC-09), retention, patrol statuses from
the console and the keypad, and dispatches recorded with their audit rows,
an arrival recorded once however many receivers see it."""

import asyncio
import os
import random
import time

import pytest

from receiver import alarms
from receiver.records import Account, EventRecord, Position, TrackRecord
from receiver.store import DispatchConflict
from receiver.workflow_service import Workflow
from tests.pg_fixture import pg_server, pg_url  # noqa: F401
from tests.test_store_contract import alarm_rec, backend, rec, store  # noqa: F401

T0 = 1_760_000_000.0


def pos(lat=52.37, lon=4.89, fix_time=T0, **kw):
    d = dict(speed_kmh=36.0, course_deg=90.0, quality=1, sats=9, hdop=0.8, valid=True,
             moving=True, ignition=True, alarm=False)
    d.update(kw)
    return Position(lat, lon, fix_time=fix_time, **d)


def point(account="1", key="p1", received_at=None, **kw):
    p = pos(**kw)
    return TrackRecord(account, key, received_at or (p.fix_time or T0) + 1.0, p, reason=2,
                       peer="127.0.0.1:5000")


async def test_track_points_are_stored_once_and_read_back_in_time_order(store, backend):
    outs = await store.ingest_track([point(key="a", fix_time=T0 + 20),
                                     point(key="b", fix_time=T0 + 10)])
    assert [o.duplicate for o in outs] == [False, False]
    # a copy (the unit re-offered the point after a lost ACK) is stored once
    again = await asyncio.gather(*(store.ingest_track([point(key="a", fix_time=T0 + 20)])
                                   for _ in range(5)))
    assert all(o[0].duplicate and o[0].point_id == outs[0].point_id for o in again)
    await store.close()
    store2 = backend.make()  # durable: a new store object reads it
    await store2.open()
    try:
        pts = await store2.track("1")
        assert [p.at for p in pts] == [T0 + 10, T0 + 20]
        assert pts[0].position == pos(fix_time=T0 + 10)
        assert pts[0].reason == 2 and pts[0].source == "position"
        assert pts[0].to_json()["reason_text"] == "interval"
        assert [p.at for p in await store2.track("1", since=T0 + 15)] == [T0 + 20]
        assert [p.at for p in await store2.track("1", until=T0 + 15)] == [T0 + 10]
        assert [p.at for p in await store2.track("1", limit=1, newest=True)] == [T0 + 20]
        assert await store2.track("2") == []
    finally:
        await store2.close()


async def test_a_point_without_a_believable_fix_time_is_placed_at_its_arrival(store):
    await store.ingest_track([
        TrackRecord("1", "nofix", T0, pos(fix_time=None, valid=False)),
        TrackRecord("1", "future", T0 + 100, pos(fix_time=T0 + 100 + 3600)),
    ])
    assert [p.at for p in await store.track("1")] == [T0, T0 + 100]


async def test_an_events_position_is_kept_with_it_and_in_the_track(store):
    p = pos(lat=52.3751, lon=4.8963, fix_time=T0, alarm=True)
    out = await store.ingest(rec(seq=1, code=122, position=p, received_at=T0 + 1))
    # the same event again (retransmission): no second track point
    again = await store.ingest(rec(seq=1, code=122, position=p, received_at=T0 + 2))
    assert again.duplicate
    [ev] = await store.list_events()
    assert ev.position == p
    j = ev.to_json()
    assert j["position"]["alarm"] is True and j["location"] == {"lat": 52.3751, "lon": 4.8963}
    [tp] = await store.track("1")
    assert (tp.source, tp.event_id, tp.position, tp.at) == ("event", out.event_id, p, T0)
    # a DC-09 event's location is a position of the same shape, its other
    # fields unknown
    loc = Position.from_location({"lat": -33.86, "lon": 151.21})
    await store.ingest(rec(seq=2, protocol="dc09", dedupe_key="dc09:2", ext={
        "X": "151.21", "Y": "-33.86"}, position=loc, received_at=T0 + 5))
    ev2 = (await store.list_events())[-1]
    assert ev2.to_json()["position"] == dict(pos(lat=-33.86, lon=151.21).to_json(), **{
        k: None for k in ("speed_kmh", "course_deg", "fix_time", "quality", "sats", "hdop",
                          "valid", "moving", "ignition", "alarm")}, protocol="dc09")
    assert ev2.location == {"lat": -33.86, "lon": 151.21}
    assert len(await store.track("1")) == 2


async def test_an_event_without_a_position_has_none_and_dc09_ext_still_locates(store):
    await store.ingest(rec(seq=1))
    await store.ingest(rec(seq=2, protocol="dc09", dedupe_key="dc09:x",
                           ext={"X": "E4.895200", "Y": "N52.370200"}))
    e1, e2 = await store.list_events()
    assert e1.position is None and e1.to_json()["location"] is None
    assert e2.position is None and e2.location == {"lat": 52.3702, "lon": 4.8952}
    assert await store.track("1") == []


async def test_last_positions_and_the_arrival_feed(store):
    await store.add_account(Account("2", os.urandom(32)))
    await store.ingest_track([point("1", "a", fix_time=T0, received_at=T0 + 50),
                              point("1", "b", fix_time=T0 + 30, received_at=T0 + 40),
                              point("2", "a", fix_time=T0 + 5, received_at=T0 + 45)])
    last = await store.last_positions(["1", "2", "3"])
    assert {a: p.at for a, p in last.items()} == {"1": T0 + 30, "2": T0 + 5}
    feed = await store.track_received_since(T0 + 45)
    assert [(p.account, p.received_at) for p in feed] == [("2", T0 + 45), ("1", T0 + 50)]


async def test_points_in_an_area_are_those_a_plain_filter_finds(store):
    rng = random.Random(19)
    pts = []
    for i in range(400):
        lat, lon = 52.36 + rng.random() * 0.02, 4.88 + rng.random() * 0.02
        pts.append(TrackRecord("1", "r%d" % i, T0 + i, pos(lat=lat, lon=lon,
                                                           fix_time=T0 + i)))
    await store.ingest_track(pts)
    for _ in range(10):
        s, w = 52.36 + rng.random() * 0.015, 4.88 + rng.random() * 0.015
        n, e = s + rng.random() * 0.01, w + rng.random() * 0.01
        since, until = T0 + rng.randrange(0, 200), T0 + rng.randrange(200, 400)
        want = sorted(p.at for p in pts if s <= p.position.lat <= n
                      and w <= p.position.lon <= e and since <= p.at < until)
        got = await store.track_in_area(s, w, n, e, since, until, limit=1000)
        assert [p.at for p in got] == want


async def test_retention_prunes_one_account_before_a_time_in_batches(store):
    await store.add_account(Account("2", os.urandom(32)))
    await store.ingest_track([point("1", "k%d" % i, fix_time=T0 + i) for i in range(10)]
                             + [point("2", "k%d" % i, fix_time=T0 + i) for i in range(10)])
    await store.add_account(Account("3", os.urandom(32)))
    await store.ingest_track([point("3", "k%d" % i, fix_time=T0 + i) for i in range(10)])
    assert await store.prune_track("1", T0 + 5, batch=3) == 3
    assert await store.prune_track("1", T0 + 5, batch=3) == 2
    assert await store.prune_track("1", T0 + 5, batch=3) == 0
    assert [p.at for p in await store.track("1")] == [T0 + i for i in range(5, 10)]
    assert len(await store.track("2")) == 10
    # every other account, but those with a retention of their own
    assert await store.prune_track(None, T0 + 2, batch=100, exclude=["2"]) == 2
    assert [p.at for p in await store.track("3")] == [T0 + i for i in range(2, 10)]
    assert len(await store.track("2")) == 10
    assert await store.prune_track(None, T0 + 3, batch=100) == 4  # "2": 3, "3": 1
    # the area query no longer finds what was pruned
    got = await store.track_in_area(52.0, 4.0, 53.0, 5.0, T0 - 1, T0 + 100)
    assert sorted(p.account for p in got) == ["1"] * 5 + ["2"] * 7 + ["3"] * 7


async def test_patrol_status_is_the_latest_of_console_and_keypad(store):
    await store.add_account(Account("7", os.urandom(32), panel_kind="patrol"))
    assert await store.patrol_statuses(["7"]) == {}
    await store.set_patrol_status("7", "available", T0, "olga")
    st = (await store.patrol_statuses(["7"]))["7"]
    assert (st.status, st.actor) == ("available", "olga")
    # the crew presses "on scene" at the keypad: event 472, user 2
    await store.ingest(rec(account="7", seq=1, code=472, zone=2, user=2, received_at=T0 + 10))
    st = (await store.patrol_statuses(["7"]))["7"]
    assert (st.status, st.actor, st.at) == ("on_scene", "keypad (user 2)", T0 + 10)
    await store.set_patrol_status("7", "available", T0 + 20, "sam")
    assert (await store.patrol_statuses(["7"]))["7"].actor == "sam"


async def test_a_dispatch_and_its_arrival_are_recorded_once_with_audit_rows(store):
    await store.add_account(Account("7", os.urandom(32), panel_kind="patrol"))
    out = await store.ingest(alarm_rec(1, T0))
    aid = out.alarm_id
    d = await store.dispatch_patrol(aid, "7", T0 + 10, "olga", (52.37, 4.89), 150.0, 820.5,
                                    "Patrol 7 dispatched by olga.")
    assert (d.alarm_id, d.patrol, d.dispatched_by, d.arrived_at) == (aid, "7", "olga", None)
    assert (await store.patrol_statuses(["7"]))["7"].status == "dispatched"
    with pytest.raises(DispatchConflict, match="already dispatched"):
        await store.dispatch_patrol(aid, "7", T0 + 11, "sam", (52.37, 4.89), 150.0, None,
                                    "again")
    with pytest.raises(DispatchConflict, match="no alarm"):
        await store.dispatch_patrol(aid + 100, "7", T0 + 11, "sam", (52.37, 4.89), 150.0,
                                    None, "none")
    assert [x.id for x in await store.list_dispatches(open_only=True)] == [d.id]
    # two receivers see the patrol arrive at once: one records it
    a, b = await asyncio.gather(store.record_arrival(d.id, T0 + 250, "Arrived."),
                                store.record_arrival(d.id, T0 + 251, "Arrived."))
    assert [x is None for x in (a, b)].count(True) == 1
    won = a or b
    assert won.arrival_s == 240.0 and won.to_json()["arrival_s"] == 240.0
    assert await store.list_dispatches(open_only=True) == []
    assert [x.arrived_at for x in await store.list_dispatches(alarm_id=aid)] == [T0 + 250]
    assert (await store.patrol_statuses(["7"]))["7"].status == "on_scene"
    audit = await store.alarm_audit(aid)
    notes = [(r.actor, r.from_state, r.to_state, r.note) for r in audit[1:]]
    assert notes == [("olga", "pending", "pending", "Patrol 7 dispatched by olga."),
                     ("receiver", "pending", "pending", "Arrived.")]
    assert [alarms.audit_sentence(r.to_json(), {}, {}) for r in audit[1:]] == [
        "Patrol 7 dispatched by olga.", "Arrived."]
    # a resolved alarm takes no dispatch
    await Workflow(store, clock=lambda: T0 + 300).resolve(aid, "olga", "other", note="done")
    await store.add_account(Account("8", os.urandom(32), panel_kind="patrol"))
    with pytest.raises(DispatchConflict, match="resolved"):
        await store.dispatch_patrol(aid, "8", T0 + 400, "olga", (52.37, 4.89), 150.0, None,
                                    "late")
    assert [x.id for x in await store.list_dispatches(since=T0, until=T0 + 11)] == [d.id]
    assert await store.list_dispatches(since=T0 + 11) == []


async def test_account_site_coordinates_and_retention_round_trip(store):
    await store.add_account(Account("9", os.urandom(32), site_lat=52.3702, site_lon=4.8952,
                                    site_radius_m=120, track_retention_days=30))
    a = await store.get_account("9")
    assert (a.site_position, a.site_radius_m, a.track_retention_days) == (
        (52.3702, 4.8952), 120, 30)
    await store.update_account("9", site_lat=None, site_lon=None)
    assert (await store.get_account("9")).site_position is None
    for bad, msg in (({"site_lat": 52.0}, "both"), ({"site_lat": 95.0, "site_lon": 4.0},
                                                    "latitude"),
                     ({"site_radius_m": 5}, "site_radius_m"),
                     ({"track_retention_days": 0}, "track_retention_days")):
        with pytest.raises(ValueError, match=msg):
            await store.update_account("9", **bad)


def test_event_record_position_needs_no_store():
    # the plan's track row for an event carries the event's id as its key
    r = EventRecord("1", "native", "k", 1, 122, 1, 1, T0, position=pos())
    t = r.track(42)
    assert (t.dedupe_key, t.source, t.event_id, t.at) == ("event:42", "event", 42, T0)
    assert EventRecord("1", "native", "k", 1, 122, 1, 1, T0).track(42) is None
    assert time.time() > T0  # the fixed times above are in the past


async def test_latest_event_by_code_and_source(store):
    await store.ingest(rec(seq=1, code=170, received_at=T0))
    await store.ingest(rec(seq=2, code=170, qualifier=3, received_at=T0 + 1))
    await store.ingest(rec(seq=3, code=171, received_at=T0 + 2))
    await store.ingest(EventRecord("1", "native", "vehicle:170:1", 1, 170, 0, 0, T0 + 3,
                                   source="vehicle"))
    got = await store.latest_by_code("1", [170, 171, 175], "panel")
    assert {c: (e.qualifier, e.seq) for c, e in got.items()} == {170: (3, 2), 171: (1, 3)}
    mine = await store.latest_by_code("1", [170, 171], "vehicle")
    assert {c: e.dedupe_key for c, e in mine.items()} == {170: "vehicle:170:1"}


def _hold_writer(store):
    """Hold the store's writer (a maintenance job that waits): returns its
    future and the function that lets it go."""
    from receiver.sqlite_store import SQLiteStore  # noqa: PLC0415

    if isinstance(store, SQLiteStore):
        import threading  # noqa: PLC0415
        gate = threading.Event()
        return store.run_maintenance(lambda conn: gate.wait(30)), gate.set
    agate = asyncio.Event()

    async def wait(conn):
        await asyncio.wait_for(agate.wait(), 30)
    return store.run_maintenance(wait), agate.set


async def _points_then_an_alarm(store, n=12):
    """With the writer held, ``n`` track points then an alarm queued; the
    writer let go; returns the order their answers came in."""
    order: list = []
    held, release = _hold_writer(store)
    await asyncio.sleep(0)
    points = [asyncio.ensure_future(store.ingest_track([point(key="k%d" % i,
                                                              fix_time=T0 + i)]))
              for i in range(n)]
    for i, f in enumerate(points):
        f.add_done_callback(lambda _f, i=i: order.append("point %d" % i))
    while store.pending_writes < n + 1:  # every point is queued before the alarm
        await asyncio.sleep(0)
    alarm = asyncio.ensure_future(store.ingest(alarm_rec(1, T0 + 50)))
    alarm.add_done_callback(lambda _f: order.append("alarm"))
    while store.pending_writes < n + 2:
        await asyncio.sleep(0)
    release()
    await held
    out = await alarm
    await asyncio.gather(*points)
    assert out.alarm_id is not None
    assert len(await store.track("1")) == n
    return order


async def test_an_alarm_is_committed_before_track_points_queued_ahead_of_it(store):
    """A flood of track points never stands between an alarm and its group
    commit: with the writer held, 12 track points then an alarm are queued;
    once it runs (3 writes per commit here), the alarm is in the first
    commit, the points after it (receiver.store.PRIO_TRACK)."""
    store.max_batch = 3
    order = await _points_then_an_alarm(store)
    assert order.index("alarm") == 0, order
    assert order[1:] == ["point %d" % i for i in range(12)]  # in their own order


async def test_an_alarms_commit_carries_no_track_points(store):
    """Room for all 13 in one commit, the alarm still commits alone and the
    points in the next one: they would only make its commit longer
    (receiver.store.joins_commit)."""
    store.max_batch = 64
    c0, b0 = store.commits, store.batched
    order = await _points_then_an_alarm(store)
    assert order[0] == "alarm"
    assert (store.commits - c0, store.batched - b0) == (2, 13)
