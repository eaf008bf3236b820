"""The receiver's side of the centre's rules (issue 18): one timer task
that raises the opening-schedule events (450-454) when their deadlines
pass, ends test placements when their time is up, and supervises periodic
test reports (358); and what ingest tells it (an arm or disarm judged at
once, a 602 heard).  The decisions are the cores' (receiver.rules); the
rows are the store's (receiver.rules_store); this module wires them.

    loop = RulesLoop(rx)
    await loop.start(now)        # schedules file, schedules, changes, tests
    loop.on_stored(rec, outcome) # every new event (receiver.app)
    await loop.run()             # the timer task (loop.tick(now) in tests)

Invariants:

- The receiver's events go through the normal ingest path
  (``Receiver.ingest_records``): classified, placed on test, held, grouped,
  alarmed and routed like a panel's.  Each has a dedupe key
  (``schedule:<partition>:<day>:<kind>``, ``periodic:<q>:<ms>``), so an
  evaluation repeated after a restart, or by a second receiver, stores it
  once.
- Deadlines are evaluated by the receiver that holds the account's
  supervision shard (receiver.ownership: one raiser per account), from the
  store's history, ``SETTLE_S`` late with several receivers so a report
  another receiver heard just before a deadline is in the store first.
  A receiver that takes shards over evaluates their partitions over the
  lookback at once: what the old owner missed is raised then, stamped with
  the deadline.  Arm/disarm reports are judged at once by the receiver
  that stored them (an early opening at a bank is a hold-up indicator: it
  must not wait for a timer).
- Schedules, changes and placements are read from the store, and read
  again whenever its rules revision moves (a CLI in another process, the
  console, another receiver): the store is the truth, this is a cache.
- A placement's end is written once (the store ends it only if nobody
  did), audited, whoever gets there first.
- Events that cannot be stored now (the store is busy) are kept and
  retried at the next tick, never dropped.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import tomllib
from typing import TYPE_CHECKING, Protocol

from receiver.config import Config
from receiver.link_policy import Busy
from receiver.logfmt import q
from receiver.messages import ConsoleMessage, RulesUpdate
from receiver.records import Account, EventRecord, IngestOutcome
from receiver.rules import periodic, schedules, testmode
from receiver.store import Store

if TYPE_CHECKING:
    from receiver.ownership import Cluster

_LOGGER = logging.getLogger(__name__)

# Longest the timer sleeps with nothing due (a change made elsewhere is
# seen within this, through the store's rules revision).
RULES_TICK_S = 1.0
# With several receivers, how late a deadline is evaluated (the settle of
# line supervision, receiver.ownership.SETTLE_S: a report heard elsewhere
# just before the deadline is committed by then).
CLUSTER_SETTLE_S = 3.0
# Receiver events kept for a retry at most (store busy): a day's deadlines
# of a large centre; beyond, the oldest are dropped with a warning (the
# next evaluation raises them again: their dedupe keys make that safe).
MAX_RETRY = 10_000


class RulesHost(Protocol):
    """What the loop needs of the receiver (receiver.app.Receiver)."""

    config: Config
    store: Store
    cluster: Cluster | None

    def account(self, number: str) -> Account | None: ...

    def make_record(self, event: dict) -> EventRecord: ...

    async def ingest_records(self, recs: list[EventRecord]) -> list[IngestOutcome]: ...

    def publish(self, message: ConsoleMessage, broadcast: bool = True) -> None: ...

    def spawn(self, coro, inflight: bool = False) -> asyncio.Task: ...


class RulesLoop:
    def __init__(self, rx: RulesHost):
        self.rx = rx
        self.schedules: dict = {}  # (account, partition) -> Schedule
        self.changes: dict = {}  # (account, partition) -> [TemporaryChange]
        self._heap: list = []  # (deadline, account, partition)
        self._due: dict = {}  # (account, partition) -> the deadline of its valid entry
        self.revision: int | None = None
        self.tests = periodic.PeriodicTests()
        self._owned: frozenset | None = None  # shards seen at the last tick
        self._retry: list[EventRecord] = []
        self._judging: set[asyncio.Task] = set()  # arm/disarm judgments under way
        # what this receiver raised (not duplicates), and what it found
        # raised already (another receiver, a restart): tests and logs
        self.raised = 0
        self.duplicates = 0

    @property
    def lookback_s(self) -> int:
        return self.rx.config.schedules_lookback_s

    @property
    def settle_s(self) -> float:
        return CLUSTER_SETTLE_S if self.rx.cluster is not None else 0.0

    def owns(self, account: str) -> bool:
        c = self.rx.cluster
        return c is None or c.owns(account)

    def _shards(self) -> frozenset | None:
        c = self.rx.cluster
        return None if c is None else frozenset(c.owned)

    # -- start and reload -------------------------------------------------------------------

    async def start(self, now: float) -> None:
        """At start: the schedules file (when configured), then everything
        from the store; deadlines missed while down are raised now."""
        path = self.rx.config.schedules_file
        if path:
            await self.import_file(path, now)
        await self.reload(now)
        self._owned = self._shards()
        await self.catch_up(now)
        await self.load_tests(now)

    async def import_file(self, path: str, now: float) -> int:
        """The schedules of a schedules.toml into the store (only what
        differs is written, audited as the file's); how many changed.  A
        file that cannot be used stops the start: a typo must not run a
        bank branch unscheduled unnoticed."""
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise schedules.ScheduleError("schedules file %s: %s" % (path, e)) from None
        by = "file %s" % path
        n = 0
        for s in schedules.load(doc):
            n += bool(await self.rx.store.set_schedule(s, by, now))
        _LOGGER.info("schedules file imported path=%s schedules=%d changed=%d", q(path),
                     len(schedules.load(doc)), n)
        return n

    async def reload(self, now: float) -> None:
        """Read schedules and temporary changes from the store and rebuild
        the deadline heap."""
        store = self.rx.store
        self.revision = await store.rules_revision()
        self.schedules = {(s.account, s.partition): s for s in await store.list_schedules()}
        self.changes = {}
        for c in await store.list_schedule_changes(since=now - self.lookback_s - 86400):
            self.changes.setdefault((c.account, c.partition), []).append(c)
        self._heap, self._due = [], {}
        for key in self.schedules:
            self._push(key, now)

    def _push(self, key, after: float) -> None:
        s = self.schedules.get(key)
        if s is None:
            self._due.pop(key, None)
            return
        t = schedules.next_check(s, self.changes.get(key, ()), after)
        if t is None:
            self._due.pop(key, None)
            return
        self._due[key] = t
        heapq.heappush(self._heap, (t, key[0], key[1]))

    def next_deadline(self) -> float | None:
        while self._heap and self._due.get((self._heap[0][1], self._heap[0][2])) != \
                self._heap[0][0]:
            heapq.heappop(self._heap)  # stale
        return None if not self._heap else self._heap[0][0] + self.settle_s

    # -- schedules ------------------------------------------------------------------------

    async def evaluate(self, account: str, partition: int, now: float) -> list[IngestOutcome]:
        """Raise what the partition's schedule owes by ``now`` over the
        lookback (the store keeps each once)."""
        s = self.schedules.get((account, partition))
        if s is None:
            return []
        start = now - self.lookback_s
        hist = await self.rx.store.open_close_history(account, partition, start)
        due = schedules.evaluate(s, self.changes.get((account, partition), ()), hist, start,
                                 now)
        return await self._raise([e.record_fields() for e in due])

    async def catch_up(self, now: float) -> None:
        """Evaluate every scheduled partition this receiver owns over the
        lookback (at start, and when it takes shards over): what was missed
        is raised now, stamped with its deadline; what was raised already is
        a duplicate.  The deadlines due by then are done with."""
        t_eval = now - self.settle_s
        for account, partition in sorted(self.schedules):
            if self.owns(account):
                await self.evaluate(account, partition, t_eval)
        while self._heap and self._heap[0][0] <= t_eval:
            t, account, partition = heapq.heappop(self._heap)
            if self._due.get((account, partition)) == t:
                self._push((account, partition), t)

    async def _deadlines(self, now: float) -> None:
        t_eval = now - self.settle_s
        while self._heap and self._heap[0][0] <= t_eval:
            t, account, partition = heapq.heappop(self._heap)
            key = (account, partition)
            if self._due.get(key) != t:
                continue  # stale
            if self.owns(account):
                await self.evaluate(account, partition, t_eval)
            self._push(key, t)

    def _judge_soon(self, rec: EventRecord) -> None:
        """An arm or disarm stored: judge its partitions now (by this
        receiver, whoever owns the account: an early opening must not wait)."""
        parts = [p for (a, p) in self.schedules if a == rec.account
                 and (rec.partition == 0 or p == rec.partition)]
        for p in parts:
            t = self.rx.spawn(self._judge(rec.account, p, rec.received_at))
            self._judging.add(t)
            t.add_done_callback(self._judging.discard)

    async def judged(self) -> None:
        """Return once the arm/disarm judgments under way are done (tests;
        a receiver stopping cancels them: the next evaluation redoes them)."""
        while self._judging:
            await asyncio.wait(set(self._judging))

    async def _judge(self, account: str, partition: int, at: float) -> None:
        try:
            await self.evaluate(account, partition, at)
        except Exception as e:  # noqa: BLE001 - the deadline evaluation raises it later
            _LOGGER.warning("schedule not judged account=%s partition=%d error=%s",
                            account, partition, q(str(e)))

    # -- what ingest tells the loop --------------------------------------------------------

    def on_stored(self, rec: EventRecord, out: IngestOutcome) -> None:
        """A new event was stored (not a duplicate)."""
        if schedules.arm_state(rec.code, rec.qualifier) is not None and rec.source == "panel":
            self._judge_soon(rec)
        if periodic.is_test_report(rec.code, rec.qualifier):
            ch = self.tests.report(rec.account, rec.code, rec.qualifier, rec.received_at)
            if ch is not None and self.owns(rec.account):
                self.rx.spawn(self._raise([self._periodic_fields(ch)]))

    # -- raising -------------------------------------------------------------------------------

    def _record(self, fields: dict) -> EventRecord:
        a = self.rx.account(fields["account"])
        return self.rx.make_record(dict(fields, protocol=a.protocol if a else "native"))

    async def _raise(self, fields: list[dict]) -> list[IngestOutcome]:
        if not fields:
            return []
        return await self._store([self._record(f) for f in fields])

    async def _store(self, recs: list[EventRecord], retry: bool = False) -> list[IngestOutcome]:
        """Store the receiver's events (counted and logged as raised, or as
        duplicates); the store busy: kept for the next tick."""
        try:
            outs = await self.rx.ingest_records(recs)
        except Busy as e:
            _LOGGER.warning("rules events not stored yet (retrying) count=%d reason=%s",
                            len(recs), q(e.reason))
            self._keep(recs + self._retry if retry else self._retry + recs)
            return []
        for r, o in zip(recs, outs):
            if o.duplicate:
                self.duplicates += 1
                continue
            self.raised += 1
            _LOGGER.info(
                "rules event raised account=%s code=%03d q=%d partition=%d source=%s text=%s",
                r.account, r.code, r.qualifier, r.partition, r.source, q(r.text or ""))
        return outs

    def _keep(self, recs: list[EventRecord]) -> None:
        """Keep events for the next tick, at most MAX_RETRY (the oldest go,
        said so: a schedule's next evaluation raises them again)."""
        if len(recs) > MAX_RETRY:
            _LOGGER.warning("rules events dropped (store busy too long) count=%d "
                            "oldest=%s", len(recs) - MAX_RETRY, q(recs[0].dedupe_key))
        self._retry = recs[-MAX_RETRY:]

    async def _retry_now(self) -> None:
        recs, self._retry = self._retry, []
        if recs:
            await self._store(recs, retry=True)

    # -- test placements -------------------------------------------------------------------

    async def end_due_tests(self, now: float) -> list[testmode.Placement]:
        """End the placements whose time is up (the store ends each once,
        audited); tell the consoles."""
        live = await self.rx.store.list_test_placements(live=True)
        ended = []
        for p in testmode.due_to_end(live, now):
            if p.id is None:
                continue  # (the store's placements all have their id)
            done = await self.rx.store.end_test_placement(p.id, "receiver", now)
            if done is not None:
                ended.append(done)
                _LOGGER.info("test placement ended account=%s id=%d what=%s", done.account,
                             done.id, q(done.words()))
                self.rx.publish(RulesUpdate("test.end", done.account,
                                            testmode.end_sentence(done), zone=done.zone))
        return ended

    # -- periodic tests -------------------------------------------------------------------------

    def _profile(self, a: Account):
        try:
            return periodic.test_profile(a.test_interval_s, a.test_grace_s or 0)
        except ValueError as e:
            _LOGGER.warning("periodic test not supervised account=%s error=%s", a.number,
                            q(str(e)))
            return None

    async def load_tests(self, now: float, accounts=None) -> None:
        """Supervise the periodic tests of the accounts this receiver owns
        (all, or those given), from the store's last test and latest 358."""
        store = self.rx.store
        if accounts is None:
            accounts = await store.list_accounts()
            for number in self.tests.accounts():
                if not self.owns(number):
                    self.tests.remove(number)  # its shard went elsewhere
        accts = [a for a in accounts if a.test_interval_s and self.owns(a.number)]
        if not accts:
            return
        numbers = [a.number for a in accts]
        last = await store.last_test_reports(numbers)
        failed = await store.periodic_failed(numbers)
        for a in accts:
            self.tests.remove(a.number)
            self.tests.set_account(a.number, self._profile(a), now, a.number in failed,
                                   last.get(a.number))

    def follow(self, accounts, removed, now: float) -> None:
        """The account table changed: periodic tests follow."""
        for number in removed:
            self.tests.remove(number)
        changed = []
        for a in accounts:
            prof = self._profile(a) if a.test_interval_s else None
            if prof is None:
                self.tests.remove(a.number)
            elif prof != self.tests.profile(a.number) and self.owns(a.number):
                changed.append(a)
        if changed:
            self.rx.spawn(self.load_tests(now, changed))

    def _periodic_fields(self, ch) -> dict:
        return periodic.record_fields(ch)

    async def _periodic(self, now: float) -> None:
        store = self.rx.store
        polled = [ch for ch in self.tests.poll(now) if self.owns(ch.account)]
        if polled:
            # another receiver may have heard the test: the store says
            last = await store.last_test_reports([ch.account for ch in polled])
            fields = []
            for ch in polled:
                t = last.get(ch.account)
                if t is not None and t > ch.last_heard:
                    self.tests.reset(ch.account, self.tests.profile(ch.account), now, t)
                else:
                    fields.append(self._periodic_fields(ch))
            await self._raise(fields)
        failed = self.tests.failed()
        if failed and self.rx.cluster is not None:
            last = await store.last_test_reports(failed)
            back = []
            for a in failed:
                t = last.get(a)
                since = self.tests.last_heard(a)
                if t is not None and since is not None and t > since:
                    ch = self.tests.report(a, 602, 1, t)
                    if ch is not None:
                        back.append(self._periodic_fields(ch))
            await self._raise(back)

    # -- the timer ------------------------------------------------------------------------------

    async def tick(self, now: float) -> None:
        """Everything due by ``now`` (the timer calls this; tests too)."""
        await self._retry_now()
        rev = await self.rx.store.rules_revision()
        if rev != self.revision:
            await self.reload(now)
        shards = self._shards()
        if shards != self._owned:
            gained = shards is None or self._owned is None or bool(shards - self._owned)
            self._owned = shards
            if gained:
                await self.catch_up(now)
            await self.load_tests(now)
        await self._deadlines(now)
        await self.end_due_tests(now)
        await self._periodic(now)

    async def run(self) -> None:
        while True:
            try:
                await self.tick(time.time())
            except Exception:  # noqa: BLE001 - keep the rules running whatever happens
                _LOGGER.exception("rules tick failed")
            nd = [t for t in (self.next_deadline(), self.tests.next_deadline()) if t]
            delay = RULES_TICK_S if not nd else min(RULES_TICK_S,
                                                    max(0.01, min(nd) - time.time()))
            await asyncio.sleep(delay)

