"""The Store contract, once, run against both backends.

Every test here gets a ``store`` on a real SQLite file and on a fresh
PostgreSQL database (tests/pg_fixture.py) and asserts the same things: the
interface's guarantees (receiver.store) and the ingest rules
(receiver.ingest) as a receiver sees them through the store.  What only
one backend has lives beside it: tests/test_rx_store.py (SQLite: WAL,
full disk) and tests/test_pg_store.py (PostgreSQL: several receivers on
one database, set-based batches, lost connections).

A :class:`Backend` says how to do, on its database, what the contract
needs done from outside (make the database refuse writes, write a schema
version from the future, run a write that fails).
"""

import asyncio
import os
import socket
import sqlite3
import time

import pytest

from receiver import alarms
from receiver.records import Account, Alarm, AuditEntry, Event, EventRecord, OutboxRow
from receiver.records import SecurityEvent
from receiver.store import SchemaError, Store, StoreUnavailable
from receiver.workflow_service import NotFound, Workflow
from tests.pg_fixture import pg_server, pg_url  # noqa: F401


def rec(account="1", seq=1, **kw):
    d = dict(account=account, protocol="native", dedupe_key="native:%d" % seq, qualifier=1,
             code=602, partition=1, zone=0, received_at=time.time(), seq=seq)
    d.update(kw)
    return EventRecord(**d)


def alarm_rec(seq, at, qualifier=1, **kw):
    """A burglary in zone 4 (an alarm when qualifier 1, its restore when 3)."""
    d = dict(seq=seq, code=130, zone=4, event_class="burglary", priority=4,
             qualifier=qualifier, received_at=at, open_alarm=qualifier == 1)
    d.update(kw)
    return rec(**d)


class SQLiteBackend:
    name = "sqlite"

    def __init__(self, tmp_path):
        self.path = str(tmp_path / "rx.db")

    def make(self) -> Store:
        from receiver.sqlite_store import SQLiteStore
        return SQLiteStore(self.path)

    async def read_only(self, store, on: bool) -> None:
        await store.run_maintenance(lambda c: c.execute("PRAGMA query_only=%d" % on))

    async def write_future_schema(self, version: int) -> None:
        c = sqlite3.connect(self.path)
        c.execute("INSERT INTO schema_version VALUES (?, 0)", (version,))
        c.commit()
        c.close()

    async def schema_rows(self) -> int:
        c = sqlite3.connect(self.path)
        try:
            return c.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
        finally:
            c.close()

    def failing_write(self, store):
        return store.run_write(lambda c: c.execute("INSERT INTO no_such_table VALUES (1)"))

    failing_write_error = StoreUnavailable

    async def drop_inserts_of(self, dedupe_key: str) -> None:
        """From now on the database silently skips inserting the event with
        ``dedupe_key``: its key looks taken but no row is there, what a row
        deleted between the insert and the read back looks like."""
        c = sqlite3.connect(self.path)
        c.execute("CREATE TRIGGER drop_one BEFORE INSERT ON events WHEN NEW.dedupe_key = ? "
                  "BEGIN SELECT RAISE(IGNORE); END".replace("?", "'%s'" % dedupe_key))
        c.commit()
        c.close()


class PGBackend:
    name = "postgresql"

    def __init__(self, url):
        self.url = url

    def make(self) -> Store:
        from receiver.pg_store import PGStore
        return PGStore(self.url)

    async def read_only(self, store, on: bool) -> None:
        # what a hot standby answers with after a failover
        await store.run_maintenance(lambda c: c.execute(
            "SET default_transaction_read_only = %s" % ("on" if on else "off")))

    async def _sql(self, fn):
        import asyncpg
        c = await asyncpg.connect(self.url)
        try:
            return await fn(c)
        finally:
            await c.close()

    async def write_future_schema(self, version: int) -> None:
        await self._sql(lambda c: c.execute("INSERT INTO schema_version VALUES ($1, 0)",
                                            version))

    async def schema_rows(self) -> int:
        return await self._sql(lambda c: c.fetchval("SELECT COUNT(*) FROM schema_version"))

    def failing_write(self, store):
        async def job(conn):
            await conn.execute("INSERT INTO accounts (number) VALUES ('x')")  # NOT NULL
        return store.run_write(job)

    @property
    def failing_write_error(self):
        import asyncpg
        return asyncpg.NotNullViolationError

    async def drop_inserts_of(self, dedupe_key: str) -> None:
        async def make(c):
            await c.execute("""CREATE FUNCTION drop_one() RETURNS trigger LANGUAGE plpgsql AS
                               $$ BEGIN RETURN NULL; END $$""")
            await c.execute("CREATE TRIGGER drop_one BEFORE INSERT ON events FOR EACH ROW "
                            "WHEN (NEW.dedupe_key = '%s') EXECUTE FUNCTION drop_one()"
                            % dedupe_key)
        await self._sql(make)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        return SQLiteBackend(tmp_path)
    return PGBackend(request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(backend):
    s = backend.make()
    await s.open()
    await s.add_account(Account("1", os.urandom(32), region="north"))
    yield s
    await s.close()


def schema_version_of(store) -> int:
    import importlib
    return importlib.import_module(type(store).__module__).SCHEMA_VERSION


# -- the interface ------------------------------------------------------------------------------


def test_both_backends_implement_the_whole_interface():
    from receiver.pg_store import PGStore
    from receiver.sqlite_store import SQLiteStore
    for cls in (SQLiteStore, PGStore):
        assert issubclass(cls, Store)
        assert not getattr(cls, "__abstractmethods__", None)
    assert PGStore.shared and not SQLiteStore.shared and not Store.shared


async def test_schema_is_created_once_and_newer_is_refused(store, backend):
    version = schema_version_of(store)
    assert await store.schema_version() == version
    await store.close()
    # two receivers starting at once (or one reopening): nothing applied twice
    a, b = backend.make(), backend.make()
    await asyncio.gather(a.open(), b.open())
    assert await a.schema_version() == await b.schema_version() == version
    await a.close()
    await b.close()
    assert await backend.schema_rows() == version
    await backend.write_future_schema(version + 1)
    with pytest.raises(SchemaError):
        await backend.make().open()


# -- the event path ---------------------------------------------------------------------------


async def test_group_commit_many_waiters_per_commit(store):
    n = 1000
    before = store.commits
    outs = await asyncio.gather(*(store.ingest(rec(seq=i)) for i in range(1, n + 1)))
    assert sorted(o.event_id for o in outs) == list(range(1, n + 1))
    assert not any(o.duplicate for o in outs)
    # Requests queued while a commit ran share the next one: far fewer
    # commits than events (one fsync per event would be n commits).
    assert store.commits - before < n / 5
    assert store.batched >= n


async def test_duplicate_is_stored_once_and_reports_first_id(store):
    first = await store.ingest(rec(seq=5))
    outs = await asyncio.gather(*(store.ingest(rec(seq=5)) for _ in range(10)))
    assert all(o.duplicate and o.event_id == first.event_id for o in outs)
    assert await store.count_events() == 1


async def test_ingest_advances_replay_state_and_never_lowers_it(store):
    await store.ingest(rec(seq=10, tx_seq=4))
    await store.ingest(rec(seq=7, tx_seq=2))
    await store.save_replay_state([("1", 3, 1)])
    a = await store.get_account("1")
    assert (a.highest_seq, a.tx_seq) == (10, 4)
    await store.save_replay_state([("1", 12, 9)])
    a = await store.get_account("1")
    assert (a.highest_seq, a.tx_seq) == (12, 9)
    # a DC-09 event's sequence is not the native replay state
    await store.ingest(rec(seq=99, protocol="dc09", dedupe_key="dc09:99"))
    assert (await store.get_account("1")).highest_seq == 12


async def test_read_only_store_fails_then_recovers(store, backend):
    await backend.read_only(store, True)
    with pytest.raises(StoreUnavailable):
        await store.ingest(rec(seq=1))
    assert not store.healthy
    await backend.read_only(store, False)
    out = await store.ingest(rec(seq=1))
    assert not out.duplicate and store.healthy
    assert await store.count_events() == 1


async def test_failing_request_does_not_sink_its_batch(store, backend):
    futs = [store.ingest(rec(seq=i)) for i in range(1, 20)]
    bad_fut = backend.failing_write(store)
    futs += [store.ingest(rec(seq=i)) for i in range(20, 40)]
    outs = await asyncio.gather(*futs)
    with pytest.raises(backend.failing_write_error):
        await bad_fut
    assert len(outs) == 39 and not any(o.duplicate for o in outs)
    assert await store.count_events() == 39


async def test_an_event_that_vanishes_fails_alone_in_its_group_commit(store, backend):
    """One request of a group commit whose event conflicts but is not there
    when read back (receiver.ingest.ConflictVanished) gets its own
    EventNotStored (the panel retries); every other request of the commit,
    alarms included, is stored and answered as without it, and the store
    stays healthy: no other panel's alarm waits for a retry."""
    from receiver.store import EventNotStored
    await backend.drop_inserts_of("native:13")
    n = 40
    # the alarms each in a zone of their own (one zone's run of alarms is
    # a runaway the hygiene rules fold into one)
    futs = [store.ingest(alarm_rec(i, 1000.0 + i, zone=i) if i % 5 == 0 else rec(seq=i))
            for i in range(1, n + 1)]
    # a message of two whose first event vanishes: all or nothing, so nothing
    futs.append(store.ingest_many([rec(seq=13, dedupe_key="native:13"), rec(seq=500)]))
    futs.append(store.ingest(rec(seq=13)))
    before = store.commits
    outs = await asyncio.gather(*futs, return_exceptions=True)
    assert store.commits - before < len(futs) / 4  # they did share commits
    failed = [i for i, o in enumerate(outs) if isinstance(o, BaseException)]
    assert failed == [12, n, n + 1], outs
    assert all(isinstance(outs[i], EventNotStored) for i in failed)
    assert all(not o.duplicate for i, o in enumerate(outs) if i not in failed)
    assert [o.alarm_id is not None for o in outs[4:n:5]] == [True] * (n // 5)
    assert store.healthy and store.last_error is None
    keys = {e.dedupe_key for e in await store.list_events()}
    assert keys == {"native:%d" % i for i in range(1, n + 1) if i != 13}
    assert len(await store.list_alarms()) == n // 5
    assert (await store.get_account("1")).highest_seq == n


async def test_requests_sharing_a_commit_get_the_answers_they_get_one_by_one(store, tmp_path):
    """Ingest requests that land in one group commit (the SQLite writer
    executes them as one plan, set-based) answer as the same requests one
    after the other: copies across requests are duplicates of the first, a
    restore stamps the alarm an earlier request raised, a message is all or
    nothing, and a request that cannot be stored fails alone.  The one by
    one answers come from a second store (SQLite) fed the requests in turn."""
    from receiver.sqlite_store import SQLiteStore

    t = 5000.0

    def requests():
        out = []
        for i in range(1, 121):
            if i % 10 == 0:
                out.append(("one", alarm_rec(i, t + i, zone=i % 3)))
            elif i % 10 == 5:
                out.append(("one", alarm_rec(i, t + i, zone=(i - 5) % 3, qualifier=3)))
            elif i % 17 == 0:
                out.append(("one", rec(seq=i - 1, received_at=t + i)))  # a copy
            elif i % 29 == 0:  # a message of three, one of them a copy
                out.append(("many", [rec(seq=i, received_at=t + i),
                                     rec(seq=1000 + i, received_at=t + i),
                                     rec(seq=i, received_at=t + i)]))
            elif i == 64:  # cannot be stored (event_class NOT NULL)
                out.append(("one", rec(seq=i, event_class=None, received_at=t + i)))
            else:
                out.append(("one", rec(seq=i, received_at=t + i)))
        return out

    async def answer(s, kind, r):
        try:
            o = await (s.ingest(r) if kind == "one" else s.ingest_many(r))
        except Exception:  # noqa: BLE001 - the failure is part of the answer
            return None
        return o if isinstance(o, list) else [o]

    async def words(s, answers):
        """Each request's answer without the ids: failed, or per record
        (duplicate, which record first stored its event, its alarm's
        restored_at)."""
        first: dict = {}
        out = []
        for n, outs in enumerate(answers):
            if outs is None:
                out.append("failed")
                continue
            row = []
            for m, o in enumerate(outs):
                first.setdefault(o.event_id, (n, m))
                stamp = None if o.alarm_id is None else \
                    ("alarm", (await s.get_alarm(o.alarm_id)).restored_at)
                row.append((o.duplicate, first[o.event_id], stamp))
            out.append(row)
        return out

    before = store.commits
    together = await asyncio.gather(*(answer(store, k, r) for k, r in requests()))
    assert store.commits - before < len(together) / 4  # they did share commits
    alone_store = SQLiteStore(str(tmp_path / "alone.db"))
    await alone_store.open()
    try:
        await alone_store.add_account(Account("1", os.urandom(32), region="north"))
        alone = [await answer(alone_store, k, r) for k, r in requests()]
        got, want = await words(store, together), await words(alone_store, alone)
        assert got == want
        assert got[63] == "failed" and sum(1 for w in got if w == "failed") == 1
        assert any(x[2] and x[2][1] is not None for w in got if w != "failed" for x in w)
        assert await store.count_events() == await alone_store.count_events()
    finally:
        await alone_store.close()


async def test_alarm_opened_with_event_routed_audited_and_outboxed(store):
    r = rec(seq=3, code=130, zone=4, event_class="burglary", priority=4,
            description="Burglary, zone 4", open_alarm=True,
            routed_to={"police_station": "ps-1"},
            outbox=[("cad", {"type": "alarm", "account": "1"})])
    out = await store.ingest(r)
    assert out.alarm_id is not None
    again = await store.ingest(r)
    assert again.duplicate and again.alarm_id is None
    [a] = await store.list_alarms()
    assert isinstance(a, Alarm)
    assert a.state == "pending" and a.routed_to == {"police_station": "ps-1"}
    [row] = await store.outbox_pending("cad")
    assert isinstance(row, OutboxRow)
    assert row.payload["alarm_id"] == a.id and row.payload["event_id"] == out.event_id

    # a restore stamps the open alarm but does not resolve it
    await store.ingest(rec(seq=4, code=130, zone=4, qualifier=3))
    a = await store.get_alarm(a.id)
    assert a.restored_at is not None and a.state == "pending"

    wf = Workflow(store)
    a = await wf.acknowledge(a.id, "op-anna")
    assert (a.state, a.acknowledged_by, a.handler) == ("acknowledged", "op-anna", "op-anna")
    with pytest.raises(alarms.AlarmStateError):
        await wf.acknowledge(a.id, "op-anna")
    a = await wf.take_over(a.id, "op-bo", a.claim_rev)
    a = await wf.resolve(a.id, "op-bo", "other", "false alarm, key holder")
    assert (a.state, a.resolved_by, a.note, a.disposition) == (
        "resolved", "op-bo", "false alarm, key holder", "other")
    with pytest.raises(alarms.AlarmStateError):
        await wf.resolve(a.id, "op-bo", "other", "again")
    audit = await store.alarm_audit(a.id)
    assert all(isinstance(x, AuditEntry) for x in audit)
    assert [(x.from_state, x.to_state, x.actor, x.action) for x in audit] == [
        (None, "pending", "receiver", None), ("pending", "pending", "op-anna", "claim"),
        ("pending", "acknowledged", "op-anna", None),
        ("acknowledged", "acknowledged", "op-bo", "take_over"),
        ("acknowledged", "resolved", "op-bo", "resolve")]
    assert audit[0].note == 'routed to {"police_station": "ps-1"}'
    with pytest.raises(NotFound):
        await wf.resolve(999, "op", "other", "x")


async def test_a_restore_stamps_only_open_alarms_raised_before_it(store):
    """receiver.ingest: same account, code, partition and zone; not
    resolved, not yet restored; raised before the restore (by arrival, and
    by time), whether the alarm is in the store or earlier in the batch."""
    t = 1000.0
    early = await store.ingest(alarm_rec(1, t))
    later = await store.ingest(alarm_rec(2, t + 50))  # raised after the restore's time
    other_zone = await store.ingest(alarm_rec(3, t, zone=5))
    await store.ingest(alarm_rec(4, t + 10, qualifier=3))
    assert (await store.get_alarm(early.alarm_id)).restored_at == t + 10
    assert (await store.get_alarm(later.alarm_id)).restored_at is None
    assert (await store.get_alarm(other_zone.alarm_id)).restored_at is None
    # a second restore does not move the first one's stamp
    await store.ingest(alarm_rec(5, t + 20, qualifier=3))
    assert (await store.get_alarm(early.alarm_id)).restored_at == t + 10
    # in one message: the alarm before the restore is stamped, the one after is not
    outs = await store.ingest_many([alarm_rec(6, t + 100, zone=7),
                                    alarm_rec(7, t + 100, zone=7, qualifier=3),
                                    alarm_rec(8, t + 100, zone=7)])
    got = [(await store.get_alarm(o.alarm_id)).restored_at for o in (outs[0], outs[2])]
    assert got == [t + 100, None] and outs[1].alarm_id is None
    # a resolved alarm is history: not stamped
    a = await store.ingest(alarm_rec(9, t + 200, zone=8))
    await Workflow(store).resolve(a.alarm_id, "op", "other", "done")
    await store.ingest(alarm_rec(10, t + 202, zone=8, qualifier=3))
    assert (await store.get_alarm(a.alarm_id)).restored_at is None


async def test_outbox_delivery_bookkeeping(store):
    for i in range(3):
        await store.ingest(rec(seq=i + 1, code=130, event_class="burglary", open_alarm=True,
                               outbox=[("a", {"n": i}), ("b", {"n": i})]))
    assert await store.outbox_depth() == {"a": 3, "b": 3}
    rows = await store.outbox_pending("a")
    assert [r.payload["n"] for r in rows] == [0, 1, 2]
    await store.outbox_result(rows[0].id, False, "refused", 1.0)
    await store.outbox_result(rows[0].id, True, None, 2.0)
    assert await store.outbox_depth() == {"a": 2, "b": 3}
    [first] = [r for r in await store.list_outbox("a") if r.id == rows[0].id]
    assert first.attempts == 2 and first.delivered_at == 2.0
    assert first.last_error is None and first.payload["n"] == 0


async def test_accounts_round_trip_and_revision(store):
    rev = await store.accounts_revision()
    a = Account("4294967295", os.urandom(32), panel_kind="bank", site_name="Vault 9",
                zones={"1": "vault door"}, partitions={"1": "vault"}, heartbeat_s=60,
                grace_s=30, supervised_paths=[1, 2], contacts=[{"name": "K", "phone": "1"}])
    await store.add_account(a)
    got = await store.get_account("4294967295")
    assert got.key == a.key and got.zones == {"1": "vault door"}
    assert got.supervised_paths == [1, 2] and got.contacts == a.contacts
    assert got.supervised is True
    rev2 = await store.accounts_revision()
    assert rev2 > rev
    await store.save_replay_state([("4294967295", 5, 5)])
    assert await store.accounts_revision() == rev2  # replay state does not reload keys
    await store.update_account("4294967295", site_name="Vault 10", heartbeat_s=30)
    assert await store.accounts_revision() > rev2
    assert (await store.get_account("4294967295")).site_name == "Vault 10"
    for bad in [Account("4294967296", os.urandom(32)), Account("0012", os.urandom(32)),
                Account("12", b"short"), Account("x", os.urandom(32), protocol="sia")]:
        with pytest.raises(ValueError):
            await store.add_account(bad)
    await store.add_account(Account("ABC123", os.urandom(32), protocol="dc09"))
    await store.delete_account("ABC123")
    assert await store.get_account("ABC123") is None


async def test_ingest_many_commits_all_or_nothing(store):
    # issue 15: the events of one DC-09 message go in one transaction
    burglary = rec(seq=7, protocol="dc09", dedupe_key="dc09:0007:ab:1", code=130, open_alarm=True,
                   event_class="burglary", user=None, ext={"X": "4.8952", "Y": "52.3702"})
    fire = rec(seq=7, protocol="dc09", dedupe_key="dc09:0007:ab:1/2", code=110, open_alarm=True,
               event_class="fire", user=12, ext={"ti": "20:50"})
    outs = await store.ingest_many([burglary, fire])
    assert [o.duplicate for o in outs] == [False, False]
    assert all(o.alarm_id is not None for o in outs)
    # a copy of the whole message: every event a duplicate, nothing new
    again = await store.ingest_many([burglary, fire])
    assert [(o.duplicate, o.event_id) for o in again] == [(True, o.event_id) for o in outs]
    # one bad record sinks its whole message, not its neighbours in the batch
    bad = rec(seq=8, protocol="dc09", dedupe_key="dc09:0008:cd:1/2", code=None)
    good = rec(seq=8, protocol="dc09", dedupe_key="dc09:0008:cd:1", code=602)
    neighbour = store.ingest(rec(seq=99))
    with pytest.raises(Exception):
        await store.ingest_many([good, bad])
    await neighbour
    rows = await store.list_events()
    assert all(isinstance(r, Event) for r in rows)
    assert [r.dedupe_key for r in rows] == ["dc09:0007:ab:1", "dc09:0007:ab:1/2", "native:99"]
    assert rows[0].ext == {"X": "4.8952", "Y": "52.3702"}
    assert rows[0].location == {"lat": 52.3702, "lon": 4.8952}
    assert (rows[1].user, rows[1].ext, rows[1].location) == (12, {"ti": "20:50"}, None)
    assert len(await store.list_alarms()) == 2


async def test_a_copy_within_one_message_is_its_duplicate(store):
    """Two copies of one key in one ingest_many: the first is stored (and
    opens its alarm), the second is its duplicate, as a later copy would be."""
    r = rec(seq=3, code=130, event_class="burglary", open_alarm=True,
            outbox=[("cad", {"n": 1})])
    outs = await store.ingest_many([r, r])
    assert (outs[0].duplicate, outs[1].duplicate) == (False, True)
    assert outs[0].event_id == outs[1].event_id and outs[1].alarm_id is None
    assert len(await store.list_alarms()) == 1 and len(await store.outbox_pending("cad")) == 1


async def test_stored_event_is_what_the_record_says(store):
    """records.EventRecord.stored() and a read back give the same Event,
    with one JSON shape (the CLI's and the console's)."""
    r = rec(seq=5, code=121, zone=7, text="teller 2", value=None, event_time=1_700_000_000.0,
            path=2, peer="tcp:10.0.0.1:4000", event_class="holdup", priority=1,
            description="Duress, user 7", user=7)
    out = await store.ingest(r)
    [e] = await store.list_events()
    assert e == r.stored(out.event_id)
    j = e.to_json()
    assert j["number_kind"] == "user" and j["location"] is None and j["id"] == out.event_id
    assert {"id", "account", "protocol", "source", "dedupe_key", "seq", "qualifier", "code",
            "event_class", "priority", "description", "partition", "zone", "text", "value",
            "event_time", "received_at", "path", "peer", "user", "ext", "location",
            "position", "number_kind", "test_placement", "attached_to"} == set(j)


async def test_open_alarms_are_counted_by_the_database(store):
    # /metrics counts open alarms with one COUNT per state (issue 13: a
    # scrape loaded up to 100,000 alarm rows per state to count them).
    ids = []
    for i in range(5):
        out = await store.ingest(rec(seq=100 + i, code=130, event_class="burglary",
                                     open_alarm=True))
        ids.append(out.alarm_id)
    await Workflow(store).acknowledge(ids[0], "op")
    await Workflow(store).resolve(ids[1], "op", "other", "done")
    assert await store.count_alarms((alarms.PENDING, alarms.ACKNOWLEDGED)) == {
        "pending": 3, "acknowledged": 1}
    assert await store.count_alarms((alarms.RESOLVED,)) == {"resolved": 1}


async def test_security_events_are_pruned_by_age_and_count_oldest_first(store):
    # What an unauthenticated peer makes the receiver store is bounded
    # (issue 14): rows older than the cut-off go, then all but the newest
    # `keep`, at most `batch` per call.
    for i in range(30):
        await store.record_security_event(1000.0 + i, "1", i, "bad_mac", "bad MAC",
                                          "tcp:10.0.0.1:1", "tcp")
    assert await store.prune_security_events(1005.0, 1000, 1000) == 5  # by age
    rows = await store.list_security_events()
    assert all(isinstance(r, SecurityEvent) for r in rows)
    assert [r.seq for r in rows] == list(range(5, 30))
    assert rows[0].to_json() == {"id": rows[0].id, "at": 1005.0, "account": "1", "seq": 5,
                                 "reason": "bad_mac", "detail": "bad MAC",
                                 "peer": "tcp:10.0.0.1:1", "transport": "tcp"}
    assert await store.prune_security_events(0.0, 10, 4) == 4  # by count, one batch
    assert await store.prune_security_events(0.0, 10, 1000) == 11
    rows = await store.list_security_events()
    assert [r.seq for r in rows] == list(range(20, 30))  # the newest kept
    assert await store.prune_security_events(0.0, 10, 1000) == 0


async def supervision_history(store) -> None:
    """Account 1: path 1 failed (10), restored (20), failed again (30); path
    2 failed (40)."""
    for seq, (zone, q, at) in enumerate([(1, 1, 10.0), (1, 3, 20.0), (1, 1, 30.0),
                                         (2, 1, 40.0)], start=1):
        await store.ingest(rec(seq=seq, source="supervision", code=350, zone=zone, qualifier=q,
                               received_at=at, dedupe_key="supervision:%d" % seq))


async def test_supervision_failed_is_the_latest_supervision_event(store):
    await supervision_history(store)
    assert await store.supervision_failed() == [("1", 1), ("1", 2)]
    await store.ingest(rec(seq=10, source="supervision", code=350, zone=2, qualifier=3,
                           received_at=50.0, dedupe_key="supervision:10"))
    assert await store.supervision_failed() == [("1", 1)]


async def test_an_account_s_latest_periodic_test_is_kept_as_events_arrive(store):
    """The periodic-test rule's reading (receiver.rules_loop): the latest
    602/608 report per account, whatever order the batches bring them in."""
    await store.add_account(Account("2", os.urandom(32)))
    assert await store.last_test_reports(["1", "2"]) == {}
    await store.ingest_many([rec(seq=1, code=602, received_at=50.0),
                             rec(seq=2, code=608, received_at=70.0)])
    await store.ingest(rec(seq=3, code=602, received_at=60.0))  # older, later: moves nothing
    await store.ingest(rec(seq=4, code=602, qualifier=3, received_at=90.0))  # not a report
    await store.ingest(rec(seq=5, code=130, received_at=95.0))
    await store.ingest(rec(seq=2, code=608, received_at=99.0))  # a resend: a duplicate
    assert await store.last_test_reports(["1", "2"]) == {"1": 70.0}
    await store.ingest(rec(account="2", seq=1, code=602, received_at=80.0))
    assert await store.last_test_reports(["1", "2", "9"]) == {"1": 70.0, "2": 80.0}


async def test_a_sqlite_store_migrates_to_version_6_and_keeps_its_answers(tmp_path, monkeypatch):
    """Version 6 indexes only the receiver's supervision events (a panel's
    event no longer writes a page of events_supervision); a version 5 store
    keeps its answers."""
    from receiver import sqlite_store
    path = os.path.join(str(tmp_path), "v5.db")
    monkeypatch.setattr(sqlite_store, "SCHEMA_VERSION", 5)
    s = sqlite_store.SQLiteStore(path)
    await s.open()
    await s.add_account(Account("1", os.urandom(32)))
    await s.close()
    monkeypatch.undo()
    with sqlite3.connect(path) as c:  # as a version 5 receiver wrote them
        for seq, source, code, zone, q, at in [
                (1, "supervision", 350, 1, 1, 10.0), (2, "supervision", 350, 1, 3, 20.0),
                (3, "supervision", 350, 1, 1, 30.0), (4, "supervision", 350, 2, 1, 40.0),
                (9, "panel", 602, 0, 1, 45.0), (11, "panel", 602, 0, 1, 44.0),
                (12, "panel", 602, 0, 3, 46.0)]:
            c.execute("""INSERT INTO events (account, protocol, source, dedupe_key, seq,
                             qualifier, code, event_class, priority, description, partition,
                             zone, received_at, path, peer)
                         VALUES ('1', 'native', ?, ?, ?, ?, ?, 'test', 5, '', 1, ?, ?, 1, '')""",
                      (source, "%s:%d" % (source, seq), seq, q, code, zone, at))
    s = sqlite_store.SQLiteStore(path)
    await s.open()
    try:
        assert await s.schema_version() == 6
        assert await s.supervision_failed() == [("1", 1), ("1", 2)]
        # the latest periodic test, now kept on the account, from the events before
        assert await s.last_test_reports(["1", "2"]) == {"1": 45.0}
        await s.ingest(rec(seq=13, code=602, received_at=60.0))
        assert await s.last_test_reports(["1"]) == {"1": 60.0}
    finally:
        await s.close()
    with sqlite3.connect(path) as c:
        [sql] = c.execute("SELECT sql FROM sqlite_master WHERE name = 'events_supervision'"
                          ).fetchone()
        assert sql.endswith("WHERE source = 'supervision'")
        assert c.execute("SELECT COUNT(*) FROM events INDEXED BY events_supervision "
                         "WHERE source = 'supervision'").fetchone()[0] == 4
        assert c.execute("SELECT name FROM sqlite_master WHERE name = 'events_test_reports'"
                         ).fetchone() is None


# -- the event feed ---------------------------------------------------------------------------


async def test_event_feed_pages_by_id_per_account_or_all(store):
    """Store.events_after: what the walk test, HIL and benchmarks read
    instead of the events table."""
    assert await store.last_event() is None
    assert await store.events_after(None, 0) == []
    await store.add_account(Account("2", os.urandom(32)))
    for i in range(1, 8):
        await store.ingest(rec(account="1" if i % 2 else "2", seq=i))
    every = await store.events_after(None, 0)
    assert [e.seq for e in every] == [1, 2, 3, 4, 5, 6, 7]
    ids = [e.id for e in every]
    assert ids == sorted(ids)
    page = await store.events_after(None, 0, limit=3)
    assert [e.seq for e in page] == [1, 2, 3]
    assert [e.seq for e in await store.events_after(None, page[-1].id, limit=3)] == [4, 5, 6]
    mine = await store.events_after("1", 0)
    assert [e.seq for e in mine] == [1, 3, 5, 7]
    assert [e.seq for e in await store.events_after("1", mine[1].id)] == [5, 7]
    assert (await store.last_event()).seq == 7 and (await store.last_event("2")).seq == 6
    assert await store.last_event("9") is None
    # what comes after the head is what is stored next
    head = (await store.last_event()).id
    assert await store.events_after(None, head) == []
    out = await store.ingest(rec(account="2", seq=8))
    [new] = await store.events_after(None, head)
    assert (new.id, new.seq) == (out.event_id, 8)
    for bad in (dict(after_id=-1), dict(after_id=0, limit=0), dict(after_id=0, limit=10 ** 6),
                dict(after_id="3")):
        with pytest.raises(ValueError):
            await store.events_after(None, **bad)


@pytest.mark.parametrize("n", [0, 1, 3, 4, 17, 100, 256, 341, 600])
def test_sqlite_writes_many_rows_in_few_statements_in_order(n):
    """receiver.sqlite_store._rows: a group commit's rows in the fewest
    statements (each statement step is a GIL hand-over), inserted in the
    order given (the ingest reads the new ids back in that order), and an
    UPDATE ... FROM (VALUES) touching each row once."""
    from receiver import sqlite_store
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v INTEGER)")
    statements = []
    conn.set_trace_callback(statements.append)
    rows = [("k%d" % i, i) for i in range(n)]
    sqlite_store._rows(conn, ("INSERT OR IGNORE INTO t (k, v) VALUES", "(?, ?)"),
                       rows + rows[:2])  # two copies ignored
    statements = [s for s in statements if s.startswith("INSERT")]  # not sqlite3's BEGIN
    assert conn.execute("SELECT k, v FROM t ORDER BY id").fetchall() == rows
    want = 0
    left = n + min(n, 2)
    for c in sqlite_store._CHUNKS:
        want += left // c
        left %= c
    assert len(statements) == want
    sqlite_store._rows(conn, ("UPDATE t SET v = v + v2.column2 FROM (VALUES %s) AS v2 "
                              "WHERE t.k = v2.column1", "(?, ?)"), [(k, 1000) for k, _ in rows])
    assert conn.execute("SELECT k, v FROM t ORDER BY id").fetchall() == [
        (k, v + 1000) for k, v in rows]


@pytest.mark.parametrize("error, words", [
    (ConnectionRefusedError(111, "Connection refused"),
     "the database server refused the connection (is it running, and listening there?)"),
    (socket.gaierror(-2, "Name or service not known"),
     "the database server's name does not resolve (Name or service not known)"),
    (asyncio.TimeoutError(), "the database server did not answer in time"),
    (ConnectionResetError(104, "Connection reset by peer"),
     "the connection to the database server was lost (connection reset by peer)"),
    (OSError(28, "No space left on device"), "no space left on device"),
    (sqlite3.OperationalError("database is locked"), "database is locked"),
    (sqlite3.OperationalError(""), "the database failed without saying why"),
])
def test_a_store_failure_is_said_in_words_never_a_class_name(error, words):
    """What an operator reads when the database fails (the CLI's "cannot
    open store ...", the receiver's log): receiver.store.failure_words,
    which both backends' StoreUnavailable say."""
    from receiver.sqlite_store import _wrap
    from receiver.store import failure_words
    assert failure_words(error) == words
    if isinstance(error, sqlite3.DatabaseError):
        assert str(_wrap(error)) == words
