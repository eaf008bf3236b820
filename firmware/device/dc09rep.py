# Reporting in SIA DC-09 (ANSI/SIA DC-09-2013) to any standard receiver.
#
# With "protocol": "dc09" in the config the panel reports with this module
# instead of reporter.py: Contact ID events as ADM-CID messages, clear or
# AES-encrypted (gldc09, the lean codec), NULL link tests for supervision,
# over the same links (TCP or UDP; primary and optional backup path).
#
# What it keeps, as reporter.py does:
#   - an event leaves the persistent queue only on the receiver's ACK for
#     it (matching sequence number; *ACK decrypted with our key when we
#     send encrypted, a clear ACK to an encrypted message is refused);
#   - lockstep: one message outstanding per path, queue head first, in
#     order; the active path also sends a NULL when nothing was ACKed on it
#     for heartbeat_s (a NULL outstanding there gives way to a queued
#     event); the standby path a NULL every backup_heartbeat_s;
#   - retransmission with backoff (ack_timeout_ms doubling up to
#     max_backoff_ms); fail_after unanswered transmissions declare the path
#     down (350 queued, zone = path), the down path is probed with NULLs
#     and answers bring it up (350 restore on its first ACK: NAKs between
#     silences bring it up but report no pair per flap);
#   - failover.py's rule decides which path carries the events: the head
#     event NAKed fail_after times on a path (after the one free retry a
#     NAK with a time earns), or not ACKed there within event_fail_s, has
#     failed there: 354 (zone = path) is queued and the event moves to the
#     next path; that path is probed with an ADM-CID 602 "periodic test"
#     and trusted again (354 restore, the primary fails back) only when it
#     ACKs it or an event, never by ACKing NULLs.
#
# DC-09 specifics:
#   - Sequence numbers 0001-9999 then 0001 (5.5.1.5) are derived from the
#     queue's persistent sequence: dc09_seq = (seq - 1) % 9999 + 1.  So a
#     record keeps its DC-09 number across retransmissions and reboots
#     (the receiver can recognise the copy), and the counter is persisted
#     by seqstore (one flash write per 256 numbers, not one per message).
#   - Each transmission is built afresh (new pad, current timestamp), so a
#     retransmission after a long backoff still passes the receiver's
#     timestamp test.
#   - Clock trust (docs/dc09.md, "Clock trust"; clock.py).  A NAK (5.5.3.2)
#     is never encrypted: anybody can forge one.  Its time is used only if
#     it answers a transmission outstanding on that path (from the
#     receiver's address: links.py) and is sane (2024..2099); then, with
#     the clock unset, it sets the clock, untrusted; with a key, it only
#     sets the time this path's messages are stamped with (`stamp_off`),
#     never the panel's clock; on a clear line it moves the clock by at
#     most clock.STEP_S, untrusted.  The message is then sent again at once
#     (the next NAKs in a row wait for the backoff, and count: see above).
#     The clock is trusted (time lock) only from a *ACK that decrypts with
#     our key and whose time lies within _ACK_SLACK_S of what we stamped
#     the message with (a replayed *ACK from another day is refused).  At
#     boot an encrypted message carries 1970-01-01 (clock unset): the NAK
#     sets the clock untrusted, the resend is stamped with it, and the
#     *ACK to that resend makes it trusted.
#   - DUH (5.5.3.3): the receiver cannot process the message (e.g. it does
#     not know the account).  The event is kept; DUH counts as unanswered,
#     so a receiver that keeps answering DUH is failed over like a silent one.
#   - A receiver that closes the connection after each reply is fine: the
#     link reconnects for the next message (links.TcpLink).
#   - Remote commands, HELLO and the heartbeat's status fields are native
#     protocol only; DC-09 carries events and link tests.
#
# Memory: one partial reply per stream path (at most _RX_MAX bytes), the
# frame being sent; gldc09 is the only protocol module imported (glpanel is
# not).

from binascii import unhexlify
from fwutil import const, ticks_diff, ticks_add
from clock import sane
from failover import Failover, PathPoll

try:
    from protocol.lean import gldc09 as dc  # pyright: ignore[reportMissingImports]  (host-only package)
except ImportError:
    import gldc09 as dc

_EVENT = const(1)
_NULL = const(2)
_PROBE = const(3)
PROBE_CODE = const(602)  # Contact ID "periodic test": the probe of a failed path
# A *ACK's time must lie this close to the stamps of the transmissions it
# answers: a receiver ACKs only a stamp inside its window (-40/+20 s,
# 5.5.3.1 receivers commonly), so a genuine *ACK is within a minute of
# ours plus the round trip.
_ACK_SLACK_S = const(120)
# Receive buffer bound: two maximal replies (gldc09.MAX_REPLY_LEN = 512).
_RX_MAX = const(1024)
_T_CONFIG = const(0x0040)  # glwire.T_CONFIG: cannot report as configured
_SEQ_SPAN = const(9999)


def dc09_seq(seq):
    """DC-09 sequence number (0001..9999) of a queue sequence (>= 1)."""
    return (seq - 1) % _SEQ_SPAN + 1


# Civil date <-> days since 1970-01-01 (proleptic Gregorian), integer only:
# ports differ in their time module's epoch, this does not.
def _days(y, m, d):
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def unix_of(t):
    """(y, m, d, H, M, S) UTC -> Unix seconds."""
    return _days(t[0], t[1], t[2]) * 86400 + t[3] * 3600 + t[4] * 60 + t[5]


def tuple_of(unix):
    """Unix seconds -> (y, m, d, H, M, S) UTC."""
    z, s = divmod(unix, 86400)
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400
    if m <= 2:
        y += 1
    return (y, m, d, s // 3600, s % 3600 // 60, s % 60)


class _Pending:
    def __init__(self, kind, seq, rec):
        self.kind = kind
        self.seq = seq  # queue sequence (EVENT) or a counter number (NULL, probe)
        self.dseq = dc09_seq(seq)
        self.rec = rec  # the queue record (EVENT) or None
        self.sent = False
        self.lo = 0  # stamps of the transmissions since the last NAK (0: none,
        self.hi = 0  # or the clock was unset), for the *ACK's time


class Dc09Reporter(PathPoll):
    def __init__(self, cfg, queue, seqs, clock, panel, links, now_ms, log=None):
        d = cfg["dc09"]
        tim = cfg["timings"]
        self.log = log or (lambda s: None)
        self.account = d["account"]
        self.line = d["line"]
        self.rcvr = d["receiver_no"]
        key = d["key"]
        if key:
            key = unhexlify(key) if d["key_format"] == "hex" else key.encode()
        self.key = key or None
        self.queue = queue
        self.seqs = seqs
        self.clock = clock
        self.panel = panel
        PathPoll.__init__(self, links)
        n = len(links)
        self.broken = None
        if self.key is not None and not dc.key_size_supported(len(self.key)):
            # e.g. AES-192 on an axTLS port (the unix port): cannot report
            self.broken = "AES-%d is not in this port's cryptolib" % (8 * len(self.key))
            self.log("dc09: " + self.broken + ": not reporting")
            panel.troubles |= _T_CONFIG
        self.timeout_ms = tim["ack_timeout_ms"]
        self.max_backoff_ms = tim["max_backoff_ms"]
        self.fail_after = tim["fail_after"]
        self.hb_ms = [tim["heartbeat_s"] * 1000, tim["backup_heartbeat_s"] * 1000]
        self.heartbeat_s = tim["heartbeat_s"]
        self.rule = Failover(n, tim["fail_after"], tim["event_fail_s"] * 1000, now_ms, panel,
                             self.log)
        self.pend = [None] * n  # type: list
        self.due = [now_ms] * n  # type: list[int]
        self.backoff = [self.timeout_ms] * n
        self.unanswered = [0] * n
        self.nak_row = [0] * n
        self.up = [True] * n
        self.last_ok = [now_ms] * n
        self.sent = [0] * n
        self.waiting = [None] * n  # since when a stream path waits to connect
        self.rx = [b""] * n  # partial reply per stream path
        self.stamp_off = [0] * n  # receiver time - panel clock, from its NAKs (s)
        self.active = 0
        self.delivered = 0
        self.naks = 0
        self.duhs = 0
        self.refused = 0  # receiver values refused (times, stale *ACKs)
        self.last_dseq = 0

    # -- the loop ---------------------------------------------------------------------

    def poll(self, now_ms):
        if not self.broken:
            PathPoll.poll(self, now_ms)

    # the steps of PathPoll.poll() (failover.py)
    def _receive(self, i, now_ms):
        """What path i's link brought: replies."""
        link = self.links[i]
        link.poll(now_ms)
        if link.lost:
            link.lost = False
            self.rx[i] = b""  # a partial reply dies with its connection
        self._read(i, link, now_ms)

    def _data(self, i, data, now_ms):
        if self.links[i].stream:
            self._stream(i, data, now_ms)
        else:
            self._reply(i, data, now_ms)

    def _stream(self, i, data, now_ms):
        # replies are split LF..CR; bytes before an LF are noise
        buf = self.rx[i] + bytes(data)
        while True:
            lf = buf.find(b"\n")
            if lf < 0:
                buf = b""
                break
            cr = buf.find(b"\r", lf)
            if cr < 0:
                buf = buf[lf:]
                if len(buf) > _RX_MAX:
                    buf = b""  # no reply is this long
                break
            lf = buf.rfind(b"\n", 0, cr)  # a frame never holds LF: resync on the last
            frame = buf[lf:cr + 1]
            buf = buf[cr + 1:]
            self._reply(i, frame, now_ms)
        self.rx[i] = buf

    # -- what each path carries ------------------------------------------------------

    def _offer(self, i, kind, seq, rec, now_ms):
        self.pend[i] = _Pending(kind, seq, rec)
        self.due[i] = now_ms
        self.backoff[i] = self.timeout_ms
        self.nak_row[i] = 0

    def _drop(self, i):
        """Path i's outstanding message moves elsewhere (or gives way)."""
        p = self.pend[i]
        self.pend[i] = None
        if p is not None and p.kind == _EVENT:
            self.rule.clear(i)

    def _switch(self, a):
        """Make path `a` the one that carries events."""
        if a == self.active:
            return
        old = self.active
        self.log("path %d carries the events (was path %d)" % (a + 1, old + 1))
        p = self.pend[old]
        if p is not None and p.kind == _EVENT:
            self._drop(old)
        self.active = a

    def _schedule(self, now_ms):
        a = self.active
        head = self.queue.head()
        if head is not None and self.pend[a] is not None and self.pend[a].kind != _EVENT:
            self._drop(a)  # events first: a NULL or a probe waits
        if self.pend[a] is None:
            self._active(a, head, now_ms)
        for b in range(len(self.links)):
            if b != a and self.pend[b] is None:
                self._standby(b, now_ms)

    def _active(self, a, head, now_ms):  # type: (int, tuple | None, int) -> None
        """What idle path `a`, the one that carries the events, sends."""
        if head is not None:
            self._offer(a, _EVENT, head[0], head[1], now_ms)
            self.rule.offered(a, now_ms)
        elif ticks_diff(now_ms, self.last_ok[a]) >= self.hb_ms[0]:
            self._offer(a, _NULL, self.seqs.take(), None, now_ms)

    def _standby(self, b, now_ms):  # type: (int, int) -> None
        """What idle standby path b sends: its probe when it failed
        events, else a NULL when due."""
        if not self.rule.ok[b]:
            if self.rule.probe_due(b, now_ms):
                self._offer(b, _PROBE, self.seqs.take(), None, now_ms)
        elif not self.up[b] or ticks_diff(now_ms, self.last_ok[b]) >= self.hb_ms[1]:
            self._offer(b, _NULL, self.seqs.take(), None, now_ms)

    def _check(self, now_ms):
        """The head event's bound on the path that carries it."""
        for i in range(len(self.links)):
            p = self.pend[i]
            if p is not None and p.kind == _EVENT and self.rule.watch(i, self.up[i], now_ms):
                self._failed(i, now_ms)

    def _failed(self, i, now_ms):
        self._switch(self.rule.failed(i, now_ms, self.up))

    def _trusted(self, i, queued):
        """Path i ACKed an event (or the probe)."""
        self._switch(self.rule.accepted(i, queued, self.active, self.up))

    def _stamp(self, i, now_ms):
        """The time to stamp path i's next message with (0: clock unset)."""
        unix = self.clock.now(now_ms)
        if not unix:
            return 0
        t = unix + self.stamp_off[i]
        return t if sane(t) else unix

    def _frame(self, p, i, now_ms):
        unix = self._stamp(i, now_ms)
        if unix:
            if not p.lo:
                p.lo = unix
            p.hi = unix
        t = tuple_of(unix) if unix else None
        if self.key is not None and t is None:
            t = (1970, 1, 1, 0, 0, 0)  # clock unset: the receiver's NAK sets it
        try:
            if p.kind == _NULL:
                return dc.build_null(p.dseq, self.account, self.line, self.rcvr, self.key, t)
            if p.kind == _PROBE:
                return dc.build_adm_cid(p.dseq, self.account, self.line, self.rcvr,
                                        dc.Q_NEW, PROBE_CODE, 0, 0, self.key, t)
            r = p.rec
            pos = r.get("position")  # a vehicle unit's: [X][Y] extended data
            # Contact ID fields are 3/2/3 digits; the config keeps zones and
            # users at 999 and partitions at 8, min() only guards the queue file
            return dc.build_adm_cid(p.dseq, self.account, self.line, self.rcvr,
                                    r["qualifier"], min(r["code"], 999),
                                    min(r["partition"], 99), min(r["zone"], 999), self.key, t,
                                    None, "" if pos is None else
                                    dc.position_blocks(pos["lat"], pos["lon"]))
        except dc.Dc09UsageError as e:
            # a record the codec refuses (a queue file from elsewhere): it
            # is never sent, so it fails over and is kept, never a crash
            self.log("path %d: cannot build %04d (%s)" % (i + 1, p.dseq, e))
            return None

    def _send(self, i, now_ms):
        p = self.pend[i]
        if p is not None and ticks_diff(now_ms, self.due[i]) >= 0:
            self._due(i, p, now_ms)

    def _due(self, i, p, now_ms):
        """Path i's outstanding message p is due: (re)send it."""
        if p.sent:
            self._no_answer(i, now_ms)  # the last transmission went unanswered
            p = self.pend[i]
            if p is None:
                return  # withdrawn: the path went down
        link = self.links[i]
        if link.stream and not link.connected:
            # (re)connecting, e.g. after a receiver that closes after each
            # reply: send as soon as it is up; each ack_timeout_ms of waiting
            # counts as an unanswered transmission (a receiver that refuses
            # connections is failed over like a silent one)
            w = self.waiting[i]
            if w is None:
                self.waiting[i] = now_ms
                if hasattr(link, "connect_now"):
                    link.connect_now()
            elif ticks_diff(now_ms, w) >= self.timeout_ms:
                self.waiting[i] = now_ms
                self._no_answer(i, now_ms)
            return
        self.waiting[i] = None
        frame = self._frame(p, i, now_ms)
        if frame is not None:
            link.send(frame)
            self.sent[i] += 1
        p.sent = True
        self.last_dseq = p.dseq
        self.due[i] = ticks_add(now_ms, self.backoff[i])
        self.backoff[i] = min(2 * self.backoff[i], self.max_backoff_ms)

    def _no_answer(self, i, now_ms):
        self.unanswered[i] += 1
        if self.unanswered[i] >= self.fail_after and self.up[i]:
            self._path_down(i)

    def _path_down(self, i):
        self.up[i] = False
        self.log("path %d down" % (i + 1))
        self.panel.path_state(i + 1, False)
        if i == self.active:
            self._switch(self.rule.pick(i, self.up))

    def _path_up(self, i):
        self.up[i] = True
        self.log("path %d up" % (i + 1))
        self._switch(self.rule.pick(self.active, self.up))

    def _answered(self, i):
        # the path works (ACK, or NAK: the receiver heard us)
        self.unanswered[i] = 0
        if not self.up[i]:
            self._path_up(i)

    # -- replies -----------------------------------------------------------------------

    def _nak_time(self, i, t, now_ms):
        """A clear NAK's time (see the header).  True if it was sane and
        used (the message is then retried once before NAKs count)."""
        unix = unix_of(t)
        c = self.clock
        if not sane(unix):
            c.refused += 1
            self.refused += 1
            self.log("path %d: NAK time %04d-%02d-%02d refused (not 2024..2099)" % (
                i + 1, t[0], t[1], t[2]))
            return False
        now = c.now(now_ms)
        if not now:
            c.correct(unix, now_ms)  # unset: set, untrusted
            self.panel.clock_set(False)
            self.stamp_off[i] = 0
            self.log("clock set %d from a NAK (not trusted)" % unix)
        elif self.key is not None:
            self.stamp_off[i] = unix - now  # our stamps on this path; the clock stays
        elif c.correct(unix, now_ms):
            self.panel.clock_set(c.trusted)
        else:
            self.refused += 1
            self.log("path %d: NAK time %d s off refused (more than %d s)" % (
                i + 1, unix - now, 120))
        return True

    def _ack_time(self, i, p, t, now_ms):
        """An ACK's time.  False if it is a *ACK that cannot answer this
        message (its time far from what we stamped it with: a replay)."""
        unix = unix_of(t)
        c = self.clock
        if self.key is None:
            # a clear ACK (clear line): unauthenticated, as a NAK's time
            if sane(unix) and c.correct(unix, now_ms):
                self.panel.clock_set(c.trusted)
            return True
        if not p.lo:
            # we stamped 1970 (clock unset): the *ACK cannot be bound to
            # this exchange, so its time is taken untrusted
            if sane(unix) and not c.now(now_ms):
                c.correct(unix, now_ms)
                self.panel.clock_set(False)
            return True
        if not (p.lo - _ACK_SLACK_S <= unix <= p.hi + _ACK_SLACK_S):
            self.refused += 1
            self.log("path %d: *ACK for %04d refused: its time is %d s from our stamp "
                     "(a replay?)" % (i + 1, p.dseq, unix - p.hi))
            return False
        if c.set(unix, now_ms, None, True):
            self.stamp_off[i] = 0
            self.panel.clock_set(True)
        return True

    def _reply(self, i, frame, now_ms):
        p = self.pend[i]
        try:
            kind, seq, t = dc.parse_reply(frame, self.key)
        except (dc.Dc09ReplyError, dc.Dc09UsageError) as e:
            self.log("path %d: reply refused (%s)" % (i + 1, e))
            return
        if p is None or not p.sent:
            return  # nothing outstanding: a late reply
        if kind == "NAK":
            # 5.5.3.2: NAK carries 0000 and the receiver's time
            self.naks += 1
            self.nak_row[i] += 1
            self.log("path %d: NAK for %04d" % (i + 1, p.dseq))
            fix = t is not None and self._nak_time(i, t, now_ms)
            self._answered(i)
            p.sent = False  # answered: the resend is not an unanswered one
            p.lo = 0
            if p.kind == _EVENT and self.pend[i] is p:
                self.rule.refused(i, "NAK", fix)
            if self.nak_row[i] == 1 and fix:
                self.due[i] = now_ms
            else:
                self.due[i] = ticks_add(now_ms, self.backoff[i])
                self.backoff[i] = min(2 * self.backoff[i], self.max_backoff_ms)
            return
        if seq != p.dseq:
            return  # the reply to an earlier transmission
        if kind == "DUH":
            self.duhs += 1
            self.log("path %d: DUH for %04d" % (i + 1, p.dseq))
            return  # counts as unanswered when the retransmission is due
        # ACK
        if t is not None and not self._ack_time(i, p, t, now_ms):
            return
        self.pend[i] = None
        self.nak_row[i] = 0
        self.last_ok[i] = now_ms
        self.backoff[i] = self.timeout_ms
        self._answered(i)
        self.panel.path_state(i + 1, True)  # 350 restore: it carries messages again
        if p.kind == _EVENT:
            self.queue.ack(p.seq)
            self.delivered += 1
            self._trusted(i, True)
        elif p.kind == _PROBE:
            self._trusted(i, False)

    def status(self):
        paths = []
        for i in range(len(self.links)):
            p = self.pend[i]
            paths.append({"up": self.up[i], "pending": None if p is None else p.dseq,
                          "sent": self.sent[i], "events_ok": self.rule.ok[i],
                          "why": self.rule.why[i],
                          "foreign": getattr(self.links[i], "foreign", 0)})
        return {"protocol": "dc09", "active_path": self.active + 1,
                "delivered": self.delivered, "naks": self.naks, "duhs": self.duhs,
                "refused": self.refused, "queue": len(self.queue), "next_seq": self.seqs.next,
                "dc09_seq": self.last_dseq, "paths": paths, "dropped": self.queue.dropped,
                "broken": self.broken, "clock_trusted": self.clock.trusted}
