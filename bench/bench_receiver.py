"""Receiver throughput, native protocol: the real receiver as a subprocess
(CLI ``serve`` with its SQLite store, WAL + synchronous=FULL, ACK after
commit) against bench/loadgen.py worker processes on loopback.

For each connection count N (and each mode, each repeat) a fresh receiver
and database are started, N connections authenticate (not timed), then all
send their events at once, in lockstep (send, wait for the ACK) or
pipelined (W events outstanding per connection), or at a fixed offered
rate (``--rate``: open loop, latency from each event's scheduled time).
Reported per run: events/s, ACK latency p50/p90/p99/max, the receiver's
CPU microseconds per event (user+system from /proc/PID/stat over the load
phase, every thread), its RSS (VmRSS at the end, VmHWM peak), NAKs, events
per group commit, and the load generator's own CPU (a generator worker
near a full core means the generator set the pace: the line says so).

Every ACKed event is checked to be in the store exactly once afterwards,
so a fast but lossy run cannot report a figure (exit status 1).

    .venv/bin/python bench/bench_receiver.py                       # one run, 200 conns
    .venv/bin/python bench/bench_receiver.py --connections 10,100,1000,10000 \\
        --mode lockstep,pipelined --repeat 3 --out bench/results/receiver_sweep.json
    # before and after a change, interleaved (each repeat runs every tree, the
    # order alternating), with a py-spy profile of each tree's receiver:
    .venv/bin/python bench/bench_receiver.py --receiver-tree before=../before \\
        --receiver-tree after=. --connections 200 --mode pipelined --repeat 3 \\
        --profile bench/results/profiles/rx

The descriptor limit is raised towards what N needs (soft up to the hard
limit); a count the hard limit cannot hold is skipped and said so.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402
import loadgen  # noqa: E402

from receiver.config import RESERVED_DESCRIPTORS  # noqa: E402
from receiver.testing import make_accounts  # noqa: E402

# Descriptors the receiver keeps beside its connections (console, store,
# outputs: [limits] reserved_descriptors), plus what it has open at start
# (listening sockets, store files, pipes).
FD_HEADROOM = RESERVED_DESCRIPTORS + 64
PIPELINE_WINDOW = 8



def one_run(n: int, events: int, procs: int, window: int, log_dir: str, rate=None,
            tree: str | None = None, profile: str | None = None) -> dict:
    tmp = tempfile.mkdtemp(prefix="glrx-bench-", dir=log_dir)
    db = os.path.join(tmp, "bench.db")
    accounts = make_accounts(n, first=100_000)
    benchlib.create_accounts_db_in(tree, db, accounts)
    proc = benchlib.receiver_process(db, tmp, tree)
    proc.start(timeout=120)
    pid = proc.pid
    prof = None
    try:
        host, port = proc.tcp
        if profile:
            prof = benchlib.Profiler(pid, profile)
        res = loadgen.run(host, port, [(int(a.number), a.key.hex()) for a in accounts.values()],
                          events, procs, first_seq=1, window=window,
                          probe=lambda: benchlib.probe(pid), rate=rate)
        if prof is not None:
            prof.stop()
        commits = benchlib.commit_metrics(proc.ready["metrics"])
        rc = proc.terminate(timeout=120)
    finally:
        proc.close()
        if prof is not None and prof.proc.poll() is None:
            prof.proc.kill()
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
        "receiver_cpu_us_per_event": round(cpu / res["acked"] * 1e6, 1)
        if res["acked"] else None,
        "receiver_cpu_util": round(cpu / res["wall_s"], 2) if res["wall_s"] else None,
        "receiver_rss_mib_start": round(p0["rss_kib"] / 1024, 1),
        "receiver_rss_mib_end": round(p1["rss_kib"] / 1024, 1),
        "receiver_rss_mib_peak": round(p1["hwm_kib"] / 1024, 1),
        "receiver_exit_code": rc,
    })
    if profile:
        res["profile"] = benchlib.summarize_profile(profile)
    if res["store_ok"]:
        for f in os.listdir(tmp):
            if not f.endswith(".log"):
                os.unlink(os.path.join(tmp, f))
    return res


def events_for(n: int, total: int, lo: int) -> int:
    return max(lo, total // n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--connections", default="200",
                    help="connection counts, comma-separated (default 200)")
    ap.add_argument("--events", type=int, default=None,
                    help="events per connection (default: --total-events / N, at least "
                         "--min-events)")
    ap.add_argument("--total-events", type=int, default=20_000)
    ap.add_argument("--min-events", type=int, default=3)
    ap.add_argument("--mode", default="lockstep",
                    help="lockstep, pipelined, rate, or several comma-separated")
    ap.add_argument("--window", type=int, default=PIPELINE_WINDOW,
                    help="events outstanding per connection when pipelined")
    ap.add_argument("--rate", type=float, default=1000.0,
                    help="events/s offered, all connections together, in mode rate "
                         "(default 1000)")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--repeat", type=int, default=1)
    benchlib.add_tree_options(
        ap, "run the receiver of this checkout (repeat for several: every repeat runs each, "
            "the order alternating); default this tree",
        "also one profiled run per tree, mode and N (py-spy, receiver process only; not "
        "counted in the figures): PREFIX-LABEL-MODE-N.txt")
    ap.add_argument("--out", default=os.path.join(benchlib.RESULTS, "receiver.json"))
    a = ap.parse_args(argv)

    counts = [int(x) for x in a.connections.split(",")]
    modes = [m.strip() for m in a.mode.split(",")]
    for m in modes:
        if m not in ("lockstep", "pipelined", "rate"):
            ap.error("unknown mode %r" % m)
    trees = benchlib.parse_trees(a.receiver_tree)
    limit = loadgen.raise_nofile(max(counts) + FD_HEADROOM)
    log_dir = tempfile.mkdtemp(prefix="glrx-bench-")
    doc = {
        "benchmark": "receiver end-to-end, native protocol over TCP loopback (AES-256-CBC + "
                     "HMAC per frame), SQLite WAL synchronous=FULL, ACK after commit",
        "command": "python bench/bench_receiver.py " + " ".join(argv if argv is not None
                                                                else sys.argv[1:]),
        "trees": {label: {"dir": d or benchlib.ROOT, "commit": benchlib.tree_commit(d)}
                  for label, d in trees},
        "machine": benchlib.machine(), "loadavg_before": benchlib.loadavg(),
        "when": benchlib.now_iso(), "procs": a.procs, "runs": [], "skipped": [],
        "profiles": []}
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
            window = a.window if mode == "pipelined" else 1
            rate = a.rate if mode == "rate" else None
            for r in range(a.repeat):
                order = trees if r % 2 == 0 else trees[::-1]
                for label, tree in order:
                    la = benchlib.loadavg()
                    t0 = time.monotonic()
                    res = one_run(n, events, a.procs, window, log_dir, rate, tree)
                    res.update({"tree": label, "repeat": r, "loadavg_before_run": la,
                                "run_s": round(time.monotonic() - t0, 1)})
                    doc["runs"].append(res)
                    ok = ok and res["store_ok"]
                    print_run(res)
            if a.profile:
                for label, tree in trees:
                    path = "%s-%s-%s-%d.txt" % (a.profile, label, mode, n)
                    res = one_run(n, events, a.procs, window, log_dir, rate, tree, path)
                    res.update({"tree": label, "profiled": True})
                    ok = ok and res["store_ok"]
                    print_run(res)
                    benchlib.print_profile(res["profile"])
                    doc["profiles"].append(res)
    doc["loadavg_after"] = benchlib.loadavg()
    doc["summary"] = summarize(doc["runs"])
    benchlib.write_json(a.out, doc)
    print_summary(doc["summary"])
    print("wrote %s (logs in %s)" % (a.out, log_dir))
    return 0 if ok else 1


def print_run(res: dict) -> None:
    lat = res["ack_latency_ms"]
    print("%-6s %-9s N=%-6d x %-4d %6d ACKed in %6.2f s = %6.0f ev/s; ACK p50 %7.1f "
          "p99 %7.1f max %7.1f ms; rx CPU %5.1f us/ev (%.2f of a core), RSS %.0f MiB; "
          "gen CPU %5.1f us/ev (busiest worker %.2f of a core%s); %d NAKs; %s ev/commit; "
          "store %s"
          % (res["tree"], res["mode"], res["connections"], res["events_per_connection"],
             res["acked"], res["wall_s"], res["events_per_s"] or 0, lat["p50"] or 0,
             lat["p99"] or 0, lat["max"] or 0, res["receiver_cpu_us_per_event"] or 0,
             res["receiver_cpu_util"] or 0, res["receiver_rss_mib_end"],
             (res["gen_cpu_s_per_1000_events"] or 0) * 1000, res["gen_util_busiest_worker"],
             ": SATURATED" if res["gen_saturated"] else "", res["naks"],
             res["mean_events_per_commit"],
             "OK" if res["store_ok"] else "MISMATCH %r" % res["errors"][:3]), flush=True)


def summarize(runs: list) -> list:
    """Median and min..max per (tree, mode, connections) over the repeats."""
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["tree"], r["mode"], r["connections"]), []).append(r)
    out = []
    for (tree, mode, n), rs in sorted(groups.items()):
        out.append({
            "tree": tree, "mode": mode, "connections": n, "events_per_connection":
                rs[0]["events_per_connection"], "runs": len(rs),
            "offered_events_per_s": rs[0].get("offered_events_per_s"),
            "events_per_s": benchlib.spread([r["events_per_s"] for r in rs]),
            "ack_p50_ms": benchlib.spread([r["ack_latency_ms"]["p50"] for r in rs]),
            "ack_p99_ms": benchlib.spread([r["ack_latency_ms"]["p99"] for r in rs]),
            "ack_max_ms": benchlib.spread([r["ack_latency_ms"]["max"] for r in rs]),
            "cpu_us_per_event": benchlib.spread(
                [r["receiver_cpu_us_per_event"] for r in rs]),
            "cpu_s_per_1000": benchlib.spread(
                [r["receiver_cpu_s_per_1000_events"] for r in rs]),
            "gen_cpu_us_per_event": benchlib.spread(
                [r["gen_cpu_s_per_1000_events"] * 1000 for r in rs
                 if r["gen_cpu_s_per_1000_events"] is not None]),
            "gen_util_busiest_worker": benchlib.spread(
                [r["gen_util_busiest_worker"] for r in rs]),
            "gen_saturated_runs": sum(1 for r in rs if r["gen_saturated"]),
            "rss_mib_end": benchlib.spread([r["receiver_rss_mib_end"] for r in rs]),
            "rss_mib_peak": benchlib.spread([r["receiver_rss_mib_peak"] for r in rs]),
            "events_per_commit": benchlib.spread([r["mean_events_per_commit"] for r in rs]),
            "naks": sum(r["naks"] for r in rs),
            "all_stored_once": all(r["store_ok"] for r in rs),
        })
    return out


def print_summary(summary: list) -> None:
    print("\nmedian (min..max) over the repeats:")
    for s in summary:
        print("%-6s %-9s N=%-6d rx CPU %s us/event; %s ev/s; ACK p99 %s; gen CPU %s us/event, "
              "busiest worker %s of a core; stored once: %s" % (
                  s["tree"], s["mode"], s["connections"],
                  benchlib.fmt_spread(s["cpu_us_per_event"], "", 1),
                  benchlib.fmt_spread(s["events_per_s"]),
                  benchlib.fmt_spread(s["ack_p99_ms"], " ms", 1),
                  benchlib.fmt_spread(s["gen_cpu_us_per_event"], "", 1),
                  benchlib.fmt_spread(s["gen_util_busiest_worker"], "", 2),
                  "yes" if s["all_stored_once"] else "NO"))


if __name__ == "__main__":
    sys.exit(main())
