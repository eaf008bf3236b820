"""PostgreSQL backend of :class:`receiver.store.Store`: one database shared
by several receivers in active/active (docs/scale-out.md).

``--db postgresql://user@host:5432/guardline`` (or ``[store] url``)
selects it.  It keeps every guarantee of the interface, and the ones that
matter once several receivers write at once:

- **ACK after commit.**  ``ingest`` returns only after the transaction that
  holds the event, its alarm and first audit row, its outbox rows and the
  account's replay state has committed (PostgreSQL's ``synchronous_commit``
  decides what committed means; the default waits for the WAL flush).
- **Stored once, whoever took it.**  ``UNIQUE (account, dedupe_key)`` and
  ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: two receivers that both
  got a retransmitted event store it once, and the second learns the first
  one's id (``duplicate=True``).  A conflicting row still in flight in
  another receiver's transaction makes the insert wait for that commit, so
  neither answer is a guess.
- **Replay state only moves forward**: ``GREATEST(highest_seq, ...)``,
  whichever receiver wrote last.

Group commit: one writer task owns one connection.  Write requests queue
while the previous COMMIT runs; the writer takes everything queued (up to
``max_batch``) into one transaction.  Consecutive ``ingest`` requests are
written as a few set-based statements over arrays (``unnest``: one INSERT
for all events, one for their alarms, one for audit rows, one for outbox
rows, one UPDATE for replay state), so a batch costs about ten round trips
however many events it holds.  If a set-based write fails on a bad row the
batch falls back to one SAVEPOINT per request, as the SQLite backend does,
so one bad request does not sink its neighbours.  Other writes (operator
actions, account changes, security events) run in order between, each in
its own SAVEPOINT.

Locks are always taken in key order (events by (account, dedupe_key),
accounts by number, lines heard by (account, path)), so two receivers'
batches touching the same rows wait for each other but cannot deadlock.

Reads use a small pool of other connections, so an operator's query never
waits behind a batch.

Failures: a lost connection, PostgreSQL shutting down or refusing
connections, a full disk, a read-only standby (after a failover), a
deadlock or a statement timeout raise :class:`StoreUnavailable` (the
receiver NAKs busy, panels retry); the writer reconnects on its next batch.
Constraint and data errors (SQLSTATE classes 22 and 23) are the caller's
and are raised as they are.

Schema: ``MIGRATIONS[n]`` brings version n to n+1, each in one transaction
under an advisory lock, so receivers started together migrate once.  A
database newer than this code is refused.  The schema is created only
when the store is opened with ``create=True`` (``serve --init``); otherwise
a database without it raises StoreMissing and is left as it is, so a
read-only command pointed at the wrong database says so.  Beside the SQLite tables the
schema holds what several receivers share: ``receivers`` (who is alive),
``supervision_leases`` (which receiver supervises which shard of
accounts), ``line_heard`` (when each account's path was last heard, by any
receiver); receiver.ownership uses them.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
import time

import asyncpg

from receiver import alarms as _alarms
from receiver import ingest, rules_store, schema, workflow_db
from receiver.records import (EVENT_COLUMNS, PATROL_STATUS_CODES, TRACK_COLUMNS, Account,
                              Alarm, AuditEntry, Dispatch, Event, EventRecord, IngestOutcome,
                              OutboxRow, PatrolStatus, SecurityEvent, TrackOutcome, TrackPoint)
from receiver.store import (PRIO_STOP, PRIO_TRACK, PRIO_WRITE, DispatchConflict,
                            EventNotStored, SchemaError, Store, StoreBusy, StoreError,
                            StoreMissing, StoreUnavailable, Tx, failure_words, joins_commit,
                            mask_url)

_LOGGER = logging.getLogger(__name__)

# Requests committed in one transaction at most (as the SQLite backend: a
# batch of 512 events is ~10 statements and a few ms of server time).
MAX_BATCH = 512
# Write requests accepted but not yet committed before ``ingest`` raises
# StoreBusy (the hard memory bound; the receiver NAKs busy far below it).
MAX_QUEUED_WRITES = 50_000
# Read connections.  Operators' queries, the CLI and supervision look-ups;
# the writer has its own connection, the cluster (receiver.ownership) two.
READ_POOL_SIZE = 4
# Seconds to open a connection before the attempt counts as a failure.
CONNECT_TIMEOUT_S = 10
# Seconds any one statement may run.  A stalled server must turn into NAK
# busy (panels retry, possibly elsewhere) rather than ACKs that never come.
COMMAND_TIMEOUT_S = 15.0
# Supervision shards (receiver.ownership): written once, at schema creation,
# so every receiver on the database uses the same number.  64 spreads
# accounts evenly over up to a few dozen receivers at ~1.5 % each.
SUPERVISION_SHARDS = 64
# Arbitrary constant key of the advisory lock taken while migrating.
_MIGRATION_LOCK = 0x476C4D6967  # "GlMig"

_STOP = object()


def _schema_v1() -> list[str]:
    meta, accounts = schema.meta_and_accounts("postgresql")
    return [
        meta,
        """INSERT INTO meta (key, value) VALUES ('accounts_rev', 0),
           ('supervision_shards', %d)""" % SUPERVISION_SHARDS,
        accounts,
        # The keyring is reloaded when this counter moves (schema.REVISION_COLUMNS).
        """CREATE FUNCTION guardline_accounts_rev() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               UPDATE meta SET value = value + 1 WHERE key = 'accounts_rev';
               RETURN NULL;
           END $$""",
        """CREATE TRIGGER accounts_rev_insert_delete AFTER INSERT OR DELETE ON accounts
           FOR EACH STATEMENT EXECUTE FUNCTION guardline_accounts_rev()""",
        """CREATE TRIGGER accounts_rev_update AFTER UPDATE OF %s ON accounts
           FOR EACH STATEMENT EXECUTE FUNCTION guardline_accounts_rev()"""
        % schema.REVISION_COLUMNS,
    ] + schema.event_tables("postgresql", """CREATE INDEX events_supervision
        ON events (account, zone, id) WHERE source = 'supervision'""") + [
        # -- what several receivers share (receiver.ownership) --
        """CREATE TABLE receivers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            heartbeat_at TIMESTAMPTZ NOT NULL)""",
        """CREATE TABLE supervision_leases (
            shard INTEGER PRIMARY KEY,
            owner TEXT,
            expires_at TIMESTAMPTZ,
            acquired_at TIMESTAMPTZ,
            epoch BIGINT NOT NULL DEFAULT 0)""",
        """INSERT INTO supervision_leases (shard)
           SELECT generate_series(0, %d)""" % (SUPERVISION_SHARDS - 1),
        # last_heard: Unix seconds of the latest authenticated frame on the
        # path, by any receiver (heard_by); heard_by NULL marks the baseline
        # written when supervision of a never-heard path began.
        """CREATE TABLE line_heard (
            account TEXT NOT NULL,
            path INTEGER NOT NULL,
            last_heard DOUBLE PRECISION NOT NULL,
            heard_by TEXT,
            PRIMARY KEY (account, path))""",
    ]


def _rules_v3() -> list[str]:
    """Schema version 3 (issue 18): the rules' tables and columns; the
    periodic test columns move the accounts revision too."""
    return schema.rules_tables("postgresql") + [
        "DROP TRIGGER accounts_rev_update ON accounts",
        """CREATE TRIGGER accounts_rev_update AFTER UPDATE OF %s ON accounts
           FOR EACH STATEMENT EXECUTE FUNCTION guardline_accounts_rev()"""
        % schema.REVISION_COLUMNS_V3]


def _vehicles() -> list[str]:
    # no PostGIS required: a plain index on (lat, lon) serves the bounding-
    # box queries (receiver.store.Store.track_in_area)
    return schema.vehicles("postgresql", [
        """CREATE INDEX track_points_lat_lon ON track_points (lat, lon)"""])


# MIGRATIONS[i] brings schema version i to i + 1.
MIGRATIONS: list = [_schema_v1, schema.user_and_ext, _rules_v3, _vehicles,
                    functools.partial(schema.workflow, "postgresql"),
                    functools.partial(schema.last_test_on_accounts, "postgresql")]
SCHEMA_VERSION = len(MIGRATIONS)


def _wrap(e: BaseException) -> BaseException:
    """Map a driver error to the store's families (see the module doc)."""
    if isinstance(e, StoreError):
        return e
    if isinstance(e, asyncpg.PostgresError):
        state = getattr(e, "sqlstate", None) or ""
        if state[:2] in ("22", "23"):
            return e  # bad data or a constraint: the caller's request
        err = StoreUnavailable(failure_words(e))
    elif isinstance(e, (ValueError, TypeError)):
        return e  # an argument the driver could not encode: our bug
    elif isinstance(e, (asyncpg.InterfaceError, OSError, asyncio.TimeoutError)):
        err = StoreUnavailable(failure_words(e))
    else:
        return e
    err.__cause__ = e
    return err


def _columns(rows, width: int) -> list[list]:
    """Rows as ``width`` column lists (the arrays an ``unnest`` reads)."""
    cols: list[list] = [[] for _ in range(width)]
    for row in rows:
        for c, v in zip(cols, row):
            c.append(v)
    return cols


# The statements that execute receiver.ingest's plan, set-based.  Rows go
# in key order (events by (account, dedupe_key), alarms by event id): the
# lock order two receivers' batches share.
_INSERT_EVENTS = """INSERT INTO events (%s)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
        $5::bigint[], $6::int[], $7::int[], $8::text[], $9::int[], $10::text[],
        $11::int[], $12::int[], $13::text[], $14::bigint[], $15::float8[],
        $16::float8[], $17::int[], $18::text[], $19::int[], $20::text[], $21::text[])
        AS r(%s)
    ORDER BY account, dedupe_key
    ON CONFLICT (account, dedupe_key) DO NOTHING
    RETURNING id, account, dedupe_key""" % (", ".join(EVENT_COLUMNS), ", ".join(EVENT_COLUMNS))
# A restore stamps the open alarms it restores (raised before it), never
# closes them: that is the operator's decision.
_STAMP_RESTORED = """UPDATE alarms al SET restored_at = v.at, restore_event_id = v.ev
    FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::float8[], $6::bigint[])
        AS v(account, code, partition, zone, at, ev)
    WHERE al.account = v.account AND al.code = v.code
      AND al.partition = v.partition AND al.zone = v.zone
      AND al.state <> 'resolved' AND al.restored_at IS NULL
      AND al.created_at <= v.at"""
# (ingest.ALARM_COLUMNS, in order, with their array types)
_ALARM_TYPES = ("bigint", "text", "text", "int", "int", "int", "int", "text", "float8", "text",
                "float8", "bigint", "text", "text", "text", "float8", "float8", "int", "int",
                "bigint")
_INSERT_ALARMS = """INSERT INTO alarms (%s, state)
    SELECT *, 'pending' FROM unnest(%s) AS x(%s)
    ORDER BY event_id
    RETURNING id, event_id""" % (
    ", ".join(ingest.ALARM_COLUMNS),
    ", ".join("$%d::%s[]" % (i + 1, t) for i, t in enumerate(_ALARM_TYPES)),
    ", ".join(ingest.ALARM_COLUMNS))
_INSERT_STEPS = """INSERT INTO alarm_steps (%s)
    SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[],
                         $6::boolean[], $7::text[]) AS x(%s)""" % (
    ", ".join(ingest.STEP_COLUMNS), ", ".join(ingest.STEP_COLUMNS))
_INSERT_PLAN_AUDIT = """INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor,
        action, detail)
    SELECT a, t, 'pending', 'pending', 'receiver', ac, d
    FROM unnest($1::bigint[], $2::float8[], $3::text[], $4::text[]) AS x(a, t, ac, d)"""
_INSERT_FIRST_AUDIT = """INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor,
        note)
    SELECT a, t, NULL, 'pending', 'receiver', n
    FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS x(a, t, n)"""
_INSERT_OUTBOX = """INSERT INTO outbox (output, alarm_id, payload, created_at)
    SELECT o, a, p, t FROM unnest($1::text[], $2::bigint[], $3::text[], $4::float8[])
        WITH ORDINALITY AS x(o, a, p, t, n)
    ORDER BY n"""
# Track points, set-based, in key order (the lock order, as events).
_INSERT_TRACK = """INSERT INTO track_points (%s)
    SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::float8[],
        $6::float8[], $7::float8[], $8::float8[], $9::float8[], $10::int[], $11::int[],
        $12::float8[], $13::int[], $14::int[], $15::text[], $16::bigint[], $17::text[],
        $18::int[], $19::text[]) AS r(%s)
    ORDER BY account, dedupe_key
    ON CONFLICT (account, dedupe_key) DO NOTHING
    RETURNING id, account, dedupe_key""" % (", ".join(TRACK_COLUMNS), ", ".join(TRACK_COLUMNS))
_INSERT_PATROL_STATUS = """INSERT INTO patrol_status (account, at, status, actor, alarm_id)
    VALUES ($1, $2, $3, $4, $5)"""
# an audit row that records something done about the alarm without moving
# its state (receiver.alarms.audit_sentence: the note is the sentence)
_INSERT_NOTE_AUDIT = """INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor,
    note) VALUES ($1, $2, $3, $3, $4, $5)"""


# A named parameter (:name), not a cast (::text) nor a time in a literal.
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """A statement with :name parameters as asyncpg wants it ($1, $2 ...),
    and the names in the order of their numbers."""
    names: list[str] = []

    def number(m):
        if m.group(1) not in names:
            names.append(m.group(1))
        return "$%d" % (names.index(m.group(1)) + 1)
    return _NAMED.sub(number, sql), tuple(names)


class PGTx(Tx):
    """:class:`receiver.store.Tx` over an asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def rows(self, sql: str, **params) -> list:
        q, names = numbered(sql)
        return await self.conn.fetch(q, *[params[n] for n in names])

    async def run(self, sql: str, **params) -> int:
        q, names = numbered(sql)
        status = await self.conn.execute(q, *[params[n] for n in names])
        last = (status or "").rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def drive(self, op):
        return await rules_store.drive_async(self.conn, op)


class _Job:
    __slots__ = ("kind", "payload", "args", "fut")

    def __init__(self, kind, payload, args, fut):
        self.kind = kind  # "ingest" (payload: [EventRecord]), "track" ([TrackRecord]),
        # "heard" (rows), "fn", "raw"
        self.payload = payload
        self.args = args
        self.fut = fut


def _and(sql: str, args: list, conds) -> str:
    """``sql`` with `` AND cond`` for each (cond, value) of ``conds`` whose
    value is not None, the value appended to ``args`` (cond's ``$%d`` is
    its place)."""
    for cond, value in conds:
        if value is not None:
            args.append(value)
            sql += " AND " + cond % len(args)
    return sql


class PGStore(Store):
    shared = True

    def __init__(self, url: str, max_batch: int = MAX_BATCH,
                 max_queued_writes: int = MAX_QUEUED_WRITES, metrics=None,
                 read_pool_size: int = READ_POOL_SIZE, create: bool = True):
        self.url = url
        self.create = create
        self.path = mask_url(url)  # what logs show (the SQLite store's attribute)
        self.max_batch = max_batch
        self.max_queued_writes = max_queued_writes
        self.metrics = metrics
        self.read_pool_size = read_pool_size
        # who we are among the receivers on this database (line_heard.heard_by),
        # set by cluster_store()
        self.instance = ""
        self.pool: asyncpg.Pool | None = None
        self._conn: asyncpg.Connection | None = None
        # write requests by (priority, arrival): track points after all
        # other writes (receiver.store.PRIO_TRACK)
        self._q: asyncio.PriorityQueue | None = None
        self._order = itertools.count()
        self._writer: asyncio.Task | None = None
        self._pending = 0
        self._healthy = True
        self._last_error: str | None = None
        self.location = "url=%s" % self.path
        self._closed = True
        self.shards = SUPERVISION_SHARDS
        self.commits = 0  # transactions committed (for tests and metrics)
        self.batched = 0  # write requests committed

    def cluster_store(self, instance: str):
        """The cluster's tables and connections for receiver ``instance``
        (receiver.pg_cluster); events and hearings it commits name it."""
        from receiver.pg_cluster import PGClusterStore  # noqa: PLC0415

        self.instance = instance
        return PGClusterStore(self, instance)

    # -- lifecycle ----------------------------------------------------------------

    async def connect(self, **server_settings) -> asyncpg.Connection:
        """A new connection to the store's database (the cluster's bus and
        lease connections use this too)."""
        return await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S,
                                     command_timeout=COMMAND_TIMEOUT_S,
                                     server_settings=server_settings or None)

    async def open(self) -> None:
        try:
            conn = await self.connect(application_name="guardline-writer")
        except Exception as e:  # noqa: BLE001
            raise _wrap(e) from None
        try:
            await self._migrate(conn)
            self.shards = await conn.fetchval(
                "SELECT value FROM meta WHERE key = 'supervision_shards'")
            self.pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.read_pool_size,
                timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S,
                server_settings={"application_name": "guardline-reader"})
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._q = q = asyncio.PriorityQueue()
        self._closed = False
        self._writer = asyncio.create_task(self._run_writer(q), name="pg-writer")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._q is not None:
            self._q.put_nowait((PRIO_STOP, next(self._order), _STOP))
        try:
            if self._writer is not None:
                await self._writer
        finally:
            if self._conn is not None:
                await self._close_conn()
            if self.pool is not None:
                await self.pool.close()

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await asyncio.wait_for(conn.close(), 5)
        except Exception:  # noqa: BLE001 - already broken
            conn.terminate()

    # -- the writer ---------------------------------------------------------------

    def _submit(self, kind, payload, args=(), prio: int = PRIO_WRITE) -> asyncio.Future:
        q = self._q
        if self._closed or q is None:
            raise StoreError("store is closed")
        if self._pending >= self.max_queued_writes:
            raise StoreBusy("%d writes queued" % self._pending)
        fut = asyncio.get_running_loop().create_future()
        self._pending += 1
        q.put_nowait((prio, next(self._order), _Job(kind, payload, args, fut)))
        return fut

    def run_write(self, fn, *args) -> asyncio.Future:
        """Run ``await fn(conn, *args)`` inside the next group commit (in a
        SAVEPOINT of its own); the future resolves once it is committed."""
        return self._submit("fn", fn, args)

    def run_maintenance(self, fn, *args) -> asyncio.Future:
        """Run ``await fn(conn, *args)`` on the writer's connection between
        group commits, outside any transaction (session settings; tests use
        this to make the store fail for real)."""
        return self._submit("raw", fn, args)

    async def run_read(self, fn, *args):
        """``await fn(conn, *args)`` on a pooled read connection."""
        pool = self.pool
        if self._closed or pool is None:
            raise StoreError("store is closed")
        try:
            async with pool.acquire() as conn:
                return await fn(conn, *args)
        except Exception as e:  # noqa: BLE001
            raise _wrap(e) from None

    async def transact(self, fn):
        return await self.run_write(lambda conn: fn(PGTx(conn)))

    async def read(self, fn):
        async def snapshot(conn):
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await fn(PGTx(conn))
        return await self.run_read(snapshot)

    async def _run_writer(self, q: asyncio.Queue) -> None:
        carry = None  # a track point taken but left for the next commit
        while True:
            if carry is None:
                prio, _, first = await q.get()
            else:
                prio, first, carry = carry[0], carry[1], None
            if first is _STOP:
                break
            if first.kind == "raw":
                await self._run_raw(first)
                continue
            batch = [first]
            after = None
            while len(batch) < self.max_batch and not q.empty():
                p, _, j = q.get_nowait()
                if j is _STOP or j.kind == "raw":
                    after = j
                    break
                if not joins_commit(prio, p):
                    carry = (p, j)
                    break
                batch.append(j)
            await self._commit(batch)
            if after is _STOP:
                break
            if after is not None:
                await self._run_raw(after)
        # fail what is still queued (close() without a drain)
        while not q.empty():
            j = q.get_nowait()[2]
            if j is not _STOP:
                self._answer([(j, None, StoreError("store is closed"))], None, 0.0, False)

    async def _writer_conn(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            self._conn = await self.connect(application_name="guardline-writer")
        return self._conn

    async def _run_raw(self, job) -> None:
        try:
            conn = await self._writer_conn()
            r, exc = await job.payload(conn, *job.args), None
        except Exception as e:  # noqa: BLE001
            r, exc = None, _wrap(e)
        self._answer([(job, r, exc)], None, 0.0, False)

    async def _commit(self, batch: list) -> None:
        t0 = time.perf_counter()
        failed = None
        try:
            conn = await self._writer_conn()
            async with conn.transaction():
                results = await self._run_batch(conn, batch)
        except Exception as e:  # noqa: BLE001 - every waiter gets it
            failed = _wrap(e)
            if not isinstance(failed, StoreUnavailable):
                failed = StoreUnavailable("%s: %s" % (type(e).__name__, e))
                failed.__cause__ = e
            if self._conn is not None:
                # a new connection for the next batch: after a failover the
                # old one may be to a server that is now a read-only standby
                await self._close_conn()
            results = [(job, None, failed) for job in batch]
        self._answer(results, failed, time.perf_counter() - t0, True)

    async def _run_batch(self, conn, batch) -> list:
        """Run one batch inside the open transaction; returns [(job, result,
        exception)].  Ingests and hearings are written set-based; other
        jobs in order, each in a SAVEPOINT."""
        results = []
        heard: dict = {}
        i = 0
        while i < len(batch):
            job = batch[i]
            if job.kind == "heard":
                for account, path, at in job.payload:
                    k = (account, path)
                    if at > heard.get(k, (0.0,))[0]:
                        heard[k] = (at, self.instance)
                results.append((job, None, None))
                i += 1
            elif job.kind in ("ingest", "track"):
                j = i
                while j < len(batch) and batch[j].kind == job.kind:
                    j += 1
                if job.kind == "ingest":
                    results.extend(await self._ingest_run(conn, batch[i:j], heard))
                else:
                    results.extend(await self._set_run(conn, batch[i:j], self._track_points))
                i = j
            else:
                try:
                    async with conn.transaction():
                        r = await job.payload(conn, *job.args)
                except Exception as e:  # noqa: BLE001 - goes to the waiter
                    if conn.is_closed():
                        raise
                    results.append((job, None, _wrap(e)))
                else:
                    results.append((job, r, None))
                i += 1
        if heard:
            await self._write_heard(conn, heard)
        return results

    # -- schema -------------------------------------------------------------------

    async def _migrate(self, conn) -> None:
        if not self.create and await conn.fetchval(
                "SELECT to_regclass('schema_version') IS NULL"):
            raise StoreMissing("database %s has no receiver schema (nothing was created in "
                               "it)" % self.path, self.path)
        async with conn.transaction():
            # One receiver migrates; the others wait here, then find it done.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("""CREATE TABLE IF NOT EXISTS schema_version (
                version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)""")
            current = await conn.fetchval("SELECT MAX(version) FROM schema_version") or 0
            if current > SCHEMA_VERSION:
                raise SchemaError("database %s has schema version %d; this receiver knows "
                                  "up to %d" % (self.path, current, SCHEMA_VERSION))
            for v in range(current, SCHEMA_VERSION):
                async with conn.transaction():
                    for stmt in MIGRATIONS[v]():
                        await conn.execute(stmt)
                    await conn.execute("INSERT INTO schema_version (version, applied_at) "
                                       "VALUES ($1, $2)", v + 1, time.time())
                _LOGGER.info("store migrated url=%s schema_version=%d", self.path, v + 1)

    async def schema_version(self) -> int:
        return await self.run_read(
            lambda c: c.fetchval("SELECT MAX(version) FROM schema_version"))

    # -- the event path -----------------------------------------------------------

    def queue_ingest(self, recs: list[EventRecord]) -> asyncio.Future:
        # one job: written with its batch, or alone in one SAVEPOINT (the
        # writer is a task of this loop: queue_ingests' jobs are all queued
        # before it looks)
        return self._submit("ingest", recs)

    async def record_heard(self, rows: list[tuple[str, int, float]]) -> None:
        """[(account, path, unix time)] heard by this receiver: written with
        the next group commit, never lowering a stored time."""
        if rows:
            await self._submit("heard", rows)

    async def _ingest_run(self, conn, jobs, heard) -> list:
        """Consecutive ingest jobs (_set_run); ``heard`` gains the hearings
        of those stored."""
        snapshot = dict(heard)

        async def bulk(conn, recs):
            mine = dict(heard)
            out = await self._ingest_bulk(conn, recs, mine)
            heard.update(mine)
            return out

        def undo():
            heard.clear()
            heard.update(snapshot)
        return await self._set_run(conn, jobs, bulk, undo)

    async def _set_run(self, conn, jobs, bulk, undo=None) -> list:
        """Consecutive jobs of one kind: ``await bulk(conn, records)`` over
        all their records in one SAVEPOINT (set-based), the answers split
        back per job; when that fails on some row, ``undo()`` and one
        SAVEPOINT per job, so a bad one fails alone."""
        try:
            async with conn.transaction():
                outs = await bulk(conn, [r for j in jobs for r in j.payload])
            results, i = [], 0
            for j in jobs:
                results.append((j, outs[i:i + len(j.payload)], None))
                i += len(j.payload)
            return results
        except Exception as e:  # noqa: BLE001
            if conn.is_closed() or (isinstance(_wrap(e), StoreUnavailable)
                                    and not isinstance(e, EventNotStored)):
                raise  # the store's failure, not one request's: every waiter gets it
            _LOGGER.debug("set-based write failed (%s); one savepoint per request", e)
        if undo is not None:
            undo()
        results = []
        for j in jobs:
            try:
                async with conn.transaction():
                    o = await bulk(conn, j.payload)
            except Exception as e:  # noqa: BLE001 - goes to the waiter
                if conn.is_closed():
                    raise
                results.append((j, None, _wrap(e)))
            else:
                results.append((j, o, None))
        return results

    async def _ingest_bulk(self, conn, recs: list[EventRecord], heard: dict) -> list:
        """Execute receiver.ingest's plan for ``recs`` set-based: a few
        statements over arrays however many events."""
        # key order: the lock order across receivers (see the module doc)
        cand = sorted(ingest.candidates(recs))
        inserted = await self._insert_events(conn, [recs[i] for _, i in cand])
        existing = await self._event_ids(conn, [k for k, _ in cand if k not in inserted])
        policy = self.hygiene
        q = ingest.rules_query(recs, inserted, policy)
        if q.lock:
            # one account's hygiene decisions, one batch after the other
            # across receivers; after the events, in account order (the
            # lock order every batch keeps)
            await conn.execute("""SELECT 1 FROM accounts WHERE number = ANY($1::text[])
                                  ORDER BY number FOR UPDATE""", q.lock)
        state = await rules_store.drive_async(conn, rules_store.read_state(q))
        try:
            plan = ingest.plan(recs, inserted, existing, state, policy)
        except ingest.ConflictVanished as e:
            # the conflicting row vanished between the two statements
            # (deleted by hand): this request's sender retries, its
            # neighbours are written without it (_ingest_run)
            raise EventNotStored(str(e)) from None
        if plan.replay:
            await self._raise_replay_state(conn, plan.replay)
        if plan.tested:
            await self._raise_last_test(conn, plan.tested)
        # an event from the panel is also a hearing of its path, made
        # durable with the event (receiver.ownership reads it)
        for account, path, at in plan.heard:
            if at > heard.get((account, path), (0.0,))[0]:
                heard[(account, path)] = (at, self.instance)
        if plan.restores:
            await conn.execute(_STAMP_RESTORED, *_columns(
                ((r.account, r.code, r.partition, r.zone, r.at, r.event_id)
                 for r in plan.restores), 6))
        alarm_ids = await self._insert_alarms(conn, plan.alarms)
        await rules_store.drive_async(conn, rules_store.write_plan(plan, alarm_ids))
        track_ids = {}
        if plan.tracks:
            ids = await self._insert_track(conn, plan.tracks)
            track_ids = {t.event_id: ids[t.key] for t in plan.tracks if t.key in ids}
        tx = PGTx(conn)
        touched = {}
        for i, r, eid in plan.followups:
            touched[i] = await workflow_db.follow_up(tx, r, eid)
        return plan.outcomes(alarm_ids, track_ids, touched)

    @staticmethod
    async def _insert_track(conn, recs) -> dict:
        """Insert track points (TrackRecord) unless stored; {key: id} of
        those inserted now."""
        recs = sorted(recs, key=lambda r: r.key)
        rows = await conn.fetch(_INSERT_TRACK, *_columns((r.db_values() for r in recs),
                                                         len(TRACK_COLUMNS)))
        return {(r["account"], r["dedupe_key"]): r["id"] for r in rows}

    async def _track_points(self, conn, recs) -> list[TrackOutcome]:
        inserted = await self._insert_track(conn, recs)
        missing = sorted({r.key for r in recs if r.key not in inserted})
        existing = {}
        if missing:
            rows = await conn.fetch(
                """SELECT t.id, t.account, t.dedupe_key FROM track_points t
                   JOIN unnest($1::text[], $2::text[]) AS k(account, dedupe_key)
                   USING (account, dedupe_key)""", [k[0] for k in missing],
                [k[1] for k in missing])
            existing = {(r["account"], r["dedupe_key"]): r["id"] for r in rows}
        out, seen = [], set()
        for r in recs:
            k = r.key
            if k in inserted and k not in seen:
                seen.add(k)
                out.append(TrackOutcome(inserted[k], False))
                continue
            pid = inserted.get(k) or existing.get(k)
            if pid is None:
                raise StoreUnavailable("track point %s/%s conflicted but is not there" % k)
            out.append(TrackOutcome(pid, True))
        return out

    @staticmethod
    async def _insert_events(conn, recs: list[EventRecord]) -> dict:
        """Insert ``recs`` (in key order) unless stored; {key: id} of those
        inserted now."""
        rows = await conn.fetch(_INSERT_EVENTS, *_columns((r.db_values() for r in recs),
                                                          len(EVENT_COLUMNS)))
        return {(r["account"], r["dedupe_key"]): r["id"] for r in rows}

    @staticmethod
    async def _event_ids(conn, keys: list) -> dict:
        """{key: id} of the stored events among ``keys``."""
        if not keys:
            return {}
        rows = await conn.fetch(
            """SELECT e.id, e.account, e.dedupe_key FROM events e
               JOIN unnest($1::text[], $2::text[]) AS k(account, dedupe_key)
               USING (account, dedupe_key)""", [k[0] for k in keys], [k[1] for k in keys])
        return {(r["account"], r["dedupe_key"]): r["id"] for r in rows}

    @staticmethod
    async def _insert_alarms(conn, alarms: list) -> list[int]:
        """Insert the plan's alarms (in event id order), their first audit
        rows and their outbox rows; their ids, in the plan's order."""
        if not alarms:
            return []
        by_event = {}
        for row in await conn.fetch(_INSERT_ALARMS, *_columns(
                (al.values() for al in alarms), len(ingest.ALARM_COLUMNS))):
            by_event[row["event_id"]] = row["id"]
        ids = [by_event[al.event_id] for al in alarms]
        await conn.execute(_INSERT_FIRST_AUDIT, *_columns(
            ((i, al.created_at, al.audit_note()) for i, al in zip(ids, alarms)), 3))
        steps = [s for i, al in zip(ids, alarms) for s in al.steps(i)]
        if steps:
            await conn.execute(_INSERT_STEPS, *_columns(steps, len(ingest.STEP_COLUMNS)))
        plans = [p for p in (al.plan_audit(i) for i, al in zip(ids, alarms)) if p is not None]
        if plans:
            await conn.execute(_INSERT_PLAN_AUDIT, *_columns(plans, 4))
        outbox = [o for i, al in zip(ids, alarms) for o in al.outbox(i)]
        if outbox:
            await conn.execute(_INSERT_OUTBOX, *_columns(
                ((o.output, o.alarm_id, o.payload, o.created_at) for o in outbox), 4))
        return ids

    @staticmethod
    async def _raise_last_test(conn, rows) -> None:
        """rows: [(account, its latest periodic test report)] sorted by
        account (receiver.ingest: Plan.tested); never moved back."""
        numbers = [a for a, _ in rows]
        # locked in account order first, as _raise_replay_state does
        await conn.execute("""SELECT 1 FROM accounts WHERE number = ANY($1::text[])
                              ORDER BY number FOR UPDATE""", numbers)
        await conn.execute(
            """UPDATE accounts a SET last_test_at = GREATEST(a.last_test_at, v.t)
               FROM unnest($1::text[], $2::float8[]) AS v(number, t)
               WHERE a.number = v.number""",
            numbers, [t for _, t in rows])

    @staticmethod
    async def _raise_replay_state(conn, rows) -> None:
        """rows: [(account, highest_seq, tx_seq)] sorted by account."""
        numbers = [a for a, _, _ in rows]
        # lock the rows in account order first: an UPDATE ... FROM may visit
        # them in any order, and two receivers must not deadlock
        await conn.execute("""SELECT 1 FROM accounts WHERE number = ANY($1::text[])
                              ORDER BY number FOR UPDATE""", numbers)
        await conn.execute(
            """UPDATE accounts a SET highest_seq = GREATEST(a.highest_seq, v.h),
                                     tx_seq = GREATEST(a.tx_seq, v.t)
               FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(number, h, t)
               WHERE a.number = v.number""",
            numbers, [h for _, h, _ in rows], [t for _, _, t in rows])

    @staticmethod
    async def _write_heard(conn, heard: dict) -> None:
        keys = sorted(heard)
        await conn.execute(
            """INSERT INTO line_heard (account, path, last_heard, heard_by)
               SELECT * FROM unnest($1::text[], $2::int[], $3::float8[], $4::text[])
                   AS v(account, path, last_heard, heard_by)
               ORDER BY account, path
               ON CONFLICT (account, path) DO UPDATE
               SET last_heard = EXCLUDED.last_heard, heard_by = EXCLUDED.heard_by
               WHERE line_heard.last_heard < EXCLUDED.last_heard""",
            [k[0] for k in keys], [k[1] for k in keys], [heard[k][0] for k in keys],
            [heard[k][1] or None for k in keys])

    async def record_security_event(self, at, account, seq, reason, detail, peer,
                                    transport) -> int:
        async def job(conn):
            return await conn.fetchval(
                """INSERT INTO security_events (at, account, seq, reason, detail, peer,
                   transport) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
                at, account, seq, reason, detail, peer, transport)
        return await self.run_write(job)

    async def save_replay_state(self, rows) -> None:
        if rows:
            rows = sorted(rows)
            await self.run_write(lambda c: self._raise_replay_state(c, rows))

    # -- accounts -------------------------------------------------------------------

    async def _insert_account(self, row: dict) -> None:
        cols = list(row)
        await self.run_write(lambda c: c.execute("INSERT INTO accounts (%s) VALUES (%s)" % (
            ", ".join(cols), ", ".join("$%d" % (i + 1) for i in range(len(cols)))),
            *[row[k] for k in cols]))

    async def _update_account(self, number: str, row: dict) -> None:
        cols = list(row)
        await self.run_write(lambda c: c.execute("UPDATE accounts SET %s WHERE number = $%d" % (
            ", ".join("%s = $%d" % (k, i + 1) for i, k in enumerate(cols)), len(cols) + 1),
            *[row[k] for k in cols], number))

    async def delete_account(self, number: str) -> None:
        await self.run_write(lambda c: c.execute("DELETE FROM accounts WHERE number = $1",
                                                 number))

    async def get_account(self, number: str) -> Account | None:
        r = await self.run_read(lambda c: c.fetchrow(
            "SELECT * FROM accounts WHERE number = $1", number))
        return None if r is None else Account.from_row(r)

    async def list_accounts(self) -> list[Account]:
        # numeric accounts in numeric order, then the others (as SQLite's
        # CAST(number AS INTEGER) orders them)
        rows = await self.run_read(lambda c: c.fetch(
            """SELECT * FROM accounts ORDER BY
               CASE WHEN number ~ '^[0-9]{1,18}$' THEN number::bigint ELSE 0 END, number"""))
        return [Account.from_row(r) for r in rows]

    async def accounts_revision(self) -> int:
        return await self.run_read(lambda c: c.fetchval(
            "SELECT value FROM meta WHERE key = 'accounts_rev'"))

    # -- reading events -----------------------------------------------------------------

    async def list_events(self, account=None, since=None, after_id=0, limit=1000):
        args: list = [after_id]
        sql = _and("SELECT * FROM events WHERE id > $1", args,
                   (("account = $%d", account), ("received_at >= $%d", since)))
        args.append(limit)
        sql += " ORDER BY id LIMIT $%d" % len(args)
        return [Event.from_row(r) for r in await self.run_read(lambda c: c.fetch(sql, *args))]

    async def count_events(self, account=None) -> int:
        if account is None:
            return await self.run_read(lambda c: c.fetchval("SELECT COUNT(*) FROM events"))
        return await self.run_read(lambda c: c.fetchval(
            "SELECT COUNT(*) FROM events WHERE account = $1", account))

    async def last_event(self, account=None):
        if account is None:
            r = await self.run_read(lambda c: c.fetchrow(
                "SELECT * FROM events ORDER BY id DESC LIMIT 1"))
        else:
            r = await self.run_read(lambda c: c.fetchrow(
                "SELECT * FROM events WHERE account = $1 ORDER BY id DESC LIMIT 1", account))
        return None if r is None else Event.from_row(r)

    async def list_security_events(self, since=None, limit=1000):
        sql = "SELECT * FROM security_events"
        args: list = []
        if since is not None:
            args.append(since)
            sql += " WHERE at >= $1"
        args.append(limit)
        sql += " ORDER BY id LIMIT $%d" % len(args)
        return [SecurityEvent.from_row(r)
                for r in await self.run_read(lambda c: c.fetch(sql, *args))]

    async def prune_security_events(self, before, keep, batch):
        async def job(conn):
            rows = await conn.fetch(
                """DELETE FROM security_events WHERE id IN (
                       SELECT id FROM security_events WHERE at < $1 OR id <= (
                           SELECT id FROM security_events ORDER BY id DESC
                           LIMIT 1 OFFSET $2)
                       ORDER BY id LIMIT $3) RETURNING 1""", before, keep, batch)
            return len(rows)
        return await self.run_write(job)

    async def supervision_failed(self):
        return sorted(await self.supervision_failures())

    async def supervision_failures(self, accounts=None) -> dict:
        """{(account, path): when the failure was raised} for paths whose
        latest supervision event is a failure (of ``accounts``, or all)."""
        sql = """SELECT DISTINCT ON (account, zone) account, zone, qualifier, received_at
                 FROM events WHERE source = 'supervision' %s
                 ORDER BY account, zone, id DESC"""
        if accounts is None:
            rows = await self.run_read(lambda c: c.fetch(sql % ""))
        else:
            rows = await self.run_read(lambda c: c.fetch(
                sql % "AND account = ANY($1::text[])", list(accounts)))
        return {(r["account"], r["zone"]): r["received_at"] for r in rows
                if r["qualifier"] == 1}

    # -- alarms -----------------------------------------------------------------------

    async def list_alarms(self, state=None, limit=1000):
        sql = "SELECT * FROM alarms"
        args: list = []
        if state is not None:
            args.append(state)
            sql += " WHERE state = $1"
        args.append(limit)
        sql += (" ORDER BY state = 'resolved', priority, created_at, id LIMIT $%d"
                % len(args))
        return [Alarm.from_row(r) for r in await self.run_read(
            lambda c: c.fetch(sql, *args))]

    async def count_alarms(self, states):
        rows = await self.run_read(lambda c: c.fetch(
            "SELECT state, COUNT(*) AS n FROM alarms WHERE state = ANY($1::text[]) "
            "GROUP BY state", list(states)))
        n = dict.fromkeys(states, 0)
        n.update((r["state"], r["n"]) for r in rows)
        return n

    async def get_alarm(self, alarm_id):
        r = await self.run_read(lambda c: c.fetchrow("SELECT * FROM alarms WHERE id = $1",
                                                     alarm_id))
        return None if r is None else Alarm.from_row(r)

    async def alarm_audit(self, alarm_id):
        return [AuditEntry.from_row(r) for r in await self.run_read(lambda c: c.fetch(
            "SELECT * FROM alarm_audit WHERE alarm_id = $1 ORDER BY id", alarm_id))]

    # -- outbox ------------------------------------------------------------------------

    async def outbox_pending(self, output, limit=100):
        rows = await self.run_read(lambda c: c.fetch(
            """SELECT * FROM outbox WHERE output = $1 AND delivered_at IS NULL
               ORDER BY id LIMIT $2""", output, limit))
        return [OutboxRow.from_row(r) for r in rows]

    async def outbox_result(self, outbox_id, delivered, error, at):
        async def job(conn):
            if delivered:
                await conn.execute(
                    """UPDATE outbox SET delivered_at = $1, attempts = attempts + 1,
                       last_attempt_at = $1, last_error = NULL WHERE id = $2""",
                    at, outbox_id)
            else:
                await conn.execute(
                    """UPDATE outbox SET attempts = attempts + 1, last_attempt_at = $1,
                       last_error = $2 WHERE id = $3""", at, error, outbox_id)
        await self.run_write(job)

    async def outbox_depth(self):
        rows = await self.run_read(lambda c: c.fetch(
            """SELECT output, COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL
               GROUP BY output"""))
        return {r["output"]: r["n"] for r in rows}

    async def list_outbox(self, output=None):
        if output is None:
            rows = await self.run_read(lambda c: c.fetch("SELECT * FROM outbox ORDER BY id"))
        else:
            rows = await self.run_read(lambda c: c.fetch(
                "SELECT * FROM outbox WHERE output = $1 ORDER BY id", output))
        return [OutboxRow.from_row(r) for r in rows]

    # -- vehicle units -----------------------------------------------------------------

    async def ingest_track(self, recs):
        return await self._submit("track", list(recs), prio=PRIO_TRACK)

    async def track(self, account, since=None, until=None, limit=1000, newest=False):
        args: list = [account]
        sql = _and("SELECT * FROM track_points WHERE account = $1", args,
                   (("at >= $%d", since), ("at < $%d", until)))
        args.append(limit)
        sql += " ORDER BY at %s, id %s LIMIT $%d" % (
            ("DESC", "DESC", len(args)) if newest else ("", "", len(args)))
        rows = [TrackPoint.from_row(r) for r in await self.run_read(
            lambda c: c.fetch(sql, *args))]
        return rows[::-1] if newest else rows

    async def track_received_since(self, received_at, limit=1000):
        return [TrackPoint.from_row(r) for r in await self.run_read(lambda c: c.fetch(
            "SELECT * FROM track_points WHERE received_at >= $1 ORDER BY received_at, id "
            "LIMIT $2", received_at, limit))]

    async def last_positions(self, accounts):
        rows = await self.run_read(lambda c: c.fetch(
            """SELECT t.* FROM unnest($1::text[]) AS a(number)
               CROSS JOIN LATERAL (SELECT * FROM track_points WHERE account = a.number
                                   ORDER BY at DESC, id DESC LIMIT 1) t""", list(accounts)))
        return {r["account"]: TrackPoint.from_row(r) for r in rows}

    async def track_in_area(self, south, west, north, east, since, until, limit=1000):
        return [TrackPoint.from_row(r) for r in await self.run_read(lambda c: c.fetch(
            """SELECT * FROM track_points WHERE lat BETWEEN $1 AND $2
               AND lon BETWEEN $3 AND $4 AND at >= $5 AND at < $6
               ORDER BY at, id LIMIT $7""", south, north, west, east, since, until, limit))]

    async def prune_track(self, account, before, batch, exclude=None):
        if account is not None:
            where, arg = "account = $3", account
        else:
            where, arg = "NOT (account = ANY($3::text[]))", list(exclude or ())

        async def job(conn):
            rows = await conn.fetch(
                """DELETE FROM track_points WHERE id IN (SELECT id FROM track_points
                   WHERE %s AND at < $1 ORDER BY at LIMIT $2) RETURNING 1""" % where,
                before, batch, arg)
            return len(rows)
        return await self.run_write(job)

    async def latest_by_code(self, account, codes, source):
        rows = await self.run_read(lambda c: c.fetch(
            """SELECT DISTINCT ON (code) * FROM events WHERE account = $1
               AND code = ANY($2::int[]) AND source = $3 ORDER BY code, id DESC""",
            account, list(codes), source))
        return {r["code"]: Event.from_row(r) for r in rows}

    async def set_patrol_status(self, account, status, at, actor, alarm_id=None):
        async def job(conn):
            await conn.execute(_INSERT_PATROL_STATUS, account, at, status, actor, alarm_id)
            return PatrolStatus(account, status, at, actor, alarm_id)
        return await self.run_write(job)

    async def patrol_statuses(self, accounts):
        accounts = list(accounts)
        set_rows = await self.run_read(lambda c: c.fetch(
            """SELECT DISTINCT ON (account) account, status, at, actor, alarm_id
               FROM patrol_status WHERE account = ANY($1::text[])
               ORDER BY account, at DESC, id DESC""", accounts))
        key_rows = await self.run_read(lambda c: c.fetch(
            """SELECT DISTINCT ON (account) account, code, received_at, user_number
               FROM events WHERE account = ANY($1::text[]) AND code = ANY($2::int[])
               AND qualifier = 1 ORDER BY account, id DESC""", accounts,
            list(PATROL_STATUS_CODES)))
        out = {r["account"]: PatrolStatus.from_row(r) for r in set_rows}
        for e in key_rows:
            st = out.get(e["account"])
            if st is None or e["received_at"] > st.at:
                out[e["account"]] = PatrolStatus(
                    e["account"], PATROL_STATUS_CODES[e["code"]], e["received_at"],
                    "keypad (user %s)" % e["user_number"])
        return out

    async def dispatch_patrol(self, alarm_id, patrol, at, by, target, radius_m, distance_m,
                              sentence):
        async def job(conn):
            # FOR UPDATE: an operator resolving the alarm on another
            # receiver meanwhile is serialised with this
            al = await conn.fetchrow("SELECT state FROM alarms WHERE id = $1 FOR UPDATE",
                                     alarm_id)
            if al is None:
                raise DispatchConflict("no alarm %d" % alarm_id)
            if al["state"] == "resolved":
                raise DispatchConflict("alarm %d is resolved" % alarm_id)
            row = await conn.fetchrow(
                """INSERT INTO dispatches (alarm_id, patrol, dispatched_at, dispatched_by,
                   target_lat, target_lon, radius_m, distance_m)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (alarm_id, patrol) DO NOTHING RETURNING *""",
                alarm_id, patrol, at, by, target[0], target[1], radius_m, distance_m)
            if row is None:
                raise DispatchConflict("patrol %s is already dispatched to alarm %d"
                                       % (patrol, alarm_id))
            await conn.execute(_INSERT_PATROL_STATUS, patrol, at, "dispatched", by, alarm_id)
            await conn.execute(_INSERT_NOTE_AUDIT, alarm_id, at, al["state"], by, sentence)
            return Dispatch.from_row(row)
        return await self.run_write(job)

    async def record_arrival(self, dispatch_id, at, sentence):
        async def job(conn):
            # one receiver wins: the row is updated only while arrived_at is
            # NULL, and a concurrent update waits for this one's commit
            row = await conn.fetchrow(
                """UPDATE dispatches SET arrived_at = $1 WHERE id = $2 AND arrived_at IS NULL
                   RETURNING *""", at, dispatch_id)
            if row is None:
                return None
            d = Dispatch.from_row(row)
            st = await conn.fetchval("SELECT state FROM alarms WHERE id = $1", d.alarm_id)
            await conn.execute(_INSERT_PATROL_STATUS, d.patrol, at, "on_scene", "receiver",
                               d.alarm_id)
            await conn.execute(_INSERT_NOTE_AUDIT, d.alarm_id, at, st, "receiver", sentence)
            return d
        return await self.run_write(job)

    async def list_dispatches(self, alarm_id=None, open_only=False, since=None, until=None):
        args: list = []
        sql = _and("SELECT * FROM dispatches WHERE TRUE", args,
                   (("alarm_id = $%d", alarm_id), ("dispatched_at >= $%d", since),
                    ("dispatched_at < $%d", until)))
        if open_only:
            sql += " AND arrived_at IS NULL"
        sql += " ORDER BY dispatched_at, id"
        return [Dispatch.from_row(r) for r in await self.run_read(lambda c: c.fetch(sql, *args))]
    # -- the centre's rules (receiver.rules_store) ----------------------------------

    async def _rules_read(self, gen):
        return await self.run_read(rules_store.drive_async, gen)

    async def _rules_write(self, gen):
        return await self.run_write(rules_store.drive_async, gen)
