"""Two receivers in one process on one PostgreSQL database: supervision
shards split between them and handed over, live updates (NOTIFY) reaching
the other receiver's subscribers, and supervision of an account whose
panel reports to the *other* receiver (hearings shared through the
database: no false failure while it reports, one failure when it stops,
a restore when it is back).  The kill -9 case is tests/test_pg_failover.py.

Waits poll with generous deadlines; nothing asserts how fast."""

import asyncio
import contextlib
import json

import pytest

from receiver.config import Config
from receiver.testing import make_accounts
from testkit.session_panel import SessionPanel, event_msg, heartbeat_msg
from testkit.wait import wait_until
from tests.pg_fixture import pg_server, pg_url  # noqa: F401

pytest.importorskip("asyncpg")

from receiver.app import Receiver  # noqa: E402
from receiver.ownership import LEASE_RENEW_S, SETTLE_S, shard_of  # noqa: E402
from receiver.pg_store import PGStore  # noqa: E402


async def _create(url, accounts):
    s = PGStore(url)
    await s.open()
    try:
        for a in accounts.values():
            await s.add_account(a)
    finally:
        await s.close()


@contextlib.asynccontextmanager
async def receivers(url, names):
    rxs = []
    try:
        for n in names:
            rx = Receiver(Config(db=url, tcp=[("127.0.0.1", 0)], cluster_instance=n))
            await rx.start()
            rxs.append(rx)
        yield rxs
    finally:
        for rx in reversed(rxs):
            await rx.stop()


def balanced(rxs):
    counts = [len(rx.cluster.owned) for rx in rxs]
    total = rxs[0].cluster.shards
    return sum(counts) == total and max(counts) - min(counts) <= 1


async def test_shards_are_split_and_handed_back_on_stop(pg_url):
    await _create(pg_url, make_accounts(4))
    async with receivers(pg_url, ["rx-a"]) as [a]:
        assert len(a.cluster.owned) == a.cluster.shards  # alone: everything, at once
        b = Receiver(Config(db=pg_url, tcp=[("127.0.0.1", 0)], cluster_instance="rx-b"))
        await b.start()
        try:
            await wait_until(lambda: balanced([a, b]), 30, what="shards split evenly")
            assert not a.cluster.owned & b.cluster.owned
        finally:
            await b.stop()  # hands its leases back: no waiting for expiry
        await wait_until(lambda: len(a.cluster.owned) == a.cluster.shards,
                         LEASE_RENEW_S * 5, what="the stopped receiver's shards taken back")


async def test_live_updates_reach_the_other_receivers_subscribers(pg_url):
    accts = make_accounts(1, region="north")
    await _create(pg_url, accts)
    async with receivers(pg_url, ["rx-a", "rx-b"]) as [a, b]:
        qa, qb = a.subscribe(), b.subscribe()
        host, port = b.addresses["tcp"][0]
        p = SessionPanel(1, accts[1].key, host, port)
        await p.deliver(1, event_msg(code=130, zone=3))  # a burglary alarm, taken by b

        async def alarm_in(q):
            while True:
                m = (await q.get()).to_json()  # the live message's JSON
                if m["type"] == "alarm" and m.get("state") == "pending":
                    return m

        got_a = await asyncio.wait_for(alarm_in(qa), 20)
        got_b = await asyncio.wait_for(alarm_in(qb), 20)
        assert got_a == got_b  # the same message, whichever receiver took it
        [row] = await a.store.list_alarms()
        assert got_a["alarm_id"] == row.id and got_a["account"] == "1"

        # an operator acknowledging on a reaches b's console too
        await a.workflow.acknowledge(row.id, "op-anna")
        m = await asyncio.wait_for(_first(qb, lambda m: m.get("state") == "acknowledged"), 20)
        assert m["by"] == "op-anna"
        # and a receiver does not hear its own messages twice
        await asyncio.sleep(1.0)
        own = [m for m in _drain(qa) if m.get("state") == "acknowledged"]
        assert len(own) == 1, own
        assert a.cluster.bus_received >= 2 and b.cluster.bus_received >= 1
        await p.close()


async def _first(q, pred):
    while True:
        m = (await q.get()).to_json()
        if pred(m):
            return m


def _drain(q):
    out = []
    while not q.empty():
        out.append(q.get_nowait().to_json())
    return out


async def test_supervisor_uses_what_the_other_receiver_heard(pg_url):
    """Accounts supervised by one receiver report only to the other.  While
    they report: no failure.  When one falls silent: exactly one failure,
    raised by its supervisor.  When it is back (still at the other
    receiver): restored."""
    async with receivers(pg_url, ["rx-a", "rx-b"]) as [a, b]:
        await wait_until(lambda: balanced([a, b]), 30, what="shards split evenly")
        # four accounts a supervises (numbers picked by shard), reporting to b only
        numbers = [n for n in range(1000, 2000)
                   if shard_of(str(n), a.cluster.shards) in a.cluster.owned][:4]
        accts = {n: acct for n, acct in zip(numbers, make_accounts(
            len(numbers), heartbeat_s=2, grace_s=1).values())}
        for n, acct in accts.items():
            acct.number = str(n)
            await a.add_account(acct)
        await wait_until(lambda: all(b.account(str(n)) for n in numbers), 20,
                         what="the other receiver has loaded the accounts")
        await wait_until(lambda: all(a.supervisor.status(str(n)) for n in numbers), 20,
                         what="a supervises them")
        mine = numbers
        host, port = b.addresses["tcp"][0]
        panels = {n: SessionPanel(n, accts[n].key, host, port) for n in mine}
        seqs = {n: 0 for n in mine}

        async def beat(ns, seconds):
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while loop.time() < end:
                for n in ns:
                    seqs[n] += 1
                    await panels[n].deliver(seqs[n], heartbeat_msg())
                await asyncio.sleep(0.5)

        async def sup_events(n):
            return [e for e in await a.store.list_events(account=str(n))
                    if e.source == "supervision"]

        # longer than a timeout (3 s) plus the settle window: all keep reporting
        await beat(mine, 3 + SETTLE_S + 2)
        for n in mine:
            assert await sup_events(n) == [], n
        silent, talking = mine[0], mine[1:]
        # one falls silent, the others keep on (until the end of the test)
        beat_task = asyncio.create_task(beat(talking, 120))
        try:
            [fail] = await wait_until(lambda: sup_events(silent), 30,
                                      what="communication failure of the silent panel")
            assert (fail.code, fail.qualifier, fail.zone) == (350, 1, 1)
            assert ("%d" % silent, 1) in a.supervisor.failed()
            # back, still reporting to b: a restores it from the shared hearings
            await beat([silent], 1)
            evs = await wait_until(lambda: _at_least(sup_events, silent, 2), 30,
                                   what="restore of the panel heard by the other receiver")
            assert [e.qualifier for e in evs] == [1, 3]  # one failure, one restore
            assert not beat_task.done()
        finally:
            beat_task.cancel()
        for n in talking:
            assert await sup_events(n) == [], n
        for p in panels.values():
            await p.close()


async def _at_least(fn, n, k):
    evs = await fn(n)
    return evs if len(evs) >= k else None


async def test_heartbeat_is_acked_after_its_hearing_is_stored(pg_url):
    accts = make_accounts(1)
    await _create(pg_url, accts)
    async with receivers(pg_url, ["rx-a"]) as [a]:
        host, port = a.addresses["tcp"][0]
        p = SessionPanel(1, accts[1].key, host, port)
        await p.deliver(1, heartbeat_msg())
        rows = await a.store.run_read(lambda c: c.fetch(
            "SELECT account, path, last_heard, heard_by FROM line_heard WHERE heard_by = $1",
            "rx-a"))
        assert [(r["account"], r["path"]) for r in rows] == [("1", 1)]
        await p.close()


def test_bus_payloads_stay_under_the_notify_limit():
    from receiver.ownership import BUS_PAYLOAD_MAX, Cluster

    c = Cluster.__new__(Cluster)
    c.instance = "rx-a"
    c._own_prefix = '{"from": "rx-a", "m": '
    c.bus_dropped = 0
    msgs = [{"type": "event", "event": {"id": i, "text": "x" * 60}} for i in range(500)]
    msgs.append({"type": "event", "text": "y" * 10_000})  # can never fit: dropped
    payloads = c._payloads(msgs)
    assert all(len(p.encode()) <= BUS_PAYLOAD_MAX for p in payloads)
    got = [m for p in payloads for m in json.loads(p)["m"]]
    assert got == msgs[:-1] and c.bus_dropped == 1
    assert all(json.loads(p)["from"] == "rx-a" for p in payloads)


def test_shared_supervisor_candidates_and_ownership():
    """Sans I/O: only owned accounts are supervised here, a due path is a
    candidate SETTLE_S late, and a candidate heard before it was confirmed
    raises nothing (no restore for a failure never reported)."""
    import types

    from receiver.ownership import SharedSupervisor
    from receiver.supervision import Profile

    t0 = 1_700_000_000.0
    heard, baselines = [], []
    fake = types.SimpleNamespace(owns=lambda a: a != "9",
                                 note_heard=lambda *a: heard.append(a),
                                 note_baseline=lambda a, paths, t: baselines.append((a, t)))
    s = SharedSupervisor(fake)
    s.set_profile("7", Profile(10, 0), t0)
    s.set_profile("9", Profile(10, 0), t0)  # another receiver's
    s.set_profile("8", Profile(10, 0), t0, last_heard={1: t0 - 8})  # from the database
    assert sorted(s.profiles_all) == ["7", "8", "9"] and len(s) == 2
    assert baselines == [("7", t0)]  # new and never heard: supervised from now on
    assert s.next_deadline() == t0 + 2 + SETTLE_S
    assert s.poll(t0 + 2) == []  # 8 is due, but within the settle window
    assert [c.account for c in s.poll(t0 + 10)] == ["8"]  # from its recorded hearing
    assert [c.account for c in s.poll(t0 + 10 + SETTLE_S)] == ["7"]
    assert set(s.unconfirmed) == {("7", 1), ("8", 1)}
    assert s.heard("7", 1, t0 + 14) is None  # heard before confirmation: nothing to restore
    assert set(s.unconfirmed) == {("8", 1)} and ("7", 1) not in s.failed()
    assert s.heard("9", 1, t0 + 15) is None  # not ours: only noted for the database
    assert ("9", 1, t0 + 15) in heard
    # the database says 8 was heard elsewhere: back to OK from then
    assert s.heard_elsewhere("8", 1, t0 + 12) is not None
    assert s.line("8", 1) == ("ok", t0 + 12)
    s.drop_local("8")
    assert s.line("8", 1) is None and "8" in s.profiles_all
