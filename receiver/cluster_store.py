"""What several receivers on one shared store need from it: the
:class:`ClusterStore` interface (receiver.ownership is its only user).

A shared store (``Store.shared``; PostgreSQL: receiver.pg_cluster) hands one
out with ``Store.cluster_store(instance)``.  It owns the cluster's SQL and
connections; the rules (who supervises what, when a failure is confirmed,
how takeover starts) stay in receiver.ownership.  What an implementation
must guarantee:

- :meth:`ClusterStore.lease_round` is one transaction: renew this
  receiver's heartbeat and leases, take every expired lease and free ones up
  to the fair share (:func:`fair_share`), and give back what it holds beyond
  the fair share when another live receiver holds less.  Lease expiry runs
  on the database's clock, so receivers' clocks do not decide who owns what.
- Hearings (``record_heard``) only move forward (the latest time wins,
  whoever wrote it); a baseline (``insert_baselines``) never replaces a
  recorded hearing.
- ``notify`` and ``listen`` are best effort (live updates for consoles).
- A connection that failed is dropped and made again on the next call: a
  server that failed over is reached again without a restart.

A leaf module: it imports nothing of the receiver's.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Callable


def fair_share(shards: int, live: int) -> int:
    """Shards each of ``live`` receivers should hold (rounded up, so every
    shard has an owner)."""
    return math.ceil(shards / max(1, live))


@dataclass
class LeaseRound:
    """What one lease round did: ``live`` receivers seen, the shards this
    receiver renewed, claimed (with their previous owner, None when it was
    free) and released to balance."""

    live: int
    renewed: set = field(default_factory=set)
    claimed: list = field(default_factory=list)  # [(shard, previous owner or None)]
    released: set = field(default_factory=set)

    @property
    def held(self) -> set:
        """The shards held after the round."""
        return (self.renewed | {s for s, _ in self.claimed}) - self.released

    @property
    def previous_owners(self) -> list[str]:
        return sorted({p for _, p in self.claimed if p})


class ClusterStore(abc.ABC):
    """The shared tables of receivers on one store (see the module doc)."""

    instance: str = ""  # who we are: leases' owner, hearings' heard_by
    shards: int = 1  # supervision shards, fixed in the database

    @abc.abstractmethod
    async def lease_round(self, host: str, pid: int, started_at: float,
                          ttl_s: float) -> LeaseRound:
        """Renew, claim and balance leases of ``ttl_s`` seconds (one
        transaction)."""

    @abc.abstractmethod
    async def release(self) -> None:
        """Hand every lease back and leave the receivers table (stopping)."""

    @abc.abstractmethod
    async def record_heard(self, rows: list[tuple[str, int, float]]) -> None:
        """[(account, path, unix time)] heard by this receiver, committed
        when this returns; never lowers a recorded time."""

    @abc.abstractmethod
    async def insert_baselines(self, rows: list[tuple[str, int, float]]) -> None:
        """[(account, path, unix time)] whose supervision started then,
        where nothing is recorded yet."""

    @abc.abstractmethod
    async def fetch_heard(self, keys: list[tuple[str, int]]) -> dict:
        """{(account, path): last heard} of ``keys`` that have a record."""

    @abc.abstractmethod
    async def supervision_failures(self, accounts: list[str]) -> dict:
        """{(account, path): when raised} of paths of ``accounts`` whose
        latest supervision event is a failure."""

    @abc.abstractmethod
    async def notify(self, channel: str, payloads: list[str]) -> None:
        """Send ``payloads`` to every receiver listening on ``channel``."""

    @abc.abstractmethod
    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` for each notification on ``channel``
        (including our own) until the connection is lost."""

    @property
    @abc.abstractmethod
    def listening(self) -> bool:
        """Is the listening connection still up?"""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the cluster's own connections."""
