"""receiver.toml: loading and validating the receiver's configuration.

Everything is checked at start, before a socket is opened or the store is
touched, so a typo is refused with one clear line (the CLI exits 2) rather
than discovered at 3 a.m.  Unknown keys are errors for the same reason.
examples/receiver.toml is the annotated reference; docs/receiver.md lists
every key.  Command-line options override the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field

from receiver import alarms as _alarms
from receiver import routing as _routing
from receiver.ingest import Hygiene
from receiver.rules import hygiene as _hygiene
from receiver.rules import testmode as _testmode
from receiver.supervision import Profile

# Defaults, each with where its number comes from.
DEFAULT_DB = "var/receiver.db"
# Open connections at most.  One per panel in the field (a panel keeps its
# TCP connection open); 50,000 accounts report over several receivers and
# each process stays well below the usual 65,536 descriptor limit.
MAX_CONNECTIONS = 20_000
# Connections that have not yet had a frame accepted.  A genuine panel
# authenticates within a round trip, so this bounds what a port scan or a
# SYN-then-silence flood can hold.
MAX_UNAUTHENTICATED = 2_000
# Connections not yet authenticated from one source address, and from one
# source prefix.  A genuine panel authenticates within a round trip, so even
# a carrier NAT address in front of hundreds of panels reconnecting after a
# receiver restart (jittered over tens of seconds) has a few dozen at once;
# a flood from one host or network is held to this instead of to the whole
# max_unauthenticated.
MAX_UNAUTHENTICATED_PER_ADDRESS = 64
MAX_UNAUTHENTICATED_PER_PREFIX = 256
# Source prefix lengths: an IPv4 /24 is the smallest block routed on its
# own; an IPv6 /48 is what one site (or one attacker) is given.
PREFIX_V4 = 24
PREFIX_V6 = 48
# Fraction of each connection cap only addresses that have authenticated
# before may use: panels coming back after an outage find room.
KNOWN_SOURCE_RESERVE = 0.1
# Descriptors never given to panel connections: the console and metrics
# listeners and their clients, the store (SQLite: 3 files per connection, 2
# connections; PostgreSQL: its pool), outputs, logs and serial lines.
RESERVED_DESCRIPTORS = 256
# Seconds a connection of a keyless DC-09 account may stay silent before it
# has sent an event: anyone can forge that account's clear NULL, so a NULL
# alone does not earn the long idle timeout.  A panel polling every few
# seconds keeps its connection; a slower one reconnects for its next NULL.
KEYLESS_IDLE_TIMEOUT_S = 30.0
# Seconds a new connection has to get a frame accepted before it is closed.
AUTH_TIMEOUT_S = 10.0
# Seconds of silence after which a connection is closed (half-open TCP: the
# panel vanished without a FIN).  Longer than any heartbeat interval in use;
# supervision, not this timeout, is what raises the alarm.
IDLE_TIMEOUT_S = 900.0
# Writes queued to the store beyond which new events are NAKed busy: about
# one second of the SQLite backend's group-commit throughput, so an ACK is
# never more than ~1 s behind.
MAX_PENDING_WRITES = 5_000
# Default supervision: EN 50136-1 ATS category SP4/DP2 report a path failure
# within 180 s; a 120 s heartbeat plus 60 s grace meets that.
SUPERVISION_INTERVAL_S = 120
SUPERVISION_GRACE_S = 60
# How far back the scheduler looks for opening-schedule deadlines at start
# (a receiver down over a deadline raises it when it is back): a day covers
# a night's outage; a week at most (the history read grows with it).
SCHEDULES_LOOKBACK_H = 24
SCHEDULES_LOOKBACK_MAX_H = 7 * 24
# SIA DC-09 5.5.1.8: an encrypted message may be 40 s older and 20 s newer
# than the receiver's clock (message time minus receiver time, seconds).
DC09_WINDOW = (-40, 20)


# Vehicle units ([vehicles], docs/mobile.md "Receiver"): how much longer than
# a unit the receiver waits before raising a route rule itself (the unit's
# own report comes first; its points arrive every 5-30 s), how long a vehicle
# with its ignition on may send no position (longer than a parked unit's
# heartbeat point, report.parked_s: 15 min by default), how long a track is
# kept (a quarter: long enough for an investigation to ask, short enough
# for the drivers' privacy), and how close a patrol must come to be on scene
# (a city block).
VEHICLE_GRACE_S = 30
VEHICLE_SILENT_MIN = 20
TRACK_RETENTION_DAYS = 90
ARRIVAL_RADIUS_M = 150
# The console map's offline base layer: a made-up city's districts
# matching the demo (receiver/web/static/map/districts.geojson).
DEFAULT_DISTRICTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web", "static",
                                 "map", "districts.geojson")


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why."""


@dataclass
class VehiclesConfig:
    """[vehicles]: the receiver's side of vehicle units."""

    geofences_file: str | None = None
    # {account: receiver.vehicles.geofences.AccountRules}
    rules: dict = field(default_factory=dict)
    unit_grace_s: int = VEHICLE_GRACE_S
    silent_s: int | None = VEHICLE_SILENT_MIN * 60  # None: no 175
    retention_days: int = TRACK_RETENTION_DAYS
    arrival_radius_m: int = ARRIVAL_RADIUS_M


@dataclass
class MapConfig:
    """[map]: the console's map.  ``tile_url`` empty: no tiles, the
    districts layer only (works offline)."""

    tile_url: str = ""
    tile_attribution: str = ""
    tile_max_zoom: int = 19
    districts: str = DEFAULT_DISTRICTS

    @property
    def tile_origin(self) -> str | None:
        """scheme://host[:port] of the tiles (the console's CSP allows it)."""
        if not self.tile_url:
            return None
        from urllib.parse import urlsplit  # noqa: PLC0415

        u = urlsplit(self.tile_url)
        return "%s://%s" % (u.scheme, u.netloc)


@dataclass(frozen=True)
class SerialSpec:
    url: str
    baudrate: int = 9600


@dataclass
class Config:
    db: str = DEFAULT_DB
    # May the receiver make a new store where db points (an SQLite file, or
    # the schema in an empty PostgreSQL database)?  True for an embedded
    # Receiver (tests, the demo); `serve` sets it from --init only.
    create_store: bool = True
    tcp: list = field(default_factory=list)  # [(host, port)]
    udp: list = field(default_factory=list)
    serial: list = field(default_factory=list)  # [SerialSpec]
    metrics: tuple | None = None
    web: tuple | None = None
    dc09_tcp: list = field(default_factory=list)  # SIA DC-09 listeners [(host, port)]
    dc09_udp: list = field(default_factory=list)
    dc09_window: tuple = DC09_WINDOW  # timestamp test, (lower, upper) s
    # per DC-09 account (upper-case hex): {"window": (lo, hi), "utc_offset_min": m}
    dc09_accounts: dict = field(default_factory=dict)
    max_connections: int = MAX_CONNECTIONS
    max_unauthenticated: int = MAX_UNAUTHENTICATED
    max_unauthenticated_per_address: int = MAX_UNAUTHENTICATED_PER_ADDRESS
    max_unauthenticated_per_prefix: int = MAX_UNAUTHENTICATED_PER_PREFIX
    prefix_v4: int = PREFIX_V4
    prefix_v6: int = PREFIX_V6
    known_source_reserve: float = KNOWN_SOURCE_RESERVE
    reserved_descriptors: int = RESERVED_DESCRIPTORS
    auth_timeout_s: float = AUTH_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    keyless_idle_timeout_s: float = KEYLESS_IDLE_TIMEOUT_S
    max_pending_writes: int = MAX_PENDING_WRITES
    max_batch: int = 512
    supervision: Profile = field(default_factory=lambda: Profile(
        SUPERVISION_INTERVAL_S, SUPERVISION_GRACE_S))
    queue_classes: frozenset = _alarms.DEFAULT_QUEUE_CLASSES
    # per Contact ID code: "alarm", "status" or "event" ([alarms.codes])
    alarm_codes: dict = field(default_factory=lambda: dict(_alarms.DEFAULT_CODES))
    router: _routing.Router = field(default_factory=_routing.Router)
    log_level: str = "INFO"
    # the centre's rules (issue 18): [hygiene], [test], [schedules]
    hygiene: Hygiene = field(default_factory=Hygiene)
    test_default_s: int = _testmode.DEFAULT_TEST_S
    test_max_s: int = _testmode.MAX_TEST_S
    schedules_file: str | None = None  # imported at start (absolute path)
    schedules_lookback_s: int = SCHEDULES_LOOKBACK_H * 3600
    cluster_instance: str | None = None  # name among receivers sharing a PostgreSQL store
    # bind the TCP/UDP listeners and the console with SO_REUSEPORT: set for
    # each of `serve --workers N`'s processes (receiver.workers), never read
    # from a file
    reuse_port: bool = False
    vehicles: VehiclesConfig = field(default_factory=VehiclesConfig)
    map: MapConfig = field(default_factory=MapConfig)
    # the operator's workflow ([workflow]; receiver.workflow_service): the
    # plans and dispositions files loaded into the store at start (None:
    # what the store holds, else the built-in sets), a routing output that
    # also gets each escalation, and whether a panel's cancel (406) closes
    # the alarms it cancels that nobody works
    workflow_plans: str | None = None
    workflow_dispositions: str | None = None
    notify_output: str | None = None
    close_cancelled: bool = True
    source: str | None = None  # the file it came from

    def alarm_policy(self) -> _alarms.AlarmPolicy:
        """What each event does (alarm, status, event): [alarms]."""
        return _alarms.AlarmPolicy(frozenset(self.queue_classes), dict(self.alarm_codes))


def parse_addr(v, where: str) -> tuple[str, int]:
    if not isinstance(v, str) or ":" not in v:
        raise ConfigError("%s: expected HOST:PORT, got %r" % (where, v))
    host, _, port = v.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError("%s: bad port in %r" % (where, v))
    return host or "0.0.0.0", int(port)


def _check_keys(table, allowed, where):
    if not isinstance(table, dict):
        raise ConfigError("%s must be a table" % where)
    bad = set(table) - set(allowed)
    if bad:
        raise ConfigError("%s: unknown key(s) %s (allowed: %s)" % (
            where, ", ".join(sorted(bad)), ", ".join(sorted(allowed))))


def _num(v, where, lo, integer=False):
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if not ok or isinstance(v, bool) or v < lo:
        raise ConfigError("%s must be %s >= %s" % (where, "an integer" if integer
                                                  else "a number", lo))
    return v


def _int(v, where, lo) -> int:
    """`_num` for an integer setting, typed as one."""
    return int(_num(v, where, lo, True))


def _read_toml(path: str, what: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("%s %s: no such file" % (what, path)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s %s: %s" % (what, path, e)) from None
    except OSError as e:
        raise ConfigError("%s %s: %s" % (what, path, e)) from None


def load(path: str | None) -> Config:
    """Read and check ``path`` (None: defaults only).  Every error names
    the file."""
    try:
        return _load(path)
    except ConfigError as e:
        if path is not None and path not in str(e):
            raise ConfigError("%s: %s" % (path, e)) from None
        raise


def _load(path: str | None) -> Config:
    cfg = Config()
    if path is None:
        return cfg
    doc = _read_toml(path, "config")
    cfg.source = path
    base = os.path.dirname(os.path.abspath(path))
    _check_keys(doc, {"store", "listen", "limits", "supervision", "alarms", "routing", "log",
                      "dc09", "cluster", "hygiene", "test", "schedules", "vehicles",
                      "map", "workflow"},
                path)
    st = doc.get("store", {})
    _check_keys(st, {"path", "url", "max_batch"}, "[store]")
    if "path" in st and "url" in st:
        raise ConfigError("[store]: give either path (SQLite) or url (PostgreSQL), not both")
    if "path" in st:
        if not isinstance(st["path"], str) or not st["path"]:
            raise ConfigError("[store].path must be a file path")
        cfg.db = os.path.normpath(os.path.join(base, st["path"]))  # relative to this file
    if "url" in st:
        if not isinstance(st["url"], str) or not st["url"].startswith(
                ("postgresql://", "postgres://")):
            raise ConfigError("[store].url must be a postgresql://user@host:port/db URL")
        cfg.db = st["url"]
    cl = doc.get("cluster", {})
    _check_keys(cl, {"instance"}, "[cluster]")
    if "instance" in cl:
        if not isinstance(cl["instance"], str) or not 0 < len(cl["instance"]) <= 64:
            raise ConfigError("[cluster].instance must be a name of 1..64 characters")
        cfg.cluster_instance = cl["instance"]
    if "max_batch" in st:
        cfg.max_batch = _num(st["max_batch"], "[store].max_batch", 1, True)
    ls = doc.get("listen", {})
    _check_keys(ls, {"tcp", "udp", "serial", "metrics", "web", "dc09_tcp", "dc09_udp"},
                "[listen]")
    for kind in ("tcp", "udp", "dc09_tcp", "dc09_udp"):
        v = ls.get(kind, [])
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list):
            raise ConfigError("[listen].%s must be a list of HOST:PORT" % kind)
        setattr(cfg, kind, [parse_addr(a, "[listen].%s" % kind) for a in v])
    for i, s in enumerate(ls.get("serial", [])):
        where = "[listen].serial[%d]" % i
        if isinstance(s, str):
            s = {"url": s}
        _check_keys(s, {"url", "baudrate"}, where)
        if not isinstance(s.get("url"), str) or not s["url"]:
            raise ConfigError("%s.url must be a device path or pyserial URL" % where)
        cfg.serial.append(SerialSpec(s["url"], _int(s.get("baudrate", 9600),
                                                    where + ".baudrate", 50)))
    for kind in ("metrics", "web"):
        if kind in ls:
            setattr(cfg, kind, parse_addr(ls[kind], "[listen].%s" % kind))
    _load_limits(cfg, doc.get("limits", {}))
    sup = doc.get("supervision", {})
    _check_keys(sup, {"interval_s", "grace_s", "paths"}, "[supervision]")
    try:
        cfg.supervision = Profile(sup.get("interval_s", SUPERVISION_INTERVAL_S),
                                  sup.get("grace_s", SUPERVISION_GRACE_S),
                                  tuple(sup.get("paths", [1])))
    except (ValueError, TypeError) as e:
        raise ConfigError("[supervision]: %s" % e) from None
    al = doc.get("alarms", {})
    _check_keys(al, {"queue_classes", "codes"}, "[alarms]")
    if "queue_classes" in al:
        qc = al["queue_classes"]
        if not isinstance(qc, list) or any(c not in _alarms.CLASSES for c in qc):
            raise ConfigError("[alarms].queue_classes must list classes from: %s"
                              % ", ".join(_alarms.CLASSES))
        cfg.queue_classes = frozenset(qc)
    cfg.alarm_codes.update(_alarm_codes(al.get("codes", {})))
    rt = doc.get("routing", {})
    _check_keys(rt, {"file", "outputs", "centers", "routes"}, "[routing]")
    if "file" in rt:
        if len(rt) > 1:
            raise ConfigError("[routing]: give either file = ... or inline tables, not both")
        rpath = os.path.normpath(os.path.join(base, rt["file"]))
        rdoc = _read_toml(rpath, "routing file")
        where = rpath
    else:
        rdoc, where = rt, "[routing]"
    try:
        cfg.router = _routing.parse(rdoc, known_classes=_alarms.CLASSES)
    except _routing.RoutingError as e:
        raise ConfigError("%s: %s" % (where, e)) from None
    _load_dc09(cfg, doc.get("dc09", {}))
    _load_rules(cfg, doc, base)
    _load_vehicles(cfg, doc.get("vehicles", {}), base)
    _load_map(cfg, doc.get("map", {}), base)
    _load_workflow(cfg, doc.get("workflow", {}), base)
    lg = doc.get("log", {})
    _check_keys(lg, {"level"}, "[log]")
    if "level" in lg:
        lvl = str(lg["level"]).upper()
        if lvl not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("[log].level must be debug, info, warning or error")
        cfg.log_level = lvl
    return cfg


def _load_workflow(cfg: Config, wf, base: str) -> None:
    """[workflow] plans = "plans.toml", dispositions = "dispositions.toml"
    (paths relative to receiver.toml; checked when the receiver loads them,
    receiver.workflow_service), notify_output = "OUTPUT", close_cancelled."""
    _check_keys(wf, {"plans", "dispositions", "notify_output", "close_cancelled"},
                "[workflow]")
    for key in ("plans", "dispositions"):
        if key in wf:
            if not isinstance(wf[key], str) or not wf[key]:
                raise ConfigError("[workflow].%s must be a file path" % key)
            path = os.path.normpath(os.path.join(base, wf[key]))
            if not os.path.isfile(path):
                raise ConfigError("[workflow].%s: no such file %s" % (key, path))
            setattr(cfg, "workflow_" + key, path)
    if "notify_output" in wf:
        out = wf["notify_output"]
        if not isinstance(out, str) or out not in cfg.router.outputs:
            raise ConfigError("[workflow].notify_output must name an output of [routing] "
                              "(%s)" % (", ".join(sorted(cfg.router.outputs)) or "none defined"))
        cfg.notify_output = out
    if "close_cancelled" in wf:
        if not isinstance(wf["close_cancelled"], bool):
            raise ConfigError("[workflow].close_cancelled must be true or false")
        cfg.close_cancelled = wf["close_cancelled"]


def _load_limits(cfg: Config, lim) -> None:
    _check_keys(lim, {"max_connections", "max_unauthenticated",
                      "max_unauthenticated_per_address", "max_unauthenticated_per_prefix",
                      "prefix_v4", "prefix_v6", "known_source_reserve",
                      "reserved_descriptors", "auth_timeout_s", "idle_timeout_s",
                      "keyless_idle_timeout_s", "max_pending_writes"}, "[limits]")
    for k in ("max_connections", "max_unauthenticated", "max_unauthenticated_per_address",
              "max_unauthenticated_per_prefix", "max_pending_writes"):
        if k in lim:
            setattr(cfg, k, _num(lim[k], "[limits].%s" % k, 1, True))
    if "reserved_descriptors" in lim:
        cfg.reserved_descriptors = _num(lim["reserved_descriptors"],
                                        "[limits].reserved_descriptors", 0, True)
    for k, top in (("prefix_v4", 32), ("prefix_v6", 128)):
        if k in lim:
            v = _num(lim[k], "[limits].%s" % k, 0, True)
            if v > top:
                raise ConfigError("[limits].%s must be a prefix length 0..%d" % (k, top))
            setattr(cfg, k, v)
    if "known_source_reserve" in lim:
        v = _num(lim["known_source_reserve"], "[limits].known_source_reserve", 0)
        if v >= 1:
            raise ConfigError("[limits].known_source_reserve must be a fraction 0 <= f < 1 "
                              "(of each connection cap)")
        cfg.known_source_reserve = float(v)
    for k in ("auth_timeout_s", "idle_timeout_s", "keyless_idle_timeout_s"):
        if k in lim:
            setattr(cfg, k, float(_num(lim[k], "[limits].%s" % k, 0.1)))


def _load_rules(cfg: Config, doc: dict, base: str) -> None:
    """[hygiene], [test], [schedules] (docs/receiver.md, "The centre's
    rules"); the cores' own checks name the key."""
    hy = doc.get("hygiene", {})
    _check_keys(hy, {"runaway_alarms", "runaway_window_s", "group_window_s",
                     "auto_resolve_on_restore", "auto_resolve_pending_only"}, "[hygiene]")
    d = Hygiene()
    try:
        runaway = _hygiene.RunawayPolicy(hy.get("runaway_alarms", d.runaway.max_alarms),
                                         hy.get("runaway_window_s", d.runaway.window_s))
        grouping = _hygiene.GroupingPolicy(hy.get("group_window_s", d.grouping.window_s))
        auto = hy.get("auto_resolve_on_restore", [])
        if not isinstance(auto, list) or not all(isinstance(c, str) for c in auto):
            raise _hygiene.HygieneError("auto_resolve_on_restore must be a list of classes")
        pending_only = hy.get("auto_resolve_pending_only", True)
        if not isinstance(pending_only, bool):
            raise _hygiene.HygieneError("auto_resolve_pending_only must be true or false")
        cfg.hygiene = Hygiene(runaway, grouping,
                              _hygiene.RestorePolicy(frozenset(auto), pending_only))
    except _hygiene.HygieneError as e:
        raise ConfigError("[hygiene]: %s" % e) from None
    ts = doc.get("test", {})
    _check_keys(ts, {"default_minutes", "max_hours"}, "[test]")
    if "max_hours" in ts:
        h = _num(ts["max_hours"], "[test].max_hours", 1, True)
        if h * 3600 > _testmode.MAX_TEST_S:
            raise ConfigError("[test].max_hours must be at most %d"
                              % (_testmode.MAX_TEST_S // 3600))
        cfg.test_max_s = h * 3600
    if "default_minutes" in ts:
        cfg.test_default_s = _num(ts["default_minutes"], "[test].default_minutes", 1,
                                  True) * 60
    if cfg.test_default_s > cfg.test_max_s:
        raise ConfigError("[test].default_minutes must be within max_hours (%d h)"
                          % (cfg.test_max_s // 3600))
    sc = doc.get("schedules", {})
    _check_keys(sc, {"file", "lookback_h"}, "[schedules]")
    if "file" in sc:
        if not isinstance(sc["file"], str) or not sc["file"]:
            raise ConfigError("[schedules].file must be a file path")
        cfg.schedules_file = os.path.normpath(os.path.join(base, sc["file"]))
    if "lookback_h" in sc:
        h = _num(sc["lookback_h"], "[schedules].lookback_h", 1, True)
        if h > SCHEDULES_LOOKBACK_MAX_H:
            raise ConfigError("[schedules].lookback_h must be at most %d (a week)"
                              % SCHEDULES_LOOKBACK_MAX_H)
        cfg.schedules_lookback_s = h * 3600


def _alarm_codes(codes) -> dict:
    """[alarms.codes]: 305 = "event", 301 = "status" ... (Contact ID code ->
    alarm | status | event)."""
    if not isinstance(codes, dict):
        raise ConfigError("[alarms.codes] must be a table of CODE = \"alarm\" | \"status\" | "
                          "\"event\"")
    out = {}
    for k, v in codes.items():
        where = "[alarms.codes] %s" % k
        if not (k.isdigit() and len(k) <= 3):
            raise ConfigError("%s: a Contact ID code is a number 0..999" % where)
        if v not in _alarms.DISPOSITIONS:
            raise ConfigError("%s = %r: give one of %s" % (where, v, ", ".join(
                '"%s"' % d for d in _alarms.DISPOSITIONS)))
        out[int(k)] = v
    return out


# The widest DC-09 timestamp window accepted: a day.  Wider is no test at
# all, and beyond ~10^9 s the judge could not even compute it.
DC09_WINDOW_MAX_S = 86_400


def _dc09_window(v, where) -> tuple:
    if (not isinstance(v, list) or len(v) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            or not -DC09_WINDOW_MAX_S <= v[0] <= 0 <= v[1] <= DC09_WINDOW_MAX_S):
        raise ConfigError("%s must be [lower, upper] seconds with -%d <= lower <= 0 <= "
                          "upper <= %d" % (where, DC09_WINDOW_MAX_S, DC09_WINDOW_MAX_S))
    return (v[0], v[1])


def _load_dc09(cfg: Config, dc) -> None:
    """[dc09] window_s = [-40, 20]; [dc09.accounts.ACCOUNT] window_s, utc_offset_min
    (a panel that sends local time: minutes east of UTC), check_clear_time
    (the timestamp test for clear messages too), compat (named field
    deviations accepted from this panel, receiver.dc09_core.COMPAT_OPTIONS)."""
    from receiver.dc09_core import COMPAT_OPTIONS  # noqa: PLC0415
    _check_keys(dc, {"window_s", "accounts"}, "[dc09]")
    if "window_s" in dc:
        cfg.dc09_window = _dc09_window(dc["window_s"], "[dc09].window_s")
    accts = dc.get("accounts", {})
    if not isinstance(accts, dict):
        raise ConfigError("[dc09.accounts] must be a table of accounts")
    for number, a in accts.items():
        where = "[dc09.accounts.%s]" % number
        n = str(number).upper()
        if not 3 <= len(n) <= 16 or any(c not in "0123456789ABCDEF" for c in n):
            raise ConfigError("%s: a DC-09 account is 3-16 hex digits" % where)
        _check_keys(a, {"window_s", "utc_offset_min", "check_clear_time", "compat"}, where)
        s = {}
        if "window_s" in a:
            s["window"] = _dc09_window(a["window_s"], where + ".window_s")
        if "utc_offset_min" in a:
            off = a["utc_offset_min"]
            if isinstance(off, bool) or not isinstance(off, int) or not -720 <= off <= 840:
                raise ConfigError("%s.utc_offset_min must be an integer -720..840" % where)
            s["utc_offset_min"] = off
        if "check_clear_time" in a:
            if not isinstance(a["check_clear_time"], bool):
                raise ConfigError("%s.check_clear_time must be true or false" % where)
            s["check_clear_time"] = a["check_clear_time"]
        if "compat" in a:
            opts = a["compat"]
            if not isinstance(opts, list) or any(o not in COMPAT_OPTIONS for o in opts):
                raise ConfigError("%s.compat must be a list of: %s" % (
                    where, ", ".join(sorted(COMPAT_OPTIONS))))
            s["compat"] = list(opts)
        cfg.dc09_accounts[n] = s


def _load_vehicles(cfg: Config, vh, base: str) -> None:
    """[vehicles] geofences = "geofences.geojson" (allowed zones, corridors
    and rule settings per account: receiver.vehicles.geofences), unit_grace_s,
    silent_min (0: off), retention_days, arrival_radius_m."""
    _check_keys(vh, {"geofences", "unit_grace_s", "silent_min", "retention_days",
                     "arrival_radius_m"}, "[vehicles]")
    v = cfg.vehicles
    if "geofences" in vh:
        if not isinstance(vh["geofences"], str) or not vh["geofences"]:
            raise ConfigError("[vehicles].geofences must be a file path")
        v.geofences_file = os.path.normpath(os.path.join(base, vh["geofences"]))
        from receiver.vehicles.geofences import GeofenceError, load  # noqa: PLC0415
        try:
            v.rules = load(v.geofences_file)
        except GeofenceError as e:
            raise ConfigError("[vehicles].geofences: %s" % e) from None
    if "unit_grace_s" in vh:
        v.unit_grace_s = _num(vh["unit_grace_s"], "[vehicles].unit_grace_s", 0, True)
        if v.unit_grace_s > 600:
            raise ConfigError("[vehicles].unit_grace_s must be 0..600 s")
    if "silent_min" in vh:
        m = _num(vh["silent_min"], "[vehicles].silent_min", 0, True)
        if m > 1440:
            raise ConfigError("[vehicles].silent_min must be 0 (off) .. 1440")
        v.silent_s = m * 60 or None
    if "retention_days" in vh:
        v.retention_days = _num(vh["retention_days"], "[vehicles].retention_days", 1, True)
        if v.retention_days > 3650:
            raise ConfigError("[vehicles].retention_days must be 1..3650")
    if "arrival_radius_m" in vh:
        v.arrival_radius_m = _num(vh["arrival_radius_m"], "[vehicles].arrival_radius_m", 10,
                                  True)
        if v.arrival_radius_m > 5000:
            raise ConfigError("[vehicles].arrival_radius_m must be 10..5000 m")


def _load_map(cfg: Config, mp, base: str) -> None:
    """[map] tile_url ("https://tiles.example.net/{z}/{x}/{y}.png"; empty: none),
    tile_attribution, tile_max_zoom, districts (the offline base layer, a
    GeoJSON file)."""
    _check_keys(mp, {"tile_url", "tile_attribution", "tile_max_zoom", "districts"}, "[map]")
    m = cfg.map
    if "tile_url" in mp:
        u = mp["tile_url"]
        if not isinstance(u, str) or (u and not (
                u.startswith(("https://", "http://")) and all(k in u for k in (
                    "{z}", "{x}", "{y}")))):
            raise ConfigError("[map].tile_url must be an http(s) URL with {z}, {x} and {y} "
                              "(or \"\" for no tiles)")
        if any(c in u for c in " ;'\"\\"):
            raise ConfigError("[map].tile_url must not contain spaces, quotes or ';'")
        m.tile_url = u
    if "tile_attribution" in mp:
        if not isinstance(mp["tile_attribution"], str) or len(mp["tile_attribution"]) > 200:
            raise ConfigError("[map].tile_attribution must be a text of at most 200 characters")
        m.tile_attribution = mp["tile_attribution"]
    if "tile_max_zoom" in mp:
        z = _num(mp["tile_max_zoom"], "[map].tile_max_zoom", 1, True)
        if z > 22:
            raise ConfigError("[map].tile_max_zoom must be 1..22")
        m.tile_max_zoom = z
    if "districts" in mp:
        if not isinstance(mp["districts"], str) or not mp["districts"]:
            raise ConfigError("[map].districts must be a GeoJSON file path")
        m.districts = os.path.normpath(os.path.join(base, mp["districts"]))
        if not os.path.isfile(m.districts):
            raise ConfigError("[map].districts: %s: no such file" % m.districts)
