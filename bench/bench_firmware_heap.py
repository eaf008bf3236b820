"""Panel firmware footprint: .mpy sizes, smallest MicroPython heap, what fills it.

The 32-zone / 4-partition bank panel (examples/bank.json, receiver moved to
a tiny in-process receiver) runs from the mpy-cross'd bundle under the
real MicroPython unix VM with ``-X heapsize=N``.  Workload: boot, arm all
four partitions, trip eight zones of every kind (burglary, hold-up,
panic, fire, seismic, tamper), cut the AC, disarm, and wait until the
receiver has ACKed every event.  A heap size passes if the panel never
raised MemoryError and every event arrived, in each of ``--repeat`` runs.
The smallest passing size is found by bisection (8 KiB steps).

``--panel van``: the cash-in-transit van (examples/van.json, a vehicle
unit, docs/mobile.md).  Workload: boot, drive examples/route_city.gpx
(replayed ten times faster on the sim's GNSS socket) until it leaves its
corridor (170), open the cash compartment out there (133), press the
hold-up button (122), trip the tilt sensor (174), jam the GPS with the
antenna input tripped (344), cut the main power (301), report positions
all along (POSITION track points, faster during the alarm), then restore
everything, and wait until the receiver has ACKed every event and every
track point.

``--protocol native`` (default) reports in Guardline's native protocol to
``testkit.tiny_receiver.TinyReceiver``; ``--protocol dc09`` in SIA DC-09
(ADM-CID, AES-256) to ``TinyDc09Receiver``, the same workload.

``--romfs`` runs the same bundle from a ROMFS image (``vfs.VfsRom``, what
``mpremote romfs deploy`` puts in a flash partition): the VM executes the
bytecode in place instead of copying it into the heap.  On the unix port
the image itself is a bytes object in the heap, so the figure that a board
needs is the smallest heap minus the image; on a board the image is in
flash, outside the heap.

Reported:
- mpy bundle size (sim, esp32, rp2 sets);
- min_heap_kib: smallest passing -X heapsize;
- live: gc.mem_alloc() right after gc.collect() at the end (what is
  really referenced);
- module_heap: what importing each module costs in the heap, in boot
  order, and code_heap, their sum (on the unix port .mpy bytecode and
  interned names live in the heap; frozen into a board's firmware or in a
  ROMFS partition the bytecode stays in flash), and live_data = live -
  code_heap, the panel's own data;
- qstr: micropython.qstr_info() after those imports (every name and
  short string is interned for good: even an unloaded module's stay).
The unix port is 64-bit: every object pointer is 8 bytes, twice an ESP32's
or RP2040's, so the figures overstate a 32-bit board's needs.

    .venv/bin/python bench/bench_firmware_heap.py [--panel bank|van] [--protocol native|dc09]
                                                  [--romfs] [--lo 64] [--hi 256] [--repeat 1]

Writes bench/results/firmware_heap[_van][_dc09][_romfs].json; docs/firmware.md
(and docs/mobile.md for the van) quote them.
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
from testkit import vm  # noqa: E402
from testkit.configs import TEST_DC09_ACCOUNT, TEST_KEY, example_config, van_config  # noqa: E402
from testkit.panel import PanelProcess  # noqa: E402
from testkit.tiny_receiver import TinyDc09Receiver, TinyReceiver  # noqa: E402

TRIPS = [6, 17, 23, 31, 2, 15, 29, 11]  # safe deposit PIR, hold-up, panic, fire, seismic, ...
DC09_ACCOUNT = TEST_DC09_ACCOUNT
KEY = TEST_KEY  # AES-256 for DC-09 (the unix port has no AES-192)

# Modules in the order app.py imports them (config is imported first and
# unloaded before the rest; its cost is shown but not in code_heap).
COMMON = ("fwutil", "hal", "board_sim", "app", "eol", "cid", "arming", "users", "panel",
          "pqueue", "seqstore", "clock", "links")
BY_PROTOCOL = {"native": ("glwire", "glpanel", "reporter"), "dc09": ("gldc09", "dc09rep")}
SIM = ("control", "simctl")
# a vehicle unit's, in the order panel.py and app.py import them
VEHICLE = ("geo", "nmea", "vehicle", "vunit", "trackq", "simgps")  # simgps: the sim board's GNSS
ROUTE = ROOT / "examples" / "route_city.gpx"
VAN_CODES = (170, 133, 122, 174, 344, 301)  # what the van workload must deliver


def bank_config(port: int, protocol: str = "native") -> dict:
    cfg = example_config("bank", port, protocol, exit_delay_s=0, debounce_ms=50,
                         ac_loss_delay_s=0, ack_timeout_ms=1000)
    # the vault's time lock would refuse the disarm outside office hours
    for p in cfg["partitions"]:
        p.pop("time_lock", None)
    return cfg


def van_workload(p, rx, protocol: str) -> None:
    """The van's part of a run (see the module's docstring)."""
    from protocol.lean import glwire as w

    p.wait(lambda: rx.find(305), timeout=20, what="boot")
    p.drive(str(ROUTE), 10)
    p.wait(lambda: rx.find(170), timeout=60, what="170 off the corridor")
    for z in (1, 6, 9):  # compartment, hold-up button, tilt
        p.ctl({"cmd": "zone", "zone": z, "state": "alarm"})
    p.ctl({"cmd": "gps", "jam": True, "antenna": True})
    p.ctl({"cmd": "ac", "on": False})
    p.wait(lambda: all(rx.find(c) for c in VAN_CODES), timeout=60, what="alarms")
    for z in (1, 6, 9):
        p.ctl({"cmd": "zone", "zone": z, "state": "normal"})
    p.ctl({"cmd": "gps", "jam": False, "antenna": False})
    p.ctl({"cmd": "ac", "on": True})
    p.wait(lambda: rx.find(344, w.Q_RESTORE) and rx.find(301, w.Q_RESTORE), timeout=60,
           what="restores")
    if protocol == "native":
        p.wait(lambda: len(rx.of_type(w.MSG_POSITION)) >= 5, timeout=60, what="track points")

    def drained():
        r = p.ctl({"cmd": "state", "brief": True})["reporter"]
        return r["queue"] == 0 and (r["track"] is None or r["track"]["queued"] == 0)
    p.wait(drained, timeout=60, what="queue and track drained")


def receiver(protocol: str):
    if protocol == "dc09":
        return TinyDc09Receiver(DC09_ACCOUNT, KEY)
    return TinyReceiver(4242, KEY)


def bank_workload(p, rx) -> None:
    """The bank's part of a run (see the module's docstring)."""
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


def workload(bundle: str, heap_kib: int, tmp: str, protocol: str = "native",
             panel: str = "bank") -> dict:
    rx = receiver(protocol)
    state = os.path.join(tmp, "h%d-%d" % (heap_kib, time.monotonic_ns()))
    cfg = van_config(rx.port, protocol, {"ack_timeout_ms": 1000}) if panel == "van" else \
        bank_config(rx.port, protocol)
    p = PanelProcess(cfg, state, heapsize="%dk" % heap_kib, bundle=bundle)
    out = {"heap_kib": heap_kib, "ok": False}
    try:
        if panel == "van":
            van_workload(p, rx, protocol)
        else:
            bank_workload(p, rx)
        st = p.ctl({"cmd": "state", "brief": True})
        live = p.ctl({"cmd": "gc"})
        out.update(ok="MemoryError" not in p.console(), mem_min_free=st["mem_min_free"],
                   live_after_gc=live["mem_alloc"], events=len(rx.event_list()),
                   positions=len(rx.of_type(0x04)) if protocol == "native" else 0)  # POSITION
    except (AssertionError, RuntimeError, TimeoutError, OSError) as e:
        out["error"] = str(e).splitlines()[0][:200]
    finally:
        console = p.console()
        p.close()
        rx.close()
    m = re.search(r"MemoryError.*", console)
    if m:
        out["ok"] = False
        out["error"] = m.group(0)
    return out


# --- ROMFS -----------------------------------------------------------------------------

ROM_MAIN = '''# bench: main.py that runs the bundle from a ROMFS image (vfs.VfsRom)
import sys
import vfs
with open(%r, "rb") as f:
    _image = f.read()  # on a board: a flash partition, not the heap
vfs.mount(vfs.VfsRom(_image), "/rom")
sys.path.insert(0, "/rom")
import hal
import app
board = hal.board()
code = app.run(board)
if code:
    board.exit(code)
'''


def romfs_bundle(bundle: str, out: str) -> int:
    """A directory whose main.py mounts a ROMFS image of `bundle`'s .mpy
    files and boots from it; returns the image size."""
    try:
        from mpremote.romfs import VfsRomWriter
    except ImportError:
        sys.exit("--romfs needs mpremote (pip install mpremote)")
    w = VfsRomWriter()
    for name in sorted(os.listdir(bundle)):
        if name.endswith(".mpy"):
            with open(os.path.join(bundle, name), "rb") as f:
                w.mkfile(name, f.read())
    image = w.finalise()
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "rom.img")
    with open(path, "wb") as f:
        f.write(image)
    with open(os.path.join(out, "main.py"), "w") as f:
        f.write(ROM_MAIN % path)
    return len(image)


# --- what importing costs --------------------------------------------------------------

PROBE = r"""
import gc, sys, micropython
ROM = %r
if ROM:
    import vfs
    with open(ROM, "rb") as f:
        image = f.read()
    vfs.mount(vfs.VfsRom(image), "/rom")
    sys.path.insert(0, "/rom")
import asyncio, json  # frozen / built in: not the firmware's
gc.collect()
prev = gc.mem_alloc()
micropython.qstr_info()
for n in %r:
    __import__(n)
    if n == "config":
        del sys.modules["config"]  # as app.py does
    gc.collect()
    a = gc.mem_alloc()
    print("MOD", n, a - prev)
    micropython.qstr_info()
    prev = a
"""


def module_heap(path: str, modules, rom: str = "") -> dict:
    env = dict(os.environ, MICROPYPATH=path + os.pathsep + ".frozen")
    # cwd: `-c` puts "" (the cwd) on sys.path; in the repository root the
    # VM would find the protocol/ package and load a second glwire from
    # source, as the firmware on a board or the sim never does
    r = subprocess.run([vm.micropython(), "-X", "heapsize=2m", "-c",
                        PROBE % (rom, ("config",) + tuple(modules))],
                       env=env, capture_output=True, text=True, check=True, cwd=path)
    mods = {}
    qstr = {}
    last = None
    pools = 0  # qstr pool bytes: interned names, allocated as pools grow
    for line in r.stdout.splitlines():
        if line.startswith("MOD "):
            _, last, b = line.split()
            mods[last] = {"heap": int(b)}
        elif line.startswith("qstr pool:"):
            qstr = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
            if last is not None:
                mods[last]["qstr_pools"] = qstr["n_total_bytes"] - pools
                mods[last]["qstrs"] = qstr["n_qstr"] - n_qstr
            pools = qstr["n_total_bytes"]
            n_qstr = qstr["n_qstr"]
    return {"modules": mods, "qstr": qstr}


def find_min(bundle: str, tmp: str, a) -> tuple[dict, list]:
    runs = []

    def passes(kib):
        rs = []
        for _ in range(a.repeat):
            r = workload(bundle, kib, tmp, a.protocol, a.panel)
            runs.append(r)
            print(r, flush=True)
            rs.append(r)
            if not r["ok"]:
                return False, r
        return True, rs[-1]

    ok, best = passes(a.lo)
    if ok:
        return best, runs
    lo, hi = a.lo, a.hi
    ok, best = passes(hi)
    if not ok:
        sys.exit("fails even at %d KiB" % hi)
    while hi - lo > 8:
        mid = (lo + hi) // 2 // 8 * 8
        ok, r = passes(mid)
        if ok:
            hi, best = mid, r
        else:
            lo = mid
    return best, runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--panel", choices=("bank", "van"), default="bank")
    ap.add_argument("--protocol", choices=("native", "dc09"), default="native")
    ap.add_argument("--romfs", action="store_true",
                    help="run the bundle from a ROMFS image (bytecode executed in place)")
    ap.add_argument("--lo", type=int, default=64, help="KiB, first size tried")
    ap.add_argument("--hi", type=int, default=256, help="KiB, must pass")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per heap size; a size passes only if all pass")
    a = ap.parse_args()
    modules = COMMON + (VEHICLE if a.panel == "van" else ()) + BY_PROTOCOL[a.protocol] + SIM
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for board in ("sim", "esp32", "rp2"):
            s = fwbuild.build(os.path.join(tmp, "b-" + board), board)
            sizes[board] = {"total": sum(s.values()), "files": s}
        bundle = os.path.join(tmp, "b-sim")
        image = 0
        run_from = bundle
        rom = ""
        if a.romfs:
            run_from = os.path.join(tmp, "rom")
            image = romfs_bundle(bundle, run_from)
            rom = os.path.join(run_from, "rom.img")
        modules = [m for m in modules if os.path.exists(os.path.join(bundle, m + ".mpy"))]
        probe = module_heap(bundle if not a.romfs else run_from, modules, rom)
        code = sum(v["heap"] for k, v in probe["modules"].items() if k != "config")
        t0 = time.monotonic()
        best, runs = find_min(run_from, tmp, a)
        result = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.machine(), "python": platform.python_version(),
            "micropython": subprocess.run([vm.micropython(), "-c",
                                           "import sys;print(sys.version)"],
                                          capture_output=True, text=True).stdout.strip(),
            "panel": a.panel, "protocol": a.protocol, "romfs": a.romfs, "repeat": a.repeat,
            "mpy_bytes": {b: sizes[b]["total"] for b in sizes},
            "mpy_files_sim": sizes["sim"]["files"],
            "min_heap_kib": best["heap_kib"],
            "romfs_image_bytes": image,
            "min_heap_beyond_image_kib": round((best["heap_kib"] * 1024 - image) / 1024, 1),
            "live_bytes_after_workload": best["live_after_gc"] - image,
            "module_heap_bytes": probe["modules"],
            "code_heap_bytes": code,
            "live_data_bytes": best["live_after_gc"] - image - code,
            "qstr": probe["qstr"],
            "runs": runs,
            "seconds": round(time.monotonic() - t0, 1),
        }
    name = "firmware_heap" + ("_van" if a.panel == "van" else "") + \
        ("_dc09" if a.protocol == "dc09" else "") + \
        ("_romfs" if a.romfs else "") + ".json"
    out = ROOT / "bench" / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "mpy_files_sim")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
