"""Vehicle profile footprint: what the GNSS parser, the geometry and the
vehicle rules cost in a MicroPython heap.

Under the real unix-port VM, from the mpy-cross'd firmware bundle (as a
board runs it):

- module_heap: what importing each vehicle module costs (the method of
  bench_firmware_heap.py: gc.mem_alloc() after gc.collect() around each
  import; on the unix port .mpy bytecode lives in the heap);
- reader_bytes: one NmeaReader with its Fix;
- vehicle_bytes: a Vehicle built from a large section (16 allowed zones,
  8 of them 32-point polygons, a 200-point corridor) and its report policy;
- parse_alloc_bytes / feed_alloc_bytes: heap allocated while parsing
  `sentences` NMEA sentences in steady state, line by line and as a
  stream (gc disabled);
- rules_alloc_per_fix: heap allocated per fix through the rules (floats
  are boxed on MicroPython: the geometry allocates, the GC reclaims it).

The unix port is 64-bit (8-byte pointers): a 32-bit ESP32 or RP2040 needs
roughly half for the same objects.

    .venv/bin/python bench/bench_vehicle_heap.py

Writes bench/results/vehicle_heap.json; docs/mobile.md quotes it.
"""

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "firmware" / "device"))

from bench.bench_firmware_heap import module_heap  # noqa: E402
from firmware import build as fwbuild  # noqa: E402
from testkit import vm  # noqa: E402

MODULES = ("fwutil", "cid", "geo", "nmea", "vehicle", "vehicle_config")

SENTENCES = [
    "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47",
    "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A",
    "$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48",
    "$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B",
    "$GNGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M,,*47",
    "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48",  # bad checksum
]


def big_section():
    """The largest section the validator allows, around a city centre."""
    # (pyright checks host code without the device directory on its path)
    import vehicle_config  # pyright: ignore[reportMissingImports]
    lat0, lon0 = 52.37, 4.89
    zones = []
    for i in range(8):
        zones.append({"name": "site %d" % i, "center": [lon0 + i * 0.01, lat0], "radius_m": 200})
    for i in range(8):
        ring = [[lon0 + i * 0.01 + 0.001 * (k % 4), lat0 + 0.02 + 0.0005 * k] for k in range(32)]
        zones.append({"name": "poly %d" % i, "polygon": ring})
    line = [[lon0 + 0.0005 * k, lat0 + 0.0003 * (k % 7)] for k in range(200)]
    doc = {"allowed_zones": zones, "corridor": {"line": line, "width_m": 200},
           "ignition_schedule": [{"from": "06:00", "to": "20:00"}]}
    cfg, errors = vehicle_config.validate(doc)
    assert not errors, errors
    return cfg


PROBE = r"""
import gc, json
import nmea, vehicle
cfg = json.loads(%r)
lines = [bytearray(s.encode()) for s in %r]
stream = b"".join(s.encode() + b"\r\n" for s in %r)
gc.collect()
a = gc.mem_alloc()
r = nmea.NmeaReader()
gc.collect()
b = gc.mem_alloc()
v = vehicle.Vehicle(cfg, 0)
p = vehicle.ReportPolicy(cfg["report"], cfg["moving_kmh"])
gc.collect()
c = gc.mem_alloc()
N = 2000
for ln in lines:
    r.parse(ln)
r.feed(stream)
gc.collect()
gc.disable()
x0 = gc.mem_alloc()
for _ in range(N):
    for ln in lines:
        r.parse(ln)
x1 = gc.mem_alloc()
for _ in range(N):
    r.feed(stream)
x2 = gc.mem_alloc()
gc.enable()
f = nmea.Fix()
f.valid = True
f.hdop = 9
f.speed = 300
gc.collect()
gc.disable()
y0 = gc.mem_alloc()
for k in range(200):
    f.lat = 52370000 + 30 * k
    f.lon = 4890000 + 50 * k
    v.fix(f, 1000 * k)
    v.out.clear()
y1 = gc.mem_alloc()
gc.enable()
print(json.dumps({"reader_bytes": b - a, "vehicle_bytes": c - b,
                  "sentences": N * len(lines),
                  "parse_alloc_bytes": x1 - x0, "feed_alloc_bytes": x2 - x1,
                  "rules_alloc_per_fix": (y1 - y0) / 200}))
"""


def main() -> int:
    cfg = big_section()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, "b")
        sizes = fwbuild.build(bundle, "sim")
        heap = module_heap(bundle, MODULES)
        env = dict(os.environ, MICROPYPATH=bundle + os.pathsep + ".frozen")
        r = subprocess.run([vm.micropython(), "-X", "heapsize=2m", "-c",
                            PROBE % (json.dumps(cfg), SENTENCES, SENTENCES)],
                           env=env, capture_output=True, text=True, check=True, cwd=bundle)
    probe = json.loads(r.stdout.strip().splitlines()[-1])
    mods = {k: v for k, v in heap["modules"].items() if k in MODULES}
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "micropython": subprocess.run([vm.micropython(), "-c",
                                       "import sys;print(sys.version)"],
                                      capture_output=True, text=True).stdout.strip(),
        "mpy_bytes": {m + ".mpy": sizes[m + ".mpy"] for m in MODULES},
        "module_heap_bytes": mods,
        "code_heap_bytes": sum(v["heap"] for k, v in mods.items() if k != "vehicle_config"),
        "section": {"allowed_zones": len(cfg["allowed_zones"]),
                    "corridor_points": len(cfg["corridor"]["line"])},
    }
    result.update(probe)
    out = ROOT / "bench" / "results" / "vehicle_heap.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
