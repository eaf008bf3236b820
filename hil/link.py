"""The fault-injection link: an asyncio proxy between a panel and a receiver.

A panel under test is pointed at the link instead of the receiver; the link
forwards its traffic and applies faults per direction ("up" is panel to
receiver, "down" is receiver to panel):

    drop        probability a unit is lost
    duplicate   probability a unit is delivered twice
    reorder     probability a unit is held back and delivered after the next
    corrupt     probability `corrupt_bits` random bits of a unit are flipped
    delay_s     added latency, plus up to `jitter_s` of uniform jitter
    throttle    bytes per second the direction carries (store and forward)
    cut         the direction carries nothing (a line cut); on TCP
                ``cut(reset=True)`` also resets every connection and refuses
                new ones while the cut lasts

Three kinds of link share that machinery: :class:`TcpLink` (a pair of pipes
per accepted connection), :class:`UdpLink` (per datagram; replies go back to
the client address the request came from) and :class:`SerialLink` (two
ports opened with ``serial.serial_for_url``, e.g. the two ends of a socat
pty pair made by :func:`pty_pair`).

The unit a fault acts on is a whole native frame where the traffic is
native frames: a UDP datagram is one unit; a stream (TCP, serial) is cut
into units at frame boundaries found with the same header rules as
glwire.FrameReader (sync word, header CRC, body length), and bytes that are
not a frame pass as raw units.  So "drop" on TCP loses exactly one frame,
as a lossy gateway or a serial line with a dead byte would, and the far
end's FrameReader must resynchronise on the next.

Invariants:

- Reproducible from a seed: every pipe (one per direction per connection or
  UDP client, numbered in order of arrival) draws its decisions from its
  own ``random.Random`` keyed by (seed, link name, pipe number, direction),
  and draws the same amount of randomness for every unit whatever faults
  are enabled.  The same traffic in the same order through the same fault
  settings meets the same fate.  (Time enters only through schedules and
  through reorder holds that expire: both are reported in the timeline.)
- Order is kept unless a reorder is drawn: a unit's delivery time is never
  before the previous unit's, so delay and jitter stretch a stream but do
  not shuffle it (TCP cannot reorder; a reorder fault is a deliberate act).
- Bounded: a pipe holds at most MAX_QUEUE units; beyond that it drops and
  counts ("overflow"), as a real buffer would.
- Every unit gets one timeline entry when it arrives (label, fate) that is
  filled in with its delivery times, so a report shows each frame once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, fields, replace

import serial

from protocol.lean import glwire as w

from hil.timeline import LINK, Timeline

_LOGGER = logging.getLogger(__name__)

UP = "up"  # panel -> receiver
DOWN = "down"  # receiver -> panel
DIRECTIONS = (UP, DOWN)

# A pipe holds at most this many units in flight.  A panel has one frame
# outstanding per path (lockstep) and a receiver answers each; even a burst
# of a few hundred panels behind one link stays far below this.
MAX_QUEUE = 4096
# A reordered unit waits at most this long for a successor to overtake it;
# then it is delivered anyway (a reorder must not turn into a drop).
REORDER_HOLD_S = 0.25
# A stream segmenter holding the start of what may be a frame hands it on
# as raw bytes after this much silence (so console text containing "GL"
# cannot stall the pipe).
IDLE_FLUSH_S = 0.2
# Bytes of a raw (non-frame) unit shown in the timeline.
RAW_PREVIEW = 32
# Frames kept per direction for replay (hil scenarios play attacker).
CAPTURE_FRAMES = 512
# Socket read size; glwire.READ_SIZE is what the firmware reads.
READ_SIZE = 4096


def _directions(direction: str) -> tuple[str, ...]:
    if direction in ("both", None):
        return DIRECTIONS
    if direction not in DIRECTIONS:
        raise ValueError("direction must be 'up', 'down' or 'both', not %r" % (direction,))
    return (direction,)


@dataclass
class Faults:
    """What one direction of a link does to its traffic."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    corrupt_bits: int = 1
    delay_s: float = 0.0
    jitter_s: float = 0.0
    throttle: float | None = None  # bytes per second, None = unlimited
    cut: bool = False

    def check(self) -> "Faults":
        for name in ("drop", "duplicate", "reorder", "corrupt"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError("%s is a probability (0..1), not %r" % (name, v))
        if self.corrupt_bits < 1:
            raise ValueError("corrupt_bits must be >= 1")
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay and jitter must be >= 0")
        if self.throttle is not None and self.throttle <= 0:
            raise ValueError("throttle is bytes/s > 0 (None for unlimited)")
        return self

    def active(self) -> dict:
        """The settings that differ from a clean link."""
        clean = Faults()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(clean, f.name)}


def label(unit: bytes) -> dict | None:
    """What a unit is, as glwire.FrameReader sees it: a frame's header
    fields, a bad frame (intact header, bad CRC), or None for raw bytes."""
    r = w.FrameReader()
    if len(unit) > w.MAX_BUFFER:
        return None
    r.receive_data(unit)
    f = r.next_frame()
    if not isinstance(f, (w.Frame, w.BadFrame)):  # NEED_DATA: not a whole frame
        return None
    out = {"account": f.account, "seq": f.seq, "type": w.MSG_NAMES.get(f.mtype, f.mtype),
           "ts": f.timestamp}
    if f.flags & w.FLAG_BACKUP_PATH:
        out["backup"] = True
    if isinstance(f, w.BadFrame):
        out["bad_crc"] = True
    return out


def _header_ok(buf, off: int) -> bool:
    # The same test glwire.FrameReader applies before trusting a length.
    if w.crc16(buf, off, off + 19) != (buf[off + 19] << 8 | buf[off + 20]):
        return False
    blen = buf[off + 17] << 8 | buf[off + 18]
    return w.MIN_BODY_LEN <= blen <= w.MAX_BODY_LEN and blen % 16 == 0


class Segmenter:
    """Cuts a byte stream into units: whole native frames, and the raw bytes
    between them.  Sans-I/O: ``feed(b)`` returns the units now complete;
    ``flush()`` returns whatever is held (call it after IDLE_FLUSH_S)."""

    def __init__(self):
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data) -> list[bytes]:
        self._buf.extend(data)
        out: list[bytes] = []
        buf = self._buf
        raw_end = 0  # buf[:raw_end] is raw bytes not yet emitted
        pos = 0
        while True:
            i = buf.find(w.SYNC, pos)
            if i < 0:
                # keep a trailing 'G' that may start a sync word
                end = len(buf) - (1 if buf and buf[-1] == 0x47 else 0)
                raw_end = max(raw_end, end)
                break
            if len(buf) - i < w.HEADER_LEN:
                raw_end = i
                break
            if not _header_ok(buf, i):
                pos = i + 1
                raw_end = pos
                continue
            total = w.HEADER_LEN + (buf[i + 17] << 8 | buf[i + 18]) + w.MAC_LEN + w.CRC_LEN
            if len(buf) - i < total:
                raw_end = i
                break
            if i:
                out.append(bytes(buf[:i]))
            out.append(bytes(buf[i:i + total]))
            del buf[:i + total]
            raw_end = 0
            pos = 0
        if raw_end:
            out.append(bytes(buf[:raw_end]))
            del buf[:raw_end]
        return out

    def flush(self) -> list[bytes]:
        if not self._buf:
            return []
        out = [bytes(self._buf)]
        self._buf.clear()
        return out


class _Pipe:
    """One direction of one connection: decisions, queue and delivery."""

    def __init__(self, link: "Link", direction: str, index: int, sink, stream: bool):
        self.link = link
        self.direction = direction
        self.index = index
        self.sink = sink  # sink(bytes) -> None, synchronous
        self.segmenter = Segmenter() if stream else None
        self.rng = random.Random("%s/%s/%d/%s" % (link.seed, link.name, index, direction))
        self.units = 0  # units seen (the decision index)
        self._queue: deque = deque()  # (deliver_at, data, entry, copy)
        self._held = None  # a unit held back by a reorder: (data, entry, handle)
        self._last_at = 0.0  # delivery time of the last unit queued
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flush_handle = None
        self.closed = False
        self._task = asyncio.get_running_loop().create_task(self._deliver())

    # -- arrival --------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if self.segmenter is None:
            self._unit(bytes(data))
            return
        for u in self.segmenter.feed(data):
            self._unit(u)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self.segmenter.pending:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(IDLE_FLUSH_S, self._idle_flush)

    def _idle_flush(self) -> None:
        self._flush_handle = None
        if self.segmenter is not None:
            for u in self.segmenter.flush():
                self._unit(u)

    def _unit(self, data: bytes) -> None:
        f = self.link.faults[self.direction]
        n = self.units
        self.units += 1
        # Always draw the same five numbers, so a fault's decisions do not
        # depend on which other faults are enabled.
        r_drop, r_dup, r_reorder, r_corrupt, r_jitter = (self.rng.random() for _ in range(5))
        stats = self.link.stats[self.direction]
        stats["units"] += 1
        stats["bytes"] += len(data)
        lab = label(data)
        fate: list[str] = []
        entry = self.link.timeline.record(
            LINK, "frame" if lab else "raw", link=self.link.name, dir=self.direction,
            pipe=self.index, n=n, len=len(data), fate=fate, delivered=[],
            **(lab or {"hex": data[:RAW_PREVIEW].hex()}))
        if lab is not None:
            self.link.captured[self.direction].append((entry, data))
        if f.cut:
            fate.append("cut")
            stats["cut"] += 1
            return
        if r_drop < f.drop:
            fate.append("drop")
            stats["dropped"] += 1
            return
        if r_corrupt < f.corrupt:
            data = self._corrupt(data, n, f.corrupt_bits)
            fate.append("corrupt:%d" % f.corrupt_bits)
            stats["corrupted"] += 1
        delay = f.delay_s + r_jitter * f.jitter_s
        if delay:
            fate.append("delay:%.3f" % delay)
        copies = 2 if r_dup < f.duplicate else 1
        if copies == 2:
            fate.append("duplicate")
            stats["duplicated"] += 1
        held = self._held
        if held is None and r_reorder < f.reorder:
            # hold this one back; the next unit overtakes it
            fate.append("reorder")
            stats["reordered"] += 1
            loop = asyncio.get_running_loop()
            handle = loop.call_later(max(self.link.reorder_hold_s, delay), self._release_held)
            self._held = (data, entry, copies, delay, handle)
            self._idle.clear()
            return
        self._enqueue(data, entry, copies, delay)
        if held is not None:
            self._held = None
            held[4].cancel()
            self._enqueue(held[0], held[1], held[2], held[3])

    def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held[1].detail["fate"].append("reorder-timeout")
            self._enqueue(held[0], held[1], held[2], held[3])

    def _corrupt(self, data: bytes, n: int, bits: int) -> bytes:
        # Positions come from their own generator keyed by the unit number,
        # so the main stream of decisions does not depend on unit sizes.
        r = random.Random("%s/%s/%d/%s/corrupt/%d" % (
            self.link.seed, self.link.name, self.index, self.direction, n))
        b = bytearray(data)
        for pos in r.sample(range(len(b) * 8), min(bits, len(b) * 8)):
            b[pos >> 3] ^= 0x80 >> (pos & 7)
        return bytes(b)

    def _enqueue(self, data: bytes, entry, copies: int, delay: float) -> None:
        stats = self.link.stats[self.direction]
        for copy in range(copies):
            if len(self._queue) >= MAX_QUEUE:
                entry.detail["fate"].append("overflow")
                stats["overflow"] += 1
                continue
            loop = asyncio.get_running_loop()
            at = max(loop.time() + delay, self._last_at)
            self._last_at = at
            self._queue.append((at, data, entry, copy))
        self._idle.clear()
        self._wake.set()

    # -- delivery -------------------------------------------------------------

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        busy_until = 0.0  # throttle: when the line is free again
        while True:
            if not self._queue:
                if self._held is None:
                    self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            at, data, entry, copy = self._queue[0]
            f = self.link.faults[self.direction]
            if f.throttle:
                at = max(at, busy_until) + len(data) / f.throttle
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._queue.popleft()
            busy_until = max(at, loop.time())
            if self.link.faults[self.direction].cut:
                # a cut also loses what was on the wire
                entry.detail["fate"].append("cut-in-flight")
                self.link.stats[self.direction]["cut"] += 1
                continue
            try:
                self.sink(data)
            except Exception as e:  # the far end went away: stop delivering
                _LOGGER.debug("%s %s pipe %d: sink failed: %s", self.link.name,
                              self.direction, self.index, e)
                entry.detail["fate"].append("lost:%s" % type(e).__name__)
                continue
            self.link.stats[self.direction]["delivered"] += 1
            entry.detail["delivered"].append(round(self.link.timeline.now(), 6))

    async def drained(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is queued or held (True) or timeout (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def close(self) -> None:
        self.closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        if self._held is not None:
            self._held[4].cancel()
            self._held = None
        self._task.cancel()


def _new_stats() -> dict:
    return {k: 0 for k in ("units", "bytes", "delivered", "dropped", "duplicated",
                           "reordered", "corrupted", "cut", "overflow")}


class Link:
    """Fault settings, control and schedules shared by every kind of link.

    Control methods (usable live from a test, or as schedule steps):
    ``set(direction, **faults)``, ``clear(direction)``, ``cut(direction,
    reset=False)``, ``restore(direction)``.  ``direction`` is "up", "down"
    or "both" (the default)."""

    kind = "link"

    def __init__(self, name: str = "link", seed: int | str = 0,
                 timeline: Timeline | None = None):
        self.name = name
        self.seed = seed
        self.timeline = timeline if timeline is not None else Timeline(name)
        self.faults = {d: Faults() for d in DIRECTIONS}
        # how long a reordered unit waits for a successor (REORDER_HOLD_S)
        self.reorder_hold_s = REORDER_HOLD_S
        self.stats = {d: _new_stats() for d in DIRECTIONS}
        self._pipes: list[_Pipe] = []
        self._pipe_count = 0
        self._schedules: list[asyncio.Task] = []
        # The last frames seen per direction, as sent (before any fault):
        # what an attacker on the line could have recorded.
        self.captured = {d: deque(maxlen=CAPTURE_FRAMES) for d in DIRECTIONS}

    # -- control --------------------------------------------------------------

    def set(self, direction: str = "both", **faults) -> None:
        for d in _directions(direction):
            self.faults[d] = replace(self.faults[d], **faults).check()
        self._note("set", direction, **faults)

    def clear(self, direction: str = "both") -> None:
        for d in _directions(direction):
            self.faults[d] = Faults()
        self._note("clear", direction)

    def cut(self, direction: str = "both", reset: bool = False) -> None:
        for d in _directions(direction):
            self.faults[d] = replace(self.faults[d], cut=True)
        self._note("cut", direction, reset=reset)
        if reset:
            self._reset()

    def restore(self, direction: str = "both") -> None:
        for d in _directions(direction):
            self.faults[d] = replace(self.faults[d], cut=False)
        self._note("restore", direction)

    def is_cut(self, direction: str = UP) -> bool:
        return self.faults[direction].cut

    def _reset(self) -> None:
        """Reset connections (TCP only; a datagram or serial link has none)."""

    def _note(self, action: str, direction: str, **detail) -> None:
        self.timeline.record(LINK, "control", link=self.name, action=action,
                             dir=direction, **detail)
        _LOGGER.info("link %s: %s %s %s", self.name, action, direction, detail or "")

    def schedule(self, steps) -> asyncio.Task:
        """Run control steps over time, relative to now.  Each step is
        ``(at_s, action)`` or ``(at_s, action, kwargs)`` where action is a
        method name ("cut", "restore", "set", "clear") or a callable taking
        the link.  Returns the task (cancel it to stop the script)."""
        norm = []
        for step in steps:
            step = tuple(step)
            at, action = step[0], step[1]
            kwargs = step[2] if len(step) > 2 else {}
            if isinstance(action, str):
                if action not in ("set", "clear", "cut", "restore"):
                    raise ValueError("unknown link action %r" % action)
            elif not callable(action):
                raise ValueError("a step's action is a method name or a callable")
            norm.append((float(at), action, dict(kwargs)))
        norm.sort(key=lambda s: s[0])

        async def run():
            loop = asyncio.get_running_loop()
            start = loop.time()
            for at, action, kwargs in norm:
                delay = start + at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if isinstance(action, str):
                    getattr(self, action)(**kwargs)
                else:
                    r = action(self, **kwargs)
                    if asyncio.iscoroutine(r):
                        await r

        task = asyncio.get_running_loop().create_task(run())
        self._schedules.append(task)
        return task

    def recorded(self, direction: str = UP, **match) -> list[tuple[dict, bytes]]:
        """Frames captured in `direction` whose label matches, oldest first:
        [(label detail, raw bytes)]."""
        return [(e.detail, data) for e, data in self.captured[direction]
                if all(e.detail.get(k) == v for k, v in match.items())]

    def inject(self, direction: str, data: bytes, pipe: int | None = None) -> None:
        """Put bytes on the line as an attacker would: into the newest
        connection's pipe (or pipe number `pipe`) in `direction`, after
        what is queued, with no faults applied."""
        pipes = [p for p in self._pipes if p.direction == direction and not p.closed
                 and (pipe is None or p.index == pipe)]
        if not pipes:
            raise LookupError("link %s has no open %s pipe to inject into" % (self.name,
                                                                              direction))
        p = pipes[-1]
        lab = label(data)
        entry = self.timeline.record(LINK, "frame" if lab else "raw", link=self.name,
                                     dir=direction, pipe=p.index, n=-1, len=len(data),
                                     fate=["injected"], delivered=[], **(lab or {}))
        p._enqueue(bytes(data), entry, 1, 0.0)

    # -- pipes ------------------------------------------------------------------

    def _new_pipes(self, up_sink, down_sink, stream: bool) -> tuple[_Pipe, _Pipe]:
        i = self._pipe_count
        self._pipe_count += 1
        up = _Pipe(self, UP, i, up_sink, stream)
        down = _Pipe(self, DOWN, i, down_sink, stream)
        self._pipes += [up, down]
        return up, down

    def _drop_pipes(self, *pipes) -> None:
        for p in pipes:
            p.close()
            if p in self._pipes:
                self._pipes.remove(p)

    async def drained(self, timeout: float = 5.0) -> bool:
        results = [await p.drained(timeout) for p in list(self._pipes)]
        return all(results)

    def frames(self, direction: str | None = None, **match) -> list:
        """Timeline entries of native frames seen on this link."""
        if direction is not None:
            match["dir"] = direction
        return self.timeline.select(LINK, "frame", link=self.name, **match)

    async def close(self) -> None:
        for t in self._schedules:
            t.cancel()
        for p in list(self._pipes):
            p.close()
        self._pipes.clear()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


# --- TCP ------------------------------------------------------------------------


class _TcpConn:
    def __init__(self, link: "TcpLink", client_r, client_w):
        self.link = link
        self.client_r = client_r
        self.client_w = client_w
        self.up_r: asyncio.StreamReader | None = None
        self.up_w: asyncio.StreamWriter | None = None
        self.pipes: tuple = ()
        self.tasks: list[asyncio.Task] = []
        self.peer = client_w.get_extra_info("peername")

    def abort(self) -> None:
        for wr in (self.client_w, self.up_w):
            if wr is not None:
                tr = wr.transport
                if tr is not None:
                    tr.abort()


class TcpLink(Link):
    """Listens on `listen`; each accepted connection gets its own connection
    to `upstream` and its own pair of pipes (so its own random stream)."""

    kind = "tcp"

    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0),
                 **kw):
        super().__init__(**kw)
        self.upstream: tuple[str, int] = (upstream[0], int(upstream[1]))
        self.listen = listen
        self.address: tuple[str, int] | None = None
        self.connections: list[_TcpConn] = []
        self.accepted = 0
        self.refused = 0
        self._server = None
        self._reset_on_cut = False

    async def start(self) -> "TcpLink":
        self._server = await asyncio.start_server(self._accept, *self.listen)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (host, port)
        _LOGGER.info("tcp link %s: %s:%d -> %s:%d", self.name, host, port, *self.upstream)
        return self

    def cut(self, direction: str = "both", reset: bool = False) -> None:
        self._reset_on_cut = reset
        super().cut(direction, reset)

    def restore(self, direction: str = "both") -> None:
        super().restore(direction)
        if not (self.faults[UP].cut or self.faults[DOWN].cut):
            self._reset_on_cut = False

    def _reset(self) -> None:
        for c in list(self.connections):
            c.abort()

    async def _accept(self, client_r, client_w) -> None:
        conn = _TcpConn(self, client_r, client_w)
        self.accepted += 1
        if self._reset_on_cut and (self.faults[UP].cut or self.faults[DOWN].cut):
            self.refused += 1
            self.timeline.record(LINK, "conn", link=self.name, event="refused (cut)",
                                 peer=str(conn.peer))
            conn.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError as e:
            self.refused += 1
            self.timeline.record(LINK, "conn", link=self.name, event="upstream refused",
                                 peer=str(conn.peer), error=str(e))
            conn.abort()
            return
        conn.up_r, conn.up_w = up_r, up_w
        up, down = self._new_pipes(up_w.write, client_w.write, stream=True)
        conn.pipes = (up, down)
        self.connections.append(conn)
        self.timeline.record(LINK, "conn", link=self.name, event="open", pipe=up.index,
                             peer=str(conn.peer))
        loop = asyncio.get_running_loop()
        conn.tasks = [loop.create_task(self._pump(conn, client_r, up, conn.up_w)),
                      loop.create_task(self._pump(conn, conn.up_r, down, client_w))]
        try:
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in conn.tasks:
                t.cancel()
            conn.abort()
            self._drop_pipes(up, down)
            if conn in self.connections:
                self.connections.remove(conn)
            self.timeline.record(LINK, "conn", link=self.name, event="closed", pipe=up.index)

    async def _pump(self, conn, reader, pipe: _Pipe, far_writer) -> None:
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                pipe.feed(data)
        except (ConnectionError, OSError):
            pass
        # EOF: pass on what is in flight (a clean close is not a cut), then close
        await pipe.drained(timeout=2.0)
        try:
            far_writer.close()
        except Exception:
            pass

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self.connections):
            c.abort()
            for t in c.tasks:
                t.cancel()
        await super().close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                pass


# --- UDP --------------------------------------------------------------------------


class _UdpClient(asyncio.DatagramProtocol):
    """The link's upstream socket for one client address."""

    def __init__(self, link: "UdpLink", addr):
        self.link = link
        self.addr = addr
        self.transport: asyncio.DatagramTransport | None = None
        self.up: _Pipe | None = None
        self.down: _Pipe | None = None

    def datagram_received(self, data, addr) -> None:
        if self.down is not None:
            self.down.feed(data)

    def error_received(self, exc) -> None:  # ICMP port unreachable: receiver down
        _LOGGER.debug("udp link %s: upstream error for %s: %s", self.link.name, self.addr, exc)


class _UdpFront(asyncio.DatagramProtocol):
    def __init__(self, link: "UdpLink"):
        self.link = link

    def datagram_received(self, data, addr) -> None:
        self.link._from_client(data, addr)


class UdpLink(Link):
    """Listens for datagrams on `listen`; each client address gets its own
    upstream socket (so replies find their way back) and pipe pair."""

    kind = "udp"

    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0),
                 **kw):
        super().__init__(**kw)
        self.upstream: tuple[str, int] = (upstream[0], int(upstream[1]))
        self.listen = listen
        self.address = None
        self.clients: dict = {}
        self._front = None
        self._pending: dict = {}

    async def start(self) -> "UdpLink":
        loop = asyncio.get_running_loop()
        self._front, _ = await loop.create_datagram_endpoint(lambda: _UdpFront(self),
                                                             local_addr=self.listen)
        self.address = self._front.get_extra_info("sockname")[:2]
        _LOGGER.info("udp link %s: %s:%d -> %s:%d", self.name, *self.address, *self.upstream)
        return self

    def _from_client(self, data: bytes, addr) -> None:
        c = self.clients.get(addr)
        if c is not None and c.up is not None:
            c.up.feed(data)
            return
        # first datagram from this address: open its upstream socket, keep
        # what arrives meanwhile in order
        self._pending.setdefault(addr, []).append(data)
        if c is None:
            c = _UdpClient(self, addr)
            self.clients[addr] = c
            asyncio.get_running_loop().create_task(self._open_client(c))

    async def _open_client(self, c: _UdpClient) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: c,
                                                           remote_addr=self.upstream)
        c.transport = transport
        front = self._front
        if front is None:  # closed before the upstream socket opened
            transport.close()
            return
        c.up, c.down = self._new_pipes(transport.sendto,
                                       lambda d, a=c.addr: front.sendto(d, a), stream=False)
        self.timeline.record(LINK, "conn", link=self.name, event="udp client", pipe=c.up.index,
                             peer=str(c.addr))
        for data in self._pending.pop(c.addr, []):
            c.up.feed(data)

    async def close(self) -> None:
        await super().close()
        for c in self.clients.values():
            if c.transport is not None:
                c.transport.close()
        if self._front is not None:
            self._front.close()


# --- serial --------------------------------------------------------------------------


class SerialLink(Link):
    """Between two serial ports opened with ``serial.serial_for_url``: the
    panel's side and the receiver's side (a real UART, a pty, socket://,
    rfc2217://, ...).  One pipe pair for the life of the link."""

    kind = "serial"

    def __init__(self, panel_url: str, receiver_url: str, baudrate: int = 115200, **kw):
        super().__init__(**kw)
        self.panel_url = panel_url
        self.receiver_url = receiver_url
        self.baudrate = baudrate
        self.panel_port = None
        self.receiver_port = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    async def start(self) -> "SerialLink":
        loop = asyncio.get_running_loop()
        self.panel_port = serial.serial_for_url(self.panel_url, baudrate=self.baudrate,
                                                timeout=0.05)
        self.receiver_port = serial.serial_for_url(self.receiver_url, baudrate=self.baudrate,
                                                   timeout=0.05)
        up, down = self._new_pipes(self.receiver_port.write, self.panel_port.write, stream=True)
        for port, pipe in ((self.panel_port, up), (self.receiver_port, down)):
            t = threading.Thread(target=self._reader, args=(loop, port, pipe),
                                 name="hil-serial-%s-%s" % (self.name, pipe.direction),
                                 daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _reader(self, loop, port, pipe) -> None:
        while not self._stop.is_set():
            try:
                data = port.read(READ_SIZE)
            except Exception as e:  # port closed under us
                _LOGGER.debug("serial link %s: read stopped: %s", self.name, e)
                return
            if data:
                try:
                    loop.call_soon_threadsafe(pipe.feed, data)
                except RuntimeError:  # loop closed
                    return

    async def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            await asyncio.get_running_loop().run_in_executor(None, t.join, 1.0)
        await super().close()
        for p in (self.panel_port, self.receiver_port):
            if p is not None:
                p.close()


class PtyPair:
    """Two connected pseudo-terminals made by socat (a null-modem cable in
    software): ``a`` and ``b`` are device paths for serial_for_url."""

    def __init__(self, directory: str | None = None):
        if shutil.which("socat") is None:
            raise RuntimeError("socat is not installed (Debian: apt-get install socat)")
        self._tmp = None
        if directory is None:
            self._tmp = tempfile.mkdtemp(prefix="hil-pty-")
            directory = self._tmp
        os.makedirs(directory, exist_ok=True)
        self.a = os.path.join(directory, "a")
        self.b = os.path.join(directory, "b")
        self.proc = subprocess.Popen(
            ["socat", "pty,raw,echo=0,link=%s" % self.a, "pty,raw,echo=0,link=%s" % self.b],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError("socat exited: %s" % err)
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.01)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def pty_pair(directory: str | None = None) -> PtyPair:
    return PtyPair(directory)


class Links:
    """The links of one panel under test, by path name ("primary",
    "backup"): ``links.primary.cut()``; control methods on the set apply
    to every link (``links.set(drop=0.2)``)."""

    def __init__(self, **links: Link):
        self._links = dict(links)

    def __getattr__(self, name: str) -> Link:
        try:
            return self.__dict__["_links"][name]
        except KeyError:
            raise AttributeError("no link %r (have: %s)" % (
                name, ", ".join(self.__dict__["_links"]))) from None

    def __getitem__(self, name: str) -> Link:
        return self._links[name]

    def __iter__(self):
        return iter(self._links.values())

    def names(self) -> list[str]:
        return list(self._links)

    def set(self, direction: str = "both", **faults) -> None:
        for link in self:
            link.set(direction, **faults)

    def clear(self, direction: str = "both") -> None:
        for link in self:
            link.clear(direction)

    def cut(self, direction: str = "both", reset: bool = False) -> None:
        for link in self:
            link.cut(direction, reset)

    def restore(self, direction: str = "both") -> None:
        for link in self:
            link.restore(direction)

    def frames(self, direction: str | None = None, **match) -> list:
        out = []
        for link in self:
            out += link.frames(direction, **match)
        return sorted(out, key=lambda e: e.t)

    async def close(self) -> None:
        for link in self:
            await link.close()
