"""The vehicle unit inside the panel (firmware/device/vunit.py, panel.py's
vehicle zones, config.py's kinds "vehicle" and "patrol"), under CPython
with time driven by the test: the inputs, the rules' events in the
panel's queue with the position at the time of the event (app.App.drain
into the real queue file), track points, the alarm rate, patrol status."""

import datetime as dt
import json
import os
import sys
from types import SimpleNamespace

import pytest

from firmware import DEVICE_DIR, REPO, cli
from firmware import gpsreplay as G
from firmware.device import config as C
from protocol import contactid
from protocol.lean import glwire as w

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import app as APP  # noqa: E402
import clock  # noqa: E402
import eol  # noqa: E402
import panel as P  # noqa: E402
import pqueue  # noqa: E402
import vehicle as V  # noqa: E402
import vunit  # noqa: E402

EXAMPLES = os.path.join(REPO, "examples")
UTC0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.timezone.utc)  # a Monday, 09:00 local
DEPOT = (52.3680, 4.8820)
OFF_ROUTE = (52.3705, 4.8900)  # east of the planned turn: outside corridor and zones
# zone ids in examples/van.json
COMPARTMENT, SAFE, DRIVER, PASSENGER, REAR, HOLDUP, IGNITION, ANTENNA, TILT, TAMPER = range(1, 11)


def van(**over):
    with open(os.path.join(EXAMPLES, "van.json")) as f:
        doc = json.load(f)
    for k, v in over.items():
        doc[k] = v
    return doc


def make(doc=None):
    cfg, errors = C.validate(doc or van())
    assert errors == []
    return P.Panel(cfg, 0)


def nmea(t_s, lat, lon, speed_kmh=0.0, valid=True):
    """One epoch's GGA + RMC + VTG, t_s seconds after UTC0."""
    return "".join(s + "\r\n" for s in G.sentences(UTC0 + dt.timedelta(seconds=t_s), lat, lon,
                                                   speed_kmh, 90.0, valid)).encode()


def feed(p, now_ms, lat, lon, speed_kmh=0.0, valid=True):
    data = nmea(now_ms / 1000, lat, lon, speed_kmh, valid)
    p.unit.gps(data, len(data), now_ms)


def take(p):
    out = [(q, c, part, z) for q, c, part, z, _t in p.out]
    p.out.clear()
    return out


def zone(p, zid, st, now_ms):
    p.zone_change(p.zid.index(zid), st, now_ms)


# -- config -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,kind,zones", [("van", "vehicle", 10), ("patrol", "patrol", 6)])
def test_examples_are_valid(name, kind, zones):
    cfg, errors, _ = C.load(os.path.join(EXAMPLES, name + ".json"))
    assert errors == []
    assert cfg["kind"] == kind and len(cfg["zones"]) == zones
    assert cfg["vehicle"]["report"]["alarm_s"] == 5
    assert P.Panel(cfg, 0).kind == (w.KIND_VEHICLE if kind == "vehicle" else w.KIND_PATROL)


def test_config_mistakes_are_named_by_their_field():
    def errors(doc):
        return C.validate(doc)[1]

    doc = van()
    del doc["vehicle"]
    assert errors(doc) == ['vehicle: missing (a vehicle unit needs its "vehicle" section: '
                           'docs/mobile.md)']
    doc = van()
    doc["vehicle"]["corridor"]["width_m"] = 5
    doc["vehicle"]["allowed_zones"][0]["center"] = [52.368, 104.882]
    errs = errors(doc)
    assert "vehicle.corridor.width_m: 5 is out of range 20..10000" in errs
    assert any(e.startswith("vehicle.allowed_zones[0].center: [52.368, 104.882] is not "
                            "[longitude, latitude]") for e in errs)
    doc = van()
    doc["vehicle"]["partition"] = 2
    assert errors(doc) == ["vehicle.partition: 2 is not a configured partition id"]
    doc = van()
    doc["zones"][7]["type"] = "ignition"  # the antenna zone: now two ignitions
    assert errors(doc) == ["zones: a vehicle unit has at most one zone of type 'ignition', "
                           "found 2"]
    doc = van(kind="bank")
    errs = errors(doc)
    assert 'zones[0].type: \'compartment\' is only for a vehicle unit (kind "vehicle" or ' \
        '"patrol")' in errs
    assert 'vehicle: only for a vehicle unit (kind "vehicle" or "patrol")' in errs
    assert errors(van(kind="patrol")) == []


def test_guardline_panel_check_points_at_the_vehicle_line(tmp_path, capsys):
    doc = van()
    doc["vehicle"]["report"]["every_s"] = 10
    p = tmp_path / "van.json"
    p.write_text(json.dumps(doc, indent=1))
    assert cli.main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert "vehicle.report.every_s: unknown field" in err
    assert '"every_s": 10' in err  # the offending line is quoted
    assert cli.main(["check", os.path.join(EXAMPLES, "van.json")]) == 0
    assert "vehicle panel" in capsys.readouterr().out


def test_config_has_one_home_for_type_names():
    # by name: a test that imports the device modules from a bundle makes a
    # second module object of the same file
    assert "cfgutil.Errors" in ["%s.%s" % (b.__module__, b.__name__) for b in C._V.__mro__]
    assert C.validate({"account": "x"})[1][0].endswith("expected an integer, got string")


# -- inputs and rules ---------------------------------------------------------------------

def test_compartment_opened_without_a_position_is_an_alarm_with_its_zone():
    p = make()
    zone(p, COMPARTMENT, eol.ALARM, 100)
    assert take(p) == [(1, 133, 1, COMPARTMENT)]
    zone(p, COMPARTMENT, eol.NORMAL, 200)
    assert take(p) == [(3, 133, 1, COMPARTMENT)]


def test_compartment_in_the_depot_is_quiet_and_outside_is_an_alarm():
    p = make()
    feed(p, 1000, *DEPOT)
    zone(p, SAFE, eol.ALARM, 1100)
    assert take(p) == []
    zone(p, SAFE, eol.NORMAL, 1200)
    feed(p, 2000, *OFF_ROUTE, speed_kmh=30)
    zone(p, SAFE, eol.TAMPER, 2100)  # a cut loop: sabotage, and open (fail-safe)
    assert take(p) == [(1, 144, 1, SAFE), (1, 133, 1, SAFE)]


def test_doors_open_while_moving_and_armed_entry():
    p = make()
    feed(p, 1000, *OFF_ROUTE, speed_kmh=40)
    zone(p, REAR, eol.ALARM, 1100)
    assert take(p) == [(1, 172, 1, REAR)]
    zone(p, REAR, eol.NORMAL, 1200)
    assert take(p) == [(3, 172, 1, REAR)]
    # parked and armed: a door is the entry/exit door of the van
    feed(p, 2000, *DEPOT)
    assert p.keypad("1234", P.K_ARM_AWAY, 1, 0, 2000) == P.R_OK
    p.tick(2000 + 31000)
    take(p)
    zone(p, DRIVER, eol.ALARM, 40000)
    assert p.parts[0].state == P.A.ENTRY
    assert take(p) == []


def test_holdup_is_silent_tilt_is_174_and_silent_duress_is_121():
    p = make()
    zone(p, HOLDUP, eol.ALARM, 100)
    zone(p, TILT, eol.ALARM, 200)
    p.tick(300)
    assert take(p) == [(1, 122, 1, HOLDUP), (1, 174, 1, TILT)]
    assert not p.siren and not p.strobe
    assert contactid.event_class(174) == "burglary" and contactid.CODES[174]
    assert p.keypad("1235", P.K_DISARM, 1, 0, 400) == P.R_OK
    assert take(p)[0] == (1, 121, 1, 9)


def test_jamming_is_344_and_ignition_sets_the_position_flag():
    p = make()
    feed(p, 1000, *OFF_ROUTE, speed_kmh=40)
    zone(p, IGNITION, eol.ALARM, 1100)
    assert p.position(1100)[8] == w.POS_VALID | w.POS_MOVING | w.POS_IGNITION
    zone(p, ANTENNA, eol.ALARM, 1200)
    feed(p, 2000, *OFF_ROUTE, valid=False)
    assert (1, 344, 1, 0) in take(p)
    pos = p.position(2000)
    assert pos[8] & w.POS_VALID == 0  # the last known position, not a fix
    assert (pos[0], pos[1]) == (52_370_500, 4_890_000)


def test_vehicle_inputs_cannot_be_bypassed_and_walk_test_raises_no_vehicle_alarm():
    p = make()
    for z in (COMPARTMENT, IGNITION, ANTENNA):
        assert p.keypad("1234", P.K_BYPASS, 1, z, 100) == P.R_REFUSED
    assert p.keypad("1234", P.K_BYPASS, 1, REAR, 100) == P.R_OK
    take(p)
    assert p.keypad("1234", P.K_WALK_START, 1, 0, 200) == P.R_OK
    take(p)
    zone(p, COMPARTMENT, eol.ALARM, 300)
    assert take(p) == [(1, 613, 1, COMPARTMENT)]  # walk tested, no 133


def test_patrol_status_from_the_keypad():
    doc = van(kind="patrol")
    p = make(doc)
    assert p.keypad("2580", P.K_AVAILABLE + 1, 1, 0, 100) == P.R_OK  # dispatched
    assert p.keypad("2580", P.K_AVAILABLE + 2, 1, 0, 200) == P.R_OK  # on scene
    assert take(p) == [(1, 471, 1, 2), (1, 472, 1, 2)]
    assert p.status(False)["vehicle"]["patrol"] == "on scene"
    assert contactid.number_label(471, 2) == "user 2"
    assert contactid.CODES[470] == "Patrol available"
    assert make().keypad("2580", P.K_AVAILABLE, 1, 0, 100) == P.R_UNSUPPORTED  # a van
    assert P.ACTIONS[P.K_AVAILABLE:] == ("available", "dispatched", "on_scene")


# -- positions: on events, track points, the alarm rate --------------------------------

class Rig:
    """The van's panel and its real queue file glued by app.App.drain."""

    def __init__(self, tmp_path):
        self.q = pqueue.PersistentQueue(str(tmp_path / "queue.dat"), 16)
        import seqstore
        self.app = SimpleNamespace(panel=make(), queue=self.q, clock=clock.Clock(), lost=0,
                                   seqs=seqstore.SeqStore(str(tmp_path / "seq.dat"), 1))

    def drain(self, now_ms):
        APP.App.drain(self.app, now_ms)

    def queued(self):
        return [self.q.read(self.q.find(s)) for s in self.q.seqs()]


def test_every_event_is_queued_with_the_position_at_its_time(tmp_path):
    r = Rig(tmp_path)
    p = r.app.panel
    zone(p, HOLDUP, eol.ALARM, 100)  # before any fix: no position to give
    r.drain(100)
    feed(p, 1000, *OFF_ROUTE, speed_kmh=36)
    zone(p, COMPARTMENT, eol.ALARM, 1100)
    r.drain(1100)
    feed(p, 2000, 52.3710, 4.8900, speed_kmh=36)
    zone(p, COMPARTMENT, eol.NORMAL, 2100)
    r.drain(2100)
    got = [(m["code"], m["qualifier"], m["position"]) for m in r.queued()]
    assert got[0] == (122, 1, None)
    assert got[1][:2] == (133, 1)
    assert got[1][2] == {"lat": 52_370_500, "lon": 4_890_000, "speed": 360, "course": 900,
                         "quality": 1, "sats": 9, "hdop": 9,
                         "fix_time": int(UTC0.timestamp()) + 1,
                         "flags": w.POS_VALID | w.POS_MOVING | w.POS_ALARM}
    assert got[2][:2] == (133, 3) and got[2][2]["lat"] == 52_371_000


def drive(p, t0, n, lat, lon, dlon=0.0, speed_kmh=0.0):
    """n one-second epochs from t0 (ms); the track points they made."""
    pts = []
    for k in range(n):
        feed(p, t0 + 1000 * k, lat, lon + k * dlon, speed_kmh)
        pts += p.unit.points
        p.unit.points.clear()
    take(p)
    return pts


BANK = (52.3750, 4.8980)  # inside the bank's polygon: an allowed zone


def test_track_points_by_the_policy_and_faster_after_a_holdup():
    p = make()
    # a minute east along the planned street at 36 km/h (10 m/s): a point
    # first, then one every 200 m (moving_m)
    pts = drive(p, 1000, 60, 52.3730, 4.8860, 0.000147, 36)
    assert [why for why, _ in pts] == [V.P_FIRST, V.P_DISTANCE, V.P_DISTANCE]
    assert all(pos[8] == w.POS_VALID | w.POS_MOVING for _why, pos in pts)
    # parked at the bank: a point as it stops, then only the heartbeat
    assert [why for why, _ in drive(p, 61_000, 60, *BANK)] == [V.P_STOP]
    # a hold-up: a point every alarm_s (5 s), marked alarm
    zone(p, HOLDUP, eol.ALARM, 121_500)
    pts = drive(p, 122_000, 20, *BANK)
    assert [why for why, _ in pts] == [V.P_ALARM] * 4
    assert all(pos[8] & w.POS_ALARM for _why, pos in pts)
    # after_alarm_s (600 s) after the unit saw it: the heartbeat again (parked_s 900)
    assert drive(p, 122_000 + 600_000, 20, *BANK) == []
    assert [why for why, _ in drive(p, 122_000 + 600_000 + 20_000, 300, *BANK)] == \
        [V.P_HEARTBEAT]


def test_unit_position_fits_the_wire_record():
    doc = van()
    doc["vehicle"]["max_hdop"] = 50  # HDOP 40: a fix, above the record's 25.5
    p = make(doc)
    assert p.position(0) is None
    f = SimpleNamespace(valid=True, lat=-89_999_999, lon=179_999_999, speed=99999, course=3599,
                        quality=8, sats=99, hdop=400, day=20_000, ms=86_399_999)
    p.unit.rules.fix(f, 10)
    pos = p.position(10)
    d = pqueue.read_pos(_packed(pos), 0)
    assert w._position(d)  # encodes: every field in range
    assert d["speed"] == 0xFFFF and d["hdop"] == 255 and d["fix_time"] == 20_000 * 86400 + 86399


def _packed(pos):
    b = bytearray(pqueue.POS_LEN)
    pqueue.pack_pos(b, 0, pos)
    return b


def test_wire_values_repeated_in_the_unit_are_glwires():
    for n in ("POS_VALID", "POS_MOVING", "POS_IGNITION", "POS_ALARM"):
        assert getattr(vunit, n) == getattr(w, n), n
    assert [P.ZONE_TYPES[P.Z_COMPARTMENT + k] for k in (vunit.IN_COMPARTMENT, vunit.IN_DOOR,
                                                        vunit.IN_IGNITION, vunit.IN_ANTENNA)] \
        == ["compartment", "vehicle_door", "ignition", "antenna"]
    assert C.VEHICLE_ZONES == P.ZONE_TYPES[P.Z_COMPARTMENT:]


def test_walk_test_knows_what_every_zone_type_reports_in_walk_test_mode():
    from firmware import walktest
    for k, t in enumerate(P.ZONE_TYPES):
        assert walktest.WALK_EXPECTED[t] == (P.WALK_CODE[k],), t


@pytest.mark.parametrize("kind", ["vehicle", "patrol"])
def test_new_config_for_a_vehicle_kind_starts_from_its_example(kind):
    from firmware import provision
    doc = provision.base_config(kind)
    assert doc["kind"] == kind and "vehicle" in doc


def test_a_vehicle_alarm_ends_the_abort_window_and_goes_after_what_it_held():
    """Parked and armed, the driver's door starts the entry delay, then
    the abort window holds its alarm (CP-01); the cash compartment opens:
    a 133 is never held, and the held door alarm goes out first."""
    p = make()
    assert p.keypad("1234", P.K_ARM_AWAY, 1, 0, 0) == P.R_OK
    p.tick(31_000)  # exit delay over: armed away
    take(p)
    zone(p, DRIVER, eol.ALARM, 40_000)
    p.tick(56_000)  # entry delay (15 s) over: alarm, held in the abort window
    assert p.parts[0].state == P.A.ALARM_HELD and take(p) == []
    zone(p, COMPARTMENT, eol.ALARM, 57_000)
    # the door's alarm and its recent closing (held with it), then the 133
    assert take(p) == [(1, 134, 1, DRIVER), (1, 459, 1, 1), (1, 133, 1, COMPARTMENT)]
    assert p.parts[0].state == P.A.ALARM
