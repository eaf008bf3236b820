"""The escalation runner: the receiver's task that fires what
receiver.workflow.escalation says is due (an alarm not acknowledged in
time, one not resolved in time, a wait step whose minutes are over).

    loop = EscalationLoop(rx)
    await loop.run()            # the task (loop.tick(now) in tests)
    loop.wake()                 # a new alarm: its deadline may be the next

Each round reads the open alarms' timer columns and the started wait steps
from the store (the open queue, not the history), asks the pure scheduler
what is due, and fires each with the compare-and-set of
:func:`receiver.workflow_db.stamp`: its stamp, its audit row and, for an
alarm not acknowledged in time, a row to ``[workflow] notify_output`` (a
pager, a supervisor's phone gateway), in one transaction.  Only when the
stamp matched does it publish the escalation (every console alerts;
supervisors' consoles sound).

Invariants:

- **Nothing in memory.**  Deadlines are alarm columns fixed at ingest and
  whether an escalation fired is a stamp column, so a restart neither
  loses nor repeats one; an escalation due while the receiver was down
  fires at the first round after it is back (unless its condition ended:
  an alarm acknowledged meanwhile does not alert).
- **One receiver fires each.**  On PostgreSQL the receiver that supervises
  the alarm's account (its shard lease, receiver.ownership) runs its
  escalations, and the stamp's compare-and-set makes a race between two
  (a lease moving) fire once.  A shard whose receiver died is taken over
  within the lease time, and its due escalations fire then.
- **Bounded lateness.**  The task sleeps until the next deadline it knows,
  at most :data:`ESCALATION_TICK_S` (an alarm opened on another receiver,
  a plans file loaded elsewhere).  An alarm opened here brings its first
  deadline forward (``wake(due_at)``) without a round: a round reads every
  open alarm, and a burst of thousands of alarms (a city-wide power cut)
  must not read the open queue once per alarm.  ``wake()`` without a time
  looks at once (a wait step started, a lease taken over).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Protocol

from receiver import workflow_db
from receiver.config import Config
from receiver.messages import ConsoleMessage, Escalated
from receiver.records import Account
from receiver.store import Store
from receiver.workflow import escalation as _escalation
from receiver.workflow_service import Workflow, alarm_sentence

if TYPE_CHECKING:
    from receiver.forwarder import Forwarder
    from receiver.ownership import Cluster

_LOGGER = logging.getLogger(__name__)

# Longest the runner sleeps with nothing due that it knows of: bounds how
# late it sees an alarm opened on another receiver, or a wait step started
# in the CLI, and how soon it follows a plans file loaded elsewhere.
ESCALATION_TICK_S = 5.0
# Escalations fired per round at most (a backlog after an outage goes in
# bounded transactions; the next round comes at once).
ESCALATION_BATCH = 200


class EscalationHost(Protocol):
    """What the runner needs of the receiver."""

    config: Config
    store: Store
    workflow: Workflow
    cluster: Cluster | None
    forwarders: dict[str, Forwarder]

    def account(self, number: str) -> Account | None: ...

    def publish(self, message: ConsoleMessage, broadcast: bool = True) -> None: ...


class RoundSchedule:
    """When the next round runs (a core: times in, decisions out).  A
    round reads every open alarm, so an alarm opened here only brings the
    next round forward to its own first deadline; ``wake()`` without a
    time asks for a round at once.  Wakes that come while a round runs
    count for the next (the round's reading may predate their commit)."""

    def __init__(self):
        self.look_now = True
        self.next_at = 0.0  # from the last round's reading
        self.early = math.inf  # the earliest deadline woken with since

    def wake(self, due_at: float | None = None) -> bool:
        """Whether the sleeper must re-arm (the next round moved)."""
        if due_at is None:
            self.look_now = True
        elif due_at < self.early:
            self.early = due_at
        else:
            return False
        return True

    def due(self, now: float) -> bool:
        return self.look_now or now >= min(self.next_at, self.early)

    def start(self) -> None:
        self.look_now, self.early = False, math.inf

    def ran(self, now: float, nxt: float | None) -> None:
        """A round at ``now`` ended; ``nxt``: the next deadline it saw."""
        self.next_at = now + ESCALATION_TICK_S if nxt is None else min(
            now + ESCALATION_TICK_S, nxt)

    def sleep(self, now: float) -> float | None:
        """Seconds to sleep (None: a round is due now)."""
        if self.due(now):
            return None
        return min(self.next_at, self.early) - now


class EscalationLoop:
    def __init__(self, rx: EscalationHost):
        self.rx = rx
        self._wake = asyncio.Event()
        self.schedule = RoundSchedule()
        self.fired = 0  # escalations this receiver fired (tests, logs)
        self.rounds = 0  # rounds run (each reads the open alarms' timers)

    def wake(self, due_at: float | None = None) -> None:
        """Look again: by ``due_at`` (an alarm opened here whose first
        deadline that is) or, without a time, at once."""
        if self.schedule.wake(due_at):
            self._wake.set()

    def _ours(self, account: str | None) -> bool:
        cluster = self.rx.cluster
        return cluster is None or (account is not None and cluster.owns(account))

    def _notify(self, e: _escalation.Escalation, a_sentence: str, sentence: str,
                account: str, now: float):
        output = self.rx.config.notify_output
        if output is None or e.kind != _escalation.ACK:
            return None
        return (output, {"type": "escalation", "escalation": e.kind, "alarm_id": e.alarm_id,
                         "account": account, "alarm": a_sentence, "text": sentence,
                         "at": now})

    async def tick(self, now: float) -> float | None:
        """Fire what is due at ``now``; when to look next (None: nothing
        known is pending)."""
        t = await self.rx.store.read(workflow_db.timers)
        due = [e for e in _escalation.due(t.alarms, t.waits, now)
               if self._ours(t.accounts.get(e.alarm_id))]
        for e in due[:ESCALATION_BATCH]:
            account = t.accounts.get(e.alarm_id, "")
            a = await self.rx.store.get_alarm(e.alarm_id)
            if a is None:
                continue
            acct = self.rx.account(account)
            site = acct.site_name if acct else ""
            what = alarm_sentence(a, site)
            sentence = e.audit(now).sentence()
            notify = self._notify(e, what, sentence, account, now)
            fired = await self.rx.store.transact(
                lambda tx, e=e, notify=notify: workflow_db.stamp(tx, e, now, notify))
            if not fired:
                continue  # another receiver did, or the condition ended meanwhile
            self.fired += 1
            _LOGGER.warning("alarm escalated account=%s alarm_id=%d escalation=%s %s",
                            account, e.alarm_id, e.kind, sentence)
            self.rx.publish(Escalated(e.alarm_id, account, e.kind, sentence, a.event_class,
                                      a.description, site, now))
            if notify is not None:
                f = self.rx.forwarders.get(notify[0])
                if f is not None:
                    f.wake()
        if len(due) > ESCALATION_BATCH:
            return now
        return _escalation.next_due(t.alarms, t.waits, now)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now = time.time()
            if self.schedule.due(now):
                self.schedule.start()
                nxt = None
                try:
                    await self.rx.workflow.refresh()
                    self.rounds += 1
                    nxt = await self.tick(now)
                except Exception as e:  # noqa: BLE001 - the store may be down: next round
                    _LOGGER.warning("escalation round failed (retrying) error=%s", e)
                self.schedule.ran(now, nxt)
            delay = self.schedule.sleep(time.time())
            if delay is None:
                continue  # woken during the round: look again now
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancel that comes as the event is set (stop() cancels this task
            # while an alarm wakes it), and the loop then ran on forever
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
