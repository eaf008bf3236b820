"""Receiver throughput, SIA DC-09: the real receiver as a subprocess (CLI
``serve --dc09-tcp`` with its SQLite store, WAL + synchronous=FULL, ACK
after commit) against DC-09 panel processes on loopback.

N connections (one DC-09 account each, AES-128 unless --clear) connect
(not timed), then all send E ADM-CID events at once, in lockstep: build
and encrypt the message with the current time, send, wait for the
(*)ACK, check its sequence number (and decrypt it), next.  Reported:
events/s over the load phase, ACK latency (send -> ACK read) p50/p99/max,
NAKs, and events per group commit from the receiver's metrics.

Afterwards every ACKed event is checked to be in the store exactly once;
a run that lost or doubled one exits with status 1 and records nothing.

    .venv/bin/python bench/bench_dc09_receiver.py
    .venv/bin/python bench/bench_dc09_receiver.py --connections 100 --events 50 --repeat 3
    .venv/bin/python bench/bench_dc09_receiver.py --connections 500 --events 20 --clear

Each repeat is a fresh receiver and database; the summary gives the median,
minimum and maximum of the repeats (the machine is shared: one run is an
anecdote).

Writes bench/results/dc09_receiver.json (or --out); docs/dc09.md quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import benchlib  # noqa: E402
from protocol import dc09  # noqa: E402
from receiver.sqlite_store import SQLiteStore  # noqa: E402
from receiver.store import Account  # noqa: E402
from testkit.net import free_port  # noqa: E402
from testkit.receiver import ReceiverProcess  # noqa: E402


def accounts(n: int, clear: bool) -> list[tuple[str, bytes]]:
    return [("B%05X" % i, b"" if clear else os.urandom(16)) for i in range(n)]


async def _create(db: str, accts) -> None:
    store = SQLiteStore(db)
    await store.open()
    try:
        for number, key in accts:
            await store.add_account(Account(number, key, protocol="dc09", supervised=False))
    finally:
        await store.close()


async def _panel(host, port, number, key, events, start_at, lat, naks):
    reader, writer = await asyncio.open_connection(host, port)
    rd = dc09.Dc09Reader()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    for seq in range(1, events + 1):
        while True:
            now = datetime.now(timezone.utc).replace(microsecond=0)
            m = dc09.Dc09Message("ADM-CID", bool(key), seq, "1", "1", number,
                                 "#%s|1130 01 %03d" % (number, seq % 1000), [], now)
            t0 = time.perf_counter()
            writer.write(dc09.build(m, key or None))
            while (f := rd.next_frame()) is dc09.NEED_DATA:
                data = await reader.read(4096)
                if not data:
                    raise ConnectionError("receiver closed the connection")
                rd.receive_data(data)
            lat.append(time.perf_counter() - t0)
            r = dc09.parse(f, key_lookup=lambda _a: key or None)
            if r.msg_id == "ACK" and r.seq == seq:
                break
            naks.append(r.msg_id)  # NAK (busy, time): send again
    writer.close()


def _worker(host, port, accts, events, start_at, out_q) -> None:
    async def main():
        lat: list = []
        naks: list = []
        await asyncio.gather(*(_panel(host, port, n, k, events, start_at, lat, naks)
                               for n, k in accts))
        return lat, naks
    t0 = time.time()
    lat, naks = asyncio.run(main())
    out_q.put({"lat": lat, "naks": len(naks), "end": time.time(), "t0": t0})



def run(n: int, events: int, procs: int, clear: bool) -> dict:
    tmp = tempfile.mkdtemp(prefix="gldc09-bench-")
    db = os.path.join(tmp, "bench.db")
    accts = accounts(n, clear)
    asyncio.run(_create(db, accts))
    mport = free_port()
    proc = ReceiverProcess(db, ["--dc09-tcp", "127.0.0.1:0", "--metrics",
                                "127.0.0.1:%d" % mport, "--log-level", "warning"],
                           log_path=os.path.join(tmp, "receiver.log"))
    ready = proc.start(timeout=120)
    try:
        host, port = ready["dc09_tcp"][0]
        start_at = time.time() + 2.0 + n / 500  # connections are made before this
        q: mp.Queue = mp.Queue()
        workers = [mp.Process(target=_worker, args=(host, port, accts[i::procs], events,
                                                    start_at, q))
                   for i in range(procs)]
        for w in workers:
            w.start()
        results = [q.get(timeout=600) for _ in workers]
        for w in workers:
            w.join()
        commits = benchlib.commit_metrics(ready["metrics"])
        rc = proc.terminate(timeout=120)
    finally:
        proc.close()
    stored, distinct = benchlib.stored_counts(db)
    lat = sorted(x for r in results for x in r["lat"])
    wall = max(r["end"] for r in results) - start_at
    total = n * events
    q_ = statistics.quantiles(lat, n=100)
    res = {
        "connections": n, "events_each": events, "procs": procs,
        "encrypted": not clear, "events": total, "stored": stored,
        "exactly_once": stored == total == distinct, "receiver_exit": rc,
        "events_per_s": round(total / wall, 1), "wall_s": round(wall, 2),
        "ack_ms": {"p50": round(q_[49] * 1000, 2), "p99": round(q_[98] * 1000, 2),
                   "max": round(lat[-1] * 1000, 2)},
        "naks": sum(r["naks"] for r in results),
        "events_per_commit": round(
            commits.get("guardline_receiver_store_commit_batch_size_sum", 0)
            / max(1.0, commits.get("guardline_receiver_store_commit_batch_size_count", 0)), 1),
    }
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--events", type=int, default=50, help="events per connection")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--clear", action="store_true", help="unencrypted (default AES-128)")
    ap.add_argument("--repeat", type=int, default=1, help="runs, each on a fresh receiver")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                  "dc09_receiver.json"))
    a = ap.parse_args()
    load_before = os.getloadavg()  # the machine is shared: say how busy it was
    runs = []
    for _ in range(a.repeat):
        r = run(a.connections, a.events, a.procs, a.clear)
        print(json.dumps(r, indent=1), flush=True)
        if not r["exactly_once"]:
            print("FAILED: %d events sent, %d stored" % (r["events"], r["stored"]))
            return 1
        runs.append(r)

    def spread(values):
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}
    res = {"connections": a.connections, "events_each": a.events, "procs": a.procs,
           "encrypted": not a.clear, "repeat": a.repeat,
           "summary": {"events_per_s": spread([r["events_per_s"] for r in runs]),
                       "ack_p50_ms": spread([r["ack_ms"]["p50"] for r in runs]),
                       "ack_p99_ms": spread([r["ack_ms"]["p99"] for r in runs]),
                       "naks": sum(r["naks"] for r in runs)},
           "runs": runs}
    print(json.dumps(res["summary"], indent=1))
    res.update(date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               machine=platform.machine(), cpus=os.cpu_count(),
               loadavg_before=[round(x, 2) for x in load_before],
               python=platform.python_version(), sqlite=sqlite3.sqlite_version)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
