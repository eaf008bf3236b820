# Panel configuration: one JSON file, validated at boot.
#
# This module is in the shared subset: it runs on the panel (MicroPython)
# and on the host (`guardline-panel check CONFIG`), so it imports nothing
# but json and cfgutil (the type names and error list every validator
# shares), and vehicle_config for a vehicle unit's "vehicle" section; it
# uses no CPython-only syntax.
#
# validate(doc) returns (cfg, errors).  `errors` is a list of strings that
# each start with the path of the field at fault, e.g.
#     zones[3].type: 'instnat' is not one of instant, entry_exit, ...
# `cfg` is the document with defaults filled in; it is only meant to be
# used when `errors` is empty.  comms_ok(cfg) tells whether the parts the
# reporter needs (account, key, receiver) are good even if the rest is
# not: then the panel runs in safe mode and reports T_CONFIG instead of
# running half-configured (docs/firmware.md, "Bad configuration").
#
# Invariants:
# - No exception escapes validate() for any JSON value; a wrong type is an
#   error message, never a crash (the panel must report, not reboot-loop).
# - Every number the firmware later packs into a wire field is range
#   checked here against that field's width (glwire: zone u16, partition
#   u8, account u32, heartbeat u32 seconds).

import json
from cfgutil import Errors, type_name

# "vehicle": a cash-in-transit van; "patrol": a patrol car, the same unit
# with a status its crew sets from the keypad (docs/mobile.md)
KINDS = ("door", "bank", "vehicle", "patrol")
VEHICLE_KINDS = ("vehicle", "patrol")
ZONE_TYPES = ("instant", "entry_exit", "follower", "24h", "holdup", "panic",
              "fire", "tamper", "seismic", "door", "bolt",
              "compartment", "vehicle_door", "ignition", "antenna", "tilt")
# zone types of a vehicle unit only (docs/mobile.md, "Inputs"), and those
# a vehicle has at most one of (the rules know one ignition, one antenna)
VEHICLE_ZONES = ("compartment", "vehicle_door", "ignition", "antenna", "tilt")
_ONE_PER_VEHICLE = ("ignition", "antenna")
AUTHORITIES = ("user", "manager", "master")
PATH_TYPES = ("tcp", "udp", "serial")
# What the panel speaks to its receivers: Guardline's native protocol, or
# SIA DC-09 (ADM-CID, clear or AES) to any standard central-station receiver.
PROTOCOLS = ("native", "dc09")
DC09_KEY_FORMATS = ("hex", "ascii")
_HEXDIGITS = "0123456789ABCDEFabcdef"

# Bounds, each from the field that carries it or from the device budget.
MAX_ZONES = 64  # HELLO carries zones in a u8; 64 keeps RAM per zone bounded
MAX_PARTITIONS = 8  # glwire.MAX_PARTITIONS (HEARTBEAT/REPLY partition list)
MAX_USERS = 64  # one sha256 (32 bytes) each held in RAM
MAX_NAME = 32  # glwire.MAX_TEXT_LEN: a name may be sent as EVENT text

# timing defaults (seconds unless the key says _ms); (default, min, max).
# The false-alarm reduction timings follow ANSI/SIA CP-01 (docs/firmware.md,
# "CP-01": default and allowed range of each, and where they differ).
TIMINGS = {
    "exit_delay_s": (60, 0, 255),  # CP-01 default 60 s (45..255 there; 0 for a bench)
    "entry_delay_s": (30, 0, 255),
    "siren_cutoff_s": (180, 1, 1800),  # EN 50131-4: at most 15 min typical
    "debounce_ms": (300, 0, 5000),
    "scan_ms": (50, 5, 1000),
    "heartbeat_s": (60, 20, 86400),  # the issue: 20 s .. 24 h
    "backup_heartbeat_s": (600, 20, 86400),
    "ac_loss_delay_s": (60, 0, 3600),
    "battery_delay_s": (10, 0, 3600),
    "low_battery_mv": (11500, 0, 65535),
    "battery_restore_mv": (12200, 0, 65535),
    "lockout_attempts": (5, 1, 50),
    "lockout_s": (90, 1, 3600),
    # alarms a zone may report per arming period before swinger shutdown
    # (575); CP-01: 1..6 trips, default 2
    "swinger_limit": (2, 1, 6),
    # CP-01 abort window: an entry/exit or interior alarm is held this long
    # (15..45 s, default 30 s) and not sent if a valid code disarms in it
    "abort_window_s": (30, 15, 45),
    # CP-01 cancel window: a disarm this soon after an alarm was sent sends
    # 406 cancel (at least 5 min); an hour at most
    "cancel_window_s": (300, 300, 3600),
    # CP-01 recent closing: an alarm this soon after the exit delay ended
    # also sends 459 with the user who armed (2 min; up to 10 min)
    "recent_close_s": (120, 120, 600),
    # confirmed alarm (139): a second intrusion zone of the partition within
    # this long of the first (EN 50131-9 / DD 243 sequential confirmation:
    # 30..60 min; down to 1 min for a small site)
    "confirm_window_s": (1800, 60, 3600),
    # fire alarm verification (zones with "verify": true, smoke detectors,
    # NFPA 72 alarm verification): the first trip cuts the detector supply
    # for fire_reset_s (retard-reset-restart: at most 60 s in all), a second
    # trip within fire_verify_s after it is the alarm (at most 2 min)
    "fire_reset_s": (10, 1, 60),
    "fire_verify_s": (120, 60, 120),
    # scheduled closing (partitions[].closing): the keypad warns this long
    # before the panel arms (or, prompt only, asks to be armed); 30 s is the least
    # time to reach a keypad
    "closing_warn_s": (300, 30, 1800),
    "door_held_open_s": (30, 1, 3600),
    "unlock_s": (5, 1, 255),
    "bolt_timeout_s": (10, 1, 255),
    "clock_grace_s": (60, 0, 86400),
    # installer walk test: ends by itself after this (a panel is never
    # left in walk test, where no zone raises an alarm); 30 min covers a
    # walk of a large site, 4 h is the most an installer may ask for
    "walk_test_s": (1800, 10, 14400),
    "ack_timeout_ms": (3000, 200, 60000),
    "max_backoff_ms": (60000, 1000, 600000),
    "fail_after": (3, 1, 20),
    # a path that has not ACKed the head event this long after offering it
    # there has failed it (failover.py): the event moves to the next path.
    # 30 s: an alarm waits at most that long on a receiver that NAKs it;
    # 5 s is a few ACK round trips through a group commit; 5 min is the
    # most a path may hold an alarm it does not accept.
    "event_fail_s": (30, 5, 300),
}

EOL_DEFAULTS = {"normal_ohms": 2200, "alarm_ohms": 4400, "pullup_ohms": 4700}

# on/off features (object "options"): name -> default
OPTIONS = {
    # a disarm in the abort window also sends 406 "abort" (CP-01: optional);
    # off, the aborted alarm stays local (the keypad says so)
    "abort_report": False,
    # one zone tripping twice in the confirmation window confirms an alarm
    # too (off: two different zones are needed)
    "confirm_same_zone": False,
}


class _V(Errors):
    def obj(self, d, path):
        if not isinstance(d, dict):
            self.err(path, "expected an object, got %s" % type_name(d))
            return None
        return d

    def int_(self, d, key, path, lo, hi, default=None):
        p = path + "." + key if path else key
        if key not in d:
            if default is None:
                self.err(p, "missing")
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.err(p, "expected an integer, got %s" % type_name(v))
            return default
        if v < lo or v > hi:
            self.err(p, "%d is out of range %d..%d" % (v, lo, hi))
            return default
        return v

    def str_(self, d, key, path, default=None, maxlen=MAX_NAME, required=True):
        p = path + "." + key if path else key
        if key not in d:
            if required and default is None:
                self.err(p, "missing")
            return default
        v = d[key]
        if not isinstance(v, str):
            self.err(p, "expected a string, got %s" % type_name(v))
            return default
        if len(v.encode("utf-8")) > maxlen:
            self.err(p, "longer than %d bytes" % maxlen)
            return default
        return v

    def choice(self, d, key, path, options, default=None):
        v = self.str_(d, key, path, default, 32)
        if v is not None and v not in options:
            self.err(path + "." + key if path else key,
                     "%r is not one of %s" % (v, ", ".join(options)))
            return default
        return v

    def bool_(self, d, key, path, default=False):
        if key not in d:
            return default
        v = d[key]
        if not isinstance(v, bool):
            self.err(path + "." + key if path else key,
                     "expected true or false, got %s" % type_name(v))
            return default
        return v

    def hex_(self, d, key, path, lo, hi):
        v = self.str_(d, key, path, None, 256)
        if v is None:
            return None
        try:
            b = bytes.fromhex(v)
        except Exception:  # ValueError on both runtimes
            self.err(path + "." + key if path else key, "not a hex string")
            return None
        if len(b) < lo or len(b) > hi:
            self.err(path + "." + key if path else key,
                     "must be %d..%d bytes (%d..%d hex digits), got %d bytes"
                     % (lo, hi, 2 * lo, 2 * hi, len(b)))
            return None
        return v

    def list_(self, d, key, path, hi, required=True):
        p = path + "." + key if path else key
        if key not in d:
            if required:
                self.err(p, "missing")
            return []
        v = d[key]
        if not isinstance(v, list):
            self.err(p, "expected an array, got %s" % type_name(v))
            return []
        if len(v) > hi:
            self.err(p, "at most %d entries, got %d" % (hi, len(v)))
            return v[:hi]
        return v


def _hhmm(v, s, path):
    if not isinstance(s, str) or len(s) != 5 or s[2] != ":":
        v.err(path, "expected \"HH:MM\", got %r" % (s,))
        return None
    try:
        h = int(s[:2])
        m = int(s[3:])
    except ValueError:
        v.err(path, "expected \"HH:MM\", got %r" % (s,))
        return None
    if h > 23 or m > 59:
        v.err(path, "%r is not a time of day" % s)
        return None
    return h * 60 + m


def _days(v, d, path):
    """A schedule's "days": ISO weekdays 1 (Mon) .. 7 (Sun), Mon-Fri if absent."""
    days = v.list_(d, "days", path, 7, False) or [1, 2, 3, 4, 5]
    for j in range(len(days)):
        if isinstance(days[j], bool) or not isinstance(days[j], int) \
                or days[j] < 1 or days[j] > 7:
            v.err("%s.days[%d]" % (path, j), "expected 1 (Mon) .. 7 (Sun)")
    return days


def _path(v, d, path):
    d = v.obj(d, path)
    if d is None:
        return None
    out = {"type": v.choice(d, "type", path, PATH_TYPES)}
    if out["type"] == "serial":
        out["uart"] = v.int_(d, "uart", path, 0, 9, 1)
        out["baud"] = v.int_(d, "baud", path, 1200, 3000000, 115200)
        # On the unix port a serial path is a TCP stream to host:port
        # (a ser2net-style bridge); on a board these are ignored.
        out["host"] = v.str_(d, "host", path, "127.0.0.1", 64)
        out["port"] = v.int_(d, "port", path, 1, 65535, 7701)
    else:
        out["host"] = v.str_(d, "host", path, None, 64)
        out["port"] = v.int_(d, "port", path, 1, 65535)
    return out


def _hexstr(v, d, key, path, lo, hi, default=None):
    """A string of lo..hi hex digits (DC-09 account, line, receiver), upper case."""
    s = v.str_(d, key, path, default, 64, default is None)
    if s is None:
        return default
    p = path + "." + key
    if len(s) < lo or len(s) > hi:
        v.err(p, "must be %d..%d hex digits, got %d" % (lo, hi, len(s)))
        return default
    for c in s:
        if c not in _HEXDIGITS:
            v.err(p, "%r is not hex digits" % s)
            return default
    return s.upper()


def _dc09(v, d):
    """The "dc09" object: SIA DC-09 account (3-16 hex digits, 5.5.1.6),
    optional AES key (16/24/32 bytes as 32/48/64 hex digits or 16/24/32
    ASCII characters; none = clear messages), line (account prefix, 1-6 hex
    digits, default "0") and receiver number (1-6 hex digits, optional)."""
    d = v.obj(d, "dc09")
    if d is None:
        return None
    out = {"account": _hexstr(v, d, "account", "dc09", 3, 16),
           "key_format": v.choice(d, "key_format", "dc09", DC09_KEY_FORMATS, "hex"),
           "line": _hexstr(v, d, "line", "dc09", 1, 6, "0"),
           "receiver_no": None, "key": None}
    if "receiver_no" in d and d["receiver_no"] is not None:
        out["receiver_no"] = _hexstr(v, d, "receiver_no", "dc09", 1, 6)
    key = v.str_(d, "key", "dc09", None, 64, False)
    if key:
        if out["key_format"] == "ascii":
            n = len(key)
            bad = False
            for c in key:
                if c < " " or c > "~":
                    bad = True
        else:
            n = len(key) // 2 if len(key) % 2 == 0 else -1
            bad = False
            for c in key:
                if c not in _HEXDIGITS:
                    bad = True
        if bad or n not in (16, 24, 32):
            v.err("dc09.key", "must be an AES-128/192/256 key: 32/48/64 hex digits, or "
                  "16/24/32 characters with \"key_format\": \"ascii\"")
        else:
            out["key"] = key
    for k in d:
        if k not in ("account", "key", "key_format", "line", "receiver_no"):
            v.err("dc09." + k, "unknown field (known: account, key, key_format, line, "
                  "receiver_no)")
    return out


def _comms(v, doc):
    cfg = {}
    cfg["protocol"] = v.choice(doc, "protocol", "", PROTOCOLS, "native")
    if cfg["protocol"] == "dc09":
        # the native account and key are not used; checked only if given
        if "dc09" not in doc:
            v.err("dc09", "missing (\"protocol\": \"dc09\" needs the DC-09 account)")
            cfg["dc09"] = None
        else:
            cfg["dc09"] = _dc09(v, doc["dc09"])
        cfg["account"] = v.int_(doc, "account", "", 1, 0xFFFFFFFF, 0)
        cfg["key"] = v.hex_(doc, "key", "", 16, 64) if "key" in doc else None
    else:
        cfg["account"] = v.int_(doc, "account", "", 1, 0xFFFFFFFF)
        cfg["key"] = v.hex_(doc, "key", "", 16, 64)
        if "dc09" in doc:
            v.err("dc09", "only used with \"protocol\": \"dc09\"")
    rx = v.obj(doc.get("receiver"), "receiver") if "receiver" in doc else None
    if "receiver" not in doc:
        v.err("receiver", "missing")
    if rx is not None:
        cfg["receiver"] = {"primary": _path(v, rx.get("primary"), "receiver.primary")}
        if "backup" in rx and rx["backup"] is not None:
            cfg["receiver"]["backup"] = _path(v, rx["backup"], "receiver.backup")
        else:
            cfg["receiver"]["backup"] = None
    return cfg


# The fields of a zone, a partition and a user: any other key is a typo
# ("silet": true would leave a hold-up zone audible), refused like an
# unknown top-level field.
_ZONE_FIELDS = ("id", "name", "type", "partition", "input", "silent", "verify")
_PARTITION_FIELDS = ("id", "name", "time_lock", "closing")
_USER_FIELDS = ("id", "name", "code_hash", "authority", "duress", "partitions")


def _unknown(v, d, path, known):
    for k in d:
        if k not in known:
            v.err("%s.%s" % (path, k), "unknown field (known: %s)" % ", ".join(known))


def validate(doc):
    """Check a parsed config document.  Returns (cfg, errors)."""
    v = _V()
    if v.obj(doc, "config") is None:
        return None, v.errors
    cfg = _comms(v, doc)
    cfg["name"] = v.str_(doc, "name", "", "panel")
    cfg["kind"] = v.choice(doc, "kind", "", KINDS)
    cfg["code_salt"] = v.hex_(doc, "code_salt", "", 8, 64)
    cfg["utc_offset_min"] = v.int_(doc, "utc_offset_min", "", -720, 840, 0)
    # Console test mode (docs/qa.md): a hardware board serves the control
    # protocol on its console, so anyone at the USB port can operate the
    # keypad and read the state.  Bench only: it must be off in production,
    # and the panel reports 607 (walk test mode) at every boot while it is on.
    cfg["test_mode"] = v.bool_(doc, "test_mode", "", False)

    t = v.obj(doc.get("timings", {}), "timings") or {}
    tim = {}
    for k in TIMINGS:
        dflt, lo, hi = TIMINGS[k]
        tim[k] = v.int_(t, k, "timings", lo, hi, dflt)
    for k in t:
        if k not in TIMINGS:
            v.err("timings." + k, "unknown timing (known: %s)" % ", ".join(sorted(TIMINGS)))
    cfg["timings"] = tim

    e = v.obj(doc.get("eol", {}), "eol") or {}
    eol = {}
    for k in EOL_DEFAULTS:
        eol[k] = v.int_(e, k, "eol", 100, 100000, EOL_DEFAULTS[k])
    if eol["alarm_ohms"] <= eol["normal_ohms"]:
        v.err("eol.alarm_ohms", "must be greater than eol.normal_ohms")
    cfg["eol"] = eol

    o = v.obj(doc.get("options", {}), "options") or {}
    opts = {}
    for k in OPTIONS:
        opts[k] = v.bool_(o, k, "options", OPTIONS[k])
    for k in o:
        if k not in OPTIONS:
            v.err("options." + k, "unknown option (known: %s)" % ", ".join(sorted(OPTIONS)))
    cfg["options"] = opts

    parts = []
    pids = {}
    plist = v.list_(doc, "partitions", "", MAX_PARTITIONS)
    if not plist and "partitions" in doc:
        v.err("partitions", "at least one partition is needed")
    for i in range(len(plist)):
        path = "partitions[%d]" % i
        p = v.obj(plist[i], path)
        if p is None:
            continue
        pid = v.int_(p, "id", path, 1, MAX_PARTITIONS)
        if pid is not None:
            if pid in pids:
                v.err(path + ".id", "%d is used twice (also partitions[%d])" % (pid, pids[pid]))
            pids[pid] = i
        tl = None
        if "time_lock" in p:
            tp = path + ".time_lock"
            td = v.obj(p["time_lock"], tp)
            if td is not None:
                o = _hhmm(v, td.get("open"), tp + ".open")
                c = _hhmm(v, td.get("close"), tp + ".close")
                if o is not None and c is not None and o >= c:
                    v.err(tp, "open must be before close")
                tl = {"open": o, "close": c, "days": _days(v, td, tp)}
        closing = None
        if "closing" in p:
            # scheduled closing: the keypad warns, then the panel arms
            # ("auto_arm": true, 403) or only prompts (false)
            tp = path + ".closing"
            td = v.obj(p["closing"], tp)
            if td is not None:
                closing = {"at": _hhmm(v, td.get("at"), tp + ".at"), "days": _days(v, td, tp),
                           "auto_arm": v.bool_(td, "auto_arm", tp, True)}
                for k in td:
                    if k not in ("at", "days", "auto_arm"):
                        v.err(tp + "." + k, "unknown field (known: at, days, auto_arm)")
                if tl is not None:
                    v.err(tp, "a time-locked partition arms itself when its window closes: "
                          "no closing schedule as well")
        parts.append({"id": pid, "name": v.str_(p, "name", path, "partition %s" % pid),
                      "time_lock": tl, "closing": closing})
        _unknown(v, p, path, _PARTITION_FIELDS)
    cfg["partitions"] = parts

    zones = []
    zids = {}
    inputs = {}
    zlist = v.list_(doc, "zones", "", MAX_ZONES)
    for i in range(len(zlist)):
        path = "zones[%d]" % i
        z = v.obj(zlist[i], path)
        if z is None:
            continue
        zid = v.int_(z, "id", path, 1, 999)
        if zid is not None:
            if zid in zids:
                v.err(path + ".id", "%d is used twice (also zones[%d])" % (zid, zids[zid]))
            zids[zid] = i
        inp = v.int_(z, "input", path, 0, 255, i)
        if inp in inputs:
            v.err(path + ".input", "%d is used twice (also zones[%d])" % (inp, inputs[inp]))
        inputs[inp] = i
        zt = v.choice(z, "type", path, ZONE_TYPES)
        zp = v.int_(z, "partition", path, 1, MAX_PARTITIONS)
        if zp is not None and pids and zp not in pids:
            v.err(path + ".partition", "%d is not a configured partition id" % zp)
        # fire alarm verification: a smoke detector's first trip resets it
        verify = v.bool_(z, "verify", path, False)
        if verify and zt != "fire":
            v.err(path + ".verify", "only a fire zone (a smoke detector) is verified")
            verify = False
        zones.append({"id": zid, "name": v.str_(z, "name", path, "zone %s" % zid),
                      "type": zt, "partition": zp, "input": inp,
                      "silent": v.bool_(z, "silent", path,
                                        zt in ("holdup", "seismic", "tilt")),
                      "verify": verify})
        _unknown(v, z, path, _ZONE_FIELDS)
    cfg["zones"] = zones

    users = []
    uids = {}
    ulist = v.list_(doc, "users", "", MAX_USERS)
    for i in range(len(ulist)):
        path = "users[%d]" % i
        u = v.obj(ulist[i], path)
        if u is None:
            continue
        uid = v.int_(u, "id", path, 1, 999)
        if uid is not None:
            if uid in uids:
                v.err(path + ".id", "%d is used twice (also users[%d])" % (uid, uids[uid]))
            uids[uid] = i
        up = v.list_(u, "partitions", path, MAX_PARTITIONS, False)
        for j in range(len(up)):
            if up[j] not in pids:
                v.err("%s.partitions[%d]" % (path, j), "%r is not a configured partition id"
                      % (up[j],))
        users.append({"id": uid, "name": v.str_(u, "name", path, "user %s" % uid),
                      "code_hash": v.hex_(u, "code_hash", path, 32, 32),
                      "authority": v.choice(u, "authority", path, AUTHORITIES, "user"),
                      "duress": v.bool_(u, "duress", path),
                      "partitions": up or sorted(pids)})
        _unknown(v, u, path, _USER_FIELDS)
    cfg["users"] = users

    kind = cfg["kind"]
    types = [z["type"] for z in zones]
    if kind == "door":
        for name in ("door",):
            if types.count(name) != 1:
                v.err("zones", "a door panel needs exactly one zone of type %r, found %d"
                      % (name, types.count(name)))
        if types.count("bolt") > 1:
            v.err("zones", "a door panel has at most one zone of type 'bolt'")
    elif kind is not None:
        for i in range(len(types)):
            if types[i] in ("door", "bolt"):
                v.err("zones[%d].type" % i, "%r is only for kind \"door\"" % types[i])
    if kind in VEHICLE_KINDS:
        for name in _ONE_PER_VEHICLE:
            if types.count(name) > 1:
                v.err("zones", "a vehicle unit has at most one zone of type %r, found %d"
                      % (name, types.count(name)))
        cfg["vehicle"] = _vehicle(v, doc, pids)
    elif kind is not None:
        for i in range(len(types)):
            if types[i] in VEHICLE_ZONES:
                v.err("zones[%d].type" % i, "%r is only for a vehicle unit (kind \"vehicle\" "
                      "or \"patrol\")" % types[i])
        if "vehicle" in doc:
            v.err("vehicle", "only for a vehicle unit (kind \"vehicle\" or \"patrol\")")
    if cfg.get("protocol") == "dc09" and cfg.get("dc09") and not cfg["dc09"]["key"]:
        # a clear DC-09 line carries no authenticated time, and only a
        # trusted clock opens a time lock (clock.py): it would never open
        # (nor arms a scheduled closing: closing.py)
        for i in range(len(parts)):
            for k in ("time_lock", "closing"):
                if parts[i][k] is not None:
                    v.err("partitions[%d].%s" % (i, k),
                          "needs a clock the panel can trust: the native protocol, or "
                          "a DC-09 key (a clear DC-09 line carries no authenticated time)")
    if tim["battery_restore_mv"] < tim["low_battery_mv"]:
        v.err("timings.battery_restore_mv", "must be at least timings.low_battery_mv")
    known = ("account", "key", "receiver", "name", "kind", "code_salt", "utc_offset_min",
             "timings", "eol", "partitions", "zones", "users", "board", "comment",
             "protocol", "dc09", "test_mode", "options", "vehicle")
    for k in doc:
        if k not in known:
            v.err(k, "unknown field (known: %s)" % ", ".join(known))
    cfg["board"] = doc.get("board") if isinstance(doc.get("board"), dict) else {}
    return cfg, v.errors


def _vehicle(v, doc, pids):
    """The "vehicle" section of a vehicle unit, by vehicle_config (loaded
    only for one; app.py unloads it with this module)."""
    if "vehicle" not in doc:
        v.err("vehicle", "missing (a vehicle unit needs its \"vehicle\" section: "
              "docs/mobile.md)")
        return None
    import vehicle_config
    section, errors = vehicle_config.validate(doc["vehicle"])
    v.errors.extend(errors)
    if errors:
        return None
    if pids and section["partition"] not in pids:
        v.err("vehicle.partition", "%d is not a configured partition id" % section["partition"])
        return None
    return section


def comms_ok(doc):
    """Are account, key and receiver usable even if the rest is wrong?
    Returns the comms part of the config, or None."""
    if not isinstance(doc, dict):
        return None
    v = _V()
    cfg = _comms(v, doc)
    if v.errors:
        return None
    t = doc.get("timings")
    tim = {}
    for k in TIMINGS:
        tim[k] = TIMINGS[k][0]
        if isinstance(t, dict) and k in t:
            vv = v.int_(t, k, "timings", TIMINGS[k][1], TIMINGS[k][2], TIMINGS[k][0])
            tim[k] = vv
    cfg["timings"] = tim
    return cfg


def load(path):
    """Read and validate a config file.  Returns (cfg, errors, doc)."""
    try:
        f = open(path)
    except OSError as e:
        return None, ["%s: cannot read (%s)" % (path, e)], None
    try:
        doc = json.load(f)  # streamed: the text is never held whole
    except ValueError as e:
        return None, ["%s: not valid JSON (%s)" % (path, e)], None
    finally:
        f.close()
    cfg, errors = validate(doc)
    return cfg, errors, doc
