"""Kill the receiver mid-stream (SIGKILL, a real subprocess started through
the CLI) and restart it: every event a panel saw ACKed is on disk exactly
once, and the rest arrive after the restart.  Then a graceful SIGTERM."""

import asyncio
import sqlite3

from receiver.testing import make_accounts
from testkit.receiver import ReceiverProcess, import_accounts
from testkit.session_panel import SessionPanel, event_msg
from testkit.wait import wait_until

PANELS = 30
EVENTS = 40


def stored(db):
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT account, seq FROM events WHERE source = 'panel'").fetchall()
    finally:
        c.close()


async def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(tmp_path):
    db = str(tmp_path / "rx.db")
    accts = make_accounts(PANELS)
    import_accounts(db, accts, tmp_path / "accounts.json")

    log = str(tmp_path / "receiver.log")
    proc = ReceiverProcess(db, ["--tcp", "127.0.0.1:0"], log_path=log)
    try:
        proc.start()
        host, port = proc.tcp
        panels = {i: SessionPanel(i, accts[i].key, host, port, ack_timeout_ms=500,
                                  max_backoff_ms=1000) for i in accts}

        async def run(p):
            for seq in range(1, EVENTS + 1):
                await p.deliver(seq, event_msg(code=602, zone=seq), deadline_s=120)

        tasks = [asyncio.create_task(run(p)) for p in panels.values()]
        # Let a good part of the stream through, then pull the plug.
        await wait_until(lambda: sum(len(p.acked) for p in panels.values()) >= 300, 60,
                         what="300 events ACKed before the kill")
        proc.kill()
        acked_before = {(str(i), s) for i, p in panels.items() for s in p.acked}
        on_disk = stored(db)
        # ACK only after commit: everything ACKed is on disk, each once.
        assert acked_before <= set(on_disk)
        assert len(on_disk) == len(set(on_disk))
        assert len(acked_before) < PANELS * EVENTS  # the kill really was mid-stream

        proc2 = ReceiverProcess(db, ["--tcp", "%s:%d" % (host, port)], log_path=log)
        proc2.start()
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), 150)
            assert proc2.terminate() == 0  # graceful stop
        finally:
            proc2.close()
    finally:
        proc.close()
    rows = stored(db)
    assert len(rows) == PANELS * EVENTS
    assert set(rows) == {(str(i), s) for i in accts for s in range(1, EVENTS + 1)}
    # replay state survived: highest_seq persisted with the events
    c = sqlite3.connect(db)
    hs = dict(c.execute("SELECT number, highest_seq FROM accounts"))
    c.close()
    assert all(hs[str(i)] == EVENTS for i in accts)


async def test_sigterm_finishes_in_flight_and_exits_zero(tmp_path):
    db = str(tmp_path / "rx.db")
    accts = make_accounts(5)
    import_accounts(db, accts, tmp_path / "a.json")
    proc = ReceiverProcess(db, ["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"],
                           log_path=str(tmp_path / "rx.log"))
    try:
        proc.start()
        host, port = proc.tcp
        ps = [SessionPanel(i, accts[i].key, host, port) for i in accts]
        for p in ps:
            await p.connect()
        await asyncio.gather(*(p.deliver(1, event_msg()) for p in ps))
        assert proc.terminate() == 0
    finally:
        proc.close()
    assert len(stored(db)) == 5
    with open(tmp_path / "rx.log") as f:
        text = f.read()
    assert "receiver stopped" in text and "level=error" not in text
