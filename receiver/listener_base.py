"""What every listener shares, native (``receiver.listeners``) and SIA DC-09
(``receiver.dc09_listener``) alike: admission when a stream connects, TCP
keepalive and write-buffer bounds, the TCP server's and the UDP
endpoint's lifecycles (start, stop accepting, close), the kernel receive
buffer of a UDP socket, and the link a datagram is answered on.

A listener is a subclass of :class:`TcpServer` or :class:`DatagramListener`
that says what a connection is (``protocol()``) or what to do with one
datagram (``datagram()``); the protocol decisions are its service's
(``receiver.native``, ``receiver.dc09_listener.Dc09Service``) and the
shared policy's (``receiver.link_policy``).  ``kind`` names the listener
("tcp", "udp", "serial", "dc09-tcp", "dc09-udp"): the metrics label, the
start of a peer's name in logs, the ``transport`` column of a security
event.  It is not the asyncio transport (``transport`` below always is).

Invariants:

- A stream connection is admitted by the receiver's one
  :class:`receiver.admission.Admission` before anything is read from it; a
  refused one is aborted at once (counted, logged rate-limited).
- A peer that does not read what we write is not a panel in lockstep: past
  :data:`MAX_WRITE_BUFFER` the listener closes it (``pause_writing``).
- Nothing a peer sends raises out of a datagram handler.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Protocol

from receiver.admission import MAX_INFLIGHT_DATAGRAM, Admission, descriptor_limit
from receiver.config import Config
from receiver.connections import ConnectionRegistry
from receiver.metrics import Metrics
from receiver.ratelimit import RateLimit

_LOGGER = logging.getLogger(__name__)

# Kernel receive buffer for UDP listeners.  Datagrams that arrive while the
# loop is busy (a group commit of thousands of supervision events, a burst
# of reconnecting panels) wait here; the Linux default (~208 KiB, about
# 2,800 of our 73-byte heartbeats) overflowed in the 50,000-panel
# supervision benchmark.  8 MiB holds ~100,000 frames.  As root the cap
# (net.core.rmem_max) is bypassed with SO_RCVBUFFORCE.
UDP_RCVBUF = 8 * 1024 * 1024
# Bytes queued for a peer that does not read (a native ACK is ~77 bytes, a
# DC-09 reply < 200; a lockstep panel never has more than a couple
# outstanding).
MAX_WRITE_BUFFER = 64 * 1024
# TCP keepalive: probe after 60 s idle, every 15 s, 4 probes: a vanished
# peer is detected in ~2 min even when idle_timeout_s is long.
KEEPALIVE_IDLE_S = 60
KEEPALIVE_INTERVAL_S = 15
KEEPALIVE_COUNT = 4
# listen() backlog: a receiver restart brings every panel back at once.
TCP_BACKLOG = 4096
# Lines per second about refused connections (the rest are counted).
REFUSE_LOG_PER_S = 1.0
# At most one line per this many seconds about accept() failing for want of
# descriptors (asyncio retries every second per listener); the rest are
# counted (connections_refused_total{why="accept_error"}).
ACCEPT_ERROR_LOG_S = 10.0


class ListenerHost(Protocol):
    """What a listener reads of the receiver that runs it."""

    config: Config  # timeouts, limits
    metrics: Metrics
    admission: Admission
    connections: ConnectionRegistry
    close_log: RateLimit  # lines about strangers' connections closing


class Listener(Protocol):
    """What the receiver does with each of its listeners."""

    kind: str  # "tcp", "udp", "serial", "dc09-tcp", "dc09-udp": the metrics label
    address: tuple | str  # (host, port) as bound once started; a serial line's URL

    async def start(self) -> None: ...

    def connection_count(self) -> int: ...

    def sweep(self, now: float) -> None:
        """Close connections past their timeouts (housekeeping, each second)."""

    async def stop_accepting(self) -> None: ...

    async def close(self) -> None: ...


def enlarge_receive_buffer(sock, size: int = UDP_RCVBUF) -> int:
    """Ask for ``size`` bytes of receive buffer; return what the kernel gave."""
    if sock is None:
        return 0
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    for opt in ((force,) if force is not None else ()) + (socket.SO_RCVBUF,):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            break
        except OSError:
            continue
    try:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        return 0


def keepalive(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
    except OSError:
        pass


class AcceptErrors:
    """The event loop's exception handler while the receiver runs: asyncio
    reports accept() failing for want of descriptors once a second per
    listener, with a traceback; here that is one line per
    ACCEPT_ERROR_LOG_S, the rest counted.  Anything else goes to the
    handler that was there before."""

    def __init__(self, metrics: Metrics, admission: Admission):
        self.metrics = metrics
        self.admission = admission
        self.log = RateLimit(1.0 / ACCEPT_ERROR_LOG_S, 1.0)
        self._reported = 0  # suppressed lines already reported
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self) -> None:
        loop = self._loop
        if loop is not None and loop.get_exception_handler() is self:
            loop.set_exception_handler(self._previous)

    def __call__(self, loop, context) -> None:
        if "out of system resource" in str(context.get("message", "")):
            self.metrics.connections_refused.labels("accept_error").inc()
            if self.log.allow():
                _LOGGER.error("cannot accept connections: %s (descriptor limit %s, panel "
                              "connections %d; %d more such errors since the last line)",
                              context.get("exception"), descriptor_limit(),
                              self.admission.connections,
                              self.log.suppressed - self._reported)
                self._reported = self.log.suppressed
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


class StreamConnection(Protocol):
    """What a TcpServer keeps of each connection (its asyncio protocol)."""

    transport: asyncio.Transport | None

    def evict(self) -> None:
        """Closed to make room for another connection (admission)."""

    def stop(self) -> None:
        """The receiver stops: close, letting the last replies out."""


# -- TCP ---------------------------------------------------------------------------------


class TcpServer:
    """A listening TCP socket and its admitted connections."""

    kind = "?"

    def __init__(self, rx: ListenerHost, host: str, port: int):
        self.rx = rx
        self.host = host
        self.port = port
        self.server: asyncio.Server | None = None
        self.conns: set = set()  # admitted connections (StreamConnection) not yet lost
        self.accepting = True
        self.address = (host, port)
        self.refuse_log = RateLimit(REFUSE_LOG_PER_S)

    def protocol(self) -> asyncio.Protocol:
        """A new connection's protocol object."""
        raise NotImplementedError

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.protocol, self.host, self.port,
                                               backlog=TCP_BACKLOG, reuse_address=True,
                                               reuse_port=self.rx.config.reuse_port or None)
        self.address = self.server.sockets[0].getsockname()[:2]
        _LOGGER.info("listening transport=%s address=%s:%d", self.kind, *self.address)

    def admit(self, conn: StreamConnection, transport: asyncio.Transport) -> str | None:
        """Admission of ``conn`` (its ``connection_made``): the peer's name
        ("tcp:10.0.0.5:40112"), or None when it is refused (then its
        transport is aborted)."""
        rx = self.rx
        p = transport.get_extra_info("peername")
        peer = "%s:%s:%s" % (self.kind, p[0], p[1]) if p else "%s:?" % self.kind
        if not self.accepting:
            why, victim = "stopping", None
        else:
            why, victim = rx.admission.admit(conn, p[0] if p else "?")
        if victim is not None:
            victim.evict()
        if why is not None:
            rx.metrics.connections_refused.labels(why).inc()
            if self.refuse_log.allow():
                _LOGGER.warning("connection refused peer=%s why=%s connections=%d", peer, why,
                                rx.admission.connections)
            transport.abort()
            return None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            keepalive(sock)
        transport.set_write_buffer_limits(high=MAX_WRITE_BUFFER)
        self.conns.add(conn)
        return peer

    def lost(self, conn: StreamConnection) -> None:
        """``conn``'s socket is gone (its ``connection_lost``)."""
        self.rx.admission.released(conn)
        self.conns.discard(conn)

    def connection_count(self) -> int:
        return len(self.conns)

    async def stop_accepting(self) -> None:
        self.accepting = False
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.pause_reading()

    async def close(self) -> None:
        for conn in list(self.conns):
            conn.stop()
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass


# -- UDP ---------------------------------------------------------------------------------


class DatagramLink:
    """The sender of one datagram: answers go back to its address."""

    kind = "?"
    max_inflight = MAX_INFLIGHT_DATAGRAM
    inflight = 0
    closed = False  # a datagram's sender is never closed

    def __init__(self, listener: "DatagramListener", addr):
        self.listener = listener
        self.addr = addr
        self.peer = "%s:%s:%s" % (listener.kind, addr[0], addr[1])
        self.kind = listener.kind
        self.security_rejects = 0

    def send(self, data: bytes | None) -> None:
        t = self.listener.endpoint
        if data and t is not None and not t.is_closing():
            t.sendto(data, self.addr)

    def close(self, why: str) -> None:
        pass  # nothing to close: each datagram stands alone


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, listener: "DatagramListener"):
        self.listener = listener

    def connection_made(self, transport) -> None:
        self.listener.endpoint = transport

    def datagram_received(self, data, addr) -> None:
        lst = self.listener
        if not lst.accepting:
            return
        lst.datagrams += 1
        try:
            lst.datagram(data, addr)
        except Exception:  # noqa: BLE001 - never let a datagram kill the endpoint
            _LOGGER.exception("error handling datagram peer=%s:%s:%s", lst.kind, addr[0],
                              addr[1])

    def error_received(self, exc) -> None:
        _LOGGER.debug("%s error=%s", self.listener.kind, exc)


class DatagramListener:
    """A UDP socket: each datagram stands alone; no connections."""

    kind = "?"

    def __init__(self, host: str, port: int, reuse_port: bool = False):
        self.host = host
        self.port = port
        self.reuse_port = reuse_port  # share the port with the other workers (--workers)
        self.endpoint: asyncio.DatagramTransport | None = None
        self.accepting = True
        self.datagrams = 0
        self.address = (host, port)

    def datagram(self, data: bytes, addr) -> None:
        """One datagram from ``addr``."""
        raise NotImplementedError

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.endpoint, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self), local_addr=(self.host, self.port),
            reuse_port=self.reuse_port or None)
        self.address = self.endpoint.get_extra_info("sockname")[:2]
        rcvbuf = enlarge_receive_buffer(self.endpoint.get_extra_info("socket"))
        _LOGGER.info("listening transport=%s address=%s:%d rcvbuf=%d", self.kind,
                     *self.address, rcvbuf)

    def connection_count(self) -> int:
        return 0

    def sweep(self, now: float) -> None:
        pass

    async def stop_accepting(self) -> None:
        self.accepting = False  # keep the socket: in-flight ACKs still go out

    async def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
