"""The :class:`~receiver.cluster_store.ClusterStore` of a PostgreSQL store:
the SQL of leases, shared hearings and live-update NOTIFY that
receiver.ownership runs (docs/scale-out.md).

Tables (receiver.pg_store's schema): ``receivers`` (who is alive: a
heartbeat on the database clock), ``supervision_leases`` (one row per
shard: owner, expiry, epoch), ``line_heard`` (the latest hearing of each
account's path, by any receiver).  Hearings that travel with an event or
an ACKed heartbeat are written by the store's group commit
(``PGStore.record_heard``); this module reads them and writes baselines.

Connections: leases on one of their own (a lease round must not wait
behind a batch of events), live updates on two (NOTIFY with
``synchronous_commit=off``; LISTEN).  A connection that fails is dropped,
and the next call makes a new one (the server may have failed over).
"""

from __future__ import annotations

from typing import Callable

from receiver.cluster_store import ClusterStore, LeaseRound, fair_share

# Accounts' paths looked up or written per statement (candidates, failed
# paths, takeover, baselines).
CHUNK = 5_000


class PGClusterStore(ClusterStore):
    def __init__(self, store, instance: str):
        self.store = store  # receiver.pg_store.PGStore
        self.instance = instance
        self.shards = store.shards
        self._lease_conn = None
        self._notify_conn = None
        self._listen_conn = None

    async def _conn(self, attr: str, **settings):
        conn = getattr(self, attr)
        if conn is None or conn.is_closed():
            conn = await self.store.connect(**settings)
            setattr(self, attr, conn)
        return conn

    def _drop(self, attr: str) -> None:
        conn = getattr(self, attr)
        setattr(self, attr, None)
        if conn is not None:
            conn.terminate()

    # -- leases ---------------------------------------------------------------------

    async def lease_round(self, host, pid, started_at, ttl_s) -> LeaseRound:
        conn = await self._conn("_lease_conn", application_name="guardline-lease")
        try:
            async with conn.transaction():
                return await self._lease_round(conn, host, pid, started_at, ttl_s)
        except BaseException:
            self._drop("_lease_conn")  # reconnect next round
            raise

    async def _lease_round(self, conn, host, pid, started_at, ttl) -> LeaseRound:
        await conn.execute(
            """INSERT INTO receivers (id, host, pid, started_at, heartbeat_at)
               VALUES ($1, $2, $3, $4, clock_timestamp())
               ON CONFLICT (id) DO UPDATE SET heartbeat_at = clock_timestamp()""",
            self.instance, host, pid, started_at)
        live = await conn.fetchval(
            """SELECT COUNT(*) FROM receivers
               WHERE heartbeat_at > clock_timestamp() - make_interval(secs => $1)""", ttl)
        mine = {r["shard"] for r in await conn.fetch(
            """UPDATE supervision_leases
               SET expires_at = clock_timestamp() + make_interval(secs => $2)
               WHERE owner = $1 RETURNING shard""", self.instance, ttl)}
        fair = fair_share(self.shards, live)
        # expired leases are always taken (a dead receiver's accounts must
        # not go unsupervised); free ones up to the fair share
        claimed = [(r["shard"], r["previous"]) for r in await conn.fetch(
            """WITH c AS (
                   SELECT shard, owner FROM supervision_leases
                   WHERE owner IS NULL OR expires_at < clock_timestamp()
                   ORDER BY owner IS NULL, shard
                   FOR UPDATE SKIP LOCKED)
               UPDATE supervision_leases l
               SET owner = $1, expires_at = clock_timestamp() + make_interval(secs => $2),
                   acquired_at = clock_timestamp(), epoch = l.epoch + 1
               FROM (SELECT shard, owner FROM c
                     WHERE owner IS NOT NULL
                     UNION ALL
                     (SELECT shard, owner FROM c WHERE owner IS NULL ORDER BY shard
                      LIMIT GREATEST($3::int, 0))) AS pick
               WHERE l.shard = pick.shard
               RETURNING l.shard, pick.owner AS previous""",
            self.instance, ttl, fair - len(mine))]
        out = LeaseRound(live, mine, claimed)
        excess = len(mine) + len(claimed) - fair
        if excess > 0 and await conn.fetchval(
                """SELECT COUNT(*) FROM receivers r WHERE r.id <> $1
                     AND r.heartbeat_at > clock_timestamp() - make_interval(secs => $2)
                     AND (SELECT COUNT(*) FROM supervision_leases l
                          WHERE l.owner = r.id) < $3""", self.instance, ttl, fair):
            out.released = set(sorted(mine, reverse=True)[:excess])
            await conn.execute(
                """UPDATE supervision_leases SET owner = NULL, expires_at = NULL
                   WHERE owner = $1 AND shard = ANY($2::int[])""",
                self.instance, sorted(out.released))
        return out

    async def release(self) -> None:
        conn = self._lease_conn
        if conn is None or conn.is_closed():
            conn = await self._conn("_lease_conn", application_name="guardline-lease")
        async with conn.transaction():
            await conn.execute("""UPDATE supervision_leases SET owner = NULL, expires_at = NULL
                                  WHERE owner = $1""", self.instance)
            await conn.execute("DELETE FROM receivers WHERE id = $1", self.instance)

    # -- hearings -------------------------------------------------------------------

    async def record_heard(self, rows) -> None:
        await self.store.record_heard(rows)

    async def insert_baselines(self, rows) -> None:
        for i in range(0, len(rows), CHUNK):
            chunk = rows[i:i + CHUNK]

            async def job(conn, ch=chunk):
                await conn.execute(
                    """INSERT INTO line_heard (account, path, last_heard, heard_by)
                       SELECT a, p, t, NULL FROM unnest($1::text[], $2::int[], $3::float8[])
                           AS v(a, p, t)
                       ORDER BY a, p
                       ON CONFLICT (account, path) DO NOTHING""",
                    [r[0] for r in ch], [r[1] for r in ch], [r[2] for r in ch])
            await self.store.run_write(job)

    async def fetch_heard(self, keys) -> dict:
        out: dict = {}
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            rows = await self.store.run_read(lambda c, ch=chunk: c.fetch(
                """SELECT h.account, h.path, h.last_heard FROM line_heard h
                   JOIN unnest($1::text[], $2::int[]) AS k(account, path)
                   USING (account, path)""", [k[0] for k in ch], [k[1] for k in ch]))
            for r in rows:
                out[(r["account"], r["path"])] = r["last_heard"]
        return out

    async def supervision_failures(self, accounts) -> dict:
        return await self.store.supervision_failures(accounts) if accounts else {}

    # -- live updates ---------------------------------------------------------------

    async def notify(self, channel, payloads) -> None:
        conn = await self._conn("_notify_conn", application_name="guardline-bus",
                                synchronous_commit="off")
        try:
            await conn.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY "
                               "AS x(p, n) ORDER BY n", channel, payloads)
        except BaseException:
            self._drop("_notify_conn")
            raise

    async def listen(self, channel, callback: Callable[[str], None]) -> None:
        self._drop("_listen_conn")
        conn = await self.store.connect(application_name="guardline-listen")
        await conn.add_listener(channel, lambda _c, _pid, _ch, payload: callback(payload))
        self._listen_conn = conn

    @property
    def listening(self) -> bool:
        return self._listen_conn is not None and not self._listen_conn.is_closed()

    async def close(self) -> None:
        for attr in ("_lease_conn", "_notify_conn", "_listen_conn"):
            conn = getattr(self, attr)
            setattr(self, attr, None)
            if conn is not None and not conn.is_closed():
                try:
                    await conn.close(timeout=5)
                except Exception:  # noqa: BLE001 - already broken
                    conn.terminate()
