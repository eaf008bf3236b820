"""Latency from input to operator: a zone tripped on the simulated panel
(the real firmware under the MicroPython VM, sim board, examples/bank.json)
to the event committed at the receiver and handed to the operator side.

The receiver runs in this process (``receiver.app.Receiver``: SQLite
store, WAL synchronous=FULL, ACK after commit) and the benchmark
subscribes to it as the web console does (``Receiver.subscribe``): the
message is published right after the commit returns, so "received" here
means durable and visible to an operator.  The trip is the sim board's
control command setting the zone's loop resistance; the clock starts just
before the command is sent.

What the latency contains: the control socket, the panel's scan period
(``timings.scan_ms``), the zone debounce (``timings.debounce_ms``, 300 ms
as shipped: deliberate, EN 50131 wants a zone to be stable before it
alarms), writing the event to the flash queue, the reporter's poll, the
TCP hop, the receiver's checks and the group commit with its fsync.  The
figures are given as measured and with the configured debounce taken off.

    .venv/bin/python bench/bench_e2e_latency.py [--trips 30] [--debounce-ms 300]

Each trip is a hold-up button (zone 17: 24-hour silent, Contact ID 122)
pressed and, after its event arrived, released (the restore is measured
too).  Writes bench/results/e2e_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402

from receiver.app import Receiver  # noqa: E402
from receiver.messages import EventStored  # noqa: E402
from receiver.config import Config  # noqa: E402
from receiver.store import Account  # noqa: E402
from testkit.configs import TEST_KEY  # noqa: E402
from testkit.panel import PanelProcess  # noqa: E402

ACCOUNT = 4242
ZONE = 17  # examples/bank.json: "holdup", partition 3
EVENT_TIMEOUT_S = 20.0


def panel_config(tcp_port: int, udp_port: int, debounce_ms: int | None) -> dict:
    with open(os.path.join(benchlib.ROOT, "examples", "bank.json")) as f:
        cfg = json.load(f)
    cfg["account"] = ACCOUNT
    cfg["key"] = TEST_KEY.hex()
    cfg["receiver"]["primary"].update({"host": "127.0.0.1", "port": tcp_port})
    cfg["receiver"]["backup"].update({"host": "127.0.0.1", "port": udp_port})
    if debounce_ms is not None:
        cfg["timings"]["debounce_ms"] = debounce_ms
    return cfg


async def run(trips: int, debounce_ms: int | None, tmp: str) -> dict:
    db = os.path.join(tmp, "e2e.db")
    rx = Receiver(Config(db=db, tcp=[("127.0.0.1", 0)], udp=[("127.0.0.1", 0)],
                         log_level="WARNING"))
    await rx.store.open()
    await rx.store.add_account(Account(str(ACCOUNT), TEST_KEY, heartbeat_s=60, grace_s=30))
    await rx.store.close()
    rx = Receiver(Config(db=db, tcp=[("127.0.0.1", 0)], udp=[("127.0.0.1", 0)]))
    await rx.start()
    q = rx.subscribe()
    cfg = panel_config(rx.addresses["tcp"][0][1], rx.addresses["udp"][0][1], debounce_ms)
    debounce = cfg["timings"]["debounce_ms"]
    scan = cfg["timings"].get("scan_ms", 50)
    panel = PanelProcess(cfg, os.path.join(tmp, "panel"))
    rng = random.Random()
    out = {"trip_ms": [], "restore_ms": []}

    async def wait_event(qualifier: int) -> float:
        end = time.monotonic() + EVENT_TIMEOUT_S
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no event for zone %d q%d" % (ZONE, qualifier))
            m = await asyncio.wait_for(q.get(), left)
            if not isinstance(m, EventStored):
                continue
            ev = m.event  # a receiver.records.Event
            if ev.account == str(ACCOUNT) and ev.zone == ZONE and \
                    ev.qualifier == qualifier and ev.code == 122:
                return time.monotonic()

    try:
        # the panel is up and reporting: its boot event (305) is in
        await asyncio.to_thread(panel.ctl, {"cmd": "ping"}, 60)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            m = await asyncio.wait_for(q.get(), 60)
            if isinstance(m, EventStored) and m.event.code == 305:
                break
        await asyncio.sleep(1.0)
        while not q.empty():
            q.get_nowait()
        for i in range(trips):
            for state, key, qual in (("alarm", "trip_ms", 1), ("normal", "restore_ms", 3)):
                # a random pause, so the trip falls anywhere in the scan period
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                t0 = time.monotonic()
                await asyncio.to_thread(panel.ctl, {"cmd": "zone", "zone": ZONE,
                                                    "state": state})
                t1 = await wait_event(qual)
                out[key].append((t1 - t0) * 1000)
        acked_state = await asyncio.to_thread(panel.ctl, {"cmd": "state", "brief": True})
    finally:
        panel.close()
        await rx.stop()
    res = {"trips": trips, "debounce_ms": debounce, "scan_ms": scan,
           "reporter_queue_at_end": acked_state["reporter"]["queue"]}
    for key in ("trip_ms", "restore_ms"):
        v = sorted(out[key])
        p50, p99 = benchlib.pct(v, 50), benchlib.pct(v, 99)
        if p50 is None or p99 is None:
            raise RuntimeError("no %s measured" % key)
        res[key] = {"p50": round(p50, 1), "p99": round(p99, 1),
                    "min": round(v[0], 1), "max": round(v[-1], 1), "n": len(v)}
        res[key.replace("_ms", "_minus_debounce_ms")] = {
            k: round(res[key][k] - debounce, 1) for k in ("p50", "p99", "min", "max")}
    res["samples_ms"] = {k: [round(x, 1) for x in out[k]] for k in out}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--trips", type=int, default=30)
    ap.add_argument("--debounce-ms", type=int, default=None,
                    help="override the config's zone debounce (default: as shipped)")
    ap.add_argument("--out", default=os.path.join(benchlib.RESULTS, "e2e_latency.json"))
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="gl-e2e-")
    logging.getLogger("receiver").setLevel(logging.ERROR)  # alarms are logged as warnings
    doc = {"benchmark": "zone trip on the simulated panel (firmware under MicroPython) -> "
                        "event committed at the receiver (subscription)",
           "command": "python bench/bench_e2e_latency.py " + " ".join(
               argv if argv is not None else sys.argv[1:]),
           "machine": benchlib.machine(), "when": benchlib.now_iso(),
           "loadavg_before": benchlib.loadavg()}
    doc.update(asyncio.run(run(a.trips, a.debounce_ms, tmp)))
    doc["loadavg_after"] = benchlib.loadavg()
    benchlib.write_json(a.out, doc)
    for key in ("trip_ms", "restore_ms"):
        r = doc[key]
        print("%-10s n=%d p50 %.0f ms, p99 %.0f ms (min %.0f, max %.0f); with the %d ms "
              "debounce taken off: p50 %.0f ms, p99 %.0f ms"
              % (key.replace("_ms", ""), r["n"], r["p50"], r["p99"], r["min"], r["max"],
                 doc["debounce_ms"], r["p50"] - doc["debounce_ms"],
                 r["p99"] - doc["debounce_ms"]))
    print("wrote %s" % a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
