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
#     for heartbeat_s; the standby path a NULL every backup_heartbeat_s;
#   - retransmission with backoff (ack_timeout_ms doubling up to
#     max_backoff_ms); fail_after unanswered transmissions declare the path
#     down (350 queued, zone = path), the event moves to the other path,
#     the down path is probed with NULLs and fails back when answered.
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
#   - NAK (5.5.3.2) carries the receiver's time: the clock is set from it
#     and the message is sent again at once (the next NAKs in a row wait for
#     the backoff).  A NAK is an answer: it does not count towards fail_after.
#     With the clock unset an encrypted message carries 1970-01-01: the
#     receiver's NAK then sets the clock.  The *ACK's timestamp (encrypted,
#     so authentic) sets it too.
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

try:
    from protocol.lean import gldc09 as dc  # pyright: ignore[reportMissingImports]  (host-only package)
except ImportError:
    import gldc09 as dc

_EVENT = const(1)
_NULL = const(2)
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
        self.seq = seq  # queue sequence (EVENT) or a counter number (NULL)
        self.dseq = dc09_seq(seq)
        self.rec = rec  # the queue record (EVENT) or None
        self.sent = False


class Dc09Reporter:
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
        self.links = links
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
        self.active = 0
        self.delivered = 0
        self.naks = 0
        self.duhs = 0
        self.last_dseq = 0

    # -- the loop ---------------------------------------------------------------------

    def poll(self, now_ms):
        if self.broken:
            return
        n = len(self.links)
        for i in range(n):
            link = self.links[i]
            link.poll(now_ms)
            if link.lost:
                link.lost = False
                self.rx[i] = b""  # a partial reply dies with its connection
            for _ in range(4):  # bounded work per poll
                data = link.recv()
                if data is None:
                    break
                if link.stream:
                    self._stream(i, data, now_ms)
                else:
                    self._reply(i, data, now_ms)
        self._schedule(now_ms)
        for i in range(n):
            self._transmit(i, now_ms)

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

    def _schedule(self, now_ms):
        a = self.active
        if self.pend[a] is None:
            head = self.queue.head()
            if head is not None:
                self._offer(a, _EVENT, head[0], head[1], now_ms)
            elif ticks_diff(now_ms, self.last_ok[a]) >= self.hb_ms[0]:
                self._offer(a, _NULL, self.seqs.take(), None, now_ms)
        for b in range(len(self.links)):
            if b == a or self.pend[b] is not None:
                continue
            if not self.up[b] or ticks_diff(now_ms, self.last_ok[b]) >= self.hb_ms[1]:
                self._offer(b, _NULL, self.seqs.take(), None, now_ms)

    def _frame(self, p, now_ms):
        unix = self.clock.now(now_ms)
        t = tuple_of(unix) if unix else None
        if self.key is not None and t is None:
            t = (1970, 1, 1, 0, 0, 0)  # clock unset: the receiver's NAK sets it
        if p.kind == _NULL:
            return dc.build_null(p.dseq, self.account, self.line, self.rcvr, self.key, t)
        r = p.rec
        # Contact ID fields are 3/2/3 digits; the config keeps zones and
        # users at 999 and partitions at 8, min() only guards the queue file
        return dc.build_adm_cid(p.dseq, self.account, self.line, self.rcvr, r["qualifier"],
                                min(r["code"], 999), min(r["partition"], 99),
                                min(r["zone"], 999), self.key, t)

    def _transmit(self, i, now_ms):
        p = self.pend[i]
        if p is None or ticks_diff(now_ms, self.due[i]) < 0:
            return
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
        link.send(self._frame(p, now_ms))
        p.sent = True
        self.sent[i] += 1
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
        if i == self.active and len(self.links) > 1:
            p = self.pend[i]
            if p is not None and p.kind == _EVENT:
                self.pend[i] = None  # offered again on the other path
            self.active = 1 - i

    def _path_up(self, i):
        self.up[i] = True
        self.log("path %d up" % (i + 1))
        self.panel.path_state(i + 1, True)
        if i == 0 and self.active == 1:
            self.active = 0  # fail back to the primary
            p = self.pend[1]
            if p is not None and p.kind == _EVENT:
                self.pend[1] = None

    def _answered(self, i):
        # the path works (ACK, or NAK: the receiver heard us)
        self.unanswered[i] = 0
        if not self.up[i]:
            self._path_up(i)

    # -- replies -----------------------------------------------------------------------

    def _set_clock(self, t, now_ms):
        self.clock.set(unix_of(t), now_ms)
        self.panel.clock_set()

    def _reply(self, i, frame, now_ms):
        p = self.pend[i]
        try:
            kind, seq, t = dc.parse_reply(frame, self.key)
        except dc.Dc09ReplyError as e:
            self.log("path %d: reply refused (%s)" % (i + 1, e))
            return
        if p is None or not p.sent:
            return  # nothing outstanding: a late reply
        if kind == "NAK":
            # 5.5.3.2: NAK carries 0000 and the receiver's time
            self.naks += 1
            self.nak_row[i] += 1
            self.log("path %d: NAK for %04d" % (i + 1, p.dseq))
            if t is not None:
                self._set_clock(t, now_ms)
            self._answered(i)
            p.sent = False  # answered: the resend is not an unanswered one
            if self.nak_row[i] == 1:
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
        if t is not None:
            self._set_clock(t, now_ms)
        if p.kind == _EVENT:
            self.queue.ack(p.seq)
            self.delivered += 1
        self.pend[i] = None
        self.nak_row[i] = 0
        self.last_ok[i] = now_ms
        self.backoff[i] = self.timeout_ms
        self._answered(i)

    def status(self):
        paths = []
        for i in range(len(self.links)):
            p = self.pend[i]
            paths.append({"up": self.up[i], "pending": None if p is None else p.dseq,
                          "sent": self.sent[i]})
        return {"protocol": "dc09", "active_path": self.active + 1,
                "delivered": self.delivered, "naks": self.naks, "duhs": self.duhs,
                "queue": len(self.queue), "next_seq": self.seqs.next,
                "dc09_seq": self.last_dseq, "paths": paths, "dropped": self.queue.dropped,
                "broken": self.broken}
