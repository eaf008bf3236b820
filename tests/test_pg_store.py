"""What only the PostgreSQL store has.  The contract both backends keep is
tests/test_store_contract.py; here: the backend picked by the URL, the
shared tables, two stores (two receivers) ingesting the same events at
once, set-based batches that fall back to one savepoint per request, a
server that goes away, hearings committed with events."""

import asyncio
import os

import pytest

from receiver.store import Account, StoreUnavailable, is_url, mask_url
from receiver.store_factory import make_store

from tests.pg_fixture import pg_server, pg_url  # noqa: F401
from tests.test_store_contract import rec, supervision_history

asyncpg = pytest.importorskip("asyncpg")

from receiver.pg_store import PGStore  # noqa: E402


@pytest.fixture
async def store(pg_url):
    s = PGStore(pg_url)
    await s.open()
    await s.add_account(Account("1", os.urandom(32), region="north"))
    yield s
    await s.close()


def test_make_store_picks_the_backend_from_the_url(tmp_path):
    from receiver.sqlite_store import SQLiteStore

    assert isinstance(make_store("postgresql://u@h/db"), PGStore)
    assert isinstance(make_store("postgres://u@h/db"), PGStore)
    assert isinstance(make_store(str(tmp_path / "rx.db")), SQLiteStore)
    assert is_url("postgresql://x") and not is_url("var/postgresql.db")
    assert mask_url("postgresql://gl:s3cret@db:5432/x") == "postgresql://gl:***@db:5432/x"
    assert "s3cret" not in make_store("postgresql://gl:s3cret@db/x").path


async def test_schema_holds_what_several_receivers_share(store, pg_url):
    c = await asyncpg.connect(pg_url)
    try:
        assert await c.fetchval("SELECT COUNT(*) FROM supervision_leases") == store.shards
    finally:
        await c.close()


async def test_two_receivers_store_a_retransmitted_event_once(store, pg_url):
    """Two stores (two receivers) on one database, each taking the same 200
    events at the same time, as after a failover: every event is stored
    once and both sides are told the same id."""
    other = PGStore(pg_url)
    await other.open()
    try:
        n = 200
        got = await asyncio.gather(*(s.ingest(rec(seq=i, received_at=1000.0 + i))
                                     for i in range(1, n + 1) for s in (store, other)))
        assert await store.count_events() == n
        by_seq: dict = {}
        for i, o in enumerate(got):
            by_seq.setdefault(i // 2 + 1, []).append(o)
        for seq, (a, b) in by_seq.items():
            assert a.event_id == b.event_id
            assert sorted([a.duplicate, b.duplicate]) == [False, True], seq
        acct = await other.get_account("1")
        assert acct.highest_seq == n
    finally:
        await other.close()


async def test_a_bad_request_does_not_sink_its_batch(store):
    """A set-based batch that fails on one row is redone one request per
    savepoint: the bad one fails alone (a value out of range for its
    column; the contract's test_failing_request_does_not_sink_its_batch
    has a bad job between ingests)."""
    futs = [store.ingest(rec(seq=i)) for i in range(1, 20)]
    bad = store.ingest(rec(seq=20, code=2 ** 40))  # does not fit an INTEGER column
    futs += [store.ingest(rec(seq=i)) for i in range(21, 40)]

    async def bad_job(conn):
        await conn.execute("INSERT INTO accounts (number) VALUES ('x')")  # NOT NULL violated
    bad_fn = store.run_write(bad_job)
    outs = await asyncio.gather(*futs)
    with pytest.raises(asyncpg.DataError):
        await bad
    with pytest.raises(asyncpg.NotNullViolationError):
        await bad_fn
    assert len(outs) == 38 and not any(o.duplicate for o in outs)
    assert await store.count_events() == 38
    assert store.healthy


async def test_lost_connection_is_survived_by_reconnecting(store, pg_server):
    """The server drops the writer's connection (a restart, a failover, an
    administrator): the next batch runs on a new connection; one that was
    in flight would fail with StoreUnavailable (NAK busy), never hang."""
    await store.ingest(rec(seq=1))
    before = await store.run_maintenance(lambda c: c.fetchval("SELECT pg_backend_pid()"))
    admin = await asyncpg.connect(pg_server)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", before)
    finally:
        await admin.close()
    for attempt in range(2):
        try:
            out = await store.ingest(rec(seq=2))
            break
        except StoreUnavailable:
            assert attempt == 0  # at most the request caught by the drop fails
    assert not out.duplicate and store.healthy
    after = await store.run_maintenance(lambda c: c.fetchval("SELECT pg_backend_pid()"))
    assert after != before
    assert await store.count_events() == 2


async def test_events_and_supervision_hearings_share_the_commit(store):
    """A panel event also records its path as heard (receiver.ownership
    reads line_heard); hearings only ever move forward."""
    store.instance = "rx-a"
    await store.ingest(rec(seq=1, path=2, received_at=500.0))
    await store.record_heard([("1", 2, 400.0), ("1", 1, 450.0)])
    await store.ingest(rec(seq=2, path=2, received_at=600.0, source="supervision",
                           dedupe_key="supervision:x"))
    rows = await store.run_read(lambda c: c.fetch(
        "SELECT account, path, last_heard, heard_by FROM line_heard ORDER BY path"))
    assert [tuple(r) for r in rows] == [("1", 1, 450.0, "rx-a"), ("1", 2, 500.0, "rx-a")]


async def test_supervision_failures_report_when_raised(store):
    await supervision_history(store)
    assert await store.supervision_failed() == [("1", 1), ("1", 2)]
    assert await store.supervision_failures() == {("1", 1): 30.0, ("1", 2): 40.0}
    assert await store.supervision_failures(["1"]) == {("1", 1): 30.0, ("1", 2): 40.0}
    assert await store.supervision_failures(["2"]) == {}


async def test_unreachable_server_is_a_clear_error():
    s = PGStore("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable):
        await s.open()


def test_config_selects_postgresql_by_url(tmp_path):
    from receiver import config as cfgmod

    p = tmp_path / "rx.toml"
    p.write_text('[store]\nurl = "postgresql://gl@db:5432/guardline"\n'
                 '[cluster]\ninstance = "rx-a"\n')
    c = cfgmod.load(str(p))
    assert c.db == "postgresql://gl@db:5432/guardline" and c.cluster_instance == "rx-a"
    for bad in ('[store]\nurl = "mysql://x"\n',
                '[store]\npath = "a.db"\nurl = "postgresql://x/y"\n',
                '[cluster]\ninstance = ""\n', '[cluster]\nshards = 3\n'):
        p.write_text(bad)
        with pytest.raises(cfgmod.ConfigError):
            cfgmod.load(str(p))
