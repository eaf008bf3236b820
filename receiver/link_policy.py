"""What every listener does with a frame it does not simply ACK: one policy
for the native (``receiver.listeners``) and the SIA DC-09
(``receiver.dc09_listener``) listeners.

    policy = LinkPolicy(metrics, busy_reason, store_behind, record)
    reason = policy.refusal(link)        # NAK busy now?  (None: go ahead)
    policy.nak_busy(account, seq, link, reason)   # counted, logged; caller sends
    policy.rejected(link, reason, account, seq, detail, security=..., nak=...)
    policy.security_event(account, seq, reason, detail, link)

It decides, from what it is given (no socket, no store, no task):

- **when to NAK busy**: the receiver is busy (the store is behind or
  failing, or the receiver is stopping: ``busy_reason()``) or the link has
  ``max_inflight`` events waiting for their commit;
- **how a rejection is told**: counted in ``frames_total{result=rejected}``
  and, with a NAK, ``naks_total{reason}``; a security rejection (bad MAC,
  replay, unknown account, wrong DC-09 key) becomes a security event, any
  other a debug line;
- **what a security event costs**: counted always; logged at most
  :data:`LOG_RATE_PER_S` lines a second; stored at most
  :data:`SECURITY_STORE_PER_S` a second and never while the store is
  behind with events (``store_behind()``): a flood of forged frames must
  not grow the database without bound or crowd out real events; the link
  is closed after :data:`MAX_SECURITY_REJECTS` of them.

The protocol cores build the NAK bytes (native ``NAK busy``, DC-09 ``NAK``
with the receiver's time); the listeners send them.  ``Busy`` is what the
receiver's ingest raises when an event cannot be stored now: every
listener answers it with a NAK, and the panel retries.

A leaf module: it imports nothing of the receiver's but the rate limit
and the log quoting.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from receiver.logfmt import q
from receiver.ratelimit import RateLimit

_LOGGER = logging.getLogger(__name__)

# Security rejections after which a stream connection is closed (a panel
# with a wrong key gets three chances, a scanner does not get to keep going).
MAX_SECURITY_REJECTS = 3
# At most this many NAK-busy / security log lines per second (the rest are
# counted in metrics); a flood must not fill the disk with logs.
LOG_RATE_PER_S = 5.0
# Security events stored per second at most (burst 10x).  An attack is
# visible from its first records and the counters; a UDP flood of forged
# frames must not grow the database without bound or crowd out events.
SECURITY_STORE_PER_S = 50.0


class Busy(Exception):
    """The receiver cannot take this event now; tell the sender to retry
    (native: NAK busy; DC-09: NAK).  ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Link(Protocol):
    """What the policy reads of a link (a connection, a serial line, the
    sender of one datagram)."""

    kind: str  # "tcp", "udp", "serial", "dc09-tcp", "dc09-udp": metrics label
    peer: str  # "tcp:10.0.0.5:40112": logs and security events
    inflight: int  # events waiting for their commit
    max_inflight: int
    security_rejects: int

    def close(self, why: str) -> None: ...


@dataclass(frozen=True)
class SecurityReport:
    """A possible attack to be stored (``Store.record_security_event``)."""

    at: float
    account: str | None
    seq: int | None
    reason: str  # bad_mac, replay, unknown_account, bad_key, ...
    detail: str
    peer: str
    transport: str  # the link's kind


class LinkPolicy:
    """Busy, rejection and security-event policy shared by every listener.

    ``busy_reason()`` says why the receiver takes no event now (None: it
    does); ``store_behind()`` whether the store is too far behind to be
    given security events; ``record(event)`` stores one (the receiver runs
    it as a task).  ``clock`` gives the time a security event is stamped
    with."""

    def __init__(self, metrics, busy_reason: Callable[[], str | None],
                 store_behind: Callable[[], bool], record: Callable[[SecurityReport], None],
                 clock: Callable[[], float] = time.time):
        self.metrics = metrics
        self._busy_reason = busy_reason
        self._store_behind = store_behind
        self._record = record
        self._clock = clock
        self.busy_log = RateLimit(LOG_RATE_PER_S)
        self.security_log = RateLimit(LOG_RATE_PER_S)
        self.security_store = RateLimit(SECURITY_STORE_PER_S, SECURITY_STORE_PER_S * 10)

    def accepted(self, link: Link) -> None:
        """A frame from ``link`` passed its protocol's checks."""
        m = self.metrics
        m.child(m.frames, link.kind, "accepted").inc()

    def refusal(self, link: Link) -> str | None:
        """Why an event from ``link`` must be NAKed busy now, or None."""
        reason = self._busy_reason()
        if reason is None and link.inflight >= link.max_inflight:
            reason = "connection has %d events in flight" % link.inflight
        return reason

    def nak_busy(self, account, seq: str, link: Link, reason: str) -> None:
        """Count and log (rate-limited) a NAK busy; the caller sends it.
        ``seq`` as the protocol writes it."""
        self.metrics.naks.labels("busy").inc()
        if self.busy_log.allow():
            _LOGGER.warning("NAK busy account=%s seq=%s peer=%s reason=%s", account, seq,
                            link.peer, q(reason))

    def rejected(self, link: Link, reason: str, account, seq, detail: str, *,
                 security: bool, nak: bool, result: str = "rejected") -> None:
        """A frame refused (``reason``: the metrics label); ``nak``: the
        caller answers it with a NAK; ``security``: it may be an attack.
        ``result`` is the frames_total label ("duh": understood, not
        handled)."""
        self.metrics.frames.labels(link.kind, result).inc()
        if nak:
            self.metrics.naks.labels(reason).inc()
        if security:
            self.security_event(account, seq, reason, detail, link)
        else:
            _LOGGER.debug("frame rejected account=%s seq=%s reason=%s detail=%s peer=%s",
                          account, seq, reason, q(detail), link.peer)

    def security_event(self, account, seq, reason: str, detail: str, link: Link,
                       count: bool = True) -> None:
        """A possible attack, from any protocol's link: counted, logged
        (rate-limited), stored (rate-limited, and never while the store is
        behind with events); with ``count``, the link is closed after
        ``MAX_SECURITY_REJECTS`` of them."""
        self.metrics.security.labels(reason).inc()
        if self.security_log.allow():
            _LOGGER.warning("security event account=%s seq=%s reason=%s detail=%s peer=%s "
                            "transport=%s", account, seq, reason, q(detail), link.peer,
                            link.kind)
        if self._store_behind() or not self.security_store.allow():
            self.metrics.security_dropped.inc()  # a flood must not starve real events
        else:
            self._record(SecurityReport(self._clock(),
                                        None if account is None else str(account), seq,
                                        reason, detail, link.peer, link.kind))
        if count:
            link.security_rejects += 1
            if link.security_rejects >= MAX_SECURITY_REJECTS:
                link.close("security")
