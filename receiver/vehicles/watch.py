"""The receiver's re-check of a vehicle unit's route (sans-I/O).

A unit checks its own corridor and stops (firmware/device/vehicle.py) and
reports 170 and 171 itself.  A unit whose config was lost or wiped does
not: the receiver runs the same rules, with the same code
(receiver.vehicles.fw), on the track points the unit sends, and raises its
own events.  It adds one the unit cannot: **175**, a vehicle heard with its
ignition on that has sent no position for ``silent_s`` (jammed, its
antenna cut, or its unit removed).

    w = RouteWatch("3001", rules, grace_s=30, silent_s=1200)
    w.load_raised({170: "vehicle:170:..."})   # what the store says is raised
    findings = w.point(track_point)           # each stored point, in arrival order
    findings = w.tick(now)                    # at least once a second
    w.withdraw(170)                           # the unit reported this one itself

Each :class:`Finding` becomes an event (source ``vehicle``) the loop
stores.  What holds:

- **The unit first.**  The receiver's timers run ``grace_s`` longer than
  the unit's (corridor ``exit_after_s``, ``stop_max_s``); when one runs
  out the loop asks the store whether the unit reported the code itself
  (its latest report of it a new event) and if so withdraws the finding
  (:meth:`withdraw`): one alarm for one exit, the unit's.
- **One alarm per episode, exactly once.**  A code alternates new and
  restore.  A new event's dedupe key names the track point that began the
  episode ("vehicle:170:<its time in ms>"), a restore's is its new event's
  key + ":restore", so two receivers that judge the same points (a
  takeover race) store one event; a code the store says is raised
  (:meth:`load_raised`, after a restart or a takeover) is not raised again
  and its restore gets that event's key.
- **The unit's clock is the rules' clock**: points are judged at their fix
  time, so a burst of points that waited in the unit's queue is judged as
  the drive it was.  The receiver's clock moves the rules on only once no
  point has arrived for ``QUIET_S`` (a parked van reports every 15 min; a
  silent one not at all), and the rules' clock never goes back: a point
  older than that is judged as news of now.  A van that stopped outside
  its zones and fell silent is, on what the receiver knows, still stopped:
  171 (and 175 if its ignition was on), restored by its late points.
- Only native points with a speed feed the corridor and stop rules (a
  DC-09 location has none); every point counts as a sign of life.
"""

from __future__ import annotations

from dataclasses import dataclass

from receiver.records import Position, TrackPoint
from receiver.supervision import duration_text
from receiver.vehicles.fw import vehicle as V

SOURCE = "vehicle"  # EventRecord.source of what the watch raises
# The receiver's clock moves the rules on once no point has arrived for
# this long: longer than a moving unit's report interval (report.moving_s,
# 30 s) and than a queued burst takes to arrive, so points that come are
# judged on their own time.
QUIET_S = 60.0
ROUTE_EXIT, STOPPED, SILENT = 170, 171, 175
CODES = (ROUTE_EXIT, STOPPED, SILENT)
# the unit's rules the receiver runs, and their index in vehicle.Vehicle
_RULES = {V.R_CORRIDOR: ROUTE_EXIT, V.R_STOP: STOPPED}
# A unit's GNSS fix as vehicle.Vehicle.fix reads it (nmea.Fix's fields:
# the rules keep the fix's course, quality, satellites and time for the
# position the unit reports).


class _Fix:
    __slots__ = ("valid", "hdop", "lat", "lon", "speed", "course", "quality", "sats", "day",
                 "ms")

    def __init__(self, valid, hdop, lat, lon, speed, p: Position):
        self.valid = valid
        self.hdop = hdop
        self.lat = lat
        self.lon = lon
        self.speed = speed
        self.course = int(round((p.course_deg or 0) * 10))
        self.quality = p.quality if p.quality is not None else (1 if valid else 0)
        self.sats = p.sats or 0
        ft = p.fix_time
        self.day = int(ft // 86400) if ft else -1
        self.ms = int(round((ft % 86400) * 1000)) if ft else -1


@dataclass(frozen=True)
class Finding:
    """An event the receiver raises: ``code``, ``qualifier`` (1 new, 3
    restore), its ``dedupe_key`` and ``text`` (the description's detail),
    at ``at`` (Unix seconds), with the van's latest known ``position`` (the
    alarm is shown there; a position the unit sent, so the event adds no
    track point of its own)."""

    account: str
    code: int
    qualifier: int
    dedupe_key: str
    text: str
    at: float
    position: Position | None = None

    def record_fields(self) -> dict:
        """What receiver.app.Receiver.make_record takes."""
        return {"account": self.account, "dedupe_key": self.dedupe_key,
                "qualifier": self.qualifier, "code": self.code, "partition": 0, "zone": 0,
                "text": self.text[:64], "event_time": self.at, "received_at": self.at,
                "peer": "receiver", "source": SOURCE, "position": self.position}


class RouteWatch:
    def __init__(self, account: str, rules, grace_s: int, silent_s: int | None):
        """``rules``: receiver.vehicles.geofences.AccountRules, or None (only
        the silence rule); ``grace_s``: how much longer than the unit the
        receiver waits; ``silent_s``: 175 after this long without a
        position while the ignition was on (None: off)."""
        self.account = account
        self.grace_s = grace_s
        self.silent_s = silent_s
        self.section = None
        if rules is not None:
            s = dict(rules.section)
            s["stop_max_s"] = s["stop_max_s"] + grace_s
            if s["corridor"] is not None:
                s["corridor"] = dict(s["corridor"], exit_after_s=s["corridor"]["exit_after_s"]
                                     + grace_s)
            self.section = s
        self.v = None  # vehicle.Vehicle, made at the first point
        self.clock_ms = 0  # the rules' clock (never goes back)
        self.raised: dict[int, str | None] = dict.fromkeys(CODES)
        self.start: dict[int, int] = {}  # rule code -> ms of the point that began it
        self.last_at: float | None = None  # the latest point's time (rules' clock, s)
        self.last_received: float | None = None  # when the latest point arrived
        self.last_ignition = False
        self.last_position: Position | None = None  # the newest by time (alarms go there)
        self.last_position_at = 0.0
        self.last_point_id = 0

    # -- what the store knows --------------------------------------------------------

    def load_raised(self, raised: dict[int, str]) -> None:
        """{code: dedupe key} of this account's vehicle events whose latest
        is a new one (raised, not restored), as the store has them."""
        for code, key in raised.items():
            if code in self.raised:
                self.raised[code] = key

    def withdraw(self, code: int) -> None:
        """The new event just found for ``code`` is not stored (the unit
        reported it): its restore will not be either, and the next episode
        is judged afresh."""
        self.raised[code] = None

    # -- feeding --------------------------------------------------------------------------

    def _advance(self, t: float) -> int:
        self.clock_ms = max(self.clock_ms, int(t * 1000))
        return self.clock_ms

    def point(self, tp: TrackPoint) -> list[Finding]:
        """A stored track point (each once: the loop dedupes by id)."""
        self.last_point_id = max(self.last_point_id, tp.id)
        p = tp.position
        now_ms = self._advance(tp.at)
        out: list[Finding] = []
        self.last_at = now_ms / 1000
        self.last_received = max(self.last_received or 0.0, tp.received_at)
        if self.last_position is None or tp.at >= self.last_position_at:
            self.last_position, self.last_position_at = p, tp.at
        if p.ignition is not None:
            self.last_ignition = p.ignition
        out += self._decide(SILENT, 3, "positions again")
        if self.section is None or p.speed_kmh is None:
            return out
        if self.v is None:
            self.v = V.Vehicle(self.section, now_ms)
        valid = p.valid is not False
        fix = _Fix(valid, int(round((p.hdop or 0) * 10)), int(round(p.lat * 1e6)),
                   int(round(p.lon * 1e6)), int(round(p.speed_kmh * 10)), p)
        # the point first, then its deadlines (Vehicle.fix ticks at its end):
        # a van seen off route at t and back at t + exit_after was not off
        # for exit_after as far as anyone knows
        before = bytes(self.v.cond)
        self.v.fix(fix, now_ms)
        for r, code in _RULES.items():
            if before[r] == V.C_OK and self.v.cond[r] != V.C_OK:
                self.start[code] = now_ms
        return out + self._drain(now_ms)

    def tick(self, now: float) -> list[Finding]:
        """The receiver's clock: timers (at least once a second)."""
        out: list[Finding] = []
        heard = self.last_received
        if heard is None or now - heard < QUIET_S:
            return out  # nothing yet, or points are arriving: their times rule
        now_ms = self._advance(now)
        if self.v is not None:
            self.v.tick(now_ms)
            out += self._drain(now_ms)
        if self.silent_s is not None and self.last_ignition and now - heard >= self.silent_s \
                and self.last_at is not None:
            out += self._decide(SILENT, 1, "no position for %s with the ignition on" % (
                duration_text(now - heard)), start_ms=int(self.last_at * 1000),
                now_ms=int(now * 1000))
        return out

    def _drain(self, now_ms: int) -> list[Finding]:
        v = self.v
        out: list[Finding] = []
        if v is None:
            return out
        for q, code, _part, _zone, _text in v.out:
            if code not in (ROUTE_EXIT, STOPPED):
                continue  # the unit's GNSS troubles (330, 344): its own to judge
            if q == V.Q_NEW:
                # the code's name says what (protocol.contactid): the text
                # says who found it
                text = "found by the receiver's own check (the unit did not report it)"
                out += self._decide(code, 1, text, start_ms=self.start.get(code, now_ms),
                                    now_ms=now_ms)
            else:
                text = ("back on its route (receiver check)" if code == ROUTE_EXIT
                        else "moving again (receiver check)")
                out += self._decide(code, 3, text, now_ms=now_ms)
        v.out.clear()
        v.overflow = 0
        return out

    def _decide(self, code: int, qualifier: int, text: str, start_ms: int = 0,
                now_ms: int | None = None) -> list[Finding]:
        """A new event or a restore for ``code``, unless it would not
        alternate."""
        at = (self.clock_ms if now_ms is None else now_ms) / 1000
        if qualifier == 1:
            if self.raised[code] is not None:
                return []
            key = "%s:%d:%d" % (SOURCE, code, start_ms)
            self.raised[code] = key
            return [Finding(self.account, code, 1, key, text, at, self.last_position)]
        key = self.raised[code]
        if key is None:
            return []
        self.raised[code] = None
        return [Finding(self.account, code, 3, key + ":restore", text, at,
                        self.last_position)]

    # -- for people -------------------------------------------------------------------------

    def state(self) -> dict:
        """What the rules think, in words (the map's van panel)."""
        out = {}
        if self.v is not None:
            for r, code in _RULES.items():
                out[V.RULE_NAMES[r]] = V.CONDITION_STATES[self.v.cond[r]]
        out["raised"] = sorted(c for c, k in self.raised.items() if k is not None)
        return out
