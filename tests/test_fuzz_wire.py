"""Fuzzing the wire decoders: whatever the bytes, glwire's FrameReader,
decode_datagram and open_frame (and spec.parse_frame) return frames or
raise their declared error, never anything else, and never hold more than
MAX_BUFFER bytes; and no tampering with a valid frame gets through (bit
flips anywhere, truncation, splicing, the wrong key, a flipped direction
flag), whether or not the tamperer fixes the CRCs, which carry no key."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import spec
from protocol.lean import glwire as w
from tests import vectors as V

PROPS = settings(deadline=None, max_examples=300,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KEYS = w.Keys(V.KEY)
FRAMES = [v.frame for v in V.VECTORS if v.key == V.KEY]


def verdict(data, keys=KEYS):
    """Lean decode of one datagram: ("ok", msg) or ("err", reason).  Any
    other exception fails the test that calls it."""
    try:
        return ("ok", w.open_frame(keys, w.decode_datagram(data)))
    except w.WireError as e:
        assert e.reason in w.NAK_NAMES
        return ("err", e.reason)


def spec_verdict(data, key=V.KEY):
    try:
        return ("ok", spec.parse_frame(key, data)["message"])
    except spec.RemoteProtocolError as e:
        assert e.reason in spec.NAK_NAMES
        return ("err", e.reason)


# --- arbitrary input --------------------------------------------------------------------

# Streams that look like the protocol often enough to get past the sync
# word and the header CRC: pieces of real frames mixed with random bytes.
pieces = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(FRAMES),
    st.sampled_from(FRAMES).flatmap(
        lambda f: st.tuples(st.integers(0, len(f)), st.integers(0, len(f))).map(
            lambda ab: f[min(ab):max(ab)])),
    st.just(b"GL"),
)
streams = st.lists(pieces, max_size=12).map(b"".join)


@PROPS
@given(streams, st.lists(st.integers(1, w.READ_SIZE), min_size=1, max_size=8))
def test_reader_survives_anything(stream, sizes):
    """Under the adapter contract (reads of at most READ_SIZE, drained in
    between) receive_data never refuses and the buffer stays bounded."""
    r = w.FrameReader()
    i = k = 0
    while i < len(stream):
        n = sizes[k % len(sizes)]
        k += 1
        r.receive_data(stream[i:i + n])
        i += n
        assert len(r._buf) <= w.MAX_BUFFER
        while True:
            f = r.next_frame()
            if f is w.NEED_DATA:
                break
            assert isinstance(f, (w.Frame, w.BadFrame))
            if isinstance(f, w.Frame):
                assert w.decode_datagram(f.raw).raw == f.raw  # only CRC-good frames
                if f.raw in FRAMES:
                    assert verdict(f.raw)[0] == "ok"
        assert len(r._buf) <= w.MAX_BUFFER


@PROPS
@given(st.binary(max_size=4 * w.READ_SIZE), st.integers(1, 4 * w.READ_SIZE))
def test_reader_only_raises_wire_error(data, n):
    """Off contract (oversized reads, no draining) the only failure is the
    declared one."""
    r = w.FrameReader()
    for i in range(0, len(data), n):
        try:
            r.receive_data(data[i:i + n])
        except w.WireError as e:
            assert e.reason == w.NAK_MALFORMED
        assert len(r._buf) <= w.MAX_BUFFER
    while r.next_frame() is not w.NEED_DATA:
        pass


@PROPS
@given(streams)
def test_datagram_and_open_only_raise_wire_error(data):
    data = data[:400]
    v = verdict(data)
    assert v == spec_verdict(data) or v[0] == spec_verdict(data)[0] == "err"
    if data not in FRAMES:
        assert v[0] == "err"


@PROPS
@given(st.sampled_from(V.TYPES + (0x00, 0x7F)), st.integers(0, 255), st.integers(0, 255),
       st.integers(2, 16).map(lambda n: n * 16), st.binary(min_size=320, max_size=320))
def test_good_crcs_random_body(t, version, flags, body_len, noise):
    """Frames that pass both CRCs but were made without the key."""
    head = V.header_bytes(t, body_len, seq=1, flags=flags, version=version)
    data = V.fix_crcs(head + noise[:body_len + 16] + bytes(4))
    got = verdict(data)
    assert got[0] == "err"
    assert spec_verdict(data) == ("err", spec.NAK_BAD_MAC)


@PROPS
@given(st.sampled_from(V.TYPES + (0x00, 0x7F)), st.integers(1, 15).map(lambda n: n * 16),
       st.data())
def test_good_mac_random_plaintext(t, plain_len, data):
    """Frames made with the key around random plaintext: the checks behind
    the MAC (padding, payload) raise WireError only."""
    plain = data.draw(st.binary(min_size=plain_len, max_size=plain_len))
    if data.draw(st.booleans()):  # often give it valid padding
        pad = data.draw(st.integers(1, 16))
        plain = plain[:-pad] + bytes([pad]) * pad
    frame = V.seal_raw(V.KEY, t, plain)
    got = verdict(frame)
    assert got == spec_verdict(frame)


# --- tampering with valid frames ---------------------------------------------------------------

frames = st.sampled_from(FRAMES)


@PROPS
@given(frames, st.data())
def test_any_bit_flip_is_rejected(frame, data):
    i = data.draw(st.integers(0, len(frame) - 1))
    bit = data.draw(st.integers(0, 7))
    b = bytearray(frame)
    b[i] ^= 1 << bit
    bad = bytes(b)
    assert verdict(bad)[0] == "err"
    assert spec_verdict(bad)[0] == "err"
    r = w.FrameReader()
    r.receive_data(bad)
    out = r.next_frame()
    assert not isinstance(out, w.Frame)  # a BadFrame, or skipped as noise


# Header bytes whose change (CRCs fixed) the MAC must catch, as a bad MAC:
# known flag bits, account, seq, timestamp, type; and all of body and MAC.
def _mac_positions(frame):
    body_end = len(frame) - 4
    pos = [(3, bit) for bit in range(3)]
    pos += [(i, bit) for i in range(4, 17) for bit in range(8)]
    pos += [(i, bit) for i in range(21, body_end) for bit in range(8)]
    return pos


@PROPS
@given(frames, st.data())
def test_bit_flip_with_fixed_crcs_is_bad_mac(frame, data):
    i, bit = data.draw(st.sampled_from(_mac_positions(frame)))
    b = bytearray(frame)
    b[i] ^= 1 << bit
    forged = V.fix_crcs(bytes(b))
    assert verdict(forged) == ("err", w.NAK_BAD_MAC)
    assert spec_verdict(forged) == ("err", spec.NAK_BAD_MAC)


@PROPS
@given(frames, st.integers(0, 20), st.integers(0, 7))
def test_header_flip_with_fixed_crcs_is_rejected(frame, i, bit):
    """Anywhere in the header (version and reserved flags included, see
    finding 1 in test_lean_vs_spec.py for the reason glwire gives)."""
    if i in (19, 20):
        return  # the header CRC itself: fixing it restores the original
    b = bytearray(frame)
    b[i] ^= 1 << bit
    forged = V.fix_crcs(bytes(b))
    assert verdict(forged)[0] == "err"
    assert spec_verdict(forged)[0] == "err"


@PROPS
@given(frames, st.data())
def test_truncation_is_rejected(frame, data):
    n = data.draw(st.integers(0, len(frame) - 1))
    cut = frame[:n]
    assert verdict(cut)[0] == "err"
    assert spec_verdict(cut)[0] == "err"
    if n > 25:
        assert verdict(V.fix_crcs(cut))[0] == "err"
    r = w.FrameReader()
    r.receive_data(cut)
    assert r.next_frame() is w.NEED_DATA  # waits for the rest, emits nothing


def _same_len_pairs():
    by_len = {}
    for f in FRAMES:
        by_len.setdefault(len(f), []).append(f)
    return [(a, b) for fs in by_len.values() for a in fs for b in fs if a != b]


SPLICEABLE = _same_len_pairs()


@pytest.mark.parametrize("a, b", SPLICEABLE[:12])
def test_header_of_one_frame_on_body_of_another_is_bad_mac(a, b):
    spliced = V.fix_crcs(a[:21] + b[21:])
    assert verdict(spliced) == ("err", w.NAK_BAD_MAC)
    assert spec_verdict(spliced) == ("err", spec.NAK_BAD_MAC)


@PROPS
@given(frames, frames, st.data(), st.booleans())
def test_any_splice_is_rejected(a, b, data, fix):
    k = data.draw(st.integers(1, len(a) - 1))
    spliced = a[:k] + b[k:]
    if fix and len(spliced) > 25:
        spliced = V.fix_crcs(spliced)
    if spliced in FRAMES:
        return  # the splice point fell where both frames agree to the end
    assert verdict(spliced)[0] == "err"
    assert spec_verdict(spliced)[0] == "err"


@pytest.mark.parametrize("v", V.VECTORS, ids=V.VECTOR_IDS)
def test_wrong_key_is_bad_mac(v):
    assert verdict(v.frame, w.Keys(V.WRONG_KEY)) == ("err", w.NAK_BAD_MAC)
    assert spec_verdict(v.frame, V.WRONG_KEY) == ("err", spec.NAK_BAD_MAC)


@pytest.mark.parametrize("v", V.VECTORS, ids=V.VECTOR_IDS)
def test_flipped_direction_flag_is_bad_mac(v):
    """A receiver's frame reflected back to it as a panel's (or the other
    way round): the direction flag is under the MAC."""
    b = bytearray(v.frame)
    b[3] ^= w.FLAG_FROM_RECEIVER
    reflected = V.fix_crcs(bytes(b))
    assert verdict(reflected, w.Keys(v.key)) == ("err", w.NAK_BAD_MAC)
    assert spec_verdict(reflected, v.key) == ("err", spec.NAK_BAD_MAC)


# --- round trips ----------------------------------------------------------------------------

@PROPS
@given(st.lists(V.messages(), min_size=1, max_size=5), V.headers, st.integers(1, 300))
def test_round_trip_every_type_through_the_reader(msgs, h, chunk):
    sealed = [w.seal(KEYS, m, h["account"], (h["seq"] + i) & 0xFFFFFFFF, h["timestamp"],
                     h["flags"]) for i, m in enumerate(msgs)]
    stream = b"".join(sealed)
    r = w.FrameReader()
    got = []
    for i in range(0, len(stream), chunk):
        r.receive_data(memoryview(stream)[i:i + chunk])
        while True:
            f = r.next_frame()
            if f is w.NEED_DATA:
                break
            got.append(w.open_frame(KEYS, f))
    assert got == msgs
    assert [spec.parse_frame(V.KEY, s)["message"] for s in sealed] == msgs
