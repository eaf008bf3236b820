"""A vehicle unit's position in DC-09: gldc09.position_blocks() and
build_adm_cid(xdata=...) against the host codec (protocol/dc09.py), which
reads [X]/[Y] into the event's location; the same under the MicroPython VM."""

import pytest
from hypothesis import given, strategies as st

from protocol import dc09
from protocol.dc09 import Dc09Message, build, event_to_adm_cid, parse
from protocol.lean import gldc09
from tests import mpy_runner
from tests.test_dc09 import ACCOUNTS, ENC_TS, HEX16, KEYS, clear_payload_len, keys_of, tuple_of

LATS = st.integers(-90_000_000, 90_000_000)
LONS = st.integers(-180_000_000, 180_000_000)


@pytest.mark.parametrize("lat, lon, want", [
    (52370200, 4895200, "[X4.895200][Y52.370200]"),
    (-33868800, 151209300, "[X151.209300][Y-33.868800]"),
    (-1, -999999, "[X-0.999999][Y-0.000001]"),
    (90_000_000, -180_000_000, "[X-180.000000][Y90.000000]"),
])
def test_position_blocks(lat, lon, want):
    assert gldc09.position_blocks(lat, lon) == want


@given(LATS, LONS, st.integers(0, 9999), ACCOUNTS, HEX16, HEX16,
       st.one_of(st.none(), KEYS), st.data())
def test_adm_cid_with_position_equals_host_build_and_reads_back(lat, lon, seq, acct, line,
                                                                  rcvr, key, data):
    ev = {"qualifier": 1, "code": 133, "partition": 1, "zone": 5}
    xdata = gldc09.position_blocks(lat, lon)
    ext = [("X", xdata[2:xdata.index("]")]), ("Y", xdata[xdata.index("[Y") + 2:-1])]
    ts = ENC_TS if key is not None else None
    msg = Dc09Message("ADM-CID", key is not None, seq, rcvr, line, acct,
                      event_to_adm_cid(acct, ev), ext, ts)
    pad = None
    if key is not None:
        n = dc09.pad_length(clear_payload_len(msg) + 1)
        pad = data.draw(st.binary(min_size=n, max_size=n).filter(
            lambda p: not set(p) & set(b"|[]")))
    lean = gldc09.build_adm_cid(seq, acct, line, rcvr, 1, 133, 1, 5, key,
                                None if ts is None else tuple_of(ts), pad, xdata)
    assert lean == build(msg, key, pad)
    got = parse(lean, keys_of(key))
    loc = dc09.location(dc09.extended_data(got))
    assert loc == {"lat": pytest.approx(lat / 1e6, abs=1e-9),
                   "lon": pytest.approx(lon / 1e6, abs=1e-9)}


@pytest.mark.parametrize("lat, lon", [(90_000_001, 0), (0, -180_000_001), (1.5, 0), (True, 0)])
def test_position_out_of_range_refused(lat, lon):
    with pytest.raises(gldc09.Dc09UsageError):
        gldc09.position_blocks(lat, lon)


@pytest.mark.parametrize("xdata", ["X1", "[X1", "[X1]]", "[X[1]]", "[X1]\r", 5, "[Xé]"])
def test_bad_xdata_refused(xdata):
    with pytest.raises(gldc09.Dc09UsageError):
        gldc09.build_adm_cid(1, "1234", "0", None, 1, 133, 1, 5, None, None, None, xdata)


DRIVER = r'''
import sys
import json
import gldc09

while True:
    line = sys.stdin.readline()
    if not line:
        break
    c = json.loads(line)
    try:
        x = gldc09.position_blocks(c["lat"], c["lon"])
        f = gldc09.build_adm_cid(7, "12AB", "1", None, 1, 133, 1, 5, None, None, None, x)
        print(json.dumps({"x": x, "frame": f.hex()}))
    except gldc09.Dc09UsageError:
        print(json.dumps({"err": 1}))
'''


@pytest.mark.micropython
@pytest.mark.skipif(not mpy_runner.available(), reason="micropython VM not installed")
def test_position_blocks_under_micropython():
    import random
    rng = random.Random(9)
    cases = [{"lat": rng.randint(-90_000_000, 90_000_000),
              "lon": rng.randint(-180_000_000, 180_000_000)} for _ in range(200)]
    cases += [{"lat": 90_000_001, "lon": 0}, {"lat": -90_000_000, "lon": 180_000_000}]
    out = mpy_runner.run_driver(DRIVER, cases)
    for c, got in zip(cases, out):
        try:
            x = gldc09.position_blocks(c["lat"], c["lon"])
        except gldc09.Dc09UsageError:
            assert got == {"err": 1}
            continue
        f = gldc09.build_adm_cid(7, "12AB", "1", None, 1, 133, 1, 5, None, None, None, x)
        assert got == {"x": x, "frame": f.hex()}
