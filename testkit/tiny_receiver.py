"""Tiny receivers for firmware tests: what a panel under the VM reports to
when the test is about the panel, not the receiver.

:class:`TinyReceiver` is deliberately small (the real receiver lives in
``receiver/``): a TCP and a UDP socket on loopback (same port number),
glwire to decode, and an ACK sealed with ``FLAG_FROM_RECEIVER`` for every
authentic frame.  It records what arrived, de-duplicated by sequence as a
receiver must.  :class:`TinyDc09Receiver` is the same for a panel
reporting SIA DC-09 (``"protocol": "dc09"``).

Both serve TCP and UDP with one pair of loops; a subclass says how bytes
become frames (:meth:`TinyReceiver._frames`, :meth:`TinyReceiver._datagram`)
and what a frame gets back (:meth:`TinyReceiver._answer`).
"""

from __future__ import annotations

import socket
import threading
import time

from protocol.lean import glwire as w
from testkit.configs import TEST_KEY
from testkit.net import free_port

# Blocking socket calls wake this often to see the stop flag.
POLL_S = 0.2


class TinyReceiver:
    """ACKs every authentic frame from `account` on TCP and UDP (same port
    number).  `frames` lists (path, seq, msg, flags) in arrival order;
    `events` maps seq -> msg for EVENT frames (a retransmission
    overwrites); `acked_events` only those it ACKed (a frame seen while
    not ACKing proves nothing about the panel keeping it)."""

    def __init__(self, account: int, key: bytes = TEST_KEY, port: int | None = None):
        # the receiver's time (Unix seconds): its ACKs set the panel's clock;
        # a test that runs the panel in another year sets this
        self.clock = time.time
        self.account = account
        self.keys = w.Keys(key)
        self.lock = threading.Lock()
        self.frames: list = []
        self.events: dict = {}
        self.acked_events: dict = {}
        self.ack = True  # set False to stay silent (the panel then retries)
        self.tx_seq = 0
        self._stop = False
        self.tcp, self.udp, self.port = self._bind(port)
        self.tcp.listen(4)
        self.tcp.settimeout(POLL_S)
        self.udp.settimeout(POLL_S)
        self._threads = [threading.Thread(target=self._accept, daemon=True),
                         threading.Thread(target=self._udp_loop, daemon=True)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _bind(port: int | None):
        """A TCP and a UDP socket on the same port number (a free one
        unless `port`; a few tries, since the UDP one may be taken)."""
        for _ in range(20):
            p = port or free_port()
            tcp = socket.socket()
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                tcp.bind(("127.0.0.1", p))
                udp.bind(("127.0.0.1", p))
                return tcp, udp, p
            except OSError:
                tcp.close()
                udp.close()
                if port:
                    raise
        raise OSError("no port free for both TCP and UDP on 127.0.0.1")

    def close(self):
        self._stop = True
        for t in self._threads:
            t.join(2)
        self.tcp.close()
        self.udp.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # -- what a subclass says ------------------------------------------------

    def _stream_reader(self):
        return w.FrameReader()

    def _frames(self, reader) -> list:
        """The whole frames a stream reader holds now."""
        out = []
        while True:
            f = reader.next_frame()
            if f is w.NEED_DATA:
                return out
            if not isinstance(f, w.BadFrame):
                out.append(f)

    def _datagram(self, data: bytes):
        """A datagram as a frame (None: not one)."""
        try:
            return w.decode_datagram(data)
        except w.WireError:
            return None

    def _answer(self, frame, path) -> bytes | None:
        if frame.account != self.account or frame.flags & w.FLAG_FROM_RECEIVER:
            return None
        try:
            msg = w.open_frame(self.keys, frame)
        except w.WireError:
            return None
        with self.lock:
            self.frames.append((path, frame.seq, msg, frame.flags))
            if msg["type"] == w.MSG_EVENT:
                self.events[frame.seq] = msg
            if not self.ack:
                return None
            if msg["type"] == w.MSG_EVENT:
                self.acked_events[frame.seq] = msg
            self.tx_seq += 1
            return w.seal(self.keys, {"type": w.MSG_ACK, "ack_seq": frame.seq},
                          self.account, self.tx_seq, int(self.clock()), w.FLAG_FROM_RECEIVER)

    # -- the loops -----------------------------------------------------------

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.tcp.accept()
            except OSError:
                continue
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        c.settimeout(POLL_S)
        r = self._stream_reader()
        with c:
            while not self._stop:
                try:
                    d = c.recv(1024)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not d:
                    return
                r.receive_data(d)
                for f in self._frames(r):
                    out = self._answer(f, 1)
                    if out:
                        try:
                            c.sendall(out)
                        except OSError:
                            return

    def _udp_loop(self):
        while not self._stop:
            try:
                d, addr = self.udp.recvfrom(2048)
            except OSError:
                continue
            f = self._datagram(d)
            out = self._answer(f, 2) if f is not None else None
            if out:
                self.udp.sendto(out, addr)

    # -- queries ---------------------------------------------------------------

    def event_list(self) -> list:
        """EVENT messages, de-duplicated, in sequence order."""
        with self.lock:
            return [self.events[s] for s in sorted(self.events)]

    def find(self, code: int, qualifier: int = w.Q_NEW, **fields) -> list:
        out = []
        for m in self.event_list():
            if m["code"] == code and m["qualifier"] == qualifier and \
                    all(m[k] == v for k, v in fields.items()):
                out.append(m)
        return out

    def of_type(self, mtype: int) -> list:
        with self.lock:
            return [f for f in self.frames if f[2]["type"] == mtype]


class TinyDc09Receiver(TinyReceiver):
    """A standard SIA DC-09 receiver, as small (the real one is
    ``receiver.dc09_listener``): on TCP and UDP (same port number), the
    host codec (``protocol.dc09``) against this machine's clock; ACK (*ACK,
    encrypted, when the message was) for every good message from
    `account`, NAK with our time for one failing the timestamp test, and
    silence for anything else.  `events` maps (DC-09 seq, data) -> the
    Contact ID event ({"code", "qualifier", "partition", "zone"}), so
    ``find`` and ``event_list`` work as on TinyReceiver."""

    def __init__(self, account: str = "12AB", key: bytes | None = None,
                 port: int | None = None):
        self.dc09_account = account
        self.dc09_key = key
        super().__init__(0, TEST_KEY, port)

    def _stream_reader(self):
        from protocol import dc09  # noqa: PLC0415

        return dc09.Dc09Reader()

    def _frames(self, reader) -> list:
        from protocol import dc09  # noqa: PLC0415

        out = []
        while True:
            try:
                f = reader.next_frame()
            except dc09.Dc09Error:
                continue
            if f is dc09.NEED_DATA:
                return out
            out.append(f)

    def _datagram(self, data: bytes):
        return data  # the DC-09 parser takes the datagram as it came

    def _answer(self, frame, path) -> bytes | None:
        from datetime import datetime, timezone  # noqa: PLC0415

        from protocol import dc09  # noqa: PLC0415

        now = datetime.fromtimestamp(int(self.clock()), timezone.utc)
        try:
            m = dc09.parse(frame, now=now, key_lookup=lambda a: (
                self.dc09_key if a == self.dc09_account else None))
        except dc09.Dc09TimestampError:
            return dc09.build_nak(now)
        except dc09.Dc09Error:
            return None
        if m.account != self.dc09_account:
            return None
        with self.lock:
            self.frames.append((path, m.seq, m, 0))
            if m.msg_id == "ADM-CID":
                self.events[(m.seq, m.data)] = dc09.adm_cid_to_event(m)
            if not self.ack:
                return None
        return dc09.build_ack(m, self.dc09_key, now=now)
