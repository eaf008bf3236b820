"""The lean codec under the real MicroPython VM against the normative spec.

The host draws a few hundred cases from a seeded generator, computes the
spec's answer for each, and sends them in one batch to a driver running
glwire under .venv/bin/micropython (tests/mpy_runner.py).  The VM seals,
opens, encodes, decodes and stream-reads; the host compares byte for byte.
A smaller batch runs again in a 64 KiB heap with the modules precompiled by
mpy-cross, as a small board runs them.

Texts travel as hex of their UTF-8 bytes in both directions, so that what
the VM decoded is seen exactly (MicroPython's str is UTF-8 bytes inside).
"""

import random

import pytest

from protocol import spec
from tests import mpy_runner
from tests import vectors as V
from tests.test_spec import BAD_PAYLOADS, GOOD_EDGES

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(not mpy_runner.available(), reason="micropython VM not installed"),
]

SEED = 20240917

DRIVER = r'''
import gc
import sys
import json
import glwire as w

_keys = {}


def keys(h):
    # A small cache: the batches reuse a few keys; random keys must not
    # pile up in a 64 KiB heap.
    k = _keys.get(h)
    if k is None:
        if len(_keys) > 3:
            _keys.clear()
        k = w.Keys(bytes.fromhex(h))
        _keys[h] = k
    return k


def msg_in(m):
    if "text_hex" in m:
        h = m.pop("text_hex")
        m["text"] = None if h is None else bytes.fromhex(h).decode("utf-8")
    return m


def msg_out(m):
    if "text" in m:
        t = m.pop("text")
        m["text_hex"] = None if t is None else t.encode("utf-8").hex()
    return m


def handle(c):
    op = c["op"]
    if op == "seal":
        try:
            f = w.seal(keys(c["key"]), msg_in(c["msg"]), c["account"], c["seq"],
                       c["timestamp"], c["flags"], bytes.fromhex(c["iv"]))
        except w.EncodeError:
            return {"refused": 1}
        return {"frame": f.hex()}
    if op == "open":
        try:
            fr = w.decode_datagram(bytes.fromhex(c["frame"]))
            m = w.open_frame(keys(c["key"]), fr)
        except w.WireError as e:
            return {"err": e.reason}
        return {"msg": msg_out(m), "hdr": [fr.version, fr.flags, fr.account, fr.seq,
                                           fr.timestamp, fr.mtype, fr.body_len]}
    if op == "encode":
        try:
            return {"payload": w.encode_payload(msg_in(c["msg"])).hex()}
        except w.EncodeError:
            return {"refused": 1}
    if op == "decode":
        try:
            return {"msg": msg_out(w.decode_payload(c["type"], bytes.fromhex(c["payload"])))}
        except w.WireError as e:
            return {"err": e.reason}
    if op == "reader":
        r = w.FrameReader()
        out = []
        high = 0
        for chunk in c["chunks"]:
            r.receive_data(bytes.fromhex(chunk))
            high = max(high, len(r._buf))
            while True:
                f = r.next_frame()
                if f is w.NEED_DATA:
                    break
                if isinstance(f, w.Frame):
                    out.append(["frame", f.raw.hex()])
                else:
                    out.append(["bad", f.account, f.seq])
        return {"events": out, "discarded": r.discarded, "high": high}
    if op == "primitives":
        return {"primitives": w.PRIMITIVES}
    return {"crash": "unknown op %s" % op}


while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        res = handle(json.loads(line))
    except Exception as e:
        res = {"crash": "%s: %s" % (type(e).__name__, e)}
    line = None
    print(json.dumps(res))
    res = None
    gc.collect()
'''


# --- host side: cases and the spec's answers -------------------------------------------

def msg_wire(m):
    """A message as the driver takes it: text as hex of its UTF-8."""
    m = dict(m)
    if "text" in m:
        t = m.pop("text")
        m["text_hex"] = None if t is None else t.encode("utf-8").hex()
    return m


def spec_open(key, data):
    try:
        got = spec.parse_frame(key, data)
    except spec.RemoteProtocolError as e:
        return {"err": e.reason}
    return {"msg": msg_wire(got["message"]),
            "hdr": [got[k] for k in ("version", "flags", "account", "seq", "timestamp",
                                     "type", "body_len")]}


def spec_decode(t, data):
    try:
        return {"msg": msg_wire(spec.parse_payload(t, data))}
    except spec.RemoteProtocolError as e:
        return {"err": e.reason}


def flip(data, rng):
    b = bytearray(data)
    i = rng.randrange(len(b))
    b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def mutate_payload(data, rng):
    b = bytearray(data)
    k = rng.randrange(4)
    if k == 0 and b:
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif k == 1:
        del b[rng.randrange(len(b) + 1):]
    elif k == 2:
        b.append(rng.randrange(256))
    elif b:
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def random_key(rng):
    return bytes(rng.getrandbits(8) for _ in range(rng.choice([16, 32, 33, 64])))


def build_cases(rng, n_seal, n_open, n_payload):
    """-> list of (case, expected, tag)."""
    cases = []
    for v in V.VECTORS:
        cases.append(({"op": "seal", "key": v.key.hex(), "msg": msg_wire(v.msg),
                       "account": v.account, "seq": v.seq, "timestamp": v.timestamp,
                       "flags": v.flags, "iv": v.iv.hex()}, {"frame": v.frame.hex()}, "vector"))
        cases.append(({"op": "open", "key": v.key.hex(), "frame": v.frame.hex()},
                      spec_open(v.key, v.frame), "vector"))
    for _ in range(n_seal):
        m = V.random_message(rng)
        h = V.random_header(rng)
        key = random_key(rng)
        frame = spec.build_frame(key, m, h["account"], h["seq"], h["timestamp"], h["flags"],
                                 h["iv"])
        cases.append(({"op": "seal", "key": key.hex(), "msg": msg_wire(m),
                       "account": h["account"], "seq": h["seq"], "timestamp": h["timestamp"],
                       "flags": h["flags"], "iv": h["iv"].hex()}, {"frame": frame.hex()}, "seal"))
    for i in range(n_open):
        m = V.random_message(rng)
        h = V.random_header(rng)
        key = random_key(rng)
        frame = spec.build_frame(key, m, h["account"], h["seq"], h["timestamp"], h["flags"],
                                 h["iv"])
        kind = i % 6
        if kind == 1:
            frame = flip(frame, rng)  # line noise
        elif kind == 2:
            frame = V.fix_crcs(flip(frame[:-4], rng) + frame[-4:])  # forgery, CRCs fixed
        elif kind == 3:
            frame = frame[:rng.randrange(len(frame))]  # truncated
        elif kind == 4:
            key = V.WRONG_KEY
        elif kind == 5:  # good MAC around arbitrary plaintext
            plain = bytes(rng.getrandbits(8) for _ in range(16 * rng.randint(1, 4)))
            r = rng.random()
            if r < 0.4:
                plain = V.pkcs7(mutate_payload(spec.build_payload(m), rng))
            elif r < 0.7:  # a valid payload, one padding byte (not the last) wrong
                p = bytearray(V.pkcs7(spec.build_payload(m)))
                if p[-1] >= 2:
                    p[-2] ^= 0x40
                plain = bytes(p)
            frame = V.seal_raw(key, rng.choice(V.TYPES + (0x7F,)), plain,
                               flags=rng.choice([0, 1, 7, 8]), version=rng.choice([1, 1, 2]))
        cases.append(({"op": "open", "key": key.hex(), "frame": frame.hex()},
                       spec_open(key, frame), "open"))
    for i in range(n_payload):
        m = V.random_message(rng)
        t = m["type"]
        data = spec.build_payload(m)
        cases.append(({"op": "encode", "msg": msg_wire(m)}, {"payload": data.hex()}, "encode"))
        if i % 3:
            for _ in range(rng.randint(1, 3)):
                data = mutate_payload(data, rng)
        if i % 17 == 0:
            t = rng.choice([0, 4, 0x13, 0xFF])
        cases.append(({"op": "decode", "type": t, "payload": data.hex()},
                       spec_decode(t, data), "decode"))
    for _, t, data in BAD_PAYLOADS:
        cases.append(({"op": "decode", "type": t, "payload": data.hex()},
                      spec_decode(t, data), "edge"))
    for t, data in GOOD_EDGES:
        cases.append(({"op": "decode", "type": t, "payload": data.hex()},
                      spec_decode(t, data), "edge"))
    return cases


def out_of_range_cases(rng):
    out = []
    for t, fields in V.FIELDS.items():
        for name, r in fields.items():
            m = V.random_message(rng, t)
            bad = [-1, 256] if r[0] == "one_of" else [r[0] - 1, r[1] + 1]
            for b in bad:
                m = dict(m)
                m[name] = b
                out.append(({"op": "encode", "msg": msg_wire(m)}, {"refused": 1}, "refuse"))
    for name, r in V.POSITION_FIELDS.items():  # the v1.1 position record
        for t in (V.EVENT, V.POSITION):
            for b in (r[0] - 1, r[1] + 1):
                m = V.random_message(rng, t)
                m["position"] = dict(V.random_position(rng), **{name: b})
                out.append(({"op": "encode", "msg": msg_wire(m)}, {"refused": 1}, "refuse"))
    for m in (dict(V.BY_NAME["event_plain"].msg, text="x" * 33),
              dict(V.BY_NAME["heartbeat"].msg, partitions=[0] * 9),
              dict(V.BY_NAME["heartbeat"].msg, partitions=[256])):
        out.append(({"op": "encode", "msg": msg_wire(m)}, {"refused": 1}, "refuse"))
    return out


def lenient_utf8(expected, got):
    """Finding 3: the VM's bytes.decode("utf-8") accepts overlong forms,
    UTF-16 surrogates and code points above U+10FFFF, which CPython (and
    the spec) reject.  True when that alone explains a disagreement."""
    if expected.get("err") != spec.NAK_MALFORMED or "msg" not in got:
        return False
    th = got["msg"].get("text_hex")
    if th is None:
        return False
    try:
        bytes.fromhex(th).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@pytest.fixture(scope="module")
def batch():
    rng = random.Random(SEED)
    cases = build_cases(rng, n_seal=250, n_open=300, n_payload=300) + out_of_range_cases(rng)
    results = mpy_runner.run_driver(DRIVER, [c for c, _, _ in cases])
    return [(c, want, tag, got) for (c, want, tag), got in zip(cases, results)]


def check(batch, tags):
    rows = [r for r in batch if r[2] in tags]
    assert rows, "no cases for %s" % (tags,)
    crashes = [(c, got) for c, _, _, got in rows if "crash" in got]
    assert not crashes, crashes[:3]
    wrong = [(c, want, got) for c, want, _, got in rows
             if got != want and not lenient_utf8(want, got)]
    assert not wrong, "%d of %d differ, first: %r" % (len(wrong), len(rows), wrong[0])
    return rows


def test_vectors_under_micropython(batch):
    rows = check(batch, {"vector"})
    assert len(rows) == 2 * len(V.VECTORS)


def test_seal_equals_spec_under_micropython(batch):
    rows = check(batch, {"seal"})
    assert len({r[3]["frame"] for r in rows}) == len(rows)  # distinct frames


def test_open_agrees_with_spec_under_micropython(batch):
    rows = check(batch, {"open"})
    verdicts = {("msg" in got) for _, _, _, got in rows}
    assert verdicts == {True, False}  # both accepted and rejected frames were sent
    reasons = {got.get("err") for _, _, _, got in rows}
    assert {spec.NAK_BAD_CRC, spec.NAK_BAD_MAC, spec.NAK_MALFORMED} <= reasons


def test_payload_codec_agrees_with_spec_under_micropython(batch):
    rows = check(batch, {"encode", "decode", "edge"})
    assert any("err" in got for _, _, _, got in rows)


def test_encoder_refuses_out_of_range_under_micropython(batch):
    # MicroPython's struct.pack truncates instead of raising, so the range
    # checks in glwire are all that stands between a bad field and the wire.
    check(batch, {"refuse"})


def test_micropython_runs_the_portable_primitives():
    """Under the VM glwire has no C twins to take: the codec every other test
    here checks is the portable one (CPython forces it in test_lean_vs_spec)."""
    assert mpy_runner.run_driver(DRIVER, [{"op": "primitives"}]) == [
        {"primitives": "portable"}]


def test_frame_reader_under_micropython():
    rng = random.Random(SEED + 1)
    cases, want = [], []
    for _ in range(20):
        frames = [rng.choice(V.VECTORS).frame for _ in range(rng.randint(1, 4))]
        stream = b""
        for f in frames:
            noise = bytes(rng.choice(b"xyzGL\x00\xff") for _ in range(rng.randrange(0, 30)))
            stream += noise + f
        chunks, i = [], 0
        while i < len(stream):
            n = rng.choice([1, 2, 7, 64, 1024])
            chunks.append(stream[i:i + n].hex())
            i += n
        cases.append({"op": "reader", "chunks": chunks})
        want.append([["frame", f.hex()] for f in frames])
    for v in V.VECTORS:  # each vector byte by byte, as a slow serial line delivers it
        cases.append({"op": "reader", "chunks": [v.frame[i:i + 1].hex()
                                                 for i in range(len(v.frame))]})
        want.append([["frame", v.frame.hex()]])
    results = mpy_runner.run_driver(DRIVER, cases)
    for got, w in zip(results, want):
        assert "crash" not in got, got
        good = [e for e in got["events"] if e[0] == "frame"]
        assert good == w
        assert got["high"] <= 1321  # glwire.MAX_BUFFER


def test_small_heap_64k():
    """A 64 KiB heap, modules precompiled with mpy-cross: the codec fits."""
    rng = random.Random(SEED + 2)
    cases = build_cases(rng, n_seal=30, n_open=30, n_payload=30)
    results = mpy_runner.run_driver(DRIVER, [c for c, _, _ in cases], heapsize="64k",
                                    precompiled=True)
    check([(c, w_, t, g) for (c, w_, t), g in zip(cases, results)],
          {"vector", "seal", "open", "encode", "decode", "edge"})


LEAN_FILES = sorted(mpy_runner.LEAN_DIR.glob("*.py"))


@pytest.mark.parametrize("path", LEAN_FILES, ids=[p.name for p in LEAN_FILES])
def test_lean_file_compiles_with_mpy_cross(path, tmp_path):
    rc, err = mpy_runner.mpy_cross(path, tmp_path)
    assert rc == 0, err
    assert (tmp_path / (path.stem + ".mpy")).stat().st_size > 0


INVALID_UTF8 = [
    ("overlong NUL", b"\xc0\x80"),
    ("overlong slash", b"\xe0\x80\xaf"),
    ("UTF-16 surrogate", b"\xed\xa0\x80"),
    ("above U+10FFFF", b"\xf4\x90\x80\x80"),
]


def test_micropython_rejects_invalid_utf8_text():
    cases = []
    for _, text in INVALID_UTF8:
        payload = bytes.fromhex("0100820100050000000001") + bytes([len(text)]) + text
        assert spec_decode(spec.MSG_EVENT, payload) == {"err": spec.NAK_MALFORMED}
        cases.append({"op": "decode", "type": spec.MSG_EVENT, "payload": payload.hex()})
    results = mpy_runner.run_driver(DRIVER, cases)
    assert results == [{"err": spec.NAK_MALFORMED}] * len(cases)
