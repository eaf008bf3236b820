# Reporting: the persistent queue to the receiver over two paths.
#
# One glpanel.PanelSession per path (the sans-I/O core decides
# retransmission, backoff, path up/down and clock/command handling); this
# module decides *what* each path carries:
#   - the active path carries the queue head (lockstep: one record at a
#     time, oldest first), then a pending REPLY, the boot HELLO, a vehicle
#     unit's track points (POSITION, oldest first, from trackq.py: only
#     while no event is queued, so every event, alarms first among them,
#     goes ahead of every track point), and a HEARTBEAT when nothing was
#     ACKed on it for heartbeat_s; a heartbeat, HELLO, REPLY or track point
#     outstanding there gives way to a queued event;
#   - the other path carries only heartbeats (every backup_heartbeat_s)
#     so that its failure is found and reported before it is needed;
#   - which path is active, and when a path that answers but refuses
#     events has failed them, is failover.py's rule (shared with
#     dc09rep.py): PathDown of the active path (silence), or the head
#     event NAKed fail_after times or not ACKed within event_fail_s there,
#     moves the outstanding record to the next path; the trouble (350 for
#     silence, 354 for refusal; zone = path number) is queued like any
#     event, so it leaves over the path that still works.  A silent path
#     keeps a heartbeat outstanding as a probe (PathUp; 350 restore on the
#     first ACK there, so a path a NAK brings up and silence takes down
#     again reports one 350 pair, not one per flap); a
#     path that failed events gets a 602 "periodic test" event as its
#     probe, and only its ACK (or an ACKed event) trusts it again (354
#     restore); then the primary wins the events back.
#   - a record leaves the queue only on Acked; Resequence renumbers every
#     queued record below the receiver's next_seq (in its slot: pqueue.py).
# Every value from the receiver is range-checked before use: a time the
# clock refuses (clock.sane) and a resequence the counter cannot honour
# (seqstore.SEQ_LIMIT) are refused, logged and counted, and the NAK that
# carried them counts as a refusal of the event (so it fails over).
# Sequence numbers: records keep the one given when queued; heartbeats,
# HELLO, REPLY, probes and track points take one from the counter when
# offered (a track point waits behind events queued after it: a sequence
# of its own from the queue would fall behind the receiver's window).  A
# track point re-offered after it gave way, moved path or a restart may
# reach the receiver twice: its fix time tells the copies apart.
# A track point is not an event: a path that refuses one does not fail
# over for it (it is retried with the session's backoff); a receiver
# that does not take POSITION at all (NAK unsupported) gets the point
# dropped, counted in `positions_refused`.

from binascii import unhexlify
from fwutil import const, ticks_diff
from clock import sane
from failover import Failover, PathPoll
from seqstore import SEQ_LIMIT

try:
    from protocol.lean import glwire as w  # pyright: ignore[reportMissingImports]  (host-only package)
    from protocol.lean import glpanel as gp  # pyright: ignore[reportMissingImports]  (host-only package)
except ImportError:
    import glwire as w
    import glpanel as gp

FW_VERSION = (0, 1, 0)
CAP_COMMANDS = const(0x0001)
PROBE_CODE = const(602)  # Contact ID "periodic test": the probe of a failed path

_EVENT = const(1)
_HEARTBEAT = const(2)
_HELLO = const(3)
_REPLY = const(4)
_PROBE = const(5)
_TRACK = const(6)


def _honoured(seq, next_seq):
    """Does the panel honour a receiver's resequence of `seq`?"""
    return seq < next_seq <= SEQ_LIMIT


class Reporter(PathPoll):
    def __init__(self, cfg, queue, seqs, clock, panel, links, now_ms, log=None, track=None):
        tim = cfg["timings"]
        keys = w.Keys(unhexlify(cfg["key"]))
        self.account = cfg["account"]
        self.queue = queue
        self.track = track  # a vehicle unit's track points (trackq.TrackRing), or None
        self.seqs = seqs
        self.clock = clock
        self.panel = panel
        PathPoll.__init__(self, links)
        self.log = log or (lambda s: None)
        self.sessions = []
        for i in range(len(links)):
            self.sessions.append(gp.PanelSession(
                self.account, keys, backup=i == 1,
                last_command_seq=seqs.last_command_seq,
                ack_timeout_ms=tim["ack_timeout_ms"], max_backoff_ms=tim["max_backoff_ms"],
                fail_after=tim["fail_after"]))
        self.what = [None] * len(links)  # kind of the outstanding message
        self.point = [0] * len(links)  # the track point outstanding (its order)
        self.rule = Failover(len(links), tim["fail_after"], tim["event_fail_s"] * 1000, now_ms,
                             panel, self.log)
        # supervision: the active path every heartbeat_s, the standby one
        # every backup_heartbeat_s (whichever path is which at the time)
        self.hb_ms = [tim["heartbeat_s"] * 1000, tim["backup_heartbeat_s"] * 1000]
        self.last_ok = [now_ms] * len(links)
        self.active = 0
        self.hello_sent = False
        self.reply = None
        self.delivered = 0
        self.naks = 0
        self.refused = 0  # receiver values refused (time, resequence)
        self.positions = 0  # track points delivered
        self.positions_refused = 0  # dropped: the receiver takes no POSITION
        self.heartbeat_s = tim["heartbeat_s"]
        if seqs.renumbering:  # a power cut in the middle of a resequence
            self.log("finishing the resequence to %d cut by a power loss" % seqs.renumbering)
            self._renumber_below(seqs.renumbering)

    # -- messages -------------------------------------------------------------

    def _heartbeat(self):
        p = self.panel
        return {"type": w.MSG_HEARTBEAT, "troubles": p.troubles & 0xFFFF,
                "battery_mv": p.battery_mv & 0xFFFF, "active_path": self.active + 1,
                "queue_depth": min(len(self.queue), 0xFFFF), "partitions": p.wire_states()}

    def _hello(self):
        p = self.panel
        return {"type": w.MSG_HELLO, "fw_major": FW_VERSION[0], "fw_minor": FW_VERSION[1],
                "fw_patch": FW_VERSION[2], "panel_kind": p.kind, "capabilities": CAP_COMMANDS,
                "zones": min(p.nz, 255), "partition_count": len(p.parts),
                "heartbeat_s": self.heartbeat_s}

    def _probe(self, i, now_ms):
        return {"type": w.MSG_EVENT, "qualifier": w.Q_NEW, "code": PROBE_CODE,
                "partition": 0, "zone": 0, "event_time": self.clock.now(now_ms),
                "text": "event test, path %d" % (i + 1), "value": None}

    def _up(self):
        return [s.up for s in self.sessions]

    # -- the loop -----------------------------------------------------------------

    # the steps of PathPoll.poll() (failover.py)
    def _receive(self, i, now_ms):
        """What path i's link brought, into its session."""
        link = self.links[i]
        link.poll(now_ms)
        if link.lost:
            link.lost = False
            self.sessions[i].connection_lost()
        self._read(i, link, now_ms)
        self._events(i, now_ms)

    def _data(self, i, d, now_ms):
        s = self.sessions[i]
        if self.links[i].stream:
            s.receive_data(d, self.clock.now(now_ms))
        else:
            s.receive_datagram(d, self.clock.now(now_ms))

    def _send(self, i, now_ms):
        s = self.sessions[i]
        if s.pending is not None:  # else data_to_send() has nothing to send
            out = s.data_to_send(now_ms, self.clock.now(now_ms))
            if out is not None:
                self.links[i].send(out)
        self._events(i, now_ms)

    def _offer(self, i, kind, seq, msg, now_ms):
        self.what[i] = kind
        self.sessions[i].offer(seq, msg, now_ms)

    def _take_back(self, i, moved=True):
        """Withdraw what path i has outstanding (it moves elsewhere, gives
        way to a queued event, or is renumbered: `moved` False keeps the
        event's bound running); a REPLY is kept for later."""
        kind = self.what[i]
        out = self.sessions[i].withdraw()
        self.what[i] = None
        if kind == _EVENT and moved:
            self.rule.clear(i)
        elif kind == _REPLY and out is not None:
            self.reply = out[1]

    def _switch(self, a):
        """Make path `a` the one that carries events."""
        if a == self.active:
            return
        old = self.active
        self.log("path %d carries the events (was path %d)" % (a + 1, old + 1))
        if self.what[old] == _EVENT or self.what[old] == _TRACK:
            self._take_back(old)
        self.active = a

    def _schedule(self, now_ms):
        a = self.active
        head = self.queue.head()
        if head is not None and self.sessions[a].pending is not None and \
                self.what[a] != _EVENT:
            self._take_back(a)  # events first: a link test or a probe waits
        if self.sessions[a].pending is None:
            self._active(a, head, now_ms)
        for b in range(len(self.sessions)):
            if b != a and self.sessions[b].pending is None:
                self._standby(b, now_ms)

    def _active(self, a, head, now_ms):  # type: (int, tuple | None, int) -> None
        """What idle path `a`, the one that carries the events, sends."""
        if head is not None:
            self._offer(a, _EVENT, head[0], head[1], now_ms)
            self.rule.offered(a, now_ms)
        elif self.reply is not None:
            self._offer(a, _REPLY, self.seqs.take(), self.reply, now_ms)
            self.reply = None
        elif not self.hello_sent:
            self._offer(a, _HELLO, self.seqs.take(), self._hello(), now_ms)
        elif self.track is not None and self.track.depth:
            self._track_on(a, now_ms)
        elif ticks_diff(now_ms, self.last_ok[a]) >= self.hb_ms[0]:
            self._heartbeat_on(a, now_ms)

    def _standby(self, b, now_ms):  # type: (int, int) -> None
        """What idle standby path b sends: its probe when it failed
        events, else a heartbeat when due."""
        if not self.rule.ok[b]:
            if self.rule.probe_due(b, now_ms):
                self._probe_on(b, now_ms)
        elif not self.sessions[b].up or ticks_diff(now_ms, self.last_ok[b]) >= self.hb_ms[1]:
            self._heartbeat_on(b, now_ms)

    def _heartbeat_on(self, i, now_ms):
        self._offer(i, _HEARTBEAT, self.seqs.take(), self._heartbeat(), now_ms)

    def _track_on(self, i, now_ms):
        """The oldest track point to path i (its locals kept out of
        _active(), which runs on every idle poll: fwutil.py)."""
        order, msg = self.track.head()
        self.point[i] = order
        self._offer(i, _TRACK, self.seqs.take(), msg, now_ms)

    def _probe_on(self, i, now_ms):
        self._offer(i, _PROBE, self.seqs.take(), self._probe(i, now_ms), now_ms)

    def _check(self, now_ms):
        """The head event's bound on the path that carries it."""
        for i in range(len(self.sessions)):
            if self.what[i] == _EVENT and self.rule.watch(i, self.sessions[i].up, now_ms):
                self._failed(i, now_ms)

    def _failed(self, i, now_ms):
        self._switch(self.rule.failed(i, now_ms, self._up()))

    def _trusted(self, i, queued):
        """Path i ACKed an event (or the probe)."""
        self._switch(self.rule.accepted(i, queued, self.active, self._up()))

    def _events(self, i, now_ms):
        s = self.sessions[i]
        while True:
            ev = s.next_event()
            if ev is gp.NEED_DATA:
                return
            self._event(i, ev, now_ms)

    def _event(self, i, ev, now_ms):
        """What path i's session reported (an ACK, a NAK, a command, ...)."""
        if isinstance(ev, gp.Acked):
            kind = self.what[i]
            self.what[i] = None
            self.last_ok[i] = now_ms
            self.panel.path_state(i + 1, True)  # 350 restore: it carries frames again
            if kind == _EVENT:
                self.queue.ack(ev.seq)
                self.delivered += 1
                self._trusted(i, True)
            elif kind == _PROBE:
                self._trusted(i, False)
            elif kind == _HELLO:
                self.hello_sent = True
            elif kind == _TRACK:
                self.track.ack(self.point[i])
                self.positions += 1
        elif isinstance(ev, gp.Nakked):
            self.naks += 1
            why = "NAK %s" % w.NAK_NAMES.get(ev.reason, "?")
            self.log("path %d: %s for %d" % (i + 1, why, ev.seq))
            if self.what[i] == _EVENT:
                fix = (ev.reason == w.NAK_TIME and sane(ev.receiver_time)) or \
                    (ev.reason == w.NAK_REPLAY and _honoured(ev.seq, ev.next_seq))
                self.rule.refused(i, why, fix)
            elif self.what[i] == _TRACK and ev.reason == w.NAK_UNSUPPORTED:
                # a receiver without track storage: the point is dropped
                self._take_back(i)
                self.track.ack(self.point[i])
                self.positions_refused += 1
        elif isinstance(ev, gp.Resequence):
            self._resequence(i, ev, now_ms)
        elif isinstance(ev, gp.TimeSet):
            self._set_clock(i, ev, now_ms)
        elif isinstance(ev, gp.CommandReceived):
            self.seqs.set_last_command(ev.seq)
            p = self.panel
            r = p.command(ev.command, ev.partition, ev.arg, ev.user, now_ms,
                          self.clock.trusted_now(now_ms))
            self.reply = {"type": w.MSG_REPLY, "command_seq": ev.seq, "result": r,
                          "troubles": p.troubles & 0xFFFF, "partitions": p.wire_states()}
        elif isinstance(ev, gp.PathDown):
            self.log("path %d down" % (i + 1))
            self.panel.path_state(i + 1, False)
            if i == self.active:
                self._switch(self.rule.pick(i, self._up()))
            if True not in self._up():
                self._fall_back()
        elif isinstance(ev, gp.PathUp):
            self.log("path %d up" % (i + 1))
            self._switch(self.rule.pick(self.active, self._up()))

    # -- receiver values, range-checked --------------------------------------------

    def _set_clock(self, i, ev, now_ms):
        # authenticated (sealed, bound to our frame): trusted if sane
        if self.clock.set(ev.unix_time, now_ms, ev.utc_offset_min, True):
            self.panel.clock_set(True)
            self.log("clock set %d" % ev.unix_time)
        else:
            self.refused += 1
            self.log("path %d: receiver time %d refused (not 2024..2099)" % (i + 1,
                                                                              ev.unix_time))

    def _resequence(self, i, ev, now_ms):
        if not _honoured(ev.old_seq, ev.next_seq) or not self.seqs.raise_to(ev.next_seq):
            # a jump the panel cannot honour: refused, reported by the
            # NAK counting as a refusal (354 when the event fails over)
            self.refused += 1
            self.rule.why[i] = "seq jump to %d refused" % ev.next_seq
            self.log("path %d: resequence %d -> %d refused (beyond %d)" % (
                i + 1, ev.old_seq, ev.next_seq, SEQ_LIMIT))
            return
        self.log("path %d: resequence %d -> %d" % (i + 1, ev.old_seq, ev.next_seq))
        self._take_back(i, False)  # the same event, renumbered: its bound runs on
        self._renumber_below(ev.next_seq)
        for k in range(len(self.sessions)):
            p = self.sessions[k].pending
            if p is not None and self.what[k] == _EVENT and self.queue.find(p) < 0:
                self._take_back(k, False)

    def _renumber_below(self, next_seq):
        """Every queued record below next_seq gets a new number, oldest
        first, so they keep the order they happened in.  The seq store
        says a renumbering runs (raise_to) until renumbered(): a power cut
        in between leaves the oldest renumbered and the rest not, and the
        next boot finishes it (__init__) before anything is sent."""
        for seq in self.queue.seqs():
            if seq < next_seq:
                self.queue.renumber(seq, self.seqs.take())
        self.seqs.renumbered()

    def _fall_back(self):
        """Every path is silent: if a resequence moved the counter, undo
        it (seqstore.fall_back) and renumber the queue from there, in
        order.  A receiver drops without an answer a frame more than
        MAX_SEQ_JUMP past the highest it accepted, so a key holder's jump
        (or one asked by another receiver) would otherwise silence the
        genuine receiver for good; a genuine jump costs one more NAK(replay)
        when the receiver answers again."""
        q = self.queue
        if not self.seqs.fall_back(len(q)):
            return
        self.log("every path silent after a resequence: counting on from %d" % self.seqs.next)
        for k in range(len(self.sessions)):
            self._take_back(k, False)  # offered again with the new numbers
        start = self.seqs.next
        for seq in q.seqs():  # in order, from start (below it: a power loss cut
            if seq >= start:  # a fall-back short after renumbering these)
                new = self.seqs.take()
                if new != seq:
                    q.renumber(seq, new)
        self.seqs.forget_undo()

    def status(self):
        paths = []
        for i in range(len(self.sessions)):
            s = self.sessions[i]
            paths.append({"up": s.up, "pending": s.pending, "sent": s.sent,
                          "rejected": s.rejected, "events_ok": self.rule.ok[i],
                          "why": self.rule.why[i],
                          "foreign": getattr(self.links[i], "foreign", 0)})
        return {"active_path": self.active + 1, "delivered": self.delivered,
                "naks": self.naks, "refused": self.refused, "queue": len(self.queue),
                "next_seq": self.seqs.next, "paths": paths, "dropped": self.queue.dropped,
                "clock_trusted": self.clock.trusted,
                "track": None if self.track is None else {
                    "queued": len(self.track), "delivered": self.positions,
                    "coalesced": self.track.coalesced, "refused": self.positions_refused}}
