"""What abusing the console's HTTP side costs the event path (issue 14),
against the receiver as it runs: a subprocess through the CLI (SQLite,
WAL synchronous=FULL, ACK after commit), metrics and console on their own
listeners.

Phases, each ``--seconds`` long, while one lockstep panel (testkit.session_panel,
native protocol over TCP) sends events and the ACK latency is measured:

- ``baseline``: nothing else;
- ``scrapers``: 16 clients scraping /metrics back to back, with
  ``--alarms`` open alarms in the store (the review saw a 63 ms scrape at
  5,399 open alarms and ACK p95 go from 3.2 to 14.8 ms);
- ``login_flood``: one address sending wrong logins as fast as it can
  (the review saw 709 requests/s add 21,337 audit rows, 3.8 MB and 21,500
  log lines in 30 s and ACK p95 triple).

The load generators run in a child process, so they do not share this
process's event loop with the panel whose ACKs are timed.  Also measured in
process: what counting the open alarms costs (COUNT in SQL vs reading the
rows, as each scrape did before).

    .venv/bin/python bench/bench_console_abuse.py [--seconds 10] [--alarms 5399]

Writes bench/results/console_abuse.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402

from receiver import alarms as _alarms  # noqa: E402
from receiver.sqlite_store import SQLiteStore  # noqa: E402
from receiver.store import Account, EventRecord  # noqa: E402
from receiver.web.users import SQLiteUserStore  # noqa: E402
from testkit.receiver import ReceiverProcess  # noqa: E402
from testkit.session_panel import SessionPanel, event_msg  # noqa: E402

KEY = bytes(range(32))
ACCOUNT = 7001
SCRAPERS = 16


async def _seed(db: str, alarms: int) -> None:
    s = SQLiteStore(db)
    await s.open()
    try:
        await s.add_account(Account(str(ACCOUNT), KEY))
        await s.add_account(Account("7002", os.urandom(32)))
        now = time.time()
        for i in range(0, alarms, 1000):
            await asyncio.gather(*(s.ingest(EventRecord(
                account="7002", protocol="native", dedupe_key="seed:%d" % j, qualifier=1,
                code=130, partition=1, zone=1, received_at=now, seq=j, event_class="burglary",
                priority=4, description="Burglary", open_alarm=True))
                for j in range(i, min(alarms, i + 1000))))
    finally:
        await s.close()
    us = SQLiteUserStore(db)
    await us.open()
    await us.add("olga", "operator", "olga-operator-pw")


async def _count_cost(db: str, rounds: int = 10) -> dict:
    s = SQLiteStore(db)
    await s.open()
    try:
        states = (_alarms.PENDING, _alarms.ACKNOWLEDGED)
        rows, count = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for st in states:
                len(await s.list_alarms(st, limit=100_000))
            rows.append((time.perf_counter() - t0) * 1000)
            if hasattr(s, "count_alarms"):  # (absent before issue 14's fix)
                t0 = time.perf_counter()
                await s.count_alarms(states)
                count.append((time.perf_counter() - t0) * 1000)
        return {"read_rows_ms": statistics.median(rows),
                "count_sql_ms": statistics.median(count) if count else None}
    finally:
        await s.close()


def _load(kind: str, base: str, seconds: float, out) -> None:
    """Child process: scrape or flood for ``seconds``; puts stats on ``out``."""
    import aiohttp

    async def scraper(s, stats, end):
        while time.monotonic() < end:
            t0 = time.perf_counter()
            async with s.get(base + "/metrics") as r:
                await r.read()
            stats["requests"] += 1
            stats["ms"].append((time.perf_counter() - t0) * 1000)

    async def flood(s, stats, end):
        while time.monotonic() < end:
            async with s.post(base + "/api/login", json={"name": "olga",
                                                         "password": "wrong-guess"}) as r:
                await r.read()
                stats["status"][r.status] = stats["status"].get(r.status, 0) + 1
            stats["requests"] += 1

    async def main():
        stats = {"requests": 0, "ms": [], "status": {}}
        end = time.monotonic() + seconds
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:
            n = SCRAPERS if kind == "scrapers" else 8
            job = scraper if kind == "scrapers" else flood
            await asyncio.gather(*(job(s, stats, end) for _ in range(n)))
        ms = sorted(stats.pop("ms"))
        stats["per_s"] = stats["requests"] / seconds
        if ms:
            stats["scrape_ms_p50"] = benchlib.pct(ms, 50)
            stats["scrape_ms_p95"] = benchlib.pct(ms, 95)
        out.put(stats)

    asyncio.run(main())


async def _acks(host: str, port: int, seconds: float, seq0: int) -> tuple[dict, int]:
    p = SessionPanel(ACCOUNT, KEY, host, port)
    await p.connect()
    lat = []
    seq = seq0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            seq += 1
            t0 = time.perf_counter()
            await p.deliver(seq, event_msg(602, 1, 0, 0))  # periodic test: no alarm
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        await p.close()
    lat.sort()
    return {"events": len(lat), "ack_ms_p50": benchlib.pct(lat, 50),
            "ack_ms_p95": benchlib.pct(lat, 95)}, seq


def _audit_rows(db: str) -> tuple[int, int]:
    c = sqlite3.connect(db)
    try:
        n = c.execute("SELECT COUNT(*) FROM console_audit").fetchone()[0]
        size = c.execute("SELECT COALESCE(SUM(LENGTH(detail) + LENGTH(actor) + LENGTH(ip) "
                         "+ 40), 0) FROM console_audit").fetchone()[0]
        return n, size
    finally:
        c.close()


def _lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--alarms", type=int, default=5399)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "console_abuse.json"))
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="gl-console-abuse-")
    db = os.path.join(d, "rx.db")
    log = os.path.join(d, "receiver.log")
    asyncio.run(_seed(db, args.alarms))
    counting = asyncio.run(_count_cost(db))
    proc = ReceiverProcess(db, ["--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
                                "--web", "127.0.0.1:0"], log_path=log)
    ready = proc.start()
    phases = {}
    try:
        host, port = ready["tcp"][0]
        metrics = "http://%s:%d" % tuple(ready["metrics"])
        web = "http://%s:%d" % tuple(ready["web"])
        seq = 0
        for name, kind, base in (("baseline", None, None), ("scrapers", "scrapers", metrics),
                                 ("login_flood", "flood", web)):
            rows0, bytes0 = _audit_rows(db)
            lines0 = _lines(log)
            child = out = None
            if kind:
                out = multiprocessing.Queue()
                child = multiprocessing.Process(target=_load,
                                                args=(kind, base, args.seconds, out))
                child.start()
            acks, seq = asyncio.run(_acks(host, port, args.seconds, seq))
            phase = dict(acks)
            if child is not None and out is not None:
                phase["load"] = out.get(timeout=60)
                child.join(30)
            rows1, bytes1 = _audit_rows(db)
            phase.update(audit_rows_added=rows1 - rows0, audit_bytes_added=bytes1 - bytes0,
                         log_lines_added=_lines(log) - lines0)
            phases[name] = phase
            print("%-12s ACK p50 %.1f ms p95 %.1f ms (%d events)  %s  audit rows +%d  "
                  "log lines +%d" % (name, phase["ack_ms_p50"], phase["ack_ms_p95"],
                                     phase["events"], phase.get("load", ""),
                                     phase["audit_rows_added"], phase["log_lines_added"]))
    finally:
        proc.terminate()
        proc.close()
    print("counting %d open alarms: read rows %.1f ms, COUNT in SQL %s ms" % (
        args.alarms, counting["read_rows_ms"], counting["count_sql_ms"]))
    doc = {"bench": "console_abuse", "at": benchlib.now_iso(), "machine": benchlib.machine(),
           "seconds": args.seconds, "open_alarms": args.alarms, "counting": counting,
           "phases": phases}
    print("wrote", benchlib.write_json(args.out, doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
