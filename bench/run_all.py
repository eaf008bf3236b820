"""Run the benchmark set (``make bench``), then the plots.

    .venv/bin/python bench/run_all.py            # full: ~25-30 min on 2 cores
    .venv/bin/python bench/run_all.py --quick    # smoke run: ~3 min, results in
                                                 # bench/results/quick/ (the full
                                                 # results the docs quote stay)
    .venv/bin/python bench/run_all.py --only receiver,dc09

Each benchmark is its own script (one command each, listed in
docs/benchmarks.md) run as a subprocess; this prints what ran, how long it
took and whether it passed its own checks, and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable


def plan(quick: bool, out: str) -> list[tuple[str, list[str]]]:
    r = lambda name: os.path.join(out, name)  # noqa: E731
    if quick:
        return [
            ("protocol", ["bench/bench_protocol.py", "--seconds", "0.3", "--out",
                          r("protocol.json")]),
            ("sqlite_ingest", ["bench/bench_sqlite_ingest.py", "--events", "2000",
                               "--out", r("sqlite_ingest.json")]),
            ("receiver", ["bench/bench_receiver.py", "--connections", "10,100",
                          "--mode", "lockstep,pipelined", "--total-events", "2000",
                          "--out", r("receiver_sweep.json")]),
            ("dc09", ["bench/bench_dc09_vs_pysiaalarm.py", "--connections", "20", "--events", "20",
                      "--repeat", "1", "--out", r("dc09_vs_pysiaalarm.json")]),
            ("supervision", ["bench/bench_supervision.py", "--panels", "4000", "--tcp",
                             "1000", "--interval", "6", "--grace", "3", "--silence", "200",
                             "--out", r("supervision.json")]),
            ("e2e", ["bench/bench_e2e_latency.py", "--trips", "5", "--out",
                     r("e2e_latency.json")]),
            ("tracks", ["bench/bench_tracks.py", "--vans", "50", "--points", "10",
                        "--alarms", "10", "--out", r("tracks.json")]),
            ("chaos", ["bench/chaos.py", "--quick", "--out", r("chaos.json")]),
            ("plots", ["bench/plot.py", "--sweep", r("receiver_sweep.json"), "--e2e",
                       r("e2e_latency.json"), "--out-dir", os.path.join(out, "plots")]),
        ]
    return [
        ("protocol", ["bench/bench_protocol.py", "--seconds", "2"]),
        ("firmware_heap", ["bench/bench_firmware_heap.py"]),
        ("sqlite_ingest", ["bench/bench_sqlite_ingest.py"]),
        ("receiver", ["bench/bench_receiver.py", "--connections", "10,100,1000,10000",
                      "--mode", "lockstep,pipelined", "--repeat", "3",
                      "--out", r("receiver_sweep.json")]),
        ("dc09", ["bench/bench_dc09_vs_pysiaalarm.py", "--connections", "100", "--events", "50",
                  "--repeat", "3", "--out", r("dc09_vs_pysiaalarm.json")]),
        ("supervision", ["bench/bench_supervision.py", "--out", r("supervision.json")]),
        ("e2e", ["bench/bench_e2e_latency.py", "--trips", "30", "--out",
                 r("e2e_latency.json")]),
        ("tracks", ["bench/bench_tracks.py", "--vans", "200,1000", "--points", "20",
                    "--alarm-every-ms", "50", "--repeat", "2", "--out", r("tracks.json")]),
        ("chaos", ["bench/chaos.py", "--out", r("chaos.json")]),
        ("plots", ["bench/plot.py", "--sweep", r("receiver_sweep.json"), "--e2e",
                   r("e2e_latency.json")]),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    ap.add_argument("--only", default=None, help="comma-separated names from the plan")
    a = ap.parse_args(argv)
    out = os.path.join(HERE, "results", "quick") if a.quick else os.path.join(HERE, "results")
    os.makedirs(out, exist_ok=True)
    steps = plan(a.quick, out)
    if a.only:
        want = set(a.only.split(","))
        steps = [s for s in steps if s[0] in want]
    summary = []
    for name, cmd in steps:
        print("\n== %s: %s" % (name, " ".join(cmd)), flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([PY] + cmd, cwd=ROOT)
        summary.append((name, rc, time.monotonic() - t0))
    print("\n== summary")
    for name, rc, dt in summary:
        print("%-14s %-5s %6.0f s" % (name, "ok" if rc == 0 else "FAIL(%d)" % rc, dt))
    return 0 if all(rc == 0 for _, rc, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
