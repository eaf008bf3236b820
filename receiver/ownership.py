"""Several receivers on one PostgreSQL store (active/active): who supervises
which account, what every receiver has heard, and live updates for every
receiver's consoles.  docs/scale-out.md is the operator's view.

Panels report to any receiver (a load balancer, DNS, or the panel's own
list of receivers picks one), so the receiver that hears a panel is often
not the one supervising it.  The rules:

- **One supervisor per account.**  Accounts are split into shards
  (``crc32(account) % shards``, the number fixed in the database).  A
  receiver supervises the accounts of the shards it holds a lease on
  (``supervision_leases``: owner, expiry on the database clock).  Every
  ``LEASE_RENEW_S`` each receiver renews its leases and its row in
  ``receivers`` in one transaction, claims free shards up to its fair share
  (shards / live receivers) and every expired one, and releases what it
  holds beyond its share when another receiver has fewer.  A receiver that
  dies stops renewing; ``LEASE_TTL_S`` later its shards are expired and the
  survivors take them at their next round: takeover within
  ``LEASE_TTL_S + LEASE_RENEW_S`` (12 s) plus the time to load the shard,
  inside the 30 s the issue asks for.  A receiver that cannot renew stops
  supervising ``LEASE_SAFETY_S`` before its lease would run out, so two
  receivers never both raise failures for one account.
- **Hearing is shared.**  Every authenticated frame is a hearing of its
  account's path.  Events record theirs in their own commit (pg_store);
  native heartbeats are ACKed only once their hearing is committed (the
  receiver awaits :meth:`Cluster.heard_durable`), so a receiver that dies
  takes no ACKed hearing with it; other hearings (DC-09 via
  ``supervisor.heard``) are written in batches every ``HEARD_FLUSH_S``.
  ``line_heard`` keeps the latest time per (account, path), by any
  receiver (GREATEST).
- **A failure is confirmed against the database.**  The supervising
  receiver's heap (receiver.supervision) only knows what it heard itself,
  so a due path is a *candidate*: it is looked up in ``line_heard`` and, if
  another receiver heard it since, rescheduled from that time; otherwise the
  failure is raised.  Candidates are taken ``SETTLE_S`` late, so a hearing
  just before the deadline has reached the database before it is looked
  up.  A path in failure that another receiver hears is restored from the
  same table (checked every ``FAILED_SYNC_S``).
- **Taking over uses the recorded times.**  A receiver taking a shard
  starts each path from its ``line_heard`` time, not from its own clock:
  a panel silent since before the takeover fails on time (its deadline may
  already be past: it is raised at once), and one that kept reporting
  elsewhere does not.  A path never heard gets a baseline row when its
  first supervisor starts, so a later taker does not restart its clock.
  Paths already in failure (latest supervision event a failure) are taken
  over failed, so they restore instead of failing twice.
- **Forwarding.**  Each output's outbox is delivered by the holder of the
  output's shard (``crc32("output:" + name)``), so a dispatch centre gets
  each row from one receiver (still at least once across a takeover).
- **Live updates everywhere.**  What one receiver publishes (events,
  alarms, operator actions, supervision) is sent with NOTIFY on
  ``BUS_CHANNEL`` and fed to ``Receiver.publish`` on every other receiver,
  so a console attached anywhere sees the whole station.  Best effort, as
  for a slow console: a message that does not fit or finds the bus
  backlogged is dropped and counted.

Clocks: lease expiry is the database's clock; hearing times are the
receivers' Unix clocks and must agree (NTP) to well under ``SETTLE_S``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import math
import os
import secrets
import socket
import time
import zlib

from prometheus_client import Counter, Gauge

from receiver.cluster_store import ClusterStore
from receiver.messages import from_json
from receiver.supervision import FAILED, Change, Supervisor
from receiver.tasks import cancel_all

_LOGGER = logging.getLogger(__name__)

# A lease not renewed for this long is free for the taking.  Long enough to
# ride out a few missed renewals (a GC pause, a slow commit), short enough
# that takeover stays well inside the 30 s bound with LEASE_RENEW_S.
LEASE_TTL_S = 10.0
# How often a receiver renews its leases and claims free or expired ones.
LEASE_RENEW_S = 2.0
# A receiver stops supervising a shard this long before its lease would
# expire unrenewed (local clock against database clock rate differences,
# the renewal's own round trip).
LEASE_SAFETY_S = 2.0
# Hearings not written with an event or ACKed heartbeat (DC-09) are flushed
# this often.
HEARD_FLUSH_S = 1.0
# How far behind real time supervision looks: a hearing made just before a
# deadline is in the database by then (flush interval + commit latency +
# clock differences between receivers).  A failure is raised this much
# later than on a lone receiver.
SETTLE_S = HEARD_FLUSH_S + 2.0
# How often paths in failure are checked for hearings by other receivers.
FAILED_SYNC_S = 2.0
# Live-update messages queued for the bus at most; beyond, they are dropped
# (a console refreshes; the event path must not wait for consoles).
BUS_QUEUE = 10_000
# NOTIFY payloads are limited to 8,000 bytes by PostgreSQL; leave room for
# the envelope.
BUS_PAYLOAD_MAX = 7_900
BUS_CHANNEL = "guardline_live"
# At most this many warning lines per kind per minute (a database outage
# must not flood the log from three loops).
WARN_EVERY_S = 60.0


def shard_of(key: str, shards: int) -> int:
    """The supervision shard of an account number (or ``output:NAME``)."""
    return zlib.crc32(key.encode()) % shards


def default_instance() -> str:
    return "%s:%d:%s" % (socket.gethostname(), os.getpid(), secrets.token_hex(2))


class SharedSupervisor(Supervisor):
    """The receiver's supervisor when the store is shared.

    To the receiver (and to a DC-09 listener calling ``heard``) it is a
    :class:`Supervisor`; underneath, the base class state holds only the
    accounts of the shards this receiver owns, every hearing is also noted
    for the shared ``line_heard`` table, and ``poll`` returns candidates
    that :meth:`Cluster.confirm` checks against the database."""

    def __init__(self, cluster: "Cluster"):
        super().__init__()
        self.cluster = cluster
        self.profiles_all: dict = {}  # every account's profile, owned or not
        self.unconfirmed: dict = {}  # (account, path) -> Change polled, not yet reported

    def set_profile(self, account, profile, now, failed_paths=(), last_heard=None) -> None:
        if profile is None:
            self.remove(account)
            return
        self.profiles_all[account] = profile
        if self.cluster.owns(account):
            if last_heard is None and self.profile(account) is None:
                # new here (an account added while running): its supervision
                # starts now, for whoever supervises it next too
                self.cluster.note_baseline(account, profile.paths, now)
            super().set_profile(account, profile, now, failed_paths, last_heard)

    def remove(self, account) -> None:
        self.profiles_all.pop(account, None)
        self.drop_local(account)

    def drop_local(self, account) -> None:
        """Stop supervising ``account`` here (its shard went elsewhere)."""
        super().remove(account)
        for p in (1, 2):
            self.unconfirmed.pop((account, p), None)

    def take(self, account, now, failed_paths, last_heard) -> None:
        prof = self.profiles_all.get(account)
        if prof is not None:
            super().set_profile(account, prof, now, failed_paths, last_heard)

    def heard(self, account, path, now):
        self.cluster.note_heard(account, path, now)
        ch = super().heard(account, path, now)
        if ch is not None and self.unconfirmed.pop((account, path), None) is not None:
            return None  # its failure was never reported: nothing to restore
        return ch

    def heard_elsewhere(self, account, path, at):
        """Another receiver heard the path at ``at`` (from the database)."""
        return super().heard(account, path, at)

    def poll(self, now, limit=None):
        out = super().poll(now - SETTLE_S, limit)
        for ch in out:
            self.unconfirmed[(ch.account, ch.path)] = ch
        return out

    def next_deadline(self):
        nd = super().next_deadline()
        return None if nd is None else nd + SETTLE_S

    def line(self, account, path):
        """(state, last_heard) of a supervised path, or None."""
        st = self.status(account).get(path)
        return None if st is None else (st["state"], st["last_heard"])


class _Warn:
    """Log a warning of each kind at most once per WARN_EVERY_S."""

    def __init__(self):
        self._last: dict = {}

    def __call__(self, kind: str, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._last[kind] = now
            _LOGGER.warning(msg, *args)


class Cluster:
    """Attach a :class:`receiver.app.Receiver` to the others on its shared
    store.  The receiver builds it before loading supervision profiles and
    starts it after; ``stop`` hands the shards back."""

    def __init__(self, receiver, instance: str | None = None):
        self.rx = receiver
        self.instance = instance or default_instance()
        # the cluster's SQL and connections (receiver.cluster_store)
        self.db: ClusterStore = receiver.store.cluster_store(self.instance)
        self.shards = self.db.shards
        self.owned: set = set()
        self.supervisor = SharedSupervisor(self)
        receiver.supervisor = self.supervisor
        self._valid_until = 0.0  # monotonic: owned shards are ours until then
        self._heard: dict = {}  # (account, path) -> time, not yet flushed
        self._baselines: list = []  # (account, path, time) supervision started, not yet written
        self._restores: list[Change] = []
        self._bus_out: collections.deque = collections.deque()
        self._bus_wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._started_at = time.time()
        self._own_prefix = '{"from": %s, "m": ' % json.dumps(self.instance)
        self._warn = _Warn()
        # counters (tests, logs) and their /metrics twins
        self.takeovers = 0
        self.bus_sent = 0
        self.bus_received = 0
        self.bus_dropped = 0
        self.live_receivers = 0
        r, p = receiver.metrics.registry, "guardline_receiver_cluster_"
        Gauge(p + "shards_owned", "Supervision shards this receiver holds a lease on",
              registry=r).set_function(lambda: len(self.owned))
        Gauge(p + "receivers_live", "Receivers with a fresh heartbeat in the store",
              registry=r).set_function(lambda: self.live_receivers)
        self.m_taken = Counter(p + "shards_taken_total",
                               "Supervision shards taken (at start, balancing, takeover)",
                               registry=r)
        self.m_bus = Counter(p + "live_updates_total",
                             "Live-update messages sent to, received from, or dropped on "
                             "the way to the other receivers", ["direction"], registry=r)

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()
        await self._lease_round()  # supervise at once, before the listeners open
        for coro, name in ((self._lease_loop(), "cluster-leases"),
                           (self._heard_loop(), "cluster-heard"),
                           (self._failed_sync_loop(), "cluster-failed-sync"),
                           (self._bus_loop(), "cluster-bus"),
                           (self._listen_loop(), "cluster-listen")):
            self._tasks.append(asyncio.create_task(coro, name=name))
        _LOGGER.info("cluster joined instance=%s shards=%d owned=%d", self.instance,
                     self.shards, len(self.owned))

    async def stop(self) -> None:
        """Flush what was heard, hand the leases back (the others take them
        at their next round instead of waiting for expiry), leave."""
        await cancel_all(self._tasks)
        try:
            await self._flush_heard()
            await self._flush_baselines()
        except Exception as e:  # noqa: BLE001
            _LOGGER.warning("cluster stop: hearings not flushed error=%s", e)
        await self._flush_bus()
        try:
            await self.db.release()
            _LOGGER.info("cluster left instance=%s released=%d", self.instance,
                         len(self.owned))
        except Exception as e:  # noqa: BLE001 - they expire anyway
            _LOGGER.warning("cluster stop: leases not released (they expire in %.0f s) "
                            "error=%s", LEASE_TTL_S, e)
        self._lose(set(self.owned), "stopping")
        await self.db.close()

    # -- ownership ------------------------------------------------------------------

    def owns(self, account: str) -> bool:
        return shard_of(account, self.shards) in self.owned

    def delivers(self, output: str) -> bool:
        """Does this receiver deliver ``output``'s outbox now?"""
        return shard_of("output:" + output, self.shards) in self.owned

    def lease_valid(self) -> bool:
        return time.monotonic() < self._valid_until

    async def _lease_loop(self) -> None:
        while True:
            t0 = time.monotonic()
            try:
                await self._lease_round()
            except Exception as e:  # noqa: BLE001 - keep trying; leases expire meanwhile
                # (the cluster store reconnects next round: the server may
                # have failed over)
                self._warn("lease", "cluster lease round failed instance=%s error=%s",
                           self.instance, e)
            if self.owned and not self.lease_valid():
                self._lose(set(self.owned), "leases not renewed in time")
            await asyncio.sleep(max(0.1, LEASE_RENEW_S - (time.monotonic() - t0)))

    async def _lease_round(self) -> None:
        t_send = time.monotonic()
        r = await self.db.lease_round(socket.gethostname(), os.getpid(), self._started_at,
                                      LEASE_TTL_S)
        self.live_receivers = r.live
        self._valid_until = t_send + LEASE_TTL_S - LEASE_SAFETY_S
        held = r.held
        lost = self.owned - held
        if lost:
            self._lose(lost, "released to balance" if lost <= r.released else "taken over")
        gained = held - self.owned
        if gained:
            await self._take(gained, r.previous_owners)

    def _lose(self, shards: set, why: str) -> None:
        if not shards:
            return
        self.owned -= shards
        dropped = 0
        for account in self.supervisor.accounts():
            if shard_of(account, self.shards) in shards:
                self.supervisor.drop_local(account)
                dropped += 1
        _LOGGER.info("supervision shards given up instance=%s shards=%d accounts=%d why=%s",
                     self.instance, len(shards), dropped, why)

    async def _take(self, shards: set, previous: list) -> None:
        """Start supervising ``shards``: each path from its recorded hearing
        (or baseline), failed paths as failed."""
        sup = self.supervisor
        accounts = [a for a in sup.profiles_all if shard_of(a, self.shards) in shards]
        keys = [(a, p) for a in accounts for p in sup.profiles_all[a].paths]
        now = time.time()
        # never heard: its supervision starts now, and stays started from
        # now for whoever supervises it next
        await self._insert_baselines(sorted((a, p, now) for a, p in keys))
        heard = await self.fetch_heard(keys)
        failures = await self.db.supervision_failures(accounts)
        self.owned |= shards
        for a in accounts:
            prof = sup.profiles_all.get(a)
            if prof is None:
                continue
            failed = {p for p in prof.paths if (a, p) in failures}
            since = {p: failures[(a, p)] if p in failed else heard.get((a, p), now)
                     for p in prof.paths}
            sup.take(a, now, failed, since)
        self.takeovers += 1
        self.m_taken.inc(len(shards))
        overdue = sum(1 for a in accounts for p in sup.profiles_all[a].paths
                      if (a, p) not in failures
                      and heard.get((a, p), now) + sup.profiles_all[a].timeout_s < now)
        _LOGGER.info("supervision shards taken instance=%s shards=%d accounts=%d failed=%d "
                     "overdue=%d previous=%s", self.instance, len(shards), len(accounts),
                     len(failures), overdue, ",".join(previous) or "-")
        for f in self.rx.forwarders.values():
            f.wake()

    # -- hearing --------------------------------------------------------------------

    def note_baseline(self, account: str, paths, at: float) -> None:
        for p in paths:
            self._baselines.append((account, p, at))

    async def _flush_baselines(self) -> None:
        if not self._baselines:
            return
        rows, self._baselines = sorted(self._baselines), []
        try:
            await self._insert_baselines(rows)
        except BaseException:
            self._baselines.extend(rows)
            raise

    async def _insert_baselines(self, rows) -> None:
        """Write (account, path, at) as never-heard baselines where nothing
        is recorded yet."""
        await self.db.insert_baselines(rows)

    def note_heard(self, account: str, path: int, at: float) -> None:
        k = (account, path)
        if at > self._heard.get(k, 0.0):
            self._heard[k] = at

    async def heard_durable(self, account: str, path: int, at: float) -> None:
        """Return once the hearing is committed (the receiver ACKs a
        heartbeat then)."""
        await self.db.record_heard([(account, path, at)])
        k = (account, path)
        if self._heard.get(k, math.inf) <= at:
            del self._heard[k]

    async def _flush_heard(self) -> None:
        if not self._heard:
            return
        rows, self._heard = self._heard, {}
        try:
            await self.db.record_heard([(a, p, t) for (a, p), t in rows.items()])
        except BaseException:
            for k, t in rows.items():
                self.note_heard(k[0], k[1], t)
            raise

    async def _heard_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARD_FLUSH_S)
            try:
                await self._flush_heard()
                await self._flush_baselines()
            except Exception as e:  # noqa: BLE001
                self._warn("heard", "cluster hearings not flushed (retrying) error=%s", e)

    async def fetch_heard(self, keys) -> dict:
        """{(account, path): last heard} from the database."""
        return await self.db.fetch_heard(keys)

    # -- supervision confirmation -----------------------------------------------------

    async def confirm(self, polled: list, now: float) -> list:
        """The receiver's supervision tick hands over what ``poll`` returned;
        this returns the changes to raise: failures nobody heard since,
        restores found in the database.  Candidates that cannot be checked
        now (database unreachable) wait for the next tick."""
        out, self._restores = self._restores, []
        sup = self.supervisor
        cands = list(sup.unconfirmed.values())
        if not cands or not self.lease_valid():
            # (with the lease in doubt, candidates wait: the shards are either
            # renewed, or given up and their lines dropped)
            return out
        try:
            heard = await self.fetch_heard([(c.account, c.path) for c in cands])
        except Exception as e:  # noqa: BLE001
            self._warn("confirm", "supervision candidates not checked (retrying) count=%d "
                       "error=%s", len(cands), e)
            return out
        for ch in cands:
            k = (ch.account, ch.path)
            if sup.unconfirmed.get(k) is not ch:
                continue  # heard here, or the shard went elsewhere, meanwhile
            del sup.unconfirmed[k]
            t = heard.get(k)
            if t is not None and t > ch.last_heard:
                sup.heard_elsewhere(ch.account, ch.path, t)  # back to OK, from then
                continue
            if not self.lease_valid():
                sup.unconfirmed[k] = ch  # in doubt now: next tick
                continue
            out.append(dataclasses.replace(ch, at=now))
        return out

    async def _failed_sync_loop(self) -> None:
        while True:
            await asyncio.sleep(FAILED_SYNC_S)
            try:
                await self._failed_sync()
            except Exception as e:  # noqa: BLE001
                self._warn("failed-sync", "cluster failed-path check failed error=%s", e)

    async def _failed_sync(self) -> None:
        sup = self.supervisor
        keys = [k for k in sup.failed() if k not in sup.unconfirmed]
        if not keys:
            return
        heard = await self.fetch_heard(keys)
        for a, p in keys:
            t = heard.get((a, p))
            line = sup.line(a, p)
            if t is None or line is None or line[0] != FAILED or t <= line[1]:
                continue
            ch = sup.heard_elsewhere(a, p, t)
            if ch is not None:
                self._restores.append(ch)

    # -- live updates ---------------------------------------------------------------------

    def broadcast(self, message: dict) -> None:
        """Send a published message to the other receivers' subscribers."""
        if len(self._bus_out) >= BUS_QUEUE:
            self.bus_dropped += 1
            self.m_bus.labels("dropped").inc()
            return
        self._bus_out.append(message)
        self._bus_wake.set()

    def _payloads(self, messages) -> list[str]:
        out, cur, size = [], [], 0
        head = len(self._own_prefix) + 2
        for m in messages:
            try:
                s = json.dumps(m, sort_keys=True, default=str)
            except (TypeError, ValueError):
                self.bus_dropped += 1
                continue
            if head + len(s) + 1 > BUS_PAYLOAD_MAX:
                self.bus_dropped += 1
                continue
            if cur and head + size + len(s) + 1 > BUS_PAYLOAD_MAX:
                out.append(cur)
                cur, size = [], 0
            cur.append(s)
            size += len(s) + 1
        if cur:
            out.append(cur)
        return ['%s[%s]}' % (self._own_prefix, ",".join(c)) for c in out]

    async def _flush_bus(self) -> None:
        if not self._bus_out:
            return
        messages = list(self._bus_out)
        self._bus_out.clear()
        before = self.bus_dropped
        payloads = self._payloads(messages)
        sent = len(messages) - (self.bus_dropped - before)
        try:
            if payloads:
                await self.db.notify(BUS_CHANNEL, payloads)
        except BaseException:
            self.bus_dropped += sent  # best effort: not retried (consoles refresh)
            raise
        finally:
            if self.bus_dropped > before:
                self.m_bus.labels("dropped").inc(self.bus_dropped - before)
        self.bus_sent += sent
        self.m_bus.labels("sent").inc(sent)

    async def _bus_loop(self) -> None:
        while True:
            await self._bus_wake.wait()
            self._bus_wake.clear()
            try:
                await self._flush_bus()
            except Exception as e:  # noqa: BLE001 - live updates are best effort
                self._warn("bus", "live updates not sent error=%s", e)
                await asyncio.sleep(1.0)

    async def _listen(self) -> None:
        await self.db.listen(BUS_CHANNEL, self._on_notify)

    async def _listen_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.db.listening:
                continue
            try:
                await self._listen()
                _LOGGER.info("live updates listening again instance=%s", self.instance)
            except Exception as e:  # noqa: BLE001
                self._warn("listen", "live updates not received (reconnecting) error=%s", e)

    def _on_notify(self, payload: str) -> None:
        if payload.startswith(self._own_prefix):
            return  # ours, back from the server: our subscribers have it already
        try:
            doc = json.loads(payload)
            messages = doc["m"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        self.bus_received += len(messages)
        self.m_bus.labels("received").inc(len(messages))
        for m in messages:
            msg = from_json(m) if isinstance(m, dict) else None
            if msg is not None:
                self.rx.publish(msg, broadcast=False)
