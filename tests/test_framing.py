"""Framing: glwire.FrameReader (TCP, serial) and glwire.decode_datagram
(UDP) over the golden vectors.

Every vector is fed whole, byte by byte and concatenated with the others,
as bytes, bytearray and memoryview.  Noise before and between frames is
skipped and counted; a frame with a corrupted body comes out as a BadFrame
(its header is still trustworthy enough to NAK bad CRC) and the reader
resynchronises on the next frame; the receive buffer never grows past
MAX_BUFFER."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import spec
from protocol.lean import glwire as w
from tests import vectors as V

PROPS = settings(deadline=None, max_examples=100,
                 suppress_health_check=[HealthCheck.too_slow])

AS = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": lambda b: memoryview(bytearray(b)),
}


def feed(reader, data, chunk, as_type=bytes):
    """Feed `data` in chunks of `chunk` bytes, draining after each, as an
    adapter does.  -> the list of Frame / BadFrame objects that came out."""
    out = []
    for i in range(0, len(data), chunk):
        reader.receive_data(as_type(data[i:i + chunk]))
        assert len(reader._buf) <= w.MAX_BUFFER
        while True:
            f = reader.next_frame()
            if f is w.NEED_DATA:
                break
            out.append(f)
        assert len(reader._buf) <= w.MAX_BUFFER
    return out


def raws(frames):
    return [f.raw for f in frames if isinstance(f, w.Frame)]


@pytest.mark.parametrize("as_name", list(AS))
@pytest.mark.parametrize("chunk", [None, 1], ids=["whole", "bytewise"])
@pytest.mark.parametrize("v", V.VECTORS, ids=V.VECTOR_IDS)
def test_every_vector(v, chunk, as_name):
    r = w.FrameReader()
    out = feed(r, v.frame, chunk or len(v.frame), AS[as_name])
    assert raws(out) == [v.frame]
    f = out[0]
    assert (f.account, f.seq, f.timestamp, f.flags, f.mtype) == \
        (v.account, v.seq, v.timestamp, v.flags, v.msg["type"])
    assert w.open_frame(w.Keys(v.key), f) == v.msg
    assert spec.parse_frame(v.key, f.raw)["message"] == v.msg
    assert r.discarded == 0
    assert r.next_frame() is w.NEED_DATA


ALL = b"".join(v.frame for v in V.VECTORS)


@pytest.mark.parametrize("as_name", list(AS))
@pytest.mark.parametrize("chunk", [1, 2, 3, 20, 21, 22, 64, 297, w.READ_SIZE])
def test_concatenated_vectors(chunk, as_name):
    r = w.FrameReader()
    assert raws(feed(r, ALL, chunk, AS[as_name])) == [v.frame for v in V.VECTORS]
    assert r.discarded == 0


def test_partial_frame_needs_data():
    v = V.BY_NAME["event_text_max"]
    r = w.FrameReader()
    r.receive_data(v.frame[:20])  # not yet a header
    assert r.next_frame() is w.NEED_DATA
    r.receive_data(v.frame[20:100])  # header, part of the body
    assert r.next_frame() is w.NEED_DATA
    r.receive_data(v.frame[100:])
    assert r.next_frame().raw == v.frame
    assert r.next_frame() is w.NEED_DATA


# --- noise and resynchronisation -----------------------------------------------------------

no_sync = st.binary(max_size=200).map(lambda b: b.replace(b"G", b"g"))


@PROPS
@given(st.lists(no_sync, min_size=len(V.VECTORS) + 1, max_size=len(V.VECTORS) + 1),
       st.sampled_from([1, 5, 64, w.READ_SIZE]), st.sampled_from(list(AS)))
def test_noise_without_sync_is_skipped_and_counted(noises, chunk, as_name):
    stream = b"".join(n + v.frame for n, v in zip(noises, V.VECTORS)) + noises[-1]
    r = w.FrameReader()
    assert raws(feed(r, stream, chunk, AS[as_name])) == [v.frame for v in V.VECTORS]
    assert r.discarded == sum(len(n) for n in noises)


# Noise rich in "G" and "GL" (false starts), and in near-headers.
noisy = st.lists(st.sampled_from([b"G", b"GL", b"GLG", b"L", b"\x00", b"\xff", b"GL\x01",
                                  V.BY_NAME["ack"].frame[:21],  # a header with no body
                                  V.BY_NAME["hello"].frame[:40]]),
                 max_size=12).map(b"".join)


@PROPS
@given(st.lists(noisy, min_size=4, max_size=4), st.sampled_from([1, 7, 64, w.READ_SIZE]))
def test_resync_after_false_starts(noises, chunk):
    frames = [V.BY_NAME[n].frame for n in ("event_text_value", "heartbeat", "command")]
    stream = noises[0] + b"".join(f + n for f, n in zip(frames, noises[1:]))
    r = w.FrameReader()
    out = feed(r, stream, chunk)
    assert raws(out) == frames  # every good frame, in order, nothing else
    assert all(isinstance(f, (w.Frame, w.BadFrame)) for f in out)


def corrupt(frame, i):
    b = bytearray(frame)
    b[i] ^= 0x20
    return bytes(b)


@pytest.mark.parametrize("offset", [21, 30, 60, -20, -5, -1], ids=lambda o: "at %d" % o)
def test_corrupted_body_gives_bad_frame_then_next_frame(offset):
    bad_src = V.BY_NAME["nak_replay"]
    bad = corrupt(bad_src.frame, offset)
    good = V.BY_NAME["ack"].frame
    for chunk in (1, 13, w.READ_SIZE):
        r = w.FrameReader()
        out = feed(r, bad + good, chunk)
        assert isinstance(out[0], w.BadFrame)
        assert (out[0].account, out[0].seq) == (bad_src.account, bad_src.seq)
        assert raws(out) == [good]
        assert isinstance(out[-1], w.Frame)


@pytest.mark.parametrize("offset", [0, 1, 2, 5, 17, 19, 20])
def test_corrupted_header_is_noise(offset):
    bad = corrupt(V.BY_NAME["time"].frame, offset)
    good = V.BY_NAME["command"].frame
    r = w.FrameReader()
    out = feed(r, bad + good, 16)
    assert raws(out) == [good]
    assert not any(isinstance(f, w.BadFrame) for f in out)
    assert r.discarded >= len(bad) - 1  # the corrupt frame's bytes were skipped


def test_trailing_g_is_kept_across_reads():
    f = V.BY_NAME["hello"].frame
    r = w.FrameReader()
    assert feed(r, b"xxG", 3) == []
    assert raws(feed(r, f[1:], 5)) == [f]
    assert r.discarded == 2


# --- the buffer bound -----------------------------------------------------------------------

def test_max_buffer_is_one_frame_plus_one_read():
    assert w.MAX_BUFFER == w.MAX_FRAME_LEN + w.READ_SIZE
    assert w.MAX_FRAME_LEN == spec.MAX_FRAME_LEN


def test_buffer_bound_enforced():
    r = w.FrameReader()
    r.receive_data(b"G" * w.MAX_BUFFER)  # exactly the bound: accepted
    with pytest.raises(w.WireError) as ei:
        r.receive_data(b"G")
    assert ei.value.reason == w.NAK_MALFORMED
    assert len(r._buf) == w.MAX_BUFFER  # the refused bytes were not taken
    assert r.next_frame() is w.NEED_DATA  # draining frees the buffer
    assert len(r._buf) <= 1
    f = V.BY_NAME["ack"].frame
    assert raws(feed(r, f, len(f))) == [f]


def test_one_read_too_big_is_refused():
    r = w.FrameReader()
    with pytest.raises(w.WireError):
        r.receive_data(bytes(w.MAX_BUFFER + 1))


def test_worst_case_partial_frame_plus_a_read_fits():
    # A frame one byte short of complete, then a full read: the largest
    # buffer an adapter that drains after every read can cause.
    f = V.BY_NAME["event_text_max"].frame
    big = f[:-1]
    r = w.FrameReader()
    r.receive_data(big)
    assert r.next_frame() is w.NEED_DATA
    r.receive_data(f[-1:] + bytes(w.READ_SIZE - 1))
    assert r.next_frame().raw == f


# --- datagrams ------------------------------------------------------------------------------

@pytest.mark.parametrize("as_name", list(AS))
@pytest.mark.parametrize("v", V.VECTORS, ids=V.VECTOR_IDS)
def test_datagram_accepts_every_vector(v, as_name):
    f = w.decode_datagram(AS[as_name](v.frame))
    assert f.raw == v.frame
    assert w.open_frame(w.Keys(v.key), f) == v.msg


def _lengths():
    f = V.BY_NAME["event_text_value"].frame
    return [
        ("empty", b""),
        ("72 bytes", f[:72]),
        ("one short", f[:-1]),
        ("one long", f + b"\x00"),
        ("two frames", f + f),
        ("298 bytes", f + bytes(298 - len(f))),
        ("4096 bytes", bytes(4096)),
    ]


@pytest.mark.parametrize("name, data", _lengths(), ids=[x[0] for x in _lengths()])
def test_datagram_rejects_wrong_lengths(name, data):
    with pytest.raises(w.WireError) as ei:
        w.decode_datagram(data)
    assert ei.value.reason == w.NAK_MALFORMED
    with pytest.raises(spec.RemoteProtocolError) as ei:
        spec.parse_frame(V.KEY, data)
    assert ei.value.reason == spec.NAK_MALFORMED


@pytest.mark.parametrize("i", [0, 1, 10, 19, 20, 40, -1])
def test_datagram_rejects_bad_crc(i):
    with pytest.raises(w.WireError) as ei:
        w.decode_datagram(corrupt(V.BY_NAME["ack"].frame, i))
    assert ei.value.reason == w.NAK_BAD_CRC
