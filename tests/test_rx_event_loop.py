"""The receiver on each event loop it runs on: uvloop (where installed: the
default on Linux) and asyncio's own.  A real subprocess started through the
CLI (``serve --event-loop``), real panels over TCP and UDP, a real SQLite
store: every event is ACKed and stored once on either loop, and the
receiver says which loop it ran."""

import asyncio
import importlib.util

import pytest

from receiver.cli import event_loop_factory
from receiver.store_factory import make_store
from receiver.testing import make_accounts
from testkit.receiver import ReceiverProcess, import_accounts
from testkit.session_panel import SessionPanel, event_msg

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
LOOPS = [pytest.param("uvloop", marks=pytest.mark.skipif(not HAVE_UVLOOP,
                                                         reason="uvloop not installed")),
         "asyncio"]


async def _stored(db):
    """(account, seq) of the panels' events, read through the event feed."""
    store = make_store(db, create=False)
    await store.open()
    try:
        return [(e.account, e.seq) async for e in store.iter_events() if e.source == "panel"]
    finally:
        await store.close()


@pytest.mark.parametrize("loop", LOOPS)
async def test_receiver_serves_on_each_event_loop(tmp_path, loop):
    db = str(tmp_path / "rx.db")
    accts = make_accounts(4)
    import_accounts(db, accts, tmp_path / "accounts.json")
    proc = ReceiverProcess(db, ["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0",
                                "--event-loop", loop, "--log-level", "info"],
                           log_path=str(tmp_path / "receiver.log"))
    try:
        ready = proc.start()
        assert ready["event_loop"].split()[0] == loop
        host, port = proc.tcp
        uhost, uport = ready["udp"][0]
        panels = [SessionPanel(1, accts[1].key, host, port), SessionPanel(2, accts[2].key, host, port),
                  SessionPanel(3, accts[3].key, uhost, uport, transport="udp"),
                  SessionPanel(4, accts[4].key, uhost, uport, transport="udp")]

        async def run(p):
            await p.connect()
            for seq in range(1, 11):
                await p.deliver(seq, event_msg(code=602, zone=seq), deadline_s=60)
            await p.close()

        await asyncio.wait_for(asyncio.gather(*(run(p) for p in panels)), 120)
        assert proc.terminate() == 0
    finally:
        proc.close()
    rows = await _stored(db)
    assert sorted(rows) == sorted((str(a), s) for a in accts for s in range(1, 11))
    log = (tmp_path / "receiver.log").read_text()
    assert "serving event_loop=" in log and loop in log


def test_auto_takes_uvloop_where_installed_and_asyncio_when_asked():
    _, auto = event_loop_factory("auto")
    assert auto.split()[0] == ("uvloop" if HAVE_UVLOOP else "asyncio")
    factory, name = event_loop_factory("asyncio")
    assert name == "asyncio"
    loop = factory()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()
