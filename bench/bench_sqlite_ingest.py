"""The SQLite store's event insert on its own, side by side in one run:
the group commit's events written by one ``executemany`` (a statement
step, and so a GIL hand-over, per row) against many rows per statement
(``receiver.sqlite_store._rows``, what the store does since issue 20's
round 3), each alone and with a busy Python thread beside it (the event
loop under load), on the receiver's real schema, ``synchronous=FULL``;
and, first, executemany alone on schema version 5 (before round 3's
indexes).

    .venv/bin/python bench/bench_sqlite_ingest.py [--accounts 200] [--batch 100]

Per row: the writer thread's CPU (``time.thread_time``), the wall time,
and the WAL pages a commit wrote (every index keyed by account puts each
event on a page of its own: a commit of a hundred accounts' events
writes hundreds of pages).  No figure is asserted; the receiver's own
benchmark (bench_receiver.py) says what it adds up to.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from receiver import sqlite_store  # noqa: E402
from receiver.records import EVENT_COLUMNS, EventRecord  # noqa: E402

WAL_FRAME = 24 + 4096  # a WAL frame: its header and one page


def events(n: int, accounts: int, seed: int = 1) -> list[tuple]:
    """``n`` events rows as the receiver writes them: 9 in 10 periodic
    tests, 1 in 10 burglaries, from ``accounts`` accounts at random."""
    rnd = random.Random(seed)
    t0 = time.time()
    out = []
    for i in range(n):
        code = 130 if i % 10 == 0 else 602
        rec = EventRecord(
            account=str(100_000 + rnd.randrange(accounts)), protocol="native",
            dedupe_key="native:%d:%s" % (i, hashlib.sha256(b"%d" % i).hexdigest()[:16]),
            seq=i, qualifier=1, code=code, partition=1, zone=3 if code == 130 else 0,
            event_class="burglary" if code == 130 else "test", priority=3 if code == 130 else 10,
            description="Burglary, zone 3" if code == 130 else "Periodic test",
            received_at=t0 + i * 1e-4, event_time=t0, path=1, peer="tcp:127.0.0.1:5000")
        out.append(rec.db_values())
    return out


def empty_store(path: str, version: int | None = None) -> None:
    """An empty store of this tree's schema, or of an older ``version``
    (the migrations up to it: the indexes it had)."""
    latest = sqlite_store.SCHEMA_VERSION
    sqlite_store.SCHEMA_VERSION = version or latest

    async def go():
        s = sqlite_store.SQLiteStore(path)
        await s.open()
        await s.close()
    try:
        asyncio.run(go())
    finally:
        sqlite_store.SCHEMA_VERSION = latest


def one_run(template: str, rows: list, batch: int, multi: bool, busy: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="gl-sqlite-ingest-") as tmp:
        path = os.path.join(tmp, "rx.db")
        with open(template, "rb") as src, open(path, "wb") as dst:
            dst.write(src.read())
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # pages per commit, counted below
        stop = threading.Event()

        def spin():  # the event loop, busy: Python bytecode, never blocking
            x = 0
            while not stop.is_set():
                x += 1
        th = threading.Thread(target=spin, daemon=True)
        if busy:
            th.start()
        single = sqlite_store._INSERT_EVENT
        sql = "%s %s" % single
        cpu = wall = 0.0
        pages = 0
        try:
            for i in range(0, len(rows), batch):
                chunk = rows[i:i + batch]
                before = os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0
                c0, w0 = time.thread_time(), time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                if multi:
                    sqlite_store._rows(conn, single, chunk)
                else:
                    conn.executemany(sql, chunk)
                conn.execute("COMMIT")
                cpu += time.thread_time() - c0
                wall += time.perf_counter() - w0
                pages += (os.path.getsize(path + "-wal") - before) // WAL_FRAME
                if os.path.getsize(path + "-wal") > 64 << 20:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            stop.set()
            if busy:
                th.join()
            conn.close()
    n = len(rows)
    commits = (n + batch - 1) // batch
    return {"writer_cpu_us_per_row": round(cpu / n * 1e6, 1),
            "wall_us_per_row": round(wall / n * 1e6, 1),
            "wal_pages_per_commit": round(pages / commits, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description="The SQLite store's event insert on its own, side by side")
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100, help="events per commit")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "sqlite_ingest.json"))
    a = ap.parse_args()
    rows = events(a.events, a.accounts)
    print("SQLite %s, %d events from %d accounts, %d per commit, synchronous=FULL"
          % (sqlite3.sqlite_version, a.events, a.accounts, a.batch))
    results = []
    with tempfile.TemporaryDirectory(prefix="gl-sqlite-schema-") as tmp:
        template = os.path.join(tmp, "empty.db")
        empty_store(template)
        v5 = os.path.join(tmp, "empty-v5.db")
        empty_store(v5, 5)  # before round 3: an index entry per test report, per event
        runs = [(v5, 5, False, False)] + [
            (template, sqlite_store.SCHEMA_VERSION, multi, busy)
            for busy in (False, True) for multi in (False, True)]
        for db, version, multi, busy in runs:
            r = one_run(db, rows, a.batch, multi, busy)
            r.update(schema=version, busy_thread=busy,
                     statement="rows per statement" if multi else "executemany")
            results.append(r)
            print("schema %d %-19s %-12s writer CPU %6.1f us/row, wall %7.1f us/row, "
                  "%5.1f WAL pages a commit" % (
                      version, r["statement"], "busy thread" if busy else "alone",
                      r["writer_cpu_us_per_row"], r["wall_us_per_row"],
                      r["wal_pages_per_commit"]))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"sqlite": sqlite3.sqlite_version, "events": a.events,
                   "accounts": a.accounts, "batch": a.batch, "results": results}, f, indent=1)
    print("wrote", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
