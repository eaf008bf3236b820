"""The NMEA 0183 parser (firmware/device/nmea.py) against pynmea2.

Host: hypothesis generates valid GGA/RMC/VTG sentences (tests/nmea_cases.py
formats them field by field; pynmea2 computes their checksums) and every
field the parser reads must agree with pynmea2's reading; garbled
sentences must be rejected whenever pynmea2 rejects them on their
checksum, anything the parser accepts pynmea2 must parse to the same
fields, and no input makes the parser raise.

VM: the same kind of cases, seeded, run under the real MicroPython VM in a
64 KiB heap from mpy-cross'd modules; the VM's answers must equal
CPython's (and so pynmea2's), and parsing must allocate nothing in steady
state (gc.mem_alloc() across thousands of sentences).
"""

import random
import shutil
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from firmware import DEVICE_DIR
from tests import mpy_runner
from tests import nmea_cases as N

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import nmea  # noqa: E402


def fields(fix):
    return {k: getattr(fix, k) for k in N.FIX_FIELDS}


def parse_one(line):
    r = nmea.NmeaReader()
    k = r.parse(line)
    return k, r


# --- valid sentences ------------------------------------------------------------------

@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_valid_sentences_agree_with_pynmea2(rng):
    line = N.sentence(rng)
    verdict, msg = N.pynmea2_parse(line)
    assert verdict == "ok", (line, msg)
    k, r = parse_one(line.encode())
    assert k == N.KINDS[msg.sentence_type], (line, k)
    assert N.disagreements(fields(r.fix), N.expected(msg)) == [], line
    assert r.ok == 1


@pytest.mark.parametrize("line, want", [
    # NMEA 0183 examples as receivers print them
    ("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47",
     {"lat": 48117300, "lon": 11516667, "quality": 1, "sats": 8, "hdop": 9, "alt": 5454,
      "ms": 45319000, "valid": True}),
    ("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A",
     {"speed": 415, "course": 844, "day": 8847, "valid": True}),  # 22.4 kn = 41.48 km/h
    ("$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48", {"course": 547, "speed": 102}),
    ("$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B",
     {"lat": 44068999, "lon": -121314337, "speed": 3, "day": 17176}),
    ("$GNGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M,,*47",
     {"lat": 44069006, "lon": -121314327, "sats": 12, "hdop": 10, "alt": 11130}),
    # no fix yet, a position left over from the last one (receivers do this)
    (N.seal("GPGGA,002153.000,3342.6618,S,11751.3858,E,0,00,,,M,,M,,0000"),
     {"valid": False, "has_position": False, "quality": 0}),
])
def test_receiver_examples(line, want):
    assert N.pynmea2_parse(line)[0] == "ok"
    k, r = parse_one(line.encode())
    assert k > 0
    got = fields(r.fix)
    assert {name: got[name] for name in want} == want


# --- garbled sentences and arbitrary bytes ------------------------------------------------

@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_garbled_sentences_rejected_as_pynmea2_rejects_them(rng):
    line = N.mutate(rng, N.sentence(rng))
    verdict, msg = N.pynmea2_parse(line)
    k, r = parse_one(line)  # raises nothing: a raise fails the test
    if verdict == "checksum":
        assert k < 0, (line, k)
        assert r.fix.has_position is False and r.fix.ms == -1  # nothing changed
    if k > 0:
        # whatever we accept, pynmea2 parses to the same fields
        assert verdict == "ok", (line, msg)
        assert N.disagreements(fields(r.fix), N.expected(msg)) == [], line
    counted = r.ok + r.ignored + r.bad_checksum + r.bad_format + r.bad_field
    assert counted == 1


def test_checksum_required_and_checked():
    good = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
    for bad in (good[:-3], good[:-1] + "8", good[:-2] + "G7", good.replace("4807", "4808")):
        assert N.pynmea2_parse(bad)[0] in ("checksum", "parse") or bad == good[:-3]
        k, r = parse_one(bad.encode())
        assert k == nmea.E_CHECKSUM, bad
        assert r.bad_checksum == 1 and not r.fix.valid
    # pynmea2 with check=True refuses a missing checksum as we do
    assert N.pynmea2_parse(good[:-3])[0] == "checksum"


def test_bad_field_rejected_and_changes_nothing():
    r = nmea.NmeaReader()
    assert r.parse(b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47") > 0
    before = fields(r.fix)
    for body in ("GPGGA,123519,9107.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # lat > 90
                 "GPGGA,123519,4807.038,N,01131.000,X,1,08,0.9,545.4,M,46.9,M,,",  # hemisphere
                 "GPGGA,126519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # minute 65
                 "GPGGA,123519,4860.000,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # 60'
                 "GPGGA,123519,,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # half a position
                 "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,310294,003.1,W",  # 31 Feb
                 "GPRMC,123519,A,4807.038,N,01131.000,E,-22.4,084.4,230394,003.1,W",
                 "GPVTG,054.7,T,034.4,M,005.5,N,1.0.2,K"):
        assert r.parse(N.seal(body).encode()) == nmea.E_FIELD, body
        assert fields(r.fix) == before
    assert r.bad_field == 8


@settings(max_examples=800)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_raise(data):
    r = nmea.NmeaReader()
    k = r.parse(data)
    assert k in (nmea.GGA, nmea.RMC, nmea.VTG, nmea.IGNORED, nmea.E_FORMAT,
                 nmea.E_CHECKSUM, nmea.E_FIELD)
    r.feed(data)
    r.feed(bytearray(data))
    r.feed(memoryview(data))


def test_other_sentences_and_talkers_ignored():
    r = nmea.NmeaReader()
    for body in ("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1", "PUBX,00,081350.00",
                 "IIGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"):
        assert r.parse(N.seal(body).encode()) == nmea.IGNORED
    assert r.ignored == 3 and not r.fix.has_position


# --- the line assembler -----------------------------------------------------------------------

def stream_of(rng, n):
    lines = [N.sentence(rng) for _ in range(n)]
    return lines, "".join(line + "\r\n" for line in lines).encode()


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_feed_whole_byte_by_byte_and_chunked(kind):
    rng = random.Random(7)
    lines, data = stream_of(rng, 60)
    ref = nmea.NmeaReader()
    for line in lines:
        ref.parse(line.encode())
    for chunking in (len(data), 1, 7, 64):
        r = nmea.NmeaReader()
        got = 0
        for i in range(0, len(data), chunking):
            got |= r.feed(kind(data[i:i + chunking]))
        assert (r.ok, r.bad_checksum, r.bad_format) == (ref.ok, 0, 0) == (60, 0, 0)
        assert fields(r.fix) == fields(ref.fix)
        assert got == nmea.GOT_GGA | nmea.GOT_RMC | nmea.GOT_VTG


def test_overlong_line_dropped_counted_and_resync():
    good = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
    r = nmea.NmeaReader()
    r.feed(b"$GPTXT," + b"x" * 300 + b"*00\r\n" + good)
    assert r.overlong == 1 and r.ok == 1 and r.fix.lat == 48117300
    # an overlong line cut off by the next '$' (no line end): resync there
    r = nmea.NmeaReader()
    r.feed(b"$GPTXT," + b"y" * 200 + good)
    assert r.overlong == 1 and r.ok == 1
    # a sentence cut short by the next one (bytes lost on the UART)
    r = nmea.NmeaReader()
    r.feed(good[:30] + good + good[:-2] + b"\n")
    assert r.bad_format == 1 and r.ok == 2
    # a line of exactly MAX_LINE bytes is parsed, not dropped
    r = nmea.NmeaReader()
    body = "GPGSA,A,3,,"
    body += "0" * (nmea.MAX_LINE - 4 - len(body))  # '$' + body + '*HH'
    line = N.seal(body).encode()
    assert len(line) == nmea.MAX_LINE
    r.feed(line + b"\r\n")
    assert r.overlong == 0 and r.ignored == 1
    r.feed(N.seal(body + "0").encode() + b"\r\n")
    assert r.overlong == 1 and r.ignored == 1


# --- under the MicroPython VM -------------------------------------------------------------------

DRIVER = r'''
import gc
import sys
import json
import nmea

FIELDS = %r


def fix_list(f):
    return [getattr(f, k) for k in FIELDS]


def handle(c):
    op = c["op"]
    if op == "parse":
        r = nmea.NmeaReader()
        k = r.parse(bytes.fromhex(c["line"]))
        return {"k": k, "fix": fix_list(r.fix)}
    if op == "feed":
        r = nmea.NmeaReader()
        got = 0
        data = bytes.fromhex(c["data"])
        step = c["step"]
        for j in range(0, len(data), step):
            got |= r.feed(data[j:j + step])
        return {"got": got, "fix": fix_list(r.fix),
                "counts": [r.ok, r.ignored, r.bad_checksum, r.bad_format, r.bad_field,
                           r.overlong]}
    if op == "alloc":
        lines = [bytearray(bytes.fromhex(h)) for h in c["lines"]]
        chunks = [bytes.fromhex(h) for h in c["chunks"]]
        r = nmea.NmeaReader()
        for ln in lines:
            r.parse(ln)
        for ch in chunks:
            r.feed(ch)
        gc.collect()
        gc.disable()
        a0 = gc.mem_alloc()
        for _ in range(c["rounds"]):
            for ln in lines:
                r.parse(ln)
        a1 = gc.mem_alloc()
        for _ in range(c["rounds"]):
            for ch in chunks:
                r.feed(ch)
        a2 = gc.mem_alloc()
        gc.enable()
        return {"parse_bytes": a1 - a0, "feed_bytes": a2 - a1, "ok": r.ok,
                "rejected": r.bad_checksum + r.bad_format + r.bad_field}
    return {"crash": op}


while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        res = handle(json.loads(line))
    except Exception as e:
        res = {"crash": "%%s: %%s" %% (type(e).__name__, e)}
    print(json.dumps(res))
    res = None
    gc.collect()
''' % (N.FIX_FIELDS,)

vm = pytest.mark.skipif(not mpy_runner.available(), reason="micropython VM not installed")


def device_path(tmp_path, *modules):
    """A directory holding just these device modules (and fwutil)."""
    d = tmp_path / "dev"
    d.mkdir(exist_ok=True)
    for m in ("fwutil",) + modules:
        shutil.copy(DEVICE_DIR + "/%s.py" % m, d / ("%s.py" % m))
    return d


def vm_cases(seed, n_valid, n_garbled):
    rng = random.Random(seed)
    lines = [N.sentence(rng).encode() for _ in range(n_valid)]
    lines += [N.mutate(rng, N.sentence(rng)) for _ in range(n_garbled)]
    return lines


@vm
@pytest.mark.micropython
def test_parser_under_micropython_64k_equals_cpython_and_pynmea2(tmp_path):
    lines = vm_cases(2024, 600, 600)
    cases = [{"op": "parse", "line": ln.hex()} for ln in lines]
    got = mpy_runner.run_driver(DRIVER, cases, heapsize="64k", precompiled=True,
                                extra_path=[device_path(tmp_path, "nmea")])
    accepted = 0
    for ln, g in zip(lines, got):
        assert "crash" not in g, (ln, g)
        k, r = parse_one(ln)
        assert g == {"k": k, "fix": [getattr(r.fix, f) for f in N.FIX_FIELDS]}, ln
        verdict, msg = N.pynmea2_parse(ln)
        if verdict == "checksum":
            assert k < 0
        if k > 0:
            accepted += 1
            assert verdict == "ok"
            assert N.disagreements(dict(zip(N.FIX_FIELDS, g["fix"])), N.expected(msg)) == []
    assert accepted > 600  # every valid one, and garbled ones whose checksum still held


@vm
@pytest.mark.micropython
def test_line_assembler_under_micropython(tmp_path):
    rng = random.Random(99)
    cases, refs = [], []
    for i in range(30):
        lines, data = stream_of(rng, 20)
        data = (b"\x00noise" if i % 2 else b"") + data + b"$GPTXT," + b"z" * 150 + b"\r\n"
        step = rng.choice([1, 3, 17, 100, len(data)])
        cases.append({"op": "feed", "data": data.hex(), "step": step})
        ref = nmea.NmeaReader()
        got = ref.feed(data)
        refs.append({"got": got, "fix": [getattr(ref.fix, f) for f in N.FIX_FIELDS],
                     "counts": [ref.ok, ref.ignored, ref.bad_checksum, ref.bad_format,
                                ref.bad_field, ref.overlong]})
    out = mpy_runner.run_driver(DRIVER, cases, heapsize="64k", precompiled=True,
                                extra_path=[device_path(tmp_path, "nmea")])
    assert out == refs
    assert all(r["counts"][0] == 20 and r["counts"][5] == 1 for r in refs)


@vm
@pytest.mark.micropython
def test_parsing_allocates_nothing_under_micropython(tmp_path):
    """Steady state: after the reader exists, parse() and feed() allocate no
    heap, valid and rejected sentences alike.  docs/mobile.md quotes it."""
    lines = vm_cases(5, 30, 10)
    _, stream = stream_of(random.Random(6), 20)
    chunks = [stream[i:i + 64] for i in range(0, len(stream), 64)]
    rounds = 100
    out = mpy_runner.run_driver(DRIVER, [{"op": "alloc", "lines": [ln.hex() for ln in lines],
                                          "chunks": [c.hex() for c in chunks],
                                          "rounds": rounds}],
                                heapsize="64k", precompiled=True,
                                extra_path=[device_path(tmp_path, "nmea")])[0]
    assert "crash" not in out, out
    assert out["rejected"] > 0 and out["ok"] > rounds * 30
    n = rounds * len(lines)
    print("parse: %d bytes for %d sentences; feed: %d bytes for %d sentences"
          % (out["parse_bytes"], n, out["feed_bytes"], rounds * 20))
    assert out["parse_bytes"] == 0, out
    assert out["feed_bytes"] == 0, out
