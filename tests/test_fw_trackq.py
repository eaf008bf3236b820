"""A vehicle unit's track points on their way out: the track ring
(firmware/device/trackq.py) under CPython, power loss in the middle of its
writes, and, with the reporter and the event queue against the project's
receiver-side session core, the queue rule of docs/mobile.md: events
(alarms first among them) ahead of track points, track points oldest
first and coalesced when their ring fills, never an alarm dropped for a
track point."""

import sys

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from firmware import DEVICE_DIR
from protocol import session as rs
from protocol.lean import glwire as w
from tests.test_fw_pqueue import PowerLost, corrupt, power_cuts
from tests.test_fw_reporter import Rig

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import pqueue  # noqa: E402
import trackq  # noqa: E402

SLOT = trackq.SLOT


def pos(k, flags=w.POS_VALID):
    """A position tuple whose fix time (and place) tells point k apart."""
    return (52_368_000 + k, 4_882_000 + k, 300 + k, k % 3600, 1, 9, 9, 1_767_600_000 + k, flags)


def orders(path, slots=8):
    r = trackq.TrackRing(path, slots)
    out = [(o, r.read(r.find(o))) for o in r.orders()]
    r.close()
    return out


def test_points_survive_reopen_oldest_first_and_leave_by_ack(tmp_path):
    p = str(tmp_path / "t")
    r = trackq.TrackRing(p, 8)
    for k in range(5):
        assert r.append(1 + k % 8, pos(k)) == k + 1
    assert r.head()[0] == 1
    assert r.head()[1] == {"type": w.MSG_POSITION, "reason": 1,
                           "position": {"lat": 52_368_000, "lon": 4_882_000, "speed": 300,
                                        "course": 0, "quality": 1, "sats": 9, "hdop": 9,
                                        "fix_time": 1_767_600_000, "flags": w.POS_VALID}}
    assert r.ack(1) and not r.ack(1)
    assert r.head()[0] == 2
    r.close()
    got = orders(p)
    assert [o for o, _ in got] == [2, 3, 4, 5]
    assert [m["position"]["fix_time"] for _, m in got] == [1_767_600_000 + k for k in (1, 2, 3, 4)]
    # numbering goes on after a reboot
    r = trackq.TrackRing(p, 8)
    assert r.append(2, pos(9)) == 6
    r.close()


def test_a_full_ring_coalesces_evenly_keeping_the_first_and_the_newest(tmp_path):
    r = trackq.TrackRing(str(tmp_path / "t"), 8)
    for k in range(1, 41):
        r.append(2, pos(k))
        assert len(r) == min(k, 8)
        kept = r.orders()
        assert kept[0] == 1 and kept[-1] == k  # the first point and the newest stay
    assert r.coalesced == 40 - 8
    kept = r.orders()
    gaps = [b - a for a, b in zip(kept, kept[1:])][:-1]  # (the newest follows its neighbour)
    # thinned over the whole time, not only the last hour: no gap is more
    # than twice another (the older part is never more than twice as sparse)
    assert max(gaps) <= 2 * min(gaps), kept
    assert kept[1] > 5  # the beginning is thinned too
    r.close()


def test_track_record_layout_is_glwires_position_record():
    """The ring (and pqueue's 'E' slots) keep a position as glwire's
    record without its format byte: the same bytes, the same dict."""
    buf = bytearray(pqueue.POS_LEN + 2)
    p = pos(77, w.POS_VALID | w.POS_ALARM)
    pqueue.pack_pos(buf, 1, p)
    d = pqueue.read_pos(buf, 1)
    assert w._position(d) == bytes([w.POSITION_FORMAT]) + bytes(buf[1:1 + pqueue.POS_LEN])
    assert trackq.MSG_POSITION == w.MSG_POSITION


def test_event_with_a_position_keeps_it_and_cuts_a_long_text_whole_characters(tmp_path):
    p = str(tmp_path / "q")
    q = pqueue.PersistentQueue(p, 8)
    q.append(1, 1, 170, 1, 0, 1_767_600_100, None, pos(5, w.POS_VALID | w.POS_ALARM))
    q.append(2, 1, 300, 0, 0, 1_767_600_101, "report task ValueErünknöwn", pos(6))
    q.append(3, 1, 130, 1, 2, 1_767_600_102, "plain")
    q.close()
    q = pqueue.PersistentQueue(p, 8)
    m1, m2, m3 = (q.read(q.find(s)) for s in (1, 2, 3))
    assert m1["position"] == pqueue.read_pos(_packed(pos(5, w.POS_VALID | w.POS_ALARM)), 0)
    assert m1["code"] == 170 and m1["text"] is None
    # 20 bytes at most beside a position, never half a character (the 20th
    # byte is the first of the "ü")
    assert m2["text"] == "report task ValueEr" and len(m2["text"].encode()) <= 20
    assert m3["position"] is None and m3["text"] == "plain"
    # renumbering keeps the position
    assert q.renumber(1, 10)
    assert q.read(q.find(10)) == m1
    # what glwire encodes from it: EVENT ext bit 2 with the same record
    enc = w.encode_payload(m1)
    assert w.decode_payload(w.MSG_EVENT, enc)["position"] == m1["position"]
    q.close()


def _packed(p):
    b = bytearray(pqueue.POS_LEN)
    pqueue.pack_pos(b, 0, p)
    return b


# -- power loss -------------------------------------------------------------------------

@pytest.mark.parametrize("full", [False, True])
def test_power_loss_at_every_byte_of_append_and_ack(tmp_path, full):
    """Crash after every possible number of written bytes during an
    append (into a free slot, or into a full ring that coalesces) and an
    ACK: committed points are never lost (but the one coalescing drops),
    the new one is whole or absent, nothing returned is corrupt."""
    p = str(tmp_path / "t")
    base = trackq.TrackRing(p, 4)
    for k in range(4 if full else 3):
        base.append(2, pos(k))
    base.close()
    with open(p, "rb") as f:
        image = f.read()
    before = dict(orders(p, 4))
    victim = 2 if full else None  # the interior point whose neighbours are closest
    # mark-victim byte (when full) + record + commit byte + the ACK's state byte
    total = (1 if full else 0) + SLOT + 1 + 1
    outcomes = set()
    for budget, opener in power_cuts(p, image, total):
        r = trackq.TrackRing(p, 4, opener=opener)
        try:
            o = r.append(7, pos(99))
            assert o == 5 if full else o == 4
            r.ack(1)
        except PowerLost:
            pass
        got = dict(orders(p, 4))
        for o, m in got.items():
            if o in before:
                assert m == before[o], budget  # nothing corrupt
            else:
                assert m["reason"] == 7 and m["position"]["fix_time"] == 1_767_600_099
        for o in before:
            if o not in (1, victim):
                assert o in got, (budget, o)  # committed, not ACKed, not coalesced: kept
        outcomes.add(tuple(sorted(got)))
    new = 5 if full else 4
    first = tuple(sorted(before))
    assert first in outcomes  # nothing landed
    assert tuple(sorted(set(before) - {1, victim} | {new})) in outcomes  # all of it


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_corruption_never_returns_a_corrupt_point(tmp_path_factory, data):
    p = str(tmp_path_factory.mktemp("t") / "t")
    r = trackq.TrackRing(p, 8)
    for k in range(6):
        r.append(1 + k, pos(k))
    r.close()
    good = dict(orders(p, 8))
    corrupt(p, data)
    for o, m in orders(p, 8):
        assert good.get(o) == m


# -- the queue rule, through the reporter --------------------------------------------------

TRACK_SLOTS = 6


class TrackRig(Rig):
    """tests/test_fw_reporter.py's rig with a track ring, a receiver that
    records what it took in order (and can refuse POSITION), and power
    cuts."""

    def __init__(self, tmp, nak_positions=False):
        super().__init__(tmp, track_slots=TRACK_SLOTS)
        self.rx.answer = self._answer
        self.nak_positions = nak_positions
        self.accepted = []  # ("event"|"position", msg, seq) in the order the receiver took them
        self.violations = []

    def power_cut(self):
        self.queue.close()
        self.track.close()
        self.boot()

    def _answer(self, out, path):
        if isinstance(out, rs.Accepted):
            m = out.msg
            if m["type"] == w.MSG_POSITION:
                if self.nak_positions:
                    return self.rx.core.nak(out.account, out.seq, w.NAK_UNSUPPORTED,
                                            self.rx.unix())
                if len(self.queue):
                    # a track point went out while an event waited
                    self.violations.append((out.seq, self.queue.seqs()))
                self.accepted.append(("position", m, out.seq))
            elif m["type"] == w.MSG_EVENT and not out.duplicate:
                self.accepted.append(("event", m, out.seq))
            return self.rx.core.ack(out, self.rx.unix())
        return out.reply

    def point(self, k):
        self.track.append(2, pos(k))


def test_events_go_ahead_of_track_points_queued_before_them(tmp_path):
    r = TrackRig(tmp_path)
    r.run(500)  # HELLO
    r.rx.up = [False, False]
    for k in range(4):
        r.point(k)
    r.emit(1, 130, 1, 2)
    r.emit(3, 130, 1, 2)
    r.point(4)
    r.emit(1, 122, 1, 6)
    r.run(3000)
    r.rx.up = [True, True]
    r.run(8000)
    kinds = [(k, m.get("code"), m.get("position", {}).get("fix_time")) for k, m, _ in r.accepted
             if k == "position" or m["code"] != 350]
    assert kinds == [("event", 130, None), ("event", 130, None), ("event", 122, None)] + \
        [("position", None, 1_767_600_000 + k) for k in range(5)]
    assert not r.violations
    assert len(r.track) == 0 and r.rep.positions == 5


def test_a_receiver_that_takes_no_positions_drops_them_and_fails_nothing_over(tmp_path):
    r = TrackRig(tmp_path, nak_positions=True)
    for k in range(3):
        r.point(k)
    r.run(6000)
    r.emit(1, 130, 1, 2)
    r.run(2000)
    assert len(r.track) == 0 and r.rep.positions_refused == 3
    assert r.rep.active == 0 and r.rep.rule.ok == [True, True]  # no 354, no failover
    assert [m["code"] for k, m, _ in r.accepted if k == "event"] == [130]


def test_a_holdup_goes_at_once_while_a_busy_receiver_holds_a_track_point_back(tmp_path):
    """A receiver whose store is busy NAKs track points (busy: retried
    after the session's backoff, up to max_backoff_ms).  A hold-up raised
    while a point waits in that backoff is sent at the next poll, not
    after the backoff: the point gives way (reporter._schedule) and the
    event's offer is due at once."""
    r = TrackRig(tmp_path)
    r.run(500)  # HELLO, clock set
    busy = []

    def answer(out, path):
        if isinstance(out, rs.Accepted) and out.msg["type"] == w.MSG_POSITION:
            busy.append(r.now)
            return r.rx.core.nak(out.account, out.seq, w.NAK_BUSY, r.rx.unix())
        return TrackRig._answer(r, out, path)
    r.rx.answer = answer
    r.point(0)
    r.run(6000)  # NAKed busy, resent after 1, 2, 4 s of backoff
    assert len(busy) >= 3 and len(r.track) == 1
    t0 = r.now
    r.emit(1, 122, 1, 6)
    r.run(50)  # one poll
    assert [(k, m["code"]) for k, m, _ in r.accepted if k == "event"] == [("event", 122)]
    assert r.now - t0 == 50 and busy[-1] < t0  # (the point was not resent meanwhile)
    assert len(r.track) == 1 and r.rep.positions == 0 and r.rep.rule.ok == [True, True]


class QueueRule(RuleBasedStateMachine):
    """Random alarms, other events and track points, a receiver that
    comes and goes, and power cuts: events always go ahead of track
    points, no alarm is ever dropped, track points arrive oldest first and
    the ring coalesces without losing its first or its newest point."""

    def __init__(self):
        super().__init__()
        import tempfile
        from pathlib import Path
        self._dir = tempfile.TemporaryDirectory()
        self.r = TrackRig(Path(self._dir.name))
        self.r.run(300)
        self.alarms = []  # zones of the alarms queued (zone = a serial)
        self.others = 0
        self.k = 0  # track points appended
        self.newest = None

    def teardown(self):
        r = self.r
        r.rx.up = [True, True]
        r.run(60000)
        got = [m["zone"] for k, m, _ in r.accepted if k == "event" and m["code"] == 122]
        assert sorted(set(got)) == sorted(self.alarms)  # every alarm arrived
        assert r.queue.dropped == 0  # (the event queue, 32 slots, never filled)
        assert len(r.track) == 0
        fix = [m["position"]["fix_time"] for k, m, _ in r.accepted if k == "position"]
        assert fix == sorted(fix)  # oldest first (a copy re-sent after a cut may repeat)
        if self.newest is not None:
            assert self.newest in fix  # the newest point survives any coalescing
        assert not r.violations
        r.queue.close()
        r.track.close()
        self._dir.cleanup()

    @precondition(lambda self: len(self.alarms) < 20)
    @rule()
    def alarm(self):
        zone = len(self.alarms) + 1
        self.alarms.append(zone)
        self.r.emit(1, 122, 1, zone)

    @precondition(lambda self: self.others < 10)  # with 20 alarms: never a full queue
    @rule(restore=st.booleans())
    def other_event(self, restore):
        self.others += 1
        self.r.emit(3 if restore else 1, 130 if restore else 301, 1, 0)

    def _delivered(self):
        return {m["position"]["fix_time"] for k, m, _ in self.r.accepted if k == "position"}

    def _ring(self):
        t = self.r.track
        return [t.read(t.find(o))["position"]["fix_time"] for o in t.orders()]

    @rule(n=st.integers(1, 10))
    def track_points(self, n):
        for _ in range(n):
            before = self._ring()
            self.r.point(self.k)
            self.newest = 1_767_600_000 + self.k
            self.k += 1
            after = self._ring()
            # coalescing drops an interior point: never the oldest waiting, nor
            # the newest before this one
            if before:
                assert after[0] == before[0] and before[-1] in after, (before, after)
            assert after[-1] == self.newest

    @rule(up=st.booleans())
    def link(self, up):
        self.r.rx.up = [up, up]

    @rule(ms=st.sampled_from([100, 1000, 5000]))
    def run(self, ms):
        self.r.run(ms)

    @rule()
    def power_cut(self):
        self.r.power_cut()

    @invariant()
    def bounded_and_no_track_point_before_an_event(self):
        assert len(self.r.track) <= TRACK_SLOTS
        assert not self.r.violations


TestQueueRule = QueueRule.TestCase
TestQueueRule.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
