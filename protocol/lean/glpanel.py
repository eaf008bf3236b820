# Guardline panel-side session core (sans-I/O), one per reporting path.
#
# The firmware owns the sockets, the serial port, the persistent queue and
# the clock; this core owns what the protocol decides: sealing each
# transmission afresh, matching ACK/NAK/TIME to the frame outstanding,
# retransmission timing with capped, jittered backoff, declaring a path
# down or up, and the replay rule for receiver commands.  It reads no
# clock: `now_ms` (time.ticks_ms) and `unix_time` (the panel's wall clock,
# 0 while unset) come in as arguments.  It runs under MicroPython and
# CPython alike; the tests drive it under both.
#
# Invariants:
# - Lockstep: at most one frame outstanding per path.  A message leaves
#   the core only through `acked` (the receiver confirmed it) or
#   `withdraw()` (the firmware moves it to the other path); nothing else
#   drops it.  The persistent queue keeps events until `Acked` is seen.
# - Every transmission is sealed anew (fresh IV, current timestamp): a
#   receiver can reject an exact copy of an earlier frame as a replay
#   without ever rejecting a genuine retransmission.
# - Only authenticated frames from the receiver direction that refer to
#   our outstanding (or most recent) sequence act on the panel; anything
#   else is counted in `rejected` and ignored, so a recorded ACK, NAK or
#   TIME cannot be replayed to effect.
# - A COMMAND acts only if its receiver sequence is above every one seen
#   before (persist `last_command_seq` across reboots) and, once the clock
#   is set, its timestamp is inside the window.
#
# Usage (firmware):
#     s = PanelSession(account, keys, backup=False)
#     s.offer(seq, {"type": MSG_EVENT, ...})   # from the queue head
#     out = s.data_to_send(now_ms, unix_time)   # bytes or None, poll often
#     s.receive_data(data, unix_time)           # bytes from the link
#     ev = s.next_event()                       # Acked, Nakked, ... or NEED_DATA

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]  (CPython fallback below)
except ImportError:  # CPython
    def const(x):
        return x

try:
    from time import ticks_add, ticks_diff  # pyright: ignore[reportAssignmentType]  (CPython fallback below)
except ImportError:  # CPython
    def ticks_diff(new, old):  # type: (int, int) -> int
        return new - old

    def ticks_add(t, delta):  # type: (int, int) -> int
        return t + delta

try:
    from os import urandom
except ImportError:  # pragma: no cover
    from uos import urandom

try:
    from protocol.lean import glwire as w  # pyright: ignore[reportMissingImports]  (host-only package)
except ImportError:  # MicroPython: the bundle puts glwire beside us
    import glwire as w


# Retransmission timing.  The first retry after ACK_TIMEOUT_MS; each next
# one doubles, capped at MAX_BACKOFF_MS, plus up to 25 % jitter so panels
# that lost the same receiver do not come back in step.  SIA DC-09 panels
# wait 20-60 s for an ACK before retrying; our frames are small and the
# receiver ACKs after a group commit (tens of ms), so a few seconds is ample.
ACK_TIMEOUT_MS = const(3000)
MAX_BACKOFF_MS = const(60000)
# Consecutive unanswered transmissions after which the path is declared
# down (the firmware then reports a communication trouble over the other
# path and moves the outstanding message there).
FAIL_AFTER = const(3)
# Replay window for receiver commands, in seconds either side of our clock.
COMMAND_WINDOW_S = const(120)
# Drift beyond which an ACK's receiver timestamp resets the panel clock.
# Smaller drifts are left alone so the clock does not jitter with latency.
CLOCK_SLACK_S = const(5)


class Acked:
    def __init__(self, seq, receiver_time):
        self.seq = seq
        self.receiver_time = receiver_time

    def __repr__(self):
        return "Acked(%d)" % self.seq


class Nakked:
    def __init__(self, seq, reason, receiver_time, next_seq):
        self.seq = seq
        self.reason = reason
        self.receiver_time = receiver_time
        self.next_seq = next_seq

    def __repr__(self):
        return "Nakked(%d, %s)" % (self.seq, w.NAK_NAMES.get(self.reason, self.reason))


class TimeSet:
    """The receiver's clock, authenticated and bound to our frame: the
    firmware sets its wall clock to `unix_time` (+ utc_offset_min for
    local-time displays)."""

    def __init__(self, unix_time, utc_offset_min=0):
        self.unix_time = unix_time
        self.utc_offset_min = utc_offset_min

    def __repr__(self):
        return "TimeSet(%d)" % self.unix_time


class Resequence:
    """The receiver has seen sequences up to next_seq - 1 (our counter was
    reset, e.g. a flash wipe).  The firmware raises its counter to at least
    `next_seq`, renumbers the queued records, and offers the head again."""

    def __init__(self, old_seq, next_seq):
        self.old_seq = old_seq
        self.next_seq = next_seq

    def __repr__(self):
        return "Resequence(%d->%d)" % (self.old_seq, self.next_seq)


class CommandReceived:
    def __init__(self, seq, msg):
        self.seq = seq  # receiver's sequence: persist as last_command_seq
        self.command = msg["command"]
        self.partition = msg["partition"]
        self.arg = msg["arg"]
        self.user = msg["user"]

    def __repr__(self):
        return "CommandReceived(%d, cmd=%d)" % (self.seq, self.command)


class PathDown:
    def __repr__(self):
        return "PathDown"


class PathUp:
    def __repr__(self):
        return "PathUp"


NEED_DATA = w.NEED_DATA


def _urandom_byte():
    return urandom(1)[0]


class PanelSession:
    def __init__(self, account, keys, backup=False, last_command_seq=0,
                 ack_timeout_ms=ACK_TIMEOUT_MS, max_backoff_ms=MAX_BACKOFF_MS,
                 fail_after=FAIL_AFTER, jitter=None):
        self.account = account
        self.keys = keys
        self.flags = w.FLAG_BACKUP_PATH if backup else 0
        self.last_command_seq = last_command_seq
        self.ack_timeout_ms = ack_timeout_ms
        self.max_backoff_ms = max_backoff_ms
        self.fail_after = fail_after
        # jitter() -> 0..255; os.urandom by default, injectable so tests
        # (and hypothesis) get a reproducible schedule
        self._jitter = jitter or _urandom_byte
        self._reader = w.FrameReader()
        self._seq = None  # outstanding sequence, or None
        self._msg = None
        self._due_ms = 0
        self._tries = 0  # transmissions of the outstanding message
        self._nak_row = 0  # NAKs of the outstanding message in a row
        self._heard = False  # the last transmission was answered (ACK/NAK)
        self._last_seq = None  # most recent sequence transmitted
        self._events = []
        self.up = True
        self.unanswered = 0  # consecutive transmissions with no answer
        self.rejected = 0  # frames from the link that did not act
        self.sent = 0
        self._force = False
        self._unix_now = 0

    # -- what to send -------------------------------------------------------

    @property
    def pending(self):
        """The outstanding sequence number, or None when idle."""
        return self._seq

    def offer(self, seq, msg, now_ms=None):
        """Make (seq, msg) the outstanding message; sent at the next poll."""
        if self._seq is not None and self._seq != seq:
            raise w.EncodeError("a message is already outstanding")
        if self._seq != seq:
            self._tries = 0
            self._nak_row = 0
        self._seq = seq
        self._msg = msg
        self._due_ms = now_ms if now_ms is not None else 0
        self._force = True

    def withdraw(self):
        """Take the outstanding message back (to move it to another path).
        Returns (seq, msg) or None."""
        if self._seq is None:
            return None
        out = (self._seq, self._msg)
        self._seq = None
        self._msg = None
        self._tries = 0
        self._nak_row = 0
        return out

    def retry_now(self):
        self._force = True

    def data_to_send(self, now_ms, unix_time):
        """A freshly sealed frame if the outstanding message is due."""
        if self._seq is None:
            return None
        if not self._force and ticks_diff(now_ms, self._due_ms) < 0:
            return None
        if self._tries and not self._heard:
            # the last transmission went unanswered (one the receiver NAKed
            # was answered: its resend is not a sign of a silent path)
            self.unanswered += 1
            if self.up and self.unanswered >= self.fail_after:
                self.up = False
                self._events.append(PathDown())
        self._heard = False
        self._force = False
        self._tries += 1
        delay = self.ack_timeout_ms << min(self._tries - 1, 10)
        if delay > self.max_backoff_ms:
            delay = self.max_backoff_ms
        delay += (self._jitter() * delay) >> 10  # 0..25 % jitter
        # ticks_add: the counter wraps, and past its last value now_ms + delay
        # is a long integer that ticks_diff() cannot read
        self._due_ms = ticks_add(now_ms, delay)  # pyright: ignore[reportArgumentType]
        flags = self.flags if unix_time else self.flags | w.FLAG_CLOCK_UNSET
        self._last_seq = self._seq
        self.sent += 1
        return w.seal(self.keys, self._msg, self.account, self._seq, unix_time, flags)

    def connection_lost(self):
        """The transport closed: drop half-read bytes; resend when it is back."""
        self._reader = w.FrameReader()
        self._force = True

    # -- what came in ---------------------------------------------------------

    def receive_data(self, data, unix_time=0):
        """Bytes from a stream link (TCP, serial).  `unix_time` is the
        panel clock now (0 if unset), for the command time window."""
        self._unix_now = unix_time
        mv = memoryview(data)
        while len(mv):
            room = w.MAX_BUFFER - len(self._reader._buf)
            if room <= 0:
                # Oversized junk: drain what the reader can, then go on.
                self._drain()
                if w.MAX_BUFFER - len(self._reader._buf) <= 0:
                    self._reader = w.FrameReader()
                    self.rejected += 1
                continue
            self._reader.receive_data(mv[:room])
            mv = mv[room:]
            self._drain()

    def receive_datagram(self, data, unix_time=0):
        """One UDP datagram: exactly one frame."""
        self._unix_now = unix_time
        try:
            self._handle(w.decode_datagram(data))
        except w.WireError:
            self.rejected += 1

    def _drain(self):
        while True:
            f = self._reader.next_frame()
            if f is NEED_DATA:
                return
            if isinstance(f, w.BadFrame):
                self.rejected += 1
                continue
            self._handle(f)

    def _handle(self, f):
        if f.account != self.account or not (f.flags & w.FLAG_FROM_RECEIVER):
            self.rejected += 1
            return
        try:
            m = w.open_frame(self.keys, f)
        except w.WireError:
            self.rejected += 1
            return
        t = m["type"]
        if t == w.MSG_ACK:
            if self._seq is not None and m["ack_seq"] == self._seq:
                seq = self._seq
                self._answered()
                self._seq = None
                self._msg = None
                self._tries = 0
                self._nak_row = 0
                self._clock(f.timestamp, False)
                self._events.append(Acked(seq, f.timestamp))
                return
        elif t == w.MSG_NAK:
            if self._seq is not None and m["nak_seq"] == self._seq:
                self._answered()
                r = m["reason"]
                self._nak_row += 1
                self._events.append(Nakked(self._seq, r, m["receiver_time"], m["next_seq"]))
                # The first NAK(time) or NAK(bad CRC) in a row is resent at
                # once (the clock was corrected; line noise); after that the
                # backoff applies, so a receiver that NAKs every frame is
                # never answered in a tight loop.
                if r == w.NAK_TIME:
                    self._clock(m["receiver_time"], True)
                    self._force = self._nak_row == 1
                elif r == w.NAK_REPLAY and m["next_seq"] > self._seq:
                    self._events.append(Resequence(self._seq, m["next_seq"]))
                elif r == w.NAK_BAD_CRC:
                    self._force = self._nak_row == 1
                # BUSY and the rest: the backoff already scheduled applies
                return
        elif t == w.MSG_TIME:
            ref = m["ref_seq"]
            if ref == self._seq or ref == self._last_seq:
                self._clock(m["receiver_time"], True, m["utc_offset_min"])
                return
        elif t == w.MSG_COMMAND:
            if f.seq > self.last_command_seq and self._command_fresh(f.timestamp):
                self.last_command_seq = f.seq
                self._events.append(CommandReceived(f.seq, m))
                return
        self.rejected += 1

    def _command_fresh(self, ts):
        now = self._unix_now
        if not now:
            return True  # clock unset: the sequence rule alone applies
        d = ts - now
        return -COMMAND_WINDOW_S <= d <= COMMAND_WINDOW_S

    def _answered(self):
        self._heard = True
        self.unanswered = 0
        if not self.up:
            self.up = True
            self._events.append(PathUp())

    def _clock(self, receiver_time, always, offset=0):
        now = self._unix_now
        if always or not now or abs(receiver_time - now) > CLOCK_SLACK_S:
            self._events.append(TimeSet(receiver_time, offset))

    def next_event(self):
        """The next thing the firmware must act on, or NEED_DATA."""
        if self._events:
            return self._events.pop(0)
        return NEED_DATA
