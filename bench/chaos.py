"""Longer chaos runs than the test suite's (tests/test_chaos_*.py), with
random seeds, reporting sent / ACKed / stored / lost for each scenario:

- kill: SIGKILL the receiver at ``--kill-points`` random moments while
  ``--panels`` panels stream events; restart it each time;
- pqueue: power cut at a random byte of the firmware queue's write stream,
  ``--queue-cuts`` times;
- panel: power cuts of the firmware under the MicroPython VM;
- disk: the store's filesystem (tmpfs) filled mid-stream, then emptied
  (root only), and a read-only store;
- fuzz: random and mutated frames against the live server for
  ``--fuzz-seconds``.

    .venv/bin/python bench/chaos.py [--quick] [--only kill,fuzz] [--seed N]

Writes bench/results/chaos.json; exit status 1 if any invariant failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402
import chaoslib  # noqa: E402


def _ok_counts(r):
    return (r["lost"] == 0 and r["duplicates"] == 0 and r["acked_not_stored"] == 0
            and r["stored"] == r["sent"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="kill,pqueue,panel,disk,fuzz")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--kill-points", type=int, default=10)
    ap.add_argument("--panels", type=int, default=50)
    ap.add_argument("--events", type=int, default=60)
    ap.add_argument("--queue-cuts", type=int, default=2000)
    ap.add_argument("--panel-cuts", type=int, default=20)
    ap.add_argument("--fuzz-seconds", type=float, default=60.0)
    ap.add_argument("--out", default=os.path.join(benchlib.RESULTS, "chaos.json"))
    a = ap.parse_args(argv)
    if a.quick:
        a.kill_points, a.panels, a.events = 4, 20, 30
        a.queue_cuts, a.panel_cuts, a.fuzz_seconds = 200, 4, 8.0
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    only = set(a.only.split(","))
    doc = {"command": "python bench/chaos.py " + " ".join(argv if argv is not None
                                                            else sys.argv[1:]),
           "seed": seed, "machine": benchlib.machine(), "when": benchlib.now_iso(),
           "results": {}}
    ok = True
    res = doc["results"]

    def tmp():
        return tempfile.mkdtemp(prefix="gl-chaos-")

    if "kill" in only:
        fr = sorted(rng.uniform(0.03, 0.97) for _ in range(a.kill_points))
        t0 = time.monotonic()
        r = asyncio.run(chaoslib.kill_restart(tmp(), panels=a.panels, events=a.events,
                                              kill_fractions=fr, seed=rng.random(),
                                              deadline_s=300))
        r["seconds"] = round(time.monotonic() - t0, 1)
        good = _ok_counts(r) and all(k["acked_missing_from_store"] == 0
                                     and k["duplicates_in_store"] == 0 for k in r["kills"])
        r["ok"] = good
        ok &= good
        res["kill"] = r
        print("kill -9 x%d: sent %d, ACKed %d, stored %d, lost %d, duplicates %d; at every "
              "kill ACKed-but-missing %s -> %s"
              % (len(r["kills"]), r["sent"], r["acked"], r["stored"], r["lost"],
                 r["duplicates"], [k["acked_missing_from_store"] for k in r["kills"]],
                 "OK" if good else "FAIL"), flush=True)
    if "pqueue" in only:
        r = chaoslib.pqueue_power_cuts(tmp(), cuts=a.queue_cuts, seed=rng.random())
        r["ok"] = r["n_violations"] == 0
        ok &= r["ok"]
        res["pqueue"] = r
        print("queue power cuts x%d (%d appends, %d ACKs): %d violations -> %s"
              % (r["cuts"], r["appends"], r["acks"], r["n_violations"],
                 "OK" if r["ok"] else "FAIL %s" % r["violations"][:3]), flush=True)
    if "panel" in only:
        r = chaoslib.panel_power_cuts(tmp(), cuts=a.panel_cuts, seed=rng.random())
        r["ok"] = r["lost"] == 0 and r["corrupt_slots"] == 0 and r["changed"] == 0 \
            and r["queue_depth_at_end"] == 0
        ok &= r["ok"]
        res["panel"] = r
        print("panel VM power cuts x%d: %d ACK-pending records at the cuts, lost %d, "
              "corrupt slots %d -> %s" % (r["cuts"], r["ack_pending_at_cuts"], r["lost"],
                                         r["corrupt_slots"], "OK" if r["ok"] else "FAIL"),
              flush=True)
    if "disk" in only:
        if os.geteuid() == 0 and chaoslib.tmpfs_available():
            r = asyncio.run(chaoslib.disk_full(tmp(), panels=10, events=40))
            r["ok"] = _ok_counts(r) and r["busy_naks"] > 0 and r["log_says_recovered"]
            ok &= r["ok"]
            res["disk_full"] = r
            print("disk full: sent %d, ACKed %d, stored %d, lost %d; %d NAK busy; healthz "
                  "%d -> %d -> %s" % (r["sent"], r["acked"], r["stored"], r["lost"],
                                      r["busy_naks"], r["healthz_while_full"],
                                      r["healthz_after"], "OK" if r["ok"] else "FAIL"),
                  flush=True)
        else:
            res["disk_full"] = {"skipped": "needs root to mount a tmpfs"}
        r = asyncio.run(chaoslib.read_only_store(tmp(), panels=10, events=30))
        r["ok"] = _ok_counts(r) and r["busy_naks"] > 0 and r["healthy_after"]
        ok &= r["ok"]
        res["read_only"] = r
        print("read-only store: sent %d, ACKed %d, stored %d, lost %d; %d NAK busy -> %s"
              % (r["sent"], r["acked"], r["stored"], r["lost"], r["busy_naks"],
                 "OK" if r["ok"] else "FAIL"), flush=True)
    if "fuzz" in only:
        r = asyncio.run(chaoslib.fuzz_live(tmp(), seconds=a.fuzz_seconds, fuzz_conns=60,
                                           max_frames=5_000_000, seed=rng.random()))
        r["ok"] = r["alive"] and r["good_acked_not_stored"] == 0 and r["fresh_panel_served"] \
            and r["good_acked_during_fuzz"] > 0
        ok &= r["ok"]
        res["fuzz"] = r
        print("fuzz %.0f s: %d frames (%d MB) over %d connections + %d datagrams; alive %s; "
              "RSS %d -> %d KiB (peak %d); real panels ACKed %d during, all stored: %s -> %s"
              % (r["seconds"], r["frames"], r["bytes"] // 10**6, r["tcp_connections_opened"],
                 r["udp_datagrams"], r["alive"], r["rss_kib_warm"], r["rss_kib_after"],
                 r["rss_kib_peak"], r["good_acked_during_fuzz"],
                 r["good_acked_not_stored"] == 0, "OK" if r["ok"] else "FAIL"), flush=True)
    doc["ok"] = ok
    benchlib.write_json(a.out, doc)
    print("seed %d; wrote %s" % (seed, a.out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
