"""The receiver's housekeeping: once a second, the listeners sweep their
connections (idle and unauthenticated timeouts) and the gauges are
refreshed; less often the account table is re-read, replay state advanced
by heartbeats is written back, and old security events are pruned.

    task = asyncio.create_task(Housekeeping(rx).run())

Invariants: nothing here raises out of the loop (a failing store is
logged and tried again next time); each job runs at its own period,
whatever the others cost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from receiver import alarms as _alarms
from receiver import retention
from receiver.forwarder import Forwarder
from receiver.listener_base import Listener
from receiver.metrics import Metrics
from receiver.store import Store
from receiver.supervision import Supervisor

_LOGGER = logging.getLogger(__name__)

# Housekeeping period: connection sweeps (idle / unauthenticated timeouts)
# and gauges.  Timeouts are tens of seconds, so 1 s granularity is ample.
HOUSEKEEPING_S = 1.0
# How often the accounts table is checked for changes made by another
# process (the CLI adding an account while the server runs).
ACCOUNT_RELOAD_S = 5.0
# How often replay state (highest sequence, our tx sequence) advanced by
# heartbeats is written back.  Events carry theirs in their own commit; a
# crash loses at most this much heartbeat progress, which only widens the
# replay window by a few heartbeats (still inside the +-60 s time window).
REPLAY_FLUSH_S = 10.0


class HousekeepingHost(Protocol):
    """What housekeeping reads and runs of the receiver."""

    store: Store
    metrics: Metrics
    supervisor: Supervisor
    listeners: list[Listener]
    forwarders: dict[str, Forwarder]

    async def reload_accounts(self) -> int: ...

    async def flush_replay_state(self) -> None: ...


def refresh_gauges(rx: HousekeepingHost) -> None:
    """Gauges that mirror live state (queue depth, failed paths,
    connections): each second and on scrape."""
    m = rx.metrics
    m.store_queue.set(rx.store.pending_writes)
    m.store_healthy.set(1 if rx.store.healthy else 0)
    m.supervision_failed.set(len(rx.supervisor.failed()))
    for lst in rx.listeners:
        m.connections.labels(lst.kind).set(lst.connection_count())


async def refresh_store_gauges(rx: HousekeepingHost) -> None:
    """Gauges that need a query (outbox depth, open alarms): on scrape."""
    for name in rx.forwarders:
        rx.metrics.outbox_depth.labels(name).set(0)
    for name, n in (await rx.store.outbox_depth()).items():
        rx.metrics.outbox_depth.labels(name).set(n)
    counts = await rx.store.count_alarms((_alarms.PENDING, _alarms.ACKNOWLEDGED))
    for state, n in counts.items():
        rx.metrics.alarms_open.labels(state).set(n)


async def prune_security_events(store: Store, now: float) -> int:
    """Keep security events within receiver.retention's bounds."""
    return await retention.prune(retention.SECURITY_EVENTS, store.prune_security_events, now)


class Housekeeping:
    def __init__(self, rx: HousekeepingHost):
        self.rx = rx

    async def run(self) -> None:
        rx = self.rx
        last_reload = last_flush = last_prune = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                now = time.time()
                for lst in rx.listeners:
                    lst.sweep(now)
                mono = time.monotonic()
                if mono - last_reload >= ACCOUNT_RELOAD_S:
                    last_reload = mono
                    await rx.reload_accounts()
                if mono - last_flush >= REPLAY_FLUSH_S:
                    last_flush = mono
                    await rx.flush_replay_state()
                if mono - last_prune >= retention.PRUNE_EVERY_S:
                    last_prune = mono
                    await prune_security_events(rx.store, now)
                refresh_gauges(rx)
            except Exception as e:  # noqa: BLE001 - e.g. the store failing; keep going
                _LOGGER.warning("housekeeping error=%s", e)
