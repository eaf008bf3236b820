"""What only the SQLite store has, on a real file: WAL with synchronous=FULL,
and a full disk.  The contract both backends keep is
tests/test_store_contract.py."""

import asyncio
import os
import time

import pytest

from receiver.records import Account, EventRecord
from receiver.sqlite_store import SQLiteStore
from receiver.store import StoreUnavailable


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


async def test_wal_with_full_sync(store):
    mode = await store.run_read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    sync = await store.run_write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    assert mode == "wal" and sync == 2  # 2 = FULL


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
