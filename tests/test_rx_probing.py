"""What a prober learns from the receiver, and what a forged clear message
earns it (issue 14): account enumeration through bad-CRC answers, DC-09 UDP
replies larger than the datagram that provoked them, and keyless DC-09
accounts whose clear NULL anyone can forge.

Real receiver on loopback, real sockets.  Silence is never asserted by
waiting: the probe is followed on the same connection (or UDP socket) by a
message that is answered, and that answer must be the first to arrive."""

from __future__ import annotations

import asyncio
import logging

from protocol import dc09
from protocol.lean import glwire as w
from receiver.cli import main as cli_main
from receiver.config import Config
from receiver.store import Account
from receiver.testing import make_accounts, running_receiver
from tests.test_dc09_rx import Client
from tests.test_rx_server import Raw, event_frame, opened

# -- native: bad CRC tells nothing about which accounts exist ---------------------------


def bad_crc(key, account, seq):
    f = bytearray(event_frame(key, account, seq))
    f[40] ^= 0x01  # a body bit: the header (and its CRC) intact, the frame CRC wrong
    return bytes(f)


async def test_bad_crc_answer_does_not_tell_which_accounts_exist(tmp_path):
    """Seen: a bad-CRC frame got a sealed NAK only for existing accounts."""
    accounts = make_accounts(2, first=71)
    exists, marker = accounts[71], accounts[72]
    cfg = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)])
    async with running_receiver(cfg, accounts) as rx:
        answers = {}
        for name, account in (("exists", 71), ("absent", 99)):
            c = await Raw.connect(rx)
            c.send(bad_crc(exists.key, account, 5))
            c.send(event_frame(marker.key, 72, 10 + account))
            first = await c.next_frame()
            m = w.open_frame(w.Keys(marker.key), first) if first.account == 72 else None
            answers[name] = (first.account, m and m["type"], m and m["ack_seq"])
            c.close()
        assert answers == {"exists": (72, w.MSG_ACK, 81), "absent": (72, w.MSG_ACK, 109)}
        # a panel's own stream still gets the quick NAK bad_crc (line noise)
        c = await Raw.connect(rx)
        c.send(event_frame(exists.key, 71, 1))
        assert opened(exists.key, await c.next_frame())["ack_seq"] == 1
        c.send(bad_crc(exists.key, 71, 2))
        m = opened(exists.key, await c.next_frame())
        assert (m["type"], m["nak_seq"], m["reason"]) == (w.MSG_NAK, 2, w.NAK_BAD_CRC)
        c.close()


# -- DC-09 UDP: no reply larger than a datagram that does not frame --------------------


async def test_dc09_udp_never_answers_a_broken_datagram_with_more_bytes(tmp_path):
    """Seen: an 11-byte CRC-error datagram got a 47-byte NAK."""
    cfg = Config(db=str(tmp_path / "rx.db"), dc09_udp=[("127.0.0.1", 0)])
    beef = Account("BEEF", b"", protocol="dc09", supervised=False)
    async with running_receiver(cfg, [beef]) as rx:
        loop = asyncio.get_running_loop()
        got: asyncio.Queue = asyncio.Queue()

        class P(asyncio.DatagramProtocol):
            def datagram_received(self, d, addr):
                got.put_nowait(d)

        t, _ = await loop.create_datagram_endpoint(
            P, remote_addr=tuple(rx.addresses["dc09_udp"][0]))
        null = dc09.build(dc09.Dc09Message(dc09.NULL, False, 7, "0", "0", "BEEF", "", [],
                                           None))
        try:
            small = b"\nFFFF0001X\r"
            assert len(small) == 11
            t.sendto(small)
            t.sendto(null)
            first = await asyncio.wait_for(got.get(), 20)
            r = dc09.parse(first)
            assert (r.msg_id, r.seq) == (dc09.ACK, 7)  # nothing came for the 11 bytes
            # a broken datagram at least as large as the NAK still gets one
            big = b"\n" + b"FFFF0040" + b"X" * 64 + b"\r"
            t.sendto(big)
            r = dc09.parse(await asyncio.wait_for(got.get(), 20))
            assert r.msg_id == dc09.NAK and len(big) >= 47
        finally:
            t.close()


# -- keyless DC-09 accounts --------------------------------------------------------------


def keyless_config(tmp_path, **kw):
    c = Config(db=str(tmp_path / "rx.db"), dc09_tcp=[("127.0.0.1", 0)], idle_timeout_s=600)
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def null(account, seq, key=None):
    import datetime  # noqa: PLC0415

    t = datetime.datetime.now(datetime.timezone.utc) if key else None
    return dc09.build(dc09.Dc09Message(dc09.NULL, key is not None, seq, "0", "0", account,
                                       "", [], t), key)


async def test_a_forged_clear_null_does_not_earn_a_long_lived_connection(tmp_path):
    """Seen: DC-09 connections 'authenticated' by a forged clear NULL for a
    keyless account lived for the 900 s idle timeout and, in numbers, took
    every descriptor.  The NULL is still ACKed (the account's supervision
    needs it) but the connection stays a stranger's until it sends an
    event, and is closed after keyless_idle_timeout_s of silence."""
    accts = [Account("BEEF", b"", protocol="dc09", supervised=False),
             Account("A128", bytes(range(16)), protocol="dc09", supervised=False)]
    cfg = keyless_config(tmp_path)
    cfg.keyless_idle_timeout_s = 0.5
    async with running_receiver(cfg, accts) as rx:
        forged = await Client.connect(rx)
        r = await forged.ask(null("BEEF", 1))
        assert r.msg_id == dc09.ACK  # still ACKed
        reporter = await Client.connect(rx)
        r = await reporter.ask(dc09.build(dc09.Dc09Message(
            dc09.ADM_CID, False, 2, "0", "0", "BEEF", "#BEEF|1130 01 003", [], None)))
        assert r.msg_id == dc09.ACK
        keyed = await Client.connect(rx)
        r = await keyed.ask(null("A128", 3, key=bytes(range(16))), key=bytes(range(16)))
        assert r.msg_id == dc09.ACK
        # the forged NULL's connection is closed; the reporting ones are not
        assert await forged.reply(timeout=30) is None
        assert rx.metrics.connections_closed.labels("keyless_idle_timeout")._value.get() == 1
        assert rx.admission.unauthenticated == 0 and rx.admission.connections == 2
        for c, msg, key in ((reporter, null("BEEF", 4), None),
                            (keyed, null("A128", 5, key=bytes(range(16))), bytes(range(16)))):
            assert (await c.ask(msg, key=key)).msg_id == dc09.ACK
            c.close()


async def test_keyless_accounts_are_named_at_start(tmp_path, caplog):
    accts = [Account("BEEF", b"", protocol="dc09", supervised=False),
             Account("C0DE", b"", protocol="dc09", supervised=False),
             Account("A128", bytes(range(16)), protocol="dc09", supervised=False)]
    caplog.set_level(logging.WARNING, logger="receiver.accounts")
    async with running_receiver(keyless_config(tmp_path), accts):
        pass
    lines = [r.getMessage() for r in caplog.records if "has no key" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith("DC-09 account BEEF has no key: ")
    assert "anyone who can reach the receiver can send link tests and events" in lines[0]
    assert lines[1].startswith("DC-09 account C0DE has no key")


def test_accounts_add_warns_about_a_keyless_dc09_account(tmp_path, capsys):
    db = str(tmp_path / "rx.db")
    assert cli_main(["--db", db, "accounts", "add", "12AB", "--protocol", "dc09"]) == 0
    err = capsys.readouterr().err
    assert "warning: DC-09 account 12AB has no key" in err
    assert cli_main(["--db", db, "accounts", "add", "12AC", "--protocol", "dc09", "--key",
                     "000102030405060708090a0b0c0d0e0f"]) == 0
    assert "has no key" not in capsys.readouterr().err


async def test_accept_errors_are_logged_once_per_interval(tmp_path, caplog):
    """Seen: 69 MB of ``accept() out of system resource`` tracebacks in
    20 s.  asyncio reports each failed accept to the loop's exception
    handler; the receiver turns them into one line per interval."""
    import errno  # noqa: PLC0415

    cfg = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)])
    caplog.set_level(logging.ERROR)
    async with running_receiver(cfg) as rx:
        loop = asyncio.get_running_loop()
        for _ in range(500):
            loop.call_exception_handler({
                "message": "socket.accept() out of system resource",
                "exception": OSError(errno.EMFILE, "Too many open files")})
        loop.call_exception_handler({"message": "something else entirely"})
    lines = [r for r in caplog.records if "accept" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert "cannot accept connections: [Errno 24] Too many open files" in lines[0].getMessage()
    assert rx.metrics.connections_refused.labels("accept_error")._value.get() == 500
    assert any(r.getMessage() == "something else entirely" for r in caplog.records)
