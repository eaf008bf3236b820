"""The receiver's storage interface and the records that cross it.

The receiver talks to storage only through :class:`Store`, so SQLite (the
embedded default, ``receiver.sqlite_store``) and a later PostgreSQL
backend are interchangeable.  What a backend must guarantee:

- :meth:`Store.ingest` is atomic and durable when it returns: the event,
  the alarm it opens (with its first audit row), its outbox rows and the
  account's replay state are committed together, or nothing is.  The
  receiver ACKs a panel only after ``ingest`` returned.
- :meth:`Store.ingest_many` does the same for several events that arrived
  in one message (a SIA DC-09 block with several events): all of them,
  with their alarms and outbox rows, in one transaction, or none.
- ``(account, dedupe_key)`` is unique: ingesting the same event twice
  stores it once and returns ``duplicate=True`` with the first event's id.
- Transient failures (disk full, read-only file system, I/O error, lock
  timeout) raise :class:`StoreUnavailable`; the receiver NAKs busy and
  panels retry.  Too much queued work raises :class:`StoreBusy` up front.
- ``pending_writes`` is the number of write requests accepted but not yet
  committed (the receiver's backpressure reads it).
- Backends may group commits (many ``ingest`` calls, one transaction);
  callers must not assume one transaction per call.
- A store is created only when asked (``create=True``): otherwise a
  missing SQLite file, or a PostgreSQL database without the schema, raises
  :class:`StoreMissing` and nothing is written.  An operator who runs a
  read-only command in the wrong directory must get an error, never a new
  empty store whose empty alarm list looks like a real one.
- The store holds every account key: a new SQLite file (and its WAL and
  SHM files, which SQLite creates with the main file's mode) is 0600 and a
  directory made for it 0700; an existing file that group or others can
  read is logged as a warning each time it is opened.
"""

from __future__ import annotations

import abc
import logging
import json
import os
import re
import stat
from dataclasses import dataclass, field

_LOGGER = logging.getLogger(__name__)


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The store cannot commit now (disk full, read-only, I/O error, locked).
    Transient: retry later."""


class StoreBusy(StoreError):
    """More writes are queued than the bound allows: back off."""


class SchemaError(StoreError):
    """The database's schema is not one this receiver can use."""


class StoreMissing(StoreError):
    """There is no store where one was expected, and the caller did not ask
    for a new one.  ``where`` is the absolute path (or the masked URL)."""

    def __init__(self, message: str, where: str):
        super().__init__(message)
        self.where = where


# Modes of what the store creates: it holds every account's key, so only
# its owner (the receiver's user) may read it.
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
# What SQLite keeps beside the database in WAL mode; it creates them with
# the database file's permission bits.
SQLITE_SIDE_FILES = ("-wal", "-shm")


PROTOCOLS = ("native", "dc09")

# ``--db`` / ``[store] url`` values that select the PostgreSQL backend.
PG_URL_PREFIXES = ("postgresql://", "postgres://")


def is_url(db: str) -> bool:
    """Is ``db`` a PostgreSQL URL (rather than an SQLite file path)?"""
    return isinstance(db, str) and db.startswith(PG_URL_PREFIXES)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ***, for logs and messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def exposed_files(path: str) -> list[tuple[str, int]]:
    """[(file, mode)] of an SQLite store's files (the database, its WAL and
    SHM) that its group or others may read or write."""
    out = []
    for f in [path] + [path + s for s in SQLITE_SIDE_FILES]:
        try:
            mode = stat.S_IMODE(os.stat(f).st_mode)
        except OSError:
            continue
        if mode & 0o077:
            out.append((f, mode))
    return out


def warn_if_exposed(path: str) -> bool:
    """Log a warning naming each store file its group or others can read;
    True if there was one."""
    bad = exposed_files(path)
    if bad:
        _LOGGER.warning(
            "the store holds every account key but group or others may read it: %s "
            "(fix: chmod 600 %s)", ", ".join("%s mode=%04o" % (f, m) for f, m in bad),
            " ".join(f for f, _ in bad))
    return bool(bad)


def make_private_dirs(directory: str) -> list[str]:
    """Create ``directory`` and any missing parents with mode 0700; return
    the ones created (outermost first), each logged."""
    missing = []
    d = os.path.abspath(directory)
    while not os.path.isdir(d):
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    made = []
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile (another process), or a file: connect says so
        os.chmod(d, PRIVATE_DIR_MODE)  # whatever the umask
        _LOGGER.warning("created a directory for the store path=%s mode=0700", d)
        made.append(d)
    return made


def make_store(db: str, max_batch: int | None = None, metrics=None,
               create: bool = True) -> "Store":
    """The backend ``db`` names: a ``postgresql://`` URL selects
    receiver.pg_store (asyncpg, the ``postgres`` extra), anything else is an
    SQLite file path.  ``create``: may ``open`` make a new store (an SQLite
    file, or the schema in an empty PostgreSQL database)?  If not, a missing
    one raises StoreMissing."""
    kw = {"metrics": metrics, "create": create}
    if max_batch is not None:
        kw["max_batch"] = max_batch
    if is_url(db):
        try:
            from receiver.pg_store import PGStore  # noqa: PLC0415
        except ImportError as e:
            raise StoreError("a postgresql:// store needs asyncpg (pip install "
                             "'guardline[postgres]'): %s" % e) from None
        return PGStore(db, **kw)
    from receiver.sqlite_store import SQLiteStore  # noqa: PLC0415

    return SQLiteStore(db, **kw)


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
    highest_seq: int = 0
    tx_seq: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_dict(self, with_key: bool = False) -> dict:
        d = {
            "number": self.number, "protocol": self.protocol, "panel_kind": self.panel_kind,
            "site_name": self.site_name, "site_address": self.site_address,
            "region": self.region, "zones": self.zones, "partitions": self.partitions,
            "heartbeat_s": self.heartbeat_s, "grace_s": self.grace_s,
            "supervised_paths": list(self.supervised_paths), "supervised": self.supervised,
            "contacts": self.contacts, "highest_seq": self.highest_seq, "tx_seq": self.tx_seq,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }
        if with_key:
            d["key"] = self.key.hex()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Account":
        known = {f for f in cls.__dataclass_fields__}
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
        json.dumps(self.contacts)


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
    # set by the receiver before ingest:
    open_alarm: bool = False
    routed_to: dict | None = None  # {"police_station": "ps-3", ...}
    outbox: list = field(default_factory=list)  # [(output name, payload dict)]
    tx_seq: int | None = None  # our sequence towards the panel, persisted with it

    def as_dict(self) -> dict:
        """The event as list_events gives it out (without its id)."""
        from protocol import dc09  # noqa: PLC0415

        d = self._fields()
        d["location"] = dc09.location(self.ext) if self.ext else None
        return d

    def _fields(self) -> dict:
        return {k: getattr(self, k) for k in (
            "account", "protocol", "dedupe_key", "seq", "qualifier", "code", "partition",
            "zone", "text", "value", "event_time", "received_at", "path", "peer", "source",
            "event_class", "priority", "description", "user", "ext")}

    def db_values(self) -> tuple:
        """The events row, in EVENT_COLUMNS order (both backends insert it)."""
        return (self.account, self.protocol, self.source, self.dedupe_key, self.seq,
                self.qualifier, self.code, self.event_class, self.priority, self.description,
                self.partition, self.zone, self.text, self.value, self.event_time,
                self.received_at, self.path, self.peer, self.user,
                None if self.ext is None else json.dumps(self.ext, sort_keys=True,
                                                         ensure_ascii=False))


# The events table's columns that EventRecord.db_values() fills, in order.
EVENT_COLUMNS = ("account", "protocol", "source", "dedupe_key", "seq", "qualifier", "code",
                 "event_class", "priority", "description", "partition", "zone", "text",
                 "value", "event_time", "received_at", "path", "peer", "user_number", "ext")


def event_row(d: dict) -> dict:
    """An events row as the stores give it out (list_events): ``user`` (the
    user the event names, or None), ``ext`` (dict or None) and ``location``
    ({"lat", "lon"} from DC-09 extended data X/Y, or None)."""
    from protocol import dc09  # noqa: PLC0415 - keep the store's import light

    d["user"] = d.pop("user_number", None)
    ext = d.get("ext")
    d["ext"] = json.loads(ext) if isinstance(ext, str) else ext
    d["location"] = dc09.location(d["ext"]) if d["ext"] else None
    return d


def user_code_list() -> str:
    """The Contact ID codes whose ZZZ is a user, as an SQL list (the schema
    migration that added events.user_number fills it for older rows)."""
    from protocol import contactid  # noqa: PLC0415

    return ", ".join(str(c) for c in range(1000) if contactid.zone_is_user(c))


@dataclass
class IngestOutcome:
    event_id: int
    duplicate: bool
    alarm_id: int | None = None


class Store(abc.ABC):
    """What the receiver needs from storage.  All methods are coroutines
    except the two cheap properties."""

    # -- shared by the backends: what a finished group commit changes --------------

    location = ""  # "path=..." or "url=...", for log lines

    @staticmethod
    def _apply_account_fields(acct: "Account | None", number: str, fields: dict) -> "Account":
        """Apply an update_account() change to the stored account and check
        it, the same way whatever the backend: KeyError for no such
        account, ValueError for a field that is unknown or may not change."""
        if acct is None:
            raise KeyError(number)
        for k, v in fields.items():
            if k in ("number", "created_at"):
                raise ValueError("%s cannot be changed" % k)
            if not hasattr(acct, k):
                raise ValueError("unknown account field %s" % k)
            setattr(acct, k, bytes.fromhex(v) if k == "key" and isinstance(v, str) else v)
        acct.validate()
        return acct

    def _note_batch(self, n: int, elapsed: float, failed, unavailable) -> None:
        """Count a group commit of ``n`` requests (``failed`` is None when it
        committed), observe its metrics, and move between healthy and
        failing: a store that cannot commit makes the receiver NAK busy
        until a commit succeeds again."""
        if failed is None:
            self.commits += 1
            self.batched += n
            if self.metrics is not None:
                self.metrics.commit_seconds.observe(elapsed)
                self.metrics.commit_batch.observe(n)
        if unavailable is not None:
            if self._healthy:
                _LOGGER.error("store failing %s error=%s (NAKing busy until it recovers)",
                              self.location, unavailable)
            self._healthy = False
            self._last_error = str(unavailable)
        elif not self._healthy:
            _LOGGER.warning("store recovered %s after error=%s", self.location,
                            self._last_error)
            self._healthy = True
            self._last_error = None


    # True when several receivers may share this store at once (PostgreSQL):
    # the receiver then coordinates supervision and forwarding with the
    # others through it (receiver.ownership, docs/scale-out.md).
    shared: bool = False

    # -- lifecycle --------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema to the current version."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Commit what is queued, then close."""

    @property
    @abc.abstractmethod
    def pending_writes(self) -> int: ...

    @property
    @abc.abstractmethod
    def healthy(self) -> bool:
        """False after a failed commit until the next successful one."""

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    # -- the event path ---------------------------------------------------------

    @abc.abstractmethod
    async def ingest(self, rec: EventRecord) -> IngestOutcome: ...

    @abc.abstractmethod
    async def ingest_many(self, recs: list[EventRecord]) -> list[IngestOutcome]:
        """Several events in one transaction (all or none), outcomes in order."""

    @abc.abstractmethod
    async def record_security_event(self, at: float, account: str | None, seq: int | None,
                                    reason: str, detail: str, peer: str,
                                    transport: str) -> int: ...

    @abc.abstractmethod
    async def save_replay_state(self, rows: list[tuple[str, int, int]]) -> None:
        """[(account, highest_seq, tx_seq)]: never lowers a stored value."""

    # -- accounts ---------------------------------------------------------------

    @abc.abstractmethod
    async def add_account(self, account: Account) -> None: ...

    @abc.abstractmethod
    async def update_account(self, number: str, **fields) -> None: ...

    @abc.abstractmethod
    async def delete_account(self, number: str) -> None: ...

    @abc.abstractmethod
    async def get_account(self, number: str) -> Account | None: ...

    @abc.abstractmethod
    async def list_accounts(self) -> list[Account]: ...

    @abc.abstractmethod
    async def accounts_revision(self) -> int:
        """A number that changes whenever an account's key, protocol or
        supervision changes (the receiver reloads its keyring then)."""

    # -- reading events ---------------------------------------------------------

    @abc.abstractmethod
    async def list_events(self, account: str | None = None, since: float | None = None,
                          after_id: int = 0, limit: int = 1000) -> list[dict]: ...

    @abc.abstractmethod
    async def list_security_events(self, since: float | None = None,
                                   limit: int = 1000) -> list[dict]: ...

    @abc.abstractmethod
    async def prune_security_events(self, before: float, keep: int, batch: int) -> int:
        """Delete security events older than ``before`` and all but the
        newest ``keep``, oldest first, at most ``batch`` rows per call (so
        one call never holds the writer long); returns how many went
        (receiver.retention)."""

    @abc.abstractmethod
    async def supervision_failed(self) -> list[tuple[str, int]]:
        """(account, path) whose latest supervision event is a failure."""

    # -- alarms -----------------------------------------------------------------

    @abc.abstractmethod
    async def list_alarms(self, state: str | None = None, limit: int = 1000) -> list[dict]: ...

    @abc.abstractmethod
    async def count_alarms(self, states: tuple[str, ...]) -> dict[str, int]:
        """{state: number of alarms in it} for each of ``states`` (0 when
        none), counted by the database (metrics scrapes)."""

    @abc.abstractmethod
    async def get_alarm(self, alarm_id: int) -> dict | None: ...

    @abc.abstractmethod
    async def alarm_transition(self, alarm_id: int, action: str, actor: str,
                               note: str | None, at: float) -> dict:
        """Apply an operator action (receiver.alarms.TRANSITIONS); raises
        AlarmStateError when not allowed.  Returns the updated alarm."""

    @abc.abstractmethod
    async def alarm_audit(self, alarm_id: int) -> list[dict]: ...

    # -- outbox -----------------------------------------------------------------

    @abc.abstractmethod
    async def outbox_pending(self, output: str, limit: int = 100) -> list[dict]:
        """Undelivered rows for ``output``, oldest first."""

    @abc.abstractmethod
    async def outbox_result(self, outbox_id: int, delivered: bool, error: str | None,
                            at: float) -> None: ...

    @abc.abstractmethod
    async def outbox_depth(self) -> dict[str, int]: ...
