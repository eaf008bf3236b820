"""The receiver's re-check of a van's route (receiver/vehicles/watch.py),
fed track points with explicit times, shapely as the oracle for "off the
corridor" and "in an allowed zone": 170 is raised exactly once per exit
that lasted the unit's exit_after_s plus the receiver's grace, restored
inside the hysteresis; 171 after stop_max_s plus grace outside every
allowed zone; 175 when a van with its ignition on falls silent; keys that
make two receivers' findings one event; the geofence file's mistakes in
words."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from shapely.geometry import Point
from shapely.geometry import Polygon as SPolygon

from firmware import REPO
from firmware import gpsreplay as G
from receiver.records import Position, TrackPoint
from receiver.vehicles import geofences
from receiver.vehicles.watch import RouteWatch
from tests.test_geo import offset, plane_distance

GEOFENCES = REPO + "/examples/geofences.geojson"
VAN = "1003"
T0 = 1_767_600_000.0  # 2026-01-05 08:00 UTC
GRACE = 30
R = 6371008.8


@pytest.fixture(scope="module")
def rules():
    return geofences.load(GEOFENCES)[VAN]


def tp(i, at, lat, lon, speed=30.0, ignition=True, valid=True, account=VAN):
    return TrackPoint(i, account, at, at, Position(
        lat, lon, speed_kmh=speed, course_deg=0.0, fix_time=at, quality=1, sats=9, hdop=0.9,
        valid=valid, moving=speed >= 5, ignition=ignition, alarm=False))


def codes(found):
    return [(f.code, f.qualifier) for f in found]


# -- the oracle ------------------------------------------------------------------------------


def corridor_udeg(rules):
    return [(la, lo) for la, lo in rules.section["corridor"]["line"]]


def off_route_m(rules, lat, lon):
    return plane_distance(corridor_udeg(rules), round(lat * 1e6), round(lon * 1e6))


def in_allowed(rules, lat, lon):
    for z in rules.section["allowed_zones"]:
        if "circle" in z:
            c = z["circle"]
            k = R * math.pi / 180e6
            dx = (round(lon * 1e6) - c[1]) * k * math.cos(math.radians(lat))
            dy = (round(lat * 1e6) - c[0]) * k
            if math.hypot(dx, dy) <= c[2]:
                return True
        elif SPolygon([(p[1], p[0]) for p in z["polygon"]]).contains(
                Point(round(lon * 1e6), round(lat * 1e6))):
            return True
    return False


# -- the demo route ----------------------------------------------------------------------------


def test_the_demo_route_leaves_the_corridor_once_and_the_receiver_says_so(rules):
    """examples/route_city.gpx drives east past the corridor's turn (the
    corridor turns north at 4.886, the route at 4.890): a point every 10 s,
    as a unit in alarm reports; 170 once, with the oracle agreeing."""
    replay = G.Replay(G.load(REPO + "/examples/route_city.gpx"))
    w = RouteWatch(VAN, rules, GRACE, None)
    found, off_since, want_exit = [], None, None
    for i, t in enumerate(range(0, int(replay.duration_s), 10)):
        lat, lon, speed, _ = replay.position(t)
        f = w.point(tp(i + 1, T0 + t, lat, lon, speed))
        found += f
        off = off_route_m(rules, lat, lon) > 100 and not in_allowed(rules, lat, lon)
        if off and off_since is None:
            off_since = t
        if not off:
            off_since = None
        if off_since is not None and t - off_since >= 10 + GRACE and want_exit is None:
            want_exit = t
        if f and f[0].qualifier == 1:
            assert t == want_exit  # raised at the first point past exit_after + grace
    assert codes(found) == [(170, 1), (170, 3)]
    assert found[0].dedupe_key.startswith("vehicle:170:")
    assert found[0].text == "found by the receiver's own check (the unit did not report it)"
    assert found[1].dedupe_key == found[0].dedupe_key + ":restore"


def test_two_receivers_judging_the_same_points_find_the_same_keys(rules):
    replay = G.Replay(G.load(REPO + "/examples/route_city.gpx"))
    pts = [tp(i + 1, T0 + t, *replay.position(t)[:3])
           for i, t in enumerate(range(0, int(replay.duration_s), 10))]
    a, b = RouteWatch(VAN, rules, GRACE, None), RouteWatch(VAN, rules, GRACE, None)
    fa = [f for p in pts for f in a.point(p) + a.tick(p.at + 3)]
    fb = [f for p in pts for f in b.point(p)]  # ticks at other moments
    assert [f.dedupe_key for f in fa] == [f.dedupe_key for f in fb]
    # a third that starts with what the store says is raised (a takeover
    # mid-exit) raises nothing new and restores under the same key
    c = RouteWatch(VAN, rules, GRACE, None)
    c.load_raised({170: fa[0].dedupe_key})
    fc = [f for p in pts for f in c.point(p)]
    assert [(f.qualifier, f.dedupe_key) for f in fc] == [(3, fa[0].dedupe_key + ":restore")]


def test_withdrawn_when_the_unit_reported_it(rules):
    w = RouteWatch(VAN, rules, GRACE, None)
    lat, lon = 52.3700, 4.8900  # 270 m east of the corridor's northbound leg
    found = []
    for i in range(8):
        found += w.point(tp(i + 1, T0 + 10 * i, lat, lon))
    assert codes(found) == [(170, 1)]
    w.withdraw(170)
    later = [f for i in range(8, 12) for f in w.point(tp(i + 1, T0 + 10 * i, lat, lon))]
    back = w.point(tp(20, T0 + 200, 52.3700, 4.8860))
    assert later == [] and back == []  # no restore for what was not raised


# -- random drives against the oracle ------------------------------------------------------------


moves = st.lists(st.tuples(st.sampled_from(["corridor", "near", "off", "far", "depot", "bank"]),
                           st.integers(1, 40), st.booleans()), min_size=1, max_size=30)


def place(rules, kind, rnd):
    line = corridor_udeg(rules)
    la, lo = line[min(int(rnd * (len(line) - 1)), len(line) - 2)]
    lb, lob = line[min(int(rnd * (len(line) - 1)), len(line) - 2) + 1]
    f = rnd * (len(line) - 1) % 1
    a, o = la + (lb - la) * f, lo + (lob - lo) * f
    side = {"corridor": 0, "near": 90, "off": 160, "far": 600}.get(kind)
    if kind == "depot":
        return 52.3681, 4.8821
    if kind == "bank":
        return 52.3750, 4.8980
    p = offset(int(a), int(o), side if lb == la else 0, side if lob == lo else 0)
    return p[0] / 1e6, p[1] / 1e6


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moves, st.floats(0, 1))
def test_route_rules_against_shapely(rules, moves, rnd):
    """Random dwell times at places on, near and off the corridor and in the
    allowed zones, points every 5 s: 170 alternates with its restore, is
    raised only after 10 + grace s of points the oracle calls off route, and
    restored only at a point within the hysteresis; 171 only after
    stop_max_s + grace of stopped points outside every allowed zone."""
    w = RouteWatch(VAN, rules, GRACE, None)
    t, i = T0, 0
    half, hyst = 100, 20
    off_since = stop_since = None
    state = {170: False, 171: False}
    for kind, dwell, moving in moves:
        lat, lon = place(rules, kind, rnd)
        d = off_route_m(rules, lat, lon)
        inside = in_allowed(rules, lat, lon)
        if abs(d - half) < 1 or abs(d - (half - hyst)) < 1:
            continue  # on a threshold: the two geometries may differ by millimetres
        for _ in range(dwell):
            i += 1
            speed = 30.0 if moving else 0.0
            found = w.point(tp(i, t, lat, lon, speed))
            off = d > half and not inside
            off_since = (off_since if off_since is not None else t) if off else None
            stopped = speed < 3 and not inside
            stop_since = (stop_since if stop_since is not None else t) if stopped else None
            for f in found:
                assert f.qualifier == (3 if state[f.code] else 1)
                state[f.code] = not state[f.code]
                if f.code == 170 and f.qualifier == 1:
                    assert off_since is not None and t - off_since >= 10 + GRACE
                if f.code == 170 and f.qualifier == 3:
                    assert d <= half - hyst or inside
                if f.code == 171 and f.qualifier == 1:
                    assert stop_since is not None and t - stop_since >= 300 + GRACE
                if f.code == 171 and f.qualifier == 3:
                    assert not stopped
            t += 5


# -- stops and silence -------------------------------------------------------------------------


def test_stopped_outside_the_zones_and_not_in_the_depot(rules):
    w = RouteWatch(VAN, rules, GRACE, None)
    found = []
    for i in range(0, 400, 30):  # stopped at the depot: allowed
        found += w.point(tp(i + 1, T0 + i, 52.3680, 4.8820, speed=0.0))
    assert found == []
    w2 = RouteWatch(VAN, rules, GRACE, None)
    found = w2.point(tp(1, T0, 52.3730, 4.8920, speed=0.0))  # on the route, stopped
    # the parked unit reports rarely: the receiver's clock raises it
    found += w2.tick(T0 + 300 + GRACE - 1)
    assert found == []
    found += w2.tick(T0 + 300 + GRACE)
    assert codes(found) == [(171, 1)]
    assert found[0].at == T0 + 300 + GRACE
    found = w2.point(tp(2, T0 + 400, 52.3731, 4.8925, speed=25.0))
    assert codes(found) == [(171, 3)]


def test_silent_with_the_ignition_on(rules):
    w = RouteWatch(VAN, rules, GRACE, 1200)
    w.point(tp(1, T0, 52.3730, 4.8920, ignition=True))
    assert w.tick(T0 + 1199) == []
    [f] = w.tick(T0 + 1200)
    assert (f.code, f.qualifier, f.dedupe_key) == (175, 1, "vehicle:175:%d" % (T0 * 1000))
    assert f.text == "no position for 20 min with the ignition on"
    assert w.tick(T0 + 1500) == []  # once
    # its late points arrive (they waited in the unit's queue): restored
    back = w.point(tp(2, T0 + 60, 52.3731, 4.8921))
    assert codes(back) == [(175, 3)]
    # parked, ignition off: silence is fine
    w2 = RouteWatch(VAN, None, GRACE, 1200)
    w2.point(tp(1, T0, 52.3730, 4.8920, speed=0.0, ignition=False))
    assert w2.tick(T0 + 86400) == []


def test_a_late_point_does_not_turn_the_clock_back(rules):
    w = RouteWatch(VAN, rules, GRACE, None)
    w.point(tp(1, T0, 52.3700, 4.8900))
    w.tick(T0 + 100)
    w.point(tp(2, T0 + 5, 52.3700, 4.8900))
    assert w.clock_ms == (T0 + 100) * 1000


def test_dc09_points_are_signs_of_life_only(rules):
    w = RouteWatch(VAN, rules, GRACE, 600)
    p = TrackPoint(1, VAN, T0, T0, Position.from_location({"lat": 52.37, "lon": 4.89}))
    assert w.point(p) == [] and w.v is None


# -- the file ----------------------------------------------------------------------------------


def feature(kind, geom, **props):
    return {"type": "Feature", "properties": dict(props, kind=kind), "geometry": geom}


def fc(*features):
    return {"type": "FeatureCollection", "features": list(features)}


@pytest.mark.parametrize("doc, want", [
    ({"type": "Feature"}, "expected a GeoJSON FeatureCollection"),
    (fc(feature("allowed", {"type": "Point", "coordinates": [4.88, 52.37]}, radius_m=50)),
     "feature 1 (allowed): properties.account: give an account number"),
    (fc(feature("garage", None, account="1")),
     "properties.kind: expected one of allowed, corridor, rules, got 'garage'"),
    (fc(feature("allowed", {"type": "Point", "coordinates": [4.88, 52.37]}, account="1",
                name="depot", radius_m=5)),
     "feature 1 (account 1; allowed 'depot'): radius_m: expected whole metres 10..50000, "
     "got 5"),
    (fc(feature("allowed", {"type": "Point", "coordinates": [52.37, 104.88]}, account="1",
                radius_m=50)),
     "feature 1 (account 1; allowed): center: [52.37, 104.88] is not [longitude, latitude]"),
    (fc(feature("corridor", {"type": "LineString", "coordinates": [[4.88, 52.37]]},
                account="1", width_m=200)),
     "feature 1 (account 1; corridor): coordinates: needs 2..200 points, got 1"),
    (fc(feature("corridor", {"type": "LineString", "coordinates": [[4.88, 52.37],
                                                                   [4.89, 52.37]]},
                account="1")),
     "feature 1 (account 1; corridor): width_m: missing"),
    (fc(feature("corridor", {"type": "Point", "coordinates": [4.88, 52.37]}, account="1",
                width_m=100)),
     "a corridor is a LineString, got Point"),
    (fc(feature("rules", None, account=["1", "2"], stop_max_s=5)),
     "feature 1 (account 1, 2; rules): stop_max_s: 5 is out of range 10..86400"),
    (fc(feature("rules", None, account="1", door_open_kmh=5)),
     "properties door_open_kmh: not known for kind rules"),
    (fc(feature("allowed", {"type": "Polygon", "coordinates": [[[4.88, 52.37], [4.89, 52.37],
                                                                [4.89, 52.38]], [[0, 0]]]},
                account="1")), "a Polygon with exactly one ring (no holes)"),
])
def test_geofence_mistakes_are_named_with_their_feature(doc, want):
    with pytest.raises(geofences.GeofenceError) as e:
        geofences.parse(doc, "gf.geojson")
    assert want in str(e.value)


def test_every_mistake_at_once_and_a_good_file_loads(tmp_path):
    doc = fc(feature("rules", None, account="1", stop_max_s=5),
             feature("allowed", {"type": "Point", "coordinates": [4.88, 52.37]}, account="1",
                     radius_m=5))
    with pytest.raises(geofences.GeofenceError, match="2 mistakes"):
        geofences.parse(doc)
    p = tmp_path / "g.geojson"
    p.write_text("{not json")
    with pytest.raises(geofences.GeofenceError, match="not JSON"):
        geofences.load(str(p))
    with pytest.raises(geofences.GeofenceError, match="no such file"):
        geofences.load(str(tmp_path / "none.geojson"))
    p.write_text(json.dumps(fc(feature("corridor", {
        "type": "LineString", "coordinates": [[4.88, 52.37], [4.89, 52.37]]},
        account=["1", "2"], width_m=100))))
    got = geofences.load(str(p))
    assert sorted(got) == ["1", "2"] and got["1"].has_corridor
    assert got["1"].section["corridor"]["line"] == [(52370000, 4880000), (52370000, 4890000)]
