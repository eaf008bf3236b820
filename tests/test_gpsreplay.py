"""GPX route replay (firmware/gpsreplay.py): every sentence it prints is
valid NMEA by pynmea2 and by the firmware's own parser, the positions
follow the route, stops stand still, fix losses say "no fix" (or nothing),
and the schedule runs at real or accelerated speed."""

import datetime as dt
import sys
from pathlib import Path

import pynmea2
import pytest

from firmware import DEVICE_DIR, REPO
from firmware import gpsreplay as G

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import nmea  # noqa: E402

SAMPLE = Path(REPO) / "examples" / "route_city.gpx"


def gpx(tmp_path, body, name="r.gpx"):
    p = tmp_path / name
    p.write_text('<?xml version="1.0"?>\n<gpx version="1.1" creator="t" '
                 'xmlns="http://www.topografix.com/GPX/1/1">%s</gpx>\n' % body)
    return str(p)


def test_sample_route_loads():
    r = G.load(str(SAMPLE))
    assert len(r.points) == 9 and r.start == dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.timezone.utc)
    assert r.duration_s == 293 and 1800 < r.length_m < 1900


def test_every_sentence_is_valid_for_pynmea2_and_our_parser():
    rp = G.Replay(G.load(str(SAMPLE)), [G.Stop(100, 30)], [G.Loss(200, 15)])
    reader = nmea.NmeaReader()
    n = 0
    for e in rp.epochs():
        for s in e.sentences:
            msg = pynmea2.NMEASentence.parse(s, check=True)  # raises on a bad checksum
            n += 1
            if msg.sentence_type in ("GGA", "RMC") and e.valid:
                assert abs(msg.latitude - e.lat) < 2e-7 and abs(msg.longitude - e.lon) < 2e-7
            if msg.sentence_type == "RMC":
                assert msg.is_valid == e.valid
                assert msg.datestamp == e.utc.date()
        reader.feed("".join(s + "\r\n" for s in e.sentences).encode())
        f = reader.fix
        assert f.valid == e.valid
        if e.valid:
            assert abs(f.lat - e.lat * 1e6) <= 1 and abs(f.lon - e.lon * 1e6) <= 1
            assert abs(f.speed - e.speed_kmh * 10) <= 1
    assert reader.ok == n and reader.bad_checksum == reader.bad_format == reader.bad_field == 0
    assert n == 3 * (int(rp.duration_s) + 1)


def test_positions_follow_the_route_and_timestamps():
    r = G.load(str(SAMPLE))
    rp = G.Replay(r)
    for t, p in zip(r.times, r.points):
        lat, lon, _, _ = rp.position(t)
        assert abs(lat - p[0]) < 1e-9 and abs(lon - p[1]) < 1e-9
    # the GPX's own pause (a red light, 40 s at the 4th point) stands still
    i = r.times.index(110.0)
    assert r.times[i + 1] == 150.0
    assert rp.position(130)[2] == 0.0
    # first leg: 270 m east in 49 s, course 90
    lat, lon, speed, course = rp.position(10)
    assert 19 < speed < 21 and abs(course - 90) < 0.1


def test_stop_holds_position_and_shifts_the_rest():
    r = G.load(str(SAMPLE))
    plain = G.Replay(r)
    rp = G.Replay(r, [G.Stop(20, 60)])
    assert rp.duration_s == r.duration_s + 60
    at_stop = plain.position(20)
    for t in (20, 50, 79.9):
        lat, lon, speed, _ = rp.position(t)
        assert (lat, lon) == at_stop[:2] and speed == 0
    assert rp.position(80 + 33)[:2] == plain.position(20 + 33)[:2]


def test_fix_loss_no_fix_or_silent():
    r = G.load(str(SAMPLE))
    rp = G.Replay(r, losses=[G.Loss(30, 10), G.Loss(60, 5, silent=True)])
    by_t = {e.t_s: e for e in rp.epochs()}
    assert all(not by_t[t].valid for t in range(30, 40)) and by_t[40].valid
    gga = pynmea2.NMEASentence.parse(by_t[35].sentences[0], check=True)
    assert gga.gps_qual == 0 and gga.latitude == 0.0
    assert all(by_t[t].sentences == () for t in range(60, 65))
    reader = nmea.NmeaReader()
    reader.feed("".join(s + "\r\n" for s in by_t[35].sentences).encode())
    assert reader.ok == 3 and not reader.fix.valid


def test_route_without_times_uses_the_speed(tmp_path):
    path = gpx(tmp_path, '<rte><rtept lat="52.0" lon="4.0"/><rtept lat="52.009" lon="4.0"/></rte>')
    r = G.load(path, speed_kmh=36)
    assert r.start is None and abs(r.duration_s - r.length_m / 10) < 1e-9  # 10 m/s
    lat, lon, speed, course = G.Replay(r).position(10)
    assert abs(speed - 36) < 1e-9 and abs(course) < 1e-6


def test_schedule_real_and_accelerated():
    rp = G.Replay(G.load(str(SAMPLE)))
    real = [o for o, _ in rp.schedule()]
    fast = [o for o, _ in rp.schedule(10)]
    assert real[:3] == [0.0, 1.0, 2.0] and fast[:3] == [0.0, 0.1, 0.2]
    # the edge: sleeps until each offset (a fake clock, no real waiting)
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(round(s, 6))
        now[0] += s

    out = []
    G.run(rp, out.append, speedup=10, clock=lambda: now[0], sleep=sleep)
    assert len(out) == len(real) and slept[:2] == [0.1, 0.1] and abs(now[0] - 29.3) < 1e-6


@pytest.mark.parametrize("body, msg", [
    ("", "a route needs at least 2 points"),
    ('<trk><trkseg><trkpt lat="52" lon="4"><time>2026-01-05T08:00:10Z</time></trkpt>'
     '<trkpt lat="52.1" lon="4"><time>2026-01-05T08:00:00Z</time></trkpt></trkseg></trk>',
     "point 2 is earlier than point 1"),
])
def test_bad_routes_get_clear_errors(tmp_path, body, msg):
    with pytest.raises(G.RouteError, match=msg):
        G.load(gpx(tmp_path, body))


def test_cli_mistakes(tmp_path, capsys):
    assert G.main([str(tmp_path / "missing.gpx")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "x.gpx").write_text("{not xml")
    assert G.main([str(tmp_path / "x.gpx")]) == 2
    assert "not a GPX file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        G.main([str(SAMPLE), "--stop", "12"])
    assert "expected AT:DURATION" in capsys.readouterr().err
    out = tmp_path / "out.nmea"
    assert G.main([str(SAMPLE), "--at-once", "--lose", "10:5", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 3 * 294
    assert all(pynmea2.NMEASentence.parse(s, check=True) for s in lines)
