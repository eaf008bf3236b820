"""A panel that is only its session: the real panel-side session core
(``protocol.lean.glpanel.PanelSession``) driven over a real TCP
connection or UDP socket with asyncio, with no firmware behind it (no
zones, no queue): the receiver's tests, the load generator and the chaos
runs use it to send exactly the frames they mean to.  (The whole firmware
as a process is :class:`testkit.panel.PanelProcess`.)

It keeps the firmware's rules: lockstep (one outstanding message), every
transmission sealed afresh, retransmission timing from the session core,
and on a lost connection it reconnects (capped, jittered backoff) and
offers the same message again.  ``deliver`` returns only when the receiver
ACKed, which is what the kill-and-restart tests count on.
"""

from __future__ import annotations

import asyncio
import time

from protocol.lean import glpanel, glwire as w
from receiver.backoff import Backoff

# How often the lockstep loop looks at the session's retransmission timer
# while waiting for an answer.
POLL_S = 0.05


def now_ms() -> int:
    return int(time.monotonic() * 1000)


def event_msg(code: int = 130, qualifier: int = 1, partition: int = 1, zone: int = 1,
              text: str | None = None, value: int | None = None) -> dict:
    return {"type": w.MSG_EVENT, "qualifier": qualifier, "code": code,
            "partition": partition, "zone": zone, "event_time": int(time.time()),
            "text": text, "value": value}


def heartbeat_msg(partitions=(0,)) -> dict:
    return {"type": w.MSG_HEARTBEAT, "troubles": 0, "battery_mv": 13600, "active_path": 1,
            "queue_depth": 0, "partitions": list(partitions)}


class DeliveryTimeout(Exception):
    pass


async def report_until(panel: "SessionPanel", stop: asyncio.Event, gap_s: float,
                       deadline_s: float = 60.0, zone: int = 1) -> None:
    """Report periodic tests (602) lockstep, sequences 1, 2, ..., ``gap_s``
    apart, until ``stop`` is set: each waits for its ACK (``panel.acked``)
    across lost connections, up to ``deadline_s``."""
    seq = 0
    while not stop.is_set():
        seq += 1
        await panel.deliver(seq, event_msg(code=602, zone=zone), deadline_s=deadline_s)
        await asyncio.sleep(gap_s)


class SessionPanel:
    def __init__(self, account: int, key: bytes, host: str, port: int, transport: str = "tcp",
                 backup: bool = False, ack_timeout_ms: int = 1000, max_backoff_ms: int = 4000):
        self.account = account
        self.keys = w.Keys(key)
        self.host = host
        self.port = port
        self.transport = transport
        self.session = glpanel.PanelSession(account, self.keys, backup=backup,
                                            ack_timeout_ms=ack_timeout_ms,
                                            max_backoff_ms=max_backoff_ms)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_q: asyncio.Queue | None = None
        self.naks: list = []
        self.acked: list[int] = []
        self.reconnects = 0
        self.backoff = Backoff(base_s=0.1, cap_s=2.0)

    # -- link -------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.transport == "tcp":
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        else:
            loop = asyncio.get_running_loop()
            q: asyncio.Queue = asyncio.Queue()

            class P(asyncio.DatagramProtocol):
                def datagram_received(self, data, addr):
                    q.put_nowait(data)

            self._udp, _ = await loop.create_datagram_endpoint(
                P, remote_addr=(self.host, self.port))
            self._udp_q = q

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (OSError, ConnectionError):
                pass
            self._writer = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    def _send(self, data: bytes) -> None:
        if self.transport == "tcp":
            if self._writer is None:
                raise ConnectionError("not connected")
            self._writer.write(data)
        else:
            if self._udp is None:
                raise ConnectionError("no UDP socket (connect first)")
            self._udp.sendto(data)

    async def _recv(self, timeout: float) -> bytes | None:
        """Bytes from the receiver, b'' on EOF, None on timeout."""
        try:
            if self.transport == "tcp":
                if self._reader is None:
                    return b""
                return await asyncio.wait_for(self._reader.read(w.READ_SIZE), timeout)
            if self._udp_q is None:
                return b""
            return await asyncio.wait_for(self._udp_q.get(), timeout)
        except asyncio.TimeoutError:
            return None
        except (ConnectionError, OSError):
            return b""

    # -- lockstep -----------------------------------------------------------------------

    async def deliver(self, seq: int, msg: dict, deadline_s: float = 60.0):
        """Send (seq, msg) until ACKed; returns the Acked event.  Survives
        the receiver going away (reconnects) until ``deadline_s``."""
        s = self.session
        s.offer(seq, msg, now_ms())
        end = time.monotonic() + deadline_s
        while True:
            if time.monotonic() > end:
                raise DeliveryTimeout("account %d seq %d not ACKed in %.0f s"
                                      % (self.account, seq, deadline_s))
            if self.transport == "tcp" and self._writer is None:
                try:
                    await self.connect()
                    self.backoff.reset()
                except OSError:
                    await asyncio.sleep(self.backoff.next_delay())
                    continue
            out = s.data_to_send(now_ms(), int(time.time()))
            if out is not None:
                try:
                    self._send(out)
                except (OSError, ConnectionError):
                    await self._lost()
                    continue
            data = await self._recv(POLL_S)
            if data == b"" or (data is None and self._reader is not None
                               and self._reader.at_eof()):
                await self._lost()
                continue
            if data:
                if self.transport == "tcp":
                    s.receive_data(data, int(time.time()))
                else:
                    s.receive_datagram(data, int(time.time()))
            while True:
                ev = s.next_event()
                if ev is glpanel.NEED_DATA:
                    break
                if isinstance(ev, glpanel.Acked) and ev.seq == seq:
                    self.acked.append(seq)
                    return ev
                if isinstance(ev, glpanel.Nakked):
                    self.naks.append(ev)
                if isinstance(ev, glpanel.Resequence):
                    raise RuntimeError("receiver asks to resequence: %r" % ev)

    async def _lost(self) -> None:
        self.session.connection_lost()
        self.reconnects += 1
        w_, self._writer, self._reader = self._writer, None, None
        if w_ is not None:
            w_.close()
        await asyncio.sleep(self.backoff.next_delay())
