# The vehicle profile's rules: a cash-in-transit van or patrol car.
#
# Sans-I/O, like panel.py: the edges feed it GNSS fixes (nmea.Fix), the
# compartment, door, ignition and GPS-antenna inputs, and `now_ms` (ticks)
# and, where the time of day matters, `unix` (0 = clock unset); it answers
# with Contact ID events in `self.out`, the same (qualifier, code,
# partition, zone, text) tuples as Panel.out, which the edge drains into
# the persistent queue after every call and to which it attaches the
# position (`position()`) at that moment.  docs/mobile.md has the rules,
# the codes and the config section (validated by vehicle_config.py, which
# the firmware imports at boot and unloads, as it does config.py).
#
# The rules (codes in cid.py):
#   133 a compartment (cash compartment door, safe) is open while the van
#       is not known to be in an allowed zone: once per opening
#   172 a vehicle door is open while the speed is at or above door_open_kmh:
#       once per opening
#   173 the ignition is switched on outside its schedule: once per run
#   170 the van is farther than half the corridor's width from its planned
#       route (and in no allowed zone) for exit_after_s: once per exit
#   171 the van has stood still outside every allowed zone for stop_max_s
#   330 no usable fix for fix_lost_s after the last one showed the van moving
#   344 the fix was lost together with a tampered GPS antenna input (the
#       receiver's jamming / antenna-fault output): at once
# Each is restored (qualifier 3) when its condition ends: the opening
# closes, the ignition goes off, the van is back on its route, moves on,
# has a fix again.
#
# Two tables drive them (STYLE.md: state machines as tables):
# - EPISODE for the three "once per opening" rules: IDLE -open-> OPEN
#   -violate-> ALARM (new) -close-> IDLE (restore);
# - CONDITION for the four timed ones: OK -bad-> PENDING (a deadline)
#   -expire-> RAISED (new) -good-> OK (restore).
# A (state, event) pair with no entry raises LocalError: a bug here, never
# a silent no-op.
#
# Invariants (tests/test_vehicle.py walks them with hypothesis, shapely as
# the oracle for inside/outside):
# - 133 is raised exactly once per opening that was at some moment open
#   while the van was outside every allowed zone (or its position was
#   unknown: fail-safe), and never for an opening that stayed inside one.
# - 170 is raised once per exit from the corridor, and a restore follows
#   only after the van is back within half the width less the hysteresis.
# - Every restore follows its own new event; no code is raised twice
#   without a restore in between.
# - A fix is "usable" when valid, with HDOP <= max_hdop, and not older
#   than position_hold_s; zone decisions use only usable fixes.
# - self.out never holds more than OUT_MAX events (`overflow` counts).

from fwutil import const, ticks_diff, ticks_add, due
import cid
import geo

Q_NEW = const(1)
Q_RESTORE = const(3)
OUT_MAX = const(16)  # one call raises at most a few; the edge drains after each

# EPISODE: states, events, actions
E_IDLE = const(0)
E_OPEN = const(1)
E_ALARM = const(2)
EV_OPEN = const(0)
EV_CLOSE = const(1)
EV_VIOLATE = const(2)
A_NONE = const(0)
A_NEW = const(1)
A_RESTORE = const(2)
A_TIMER = const(3)
EPISODE = {
    E_IDLE: {EV_OPEN: (E_OPEN, A_NONE), EV_CLOSE: (E_IDLE, A_NONE)},
    E_OPEN: {EV_OPEN: (E_OPEN, A_NONE), EV_CLOSE: (E_IDLE, A_NONE),
             EV_VIOLATE: (E_ALARM, A_NEW)},
    E_ALARM: {EV_OPEN: (E_ALARM, A_NONE), EV_CLOSE: (E_IDLE, A_RESTORE),
              EV_VIOLATE: (E_ALARM, A_NONE)},  # once per opening
}
EPISODE_STATES = ("closed", "open", "alarm")

# CONDITION: states, events
C_OK = const(0)
C_PENDING = const(1)
C_RAISED = const(2)
CV_BAD = const(0)
CV_GOOD = const(1)
CV_EXPIRE = const(2)
CONDITION = {
    C_OK: {CV_BAD: (C_PENDING, A_TIMER), CV_GOOD: (C_OK, A_NONE)},
    C_PENDING: {CV_BAD: (C_PENDING, A_NONE), CV_GOOD: (C_OK, A_NONE),
                CV_EXPIRE: (C_RAISED, A_NEW)},
    C_RAISED: {CV_BAD: (C_RAISED, A_NONE), CV_GOOD: (C_OK, A_RESTORE)},
}
CONDITION_STATES = ("ok", "pending", "raised")

# the timed rules, by index
R_CORRIDOR = const(0)
R_STOP = const(1)
R_FIX_LOST = const(2)
R_JAM = const(3)
RULE_CODES = (cid.ROUTE_EXIT, cid.STOPPED_TOO_LONG, cid.GPS_TROUBLE, cid.GPS_JAM)
RULE_NAMES = ("left route corridor", "stopped too long", "GPS fix lost", "GPS jamming")

# A receiver that falls silent is "lost" after this long without a sentence
# that says anything (1 Hz receivers; three missed epochs).
FIX_STALE_MS = const(3000)


class LocalError(Exception):
    """Our own misuse: an event the tables have no entry for."""


def step(table, state, event):
    """(next state, action) for `event` in `state`; LocalError if none."""
    row = table[state]
    if event not in row:
        raise LocalError("no transition for event %d in state %d" % (event, state))
    return row[event]


def in_week_window(windows, unix, utc_off_s):
    """Is local time inside one of `windows` ({"days": [1..7 ISO], "from":
    minute, "to": minute})?  A window whose "to" is not after its "from"
    runs past midnight into the next day (22:00-06:00); its days are the
    days it starts on."""
    local = unix + utc_off_s
    mins = (local // 60) % 1440
    wd = (local // 86400 + 3) % 7 + 1  # 1970-01-01 was a Thursday (ISO 4)
    yd = (wd + 5) % 7 + 1  # yesterday
    for w in windows:
        a = w["from"]
        b = w["to"]
        if a < b:
            if wd in w["days"] and a <= mins < b:
                return True
        elif (wd in w["days"] and mins >= a) or (yd in w["days"] and mins < b):
            return True
    return False


class Vehicle:
    def __init__(self, vcfg, now_ms, utc_offset_min=0):
        self.cfg = vcfg
        self.part = vcfg["partition"]
        self.utc_off_s = utc_offset_min * 60
        self.zones = []
        for z in vcfg["allowed_zones"]:
            if "circle" in z:
                c = z["circle"]
                self.zones.append(geo.Circle(c[0], c[1], c[2]))
            else:
                self.zones.append(geo.Polygon(z["polygon"]))
        co = vcfg["corridor"]
        self.route = None
        if co is not None:
            self.half_m = co["width_m"] / 2
            self.hyst_m = co["hysteresis_m"]
            self.route = geo.Polyline(co["line"], self.half_m)
        self.delay_ms = (co["exit_after_s"] * 1000 if co else 0, vcfg["stop_max_s"] * 1000,
                         vcfg["fix_lost_s"] * 1000, 0)
        self.out = []
        self.overflow = 0
        # the last usable fix
        self.fix_ms = None  # ticks when it came; None = never
        self.lat = 0
        self.lon = 0
        self.speed = 0  # 0.1 km/h
        self.course = 0  # 0.1 degree
        self.quality = 0  # its GGA fix quality, satellites, HDOP (0.1)
        self.sats = 0
        self.hdop = 0
        self.day = -1  # its UTC date and time (nmea.Fix.day, .ms): the fix time
        self.ms = -1
        self.inside = False  # in an allowed zone at the last usable fix
        self.seen_ms = now_ms  # last sentence that said anything (fix or no fix)
        self.lost_ms = None  # ticks when the fix was lost; None = have one
        self.moving_at_loss = False
        # inputs
        self.compartments = {}  # zone -> EPISODE state
        self.doors = {}
        self.ignition = E_IDLE
        self.ignition_zone = 0
        self.antenna = False
        self.antenna_ms = now_ms
        # timed rules
        self.cond = bytearray(4)
        self.deadline = [0, 0, 0, 0]

    # -- reporting ------------------------------------------------------------------

    def emit(self, q, code, zone, text=None):
        if len(self.out) >= OUT_MAX:
            self.overflow += 1
            return
        self.out.append((q, code, self.part, zone, text))

    def _episode(self, state, event, code, zone):
        nxt, act = step(EPISODE, state, event)
        if act == A_NEW:
            self.emit(Q_NEW, code, zone)
        elif act == A_RESTORE:
            self.emit(Q_RESTORE, code, zone)
        return nxt

    def _cond(self, r, event, now_ms, since_ms=None):
        nxt, act = step(CONDITION, self.cond[r], event)
        if act == A_TIMER:
            self.deadline[r] = ticks_add(now_ms if since_ms is None else since_ms,
                                         self.delay_ms[r])
        elif act == A_NEW:
            self.emit(Q_NEW, RULE_CODES[r], 0)
        elif act == A_RESTORE:
            self.emit(Q_RESTORE, RULE_CODES[r], 0)
        self.cond[r] = nxt
        if nxt == C_PENDING and due(now_ms, self.deadline[r]):
            self._cond(r, CV_EXPIRE, now_ms)

    def alarm_active(self):
        """Is one of the rules in alarm now (report positions faster)?"""
        for s in self.compartments.values():
            if s == E_ALARM:
                return True
        for s in self.doors.values():
            if s == E_ALARM:
                return True
        return self.ignition == E_ALARM or self.cond[R_CORRIDOR] == C_RAISED \
            or self.cond[R_STOP] == C_RAISED

    # -- position -----------------------------------------------------------------------

    def usable(self, now_ms):
        """Is there a fix recent enough for zone decisions?"""
        return self.fix_ms is not None and \
            ticks_diff(now_ms, self.fix_ms) <= self.cfg["position_hold_s"] * 1000

    def in_allowed_zone(self, lat, lon):
        for z in self.zones:
            if z.contains(lat, lon):
                return True
        return False

    def fix(self, f, now_ms):
        """A parsed epoch: call after each GGA or RMC (nmea.NmeaReader.feed
        says which came)."""
        self.seen_ms = now_ms
        good = f.valid and f.hdop <= self.cfg["max_hdop"]
        if not good:
            self._lose(now_ms)
            self.tick(now_ms)
            return
        self.fix_ms = now_ms
        self.lat = f.lat
        self.lon = f.lon
        self.speed = f.speed
        self.course = f.course
        self.quality = f.quality
        self.sats = f.sats
        self.hdop = f.hdop
        self.day = f.day
        self.ms = f.ms
        self.lost_ms = None
        self.inside = self.in_allowed_zone(f.lat, f.lon)
        self._cond(R_FIX_LOST, CV_GOOD, now_ms)
        if not self.antenna:
            self._cond(R_JAM, CV_GOOD, now_ms)
        # corridor (with hysteresis on the way back) and stops
        if self.route is not None:
            limit = self.half_m - self.hyst_m if self.cond[R_CORRIDOR] == C_RAISED \
                else self.half_m
            off = not self.inside and not self.route.within(f.lat, f.lon, limit)
            self._cond(R_CORRIDOR, CV_BAD if off else CV_GOOD, now_ms)
        stopped = f.speed < self.cfg["stopped_kmh"] * 10
        self._cond(R_STOP, CV_BAD if stopped and not self.inside else CV_GOOD, now_ms)
        self._check_open(now_ms)
        self.tick(now_ms)

    def _lose(self, now_ms):
        if self.lost_ms is None:
            self.lost_ms = now_ms
            self.moving_at_loss = self.fix_ms is not None and \
                self.speed >= self.cfg["moving_kmh"] * 10
        if self.moving_at_loss:
            self._cond(R_FIX_LOST, CV_BAD, now_ms, self.lost_ms)
        self._check_jam(now_ms)

    def _check_jam(self, now_ms):
        # a sudden loss: there was a fix, and it went within jam_window_s of
        # the antenna input tripping (either first)
        if self.antenna and self.lost_ms is not None and self.fix_ms is not None and \
                abs(ticks_diff(self.lost_ms, self.antenna_ms)) <= self.cfg["jam_window_s"] * 1000:
            self._cond(R_JAM, CV_BAD, now_ms)

    def _check_open(self, now_ms):
        """Open compartments and doors against the position and speed."""
        known = self.usable(now_ms)
        if not (known and self.inside):
            for z in sorted(self.compartments):  # zone order on both runtimes
                if self.compartments[z] != E_IDLE:
                    self.compartments[z] = self._episode(self.compartments[z], EV_VIOLATE,
                                                         cid.COMPARTMENT, z)
        if known and self.speed >= self.cfg["door_open_kmh"] * 10:
            for z in sorted(self.doors):
                if self.doors[z] != E_IDLE:
                    self.doors[z] = self._episode(self.doors[z], EV_VIOLATE,
                                                  cid.VEHICLE_DOOR, z)

    def tick(self, now_ms):
        """Timers: call at least once a second."""
        if self.lost_ms is None and ticks_diff(now_ms, self.seen_ms) >= FIX_STALE_MS:
            self._lose(ticks_add(self.seen_ms, FIX_STALE_MS))
        if self.fix_ms is not None and not self.usable(now_ms):
            self._check_open(now_ms)  # the position held has run out
        for r in range(4):
            if self.cond[r] == C_PENDING and due(now_ms, self.deadline[r]):
                self._cond(r, CV_EXPIRE, now_ms)

    # -- inputs ---------------------------------------------------------------------------

    def compartment(self, zone, is_open, now_ms):
        s = self.compartments.get(zone, E_IDLE)
        self.compartments[zone] = self._episode(s, EV_OPEN if is_open else EV_CLOSE,
                                                cid.COMPARTMENT, zone)
        if is_open:
            self._check_open(now_ms)

    def door(self, zone, is_open, now_ms):
        s = self.doors.get(zone, E_IDLE)
        self.doors[zone] = self._episode(s, EV_OPEN if is_open else EV_CLOSE,
                                         cid.VEHICLE_DOOR, zone)
        if is_open:
            self._check_open(now_ms)

    def ignition_input(self, on, now_ms, unix, zone=0):
        """Ignition on/off.  Switched on outside the schedule: 173 (not
        judged while the clock is unset: the panel reports 626 for that)."""
        was = self.ignition
        self.ignition = self._episode(was, EV_OPEN if on else EV_CLOSE,
                                      cid.IGNITION_OFF_SCHEDULE, self.ignition_zone)
        if on and was == E_IDLE:
            self.ignition_zone = zone
            sched = self.cfg["ignition_schedule"]
            if sched is not None and unix and not in_week_window(sched, unix, self.utc_off_s):
                self.ignition = self._episode(self.ignition, EV_VIOLATE,
                                              cid.IGNITION_OFF_SCHEDULE, zone)

    def antenna_input(self, tampered, now_ms):
        """The GNSS antenna/jamming input (the receiver's antenna-open/short
        or jamming-indicator output, or a tamper loop on the antenna)."""
        if tampered and not self.antenna:
            self.antenna_ms = now_ms
        self.antenna = tampered
        if tampered:
            self._check_jam(now_ms)
        elif self.lost_ms is None:
            self._cond(R_JAM, CV_GOOD, now_ms)

    # -- state for people -------------------------------------------------------------------

    def position(self, now_ms):
        """(lat, lon, speed, usable) of the last usable fix, None before the
        first: what the edge attaches to an event it drains."""
        if self.fix_ms is None:
            return None
        return (self.lat, self.lon, self.speed, self.usable(now_ms))

    def state(self):
        out = {}
        for r in range(4):
            out[RULE_NAMES[r]] = CONDITION_STATES[self.cond[r]]
        for z in self.compartments:
            out["compartment %d" % z] = EPISODE_STATES[self.compartments[z]]
        for z in self.doors:
            out["door %d" % z] = EPISODE_STATES[self.doors[z]]
        out["ignition"] = EPISODE_STATES[self.ignition]
        return out


# --- position reporting policy ---------------------------------------------------------------

# why a track point is due (0: it is not)
P_FIRST = const(1)
P_INTERVAL = const(2)  # moving, interval elapsed
P_DISTANCE = const(3)  # moving, distance covered
P_TURN = const(4)  # moving, heading changed
P_START = const(5)  # started moving
P_STOP = const(6)  # came to a stop
P_ALARM = const(7)  # alarm active: faster
P_HEARTBEAT = const(8)  # parked, or no fix
REASONS = ("", "first", "interval", "distance", "turn", "start", "stop", "alarm", "heartbeat")


class ReportPolicy:
    """When is a track point due?  Moving: every moving_s seconds or
    moving_m metres, or a turn of turn_deg, whichever comes first, never
    twice within min_s; during an alarm every alarm_s; parked or without a
    fix, a heartbeat position every parked_s; a point when the van starts
    and when it stops.  due() answers, sent() records that the edge queued
    one.  Fed data; reads no clock."""

    def __init__(self, rcfg, moving_kmh):
        self.c = rcfg
        self.moving_dkmh = moving_kmh * 10
        self.last_ms = None
        self.lat = 0
        self.lon = 0
        self.course = 0
        self.moving = False  # at the last point

    def due(self, now_ms, has_fix, lat, lon, speed, course, alarm):
        if self.last_ms is None:
            return P_FIRST
        since = ticks_diff(now_ms, self.last_ms)
        c = self.c
        if alarm:
            return P_ALARM if since >= c["alarm_s"] * 1000 else 0
        if since < c["min_s"] * 1000:
            return 0
        if not has_fix:
            return P_HEARTBEAT if since >= c["parked_s"] * 1000 else 0
        moving = speed >= self.moving_dkmh
        if moving != self.moving:
            return P_START if moving else P_STOP
        if not moving:
            return P_HEARTBEAT if since >= c["parked_s"] * 1000 else 0
        if since >= c["moving_s"] * 1000:
            return P_INTERVAL
        if geo.distance_m(self.lat, self.lon, lat, lon) >= c["moving_m"]:
            return P_DISTANCE
        if c["turn_deg"]:
            d = abs(course - self.course) % 3600
            if min(d, 3600 - d) >= c["turn_deg"] * 10:
                return P_TURN
        return 0

    def sent(self, now_ms, has_fix, lat, lon, speed, course):
        self.last_ms = now_ms
        if has_fix:
            self.lat = lat
            self.lon = lon
            self.course = course
            self.moving = speed >= self.moving_dkmh
