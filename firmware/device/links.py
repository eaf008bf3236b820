# Transports for the reporting paths: TCP, UDP, and a UART line.
#
# All are non-blocking and polled from the reporter task: a blocking
# connect() or recv() would stall zone scanning, and an alarm panel must
# keep watching its zones while the network is down.  The session core
# (glpanel) decides when to send; a link only moves bytes:
#     poll(now_ms)     drive connection set-up
#     send(b) -> bool  False if the bytes could not be handed to the OS
#     recv() -> bytes-like or None (a TCP link's is a view of its one
#                      receive buffer: valid until the next recv, so the
#                      caller copies what it keeps)
#     stream           True: bytes (glpanel.receive_data); False: one
#                      datagram per recv (glpanel.receive_datagram)
#     lost             set when a stream connection dropped (the reporter
#                      then calls session.connection_lost())
# `gate` (a callable) lets the simulated board cut a path: while it
# returns False the link is closed and drops whatever it is given.
#
# recv() asks the socket's poller first (ipoll: no allocation) and reads
# only when something is there: a read of an empty non-blocking socket
# raises OSError(EAGAIN), an exception object on the heap for every poll
# of every idle path, 50 times a second.  Idle, the links allocate
# nothing: that, and what recv() and poll() call every time in frames
# small enough for the C stack (fwutil.py).

import socket
import select
from fwutil import const, ticks_diff

_EAGAIN = (11, 115, 119, 114)  # EAGAIN / EINPROGRESS (Linux, lwIP) / EALREADY
_RETRY_MS = const(1000)  # between TCP connect attempts
_RX = const(512)  # bytes per recv: below glwire.READ_SIZE


def _addr(host, port, kind):
    return socket.getaddrinfo(host, port, 0, kind)[0][-1]


_FOREIGN = object()  # UdpLink._datagram(): from another address


def _ready(poller):
    """Has the one socket registered with `poller` something to read (or
    an error or hang-up to report, which the read then finds)?"""
    for _ in poller.ipoll(0):
        return True
    return False


class TcpLink:
    stream = True

    def __init__(self, host, port, gate=None):
        self.host = host
        self.port = port
        self.gate = gate
        self.sock = None
        self.connected = False
        self.lost = False
        self._poll = None
        self._last_try = None
        self._rx = bytearray(_RX)  # allocated once: a recv(_RX) would ask for 512 bytes each time
        self._rxv = memoryview(self._rx)

    def _close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        if self.connected:
            self.lost = True
        self.sock = None
        self.connected = False
        self._poll = None

    def poll(self, now_ms):
        if self.gate is not None and not self.gate():
            self._close()
            return
        if self.sock is None and not self._connect(now_ms):
            return
        if not self.connected and self._poll is not None:
            self._connecting()

    def _connect(self, now_ms):
        """Start a connection (at most one attempt per _RETRY_MS).  True
        if one is under way."""
        if self._last_try is not None and ticks_diff(now_ms, self._last_try) < _RETRY_MS:
            return False
        self._last_try = now_ms
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            self.sock = s
            try:
                s.connect(_addr(self.host, self.port, socket.SOCK_STREAM))
            except OSError as e:
                if e.args[0] not in _EAGAIN:
                    raise
            p = select.poll()
            p.register(s, select.POLLOUT | select.POLLERR | select.POLLHUP)
            self._poll = p
        except OSError:
            self._close()
            return False
        return True

    def _connecting(self):
        """Has the connection under way come up (or failed)?"""
        for _, ev in self._poll.poll(0):
            if ev & (select.POLLERR | select.POLLHUP):
                self._close()
                return
            if ev & select.POLLOUT:
                self.connected = True
                self._poll.modify(self.sock, select.POLLIN)  # recv() asks it

    def connect_now(self):
        """Skip the wait between connect attempts once: the caller has a
        message for a receiver that closed the connection after its last
        reply (SIA DC-09 receivers may close after each ACK)."""
        if self.sock is None:
            self._last_try = None

    def send(self, data):
        if not self.connected:
            return False
        try:
            n = self.sock.send(data)
            if n != len(data):  # a 300-byte frame into an empty socket buffer
                self._close()
                return False
            return True
        except OSError:
            self._close()
            return False

    def recv(self):
        if not self.connected or not _ready(self._poll):
            return None
        return self._read()

    def _read(self):
        try:
            n = self.sock.readinto(self._rx)
        except OSError as e:
            if e.args[0] in _EAGAIN:
                return None
            self._close()
            return None
        if n is None:  # nothing after all (non-blocking)
            return None
        if not n:
            self._close()
            return None
        return self._rxv[:n]


class UdpLink:
    stream = False

    def __init__(self, host, port, gate=None):
        self.gate = gate
        self.lost = False
        self.connected = True
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN)
        self.addr = _addr(host, port, socket.SOCK_DGRAM)
        self.foreign = 0  # datagrams from another address, dropped

    def poll(self, now_ms):
        pass

    def _up(self):
        return self.gate is None or self.gate()

    def send(self, data):
        if not self._up():
            return False
        try:
            self.sock.sendto(data, self.addr)
            return True
        except OSError:
            return False

    def recv(self):
        # Only datagrams from the receiver's address: anybody can send to
        # our port, and a forged reply must at least come from where we
        # sent (spoofing the source is harder than sending).  Others are
        # dropped and counted; a few per poll at most (the caller bounds
        # the polls), so a flood cannot starve the receiver's replies.
        n = 8
        while n:
            if not _ready(self._poll):
                return None
            d = self._datagram()
            if d is not _FOREIGN:
                return d
            n -= 1
        return None

    def _datagram(self):
        """One datagram; _FOREIGN if it came from another address; None
        if there was none after all, or the path is cut."""
        try:
            d, src = self.sock.recvfrom(_RX)  # glwire.MAX_FRAME_LEN, gldc09 replies fit
        except OSError:
            return None
        if src != self.addr:
            self.foreign += 1
            return _FOREIGN
        if not self._up():
            return None  # the cable is cut: the datagram never arrived
        return d


class UartLink:
    """A serial line to the receiver (machine.UART given by the board)."""
    stream = True

    def __init__(self, uart, gate=None):
        self.uart = uart
        self.gate = gate
        self.lost = False
        self.connected = True

    def poll(self, now_ms):
        pass

    def send(self, data):
        if self.gate is not None and not self.gate():
            return False
        self.uart.write(data)
        return True

    def recv(self):
        if not self.uart.any():
            return None
        d = self.uart.read(_RX)
        if self.gate is not None and not self.gate():
            return None
        return d
