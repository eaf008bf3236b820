"""receiver.cluster_store: the shared-store SQL that receiver.ownership runs,
driven directly on a fresh PostgreSQL database (two receivers balancing
leases, hearings that only move forward, baselines that never replace a
hearing, live updates).  tests/test_pg_cluster.py runs it through whole
receivers."""

import os

import pytest

from receiver.cluster_store import LeaseRound, fair_share
from receiver.records import Account
from receiver.store import StoreError
from testkit.wait import wait_until
from tests.pg_fixture import pg_server, pg_url  # noqa: F401


def test_fair_share_and_what_a_round_holds():
    assert [fair_share(64, n) for n in (0, 1, 2, 3, 64, 100)] == [64, 64, 32, 22, 1, 1]
    r = LeaseRound(2, renewed={1, 2, 3}, claimed=[(7, None), (8, "rx-b")], released={3})
    assert r.held == {1, 2, 7, 8} and r.previous_owners == ["rx-b"]


async def test_an_sqlite_store_is_not_shared(tmp_path):
    from receiver.sqlite_store import SQLiteStore
    with pytest.raises(StoreError):
        SQLiteStore(str(tmp_path / "rx.db")).cluster_store("rx-a")


async def test_two_receivers_balance_leases_and_share_hearings(pg_url):
    pytest.importorskip("asyncpg")
    from receiver.pg_store import PGStore
    sa, sb = PGStore(pg_url), PGStore(pg_url)
    await sa.open()
    await sb.open()
    a, b = sa.cluster_store("rx-a"), sb.cluster_store("rx-b")
    try:
        n = a.shards
        first = await a.lease_round("host-a", 1, 0.0, 10.0)
        assert first.live == 1 and first.held == set(range(n))
        joined = await b.lease_round("host-b", 2, 0.0, 10.0)
        assert joined.live == 2 and joined.held == set()  # nothing free yet
        balance = await a.lease_round("host-a", 1, 0.0, 10.0)
        assert len(balance.released) == n - fair_share(n, 2) and balance.held == (
            set(range(n)) - balance.released)
        took = await b.lease_round("host-b", 2, 0.0, 10.0)
        assert took.held == balance.released and took.previous_owners == []
        await b.release()
        again = await a.lease_round("host-a", 1, 0.0, 10.0)
        assert again.live == 1 and again.held == set(range(n))

        await sa.add_account(Account("1", os.urandom(32)))
        await a.insert_baselines([("1", 1, 100.0), ("1", 2, 100.0)])
        await b.record_heard([("1", 1, 150.0)])
        await a.record_heard([("1", 1, 120.0)])  # older: does not move it back
        await a.insert_baselines([("1", 1, 200.0)])  # a baseline never replaces a hearing
        assert await a.fetch_heard([("1", 1), ("1", 2), ("9", 1)]) == {
            ("1", 1): 150.0, ("1", 2): 100.0}
        assert await a.supervision_failures([]) == {}

        got: list = []
        await b.listen("gl_test", got.append)
        assert b.listening
        await a.notify("gl_test", ["one", "two"])
        await wait_until(lambda: len(got) >= 2, what="both notifications", seen=lambda: got)
        assert got == ["one", "two"]
    finally:
        await a.close()
        await b.close()
        assert not b.listening
        await sa.close()
        await sb.close()
