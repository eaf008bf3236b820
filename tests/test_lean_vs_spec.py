"""The lean codec (protocol/lean/glwire.py) against the normative spec
(protocol/spec.py), under CPython: same numbers, same bytes for every
message, same message for every accepted payload, and the same verdict
(accept, or reject with the same NAK reason) for arbitrary and mutated
payloads and frames.  tests/test_lean_micropython.py repeats the core of
this under the real MicroPython VM.

Every test here runs twice: on the C primitives glwire uses under CPython
(cpython_cryptolib.FAST: binascii.crc_hqx, hmac, per-key hash states and
AES contexts) and on the portable primitives MicroPython runs, forced
under CPython with glwire.use_portable(True).

Three findings against glwire.py (MAC checked after version/flags, encoder
leaking non-EncodeError exceptions, lenient UTF-8 under MicroPython) were
fixed; their tests at the end stay as regression tests."""

import os
import subprocess
import sys

import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocol import spec
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.lean import glwire as w
from tests import vectors as V

PROPS = settings(deadline=None, max_examples=300,
                 suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True, params=["cpython", "portable"])
def primitives(request):
    """The codec on the runtime's C primitives, then on the portable ones."""
    w.use_portable(request.param == "portable")
    assert w.PRIMITIVES == request.param
    yield request.param
    w.use_portable(False)


def test_cpython_runs_the_c_primitives():
    """Imported under CPython, glwire runs on the C primitives (a receiver
    that silently fell back to the portable code would cost ~4x per frame)."""
    out = subprocess.run([sys.executable, "-c", "from protocol.lean import glwire; "
                          "print(glwire.PRIMITIVES)"], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         check=True)
    assert out.stdout.strip() == "cpython"


@given(key=st.binary(min_size=16, max_size=64), data=st.binary(max_size=300),
       iv=st.binary(min_size=16, max_size=16), blocks=st.integers(1, 17),
       start=st.integers(0, 40), end=st.integers(0, 300))
@PROPS
def test_the_two_primitive_sets_agree(key, data, iv, blocks, start, end):
    """Each C primitive against its portable twin, on the same inputs (and
    the portable CBC is cryptolib's, i.e. the shim's CBC mode)."""
    from protocol.lean import cpython_cryptolib as host

    before = w.PRIMITIVES
    w.use_portable(True)
    try:
        kp = w.Keys(key)
        body = (data * 17)[:16 * blocks].ljust(16 * blocks, b"\0")
        want_ct = bytes(w.aes_cbc(kp, iv, body, True))
        want = (w.crc16(data), w.crc16(data, min(start, len(data)), min(end, len(data))),
                w.hmac_sha256(key, data), w.frame_mac(kp, data),
                bytes(w.aes_cbc(kp, iv, want_ct, False)), w.equal_ct(data, data[:end]))
    finally:
        w.use_portable(before == "portable")
    kc = w.Keys(key)
    got = (host.crc16(data), host.crc16(data, min(start, len(data)), min(end, len(data))),
           host.hmac_sha256(key, data), host.mac(kc, data),
           bytes(host.cbc(kc, iv, want_ct, False)), host.equal_ct(data, data[:end]))
    assert got == want
    assert bytes(host.cbc(kc, iv, body, True)) == want_ct
    assert bytes(want[4]) == body
    for view in (bytearray, memoryview):
        assert host.crc16(view(data)) == want[0]
        assert host.mac(kc, view(data)) == want[3]


# --- the numbers ------------------------------------------------------------------

CONSTANTS = [
    "VERSION", "SYNC", "HEADER_LEN", "IV_LEN", "MAC_LEN", "CRC_LEN", "MIN_BODY_LEN",
    "MAX_BODY_LEN", "MIN_FRAME_LEN", "MAX_FRAME_LEN", "MAX_TEXT_LEN", "MAX_PARTITIONS",
    "FLAG_FROM_RECEIVER", "FLAG_BACKUP_PATH", "FLAG_CLOCK_UNSET", "FLAGS_KNOWN",
    "MSG_HELLO", "MSG_EVENT", "MSG_HEARTBEAT", "MSG_ACK", "MSG_NAK", "MSG_TIME",
    "MSG_COMMAND", "MSG_REPLY", "MSG_NAMES", "NAK_BAD_CRC", "NAK_BAD_MAC", "NAK_REPLAY",
    "NAK_UNKNOWN_ACCOUNT", "NAK_BUSY", "NAK_UNSUPPORTED", "NAK_TIME", "NAK_MALFORMED",
    "NAK_NAMES", "Q_NEW", "Q_RESTORE", "Q_STATUS",
    "MSG_POSITION", "POSITION_FORMAT", "POSITION_LEN", "MAX_LAT_UDEG", "MAX_LON_UDEG",
    "MAX_COURSE", "MAX_FIX_QUALITY", "POS_VALID", "POS_MOVING", "POS_IGNITION", "POS_ALARM",
    "POS_FLAGS_KNOWN", "MAX_POSITION_REASON",
]


@pytest.mark.parametrize("name", CONSTANTS)
def test_same_numbers(name):
    assert getattr(w, name) == getattr(spec, name)


def test_error_families():
    assert issubclass(w.WireError, RemoteProtocolError)
    assert issubclass(w.EncodeError, LocalProtocolError)


def test_same_keys_and_checksums():
    k = w.Keys(V.KEY)
    s = spec.Keys(V.KEY)
    assert (k.enc, k.mac) == (s.enc, s.mac) == V.derive(V.KEY)
    for data in (b"", b"123456789", bytes(range(256))):
        assert w.crc16(data) == spec.crc16(data)
        assert w.crc32(data) == spec.crc32(data)
    assert spec.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    assert spec.crc32(b"123456789") == 0xCBF43926  # CRC-32 check value


@given(key=st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
       iv=st.binary(min_size=16, max_size=16), text=st.binary(max_size=80))
@PROPS
def test_aes_context_is_cbc_for_every_key_size(key, iv, text):
    """The per-key AES context (CBC chained over ECB: the native codec's keys
    and SIA DC-09's 16/24/32-byte keys) against `cryptography`'s own CBC,
    both ways, one context used again and again."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from protocol.lean.cpython_cryptolib import AesContext

    body = text.ljust(-(-len(text) // 16) * 16 or 16, b"\x00")
    want = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(body)
    ctx = AesContext(key)
    for _ in range(2):
        assert bytes(ctx.cbc(iv, body, True)) == want
        assert bytes(ctx.cbc(iv, want, False)) == body
    with pytest.raises(ValueError):
        ctx.cbc(iv, body + b"x", False)


# --- golden vectors through the lean codec ----------------------------------------------

@pytest.mark.parametrize("v", V.VECTORS, ids=V.VECTOR_IDS)
def test_vector_through_lean(v):
    keys = w.Keys(v.key)
    assert w.encode_payload(v.msg) == v.payload
    assert w.decode_payload(v.msg["type"], v.payload) == v.msg
    assert w.seal(keys, v.msg, v.account, v.seq, v.timestamp, v.flags, v.iv) == v.frame
    fr = w.decode_datagram(v.frame)
    assert (fr.version, fr.flags, fr.account, fr.seq, fr.timestamp, fr.mtype) == \
        (1, v.flags, v.account, v.seq, v.timestamp, v.msg["type"])
    assert w.open_frame(keys, fr) == v.msg


# --- differential: generated messages ------------------------------------------------

@PROPS
@given(V.messages())
def test_encode_equals_build(m):
    data = spec.build_payload(m)
    assert w.encode_payload(m) == data
    assert w.decode_payload(m["type"], data) == m
    assert spec.parse_payload(m["type"], w.encode_payload(m)) == m


@PROPS
@given(V.messages(), V.headers, V.keys)
def test_seal_equals_build_frame(m, h, key):
    args = (m, h["account"], h["seq"], h["timestamp"], h["flags"], h["iv"])
    frame = spec.build_frame(key, *args)
    assert w.seal(w.Keys(key), *args) == frame
    fr = w.decode_datagram(frame)
    assert w.open_frame(w.Keys(key), fr) == m
    got = spec.parse_frame(key, frame)
    assert got["message"] == m
    assert (fr.version, fr.flags, fr.account, fr.seq, fr.timestamp, fr.mtype, fr.body_len) == \
        tuple(got[k] for k in ("version", "flags", "account", "seq", "timestamp", "type",
                               "body_len"))


# --- differential: accept/reject on bytes ------------------------------------------------

def lean_payload(t, data):
    try:
        return ("ok", w.decode_payload(t, data))
    except w.WireError as e:
        return ("err", e.reason)


def spec_payload(t, data, compiled=False):
    try:
        return ("ok", spec.parse_payload(t, data, compiled))
    except RemoteProtocolError as e:
        return ("err", e.reason)


def agree_on_payload(t, data):
    want = spec_payload(t, data)
    assert lean_payload(t, data) == want
    assert lean_payload(t, memoryview(bytearray(data))) == want  # as the codec sees it
    assert spec_payload(t, data, compiled=True) == want
    return want


types = st.sampled_from(V.TYPES) | st.integers(0, 255)


@PROPS
@given(types, st.binary(max_size=64))
def test_agree_on_arbitrary_payload(t, data):
    agree_on_payload(t, data)


def mutate(data, draw):
    """One random edit of a byte string: flip, set, cut, extend, insert, delete."""
    data = bytearray(data)
    kind = draw(st.sampled_from(["flip", "set", "cut", "extend", "insert", "delete"]))
    if kind == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "set" and data:
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "cut":
        del data[draw(st.integers(0, len(data))):]
    elif kind == "extend":
        data += draw(st.binary(min_size=1, max_size=4))
    elif kind == "insert":
        data.insert(draw(st.integers(0, len(data))), draw(st.integers(0, 255)))
    elif kind == "delete" and data:
        del data[draw(st.integers(0, len(data) - 1))]
    return bytes(data)


@PROPS
@given(V.messages(), st.data())
def test_agree_on_mutated_payload(m, data):
    raw = spec.build_payload(m)
    for _ in range(data.draw(st.integers(1, 3))):
        raw = mutate(raw, data.draw)
    agree_on_payload(m["type"], raw)


def test_agree_on_edge_payloads():
    # The hand-made cases of test_spec, through both codecs.
    from tests.test_spec import BAD_PAYLOADS, GOOD_EDGES
    for _, t, data in BAD_PAYLOADS:
        assert agree_on_payload(t, data)[0] == "err"
    for t, data in GOOD_EDGES:
        assert agree_on_payload(t, data)[0] == "ok"


# --- differential: refusing to build ----------------------------------------------------

def out_of_range(draw):
    """A message with exactly one integer field just out of its range (a
    field of its position record too, when it has one)."""
    m = draw(V.messages())
    t = m["type"]
    target, table = m, V.FIELDS[t]
    if "position" in m and draw(st.booleans()):
        m["position"] = target = dict(m["position"])
        table = V.POSITION_FIELDS
    name = draw(st.sampled_from(sorted(table)))
    rng = table[name]
    if rng[0] == "one_of":
        allowed = rng[1]
        target[name] = draw(st.integers(-1, 256).filter(lambda x: x not in allowed))
    else:
        target[name] = draw(st.sampled_from([rng[0] - 1, rng[1] + 1]))
    return m


@PROPS
@given(st.data())
def test_agree_on_refusing_out_of_range(data):
    m = out_of_range(data.draw)
    with pytest.raises(w.EncodeError):
        w.encode_payload(m)
    with pytest.raises(LocalProtocolError):
        spec.build_payload(m)
    with pytest.raises(LocalProtocolError):
        spec.build_payload(m, compiled=True)


@pytest.mark.parametrize("m", [
    dict(V.BY_NAME["event_plain"].msg, text="x" * 33),
    dict(V.BY_NAME["event_plain"].msg, text="€" * 11),  # 33 bytes
    dict(V.BY_NAME["event_plain"].msg, value=-2 ** 31 - 1),
    dict(V.BY_NAME["heartbeat"].msg, partitions=[0] * 9),
    dict(V.BY_NAME["reply"].msg, partitions=[-1]),
    {"type": 0x30},
])
def test_agree_on_refusing_the_rest(m):
    with pytest.raises(w.EncodeError):
        w.encode_payload(m)
    with pytest.raises(LocalProtocolError):
        spec.build_payload(m)


@pytest.mark.parametrize("kw", [dict(account=2 ** 32), dict(seq=-1), dict(timestamp=2 ** 32),
                                dict(flags=8), dict(iv=bytes(8))])
def test_agree_on_refusing_frame_arguments(kw):
    a = dict(account=1, seq=1, timestamp=1, flags=0, iv=V.IV)
    a.update(kw)
    m = V.BY_NAME["ack"].msg
    with pytest.raises(w.EncodeError):
        w.seal(w.Keys(V.KEY), m, a["account"], a["seq"], a["timestamp"], a["flags"], a["iv"])
    with pytest.raises(LocalProtocolError):
        spec.build_frame(V.KEY, m, **a)


# --- differential: frames -----------------------------------------------------------------

def lean_frame(key, data):
    try:
        fr = w.decode_datagram(data)
        return ("ok", w.open_frame(w.Keys(key), fr))
    except w.WireError as e:
        return ("err", e.reason)


def spec_frame(key, data, compiled=False):
    try:
        return ("ok", spec.parse_frame(key, data, compiled)["message"])
    except RemoteProtocolError as e:
        return ("err", e.reason)


def version_or_flags_forged(key, data):
    """Finding 1 (see test_lean_checks_mac_before_version_and_flags): glwire
    looks at version and reserved flags before the MAC.  True when that
    order changes the verdict's reason for `data`."""
    if len(data) < spec.HEADER_LEN:
        return False
    bad_header = data[2] != spec.VERSION or data[3] & ~spec.FLAGS_KNOWN
    return bool(bad_header) and spec_frame(key, data) == ("err", spec.NAK_BAD_MAC)


def agree_on_frame(key, data):
    want = spec_frame(key, data)
    got = lean_frame(key, data)
    if version_or_flags_forged(key, data):
        assert got[0] == "err"  # rejected all the same, for another reason
    else:
        assert got == want
    assert spec_frame(key, data, compiled=True) == want
    return want


@PROPS
@given(V.messages(), st.data())
def test_agree_on_mutated_frame(m, data):
    frame = spec.build_frame(V.KEY, m, V.ACCOUNT, 5, 1000, 0, V.IV)
    raw = frame
    for _ in range(data.draw(st.integers(1, 3))):
        raw = mutate(raw, data.draw)
    if data.draw(st.booleans()) and len(raw) > spec.HEADER_LEN + 4:
        raw = V.fix_crcs(raw)  # an attacker fixes the CRCs, which carry no key
    verdict = agree_on_frame(V.KEY, raw)
    if raw != frame:
        assert verdict[0] == "err"


@PROPS
@given(types, st.binary(max_size=80).map(V.pkcs7) | st.binary(min_size=1, max_size=5).map(
    lambda b: b * 16), st.integers(0, 15), st.sampled_from([1, 1, 1, 0, 2]))
def test_agree_on_authenticated_plaintext(t, plain, flags, version):
    """Frames with a good MAC around any plaintext: padding, version, flags
    and payload checks behind the MAC must agree too."""
    plain = plain[:spec.MAX_BODY_LEN - spec.IV_LEN]
    plain = plain[:len(plain) - len(plain) % 16] or bytes(16)
    data = V.seal_raw(V.KEY, t, plain, flags=flags, version=version)
    agree_on_frame(V.KEY, data)


@PROPS
@given(V.messages(), st.data())
def test_agree_on_bad_padding(m, data):
    """Every padding byte is checked, not only the last: a valid payload
    whose padding is wrong in one byte must be refused by both."""
    plain = bytearray(V.pkcs7(spec.build_payload(m)))
    pad = plain[-1]
    assume(pad >= 2)  # one byte of padding has no other byte to get wrong
    i = data.draw(st.integers(len(plain) - pad, len(plain) - 2))
    plain[i] ^= data.draw(st.integers(1, 255))
    frame = V.seal_raw(V.KEY, m["type"], bytes(plain))
    assert agree_on_frame(V.KEY, frame) == ("err", spec.NAK_MALFORMED)


@PROPS
@given(st.binary(max_size=320))
def test_agree_on_arbitrary_frame(data):
    agree_on_frame(V.KEY, data)
    agree_on_frame(V.KEY, V.BY_NAME["ack"].frame[:21] + data)


@pytest.mark.parametrize("v", V.VECTORS, ids=V.VECTOR_IDS)
def test_agree_on_wrong_key(v):
    assert agree_on_frame(V.WRONG_KEY, v.frame) == ("err", spec.NAK_BAD_MAC)


# --- findings once held against glwire.py, fixed; kept as regression tests ---------------

@pytest.mark.parametrize("byte, bit", [(2, 1), (3, 3), (3, 7)],
                         ids=["version", "reserved flag 3", "reserved flag 7"])
def test_lean_checks_mac_before_version_and_flags(byte, bit):
    f = bytearray(V.BY_NAME["ack"].frame)
    f[byte] ^= 1 << bit
    forged = V.fix_crcs(bytes(f))
    assert spec_frame(V.KEY, forged) == ("err", spec.NAK_BAD_MAC)
    assert lean_frame(V.KEY, forged) == ("err", spec.NAK_BAD_MAC)


LEAKS = [
    ("text lone surrogate", dict(V.BY_NAME["event_plain"].msg, text="\ud800")),
    ("text not str", dict(V.BY_NAME["event_plain"].msg, text=b"abc")),
    ("qualifier 1.0", dict(V.BY_NAME["event_plain"].msg, qualifier=1.0)),
    ("partitions None", dict(V.BY_NAME["heartbeat"].msg, partitions=None)),
    ("field missing", {"type": spec.MSG_ACK}),
]


@pytest.mark.parametrize("name, m", LEAKS, ids=[x[0] for x in LEAKS])
def test_lean_encoder_raises_only_encode_error(name, m):
    with pytest.raises(LocalProtocolError):
        spec.build_payload(m)
    with pytest.raises(w.EncodeError):
        w.encode_payload(m)
