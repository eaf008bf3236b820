"""The reporter (firmware/device/reporter.py) under CPython, against the
project's receiver-side session core (protocol/session.py) through fake
links, with time driven by the test."""

import sys

from firmware import DEVICE_DIR
from firmware.device import config as C
from protocol import session as rs
from protocol.lean import glwire as w
from testkit.configs import TEST_KEY, scenario_config

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import cid  # noqa: E402
import clock  # noqa: E402
import eol  # noqa: E402
import panel as P  # noqa: E402
import pqueue  # noqa: E402
import reporter  # noqa: E402
import seqstore  # noqa: E402
import trackq  # noqa: E402

T0 = 1_800_000_000


class Receiver:
    """ReceiverCore + storage of accepted events (what a receiver ACKs)."""

    def __init__(self, highest=0):
        self.core = rs.ReceiverCore(lambda acct: (TEST_KEY, highest, 0) if acct == 4242 else None)
        self.events = {}
        self.frames = []  # (path, seq, msg)
        self.up = [True, True]
        self.now_ms = 0

    def unix(self):
        return T0 + self.now_ms // 1000

    def handle(self, frame, path):
        return self.answer(self.core.handle(frame, self.unix()), path)

    def answer(self, out, path):
        """The reply to what the core judged (Accepted: stored, ACKed)."""
        if isinstance(out, rs.Accepted):
            self.frames.append((path, out.seq, out.msg))
            if out.msg["type"] == w.MSG_EVENT and not out.duplicate:
                self.events[out.seq] = out.msg
            return self.core.ack(out, self.unix())
        return out.reply


def frames_of(reader, data):
    """The glwire frames in `data`: through `reader` (a FrameReader, for a
    stream), or one datagram (reader None)."""
    if reader is None:
        return [w.decode_datagram(data)]
    reader.receive_data(data)
    frames = []
    while True:
        f = reader.next_frame()
        if f is w.NEED_DATA:
            return frames
        frames.append(f)


class FakeLink:
    def __init__(self, rx, path, stream):
        self.rx = rx
        self.path = path
        self.stream = stream
        self.lost = False
        self.inbox = []
        self.reader = w.FrameReader()

    def poll(self, now_ms):
        pass

    def send(self, data):
        if not self.rx.up[self.path - 1]:
            return False
        frames = frames_of(self.reader if self.stream else None, data)
        for f in frames:
            rep = self.rx.handle(f, self.path)
            if rep:
                self.inbox.append(rep)
        return True

    def recv(self):
        if self.inbox and self.rx.up[self.path - 1]:
            return self.inbox.pop(0)
        return None


class Rig:
    """`track_slots`: a vehicle unit's track ring of that many points
    (trackq.py) beside the event queue; boot() is a power on, every store
    reopened from its file."""

    def __init__(self, tmp_path, highest=0, track_slots=0, **timings):
        tim = {"ack_timeout_ms": 1000, "max_backoff_ms": 4000, "fail_after": 2,
               "heartbeat_s": 60, "backup_heartbeat_s": 300}
        tim.update(timings)
        cfg, errors = C.validate(scenario_config(7700, timings=tim))
        assert not errors
        self.cfg = cfg
        self.tmp = tmp_path
        self.track_slots = track_slots
        self.rx = Receiver(highest)
        self.now = 0
        self.boot()

    def boot(self):
        self.queue = pqueue.PersistentQueue(str(self.tmp / "q"), 32)
        self.track = None
        if self.track_slots:
            self.track = trackq.TrackRing(str(self.tmp / "t"), self.track_slots)
        self.seqs = seqstore.SeqStore(str(self.tmp / "s"), self.queue.max_seq() + 1)
        self.clock = clock.Clock()
        self.panel = P.Panel(self.cfg, self.now)
        self.links = [FakeLink(self.rx, 1, True), FakeLink(self.rx, 2, False)]
        self.rep = reporter.Reporter(self.cfg, self.queue, self.seqs, self.clock, self.panel,
                                     self.links, self.now, None, self.track)

    def drain(self):
        for q, code, part, zone, text in self.panel.out:
            self.queue.append(self.seqs.take(), q, code, part, zone,
                              self.clock.now(self.now), text)
        self.panel.out.clear()

    def run(self, ms, step=50):
        end = self.now + ms
        while self.now < end:
            self.now += step
            self.rx.now_ms = self.now
            self.rep.poll(self.now)
            self.drain()

    def emit(self, q, code, part=1, zone=1):
        self.panel.emit(q, code, part, zone)
        self.drain()


def test_events_delivered_in_order_and_leave_queue_only_when_acked(tmp_path):
    r = Rig(tmp_path)
    for z in range(1, 6):
        r.emit(w.Q_NEW, 130, 1, z)
    r.run(2000)
    # first frame had clock unset: NAK(time) set the clock, then all went
    assert r.clock.now(r.now) >= T0
    assert len(r.queue) == 0
    assert [m["zone"] for s, m in sorted(r.rx.events.items())] == [1, 2, 3, 4, 5]
    assert all(m["event_time"] == 0 for m in r.rx.events.values())  # queued before the clock
    r.emit(w.Q_NEW, 120, 2, 5)
    r.run(500)
    ev = r.rx.events[max(r.rx.events)]
    assert ev["code"] == 120 and abs(ev["event_time"] - r.rx.unix()) <= 2
    # the HELLO went out once the queue was empty
    assert [f for f in r.rx.frames if f[2]["type"] == w.MSG_HELLO]


def test_silent_receiver_keeps_events_queued(tmp_path):
    r = Rig(tmp_path)
    r.rx.up = [False, False]
    r.emit(w.Q_NEW, 122, 2, 4)
    r.run(30000)
    assert r.queue.seqs() and len(r.queue) >= 1
    # both paths declared down, each reported (queued for later)
    codes = [r.queue.read(r.queue.find(s))["code"] for s in r.queue.seqs()]
    assert codes.count(cid.COMM_TROUBLE) == 2
    r.rx.up = [True, True]
    r.run(20000)
    assert len(r.queue) == 0
    got = [(m["code"], m["qualifier"], m["zone"]) for m in r.rx.events.values()]
    assert (122, w.Q_NEW, 4) in got
    assert (cid.COMM_TROUBLE, w.Q_RESTORE, 1) in got


def test_primary_failure_fails_over_reports_over_backup_and_fails_back(tmp_path):
    r = Rig(tmp_path)
    r.run(1000)  # boot traffic
    r.rx.up[0] = False
    r.emit(w.Q_NEW, 110, 1, 6)
    r.run(5000)
    assert r.rep.active == 1
    assert r.panel.troubles & w.T_PATH1_FAIL
    by_code = {(m["code"], m["qualifier"]): s for s, m in r.rx.events.items()}
    assert (110, w.Q_NEW) in by_code and (cid.COMM_TROUBLE, w.Q_NEW) in by_code
    paths = {s: path for path, s, m in r.rx.frames}
    assert paths[by_code[(110, w.Q_NEW)]] == 2
    assert paths[by_code[(cid.COMM_TROUBLE, w.Q_NEW)]] == 2
    r.rx.up[0] = True
    r.run(10000)  # the primary's probe heartbeat gets through
    assert r.rep.active == 0
    assert not r.panel.troubles & w.T_PATH1_FAIL
    restore = [s for s, m in r.rx.events.items()
               if m["code"] == cid.COMM_TROUBLE and m["qualifier"] == w.Q_RESTORE]
    assert restore


def test_backup_failure_is_found_by_its_heartbeat_and_reported_over_primary(tmp_path):
    r = Rig(tmp_path, backup_heartbeat_s=20)
    r.run(1000)
    r.rx.up[1] = False
    r.run(40000)
    assert r.panel.troubles & w.T_PATH2_FAIL
    ev = [(s, m) for s, m in r.rx.events.items() if m["code"] == cid.COMM_TROUBLE]
    assert ev and ev[0][1]["zone"] == 2
    assert {path for path, s, m in r.rx.frames if s == ev[0][0]} == {1}
    assert r.rep.active == 0


def test_heartbeat_carries_partitions_and_troubles(tmp_path):
    r = Rig(tmp_path, heartbeat_s=20)
    r.panel.supplies(False, 11000, False, 0)  # AC loss delay 60 s: not yet
    r.run(25000)
    hb = [m for path, s, m in r.rx.frames if m["type"] == w.MSG_HEARTBEAT and path == 1]
    assert hb
    assert hb[-1]["partitions"] == [w.P_DISARMED, w.P_DISARMED]
    assert hb[-1]["troubles"] & w.T_LOW_BATTERY  # battery delay 10 s passed
    assert hb[-1]["active_path"] == 1


def test_resequence_after_counter_reset(tmp_path):
    # the receiver has seen up to 5000 from this account (our flash was wiped)
    r = Rig(tmp_path, highest=5000)
    r.emit(w.Q_NEW, 130, 1, 2)
    r.emit(w.Q_NEW, 130, 1, 3)
    r.run(5000)
    assert len(r.queue) == 0
    seqs = sorted(s for s, m in r.rx.events.items() if m["code"] == 130)
    assert len(seqs) == 2 and seqs[0] > 5000
    assert [r.rx.events[s]["zone"] for s in seqs] == [2, 3]  # order kept
    assert r.seqs.next > 5000


def test_receiver_command_arms_and_replies(tmp_path):
    r = Rig(tmp_path)
    r.run(1000)
    seq, frame = r.rx.core.command(4242, w.CMD_ARM_AWAY, 2, r.rx.unix(), user=77)
    r.links[0].inbox.append(frame)
    r.run(3000)
    assert r.panel.parts[1].state != 0
    replies = [m for path, s, m in r.rx.frames if m["type"] == w.MSG_REPLY]
    assert replies and replies[0]["command_seq"] == seq and replies[0]["result"] == w.R_OK
    assert r.seqs.last_command_seq == seq
    # the same frame again is a replay: no second reply
    r.links[0].inbox.append(frame)
    r.run(3000)
    assert len([m for path, s, m in r.rx.frames if m["type"] == w.MSG_REPLY]) == 1


def test_zone_trip_end_to_end_through_panel_and_reporter(tmp_path):
    r = Rig(tmp_path)
    r.panel.keypad("1234", P.K_ARM_AWAY, 1, 0, 0)
    r.panel.tick(1)
    r.drain()
    r.panel.zone_change(1, eol.ALARM, 10)
    r.drain()
    r.run(3000)
    got = [(m["qualifier"], m["code"], m["partition"], m["zone"]) for s, m in
           sorted(r.rx.events.items())]
    assert (w.Q_RESTORE, cid.OPEN_CLOSE, 1, 1) in got
    assert (w.Q_NEW, cid.BURGLARY, 1, 2) in got


def test_backup_as_active_path_is_supervised_at_heartbeat_s(tmp_path):
    r = Rig(tmp_path, heartbeat_s=20, backup_heartbeat_s=3600)
    r.run(1000)
    r.rx.up[0] = False
    r.run(30000)  # next heartbeat goes unanswered: primary down, backup active
    assert r.rep.active == 1
    n0 = len([1 for path, s, m in r.rx.frames if path == 2 and m["type"] == w.MSG_HEARTBEAT])
    r.run(65000)
    n1 = len([1 for path, s, m in r.rx.frames if path == 2 and m["type"] == w.MSG_HEARTBEAT])
    assert n1 - n0 >= 3  # every 20 s, not every hour
