"""SQLite backend of :class:`receiver.store.Store` (the embedded default).

Durability: WAL journal with ``synchronous=FULL``, so a transaction is on
disk (WAL fsynced) when COMMIT returns; the receiver ACKs only then.

Group commit: one writer thread owns the only writing connection.  Write
requests queue up while the previous COMMIT's fsync runs; the writer takes
everything queued (up to ``max_batch``) and runs it as one transaction,
each request inside its own SAVEPOINT so one failing request does not sink
its neighbours, then one COMMIT (one fsync) answers every waiter.  Under
load the batch grows by itself, so throughput does not pay an fsync per
event; idle, a lone event commits at once.  The requests of one
``queue_ingests`` call (the events of one turn of the receiver's loop)
are one queue item, so the writer never starts a commit with only the
first of them.

Reads go to a second thread with its own read-only connection; WAL lets it
read while the writer commits, so an operator listing events does not stall
ACKs.  Neither thread ever blocks the event loop: results come back through
``loop.call_soon_threadsafe``.

Failures: an ``sqlite3.OperationalError`` or other ``DatabaseError`` (disk
full, read-only, I/O error, locked past the busy timeout) becomes
:class:`StoreUnavailable`; ``healthy`` turns False until a batch commits
again.  Nothing is retried here: the panels retry (the receiver NAKs busy).

Schema: ``MIGRATIONS[n]`` brings version n-1 to n; ``schema_version``
records what was applied.  A database newer than this code is refused.

Files: SQLite itself never creates the database here (connections open it
by URI with ``mode=rw``).  With ``create=True`` a missing file is made
first, mode 0600 (its directory 0700 if missing), and logged; without it a
missing file, or one with no schema, raises StoreMissing before anything
is written (receiver.store, "A store is created only when asked").
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import pathlib
import queue
import sqlite3
import threading
import time

from receiver import alarms as _alarms
from receiver import ingest, rules_store, schema, workflow_db
from receiver.records import (EVENT_COLUMNS, PATROL_STATUS_CODES, TRACK_COLUMNS, Account,
                              Alarm, AuditEntry, Dispatch, Event, EventRecord, IngestOutcome,
                              OutboxRow, PatrolStatus, SecurityEvent, TrackOutcome, TrackPoint,
                              TrackRecord)
from receiver.store import (PRIO_STOP, PRIO_TRACK, PRIO_WRITE, PRIVATE_FILE_MODE,
                            DispatchConflict, EventNotStored, SchemaError, Store, StoreBusy,
                            StoreError, StoreMissing, StoreUnavailable, Tx, failure_words,
                            joins_commit, make_private_dirs, resolve, run_now,
                            warn_if_exposed)

_LOGGER = logging.getLogger(__name__)

# Requests committed in one transaction at most.  Bigger batches amortise the
# fsync further but hold every waiter of the batch until the last insert is
# done; at ~20 us per event insert, 512 keep a batch under ~10 ms of CPU.
MAX_BATCH = 512
# Write requests accepted but not yet committed before ``ingest`` raises
# StoreBusy.  This is the hard memory bound (a request is ~1 KB); the
# receiver NAKs busy well below it (receiver.config.MAX_PENDING_WRITES).
MAX_QUEUED_WRITES = 50_000
# How long a statement waits for another process's lock (the CLI writing
# accounts while the server runs) before failing with "database is locked".
BUSY_TIMEOUT_MS = 5000

_STOP = object()


def _schema_v1() -> list[str]:
    meta, accounts = schema.meta_and_accounts("sqlite")
    # The keyring is reloaded when this counter moves (schema.REVISION_COLUMNS).
    bump = "UPDATE meta SET value = value + 1 WHERE key = 'accounts_rev'; END"
    return [
        meta,
        """INSERT INTO meta (key, value) VALUES ('accounts_rev', 0)""",
        accounts,
        "CREATE TRIGGER accounts_rev_insert AFTER INSERT ON accounts BEGIN " + bump,
        "CREATE TRIGGER accounts_rev_delete AFTER DELETE ON accounts BEGIN " + bump,
        "CREATE TRIGGER accounts_rev_update AFTER UPDATE OF %s ON accounts BEGIN %s"
        % (schema.REVISION_COLUMNS, bump),
    ] + schema.event_tables(
        "sqlite", "CREATE INDEX events_supervision ON events (source, account, zone, id)")


def _rules_v3() -> list[str]:
    """Schema version 3 (issue 18): the rules' tables and columns; the
    periodic test columns move the accounts revision too."""
    bump = "UPDATE meta SET value = value + 1 WHERE key = 'accounts_rev'; END"
    return schema.rules_tables("sqlite") + [
        "DROP TRIGGER accounts_rev_update",
        "CREATE TRIGGER accounts_rev_update AFTER UPDATE OF %s ON accounts BEGIN %s"
        % (schema.REVISION_COLUMNS_V3, bump)]


def _vehicles() -> list[str]:
    # SQLite's built-in R*Tree indexes each point as a box of zero size;
    # triggers keep it in step with the table (retention deletes too)
    return schema.vehicles("sqlite", [
        """CREATE VIRTUAL TABLE track_points_rtree USING rtree(
               id, min_lat, max_lat, min_lon, max_lon)""",
        """CREATE TRIGGER track_points_rtree_insert AFTER INSERT ON track_points BEGIN
               INSERT INTO track_points_rtree VALUES (new.id, new.lat, new.lat, new.lon,
                                                      new.lon); END""",
        """CREATE TRIGGER track_points_rtree_delete AFTER DELETE ON track_points BEGIN
               DELETE FROM track_points_rtree WHERE id = old.id; END""",
    ])


def _lean_events() -> list[str]:
    # Version 6 (issue 20): besides the periodic tests' (schema), the
    # events_supervision index holds the receiver's own line-supervision
    # events only, as on PostgreSQL.  Indexed whole, every panel event wrote
    # one more scattered index page (keyed by account).
    return schema.last_test_on_accounts("sqlite") + [
        "DROP INDEX events_supervision",
        "CREATE INDEX events_supervision ON events (account, zone, id) "
        "WHERE source = 'supervision'"]


# MIGRATIONS[i] brings schema version i to i + 1.
MIGRATIONS: list = [_schema_v1, schema.user_and_ext, _rules_v3, _vehicles,
                    functools.partial(schema.workflow, "sqlite"), _lean_events]
SCHEMA_VERSION = len(MIGRATIONS)


def _wrap(e: BaseException) -> BaseException:
    if isinstance(e, StoreError):
        return e
    if isinstance(e, (sqlite3.IntegrityError, sqlite3.ProgrammingError,
                      sqlite3.InterfaceError)):
        return e  # our bug or a caller's bad request, not a store outage
    if isinstance(e, sqlite3.DatabaseError):
        err = StoreUnavailable(failure_words(e))
        err.__cause__ = e
        return err
    return e


class _Job:
    __slots__ = ("fn", "args", "fut", "raw", "recs")

    def __init__(self, fn, args, fut, raw=False, recs=None):
        self.fn = fn
        self.args = args
        self.fut = fut
        self.raw = raw  # run alone, outside any transaction (PRAGMAs)
        # an ingest (fn is SQLiteStore._ingest, args (recs,)): consecutive
        # ingests of one group commit are executed as one plan
        self.recs = recs


# The statements that execute receiver.ingest's plan.  The ones written for
# many rows of a group commit are a head and a row, sent by _rows(): many
# rows per statement, because sqlite3 gives up the GIL for every statement
# step and takes it back after, and an executemany steps once per row.
# With the event loop busy each of those takes is a wait for it (a GIL
# hand-over): an executemany of a hundred events cost the writer three
# times its own work and the loop as much again (docs/benchmarks.md,
# "Round 3").
_INSERT_EVENT = ("INSERT OR IGNORE INTO events (%s) VALUES" % ", ".join(EVENT_COLUMNS),
                 "(%s)" % ", ".join("?" * len(EVENT_COLUMNS)))
# Replay state only moves forward.
_RAISE_REPLAY_STATE = """UPDATE accounts SET highest_seq = MAX(highest_seq, ?),
                         tx_seq = MAX(tx_seq, ?) WHERE number = ?"""
_RAISE_REPLAY_STATES = ("""UPDATE accounts SET highest_seq = MAX(highest_seq, v.column2),
                           tx_seq = MAX(tx_seq, v.column3)
                           FROM (VALUES %s) AS v WHERE accounts.number = v.column1""",
                        "(?, ?, ?)")
# An account's latest periodic test report (receiver.ingest: Plan.tested)
_RAISE_LAST_TEST = ("""UPDATE accounts SET last_test_at = v.column2 FROM (VALUES %s) AS v
                       WHERE accounts.number = v.column1
                         AND (accounts.last_test_at IS NULL
                              OR accounts.last_test_at < v.column2)""", "(?, ?)")
_STAMP_RESTORED = """UPDATE alarms SET restored_at = ?, restore_event_id = ? WHERE account = ?
                     AND code = ? AND partition = ? AND zone = ? AND state != 'resolved'
                     AND restored_at IS NULL AND created_at <= ?"""
_INSERT_ALARM = ("INSERT INTO alarms (%s, state) VALUES" % ", ".join(ingest.ALARM_COLUMNS),
                 "(%s, 'pending')" % ", ".join("?" * len(ingest.ALARM_COLUMNS)))
_INSERT_FIRST_AUDIT = ("""INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor,
                          note) VALUES""", "(?, ?, NULL, 'pending', 'receiver', ?)")
_INSERT_STEP = ("INSERT INTO alarm_steps (%s) VALUES" % ", ".join(ingest.STEP_COLUMNS),
                "(%s)" % ", ".join("?" * len(ingest.STEP_COLUMNS)))
_INSERT_PLAN_AUDIT = ("""INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor,
                         action, detail) VALUES""",
                      "(?, ?, 'pending', 'pending', 'receiver', ?, ?)")
_INSERT_OUTBOX = ("INSERT INTO outbox (output, alarm_id, payload, created_at) VALUES",
                  "(?, ?, ?, ?)")
# Rows per statement for _rows(): a few statement shapes (each prepared once
# and cached), the most rows in the fewest statements (well inside
# SQLite's 32,766 parameters: 256 events are 5,888).
_CHUNKS = (256, 64, 16, 4, 1)


@functools.lru_cache(maxsize=64)
def _rows_sql(head: str, row: str, n: int) -> str:
    rows = ", ".join([row] * n)
    return head % rows if "%s" in head else "%s %s" % (head, rows)


def _rows(conn: sqlite3.Connection, statement: tuple, rows: list) -> None:
    """Run ``statement`` (head, row: an INSERT's "... VALUES" and "(?, ?)",
    or an UPDATE ... FROM (VALUES %s)) for every row of ``rows`` in as few
    statements as _CHUNKS allows."""
    head, row = statement
    i, n = 0, len(rows)
    while i < n:
        k = next(c for c in _CHUNKS if c <= n - i)
        conn.execute(_rows_sql(head, row, k), [v for r in rows[i:i + k] for v in r])
        i += k


# Reading back what an executemany inserted (ids are rowids: a new row's id
# is above every id there is).
_TOP_EVENT_ID = "SELECT COALESCE(MAX(id), 0) FROM events"
_EVENTS_SINCE = "SELECT id, account, dedupe_key FROM events WHERE id > ?"
_EVENT_ID_OF_KEY = "SELECT id FROM events WHERE account = ? AND dedupe_key = ?"
_TOP_ALARM_ID = "SELECT COALESCE(MAX(id), 0) FROM alarms"
_ALARMS_SINCE = "SELECT event_id, id FROM alarms WHERE id > ?"
_INSERT_TRACK = "INSERT OR IGNORE INTO track_points (%s) VALUES (%s)" % (
    ", ".join(TRACK_COLUMNS), ", ".join("?" * len(TRACK_COLUMNS)))
_INSERT_PATROL_STATUS = """INSERT INTO patrol_status (account, at, status, actor, alarm_id)
                           VALUES (?, ?, ?, ?, ?)"""
# an audit row that records something done about the alarm without moving
# its state (receiver.alarms.audit_sentence: the note is the sentence)
_INSERT_NOTE_AUDIT = """INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor,
                        note) VALUES (?, ?, ?, ?, ?, ?)"""


class SQLiteTx(Tx):
    """:class:`receiver.store.Tx` over an SQLite connection, in the thread
    that owns it: every call completes at once (``run_now`` drives the
    transaction body)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    async def rows(self, sql: str, **params) -> list:
        return self.conn.execute(sql, params).fetchall()

    async def run(self, sql: str, **params) -> int:
        return self.conn.execute(sql, params).rowcount

    async def drive(self, op):
        return rules_store.drive(self.conn, op)


def _read_snapshot(conn: sqlite3.Connection, fn):
    """``fn(tx)`` inside one read transaction (one WAL snapshot)."""
    conn.execute("BEGIN")
    try:
        return run_now(fn(SQLiteTx(conn)))
    finally:
        conn.execute("COMMIT")


class SQLiteStore(Store):
    def __init__(self, path: str, max_batch: int = MAX_BATCH,
                 max_queued_writes: int = MAX_QUEUED_WRITES, metrics=None,
                 create: bool = True):
        self.path = str(path)
        self.create = create
        self.created = False  # open() made a new file
        self.max_batch = max_batch
        self.max_queued_writes = max_queued_writes
        self.metrics = metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        # write requests by (priority, arrival): track points (PRIO_TRACK)
        # after everything else, so an alarm is in the next group commit
        # however many track points wait (docs/mobile.md, "Receiver")
        self._wq: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._rq: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._pending = 0
        self._healthy = True
        self._last_error: str | None = None
        self.location = "path=%s" % self.path
        self._closed = True
        self.commits = 0  # transactions committed (for tests and metrics)
        self.batched = 0  # write requests committed

    # -- lifecycle ----------------------------------------------------------------

    def _prepare_file(self) -> None:
        """Make sure the database file exists before SQLite opens it: create
        it (0600) when allowed, else raise StoreMissing."""
        path = os.path.abspath(self.path)
        if os.path.exists(path):
            if not os.path.isfile(path):
                raise StoreError("%s is not a file (a store is an SQLite file)" % path)
            return
        if not self.create:
            raise StoreMissing("no receiver store at %s" % path, path)
        make_private_dirs(os.path.dirname(path))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        except FileExistsError:
            return  # another process made it meanwhile: open theirs
        except OSError as e:
            raise StoreUnavailable("cannot create %s: %s" % (path, e.strerror or e)) from None
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)  # whatever the umask
        finally:
            os.close(fd)
        self.created = True
        _LOGGER.warning("created a new, empty store path=%s mode=0600", path)

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        # mode=rw: open an existing file only (_prepare_file made it), so a
        # file removed meanwhile is an error, not a new empty store
        uri = pathlib.Path(os.path.abspath(self.path)).as_uri() + "?mode=rw"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=%d" % BUSY_TIMEOUT_MS)
        if not readonly and not self.create and conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone() is None:
            # before the WAL switch, which would write a header into an empty file
            conn.close()
            path = os.path.abspath(self.path)
            raise StoreMissing("%s is not a receiver store (no schema in it)" % path, path)
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError("cannot put %s in WAL mode (got %s)" % (self.path, mode))
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        if readonly:
            conn.execute("PRAGMA query_only=1")
        return conn

    async def open(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._prepare_file)
        self._closed = False
        ready = loop.create_future()
        self._writer = threading.Thread(target=self._run_writer, args=(loop, ready),
                                        name="sqlite-writer", daemon=True)
        self._writer.start()
        try:
            await ready
        except BaseException:
            self._closed = True
            self._writer.join()
            raise
        # a store it is: say so if others may read its keys
        await asyncio.to_thread(warn_if_exposed, os.path.abspath(self.path))
        self._reader = threading.Thread(target=self._run_reader, args=(loop,),
                                        name="sqlite-reader",
                                        daemon=True)
        self._reader.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wq.put((PRIO_STOP, next(self._order), _STOP))
        self._rq.put(_STOP)
        for t in (self._writer, self._reader):
            if t is not None:
                await asyncio.to_thread(t.join)

    # -- the threads --------------------------------------------------------------

    def _run_writer(self, loop: asyncio.AbstractEventLoop, ready) -> None:
        try:
            conn = self._connect(readonly=False)
            self._migrate(conn)
        except BaseException as e:  # noqa: BLE001 - reported to open()
            loop.call_soon_threadsafe(resolve, ready, None, _wrap(e))
            return
        loop.call_soon_threadsafe(resolve, ready, None, None)
        carry = None  # a track point taken but left for the next commit
        try:
            while True:
                if carry is None:
                    prio, _, first = self._wq.get()
                else:
                    prio, first, carry = carry[0], carry[1], None
                if first is _STOP:
                    break
                if isinstance(first, list):  # from queue_ingests: taken whole
                    batch = first
                elif first.raw:
                    self._run_raw(loop, conn, first)
                    continue
                else:
                    batch = [first]
                after = None
                while len(batch) < self.max_batch:
                    try:
                        p, _, j = self._wq.get_nowait()
                    except queue.Empty:
                        break
                    if j is _STOP or (not isinstance(j, list) and j.raw):
                        after = j
                        break
                    if not joins_commit(prio, p):
                        carry = (p, j)
                        break
                    if type(j) is list:
                        batch.extend(j)  # may pass max_batch by one item
                    else:
                        batch.append(j)
                self._commit(loop, conn, batch)
                if after is _STOP:
                    break
                if after is not None:
                    self._run_raw(loop, conn, after)
        finally:
            conn.close()

    def _commit(self, loop: asyncio.AbstractEventLoop, conn: sqlite3.Connection,
                batch: list) -> None:
        t0 = time.perf_counter()
        results = []
        failed = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            i = 0
            while i < len(batch):
                if batch[i].recs is None:
                    results.append(self._run_job(conn, batch[i]))
                    i += 1
                    continue
                j = i + 1
                while j < len(batch) and batch[j].recs is not None:
                    j += 1
                results.extend(self._run_ingests(conn, batch[i:j]))
                i = j
            conn.execute("COMMIT")
        except Exception as e:  # noqa: BLE001
            failed = _wrap(e)
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - the connection is already in trouble
                pass
            if not isinstance(failed, StoreUnavailable):
                failed = StoreUnavailable("%s: %s" % (type(e).__name__, e))
            results = [(job, None, failed) for job in batch]
        elapsed = time.perf_counter() - t0
        loop.call_soon_threadsafe(self._answer, results, failed, elapsed)

    @staticmethod
    def _run_job(conn, job) -> tuple:
        """One write request in its own SAVEPOINT: its failure rolls back
        its own writes only, and goes to its waiter."""
        conn.execute("SAVEPOINT job")
        try:
            r = job.fn(conn, *job.args)
        except Exception as e:  # noqa: BLE001 - goes to the waiter
            if not conn.in_transaction:
                raise  # SQLite rolled the whole transaction back
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            return (job, None, _wrap(e))
        conn.execute("RELEASE job")
        return (job, r, None)

    def _run_ingests(self, conn, run: list) -> list:
        """Consecutive ingest requests of one group commit as ONE plan over
        all their records (set-based: one statement per table), with the
        same answers as one after the other (receiver.ingest: a key's first
        copy in the batch is the event, later copies its duplicates).  If
        that fails, each request runs alone, so a bad one fails alone."""
        if len(run) == 1:
            return [self._run_job(conn, run[0])]
        conn.execute("SAVEPOINT ingests")
        try:
            outs = self._ingest(conn, [r for job in run for r in job.recs])
        except Exception:  # noqa: BLE001 - retried one by one below
            if not conn.in_transaction:
                raise
            conn.execute("ROLLBACK TO ingests")
            conn.execute("RELEASE ingests")
            return [self._run_job(conn, job) for job in run]
        conn.execute("RELEASE ingests")
        results, k = [], 0
        for job in run:
            n = len(job.recs)
            results.append((job, outs[k:k + n], None))
            k += n
        return results

    def _run_raw(self, loop: asyncio.AbstractEventLoop, conn, job) -> None:
        try:
            r, exc = job.fn(conn, *job.args), None
        except Exception as e:  # noqa: BLE001
            r, exc = None, _wrap(e)
        loop.call_soon_threadsafe(self._answer, [(job, r, exc)], None, 0.0, False)

    def _run_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        conn = None
        try:
            while True:
                job = self._rq.get()
                if job is _STOP:
                    break
                try:
                    if conn is None:
                        conn = self._connect(readonly=True)
                    r = job.fn(conn, *job.args)
                    exc = None
                except Exception as e:  # noqa: BLE001
                    r, exc = None, _wrap(e)
                    if conn is not None and conn.in_transaction:
                        conn.rollback()
                loop.call_soon_threadsafe(resolve, job.fut, r, exc)
        finally:
            if conn is not None:
                conn.close()

    def _open_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the store was opened on; StoreError when it is not open."""
        if self._closed or self._loop is None:
            raise StoreError("store is closed")
        return self._loop

    def run_write(self, fn, *args, prio: int = PRIO_WRITE) -> asyncio.Future:
        """Run ``fn(conn, *args)`` in the writer thread inside the next group
        commit; the future resolves once it is committed.  Requests of a
        lower ``prio`` number go first (PRIO_TRACK: after all others)."""
        return self._queue_write(fn, args, prio=prio)

    def _queue_write(self, fn, args, recs=None, prio: int = PRIO_WRITE) -> asyncio.Future:
        loop = self._open_loop()
        if self._pending >= self.max_queued_writes:
            raise StoreBusy("%d writes queued" % self._pending)
        fut = loop.create_future()
        self._pending += 1
        self._wq.put((prio, next(self._order), _Job(fn, args, fut, recs=recs)))
        return fut

    def run_maintenance(self, fn, *args) -> asyncio.Future:
        """Run ``fn(conn, *args)`` in the writer thread between group
        commits, outside any transaction (PRAGMAs such as query_only or
        max_page_count; tests use these to make the store fail for real)."""
        fut = self._open_loop().create_future()
        self._pending += 1
        self._wq.put((PRIO_WRITE, next(self._order), _Job(fn, args, fut, raw=True)))
        return fut

    def run_read(self, fn, *args) -> asyncio.Future:
        fut = self._open_loop().create_future()
        self._rq.put(_Job(fn, args, fut))
        return fut

    # -- the workflow's transactions (receiver.workflow_db) ----------------------

    async def transact(self, fn):
        return await self.run_write(lambda conn: run_now(fn(SQLiteTx(conn))))

    async def read(self, fn):
        return await self.run_read(_read_snapshot, fn)

    # -- schema -------------------------------------------------------------------

    @staticmethod
    def _current_version(conn) -> int:
        conn.execute("""CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)""")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return row[0] or 0

    def _migrate(self, conn) -> None:
        current = self._current_version(conn)
        if current > SCHEMA_VERSION:
            raise SchemaError("database %s has schema version %d; this receiver knows up to %d"
                              % (self.path, current, SCHEMA_VERSION))
        for v in range(current, SCHEMA_VERSION):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in MIGRATIONS[v]():
                    conn.execute(stmt)
                conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                             (v + 1, time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            _LOGGER.info("store migrated path=%s schema_version=%d", self.path, v + 1)

    async def schema_version(self) -> int:
        return await self.run_read(
            lambda c: c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # -- the event path -----------------------------------------------------------

    def _ingest(self, conn, recs: list[EventRecord]) -> list[IngestOutcome]:
        """Execute receiver.ingest's plan for ``recs`` set-based: one
        ``executemany`` per table, the new rows' ids read back at once.
        Runs inside the writer's transaction (BEGIN IMMEDIATE: no other
        writer), so the rows above the highest id before the insert are
        exactly the ones it inserted, and the rules' state read here is
        current.  Any failure rolls back every record (the caller's
        SAVEPOINT)."""
        cands = ingest.candidates(recs)
        inserted: dict = {}
        existing: dict = {}
        if cands:
            top = conn.execute(_TOP_EVENT_ID).fetchone()[0]
            _rows(conn, _INSERT_EVENT, [recs[i].db_values() for _, i in cands])
            for eid, account, dedupe_key in conn.execute(_EVENTS_SINCE, (top,)):
                inserted[(account, dedupe_key)] = eid
            for key, _ in cands:
                if key not in inserted:  # stored before: a duplicate (rare)
                    row = conn.execute(_EVENT_ID_OF_KEY, key).fetchone()
                    if row is not None:
                        existing[key] = row[0]
        policy = self.hygiene
        state = rules_store.drive(conn, rules_store.read_state(
            ingest.rules_query(recs, inserted, policy)))
        try:
            plan = ingest.plan(recs, inserted, existing, state, policy)
        except ingest.ConflictVanished as e:
            # this request only: _run_ingests retries its neighbours without it
            raise EventNotStored(str(e)) from None
        _rows(conn, _RAISE_REPLAY_STATES, plan.replay)
        _rows(conn, _RAISE_LAST_TEST, plan.tested)
        conn.executemany(_STAMP_RESTORED, [(r.at, r.event_id, r.account, r.code, r.partition,
                                            r.zone, r.at) for r in plan.restores])
        alarm_ids: list = []
        if plan.alarms:
            top = conn.execute(_TOP_ALARM_ID).fetchone()[0]
            _rows(conn, _INSERT_ALARM, [al.values() for al in plan.alarms])
            by_event = dict(conn.execute(_ALARMS_SINCE, (top,)).fetchall())
            alarm_ids = [by_event[al.event_id] for al in plan.alarms]
            _rows(conn, _INSERT_FIRST_AUDIT, [
                (aid, al.created_at, al.audit_note()) for aid, al in zip(alarm_ids, plan.alarms)])
            _rows(conn, _INSERT_STEP, [
                step for aid, al in zip(alarm_ids, plan.alarms) for step in al.steps(aid)])
            _rows(conn, _INSERT_PLAN_AUDIT, [
                row for row in (al.plan_audit(aid) for aid, al in zip(alarm_ids, plan.alarms))
                if row is not None])
            _rows(conn, _INSERT_OUTBOX, [
                (o.output, o.alarm_id, o.payload, o.created_at)
                for aid, al in zip(alarm_ids, plan.alarms) for o in al.outbox(aid)])
        rules_store.drive(conn, rules_store.write_plan(plan, alarm_ids))
        track_ids = {}
        for t in plan.tracks:  # few: the events that carry a position
            cur = conn.execute(_INSERT_TRACK, t.db_values())
            if cur.rowcount:
                track_ids[t.event_id] = cur.lastrowid
        tx = SQLiteTx(conn)
        touched = {i: run_now(workflow_db.follow_up(tx, r, eid))
                   for i, r, eid in plan.followups}
        return plan.outcomes(alarm_ids, track_ids, touched)

    def queue_ingest(self, recs: list[EventRecord]) -> asyncio.Future:
        return self._queue_write(self._ingest, (recs,), recs=recs)

    def queue_ingests(self, requests: list[list[EventRecord]]) -> list[asyncio.Future]:
        loop = self._open_loop()
        if self._pending >= self.max_queued_writes:
            raise StoreBusy("%d writes queued" % self._pending)
        jobs = [_Job(self._ingest, (recs,), loop.create_future(), recs=recs)
                for recs in requests]
        self._pending += len(jobs)
        # one queue item per max_batch: the writer takes each whole
        for i in range(0, len(jobs), self.max_batch):
            self._wq.put((PRIO_WRITE, next(self._order), jobs[i:i + self.max_batch]))
        return [j.fut for j in jobs]

    async def record_security_event(self, at, account, seq, reason, detail, peer,
                                    transport) -> int:
        def job(conn):
            return conn.execute(
                """INSERT INTO security_events (at, account, seq, reason, detail, peer,
                   transport) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (at, account, seq, reason, detail, peer, transport)).lastrowid
        return await self.run_write(job)

    async def save_replay_state(self, rows) -> None:
        def job(conn):
            conn.executemany(_RAISE_REPLAY_STATE, [(h, t, a) for a, h, t in rows])
        if rows:
            await self.run_write(job)

    # -- accounts -------------------------------------------------------------------

    async def _insert_account(self, row: dict) -> None:
        cols = list(row)
        await self.run_write(lambda c: c.execute("INSERT INTO accounts (%s) VALUES (%s)" % (
            ", ".join(cols), ", ".join("?" * len(cols))), [row[k] for k in cols]))

    async def _update_account(self, number: str, row: dict) -> None:
        cols = list(row)
        await self.run_write(lambda c: c.execute("UPDATE accounts SET %s WHERE number = ?" % (
            ", ".join("%s = ?" % k for k in cols)), [row[k] for k in cols] + [number]))

    async def delete_account(self, number: str) -> None:
        await self.run_write(lambda c: c.execute("DELETE FROM accounts WHERE number = ?",
                                                 (number,)))

    async def get_account(self, number: str) -> Account | None:
        def job(conn):
            r = conn.execute("SELECT * FROM accounts WHERE number = ?", (number,)).fetchone()
            return None if r is None else Account.from_row(r)
        return await self.run_read(job)

    async def list_accounts(self) -> list[Account]:
        def job(conn):
            return [Account.from_row(r) for r in conn.execute(
                "SELECT * FROM accounts ORDER BY CAST(number AS INTEGER), number")]
        return await self.run_read(job)

    async def accounts_revision(self) -> int:
        return await self.run_read(lambda c: c.execute(
            "SELECT value FROM meta WHERE key = 'accounts_rev'").fetchone()[0])

    # -- reading events -----------------------------------------------------------------

    async def list_events(self, account=None, since=None, after_id=0, limit=1000):
        args: list = [after_id]
        sql = rules_store.and_where("SELECT * FROM events WHERE id > ?", args,
                   (("account = ?", account), ("received_at >= ?", since)))
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return await self.run_read(lambda c: [Event.from_row(r) for r in c.execute(sql, args)])

    async def count_events(self, account=None) -> int:
        if account is None:
            return await self.run_read(lambda c: c.execute(
                "SELECT COUNT(*) FROM events").fetchone()[0])
        return await self.run_read(lambda c: c.execute(
            "SELECT COUNT(*) FROM events WHERE account = ?", (account,)).fetchone()[0])

    async def last_event(self, account=None):
        def job(conn):
            if account is None:
                r = conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT 1").fetchone()
            else:
                r = conn.execute("SELECT * FROM events WHERE account = ? ORDER BY id DESC "
                                 "LIMIT 1", (account,)).fetchone()
            return None if r is None else Event.from_row(r)
        return await self.run_read(job)

    async def list_security_events(self, since=None, limit=1000):
        sql = "SELECT * FROM security_events"
        args: list = []
        if since is not None:
            sql += " WHERE at >= ?"
            args.append(since)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return await self.run_read(lambda c: [SecurityEvent.from_row(r)
                                              for r in c.execute(sql, args)])

    async def prune_security_events(self, before, keep, batch):
        def job(conn):
            return conn.execute(
                """DELETE FROM security_events WHERE id IN (
                       SELECT id FROM security_events WHERE at < ? OR id <= (
                           SELECT id FROM security_events ORDER BY id DESC
                           LIMIT 1 OFFSET ?)
                       ORDER BY id LIMIT ?)""", (before, keep, batch)).rowcount
        return await self.run_write(job)

    async def supervision_failed(self):
        def job(conn):
            rows = conn.execute(
                """SELECT e.account, e.zone, e.qualifier FROM events e JOIN (
                       SELECT MAX(id) AS id FROM events WHERE source = 'supervision'
                       GROUP BY account, zone) last ON e.id = last.id""").fetchall()
            return sorted((r[0], r[1]) for r in rows if r[2] == 1)
        return await self.run_read(job)

    # -- alarms -----------------------------------------------------------------------

    async def list_alarms(self, state=None, limit=1000):
        sql = "SELECT * FROM alarms"
        args: list = []
        if state is not None:
            sql += " WHERE state = ?"
            args.append(state)
        sql += " ORDER BY state = 'resolved', priority, created_at, id LIMIT ?"
        args.append(limit)
        return await self.run_read(lambda c: [Alarm.from_row(r) for r in c.execute(sql, args)])

    async def count_alarms(self, states):
        def job(conn):
            n = dict.fromkeys(states, 0)
            for state, count in conn.execute(
                    "SELECT state, COUNT(*) FROM alarms WHERE state IN (%s) GROUP BY state"
                    % ",".join("?" * len(states)), tuple(states)):
                n[state] = count
            return n
        return await self.run_read(job)

    async def get_alarm(self, alarm_id):
        def job(conn):
            r = conn.execute("SELECT * FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
            return None if r is None else Alarm.from_row(r)
        return await self.run_read(job)

    async def alarm_audit(self, alarm_id):
        return await self.run_read(lambda c: [AuditEntry.from_row(r) for r in c.execute(
            "SELECT * FROM alarm_audit WHERE alarm_id = ? ORDER BY id", (alarm_id,))])

    # -- outbox ------------------------------------------------------------------------

    async def outbox_pending(self, output, limit=100):
        return await self.run_read(lambda c: [OutboxRow.from_row(r) for r in c.execute(
            """SELECT * FROM outbox WHERE output = ? AND delivered_at IS NULL
               ORDER BY id LIMIT ?""", (output, limit))])

    async def outbox_result(self, outbox_id, delivered, error, at):
        def job(conn):
            if delivered:
                conn.execute("""UPDATE outbox SET delivered_at = ?, attempts = attempts + 1,
                                last_attempt_at = ?, last_error = NULL WHERE id = ?""",
                             (at, at, outbox_id))
            else:
                conn.execute("""UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ?,
                                last_error = ? WHERE id = ?""", (at, error, outbox_id))
        await self.run_write(job)

    async def outbox_depth(self):
        return await self.run_read(lambda c: {r[0]: r[1] for r in c.execute(
            """SELECT output, COUNT(*) FROM outbox WHERE delivered_at IS NULL
               GROUP BY output""")})

    async def list_outbox(self, output=None):
        sql = "SELECT * FROM outbox"
        args = []
        if output is not None:
            sql += " WHERE output = ?"
            args.append(output)
        sql += " ORDER BY id"
        return await self.run_read(lambda c: [OutboxRow.from_row(r) for r in c.execute(sql, args)])

    # -- vehicle units -----------------------------------------------------------------

    @staticmethod
    def _ingest_track(conn, recs: list[TrackRecord]) -> list[TrackOutcome]:
        out = []
        for r in recs:
            cur = conn.execute(_INSERT_TRACK, r.db_values())
            if cur.rowcount:
                out.append(TrackOutcome(cur.lastrowid, False))
                continue
            row = conn.execute("SELECT id FROM track_points WHERE account = ? AND "
                               "dedupe_key = ?", r.key).fetchone()
            if row is None:
                raise StoreUnavailable("track point %s/%s conflicted but is not there" % r.key)
            out.append(TrackOutcome(row[0], True))
        return out

    async def ingest_track(self, recs):
        return await self.run_write(self._ingest_track, list(recs), prio=PRIO_TRACK)

    async def track(self, account, since=None, until=None, limit=1000, newest=False):
        args: list = [account]
        sql = rules_store.and_where("SELECT * FROM track_points WHERE account = ?", args,
                   (("at >= ?", since), ("at < ?", until)))
        sql += " ORDER BY at %s, id %s LIMIT ?" % (("DESC",) * 2 if newest else ("",) * 2)
        args.append(limit)

        def job(conn):
            rows = [TrackPoint.from_row(r) for r in conn.execute(sql, args)]
            return rows[::-1] if newest else rows
        return await self.run_read(job)

    async def track_received_since(self, received_at, limit=1000):
        return await self.run_read(lambda c: [TrackPoint.from_row(r) for r in c.execute(
            "SELECT * FROM track_points WHERE received_at >= ? ORDER BY received_at, id "
            "LIMIT ?", (received_at, limit))])

    async def last_positions(self, accounts):
        def job(conn):
            out = {}
            for a in accounts:
                r = conn.execute("SELECT * FROM track_points WHERE account = ? "
                                 "ORDER BY at DESC, id DESC LIMIT 1", (a,)).fetchone()
                if r is not None:
                    out[a] = TrackPoint.from_row(r)
            return out
        return await self.run_read(job)

    async def track_in_area(self, south, west, north, east, since, until, limit=1000):
        # the R*Tree finds the candidates (its boxes are float32, rounded
        # outwards); the table's own columns decide
        return await self.run_read(lambda c: [TrackPoint.from_row(r) for r in c.execute(
            """SELECT t.* FROM track_points_rtree r JOIN track_points t ON t.id = r.id
               WHERE r.max_lat >= ? AND r.min_lat <= ? AND r.max_lon >= ? AND r.min_lon <= ?
               AND t.lat BETWEEN ? AND ? AND t.lon BETWEEN ? AND ?
               AND t.at >= ? AND t.at < ? ORDER BY t.at, t.id LIMIT ?""",
            (south, north, west, east, south, north, west, east, since, until, limit))])

    async def prune_track(self, account, before, batch, exclude=None):
        if account is not None:
            where, args = "account = ?", [account]
        else:
            ex = list(exclude or ())
            where = "account NOT IN (%s)" % ", ".join("?" * len(ex)) if ex else "1 = 1"
            args = ex
        return await self.run_write(lambda c: c.execute(
            """DELETE FROM track_points WHERE id IN (SELECT id FROM track_points
               WHERE %s AND at < ? ORDER BY at LIMIT ?)""" % where,
            args + [before, batch]).rowcount)

    async def latest_by_code(self, account, codes, source):
        def job(conn):
            out = {}
            for c in codes:
                r = conn.execute("SELECT * FROM events WHERE account = ? AND code = ? AND "
                                 "source = ? ORDER BY id DESC LIMIT 1",
                                 (account, c, source)).fetchone()
                if r is not None:
                    out[c] = Event.from_row(r)
            return out
        return await self.run_read(job)

    async def set_patrol_status(self, account, status, at, actor, alarm_id=None):
        def job(conn):
            conn.execute(_INSERT_PATROL_STATUS, (account, at, status, actor, alarm_id))
            return PatrolStatus(account, status, at, actor, alarm_id)
        return await self.run_write(job)

    async def patrol_statuses(self, accounts):
        codes = ", ".join(str(c) for c in PATROL_STATUS_CODES)

        def job(conn):
            out = {}
            for a in accounts:
                r = conn.execute("SELECT * FROM patrol_status WHERE account = ? "
                                 "ORDER BY at DESC, id DESC LIMIT 1", (a,)).fetchone()
                e = conn.execute("SELECT code, received_at, user_number FROM events "
                                 "WHERE account = ? AND code IN (%s) AND qualifier = 1 "
                                 "ORDER BY id DESC LIMIT 1" % codes, (a,)).fetchone()
                st = None if r is None else PatrolStatus.from_row(r)
                if e is not None and (st is None or e["received_at"] > st.at):
                    st = PatrolStatus(a, PATROL_STATUS_CODES[e["code"]], e["received_at"],
                                      "keypad (user %s)" % e["user_number"])
                if st is not None:
                    out[a] = st
            return out
        return await self.run_read(job)

    async def dispatch_patrol(self, alarm_id, patrol, at, by, target, radius_m, distance_m,
                              sentence):
        def job(conn):
            al = conn.execute("SELECT state FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
            if al is None:
                raise DispatchConflict("no alarm %d" % alarm_id)
            if al["state"] == "resolved":
                raise DispatchConflict("alarm %d is resolved" % alarm_id)
            if conn.execute("SELECT 1 FROM dispatches WHERE alarm_id = ? AND patrol = ?",
                            (alarm_id, patrol)).fetchone() is not None:
                raise DispatchConflict("patrol %s is already dispatched to alarm %d"
                                       % (patrol, alarm_id))
            cur = conn.execute(
                """INSERT INTO dispatches (alarm_id, patrol, dispatched_at, dispatched_by,
                   target_lat, target_lon, radius_m, distance_m) VALUES (?, ?, ?, ?, ?, ?, ?,
                   ?)""", (alarm_id, patrol, at, by, target[0], target[1], radius_m,
                           distance_m))
            conn.execute(_INSERT_PATROL_STATUS, (patrol, at, "dispatched", by, alarm_id))
            conn.execute(_INSERT_NOTE_AUDIT, (alarm_id, at, al["state"], al["state"], by,
                                              sentence))
            return Dispatch.from_row(conn.execute("SELECT * FROM dispatches WHERE id = ?",
                                                  (cur.lastrowid,)).fetchone())
        return await self.run_write(job)

    async def record_arrival(self, dispatch_id, at, sentence):
        def job(conn):
            if conn.execute("UPDATE dispatches SET arrived_at = ? WHERE id = ? AND "
                            "arrived_at IS NULL", (at, dispatch_id)).rowcount == 0:
                return None
            d = Dispatch.from_row(conn.execute("SELECT * FROM dispatches WHERE id = ?",
                                               (dispatch_id,)).fetchone())
            st = conn.execute("SELECT state FROM alarms WHERE id = ?",
                              (d.alarm_id,)).fetchone()["state"]
            conn.execute(_INSERT_PATROL_STATUS, (d.patrol, at, "on_scene", "receiver",
                                                 d.alarm_id))
            conn.execute(_INSERT_NOTE_AUDIT, (d.alarm_id, at, st, st, "receiver", sentence))
            return d
        return await self.run_write(job)

    async def list_dispatches(self, alarm_id=None, open_only=False, since=None, until=None):
        args: list = []
        sql = rules_store.and_where("SELECT * FROM dispatches WHERE 1 = 1", args,
                   (("alarm_id = ?", alarm_id), ("dispatched_at >= ?", since),
                    ("dispatched_at < ?", until)))
        if open_only:
            sql += " AND arrived_at IS NULL"
        sql += " ORDER BY dispatched_at, id"
        return await self.run_read(lambda c: [Dispatch.from_row(r)
                                              for r in c.execute(sql, args)])
    # -- the centre's rules (receiver.rules_store) ----------------------------------

    async def _rules_read(self, gen):
        return await self.run_read(rules_store.drive, gen)

    async def _rules_write(self, gen):
        return await self.run_write(rules_store.drive, gen)
