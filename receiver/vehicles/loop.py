"""The receiver's vehicle task: feeds each vehicle unit's track points to
its :class:`receiver.vehicles.watch.RouteWatch`, stores what the watches
raise (170, 171, 175, source ``vehicle``), records patrols' arrivals on
scene, and prunes tracks past their retention.

    loop = VehicleLoop(rx)
    await loop.run()            # the task (tests call loop.step(now))

Invariants:

- **The store is the feed.**  Points are read from the store by arrival
  time (``Store.track_received_since``), whichever receiver took them, and
  read again for ``SETTLE_S`` (two PostgreSQL transactions may commit out
  of order); each is fed once (by id).
- **One judge per account.**  With several receivers only the one holding
  the account's supervision shard (``Cluster.owns``) runs its watch; a
  receiver that takes an account over (or starts) replays the account's
  last ``REPLAY_S`` of track and reads what the store says is raised, so
  what was raised is not raised again and what is due is raised now.
- **Exactly once.**  Every event the watches raise has a dedupe key named
  after the track point that began its episode (receiver.vehicles.watch):
  raised twice (a takeover race), it is stored once.  An arrival is
  recorded by a conditional update (``Store.record_arrival``): once.
- **The unit first.**  Before a route event is stored, the store is asked
  whether the unit reported that code itself; if it did (its latest report
  of it is a new event), the receiver's is withdrawn.
- A finding the store cannot take now (busy) is kept and retried on the
  next step, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

from receiver import retention
from receiver.config import Config
from receiver.link_policy import Busy
from receiver.messages import ConsoleMessage, PatrolUpdate
from receiver.records import (Account, Dispatch, EventRecord, IngestOutcome, PatrolStatus,
                              TrackPoint)
from receiver.store import TRACK_FEED_PAGE, TRACK_MAX_PAGE, Store
from receiver.vehicles import patrols as P
from receiver.vehicles.watch import CODES, SILENT, SOURCE, Finding, RouteWatch

if TYPE_CHECKING:
    from receiver.ownership import Cluster

_LOGGER = logging.getLogger(__name__)

# Account kinds that are vehicle units (firmware config "kind").
VEHICLE_KINDS = ("vehicle", "patrol")
# How often the task looks (timers need no finer: the rules count seconds).
TICK_S = 1.0
# Points that arrived this recently are read again: a PostgreSQL commit may
# become visible after a later one's (receiver.ownership's SETTLE_S).
SETTLE_S = 5.0
# Track replayed when a watch starts: covers the default stop_max_s (300)
# and the unit's grace many times, and a quiet night's parked heartbeats.
REPLAY_S = 2 * 3600.0
# How often the account list (who is a vehicle) and the open dispatches
# are read again (a dispatch made on this receiver is noted at once).
ACCOUNTS_EVERY_S = 10.0
DISPATCHES_EVERY_S = 2.0
# The name of the shard whose owner prunes tracks (a pseudo account).
RETENTION_SHARD = "retention:track_points"


class VehicleHost(Protocol):
    config: Config
    store: Store
    cluster: Cluster | None

    def make_record(self, event: dict) -> EventRecord: ...

    async def ingest_records(self, recs: list[EventRecord]) -> list[IngestOutcome]: ...

    def publish(self, message: ConsoleMessage, broadcast: bool = True) -> None: ...


class VehicleLoop:
    def __init__(self, rx: VehicleHost, now: float | None = None):
        self.rx = rx
        self.watches: dict[str, RouteWatch] = {}
        self.accounts: dict[str, Account] = {}  # vehicle units by number
        self.dispatches: dict[str, list[Dispatch]] = {}  # open, by patrol
        self.seen: dict[int, float] = {}  # point id -> received_at (fed already)
        start = time.time() if now is None else now
        self.cursor = start - SETTLE_S
        self._retry: list[Finding] = []
        self._accounts_at = self._dispatches_at = self._prune_at = float("-inf")

    # -- who is watched --------------------------------------------------------------

    def _owns(self, account: str) -> bool:
        c = self.rx.cluster
        return c is None or c.owns(account)

    async def _refresh_accounts(self, now: float) -> None:
        rules = self.rx.config.vehicles.rules
        self.accounts = {a.number: a for a in await self.rx.store.list_accounts()
                         if a.panel_kind in VEHICLE_KINDS or a.number in rules}
        self._accounts_at = now

    async def _follow_ownership(self, now: float) -> list[Finding]:
        stored = []
        for number in list(self.watches):
            if number not in self.accounts or not self._owns(number):
                del self.watches[number]
        for number in self.accounts:
            if number not in self.watches and self._owns(number):
                stored += await self._start_watch(number, now)
        return stored

    async def _start_watch(self, number: str, now: float) -> list[Finding]:
        vc = self.rx.config.vehicles
        w = RouteWatch(number, vc.rules.get(number), vc.unit_grace_s, vc.silent_s)
        raised = await self.rx.store.latest_by_code(number, list(CODES), SOURCE)
        w.load_raised({c: e.dedupe_key for c, e in raised.items() if e.qualifier == 1})
        self.watches[number] = w
        found: list[Finding] = []
        for tp in await self.rx.store.track(number, since=now - REPLAY_S,
                                            limit=TRACK_MAX_PAGE):
            self.seen.setdefault(tp.id, tp.received_at)
            found += await self._feed(w, tp)
        found += w.tick(now)
        return await self._store(found)

    # -- the feed -------------------------------------------------------------------------

    async def _new_points(self) -> list[TrackPoint]:
        out: list[TrackPoint] = []
        since = self.cursor - SETTLE_S
        while True:
            page = await self.rx.store.track_received_since(since, TRACK_FEED_PAGE)
            for tp in page:
                if tp.id not in self.seen:
                    self.seen[tp.id] = tp.received_at
                    out.append(tp)
                self.cursor = max(self.cursor, tp.received_at)
            if len(page) < TRACK_FEED_PAGE:
                break
            since = page[-1].received_at  # a page of one instant is read again: seen
            if page[0].received_at == since:
                break  # more than a page in one instant: the rest next step
        floor = self.cursor - 2 * SETTLE_S
        if len(self.seen) > 4 * TRACK_FEED_PAGE:
            self.seen = {i: t for i, t in self.seen.items() if t >= floor}
        return out

    def note_dispatch(self, d: Dispatch) -> None:
        """A dispatch made here: watched for its arrival at once."""
        lst = self.dispatches.setdefault(d.patrol, [])
        if all(x.id != d.id for x in lst):
            lst.append(d)

    async def _refresh_dispatches(self, now: float) -> None:
        by: dict[str, list[Dispatch]] = {}
        for d in await self.rx.store.list_dispatches(open_only=True):
            by.setdefault(d.patrol, []).append(d)
        self.dispatches = by
        self._dispatches_at = now

    async def _feed(self, w: RouteWatch, tp: TrackPoint) -> list[Finding]:
        """One point to its account's watch, and to the arrival check of
        the patrol's open dispatches."""
        found = w.point(tp)
        for d in list(self.dispatches.get(tp.account, ())):
            if P.arrived(d, tp):
                await self._arrival(d, tp)
        return found

    async def _arrival(self, d: Dispatch, tp: TrackPoint) -> None:
        a = self.accounts.get(d.patrol)
        name = a.site_name if a else ""
        done = await self.rx.store.record_arrival(d.id, tp.at, P.arrival_sentence(
            d.patrol, name, d, tp.at))
        self.dispatches[d.patrol] = [x for x in self.dispatches.get(d.patrol, [])
                                     if x.id != d.id]
        if done is None:
            return  # another receiver recorded it
        _LOGGER.warning("patrol on scene account=%s alarm_id=%d arrival_s=%d", d.patrol,
                        d.alarm_id, round(tp.at - d.dispatched_at))
        self.rx.publish(PatrolUpdate.of(PatrolStatus(d.patrol, "on_scene", tp.at,
                                                     "receiver", d.alarm_id), done))

    # -- a step -------------------------------------------------------------------------------

    async def step(self, now: float) -> list[Finding]:
        """One look: accounts, ownership, new points, timers, arrivals,
        retention.  Returns the findings stored (tests read them)."""
        if now - self._accounts_at >= ACCOUNTS_EVERY_S:
            await self._refresh_accounts(now)
        if now - self._dispatches_at >= DISPATCHES_EVERY_S:
            await self._refresh_dispatches(now)
        started = await self._follow_ownership(now)
        found, self._retry = self._retry, []
        for tp in await self._new_points():
            w = self.watches.get(tp.account)
            if w is not None:
                found += await self._feed(w, tp)
        for w in self.watches.values():
            found += w.tick(now)
        stored = started + await self._store(found)
        if now - self._prune_at >= retention.PRUNE_EVERY_S:
            self._prune_at = now
            if self._owns(RETENTION_SHARD):
                await self.prune(now)
        return stored

    async def _store(self, found: list[Finding]) -> list[Finding]:
        stored = []
        withdrawn = set()  # keys of new events left to the unit: their restores go too
        for f in found:
            if f.qualifier == 3 and f.dedupe_key in withdrawn:
                continue
            if f.qualifier == 1 and f.code != SILENT:
                unit = await self.rx.store.latest_by_code(f.account, [f.code], "panel")
                e = unit.get(f.code)
                if e is not None and e.qualifier == 1:
                    w = self.watches.get(f.account)
                    if w is not None:
                        w.withdraw(f.code)
                    withdrawn.add(f.dedupe_key + ":restore")
                    _LOGGER.info("vehicle check left to the unit account=%s code=%03d "
                                 "(the unit reported it at %.0f)", f.account, f.code,
                                 e.received_at)
                    continue
            a = self.accounts.get(f.account)
            rec = self.rx.make_record(dict(f.record_fields(),
                                           protocol=a.protocol if a else "native"))
            try:
                await self.rx.ingest_records([rec])
            except Busy as e:
                _LOGGER.warning("vehicle event not stored yet (retrying) account=%s "
                                "code=%03d reason=%s", f.account, f.code, e.reason)
                self._retry.append(f)
                continue
            (_LOGGER.warning if f.qualifier == 1 else _LOGGER.info)(
                "vehicle check account=%s code=%03d qualifier=%d %s", f.account, f.code,
                f.qualifier, f.text)
            stored.append(f)
        return stored

    async def prune(self, now: float) -> int:
        """Delete track points past their account's retention (its own
        ``track_retention_days``, else [vehicles] retention_days), a batch
        per kind per call."""
        store = self.rx.store
        own = {a.number: a.track_retention_days for a in await store.list_accounts()
               if a.track_retention_days is not None}
        n = 0
        for number, days in sorted(own.items()):
            n += await store.prune_track(number, retention.cutoff(days, now),
                                         retention.PRUNE_BATCH)
        days = self.rx.config.vehicles.retention_days
        n += await store.prune_track(None, retention.cutoff(days, now), retention.PRUNE_BATCH,
                                     exclude=sorted(own))
        if n:
            _LOGGER.info("pruned what=track_points rows=%d default_keep_days=%d", n, days)
        return n

    async def run(self) -> None:
        while True:
            try:
                await self.step(time.time())
            except Exception:  # noqa: BLE001 - keep watching whatever happens
                _LOGGER.exception("vehicle step failed")
            await asyncio.sleep(TICK_S)
