"""SIA DC-09 listeners: TCP and UDP on their own ports, in front of the
sans-I/O judge (``receiver.dc09_core``) and the receiver's protocol-agnostic
ingest (``Receiver.queue_messages``: the messages of one turn of the event
loop share a group commit, each message all-or-nothing).

    guardline-receiver serve --dc09-tcp 0.0.0.0:7710 --dc09-udp 0.0.0.0:7710

TCP: a panel may keep its connection and send many messages on it, or open
one connection per message; both work.  Replies go out in the order the
messages came in, whatever order their commits finish in (several frames
on one connection are committed concurrently, so they share group
commits).  A connection with ``MAX_INFLIGHT`` events waiting for the store
stops being read until one is answered (TCP backpressure, no NAK).  When
the panel half-closes after its message, the reply still goes out and then
the connection is closed.

UDP: one message per datagram; the reply goes to the sender's address.

Limits, as the native listeners (``receiver.listeners``, config
``[limits]``): admission by the receiver's shared
:class:`receiver.admission.Admission` (per-source limits, one connection
cap for every stream listener, a reserve for known sources),
``auth_timeout_s`` for a connection with no accepted message,
``idle_timeout_s``, TCP keepalive, and closing a connection after
``link_policy.MAX_SECURITY_REJECTS`` security rejections, after ``MAX_BAD_FRAMES``
NAKed frames, or after ``MAX_UNAUTH_BYTES`` without an accepted message.
On UDP the NAKs to frames from nobody we know are rate-limited
(``UDP_NAK_PER_S``), and a datagram that does not frame is never answered
with a reply larger than itself, so the receiver cannot be used to reflect
or amplify traffic.

Keyless accounts: a clear message needs no key, so anyone can forge one
for an account that has none (SIA DC-09 leaves clear lines unauthenticated;
docs/dc09.md, "Keyless accounts").  Their NULLs are still ACKed and feed
supervision, but a connection counts as authenticated (and gets the long
``idle_timeout_s``) only once it has sent an encrypted message or an
event; until then it stays in the unauthenticated books and is closed
after ``keyless_idle_timeout_s`` of silence.

Every accepted message (NULL link test included) restarts the account's
supervision timer on path 1; DC-09 has no path field, so a DC-09 account
is supervised as one path.  Event replies follow the judge (ACK after the
commit, NAK when busy); see ``receiver.dc09_core`` for the whole table.

The receiver builds one :class:`Dc09Service` (``rx.dc09``, whose ``clock``
tests may replace) and a listener per address.  Busy, rejections and
security events follow the policy every listener shares
(``receiver.link_policy``); admission, keepalive and the socket lifecycles
are ``receiver.listener_base``'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Protocol, cast

from protocol import dc09
from receiver import dc09_core as core
from receiver.admission import MAX_INFLIGHT_TRUNK
from receiver.link_policy import Busy, LinkPolicy
from receiver.listener_base import DatagramLink, DatagramListener, ListenerHost, TcpServer
from receiver.ratelimit import RateLimit
from receiver.records import Account, EventRecord

_LOGGER = logging.getLogger(__name__)

# Events one TCP connection may have waiting for a commit.  At this many
# the connection stops being read, and further events already read get NAK
# (busy) so the sender retries.  A DC-09 panel waits for each ACK (one in
# flight); a concentrator forwarding many panels over one connection
# pipelines a few dozen, as a native serial trunk.
MAX_INFLIGHT = MAX_INFLIGHT_TRUNK
# NAKed frames on a connection that has not had a message accepted: a
# panel with a bad clock needs one or two; a stream of them is not a panel.
MAX_BAD_FRAMES = 8
# Bytes a connection may send before its first accepted message: four
# maximal frames (dc09.MAX_FRAME_LEN = 4105).
MAX_UNAUTH_BYTES = 4 * dc09.MAX_FRAME_LEN
# Bytes handed to the reader at a time, drained after each slice, so the
# reader's backlog bound (dc09.MAX_BUFFERED, 16 frames) is never reached.
READ_SLICE = dc09.MAX_FRAME_LEN
# NAKs per second to UDP senders no account vouches for (CRC/format
# errors): enough for a real panel's retries, too few to reflect a flood.
UDP_NAK_PER_S = 50.0


class Dc09Host(ListenerHost, Protocol):
    """What the DC-09 listeners need of the receiver."""

    link_policy: LinkPolicy

    def account(self, number: str) -> Account | None: ...

    def heard(self, account: str, path: int, now: float) -> None: ...

    def spawn(self, coro, inflight: bool = False) -> asyncio.Task: ...

    def make_record(self, event: dict) -> EventRecord: ...

    def queue_messages(self, messages: list[list[EventRecord]]) -> list[asyncio.Future]: ...

    async def message_stored(self, recs: list[EventRecord], fut: asyncio.Future) -> list: ...


class Dc09Service:
    """Glue between the judge and the receiver: supervision, ingest,
    replies, security events and metrics.  Shared by every DC-09 listener."""

    def __init__(self, rx: Dc09Host):
        self.rx = rx
        self.clock = time.time  # tests replace it (receiver clock skew)
        cfg = rx.config
        self._default = core.AccountSettings(tuple(cfg.dc09_window), 0)
        self._per_account = {
            number.upper(): core.AccountSettings(
                tuple(s.get("window", cfg.dc09_window)), 60 * s.get("utc_offset_min", 0),
                bool(s.get("check_clear_time", False)), frozenset(s.get("compat", ())))
            for number, s in cfg.dc09_accounts.items()}
        self.core = core.Dc09Core(rx.account, self._settings)
        # messages accepted in this turn of the loop, not yet queued to the store
        self._turn: list = []

    def _settings(self, number: str) -> core.AccountSettings:
        return self._per_account.get(number, self._default)

    # -- bytes and frames ------------------------------------------------------------

    def feed(self, reader: dc09.Dc09Reader, data, link) -> None:
        """Bytes from ``link`` through its reader, READ_SLICE at a time,
        each frame judged before the next slice (the reader's bound);
        stops when the link closes."""
        mv = memoryview(data)
        for i in range(0, len(mv), READ_SLICE):
            reader.receive_data(mv[i:i + READ_SLICE])
            while not link.closed:
                try:
                    f = reader.next_frame()
                except dc09.Dc09OversizeError as e:
                    self.oversize(link, e)
                    continue
                if not isinstance(f, bytes):  # dc09.NEED_DATA
                    break
                self.handle(f, link)
            if link.closed:
                return

    def handle(self, frame: bytes, link) -> None:
        """A frame from a link.  Never raises for anything a peer sends."""
        rx = self.rx
        policy = rx.link_policy
        now = self.clock()
        v = self.core.judge(frame, now)
        msg, account = v.message, v.account
        if v.kind in (core.EVENT, core.LINK) and msg is not None and account is not None:
            policy.accepted(link)
            # authenticated: encrypted under the account's key; a keyless
            # account's clear NULL anyone can forge, its event is a report
            link.accepted(msg.encrypted or v.kind == core.EVENT)
            rx.heard(account.number, 1, now)
            if v.kind == core.LINK:
                link.reply(self.core.ack(v, now))
                return
            reason = policy.refusal(link)
            if reason is not None:
                self._nak_busy(v, account.number, link, reason)
                return
            events = v.events or []
            for e in events:
                e["peer"] = link.peer
            self._turn.append((v, account.number, events, link, link.reserve()))
            if len(self._turn) == 1:
                # the first message of this turn of the loop: one task stores
                # and answers every message the turn's reads bring
                rx.spawn(self._commit_turn(), inflight=True)
        elif v.kind == core.REPLY and v.reply is not None:
            # a DUH is an answer to a message we understood and do not handle
            duh = v.reason == "dc09_unsupported"
            policy.rejected(link, v.reason, v.account_number, v.seq, v.detail, security=False,
                            nak=not duh, result="duh" if duh else "rejected")
            link.refuse(v.reply, known=v.account is not None)
        elif v.kind == core.SECURITY:
            policy.rejected(link, v.reason, v.account_number, v.seq, v.detail, security=True,
                            nak=False)
        else:
            rx.metrics.frames.labels(link.kind, "ignored").inc()

    def oversize(self, link, error) -> None:
        """The reader found no frame end within dc09.MAX_FRAME_LEN bytes."""
        self.rx.link_policy.rejected(link, "dc09_format", None, None, str(error),
                                     security=False, nak=True)
        link.refuse(self.core.nak(None, self.clock()), known=False)

    async def _commit_turn(self) -> None:
        """The messages accepted in one turn of the event loop, on any link:
        each message's events one store request (all stored or none), all
        queued at once into one group commit, then each answered in arrival
        order once durable (one ACK per message), or NAKed busy."""
        rx = self.rx
        turn, self._turn = self._turn, []
        t0 = time.perf_counter()
        taken, messages = [], []
        for m in turn:
            try:
                messages.append([rx.make_record(e) for e in m[2]])
            except Exception:  # noqa: BLE001 - a bug: no reply, the panel retries
                self._failed(m)
                continue
            taken.append(m)
        if not taken:
            return
        try:
            futs = rx.queue_messages(messages)
        except Busy as e:
            for v, number, _, link, slot in taken:
                self._nak_busy(v, number, link, e.reason, slot)
            return
        except Exception:  # noqa: BLE001 - a bug: no reply, the panels retry
            for m in taken:
                self._failed(m)
            return
        for m, recs, fut in zip(taken, messages, futs):
            v, number, _, link, slot = m
            try:
                await rx.message_stored(recs, fut)
            except Busy as e:
                self._nak_busy(v, number, link, e.reason, slot)
                continue
            except Exception:  # noqa: BLE001 - a bug: no reply, the panel retries
                self._failed(m)
                continue
            link.fill(slot, self.core.ack(v, self.clock()))
            rx.metrics.ack_seconds.observe(time.perf_counter() - t0)

    @staticmethod
    def _failed(m) -> None:
        v, number, _, link, slot = m
        _LOGGER.exception("DC-09 ingest failed account=%s seq=%s", number, v.seq)
        link.fill(slot, None)

    def _nak_busy(self, v: core.Verdict, number: str, link, reason: str, slot=None) -> None:
        self.rx.link_policy.nak_busy(number, "%04d" % (v.seq or 0), link, reason)
        nak = self.core.nak(number, self.clock())
        if slot is None:
            link.reply(nak)
        else:
            link.fill(slot, nak)


# -- TCP --------------------------------------------------------------------------------


class _TcpLink(asyncio.Protocol):
    """One TCP connection.  Replies leave in message order: each message
    takes a slot, filled when its reply is known; the head slots are
    written as soon as they are filled."""

    kind = "dc09-tcp"  # the metrics label
    max_inflight = MAX_INFLIGHT

    def __init__(self, listener: "Dc09TcpListener"):
        self.listener = listener
        self.service = listener.service
        self.rx = listener.rx
        self.transport: asyncio.Transport | None = None
        self.peer = "dc09-tcp:?"
        self.reader = dc09.Dc09Reader()
        self.slots: deque = deque()  # [done, reply bytes or None]
        self.inflight = 0
        self.closed = False
        self.eof = False
        self.paused = False
        self.authenticated = False  # encrypted message or an event accepted
        self.provisional = False  # only a keyless account's clear NULL so far
        self.opened = self.last_rx = time.time()
        self.bytes_before_auth = 0
        self.bad_frames = 0
        self.security_rejects = 0

    # asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = self.transport = cast(asyncio.Transport, transport)  # a TCP server's
        peer = self.listener.admit(self, t)
        if peer is None:
            self.closed = True
            return
        self.peer = peer

    def evict(self) -> None:
        """Closed to make room for another connection (admission)."""
        self.close("evicted")

    def stop(self) -> None:
        self.close("stopping")

    def data_received(self, data) -> None:
        if self.closed:
            return
        self.last_rx = time.time()
        try:
            self.service.feed(self.reader, data, self)
            if self.closed:
                return
            if not self.authenticated:
                self.bytes_before_auth += len(data)
                if self.bytes_before_auth > MAX_UNAUTH_BYTES:
                    self.close("garbage")
                    return
            if self.inflight >= MAX_INFLIGHT and not self.paused and self.transport:
                self.paused = True
                self.transport.pause_reading()
        except Exception:  # noqa: BLE001 - a bug must not take the listener down
            _LOGGER.exception("error handling DC-09 data peer=%s", self.peer)
            self.close("internal_error")

    def eof_received(self):
        # The panel may half-close after its message: answer, then close.
        self.eof = True
        if not self.slots:
            return False
        return True

    def pause_writing(self) -> None:
        self.close("write_buffer_full")  # a peer that does not read replies

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.listener.lost(self)

    # link interface (Dc09Service) ------------------------------------------------

    def accepted(self, authenticated: bool) -> None:
        self.bad_frames = 0
        self.bytes_before_auth = 0
        if authenticated and not self.authenticated:
            self.authenticated = True
            self.provisional = False
            self.rx.admission.authenticated(self)
        elif not self.authenticated:
            self.provisional = True

    def reserve(self) -> list:
        slot = [False, None]
        self.slots.append(slot)
        self.inflight += 1
        return slot

    def fill(self, slot: list, data: bytes | None) -> None:
        slot[0], slot[1] = True, data
        self.inflight -= 1
        self._flush()
        if self.paused and self.inflight < MAX_INFLIGHT and not self.closed and self.transport:
            self.paused = False
            self.transport.resume_reading()

    def reply(self, data: bytes) -> None:
        self.slots.append([True, data])
        self._flush()

    def refuse(self, data: bytes, known: bool) -> None:
        self.reply(data)
        if not self.authenticated:
            self.bad_frames += 1
            if self.bad_frames > MAX_BAD_FRAMES:
                self.close("garbage")

    def _flush(self) -> None:
        slots = self.slots
        while slots and slots[0][0]:
            data = slots.popleft()[1]
            if data and not self.closed and self.transport:
                self.transport.write(data)
        if self.eof and not slots and not self.closed:
            self.close("eof")

    def close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        rx = self.rx
        rx.admission.released(self)
        if why != "eof":
            rx.metrics.connections_closed.labels(why).inc()
            if self.authenticated or rx.close_log.allow():
                _LOGGER.info("closing link peer=%s why=%s", self.peer, why)
        t = self.transport
        if t is None:
            return
        if why in ("security", "write_buffer_full"):
            t.abort()  # do not wait to flush to a peer we distrust
        else:
            t.close()  # flush the last reply first


class Dc09TcpListener(TcpServer):
    kind = "dc09-tcp"  # metrics label

    def __init__(self, service: Dc09Service, host: str, port: int):
        super().__init__(service.rx, host, port)
        self.rx: Dc09Host = service.rx
        self.service = service

    def protocol(self) -> _TcpLink:
        return _TcpLink(self)

    def sweep(self, now: float) -> None:
        cfg = self.rx.config
        for link in list(self.conns):
            if link.authenticated:
                if now - link.last_rx > cfg.idle_timeout_s and not link.slots:
                    link.close("idle_timeout")
            elif link.provisional:
                if now - link.last_rx > cfg.keyless_idle_timeout_s and not link.slots:
                    link.close("keyless_idle_timeout")
            elif now - link.opened > cfg.auth_timeout_s:
                link.close("auth_timeout")


# -- UDP --------------------------------------------------------------------------------


class _DatagramLink(DatagramLink):
    """The sender of one DC-09 datagram (the link interface Dc09Service
    answers on)."""

    def __init__(self, listener: "Dc09UdpListener", addr, size: int):
        super().__init__(listener, addr)
        self.nak_limit = listener.nak_limit
        self._size = size  # bytes of the datagram being answered

    def accepted(self, authenticated: bool) -> None:
        pass

    def reserve(self):
        return None

    def fill(self, slot, data: bytes | None) -> None:
        self.send(data)

    def reply(self, data: bytes) -> None:
        self.send(data)

    def refuse(self, data: bytes, known: bool) -> None:
        # A datagram that did not frame (CRC, format, oversize) may come
        # from a forged source address: never answer it with more bytes
        # than it carried, and not more often than UDP_NAK_PER_S.
        if known or (len(data) <= self._size and self.nak_limit.allow()):
            self.send(data)


class Dc09UdpListener(DatagramListener):
    kind = "dc09-udp"  # metrics label

    def __init__(self, service: Dc09Service, host: str, port: int):
        super().__init__(host, port, service.rx.config.reuse_port)
        self.service = service
        self.nak_limit = RateLimit(UDP_NAK_PER_S, UDP_NAK_PER_S)

    def datagram(self, data: bytes, addr) -> None:
        self.service.feed(dc09.Dc09Reader(), data, _DatagramLink(self, addr, len(data)))
