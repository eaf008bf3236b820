# Reporting: the persistent queue to the receiver over two paths.
#
# One glpanel.PanelSession per path (the lead's sans-I/O core decides
# retransmission, backoff, path up/down and clock/command handling); this
# module decides *what* each path carries:
#   - the active path carries the queue head (lockstep: one record at a
#     time, oldest first), then a pending REPLY, the boot HELLO, and a
#     HEARTBEAT when nothing was ACKed on it for heartbeat_s;
#   - the other path carries only heartbeats (every backup_heartbeat_s)
#     so that its failure is found and reported before it is needed;
#   - PathDown on the active path: the outstanding record is withdrawn and
#     offered on the other path, which becomes active; the trouble (350,
#     zone = path number) is queued like any event, so it leaves over the
#     path that still works.  The down path keeps a heartbeat outstanding
#     (the session retries it with capped backoff) as a probe; its
#     PathUp restores the trouble and, for the primary, fails back.
#   - a record leaves the queue only on Acked; Resequence renumbers every
#     queued record below the receiver's next_seq (copy, then drop).
# Sequence numbers: records keep the one given when queued; heartbeats,
# HELLO and REPLY take one from the counter when offered.

from binascii import unhexlify
from fwutil import const, ticks_diff

try:
    from protocol.lean import glwire as w  # pyright: ignore[reportMissingImports]  (host-only package)
    from protocol.lean import glpanel as gp  # pyright: ignore[reportMissingImports]  (host-only package)
except ImportError:
    import glwire as w
    import glpanel as gp

FW_VERSION = (0, 1, 0)
CAP_COMMANDS = const(0x0001)

_EVENT = const(1)
_HEARTBEAT = const(2)
_HELLO = const(3)
_REPLY = const(4)


class Reporter:
    def __init__(self, cfg, queue, seqs, clock, panel, links, now_ms, log=None):
        tim = cfg["timings"]
        keys = w.Keys(unhexlify(cfg["key"]))
        self.account = cfg["account"]
        self.queue = queue
        self.seqs = seqs
        self.clock = clock
        self.panel = panel
        self.links = links
        self.log = log or (lambda s: None)
        self.sessions = []
        for i in range(len(links)):
            self.sessions.append(gp.PanelSession(
                self.account, keys, backup=i == 1,
                last_command_seq=seqs.last_command_seq,
                ack_timeout_ms=tim["ack_timeout_ms"], max_backoff_ms=tim["max_backoff_ms"],
                fail_after=tim["fail_after"]))
        self.what = [None] * len(links)  # kind of the outstanding message
        # supervision: the active path every heartbeat_s, the standby one
        # every backup_heartbeat_s (whichever path is which at the time)
        self.hb_ms = [tim["heartbeat_s"] * 1000, tim["backup_heartbeat_s"] * 1000]
        self.last_ok = [now_ms] * len(links)
        self.active = 0
        self.hello_sent = False
        self.reply = None
        self.delivered = 0
        self.naks = 0
        self.heartbeat_s = tim["heartbeat_s"]

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

    # -- the loop -----------------------------------------------------------------

    def poll(self, now_ms):
        for i in range(len(self.sessions)):
            s = self.sessions[i]
            link = self.links[i]
            link.poll(now_ms)
            if link.lost:
                link.lost = False
                s.connection_lost()
            for _ in range(4):  # bounded work per poll
                d = link.recv()
                if d is None:
                    break
                if link.stream:
                    s.receive_data(d, self.clock.now(now_ms))
                else:
                    s.receive_datagram(d, self.clock.now(now_ms))
            self._events(i, now_ms)
        self._schedule(now_ms)
        for i in range(len(self.sessions)):
            s = self.sessions[i]
            out = s.data_to_send(now_ms, self.clock.now(now_ms))
            if out is not None:
                self.links[i].send(out)
            self._events(i, now_ms)

    def _offer(self, i, kind, seq, msg, now_ms):
        self.what[i] = kind
        self.sessions[i].offer(seq, msg, now_ms)

    def _schedule(self, now_ms):
        n = len(self.sessions)
        a = self.active
        s = self.sessions[a]
        if s.pending is None:
            head = self.queue.head()
            if head is not None:
                self._offer(a, _EVENT, head[0], head[1], now_ms)
            elif self.reply is not None:
                self._offer(a, _REPLY, self.seqs.take(), self.reply, now_ms)
                self.reply = None
            elif not self.hello_sent:
                self._offer(a, _HELLO, self.seqs.take(), self._hello(), now_ms)
            elif ticks_diff(now_ms, self.last_ok[a]) >= self.hb_ms[0]:
                self._offer(a, _HEARTBEAT, self.seqs.take(), self._heartbeat(), now_ms)
        for b in range(n):
            if b == a or self.sessions[b].pending is not None:
                continue
            s = self.sessions[b]
            if not s.up or ticks_diff(now_ms, self.last_ok[b]) >= self.hb_ms[1]:
                self._offer(b, _HEARTBEAT, self.seqs.take(), self._heartbeat(), now_ms)

    def _events(self, i, now_ms):
        s = self.sessions[i]
        while True:
            ev = s.next_event()
            if ev is gp.NEED_DATA:
                return
            if isinstance(ev, gp.Acked):
                kind = self.what[i]
                self.what[i] = None
                self.last_ok[i] = now_ms
                if kind == _EVENT:
                    self.queue.ack(ev.seq)
                    self.delivered += 1
                elif kind == _HELLO:
                    self.hello_sent = True
            elif isinstance(ev, gp.Nakked):
                self.naks += 1
                self.log("path %d: NAK %s for %d" % (i + 1, w.NAK_NAMES.get(ev.reason, "?"),
                                                     ev.seq))
            elif isinstance(ev, gp.Resequence):
                self._resequence(i, ev, now_ms)
            elif isinstance(ev, gp.TimeSet):
                self.clock.set(ev.unix_time, now_ms, ev.utc_offset_min)
                self.panel.clock_set()
                self.log("clock set %d" % ev.unix_time)
            elif isinstance(ev, gp.CommandReceived):
                self.seqs.set_last_command(ev.seq)
                p = self.panel
                r = p.command(ev.command, ev.partition, ev.arg, ev.user, now_ms,
                              self.clock.now(now_ms))
                self.reply = {"type": w.MSG_REPLY, "command_seq": ev.seq, "result": r,
                              "troubles": p.troubles & 0xFFFF, "partitions": p.wire_states()}
            elif isinstance(ev, gp.PathDown):
                self.log("path %d down" % (i + 1))
                self.panel.path_state(i + 1, False)
                if i == self.active and len(self.sessions) > 1:
                    if self.what[i] == _EVENT:
                        s.withdraw()
                        self.what[i] = None
                    self.active = 1 - i
            elif isinstance(ev, gp.PathUp):
                self.log("path %d up" % (i + 1))
                self.panel.path_state(i + 1, True)
                if i == 0 and self.active == 1:
                    self.active = 0  # fail back to the primary
                    if self.what[1] == _EVENT:
                        self.sessions[1].withdraw()
                        self.what[1] = None

    def _resequence(self, i, ev, now_ms):
        self.log("path %d: resequence %d -> %d" % (i + 1, ev.old_seq, ev.next_seq))
        self.seqs.raise_to(ev.next_seq)
        self.sessions[i].withdraw()
        self.what[i] = None
        for seq in self.queue.seqs():
            if seq < ev.next_seq:
                self.queue.renumber(seq, self.seqs.take())
        for k in range(len(self.sessions)):
            p = self.sessions[k].pending
            if p is not None and self.what[k] == _EVENT and self.queue.find(p) < 0:
                self.sessions[k].withdraw()
                self.what[k] = None

    def status(self):
        return {"active_path": self.active + 1, "delivered": self.delivered,
                "naks": self.naks, "queue": len(self.queue), "next_seq": self.seqs.next,
                "paths": [{"up": s.up, "pending": s.pending, "sent": s.sent,
                           "rejected": s.rejected} for s in self.sessions],
                "dropped": self.queue.dropped}
