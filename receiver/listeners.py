"""Thin transport adapters for the native protocol: TCP, UDP and serial
lines.  They move bytes between the wire and the sans-I/O session core
(``protocol.session``) and hand each judged frame to
:meth:`receiver.app.Receiver.on_native`; all protocol decisions live there.

Per-connection state is small: a FrameReader buffer (at most
``glwire.MAX_BUFFER`` = 1,321 bytes), a few counters and timestamps, no
task and no timer per connection.  The receiver's housekeeping task calls
:meth:`sweep` once a second to close connections that

- have had no frame accepted within ``auth_timeout_s`` (port scanners,
  SYN-and-silence, a panel with the wrong key), or
- have been silent for ``idle_timeout_s`` (half-open TCP: the panel's end
  vanished without a FIN; TCP keepalive is also switched on).

Who may connect at all is the receiver's :class:`receiver.admission.Admission`
(shared with the DC-09 TCP listener): per-source limits on connections not
yet authenticated, one cap for all stream connections (within the process's
descriptor budget), the oldest unauthenticated connection of the heaviest
source closed to make room, a reserve for sources that authenticated
before.  A connection refused is closed at once.  A stream that yields more than
``MAX_GARBAGE_BYTES`` of non-frame bytes before its first accepted frame
is closed: oversize or garbage input is dropped early instead of read for
ever.  A reader never buffers more than one frame plus one read.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from protocol.lean import glwire as w
from protocol.session import NEED_DATA, ReceiverConnection, handle_datagram
from receiver.admission import MAX_INFLIGHT_DATAGRAM, MAX_INFLIGHT_TCP, MAX_INFLIGHT_TRUNK
from receiver.backoff import Backoff
from receiver.ratelimit import RateLimit

_LOGGER = logging.getLogger(__name__)

# Kernel receive buffer for UDP listeners.  Datagrams that arrive while the
# loop is busy (a group commit of thousands of supervision events, a burst
# of reconnecting panels) wait here; the Linux default (~208 KiB, about
# 2,800 of our 73-byte heartbeats) overflowed in the 50,000-panel
# supervision benchmark.  8 MiB holds ~100,000 frames.  As root the cap
# (net.core.rmem_max) is bypassed with SO_RCVBUFFORCE.
UDP_RCVBUF = 8 * 1024 * 1024


def enlarge_receive_buffer(sock, size: int = UDP_RCVBUF) -> int:
    """Ask for ``size`` bytes of receive buffer; return what the kernel gave."""
    import socket as _socket  # noqa: PLC0415

    if sock is None:
        return 0
    force = getattr(_socket, "SO_RCVBUFFORCE", None)
    for opt in ((force,) if force is not None else ()) + (_socket.SO_RCVBUF,):
        try:
            sock.setsockopt(_socket.SOL_SOCKET, opt, size)
            break
        except OSError:
            continue
    try:
        return sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF)
    except OSError:
        return 0

# Non-frame bytes tolerated on a stream before its first accepted frame:
# noise on a line that was just plugged in is a few bytes; a few KB of it
# means it is not a panel.
MAX_GARBAGE_BYTES = 4 * w.MAX_FRAME_LEN
# Bytes queued for a peer that does not read (ACKs are ~77 bytes; a
# lockstep panel never has more than a couple outstanding).
MAX_WRITE_BUFFER = 64 * 1024
# TCP keepalive: probe after 60 s idle, every 15 s, 4 probes: a vanished
# peer is detected in ~2 min even when idle_timeout_s is long.
KEEPALIVE_IDLE_S = 60
KEEPALIVE_INTERVAL_S = 15
KEEPALIVE_COUNT = 4
# Serial read timeout: how quickly a reader thread notices stop().
SERIAL_READ_TIMEOUT_S = 0.2
# listen() backlog: a receiver restart brings every panel back at once.
TCP_BACKLOG = 4096


class Link:
    """Where a judged frame came from and how to answer it."""

    transport = "?"  # the kind of link: metrics label, security event column
    max_inflight = MAX_INFLIGHT_TRUNK

    def __init__(self, peer: str):
        self.peer = peer
        self.inflight = 0
        self.security_rejects = 0

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self, why: str) -> None:
        pass


class _StreamLink(Link):
    """A byte stream (TCP connection or serial line) in front of the core."""

    def __init__(self, rx, peer: str, write, on_close=None):
        super().__init__(peer)
        self.rx = rx
        self.conn = ReceiverConnection(rx.core)
        self._write = write
        self._on_close = on_close
        self.closed = False
        self.opened = time.time()
        self.last_rx = self.opened
        self.authenticated = False

    def send(self, data: bytes) -> None:
        if not self.closed:
            self._write(data)

    def close(self, why: str) -> None:
        if not self.closed and self._on_close is not None:
            self.rx.metrics.connections_closed.labels(why).inc()
            # a panel's link closing is worth a line each; a flood of
            # strangers' connections is counted, and logged rate-limited
            if self.authenticated or self.rx.close_log.allow():
                _LOGGER.info("closing link peer=%s account=%s why=%s", self.peer,
                             self.conn.account, why)
            self._on_close(why)

    def feed(self, data) -> None:
        """Bytes from the wire: at most READ_SIZE at a time into the reader,
        draining every frame before the next slice (FrameReader's contract)."""
        self.last_rx = time.time()
        mv = memoryview(data)
        step = w.READ_SIZE
        try:
            for i in range(0, len(mv), step):
                if self.closed:
                    return
                self.conn.receive_data(mv[i:i + step])
                while not self.closed:
                    ev = self.conn.next_event(time.time())
                    if ev is NEED_DATA:
                        break
                    self.rx.on_native(ev, self)
                if not self.authenticated and self.conn.authenticated:
                    self.authenticated = True
                    self.on_authenticated()
                if not self.authenticated and self.conn.discarded > MAX_GARBAGE_BYTES:
                    self.close("garbage")
                    return
        except w.WireError as e:  # reader overflow: cannot happen with READ_SIZE slices
            _LOGGER.warning("stream error peer=%s error=%s", self.peer, e)
            self.close("overflow")
        except Exception:  # noqa: BLE001 - a bug must not take the listener down
            _LOGGER.exception("error handling data peer=%s account=%s", self.peer,
                              self.conn.account)
            self.close("internal_error")

    def on_authenticated(self) -> None:
        pass


# -- TCP -------------------------------------------------------------------------------


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, listener: "TcpListener"):
        self.listener = listener
        self.transport = None
        self.link: _StreamLink | None = None

    def connection_made(self, transport) -> None:
        lst = self.listener
        self.transport = transport
        peer = transport.get_extra_info("peername")
        peer_s = "tcp:%s:%s" % (peer[0], peer[1]) if peer else "tcp:?"
        if lst.accepting is False:
            why, victim = "stopping", None
        else:
            why, victim = lst.rx.admission.admit(self, peer[0] if peer else "?")
        if victim is not None:
            victim.evict()
        if why is not None:
            lst.rx.metrics.connections_refused.labels(why).inc()
            if lst.refuse_log.allow():
                _LOGGER.warning("connection refused peer=%s why=%s connections=%d", peer_s,
                                why, lst.rx.admission.connections)
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _keepalive(sock)
        self.link = _TcpLink(lst.rx, peer_s, self)
        lst.conns.add(self)
        transport.set_write_buffer_limits(high=MAX_WRITE_BUFFER)

    def evict(self) -> None:
        """Closed to make room for another connection (admission)."""
        if self.link is not None:
            self.link.close("evicted")

    def data_received(self, data) -> None:
        if self.link is not None:
            self.link.feed(data)

    def eof_received(self):
        return False  # close our side too

    def pause_writing(self) -> None:
        # The peer does not read what we send: it is not a panel in lockstep.
        if self.link is not None:
            self.link.close("write_buffer_full")

    def connection_lost(self, exc) -> None:
        lst = self.listener
        lst.rx.admission.released(self)
        if self.link is not None and self in lst.conns:
            lst.conns.discard(self)
            self.link.closed = True


class _TcpLink(_StreamLink):
    transport = "tcp"
    max_inflight = MAX_INFLIGHT_TCP

    def __init__(self, rx, peer, proto: _TcpProtocol):
        super().__init__(rx, peer, proto.transport.write, self._close)
        self.proto = proto

    def _close(self, why: str) -> None:
        t = self.proto.transport
        if t is not None and not t.is_closing():
            t.abort()  # abort: do not wait to flush to a peer we distrust
        self.closed = True

    def on_authenticated(self) -> None:
        self.rx.admission.authenticated(self.proto)


def _keepalive(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
    except OSError:
        pass


class TcpListener:
    kind = "tcp"  # metrics label

    def __init__(self, rx, host: str, port: int):
        self.rx = rx
        self.host = host
        self.port = port
        self.server: asyncio.base_events.Server | None = None
        self.conns: set[_TcpProtocol] = set()
        self.accepting = True
        self.address = (host, port)
        self.refuse_log = RateLimit(1.0)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _TcpProtocol(self), self.host,
                                               self.port, backlog=TCP_BACKLOG,
                                               reuse_address=True)
        self.address = self.server.sockets[0].getsockname()[:2]
        _LOGGER.info("listening transport=tcp address=%s:%d", *self.address)

    def connection_count(self) -> int:
        return len(self.conns)

    def sweep(self, now: float) -> None:
        cfg = self.rx.config
        for proto in list(self.conns):
            link = proto.link
            if not link.authenticated and now - link.opened > cfg.auth_timeout_s:
                link.close("auth_timeout")
            elif now - link.last_rx > cfg.idle_timeout_s:
                link.close("idle_timeout")

    async def stop_accepting(self) -> None:
        self.accepting = False
        if self.server is not None:
            self.server.close()
        for proto in list(self.conns):
            if proto.transport is not None:
                proto.transport.pause_reading()

    async def close(self) -> None:
        for proto in list(self.conns):
            if proto.transport is not None:
                proto.transport.close()  # close (not abort): flush the last ACKs
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass


# -- UDP -------------------------------------------------------------------------------


class _DatagramLink(Link):
    transport = "udp"
    max_inflight = MAX_INFLIGHT_DATAGRAM

    def __init__(self, transport, addr):
        super().__init__("udp:%s:%s" % (addr[0], addr[1]))
        self._t = transport
        self._addr = addr

    def send(self, data: bytes) -> None:
        if not self._t.is_closing():
            self._t.sendto(data, self._addr)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, listener: "UdpListener"):
        self.listener = listener
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        lst = self.listener
        if not lst.accepting:
            return
        lst.datagrams += 1
        try:
            result = handle_datagram(lst.rx.core, data, time.time())
            lst.rx.on_native(result, _DatagramLink(self.transport, addr))
        except Exception:  # noqa: BLE001 - never let a datagram kill the endpoint
            _LOGGER.exception("error handling datagram peer=udp:%s:%s", addr[0], addr[1])

    def error_received(self, exc) -> None:
        _LOGGER.debug("udp error=%s", exc)


class UdpListener:
    kind = "udp"  # metrics label

    def __init__(self, rx, host: str, port: int):
        self.rx = rx
        self.host = host
        self.port = port
        self.endpoint = None  # the asyncio datagram transport
        self.accepting = True
        self.datagrams = 0
        self.address = (host, port)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.endpoint, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, self.port))
        self.address = self.endpoint.get_extra_info("sockname")[:2]
        rcvbuf = enlarge_receive_buffer(self.endpoint.get_extra_info("socket"))
        _LOGGER.info("listening transport=udp address=%s:%d rcvbuf=%d", *self.address, rcvbuf)

    def connection_count(self) -> int:
        return 0

    def sweep(self, now: float) -> None:
        pass

    async def stop_accepting(self) -> None:
        self.accepting = False  # keep the socket: in-flight ACKs still go out

    async def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()


# -- serial ------------------------------------------------------------------------------


class _SerialLink(_StreamLink):
    transport = "serial"
    max_inflight = MAX_INFLIGHT_TRUNK


class SerialListener:
    """One serial line (``serial.serial_for_url``: /dev/ttyS0, a pty,
    socket://host:port, rfc2217://, loop://).  A reader thread per line
    feeds the loop; writes go through a one-thread executor so they stay in
    order.  A line that fails or cannot be opened is reopened with capped,
    jittered backoff until stop()."""

    kind = "serial"  # metrics label

    def __init__(self, rx, spec, backoff: Backoff | None = None):
        self.rx = rx
        self.spec = spec
        self.backoff = backoff or Backoff(base_s=0.5, cap_s=30.0)
        self._stop = threading.Event()
        self._astop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._port = None
        self._link: _SerialLink | None = None
        self._wexec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serial-write")
        self.opened = asyncio.Event()
        self._closing = asyncio.Event()
        self.reopened = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="serial-%s" % self.spec.url)

    def connection_count(self) -> int:
        return 1 if self._port is not None else 0

    def sweep(self, now: float) -> None:
        pass  # a serial line is not a connection to time out

    def _open(self):
        import serial  # noqa: PLC0415

        return serial.serial_for_url(self.spec.url, baudrate=self.spec.baudrate,
                                     timeout=SERIAL_READ_TIMEOUT_S, write_timeout=5)

    def _write(self, port, data: bytes) -> None:
        def do():
            try:
                port.write(data)
            except Exception as e:  # noqa: BLE001 - the read side notices and reopens
                _LOGGER.warning("serial write failed line=%s error=%s", self.spec.url, e)
        self._wexec.submit(do)

    async def _run(self) -> None:
        import serial  # noqa: PLC0415

        loop = asyncio.get_running_loop()
        url = self.spec.url
        while not self._stop.is_set():
            try:
                port = await loop.run_in_executor(self._wexec, self._open)
            except (serial.SerialException, OSError, ValueError) as e:
                _LOGGER.warning("serial open failed line=%s error=%s", url, e)
                if await self.backoff.wait(self._astop):
                    return
                continue
            self.backoff.reset()
            self._port = port
            self.reopened += 1
            link = _SerialLink(self.rx, "serial:%s" % url,
                               lambda data, p=port: self._write(p, data))
            self._link = link
            _LOGGER.info("listening transport=serial line=%s baudrate=%d", url,
                         self.spec.baudrate)
            self.opened.set()
            done = loop.create_future()
            t = threading.Thread(target=self._read_loop, args=(loop, port, link, done),
                                 name="serial-read", daemon=True)
            t.start()
            err = await done
            if self._stop.is_set():
                # stopping: reading has ended, but ACKs of commits still in
                # flight must go out before the port closes
                await self._closing.wait()
            self._port = None
            link.closed = True
            try:
                await loop.run_in_executor(self._wexec, port.close)
            except Exception:  # noqa: BLE001
                pass
            if err is not None and not self._stop.is_set():
                _LOGGER.warning("serial line failed line=%s error=%s (reopening)", url, err)
                if await self.backoff.wait(self._astop):
                    return

    def _read_loop(self, loop, port, link, done) -> None:
        err = None
        try:
            while not self._stop.is_set():
                data = port.read(1)
                if not data:
                    continue
                n = port.in_waiting
                if n:
                    data += port.read(min(n, w.READ_SIZE - 1))
                loop.call_soon_threadsafe(link.feed, data)
        except Exception as e:  # noqa: BLE001 - SerialException, OSError: reopen
            err = e
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(err))

    async def stop_accepting(self) -> None:
        self._stop.set()  # the reader thread ends within SERIAL_READ_TIMEOUT_S
        self._astop.set()

    async def close(self) -> None:
        self._stop.set()
        self._astop.set()
        self._closing.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 3)
            except asyncio.TimeoutError:
                self._task.cancel()
        self._wexec.shutdown(wait=True)
