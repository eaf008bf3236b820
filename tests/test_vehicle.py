"""The vehicle rules core and report policy (firmware/device/vehicle.py),
with time driven by the test, shapely and haversine as the oracle for
inside/outside; the same sequences under the MicroPython VM."""

import copy
import json
import random
import shutil
import sys

import pytest
from hypothesis import assume, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from shapely.geometry import Point
from shapely.geometry import Polygon as SPolygon

from firmware import DEVICE_DIR, REPO
from firmware import gpsreplay as G
from protocol import contactid
from tests import mpy_runner
from tests.test_geo import haversine, offset, plane_distance

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import cid  # noqa: E402
import nmea  # noqa: E402
import vehicle as V  # noqa: E402
import vehicle_config as VC  # noqa: E402

ORIGIN = (52_370_000, 4_890_000)  # a city centre


def at(north_m, east_m):
    return offset(ORIGIN[0], ORIGIN[1], north_m, east_m)


def lonlat(p):
    """(lat, lon) udeg -> [lon, lat] degrees, as a config gives points."""
    return [p[1] / 1e6, p[0] / 1e6]


DEPOT = at(0, 0)
BANK = [at(900, 900), at(900, 1050), at(1050, 1050), at(1050, 900)]
ROUTE = [at(0, 0), at(0, 600), at(600, 600), at(900, 900)]


def section(**over):
    doc = {
        "allowed_zones": [
            {"name": "depot", "center": lonlat(DEPOT), "radius_m": 150},
            {"name": "bank", "polygon": [lonlat(p) for p in BANK]},
        ],
        "corridor": {"line": [lonlat(p) for p in ROUTE], "width_m": 200,
                     "exit_after_s": 0, "hysteresis_m": 20},
        "door_open_kmh": 10, "moving_kmh": 5, "stopped_kmh": 3, "stop_max_s": 60,
        "fix_lost_s": 30, "jam_window_s": 5, "position_hold_s": 120,
    }
    doc.update(over)
    cfg, errors = VC.validate(doc)
    assert errors == []
    return cfg


def fix(p=None, speed_kmh=0, valid=True, hdop=9):
    f = nmea.Fix()
    f.valid = valid
    if p is not None:
        f.lat, f.lon = p
    f.speed = int(speed_kmh * 10)
    f.hdop = hdop
    return f


def take(v):
    out = [(q, code, zone) for q, code, _p, zone, _t in v.out]
    v.out.clear()
    return out


# --- tables ---------------------------------------------------------------------------------

def test_episode_table_total_for_inputs_and_violation_only_while_open():
    for s, row in V.EPISODE.items():
        assert V.EV_OPEN in row and V.EV_CLOSE in row
    with pytest.raises(V.LocalError):
        V.step(V.EPISODE, V.E_IDLE, V.EV_VIOLATE)
    # once per opening: a second violation does nothing; the close restores
    assert V.step(V.EPISODE, V.E_ALARM, V.EV_VIOLATE) == (V.E_ALARM, V.A_NONE)
    assert V.step(V.EPISODE, V.E_ALARM, V.EV_CLOSE) == (V.E_IDLE, V.A_RESTORE)


def test_condition_table_expires_only_when_pending():
    for s in (V.C_OK, V.C_RAISED):
        with pytest.raises(V.LocalError):
            V.step(V.CONDITION, s, V.CV_EXPIRE)
    assert V.step(V.CONDITION, V.C_PENDING, V.CV_EXPIRE) == (V.C_RAISED, V.A_NEW)
    assert V.step(V.CONDITION, V.C_PENDING, V.CV_GOOD) == (V.C_OK, V.A_NONE)


def test_codes_render_and_queue_at_the_receiver():
    for code in (cid.ROUTE_EXIT, cid.STOPPED_TOO_LONG, cid.VEHICLE_DOOR,
                 cid.IGNITION_OFF_SCHEDULE, cid.COMPARTMENT):
        assert contactid.is_alarm(1, code) and contactid.event_class(code) == "burglary"
        assert not contactid.name(code).startswith("Event")
    for code in (cid.GPS_TROUBLE, cid.GPS_JAM):
        assert contactid.event_class(code) == "trouble" and contactid.is_alarm(1, code)
        assert not contactid.name(code).startswith("Event")


# --- the rules, one by one ----------------------------------------------------------------------

def test_compartment_inside_depot_and_bank_no_alarm_outside_once():
    v = V.Vehicle(section(), 0)
    v.fix(fix(at(20, 30)), 1000)  # in the depot
    v.compartment(5, True, 1500)
    v.compartment(5, False, 2000)
    v.fix(fix(at(950, 950)), 3000)  # at the bank (polygon)
    v.compartment(5, True, 3500)
    v.compartment(5, False, 4000)
    assert take(v) == []
    v.fix(fix(at(400, 600), 30), 5000)  # on the road
    v.compartment(5, True, 5500)
    v.fix(fix(at(410, 600), 30), 6000)  # still open: no second alarm
    v.compartment(5, True, 6500)
    assert take(v) == [(1, 133, 5)]
    v.compartment(5, False, 7000)
    assert take(v) == [(3, 133, 5)]


def test_compartment_open_in_depot_then_driven_out_alarms():
    v = V.Vehicle(section(), 0)
    v.fix(fix(at(0, 0)), 1000)
    v.compartment(6, True, 1500)
    assert take(v) == []
    v.fix(fix(at(0, 300), 20), 2000)  # left the depot with it open
    assert take(v) == [(1, 133, 6)]


def test_compartment_without_a_position_is_an_alarm_and_the_hold_runs_out():
    v = V.Vehicle(section(), 0)
    v.compartment(1, True, 100)  # never had a fix: fail-safe
    assert take(v) == [(1, 133, 1)]
    v = V.Vehicle(section(position_hold_s=60), 0)
    v.fix(fix(at(0, 0)), 1000)  # in the depot, then the fix goes (a garage)
    v.fix(fix(valid=False), 2000)
    v.compartment(2, True, 30_000)  # the position held: no alarm
    assert take(v) == []
    v.tick(61_000)  # the fix is 60 s old: still held
    assert take(v) == []
    v.tick(61_001)
    assert take(v) == [(1, 133, 2)]


def test_poor_hdop_is_not_a_position():
    v = V.Vehicle(section(max_hdop=2), 0)
    v.fix(fix(at(0, 0), hdop=21), 1000)  # HDOP 2.1 > 2
    v.compartment(1, True, 1100)
    assert take(v) == [(1, 133, 1)]


def test_door_open_while_moving():
    v = V.Vehicle(section(), 0)
    v.fix(fix(at(0, 400), 5), 1000)
    v.door(3, True, 1100)  # 5 km/h, below 10
    assert take(v) == []
    v.fix(fix(at(0, 420), 25), 2000)  # speeds up with the door open
    v.fix(fix(at(0, 440), 30), 3000)
    assert take(v) == [(1, 172, 3)]
    v.door(3, False, 3100)
    v.door(3, True, 3200)  # a new opening at speed
    assert take(v) == [(3, 172, 3), (1, 172, 3)]


def test_corridor_exit_once_with_hysteresis_and_delay():
    v = V.Vehicle(section(), 0)
    v.fix(fix(at(0, 300), 40), 1000)  # on the route
    v.fix(fix(at(150, 300), 40), 2000)  # 150 m off: out (half width 100)
    assert take(v) == [(1, 170, 0)]
    v.fix(fix(at(200, 300), 40), 3000)
    v.fix(fix(at(90, 300), 40), 4000)  # 90 m: inside the width, not the hysteresis
    assert take(v) == []
    v.fix(fix(at(70, 300), 40), 5000)  # 70 m < 100 - 20
    assert take(v) == [(3, 170, 0)]
    # exit_after_s: a short excursion is forgiven
    v = V.Vehicle(section(corridor={"line": [lonlat(p) for p in ROUTE], "width_m": 200,
                                    "exit_after_s": 10}), 0)
    v.fix(fix(at(150, 300), 40), 1000)
    v.fix(fix(at(20, 300), 40), 5000)
    v.fix(fix(at(150, 300), 40), 6000)
    v.tick(15_000)
    assert take(v) == []
    v.tick(16_000)
    assert take(v) == [(1, 170, 0)]


def test_stop_too_long_outside_allowed_zones():
    v = V.Vehicle(section(), 0)
    v.fix(fix(at(300, 600), 0), 1000)
    v.tick(60_000)
    assert take(v) == []
    v.tick(61_000)
    assert take(v) == [(1, 171, 0)]
    v.fix(fix(at(320, 600), 30), 70_000)
    assert take(v) == [(3, 171, 0)]
    v.fix(fix(at(0, 0), 0), 80_000)  # parked in the depot: never
    v.tick(10_000_000)
    assert take(v) == []


def test_fix_lost_while_moving_is_a_trouble_not_when_parked():
    v = V.Vehicle(section(), 0)
    v.fix(fix(at(0, 300), 50), 1000)
    v.fix(fix(valid=False), 2000)
    v.tick(31_000)
    assert take(v) == []
    v.tick(32_000)
    assert take(v) == [(1, 330, 0)]
    v.fix(fix(at(300, 600), 50), 40_000)
    assert take(v) == [(3, 330, 0)]
    # the receiver falls silent: lost 3 s after its last sentence
    v.tick(40_000 + 3000 + 30_000 - 1)
    assert take(v) == []
    v.tick(40_000 + 3000 + 30_000)
    assert take(v) == [(1, 330, 0)]
    # parked: a lost fix (a garage) is no trouble
    v = V.Vehicle(section(), 0)
    v.fix(fix(at(0, 0), 0), 1000)
    v.fix(fix(valid=False), 2000)
    v.tick(1_000_000)
    assert take(v) == []


def test_jamming_sudden_loss_with_antenna_tamper():
    v = V.Vehicle(section(), 0)
    v.fix(fix(at(0, 300), 50), 1000)
    v.antenna_input(True, 1500)
    v.fix(fix(valid=False), 2000)
    assert take(v) == [(1, 344, 0)]  # at once, not after fix_lost_s
    v.tick(40_000)
    assert take(v) == [(1, 330, 0)]
    v.fix(fix(at(0, 400), 50), 41_000)  # fix back, antenna still tripped
    assert take(v) == [(3, 330, 0)]
    v.antenna_input(False, 42_000)
    assert take(v) == [(3, 344, 0)]
    # antenna tripped long before the loss: an antenna fault, not jamming
    v = V.Vehicle(section(), 0)
    v.fix(fix(at(0, 300), 50), 1000)
    v.antenna_input(True, 1500)
    v.fix(fix(at(0, 310), 50), 20_000)
    v.fix(fix(valid=False), 21_000)
    assert take(v) == []


# 2024-06-05 was a Wednesday (ISO 3); 10:00 and 23:30 UTC
WED_10 = 1717581600
WED_2330 = WED_10 + 13 * 3600 + 1800


def test_ignition_outside_schedule_including_overnight_window():
    sched = [{"days": [1, 2, 3, 4, 5], "from": "06:00", "to": "20:00"},
             {"days": [3], "from": "23:00", "to": "02:00"}]
    v = V.Vehicle(section(ignition_schedule=sched), 0)
    v.ignition_input(True, 1000, WED_10, 9)
    v.ignition_input(False, 2000, WED_10 + 60, 9)
    v.ignition_input(True, 3000, WED_2330, 9)  # Wednesday night shift
    v.ignition_input(False, 4000, WED_2330 + 60, 9)
    v.ignition_input(True, 5000, WED_2330 + 3 * 3600, 9)  # Thursday 02:30
    assert take(v) == [(1, 173, 9)]
    v.ignition_input(True, 5500, WED_2330 + 3 * 3600, 9)  # still on: once
    v.ignition_input(False, 6000, WED_2330 + 3 * 3600 + 60, 9)
    assert take(v) == [(3, 173, 9)]
    v.ignition_input(True, 7000, 0, 9)  # clock unset: not judged
    assert take(v) == []
    # local time: UTC+2, Wednesday 04:30 UTC is 06:30 local (inside)
    v = V.Vehicle(section(ignition_schedule=sched[:1]), 0, utc_offset_min=120)
    v.ignition_input(True, 1000, WED_10 - 5 * 3600 - 1800, 9)
    assert take(v) == []


def test_out_is_bounded():
    v = V.Vehicle(section(), 0)
    for z in range(40):
        v.compartment(z, True, 100)
    assert len(v.out) == V.OUT_MAX and v.overflow == 40 - V.OUT_MAX


# --- report policy -------------------------------------------------------------------------

def test_report_policy_with_explicit_time():
    r = section()["report"]
    assert r == {"moving_s": 30, "moving_m": 200, "turn_deg": 30, "alarm_s": 5,
                 "after_alarm_s": 600, "parked_s": 900, "min_s": 2, "track_points": 96}
    p = V.ReportPolicy(r, 5)
    a = at(0, 0)
    assert p.due(0, True, a[0], a[1], 0, 0, False) == V.P_FIRST
    p.sent(0, True, a[0], a[1], 0, 0)
    assert p.due(899_999, True, a[0], a[1], 0, 0, False) == 0
    assert p.due(900_000, True, a[0], a[1], 0, 0, False) == V.P_HEARTBEAT
    assert p.due(1000, True, a[0], a[1], 300, 0, False) == 0  # min_s
    assert p.due(2000, True, a[0], a[1], 300, 0, False) == V.P_START
    p.sent(2000, True, a[0], a[1], 300, 900)
    b = at(0, 150)
    assert p.due(10_000, True, b[0], b[1], 300, 900, False) == 0
    b = at(0, 201)
    assert p.due(10_000, True, b[0], b[1], 300, 900, False) == V.P_DISTANCE
    assert p.due(10_000, True, a[0], a[1], 300, 1200, False) == V.P_TURN
    assert p.due(10_000, True, a[0], a[1], 300, 3599 - 1500, False) == V.P_TURN
    assert p.due(32_000, True, a[0], a[1], 300, 900, False) == V.P_INTERVAL
    assert p.due(6_000, True, a[0], a[1], 300, 900, True) == 0
    assert p.due(7_000, True, a[0], a[1], 300, 900, True) == V.P_ALARM
    assert p.due(10_000, True, a[0], a[1], 20, 900, False) == V.P_STOP
    assert p.due(10_000, False, 0, 0, 0, 0, False) == 0
    assert p.due(902_000, False, 0, 0, 0, 0, False) == V.P_HEARTBEAT


# --- config ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("over, msg", [
    ({"allowed_zones": [{"center": [52.37, 104.89], "radius_m": 100}]},
     "vehicle.allowed_zones[0].center: [52.37, 104.89] is not [longitude, latitude]"),
    ({"allowed_zones": [{"center": [4.89, 52.37]}]},
     "vehicle.allowed_zones[0].radius_m: expected whole metres 10..50000, got None"),
    ({"allowed_zones": [{"polygon": [[4.89, 52.37], [4.9, 52.37]]}]},
     "vehicle.allowed_zones[0].polygon: needs 3..33 points, got 2"),
    ({"allowed_zones": [{"center": [4.89, 52.37], "radius_m": 100, "polygon": []}]},
     "vehicle.allowed_zones[0]: give either"),
    ({"corridor": {"line": [[4.89, 52.37], [4.9, 52.38]]}}, "vehicle.corridor.width_m: missing"),
    ({"corridor": {"line": [[4.89, 52.37]], "width_m": 100}},
     "vehicle.corridor.line: needs 2..200 points, got 1"),
    ({"corridor": {"line": [[4.89, 52.37], [4.9, 52.38]], "width_m": 100, "hysteresis_m": 50}},
     "vehicle.corridor.hysteresis_m: must be less than half of width_m"),
    ({"ignition_schedule": [{"from": "6:00", "to": "20:00"}]},
     "vehicle.ignition_schedule[0].from: expected a time of day \"HH:MM\", got '6:00'"),
    ({"ignition_schedule": [{"from": "06:00", "to": "20:00", "days": [0]}]},
     "vehicle.ignition_schedule[0].days: expected days 1 (Monday) .. 7 (Sunday)"),
    ({"door_open_kmh": 10.5}, "vehicle.door_open_kmh: expected a whole number, got number"),
    ({"stop_max_s": 5}, "vehicle.stop_max_s: 5 is out of range 10..86400"),
    ({"stopped_kmh": 9}, "vehicle.stopped_kmh: must not exceed vehicle.moving_kmh"),
    ({"max_hdop": "5"}, "vehicle.max_hdop: expected a number 1..50, got '5'"),
    ({"report": {"alarm_s": 60}}, "vehicle.report.alarm_s: must not exceed vehicle.report.moving_s"),
    ({"speed_limit": 50}, "vehicle.speed_limit: unknown field"),
    ({"report": {"every_s": 5}}, "vehicle.report.every_s: unknown field"),
    ({"corridor": {"line": [[4.89, 52.37], [4.9, 52.38]], "width_m": 100, "wide": 1}},
     "vehicle.corridor.wide: unknown field (known: line, width_m"),
])
def test_config_mistakes_get_clear_errors(over, msg):
    doc = {}
    doc.update(over)
    cfg, errors = VC.validate(doc)
    assert any(e.startswith(msg) for e in errors), errors


def test_config_defaults_and_units():
    cfg, errors = VC.validate({"allowed_zones": [
        {"name": "depot", "center": [4.8952, 52.3702], "radius_m": 150},
        {"polygon": [[4.89, 52.37], [4.9, 52.37], [4.9, 52.38], [4.89, 52.37]]}]})
    assert errors == []
    assert cfg["allowed_zones"][0] == {"name": "depot", "circle": (52370200, 4895200, 150)}
    assert cfg["allowed_zones"][1]["polygon"] == [(52370000, 4890000), (52370000, 4900000),
                                                  (52380000, 4900000)]  # ring closed
    assert cfg["max_hdop"] == 50 and cfg["corridor"] is None
    assert cfg["ignition_schedule"] is None and cfg["partition"] == 1


@pytest.mark.parametrize("doc", [None, [], 5, "x", {"allowed_zones": 5},
                                 {"allowed_zones": [5, None, {"center": None}]},
                                 {"corridor": []}, {"corridor": {"line": 5, "width_m": "x"}},
                                 {"ignition_schedule": {}}, {"ignition_schedule": [[]]},
                                 {"report": None}, {"max_hdop": True}])
def test_config_never_raises(doc):
    cfg, errors = VC.validate(doc)
    assert errors


# --- the stateful walk ---------------------------------------------------------------------------------

HALF, HYST = 100, 20
DEPOT_R = 150


def oracle_inside(p):
    if haversine(DEPOT[0], DEPOT[1], p[0], p[1]) <= DEPOT_R:
        return True
    return SPolygon([(lo, la) for la, lo in BANK]).contains(Point(p[1], p[0]))


def ambiguous(p):
    """Too close to a boundary for a verdict either way (centimetres)."""
    if abs(haversine(DEPOT[0], DEPOT[1], p[0], p[1]) - DEPOT_R) < 0.05:
        return True
    if SPolygon([(lo, la) for la, lo in BANK]).boundary.distance(Point(p[1], p[0])) < 1:
        return True  # 1 udeg, 0.1 m
    d = plane_distance(ROUTE, p[0], p[1])
    return abs(d - HALF) < 0.05 or abs(d - (HALF - HYST)) < 0.05


class VehicleWalk(RuleBasedStateMachine):
    """Random drives and inputs; the model says which alarms must come."""

    @initialize()
    def start(self):
        self.v = V.Vehicle(section(), 0)
        self.now = 0
        self.pos = (0.0, 0.0)  # metres north, east of the origin
        self.fix_ms = None
        self.inside = False
        self.speed = 0
        self.comp = {}  # zone -> [open, violated]
        self.doors = {}
        self.off_route = False
        self.events = []  # everything the core raised

    # -- the model's view ------------------------------------------------------------

    def usable(self):
        return self.fix_ms is not None and self.now - self.fix_ms <= 120_000

    def evaluate(self):
        known = self.usable()
        for z, s in self.comp.items():
            if s[0] and not (known and self.inside):
                s[1] = True
        for z, s in self.doors.items():
            if s[0] and known and self.speed >= 100:
                s[1] = True

    def drain(self):
        self.events += [(q, code, zone) for q, code, _p, zone, _t in self.v.out]
        self.v.out.clear()

    # -- rules -------------------------------------------------------------------------------

    @rule(north=st.floats(-200, 200), east=st.floats(-200, 200),
          speed=st.integers(0, 800), dt=st.integers(200, 5000))
    def drive(self, north, east, speed, dt):
        n = min(1500.0, max(-300.0, self.pos[0] + north))
        e = min(1500.0, max(-300.0, self.pos[1] + east))
        p = at(n, e)
        assume(not ambiguous(p))
        self.now += dt
        self.pos = (n, e)
        self.v.fix(fix(p, speed / 10), self.now)
        self.fix_ms = self.now
        self.inside = oracle_inside(p)
        self.speed = speed
        d = plane_distance(ROUTE, p[0], p[1])
        if not self.off_route and not self.inside and d > HALF:
            self.off_route = True
            self.expect_route = (1, cid.ROUTE_EXIT, 0)
        elif self.off_route and (self.inside or d <= HALF - HYST):
            self.off_route = False
            self.expect_route = (3, cid.ROUTE_EXIT, 0)
        else:
            self.expect_route = None
        self.evaluate()
        before = len(self.events)
        self.drain()
        route_events = [e for e in self.events[before:] if e[1] == cid.ROUTE_EXIT]
        assert route_events == ([self.expect_route] if self.expect_route else [])

    @rule(dt=st.integers(100, 200_000))
    def lose_fix(self, dt):
        self.now += dt
        self.v.fix(fix(valid=False), self.now)
        self.evaluate()
        self.drain()

    @rule(dt=st.integers(100, 200_000))
    def wait(self, dt):
        self.now += dt
        self.v.tick(self.now)
        self.evaluate()
        self.drain()

    @rule(zone=st.integers(1, 3), is_open=st.booleans())
    def compartment(self, zone, is_open):
        s = self.comp.setdefault(zone, [False, False])
        self.v.compartment(zone, is_open, self.now)
        self.drain()
        if is_open and not s[0]:
            s[0], s[1] = True, False
            self.opened_at = len(self.events)
        elif not is_open and s[0]:
            s[0] = False
        self.evaluate()

    @rule(zone=st.integers(4, 5), is_open=st.booleans())
    def door(self, zone, is_open):
        s = self.doors.setdefault(zone, [False, False])
        self.v.door(zone, is_open, self.now)
        self.drain()
        if is_open and not s[0]:
            s[0], s[1] = True, False
        elif not is_open and s[0]:
            s[0] = False
        self.evaluate()

    @rule(on=st.booleans())
    def antenna(self, on):
        self.v.antenna_input(on, self.now)
        self.drain()

    @rule(on=st.booleans())
    def ignition(self, on):
        self.v.ignition_input(on, self.now, 0, 9)
        self.drain()

    # -- invariants --------------------------------------------------------------------------

    def per_opening(self, code, zone):
        """Alarms raised for the current (or last) opening of `zone`."""
        n = 0
        for q, c, z in self.events:
            if c == code and z == zone:
                n = n + 1 if q == 1 else 0
        return n

    @invariant()
    def compartment_alarm_exactly_when_outside(self):
        for z, (is_open, violated) in self.comp.items():
            if is_open:
                assert self.per_opening(cid.COMPARTMENT, z) == (1 if violated else 0), z

    @invariant()
    def door_alarm_exactly_when_fast(self):
        for z, (is_open, violated) in self.doors.items():
            if is_open:
                assert self.per_opening(cid.VEHICLE_DOOR, z) == (1 if violated else 0), z

    @invariant()
    def new_and_restore_alternate(self):
        state = {}
        for q, c, z in self.events:
            key = (c, z)
            if q == 1:
                assert not state.get(key), ("raised twice", key, self.events)
                state[key] = True
            else:
                assert state.get(key), ("restore without a new event", key, self.events)
                state[key] = False

    @invariant()
    def route_state_matches(self):
        assert (self.v.cond[V.R_CORRIDOR] == V.C_RAISED) == self.off_route


TestVehicleWalk = VehicleWalk.TestCase
TestVehicleWalk.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# --- under the MicroPython VM -----------------------------------------------------------------------

DRIVER = r'''
import sys
import json
import gc
import nmea
import vehicle as V


CFG = None


def run(c):
    global CFG
    if "cfg" in c:
        CFG = c["cfg"]  # sent with the first case only: a 64 KiB heap
    v = V.Vehicle(CFG, 0)
    p = V.ReportPolicy(CFG["report"], CFG["moving_kmh"])
    out = []
    f = nmea.Fix()
    for op in c["ops"]:
        k = op[0]
        now = op[1]
        if k == "fix":
            f.valid = op[2]
            f.lat = op[3]
            f.lon = op[4]
            f.speed = op[5]
            f.hdop = 9
            v.fix(f, now)
            r = p.due(now, op[2], op[3], op[4], op[5], 0, v.alarm_active())
            if r:
                p.sent(now, op[2], op[3], op[4], op[5], 0)
                out.append(["point", r])
        elif k == "tick":
            v.tick(now)
        elif k == "comp":
            v.compartment(op[2], op[3], now)
        elif k == "door":
            v.door(op[2], op[3], now)
        elif k == "ant":
            v.antenna_input(op[2], now)
        for e in v.out:
            out.append([e[0], e[1], e[3]])
        v.out.clear()
    return out


while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        res = {"events": run(json.loads(line))}
    except Exception as e:
        res = {"crash": "%s: %s" % (type(e).__name__, e)}
    print(json.dumps(res))
    gc.collect()
'''


def random_ops(rng):
    ops, now, n, e = [], 0, 0.0, 0.0
    for _ in range(60):
        now += rng.randint(100, 20_000)
        k = rng.random()
        if k < 0.6:
            n = min(1500.0, max(-300.0, n + rng.uniform(-200, 200)))
            e = min(1500.0, max(-300.0, e + rng.uniform(-200, 200)))
            p = at(n, e)
            ops.append(["fix", now, rng.random() < 0.9, p[0], p[1], rng.randint(0, 800)])
        elif k < 0.7:
            ops.append(["tick", now])
        elif k < 0.85:
            ops.append(["comp", now, rng.randint(1, 2), rng.random() < 0.5])
        elif k < 0.95:
            ops.append(["door", now, 4, rng.random() < 0.5])
        else:
            ops.append(["ant", now, rng.random() < 0.5])
    return ops


def run_host(cfg, ops):
    """The driver's loop, under CPython (same code path)."""
    ns = {}
    src = DRIVER.split("\nwhile True:")[0]
    exec(compile(src, "driver", "exec"), {"V": V, "nmea": nmea, "__name__": "d"}, ns)
    return ns["run"]({"cfg": cfg, "ops": ops})  # noqa


def jsonable(cfg):
    return json.loads(json.dumps(cfg))


@pytest.mark.micropython
@pytest.mark.skipif(not mpy_runner.available(), reason="micropython VM not installed")
def test_vehicle_under_micropython_96k_equals_cpython(tmp_path):
    """nmea + geo + vehicle (26 KB of heap on the 64-bit unix port) and the
    JSON test harness in a 96 KiB heap, from mpy-cross'd modules."""
    cfg = jsonable(section())
    rng = random.Random(19)
    cases = [{"ops": random_ops(rng)} for _ in range(40)]
    cases[0]["cfg"] = cfg
    d = tmp_path / "dev"
    d.mkdir()
    for m in ("fwutil", "cid", "geo", "nmea", "vehicle"):  # not vehicle_config: the host's
        shutil.copy(DEVICE_DIR + "/%s.py" % m, d / ("%s.py" % m))
    out = mpy_runner.run_driver(DRIVER, cases, heapsize="96k", precompiled=True,
                                extra_path=[d])
    raised = 0
    for c, got in zip(cases, out):
        assert "crash" not in got, got
        want = run_host(copy.deepcopy(cfg), c["ops"])
        assert got["events"] == want
        raised += sum(1 for e in want if e[0] == 1)
    assert raised > 40  # the sequences raised alarms, not only track points


# --- docs/mobile.md's example, driven along examples/route_city.gpx ------------------------------

def docs_example():
    import re
    text = open(REPO + "/docs/mobile.md", encoding="utf-8").read()
    block = re.search(r'```json\n("vehicle": \{.*?\n\})\n```', text, re.S).group(1)
    return json.loads("{" + block + "}")["vehicle"]


def test_docs_example_config_validates():
    cfg, errors = VC.validate(docs_example())
    assert errors == []
    assert len(cfg["allowed_zones"]) == 2 and len(cfg["corridor"]["line"]) == 5


def drive_route(section_doc, stops=(), losses=()):
    """examples/route_city.gpx through gpsreplay -> nmea -> Vehicle and the
    report policy; -> (events, track point reasons, vehicle, last time)."""
    cfg, errors = VC.validate(section_doc)
    assert errors == []
    v = V.Vehicle(cfg, 0)
    policy = V.ReportPolicy(cfg["report"], cfg["moving_kmh"])
    reader = nmea.NmeaReader()
    rp = G.Replay(G.load(REPO + "/examples/route_city.gpx"), stops, losses)
    events, points = [], []
    for e in rp.epochs():
        now = int(e.t_s * 1000)
        got = reader.feed("".join(s + "\r\n" for s in e.sentences).encode())
        if got & nmea.GOT_RMC:
            f = reader.fix
            v.fix(f, now)
            r = policy.due(now, f.valid, f.lat, f.lon, f.speed, f.course, v.alarm_active())
            if r:
                policy.sent(now, f.valid, f.lat, f.lon, f.speed, f.course)
                points.append(V.REASONS[r])
        v.tick(now)
        events += [(q, code, zone) for q, code, _p, zone, _t in v.out]
        v.out.clear()
    return events, points, v, now


def test_sample_route_on_plan_raises_nothing_and_reports_track_points():
    events, points, v, now = drive_route(docs_example())
    assert events == []
    v.compartment(7, True, now + 1000)  # at the bank: allowed
    assert v.out == []
    assert points[0] == "first" and "stop" in points and "start" in points
    assert 8 <= len(points) <= 20  # 1.9 km, 293 s: every 200 m or 30 s, turns, the red light


def test_sample_route_with_a_long_stop_a_fix_loss_and_a_detour():
    doc = docs_example()
    doc["stop_max_s"] = 60
    events, _, _, _ = drive_route(doc, stops=[G.Stop(30, 90)])
    assert events == [(1, cid.STOPPED_TOO_LONG, 0), (3, cid.STOPPED_TOO_LONG, 0)]
    events, _, _, _ = drive_route(docs_example(), losses=[G.Loss(100, 60)])
    assert events == [(1, cid.GPS_TROUBLE, 0), (3, cid.GPS_TROUBLE, 0)]
    doc = docs_example()
    doc["corridor"]["line"] = doc["corridor"]["line"][:3]  # the plan ended at the 3rd corner
    events, _, _, _ = drive_route(doc)
    assert events[0] == (1, cid.ROUTE_EXIT, 0) and len(events) == 2  # back in at the bank
    assert events[1] == (3, cid.ROUTE_EXIT, 0)

