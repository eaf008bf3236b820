"""The SQLite store on a real file: schema and migrations, group commit,
duplicates, failure and recovery, alarms and their audit, the outbox."""

import asyncio
import os
import sqlite3
import time

import pytest

from receiver import alarms
from receiver.sqlite_store import SCHEMA_VERSION, SQLiteStore
from receiver.store import (Account, EventRecord, SchemaError, Store, StoreUnavailable)


def rec(account="1", seq=1, **kw):
    d = dict(account=account, protocol="native", dedupe_key="native:%d" % seq, qualifier=1,
             code=602, partition=1, zone=0, received_at=time.time(), seq=seq)
    d.update(kw)
    return EventRecord(**d)


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "rx.db"))
    await s.open()
    await s.add_account(Account("1", os.urandom(32), region="north"))
    yield s
    await s.close()


def test_sqlite_store_implements_the_interface():
    assert issubclass(SQLiteStore, Store)
    assert not getattr(SQLiteStore, "__abstractmethods__", None)


async def test_schema_is_created_once_and_wal_full(store, tmp_path):
    assert await store.schema_version() == SCHEMA_VERSION
    await store.close()
    s2 = SQLiteStore(store.path)
    await s2.open()  # reopening applies nothing twice
    assert await s2.schema_version() == SCHEMA_VERSION
    mode = await s2.run_read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    sync = await s2.run_write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    assert mode == "wal" and sync == 2  # 2 = FULL
    await s2.close()
    c = sqlite3.connect(store.path)
    assert c.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    c.close()
    await store.open()  # for the fixture's close


async def test_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "new.db")
    s = SQLiteStore(path)
    await s.open()
    await s.close()
    c = sqlite3.connect(path)
    c.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    c.commit()
    c.close()
    with pytest.raises(SchemaError):
        await SQLiteStore(path).open()


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


async def test_read_only_store_fails_then_recovers(store):
    await store.run_maintenance(lambda c: c.execute("PRAGMA query_only=1"))
    with pytest.raises(StoreUnavailable):
        await store.ingest(rec(seq=1))
    assert not store.healthy
    await store.run_maintenance(lambda c: c.execute("PRAGMA query_only=0"))
    out = await store.ingest(rec(seq=1))
    assert not out.duplicate and store.healthy
    assert await store.count_events() == 1


async def test_full_disk_fails_waiters_then_retries_store_each_event_once(store):
    pages = await store.run_maintenance(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await store.run_maintenance(lambda c: c.execute("PRAGMA max_page_count=%d" % pages))
    big = "x" * 32
    n = 300
    results = await asyncio.gather(*(store.ingest(rec(seq=i, text=big))
                                     for i in range(1, n + 1)), return_exceptions=True)
    failed = [i + 1 for i, r in enumerate(results) if isinstance(r, StoreUnavailable)]
    assert failed, "a full database must refuse some of %d events" % n
    assert all(isinstance(r, StoreUnavailable) or not r.duplicate for r in results)
    assert not store.healthy
    assert await store.count_events() == n - len(failed)  # only what was answered OK
    await store.run_maintenance(lambda c: c.execute("PRAGMA max_page_count=1073741823"))
    # the panels retry everything they were not ACKed for, some twice
    outs = await asyncio.gather(*(store.ingest(rec(seq=i, text=big))
                                  for i in failed + failed[:10]))
    assert sum(not o.duplicate for o in outs) == len(failed)
    assert store.healthy and await store.count_events() == n


async def test_failing_request_does_not_sink_its_batch(store):
    def bad(conn):
        conn.execute("INSERT INTO no_such_table VALUES (1)")
    futs = [store.ingest(rec(seq=i)) for i in range(1, 20)]
    bad_fut = store.run_write(bad)
    futs += [store.ingest(rec(seq=i)) for i in range(20, 40)]
    outs = await asyncio.gather(*futs)
    with pytest.raises(StoreUnavailable):
        await bad_fut
    assert len(outs) == 39 and await store.count_events() == 39


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
    assert a["state"] == "pending" and a["routed_to"] == {"police_station": "ps-1"}
    [row] = await store.outbox_pending("cad")
    assert row["payload"]["alarm_id"] == a["id"] and row["payload"]["event_id"] == out.event_id

    # a restore stamps the open alarm but does not resolve it
    await store.ingest(rec(seq=4, code=130, zone=4, qualifier=3))
    a = await store.get_alarm(a["id"])
    assert a["restored_at"] is not None and a["state"] == "pending"

    a = await store.alarm_transition(a["id"], alarms.ACKNOWLEDGE, "op-anna", None, 100.0)
    assert (a["state"], a["acknowledged_by"]) == ("acknowledged", "op-anna")
    with pytest.raises(alarms.AlarmStateError):
        await store.alarm_transition(a["id"], alarms.ACKNOWLEDGE, "op-anna", None, 101.0)
    a = await store.alarm_transition(a["id"], alarms.RESOLVE, "op-bo", "false alarm, key holder",
                                     102.0)
    assert (a["state"], a["resolved_by"], a["note"]) == ("resolved", "op-bo",
                                                         "false alarm, key holder")
    with pytest.raises(alarms.AlarmStateError):
        await store.alarm_transition(a["id"], alarms.RESOLVE, "op-bo", None, 103.0)
    audit = await store.alarm_audit(a["id"])
    assert [(x["from_state"], x["to_state"], x["actor"]) for x in audit] == [
        (None, "pending", "receiver"), ("pending", "acknowledged", "op-anna"),
        ("acknowledged", "resolved", "op-bo")]
    with pytest.raises(alarms.AlarmStateError):
        await store.alarm_transition(999, alarms.RESOLVE, "op", None, 1.0)


async def test_outbox_delivery_bookkeeping(store):
    for i in range(3):
        await store.ingest(rec(seq=i + 1, code=130, event_class="burglary", open_alarm=True,
                               outbox=[("a", {"n": i}), ("b", {"n": i})]))
    assert await store.outbox_depth() == {"a": 3, "b": 3}
    rows = await store.outbox_pending("a")
    assert [r["payload"]["n"] for r in rows] == [0, 1, 2]
    await store.outbox_result(rows[0]["id"], False, "refused", 1.0)
    await store.outbox_result(rows[0]["id"], True, None, 2.0)
    assert await store.outbox_depth() == {"a": 2, "b": 3}
    [first] = [r for r in await store.list_outbox("a") if r["id"] == rows[0]["id"]]
    assert first["attempts"] == 2 and first["delivered_at"] == 2.0


async def test_accounts_round_trip_and_revision(store):
    rev = await store.accounts_revision()
    a = Account("4294967295", os.urandom(32), panel_kind="bank", site_name="Vault 9",
                zones={"1": "vault door"}, partitions={"1": "vault"}, heartbeat_s=60,
                grace_s=30, supervised_paths=[1, 2], contacts=[{"name": "K", "phone": "1"}])
    await store.add_account(a)
    got = await store.get_account("4294967295")
    assert got.key == a.key and got.zones == {"1": "vault door"}
    assert got.supervised_paths == [1, 2] and got.contacts == a.contacts
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
    assert [r["dedupe_key"] for r in rows] == ["dc09:0007:ab:1", "dc09:0007:ab:1/2", "native:99"]
    assert rows[0]["ext"] == {"X": "4.8952", "Y": "52.3702"}
    assert rows[0]["location"] == {"lat": 52.3702, "lon": 4.8952}
    assert (rows[1]["user"], rows[1]["ext"], rows[1]["location"]) == (12, {"ti": "20:50"}, None)
    assert len(await store.list_alarms()) == 2


async def test_open_alarms_are_counted_by_the_database(store):
    # /metrics counts open alarms with one COUNT per state (issue 13: a
    # scrape loaded up to 100,000 alarm rows per state to count them).
    ids = []
    for i in range(5):
        out = await store.ingest(rec(seq=100 + i, code=130, event_class="burglary",
                                     open_alarm=True))
        ids.append(out.alarm_id)
    await store.alarm_transition(ids[0], alarms.ACKNOWLEDGE, "op", None, 1.0)
    await store.alarm_transition(ids[1], alarms.RESOLVE, "op", "done", 2.0)
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
    assert [r["seq"] for r in rows] == list(range(5, 30))
    assert await store.prune_security_events(0.0, 10, 4) == 4  # by count, one batch
    assert await store.prune_security_events(0.0, 10, 1000) == 11
    rows = await store.list_security_events()
    assert [r["seq"] for r in rows] == list(range(20, 30))  # the newest kept
    assert await store.prune_security_events(0.0, 10, 1000) == 0
