"""The control protocol, from the host's side: the one client.

The protocol (firmware/device/control.py; docs/simulator.md, "Control
protocol"; docs/qa.md, "Console test mode") is one JSON object per line
each way: ``{"cmd": ..., "id": N, ...}`` in, a JSON object with an "ok"
member out.  The simulated board serves it on a TCP socket; a board in
test mode serves it on its console, between its log lines; the bench's
I/O fixture answers the same shape.

- :class:`ControlCodec` is the protocol, sans-I/O (after h11): requests
  to bytes, bytes to :class:`Reply` and :class:`ConsoleLine` events.
- :class:`SimControl` is the synchronous client of a simulated panel's
  control socket (``HOST:PORT``): one connection per request, as
  ``guardline-panel ctl`` and the walk test's ``--auto`` driver use it.
- :class:`ControlChannel` is the asyncio client of any
  ``serial.serial_for_url`` port (a board's console, ``socket://`` to the
  sim, ``spy://`` for a traffic dump), kept open, with console text kept
  beside the replies: the HIL drivers use it.

Invariants:

- Each request carries an "id" that the firmware echoes.  A reply with
  another id is a late answer to a command already given up on (a board
  that was still booting reads its console buffer late): it is console
  text, never the answer to the current command.  A reply without an id
  (a fixture) is the answer.
- A client never re-sends a command behind its caller's back: no answer
  is :class:`ControlTimeout`, a closed or silent port
  :class:`ControlUnreachable` (an OSError, with a sentence saying where),
  and a refusal (``"ok": false``) :class:`ControlRefused` with the
  firmware's reason (the synchronous client returns refusals as the
  firmware's reply, for a person or a driver to read).
- Every buffer is bounded: a line longer than ``MAX_LINE`` is console
  text, cut; kept console text is at most ``CONSOLE_MAX`` bytes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field

# A console that never ends a line is handed on in pieces of this size.
MAX_LINE = 65536
# Console text a channel keeps for take_console (the tail is what a report shows).
CONSOLE_MAX = 256 * 1024
# Commands that only read: sent again when a connection closed before
# their answer (the VM restarting); any other command is never re-sent.
READ_ONLY = frozenset({"ping", "state", "outputs", "log", "gc"})
# A command should be answered well within this; the deadline is generous
# because a loaded CI host running the VM can stall a while.
COMMAND_TIMEOUT_S = 15.0
DEFAULT_CONTROL = "127.0.0.1:7800"


class ControlError(Exception):
    """The panel could not be driven (the message says why)."""


class ControlUnreachable(ControlError, OSError):
    """Nothing answers there: nothing listens, the port closed, the answer
    was not a reply."""


class ControlNotListening(ControlUnreachable):
    """Nothing listens on the control socket (the panel is not running, or
    its VM is still starting): the command was not sent."""


class ControlTimeout(ControlUnreachable, TimeoutError):
    """The panel did not answer in time."""


class ControlRefused(ControlError):
    """The firmware answered ``"ok": false`` (its reason attached)."""


NEED_DATA = type("NEED_DATA", (), {"__repr__": lambda self: "NEED_DATA"})()


@dataclass
class Reply:
    """The answer to the command in flight, as the firmware sent it."""

    msg: dict = field(default_factory=dict)


@dataclass
class ConsoleLine:
    """Anything else the port said: a log line, a late reply."""

    text: bytes = b""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ValueError with
    a sentence otherwise."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("%r: expected HOST:PORT, e.g. %s" % (text, DEFAULT_CONTROL))
    return host.strip("[]"), int(port)


class ControlCodec:
    """The control protocol without I/O: ``request`` gives the bytes of a
    command (and remembers its id), ``receive_data`` takes what the port
    said, ``next_event`` returns a :class:`Reply` to the command in
    flight, a :class:`ConsoleLine`, or ``NEED_DATA``."""

    def __init__(self):
        self._buf = bytearray()
        self._last_id = 0
        self.pending: int | None = None  # id of the command awaiting its reply

    def request(self, cmd: str, **args) -> bytes:
        self._last_id += 1
        self.pending = self._last_id
        return json.dumps({"cmd": cmd, "id": self._last_id, **args}).encode() + b"\n"

    def encode(self, req: dict) -> bytes:
        """A request given as a dict (``{"cmd": ..., ...}``)."""
        args = {k: v for k, v in req.items() if k not in ("cmd", "id")}
        return self.request(str(req.get("cmd")), **args)

    def abandon(self) -> None:
        """The command in flight was given up on: a reply to it that comes
        later is console text."""
        self.pending = None

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_event(self):
        i = self._buf.find(b"\n")
        if i < 0:
            if len(self._buf) >= MAX_LINE:  # a console that never ends a line
                text = bytes(self._buf)
                self._buf.clear()
                return ConsoleLine(text)
            return NEED_DATA
        line = bytes(self._buf[:i]).rstrip(b"\r")
        del self._buf[:i + 1]
        msg = None
        if line.startswith(b"{"):
            try:
                msg = json.loads(line)
            except ValueError:
                msg = None
        if isinstance(msg, dict) and "ok" in msg and self.pending is not None \
                and msg.get("id", self.pending) == self.pending:
            self.pending = None
            return Reply(msg)
        return ConsoleLine(line)


class SimControl:
    """A simulated panel's control socket (docs/simulator.md): one
    request per connection, one reply.  Failures are
    :class:`ControlUnreachable` (an OSError) with a sentence: nothing
    listening, no answer, an answer that is not a reply.  A refusal is
    returned as the firmware's reply (``"ok": false`` and its error)."""

    def __init__(self, address):
        self.addr = address if isinstance(address, tuple) else parse_address(address)

    def __repr__(self) -> str:
        return "SimControl(%s:%d)" % self.addr

    def __call__(self, req: dict, timeout: float = 10.0) -> dict:
        where = "control socket %s:%d" % self.addr
        codec = ControlCodec()
        said: list[bytes] = []
        try:
            with socket.create_connection(self.addr, timeout=timeout) as s:
                s.sendall(codec.encode(req))
                deadline = time.monotonic() + timeout
                while True:
                    ev = codec.next_event()
                    if isinstance(ev, Reply):
                        ev.msg.pop("id", None)  # ours, one request per connection
                        return ev.msg
                    if isinstance(ev, ConsoleLine):
                        said.append(ev.text)
                        continue
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    data = s.recv(4096)
                    if not data:
                        break
                    codec.receive_data(data)
        except ConnectionRefusedError:
            raise ControlNotListening(
                "nothing listens on %s:%d: is the simulated panel running "
                "(guardline-panel sim CONFIG --control %s:%d)?" % (self.addr + self.addr)) \
                from None
        except socket.timeout:
            raise ControlTimeout("%s did not answer within %.0f s" % (where, timeout)) from None
        except OSError as e:
            raise ControlUnreachable("%s: %s" % (where, e.strerror or e)) from None
        if said:
            raise ControlUnreachable("%s answered something that is not JSON: %r"
                                     % (where, said[0][:80]))
        raise ControlUnreachable("%s closed without an answer" % where)

    def call(self, cmd: str, timeout: float = 10.0, **args) -> dict:
        """``cmd`` with ``args``; the reply, or ControlRefused."""
        reply = self({"cmd": cmd, **args}, timeout)
        if not reply.get("ok"):
            raise ControlRefused("%s refused: %s" % (cmd, reply.get("error", reply)))
        return reply


class ControlChannel:
    """Commands and replies over a ``serial.serial_for_url`` port, kept
    open; every other line is console output, kept (bounded) for
    :meth:`take_console` and handed to ``on_console(text)``.

    One command is in flight at a time (a lock).  A reader thread does
    the blocking reads.  When the port goes away (the board reset, the
    sim VM exited) the channel notes it and the next :meth:`call` reopens
    it, retrying until its deadline."""

    def __init__(self, url: str, baudrate: int = 115200, name: str = "",
                 on_console=None, open_timeout: float = 30.0):
        self.url = url
        self.baudrate = baudrate
        self.name = name or url
        self.on_console = on_console
        self.open_timeout = open_timeout
        self.codec = ControlCodec()
        self._console = bytearray()
        self._lock = threading.Lock()
        self._call_lock: asyncio.Lock | None = None
        self._reply: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.alive = False
        self.opens = 0

    async def open(self, timeout: float | None = None) -> "ControlChannel":
        import serial  # noqa: PLC0415 - only the channel needs pyserial

        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._call_lock is None:
            self._call_lock = asyncio.Lock()
        deadline = time.monotonic() + (self.open_timeout if timeout is None else timeout)
        while True:
            try:
                port = await loop.run_in_executor(
                    None, lambda: serial.serial_for_url(self.url, baudrate=self.baudrate,
                                                        timeout=0.05))
                break
            except (serial.SerialException, OSError, ValueError) as e:
                if time.monotonic() > deadline:
                    raise ControlTimeout("cannot open %s: %s" % (self.url, e)) from e
                await asyncio.sleep(0.1)
        self._stop = threading.Event()
        self.port = port
        self.alive = True
        self.opens += 1
        self._thread = threading.Thread(target=self._reader, args=(port, self._stop),
                                        name="control-%s" % self.name, daemon=True)
        self._thread.start()
        return self

    def _reader(self, port, stop) -> None:
        while not stop.is_set():
            try:
                data = port.read(4096)
            except Exception as e:  # port closed (board reset, sim exited)
                if not stop.is_set():
                    self.alive = False
                    self._fail_reply(ControlUnreachable("%s: port closed: %s" % (self.name, e)))
                return
            if not data:
                continue
            # the codec is shared with call(), which sets its pending id
            # under the same lock before it writes
            with self._lock:
                self.codec.receive_data(data)
                events = []
                while True:
                    ev = self.codec.next_event()
                    if ev is NEED_DATA:
                        break
                    events.append(ev)
            for ev in events:
                if isinstance(ev, Reply):
                    fut = self._reply
                    if fut is not None and self._loop is not None:
                        self._loop.call_soon_threadsafe(_resolve, fut, ev.msg)
                elif ev.text:
                    self._keep_console(ev.text + b"\n")

    def _keep_console(self, data: bytes) -> None:
        with self._lock:
            self._console += data
            if len(self._console) > CONSOLE_MAX:
                del self._console[:len(self._console) - CONSOLE_MAX]
        if self.on_console is not None:
            text = data.decode("utf-8", "replace").rstrip("\n")
            if text:
                self.on_console(text)

    def _fail_reply(self, exc: Exception) -> None:
        fut = self._reply
        if fut is not None and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(_fail, fut, exc)
            except RuntimeError:  # loop closed
                pass

    def take_console(self) -> str:
        """Console text since the last call."""
        with self._lock:
            text = self._console.decode("utf-8", "replace")
            self._console.clear()
        return text

    def console_bytes(self) -> bytes:
        """Console text kept so far (not taken)."""
        with self._lock:
            return bytes(self._console)

    async def call(self, cmd: str, timeout: float = COMMAND_TIMEOUT_S, **args) -> dict:
        """Send one command; return its reply (a dict with "ok": true).
        Raises ControlRefused if the firmware refused, ControlTimeout if
        it did not answer, ControlUnreachable if the port is gone."""
        if self._loop is None or self._call_lock is None:
            await self.open()
        loop, lock = self._loop, self._call_lock
        if loop is None or lock is None:  # open() sets both, or raises
            raise ControlUnreachable("%s: not open" % self.name)
        async with lock:
            if not self.alive or self.port is None:
                await self._reopen(timeout)
            port = self.port
            if port is None:  # _reopen() opens it, or raises
                raise ControlUnreachable("%s: not open" % self.name)
            fut = loop.create_future()
            self._reply = fut
            with self._lock:
                line = self.codec.request(cmd, **args)
            try:
                await loop.run_in_executor(None, port.write, line)
                reply = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise ControlTimeout("%s: no answer to %r within %.0f s"
                                     % (self.name, cmd, timeout)) from None
            except OSError as e:  # serial.SerialException is an IOError
                self.alive = False
                raise ControlUnreachable("%s: cannot send %r: %s" % (self.name, cmd, e)) \
                    from e
            finally:
                self._reply = None
                with self._lock:
                    self.codec.abandon()
        if not reply.get("ok"):
            raise ControlRefused("%s: %s refused: %s" % (self.name, cmd,
                                                         reply.get("error", reply)))
        return reply

    async def _reopen(self, timeout: float) -> None:
        self._close_port()
        await self.open(timeout)

    def mark_gone(self) -> None:
        """The far end went away (the caller knows: it cut the power); the
        next call reopens the port."""
        self.alive = False

    def _close_port(self) -> None:
        self._stop.set()
        self.alive = False
        port, self.port = self.port, None
        if port is None:
            return
        if self.url.startswith("socket://"):
            # pyserial's socket:// close shuts the socket down, then sleeps
            # 0.3 s "in case of quick reconnects"; nothing here needs that
            # (the sim's control socket takes any number of connections),
            # so the sleep is not waited for
            threading.Thread(target=_close_quietly, args=(port,), daemon=True).start()
        else:
            _close_quietly(port)

    async def close(self) -> None:
        self._close_port()
        if self._thread is not None and self._loop is not None:
            await self._loop.run_in_executor(None, self._thread.join, 1.0)
        self._fail_reply(ControlUnreachable("%s: channel closed" % self.name))


def _close_quietly(port) -> None:
    try:
        port.close()
    except Exception:  # noqa: BLE001 - closing a port that is already gone
        pass


def _resolve(fut, value):
    if not fut.done():
        fut.set_result(value)


def _fail(fut, exc):
    if not fut.done():
        fut.set_exception(exc)
