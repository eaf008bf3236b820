"""Thin transport adapters for the native protocol: TCP, UDP and serial
lines.  They move bytes between the wire and the sans-I/O session core
(``protocol.session``) and hand each judged frame to
:meth:`receiver.native.NativeService.handle` (through ``Receiver.on_native``);
all protocol decisions live there.

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

A stream (TCP connection, serial line) that has had a frame accepted is
registered in the receiver's connection registry (``receiver.connections``)
under the account of its last accepted frame, so remote commands and the
console find it; it leaves the registry when it closes.  What the native
and DC-09 listeners share (admission, keepalive, the TCP server's and UDP
endpoint's lifecycles) is ``receiver.listener_base``'s.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, cast

from protocol.lean import glwire as w
from protocol.session import NEED_DATA, ReceiverConnection, ReceiverCore, handle_datagram
from receiver.admission import MAX_INFLIGHT_TCP, MAX_INFLIGHT_TRUNK
from receiver.backoff import Backoff
from receiver.listener_base import (UDP_RCVBUF, DatagramLink, DatagramListener,  # noqa: F401
                                    ListenerHost, TcpServer, enlarge_receive_buffer)

_LOGGER = logging.getLogger(__name__)

# Non-frame bytes tolerated on a stream before its first accepted frame:
# noise on a line that was just plugged in is a few bytes; a few KB of it
# means it is not a panel.
MAX_GARBAGE_BYTES = 4 * w.MAX_FRAME_LEN
# Serial read timeout: how quickly a reader thread notices stop().
SERIAL_READ_TIMEOUT_S = 0.2


class NativeListenerHost(ListenerHost, Protocol):
    """What the native listeners need of the receiver: its session core
    (keys, replay state) and where a judged frame goes."""

    core: ReceiverCore

    def on_native(self, result, link) -> None: ...


class StreamLink:
    """A byte stream (TCP connection or serial line) in front of the core:
    where a judged frame came from and how to answer it."""

    kind = "?"
    max_inflight = MAX_INFLIGHT_TRUNK
    carries_commands = False  # a receiver COMMAND may be sent on it

    def __init__(self, rx: NativeListenerHost, peer: str, write, on_close=None):
        self.rx = rx
        self.peer = peer
        self.inflight = 0
        self.security_rejects = 0
        self.conn = ReceiverConnection(rx.core)
        self._write = write
        self._on_close = on_close
        self.closed = False
        self.opened = time.time()
        self.last_rx = self.opened
        self.authenticated = False
        self.registered: int | None = None  # account last registered (rx.connections)

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

    def gone(self) -> None:
        """The stream is closed (whoever closed it)."""
        self.closed = True
        self.rx.connections.unregister(self)

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
                    self._register()
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

    def _register(self) -> None:
        """The stream carries the accounts of its accepted frames."""
        acct = self.conn.account
        if acct is not None and acct != self.registered and not self.closed:
            self.registered = acct
            self.rx.connections.register(self, str(acct))

    def on_authenticated(self) -> None:
        pass


# -- TCP -------------------------------------------------------------------------------


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, listener: "TcpListener"):
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.link: _TcpLink | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = self.transport = cast(asyncio.Transport, transport)  # a TCP server's
        peer = self.listener.admit(self, t)
        if peer is not None:
            self.link = _TcpLink(self.listener.rx, peer, self, t)

    def evict(self) -> None:
        """Closed to make room for another connection (admission)."""
        if self.link is not None:
            self.link.close("evicted")

    def stop(self) -> None:
        if self.link is not None:
            self.link.flush()
        if self.transport is not None:
            self.transport.close()  # close (not abort): flush the last ACKs

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
        self.listener.lost(self)
        if self.link is not None:
            self.link.gone()


class _TcpLink(StreamLink):
    kind = "tcp"
    max_inflight = MAX_INFLIGHT_TCP
    # the panel keeps its TCP connection open and reads it between events
    carries_commands = True

    def __init__(self, rx: NativeListenerHost, peer: str, proto: _TcpProtocol,
                 transport: asyncio.Transport):
        super().__init__(rx, peer, self._queue, self._close)
        self.proto = proto
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []  # answers waiting for the end of this turn of the loop

    def _queue(self, data: bytes) -> None:
        """Answers leave at the end of the loop's turn: the ACKs of one group
        commit for this connection (a pipelining panel's, a trunk's) go out
        in one write, not one write each."""
        self._out.append(data)
        if len(self._out) == 1:
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued now (also before the connection is closed)."""
        out = self._out
        if not out:
            return
        self._out = []
        t = self._transport
        if t.is_closing():
            return
        if len(out) == 1:
            t.write(out[0])
        else:
            t.writelines(out)

    def _close(self, why: str) -> None:
        self.flush()  # what was answered before the close still goes
        t = self.proto.transport
        if t is not None and not t.is_closing():
            t.abort()  # abort: do not wait to flush to a peer we distrust
        self.gone()

    def on_authenticated(self) -> None:
        self.rx.admission.authenticated(self.proto)


class TcpListener(TcpServer):
    kind = "tcp"  # metrics label

    def __init__(self, rx: NativeListenerHost, host: str, port: int):
        super().__init__(rx, host, port)
        self.rx: NativeListenerHost = rx

    def protocol(self) -> _TcpProtocol:
        return _TcpProtocol(self)

    def sweep(self, now: float) -> None:
        cfg = self.rx.config
        for proto in list(self.conns):
            link = proto.link
            if link is None:
                continue
            if not link.authenticated and now - link.opened > cfg.auth_timeout_s:
                link.close("auth_timeout")
            elif now - link.last_rx > cfg.idle_timeout_s:
                link.close("idle_timeout")


# -- UDP -------------------------------------------------------------------------------


class UdpListener(DatagramListener):
    kind = "udp"  # metrics label

    def __init__(self, rx: NativeListenerHost, host: str, port: int):
        super().__init__(host, port, rx.config.reuse_port)
        self.rx = rx

    def datagram(self, data: bytes, addr) -> None:
        result = handle_datagram(self.rx.core, data, time.time())
        self.rx.on_native(result, DatagramLink(self, addr))


# -- serial ------------------------------------------------------------------------------


class _SerialLink(StreamLink):
    kind = "serial"
    max_inflight = MAX_INFLIGHT_TRUNK


class SerialListener:
    """One serial line (``serial.serial_for_url``: /dev/ttyS0, a pty,
    socket://host:port, rfc2217://, loop://).  A reader thread per line
    feeds the loop; writes go through a one-thread executor so they stay in
    order.  A line that fails or cannot be opened is reopened with capped,
    jittered backoff until stop()."""

    kind = "serial"  # metrics label

    def __init__(self, rx: NativeListenerHost, spec, backoff: Backoff | None = None):
        self.rx = rx
        self.spec = spec
        self.address = spec.url
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
            link.gone()
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
