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
  panels retry.
- Each request of a group commit gets its own answer: a request that
  cannot be stored (a bad record, an event whose conflicting row vanished:
  :class:`EventNotStored`) fails alone, and the others commit as if it had
  not been there.  Only a failure of the commit itself answers every
  request of the group with StoreUnavailable.  Too much queued work raises :class:`StoreBusy` up front.
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
import asyncio
import logging
import os
import re
import socket
import stat
import time
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from receiver import rules_store
from receiver.cluster_store import ClusterStore
from receiver.ingest import Hygiene
from receiver.records import (Account, Alarm, AuditEntry, Dispatch, Event, EventRecord,
                              IngestOutcome, OutboxRow, PatrolStatus, RulesAuditEntry,
                              SecurityEvent, TrackOutcome, TrackPoint, TrackRecord, ZoneHold)
from receiver.rules.schedules import OpenClose, Schedule, TemporaryChange
from receiver.rules.testmode import Placement

_LOGGER = logging.getLogger(__name__)


# Track points one track() call returns at most (a day of a van reporting
# every 5 s is 17,280: a replay of a long range asks again from the last).
TRACK_MAX_PAGE = 20_000
# Track points the vehicle checks read per look (receiver.vehicles.loop).
TRACK_FEED_PAGE = 5_000

# Events one events_after() call returns by default, and at most (a page
# of 5000 events is ~2.5 MB of JSON: a reader that wants more asks again).
FEED_PAGE = 1000
FEED_MAX_PAGE = 5000


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The store cannot commit now (disk full, read-only, I/O error, locked).
    Transient: retry later."""


def failure_words(e: BaseException) -> str:
    """Why the database failed, for the person who reads the log or the
    CLI: the database's own message, or what the connection did; never an
    exception's class name.  Both backends' StoreUnavailable say this."""
    if isinstance(e, ConnectionRefusedError):
        return "the database server refused the connection (is it running, and listening there?)"
    if isinstance(e, socket.gaierror):
        return "the database server's name does not resolve (%s)" % (e.strerror or e)
    if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
        return "the database server did not answer in time"
    if isinstance(e, ConnectionError):
        return "the connection to the database server was lost (%s)" % (
            (e.strerror or str(e) or "closed").lower())
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e).strip() or "the database failed without saying why"


class EventNotStored(StoreUnavailable):
    """One request of a group commit could not be stored although the store
    works (receiver.ingest.ConflictVanished: the row its key conflicted
    with was gone when read back).  Its sender retries, as for any
    StoreUnavailable; the other requests of the commit keep their own
    answers, and the store stays healthy."""


class StoreBusy(StoreError):
    """More writes are queued than the bound allows: back off."""


class SchemaError(StoreError):
    """The database's schema is not one this receiver can use."""


class DispatchConflict(StoreError):
    """The patrol was already dispatched to that alarm, or the alarm is not
    there or resolved (a message for the operator)."""
class RowMoved(Exception):
    """A compare-and-set found its row changed since it was read (another
    console, another receiver): what the transaction wrote is rolled back,
    and the caller reads again and decides again."""


_T = TypeVar("_T")  # what a transaction's body returns


class Tx(abc.ABC):
    """One transaction on the store (:meth:`Store.transact`, or a
    consistent read, :meth:`Store.read`).  Statements name their
    parameters ``:name`` (SQLite's own style; the PostgreSQL backend numbers
    them), so a statement is written once for both backends
    (receiver.workflow_db)."""

    @abc.abstractmethod
    async def rows(self, sql: str, **params) -> list:
        """The rows of a query (each readable by column name and position)."""

    @abc.abstractmethod
    async def run(self, sql: str, **params) -> int:
        """Run a statement; how many rows it changed."""

    @abc.abstractmethod
    async def drive(self, op):
        """Run one of receiver.rules_store's operations (a generator of
        ``?`` statements) in this transaction; its result."""

    async def row(self, sql: str, **params):
        """The first row of a query, or None."""
        got = await self.rows(sql, **params)
        return got[0] if got else None

    async def value(self, sql: str, **params):
        """The first column of the first row, or None."""
        r = await self.row(sql, **params)
        return None if r is None else r[0]


def run_now(coro):
    """Run a coroutine that never waits for anything (a transaction body
    over the SQLite backend's synchronous :class:`Tx`) to its end, here,
    in the calling thread."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    coro.close()
    raise RuntimeError("a store transaction waited for something other than the store")


class StoreMissing(StoreError):
    """There is no store where one was expected, and the caller did not ask
    for a new one.  ``where`` is the absolute path (or the masked URL)."""

    def __init__(self, message: str, where: str):
        super().__init__(message)
        self.where = where


# Modes of what the store creates: it holds every account's key, so only
# its owner (the receiver's user) may read it.
PRIVATE_FILE_MODE = 0o600

# The order a backend's writer takes queued writes in (lower first, then by
# arrival): every write but track points, then track points, then the
# writer's end (after everything queued).  A flood of track points never
# stands between an alarm and its group commit (docs/mobile.md, "Receiver").
PRIO_WRITE, PRIO_TRACK, PRIO_STOP = 0, 1, 2


def joins_commit(first_prio: int, prio: int) -> bool:
    """May a queued write of ``prio`` join a group commit that began with
    one of ``first_prio``?  Not a track point an alarm's commit: it would
    only make that commit longer (it waits for the next one)."""
    return prio == first_prio or prio != PRIO_TRACK
PRIVATE_DIR_MODE = 0o700
# What SQLite keeps beside the database in WAL mode; it creates them with
# the database file's permission bits.
SQLITE_SIDE_FILES = ("-wal", "-shm")


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


def resolve(fut, result, exc) -> None:
    """Answer a request's future, unless its caller gave up (cancelled):
    the work is done anyway."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class Store(abc.ABC):
    """What the receiver needs from storage.  All methods are coroutines
    except the two cheap properties."""

    # -- shared by the backends: what a finished group commit changes --------------

    location = ""  # "path=..." or "url=...", for log lines
    metrics: Any = None  # receiver.metrics.Metrics, or None
    commits = 0  # transactions committed (for tests and metrics)
    batched = 0  # write requests committed
    _healthy = True
    _last_error: str | None = None

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

    _pending = 0  # write requests accepted, not yet answered

    @property
    def pending_writes(self) -> int:
        return self._pending

    @property
    def healthy(self) -> bool:
        """False after a failed commit until the next successful one."""
        return self._healthy

    @property
    def last_error(self) -> str | None:
        """Why the store last failed to commit (None: healthy)."""
        return self._last_error

    def _answer(self, results, failed, elapsed: float, health: bool = True) -> None:
        """Answer the waiters of finished write requests, [(job, result,
        exception)] (each job has its future as ``fut``), and, for a group
        commit (``health``), note it (:meth:`_note_batch`)."""
        self._pending -= len(results)
        unavailable = failed
        for job, r, exc in results:
            # one request's own failure (EventNotStored) says nothing of the store
            if (isinstance(exc, StoreUnavailable) and not isinstance(exc, EventNotStored)
                    and unavailable is None):
                unavailable = exc
            resolve(job.fut, r, exc)
        if health:
            self._note_batch(len(results), elapsed, failed, unavailable)

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

    def cluster_store(self, instance: str) -> ClusterStore:
        """What receiver.ownership needs to share this store with other
        receivers, as receiver ``instance``; only a ``shared`` store has it."""
        raise StoreError("a %s store is not shared by several receivers" % type(self).__name__)

    # -- transactions of the operator's workflow (receiver.workflow_db) ---------

    @abc.abstractmethod
    async def transact(self, fn: Callable[[Tx], Awaitable[_T]]) -> _T:
        """``await fn(tx)`` in one write transaction (inside the next group
        commit): committed when this returns, its result; an exception out
        of ``fn`` (RowMoved, a refusal) rolls back everything it wrote and
        is raised here."""

    @abc.abstractmethod
    async def read(self, fn: Callable[[Tx], Awaitable[_T]]) -> _T:
        """``await fn(tx)`` over one consistent snapshot of the store
        (several reads that agree with each other), never waiting for the
        writer."""

    # -- lifecycle --------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema to the current version."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Commit what is queued, then close."""

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    # -- the event path ---------------------------------------------------------

    @abc.abstractmethod
    def queue_ingest(self, recs: list[EventRecord]) -> asyncio.Future:
        """Queue one ingest request now (StoreBusy at once when too much is
        queued): ``recs`` in one transaction, all or none.  The future
        resolves to their outcomes, in order, once committed.  A caller
        with several independent events (those of one turn of the
        receiver's loop) queues one request each (:meth:`queue_ingests`)."""

    def queue_ingests(self, requests: list[list[EventRecord]]) -> list[asyncio.Future]:
        """Queue several independent ingest requests at once, each answered
        as :meth:`queue_ingest` answers it, all in the same group commit
        (StoreBusy at once, for all, when too much is queued)."""
        return [self.queue_ingest(recs) for recs in requests]

    async def ingest(self, rec: EventRecord) -> IngestOutcome:
        [out] = await self.queue_ingest([rec])
        return out

    async def ingest_many(self, recs: list[EventRecord]) -> list[IngestOutcome]:
        """Several events in one transaction (all or none), outcomes in order."""
        return await self.queue_ingest(list(recs))

    @abc.abstractmethod
    async def record_security_event(self, at: float, account: str | None, seq: int | None,
                                    reason: str, detail: str, peer: str,
                                    transport: str) -> int: ...

    @abc.abstractmethod
    async def save_replay_state(self, rows: list[tuple[str, int, int]]) -> None:
        """[(account, highest_seq, tx_seq)]: never lowers a stored value."""

    # -- accounts ---------------------------------------------------------------

    async def add_account(self, account: Account) -> None:
        """Store a new account (ValueError when it is not valid)."""
        account.validate()
        row = account.db_columns()
        row["created_at"] = row["updated_at"] = time.time()
        await self._insert_account(row)

    async def update_account(self, number: str, **fields) -> None:
        """Change fields of a stored account (KeyError: no such account;
        ValueError: a field that is unknown, may not change, or is not
        valid).  The replay state is not an account field here: it only
        moves forward with ingest and save_replay_state."""
        acct = self._apply_account_fields(await self.get_account(number), number, fields)
        row = acct.db_columns()
        row["updated_at"] = time.time()
        for k in ("number", "created_at", "highest_seq", "tx_seq"):
            del row[k]
        await self._update_account(number, row)

    @abc.abstractmethod
    async def _insert_account(self, row: dict) -> None:
        """INSERT the accounts row (column -> value)."""

    @abc.abstractmethod
    async def _update_account(self, number: str, row: dict) -> None:
        """UPDATE these columns of account ``number``."""

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
                          after_id: int = 0, limit: int = 1000) -> list[Event]: ...

    @abc.abstractmethod
    async def count_events(self, account: str | None = None) -> int: ...

    @abc.abstractmethod
    async def last_event(self, account: str | None = None) -> Event | None:
        """The newest stored event (of ``account``, or of any), or None."""

    async def events_after(self, account: str | None, after_id: int,
                           limit: int = FEED_PAGE) -> list[Event]:
        """The event feed: stored events with an id above ``after_id`` (of
        ``account``, or of every account), oldest first, at most ``limit``.
        A reader keeps the last id it got and asks again from there; 0
        starts at the first event, ``last_event().id`` at what comes next.
        Ids grow in commit order for one receiver (one writer); with
        several receivers on one PostgreSQL database two transactions may
        commit out of id order, so a reader there can miss an event that
        committed just after it read past its id (docs/receiver.md,
        "Event feed")."""
        if not isinstance(after_id, int) or after_id < 0:
            raise ValueError("after_id is an event id (0 or more)")
        if not isinstance(limit, int) or not 1 <= limit <= FEED_MAX_PAGE:
            raise ValueError("limit is 1..%d" % FEED_MAX_PAGE)
        return await self.list_events(account=account, after_id=after_id, limit=limit)

    async def iter_events(self, account: str | None = None, after_id: int = 0,
                          page: int = FEED_PAGE) -> AsyncIterator[Event]:
        """Every stored event after ``after_id`` (of ``account``), oldest
        first, read through :meth:`events_after` a page at a time."""
        while True:
            rows = await self.events_after(account, after_id, page)
            for e in rows:
                yield e
            if len(rows) < page:
                return
            after_id = rows[-1].id

    @abc.abstractmethod
    async def list_security_events(self, since: float | None = None,
                                   limit: int = 1000) -> list[SecurityEvent]: ...

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
    async def list_alarms(self, state: str | None = None,
                          limit: int = 1000) -> list[Alarm]: ...

    @abc.abstractmethod
    async def count_alarms(self, states: tuple[str, ...]) -> dict[str, int]:
        """{state: number of alarms in it} for each of ``states`` (0 when
        none), counted by the database (metrics scrapes)."""

    @abc.abstractmethod
    async def get_alarm(self, alarm_id: int) -> Alarm | None: ...

    @abc.abstractmethod
    async def alarm_audit(self, alarm_id: int) -> list[AuditEntry]: ...

    # -- outbox -----------------------------------------------------------------

    @abc.abstractmethod
    async def outbox_pending(self, output: str, limit: int = 100) -> list[OutboxRow]:
        """Undelivered rows for ``output``, oldest first."""

    @abc.abstractmethod
    async def outbox_result(self, outbox_id: int, delivered: bool, error: str | None,
                            at: float) -> None: ...

    @abc.abstractmethod
    async def outbox_depth(self) -> dict[str, int]: ...

    @abc.abstractmethod
    async def list_outbox(self, output: str | None = None) -> list[OutboxRow]:
        """Every outbox row (of ``output``), delivered or not, oldest first."""

    # -- the centre's rules (issue 18): receiver.rules_store, once for both -----------

    # The signal-hygiene policies the ingest plan applies (the receiver sets
    # them from receiver.toml [hygiene]).
    hygiene: Hygiene = Hygiene()

    @abc.abstractmethod
    async def _rules_read(self, gen) -> Any:
        """Drive a receiver.rules_store operation on a read connection."""

    @abc.abstractmethod
    async def _rules_write(self, gen) -> Any:
        """Drive a receiver.rules_store operation in a write transaction (a
        job of the group commit); its RulesError (a ValueError) comes back
        as it is, and nothing of it is written."""

    async def rules_revision(self) -> int:
        """A number that moves with every schedule, change and placement
        written (the scheduler reloads then)."""
        return await self._rules_read(rules_store.rules_revision())

    async def list_schedules(self, account: str | None = None) -> list[Schedule]:
        return await self._rules_read(rules_store.list_schedules(account))

    async def set_schedule(self, schedule: Schedule, by: str,
                           at: float | None = None) -> bool:
        """Store or replace a partition's schedule, audited; False when the
        stored one is the same (nothing written)."""
        return await self._rules_write(rules_store.set_schedule(
            schedule, by, time.time() if at is None else at))

    async def delete_schedule(self, account: str, partition: int, by: str,
                              at: float | None = None) -> None:
        await self._rules_write(rules_store.delete_schedule(
            account, partition, by, time.time() if at is None else at))

    async def add_schedule_change(self, change: TemporaryChange) -> TemporaryChange:
        """A temporary change of one day's plan (ScheduleError, RulesError:
        refused), audited; returned with its id."""
        return await self._rules_write(rules_store.add_schedule_change(change))

    async def cancel_schedule_change(self, change_id: int, by: str,
                                     at: float | None = None) -> TemporaryChange:
        return await self._rules_write(rules_store.cancel_schedule_change(
            change_id, by, time.time() if at is None else at))

    async def list_schedule_changes(self, account: str | None = None,
                                    since: float | None = None) -> list[TemporaryChange]:
        """Temporary changes expiring after ``since`` (all: None)."""
        return await self._rules_read(rules_store.list_schedule_changes(account, since))

    async def open_close_history(self, account: str, partition: int,
                                 since: float) -> list[OpenClose]:
        return await self._rules_read(rules_store.open_close_history(account, partition,
                                                                      since))

    async def place_on_test(self, placement: Placement, now: float | None = None) -> Placement:
        """Place an account, partition or zone on test (PlacementError,
        RulesError: refused), audited; returned with its id."""
        return await self._rules_write(rules_store.place_on_test(
            placement, time.time() if now is None else now))

    async def end_test_placement(self, placement_id: int, by: str,
                                 at: float | None = None) -> Placement | None:
        """End a placement, audited; None when it had already ended."""
        return await self._rules_write(rules_store.end_test_placement(
            placement_id, by, time.time() if at is None else at))

    async def list_test_placements(self, live: bool = True, account: str | None = None,
                                   limit: int = 1000) -> list[Placement]:
        return await self._rules_read(rules_store.list_test_placements(live, account, limit))

    async def list_zone_holds(self, live: bool = True, account: str | None = None,
                              limit: int = 1000) -> list[ZoneHold]:
        return await self._rules_read(rules_store.list_zone_holds(live, account, limit))

    async def release_zone(self, account: str, zone: int, by: str,
                           at: float | None = None) -> ZoneHold:
        return await self._rules_write(rules_store.release_zone(
            account, zone, by, time.time() if at is None else at))

    async def list_rules_audit(self, account: str | None = None, since: float | None = None,
                               limit: int = 500) -> list[RulesAuditEntry]:
        return await self._rules_read(rules_store.list_rules_audit(account, since, limit))

    async def incident_members(self, incident_id: int) -> list[Alarm]:
        return await self._rules_read(rules_store.incident_members(incident_id))

    async def attached_events(self, alarm_id: int, limit: int = 50):
        """(count, first, last, newest events) counted on a held zone's anchor."""
        return await self._rules_read(rules_store.attached_events(alarm_id, limit))

    async def last_test_reports(self, accounts) -> dict:
        return await self._rules_read(rules_store.last_test_reports(list(accounts)))

    async def periodic_failed(self, accounts) -> dict:
        return await self._rules_read(rules_store.periodic_failed(list(accounts)))

    async def report_rows(self, start: float, end: float):
        """(AlarmFact list, EventFact list) for the centre's reports."""
        return await self._rules_read(rules_store.report_rows(start, end))
    # -- vehicle units (issue 19; docs/mobile.md, "Receiver") ---------------------

    @abc.abstractmethod
    async def ingest_track(self, recs: list[TrackRecord]) -> list[TrackOutcome]:
        """Store track points (POSITION messages) in the next group commit,
        each once per (account, dedupe_key): a copy is ``duplicate`` with
        the first one's id.  Durable when this returns (the receiver ACKs
        then); StoreBusy / StoreUnavailable as for ``ingest``."""

    @abc.abstractmethod
    async def track(self, account: str, since: float | None = None,
                    until: float | None = None, limit: int = 1000,
                    newest: bool = False) -> list[TrackPoint]:
        """Track points of ``account`` with ``since <= at < until``, oldest
        first (``newest``: the last ``limit`` of them, still oldest first)."""

    @abc.abstractmethod
    async def track_received_since(self, received_at: float,
                                   limit: int = TRACK_FEED_PAGE) -> list[TrackPoint]:
        """Track points that arrived at or after ``received_at``, in arrival
        order (the vehicle checks' feed; a reader dedupes by id)."""

    @abc.abstractmethod
    async def last_positions(self, accounts: list[str]) -> dict[str, TrackPoint]:
        """{account: its latest track point by ``at``} for ``accounts`` that
        have one."""

    @abc.abstractmethod
    async def track_in_area(self, south: float, west: float, north: float, east: float,
                            since: float, until: float,
                            limit: int = 1000) -> list[TrackPoint]:
        """Track points inside the box (degrees; west <= east, no
        antimeridian crossing) with ``since <= at < until``, by time: who
        was near a place then (the spatial index)."""

    @abc.abstractmethod
    async def prune_track(self, account: str | None, before: float, batch: int,
                          exclude: list[str] | None = None) -> int:
        """Delete at most ``batch`` track points older than ``before`` (by
        ``at``), oldest first: of ``account``, or (None) of every account
        but those in ``exclude``; returns how many went (retention)."""

    @abc.abstractmethod
    async def latest_by_code(self, account: str, codes: list[int],
                             source: str) -> dict[int, Event]:
        """{code: the latest event of ``account`` with that code from
        ``source``} (the vehicle checks: what the unit reported, what the
        receiver raised)."""

    @abc.abstractmethod
    async def set_patrol_status(self, account: str, status: str, at: float, actor: str,
                                alarm_id: int | None = None) -> PatrolStatus: ...

    @abc.abstractmethod
    async def patrol_statuses(self, accounts: list[str]) -> dict[str, PatrolStatus]:
        """{account: its status as last set}: the latest of a console or
        receiver change (``set_patrol_status``) and the crew's keypad report
        (event 470, 471, 472, qualifier 1; actor "keypad (user N)")."""

    @abc.abstractmethod
    async def dispatch_patrol(self, alarm_id: int, patrol: str, at: float, by: str,
                              target: tuple[float, float], radius_m: float,
                              distance_m: float | None, sentence: str) -> Dispatch:
        """Record a dispatch, the patrol's "dispatched" status and an audit
        row (``sentence``) on the alarm, in one transaction.  Raises
        DispatchConflict when that patrol is already dispatched to the
        alarm, or the alarm is missing or resolved."""

    @abc.abstractmethod
    async def record_arrival(self, dispatch_id: int, at: float,
                             sentence: str) -> Dispatch | None:
        """The patrol of dispatch ``dispatch_id`` came within its radius at
        ``at``: set ``arrived_at``, its status "on_scene" and an audit row
        (``sentence``) on the alarm, once: None when it was recorded already
        (by this receiver or another)."""

    @abc.abstractmethod
    async def list_dispatches(self, alarm_id: int | None = None, open_only: bool = False,
                              since: float | None = None,
                              until: float | None = None) -> list[Dispatch]:
        """Dispatches (of an alarm; not yet arrived; dispatched in [since,
        until)), oldest first."""
