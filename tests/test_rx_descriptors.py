"""File descriptors are one budget for the whole receiver (issue 14).

Seen in the attack run: a flood of DC-09 connections "authenticated" by a
forged clear NULL for a keyless account (each then living for the 900 s
idle timeout), with silent native connections beside them, used up every
descriptor: new native panels were not ACKed, console login timed out, and
``accept() out of system resource`` tracebacks filled 69 MB of log in 20 s.

Here the receiver runs as a real subprocess through the CLI with its
descriptor limit lowered to 600 (instead of tens of thousands), the flood
comes from a few loopback addresses, and while it holds what it got: a
new native panel is ACKed, a keyed DC-09 panel is ACKed, an operator logs in
to the console, and the log carries no accept traceback."""

from __future__ import annotations

import asyncio
import datetime
import types

import aiohttp

from protocol import dc09
from receiver.store import Account
from receiver.testing import make_accounts
from receiver.web.admin import add_user
from testkit.net import free_port
from testkit.receiver import ReceiverProcess
from testkit.wait import wait_until
from tests.test_rx_admission import connect_from, flood, native_panel_acked

NOFILE = 600
KEY = bytes(range(16))


async def _create(db, accounts):
    from receiver.sqlite_store import SQLiteStore  # noqa: PLC0415

    s = SQLiteStore(db)
    await s.open()
    try:
        for a in accounts:
            await s.add_account(a)
    finally:
        await s.close()


def forged_null(account):
    return dc09.build(dc09.Dc09Message(dc09.NULL, False, 1, "0", "0", account, "", [], None))


async def test_descriptor_flood_leaves_room_for_panels_and_the_console(tmp_path):
    db = str(tmp_path / "rx.db")
    native = make_accounts(1, first=801)
    keyless = Account("BEEF", b"", protocol="dc09", supervised=False)
    keyed = Account("A128", KEY, protocol="dc09", supervised=False)
    await _create(db, list(native.values()) + [keyless, keyed])
    await asyncio.to_thread(add_user, db, "olga", "operator", "olga-password-1")
    cfg = tmp_path / "receiver.toml"
    # silent native connections are kept for the whole test (as the attack
    # reopened them), so nothing frees a descriptor by itself
    cfg.write_text("[limits]\nauth_timeout_s = 120\n")
    web = free_port()
    log = tmp_path / "receiver.log"
    proc = ReceiverProcess(db, ["--config", str(cfg), "--tcp", "127.0.0.1:0", "--dc09-tcp",
                                "127.0.0.1:0", "--web", "127.0.0.1:%d" % web],
                           log_path=str(log), nofile=NOFILE)
    proc.start()
    try:
        rx = types.SimpleNamespace(addresses=proc.ready)
        dc09_sources = ["127.0.0.%d" % i for i in range(2, 8)]     # 6 hosts x 70
        native_sources = ["127.0.2.%d" % i for i in range(2, 7)]   # 5 hosts x 70
        async with flood(rx, dc09_sources, 70, kinds=("dc09_tcp",), reopen=False,
                         greeting={"dc09_tcp": forged_null("BEEF")}) as n1, \
                flood(rx, native_sources, 70, kinds=("tcp",), reopen=False) as n2:
            await wait_until(lambda: n1[0] + n2[0] >= 700, timeout=60,
                             what="the flood has connected", seen=lambda: (n1[0], n2[0]))
            assert await native_panel_acked(rx, native[801], 1, "127.0.1.1")
            assert await dc09_panel_acked_encrypted(rx, "127.0.1.2")
            assert await console_login(web)
        text = log.read_text()
        assert "out of system resource" not in text and "Traceback" not in text
        assert text.count('msg="panel connections capped by the descriptor limit" '
                          'connections=') == 1  # the budget, logged once
    finally:
        proc.terminate()
        proc.close()


async def dc09_panel_acked_encrypted(rx, source) -> bool:
    now = datetime.datetime.now(datetime.timezone.utc)
    m = dc09.Dc09Message(dc09.NULL, True, 9, "0", "0", "A128", "", [], now)
    try:
        c = await connect_from(rx, "dc09_tcp", source)
        c.send(dc09.build(m, KEY))
        f = await c.reply(timeout=20)
    except (ConnectionError, OSError, asyncio.TimeoutError):
        return False
    c.close()
    return f is not None and dc09.parse(f, key_lookup=lambda _a: KEY).msg_id == dc09.ACK


async def console_login(port) -> bool:
    timeout = aiohttp.ClientTimeout(total=20)
    try:
        async with aiohttp.ClientSession(timeout=timeout,
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.post("http://127.0.0.1:%d/api/login" % port,
                              json={"name": "olga", "password": "olga-password-1"}) as r:
                return r.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False
