"""protocol/spec.py on its own: every struct round-trips the construct way,
the compiled structs equal the interpreted ones, the golden vectors come
out of it, and its functions raise only the two declared error families,
with the NAK reason and in the order docs/protocol.md gives."""

import json

import pytest
from construct import Container, SizeofError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import spec
from protocol.errors import LocalProtocolError, RemoteProtocolError
from tests import vectors as V

# No deadline: a slow CI machine must not turn into a failing test.
PROPS = settings(deadline=None, max_examples=100,
                 suppress_health_check=[HealthCheck.too_slow])


def raises(func, *args, **kw):
    try:
        func(*args, **kw)
    except Exception as e:  # noqa: BLE001 - the helper reports the class
        return e.__class__
    return None


def common(format, datasample, objsample, sizesample=SizeofError, **kw):
    """construct's own test helper (tests/declarativeunittest.py): parse and
    build both ways, sizeof, then the same through the compiled struct."""
    obj = format.parse(datasample, **kw)
    assert obj == objsample
    data = format.build(objsample, **kw)
    assert data == datasample
    if isinstance(sizesample, int):
        assert format.sizeof(**kw) == sizesample
    else:
        assert raises(format.sizeof, **kw) == sizesample
    cformat = format.compile()
    assert cformat.parse(datasample, **kw) == objsample
    assert cformat.build(objsample, **kw) == datasample


def fields(msg):
    return {k: v for k, v in msg.items() if k != "type"}


# --- construct-style checks per struct --------------------------------------------

def test_event_struct():
    v = V.BY_NAME["event_text_value"]
    obj = dict(fields(v.msg), position=None,
               ext=dict(reserved=0, position=False, value=True, text=True))
    common(spec.Event, v.payload, obj)
    v = V.BY_NAME["event_plain"]
    obj = dict(fields(v.msg), position=None,
               ext=dict(reserved=0, position=False, value=False, text=False))
    common(spec.Event, v.payload, obj)
    v = V.BY_NAME["event_position_max"]
    obj = dict(fields(v.msg), ext=dict(reserved=0, position=True, value=True, text=True))
    common(spec.Event, v.payload, obj)


def test_position_structs():
    v = V.BY_NAME["position"]
    common(spec.PositionReport, v.payload, fields(v.msg), 22)
    assert spec.STATIC_SIZES[spec.MSG_POSITION] == 22
    common(spec.Position, v.payload[1:], v.msg["position"], spec.POSITION_LEN)


@pytest.mark.parametrize("struct, name, size", [
    (spec.Hello, "hello", 12),
    (spec.Heartbeat, "heartbeat", SizeofError),
    (spec.Heartbeat, "heartbeat_clock_unset", SizeofError),
    (spec.Ack, "ack", 4),
    (spec.Nak, "nak_replay", 13),
    (spec.Time, "time", 10),
    (spec.Command, "command", 6),
    (spec.Reply, "reply", SizeofError),
])
def test_payload_struct(struct, name, size):
    v = V.BY_NAME[name]
    common(struct, v.payload, fields(v.msg), size)
    if isinstance(size, int):
        assert spec.STATIC_SIZES[v.msg["type"]] == size


def test_payload_switch_selects_by_type():
    for v in V.VECTORS:
        obj = spec.Payload.parse(v.payload, type=v.msg["type"])
        want = fields(v.msg)
        if v.msg["type"] == spec.MSG_EVENT:
            # the struct has the v1.1 position as it has text and value (None
            # when absent); parse_payload's dict leaves the key out then
            want.setdefault("position", None)
        assert spec._plain(obj) == want
        assert spec.Payload.build(obj, type=v.msg["type"]) == v.payload


def test_flags_struct():
    common(spec.Flags, b"\x05", dict(reserved=0, clock_unset=True, backup_path=False,
                                     from_receiver=True), 1)
    common(spec.Flags, b"\xf8", dict(reserved=31, clock_unset=False, backup_path=False,
                                     from_receiver=False), 1)


def test_header_struct():
    v = V.BY_NAME["nak_replay"]
    raw = v.frame[:spec.HEADER_LEN]
    obj = dict(sync=b"GL", version=1,
               flags=dict(reserved=0, clock_unset=False, backup_path=False, from_receiver=True),
               account=V.ACCOUNT, seq=v.seq, timestamp=v.timestamp, type="NAK", body_len=32,
               header_crc=int.from_bytes(raw[19:21], "big"))
    common(spec.Header, raw, obj, spec.HEADER_LEN)


def test_frame_struct():
    v = V.BY_NAME["event_text_value"]
    f = spec.Frame.parse(v.frame)
    assert f.header.account == V.ACCOUNT and f.body.iv == V.IV
    assert spec.Frame.build(f) == v.frame
    assert spec.FrameCompiled.parse(v.frame) == f
    assert spec.FrameCompiled.build(f) == v.frame
    assert raises(spec.Frame.sizeof) == SizeofError  # depends on body_len


@PROPS
@given(V.messages())
def test_payload_round_trip(m):
    data = spec.build_payload(m)
    assert spec.parse_payload(m["type"], data) == m
    # build(parse(d)) == d, at the struct level too
    obj = spec.Payload.parse(data, type=m["type"])
    assert spec.Payload.build(obj, type=m["type"]) == data


@PROPS
@given(V.messages())
def test_compiled_payload_equals_interpreted(m):
    data = spec.build_payload(m)
    assert spec.build_payload(m, compiled=True) == data
    assert spec.PayloadCompiled.parse(data, type=m["type"]) == \
        spec.Payload.parse(data, type=m["type"])
    assert spec.parse_payload(m["type"], data, compiled=True) == m


def outcome(func, *args, **kw):
    """('ok', value) or ('err', reason) for a parse call."""
    try:
        return ("ok", func(*args, **kw))
    except RemoteProtocolError as e:
        return ("err", e.reason)


@PROPS
@given(st.sampled_from(V.TYPES + (0x00, 0x05, 0x13, 0xFF)), st.binary(max_size=64))
def test_compiled_parser_agrees_on_arbitrary_bytes(t, data):
    a = outcome(spec.parse_payload, t, data)
    b = outcome(spec.parse_payload, t, data, compiled=True)
    assert a == b


@PROPS
@given(st.binary(min_size=spec.HEADER_LEN, max_size=spec.HEADER_LEN))
def test_compiled_header_agrees_on_arbitrary_bytes(raw):
    # Give about half the samples a sync word and a good CRC, a quarter also
    # a valid body_len, so that every branch is taken.
    if raw[0] & 1:
        if raw[0] & 2:
            raw = raw[:17] + (32 + 16 * (raw[18] % 15)).to_bytes(2, "big") + raw[19:]
        raw = V.fix_crcs(b"GL" + raw[2:] + bytes(4))[:spec.HEADER_LEN]
    a = raises(spec.Header.parse, raw) or spec.Header.parse(raw)
    b = raises(spec.HeaderCompiled.parse, raw) or spec.HeaderCompiled.parse(raw)
    assert a == b


@PROPS
@given(V.headers)
def test_header_round_trip(h):
    obj = dict(version=1, flags=spec.flags_from_int(h["flags"]), account=h["account"],
               seq=h["seq"], timestamp=h["timestamp"], type=spec.MSG_ACK, body_len=32)
    raw = spec.Header.build(obj)
    assert len(raw) == spec.HEADER_LEN
    parsed = spec.Header.parse(raw)
    assert spec.flags_to_int(parsed.flags) == h["flags"]
    assert (parsed.account, parsed.seq, parsed.timestamp) == \
        (h["account"], h["seq"], h["timestamp"])
    assert spec.Header.build(parsed) == raw
    assert spec.HeaderCompiled.parse(raw) == parsed
    assert spec.HeaderCompiled.build(obj) == raw


@PROPS
@given(V.messages(), V.headers, V.keys)
def test_frame_round_trip(m, h, key):
    f = spec.build_frame(key, m, h["account"], h["seq"], h["timestamp"], h["flags"], h["iv"])
    assert spec.build_frame(key, m, h["account"], h["seq"], h["timestamp"], h["flags"],
                            h["iv"], compiled=True) == f
    for compiled in (False, True):
        got = spec.parse_frame(key, f, compiled=compiled)
        assert got["message"] == m
        assert (got["account"], got["seq"], got["timestamp"], got["flags"], got["type"]) == \
            (h["account"], h["seq"], h["timestamp"], h["flags"], m["type"])
        assert got["iv"] == h["iv"]
    assert len(f) == spec.HEADER_LEN + got["body_len"] + spec.MAC_LEN + spec.CRC_LEN


# --- golden vectors ----------------------------------------------------------------------

@pytest.mark.parametrize("v", V.VECTORS, ids=V.VECTOR_IDS)
@pytest.mark.parametrize("compiled", [False, True], ids=["interpreted", "compiled"])
def test_vector_through_spec(v, compiled):
    assert spec.build_payload(v.msg, compiled=compiled) == v.payload
    assert spec.parse_payload(v.msg["type"], v.payload, compiled=compiled) == v.msg
    assert spec.build_frame(v.key, v.msg, v.account, v.seq, v.timestamp, v.flags, v.iv,
                            compiled=compiled) == v.frame
    got = spec.parse_frame(v.key, v.frame, compiled=compiled)
    assert got["message"] == v.msg
    assert (got["version"], got["flags"], got["account"], got["seq"], got["timestamp"]) == \
        (1, v.flags, v.account, v.seq, v.timestamp)


@pytest.mark.parametrize("v", V.VECTORS, ids=V.VECTOR_IDS)
def test_vectors_from_primitives(v):
    assert V.frame_from_primitives(v) == v.frame


def test_vectors_cover_every_type_and_direction():
    assert {v.msg["type"] for v in V.VECTORS} == set(spec.MSG_NAMES)
    assert {v.flags & spec.FLAG_FROM_RECEIVER for v in V.VECTORS} == {0, 1}


# --- payload validation: what parse_payload must reject ------------------------------------

EVENT = V.BY_NAME["event_plain"].payload  # q=1, code 130, ext 0
EVENT_TV = V.BY_NAME["event_text_value"].payload


def ev(q=b"\x01", code=b"\x00\x82", ext=b"\x00", tail=b""):
    return q + code + b"\x01\x00\x05" + bytes(4) + ext + tail


# a good position record (the "position" vector's)
POS = V.BY_NAME["position"].payload[1:]

BAD_PAYLOADS = [
    ("qualifier 0", spec.MSG_EVENT, ev(q=b"\x00")),
    ("qualifier 2", spec.MSG_EVENT, ev(q=b"\x02")),
    ("qualifier 7", spec.MSG_EVENT, ev(q=b"\x07")),
    ("code 1000", spec.MSG_EVENT, ev(code=b"\x03\xe8")),
    ("reserved ext bit", spec.MSG_EVENT, ev(ext=b"\x08")),
    ("ext says position, none", spec.MSG_EVENT, ev(ext=b"\x04")),
    ("position short", spec.MSG_EVENT, ev(ext=b"\x04", tail=POS[:-1])),
    ("position format 2", spec.MSG_EVENT, ev(ext=b"\x04", tail=b"\x02" + POS[1:])),
    ("position lat 90.000001", spec.MSG_EVENT,
     ev(ext=b"\x04", tail=POS[:1] + (90_000_001).to_bytes(4, "big") + POS[5:])),
    ("position lon -180.000001", spec.MSG_EVENT,
     ev(ext=b"\x04", tail=POS[:5] + (-180_000_001).to_bytes(4, "big", signed=True) + POS[9:])),
    ("position course 3600", spec.MSG_EVENT,
     ev(ext=b"\x04", tail=POS[:11] + (3600).to_bytes(2, "big") + POS[13:])),
    ("position quality 9", spec.MSG_EVENT, ev(ext=b"\x04", tail=POS[:13] + b"\x09" + POS[14:])),
    ("position flag bit 4", spec.MSG_EVENT, ev(ext=b"\x04", tail=POS[:20] + b"\x10")),
    ("position after text, text missing", spec.MSG_EVENT, ev(ext=b"\x05", tail=POS)),
    ("POSITION reason 9", spec.MSG_POSITION, b"\x09" + POS),
    ("POSITION short", spec.MSG_POSITION, b"\x01" + POS[:-1]),
    ("POSITION long", spec.MSG_POSITION, b"\x01" + POS + b"\x00"),
    ("POSITION empty", spec.MSG_POSITION, b""),
    ("ext says text, none", spec.MSG_EVENT, ev(ext=b"\x01")),
    ("ext says value, none", spec.MSG_EVENT, ev(ext=b"\x02")),
    ("value short", spec.MSG_EVENT, ev(ext=b"\x02", tail=b"\x00\x00\x00")),
    ("text 33 bytes", spec.MSG_EVENT, ev(ext=b"\x01", tail=b"\x21" + b"a" * 33)),
    ("text length past end", spec.MSG_EVENT, ev(ext=b"\x01", tail=b"\x05abc")),
    ("text not UTF-8", spec.MSG_EVENT, ev(ext=b"\x01", tail=b"\x01\xff")),
    ("text overlong UTF-8", spec.MSG_EVENT, ev(ext=b"\x01", tail=b"\x02\xc0\x80")),
    ("text surrogate", spec.MSG_EVENT, ev(ext=b"\x01", tail=b"\x03\xed\xa0\x80")),
    ("trailing byte", spec.MSG_EVENT, EVENT + b"\x00"),
    ("truncated", spec.MSG_EVENT, EVENT[:-1]),
    ("empty", spec.MSG_EVENT, b""),
    ("9 partitions", spec.MSG_HEARTBEAT, bytes(7) + b"\x09" + bytes(9)),
    ("partitions short", spec.MSG_HEARTBEAT, bytes(7) + b"\x02\x00"),
    ("partitions long", spec.MSG_HEARTBEAT, bytes(7) + b"\x01\x00\x00"),
    ("no partition count", spec.MSG_HEARTBEAT, bytes(7)),
    ("ACK short", spec.MSG_ACK, bytes(3)),
    ("ACK long", spec.MSG_ACK, bytes(5)),
    ("NAK reason 0", spec.MSG_NAK, bytes(4) + b"\x00" + bytes(8)),
    ("NAK reason 9", spec.MSG_NAK, bytes(4) + b"\x09" + bytes(8)),
    ("HELLO long", spec.MSG_HELLO, bytes(13)),
    ("TIME -721", spec.MSG_TIME, bytes(8) + (-721).to_bytes(2, "big", signed=True)),
    ("TIME 841", spec.MSG_TIME, bytes(8) + (841).to_bytes(2, "big", signed=True)),
    ("COMMAND 0", spec.MSG_COMMAND, bytes(6)),
    ("COMMAND 7", spec.MSG_COMMAND, b"\x07" + bytes(5)),
    ("REPLY result 4", spec.MSG_REPLY, bytes(4) + b"\x04" + bytes(3)),
    ("REPLY 9 partitions", spec.MSG_REPLY, bytes(7) + b"\x09" + bytes(9)),
]


@pytest.mark.parametrize("name, t, data", BAD_PAYLOADS, ids=[b[0] for b in BAD_PAYLOADS])
@pytest.mark.parametrize("compiled", [False, True], ids=["interpreted", "compiled"])
def test_bad_payload_is_malformed(name, t, data, compiled):
    with pytest.raises(RemoteProtocolError) as ei:
        spec.parse_payload(t, data, compiled=compiled)
    assert ei.value.reason == spec.NAK_MALFORMED


GOOD_EDGES = [
    (spec.MSG_EVENT, ev(ext=b"\x01", tail=b"\x20" + "é".encode() * 16)),  # 32 bytes
    (spec.MSG_EVENT, ev(ext=b"\x01", tail=b"\x00")),  # empty text
    (spec.MSG_EVENT, ev(ext=b"\x03", tail=b"\x00" + b"\x80\x00\x00\x00")),
    (spec.MSG_TIME, bytes(8) + (-720).to_bytes(2, "big", signed=True)),
    (spec.MSG_TIME, bytes(8) + (840).to_bytes(2, "big", signed=True)),
    (spec.MSG_NAK, bytes(4) + b"\x08" + bytes(8)),
    (spec.MSG_COMMAND, b"\x06" + bytes(5)),
    (spec.MSG_REPLY, bytes(4) + b"\x03" + bytes(2) + b"\x08" + bytes(8)),
    (spec.MSG_POSITION, b"\x00" + POS),  # reason 0: unspecified
    (spec.MSG_EVENT, ev(ext=b"\x04", tail=POS)),  # a position, nothing else
    (spec.MSG_EVENT, ev(ext=b"\x04", tail=POS[:1] + (-90_000_000).to_bytes(4, "big", signed=True)
                        + (-180_000_000).to_bytes(4, "big", signed=True) + POS[9:])),
]


@pytest.mark.parametrize("t, data", GOOD_EDGES)
def test_edge_payloads_accepted_and_rebuilt(t, data):
    m = spec.parse_payload(t, data)
    assert spec.build_payload(m) == data


@pytest.mark.parametrize("t", [0x00, 0x05, 0x13, 0x22, 0xFF])
def test_unknown_type_is_unsupported(t):
    for compiled in (False, True):
        with pytest.raises(RemoteProtocolError) as ei:
            spec.parse_payload(t, bytes(4), compiled=compiled)
        assert ei.value.reason == spec.NAK_UNSUPPORTED


@PROPS
@given(st.sampled_from(V.TYPES) | st.integers(0, 255), st.binary(max_size=300))
def test_parse_payload_raises_only_remote_error(t, data):
    for compiled in (False, True):
        try:
            m = spec.parse_payload(t, data, compiled=compiled)
        except RemoteProtocolError as e:
            assert e.reason in (spec.NAK_MALFORMED, spec.NAK_UNSUPPORTED)
        else:
            assert spec.build_payload(m) == data  # whatever parses is canonical


# --- build validation: what build_payload / build_frame must refuse ------------------------

def _ev(**kw):
    m = dict(V.BY_NAME["event_plain"].msg)
    m.update(kw)
    return m


_P = V.BY_NAME["position"].msg["position"]

BAD_MESSAGES = [
    ("qualifier 2", _ev(qualifier=2)),
    ("code 1000", _ev(code=1000)),
    ("code -1", _ev(code=-1)),
    ("zone 65536", _ev(zone=65536)),
    ("partition 256", _ev(partition=256)),
    ("event_time 2**32", _ev(event_time=2 ** 32)),
    ("text 33 bytes", _ev(text="a" * 33)),
    ("text 17 two-byte chars", _ev(text="é" * 17)),
    ("text not str", _ev(text=b"abc")),
    ("text lone surrogate", _ev(text="\ud800")),
    ("value 2**31", _ev(value=2 ** 31)),
    ("code float", _ev(code=1.5)),
    ("missing code", {k: v for k, v in _ev().items() if k != "code"}),
    ("9 partitions", dict(V.BY_NAME["heartbeat"].msg, partitions=[0] * 9)),
    ("partition state 256", dict(V.BY_NAME["heartbeat"].msg, partitions=[256])),
    ("NAK reason 0", dict(V.BY_NAME["nak_replay"].msg, reason=0)),
    ("NAK reason 9", dict(V.BY_NAME["nak_replay"].msg, reason=9)),
    ("TIME 841", dict(V.BY_NAME["time"].msg, utc_offset_min=841)),
    ("COMMAND 7", dict(V.BY_NAME["command"].msg, command=7)),
    ("REPLY result 4", dict(V.BY_NAME["reply"].msg, result=4)),
    ("ACK -1", {"type": spec.MSG_ACK, "ack_seq": -1}),
    ("unknown type", {"type": 0x55}),
    ("position lat 90.000001", _ev(position=dict(_P, lat=90_000_001))),
    ("position lon -180.000001", _ev(position=dict(_P, lon=-180_000_001))),
    ("position course 3600", _ev(position=dict(_P, course=3600))),
    ("position quality 9", _ev(position=dict(_P, quality=9))),
    ("position flag bit 4", _ev(position=dict(_P, flags=0x10))),
    ("position speed 65536", _ev(position=dict(_P, speed=65536))),
    ("position without hdop", _ev(position={k: v for k, v in _P.items() if k != "hdop"})),
    ("position not a dict", _ev(position=5)),
    ("POSITION reason 9", dict(V.BY_NAME["position"].msg, reason=9)),
    ("POSITION without position", {"type": spec.MSG_POSITION, "reason": 1}),
    ("no type", {"ack_seq": 1}),
]


@pytest.mark.parametrize("name, m", BAD_MESSAGES, ids=[b[0] for b in BAD_MESSAGES])
@pytest.mark.parametrize("compiled", [False, True], ids=["interpreted", "compiled"])
def test_bad_message_refused(name, m, compiled):
    with pytest.raises(LocalProtocolError):
        spec.build_payload(m, compiled=compiled)
    with pytest.raises(LocalProtocolError):
        spec.build_frame(V.KEY, m, 1, 1, 1, 0, V.IV, compiled=compiled)


@pytest.mark.parametrize("kw", [
    dict(account=-1), dict(account=2 ** 32), dict(seq=2 ** 32), dict(timestamp=-1),
    dict(flags=0x08), dict(flags=-1), dict(iv=bytes(15)), dict(iv=bytes(17)),
])
def test_bad_frame_arguments_refused(kw):
    args = dict(account=1, seq=1, timestamp=1, flags=0, iv=V.IV)
    args.update(kw)
    with pytest.raises(LocalProtocolError):
        spec.build_frame(V.KEY, V.BY_NAME["ack"].msg, **args)


@pytest.mark.parametrize("key", [bytes(15), bytes(65), "not bytes", None])
def test_bad_key_refused(key):
    with pytest.raises(LocalProtocolError):
        spec.build_frame(key, V.BY_NAME["ack"].msg, 1, 1, 1)
    with pytest.raises(LocalProtocolError):
        spec.parse_frame(key, V.BY_NAME["ack"].frame)


def test_fresh_iv_by_default():
    m = V.BY_NAME["ack"].msg
    a = spec.build_frame(V.KEY, m, 1, 1, 1)
    b = spec.build_frame(V.KEY, m, 1, 1, 1)
    assert a != b  # same message, same seq: still different bytes on the wire
    assert spec.parse_frame(V.KEY, a)["message"] == spec.parse_frame(V.KEY, b)["message"] == m


# --- parse_frame: reasons and the order of checks --------------------------------------------

def reason(key, data, compiled=False):
    with pytest.raises(RemoteProtocolError) as ei:
        spec.parse_frame(key, data, compiled=compiled)
    return ei.value.reason


def flip(data, i, bit=0):
    b = bytearray(data)
    b[i] ^= 1 << bit
    return bytes(b)


ACKV = V.BY_NAME["ack"]


@pytest.mark.parametrize("compiled", [False, True], ids=["interpreted", "compiled"])
def test_parse_frame_reasons(compiled):
    f = ACKV.frame

    def r(key, data):
        return reason(key, data, compiled)

    assert r(V.KEY, f[:72]) == spec.NAK_MALFORMED  # below the minimum frame
    assert r(V.KEY, f + bytes(300)) == spec.NAK_MALFORMED  # above the maximum
    assert r(V.KEY, f + b"\x00") == spec.NAK_MALFORMED  # length != header's
    assert r(V.KEY, f[:-1] + b"\x00\x00") == spec.NAK_MALFORMED
    assert r(V.KEY, b"XL" + f[2:]) == spec.NAK_BAD_CRC  # sync
    assert r(V.KEY, flip(f, 10)) == spec.NAK_BAD_CRC  # header CRC
    assert r(V.KEY, flip(f, 40)) == spec.NAK_BAD_CRC  # frame CRC (body)
    assert r(V.KEY, flip(f, len(f) - 1)) == spec.NAK_BAD_CRC  # the CRC itself
    assert r(V.WRONG_KEY, f) == spec.NAK_BAD_MAC
    assert r(V.KEY, V.fix_crcs(flip(f, 40))) == spec.NAK_BAD_MAC  # forged body
    assert r(V.KEY, V.fix_crcs(flip(f, 3, 0))) == spec.NAK_BAD_MAC  # direction flag
    # body_len changed and CRCs fixed: the length no longer matches
    assert r(V.KEY, V.fix_crcs(flip(f, 18, 4))) == spec.NAK_MALFORMED


def test_forged_header_fields_are_bad_mac_not_anything_else():
    """MAC before version and flags: a forger who changes the version or a
    reserved flag (and fixes the CRCs, which carry no key) must still be
    reported as a forgery (docs/protocol.md, "Order of checks")."""
    f = ACKV.frame
    assert reason(V.KEY, V.fix_crcs(flip(f, 2, 1))) == spec.NAK_BAD_MAC  # version 3
    assert reason(V.KEY, V.fix_crcs(flip(f, 3, 7))) == spec.NAK_BAD_MAC  # reserved flag
    assert reason(V.KEY, V.fix_crcs(flip(f, 16, 6))) == spec.NAK_BAD_MAC  # type


def seal(plain, t=spec.MSG_ACK, **kw):
    return V.seal_raw(V.KEY, t, plain, **kw)


def test_authenticated_but_wrong():
    """Past the MAC, errors are the sender's mistakes, with their own NAKs."""
    ack = V.pkcs7(bytes(4))
    assert reason(V.KEY, seal(ack, version=2)) == spec.NAK_UNSUPPORTED
    assert reason(V.KEY, seal(ack, flags=0x10)) == spec.NAK_MALFORMED
    assert reason(V.KEY, seal(ack, t=0x7F)) == spec.NAK_UNSUPPORTED
    assert reason(V.KEY, seal(bytes(16))) == spec.NAK_MALFORMED  # padding byte 0
    assert reason(V.KEY, seal(bytes(15) + b"\x11")) == spec.NAK_MALFORMED  # pad 17
    assert reason(V.KEY, seal(bytes(12) + b"\x01\x02\x03\x04")) == spec.NAK_MALFORMED
    assert reason(V.KEY, seal(V.pkcs7(bytes(5)))) == spec.NAK_MALFORMED  # ACK of 5
    # a whole block of padding is fine
    assert spec.parse_frame(V.KEY, seal(bytes(4) + bytes([12]) * 12))["message"] == \
        {"type": spec.MSG_ACK, "ack_seq": 0}


@PROPS
@given(st.binary(max_size=400))
def test_parse_frame_raises_only_remote_error(data):
    # Make the interesting prefix likely: a real header in front.
    for d in (data, ACKV.frame[:21] + data):
        for compiled in (False, True):
            try:
                spec.parse_frame(V.KEY, d, compiled=compiled)
            except RemoteProtocolError as e:
                assert e.reason in spec.NAK_NAMES
            else:  # pragma: no cover - would need a CRC-32 and a MAC collision
                pytest.fail("random bytes accepted")


@PROPS
@given(st.integers(0, 255), st.binary(min_size=0, max_size=64).map(V.pkcs7),
       st.integers(0, 255), st.integers(0, 3))
def test_authenticated_garbage_raises_only_remote_error(t, plain, flags, version):
    data = V.seal_raw(V.KEY, t, plain, flags=flags, version=version)
    for compiled in (False, True):
        try:
            got = spec.parse_frame(V.KEY, data, compiled=compiled)
        except RemoteProtocolError as e:
            assert e.reason in (spec.NAK_MALFORMED, spec.NAK_UNSUPPORTED)
        else:
            assert version == 1 and flags <= 7
            assert spec.build_payload(got["message"]) == plain[:-plain[-1]]


# --- describe -----------------------------------------------------------------------------

@pytest.mark.parametrize("v", V.VECTORS, ids=V.VECTOR_IDS)
def test_describe_with_key(v):
    d = spec.describe(v.frame, v.key)
    assert d["message"] == v.msg
    assert d["type_name"] == spec.MSG_NAMES[v.msg["type"]]
    assert d["account"] == v.account and d["seq"] == v.seq
    assert d["direction"] == ("receiver->panel" if v.flags & 1 else "panel->receiver")
    assert "error" not in d
    assert json.loads(json.dumps(d)) == d  # JSON-ready as it stands


def test_describe_without_key_and_from_hex():
    v = V.BY_NAME["heartbeat_clock_unset"]
    d = spec.describe(v.frame.hex())
    assert "message" not in d and "error" not in d
    assert d["iv"] == V.IV.hex()
    assert bytes.fromhex(d["body"]) == v.frame[37:37 + d["body_len"] - 16]
    assert d["flag_names"] == ["backup_path", "clock_unset"]
    assert spec.describe(v.frame.hex(), v.key.hex())["message"] == v.msg
    json.dumps(d)


@pytest.mark.parametrize("data, key, want", [
    (b"", None, "no_header"),  # no header to address a NAK to: no NAK reason
    (b"garbage" * 20, None, "no_header"),
    (ACKV.frame[:20], None, "cut_short"),
    (flip(ACKV.frame, 5), None, spec.NAK_BAD_CRC),  # header CRC
    (flip(ACKV.frame, 40), None, spec.NAK_BAD_CRC),  # frame CRC
    (ACKV.frame + b"\x00", None, spec.NAK_MALFORMED),
    (ACKV.frame, V.WRONG_KEY, spec.NAK_BAD_MAC),
])
def test_describe_reports_errors(data, key, want):
    d = spec.describe(data, key)
    if isinstance(want, str):
        assert d["error"]["reason"] is None and d["error"]["reason_name"] == want
    else:
        assert d["error"]["reason"] == want
        assert d["error"]["reason_name"] == spec.NAK_NAMES[want]
    json.dumps(d)


@pytest.mark.parametrize("frame, key", [("zz", None), (ACKV.frame, "0x12"),
                                        (ACKV.frame, bytes(8))])
def test_describe_refuses_caller_mistakes(frame, key):
    with pytest.raises(LocalProtocolError):
        spec.describe(frame, key)


def test_describe_accepts_spaced_hex():
    spaced = " ".join(ACKV.frame[i:i + 4].hex() for i in range(0, len(ACKV.frame), 4))
    assert spec.describe(spaced, " ".join([V.KEY.hex()[:32], V.KEY.hex()[32:]]))["message"] \
        == ACKV.msg


def test_container_equality_ignores_hidden_fields():
    # The spec relies on this: Tell marks ("_start") are not message fields.
    assert Container(a=1, _start=0) == {"a": 1}
