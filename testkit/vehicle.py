"""A protocol-level vehicle unit for tests, the demo and the benchmark: a
GPX route replayed by the simulator's GPS (firmware.gpsreplay), its fixes
judged by the firmware's own report policy (vehicle.ReportPolicy: a point
every 30 s or 200 m, at turns, starts and stops, every 5 s in an alarm),
each point a real POSITION message (protocol.lean.glwire) for
testkit.session_panel.SessionPanel to deliver.

    drive = RouteDrive("examples/route_city.gpx", start=time.time() - 130, until_s=130)
    for seq, (t, msg) in enumerate(drive.messages(), 1):
        await panel.deliver(seq, msg)

It stands in for the vehicle unit where the firmware under the MicroPython
VM is not wanted (a browser test, a benchmark of the receiver alone); the
unit itself is docs/mobile.md's.
"""

from __future__ import annotations

from firmware import gpsreplay
from protocol.lean import glwire as w
from receiver.vehicles.fw import vehicle, vehicle_config


def position_record(lat: float, lon: float, speed_kmh: float = 0.0, course: float = 0.0,
                    fix_time: float = 0, valid: bool = True, ignition: bool = True,
                    alarm: bool = False, moving_kmh: float = 5.0) -> dict:
    """The native position record (glwire's dict) of a fix."""
    flags = ((w.POS_VALID if valid else 0) | (w.POS_MOVING if speed_kmh >= moving_kmh else 0)
             | (w.POS_IGNITION if ignition else 0) | (w.POS_ALARM if alarm else 0))
    return {"lat": round(lat * 1e6), "lon": round(lon * 1e6),
            "speed": min(0xFFFF, round(speed_kmh * 10)), "course": round(course * 10) % 3600,
            "quality": 1 if valid else 0, "sats": 9 if valid else 0, "hdop": 9,
            "fix_time": int(fix_time), "flags": flags}


def position_msg(record: dict, reason: int = 2) -> dict:
    """A POSITION message carrying ``record``, sent for ``reason``."""
    return {"type": w.MSG_POSITION, "reason": reason, "position": record}


def event_msg_at(code: int, zone: int, record: dict | None, partition: int = 1,
                 qualifier: int = 1, event_time: float = 0) -> dict:
    """An EVENT carrying the unit's position (v1.1 ext bit 2)."""
    m = {"type": w.MSG_EVENT, "qualifier": qualifier, "code": code, "partition": partition,
         "zone": zone, "event_time": int(event_time), "text": None, "value": None}
    if record is not None:
        m["position"] = record
    return m


class RouteDrive:
    """The track points a unit sends driving ``gpx`` from ``start`` (Unix
    seconds of route time 0) up to ``until_s`` of route time (stops
    included), with ``stops`` (gpsreplay.Stop) on the way."""

    def __init__(self, gpx: str, start: float, until_s: float | None = None, stops=(),
                 report: dict | None = None, alarm_from_s: float | None = None,
                 from_s: float = 0.0, speedup: float = 1.0):
        """``from_s``: the route time the drive starts at; ``speedup``: route
        seconds per second of the fixes' clock (a demo's shorter drive:
        the fix times run ``speedup`` times slower than the route)."""
        if speedup <= 0:
            raise ValueError("speedup must be above 0")
        self.replay = gpsreplay.Replay(gpsreplay.load(gpx), stops=stops)
        self.start = start
        self.from_s = from_s
        self.speedup = speedup
        self.until_s = self.replay.duration_s if until_s is None else until_s
        section, errors = vehicle_config.validate({"report": report or {}})
        if errors:
            raise ValueError("; ".join(errors))
        self.section = section
        self.alarm_from_s = alarm_from_s  # faster reports from this route time on

    def clock(self, t: float) -> float:
        """The fix time (Unix seconds) of route time ``t``."""
        return self.start + (t - self.from_s) / self.speedup

    def fix_at(self, t: float, alarm: bool = False) -> dict:
        """The position record of the unit at route time ``t``."""
        lat, lon, speed, course = self.replay.position(t)
        return position_record(lat, lon, speed, course, self.clock(t), alarm=alarm,
                               moving_kmh=self.section["moving_kmh"])

    def messages(self):
        """(route time, POSITION message) for each point the report policy
        sends, one fix per second of route time as the unit judges them."""
        s = self.section
        policy = vehicle.ReportPolicy(s["report"], s["moving_kmh"])
        t = self.from_s
        while t <= self.until_s:
            lat, lon, speed, course = self.replay.position(t)
            alarm = self.alarm_from_s is not None and t >= self.alarm_from_s
            la, lo, sp, co = round(lat * 1e6), round(lon * 1e6), round(speed * 10), \
                round(course * 10) % 3600
            why = policy.due(t * 1000, True, la, lo, sp, co, alarm)
            if why:
                policy.sent(t * 1000, True, la, lo, sp, co)
                yield t, position_msg(position_record(
                    lat, lon, speed, course, self.clock(t), alarm=alarm,
                    moving_kmh=s["moving_kmh"]), why)
            t += 1
