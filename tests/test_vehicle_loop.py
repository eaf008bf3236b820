"""The receiver's vehicle task (receiver/vehicles/loop.py) on real stores:
a van driving examples/route_city.gpx over the native protocol (real
POSITION frames through a running receiver) leaves its corridor and the
receiver raises 170 itself, once, as an alarm; a unit that reports the exit
itself is left to; a restart or a second receiver judging the same track
(PostgreSQL) stores nothing twice; a silent van with its ignition on
raises 175; a dispatched patrol's arrival is recorded once, with the time
to arrive in the alarm's audit; tracks are pruned per account."""

import os
import time

import pytest

from firmware import REPO
from firmware import gpsreplay as G
from protocol.lean import glwire as w
from receiver.app import Receiver
from receiver.config import Config
from receiver.records import Account, EventRecord, Position, TrackRecord
from testkit.session_panel import SessionPanel, event_msg
from receiver.testing import running_receiver
from testkit.wait import wait_until
from receiver.vehicles import geofences
from receiver.vehicles.loop import VehicleLoop
from tests.pg_fixture import pg_server, pg_url  # noqa: F401

VAN, PATROL = "1003", "1004"
ROUTE = REPO + "/examples/route_city.gpx"
RULES = geofences.load(REPO + "/examples/geofences.geojson")


def accounts():
    return [Account(VAN, os.urandom(32), panel_kind="vehicle", site_name="Cash van 7",
                    region="central", zones={"6": "hold-up button"}),
            Account(PATROL, os.urandom(32), panel_kind="patrol", site_name="Patrol car 3"),
            Account("1001", os.urandom(32), panel_kind="bank", site_name="City Bank",
                    site_lat=52.3750, site_lon=4.8980, site_radius_m=100)]


def config(db, **kw):
    c = Config(db=db, tcp=[("127.0.0.1", 0)])
    c.vehicles.rules = RULES
    c.vehicles.unit_grace_s = 5
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def position_wire(lat, lon, speed_kmh, fix_time, flags=0x07):
    return {"lat": round(lat * 1e6), "lon": round(lon * 1e6), "speed": round(speed_kmh * 10),
            "course": 0, "quality": 1, "sats": 9, "hdop": 8, "fix_time": int(fix_time),
            "flags": flags}


def route_points(step_s=10):
    replay = G.Replay(G.load(ROUTE))
    return [(t,) + replay.position(t)[:3] for t in range(0, int(replay.duration_s), step_s)]


async def vehicle_events(store, account=VAN):
    return [e for e in await store.list_events(account=account) if e.source == "vehicle"]


async def test_a_van_off_its_corridor_is_caught_by_the_receiver(tmp_path):
    """The van's firmware has lost its config: it sends positions and no
    170.  Real POSITION frames along the demo route, stamped as if driven
    in the last minutes; the running receiver's task raises 170 as an
    alarm, then its restore."""
    async with running_receiver(config(str(tmp_path / "rx.db")), accounts()) as rx:
        host, port = rx.addresses["tcp"][0]
        p = SessionPanel(int(VAN), rx.account(VAN).key, host, port)
        await p.connect()
        pts = route_points()
        start = time.time() - pts[-1][0] - 1
        for i, (t, lat, lon, speed) in enumerate(pts):
            await p.deliver(i + 1, {"type": w.MSG_POSITION, "reason": 2, "position":
                                    position_wire(lat, lon, speed, start + t)})
        await wait_until(lambda: _codes(rx.store), what="170 new and restore", seen=lambda:
                         _codes(rx.store))
        evs = await vehicle_events(rx.store)
        assert [(e.code, e.qualifier) for e in evs] == [(170, 1), (170, 3)]
        assert evs[0].description.startswith("Vehicle left its route corridor")
        assert "receiver's own check" in evs[0].description and evs[0].peer == "receiver"
        [alarm] = [a for a in await rx.store.list_alarms() if a.code == 170]
        assert alarm.event_class == "burglary" and alarm.restored_at is not None
        await p.close()


async def _codes(store):
    evs = await vehicle_events(store)
    return [(e.code, e.qualifier) for e in evs] == [(170, 1), (170, 3)]


async def stepped_receiver(db, **kw):
    """A receiver whose vehicle task the test steps by hand (not started)."""
    rx = Receiver(config(db, **kw))
    await rx.store.open()
    for a in accounts():
        await rx.store.add_account(a)
    await rx.reload_accounts()
    return rx


async def feed(rx, points, key="p"):
    await rx.store.ingest_track([TrackRecord(a, "%s%d" % (key, i), at + 0.5, pos)
                                 for i, (a, at, pos) in enumerate(points)])


def drive(start, step_s=10, account=VAN):
    return [(account, start + t, Position(lat, lon, speed_kmh=speed, fix_time=start + t,
                                          quality=1, sats=9, hdop=0.8, valid=True,
                                          moving=speed > 5, ignition=True, alarm=False))
            for t, lat, lon, speed in route_points(step_s)]


async def test_the_unit_first_a_restart_raises_nothing_twice(tmp_path):
    db = str(tmp_path / "rx.db")
    rx = await stepped_receiver(db)
    now = time.time()
    pts = drive(now - 400)
    try:
        # the unit reports the exit itself before the receiver's grace ends
        await rx.ingest(dict(account=VAN, protocol="native", dedupe_key="n1", seq=1,
                             qualifier=1, code=170, received_at=now - 300))
        loop = VehicleLoop(rx, now=now - 500)
        await feed(rx, pts)
        await loop.step(now)
        assert await vehicle_events(rx.store) == []  # left to the unit
    finally:
        await rx.store.close()
    # a fresh store: no unit report; the receiver raises, then restarts
    db2 = str(tmp_path / "rx2.db")
    rx = await stepped_receiver(db2)
    try:
        loop = VehicleLoop(rx, now=now - 500)
        await feed(rx, pts[:12])  # up to the exit, not back yet
        found = await loop.step(now - 250)
        assert [(f.code, f.qualifier) for f in found] == [(170, 1)]
        # a restart: the new task replays the track and the store says 170
        # is raised: nothing new; the rest of the drive restores it
        loop2 = VehicleLoop(rx, now=now - 250)
        assert await loop2.step(now - 249) == []
        await feed(rx, pts[12:], key="q")
        found = await loop2.step(now)
        assert [(f.code, f.qualifier) for f in found] == [(170, 3)]
        evs = await vehicle_events(rx.store)
        assert [(e.code, e.qualifier) for e in evs] == [(170, 1), (170, 3)]
        assert evs[1].dedupe_key == evs[0].dedupe_key + ":restore"
    finally:
        await rx.store.close()


async def test_two_receivers_judging_one_track_store_each_event_once(pg_url):  # noqa: F811
    """Two receivers on one PostgreSQL store both judge the van (a takeover
    race): every event once."""
    a = await stepped_receiver(pg_url)
    b = Receiver(config(pg_url))
    await b.store.open()
    await b.reload_accounts()
    try:
        now = time.time()
        await feed(a, drive(now - 400))
        la, lb = VehicleLoop(a, now=now - 500), VehicleLoop(b, now=now - 500)
        fa = await la.step(now)
        fb = await lb.step(now)
        assert [(f.code, f.qualifier) for f in fa] == [(170, 1), (170, 3)]
        assert [f.dedupe_key for f in fa] == [f.dedupe_key for f in fb]
        evs = await vehicle_events(a.store)
        assert [(e.code, e.qualifier) for e in evs] == [(170, 1), (170, 3)]
        assert len([x for x in await a.store.list_alarms() if x.code == 170]) == 1
    finally:
        await a.store.close()
        await b.store.close()


async def test_silent_van_with_ignition_on(tmp_path):
    rx = await stepped_receiver(str(tmp_path / "rx.db"))
    try:
        now = time.time()
        loop = VehicleLoop(rx, now=now - 2000)
        await feed(rx, [(VAN, now - 1900, Position(52.373, 4.892, speed_kmh=20.0,
                                                   fix_time=now - 1900, valid=True,
                                                   ignition=True, moving=True, hdop=0.8))])
        assert await loop.step(now - 1900 + 60) == []
        found = await loop.step(now)
        assert [(f.code, f.qualifier) for f in found] == [(175, 1)]
        [e] = await vehicle_events(rx.store)
        assert e.description == ("Vehicle silent with ignition on: no position for 31 min "
                                 "with the ignition on")
        [alarm] = await rx.store.list_alarms()
        assert (alarm.code, alarm.event_class) == (175, "burglary")
    finally:
        await rx.store.close()


async def test_a_dispatched_patrol_arrives_once_with_its_time_in_the_audit(tmp_path):
    rx = await stepped_receiver(str(tmp_path / "rx.db"))
    try:
        now = time.time()
        loop = rx.vehicle_loop = VehicleLoop(rx, now=now - 600)
        out = await rx.ingest(dict(account="1001", protocol="native", dedupe_key="h", seq=1,
                                   qualifier=1, code=122, zone=4, received_at=now - 500))
        await rx.store.set_patrol_status(PATROL, "available", now - 550, "sam")
        await feed(rx, [(PATROL, now - 520, Position(52.3720, 4.8870, speed_kmh=0.0,
                                                     fix_time=now - 520, valid=True))])
        prop = await rx.vehicles.proposals(out.alarm_id, now - 500)
        assert prop["target"]["source"] == "site" and prop["distance"] == "straight line"
        [p] = prop["proposals"]
        assert p["account"] == PATROL
        d = await rx.vehicles.dispatch(out.alarm_id, PATROL, "olga", now - 490)
        assert (await rx.store.patrol_statuses([PATROL]))[PATROL].status == "dispatched"
        # the patrol drives over: still 300 m off, then inside 100 m
        await feed(rx, [(PATROL, now - 400, Position(52.3730, 4.8950, speed_kmh=40.0,
                                                     fix_time=now - 400, valid=True)),
                        (PATROL, now - 250, Position(52.3746, 4.8979, speed_kmh=5.0,
                                                     fix_time=now - 250, valid=False)),
                        (PATROL, now - 245, Position(52.3747, 4.8979, speed_kmh=5.0,
                                                     fix_time=now - 245, valid=True))],
                   key="drive")
        await loop.step(now)
        await loop.step(now + 1)
        [done] = await rx.store.list_dispatches(alarm_id=out.alarm_id)
        assert done.arrived_at == now - 245 and done.arrival_s == 245
        assert (await rx.store.patrol_statuses([PATROL]))[PATROL].status == "on_scene"
        # straight line, haversine as the oracle (gpsreplay's, not the units')
        far = G.haversine_m((52.3720, 4.8870), (52.3750, 4.8980))
        assert d.distance_m == pytest.approx(far, abs=0.5)
        # the dispatch's own rows (the workflow writes the alarm's plan rows too)
        audit = [r.note for r in await rx.store.alarm_audit(out.alarm_id)
                 if (r.note or "").startswith("Patrol ")]
        assert audit == [
            "Patrol 1004 (Patrol car 3) dispatched by olga to the site (%d m away in a "
            "straight line)." % round(far),
            "Patrol 1004 (Patrol car 3) on scene 4 min 5 s after dispatch (within 100 m)."]
        # the centre's reports: the patrol's time to arrive, per priority
        from receiver.rules import reports  # noqa: PLC0415
        facts, events = await rx.store.report_rows(now - 600, now)
        [fact] = [f for f in facts if f.id == out.alarm_id]
        assert fact.patrol_arrival_s == 245
        rep = reports.build(facts, events, now - 600, now)
        [sec] = [x for x in rep.sections if x.name == "patrol_response"]
        assert sec.rows == [[fact.priority, 1, 1, 245.0, 245.0, 245.0, 0]]
    finally:
        await rx.store.close()


async def test_tracks_are_pruned_by_each_accounts_retention(tmp_path):
    rx = await stepped_receiver(str(tmp_path / "rx.db"))
    try:
        now = time.time()
        day = 86400
        await rx.store.update_account(PATROL, track_retention_days=2)
        rx.config.vehicles.retention_days = 10
        pts = [(a, now - d * day, Position(52.37, 4.89, fix_time=now - d * day))
               for a in (VAN, PATROL) for d in (1, 3, 11)]
        await feed(rx, pts)
        assert await VehicleLoop(rx).prune(now) == 3
        assert [round((now - p.at) / day) for p in await rx.store.track(VAN)] == [3, 1]
        assert [round((now - p.at) / day) for p in await rx.store.track(PATROL)] == [1]
    finally:
        await rx.store.close()


def test_an_event_record_from_the_watch_is_the_receivers_own():
    rx = Receiver(config(":memory:"))
    rec = rx.make_record(dict(account=VAN, protocol="native", dedupe_key="vehicle:170:1",
                              qualifier=1, code=170, partition=0, zone=0,
                              text="found by the receiver's own check (the unit did not "
                                   "report it)", peer="receiver",
                              source="vehicle", received_at=1.0))
    assert isinstance(rec, EventRecord) and rec.open_alarm
    assert rec.description == ("Vehicle left its route corridor: found by the receiver's own "
                               "check (the unit did not report it)")
    assert rec.user is None


def test_the_dispatch_sentence_says_where_the_patrol_goes():
    from receiver.vehicles import patrols as P  # noqa: PLC0415
    words = {src: P.dispatch_sentence("1004", "Patrol car 3", "olga",
                                      P.Target(52.37, 4.89, 150.0, src, None), 645.2)
             for src in ("alarm position", P.LAST_KNOWN, "site")}
    assert words == {
        "alarm position": "Patrol 1004 (Patrol car 3) dispatched by olga to the alarm's "
                          "position (645 m away in a straight line).",
        P.LAST_KNOWN: "Patrol 1004 (Patrol car 3) dispatched by olga to the vehicle's last "
                      "known position (645 m away in a straight line).",
        "site": "Patrol 1004 (Patrol car 3) dispatched by olga to the site (645 m away in a "
                "straight line)."}
