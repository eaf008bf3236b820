"""Receiver benchmark on PostgreSQL: events/s and ACK latency with one and
with two receiver processes (CLI ``serve --db postgresql://...``) on one
database, against bench/loadgen.py worker processes on loopback; an SQLite
run on the same machine at the same moment is the baseline.  Writes
bench/results/pg.json.

    .venv/bin/python bench/bench_pg.py --connections 200 --events 50 --repeat 3

PostgreSQL is a throwaway server started with scripts/pg.sh with its
durable defaults (fsync on, synchronous_commit on: a commit waits for the
WAL flush), unless ``--pg URL`` names one (its role must be allowed to
CREATE DATABASE).  Every run uses a fresh database; afterwards every ACKed
event is checked to be stored exactly once, so a fast but lossy run cannot
report a figure.

With two receivers each load generator process drives one receiver (its
connections are that receiver's panels).

``--workers 1,2`` measures one receiver run as ``serve --workers N``
instead (N processes on one port, SO_REUSEPORT; issue 20), side by side
in one run, into bench/results/pg_workers.json:

    .venv/bin/python bench/bench_pg.py --workers 1,2 --connections 200 --events 50 --repeat 2

its receiver CPU is the parent's and every worker's, summed.  Everything shares one host: on
a 2-core machine the PostgreSQL server, the receivers and the load
generators compete for the same two cores, so the two-receiver figure shows
what sharing the store costs, not what a second machine would add.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import benchlib  # noqa: E402
import loadgen  # noqa: E402

from receiver.testing import make_accounts  # noqa: E402
from testkit.net import free_port  # noqa: E402
from testkit.receiver import ReceiverProcess  # noqa: E402


def pg_cpu_s(pg_dir) -> float | None:
    """CPU seconds used so far by the PostgreSQL server we started (the
    postmaster and its children), from /proc."""
    if pg_dir is None:
        return None
    try:
        with open(os.path.join(pg_dir, "data", "postmaster.pid")) as f:
            root = int(f.readline())
    except (OSError, ValueError):
        return None
    total = 0.0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(name) == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / benchlib.CLK_TCK
    return total


def run_load(targets: list, accounts: list, events: int, procs: int, probe=None) -> dict:
    """loadgen's run() with worker i driving targets[i % len(targets)]:
    accounts [(int, key hex)] are dealt to the workers round-robin."""
    res = loadgen.run(targets[0][0], targets[0][1], accounts, events, procs, probe=probe,
                      targets=targets)
    res["events_per_s"] = round(res["events_per_s"], 1) if res["events_per_s"] else None
    return res


def rx_pids(rx) -> list[int]:
    """A receiver's processes: the one, or ``--workers``' parent and workers."""
    return [rx.proc.pid] + [w["pid"] for w in rx.ready.get("workers", [])]


def rx_metrics(rx) -> list:
    """Its metrics addresses: one, or one per worker."""
    return [w["metrics"] for w in rx.ready["workers"]] if "workers" in rx.ready \
        else [rx.ready["metrics"]]


def one_run(kind: str, receivers: int, server_url, tmp, accounts, events, procs, n,
            pg_dir=None, workers: int = 0) -> dict:
    """``workers``: 0 for plain receivers, else one receiver run with
    ``serve --workers N``."""
    if kind == "postgresql":
        db = asyncio.run(benchlib.pg_prepare(server_url, "bench_%d_%d" % (receivers, n), accounts))
    else:
        db = os.path.join(tmp, "bench-%d.db" % n)
        benchlib.create_accounts_db(db, accounts)
    rxs = []
    try:
        for i in range(receivers):
            mport = free_port()
            more = ["--workers", str(workers)] if workers else []
            rxs.append(ReceiverProcess(
                os.path.join(tmp, "rx%d-%d" % (n, i)),
                ["--db", db, "--tcp", "127.0.0.1:0", "--metrics",
                 "127.0.0.1:%d" % (0 if workers else mport), "--log-level", "warning", *more],
                log_path=os.path.join(tmp, "rx%d.log" % i)))
            rxs[-1].start()
        def probe():
            return {"receivers_cpu_s": sum(benchlib.proc_cpu_s(pid) for rx in rxs
                                           for pid in rx_pids(rx)),
                    "postgres_cpu_s": pg_cpu_s(pg_dir) if kind == "postgresql" else None}

        res = run_load([rx.tcp for rx in rxs],
                       [(int(a.number), a.key.hex()) for a in accounts.values()],
                       events, procs, probe)
        commits = [benchlib.commit_metrics(addr) for rx in rxs for addr in rx_metrics(rx)]
        codes = [rx.terminate() for rx in rxs]
    finally:
        for rx in rxs:
            rx.close()
    stored, distinct = benchlib.stored_counts(db)
    total = len(accounts) * events
    n_commits = sum(c.get("guardline_receiver_store_commit_batch_size_count", 0)
                    for c in commits)
    n_batched = sum(c.get("guardline_receiver_store_commit_batch_size_sum", 0)
                    for c in commits)
    p0, p1 = res.pop("probe_start"), res.pop("probe_end")
    cpu = {k: (round((p1[k] - p0[k]) * 1e6 / max(1, res["acked"]), 1)
               if p0[k] is not None else None) for k in p0}
    res.update({"store": kind, "receivers": receivers, "workers": workers or 1,
                "expected_events": total,
                "cpu_us_per_event": {"receivers": cpu["receivers_cpu_s"],
                                     "postgres": cpu["postgres_cpu_s"]},
                "stored_events": stored, "stored_distinct": distinct,
                "store_ok": stored == distinct == res["acked"] == total,
                "group_commits": int(n_commits),
                "mean_requests_per_commit": round(n_batched / n_commits, 1)
                if n_commits else None,
                "receiver_exit_codes": codes})
    return res


def gen_us(r: dict) -> float | None:
    """The load generator's CPU per ACKed event (us)."""
    v = r.get("gen_cpu_s_per_1000_events")
    return None if v is None else round(v * 1000, 1)


def start_pg(tmp: str) -> tuple[str, str]:
    d = tempfile.mkdtemp(prefix="glpg-bench-")  # under /tmp: the postgres user can enter
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "pg.sh"), "start", d],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit("scripts/pg.sh start failed: %s%s" % (r.stdout, r.stderr))
    return r.stdout.strip().splitlines()[-1], d


def pg_version(url: str) -> str:
    import asyncpg  # noqa: PLC0415

    async def go():
        c = await asyncpg.connect(url)
        try:
            return (await c.fetchval("SHOW server_version"),
                    await c.fetchval("SHOW synchronous_commit"),
                    await c.fetchval("SHOW fsync"))
        finally:
            await c.close()
    v, sc, fs = asyncio.run(go())
    return "%s (synchronous_commit=%s, fsync=%s)" % (v, sc, fs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pg", help="PostgreSQL server URL (default: a throwaway one)")
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite baseline")
    ap.add_argument("--workers", metavar="N,N",
                    help="instead: one receiver as serve --workers N for each N (e.g. 1,2)")
    ap.add_argument("--out", help="default bench/results/pg.json (pg_workers.json with "
                    "--workers)")
    a = ap.parse_args(argv)
    if a.out is None:
        a.out = os.path.join(HERE, "results", "pg_workers.json" if a.workers else "pg.json")

    tmp = tempfile.mkdtemp(prefix="glrx-bench-pg-")
    pg_dir = None
    server_url = a.pg
    if server_url is None:
        server_url, pg_dir = start_pg(tmp)
    # (store, receivers, serve --workers N or 0)
    configs = [("postgresql", 1, 0), ("postgresql", 2, 0)]
    if a.workers:
        configs = [("postgresql", 1, int(w)) for w in a.workers.split(",")]
    elif not a.no_sqlite:
        configs.insert(0, ("sqlite", 1, 0))
    runs: dict = {}
    load_before = benchlib.loadavg()
    try:
        version = pg_version(server_url)
        n = 0
        for rep in range(a.repeat):
            for kind, receivers, workers in configs:  # interleaved: drift hits all alike
                n += 1
                accounts = make_accounts(a.connections, first=100_000)
                r = one_run(kind, receivers, server_url, tmp, accounts, a.events, a.procs, n,
                            pg_dir, workers)
                key = "%s-%d" % (kind, receivers) if not workers else \
                    "%s-workers-%d" % (kind, workers)
                runs.setdefault(key, []).append(r)
                lat = r["ack_latency_ms"]
                cpu = r["cpu_us_per_event"]
                print("%-20s run %d: %6.0f events/s  ACK p50 %6.1f ms  p99 %6.1f ms  "
                      "%5s req/commit  CPU/event rx %s us pg %s us gen %s us  NAKs %d  "
                      "store %s  load %s" % (
                          key, rep + 1, r["events_per_s"] or 0, lat["p50"] or 0,
                          lat["p99"] or 0, r["mean_requests_per_commit"], cpu["receivers"],
                          cpu["postgres"], gen_us(r), r["naks"],
                          "OK" if r["store_ok"] else "MISMATCH",
                          benchlib.loadavg()[0]), flush=True)
    finally:
        if pg_dir is not None:
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "pg.sh"), "stop", pg_dir],
                           capture_output=True, timeout=120)
            shutil.rmtree(pg_dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {}
    for key, rs in runs.items():
        summary[key] = {
            "events_per_s": benchlib.spread([r["events_per_s"] for r in rs]),
            "ack_p50_ms": benchlib.spread([r["ack_latency_ms"]["p50"] for r in rs]),
            "ack_p99_ms": benchlib.spread([r["ack_latency_ms"]["p99"] for r in rs]),
            "requests_per_commit": benchlib.spread([r["mean_requests_per_commit"]
                                                    for r in rs]),
            "receivers_cpu_us_per_event": benchlib.spread(
                [r["cpu_us_per_event"]["receivers"] for r in rs]),
            "postgres_cpu_us_per_event": benchlib.spread(
                [r["cpu_us_per_event"]["postgres"] for r in rs]),
            "generator_cpu_us_per_event": benchlib.spread([gen_us(r) for r in rs]),
            "naks": sum(r["naks"] for r in rs),
            "store_ok": all(r["store_ok"] for r in rs)}
    doc = {
        "benchmark": "receiver end-to-end on PostgreSQL, %s (TCP, native protocol, "
                     "lockstep, ACK after commit)" % (
                         "one receiver as serve --workers " + a.workers if a.workers
                         else "one and two receivers"),
        "command": "python bench/bench_pg.py%s --connections %d --events %d --procs %d "
                   "--repeat %d" % (" --workers " + a.workers if a.workers else "",
                                    a.connections, a.events, a.procs, a.repeat),
        "connections": a.connections, "events_per_connection": a.events,
        "postgresql": version, "machine": benchlib.machine(),
        "loadavg_before": load_before, "loadavg_after": benchlib.loadavg(),
        "when": benchlib.now_iso(), "summary": summary, "runs": runs,
    }
    benchlib.write_json(a.out, doc)
    print()
    for key, s in summary.items():
        print("%-22s %s events/s, ACK p50 %s, p99 %s, %s requests/commit, CPU/event: "
              "receivers %s, postgres %s, generator %s, store %s" % (
                  key, benchlib.fmt_spread(s["events_per_s"]),
                  benchlib.fmt_spread(s["ack_p50_ms"], " ms", 1),
                  benchlib.fmt_spread(s["ack_p99_ms"], " ms", 1),
                  benchlib.fmt_spread(s["requests_per_commit"], "", 1),
                  benchlib.fmt_spread(s["receivers_cpu_us_per_event"], " us"),
                  benchlib.fmt_spread(s["postgres_cpu_us_per_event"], " us"),
                  benchlib.fmt_spread(s["generator_cpu_us_per_event"], " us"),
                  "OK" if s["store_ok"] else "MISMATCH"))
    print("load average before %s, after %s" % (doc["loadavg_before"], doc["loadavg_after"]))
    print("wrote %s" % a.out)
    return 0 if all(s["store_ok"] for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
