"""The typed records that cross the store's border, each with one JSON shape.

What goes into the store is an :class:`EventRecord` (an event classified and
routed by the receiver, ready for ``Store.ingest``), a :class:`TrackRecord`
(a vehicle unit's track point, ``Store.ingest_track``) or an
:class:`Account`; what comes out are :class:`Event`, :class:`Alarm`,
:class:`AuditEntry`, :class:`SecurityEvent`, :class:`OutboxRow`,
:class:`TrackPoint`, :class:`PatrolStatus` and :class:`Dispatch`.
:class:`Position` is where a vehicle unit was, in one shape whether the
native position record or a DC-09 ``[X][Y]`` location carried it.  Both backends build them
from their rows here (``from_row``), so a column is read one way whatever
the database.

``to_json()`` is the one JSON shape of each record: the CLI prints it
(``events --json``, ``alarms list --json``, ``alarms show``), the console's
API serves it (``/api/events``, ``/api/alarms``, ``/api/security-events``,
the live stream's ``event`` message) and the console's JavaScript reads it.
The field names are an interface (docs/receiver.md, "Records"): add fields,
never rename or drop one.

A leaf module: it imports nothing of the receiver's when loaded (checks
that are another module's rule import it where they run).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

PROTOCOLS = ("native", "dc09")

# A site's arrival radius: a patrol within it is on scene.  10 m is below
# what a GNSS fix in a street canyon can promise; 5 km is a district.
MIN_SITE_RADIUS_M = 10
MAX_SITE_RADIUS_M = 5000
# Ten years: beyond any retention a data-protection officer signs.
MAX_TRACK_RETENTION_DAYS = 3650


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _pick(cls, row: Mapping[str, Any]) -> dict:
    """The columns of ``row`` that are fields of the dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in dict(row).items() if k in names}


def _location(ext: dict | None) -> dict | None:
    if not ext:
        return None
    from protocol import dc09  # noqa: PLC0415 - keep the store's import light

    return dc09.location(ext)


def _number_kind(code: int) -> str:
    from protocol import contactid  # noqa: PLC0415

    return contactid.number_kind(code)


# -- in: an account, an event to ingest ----------------------------------------------------


@dataclass
class Account:
    """One monitored panel.  ``number`` is the account as a string (for the
    native protocol the glwire u32 in decimal)."""

    number: str
    key: bytes
    protocol: str = "native"
    panel_kind: str = ""
    site_name: str = ""
    site_address: str = ""
    region: str = ""
    zones: dict = field(default_factory=dict)  # {"3": "vault door"}
    partitions: dict = field(default_factory=dict)  # {"1": "vault"}
    heartbeat_s: int | None = None  # supervision interval; None = receiver default
    grace_s: int | None = None
    supervised_paths: list = field(default_factory=lambda: [1])
    supervised: bool = True
    contacts: list = field(default_factory=list)  # [{"name":..., "phone":...}]
    # the periodic test the panel owes (receiver.rules.periodic): a 602
    # within test_interval_s + test_grace_s of the last; None: none owed
    test_interval_s: int | None = None
    test_grace_s: int | None = None
    # where the site is (decimal degrees; None: not known) and the radius a
    # patrol must come within to be on scene (metres; None: the receiver's
    # default, [vehicles] arrival_radius_m)
    site_lat: float | None = None
    site_lon: float | None = None
    site_radius_m: int | None = None
    # days a vehicle unit's track points are kept (None: [vehicles]
    # retention_days)
    track_retention_days: int | None = None
    highest_seq: int = 0
    tx_seq: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0

    # the columns the stores keep as JSON text
    JSON_COLUMNS = ("zones", "partitions", "supervised_paths", "contacts")

    def to_dict(self, with_key: bool = False) -> dict:
        d = {
            "number": self.number, "protocol": self.protocol, "panel_kind": self.panel_kind,
            "site_name": self.site_name, "site_address": self.site_address,
            "region": self.region, "zones": self.zones, "partitions": self.partitions,
            "heartbeat_s": self.heartbeat_s, "grace_s": self.grace_s,
            "supervised_paths": list(self.supervised_paths), "supervised": self.supervised,
            "contacts": self.contacts, "test_interval_s": self.test_interval_s,
            "test_grace_s": self.test_grace_s,
            "contacts": self.contacts, "site_lat": self.site_lat, "site_lon": self.site_lon,
            "site_radius_m": self.site_radius_m,
            "track_retention_days": self.track_retention_days,
            "highest_seq": self.highest_seq, "tx_seq": self.tx_seq,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }
        if with_key:
            d["key"] = self.key.hex()
        return d

    def db_columns(self) -> dict:
        """The accounts row (JSON columns as text, the key in hex); both
        backends write it."""
        d = self.to_dict(with_key=True)
        for k in self.JSON_COLUMNS:
            d[k] = json.dumps(d[k], sort_keys=True)
        return d

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Account":
        # the columns that are the account's (not the ingest's readings kept
        # beside them, such as last_test_at)
        d = _pick(cls, row)
        for k in cls.JSON_COLUMNS:
            d[k] = json.loads(d[k])
        d["key"] = bytes.fromhex(d["key"])
        d["supervised"] = bool(d["supervised"])
        return cls(**d)

    @classmethod
    def from_dict(cls, d: dict) -> "Account":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError("unknown account fields: %s" % ", ".join(sorted(unknown)))
        d = dict(d)
        key = d.get("key")
        if isinstance(key, str):
            d["key"] = bytes.fromhex(key)
        return cls(**d)

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError("protocol must be one of %s" % ", ".join(PROTOCOLS))
        if not isinstance(self.number, str) or not self.number:
            raise ValueError("account number must be a non-empty string")
        if self.protocol == "native":
            if not self.number.isdigit() or int(self.number) > 0xFFFFFFFF:
                raise ValueError("a native account number is a decimal u32 (0..4294967295)")
            if self.number != str(int(self.number)):
                raise ValueError("a native account number has no leading zeros")
        if self.protocol == "dc09":
            # SIA DC-09 5.5.1.6: the account is 3-16 hex digits (kept upper
            # case); the key is AES-128/192/256, or empty for a line that
            # reports unencrypted (5.4).
            if not 3 <= len(self.number) <= 16 or any(
                    c not in "0123456789ABCDEF" for c in self.number):
                raise ValueError("a DC-09 account number is 3-16 upper-case hex digits")
            if not isinstance(self.key, (bytes, bytearray)) or len(self.key) not in (0, 16, 24,
                                                                                     32):
                raise ValueError("a DC-09 key is 16, 24 or 32 bytes (or none: unencrypted)")
        elif not isinstance(self.key, (bytes, bytearray)) or not 16 <= len(self.key) <= 64:
            raise ValueError("account key must be 16..64 bytes")
        for name in ("zones", "partitions"):
            v = getattr(self, name)
            if not isinstance(v, dict) or not all(
                    str(k).isdigit() and isinstance(n, str) for k, n in v.items()):
                raise ValueError("%s must map numbers to names" % name)
        for name in ("heartbeat_s", "grace_s"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise ValueError("%s must be a non-negative integer" % name)
        if not self.supervised_paths or any(p not in (1, 2) for p in self.supervised_paths):
            raise ValueError("supervised_paths must be a non-empty subset of [1, 2]")
        if self.test_grace_s is not None and (not isinstance(self.test_grace_s, int)
                                              or self.test_grace_s < 0):
            raise ValueError("test_grace_s must be a non-negative integer")
        if self.test_interval_s is not None:
            from receiver.rules.periodic import test_profile  # noqa: PLC0415 - its rule

            test_profile(self.test_interval_s, self.test_grace_s or 0)
        json.dumps(self.contacts)
        self._validate_site()

    def _validate_site(self) -> None:
        lat, lon = self.site_lat, self.site_lon
        if (lat is None) != (lon is None):
            raise ValueError("give both site_lat and site_lon, or neither")
        if lat is not None and lon is not None:
            if not _is_number(lat) or not -90 <= lat <= 90:
                raise ValueError("site_lat must be a latitude -90..90 (decimal degrees)")
            if not _is_number(lon) or not -180 <= lon <= 180:
                raise ValueError("site_lon must be a longitude -180..180 (decimal degrees)")
        r = self.site_radius_m
        if r is not None and (not isinstance(r, int) or isinstance(r, bool)
                              or not MIN_SITE_RADIUS_M <= r <= MAX_SITE_RADIUS_M):
            raise ValueError("site_radius_m must be whole metres %d..%d"
                             % (MIN_SITE_RADIUS_M, MAX_SITE_RADIUS_M))
        d = self.track_retention_days
        if d is not None and (not isinstance(d, int) or isinstance(d, bool)
                              or not 1 <= d <= MAX_TRACK_RETENTION_DAYS):
            raise ValueError("track_retention_days must be 1..%d" % MAX_TRACK_RETENTION_DAYS)

    @property
    def site_position(self) -> tuple[float, float] | None:
        """(lat, lon) of the site, or None when the account has none."""
        if self.site_lat is None or self.site_lon is None:
            return None
        return (self.site_lat, self.site_lon)


# -- where a vehicle unit was ----------------------------------------------------------------

# The native position record's flag bits (protocol.lean.glwire POS_*), as
# stored in track_points.flags.
POS_VALID, POS_MOVING, POS_IGNITION, POS_ALARM = 0x01, 0x02, 0x04, 0x08
# A fix time further ahead of the receiver's clock than this is not
# believed (the unit's clock, not the satellites', wrote it): the point is
# placed at its arrival time instead.
FIX_TIME_AHEAD_S = 60.0


@dataclass(frozen=True)
class Position:
    """Where a vehicle unit was, one shape for both protocols: ``lat`` and
    ``lon`` in decimal degrees; the rest is what the native position record
    carries (docs/mobile.md, "The position on the wire") and None where the
    protocol does not say (a DC-09 ``[X][Y]`` location has only the two
    coordinates).  ``valid`` False: the unit's last known position, not a
    current fix; ``alarm``: the unit was in alarm (reporting faster)."""

    lat: float
    lon: float
    speed_kmh: float | None = None
    course_deg: float | None = None
    fix_time: float | None = None  # Unix seconds UTC of the fix
    quality: int | None = None  # GGA fix quality 0..8
    sats: int | None = None
    hdop: float | None = None
    valid: bool | None = None
    moving: bool | None = None
    ignition: bool | None = None
    alarm: bool | None = None
    protocol: str = "native"

    @classmethod
    def from_wire(cls, p: Mapping[str, Any]) -> "Position":
        """From the native record as protocol.lean.glwire decodes it
        (micro-degrees, 0.1 km/h, 0.1 degree, HDOP in tenths)."""
        fl = int(p["flags"])
        return cls(lat=p["lat"] / 1e6, lon=p["lon"] / 1e6, speed_kmh=p["speed"] / 10,
                   course_deg=p["course"] / 10, fix_time=float(p["fix_time"]) or None,
                   quality=int(p["quality"]), sats=int(p["sats"]), hdop=p["hdop"] / 10,
                   valid=bool(fl & POS_VALID), moving=bool(fl & POS_MOVING),
                   ignition=bool(fl & POS_IGNITION), alarm=bool(fl & POS_ALARM))

    @classmethod
    def from_location(cls, loc: Mapping[str, Any]) -> "Position":
        """From a DC-09 location ({"lat", "lon"}: extended data Y, X)."""
        return cls(lat=float(loc["lat"]), lon=float(loc["lon"]), protocol="dc09")

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> "Position | None":
        if not d:
            return None
        return cls(**_pick(cls, d))

    @property
    def flags(self) -> int | None:
        """The native flag bits (None: the protocol did not say)."""
        if self.valid is None:
            return None
        return ((POS_VALID if self.valid else 0) | (POS_MOVING if self.moving else 0)
                | (POS_IGNITION if self.ignition else 0) | (POS_ALARM if self.alarm else 0))

    @classmethod
    def from_columns(cls, row: Mapping[str, Any]) -> "Position":
        """From a track_points row (flags NULL: not said)."""
        fl = row.get("flags")
        known = fl is not None
        fl = int(fl or 0)
        return cls(lat=row["lat"], lon=row["lon"], speed_kmh=row.get("speed_kmh"),
                   course_deg=row.get("course_deg"), fix_time=row.get("fix_time"),
                   quality=row.get("quality"), sats=row.get("sats"), hdop=row.get("hdop"),
                   valid=bool(fl & POS_VALID) if known else None,
                   moving=bool(fl & POS_MOVING) if known else None,
                   ignition=bool(fl & POS_IGNITION) if known else None,
                   alarm=bool(fl & POS_ALARM) if known else None,
                   protocol=row.get("protocol") or "native")

    def at(self, received_at: float) -> float:
        """When the unit was there: the fix time when it has one that is not
        ahead of ``received_at`` by more than FIX_TIME_AHEAD_S, else the
        arrival time."""
        t = self.fix_time
        if t is None or t <= 0 or t > received_at + FIX_TIME_AHEAD_S:
            return received_at
        return t

    def location(self) -> dict:
        return {"lat": self.lat, "lon": self.lon}

    def to_json(self) -> dict:
        return asdict(self)


# The track_points columns TrackRecord.db_values() fills, in order.
TRACK_COLUMNS = ("account", "dedupe_key", "at", "received_at", "lat", "lon", "speed_kmh",
                 "course_deg", "fix_time", "quality", "sats", "hdop", "flags", "reason",
                 "source", "event_id", "protocol", "path", "peer")
TRACK_SOURCES = ("position", "event")


@dataclass
class TrackRecord:
    """A track point to store: a POSITION message (``source`` "position",
    ``reason`` why the unit sent it) or the position an event carried
    (``source`` "event", ``event_id``; the ingest plan makes these)."""

    account: str
    dedupe_key: str
    received_at: float
    position: Position
    reason: int | None = None
    source: str = "position"
    event_id: int | None = None
    path: int = 1
    peer: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.account, self.dedupe_key)

    @property
    def at(self) -> float:
        return self.position.at(self.received_at)

    def db_values(self) -> tuple:
        p = self.position
        return (self.account, self.dedupe_key, self.at, self.received_at, p.lat, p.lon,
                p.speed_kmh, p.course_deg, p.fix_time, p.quality, p.sats, p.hdop, p.flags,
                self.reason, self.source, self.event_id, p.protocol, self.path, self.peer)

    def stored(self, point_id: int) -> "TrackPoint":
        return TrackPoint(id=point_id, account=self.account, at=self.at,
                          received_at=self.received_at, position=self.position,
                          reason=self.reason, source=self.source, event_id=self.event_id,
                          path=self.path, peer=self.peer)


@dataclass(frozen=True)
class TrackOutcome:
    point_id: int
    duplicate: bool


# The events table's columns that EventRecord.db_values() fills, in order.
EVENT_COLUMNS = ("account", "protocol", "source", "dedupe_key", "seq", "qualifier", "code",
                 "event_class", "priority", "description", "partition", "zone", "text",
                 "value", "event_time", "received_at", "path", "peer", "user_number", "ext",
                 "position")


@dataclass
class EventRecord:
    """A normalized event, classified and routed, ready for ``ingest``."""

    account: str
    protocol: str
    dedupe_key: str
    qualifier: int
    code: int
    partition: int
    zone: int
    received_at: float
    seq: int | None = None
    text: str | None = None
    value: int | None = None
    event_time: float | None = None
    path: int = 1
    peer: str = ""
    source: str = "panel"  # 'panel' or 'supervision'
    event_class: str = "other"
    priority: int = 99
    description: str = ""
    user: int | None = None  # the user the event names (Contact ID user reports, SIA 'id')
    ext: dict | None = None  # DC-09 extended data and SIA modifiers, raw ({"X": "4.8952"})
    position: Position | None = None  # where a vehicle unit was (native ext bit 2, DC-09 X/Y)
    # set by the receiver before ingest:
    open_alarm: bool = False
    routed_to: dict | None = None  # {"police_station": "ps-3", ...}
    outbox: list = field(default_factory=list)  # [(output name, payload dict)]
    tx_seq: int | None = None  # our sequence towards the panel, persisted with it
    # the operator's workflow (issue 17), set by the receiver before ingest:
    # the plan and deadlines the alarm opens with (receiver.workflow.handling.Opening),
    # the alarm whose call raised it (a duress passcode), and for a panel's
    # cancel (406) the dispositions to close what it cancels with (None:
    # attach only; receiver.workflow.dispositions.Dispositions)
    opening: Any = None
    raised_from: int | None = None
    cancel_closes: Any = None

    @property
    def key(self) -> tuple[str, str]:
        """What the store keeps once: (account, dedupe_key)."""
        return (self.account, self.dedupe_key)

    def stored(self, event_id: int, test_placement: int | None = None,
               attached_to: int | None = None) -> "Event":
        """The event as the store gives it out once stored as ``event_id``
        (with what the rules marked it with: IngestOutcome)."""
        return Event(test_placement=test_placement, attached_to=attached_to, id=event_id,
                     account=self.account, protocol=self.protocol,
                     source=self.source, dedupe_key=self.dedupe_key, seq=self.seq,
                     qualifier=self.qualifier, code=self.code, event_class=self.event_class,
                     priority=self.priority, description=self.description,
                     partition=self.partition, zone=self.zone, text=self.text,
                     value=self.value, event_time=self.event_time,
                     received_at=self.received_at, path=self.path, peer=self.peer,
                     user=self.user, ext=self.ext, position=self.position)

    def db_values(self) -> tuple:
        """The events row, in EVENT_COLUMNS order (both backends insert it)."""
        return (self.account, self.protocol, self.source, self.dedupe_key, self.seq,
                self.qualifier, self.code, self.event_class, self.priority, self.description,
                self.partition, self.zone, self.text, self.value, self.event_time,
                self.received_at, self.path, self.peer, self.user,
                None if self.ext is None else json.dumps(self.ext, sort_keys=True,
                                                         ensure_ascii=False),
                None if self.position is None else json.dumps(self.position.to_json(),
                                                              sort_keys=True))

    def track(self, event_id: int) -> "TrackRecord | None":
        """The track point the event's position makes once stored as
        ``event_id`` (None without a position, and for the receiver's own
        events: their position is one the unit sent, in the track already)."""
        if self.position is None or self.source != "panel":
            return None
        return TrackRecord(self.account, "event:%d" % event_id, self.received_at,
                           self.position, None, "event", event_id, self.path, self.peer)


@dataclass(frozen=True)
class IngestOutcome:
    """What the store did with one record: the event's id (the first
    copy's for a duplicate), the alarm it opened, and what the rules
    decided (receiver.ingest): the test placement it fell under, the held
    alarm it was counted on (with the hold's signal count then), the
    incident its alarm joined or heads, the alarms its restore resolved;
    and the earlier alarms it changed (a 406 cancel attached or closed, a
    459 recent closing attached: receiver.workflow_db.follow_up)."""

    event_id: int
    duplicate: bool
    alarm_id: int | None = None
    test_placement: int | None = None
    attached_to: int | None = None
    signals: int | None = None
    incident_id: int | None = None
    resolved: tuple = ()
    track_point_id: int | None = None  # the track point the event's position made
    touched: tuple = ()


# -- out: what the store gives back -----------------------------------------------------------


class _Row:
    """A record read from one table row: the columns that are fields."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]):
        return cls(**_pick(cls, row))

    def to_json(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]  # (a dataclass)


@dataclass(frozen=True)
class Event(_Row):
    """A stored event (a row of ``events``).  ``user``: the user the event
    names, or None; ``ext``: DC-09 extended data (dict) or None."""

    id: int
    account: str
    protocol: str
    source: str
    dedupe_key: str
    seq: int | None
    qualifier: int
    code: int
    event_class: str
    priority: int
    description: str
    partition: int
    zone: int
    text: str | None
    value: int | None
    event_time: float | None
    received_at: float
    path: int
    peer: str
    user: int | None = None
    ext: dict | None = None
    # the test placement the event fell under (it opened no alarm), and
    # the held zone's alarm it was counted on (receiver.rules)
    test_placement: int | None = None
    attached_to: int | None = None
    position: Position | None = None

    @property
    def location(self) -> dict | None:
        """{"lat", "lon"}: the event's position (native or DC-09), or for an
        event stored before positions were, DC-09 extended data X/Y; None."""
        if self.position is not None:
            return self.position.location()
        return _location(self.ext)

    @property
    def number_kind(self) -> str:
        """What the event's zone field is (protocol.contactid.number_kind)."""
        return _number_kind(self.code)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Event":
        d = dict(row)
        d["user"] = d.pop("user_number", None)
        ext = d.get("ext")
        d["ext"] = json.loads(ext) if isinstance(ext, str) else ext
        pos = d.get("position")
        d["position"] = Position.from_json(json.loads(pos) if isinstance(pos, str) else pos)
        return cls(**_pick(cls, d))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Event":
        """From :meth:`to_json`'s shape (a message from another receiver)."""
        d = _pick(cls, d)
        d["position"] = Position.from_json(d.get("position"))
        return cls(**d)

    def to_json(self) -> dict:
        d = asdict(self)
        d["location"] = self.location
        d["number_kind"] = self.number_kind
        return d


@dataclass(frozen=True)
class Alarm(_Row):
    """An alarm in the operator queue (a row of ``alarms``); ``routed_to``:
    {level: dispatch centre id}."""

    id: int
    event_id: int
    account: str
    event_class: str
    priority: int
    code: int
    partition: int
    zone: int
    description: str
    state: str
    created_at: float
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    resolved_by: str | None = None
    resolved_at: float | None = None
    note: str | None = None
    restored_at: float | None = None
    routed_to: dict = field(default_factory=dict)
    # the incident it belongs to (its head's id; a head's own), the restore
    # event stamped on it, how it ended (receiver.rules.hygiene.RESTORED
    # when its restore resolved it)
    incident_id: int | None = None
    restore_event_id: int | None = None
    disposition: str | None = None
    # the operator's workflow (issue 17; receiver.workflow): the plan it
    # opened with, who handles it (``claim_rev``: the claim's revision),
    # its escalation deadlines and when each fired, how it ended (the
    # disposition's code is ``disposition`` above; its words and category)
    plan_name: str | None = None
    plan_hash: str | None = None
    plan_version: str | None = None
    handler: str | None = None
    handler_since: float | None = None
    claim_rev: int = 0
    ack_due_at: float | None = None
    resolve_due_at: float | None = None
    ack_within_s: int | None = None
    resolve_within_min: int | None = None
    ack_escalated_at: float | None = None
    resolve_escalated_at: float | None = None
    disposition_label: str | None = None
    disposition_category: str | None = None
    override_reason: str | None = None
    raised_from: int | None = None  # a duress passcode on a call of this alarm raised it
    # what the panel said after it (issue 22, CP-01): a cancel (406: the
    # user who disarmed, how long after the alarm) and a recent closing
    # (459: the user who armed just before)
    cancel_event_id: int | None = None
    cancel_user: int | None = None
    cancelled_at: float | None = None
    cancel_after_s: float | None = None
    recent_close_user: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Alarm":
        d = _pick(cls, row)
        d["routed_to"] = json.loads(d["routed_to"]) if isinstance(d["routed_to"], str) else (
            d["routed_to"] or {})
        return cls(**d)

    @property
    def confirmed(self) -> bool:
        """A confirmed intrusion (139: a second detector within the panel's
        confirmation window, docs/firmware.md "Confirmed alarms")."""
        from protocol import contactid  # noqa: PLC0415

        return self.code in contactid.CONFIRMED_CODES

    @property
    def is_open(self) -> bool:
        return self.state != "resolved"

    def to_json(self) -> dict:
        d = asdict(self)
        d["number_kind"] = _number_kind(self.code)
        d["confirmed"] = self.confirmed
        return d


@dataclass(frozen=True)
class AuditEntry(_Row):
    """One step in an alarm's audit trail (``from_state`` None: raised).
    A row of the operator's workflow (issue 17) has an ``action``
    (receiver.workflow.audit) and its ``detail``; it keeps the alarm's
    state (``from_state`` = ``to_state``)."""

    id: int
    alarm_id: int
    at: float
    from_state: str | None
    to_state: str
    actor: str
    note: str | None = None
    action: str | None = None
    detail: dict | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "AuditEntry":
        d = _pick(cls, row)
        if isinstance(d.get("detail"), str):
            d["detail"] = json.loads(d["detail"])
        return cls(**d)


@dataclass(frozen=True)
class SecurityEvent(_Row):
    """A rejected frame or connection (bad MAC, replay, unknown account...)
    with the peer's address; ``account`` None when it could not be told."""

    id: int
    at: float
    account: str | None
    seq: int | None
    reason: str
    detail: str
    peer: str
    transport: str


@dataclass(frozen=True)
class OutboxRow(_Row):
    """One delivery of an alarm to one output (store-and-forward): pending
    until ``delivered_at`` is set."""

    id: int
    output: str
    alarm_id: int | None
    payload: dict
    created_at: float
    attempts: int = 0
    last_attempt_at: float | None = None
    last_error: str | None = None
    delivered_at: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "OutboxRow":
        d = _pick(cls, row)
        if isinstance(d["payload"], str):
            d["payload"] = json.loads(d["payload"])
        return cls(**d)


# Why a unit sent a track point (the POSITION message's reason,
# firmware/device/vehicle.py REASONS), in words.
POSITION_REASONS = {0: "unspecified", 1: "first", 2: "interval", 3: "distance", 4: "turn",
                    5: "started moving", 6: "stopped", 7: "alarm", 8: "heartbeat"}


@dataclass(frozen=True)
class TrackPoint(_Row):
    """A stored track point (a row of ``track_points``): where ``account``
    was ``at`` (the fix time, else the arrival time), from a POSITION
    message (``source`` "position") or an event (``source`` "event",
    ``event_id``)."""

    id: int
    account: str
    at: float
    received_at: float
    position: Position
    reason: int | None = None
    source: str = "position"
    event_id: int | None = None
    path: int = 1
    peer: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "TrackPoint":
        d = dict(row)
        return cls(id=d["id"], account=d["account"], at=d["at"], received_at=d["received_at"],
                   position=Position.from_columns(d), reason=d.get("reason"),
                   source=d["source"], event_id=d.get("event_id"), path=d.get("path") or 1,
                   peer=d.get("peer") or "")

    def to_json(self) -> dict:
        d = asdict(self)
        d["reason_text"] = (None if self.reason is None
                            else POSITION_REASONS.get(self.reason, str(self.reason)))
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TrackPoint":
        """From :meth:`to_json`'s shape (a message from another receiver)."""
        d = _pick(cls, d)
        d["position"] = Position.from_json(d["position"])
        return cls(**d)


# A patrol car's status (issue 19): set by the console, by its crew at the
# keypad (Contact ID 470, 471, 472, firmware/device/vunit.py), or by the
# receiver (dispatched, on scene at arrival).
PATROL_STATUSES = ("available", "dispatched", "on_scene")
PATROL_STATUS_WORDS = {"available": "available", "dispatched": "dispatched",
                       "on_scene": "on scene"}
# The keypad's status reports, by Contact ID code.
PATROL_STATUS_CODES = {470: "available", 471: "dispatched", 472: "on_scene"}


@dataclass(frozen=True)
class PatrolStatus(_Row):
    """A patrol's status as last set: ``actor`` a console user, "receiver",
    or "keypad (user N)"; ``alarm_id`` the alarm it was dispatched to."""

    account: str
    status: str
    at: float
    actor: str
    alarm_id: int | None = None


@dataclass(frozen=True)
class Dispatch(_Row):
    """A patrol sent to an alarm (a row of ``dispatches``): where to
    (``target_lat``/``target_lon``, the alarm's position or its site), how
    far it was then in a straight line, and when it came within
    ``radius_m`` (``arrived_at``, None until then)."""

    id: int
    alarm_id: int
    patrol: str
    dispatched_at: float
    dispatched_by: str
    target_lat: float
    target_lon: float
    radius_m: float
    distance_m: float | None = None
    arrived_at: float | None = None

    @property
    def arrival_s(self) -> float | None:
        """Seconds from dispatch to arrival (None: not arrived)."""
        return None if self.arrived_at is None else self.arrived_at - self.dispatched_at

    def to_json(self) -> dict:
        d = asdict(self)
        d["arrival_s"] = self.arrival_s
        return d
@dataclass(frozen=True)
class ZoneHold(_Row):
    """A held zone (runaway suppression): its anchor alarm, since when, why,
    and the signals counted on it; released by someone, or live."""

    id: int
    account: str
    zone: int
    alarm_id: int
    since: float
    reason: str
    signals: int = 0
    last_signal_at: float | None = None
    released_at: float | None = None
    released_by: str | None = None


@dataclass(frozen=True)
class RulesAuditEntry(_Row):
    """One change of a schedule, a test placement or a zone hold: who, when,
    what (``action``: schedule.set, schedule.delete, schedule.change,
    schedule.cancel, test.place, test.end, zone.hold, zone.release) and the
    sentence a person reads."""

    id: int
    at: float
    actor: str
    action: str
    account: str
    sentence: str
    partition: int | None = None
    zone: int | None = None
