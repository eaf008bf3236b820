"""Native v1 protocol throughput: frames per second.

Two operations, each on the twelve golden-vector messages in turn (every
message type, both directions, texts up to the 32-byte maximum):

- build+encrypt: message dict -> sealed frame (payload, PKCS#7, AES-256-CBC
  with a fresh IV, HMAC-SHA256/128, both CRCs);
- decode+verify: frame bytes -> message dict (length, header CRC, frame
  CRC, MAC, decrypt, padding, payload).

Five implementations: protocol/spec.py with construct's interpreted
structs, the same with the compiled structs, the lean codec
(protocol/lean/glwire.py) under CPython on its C primitives (what the
receiver runs), the same forced onto the portable primitives
(glwire.use_portable: the code MicroPython runs), and the lean codec under
the real MicroPython unix VM (.venv/bin/micropython).  Keys are derived once per
run, as a receiver caches them per account.

    .venv/bin/python bench/bench_protocol.py [--seconds S]

Prints frames per second and writes the figures to
bench/results/protocol.json.  docs/protocol.md quotes them.
"""

import argparse
import json
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

from protocol import spec  # noqa: E402
from protocol.lean import glwire  # noqa: E402
from testkit import vm  # noqa: E402
from tests import vectors as V  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "protocol.json"
MESSAGES = [(v.msg, v.seq, v.timestamp, v.flags) for v in V.VECTORS]
ACCOUNT = V.ACCOUNT


def rate(fn, seconds):
    """Calls of fn(i) per second, i counting up, over about `seconds`."""
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(100):
            fn(n)
            n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def frames_for(seal):
    return [seal(m, seq, ts, flags) for m, seq, ts, flags in MESSAGES]


def bench_spec(seconds, compiled):
    keys = spec.Keys(V.KEY)

    def seal(m, seq, ts, flags):
        return spec.build_frame(keys, m, ACCOUNT, seq, ts, flags, compiled=compiled)

    frames = frames_for(seal)
    k = len(MESSAGES)
    return {
        "build_encrypt": rate(lambda i: seal(*MESSAGES[i % k]), seconds),
        "decode_verify": rate(lambda i: spec.parse_frame(keys, frames[i % k],
                                                         compiled=compiled), seconds),
    }


def bench_lean_portable(seconds):
    glwire.use_portable(True)
    try:
        return bench_lean_cpython(seconds)
    finally:
        glwire.use_portable(False)


def bench_lean_cpython(seconds):
    keys = glwire.Keys(V.KEY)

    def seal(m, seq, ts, flags):
        return glwire.seal(keys, m, ACCOUNT, seq, ts, flags)

    frames = frames_for(seal)
    k = len(MESSAGES)
    return {
        "build_encrypt": rate(lambda i: seal(*MESSAGES[i % k]), seconds),
        "decode_verify": rate(lambda i: glwire.open_frame(
            keys, glwire.decode_datagram(frames[i % k])), seconds),
    }


MP_DRIVER = r'''
import json
import time
import glwire

KEY = bytes.fromhex(%(key)r)
ACCOUNT = %(account)d
MESSAGES = json.loads(%(messages)r)
MS = %(ms)d


def rate(fn):
    n = 0
    t0 = time.ticks_ms()
    while True:
        for _ in range(20):
            fn(n)
            n += 1
        dt = time.ticks_diff(time.ticks_ms(), t0)
        if dt >= MS:
            return n * 1000 / dt


keys = glwire.Keys(KEY)
k = len(MESSAGES)


def seal(i):
    m, seq, ts, flags = MESSAGES[i %% k]
    return glwire.seal(keys, m, ACCOUNT, seq, ts, flags)


frames = [seal(i) for i in range(k)]


def decode(i):
    return glwire.open_frame(keys, glwire.decode_datagram(frames[i %% k]))


for i in range(k):  # the VM must agree with what it is timed on
    if decode(i) != MESSAGES[i][0]:
        raise SystemExit("decode mismatch on message %%d" %% i)
print(json.dumps({"build_encrypt": rate(seal), "decode_verify": rate(decode)}))
'''


def micropython_version():
    proc = subprocess.run([vm.micropython(), "-c", "import sys; print(sys.version)"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def bench_lean_micropython(seconds):
    if not vm.available():
        return None
    src = MP_DRIVER % {"key": V.KEY.hex(), "account": ACCOUNT,
                       "messages": json.dumps(MESSAGES), "ms": int(seconds * 1000)}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench_glwire.py"
        script.write_text(src)
        env = dict(os.environ, MICROPYPATH=str(ROOT / "protocol" / "lean") + ":.frozen")
        proc = subprocess.run([vm.micropython(), str(script)], capture_output=True,
                              text=True, env=env, cwd=tmp)
    if proc.returncode:
        raise SystemExit("micropython failed:\n" + proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="time per measurement (default 2)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = ap.parse_args(argv)

    host = "%s %s, %s, %d CPUs" % (platform.python_implementation(),
                                   platform.python_version(), platform.machine(),
                                   os.cpu_count() or 0)
    print("# %s" % host)
    results = {}
    for label, fn in (("construct interpreted", lambda s: bench_spec(s, False)),
                      ("construct compiled", lambda s: bench_spec(s, True)),
                      ("lean CPython", bench_lean_cpython),
                      ("lean CPython portable", bench_lean_portable),
                      ("lean MicroPython", bench_lean_micropython)):
        res = fn(args.seconds)
        if res is None:
            print("%-22s no VM (%s)" % (label, vm.MICROPYTHON_ENV))
            continue
        results[label] = {k: round(v) for k, v in res.items()}
        print("%-24s build+encrypt %9.0f frames/s   decode+verify %9.0f frames/s"
              % (label, res["build_encrypt"], res["decode_verify"]))

    doc = {
        "what": "Guardline native v1 protocol, frames per second",
        "command": ".venv/bin/python bench/bench_protocol.py --seconds %g" % args.seconds,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": host,
        "micropython": micropython_version() if vm.available() else None,
        "messages": [spec.MSG_NAMES[m["type"]] for m, _, _, _ in MESSAGES],
        "frames_per_second": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, args.out)
    print("# written to %s" % args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT)
          else "# written to %s" % args.out)


if __name__ == "__main__":
    main()
