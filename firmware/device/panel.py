# The panel application core: zones, partitions, users, outputs, troubles.
#
# Sans-I/O: it reads no clock and touches no hardware.  The edges feed it
# debounced zone states, supply inputs and keypad entries, each with
# `now_ms` (ticks) and, where wall time matters, `unix` (0 = clock unset);
# it answers with events in `self.out` (drained into the persistent queue
# by app.py after every call) and with output states (`siren`, `strobe`,
# `lock`) that the edge writes to the board.
#
# Invariants (tests/test_fw_panel.py walks them with hypothesis):
# - Arming follows arming.TRANSITIONS; a refused pair changes nothing.
# - An alarm is never silently lost: every zone trip that the table (or a
#   24-hour zone type) turns into an alarm either queues that alarm or is
#   covered by a swinger shutdown (575) already queued for the zone in
#   this arming period.  Fire, panic, hold-up and duress are never
#   swinger-limited.
# - A duress code yields a 121 for whatever it was entered for, before
#   anything else, and otherwise behaves exactly like a normal code.
# - Hold-up (and any zone marked silent) never turns on siren or strobe.
# - self.out never holds more than OUT_MAX events (the edge drains it
#   after every call; `overflow` counts what a bug would have dropped).
# - Walk test (installer, K_WALK_START/K_WALK_END): every partition is in
#   arming.WALK_TEST or none is; entered only when all are disarmed, with
#   a master code, bracketed by 607 new/restore (zone = the user who
#   started it), ended by its timeout at the latest.  There a zone trip of
#   any type is reported once as 611/613/614/615 ("walk tested"), never as
#   an alarm, and drives no siren or strobe; a cut or shorted loop still
#   reports 144/372/373; a duress code still sends 121 (keypad()).
# - Nothing is lost silently: events dropped here (`overflow`) or from
#   the full persistent queue are reported as 624 "event log overflow"
#   (queue_state), restored once the queue has room again.
# - False-alarm reduction (ANSI/SIA CP-01, docs/firmware.md "CP-01"):
#   - Hold-up, duress, panic, fire and 24-hour zones (vault seismic
#     included) are never held: only an entry/exit or interior alarm of
#     the arming table is (arming.ALARM_HELD, the abort window).  Any
#     alarm that is not held ends its partition's window first, so held
#     reports leave before it, in order.  Fire verification (smoke.py) is
#     the one delay of a fire zone, and only of one marked "verify".
#   - An aborted alarm (a valid, non-duress disarm inside the window) is
#     never queued: held reports live in Partition.pending only.  A duress
#     disarm sends them at once and never aborts or cancels.
#   - A 406 cancel is queued only at a disarm (before its opening report)
#     when a burglary or tamper alarm of the partition was queued since its
#     last opening, the oldest of them at most cancel_window_s ago: so a
#     receiver can attach it to exactly those alarms (docs/firmware.md).
#   - A 139 confirmed alarm follows two intrusion alarms of one partition,
#     of two different zones (or one zone twice with
#     options.confirm_same_zone), within confirm_window_s, once per
#     arming period.

from fwutil import const, ticks_diff, ticks_add, due
import arming as A
import cid
import users as U
import eol

# Wire values the panel deals in.  glwire (the protocol's lean codec)
# defines them; they are repeated here so that a panel reporting SIA DC-09
# never loads glwire (its largest module, 22 KB of heap on the unix port)
# for a few numbers.  tests/test_fw_panel.py proves them equal to glwire's.
Q_NEW = const(1)  # qualifier: new event / opening
Q_RESTORE = const(3)  # restore / closing
KIND_DOOR = const(1)
KIND_BANK = const(2)
KIND_VEHICLE = const(3)
KIND_PATROL = const(4)
_KINDS = {"door": KIND_DOOR, "bank": KIND_BANK, "vehicle": KIND_VEHICLE, "patrol": KIND_PATROL}
CMD_STATUS = const(1)  # receiver COMMAND codes 1..6 (command() maps them)
R_OK = const(0)  # command / keypad results
R_REFUSED = const(1)
R_UNSUPPORTED = const(2)
R_BAD_ARGUMENT = const(3)
T_AC_LOSS = const(0x0001)  # trouble bits (HEARTBEAT, REPLY)
T_LOW_BATTERY = const(0x0002)
T_BOX_TAMPER = const(0x0004)
T_PATH1_FAIL = const(0x0008)
T_PATH2_FAIL = const(0x0010)
T_CLOCK_UNSET = const(0x0020)
T_CONFIG = const(0x0040)

# zone types: the order of config.ZONE_TYPES (a test checks they agree)
Z_INSTANT = const(0)
Z_ENTRY = const(1)
Z_FOLLOWER = const(2)
Z_24H = const(3)
Z_HOLDUP = const(4)
Z_PANIC = const(5)
Z_FIRE = const(6)
Z_TAMPER = const(7)
Z_SEISMIC = const(8)
Z_DOOR = const(9)
Z_BOLT = const(10)
# a vehicle unit's inputs (vunit.py; their order is vunit's IN_*)
Z_COMPARTMENT = const(11)  # cash compartment door, safe: vehicle rule 133
Z_VDOOR = const(12)  # a vehicle door: entry/exit when armed, and rule 172
Z_IGNITION = const(13)  # alarm = ignition on: rule 173, the position's flag
Z_ANTENNA = const(14)  # GNSS antenna fault / jamming output: rule 344
Z_TILT = const(15)  # tilt or crash: a 24-hour alarm, 174, silent by default
ZONE_TYPES = ("instant", "entry_exit", "follower", "24h", "holdup", "panic",
              "fire", "tamper", "seismic", "door", "bolt",
              "compartment", "vehicle_door", "ignition", "antenna", "tilt")
# alarm code per zone type (bolt: a position sensor, never an alarm; the
# compartment, ignition and antenna: the vehicle rules decide, vunit.py)
ZONE_CODE = (cid.BURGLARY, cid.ENTRY_EXIT, cid.INTERIOR, cid.H24, cid.HOLDUP,
             cid.PANIC, cid.FIRE, cid.SENSOR_TAMPER, cid.H24, cid.ENTRY_EXIT, 0,
             0, cid.ENTRY_EXIT, 0, 0, cid.TILT)
# arming-table event per zone type (-1: a 24-hour type, not in the table)
# walk-test report per zone type (Contact ID 611-615, class "test": the
# receiver never queues them as alarms)
WALK_CODE = (cid.INTRUSION_WALKED, cid.INTRUSION_WALKED, cid.INTRUSION_WALKED,
             cid.INTRUSION_WALKED, cid.PANIC_WALKED, cid.PANIC_WALKED, cid.FIRE_WALKED,
             cid.POINT_TESTED, cid.INTRUSION_WALKED, cid.INTRUSION_WALKED, cid.POINT_TESTED,
             cid.INTRUSION_WALKED, cid.INTRUSION_WALKED, cid.POINT_TESTED, cid.POINT_TESTED,
             cid.INTRUSION_WALKED)
ZONE_EVENT = (A.TRIP_INSTANT, A.TRIP_ENTRY, A.TRIP_FOLLOW, -1, -1, -1, -1, -1, -1,
              A.TRIP_ENTRY, -1, -1, A.TRIP_ENTRY, -1, -1, -1)
# life safety: never swinger-limited, never bypassable
_LIFE = (cid.FIRE, cid.PANIC, cid.HOLDUP, cid.DURESS)
# intrusion zone types: their alarms count towards a confirmed alarm (139)
_INTRUSION = (Z_INSTANT, Z_ENTRY, Z_FOLLOWER, Z_24H, Z_SEISMIC, Z_DOOR, Z_VDOOR)
# zone types never bypassed: the cash compartment (as a hold-up button),
# and the ignition and antenna inputs, which are no alarm to bypass
_NO_BYPASS = (Z_COMPARTMENT, Z_IGNITION, Z_ANTENNA)
# alarms a 406 cancel covers: the burglary and tamper codes the receiver
# queues (protocol/contactid.py), never a life-safety one
_CANCELS = (cid.BURGLARY, cid.INTERIOR, cid.H24, cid.ENTRY_EXIT, cid.BOX_TAMPER,
            cid.CONFIRMED, cid.SENSOR_TAMPER, cid.EXIT_ERROR, cid.FORCED)
# held reports per partition in the abort window; one more ends the window
# (a burst that big is no user error).  A zone adds alarm, restore, 575,
# 139, 459: 24 covers a few zones tripping more than once.
_HELD_MAX = const(24)
# memory_bytes(): partition index bit 7 marks a zone whose report was held
# (in the abort window) when the state was persisted
_M_HELD = const(0x80)
# held reports whose zone field is a user, not a zone
_USER_REPORTS = (cid.EXIT_ERROR_USER, cid.RECENT_CLOSE)
# sounder lines (sounder()): siren, strobe
_SOUNDER_CODE = (cid.SIREN_TROUBLE, cid.STROBE_TROUBLE)
_SOUNDER_NAME = ("siren", "strobe")
_LINE = ("normal", "open", "open", "shorted")  # a sounder line's eol.* state in words

# zone flag bits
_F_SILENT = const(1)
_F_BYPASS = const(2)
_F_SHUT = const(4)  # swinger shutdown
_F_SAB = const(8)  # sabotage (open/short) reported, restore pending
_F_WALKED = const(16)  # walk tested (reported) in the current walk test
_F_VERIFY = const(32)  # fire zone with alarm verification (smoke.py)

# keypad / command actions
K_DISARM = const(0)
K_ARM_AWAY = const(1)
K_ARM_STAY = const(2)
K_UNLOCK = const(3)
K_BYPASS = const(4)
K_UNBYPASS = const(5)
K_STATUS = const(6)
K_WALK_START = const(7)  # installer walk test, whole panel (partition ignored)
K_WALK_END = const(8)
K_AVAILABLE = const(9)  # patrol status: available, dispatched, on scene (vunit.py)
ACTIONS = ("disarm", "arm_away", "arm_stay", "unlock", "bypass", "unbypass", "status",
           "walk_test_start", "walk_test_end", "available", "dispatched", "on_scene")

# A burst of events from one call: a disarm that lifts every bypass of a
# 64-zone panel plus its own reports stays under this.
OUT_MAX = const(96)

# arming modes persisted across power loss (app.py stores them)
MODE_OFF = const(0)
MODE_AWAY = const(1)
MODE_STAY = const(2)

# flags persisted across power loss: a condition reported "new" whose
# restore is owed even if the panel reboots in between
F_TEST_MODE = const(1)  # 607 new sent (console test mode was on)
F_OVERFLOW = const(2)  # 624 new sent (events were dropped)
F_WALK_TEST = const(4)  # 607 new sent for a walk test (restore owed)


def event_text(s):
    """An event text: at most 32 bytes (glwire.MAX_TEXT_LEN), or None."""
    if not s:
        return None
    s = str(s)
    while len(s.encode()) > 32:
        s = s[:-1]
    return s


# Partition flags (Partition.f): one int, not an attribute each (a
# partition's attribute map stays in its smallest size, 19 slots)
P_AUTO_FAIL = const(1)  # 455 reported, restore owed
P_RECENT = const(2)  # 459 raised in this arming period
P_EXIT_LEFT = const(4)  # a delay zone opened and closed in the exit delay
P_EXIT_ERROR = const(8)  # the entry delay running is an exit error
P_CONFIRMED = const(16)  # 139 raised in this arming period
P_SND_TAMPER = const(32)  # 137 sent for a sounder line (restore owed)
_P_PERIOD = const(30)  # reset at each arm/disarm: RECENT, EXIT_LEFT, EXIT_ERROR, CONFIRMED


def _open(tl, wd, mins):
    """Is time lock `tl` (config) open on ISO weekday `wd`, minute `mins`?"""
    return wd in tl["days"] and tl["open"] <= mins < tl["close"]


class Partition:
    def __init__(self, pid, name, time_lock):
        self.id = pid
        self.name = name
        self.tl = time_lock
        self.state = A.DISARMED
        # the running timer: exit or entry delay, or the abort window (in
        # ALARM_HELD), deadline in ticks
        self.due = None
        self.entry_zone = -1
        self.siren_due = None  # siren cut-off deadline, None = siren off
        self.strobe = False
        self.memory = []  # zone ids that alarmed since the last arming
        self.user = 0  # who armed it
        self.how = cid.OPEN_CLOSE  # 401 keypad, 407 remote, 403 auto
        self.f = 0  # P_* flags
        # CP-01 (docs/firmware.md)
        self.pending = []  # reports held in the abort window: (q, code, zone, text)
        self.tx_first = None  # first burglary/tamper alarm queued since the last opening
        self.closed_ms = None  # when the exit delay ended (recent closing)
        self.conf_zone = -1  # first intrusion alarm of the confirmation window
        self.conf_due = None  # its end (ticks)
        self.note = None  # what the keypad shows (words for people)


class _Cond:
    """A supply/tamper condition with a report delay (AC loss is only
    reported after it lasted `delay_ms`; mains flickers are not troubles)."""

    def __init__(self, bit, code, delay_ms):
        self.bit = bit
        self.code = code
        self.delay_ms = delay_ms
        self.since = None
        self.reported = False


class Remote:
    """The receiver operator as a user: authority from the authenticated
    session, never duress."""

    def __init__(self, uid):
        self.id = uid
        self.authority = U.MASTER
        self.duress = False

    def may(self, partition):
        return True


class Panel:
    def __init__(self, cfg, now_ms, log=None):
        tim = cfg["timings"]
        self.kind = _KINDS.get(cfg["kind"], KIND_BANK)
        self.log = log or (lambda s: None)
        self.out = []
        self.overflow = 0
        self.unit = None  # the vehicle unit (vunit.py), made last
        self.exit_ms = tim["exit_delay_s"] * 1000
        self.entry_ms = tim["entry_delay_s"] * 1000
        self.cutoff_ms = tim["siren_cutoff_s"] * 1000
        self.swinger = tim["swinger_limit"]
        self.clock_grace_ms = tim["clock_grace_s"] * 1000
        self.walk_ms = tim["walk_test_s"] * 1000
        self.walk_due = None  # walk-test timeout (ticks) while in walk test
        self.walk_user = 0  # who started it (zone of its 607 new and restore)
        self.abort_ms = tim["abort_window_s"] * 1000
        self.cancel_ms = tim["cancel_window_s"] * 1000
        self.recent_ms = tim["recent_close_s"] * 1000
        self.confirm_ms = tim["confirm_window_s"] * 1000
        opts = cfg.get("options") or {}
        self.abort_report = opts.get("abort_report", False)
        self.same_zone = opts.get("confirm_same_zone", False)
        self.utc_off_s = cfg.get("utc_offset_min", 0) * 60
        # the wall clock the schedules read (wall()): local day number (0:
        # unknown or not trusted), ISO weekday, minute of the day
        self.wday = 0
        self.wdow = 0
        self.wmin = 0
        self.parts = []
        self.pidx = {}
        sched = False
        for p in cfg["partitions"]:
            self.pidx[p["id"]] = len(self.parts)
            self.parts.append(Partition(p["id"], p["name"], p.get("time_lock")))
            sched = sched or p.get("closing") is not None
        zs = cfg["zones"]
        n = len(zs)
        self.nz = n
        self.zid = [z["id"] for z in zs]
        self.zinput = bytearray([z["input"] for z in zs])
        self.zname = [z["name"] for z in zs]
        self.ztype = bytearray([ZONE_TYPES.index(z["type"]) for z in zs])
        self.zpart = bytearray([self.pidx[z["partition"]] for z in zs])
        self.zflags = bytearray(n)
        self.zstate = bytearray(n)  # eol.NORMAL ...
        self.zcode = [0] * n  # alarm code reported, restore pending
        self.swing = bytearray(n)
        verify = []
        for i in range(n):
            if zs[i]["silent"]:
                self.zflags[i] |= _F_SILENT
            if zs[i].get("verify"):
                self.zflags[i] |= _F_VERIFY
                verify.append(i)
        self.users = U.Users(cfg["code_salt"], cfg["users"], tim["lockout_attempts"],
                             tim["lockout_s"] * 1000)
        # troubles
        self.troubles = 0
        self.ac = _Cond(T_AC_LOSS, cid.AC_LOSS, tim["ac_loss_delay_s"] * 1000)
        self.batt = _Cond(T_LOW_BATTERY, cid.LOW_BATTERY, tim["battery_delay_s"] * 1000)
        self.box = _Cond(T_BOX_TAMPER, cid.BOX_TAMPER, 0)
        self.low_mv = tim["low_battery_mv"]
        self.restore_mv = tim["battery_restore_mv"]
        self.battery_mv = 0
        self.boot_ms = now_ms
        self.clock_reported = False
        self.troubles |= T_CLOCK_UNSET
        # a time lock or a scheduled closing: only a trusted clock counts
        self.schedules = sched
        for p in self.parts:
            if p.tl is not None:
                self.schedules = True
        self.ev_fail = [False, False]  # path 1/2 failed an event (354 new sent)
        self.task_fail = []  # names of tasks that died (300 new sent)
        # door controller (door.py), only if there is a door zone
        self.door = None
        d = b = -1
        for i in range(n):
            if self.ztype[i] == Z_DOOR:
                d = i
            elif self.ztype[i] == Z_BOLT:
                b = i
        if d >= 0:
            import door
            self.door = door.Door(self, d, b, tim, now_ms)
        # fire alarm verification (smoke.py), only with a "verify" zone
        self.smoke = None
        if verify:
            import smoke
            self.smoke = smoke.Verifier(self, verify, tim)
        # scheduled closing (closing.py), only with a partition that has one
        self.closing = None
        if sched:
            import closing
            self.closing = closing.Closing(self, cfg["partitions"], tim)
        # sounder supervision (sounder()): siren and strobe lines, read back
        # while not driven, debounced like a zone; NORMAL until read
        self.snd = eol.Debouncer(2, tim["debounce_ms"], now_ms)
        self.snd_read = 0  # bit k: the board reads line k back (supervised)
        self.changed = False  # modes, memory or flags changed: app persists them
        self.test_mode = False
        self.q_over = False  # 624 reported, restore pending
        self.q_lost = 0  # events dropped since that 624
        self.siren = False
        self.strobe = False
        self.lock = True
        self.supply = True  # the resettable detector supply (smoke.py cuts it)
        # the vehicle unit (vunit.py), only for a vehicle kind with its section
        # the wall clock wall() was last given, in UTC (a vehicle's ignition
        # schedule reads it as Unix seconds: unix(), when an input changes)
        self.utc_day = 0
        self.utc_sec = 0
        if cfg.get("vehicle") is not None:
            import vunit
            self.unit = vunit.Unit(self, cfg["vehicle"], self.kind == KIND_PATROL, now_ms,
                                   cfg.get("utc_offset_min", 0))

    # -- reporting ------------------------------------------------------------

    def emit(self, q, code, part, zone, text=None):
        if len(self.out) >= OUT_MAX:
            self.overflow += 1
            return
        self.out.append((q, code, part, zone, text))
        if self.unit is not None:
            self.unit.emitted(q, code)

    def vehicle_event(self, q, code, part, zone, text, now_ms):
        """An event of the vehicle rules (vunit.py).  Their alarms are
        never held (CP-01): what the partition's abort window holds goes
        first, as for any alarm that is not held."""
        if q == Q_NEW and part in self.pidx:
            self._flush(self.parts[self.pidx[part]], now_ms)
        self.emit(q, code, part, zone, text)

    def position(self, now_ms):
        """The position an event queued now carries (vunit.Unit.position),
        None for a fixed panel or a vehicle without a fix yet."""
        return None if self.unit is None else self.unit.position(now_ms)

    def _part_of(self, i):
        return self.parts[self.zpart[i]]

    # -- zones ----------------------------------------------------------------

    def zone_change(self, i, st, now_ms):
        """Zone i has a new debounced state (eol.NORMAL/ALARM/TAMPER/SHORT)."""
        if self.smoke is not None and self.zflags[i] & _F_VERIFY and \
                self.smoke.masked(i, st):
            return  # its detector is being reset: read again afterwards
        old = self.zstate[i]
        if st == old:
            return
        self.zstate[i] = st
        t = self.ztype[i]
        p = self._part_of(i)
        f = self.zflags[i]
        sab = st >= eol.TAMPER
        if sab and not f & _F_SAB:
            self.zflags[i] |= _F_SAB
            code = cid.FIRE_TROUBLE if t == Z_FIRE else (
                cid.SENSOR_TAMPER if st == eol.TAMPER else cid.LOOP_SHORT)
            self.log("zone %d %s" % (self.zid[i], eol.NAMES[st]))
            if t != Z_FIRE and A.is_armed(p.state) and not f & _F_BYPASS:
                # a loop cut or shorted while armed is an alarm
                # (EN 50131-1 8.7: tamper when set), reported as the
                # sabotage code; never held, so what was held goes first
                self._flush(p, now_ms)
                self._tx(p, Q_NEW, code, self.zid[i], None, now_ms)
                self._trip(i, A.TRIP_INSTANT, now_ms, code)
            else:
                self._tx(p, Q_NEW, code, self.zid[i], None, now_ms)
        elif not sab and f & _F_SAB:
            self.zflags[i] &= ~_F_SAB
            code = cid.FIRE_TROUBLE if t == Z_FIRE else (
                cid.SENSOR_TAMPER if old == eol.TAMPER else cid.LOOP_SHORT)
            self.emit(Q_RESTORE, code, p.id, self.zid[i])
        elif sab and t != Z_FIRE and old >= eol.TAMPER:
            # cut to shorted or back: the condition reported changes (a
            # restore always names the code its new named)
            self.emit(Q_RESTORE, cid.SENSOR_TAMPER if old == eol.TAMPER else cid.LOOP_SHORT,
                      p.id, self.zid[i])
            self._tx(p, Q_NEW, cid.SENSOR_TAMPER if st == eol.TAMPER else cid.LOOP_SHORT,
                     self.zid[i], None, now_ms)
        if st == eol.ALARM:
            self._activate(i, now_ms)
        elif old == eol.ALARM:
            self._deactivate(i, now_ms)
        if Z_COMPARTMENT <= t <= Z_ANTENNA and self.unit is not None:
            self._vehicle_input(i, t, old, st, now_ms)

    def _vehicle_input(self, i, t, old, st, now_ms):
        """A vehicle input's zone changed: the vehicle rules (vunit.py).
        Open (or cut, shorted: fail-safe) is open for a compartment, a door
        and the antenna; only ALARM is "on" for the ignition.  Not in walk
        test (there it is walk tested only), nor for a bypassed door."""
        if t == Z_IGNITION:
            on = st == eol.ALARM
            was = old == eol.ALARM
        else:
            on = st != eol.NORMAL
            was = old != eol.NORMAL
        if on == was or self.zflags[i] & _F_BYPASS or self._part_of(i).state == A.WALK_TEST:
            return
        self.unit.input(t - Z_COMPARTMENT, self.zid[i], on, now_ms, self.unix())

    def unix(self):
        """The trusted wall time wall() was last given, in Unix seconds (0:
        unknown or not trusted).  Not for the scan: a long integer on
        32-bit ports."""
        return self.utc_day * 86400 + self.utc_sec if self.utc_day else 0

    def _activate(self, i, now_ms):
        t = self.ztype[i]
        p = self._part_of(i)
        if p.state == A.WALK_TEST:
            # before door, bypass and swinger: the walk tests every zone
            self._walked(i, p)
            return
        if t == Z_DOOR and self.door.opened(now_ms):
            return  # forced entry, reported
        if t == Z_BOLT or t == Z_COMPARTMENT or t == Z_IGNITION or t == Z_ANTENNA:
            return  # no alarm of their own (the vehicle rules: _vehicle_input)
        if self.zflags[i] & (_F_BYPASS | _F_SHUT):
            return
        ev = ZONE_EVENT[t]
        if ev >= 0:
            self._trip(i, ev, now_ms)
            return
        if self.zflags[i] & _F_VERIFY and not self.smoke.verified(i, now_ms):
            return  # a smoke detector's first trip: reset it, alarm on the second
        if t == Z_TAMPER:
            audible = A.is_armed(p.state)
        else:
            audible = not self.zflags[i] & _F_SILENT
        if t == Z_HOLDUP:
            audible = False  # a hold-up is never audible, whatever config says
        self._alarm(p, i, ZONE_CODE[t], audible, now_ms)

    def _walked(self, i, p):
        """Walk test: report zone i tested, once per walk test."""
        if self.zflags[i] & _F_WALKED:
            return
        self.zflags[i] |= _F_WALKED
        self.emit(Q_NEW, WALK_CODE[self.ztype[i]], p.id, self.zid[i])
        self.log("walk test: zone %d (%s) tested" % (self.zid[i], self.zname[i]))

    def _deactivate(self, i, now_ms):
        p = self._part_of(i)
        code = self.zcode[i]
        if code:
            self.zcode[i] = 0
            # the restore of a held alarm is held with it (dropped if aborted)
            held = False
            for r in p.pending:
                if r[0] == Q_NEW and r[1] == code and r[2] == self.zid[i]:
                    held = True
            self._send(p, Q_RESTORE, code, self.zid[i], held, now_ms)
        if p.state in A.EXITING and ZONE_EVENT[self.ztype[i]] == A.TRIP_ENTRY:
            p.f |= P_EXIT_LEFT  # opened and closed: the user went out
        if self.ztype[i] == Z_DOOR:
            self.door.closed(now_ms)

    def _trip(self, i, ev, now_ms, code=0, report=False):
        """A zone event into the arming table.  `code` overrides the
        zone's alarm code; it has already been reported unless `report`."""
        p = self._part_of(i)
        st = p.state
        if ev == A.TRIP_ENTRY and p.f & P_EXIT_LEFT and st in A.EXITING:
            ev = A.EXIT_REENTRY  # back in through the door it went out by
        nxt = A.step(st, ev)  # every zone event has an entry in every state
        if nxt == A.ALARM or nxt == A.ALARM_HELD:
            held = nxt == A.ALARM_HELD
            if not held:
                self._flush(p, now_ms)  # what the window held goes first
            p.state = nxt
            if not held:
                p.due = None
            elif st != A.ALARM_HELD:
                p.due = ticks_add(now_ms, self.abort_ms)  # the window opens
            audible = not self.zflags[i] & _F_SILENT
            if code and not report:
                self._alarm_outputs(p, i, audible, now_ms)
                self._recent(p, False, now_ms)
            else:
                self._alarm(p, i, code or ZONE_CODE[self.ztype[i]], audible, now_ms, held, True)
            self.changed = True
            return
        if nxt == A.ENTRY and st != A.ENTRY:
            p.due = ticks_add(now_ms, self.entry_ms)
            p.entry_zone = i
        elif nxt != st and nxt in A.EXITING:
            p.due = ticks_add(now_ms, self.exit_ms)  # re-entry: exit time restarts, once
            p.f &= ~P_EXIT_LEFT
            self.log("partition %d: exit delay restarted" % p.id)
        p.state = nxt

    def _alarm(self, p, i, code, audible, now_ms, held=False, table=False):
        """Report an alarm for zone i (swinger-limited, held in the abort
        window if `held`) and drive outputs.  `table`: raised by the
        arming table (recent closing applies)."""
        if self.zflags[i] & _F_SHUT:
            return
        zid = self.zid[i]
        if not held:
            self._flush(p, now_ms)  # what the window held goes first
        self._send(p, Q_NEW, code, zid, held, now_ms)
        if code == cid.EXIT_ERROR:
            self._send(p, Q_NEW, cid.EXIT_ERROR_USER, p.user, held, now_ms)
        if self.zstate[i] == eol.ALARM:
            self.zcode[i] = code  # restore when the zone returns to normal
        self.log("ALARM %d zone %d (%s) partition %d%s" % (
            code, zid, self.zname[i], p.id, " (held: abort window)" if held else ""))
        if code not in _LIFE:
            self.swing[i] += 1
            if self.swing[i] >= self.swinger:
                self.zflags[i] |= _F_SHUT
                self._send(p, Q_NEW, cid.SWINGER, zid, held, now_ms)
                self.log("zone %d shut down: %d alarms (swinger)" % (zid, self.swing[i]))
        if self.ztype[i] in _INTRUSION:
            self._confirm(p, i, held, now_ms)
        if table:
            self._recent(p, held, now_ms)
        self._alarm_outputs(p, i, audible, now_ms)

    def _alarm_outputs(self, p, i, audible, now_ms):
        zid = self.zid[i]
        if zid not in p.memory:
            p.memory.append(zid)
            self.changed = True  # alarm memory survives a power loss
        if audible:
            p.siren_due = ticks_add(now_ms, self.cutoff_ms)
            p.strobe = True

    # -- CP-01: abort window, cancel, recent closing, confirmation -------------

    def _send(self, p, q, code, zid, held, now_ms, text=None):
        """A report of partition p: held in its abort window, or queued."""
        if held and p.state == A.ALARM_HELD and len(p.pending) < _HELD_MAX:
            p.pending.append((q, code, zid, text))
            self.changed = True  # persisted: a restart sends it (memory_bytes)
            return
        if held:
            self._flush(p, now_ms)  # a burst that big is no user error: send all
        self._tx(p, q, code, zid, text, now_ms)

    def _tx(self, p, q, code, zid, text, now_ms):
        """Queue a report of partition p.  The first burglary or tamper
        alarm since the partition's last opening opens the cancel window."""
        self.emit(q, code, p.id, zid, text)
        if q == Q_NEW and p.tx_first is None and code in _CANCELS:
            p.tx_first = now_ms

    def _flush(self, p, now_ms):
        """The abort window ends (ran out, an alarm that is never held, a
        duress code): the held reports are queued, in order."""
        if p.state != A.ALARM_HELD:
            return
        p.state = A.step(p.state, A.ABORT_END)
        p.due = None
        held = p.pending
        p.pending = []
        for q, code, zid, text in held:
            self._tx(p, q, code, zid, text, now_ms)
        self.changed = True
        self.log("partition %d: abort window over, %d reports sent" % (p.id, len(held)))

    def _recent(self, p, held, now_ms):
        """Recent closing (CP-01): a table alarm during the exit delay or
        within recent_close_s after it reports 459 with the user who armed,
        once per arming period."""
        if p.f & P_RECENT or (p.closed_ms is not None and
                              ticks_diff(now_ms, p.closed_ms) >= self.recent_ms):
            return
        p.f |= P_RECENT
        self._send(p, Q_NEW, cid.RECENT_CLOSE, p.user, held, now_ms)

    def _confirm(self, p, i, held, now_ms):
        """Sequential confirmation: a second intrusion alarm in the
        partition within confirm_window_s of the first, from another zone
        (or the same, with options.confirm_same_zone), reports 139."""
        if p.f & P_CONFIRMED:
            return
        if p.conf_due is None or due(now_ms, p.conf_due):
            p.conf_zone = i  # the first: the window opens
            p.conf_due = ticks_add(now_ms, self.confirm_ms)
            return
        if i == p.conf_zone and not self.same_zone:
            return
        p.f |= P_CONFIRMED
        first = self.zid[p.conf_zone]
        self.log("CONFIRMED alarm partition %d: zones %d and %d" % (p.id, first, self.zid[i]))
        self._send(p, Q_NEW, cid.CONFIRMED, self.zid[i], held, now_ms, "with zone %d" % first)

    def _abort(self, p, user):
        """A valid code disarmed inside the abort window: the held reports
        are dropped.  Reported (406 "abort") only with options.abort_report
        and when nothing was sent since the last opening (a 406 then covers
        no alarm at the receiver)."""
        n = len(p.pending)
        for q, code, zid, _t in p.pending:
            i = self.zid.index(zid) if q == Q_NEW and zid in self.zid else -1
            if i >= 0 and self.zcode[i] == code:
                self.zcode[i] = 0  # no restore for an alarm never sent
        p.pending = []
        self.changed = True
        p.note = "alarm aborted: not sent"
        self.log("partition %d: alarm ABORTED by user %d, %d reports not sent" % (p.id, user.id, n))
        if self.abort_report and p.tx_first is None:
            self.emit(Q_NEW, cid.CANCEL, p.id, user.id, "abort")

    # -- sounder supervision ------------------------------------------------------

    def sounder(self, k, st, now_ms):
        """Sounder line k (0 siren, 1 strobe) read as `st` (eol.NORMAL,
        ALARM, TAMPER, SHORT: an EOL on the line, read back through an ADC).
        Only read while the output is off (driven, the line shows the
        supply).  Open or shorted: 321/322 trouble and restore; cut while
        a partition is armed: a tamper alarm (137) there."""
        self.snd_read |= 1 << k
        if self.siren if k == 0 else self.strobe:
            return
        old = self.snd.stable[k]
        new = self.snd.update(k, st, now_ms)
        if new >= 0 and (new == eol.NORMAL) != (old == eol.NORMAL):
            self._line_change(k, new, now_ms)

    def _line_change(self, k, new, now_ms):
        """Sounder line k went from normal to `new` or back (sounder(),
        which runs every scan, keeps a small frame: fwutil.py)."""
        name = _SOUNDER_NAME[k]
        if new == eol.NORMAL:
            self.emit(Q_RESTORE, _SOUNDER_CODE[k], 0, 0)
            self.log("%s line normal" % name)
            if self.snd.stable[1 - k] == eol.NORMAL:
                for p in self.parts:
                    if p.f & P_SND_TAMPER:
                        p.f &= ~P_SND_TAMPER
                        self.emit(Q_RESTORE, cid.BOX_TAMPER, p.id, 0)
            return
        what = "%s line %s" % (name, "shorted" if new == eol.SHORT else "open")
        self.log(what)
        self.emit(Q_NEW, _SOUNDER_CODE[k], 0, 0, what)
        for p in self.parts:
            if A.is_armed(p.state) and not p.f & P_SND_TAMPER:
                p.f |= P_SND_TAMPER
                self._flush(p, now_ms)
                p.state = A.step(p.state, A.TRIP_INSTANT)
                p.due = None
                self._tx(p, Q_NEW, cid.BOX_TAMPER, 0, what, now_ms)
                # the other one sounds or flashes (the cut one is left
                # undriven, so its restore is read back)
                if k == 1:
                    p.siren_due = ticks_add(now_ms, self.cutoff_ms)
                else:
                    p.strobe = True
                self.changed = True

    # -- timers -----------------------------------------------------------------

    def tick(self, now_ms, unix=0):
        """Timers.  `unix`: wall time for schedules (time lock, scheduled
        closing), 0 when unknown: they then do nothing that opens or arms.
        The scan gives the wall time as the clock keeps it instead (wall(),
        then timers()): Unix seconds are a long integer on 32-bit ports."""
        self.wall(unix // 86400, unix % 86400)
        self.timers(now_ms)

    def wall(self, day, sec):
        """The wall clock for the schedules, as clock.py keeps it: the UTC
        day number (0: unknown or not trusted) and the second of that day.
        Small ints on every port (fwutil.py)."""
        self.utc_day = day
        self.utc_sec = sec
        if not day:
            self.wday = 0
            return
        sec += self.utc_off_s  # |offset| < a day
        if sec < 0:
            day -= 1
            sec += 86400
        elif sec >= 86400:
            day += 1
            sec -= 86400
        self.wday = day
        self.wdow = (day + 3) % 7 + 1  # ISO weekday; 1970-01-01 was a Thursday (4)
        self.wmin = sec // 60

    # timers() and what it calls every scan keep small frames, the work of
    # a deadline goes into a helper called then (fwutil.py)
    def timers(self, now_ms):
        """The timers at `now_ms`, with the wall clock wall() last set."""
        if self.walk_due is not None and due(now_ms, self.walk_due):
            self.log("walk test timed out")
            self._walk_end()
        for k in range(len(self.parts)):
            self._part_timers(self.parts[k], now_ms)
        if self.door is not None:
            self.door.tick(now_ms)
        if self.smoke is not None:
            self.smoke.tick(now_ms)
        if self.closing is not None:
            self.closing.tick(now_ms)
        if self.unit is not None:
            self.unit.tick(now_ms)
        if self.troubles & T_CLOCK_UNSET and not self.clock_reported and \
                ticks_diff(now_ms, self.boot_ms) >= self.clock_grace_ms:
            self.clock_reported = True
            self.emit(Q_NEW, cid.CLOCK_UNSET, 0, 0)
        self._outputs()

    def _part_timers(self, p, now_ms):
        if p.due is not None and due(now_ms, p.due):
            p.due = None
            self._deadline(p, now_ms)
        if p.siren_due is not None and due(now_ms, p.siren_due):
            p.siren_due = None  # cut-off; strobe stays until disarm
            self.log("siren cut-off partition %d" % p.id)
        if p.tl is not None and self.wday:
            self._time_lock(p, now_ms)

    def _deadline(self, p, now_ms):
        """Partition p's deadline (p.due) has come."""
        if p.state == A.ENTRY:
            p.state = A.step(p.state, A.ENTRY_END)
            p.due = ticks_add(now_ms, self.abort_ms)  # the abort window
            i = p.entry_zone
            code = cid.EXIT_ERROR if p.f & P_EXIT_ERROR else ZONE_CODE[self.ztype[i]]
            self._alarm(p, i, code, not self.zflags[i] & _F_SILENT, now_ms,
                        p.state == A.ALARM_HELD, True)
            self.changed = True
        elif p.state in A.EXITING:
            self._exit_end(p, now_ms)
        elif p.state == A.ALARM_HELD:
            self._flush(p, now_ms)  # the abort window ran out

    def _outputs(self):
        s = False
        b = False
        for p in self.parts:
            if p.siren_due is not None:
                s = True
            if p.strobe:
                b = True
        self.siren = s
        self.strobe = b
        self.lock = self.door is None or self.door.grant_due is None
        self.supply = self.smoke is None or self.smoke.supply()

    def _exit_end(self, p, now_ms):
        """The exit delay ran out: armed.  A delay zone still open is an
        exit error (CP-01): the entry delay starts instead of an alarm, and
        if nobody disarms, the alarm is 374 (the zone) and 457 (the user)."""
        stay = p.state in A.STAY
        left = -1
        for i in range(self.nz):
            if self.zpart[i] == self.pidx[p.id] and ZONE_EVENT[self.ztype[i]] == A.TRIP_ENTRY \
                    and self.zstate[i] == eol.ALARM and not self.zflags[i] & (_F_BYPASS | _F_SHUT):
                left = i
                break
        p.state = A.step(p.state, A.EXIT_END if left < 0 else A.EXIT_ERROR)
        p.closed_ms = now_ms
        code = cid.ARMED_STAY if stay and p.how == cid.OPEN_CLOSE else p.how
        self.emit(Q_RESTORE, code, p.id, p.user)  # closing
        self.changed = True
        if left >= 0:
            p.f |= P_EXIT_ERROR
            p.entry_zone = left
            p.due = ticks_add(now_ms, self.entry_ms)
            p.note = "exit error: %s open" % self.zname[left]
            self.log("partition %d: exit error, zone %d open: entry delay" % (p.id, self.zid[left]))

    # -- time lock (bank vault) ---------------------------------------------------

    def local(self, unix):
        """(day number, ISO weekday 1..7, minute of the day) in local time
        (utc_offset_min) of Unix seconds `unix`."""
        local = unix + self.utc_off_s
        day = local // 86400
        return day, (day + 3) % 7 + 1, (local // 60) % 1440  # 1970-01-01: a Thursday (ISO 4)

    def in_window(self, p, unix):
        """Is the time lock of partition p open at `unix`?  Clock unset: no
        (fail secure: a vault is not opened on a guess)."""
        if p.tl is None:
            return True
        if not unix:
            return False
        _day, wd, mins = self.local(unix)
        return _open(p.tl, wd, mins)

    def _time_lock(self, p, now_ms):
        # Outside the window a time-locked partition is armed: at close
        # time, after a power loss at night, or if someone managed to
        # disarm it.  Disarming is refused outside (user_action).  The
        # window is read on the wall clock (wall(): known and trusted).
        if p.state != A.DISARMED or _open(p.tl, self.wdow, self.wmin):
            return
        self.auto_arm(p, now_ms)

    def auto_arm(self, p, now_ms):
        """Arm partition p away by itself (time lock, scheduled closing):
        403 closing at the end of the exit delay; if a zone prevents it,
        455 "auto-arm failed" once (restored when it is next armed)."""
        if self._ready(p, False):
            self._arm(p, A.ARM_AWAY, 0, cid.AUTO_OPEN_CLOSE, now_ms)
            return True
        if not p.f & P_AUTO_FAIL:
            p.f |= P_AUTO_FAIL
            self.emit(Q_NEW, cid.AUTO_ARM_FAILED, p.id, 0)
            self.log("partition %d not ready to arm by itself" % p.id)
        return False

    # -- users ----------------------------------------------------------------------

    def keypad(self, code, action, partition, arg, now_ms, unix=0):
        """A code entered at a keypad or reader.  Returns a glwire R_*."""
        res, user = self.users.check(code, now_ms)
        if res == U.LOCKOUT_STARTED:
            self.emit(Q_NEW, cid.WRONG_CODE, partition, 0)
            self.log("keypad locked out")
            return R_REFUSED
        if res != U.OK:
            return R_REFUSED
        if user.duress:
            # first, whatever the action and whether it succeeds
            self.emit(Q_NEW, cid.DURESS, partition, user.id)
        return self.user_action(user, action, partition, arg, now_ms, unix)

    def command(self, cmd, partition, arg, user, now_ms, unix=0):
        """A receiver COMMAND (authenticated by the session)."""
        if cmd == CMD_STATUS:
            return R_OK
        action = (-1, -1, K_ARM_AWAY, K_ARM_STAY, K_DISARM, K_BYPASS, K_UNBYPASS)[cmd]
        return self.user_action(Remote(user), action, partition, arg, now_ms, unix, True)

    def user_action(self, user, action, partition, arg, now_ms, unix=0, remote=False):
        if action == K_STATUS:
            return R_OK
        if action == K_WALK_START or action == K_WALK_END:
            return self._walk(user, action == K_WALK_START, now_ms)
        if action >= K_AVAILABLE:
            # a patrol car's status, set by its crew (docs/mobile.md)
            if self.unit is None or not self.unit.patrol or remote:
                return R_UNSUPPORTED
            self.unit.set_status(action - K_AVAILABLE, partition if partition in self.pidx
                                 else 0, user.id)
            return R_OK
        if action == K_BYPASS or action == K_UNBYPASS:
            return self._bypass(user, action == K_BYPASS, arg)
        if partition not in self.pidx:
            return R_BAD_ARGUMENT
        p = self.parts[self.pidx[partition]]
        if not user.may(partition):
            return R_REFUSED
        how = cid.REMOTE_OPEN_CLOSE if remote else cid.OPEN_CLOSE
        if action == K_UNLOCK:
            if self.door is None:
                return R_UNSUPPORTED
            if p.state != A.DISARMED:
                r = self._disarm(p, user, how, now_ms, unix)
                if r != R_OK:
                    return r
            self.door.unlock(now_ms)
            self._outputs()
            return R_OK
        if action == K_DISARM:
            return self._disarm(p, user, how, now_ms, unix)
        ev = A.ARM_AWAY if action == K_ARM_AWAY else A.ARM_STAY
        if ev not in A.TRANSITIONS[p.state]:
            return R_REFUSED
        if not self._ready(p, ev == A.ARM_STAY):
            self.log("partition %d not ready" % p.id)
            return R_REFUSED
        self._arm(p, ev, user.id, how, now_ms)
        return R_OK

    # -- walk test -----------------------------------------------------------------

    def _walk(self, user, start, now_ms):
        """Start or end the installer walk test: a master code that may
        operate every partition, and every partition in a state whose row
        has the event (start: all disarmed; end: all in walk test)."""
        if user.authority < U.MASTER or not self.parts:
            return R_REFUSED
        ev = A.WALK_START if start else A.WALK_END
        for p in self.parts:
            if not user.may(p.id) or ev not in A.TRANSITIONS[p.state]:
                return R_REFUSED
        if not start:
            self._walk_end()
            return R_OK
        for p in self.parts:
            p.state = A.step(p.state, ev)
        for i in range(self.nz):
            self.zflags[i] &= ~_F_WALKED
        self.walk_due = ticks_add(now_ms, self.walk_ms)
        self.walk_user = user.id
        self.changed = True
        self.emit(Q_NEW, cid.TEST_MODE, 0, user.id, "walk test")
        self.log("walk test started by user %d" % user.id)
        return R_OK

    def _walk_end(self):
        for p in self.parts:
            p.state = A.step(p.state, A.WALK_END)
        self.walk_due = None
        self.changed = True
        self.emit(Q_RESTORE, cid.TEST_MODE, 0, self.walk_user, "walk test")
        self.log("walk test ended")

    def walk_test(self):
        return self.walk_due is not None

    def _ready(self, p, stay):
        pi = self.pidx[p.id]
        for i in range(self.nz):
            if self.zpart[i] != pi or self.zflags[i] & (_F_BYPASS | _F_SHUT):
                continue
            st = self.zstate[i]
            t = self.ztype[i]
            if st >= eol.TAMPER:
                return False
            if st == eol.ALARM and (t == Z_INSTANT or (t == Z_FOLLOWER and not stay)):
                return False
        return True

    def _arm(self, p, ev, uid, how, now_ms):
        p.state = A.step(p.state, ev)
        p.due = ticks_add(now_ms, self.exit_ms)
        p.user = uid
        p.how = how
        p.memory = []
        if p.f & P_AUTO_FAIL:
            p.f &= ~P_AUTO_FAIL
            self.emit(Q_RESTORE, cid.AUTO_ARM_FAILED, p.id, 0)
        self._reset_period(p)
        self.changed = True
        self.log("partition %d arming (%s)" % (p.id, A.STATE_NAMES[p.state]))

    def _disarm(self, p, user, how, now_ms, unix):
        if p.tl is not None and not self.in_window(p, unix):
            self.emit(Q_NEW, cid.ACCESS_DENIED, p.id, user.id)
            self.log("time lock closed: partition %d stays armed" % p.id)
            return R_REFUSED
        was = p.state
        if user.duress:
            self._flush(p, now_ms)  # forced to disarm: never an abort, never a cancel
        elif was == A.ALARM_HELD:
            self._abort(p, user)
        p.state = A.step(p.state, A.DISARM)
        p.due = None
        p.siren_due = None
        p.strobe = False
        if A.is_armed(was):
            if not user.duress and p.tx_first is not None and \
                    ticks_diff(now_ms, p.tx_first) <= self.cancel_ms:
                # before the opening: a receiver attaches it to the alarms
                # of the partition since its previous opening
                secs = ticks_diff(now_ms, p.tx_first) // 1000
                self.emit(Q_NEW, cid.CANCEL, p.id, user.id, "cancel")
                p.note = "alarm cancelled: cancel sent"
                self.log("partition %d: alarm CANCELLED by user %d, %d s after it was sent"
                         % (p.id, user.id, secs))
            self.emit(Q_NEW, how, p.id, user.id)  # opening
            p.tx_first = None
            self.changed = True
        if self.closing is not None:
            self.closing.disarmed(p, user)
        self._reset_period(p)
        self._outputs()
        return R_OK

    def _reset_period(self, p):
        """Start of an arming period (arm or disarm): swinger counts,
        bypasses (at disarm), confirmation and the CP-01 period flags reset."""
        pi = self.pidx[p.id]
        for i in range(self.nz):
            if self.zpart[i] != pi:
                continue
            self.swing[i] = 0
            if self.zflags[i] & _F_SHUT:
                self.zflags[i] &= ~_F_SHUT
                self.emit(Q_RESTORE, cid.SWINGER, p.id, self.zid[i])
            if self.zflags[i] & _F_BYPASS and p.state == A.DISARMED:
                self.zflags[i] &= ~_F_BYPASS
                self.emit(Q_RESTORE, cid.BYPASS, p.id, self.zid[i])
        p.conf_due = None
        p.conf_zone = -1
        p.closed_ms = None
        p.f &= ~_P_PERIOD
        if p.state != A.DISARMED:
            p.note = None  # a new arming: the last period's words go

    def _bypass(self, user, on, zone_id):
        if user.authority < U.MANAGER:
            return R_REFUSED
        if zone_id not in self.zid:
            return R_BAD_ARGUMENT
        i = self.zid.index(zone_id)
        p = self._part_of(i)
        if ZONE_CODE[self.ztype[i]] in _LIFE or self.ztype[i] in _NO_BYPASS \
                or not user.may(p.id):
            return R_REFUSED
        if p.state != A.DISARMED:
            return R_REFUSED
        if bool(self.zflags[i] & _F_BYPASS) == on:
            return R_OK
        if on:
            self.zflags[i] |= _F_BYPASS
        else:
            self.zflags[i] &= ~_F_BYPASS
        self.emit(Q_NEW if on else Q_RESTORE, cid.BYPASS, p.id, zone_id)
        return R_OK

    # -- supplies, box tamper, clock, paths ----------------------------------------------

    def _cond(self, c, active, now_ms):
        if active:
            if c.since is None:
                c.since = now_ms
            if not c.reported and ticks_diff(now_ms, c.since) >= c.delay_ms:
                c.reported = True
                self.troubles |= c.bit
                self.emit(Q_NEW, c.code, 0, 0)
        else:
            c.since = None
            if c.reported:
                c.reported = False
                self.troubles &= ~c.bit
                self.emit(Q_RESTORE, c.code, 0, 0)

    def supplies(self, ac_ok, battery_mv, box_open, now_ms):
        self.battery_mv = battery_mv
        self._cond(self.ac, not ac_ok, now_ms)
        low = battery_mv < (self.restore_mv if self.batt.reported else self.low_mv)
        self._cond(self.batt, low, now_ms)
        self._cond(self.box, box_open, now_ms)

    def clock_set(self, trusted=True):
        """The wall clock was set, by an authenticated source (`trusted`)
        or not (a clear DC-09 reply: clock.py).  A panel with a time lock
        or a scheduled closing counts only a trusted clock as set:
        otherwise T_CLOCK_UNSET stays (626 after clock_grace_s), the lock
        stays shut (fail secure) and no closing arms (fail safe)."""
        if not trusted and self.schedules:
            self.troubles |= T_CLOCK_UNSET
            return
        if self.troubles & T_CLOCK_UNSET:
            self.troubles &= ~T_CLOCK_UNSET
            if self.clock_reported:
                self.clock_reported = False
                self.emit(Q_RESTORE, cid.CLOCK_UNSET, 0, 0)

    def path_state(self, path, ok):
        """Reporting path 1 or 2 is down/up (from the reporter)."""
        bit = T_PATH1_FAIL if path == 1 else T_PATH2_FAIL
        if ok == (not self.troubles & bit):
            return
        if ok:
            self.troubles &= ~bit
        else:
            self.troubles |= bit
        self.emit(Q_RESTORE if ok else Q_NEW, cid.COMM_TROUBLE, 0, path)

    def path_events(self, path, ok, why=None):
        """Reporting path 1 or 2 failed an event although it answers (NAKs
        it: a full disk, a wrong key; failover.py), or accepts events
        again: 354 "failure to communicate event", zone = path, the
        reason as text (native protocol only; DC-09 carries no text)."""
        k = path - 1
        if k < 0 or k >= len(self.ev_fail) or ok == (not self.ev_fail[k]):
            return
        self.ev_fail[k] = not ok
        self.emit(Q_RESTORE if ok else Q_NEW, cid.COMM_EVENT_FAIL, 0, path,
                  None if ok else event_text(why))

    def task_state(self, name, ok, why=None):
        """A firmware task died and was restarted (app.py supervises
        them), or runs again: 300 "system trouble", zone 0, the task and
        the error as text."""
        if ok == (name not in self.task_fail):
            return
        if ok:
            self.task_fail.remove(name)
        else:
            self.task_fail.append(name)
        self.emit(Q_RESTORE if ok else Q_NEW, cid.SYSTEM_TROUBLE, 0, 0,
                  event_text("%s task %s" % (name, "runs again" if ok else why or "died")))

    # -- state ---------------------------------------------------------------------------

    def wire_states(self):
        return [A.WIRE_STATE[p.state] for p in self.parts]

    def modes(self):
        """Arming mode per partition, for persisting across power loss."""
        out = bytearray(len(self.parts))
        for k in range(len(self.parts)):
            st = self.parts[k].state
            if st in A.STAY:
                out[k] = MODE_STAY
            elif A.is_armed(st):
                out[k] = MODE_AWAY  # entry delay and alarm come back armed
        return out

    def restore_modes(self, modes):
        """After a power loss: partitions come back armed as they were
        (no exit delay: nobody is leaving)."""
        for k in range(min(len(modes), len(self.parts))):
            p = self.parts[k]
            if modes[k] == MODE_AWAY:
                p.state = A.ARMED_AWAY
            elif modes[k] == MODE_STAY:
                p.state = A.ARMED_STAY

    def memory_bytes(self):
        """Alarm memory for persisting: (partition index u8, zone id u16)
        per entry; bit 7 of the index (_M_HELD) marks a zone whose alarm
        was held in the abort window."""
        out = bytearray()
        for k in range(len(self.parts)):
            p = self.parts[k]
            for zid in p.memory:
                held = 0
                for r in p.pending:
                    if r[0] == Q_NEW and r[2] == zid and r[1] not in _USER_REPORTS:
                        held = _M_HELD
                out.append(k | held)
                out.append(zid >> 8)
                out.append(zid & 0xFF)
        return out

    def restore_memory(self, b):
        """After a power loss: the alarm memory as it was.  Entries for a
        zone no longer configured in that partition are ignored (the
        config may have changed between the two boots).  A zone whose
        alarm was held in the abort window when the power went is
        reported now: a restart (a crash, a watchdog reset, a cut supply)
        must not turn into an abort."""
        for j in range(0, len(b) - 2, 3):
            k = b[j] & ~_M_HELD
            zid = (b[j + 1] << 8) | b[j + 2]
            if k >= len(self.parts) or zid not in self.zid:
                continue
            i = self.zid.index(zid)
            if self.zpart[i] != k:
                continue
            p = self.parts[k]
            if zid not in p.memory:
                p.memory.append(zid)
            if b[j] & _M_HELD:
                self.emit(Q_NEW, ZONE_CODE[self.ztype[i]], p.id, zid, "held at restart")
                self.log("zone %d: alarm held at the restart, sent" % zid)

    def flags(self):
        return (F_TEST_MODE if self.test_mode else 0) | (F_OVERFLOW if self.q_over else 0) | \
            (F_WALK_TEST if self.walk_due is not None else 0)

    def boot_report(self, flags, test_mode):
        """At boot, with the flags persisted by the last run: 607 new
        while console test mode is on (every boot: the receiver must not
        miss that a panel runs in test mode), 607 restore on the first
        boot with it off again; a 624 still open stays open."""
        self.test_mode = bool(test_mode)
        if self.test_mode:
            self.emit(Q_NEW, cid.TEST_MODE, 0, 0, "console test mode")
        elif flags & F_TEST_MODE:
            self.emit(Q_RESTORE, cid.TEST_MODE, 0, 0)
        if flags & F_WALK_TEST:
            # a power loss ended a walk test (it is never resumed): its
            # restore is owed; who started it was not persisted (zone 0)
            self.emit(Q_RESTORE, cid.TEST_MODE, 0, 0, "walk test")
        self.q_over = bool(flags & F_OVERFLOW)
        self.changed = True

    def queue_state(self, lost, depth, slots):
        """From the edge after queueing: `lost` events dropped since the
        last call (here or from the full queue), `depth` records queued of
        `slots`.  The first loss reports 624 new (zone = events lost so
        far, at most 999: the Contact ID zone field); once the queue has
        drained to half, 624 restore with the total lost.  Half, not
        "one slot free", so a queue that hovers at full does not send a
        new/restore pair for every event."""
        if lost:
            self.q_lost += lost
            if not self.q_over:
                self.q_over = True
                self.changed = True
                self.log("event queue full: %d events dropped" % self.q_lost)
                self.emit(Q_NEW, cid.LOG_OVERFLOW, 0, min(self.q_lost, 999))
        elif self.q_over and depth <= slots // 2:
            self.q_over = False
            self.changed = True
            self.emit(Q_RESTORE, cid.LOG_OVERFLOW, 0, min(self.q_lost, 999))
            self.q_lost = 0

    def _line(self, k):
        """Sounder line k in words."""
        return _LINE[self.snd.stable[k]] if self.snd_read & (1 << k) else "not supervised"

    def status(self, with_zones=True):
        parts = []
        for p in self.parts:
            parts.append({"id": p.id, "name": p.name, "state": A.STATE_NAMES[p.state],
                          "memory": p.memory, "siren": p.siren_due is not None,
                          "strobe": p.strobe, "held": len(p.pending), "keypad": p.note})
        zones = []
        for i in range(self.nz if with_zones else 0):
            f = self.zflags[i]
            zones.append({"id": self.zid[i], "state": eol.NAMES[self.zstate[i]],
                          "bypassed": bool(f & _F_BYPASS), "shutdown": bool(f & _F_SHUT)})
        out = {"partitions": parts, "zones": zones, "troubles": self.troubles,
                "siren": self.siren, "strobe": self.strobe, "lock": self.lock,
                "supply": self.supply,
                "sounders": {"siren": self._line(0), "strobe": self._line(1)},
                "door_held": self.door is not None and self.door.held,
                "walk_test": self.walk_due is not None,
                "lockout": self.users.locked_at is not None}
        if self.unit is not None:
            out["vehicle"] = self.unit.state()
        return out
