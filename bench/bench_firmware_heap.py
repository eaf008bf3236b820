"""Panel firmware footprint: .mpy sizes, smallest MicroPython heap, peak use.

The 32-zone / 4-partition bank panel (examples/bank.json, receiver moved to
a tiny in-process receiver) runs from the mpy-cross'd bundle under the
real MicroPython unix VM with ``-X heapsize=N``.  Workload: boot, arm all
four partitions, trip eight zones of every kind (burglary, hold-up,
panic, fire, seismic, tamper), cut the AC, disarm, and wait until the
receiver has ACKed every event.  A heap size passes if the panel never
raised MemoryError and every event arrived.  The smallest passing size is
found by bisection (8 KiB steps).

Reported:
- mpy bundle size (sim, esp32, rp2 sets);
- min_heap_kib: smallest passing -X heapsize;
- peak_used: heap size minus the lowest gc.mem_free() the scan task saw
  at the smallest passing heap (sampled every scan; garbage not yet
  collected counts as used, so this is what the heap must hold);
- live: gc.mem_alloc() right after gc.collect() at the end (what is
  really referenced);
- code_heap: what importing the bundle's modules costs in the heap (on
  the unix port .mpy bytecode and interned names live in the heap; frozen
  into a board's firmware or in a ROMFS partition they stay in flash), and
  live_data = live - code_heap, the part a frozen build still needs.
The unix port is 64-bit: every object pointer is 8 bytes, twice an ESP32's
or RP2040's, so the figures overstate a 32-bit board's needs.

    .venv/bin/python bench/bench_firmware_heap.py [--lo 64] [--hi 256]

Writes bench/results/firmware_heap.json; docs/firmware.md quotes it.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware import build as fwbuild  # noqa: E402
from firmware import sim as fwsim  # noqa: E402
from firmware.testing import SimPanel, TinyReceiver  # noqa: E402
from protocol.lean import glwire as w  # noqa: E402

TRIPS = [6, 17, 23, 31, 2, 15, 29, 11]  # safe deposit PIR, hold-up, panic, fire, seismic, ...


def bank_config(port: int) -> dict:
    with open(ROOT / "examples" / "bank.json") as f:
        cfg = json.load(f)
    cfg["account"] = 4242
    cfg["key"] = bytes(range(32)).hex()
    for p in ("primary", "backup"):
        cfg["receiver"][p]["port"] = port
    cfg["timings"].update({"exit_delay_s": 0, "debounce_ms": 50, "ac_loss_delay_s": 0,
                           "ack_timeout_ms": 1000})
    # the vault's time lock would refuse the disarm outside office hours
    for p in cfg["partitions"]:
        p.pop("time_lock", None)
    return cfg


def workload(bundle: str, heap_kib: int, tmp: str) -> dict:
    rx = TinyReceiver(4242)
    state = os.path.join(tmp, "h%d" % heap_kib)
    p = SimPanel(bank_config(rx.port), state, heapsize="%dk" % heap_kib, bundle=bundle)
    out = {"heap_kib": heap_kib, "ok": False}
    try:
        p.wait(lambda: rx.find(305), timeout=20, what="boot")
        for part in (1, 2, 3, 4):
            r = p.ctl({"cmd": "key", "code": "1234", "action": "arm_away", "partition": part})
            assert r.get("result_name") == "ok", r
        for z in TRIPS:
            p.ctl({"cmd": "zone", "zone": z, "state": "alarm"})
        p.ctl({"cmd": "ac", "on": False})
        p.wait(lambda: len(rx.find(130) + rx.find(122) + rx.find(120) + rx.find(110)) >= 4
               and rx.find(301), timeout=30, what="alarms")
        for z in TRIPS:
            p.ctl({"cmd": "zone", "zone": z, "state": "normal"})
        for part in (1, 2, 3, 4):
            p.ctl({"cmd": "key", "code": "1234", "action": "disarm", "partition": part})
        p.wait(lambda: p.ctl({"cmd": "state", "brief": True})["reporter"]["queue"] == 0
               and len(rx.find(401)) >= 4, timeout=60, what="queue drained")
        st = p.ctl({"cmd": "state", "brief": True})
        live = p.ctl({"cmd": "gc"})
        out.update(ok="MemoryError" not in p.console(), mem_min_free=st["mem_min_free"],
                   live_after_gc=live["mem_alloc"], events=len(rx.event_list()))
    except (AssertionError, RuntimeError, TimeoutError, OSError) as e:
        out["error"] = str(e).splitlines()[0][:200]
        m = re.search(r"MemoryError.*", p.console())
        if m:
            out["error"] = m.group(0)
    finally:
        p.close()
        rx.close()
    return out


PROBE = r"""
import gc, sys
gc.collect()
a = gc.mem_alloc()
for n in ("fwutil", "eol", "cid", "arming", "users", "glwire", "panel", "pqueue",
          "seqstore", "clock", "glpanel", "reporter", "links", "hal", "board_sim", "app"):
    __import__(n)
gc.collect()
print(gc.mem_alloc() - a)
"""


def code_heap(bundle: str) -> int:
    env = dict(os.environ, MICROPYPATH=bundle + os.pathsep + ".frozen")
    r = subprocess.run([fwsim.micropython(), "-X", "heapsize=1m", "-c", PROBE], env=env,
                       capture_output=True, text=True, check=True)
    return int(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lo", type=int, default=64, help="KiB, first size tried")
    ap.add_argument("--hi", type=int, default=256, help="KiB, must pass")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for board in ("sim", "esp32", "rp2"):
            s = fwbuild.build(os.path.join(tmp, "b-" + board), board)
            sizes[board] = {"total": sum(s.values()), "files": s}
        bundle = os.path.join(tmp, "b-sim")
        code = code_heap(bundle)
        runs = []
        t0 = time.monotonic()
        first = workload(bundle, a.lo, tmp)
        runs.append(first)
        print(first)
        best = first if first["ok"] else None
        lo, hi = a.lo, a.hi
        if not first["ok"]:
            top = workload(bundle, hi, tmp)
            runs.append(top)
            print(top)
            if not top["ok"]:
                print("fails even at %d KiB" % hi)
                return 1
            best = top
            while hi - lo > 8:
                mid = (lo + hi) // 2 // 8 * 8
                r = workload(bundle, mid, tmp)
                runs.append(r)
                print(r)
                if r["ok"]:
                    hi, best = mid, r
                else:
                    lo = mid
        heap = best["heap_kib"] * 1024
        peak = heap - best["mem_min_free"]
        result = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.machine(), "python": platform.python_version(),
            "micropython": subprocess.run([fwsim.micropython(), "-c", "import sys;print(sys.version)"],
                                          capture_output=True, text=True).stdout.strip(),
            "mpy_bytes": {b: sizes[b]["total"] for b in sizes},
            "mpy_files_sim": sizes["sim"]["files"],
            "min_heap_kib": best["heap_kib"],
            "peak_used_bytes_at_min_heap": peak,
            "live_bytes_after_workload": best["live_after_gc"],
            "code_heap_bytes": code,
            "live_data_bytes": best["live_after_gc"] - code,
            "runs": runs,
            "seconds": round(time.monotonic() - t0, 1),
        }
    out = ROOT / "bench" / "results" / "firmware_heap.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "mpy_files_sim")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
