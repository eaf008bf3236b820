"""The fault-injection link against real sockets and ptys on loopback.

Each fault is checked for doing what it says, with a small peer on the far
side that records what arrives (and echoes it, so the down direction is
exercised too).  No test asserts on time except as a lower bound the link
guarantees (a delay is at least the delay asked for); everything else
polls for a condition with a generous deadline."""

from __future__ import annotations

import asyncio
import os

import pytest
import serial

from hil import link as L
from hil.timeline import Timeline
from protocol.lean import glwire as w
from testkit.wait import wait_until

KEYS = w.Keys(b"k" * 32)
ACCOUNT = 4321


def frame(seq: int, account: int = ACCOUNT, mtype=w.MSG_EVENT) -> bytes:
    if mtype == w.MSG_EVENT:
        msg = {"type": w.MSG_EVENT, "qualifier": w.Q_NEW, "code": 130, "partition": 1,
               "zone": seq % 100, "event_time": 1_700_000_000 + seq}
    else:
        msg = {"type": w.MSG_HEARTBEAT, "troubles": 0, "battery_mv": 13200,
               "active_path": 1, "queue_depth": 0, "partitions": [0]}
    return w.seal(KEYS, msg, account, seq, 1_700_000_000 + seq, iv=bytes(16))


def parse_stream(data: bytes):
    """(good Frames, BadFrames, discarded bytes) as glwire sees a stream."""
    r = w.FrameReader()
    good, bad = [], []
    mv = memoryview(data)
    while len(mv):
        r.receive_data(mv[:w.READ_SIZE])
        mv = mv[w.READ_SIZE:]
        while True:
            f = r.next_frame()
            if f is w.NEED_DATA:
                break
            (bad if isinstance(f, w.BadFrame) else good).append(f)
    return good, bad, r.discarded


# --- peers ------------------------------------------------------------------------


class TcpPeer:
    """Records every byte it gets and echoes it back."""

    def __init__(self, echo: bool = True):
        self.echo = echo
        self.data = bytearray()
        self.connections = 0
        self.server = None
        self.address = None

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address = self.server.sockets[0].getsockname()[:2]
        return self

    async def _handle(self, r, wr):
        self.connections += 1
        try:
            while data := await r.read(4096):
                self.data += data
                if self.echo:
                    wr.write(data)
        except ConnectionError:
            pass
        finally:
            wr.close()

    async def close(self):
        self.server.close()


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self, echo: bool = True):
        self.echo = echo
        self.datagrams: list[tuple[bytes, tuple]] = []
        self.transport = None

    def datagram_received(self, data, addr):
        self.datagrams.append((data, addr))
        if self.echo:
            self.transport.sendto(data, addr)

    async def start(self):
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                                local_addr=("127.0.0.1", 0))
        self.address = self.transport.get_extra_info("sockname")[:2]
        return self

    def close(self):
        self.transport.close()


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self):
        self.received: list[bytes] = []

    def datagram_received(self, data, addr):
        self.received.append(data)

    async def start(self, remote):
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                                remote_addr=remote)
        return self


@pytest.fixture
async def tcp_setup():
    peer = await TcpPeer().start()
    link = await L.TcpLink(peer.address, name="tcp", seed=7).start()
    yield peer, link
    await link.close()
    await peer.close()


@pytest.fixture
async def udp_setup():
    peer = await UdpPeer().start()
    link = await L.UdpLink(peer.address, name="udp", seed=7).start()
    yield peer, link
    await link.close()
    peer.close()


async def tcp_client(link):
    return await asyncio.open_connection(*link.address)


async def read_available(reader, into: bytearray):
    while True:
        data = await reader.read(4096)
        if not data:
            return
        into += data


# --- the segmenter (sans-I/O) ---------------------------------------------------------


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_segmenter_cuts_frames_whole_bytewise_and_concatenated(kind):
    frames = [frame(i) for i in range(1, 4)]
    stream = b"noise" + frames[0] + frames[1] + b"\x00GX" + frames[2]
    expect = [b"noise", frames[0], frames[1], b"\x00GX", frames[2]]
    # whole
    assert L.Segmenter().feed(kind(stream)) == expect
    # byte by byte: raw runs may come out in pieces, frames always whole
    s = L.Segmenter()
    units = []
    for i in range(len(stream)):
        units += s.feed(kind(stream[i:i + 1]))
    units += s.flush()
    assert [u for u in units if u.startswith(b"GL") and len(u) > 50] == frames
    assert b"".join(units) == stream


def test_segmenter_holds_a_partial_header_until_flush():
    s = L.Segmenter()
    assert s.feed(b"GL\x01") == []
    assert s.pending == 3
    assert s.flush() == [b"GL\x01"]


def test_label_names_frames_and_bad_frames():
    f = frame(9)
    assert L.label(f) == {"account": ACCOUNT, "seq": 9, "type": "EVENT",
                          "ts": 1_700_000_009}
    bad = bytearray(f)
    bad[40] ^= 1  # body: header intact, frame CRC wrong
    assert L.label(bytes(bad))["bad_crc"] is True
    assert L.label(b"hello") is None


def test_faults_reject_nonsense():
    with pytest.raises(ValueError):
        L.Faults(drop=1.5).check()
    with pytest.raises(ValueError):
        L.Faults(throttle=0).check()
    with pytest.raises(ValueError):
        L.Link().cut("sideways")


# --- TCP ------------------------------------------------------------------------------


async def test_tcp_clean_link_passes_and_labels_frames(tcp_setup):
    peer, link = tcp_setup
    r, wr = await tcp_client(link)
    frames = [frame(i) for i in range(1, 21)]
    wr.write(b"".join(frames))
    back = bytearray()
    await wait_until(lambda: len(peer.data) == sum(map(len, frames)), what="all bytes upstream")
    reader_task = asyncio.create_task(read_available(r, back))
    await wait_until(lambda: len(back) == len(peer.data), what="the echo back")
    assert bytes(peer.data) == b"".join(frames)
    assert bytes(back) == bytes(peer.data)
    wr.write(b"not a frame\n")
    await wait_until(lambda: link.timeline.select("link", "raw", dir="up"), what="a raw unit",
                     timeout=10)
    (raw,) = link.timeline.select("link", "raw", dir="up")
    assert bytes.fromhex(raw.detail["hex"]) == b"not a frame\n"
    up = link.frames("up")
    assert [e.detail["seq"] for e in up] == list(range(1, 21))
    assert all(e.detail["account"] == ACCOUNT and e.detail["type"] == "EVENT" for e in up)
    assert all(len(e.detail["delivered"]) == 1 for e in up)
    wr.close()
    reader_task.cancel()


async def test_tcp_drop_all_delivers_nothing(tcp_setup):
    peer, link = tcp_setup
    link.set("up", drop=1.0)
    r, wr = await tcp_client(link)
    for i in range(1, 11):
        wr.write(frame(i))
    await wait_until(lambda: link.stats["up"]["dropped"] == 10, what="10 drops",
                     seen=lambda: link.stats["up"])
    assert await link.drained()
    assert bytes(peer.data) == b""
    assert link.stats["up"]["delivered"] == 0
    wr.close()


async def test_tcp_duplicate_delivers_each_frame_twice(tcp_setup):
    peer, link = tcp_setup
    link.set("up", duplicate=1.0)
    r, wr = await tcp_client(link)
    frames = [frame(i) for i in range(1, 6)]
    for f in frames:
        wr.write(f)
    await wait_until(lambda: len(peer.data) == 2 * sum(map(len, frames)),
                     what="every frame twice", seen=lambda: len(peer.data))
    good, bad, _ = parse_stream(bytes(peer.data))
    assert [f.seq for f in good] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert not bad
    wr.close()


async def test_tcp_corrupt_flips_bits_and_glwire_rejects_every_frame(tcp_setup):
    peer, link = tcp_setup
    link.set("up", corrupt=1.0, corrupt_bits=1)
    r, wr = await tcp_client(link)
    frames = [frame(i) for i in range(1, 31)]
    wr.write(b"".join(frames))
    await wait_until(lambda: len(peer.data) == sum(map(len, frames)), what="all bytes")
    got = bytes(peer.data)
    assert got != b"".join(frames)
    # exactly one bit differs per frame (same length: frames line up)
    off = 0
    for f in frames:
        diff = sum(bin(a ^ b).count("1") for a, b in zip(f, got[off:off + len(f)]))
        assert diff == 1
        off += len(f)
    good, bad, discarded = parse_stream(got)
    assert good == []  # CRC-16 and CRC-32 catch every single-bit error
    assert bad or discarded
    wr.close()


async def test_tcp_cut_then_restore(tcp_setup):
    peer, link = tcp_setup
    r, wr = await tcp_client(link)
    back = bytearray()
    reader_task = asyncio.create_task(read_available(r, back))
    wr.write(frame(1))
    await wait_until(lambda: len(back) == len(frame(1)), what="first echo")
    link.cut()
    wr.write(frame(2))
    await wait_until(lambda: link.stats["up"]["cut"] == 1, what="the cut to swallow frame 2")
    assert await link.drained()
    assert bytes(peer.data) == frame(1)
    link.restore()
    wr.write(frame(3))
    await wait_until(lambda: bytes(peer.data) == frame(1) + frame(3), what="frame 3 after restore",
                     seen=lambda: len(peer.data))
    await wait_until(lambda: bytes(back) == frame(1) + frame(3), what="its echo")
    wr.close()
    reader_task.cancel()


async def test_tcp_cut_one_direction_only(tcp_setup):
    peer, link = tcp_setup
    link.cut("down")
    r, wr = await tcp_client(link)
    back = bytearray()
    reader_task = asyncio.create_task(read_available(r, back))
    wr.write(frame(1) + frame(2))
    await wait_until(lambda: len(peer.data) == 2 * len(frame(1)), what="frames upstream")
    await wait_until(lambda: link.stats["down"]["cut"] == 2, what="echoes cut on the way down")
    assert await link.drained()
    assert bytes(back) == b""
    wr.close()
    reader_task.cancel()


async def test_tcp_cut_with_reset_drops_connections_and_refuses_until_restore(tcp_setup):
    peer, link = tcp_setup
    r, wr = await tcp_client(link)
    await wait_until(lambda: len(link.connections) == 1, what="connection through the link")
    link.cut(reset=True)
    assert await r.read(10) == b""  # reset: EOF or error, not data
    r2, w2 = await tcp_client(link)
    assert await r2.read(10) == b""  # refused while cut
    assert link.refused == 1
    link.restore()
    r3, w3 = await tcp_client(link)
    w3.write(frame(5))
    await wait_until(lambda: bytes(peer.data).endswith(frame(5)), what="traffic after restore")
    w3.close()


async def test_tcp_delay_is_at_least_what_was_asked(tcp_setup):
    peer, link = tcp_setup
    link.set("up", delay_s=0.15, jitter_s=0.05)
    r, wr = await tcp_client(link)
    for i in range(1, 6):
        wr.write(frame(i))
    await wait_until(lambda: len(peer.data) == 5 * len(frame(1)), what="delayed frames")
    for e in link.frames("up"):
        # the link's own record: delivery never earlier than arrival + delay
        (delivered,) = e.detail["delivered"]
        assert delivered - e.t >= 0.15 - 1e-3
        assert any(x.startswith("delay:") for x in e.detail["fate"])
    wr.close()


async def test_tcp_throttle_stretches_a_burst(tcp_setup):
    peer, link = tcp_setup
    n = 8
    size = len(frame(1))
    link.set("up", throttle=size * 20)  # 20 frames per second
    r, wr = await tcp_client(link)
    wr.write(b"".join(frame(i) for i in range(1, n + 1)))
    await wait_until(lambda: len(peer.data) == n * size, what="throttled burst")
    up = link.frames("up")
    span = up[-1].detail["delivered"][0] - up[0].t
    # store and forward at 20 frames/s: n frames take at least n/20 s
    assert span >= n / 20 - 1e-3
    wr.close()


async def test_tcp_each_connection_has_its_own_pipe(tcp_setup):
    peer, link = tcp_setup
    r1, w1 = await tcp_client(link)
    r2, w2 = await tcp_client(link)
    w1.write(frame(1))
    w2.write(frame(2, account=99))
    await wait_until(lambda: len(peer.data) == 2 * len(frame(1)), what="both connections")
    pipes = {e.detail["account"]: e.detail["pipe"] for e in link.frames("up")}
    assert len(set(pipes.values())) == 2
    w1.close()
    w2.close()


async def test_tcp_upstream_down_closes_the_client():
    peer = await TcpPeer().start()
    addr = peer.address
    await peer.close()
    await peer.server.wait_closed()
    link = await L.TcpLink(addr, name="dead").start()
    try:
        r, wr = await tcp_client(link)
        assert await r.read(10) == b""
        assert link.refused == 1
    finally:
        await link.close()


# --- UDP ------------------------------------------------------------------------------


async def test_udp_replies_go_back_to_each_client(udp_setup):
    peer, link = udp_setup
    a = await UdpClient().start(link.address)
    b = await UdpClient().start(link.address)
    a.transport.sendto(frame(1))
    b.transport.sendto(frame(2, account=77))
    await wait_until(lambda: a.received and b.received, what="both replies")
    assert a.received == [frame(1)]
    assert b.received == [frame(2, account=77)]
    assert len(link.clients) == 2
    a.transport.close()
    b.transport.close()


async def test_udp_reorder_changes_order_but_loses_nothing(udp_setup):
    peer, link = udp_setup
    link.set("up", reorder=0.5)
    c = await UdpClient().start(link.address)
    sent = [frame(i) for i in range(1, 41)]
    for f in sent:
        c.transport.sendto(f)
        await asyncio.sleep(0.002)  # keep the send order on the socket
    await wait_until(lambda: len(peer.datagrams) == len(sent), what="all datagrams",
                     seen=lambda: len(peer.datagrams))
    got = [w.decode_datagram(d).seq for d, _ in peer.datagrams]
    assert sorted(got) == list(range(1, 41))
    assert got != list(range(1, 41))
    assert link.stats["up"]["reordered"] > 0
    c.transport.close()


async def test_udp_corrupt_is_rejected_by_decode_datagram(udp_setup):
    peer, link = udp_setup
    link.set("up", corrupt=1.0, corrupt_bits=3)
    c = await UdpClient().start(link.address)
    for i in range(1, 21):
        c.transport.sendto(frame(i))
    await wait_until(lambda: len(peer.datagrams) == 20, what="corrupted datagrams")
    for d, _ in peer.datagrams:
        with pytest.raises(w.WireError):
            w.decode_datagram(d)
    c.transport.close()


async def _seeded_run(seed) -> tuple[list, list]:
    peer = await UdpPeer(echo=False).start()
    link = await L.UdpLink(peer.address, name="repro", seed=seed).start()
    # a held unit must be overtaken by its successor, not released by a
    # timer, even if a loaded host stalls between two sends
    link.reorder_hold_s = 2.0
    link.set("up", drop=0.2, duplicate=0.2, reorder=0.2, corrupt=0.2, jitter_s=0.01)
    c = await UdpClient().start(link.address)
    for i in range(1, 61):
        c.transport.sendto(frame(i))
        await asyncio.sleep(0.002)
    await wait_until(lambda: link.stats["up"]["units"] == 60, what="60 units")
    assert await link.drained()
    fates = [(e.detail["n"], e.detail["seq"], tuple(f for f in e.detail["fate"]
                                                    if f != "reorder-timeout"))
             for e in link.frames("up")]
    received = [d for d, _ in peer.datagrams]
    c.transport.close()
    await link.close()
    peer.close()
    return fates, received


async def test_seeded_faults_are_reproducible():
    f1, r1 = await _seeded_run(1234)
    f2, r2 = await _seeded_run(1234)
    f3, r3 = await _seeded_run(999)
    assert f1 == f2
    assert r1 == r2  # same datagrams, same bit flips, same order
    assert f1 != f3
    kinds = {x.split(":")[0] for _, _, fate in f1 for x in fate}
    assert {"drop", "duplicate", "reorder", "corrupt"} <= kinds


async def test_udp_drop_and_duplicate_counts_match_what_arrives(udp_setup):
    peer, link = udp_setup
    link.set("up", drop=0.3, duplicate=0.3)
    c = await UdpClient().start(link.address)
    for i in range(1, 101):
        c.transport.sendto(frame(i))
    await wait_until(lambda: link.stats["up"]["units"] == 100, what="100 units")
    assert await link.drained()
    s = link.stats["up"]
    expected = 100 - s["dropped"] + s["duplicated"]
    await wait_until(lambda: len(peer.datagrams) == expected, what="%d datagrams" % expected,
                     seen=lambda: len(peer.datagrams))
    seqs = [w.decode_datagram(d).seq for d, _ in peer.datagrams]
    dropped = {e.detail["seq"] for e in link.frames("up") if "drop" in e.detail["fate"]}
    assert set(seqs) == set(range(1, 101)) - dropped
    c.transport.close()


# --- schedules ------------------------------------------------------------------------


async def test_schedule_cuts_and_restores_over_time(udp_setup):
    peer, link = udp_setup
    c = await UdpClient().start(link.address)
    task = link.schedule([(0.0, "cut", {"direction": "up"}), (0.3, "restore")])
    await wait_until(lambda: link.is_cut("up"), what="the scheduled cut")
    c.transport.sendto(frame(1))
    await wait_until(lambda: link.stats["up"]["cut"] == 1, what="frame 1 cut")
    await task
    assert not link.is_cut("up")
    c.transport.sendto(frame(2))
    await wait_until(lambda: len(peer.datagrams) == 1, what="frame 2 after restore")
    assert w.decode_datagram(peer.datagrams[0][0]).seq == 2
    actions = [e.detail["action"] for e in link.timeline.select("link", "control")]
    assert actions == ["cut", "restore"]
    c.transport.close()


async def test_schedule_rejects_unknown_actions(udp_setup):
    _, link = udp_setup
    with pytest.raises(ValueError):
        link.schedule([(0, "explode")])


# --- serial ---------------------------------------------------------------------------


async def test_serial_link_between_pty_pairs_passes_and_drops():
    tl = Timeline("serial")
    with L.pty_pair() as panel_side, L.pty_pair() as receiver_side:
        link = await L.SerialLink(panel_side.b, receiver_side.a, name="serial", seed=3,
                                  timeline=tl).start()
        panel = serial.serial_for_url(panel_side.a, baudrate=115200, timeout=0.05)
        recv = serial.serial_for_url(receiver_side.b, baudrate=115200, timeout=0.05)
        got = bytearray()
        back = bytearray()

        def pump():
            got.extend(recv.read(4096))
            back.extend(panel.read(4096))

        def arrived(n):
            pump()
            return len(got) >= n

        def answered():
            pump()
            return parse_stream(bytes(back))[0]

        try:
            panel.write(frame(1) + frame(2))
            await wait_until(lambda: arrived(2 * len(frame(1))),
                             what="frames across the serial link")
            good, _, _ = parse_stream(bytes(got))
            assert [f.seq for f in good] == [1, 2]
            recv.write(frame(3, mtype=w.MSG_HEARTBEAT))
            (reply,) = await wait_until(answered, what="the reply down the line")
            assert reply.mtype == w.MSG_HEARTBEAT
            link.set("up", drop=1.0)
            panel.write(frame(4))
            await wait_until(lambda: link.stats["up"]["dropped"] == 1, what="the drop")
            assert await link.drained()
            pump()
            assert len(got) == 2 * len(frame(1))
        finally:
            panel.close()
            recv.close()
            await link.close()
    assert [e.detail["seq"] for e in tl.select("link", "frame", dir="up")] == [1, 2, 4]


def test_pty_pair_is_a_null_modem():
    with L.pty_pair() as p:
        a = serial.serial_for_url(p.a, timeout=1)
        b = serial.serial_for_url(p.b, timeout=1)
        try:
            a.write(b"ping\n")
            assert b.readline() == b"ping\n"
        finally:
            a.close()
            b.close()
    assert not os.path.exists(p.a)
