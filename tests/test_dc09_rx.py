"""The receiver's SIA DC-09 listeners on loopback with a real SQLite store:
ADM-CID and SIA-DCS, clear and encrypted (AES-128/192/256), many messages
per connection and one per connection, UDP, NULL link tests and
supervision, NAK content for CRC/format/timestamp failures, unknown codes,
duplicates, security rejections and a busy store.

The receiver's DC-09 clock is pinned (``rx.dc09.clock``) so that every NAK
and *ACK timestamp can be checked for its exact value.  Silence is never
asserted by waiting: a refused frame is followed on the same connection by
a good one, and the good one's reply must be the first to arrive (replies
leave in message order)."""

import asyncio
import os
import time
from datetime import datetime, timezone

import pytest

from protocol import dc09
from receiver import dc09_core
from receiver.cli import main as cli_main
from receiver.config import ConfigError, Config, load
from receiver.store import Account
from receiver.testing import running_receiver
from testkit.receiver import ReceiverProcess
from testkit.wait import wait_until

K128 = bytes(range(16))
K192 = bytes(range(100, 124))
K256 = bytes(range(200, 232))
KEYS = {"A128": K128, "A192": K192, "A256": K256, "BEEF": None}
LOCAL = "0AFF"  # a panel that sends local time, UTC+1
SUPERVISED = "5AFE"


def accounts():
    out = [Account(n, k or b"", protocol="dc09", zones={"3": "vault door"}, supervised=False)
           for n, k in KEYS.items()]
    out.append(Account(LOCAL, K128, protocol="dc09", supervised=False))
    out.append(Account(SUPERVISED, b"", protocol="dc09", heartbeat_s=3600, grace_s=0))
    out.append(Account("1001", os.urandom(32), supervised=False))  # a native account
    return out


def config(tmp_path, **kw):
    c = Config(db=str(tmp_path / "rx.db"), dc09_tcp=[("127.0.0.1", 0)],
               dc09_udp=[("127.0.0.1", 0)],
               dc09_accounts={LOCAL: {"utc_offset_min": 60, "window": (-10, 10)}})
    for k, v in kw.items():
        setattr(c, k, v)
    return c


@pytest.fixture
async def rx(tmp_path):
    async with running_receiver(config(tmp_path), accounts()) as r:
        r.now = float(int(time.time()))
        r.dc09.clock = lambda: r.now  # pinned: NAK/ACK times are exact
        yield r


def ts(t: float) -> datetime:
    return datetime.fromtimestamp(int(t), timezone.utc)


def msg(account, seq, data="", msg_id=dc09.ADM_CID, t=None, encrypted=None, line="1",
        receiver="2"):
    key = KEYS.get(account, K128 if account == LOCAL else None)
    enc = key is not None if encrypted is None else encrypted
    if msg_id == dc09.ADM_CID and data and "|" not in data:
        data = "#%s|%s" % (account, data)
    return dc09.Dc09Message(msg_id, enc, seq, receiver, line, account, data, [],
                            None if t is None else ts(t))


def frame(account, seq, data="", t=None, key=None, **kw):
    m = msg(account, seq, data, t=t, **kw)
    k = key or (KEYS.get(account) or (K128 if account == LOCAL else None))
    return dc09.build(m, k if m.encrypted else None)


class Client:
    """A DC-09 panel's end of one TCP connection."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.dc = dc09.Dc09Reader()

    @classmethod
    async def connect(cls, rx):
        host, port = rx.addresses["dc09_tcp"][0]
        return cls(*await asyncio.open_connection(host, port))

    def send(self, data: bytes):
        self.writer.write(data)

    async def reply(self, timeout=20):
        """The next reply frame (bytes), or None at EOF."""
        while True:
            f = self.dc.next_frame()
            if f is not dc09.NEED_DATA:
                return f
            data = await asyncio.wait_for(self.reader.read(4096), timeout)
            if not data:
                return None
            self.dc.receive_data(data)

    async def ask(self, data: bytes, key=None):
        self.send(data)
        return parse_reply(await self.reply(), key)

    def close(self):
        self.writer.close()


def parse_reply(f, key=None):
    assert f is not None, "connection closed without a reply"
    return dc09.parse(f, key_lookup=lambda _a: key)


async def udp_ask(rx, data: bytes, key=None, timeout=20):
    loop = asyncio.get_running_loop()
    got: asyncio.Queue = asyncio.Queue()

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, d, addr):
            got.put_nowait(d)

    t, _ = await loop.create_datagram_endpoint(P, remote_addr=tuple(rx.addresses["dc09_udp"][0]))
    try:
        t.sendto(data)
        return parse_reply(await asyncio.wait_for(got.get(), timeout), key)
    finally:
        t.close()


async def events(rx, account=None):
    return await rx.store.list_events(account=account)


def expect_nak(reply, at):
    assert reply.msg_id == dc09.NAK and not reply.encrypted
    assert (reply.seq, reply.account, reply.receiver, reply.line) == (0, "0", "0", "0")
    assert reply.timestamp == ts(at)


# -- events: codes, encryption, both transports ------------------------------------------


@pytest.mark.parametrize("account", ["BEEF", "A128", "A192", "A256"])
async def test_adm_cid_over_tcp_is_acked_after_storage(rx, account):
    c = await Client.connect(rx)
    key = KEYS[account]
    r = await c.ask(frame(account, 17, "1130 01 003", t=rx.now), key)
    assert (r.msg_id, r.seq, r.account, r.line, r.receiver) == ("ACK", 17, account, "1", "2")
    assert r.encrypted == (key is not None)
    if key is not None:  # *ACK carries the receiver's time (5.5.3.1)
        assert r.timestamp == ts(rx.now)
    [e] = await events(rx, account)
    assert (e.protocol, e.seq, e.qualifier, e.code, e.partition, e.zone) == (
        "dc09", 17, 1, 130, 1, 3)
    assert e.description == "Burglary, zone 3 (vault door), partition 1"
    assert e.event_time == rx.now and e.peer.startswith("dc09-tcp:127.0.0.1:")
    assert e.event_class == "burglary"
    assert [a.account for a in await rx.store.list_alarms()] == [account]
    c.close()


@pytest.mark.parametrize("account", ["BEEF", "A256"])
async def test_sia_dcs_known_and_unknown_codes(rx, account):
    c = await Client.connect(rx)
    key = KEYS[account]
    r = await c.ask(frame(account, 1, "#%s|Nri1/BA03^VAULT^" % account, t=rx.now,
                          msg_id=dc09.SIA_DCS), key)
    assert (r.msg_id, r.seq) == ("ACK", 1)
    # a SIA code with no Contact ID equivalent: ACKed and stored, kept verbatim
    r = await c.ask(frame(account, 2, "#%s|Nri2/XQ07" % account, t=rx.now,
                          msg_id=dc09.SIA_DCS), key)
    assert (r.msg_id, r.seq) == ("ACK", 2)
    known, unknown = await events(rx, account)
    assert (known.code, known.qualifier, known.partition, known.zone) == (
        130, 1, 1, 3)
    assert known.text == "^VAULT^"
    assert (unknown.code, unknown.partition, unknown.zone) == (0, 2, 7)
    assert unknown.text == "SIA-DCS #%s|Nri2/XQ07" % account
    c.close()


async def test_unknown_contact_id_code_and_odd_data_are_stored_not_duhed(rx):
    c = await Client.connect(rx)
    r = await c.ask(frame("BEEF", 5, "1999 01 004"))
    assert (r.msg_id, r.seq) == ("ACK", 5)
    r = await c.ask(frame("BEEF", 6, "#BEEF|not contact id"))  # intact, unmappable
    assert (r.msg_id, r.seq) == ("ACK", 6)
    odd_code, odd_data = await events(rx, "BEEF")
    assert (odd_code.code, odd_code.zone, odd_code.event_class) == (999, 4, "other")
    assert odd_code.text == "ADM-CID #BEEF|1999 01 004"
    assert (odd_data.code, odd_data.text) == (0, "ADM-CID #BEEF|not contact id")
    c.close()


async def test_udp_events_and_null(rx):
    r = await udp_ask(rx, frame("A256", 40, "3130 01 003", t=rx.now), K256)
    assert (r.msg_id, r.encrypted, r.seq, r.timestamp) == ("ACK", True, 40, ts(rx.now))
    r = await udp_ask(rx, frame("BEEF", 41, "1602 00 000"))
    assert (r.msg_id, r.encrypted, r.seq) == ("ACK", False, 41)
    r = await udp_ask(rx, frame("A128", 42, t=rx.now, msg_id=dc09.NULL), K128)
    assert (r.msg_id, r.encrypted, r.seq) == ("ACK", True, 42)
    r = await udp_ask(rx, b"\n0000" + frame("BEEF", 43, "1130 01 003")[5:])
    expect_nak(r, rx.now)
    stored = [(e.account, e.qualifier, e.code) for e in await events(rx)]
    assert stored == [("A256", 3, 130), ("BEEF", 1, 602)]
    assert all(e.peer.startswith("dc09-udp:") for e in await events(rx))


async def test_several_messages_on_one_connection_are_answered_in_order(rx):
    c = await Client.connect(rx)
    burst = b"".join(frame("A128", s, "1130 01 %03d" % s, t=rx.now) for s in range(1, 31))
    c.send(burst[:1000])  # split mid-frame
    await c.writer.drain()
    c.send(burst[1000:])
    seqs = []
    for _ in range(30):
        r = parse_reply(await c.reply(), K128)
        assert r.msg_id == "ACK" and r.encrypted
        seqs.append(r.seq)
    assert seqs == list(range(1, 31))
    assert sorted(e.zone for e in await events(rx, "A128")) == list(range(1, 31))
    c.close()


async def test_one_message_per_connection_half_closed(rx):
    for s in range(1, 6):
        c = await Client.connect(rx)
        c.send(frame("A192", s, "1130 01 003", t=rx.now))
        c.writer.write_eof()  # the panel is done sending: reply, then close
        r = parse_reply(await c.reply(), K192)
        assert (r.msg_id, r.seq) == ("ACK", s)
        assert await c.reply() is None  # and the receiver closed
        c.close()
    assert len(await events(rx, "A192")) == 5


# -- NAK content ------------------------------------------------------------------------------


async def test_bad_crc_and_malformed_frames_get_a_nak_with_receiver_time(rx):
    c = await Client.connect(rx)
    good = frame("BEEF", 9, "1130 01 003")
    bad_crc = b"\n%04X" % ((int(good[1:5], 16) + 1) & 0xFFFF) + good[5:]
    expect_nak(await c.ask(bad_crc), rx.now)
    expect_nak(await c.ask(good[:5] + b"0999" + good[9:]), rx.now)  # length disagrees
    junk = b"hello world"  # right CRC and length, not a DC-09 header
    expect_nak(await c.ask(b"\n%04X0%03X%s\r" % (dc09.crc16(junk), len(junk), junk)), rx.now)
    r = await c.ask(good)
    assert (r.msg_id, r.seq) == ("ACK", 9)
    assert len(await events(rx)) == 1
    assert rx.metrics.naks.labels("dc09_crc")._value.get() == 1
    assert rx.metrics.naks.labels("dc09_format")._value.get() == 2
    c.close()


@pytest.mark.parametrize("offset, ok", [(-41, False), (-40, True), (20, True), (21, False)])
async def test_timestamp_window_default(rx, offset, ok):
    c = await Client.connect(rx)
    r = await c.ask(frame("A128", 3, "1130 01 003", t=rx.now + offset), K128)
    if ok:
        assert (r.msg_id, r.seq, r.timestamp) == ("ACK", 3, ts(rx.now))
        [e] = await events(rx)
        assert e.event_time == rx.now + offset
    else:
        expect_nak(r, rx.now)
        assert await events(rx) == []
    c.close()


async def test_encrypted_message_without_timestamp_gets_a_nak(rx):
    c = await Client.connect(rx)
    f = frame("A128", 4, "1130 01 003", t=rx.now)
    # the same message with no timestamp in the encrypted region
    from protocol.dc09 import _encrypt  # the codec's own AES-CBC, zero IV
    region = b"|#A128|1130 01 003]"
    plain = b"P" * (16 - len(region) % 16) + region
    body = f[9:f.index(b"[") + 1] + _encrypt(plain, K128).hex().upper().encode()
    bad = b"\n%04X0%03X%s\r" % (dc09.crc16(body), len(body), body)
    r = await c.ask(bad)
    expect_nak(r, rx.now)
    r = await c.ask(f, K128)
    assert (r.msg_id, r.seq) == ("ACK", 4)
    c.close()


async def test_local_time_account_window_and_nak_in_its_time(rx):
    c = await Client.connect(rx)
    local_now = rx.now + 3600  # the panel's clock is UTC+1
    r = await c.ask(frame(LOCAL, 1, "1130 01 003", t=local_now + 10), K128)
    assert (r.msg_id, r.timestamp) == ("ACK", ts(local_now))  # *ACK in its convention
    [e] = await events(rx, LOCAL)
    assert e.event_time == rx.now + 10  # stored as UTC
    # its own window (-10, +10): 11 s out is refused, and the NAK says local time
    r = await c.ask(frame(LOCAL, 2, "1130 01 003", t=local_now + 11), K128)
    expect_nak(r, local_now)
    # a UTC timestamp from this panel is an hour out
    expect_nak(await c.ask(frame(LOCAL, 3, "1130 01 003", t=rx.now), K128), local_now)
    assert len(await events(rx, LOCAL)) == 1
    c.close()


# -- DUH, security, duplicates, busy ------------------------------------------------------------


async def test_unknown_token_gets_duh_echoing_the_header(rx):
    c = await Client.connect(rx)
    r = await c.ask(frame("BEEF", 77, "whatever", msg_id="ADM-XYZ"))
    assert (r.msg_id, r.encrypted, r.seq, r.account, r.line, r.receiver) == (
        "DUH", False, 77, "BEEF", "1", "2")
    assert await events(rx) == []
    c.close()


async def test_unknown_account_wrong_key_and_clear_for_keyed_get_no_reply(rx):
    c = await Client.connect(rx)
    c.send(frame("ABCD", 1, "1130 01 003"))                           # unknown account
    c.send(frame("A128", 2, "1130 01 003", t=rx.now, key=K256[:16]))  # wrong key
    r = await c.ask(frame("BEEF", 4, "1130 01 003"))
    assert (r.msg_id, r.seq) == ("ACK", 4)  # the first reply on the connection
    c.close()
    c = await Client.connect(rx)
    c.send(frame("A256", 3, "1130 01 003", encrypted=False))          # clear, keyed account
    r = await c.ask(frame("BEEF", 5, "1130 01 003"))
    assert (r.msg_id, r.seq) == ("ACK", 5)
    await wait_until(lambda: _security(rx, 3), what="3 security events stored")
    got = sorted((s.account, s.reason) for s in await rx.store.list_security_events())
    assert got == [("A128", "bad_key"), ("A256", "clear_message"), ("ABCD", "unknown_account")]
    assert all(s.transport == "dc09-tcp" for s in await rx.store.list_security_events())
    assert [e.account for e in await events(rx)] == ["BEEF", "BEEF"]
    c.close()


async def test_three_security_rejections_close_the_connection(rx):
    c = await Client.connect(rx)
    for s in range(1, 4):
        c.send(frame("ABCD", s, "1130 01 003"))
    assert await c.reply() is None
    c.close()


async def test_native_account_is_not_a_dc09_account(rx):
    r = await udp_ask(rx, frame("BEEF", 1, "1130 01 003"))
    assert r.msg_id == "ACK"
    c = await Client.connect(rx)
    c.send(dc09.build(dc09.Dc09Message("ADM-CID", False, 1, None, "1", "1001",
                                       "#1001|1130 01 003", [])))
    r = await c.ask(frame("BEEF", 2, "1130 01 003"))
    assert (r.msg_id, r.seq) == ("ACK", 2)
    await wait_until(lambda: _security(rx, 1), what="security event")
    [s] = await rx.store.list_security_events()
    assert (s.account, s.reason) == ("1001", "unknown_account")
    c.close()


async def _security(rx, n):
    return len(await rx.store.list_security_events()) >= n


async def test_retransmission_is_stored_once(rx):
    c = await Client.connect(rx)
    first = frame("A256", 500, "1130 01 003", t=rx.now)
    again = frame("A256", 500, "1130 01 003", t=rx.now + 5)  # new pad, new timestamp
    assert first != again
    for f in (first, again):
        r = await c.ask(f, K256)
        assert (r.msg_id, r.seq) == ("ACK", 500)
    # the same copy over UDP (the other path) too
    r = await udp_ask(rx, again, K256)
    assert (r.msg_id, r.seq) == ("ACK", 500)
    # same sequence number, different content: a different event
    r = await c.ask(frame("A256", 500, "3130 01 003", t=rx.now), K256)
    assert r.msg_id == "ACK"
    stored = [(e.seq, e.qualifier) for e in await events(rx, "A256")]
    assert stored == [(500, 1), (500, 3)]
    assert rx.metrics.duplicates._value.get() == 2
    c.close()


def test_dedupe_window_and_wrap():
    r = dc09_core.RecentMessages(window_s=600)
    k1 = r.dedupe_key("A1", 9999, "d", 1000.0)
    assert r.dedupe_key("A1", 9999, "d", 1599.0) == k1  # inside the window: same key
    assert r.dedupe_key("A1", 9999, "e", 1599.0) != k1  # other content
    assert r.dedupe_key("A2", 9999, "d", 1599.0) != r.dedupe_key("A1", 1, "d", 1599.0)
    # the same seq and content after the window (seq wrapped, or a reboot at 0001)
    assert r.dedupe_key("A1", 9999, "d", 1601.0) != k1
    # the memory is bounded
    small = dc09_core.RecentMessages(window_s=600, max_entries=10)
    for i in range(100):
        small.dedupe_key("A1", i, "d", 1000.0)
    assert len(small) == 10


async def test_busy_store_gets_nak_then_the_retry_is_acked(rx):
    c = await Client.connect(rx)
    rx.config.max_pending_writes = 0  # every write is over the bound
    expect_nak(await c.ask(frame("A128", 8, "1130 01 003", t=rx.now), K128), rx.now)
    assert await events(rx) == []
    rx.config.max_pending_writes = 5000
    r = await c.ask(frame("A128", 8, "1130 01 003", t=rx.now), K128)
    assert (r.msg_id, r.seq) == ("ACK", 8)
    assert len(await events(rx)) == 1
    assert rx.metrics.naks.labels("busy")._value.get() == 1
    c.close()


async def test_store_failure_gets_nak_not_ack(rx):
    c = await Client.connect(rx)
    await rx.store.run_maintenance(lambda conn: conn.execute("PRAGMA query_only=1"))
    try:
        expect_nak(await c.ask(frame("BEEF", 1, "1130 01 003")), rx.now)
    finally:
        await rx.store.run_maintenance(lambda conn: conn.execute("PRAGMA query_only=0"))
    r = await c.ask(frame("BEEF", 1, "1130 01 003"))
    assert r.msg_id == "ACK"
    assert len(await events(rx)) == 1
    c.close()


# -- supervision -------------------------------------------------------------------------------


async def test_null_restarts_supervision_and_restores_a_failed_path(rx):
    t0 = rx.now + 100  # after the receiver started: the NULL moves the deadline
    rx.now = t0
    r = await udp_ask(rx, frame(SUPERVISED, 0, msg_id=dc09.NULL))
    assert (r.msg_id, r.seq) == ("ACK", 0)
    # without the NULL the path would have failed at start + 3600
    assert await rx.supervision_tick(t0 + 3599) == []
    [ch] = await rx.supervision_tick(t0 + 3601)
    assert (ch.account, ch.path, ch.failed) == (SUPERVISED, 1, True)
    rx.now = t0 + 4000
    c = await Client.connect(rx)
    r = await c.ask(frame(SUPERVISED, 1, msg_id=dc09.NULL))
    assert r.msg_id == "ACK"
    await wait_until(lambda: _n_events(rx, SUPERVISED, 2), what="failure and restore stored")
    got = [(e.code, e.qualifier, e.zone, e.source, e.protocol)
           for e in await events(rx, SUPERVISED)]
    assert got == [(350, 1, 1, "supervision", "dc09"), (350, 3, 1, "supervision", "dc09")]
    c.close()


async def _n_events(rx, account, n):
    return len(await events(rx, account)) >= n


# -- configuration and the command line ---------------------------------------------------------


def test_config_dc09_section(tmp_path):
    p = tmp_path / "rx.toml"
    p.write_text('[listen]\ndc09_tcp = ["127.0.0.1:7710"]\ndc09_udp = "127.0.0.1:7711"\n'
                 '[dc09]\nwindow_s = [-60, 30]\n'
                 '[dc09.accounts.0aff]\nutc_offset_min = -300\nwindow_s = [-120, 120]\n')
    c = load(str(p))
    assert c.dc09_tcp == [("127.0.0.1", 7710)] and c.dc09_udp == [("127.0.0.1", 7711)]
    assert c.dc09_window == (-60, 30)
    assert c.dc09_accounts == {"0AFF": {"utc_offset_min": -300, "window": (-120, 120)}}
    for bad, why in (('window_s = [10, 20]', "lower <= 0 <= upper"),
                     ('[dc09.accounts.xyz]\nutc_offset_min = 1', "3-16 hex"),
                     ('[dc09.accounts.123]\nutc_offset_min = 900', "-720..840"),
                     ('[dc09.accounts.123]\nwindow = [1, 2]', "unknown key")):
        p.write_text("[dc09]\n" + bad + "\n")
        with pytest.raises(ConfigError, match=why.replace(".", r"\.")):
            load(str(p))


def test_serve_and_accounts_from_the_command_line(tmp_path, capsys):
    db = str(tmp_path / "rx.db")
    assert cli_main(["accounts", "add", "12ab", "--protocol", "dc09", "--key",
                     "0123456789ABCDEF", "--key-format", "ascii", "--db", db]) == 0
    assert cli_main(["accounts", "add", "c1ea", "--protocol", "dc09", "--db", db]) == 0
    assert cli_main(["accounts", "add", "12", "--protocol", "dc09", "--db", db]) == 2
    assert cli_main(["accounts", "add", "ABC", "--protocol", "dc09", "--key", "00ff",
                     "--db", db]) == 2
    proc = ReceiverProcess(db, ["--dc09-tcp", "127.0.0.1:0", "--dc09-udp", "127.0.0.1:0"],
                           log_path=str(tmp_path / "rx.log"))
    try:
        ready = proc.start()
        assert ready["tcp"] == [] and len(ready["dc09_udp"]) == 1
        import socket
        key = b"0123456789ABCDEF"
        with socket.create_connection(tuple(ready["dc09_tcp"][0]), timeout=20) as s:
            m = dc09.Dc09Message("ADM-CID", True, 12, None, "0", "12AB", "#12AB|1130 01 005",
                                 [], datetime.now(timezone.utc).replace(microsecond=0))
            s.sendall(dc09.build(m, key))
            rd = dc09.Dc09Reader()
            while (f := rd.next_frame()) is dc09.NEED_DATA:
                rd.receive_data(s.recv(4096))
            r = dc09.parse(f, key_lookup=lambda a: key)
            assert (r.msg_id, r.encrypted, r.seq) == ("ACK", True, 12)
            s.sendall(dc09.build(dc09.Dc09Message("ADM-CID", False, 13, None, "0", "C1EA",
                                                  "#C1EA|1602 00 000", [])))
            rd = dc09.Dc09Reader()
            while (f := rd.next_frame()) is dc09.NEED_DATA:
                rd.receive_data(s.recv(4096))
            assert dc09.parse(f).msg_id == "ACK"
        assert proc.terminate() == 0
    finally:
        proc.close()
    capsys.readouterr()
    assert cli_main(["events", "--json", "--db", db]) == 0
    import json
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["account"], e["code"], e["zone"], e["protocol"]) for e in out] == [
        ("12AB", 130, 5, "dc09"), ("C1EA", 602, 0, "dc09")]


def test_dc09_account_rules():
    Account("ABC", b"", protocol="dc09").validate()
    Account("0123456789ABCDEF", K192, protocol="dc09").validate()
    for number, key in (("AB", b""), ("abc", b""), ("ABCG", b""), ("ABC", bytes(20))):
        with pytest.raises(ValueError):
            Account(number, key, protocol="dc09").validate()


def test_nak_timestamp_uses_receiver_clock():
    # the judge's NAK is exactly build_nak(receiver time) for a frame nobody owns
    core = dc09_core.Dc09Core(lambda n: None)
    v = core.judge(b"\n00000000\r", 1_800_000_000.0)
    assert v.kind == dc09_core.REPLY
    assert v.reply == dc09.build_nak(datetime.fromtimestamp(1_800_000_000, timezone.utc))


# -- connection limits -------------------------------------------------------------------------


async def test_pipelining_past_the_inflight_bound_gets_nak_busy_in_order(rx):
    from receiver.dc09_listener import MAX_INFLIGHT
    n = MAX_INFLIGHT + 16
    c = await Client.connect(rx)
    c.send(b"".join(frame("BEEF", s, "1130 01 %03d" % s) for s in range(1, n + 1)))
    replies = [parse_reply(await c.reply()) for _ in range(n)]
    acked = [s for s, r in zip(range(1, n + 1), replies) if r.msg_id == "ACK"]
    assert all(r.msg_id in ("ACK", "NAK") for r in replies)
    assert [r.seq for r in replies if r.msg_id == "ACK"] == acked  # in message order
    assert len(acked) >= MAX_INFLIGHT
    assert sorted(e.zone for e in await events(rx)) == acked  # NAKed ones not stored
    c.close()


async def test_garbage_and_bad_frames_close_the_connection(rx):
    from receiver.dc09_listener import MAX_BAD_FRAMES, MAX_UNAUTH_BYTES
    c = await Client.connect(rx)
    c.send(b"x" * (MAX_UNAUTH_BYTES + 1))  # no LF at all: nothing to answer
    assert await c.reply() is None
    c.close()
    c = await Client.connect(rx)
    bad = b"\n00000000\r"
    c.send(bad * (MAX_BAD_FRAMES + 1))
    for _ in range(MAX_BAD_FRAMES + 1):
        expect_nak(parse_reply(await c.reply()), rx.now)
    assert await c.reply() is None
    c.close()
    assert rx.metrics.connections_closed.labels("garbage")._value.get() == 2


# -- the judge never raises ---------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_GOOD = [frame("A128", 1, "1130 01 003", t=1_800_000_000),
         frame("BEEF", 2, "1130 01 003"),
         frame("A256", 3, t=1_800_000_000, msg_id=dc09.NULL)]


def _judge_core():
    accts = {a.number: a for a in accounts()}
    return dc09_core.Dc09Core(accts.get)


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda f, i, b: f[:i % len(f)] + bytes([b]) + f[i % len(f) + 1:],
              st.sampled_from(_GOOD), st.integers(0, 500), st.integers(0, 255)),
    st.builds(lambda f, i: f[:i % len(f)] + b"\r", st.sampled_from(_GOOD),
              st.integers(0, 500))))
def test_judge_gives_a_verdict_for_any_bytes(data):
    v = _judge_core().judge(data, 1_800_000_000.0)
    assert v.kind in (dc09_core.EVENT, dc09_core.LINK, dc09_core.REPLY, dc09_core.SECURITY,
                      dc09_core.IGNORE)
    if v.kind == dc09_core.REPLY:
        assert dc09.parse(v.reply).msg_id in ("NAK", "DUH")
    if v.kind == dc09_core.EVENT:
        assert data in _GOOD  # a changed byte never passes as an event (CRC)


async def test_messages_of_one_read_share_a_commit_and_each_gets_its_own_answer(rx):
    """Six messages in one TCP write (a concentrator pipelining, one read at
    the receiver) are queued into ONE group commit, each message its own
    request: the one the database cannot store (a real trigger skips its
    insert, as if its row vanished) is NAKed alone, the others are stored
    once and ACKed in order, a two-event message whole; the retry of the
    refused one is stored."""
    c = await Client.connect(rx)
    key = KEYS["A256"]
    await rx.store.run_write(lambda conn: conn.execute(
        "CREATE TRIGGER skip_14 BEFORE INSERT ON events WHEN NEW.dedupe_key "
        "LIKE 'dc09:0014:%' BEGIN SELECT RAISE(IGNORE); END"))
    before = rx.store.commits
    c.send(b"".join(
        # 13: two events in one message (SIA DCS)
        frame("A256", s, "#A256|Nri1/BA03/BA04", t=rx.now, msg_id=dc09.SIA_DCS) if s == 13
        else frame("A256", s, "1130 01 %03d" % s, t=rx.now) for s in range(11, 17)))
    replies = [parse_reply(await c.reply(), key) for _ in range(6)]
    assert [(r.msg_id, r.seq if r.msg_id == "ACK" else None) for r in replies] == [
        ("ACK", 11), ("ACK", 12), ("ACK", 13), ("NAK", None), ("ACK", 15), ("ACK", 16)]
    # one read, one group commit (and at most one other write of the
    # receiver's own loops committing meanwhile)
    assert rx.store.commits - before <= 2
    assert rx.store.healthy
    stored = await events(rx, "A256")
    assert sorted(e.seq for e in stored) == [11, 12, 13, 13, 15, 16]
    await rx.store.run_write(lambda conn: conn.execute("DROP TRIGGER skip_14"))
    r = await c.ask(frame("A256", 14, "1130 01 014", t=rx.now), key)
    assert (r.msg_id, r.seq) == ("ACK", 14)
    assert sorted(e.seq for e in await events(rx, "A256")) == [11, 12, 13, 13, 14, 15, 16]
    c.close()
