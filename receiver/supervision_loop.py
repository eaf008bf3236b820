"""The receiver's side of line supervision: feeds the sans-I/O
:class:`receiver.supervision.Supervisor` what panels are heard, turns what
it reports (a path silent past its timeout, a path back) into stored 350
events and live updates, and keeps each account's profile in step with
the account table.

    loop = SupervisionLoop(rx)
    loop.load(accounts, failed, now)    # at start: profiles, paths failed before
    loop.heard("1234", 2, now)          # any accepted frame on path 2
    await loop.run()                    # the timer task (loop.tick(now) in tests)

Invariants:

- A failure is stored once even when two receivers both raise it (a
  takeover race): its dedupe key is the hearing it follows.
- A change that cannot be stored now (the store is busy) is retried on the
  next tick, never dropped; the timer then ticks at ``SUPERVISION_TICK_S``.
- A whole-city outage is written in chunks of ``SUPERVISION_BATCH``.
- With several receivers (receiver.ownership), what this receiver's heap
  reports is checked against what the others heard before it is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

from receiver.accounts import AccountChanges
from receiver.config import Config
from receiver.link_policy import Busy
from receiver.logfmt import q
from receiver.messages import ConsoleMessage, SupervisionChange
from receiver.metrics import Metrics
from receiver.records import Account, EventRecord, IngestOutcome
from receiver.supervision import (CODE_COMM_TROUBLE, Change, Profile, Supervisor,
                                  account_profile)

if TYPE_CHECKING:
    from receiver.ownership import Cluster

_LOGGER = logging.getLogger(__name__)

# Longest the supervision timer sleeps even with nothing due (a new account
# may bring an earlier deadline).
SUPERVISION_TICK_S = 1.0
# Supervision changes turned into events per tick: a whole-city outage
# (50,000 paths failing at once) is written in bounded chunks.
SUPERVISION_BATCH = 2_000


class SupervisionHost(Protocol):
    """What the loop needs of the receiver."""

    config: Config  # the default [supervision] profile
    metrics: Metrics
    supervisor: Supervisor  # the cluster's, with several receivers
    cluster: Cluster | None

    def account(self, number: str) -> Account | None: ...

    def make_record(self, event: dict) -> EventRecord: ...

    async def ingest_record(self, rec: EventRecord) -> IngestOutcome: ...

    def publish(self, message: ConsoleMessage, broadcast: bool = True) -> None: ...

    def spawn(self, coro, inflight: bool = False) -> asyncio.Task: ...


class SupervisionLoop:
    def __init__(self, rx: SupervisionHost):
        self.rx = rx
        self._retry: list[Change] = []  # changes not stored yet (store busy)

    # -- profiles -----------------------------------------------------------------

    def profile(self, account: Account) -> Profile | None:
        return account_profile(account, self.rx.config.supervision)

    def load(self, accounts, failed: list[tuple[str, int]], now: float) -> None:
        """At start: every account's profile, with the paths the store says
        were failed when the receiver last stopped."""
        by_acct: dict[str, set] = {}
        for acct, path in failed:
            by_acct.setdefault(acct, set()).add(path)
        for a in accounts:
            self.rx.supervisor.set_profile(a.number, self.profile(a), now,
                                           failed_paths=by_acct.get(a.number, ()))

    def follow(self, changes: AccountChanges, now: float) -> None:
        """The account table changed."""
        sup = self.rx.supervisor
        for number in changes.removed:
            sup.remove(number)
        for a in changes.accounts:
            sup.set_profile(a.number, self.profile(a), now)

    # -- hearings and changes ------------------------------------------------------

    def heard(self, account: str, path: int, now: float) -> None:
        """A panel was heard on ``path``: its timer restarts; a path that
        comes back is stored as a restore."""
        change = self.rx.supervisor.heard(account, path, now)
        if change is not None:
            self.rx.spawn(self.store(change))

    def record(self, ch: Change) -> EventRecord:
        """The 350 event of a change."""
        a = self.rx.account(ch.account)
        return self.rx.make_record({
            "account": ch.account, "protocol": a.protocol if a else "native",
            # a failure is keyed by the hearing it follows: two receivers
            # that both raise it (a takeover race) store it once
            "dedupe_key": "supervision:%d:%d:%d" % (
                ch.path, ch.qualifier, int((ch.last_heard if ch.failed else ch.at) * 1000)),
            "qualifier": ch.qualifier, "code": CODE_COMM_TROUBLE, "partition": 0,
            "zone": ch.path, "text": ch.describe()[:64], "event_time": ch.at,
            "received_at": ch.at, "path": ch.path, "peer": "receiver",
            "source": "supervision"})

    async def store(self, ch: Change) -> bool:
        """Store a change and tell the consoles; False: the store was busy
        (kept for the next tick)."""
        rx = self.rx
        kind = "failure" if ch.failed else "restore"
        try:
            await rx.ingest_record(self.record(ch))
        except Busy as e:
            _LOGGER.warning("supervision event not stored yet (retrying) change=%s "
                            "account=%s path=%d reason=%s", kind, ch.account, ch.path,
                            q(e.reason))
            self._retry.append(ch)
            return False
        rx.metrics.supervision.labels(str(ch.path), kind).inc()
        (_LOGGER.warning if ch.failed else _LOGGER.info)(
            "supervision %s account=%s path=%d silent_s=%d timeout_s=%d", kind, ch.account,
            ch.path, int(ch.at - ch.last_heard), ch.timeout_s)
        rx.publish(SupervisionChange.of(ch))
        return True

    async def tick(self, now: float) -> list[Change]:
        """Poll the supervisor at ``now`` and store what it reports (the
        timer task calls this; tests may too)."""
        retry, self._retry = self._retry, []
        polled = self.rx.supervisor.poll(now, limit=SUPERVISION_BATCH)
        if self.rx.cluster is not None:
            # candidates: checked against what the other receivers heard
            polled = await self.rx.cluster.confirm(polled, now)
        changes = retry + polled
        if changes:
            await asyncio.gather(*(self.store(c) for c in changes))
        return changes

    async def run(self) -> None:
        """The timer task: tick at the next deadline, at least every
        SUPERVISION_TICK_S."""
        while True:
            now = time.time()
            try:
                await self.tick(now)
            except Exception:  # noqa: BLE001 - keep supervising whatever happens
                _LOGGER.exception("supervision tick failed")
            nd = self.rx.supervisor.next_deadline()
            delay = SUPERVISION_TICK_S if nd is None else min(SUPERVISION_TICK_S,
                                                             max(0.01, nd - time.time()))
            if self._retry:
                delay = SUPERVISION_TICK_S
            await asyncio.sleep(delay)
