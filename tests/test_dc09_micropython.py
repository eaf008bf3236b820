"""protocol/lean/gldc09.py under the real MicroPython VM (.venv/bin/micropython).

One VM run per test: a driver script imports gldc09 from protocol/lean only
(no host package on its path, so the firmware's fallbacks are what runs),
reads cases as JSON lines on stdin and answers one JSON line each.  Every
answer must equal what the same call gives under CPython, and every build
must equal the host codec's dc09.build() for the same fields and pad.
Anything but the declared errors comes back as "crash" and fails the test.
"""

from __future__ import annotations

import json
import random
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from protocol import dc09
from protocol.dc09 import Dc09Message, build, build_ack, build_duh, build_nak
from protocol.lean import gldc09
from testkit import vm

pytestmark = pytest.mark.micropython

ROOT = Path(__file__).resolve().parent.parent
LEAN_DIR = ROOT / "protocol" / "lean"
UTC = timezone.utc

DRIVER = r'''
import sys
sys.path.insert(0, %(lean)r)
import json
import binascii
import gldc09


def unhex(x):
    return None if x is None else binascii.unhexlify(x)


def tup(x):
    return None if x is None else tuple(x)


def run(case):
    op = case["op"]
    a = case["args"]
    if op == "adm":
        return binascii.hexlify(gldc09.build_adm_cid(
            a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], unhex(a[8]),
            tup(a[9]), unhex(a[10]))).decode()
    if op == "null":
        return binascii.hexlify(gldc09.build_null(
            a[0], a[1], a[2], a[3], unhex(a[4]), tup(a[5]),
            unhex(a[6]))).decode()
    if op == "reply":
        kind, seq, t = gldc09.parse_reply(unhex(a[0]), unhex(a[1]))
        return [kind, seq, None if t is None else list(t)]
    if op == "crc":
        return gldc09.crc16(unhex(a[0]))
    if op == "keysize":
        return gldc09.key_size_supported(a[0])
    raise KeyError(op)


while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        out = {"ok": run(json.loads(line))}
    except gldc09.Dc09ReplyError:
        out = {"err": "Dc09ReplyError"}
    except gldc09.Dc09UsageError:
        out = {"err": "Dc09UsageError"}
    except Exception as e:
        out = {"crash": "%%s: %%s" %% (type(e).__name__, e)}
    print(json.dumps(out))
'''


def run_cpython(case):
    """The same call as the driver makes, under CPython."""
    a = case["args"]
    unhex = lambda x: None if x is None else bytes.fromhex(x)  # noqa: E731
    tup = lambda x: None if x is None else tuple(x)  # noqa: E731
    try:
        if case["op"] == "adm":
            out = gldc09.build_adm_cid(*a[:8], unhex(a[8]), tup(a[9]), unhex(a[10])).hex()
        elif case["op"] == "null":
            out = gldc09.build_null(*a[:4], unhex(a[4]), tup(a[5]), unhex(a[6])).hex()
        elif case["op"] == "reply":
            kind, seq, t = gldc09.parse_reply(unhex(a[0]), unhex(a[1]))
            out = [kind, seq, None if t is None else list(t)]
        elif case["op"] == "crc":
            out = gldc09.crc16(unhex(a[0]))
        else:
            out = gldc09.key_size_supported(a[0])
        return {"ok": out}
    except gldc09.Dc09ReplyError:
        return {"err": "Dc09ReplyError"}
    except gldc09.Dc09UsageError:
        return {"err": "Dc09UsageError"}


def run_vm(tmp_path, cases):
    if not vm.available():
        pytest.skip("no MicroPython VM")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER % {"lean": str(LEAN_DIR)})
    proc = subprocess.run(
        [vm.micropython(), "-X", "heapsize=8M", str(driver)],
        input="".join(json.dumps(c) + "\n" for c in cases),
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(cases), proc.stderr
    return [json.loads(line) for line in lines]


# --- case generation (seeded, so a failure reproduces) --------------------------------

HEX = "0123456789ABCDEFabcdef"
PAD_BYTES = [b for b in range(256) if b not in b"|[]"]


def r_hex(rng, lo, hi):
    return "".join(rng.choice(HEX) for _ in range(rng.randint(lo, hi)))


def r_time(rng):
    t = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(3_000_000_000))
    return t


def tuple_of(t):
    return [t.year, t.month, t.day, t.hour, t.minute, t.second]


def r_fields(rng):
    return dict(
        seq=rng.randint(0, 9999), account=r_hex(rng, 3, 16),
        line=rng.choice([None, r_hex(rng, 1, 6)]),
        receiver=rng.choice([None, r_hex(rng, 1, 6)]),
    )


def payload_len(msg):
    plain = build(Dc09Message(**{**msg.__dict__, "encrypted": False}))
    return len(plain) - plain.index(b"[") - 2


def adm_case(rng, key_size):
    f = r_fields(rng)
    ev = dict(qualifier=rng.choice([1, 3, 6]), code=rng.randint(0, 999),
              partition=rng.randint(0, 99), zone=rng.randint(0, 999))
    key = None if key_size is None else bytes(rng.randrange(256) for _ in range(key_size))
    ts = r_time(rng) if key is not None or rng.random() < 0.5 else None
    msg = Dc09Message("ADM-CID", key is not None, f["seq"], f["receiver"], f["line"],
                      f["account"], dc09.event_to_adm_cid(f["account"], ev), [], ts)
    pad = None
    if key is not None:
        n = dc09.pad_length(payload_len(msg) + 1) + 16 * rng.randint(0, 1)
        pad = bytes(rng.choice(PAD_BYTES) for _ in range(n))
    case = {"op": "adm", "args": [
        f["seq"], f["account"], f["line"], f["receiver"], ev["qualifier"],
        ev["code"], ev["partition"], ev["zone"],
        None if key is None else key.hex(), None if ts is None else tuple_of(ts),
        None if pad is None else pad.hex()]}
    return case, build(msg, key, pad)


def null_case(rng, key_size):
    f = r_fields(rng)
    key = None if key_size is None else bytes(rng.randrange(256) for _ in range(key_size))
    ts = r_time(rng)
    msg = Dc09Message("NULL", key is not None, f["seq"], f["receiver"], f["line"],
                      f["account"], "", [], ts)
    pad = None
    if key is not None:
        n = dc09.pad_length(payload_len(msg) + 1)
        pad = bytes(rng.choice(PAD_BYTES) for _ in range(n))
    case = {"op": "null", "args": [
        f["seq"], f["account"], f["line"], f["receiver"],
        None if key is None else key.hex(), tuple_of(ts),
        None if pad is None else pad.hex()]}
    return case, build(msg, key, pad)


def reply_cases(rng, key_size):
    f = r_fields(rng)
    key = bytes(rng.randrange(256) for _ in range(key_size))
    now = r_time(rng)
    enc = rng.random() < 0.5
    msg = Dc09Message("ADM-CID", enc, f["seq"], f["receiver"], f["line"],
                      f["account"], "#1234|1130 01 003", [], now)
    frames = [build_ack(msg, key, now), build_nak(now), build_duh(msg)]
    expect = [["ACK", f["seq"], tuple_of(now) if enc else None],
              ["NAK", 0, tuple_of(now)], ["DUH", f["seq"], None]]
    out = []
    for frame, exp in zip(frames, expect):
        out.append(({"op": "reply", "args": [frame.hex(), key.hex() if enc else None]},
                    {"ok": exp}))
        bad = bytearray(frame)
        bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        out.append(({"op": "reply", "args": [bytes(bad).hex(), key.hex() if enc else None]},
                    {"err": "Dc09ReplyError"}))
        cut = frame[:rng.randrange(len(frame))]
        out.append(({"op": "reply", "args": [cut.hex(), key.hex() if enc else None]},
                    {"err": "Dc09ReplyError"}))
    return out


# --- tests ------------------------------------------------------------------------------

def test_vm_key_sizes_and_golden_vectors(tmp_path):
    std = (b'\n87CD0037"ADM-CID"9876R579BDFL789ABC#12345A'
           b'[#12345A|1110 00 129]\r')
    nak = b'\nE4410025"NAK"0000R0L0A0[]_16:20:01,09-24-2025\r'
    cases = [
        {"op": "keysize", "args": [16]}, {"op": "keysize", "args": [32]},
        {"op": "adm", "args": [9876, "12345A", "789ABC", "579BDF", 1, 110, 0, 129,
                               None, None, None]},
        {"op": "reply", "args": [nak.hex(), None]},
        {"op": "crc", "args": [std[9:-1].hex()]},
    ]
    out = run_vm(tmp_path, cases)
    assert out == [{"ok": True}, {"ok": True}, {"ok": std.hex()},
                   {"ok": ["NAK", 0, [2025, 9, 24, 16, 20, 1]]}, {"ok": 0x87CD}]


def test_vm_builds_equal_host_builds(tmp_path):
    rng = random.Random(20240102)
    probe = run_vm(tmp_path, [{"op": "keysize", "args": [24]}])[0]["ok"]
    cases, host = [], []
    for i in range(240):
        key_size = [None, 16, 24, 32][i % 4]
        case, frame = (adm_case if i % 5 else null_case)(rng, key_size)
        cases.append(case)
        host.append(frame)
    out = run_vm(tmp_path, cases)
    for case, frame, got in zip(cases, host, out):
        assert "crash" not in got, (case, got)
        key = case["args"][8] if case["op"] == "adm" else case["args"][4]
        if key is not None and len(key) == 48 and not probe:
            # axTLS ports have no AES-192: a declared error, not a crash.
            assert got == {"err": "Dc09UsageError"}, case
            continue
        assert got == {"ok": frame.hex()}, case
        assert run_cpython(case) == got


def test_vm_replies_agree_with_host_and_reject_mutations(tmp_path):
    rng = random.Random(7)
    pairs = []
    for i in range(60):
        pairs += reply_cases(rng, [16, 32][i % 2])
    out = run_vm(tmp_path, [c for c, _ in pairs])
    for (case, expect), got in zip(pairs, out):
        assert got == expect, case
        assert run_cpython(case) == got


def test_vm_never_crashes_and_matches_cpython_on_junk(tmp_path):
    rng = random.Random(99)
    base = [bytes.fromhex(c["args"][0]) for c, _ in reply_cases(rng, 16)[::3]]
    cases = []
    for _ in range(300):
        kind = rng.randrange(4)
        if kind == 0:  # random bytes
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
        elif kind == 1:  # random text, correctly framed
            body = "".join(rng.choice('"*ACKNDUH0123456789RL#A[]|_:,-') for _ in
                           range(rng.randrange(40))).encode()
            junk = (b"\n" + b"%04X" % dc09.crc16(body) + b"0%03X" % len(body)
                    + body + b"\r")
        elif kind == 2:  # a real reply with a few bytes replaced
            junk = bytearray(rng.choice(base))
            for _ in range(rng.randint(1, 3)):
                junk[rng.randrange(len(junk))] = rng.randrange(256)
            junk = bytes(junk)
        else:  # a reply with a garbage encrypted region
            region = bytes(rng.randrange(256) for _ in range(16 * rng.randint(1, 3)))
            body = b'"*ACK"0001L0#1234[' + region.hex().upper().encode()
            junk = (b"\n" + b"%04X" % dc09.crc16(body) + b"0%03X" % len(body)
                    + body + b"\r")
        key = rng.choice([None, bytes(16).hex(), bytes(32).hex()])
        cases.append({"op": "reply", "args": [junk.hex(), key]})
        cases.append({"op": "crc", "args": [junk.hex()]})
    out = run_vm(tmp_path, cases)
    for case, got in zip(cases, out):
        assert "crash" not in got, (case, got)
        assert run_cpython(case) == got, case


SMALL_HEAP_DRIVER = r'''
import sys
sys.path.insert(0, %(dir)r)
import gc
import gldc09
KEY = bytes(range(32))
seq = 9990
for i in range(200):
    seq = gldc09.next_seq(seq)
    frame = gldc09.build_adm_cid(seq, "00C0FFEE", "0", "1", 1, 130, 1, i %% 1000,
                                 KEY, (2024, 1, 2, 3, 4, 5), b"p" * %(pad)d)
    gc.collect()
print(seq, frame.hex())
'''


def test_vm_precompiled_module_in_a_64k_heap(tmp_path):
    # As the firmware ships it: mpy-cross'd, on a board-sized heap.
    if not vm.available():
        pytest.skip("no MicroPython VM")
    subprocess.run([vm.mpy_cross(), "-o", str(tmp_path / "gldc09.mpy"),
                    str(LEAN_DIR / "gldc09.py")], check=True, timeout=60)
    msg = Dc09Message("ADM-CID", True, 0, "1", "0", "00C0FFEE",
                      "#00C0FFEE|1130 01 199", [],
                      datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    pad = b"p" * dc09.pad_length(payload_len(msg) + 1)
    driver = tmp_path / "driver.py"
    driver.write_text(SMALL_HEAP_DRIVER % {"dir": str(tmp_path), "pad": len(pad)})
    proc = subprocess.run([vm.micropython(), "-X", "heapsize=64K", str(driver)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seq, frame = proc.stdout.split()
    assert int(seq) == 1 + (9990 + 200 - 1) % 9999  # wrapped past 9999
    msg.seq = int(seq)
    host = build(msg, bytes(range(32)), pad)
    assert bytes.fromhex(frame) == host
