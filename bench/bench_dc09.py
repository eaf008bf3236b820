"""SIA DC-09 codec throughput.

Host (CPython): what a receiver does per message — parse (CRC, decrypt,
timestamp test) then build the ACK — for plain and AES-256 ADM-CID.
Panel (lean gldc09): build ADM-CID frames, plain and AES-256, and parse an
*ACK, under the real MicroPython unix VM and, for comparison, CPython.

    .venv/bin/python bench/bench_dc09.py [--seconds S]

Prints messages per second.  Figures go into docs/dc09.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocol import dc09  # noqa: E402
from protocol.lean import gldc09  # noqa: E402
from testkit import vm  # noqa: E402

KEY = bytes(range(32))  # AES-256
NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
TS = (2024, 1, 2, 3, 4, 5)
N_FRAMES = 256  # distinct frames cycled through, so no one frame is hot


def rate(fn, seconds):
    """Calls of fn() per second, over about `seconds`."""
    n, start = 0, time.perf_counter()
    batch = 200
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def host_frames(key):
    frames = []
    for i in range(N_FRAMES):
        frames.append(gldc09.build_adm_cid(
            1 + i % 9999, "00C0FFEE", "0", "1", 1, 130, 1 + i % 8, i % 1000,
            key, TS))
    return frames


def bench_host(seconds):
    out = {}
    for name, key in (("plain", None), ("aes256", KEY)):
        frames = host_frames(key)
        lookup = (lambda account: KEY) if key else None
        it = iter(range(1 << 62))

        def one():
            m = dc09.parse(frames[next(it) % N_FRAMES], lookup, now=NOW)
            dc09.build_ack(m, key, NOW)

        out[name] = rate(one, seconds)
    return out


def bench_lean_cpython(seconds):
    ack = dc09.build_ack(dc09.parse(host_frames(KEY)[0], lambda a: KEY), KEY, NOW)
    return {
        "build plain": rate(lambda: gldc09.build_adm_cid(
            42, "00C0FFEE", "0", "1", 1, 130, 1, 7, None, TS), seconds),
        "build aes256": rate(lambda: gldc09.build_adm_cid(
            42, "00C0FFEE", "0", "1", 1, 130, 1, 7, KEY, TS), seconds),
        "parse *ACK": rate(lambda: gldc09.parse_reply(ack, KEY), seconds),
    }


MP_SCRIPT = r'''
import sys
sys.path.insert(0, %(lean)r)
import time
import gldc09
KEY = bytes(range(32))
TS = (2024, 1, 2, 3, 4, 5)
ACK = bytes.fromhex(%(ack)r)


def rate(fn, ms):
    n = 0
    t0 = time.ticks_ms()
    while True:
        for _ in range(50):
            fn()
        n += 50
        dt = time.ticks_diff(time.ticks_ms(), t0)
        if dt >= ms:
            return n * 1000 / dt


print("build plain", rate(lambda: gldc09.build_adm_cid(
    42, "00C0FFEE", "0", "1", 1, 130, 1, 7, None, TS), %(ms)d))
print("build aes256", rate(lambda: gldc09.build_adm_cid(
    42, "00C0FFEE", "0", "1", 1, 130, 1, 7, KEY, TS), %(ms)d))
print("parse *ACK", rate(lambda: gldc09.parse_reply(ACK, KEY), %(ms)d))
'''


def bench_lean_micropython(seconds):
    if not vm.available():
        return None
    ack = dc09.build_ack(dc09.parse(host_frames(KEY)[0], lambda a: KEY), KEY, NOW)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.py"
        script.write_text(MP_SCRIPT % {"lean": str(ROOT / "protocol" / "lean"),
                                       "ack": ack.hex(), "ms": int(seconds * 1000)})
        proc = subprocess.run([vm.micropython(), str(script)], capture_output=True,
                              text=True, cwd=tmp, check=True)
    out = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def main():
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="time per measurement (default 2)")
    args = ap.parse_args()
    print("# %s %s, %s, %d CPUs" % (platform.python_implementation(),
                                    platform.python_version(), platform.machine(),
                                    os.cpu_count() or 0))
    host = bench_host(args.seconds)
    print("host parse+ACK  ADM-CID plain   %10.0f msg/s" % host["plain"])
    print("host parse+ACK  ADM-CID AES-256 %10.0f msg/s" % host["aes256"])
    for label, res in (("lean CPython", bench_lean_cpython(args.seconds)),
                       ("lean MicroPython", bench_lean_micropython(args.seconds))):
        if res is None:
            print("%s: no VM (%s)" % (label, vm.MICROPYTHON_ENV))
            continue
        for name, value in res.items():
            print("%-16s %-13s %10.0f msg/s" % (label, name, value))


if __name__ == "__main__":
    main()
