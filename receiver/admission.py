"""Who may hold a stream connection to the receiver: per-source limits, one
connection budget for every stream listener, reserves (sans-I/O).

One :class:`Admission` is shared by the native TCP and the DC-09 TCP
listeners (``rx.admission``).  A listener asks :meth:`Admission.admit` in
``connection_made`` and closes what it is told to; it reports
:meth:`Admission.authenticated` when a connection earns its place and
:meth:`Admission.released` when it is gone.  The admission decides from the
peer address and its own books only: no socket, no clock.

A connection is *unauthenticated* until it has proved it is a panel (native:
a frame accepted under the account's key; DC-09: an encrypted message, or
an event from a keyless account).  Until then it is cheap to open and
costly to hold, so the limits are about unauthenticated connections:

1. a source address holds at most ``per_address`` of them, a source prefix
   (``prefix_v4`` bits of an IPv4 address, ``prefix_v6`` of an IPv6 one;
   an IPv4-mapped IPv6 address counts as IPv4) at most ``per_prefix``:
   beyond, the new connection is refused;
2. all stream listeners together hold at most ``max_unauthenticated`` of
   them and at most ``max_connections`` connections of any kind; when a new
   connection would pass either cap, the oldest unauthenticated connection
   of the heaviest prefix is closed to make room, unless the newcomer's
   prefix is itself the heaviest (then the newcomer is refused): a flood
   from one network closes its own connections, not the panels';
3. addresses that have authenticated before (remembered, ``KNOWN_SOURCES``
   of them) may use each cap to the last slot; others stop ``reserve`` (a
   fraction of each cap) short of it, so panels coming back after an outage
   find room even while strangers fill the rest.

Invariants: the books count exactly the connections admitted and not yet
released (a connection closed to make room is taken off at once, before its
socket is gone); no count passes its cap; every decision is O(1).

:func:`connection_budget` turns the process's descriptor limit into the
connection cap: descriptors are one budget for listeners, console, store
and outputs, and ``reserved_descriptors`` of them are never given to panel
connections.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections import OrderedDict
from typing import Any

_LOGGER = logging.getLogger(__name__)

# Events one link may have waiting for a commit, by kind of link.  A panel
# on its own TCP connection is in lockstep (one at a time); more is a
# misbehaving peer.
MAX_INFLIGHT_TCP = 16
# A serial trunk or a DC-09 concentrator multiplexes a few dozen panels on
# one link and pipelines their events.
MAX_INFLIGHT_TRUNK = 64
# UDP has no link to bound: each datagram stands alone, and the store queue
# (max_pending_writes) bounds what waits.
MAX_INFLIGHT_DATAGRAM = 1 << 30

# Addresses remembered as having authenticated before (LRU).  One per panel
# site or NAT: 65,536 covers the 50,000 accounts a receiver is sized for,
# ~100 bytes each.
KNOWN_SOURCES = 65_536


def source_of(host: str, prefix_v4: int, prefix_v6: int) -> tuple[str, str]:
    """(address, prefix) of a peer host as the books count them."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host, host  # not an IP address (a Unix socket, a test double)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = prefix_v4 if ip.version == 4 else prefix_v6
    net = ipaddress.ip_network((ip, bits), strict=False)
    return str(ip), str(net)


class _CountIndex:
    """Counts per key with the largest found in O(1) (keys bucketed by
    count; a count moves by one at a time, so the maximum does too)."""

    def __init__(self):
        self.count: dict = {}
        self._bucket: dict[int, set] = {}
        self._max = 0

    def _move(self, key, old: int, new: int) -> None:
        if old:
            b = self._bucket[old]
            b.discard(key)
            if not b:
                del self._bucket[old]
        if new:
            self._bucket.setdefault(new, set()).add(key)
            self.count[key] = new
        else:
            del self.count[key]
        if new > self._max:
            self._max = new
        while self._max and self._max not in self._bucket:
            self._max -= 1

    def inc(self, key) -> None:
        n = self.count.get(key, 0)
        self._move(key, n, n + 1)

    def dec(self, key) -> None:
        n = self.count[key]
        self._move(key, n, n - 1)

    def heaviest(self):
        """(key, count) with the largest count, or (None, 0)."""
        if not self._max:
            return None, 0
        return next(iter(self._bucket[self._max])), self._max


class _Entry:
    __slots__ = ("address", "prefix", "authenticated")

    def __init__(self, address, prefix):
        self.address = address
        self.prefix = prefix
        self.authenticated = False


class Admission:
    def __init__(self, max_connections: int, max_unauthenticated: int,
                 per_address: int, per_prefix: int, prefix_v4: int = 24,
                 prefix_v6: int = 48, reserve: float = 0.1):
        self.max_connections = max_connections
        self.max_unauthenticated = max_unauthenticated
        self.per_address = per_address
        self.per_prefix = per_prefix
        self.prefix_v4 = prefix_v4
        self.prefix_v6 = prefix_v6
        self.reserve = reserve
        self._entries: dict = {}  # connection -> _Entry
        self._unauth: dict = {}  # prefix -> OrderedDict(connection -> None), oldest first
        self._by_prefix = _CountIndex()  # unauthenticated per prefix
        self._by_address: dict = {}  # unauthenticated per address
        self._known: OrderedDict = OrderedDict()
        self.unauthenticated = 0

    @classmethod
    def from_config(cls, cfg, max_connections: int | None = None) -> "Admission":
        return cls(cfg.max_connections if max_connections is None else max_connections,
                   cfg.max_unauthenticated, cfg.max_unauthenticated_per_address,
                   cfg.max_unauthenticated_per_prefix, cfg.prefix_v4, cfg.prefix_v6,
                   cfg.known_source_reserve)

    @property
    def connections(self) -> int:
        return len(self._entries)

    def known(self, host: str) -> bool:
        return source_of(host, self.prefix_v4, self.prefix_v6)[0] in self._known

    def _cap(self, cap: int, known: bool) -> int:
        return cap if known else max(1, cap - int(cap * self.reserve))

    def admit(self, conn, host: str) -> tuple[str | None, Any]:
        """May ``conn`` (a new connection from ``host``) stay?  Returns
        (why refused, the metrics label, or None; a connection to close to
        make room, or None).
        The connection to close is already off the books."""
        address, prefix = source_of(host, self.prefix_v4, self.prefix_v6)
        if self._by_address.get(address, 0) >= self.per_address:
            return "per_address", None
        if self._by_prefix.count.get(prefix, 0) >= self.per_prefix:
            return "per_prefix", None
        known = address in self._known
        full = None
        if len(self._entries) >= self._cap(self.max_connections, known):
            full = "max_connections"
        elif self.unauthenticated >= self._cap(self.max_unauthenticated, known):
            full = "max_unauthenticated"
        victim = None
        if full is not None:
            heavy, n = self._by_prefix.heaviest()
            if heavy is None or heavy == prefix or n <= self._by_prefix.count.get(prefix, 0):
                return full, None
            victim = next(iter(self._unauth[heavy]))
            self.released(victim)
        e = _Entry(address, prefix)
        self._entries[conn] = e
        self._unauth.setdefault(prefix, OrderedDict())[conn] = None
        self._by_prefix.inc(prefix)
        self._by_address[address] = self._by_address.get(address, 0) + 1
        self.unauthenticated += 1
        return None, victim

    def _off_unauth(self, conn, e: _Entry) -> None:
        q = self._unauth[e.prefix]
        del q[conn]
        if not q:
            del self._unauth[e.prefix]
        self._by_prefix.dec(e.prefix)
        n = self._by_address[e.address] - 1
        if n:
            self._by_address[e.address] = n
        else:
            del self._by_address[e.address]
        self.unauthenticated -= 1

    def authenticated(self, conn) -> None:
        """``conn`` proved it is a panel: it leaves the unauthenticated
        books, and its address is remembered as known."""
        e = self._entries.get(conn)
        if e is None or e.authenticated:
            return
        self._off_unauth(conn, e)
        e.authenticated = True
        self._known[e.address] = None
        self._known.move_to_end(e.address)
        if len(self._known) > KNOWN_SOURCES:
            self._known.popitem(last=False)

    def released(self, conn) -> None:
        """``conn`` is closed (or being closed); idempotent."""
        e = self._entries.pop(conn, None)
        if e is not None and not e.authenticated:
            self._off_unauth(conn, e)


def open_descriptors() -> int | None:
    """Descriptors this process has open now (Linux, /proc), or None."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listing's own
    except OSError:
        return None


def descriptor_limit() -> int | None:
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_budget(max_connections: int, reserved_descriptors: int,
                      limit: int | None = None, in_use: int | None = None) -> int:
    """The stream connections this process may hold: ``max_connections``,
    or less when the descriptor limit does not leave ``reserved_descriptors``
    (console, metrics, store, outputs, logs) beside what is open now
    (listening sockets, store files) and the connections."""
    limit = descriptor_limit() if limit is None else limit
    in_use = open_descriptors() if in_use is None else in_use
    if limit is None:
        return max_connections
    return max(1, min(max_connections, limit - (in_use or 0) - reserved_descriptors))
