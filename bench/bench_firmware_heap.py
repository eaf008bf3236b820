"""Panel firmware footprint: .mpy sizes, smallest MicroPython heap, what fills it,
what the steady state allocates.

``--panel bank`` (default): the 32-zone / 4-partition bank panel
(examples/bank.json); ``--panel door``: the door controller
(examples/door.json).  The receiver is moved to a tiny in-process
receiver; the panel runs from the mpy-cross'd bundle under the real
MicroPython unix VM with ``-X heapsize=N``.  Workload: boot, arm every
partition, trip zones of every kind the panel has (bank: burglary,
hold-up, panic, fire, seismic, tamper; door: forced door, panic, fire,
lock tamper), cut the AC, disarm, and wait until the receiver has ACKed
every event.  A heap size passes if the panel never raised MemoryError
and every event arrived, in each of ``--repeat`` runs.  The smallest
passing size is found by bisection (``--step`` KiB, 8 by default).

``--panel van``: the cash-in-transit van (examples/van.json, a vehicle
unit, docs/mobile.md).  Workload: boot, drive examples/route_city.gpx
(replayed ten times faster on the sim's GNSS socket) until it leaves its
corridor (170), open the cash compartment out there (133), press the
hold-up button (122), trip the tilt sensor (174), jam the GPS with the
antenna input tripped (344), cut the main power (301), report positions
all along (POSITION track points, faster during the alarm), then restore
everything, and wait until the receiver has ACKed every event and every
track point.  The allocation figures (below) are the fixed panels'
only: the van is not measured with them.

``--protocol native`` (default) reports in Guardline's native protocol to
``testkit.tiny_receiver.TinyReceiver``; ``--protocol dc09`` in SIA DC-09
(ADM-CID, AES-256) to ``TinyDc09Receiver``, the same workload.

``--romfs`` runs the same bundle from a ROMFS image (``vfs.VfsRom``, what
``mpremote romfs deploy`` puts in a flash partition): the VM executes the
bytecode in place instead of copying it into the heap.  On the unix port
the image itself is a bytes object in the heap, so the figure that a board
needs is the smallest heap minus the image; on a board the image is in
flash, outside the heap.

``--micropython PATH`` runs everything under another build of the
MicroPython unix port (e.g. a 32-bit one, whose small ints are 31-bit
and whose pointers are 4 bytes, as on an ESP32 or RP2040); by default
``$GUARDLINE_MICROPYTHON``, else the project's VM.  The JSON records the
VM's version and word size, and the file name carries ``_32bit`` for a
32-bit VM.  ``--micropython``, ``--panel`` and ``--protocol`` may each be
given more than once: every combination is measured on every VM in turn
(``--both``: with ``.mpy`` files in the heap and from ROMFS), and the
figures are printed side by side, one column per VM word size
(``--table`` prints that table from the results already stored).
Compile with the project's mpy-cross either way: the bytecode format is
the VM's version, not its word size.

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
  short string is interned for good: even an unloaded module's stay);
- alloc: what the steady state allocates (micropython.mem_total(), every
  byte handed out, freed again at once or not), from tests/vm_app_rig.py
  running the real app on the same bundle: per scan cycle (disarmed,
  armed, clock set past 2038), per report poll (idle, and an event
  waiting for its ACK) with the garbage it leaves, and per event
  reported (queued, sent, ACKed by the tiny receiver over real sockets);
  and the peak live heap of that run (gc.mem_alloc() after every scan and
  poll, the GC collecting every kilobyte: the app alone, no control
  protocol; the boot's own peak, config parsing, is not sampled).

    .venv/bin/python bench/bench_firmware_heap.py [--panel bank|door|van ...] [--protocol native|dc09 ...]
                                                  [--romfs | --both] [--micropython PATH ...]
                                                  [--lo 64] [--hi 256] [--step 8] [--repeat 1]
    .venv/bin/python bench/bench_firmware_heap.py --table

Writes bench/results/firmware_heap[_door|_van][_dc09][_romfs][_32bit].json;
docs/firmware.md (and docs/mobile.md for the van) quote them.
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
from testkit.app_rig import AppRig  # noqa: E402
from testkit.configs import TEST_DC09_ACCOUNT, TEST_KEY, example_config, van_config  # noqa: E402
from testkit.panel import PanelProcess  # noqa: E402
from testkit.tiny_receiver import TinyDc09Receiver, TinyReceiver  # noqa: E402
from testkit.vm import MICROPYTHON_ENV as VM_ENV  # noqa: E402  (the VM every panel and probe runs on)
from testkit.vm import micropython as vm  # noqa: E402  ($GUARDLINE_MICROPYTHON first)

DC09_ACCOUNT = TEST_DC09_ACCOUNT
KEY = TEST_KEY  # AES-256 for DC-09 (the unix port has no AES-192)
ROUTE = ROOT / "examples" / "route_city.gpx"


class Workload:
    """What one fixed panel does in a run (see the module's docstring):
    the zones tripped (ids), the alarm codes that must arrive before the
    disarm."""

    modules = ()  # what it loads beyond COMMON, its protocol's and SIM
    alloc = True  # allocation() measures it

    def __init__(self, example, trips, codes):
        self.example = example
        self.trips = trips
        self.codes = codes

    def config(self, port: int, protocol: str) -> dict:
        cfg = example_config(self.example, port, protocol, exit_delay_s=0, debounce_ms=50,
                             ac_loss_delay_s=0, ack_timeout_ms=1000)
        # the vault's time lock would refuse the disarm outside office hours
        for p in cfg["partitions"]:
            p.pop("time_lock", None)
        return cfg

    def run(self, p, rx, cfg, protocol: str) -> dict:
        """The workload on PanelProcess `p` reporting to `rx`; what the
        result records beyond the heap."""
        parts = [q["id"] for q in cfg["partitions"]]
        p.wait(lambda: rx.find(305), timeout=20, what="boot")
        for part in parts:
            r = p.ctl({"cmd": "key", "code": "1234", "action": "arm_away", "partition": part})
            assert r.get("result_name") == "ok", r
        for z in self.trips:
            p.ctl({"cmd": "zone", "zone": z, "state": "alarm"})
        p.ctl({"cmd": "ac", "on": False})
        p.wait(lambda: sum(len(rx.find(c)) > 0 for c in self.codes) == len(self.codes)
               and rx.find(301), timeout=30, what="alarms")
        for z in self.trips:
            p.ctl({"cmd": "zone", "zone": z, "state": "normal"})
        for part in parts:
            p.ctl({"cmd": "key", "code": "1234", "action": "disarm", "partition": part})
        # the openings are the last events the workload queues: once they
        # are in, the queue has drained (asked of the receiver: the panel's
        # `state` reply is a kilobyte the alarm path never needs)
        p.wait(lambda: len(rx.find(401)) >= len(parts), timeout=60, what="queue drained")
        return {}


class VanWorkload(Workload):
    """The van's run (see the module's docstring): the codes that must
    arrive, the zones tripped (compartment, hold-up button, tilt)."""

    # a vehicle unit's, in the order panel.py and app.py import them
    modules = ("geo", "nmea", "vehicle", "vunit", "trackq", "simgps")  # simgps: the sim's GNSS
    alloc = False

    def config(self, port: int, protocol: str) -> dict:
        return van_config(port, protocol, {"ack_timeout_ms": 1000})

    def run(self, p, rx, cfg, protocol: str) -> dict:
        from protocol.lean import glwire as w

        p.wait(lambda: rx.find(305), timeout=20, what="boot")
        p.drive(str(ROUTE), 10)
        p.wait(lambda: rx.find(170), timeout=60, what="170 off the corridor")
        for z in self.trips:
            p.ctl({"cmd": "zone", "zone": z, "state": "alarm"})
        p.ctl({"cmd": "gps", "jam": True, "antenna": True})
        p.ctl({"cmd": "ac", "on": False})
        p.wait(lambda: all(rx.find(c) for c in self.codes), timeout=60, what="alarms")
        for z in self.trips:
            p.ctl({"cmd": "zone", "zone": z, "state": "normal"})
        p.ctl({"cmd": "gps", "jam": False, "antenna": False})
        p.ctl({"cmd": "ac", "on": True})
        p.wait(lambda: rx.find(344, w.Q_RESTORE) and rx.find(301, w.Q_RESTORE), timeout=60,
               what="restores")
        if protocol == "native":
            p.wait(lambda: len(rx.of_type(w.MSG_POSITION)) >= 5, timeout=60,
                   what="track points")

        # the track ring's depth is the panel's to say (the receiver
        # cannot know the points still queued)
        def drained():
            r = p.ctl({"cmd": "state", "brief": True})["reporter"]
            return r["queue"] == 0 and (r["track"] is None or r["track"]["queued"] == 0)
        p.wait(drained, timeout=60, what="queue and track drained")
        return {"positions": len(rx.of_type(w.MSG_POSITION)) if protocol == "native" else 0}


PANELS = {
    # safe deposit PIR, hold-up, panic, fire, seismic, ...
    "bank": Workload("bank", [6, 17, 23, 31, 2, 15, 29, 11], (130, 122, 120, 110)),
    # forced door, lock tamper, panic, fire
    "door": Workload("door", [1, 3, 6, 5], (423, 120, 110)),
    # off the corridor, compartment, hold-up, tilt, GPS jammed, main power
    "van": VanWorkload("van", [1, 6, 9], (170, 133, 122, 174, 344, 301)),
}

# Modules in the order app.py imports them (config is imported first and
# unloaded before the rest; its cost is shown but not in code_heap).
COMMON = ("fwutil", "hal", "board_sim", "app", "eol", "cid", "arming", "users", "door", "panel",
          "pqueue", "seqstore", "clock", "links")
BY_PROTOCOL = {"native": ("glwire", "glpanel", "failover", "reporter"),
               "dc09": ("gldc09", "failover", "dc09rep")}
SIM = ("control", "simctl")


def vm_info() -> dict:
    r = subprocess.run([vm(), "-c", "import sys;print(sys.maxsize);print(sys.version)"],
                       capture_output=True, text=True, check=True)
    maxsize, version = r.stdout.splitlines()[:2]
    return {"path": vm(), "version": version, "maxsize": int(maxsize),
            "word_bits": 32 if int(maxsize) < 2 ** 32 else 64}


def panel_config(panel: str, port: int, protocol: str = "native") -> dict:
    return PANELS[panel].config(port, protocol)


def receiver(protocol: str):
    if protocol == "dc09":
        return TinyDc09Receiver(DC09_ACCOUNT, KEY)
    return TinyReceiver(4242, KEY)


def workload(bundle: str, heap_kib: int, tmp: str, protocol: str = "native",
             panel: str = "bank") -> dict:
    rx = receiver(protocol)
    wl = PANELS[panel]
    cfg = wl.config(rx.port, protocol)
    state = os.path.join(tmp, "h%d-%d" % (heap_kib, time.monotonic_ns()))
    # the VM alone (a run never power-cycles), on the VM under test
    p = PanelProcess(cfg, state, heapsize="%dk" % heap_kib, bundle=bundle, supervised=False)
    out = {"heap_kib": heap_kib, "ok": False}
    try:
        more = wl.run(p, rx, cfg, protocol)
        live = p.ctl({"cmd": "gc"})
        if "mem_min_free" not in live:  # firmware before the gc reply carried it
            live["mem_min_free"] = p.ctl({"cmd": "state", "brief": True})["mem_min_free"]
        out.update(ok="MemoryError" not in p.console(), mem_min_free=live["mem_min_free"],
                   live_after_gc=live["mem_alloc"], events=len(rx.event_list()), **more)
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
    r = subprocess.run([vm(), "-X", "heapsize=2m", "-c",
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
    while hi - lo > a.step:
        mid = (lo + hi) // 2 // a.step * a.step
        ok, r = passes(mid)
        if ok:
            hi, best = mid, r
        else:
            lo = mid
    return best, runs


# --- what the steady state allocates ----------------------------------------------------


CYCLES = 400  # 20 s of panel time at scan_ms 50
EVENTS = 32
POLLS = 200
AFTER_2038 = 2240000000  # 2040-12-26, past 2**31
PEAK_GC = 1024  # gc.threshold in the rig: the peak sampled holds at most this much garbage


def allocation(bundle: str, tmp: str, a) -> dict:
    """Bytes allocated (micropython.mem_total()) per scan cycle in three
    steady states (disarmed; clock set past 2038; armed), per report poll
    (idle; an event waiting for its ACK) and the garbage they leave, and
    per event reported (queued, sent, ACKed by the tiny receiver over real
    sockets, whatever the polls in between allocated)."""
    rx = receiver(a.protocol)
    cfg = panel_config(a.panel, rx.port, a.protocol)
    with open(ROOT / "examples" / (PANELS[a.panel].example + ".json")) as f:
        tl = {p["id"]: p["time_lock"] for p in json.load(f)["partitions"] if "time_lock" in p}
    for p in cfg["partitions"]:  # the time lock is checked every scan: keep it in
        if p["id"] in tl:
            p["time_lock"] = tl[p["id"]]
    d = os.path.join(tmp, "rig")
    os.makedirs(d)
    out = {}
    try:
        with AppRig(bundle, vm()) as r:
            r(op="boot", dir=d, cfg=cfg, rx="127.0.0.1:%d" % rx.port, threshold=PEAK_GC)
            out["report_boot"] = r(op="report", events=0)  # HELLO, 305 ... ACKed
            out["scan_disarmed"] = r(op="scan", cycles=CYCLES)
            r(op="clock", unix=AFTER_2038)
            out["scan_clock_2040"] = r(op="scan", cycles=CYCLES)
            for p in cfg["partitions"]:
                r(op="key", code="1234", action="arm_away", partition=p["id"])
            r(op="scan", cycles=20)  # exit delay 0: armed, closings queued
            out["scan_armed"] = r(op="scan", cycles=CYCLES)
            out["report_closings"] = r(op="report", events=0)
            out["poll_idle"] = r(op="poll", polls=POLLS)
            rx.ack = False
            out["poll_waiting"] = r(op="poll", polls=POLLS, events=1)
            rx.ack = True
            r(op="report", events=0)
            out["report"] = r(op="report", events=EVENTS)
            r(op="report", events=EVENTS, peak=True)
            out["peak"] = r(op="peak")
    finally:
        rx.close()
    scans = ("scan_disarmed", "scan_clock_2040", "scan_armed")
    rep = out["report"]
    return {"per_scan_cycle": {k: out[k]["alloc"] / CYCLES for k in scans},
            "per_report_poll": {k: {"alloc": out[k]["alloc"] / POLLS,
                                    "garbage": out[k]["garbage"] / POLLS}
                                for k in ("poll_idle", "poll_waiting")},
            "per_event_reported": {"alloc": round(rep["alloc"] / max(rep["delivered"], 1)),
                                   "garbage": round(rep["garbage"] / max(rep["delivered"], 1))},
            "events_reported": rep["delivered"], "report_polls": rep["polls"],
            "peak_live_bytes": out["peak"]["peak"], "live_bytes": out["peak"]["live"],
            "raw": out}


def measure(a, panel: str, protocol: str, romfs: bool) -> dict:
    """One configuration on the VM $GUARDLINE_MICROPYTHON names: the
    result, also written to bench/results/ (the file name says the panel,
    protocol, ROMFS and, for a 32-bit VM, _32bit)."""
    a = argparse.Namespace(**{**vars(a), "panel": panel, "protocol": protocol, "romfs": romfs})
    info = vm_info()
    print("VM: %s (%s, %d-bit): %s, %s%s" % (info["path"], info["version"], info["word_bits"],
                                            panel, protocol, ", ROMFS" if romfs else ""),
          flush=True)
    wl = PANELS[panel]
    modules = COMMON + wl.modules + BY_PROTOCOL[a.protocol] + SIM
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
        if a.panel != "door":
            modules = [m for m in modules if m != "door"]  # a bank never loads it
        probe = module_heap(bundle if not a.romfs else run_from, modules, rom)
        code = sum(v["heap"] for k, v in probe["modules"].items() if k != "config")
        alloc = None if a.no_alloc or not wl.alloc else allocation(bundle, tmp, a)
        t0 = time.monotonic()
        best, runs = find_min(run_from, tmp, a)
        result = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.machine(), "python": platform.python_version(),
            "micropython": info["version"], "vm": info,
            "panel": a.panel, "protocol": a.protocol, "romfs": a.romfs, "repeat": a.repeat,
            "step_kib": a.step,
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
            "alloc": alloc,
            "runs": runs,
            "seconds": round(time.monotonic() - t0, 1),
        }
    out = ROOT / "bench" / "results" / result_name(panel, protocol, romfs, info["word_bits"])
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items()
                      if k not in ("runs", "mpy_files_sim", "module_heap_bytes", "alloc")},
                     indent=1))
    print("wrote", out, flush=True)
    return result


def result_name(panel: str, protocol: str, romfs: bool, word_bits: int) -> str:
    return "firmware_heap" + ("" if panel == "bank" else "_" + panel) + \
        ("_dc09" if protocol == "dc09" else "") + ("_romfs" if romfs else "") + \
        ("_32bit" if word_bits == 32 else "") + ".json"


def _kib(b) -> str:
    return "%.1f" % (b / 1024)


# The side-by-side table: (heading, what of a configuration's results)
COLUMNS = (
    ("smallest heap, .mpy in the heap (KiB)", lambda r, rom: str(r["min_heap_kib"])),
    ("smallest heap beyond a ROMFS image (KiB)",
     lambda r, rom: "-" if rom is None else "%.1f" % rom["min_heap_beyond_image_kib"]),
    ("live after the workload (KiB)", lambda r, rom: _kib(r["live_bytes_after_workload"])),
    ("of it bytecode and names (KiB)", lambda r, rom: _kib(r["code_heap_bytes"])),
    ("of it the panel's data (KiB)", lambda r, rom: _kib(r["live_data_bytes"])),
    ("peak live, app alone (KiB)",
     lambda r, rom: "-" if not r.get("alloc") else _kib(r["alloc"]["peak_live_bytes"])),
    ("allocated per scan (B)",
     lambda r, rom: "-" if not r.get("alloc") else
     "%g" % max(r["alloc"]["per_scan_cycle"].values())),
    ("allocated per idle report poll (B)",
     lambda r, rom: "-" if not r.get("alloc") else
     "%g" % r["alloc"]["per_report_poll"]["poll_idle"]["alloc"]),
)


NAMES = {"bank": "bank panel (4 partitions, 32 zones)", "door": "door controller",
         "van": "cash-in-transit van (vehicle unit)"}


def table(results: dict) -> str:
    """The figures side by side, one column per VM word size, one block of
    rows per configuration: `results` maps (panel, protocol, romfs,
    word_bits) to a result."""
    bits = sorted({k[3] for k in results}, reverse=True)
    confs = []
    for panel, protocol, romfs, _b in sorted(results):
        if not romfs and (panel, protocol) not in confs:
            confs.append((panel, protocol))
    lines = ["| %s | figure | %s |" % ("panel", " | ".join("%d-bit VM" % b for b in bits)),
             "|---|---|%s" % ("---:|" * len(bits))]
    for panel, protocol in confs:
        what = "%s, %s" % (NAMES[panel], "native" if protocol == "native" else "DC-09")
        for heading, get in COLUMNS:
            cells = []
            for b in bits:
                r = results.get((panel, protocol, False, b))
                rom = results.get((panel, protocol, True, b))
                cells.append("-" if r is None else get(r, rom))
            lines.append("| %s | %s | %s |" % (what, heading, " | ".join(cells)))
            what = ""
    return "\n".join(lines)


def stored() -> dict:
    """Every result in bench/results/ (firmware_heap*.json), by
    (panel, protocol, romfs, word_bits)."""
    out = {}
    for f in sorted((ROOT / "bench" / "results").glob("firmware_heap*.json")):
        r = json.loads(f.read_text())
        if "vm" not in r:
            continue  # from before the VM was recorded
        k = (r.get("panel", "bank"), r["protocol"], r["romfs"], r["vm"]["word_bits"])
        if f.name == result_name(*k):
            out[k] = r
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--panel", choices=tuple(PANELS), action="append",
                    help="bank (default), door or van; give it more than once for each")
    ap.add_argument("--protocol", choices=("native", "dc09"), action="append",
                    help="native (default) or dc09; give it twice for both")
    ap.add_argument("--romfs", action="store_true",
                    help="run the bundle from a ROMFS image (bytecode executed in place)")
    ap.add_argument("--both", action="store_true",
                    help="each configuration with .mpy files in the heap and from ROMFS")
    ap.add_argument("--micropython", metavar="PATH", action="append",
                    help="a MicroPython unix-port VM to measure (default: $%s, else the "
                         "project's); give it once per VM to measure each in turn and "
                         "print them side by side" % VM_ENV)
    ap.add_argument("--table", action="store_true",
                    help="measure nothing: print the side-by-side table of the results "
                         "stored in bench/results/")
    ap.add_argument("--lo", type=int, default=64, help="KiB, first size tried")
    ap.add_argument("--hi", type=int, default=256, help="KiB, must pass")
    ap.add_argument("--step", type=int, default=8, help="KiB, the bisection's resolution")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per heap size; a size passes only if all pass")
    ap.add_argument("--no-alloc", action="store_true",
                    help="skip the allocation figures (tests/vm_app_rig.py)")
    a = ap.parse_args()
    if a.table:
        print(table(stored()))
        return 0
    vms = []
    for path in a.micropython or [None]:
        if path is not None and not (os.path.isfile(path) and os.access(path, os.X_OK)):
            sys.exit("--micropython %s: not an executable" % path)
        vms.append(path and os.path.abspath(path))
    results = {}
    for path in vms:
        if path is not None:
            os.environ[VM_ENV] = path
        bits = vm_info()["word_bits"]
        for panel in a.panel or ["bank"]:
            for protocol in a.protocol or ["native"]:
                for romfs in ((False, True) if a.both else (a.romfs,)):
                    results[(panel, protocol, romfs, bits)] = measure(a, panel, protocol, romfs)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
