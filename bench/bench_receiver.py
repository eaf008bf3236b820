"""Receiver throughput, native protocol: the real receiver as a subprocess
(CLI ``serve`` with its SQLite store, WAL + synchronous=FULL, ACK after
commit) against bench/loadgen.py worker processes on loopback.

For each connection count N (and each mode, each repeat) a fresh receiver
and database are started, N connections authenticate (not timed), then all
send their events at once, in lockstep (send, wait for the ACK) or
pipelined (W events outstanding per connection).  Reported per run:
events/s, ACK latency p50/p90/p99/max, the receiver's CPU seconds per
1,000 events (user+system from /proc/PID/stat over the load phase), its
RSS (VmRSS at the end, VmHWM peak), NAKs, events per group commit.

Every ACKed event is checked to be in the store exactly once afterwards,
so a fast but lossy run cannot report a figure (exit status 1).

    .venv/bin/python bench/bench_receiver.py                       # one run, 200 conns
    .venv/bin/python bench/bench_receiver.py --connections 10,100,1000,10000 \\
        --mode lockstep,pipelined --repeat 3 --out bench/results/receiver_sweep.json

The descriptor limit is raised towards what N needs (soft up to the hard
limit); a count the hard limit cannot hold is skipped and said so.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402
import loadgen  # noqa: E402

from receiver.config import RESERVED_DESCRIPTORS  # noqa: E402
from receiver.testing import make_accounts  # noqa: E402
from testkit.net import free_port  # noqa: E402
from testkit.receiver import ReceiverProcess  # noqa: E402

# Descriptors the receiver keeps beside its connections (console, store,
# outputs: [limits] reserved_descriptors), plus what it has open at start
# (listening sockets, store files, pipes).
FD_HEADROOM = RESERVED_DESCRIPTORS + 64
PIPELINE_WINDOW = 8



def one_run(n: int, events: int, procs: int, window: int, log_dir: str) -> dict:
    tmp = tempfile.mkdtemp(prefix="glrx-bench-", dir=log_dir)
    db = os.path.join(tmp, "bench.db")
    accounts = make_accounts(n, first=100_000)
    benchlib.create_accounts_db(db, accounts)
    mport = free_port()
    proc = ReceiverProcess(db, ["--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:%d" % mport,
                                "--log-level", "warning"],
                           log_path=os.path.join(tmp, "receiver.log"))
    proc.start(timeout=120)
    pid = proc.proc.pid
    try:
        host, port = proc.tcp
        res = loadgen.run(host, port, [(int(a.number), a.key.hex()) for a in accounts.values()],
                          events, procs, first_seq=1, window=window,
                          probe=lambda: benchlib.probe(pid))
        commits = benchlib.commit_metrics(proc.ready["metrics"])
        rc = proc.terminate(timeout=120)
    finally:
        proc.close()
    stored, distinct = benchlib.stored_counts(db)
    total = n * events
    n_commits = commits.get("guardline_receiver_store_commit_batch_size_count") or 0
    p0, p1 = res.pop("probe_start"), res.pop("probe_end")
    cpu = p1["cpu_s"] - p0["cpu_s"]
    res.update({
        "expected_events": total, "stored_events": stored, "stored_distinct": distinct,
        "store_ok": stored == distinct == res["acked"] == total,
        "group_commits": int(n_commits),
        "mean_events_per_commit": round(
            commits["guardline_receiver_store_commit_batch_size_sum"] / n_commits, 1)
        if n_commits else None,
        "receiver_cpu_s": round(cpu, 3),
        "receiver_cpu_s_per_1000_events": round(cpu / res["acked"] * 1000, 4)
        if res["acked"] else None,
        "receiver_cpu_util": round(cpu / res["wall_s"], 2) if res["wall_s"] else None,
        "receiver_rss_mib_start": round(p0["rss_kib"] / 1024, 1),
        "receiver_rss_mib_end": round(p1["rss_kib"] / 1024, 1),
        "receiver_rss_mib_peak": round(p1["hwm_kib"] / 1024, 1),
        "receiver_exit_code": rc,
    })
    if res["store_ok"]:
        for f in os.listdir(tmp):
            if not f.endswith(".log"):
                os.unlink(os.path.join(tmp, f))
    return res


def events_for(n: int, total: int, lo: int) -> int:
    return max(lo, total // n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", default="200",
                    help="connection counts, comma-separated (default 200)")
    ap.add_argument("--events", type=int, default=None,
                    help="events per connection (default: --total-events / N, at least "
                         "--min-events)")
    ap.add_argument("--total-events", type=int, default=20_000)
    ap.add_argument("--min-events", type=int, default=3)
    ap.add_argument("--mode", default="lockstep", help="lockstep, pipelined or both")
    ap.add_argument("--window", type=int, default=PIPELINE_WINDOW,
                    help="events outstanding per connection when pipelined")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(benchlib.RESULTS, "receiver.json"))
    a = ap.parse_args(argv)

    counts = [int(x) for x in a.connections.split(",")]
    modes = [m.strip() for m in a.mode.split(",")]
    for m in modes:
        if m not in ("lockstep", "pipelined"):
            ap.error("unknown mode %r" % m)
    limit = loadgen.raise_nofile(max(counts) + FD_HEADROOM)
    log_dir = tempfile.mkdtemp(prefix="glrx-bench-")
    doc = {
        "benchmark": "receiver end-to-end, native protocol over TCP loopback (AES-256-CBC + "
                     "HMAC per frame), SQLite WAL synchronous=FULL, ACK after commit",
        "command": "python bench/bench_receiver.py " + " ".join(argv if argv is not None
                                                                else sys.argv[1:]),
        "machine": benchlib.machine(), "loadavg_before": benchlib.loadavg(),
        "when": benchlib.now_iso(), "procs": a.procs, "runs": [], "skipped": []}
    ok = True
    for n in counts:
        if n + FD_HEADROOM > limit:
            msg = ("%d connections need %d descriptors; the hard limit is %d (cannot be "
                   "raised here)" % (n, n + FD_HEADROOM, limit))
            print("skip:", msg)
            doc["skipped"].append({"connections": n, "why": msg})
            continue
        events = a.events or events_for(n, a.total_events, a.min_events)
        for mode in modes:
            window = 1 if mode == "lockstep" else a.window
            for r in range(a.repeat):
                la = benchlib.loadavg()
                t0 = time.monotonic()
                res = one_run(n, events, a.procs, window, log_dir)
                res["repeat"] = r
                res["loadavg_before_run"] = la
                res["run_s"] = round(time.monotonic() - t0, 1)
                doc["runs"].append(res)
                ok = ok and res["store_ok"]
                lat = res["ack_latency_ms"]
                print("%-9s N=%-6d x %-4d %6d ACKed in %6.2f s = %6.0f ev/s; ACK p50 %7.1f "
                      "p99 %7.1f max %7.1f ms; rx CPU %.3f s/1k ev, RSS %.0f MiB (peak %.0f); "
                      "%d NAKs; %s ev/commit; store %s"
                      % (mode, n, events, res["acked"], res["wall_s"], res["events_per_s"] or 0,
                         lat["p50"] or 0, lat["p99"] or 0, lat["max"] or 0,
                         res["receiver_cpu_s_per_1000_events"] or 0,
                         res["receiver_rss_mib_end"], res["receiver_rss_mib_peak"],
                         res["naks"], res["mean_events_per_commit"],
                         "OK" if res["store_ok"] else "MISMATCH %r" % res["errors"][:3]),
                      flush=True)
    doc["loadavg_after"] = benchlib.loadavg()
    doc["summary"] = summarize(doc["runs"])
    benchlib.write_json(a.out, doc)
    print("wrote %s (logs in %s)" % (a.out, log_dir))
    return 0 if ok else 1


def summarize(runs: list) -> list:
    """Median and min..max per (mode, connections) over the repeats."""
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["mode"], r["connections"]), []).append(r)
    out = []
    for (mode, n), rs in sorted(groups.items()):
        out.append({
            "mode": mode, "connections": n, "events_per_connection":
                rs[0]["events_per_connection"], "runs": len(rs),
            "events_per_s": benchlib.spread([r["events_per_s"] for r in rs]),
            "ack_p50_ms": benchlib.spread([r["ack_latency_ms"]["p50"] for r in rs]),
            "ack_p99_ms": benchlib.spread([r["ack_latency_ms"]["p99"] for r in rs]),
            "ack_max_ms": benchlib.spread([r["ack_latency_ms"]["max"] for r in rs]),
            "cpu_s_per_1000": benchlib.spread(
                [r["receiver_cpu_s_per_1000_events"] for r in rs]),
            "rss_mib_end": benchlib.spread([r["receiver_rss_mib_end"] for r in rs]),
            "rss_mib_peak": benchlib.spread([r["receiver_rss_mib_peak"] for r in rs]),
            "events_per_commit": benchlib.spread([r["mean_events_per_commit"] for r in rs]),
            "naks": sum(r["naks"] for r in rs),
            "all_stored_once": all(r["store_ok"] for r in rs),
        })
    return out


if __name__ == "__main__":
    sys.exit(main())
