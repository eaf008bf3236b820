"""Receiver benchmark: the real receiver as a subprocess (CLI ``serve`` with
its SQLite store, WAL + synchronous=FULL) against bench/loadgen.py worker
processes on loopback.  Prints events/s and ACK latency p50/p99/max and
writes bench/results/receiver.json.

    .venv/bin/python bench/bench_receiver.py --connections 200 --events 50 --procs 2

Every ACKed event is checked to be in the store exactly once afterwards,
so a fast but lossy run cannot report a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import loadgen  # noqa: E402

from receiver.sqlite_store import SQLiteStore  # noqa: E402
from receiver.testing import ReceiverProcess, free_port, make_accounts  # noqa: E402


async def _create(db, accounts):
    s = SQLiteStore(db)
    await s.open()
    for a in accounts.values():
        await s.add_account(a)
    await s.close()


def _scrape(addr) -> dict:
    text = urllib.request.urlopen("http://%s:%d/metrics" % tuple(addr), timeout=10) \
        .read().decode()
    out = {}
    for line in text.splitlines():
        for name in ("guardline_receiver_store_commit_batch_size_count",
                     "guardline_receiver_store_commit_batch_size_sum",
                     "guardline_receiver_store_commit_seconds_sum"):
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--db", help="database path (default: a temporary directory)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "receiver.json"))
    a = ap.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="glrx-bench-")
    db = a.db or os.path.join(tmp, "bench.db")
    accounts = make_accounts(a.connections, first=100_000)
    asyncio.run(_create(db, accounts))
    mport = free_port()
    proc = ReceiverProcess(db, ["--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:%d" % mport,
                                "--log-level", "warning"],
                           log_path=os.path.join(tmp, "receiver.log"))
    proc.start()
    try:
        host, port = proc.tcp
        res = loadgen.run(host, port, [(int(n), acc.key.hex()) for n, acc in
                                       ((x.number, x) for x in accounts.values())],
                          a.events, a.procs)
        commits = _scrape(proc.ready["metrics"])
        rc = proc.terminate()
    finally:
        proc.close()
    c = sqlite3.connect(db)
    stored, distinct = c.execute(
        "SELECT COUNT(*), COUNT(DISTINCT account || ':' || seq) FROM events").fetchone()
    c.close()
    total = a.connections * a.events
    n_commits = commits.get("guardline_receiver_store_commit_batch_size_count") or 0
    res.update({
        "benchmark": "receiver end-to-end (TCP, native protocol, SQLite WAL synchronous=FULL)",
        "command": "python bench/bench_receiver.py --connections %d --events %d --procs %d"
                   % (a.connections, a.events, a.procs),
        "expected_events": total, "stored_events": stored, "stored_distinct": distinct,
        "store_ok": stored == distinct == res["acked"] == total,
        "group_commits": int(n_commits),
        "mean_events_per_commit": round(
            commits["guardline_receiver_store_commit_batch_size_sum"] / n_commits, 1)
        if n_commits else None,
        "receiver_exit_code": rc,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version, "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    lat = res["ack_latency_ms"]
    print("%d connections x %d events: %d ACKed in %.2f s = %.0f events/s; ACK latency "
          "p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d NAKs; %s events per commit; store %s"
          % (a.connections, a.events, res["acked"], res["wall_s"], res["events_per_s"] or 0,
             lat["p50"] or 0, lat["p99"] or 0, lat["max"] or 0, res["naks"],
             res["mean_events_per_commit"], "OK" if res["store_ok"] else "MISMATCH"))
    print("wrote %s" % a.out)
    return 0 if res["store_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
