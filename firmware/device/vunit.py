# The vehicle unit: what a panel of kind "vehicle" (a cash-in-transit van)
# or "patrol" (a patrol car) adds to the panel core (docs/mobile.md).
#
# Sans-I/O like panel.py, which owns it (Panel.unit) and imports it only
# for a vehicle kind.  It joins:
#   - nmea.NmeaReader: the GNSS UART's bytes (run: app.py's gps task) -> a Fix;
#   - vehicle.Vehicle: the rules (133, 170-173, 330, 344), fed the fixes
#     and the vehicle inputs the panel routes here (compartment, vehicle
#     door, ignition, GNSS antenna: zones of those types);
#   - vehicle.ReportPolicy: when a track point is due; a due point waits
#     in `points` for the edge (app.py puts it in trackq.TrackRing);
#   - the patrol status ("patrol"): available, dispatched, on scene, set
#     by the crew at the keypad and reported as 470, 471, 472 (zone = the
#     user who set it).
# Its events go to the panel's `out` (Panel.vehicle_event), so they are queued,
# numbered and reported like every panel event; app.py attaches
# `position()` to each event it queues, and a track point carries it too.
#
# Invariants (tests/test_fw_vehicle_unit.py):
# - position() is None until the first usable fix, then the last usable
#   fix, marked valid (POS_VALID) only while the fix is current: not lost
#   since, and usable (vehicle.Vehicle.usable); every value fits its field
#   of glwire's position record.
# - Alarm rate: a track point every report.alarm_s while a vehicle rule is
#   in alarm, and for report.after_alarm_s after the panel queued any
#   alarm (Contact ID 1xx new: a hold-up, duress, tilt).
# - `points` never holds more than _POINTS_MAX (the edge drains it after
#   every call); `tracking` False (a DC-09 unit: no track points on a
#   standard receiver) queues none.

from fwutil import const, ticks_diff, ticks_ms
import nmea
import vehicle as V
import cid

# glwire's position flags (the wire record; a DC-09 unit never loads glwire)
POS_VALID = const(0x01)
POS_MOVING = const(0x02)
POS_IGNITION = const(0x04)
POS_ALARM = const(0x08)
# vehicle inputs, in the order of the zone types (config.VEHICLE_ZONES)
IN_COMPARTMENT = const(0)
IN_DOOR = const(1)
IN_IGNITION = const(2)
IN_ANTENNA = const(3)
PATROL_STATUS = ("available", "dispatched", "on scene")  # 470, 471, 472
_POINTS_MAX = const(4)  # one call makes at most one; the edge drains after each
# The GNSS UART (run): NMEA 0183 at 9600 baud is 960 bytes/s; a read of up
# to _GPS_BUF bytes, _GPS_READS times every _GPS_MS, takes 20 KB/s (the
# sim's replay sped up 20 times sends about 4 KB/s) and never waits; a
# flood gets no more than that, so it never starves the scan.
_GPS_MS = const(50)
_GPS_BUF = const(256)
_GPS_READS = const(4)


class Unit:
    def __init__(self, panel, vcfg, patrol, now_ms, utc_offset_min=0):
        self.panel = panel
        self.reader = nmea.NmeaReader()
        self.rules = V.Vehicle(vcfg, now_ms, utc_offset_min)
        self.policy = V.ReportPolicy(vcfg["report"], vcfg["moving_kmh"])
        self.moving_dkmh = vcfg["moving_kmh"] * 10
        self.after_alarm_ms = vcfg["report"]["after_alarm_s"] * 1000
        self.patrol = patrol
        self.status = -1  # patrol status (PATROL_STATUS index), -1: not set since boot
        self.points = []  # track points due: (reason, position tuple)
        self.tracking = True
        self.ignition = False
        self.alarmed = False  # the panel queued an alarm since the last look
        self.alarm_ms = None  # ticks of the latest panel alarm, None: none yet

    # -- the panel's events -------------------------------------------------------

    def _merge(self, now_ms):
        """The rules' events into the panel's (numbered, queued, reported
        like every panel event; an alarm ends an abort window first)."""
        r = self.rules
        p = self.panel
        for q, code, part, zone, text in r.out:
            p.vehicle_event(q, code, part, zone, text, now_ms)
        r.out.clear()
        if r.overflow:
            p.overflow += r.overflow  # reported as 624 like the panel's own
            r.overflow = 0

    def emitted(self, q, code):
        """Panel.emit saw an event: an alarm makes the track faster."""
        if q == V.Q_NEW and 100 <= code < 200:
            self.alarmed = True

    # -- the gps task (app.py supervises it) -----------------------------------------

    async def run(self, app, t):
        """The GNSS receiver's UART (board.gps_read) to gps(), due track
        points into app.track, new events into the queue (app.drain);
        t.beat after every round, as the scan and report tasks."""
        import asyncio
        b = app.board
        buf = bytearray(_GPS_BUF)
        while True:
            now = ticks_ms()
            for _ in range(_GPS_READS):
                now = ticks_ms()
                n = b.gps_read(buf)
                self.gps(buf, n, now)
                if self.points:
                    for reason, pos in self.points:
                        app.track.append(reason, pos)
                    self.points.clear()
                if n < _GPS_BUF:
                    break
            app.drain(now)
            t.beat = ticks_ms()
            await asyncio.sleep_ms(_GPS_MS)

    # -- inputs ----------------------------------------------------------------------

    def gps(self, data, n, now_ms):
        """n bytes from the GNSS UART in data (n may be 0: nothing came),
        then the report policy."""
        if n and self.reader.feed(data, n) & (nmea.GOT_GGA | nmea.GOT_RMC):
            self.rules.fix(self.reader.fix, now_ms)
            self._merge(now_ms)
        self.report(now_ms)

    def tick(self, now_ms):
        """The rules' timers (from Panel.tick, every scan)."""
        self.rules.tick(now_ms)
        self._merge(now_ms)

    def input(self, kind, zone, on, now_ms, unix):
        """A vehicle input changed (IN_*): open / on / tampered, or not."""
        r = self.rules
        if kind == IN_COMPARTMENT:
            r.compartment(zone, on, now_ms)
        elif kind == IN_DOOR:
            r.door(zone, on, now_ms)
        elif kind == IN_IGNITION:
            self.ignition = on
            r.ignition_input(on, now_ms, unix, zone)
        else:
            r.antenna_input(on, now_ms)
        self._merge(now_ms)

    def set_status(self, k, partition, user):
        """The crew set the patrol status k (PATROL_STATUS) at the keypad."""
        self.status = k
        self.panel.emit(V.Q_NEW, cid.PATROL_STATUS + k, partition, user)

    # -- position ------------------------------------------------------------------------

    def alarm(self, now_ms):
        """Alarm rate: a rule in alarm, or a panel alarm not long ago."""
        if self.alarmed:
            self.alarmed = False
            self.alarm_ms = now_ms
        if self.rules.alarm_active():
            return True
        return self.alarm_ms is not None and \
            ticks_diff(now_ms, self.alarm_ms) < self.after_alarm_ms

    def position(self, now_ms):
        """The position tuple (pqueue.pack_pos: lat, lon, speed, course,
        quality, sats, hdop, fix time, flags) of the last usable fix, None
        before the first; valid only while that fix is current."""
        r = self.rules
        if r.fix_ms is None:
            return None
        flags = 0
        if r.lost_ms is None and r.usable(now_ms):  # a current fix, not the last known
            flags = POS_VALID
            if r.speed >= self.moving_dkmh:
                flags |= POS_MOVING
        if self.ignition:
            flags |= POS_IGNITION
        if self.alarm(now_ms):
            flags |= POS_ALARM
        t = r.day * 86400 + r.ms // 1000 if r.day >= 0 and r.ms >= 0 else 0
        return (r.lat, r.lon, min(r.speed, 0xFFFF), r.course, r.quality, min(r.sats, 255),
                min(r.hdop, 255), t, flags)

    def report(self, now_ms):
        """A track point into `points` if the policy says one is due."""
        if not self.tracking:
            return
        r = self.rules
        has = r.usable(now_ms)
        why = self.policy.due(now_ms, has, r.lat, r.lon, r.speed, r.course, self.alarm(now_ms))
        if not why or r.fix_ms is None or len(self.points) >= _POINTS_MAX:
            return  # (no position yet: the first point waits for the first fix)
        self.policy.sent(now_ms, has, r.lat, r.lon, r.speed, r.course)
        self.points.append((why, self.position(now_ms)))

    # -- state for people --------------------------------------------------------------

    def state(self):
        f = self.reader.fix
        r = self.rules
        out = {"fix": "valid" if f.valid else ("lost" if f.has_position else "none"),
               "rules": r.state(), "ignition": self.ignition,
               "sentences": self.reader.ok,
               "bad_sentences": self.reader.bad_checksum + self.reader.bad_format +
               self.reader.bad_field + self.reader.overlong}
        if r.fix_ms is not None:
            out["lat"] = r.lat / 1000000
            out["lon"] = r.lon / 1000000
            out["speed_kmh"] = r.speed / 10
        if self.patrol:
            out["patrol"] = PATROL_STATUS[self.status] if self.status >= 0 else "not set"
        return out
