"""The receiver as a real server on loopback with a real SQLite file: many
panels at once, duplicates, every kind of bad input, timeouts and caps,
backpressure and store failure, a serial line on a pty, metrics.

Silence is never asserted by waiting: a bad frame is followed on the same
connection by a good one, and the good one's ACK must be the first reply
(the receiver judges frames in order, so a reply to the bad one would have
come first)."""

import asyncio
import os
import random
import struct
import time

import aiohttp
import pytest

from protocol.lean import glpanel, glwire as w
from receiver.config import Config, SerialSpec
from receiver.listeners import MAX_GARBAGE_BYTES, StreamLink
from receiver.testing import make_accounts, running_receiver
from receiver.web.api import connected_accounts
from testkit.session_panel import SessionPanel, event_msg, heartbeat_msg
from testkit.wait import wait_until

N_PANELS = 120  # >= 100 concurrent panels
EVENTS_EACH = 8


def cfg_for(tmp_path, **kw):
    c = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)], udp=[("127.0.0.1", 0)],
               metrics=("127.0.0.1", 0))
    for k, v in kw.items():
        setattr(c, k, v)
    return c


@pytest.fixture
def accounts():
    return make_accounts(N_PANELS, region="north", zones={"3": "vault door"})


@pytest.fixture
async def rx(tmp_path, accounts):
    async with running_receiver(cfg_for(tmp_path), accounts) as r:
        yield r


def seal_raw(keys, mtype, payload, account, seq, ts=None, flags=0):
    """A correctly sealed frame around arbitrary payload bytes (for
    'authentic but malformed' inputs the codec refuses to build)."""
    ts = int(time.time()) if ts is None else ts
    pad = 16 - len(payload) % 16
    plain = bytes(payload) + bytes([pad]) * pad
    iv = os.urandom(16)
    ct = bytearray(len(plain))
    w.aes(keys.enc, 2, iv).encrypt(plain, ct)
    body_len = 16 + len(plain)
    hdr = bytearray(b"GL" + struct.pack(">BBIIIBH", 1, flags, account, seq, ts, mtype,
                                        body_len))
    hdr += struct.pack(">H", w.crc16(hdr, 0, 19))
    f = bytes(hdr) + iv + bytes(ct)
    f += w.hmac_sha256(keys.mac, f)[:16]
    return f + struct.pack(">I", w.crc32(f))


def event_frame(key, account, seq, ts=None, flags=0, **kw):
    return w.seal(w.Keys(key), event_msg(**kw), account, seq,
                  int(time.time()) if ts is None else ts, flags)


class Raw:
    """A raw TCP client that can read and open the receiver's replies."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.fr = w.FrameReader()
        self.frames = []

    @classmethod
    async def connect(cls, rx):
        host, port = rx.addresses["tcp"][0]
        return cls(*await asyncio.open_connection(host, port))

    def send(self, data):
        self.writer.write(data)

    async def next_frame(self, timeout=20):
        while True:
            f = self.fr.next_frame()
            if f is not w.NEED_DATA:
                self.frames.append(f)
                return f
            data = await asyncio.wait_for(self.reader.read(w.READ_SIZE), timeout)
            if not data:
                return None
            self.fr.receive_data(data)

    async def eof(self, timeout=20):
        """True once the receiver closed the connection (reads past any data)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), end - time.monotonic())
            except (ConnectionError, OSError):
                return True
            if not data:
                return True
        return False

    def close(self):
        self.writer.close()


def opened(key, frame):
    return w.open_frame(w.Keys(key), frame)


async def security_events(rx, reason):
    return [s for s in await rx.store.list_security_events() if s.reason == reason]


# -- many panels --------------------------------------------------------------------------


async def test_many_concurrent_panels_every_event_stored_once(rx, accounts):
    host, port = rx.addresses["tcp"][0]
    uhost, uport = rx.addresses["udp"][0]

    async def panel(i):
        udp = i % 6 == 0
        p = SessionPanel(i, accounts[i].key, uhost if udp else host, uport if udp else port,
                         transport="udp" if udp else "tcp")
        await p.connect()
        for seq in range(1, EVENTS_EACH + 1):
            await p.deliver(seq, event_msg(code=130 if seq == 3 else 602, zone=3))
        await p.deliver(EVENTS_EACH + 1, heartbeat_msg())
        await p.close()
        return p

    panels = await asyncio.gather(*(panel(i) for i in accounts))
    assert all(p.acked == list(range(1, EVENTS_EACH + 2)) for p in panels)
    assert await rx.store.count_events() == N_PANELS * EVENTS_EACH
    for i in (1, 6, N_PANELS):
        evs = await rx.store.list_events(account=str(i))
        assert sorted(e.seq for e in evs) == list(range(1, EVENTS_EACH + 1))
        assert evs[0].peer.startswith("udp:" if i % 6 == 0 else "tcp:127.0.0.1:")
    alarms = await rx.store.list_alarms()
    assert len(alarms) == N_PANELS  # code 130 once per panel
    assert alarms[0].description == "Burglary, zone 3 (vault door), partition 1"
    # group commit: far fewer transactions than events
    assert rx.store.commits < N_PANELS * EVENTS_EACH


async def test_retransmitted_event_is_acked_again_and_stored_once(rx, accounts):
    host, port = rx.addresses["tcp"][0]
    # one event, its content fixed (its event time included: built once, as
    # the panel's queue keeps it; a second message built a second later is a
    # different event under the same sequence, which the receiver must keep)
    msg = event_msg(code=602)
    p = SessionPanel(1, accounts[1].key, host, port)
    await p.connect()
    await p.deliver(1, msg)
    # The panel lost the ACK (reboot): a new session offers seq 1 again,
    # freshly sealed, then once more on UDP.
    p2 = SessionPanel(1, accounts[1].key, host, port)
    await p2.connect()
    await p2.deliver(1, msg)
    uhost, uport = rx.addresses["udp"][0]
    p3 = SessionPanel(1, accounts[1].key, uhost, uport, transport="udp")
    await p3.connect()
    await p3.deliver(1, msg)
    assert await rx.store.count_events() == 1
    assert rx.metrics.duplicates._value.get() >= 2
    for x in (p, p2, p3):
        await x.close()


# -- bad input ----------------------------------------------------------------------------


async def test_garbage_then_a_frame_resynchronises(rx, accounts):
    c = await Raw.connect(rx)
    c.send(os.urandom(200).replace(b"G", b"g") + event_frame(accounts[1].key, 1, 1))
    f = await c.next_frame()
    assert opened(accounts[1].key, f) == {"type": w.MSG_ACK, "ack_seq": 1}
    c.close()


async def test_garbage_only_connection_is_dropped_early(rx):
    c = await Raw.connect(rx)
    c.send(os.urandom(MAX_GARBAGE_BYTES + 2000).replace(b"G", b"g"))
    assert await c.eof()
    assert await rx.store.count_events() == 0


async def test_oversize_frame_is_dropped_and_connection_closed(rx, accounts):
    # A header with a valid CRC claiming a 4 KB body: never buffered as a
    # frame (the length is checked before the body is read).
    hdr = bytearray(b"GL" + struct.pack(">BBIIIBH", 1, 0, 1, 1, int(time.time()),
                                        w.MSG_EVENT, 4096))
    hdr += struct.pack(">H", w.crc16(hdr, 0, 19))
    c = await Raw.connect(rx)
    c.send(bytes(hdr) + bytes(4096 + 20))
    assert await c.eof()
    # one oversize UDP datagram: no reply, and the endpoint keeps serving
    uhost, uport = rx.addresses["udp"][0]
    loop = asyncio.get_running_loop()
    t, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                               remote_addr=(uhost, uport))
    t.sendto(bytes(hdr) + bytes(2000))
    t.sendto(b"")
    t.sendto(os.urandom(100))
    t.close()
    p = SessionPanel(2, accounts[2].key, uhost, uport, transport="udp")
    await p.connect()
    await p.deliver(1, event_msg())
    await p.close()
    assert await rx.store.count_events() == 1


@pytest.mark.parametrize("case", ["bad_mac", "unknown_account", "reflected"])
async def test_security_rejections_are_silent_and_recorded_with_peer(rx, accounts, case):
    key = accounts[1].key
    if case == "bad_mac":
        bad = event_frame(os.urandom(32), 1, 1)  # right account, wrong key
        reason = "bad_mac"
    elif case == "unknown_account":
        bad = event_frame(os.urandom(32), 999_999, 1)
        reason = "unknown_account"
    else:
        bad = event_frame(key, 1, 1, flags=w.FLAG_FROM_RECEIVER)
        reason = "bad_mac"
    c = await Raw.connect(rx)
    c.send(bad + event_frame(key, 1, 2))
    f = await c.next_frame()
    assert opened(key, f) == {"type": w.MSG_ACK, "ack_seq": 2}  # the first reply
    local = c.writer.get_extra_info("sockname")
    [sec] = await wait_until(lambda: security_events(rx, reason), what="security event")
    assert sec.peer == "tcp:%s:%d" % local and sec.transport == "tcp"
    assert sec.account == ("999999" if case == "unknown_account" else "1")
    assert rx.metrics.security.labels(reason)._value.get() >= 1
    assert [e.seq for e in await rx.store.list_events()] == [2]
    c.close()


async def test_reflected_ack_is_rejected(rx, accounts):
    key = accounts[1].key
    c = await Raw.connect(rx)
    c.send(event_frame(key, 1, 1))
    ack = await c.next_frame()
    c.send(ack.raw + event_frame(key, 1, 2))  # our own ACK sent back at us
    f = await c.next_frame()
    assert opened(key, f)["ack_seq"] == 2
    assert await wait_until(lambda: security_events(rx, "bad_mac"))
    c.close()


async def test_replayed_frame_is_silent_recorded_and_stored_once(rx, accounts):
    key = accounts[1].key
    frame = event_frame(key, 1, 1)
    c = await Raw.connect(rx)
    c.send(frame)
    assert opened(key, await c.next_frame())["ack_seq"] == 1
    c.send(frame + event_frame(key, 1, 2))  # byte-identical copy, then a new one
    assert opened(key, await c.next_frame())["ack_seq"] == 2
    [sec] = await wait_until(lambda: security_events(rx, "replay"))
    assert "replay" in sec.detail
    assert sorted(e.seq for e in await rx.store.list_events()) == [1, 2]
    c.close()


async def test_three_security_rejections_close_the_connection(rx, accounts):
    c = await Raw.connect(rx)
    c.send(b"".join(event_frame(os.urandom(32), 1, s) for s in (1, 2, 3, 4)))
    assert await c.eof()
    assert len(await wait_until(lambda: _at_least(security_events(rx, "bad_mac"), 3))) >= 3


async def _at_least(coro, n):
    r = await coro
    return r if len(r) >= n else None


async def test_authentic_but_malformed_payload_is_nakked_malformed(rx, accounts):
    key = accounts[1].key
    keys = w.Keys(key)
    # EVENT with qualifier 9 and a trailing byte: MAC good, payload bad
    payload = struct.pack(">BHBHIB", 9, 130, 1, 1, 0, 0) + b"\x00"
    c = await Raw.connect(rx)
    c.send(seal_raw(keys, w.MSG_EVENT, payload, 1, 1))
    nak = opened(key, await c.next_frame())
    assert (nak["type"], nak["nak_seq"], nak["reason"]) == (w.MSG_NAK, 1, w.NAK_MALFORMED)
    # an unknown message type, and a receiver-only type sent by a panel
    c.send(seal_raw(keys, 0x7F, b"\x01\x02", 1, 2))
    nak = opened(key, await c.next_frame())
    assert nak["reason"] == w.NAK_UNSUPPORTED
    c.send(w.seal(keys, {"type": w.MSG_ACK, "ack_seq": 5}, 1, 3, int(time.time())))
    nak = opened(key, await c.next_frame())
    assert (nak["nak_seq"], nak["reason"]) == (3, w.NAK_UNSUPPORTED)
    assert await rx.store.count_events() == 0
    c.close()


async def test_stale_timestamp_is_nakked_with_receiver_time(rx, accounts):
    key = accounts[1].key
    c = await Raw.connect(rx)
    c.send(event_frame(key, 1, 1, ts=int(time.time()) - 3600))
    nak = opened(key, await c.next_frame())
    assert nak["reason"] == w.NAK_TIME and abs(nak["receiver_time"] - time.time()) < 3600
    assert await rx.store.count_events() == 0
    c.close()


async def test_fuzzed_input_never_escapes_the_event_path(rx, accounts):
    """Mutated, truncated and concatenated frames through a stream link into
    the real core and store: nothing raises, nothing bogus is stored."""
    rng = random.Random(1234)
    key = accounts[1].key
    good = [event_frame(key, 1, s) for s in range(1, 40)]
    sent = []
    closed = []
    link = StreamLink(rx, "fuzz", sent.append, closed.append)
    for i in range(400):
        f = bytearray(rng.choice(good))
        kind = rng.randrange(5)
        if kind == 0:
            f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            f = f[:rng.randrange(len(f))]
        elif kind == 2:
            f = bytearray(os.urandom(rng.randrange(1, 600)))
        elif kind == 3:
            f = f + bytearray(rng.choice(good))[: rng.randrange(80)]
        else:
            f[rng.randrange(21, len(f) - 20)] ^= 0xFF  # inside the body: bad MAC
        link.feed(bytes(f))
        if link.closed or closed:
            link = StreamLink(rx, "fuzz", sent.append, closed.append)
            closed.clear()
    await wait_until(lambda: rx.store.pending_writes == 0 and not rx.inflight)
    seqs = [e.seq for e in await rx.store.list_events()]
    assert len(seqs) == len(set(seqs)) and set(seqs) <= set(range(1, 40))


# -- timeouts and caps -----------------------------------------------------------------------


async def test_unauthenticated_and_idle_connections_are_closed(tmp_path, accounts):
    cfg = cfg_for(tmp_path, auth_timeout_s=0.5, idle_timeout_s=1.5)
    async with running_receiver(cfg, {1: accounts[1]}) as rx:
        silent = await Raw.connect(rx)  # says nothing at all
        assert await silent.eof()
        c = await Raw.connect(rx)
        c.send(event_frame(accounts[1].key, 1, 1))
        assert (await c.next_frame()) is not None  # authenticated, then goes quiet
        assert await c.eof()  # half-open / idle: closed by the sweep
        closed = rx.metrics.connections_closed
        assert closed.labels("auth_timeout")._value.get() >= 1
        assert closed.labels("idle_timeout")._value.get() >= 1


async def test_connection_cap_refuses_extra_connections(tmp_path, accounts):
    cfg = cfg_for(tmp_path, max_connections=3)
    async with running_receiver(cfg, {1: accounts[1]}) as rx:
        conns = [await Raw.connect(rx) for _ in range(3)]
        await wait_until(lambda: rx.listeners[0].connection_count() == 3)
        extra = await Raw.connect(rx)
        assert await extra.eof()
        assert rx.metrics.connections_refused.labels("max_connections")._value.get() == 1
        # the ones inside the cap still work
        conns[0].send(event_frame(accounts[1].key, 1, 1))
        assert (await conns[0].next_frame()) is not None
        for c in conns:
            c.close()


# -- backpressure and store failure -------------------------------------------------------------


async def test_store_failure_naks_busy_then_recovers(rx, accounts):
    host, port = rx.addresses["tcp"][0]
    await rx.store.run_maintenance(lambda c: c.execute("PRAGMA query_only=1"))
    p = SessionPanel(1, accounts[1].key, host, port, ack_timeout_ms=300)
    await p.connect()
    task = asyncio.create_task(p.deliver(1, event_msg(code=130)))
    await wait_until(lambda: any(n.reason == w.NAK_BUSY for n in p.naks),
                     what="NAK busy while the store is read-only")
    assert not task.done() and not rx.store.healthy
    assert await rx.store.count_events() == 0
    await rx.store.run_maintenance(lambda c: c.execute("PRAGMA query_only=0"))
    await asyncio.wait_for(task, 30)  # the panel's retry is ACKed
    assert p.acked == [1] and rx.store.healthy
    assert await rx.store.count_events() == 1
    assert rx.metrics.naks.labels("busy")._value.get() >= 1
    await p.close()


async def test_queue_over_bound_naks_busy(rx, accounts):
    host, port = rx.addresses["tcp"][0]
    rx.config.max_pending_writes = 0  # every write is "over the bound"
    p = SessionPanel(1, accounts[1].key, host, port, ack_timeout_ms=300)
    await p.connect()
    task = asyncio.create_task(p.deliver(1, event_msg()))
    await wait_until(lambda: any(n.reason == w.NAK_BUSY for n in p.naks))
    assert await rx.store.count_events() == 0
    rx.config.max_pending_writes = 5000
    await asyncio.wait_for(task, 30)
    assert await rx.store.count_events() == 1
    await p.close()


# -- serial line on a pty ---------------------------------------------------------------------


async def test_serial_line_on_a_pty(tmp_path, accounts):
    master, slave = os.openpty()
    path = os.ttyname(slave)
    cfg = Config(db=str(tmp_path / "rx.db"), serial=[SerialSpec(path, 115200)])
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    try:
        async with running_receiver(cfg, {1: accounts[1], 2: accounts[2]}) as rx:
            await asyncio.wait_for(rx.listeners[0].opened.wait(), 20)
            loop.add_reader(master, lambda: inbox.put_nowait(os.read(master, 4096)))
            # two panels multiplexed on one line, lockstep each
            sessions = {i: glpanel.PanelSession(i, w.Keys(accounts[i].key)) for i in (1, 2)}
            for seq in (1, 2, 3):
                for i, s in sessions.items():
                    s.offer(seq, event_msg(code=602))
                    os.write(master, s.data_to_send(0, int(time.time())))
                acked = set()
                while len(acked) < 2:
                    data = await asyncio.wait_for(inbox.get(), 20)
                    for i, s in sessions.items():
                        s.receive_data(data, int(time.time()))
                        ev = s.next_event()
                        while ev is not glpanel.NEED_DATA:
                            if isinstance(ev, glpanel.Acked):
                                acked.add((i, ev.seq))
                            ev = s.next_event()
                assert acked == {(1, seq), (2, seq)}
            evs = await rx.store.list_events()
            assert sorted((e.account, e.seq) for e in evs) == [
                (a, s) for a in ("1", "2") for s in (1, 2, 3)]
            assert evs[0].peer == "serial:%s" % path
            # the console lists both panels as connected, over the serial line
            conns = connected_accounts(rx)
            assert {a: [c["transport"] for c in conns[a]] for a in ("1", "2")} == {
                "1": ["serial"], "2": ["serial"]}
            assert conns["1"][0]["peer"] == "serial:%s" % path
            loop.remove_reader(master)
    finally:
        os.close(master)
        os.close(slave)


async def test_serial_line_that_cannot_open_is_retried_not_fatal(tmp_path, accounts):
    cfg = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)],
                 serial=[SerialSpec("/dev/nonexistent-guardline-tty")])
    async with running_receiver(cfg, {1: accounts[1]}) as rx:
        await wait_until(lambda: rx.listeners[1].backoff.failures >= 2,
                         what="reopen attempts")
        host, port = rx.addresses["tcp"][0]
        p = SessionPanel(1, accounts[1].key, host, port)
        await p.connect()
        await p.deliver(1, event_msg())  # the rest of the receiver works
        await p.close()


# -- metrics --------------------------------------------------------------------------------


async def test_metrics_endpoint(rx, accounts):
    host, port = rx.addresses["tcp"][0]
    p = SessionPanel(1, accounts[1].key, host, port)
    await p.connect()
    await p.deliver(1, event_msg(code=130))
    await p.close()
    mh, mp = rx.addresses["metrics"]
    async with aiohttp.ClientSession() as s:
        async with s.get("http://%s:%d/metrics" % (mh, mp)) as r:
            assert r.status == 200
            text = await r.text()
        async with s.get("http://%s:%d/healthz" % (mh, mp)) as r:
            assert r.status == 200 and (await r.json())["store_healthy"] is True
    assert 'guardline_receiver_events_total{event_class="burglary",protocol="native"} 1.0' \
        in text
    assert "guardline_receiver_store_commit_seconds_bucket" in text
    assert 'guardline_receiver_alarms_open{state="pending"} 1.0' in text


async def test_unauthenticated_cap_refuses_more_silent_connections(tmp_path, accounts):
    cfg = cfg_for(tmp_path, max_unauthenticated=2)
    async with running_receiver(cfg, {1: accounts[1]}) as rx:
        silent = [await Raw.connect(rx) for _ in range(2)]
        await wait_until(lambda: rx.admission.unauthenticated == 2)
        third = await Raw.connect(rx)
        assert await third.eof()
        # once one of them authenticates, a new connection fits again
        silent[0].send(event_frame(accounts[1].key, 1, 1))
        assert (await silent[0].next_frame()) is not None
        await wait_until(lambda: rx.admission.unauthenticated == 1)
        fourth = await Raw.connect(rx)
        fourth.send(event_frame(accounts[1].key, 1, 2))
        assert opened(accounts[1].key, await fourth.next_frame())["ack_seq"] == 2
        for c in silent + [fourth]:
            c.close()


async def test_security_event_storage_is_rate_limited(rx, accounts):
    from receiver.ratelimit import RateLimit
    rx.link_policy.security_store = RateLimit(0.001, burst=3)  # 3 stored, then counted only
    uhost, uport = rx.addresses["udp"][0]
    loop = asyncio.get_running_loop()
    t, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                               remote_addr=(uhost, uport))
    for s in range(1, 11):
        t.sendto(event_frame(os.urandom(32), 555, s))
    t.close()
    await wait_until(lambda: rx.metrics.security.labels("unknown_account")._value.get() == 10)
    await wait_until(lambda: rx.metrics.security_dropped._value.get() == 7)
    assert len(await wait_until(lambda: _at_least(security_events(rx, "unknown_account"), 3))) \
        == 3


async def test_web_hook_adds_routes_in_the_same_loop(tmp_path, accounts):
    from aiohttp import web as aioweb

    from receiver.app import Receiver
    cfg = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)], web=("127.0.0.1", 0))

    def setup(app, receiver):
        async def queue_depth(request):
            return aioweb.json_response({"pending": receiver.store.pending_writes})
        app.router.add_get("/console/ping", queue_depth)

    rx = Receiver(cfg)
    rx.web_setup.append(setup)
    await rx.start()
    try:
        h, p = rx.addresses["web"]
        async with aiohttp.ClientSession() as s:
            async with s.get("http://%s:%d/console/ping" % (h, p)) as r:
                # the hook's route answers from the receiver's own state (its
                # background loops may have a write in flight: any count)
                assert r.status == 200
                body = await r.json()
                assert list(body) == ["pending"] and isinstance(body["pending"], int)
    finally:
        await rx.stop()


def test_port_in_use_is_refused_with_exit_2(tmp_path, capsys):
    import socket

    from receiver.cli import main
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc = main(["serve", "--init", "--db", str(tmp_path / "rx.db"),
                   "--tcp", "127.0.0.1:%d" % port])
    assert rc == 2 and "cannot listen" in capsys.readouterr().err


async def test_accounts_changed_by_another_process_are_picked_up(rx, accounts, monkeypatch):
    import receiver.housekeeping as housekeeping
    from receiver.sqlite_store import SQLiteStore
    from receiver.store import Account
    monkeypatch.setattr(housekeeping, "ACCOUNT_RELOAD_S", 0.2)
    other = SQLiteStore(rx.store.path)  # a second connection, as the CLI has
    await other.open()
    try:
        new = Account("5000", os.urandom(32))
        await other.add_account(new)
        await wait_until(lambda: rx.account("5000") is not None, what="new account loaded")
        c = await Raw.connect(rx)
        c.send(event_frame(new.key, 5000, 1))
        assert opened(new.key, await c.next_frame())["ack_seq"] == 1
        # re-key account 1: the old key stops working at once
        old_key, new_key = accounts[1].key, os.urandom(32)
        c.send(event_frame(old_key, 1, 1))
        assert opened(old_key, await c.next_frame())["ack_seq"] == 1
        await other.update_account("1", key=new_key)
        await wait_until(lambda: rx.account("1").key == new_key, what="key reloaded")
        c2 = await Raw.connect(rx)
        c2.send(event_frame(old_key, 1, 2) + event_frame(new_key, 1, 3))
        assert opened(new_key, await c2.next_frame())["ack_seq"] == 3
        assert await wait_until(lambda: security_events(rx, "bad_mac"))
        c.close()
        c2.close()
    finally:
        await other.close()
