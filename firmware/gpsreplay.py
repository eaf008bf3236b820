"""Replay a GPX route as NMEA 0183 sentences: the simulated board's GPS.

The sim board (and anyone testing a vehicle unit on the bench) needs a GPS
receiver that drives a route: this module reads a GPX file with gpxpy,
interpolates the position along it once per second of route time, and
renders each epoch as the GGA, RMC and VTG sentences a receiver prints
(checksums included; tests/test_gpsreplay.py checks every one with
pynmea2 and with the firmware's own parser).

- Time: a GPX track with timestamps is replayed at its own pace; without
  them (a planned route) at a constant speed.  `speedup` replays faster
  than real time (10 = ten route seconds per wall second).
- Stops: `Stop(at_s, duration_s)` holds the position (speed 0) for a while
  at that route time; a track whose timestamps pause stops by itself.
- Fix loss: `Loss(at_s, duration_s, silent=False)` makes the receiver
  report "no fix" (GGA quality 0, RMC status V, VTG mode N) for that time,
  as a jammed or shielded receiver does, or (silent) print nothing at all,
  as a dead or disconnected one.

Sans-I/O core: `Replay.epochs()` yields `Epoch`s (route time, position,
sentences); `Replay.schedule()` pairs them with wall-clock offsets; `run()`
is the thin edge that sleeps and writes to a file, a pty or a pyserial
URL.  The command line:

    python -m firmware.gpsreplay examples/route_city.gpx --speedup 10 \\
        --stop 120:90 --lose 300:45 [--out socket://127.0.0.1:7800]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass

import gpxpy
import gpxpy.gpx

_LOGGER = logging.getLogger(__name__)

R_M = 6371008.8  # the firmware's sphere (geo.R_M)
KNOT_KMH = 1.852
DEFAULT_SPEED_KMH = 40.0  # a route without timestamps: city traffic


class RouteError(ValueError):
    """The GPX file cannot be replayed: unreadable, not GPX, no points,
    timestamps that go backwards.  The message says which and where."""


@dataclass(frozen=True)
class Stop:
    at_s: float  # route time (the GPX's own, stops not counted) of the stop
    duration_s: float


@dataclass(frozen=True)
class Loss:
    at_s: float  # route time (stops included) at which the fix goes
    duration_s: float
    silent: bool = False  # print nothing, rather than "no fix" sentences


@dataclass(frozen=True)
class Epoch:
    t_s: float  # route time, stops included
    utc: dt.datetime
    lat: float
    lon: float
    speed_kmh: float
    course: float
    valid: bool
    sentences: tuple[str, ...]  # each with its checksum, no line end


# --- NMEA rendering ---------------------------------------------------------------------

def checksum(body: str) -> int:
    """XOR of the characters between '$' and '*' (NMEA 0183)."""
    c = 0
    for ch in body.encode("ascii"):
        c ^= ch
    return c


def seal(body: str) -> str:
    return "$%s*%02X" % (body, checksum(body))


def _dm(value: float, deg_digits: int) -> str:
    """Degrees -> ddmm.mmmmm / dddmm.mmmmm (5 minute decimals: 2 cm)."""
    a = abs(value)
    units = round(a * 60 * 100000)  # 1e-5 minute
    deg, rest = divmod(units, 60 * 100000)
    return "%0*d%02d.%05d" % (deg_digits, deg, rest // 100000, rest % 100000)


def sentences(utc: dt.datetime, lat: float | None, lon: float | None, speed_kmh: float,
              course: float, valid: bool, sats: int = 9, hdop: float = 0.9,
              talker: str = "GP") -> tuple[str, str, str]:
    """GGA, RMC and VTG for one epoch; `valid` False renders "no fix"."""
    t = utc.strftime("%H%M%S") + ".%02d" % (utc.microsecond // 10000)
    d = utc.strftime("%d%m%y")
    if valid and lat is not None and lon is not None:
        pos = [_dm(lat, 2), "N" if lat >= 0 else "S", _dm(lon, 3), "E" if lon >= 0 else "W"]
        gga = [t] + pos + ["1", "%02d" % sats, "%.1f" % hdop, "12.0", "M", "47.0", "M", "", ""]
        rmc = [t, "A"] + pos + ["%.2f" % (speed_kmh / KNOT_KMH), "%.1f" % course, d, "", "",
                                "A"]
        vtg = ["%.1f" % course, "T", "", "M", "%.2f" % (speed_kmh / KNOT_KMH), "N",
               "%.1f" % speed_kmh, "K", "A"]
    else:
        gga = [t, "", "", "", "", "0", "00", "99.99", "", "", "", "", "", ""]
        rmc = [t, "V", "", "", "", "", "", "", d, "", "", "N"]
        vtg = ["", "T", "", "M", "", "N", "", "K", "N"]
    return (seal(talker + "GGA," + ",".join(gga)), seal(talker + "RMC," + ",".join(rmc)),
            seal(talker + "VTG," + ",".join(vtg)))


# --- the route ------------------------------------------------------------------------------

def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dl = math.radians(b[1] - a[1])
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * R_M * math.asin(min(1.0, math.sqrt(h)))


def bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dl = math.radians(b[1] - a[1])
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


@dataclass(frozen=True)
class Route:
    """Points (lat, lon) and the route time (s) at each, from 0."""
    points: tuple[tuple[float, float], ...]
    times: tuple[float, ...]
    start: dt.datetime | None  # the GPX's first timestamp, if it had them
    name: str

    @property
    def duration_s(self) -> float:
        return self.times[-1]

    @property
    def length_m(self) -> float:
        return sum(haversine_m(a, b) for a, b in zip(self.points, self.points[1:]))


def load(path: str, speed_kmh: float = DEFAULT_SPEED_KMH) -> Route:
    """Read a GPX file: its track points (all tracks and segments, in
    order), else its route points.  Timestamps on every point are used;
    otherwise the route is driven at `speed_kmh`."""
    try:
        with open(path, encoding="utf-8") as f:
            gpx = gpxpy.parse(f)
    except OSError as e:
        raise RouteError("%s: cannot read (%s)" % (path, e.strerror or e)) from None
    except (gpxpy.gpx.GPXException, ValueError) as e:
        raise RouteError("%s: not a GPX file (%s)" % (path, e)) from None
    pts = [p for t in gpx.tracks for s in t.segments for p in s.points]
    if not pts:
        pts = [p for r in gpx.routes for p in r.points]
    if len(pts) < 2:
        raise RouteError("%s: a route needs at least 2 points (track or route points), found %d"
                         % (path, len(pts)))
    if speed_kmh <= 0:
        raise RouteError("speed must be above 0 km/h, got %s" % speed_kmh)
    points = tuple((p.latitude, p.longitude) for p in pts)
    name = (gpx.tracks[0].name if gpx.tracks else None) or \
        (gpx.routes[0].name if gpx.routes else None) or path
    stamps = [p.time for p in pts if p.time is not None]
    if len(stamps) == len(pts):  # every point has its time: the route's own pace
        t0 = stamps[0]
        times = tuple((s - t0).total_seconds() for s in stamps)
        for i in range(1, len(times)):
            if times[i] < times[i - 1]:
                raise RouteError("%s: point %d is earlier than point %d (%s < %s)"
                                 % (path, i + 1, i, stamps[i], stamps[i - 1]))
        if times[-1] <= 0:
            raise RouteError("%s: all points have the same time" % path)
        start = t0 if t0.tzinfo else t0.replace(tzinfo=dt.timezone.utc)
        return Route(points, times, start.astimezone(dt.timezone.utc), name)
    v = speed_kmh / 3.6
    times = [0.0]
    for a, b in zip(points, points[1:]):
        times.append(times[-1] + haversine_m(a, b) / v)
    return Route(points, tuple(times), None, name)


# --- the replay -----------------------------------------------------------------------------------

class Replay:
    """Epochs of a route at `rate_hz`, with stops and fix losses."""

    def __init__(self, route: Route, stops=(), losses=(), rate_hz: float = 1.0,
                 start: dt.datetime | None = None, talker: str = "GP"):
        if rate_hz <= 0 or rate_hz > 10:
            raise ValueError("rate_hz must be in (0, 10]")
        self.route = route
        self.stops = sorted(stops, key=lambda s: s.at_s)
        self.losses = list(losses)
        self.rate_hz = rate_hz
        self.start = start or route.start or dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.timezone.utc)
        self.talker = talker
        for s in self.stops:
            if s.at_s < 0 or s.duration_s <= 0:
                raise ValueError("a stop needs a time >= 0 and a duration > 0: %r" % (s,))
        for loss in self.losses:
            if loss.at_s < 0 or loss.duration_s <= 0:
                raise ValueError("a fix loss needs a time >= 0 and a duration > 0: %r" % (loss,))

    @property
    def duration_s(self) -> float:
        return self.route.duration_s + sum(s.duration_s for s in self.stops)

    def _route_time(self, t: float) -> tuple[float, bool]:
        """Replay time (stops included) -> route time, and whether stopped."""
        for s in self.stops:
            if t < s.at_s:
                break
            if t < s.at_s + s.duration_s:
                return s.at_s, True
            t -= s.duration_s
        return t, False

    def position(self, t: float) -> tuple[float, float, float, float]:
        """(lat, lon, speed km/h, course) at replay time t."""
        rt, stopped = self._route_time(t)
        times = self.route.times
        pts = self.route.points
        rt = min(max(rt, 0.0), times[-1])
        i = 0
        while i < len(times) - 2 and times[i + 1] <= rt:
            i += 1
        a, b = pts[i], pts[i + 1]
        span = times[i + 1] - times[i]
        f = 0.0 if span <= 0 else (rt - times[i]) / span
        lat = a[0] + (b[0] - a[0]) * f
        lon = a[1] + (b[1] - a[1]) * f
        d = haversine_m(a, b)
        course = bearing(a, b) if d > 0 else 0.0
        speed = 0.0 if stopped or span <= 0 or rt >= times[-1] else d / span * 3.6
        return lat, lon, speed, course

    def _lost(self, t: float) -> Loss | None:
        for loss in self.losses:
            if loss.at_s <= t < loss.at_s + loss.duration_s:
                return loss
        return None

    def epoch_at(self, t: float) -> Epoch:
        """The epoch at replay time t; past the end, the vehicle stands at
        the route's last point (a receiver goes on printing fixes)."""
        lat, lon, speed, course = self.position(t)
        utc = self.start + dt.timedelta(seconds=t)
        loss = self._lost(t)
        if loss is not None and loss.silent:
            return Epoch(t, utc, lat, lon, speed, course, False, ())
        valid = loss is None
        return Epoch(t, utc, lat, lon, speed, course, valid,
                     sentences(utc, lat, lon, speed, course, valid, talker=self.talker))

    def epochs(self):
        n = int(self.duration_s * self.rate_hz) + 1
        for k in range(n):
            yield self.epoch_at(k / self.rate_hz)

    def schedule(self, speedup: float = 1.0):
        """(wall-clock offset s, bytes to write) per epoch."""
        if speedup <= 0:
            raise ValueError("speedup must be above 0")
        for e in self.epochs():
            yield e.t_s / speedup, "".join(s + "\r\n" for s in e.sentences).encode("ascii")


def run(replay: Replay, write, speedup: float = 1.0, clock=time.monotonic,
        sleep=time.sleep) -> int:
    """Write the epochs at their wall-clock times; returns bytes written."""
    t0 = clock()
    total = 0
    for offset, data in replay.schedule(speedup):
        wait = t0 + offset - clock()
        if wait > 0:
            sleep(wait)
        if data:
            write(data)
            total += len(data)
    return total


# --- the simulated vehicle unit's receiver -------------------------------------------------------------

SPEEDUP_SENTENCE = "PGLSIM,SPEEDUP"  # from the sim: another pace ($PGLSIM,SPEEDUP,x*hh)


class Feeder:
    """Feed a replay to a simulated vehicle unit's GNSS socket (the sim
    board's --gps, firmware/device/board_sim.py) from a thread.

    - The route starts when it first connects, and it connects again when
      the sim is power cycled or restarted: the route goes on in wall time
      meanwhile (the van drove on while the unit was off), and the epochs
      of that time are lost.
    - After the route the van stands at its last point, and the receiver
      goes on printing fixes, until stop().
    - The sim can ask for another pace on the way back: the control
      protocol's ``{"cmd": "gps", "speedup": x}`` writes
      ``$PGLSIM,SPEEDUP,x*hh`` on the UART; from the current route time
      on, the replay runs at x route seconds per wall second.
    """

    def __init__(self, replay: Replay, address: str, speedup: float = 1.0,
                 clock=time.monotonic):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("GPS socket %r: expected HOST:PORT" % address)
        if speedup <= 0:
            raise ValueError("speedup must be above 0")
        self.replay = replay
        self.address = (host, int(port))
        self.speedup = speedup
        self.clock = clock
        self.epochs = 0  # written
        self.connects = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wall0 = 0.0  # wall time at route time _route0
        self._route0 = 0.0

    def route_time(self) -> float:
        """Route seconds (stops included) replayed so far."""
        with self._lock:
            return self._route0 + (self.clock() - self._wall0) * self.speedup

    def set_speedup(self, x: float) -> None:
        with self._lock:
            now = self.clock()
            self._route0 += (now - self._wall0) * self.speedup
            self._wall0 = now
            self.speedup = x
        _LOGGER.info("GPS replay at %gx from route second %.0f", x, self._route0)

    def start(self) -> "Feeder":
        self._thread = threading.Thread(target=self._run, name="gps-feeder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _connect(self) -> socket.socket | None:
        while not self._stop.is_set():
            try:
                s = socket.create_connection(self.address, timeout=2)
            except OSError:
                self._stop.wait(0.2)
                continue
            s.settimeout(2)  # a sim that reads nothing for 2 s: connect again
            if not self.connects:
                with self._lock:
                    self._wall0 = self.clock()  # the route starts now
            self.connects += 1
            return s
        return None

    def _heard(self, data: bytes) -> None:
        """Lines from the sim: a speed request (checksum verified)."""
        for line in data.decode("ascii", "replace").split("\r\n"):
            body, star, cs = line.lstrip("$").partition("*")
            if not star or not body.startswith(SPEEDUP_SENTENCE + ","):
                continue
            try:
                ok = int(cs, 16) == checksum(body)
                x = float(body.rsplit(",", 1)[1])
            except ValueError:
                continue
            if ok and x > 0:
                self.set_speedup(x)

    def _run(self) -> None:
        step = 1.0 / self.replay.rate_hz
        k = 0
        sock = None
        while not self._stop.is_set():
            if sock is None:
                sock = self._connect()
                if sock is None:
                    return
            t = k * step
            with self._lock:
                due = self._wall0 + (t - self._route0) / self.speedup
            wait = due - self.clock()
            if wait > 0:
                self._stop.wait(min(wait, 0.2))  # a new pace is noticed within 0.2 s
                try:
                    if select.select([sock], [], [], 0)[0]:
                        data = sock.recv(512)
                        if not data:
                            raise ConnectionResetError("the sim closed the GPS socket")
                        self._heard(data)
                except OSError:
                    sock.close()
                    sock = None
                continue
            k += 1
            if t < self.route_time() - 2 * step * max(1.0, self.speedup):
                continue  # behind (it was disconnected): that time is gone
            e = self.replay.epoch_at(t)
            try:
                if e.sentences:
                    sock.sendall("".join(x + "\r\n" for x in e.sentences).encode("ascii"))
                self.epochs += 1
            except OSError:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()


# --- command line ------------------------------------------------------------------------------------

def interval(text: str, what: str) -> tuple[float, float]:
    """"AT:DURATION" in seconds (--stop, --lose); ValueError says what is wrong."""
    try:
        a, b = text.split(":")
        at, dur = float(a), float(b)
    except ValueError:
        raise ValueError("%s %r: expected AT:DURATION in seconds, e.g. 120:60"
                         % (what, text)) from None
    if at < 0 or dur <= 0:
        raise ValueError("%s %r: AT must be >= 0 and DURATION > 0" % (what, text))
    return at, dur


def _interval(text: str, what: str) -> tuple[float, float]:
    try:
        return interval(text, what)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware.gpsreplay",
                                 description="Replay a GPX route as NMEA 0183 (GGA, RMC, VTG).")
    ap.add_argument("gpx", help="a GPX file (track points with times, or a route)")
    ap.add_argument("--speed-kmh", type=float, default=DEFAULT_SPEED_KMH,
                    help="speed for a route without timestamps (default %(default)s)")
    ap.add_argument("--speedup", type=float, default=1.0,
                    help="route seconds per wall second (default 1: real time)")
    ap.add_argument("--stop", action="append", default=[], metavar="AT:DURATION",
                    type=lambda s: _interval(s, "--stop"),
                    help="stop at route second AT for DURATION seconds (repeatable)")
    ap.add_argument("--lose", action="append", default=[], metavar="AT:DURATION",
                    type=lambda s: _interval(s, "--lose"),
                    help="no fix from second AT for DURATION seconds (repeatable)")
    ap.add_argument("--silent", action="store_true",
                    help="during --lose print nothing (a dead receiver), not 'no fix'")
    ap.add_argument("--out", default="-",
                    help="'-' (stdout, default), a file, or a pyserial URL "
                         "(socket://host:port, /dev/ttyUSB0, loop://)")
    ap.add_argument("--at-once", action="store_true",
                    help="print every epoch without waiting (for files and pipes)")
    a = ap.parse_args(argv)
    if a.speedup <= 0:
        ap.error("--speedup must be above 0")
    try:
        route = load(a.gpx, a.speed_kmh)
    except RouteError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    replay = Replay(route, [Stop(*s) for s in a.stop],
                    [Loss(at, dur, a.silent) for at, dur in a.lose])
    print("%s: %d points, %.0f m, %.0f s (%.0f s with stops)" % (
        route.name, len(route.points), route.length_m, route.duration_s, replay.duration_s),
        file=sys.stderr)
    speedup = 1e12 if a.at_once else a.speedup
    if a.out == "-":
        def write(b):
            sys.stdout.write(b.decode("ascii"))
            sys.stdout.flush()
        try:
            run(replay, write, speedup)
        except BrokenPipeError:  # `| head`: the reader has had enough
            sys.stdout = None
        return 0
    if "://" in a.out or a.out.startswith("/dev/"):
        import serial
        try:
            port = serial.serial_for_url(a.out, baudrate=9600)
        except (serial.SerialException, ValueError) as e:
            print("error: %s: %s" % (a.out, e), file=sys.stderr)
            return 2
        try:
            run(replay, port.write, speedup)
        finally:
            port.close()
        return 0
    try:
        f = open(a.out, "wb")
    except OSError as e:
        print("error: %s: cannot write (%s)" % (a.out, e.strerror), file=sys.stderr)
        return 2
    with f:
        run(replay, f.write, speedup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
