"""The two session cores against each other: ACK matching, NAK handling,
clock correction, replay rules, path failure, and a stateful machine over a
lossy, duplicating, reordering link with restarts on both ends."""

from __future__ import annotations

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition,
                                 rule, initialize)

from protocol.errors import LocalProtocolError
from protocol.lean import glpanel as gp
from protocol.lean import glwire as w
from protocol.session import (Accepted, ReceiverConnection, ReceiverCore, Rejected,
                              handle_datagram)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
ACCOUNT = 4321
NOW = 1_800_000_000


def event(zone=3, code=130, q=w.Q_NEW):
    return {"type": w.MSG_EVENT, "qualifier": q, "code": code, "partition": 1,
            "zone": zone, "event_time": NOW, "text": None, "value": None}


def keyring(accounts):
    return lambda a: accounts.get(a)


def make_pair(highest=0):
    core = ReceiverCore(keyring({ACCOUNT: (KEY, highest, 0)}))
    panel = gp.PanelSession(ACCOUNT, w.Keys(KEY))
    return core, panel


def drain(panel):
    out = []
    while True:
        e = panel.next_event()
        if e is gp.NEED_DATA:
            return out
        out.append(e)


def roundtrip(core, panel, now_ms=0, unix=NOW, rx_now=NOW):
    """Panel sends its due frame; receiver judges; reply goes back.
    `unix` is the panel's clock (0 = unset), `rx_now` the receiver's."""
    frame = panel.data_to_send(now_ms, unix)
    assert frame is not None
    res = handle_datagram(core, frame, rx_now)
    reply = core.ack(res, rx_now) if isinstance(res, Accepted) else res.reply
    if reply is not None:
        panel.receive_data(reply, unix)
    return res, drain(panel)


def test_event_acked_and_cleared():
    core, panel = make_pair()
    panel.offer(1, event())
    res, evs = roundtrip(core, panel)
    assert isinstance(res, Accepted) and not res.duplicate
    assert res.msg["code"] == 130 and res.msg["zone"] == 3
    assert [type(e) for e in evs] == [gp.Acked]
    assert panel.pending is None
    assert panel.data_to_send(10_000, NOW) is None


def test_committed_window_follows_the_highest_sequence_and_stays_bounded():
    """What the core remembers per account for duplicates: every committed
    sequence in the reorder window, and never more than twice the window,
    whether the panel steps one at a time, jumps, or has stragglers ACKed
    after the window passed them."""
    core = ReceiverCore(keyring({ACCOUNT: (KEY, 0, 0)}))
    keys = w.Keys(KEY)
    window = core.reorder_window
    late = []
    seq = 0
    for step in [1] * 150 + [3, 200, 1, 1, 9, 1] * 10 + [1] * 70:
        seq += step
        res = handle_datagram(core, w.seal(keys, event(zone=seq % 100), ACCOUNT, seq, NOW), NOW)
        assert isinstance(res, Accepted) and not res.duplicate
        if seq % 7 == 0:
            late.append(res)  # its commit finishes after the window moved on
        else:
            core.ack(res, NOW)
        if len(late) > 3:
            core.ack(late.pop(0), NOW)
        st = core.state(ACCOUNT)
        assert len(st.committed) <= 2 * window + 1
    st = core.state(ACCOUNT)
    # every sequence stepped through in the last window and ACKed is remembered
    stepped = [q for q in range(seq - 60, seq + 1) if q % 7]
    assert all(q in st.committed for q in stepped)


def test_clock_unset_gets_nak_time_then_delivers():
    core, panel = make_pair()
    panel.offer(1, event())
    res, evs = roundtrip(core, panel, unix=0)
    assert isinstance(res, Rejected) and res.reason == w.NAK_TIME and not res.security
    kinds = [type(e) for e in evs]
    assert gp.Nakked in kinds and gp.TimeSet in kinds
    ts = [e for e in evs if isinstance(e, gp.TimeSet)][0]
    assert ts.unix_time == NOW
    # the NAK asks for an immediate resend, no backoff wait
    res, evs = roundtrip(core, panel, now_ms=1, unix=ts.unix_time)
    assert isinstance(res, Accepted)
    assert isinstance(evs[0], gp.Acked)


def test_retransmission_is_resealed_and_deduplicated():
    core, panel = make_pair()
    panel.offer(7, event())
    first = panel.data_to_send(0, NOW)
    assert panel.data_to_send(100, NOW) is None  # not due yet
    second = panel.data_to_send(gp.MAX_BACKOFF_MS * 2, NOW)
    assert first != second  # fresh IV every time
    a = handle_datagram(core, first, NOW)
    core.ack(a, NOW)
    b = handle_datagram(core, second, NOW)
    assert isinstance(b, Accepted) and b.duplicate


def test_exact_copy_is_rejected_as_replay():
    core, panel = make_pair()
    panel.offer(1, event())
    frame = panel.data_to_send(0, NOW)
    core.ack(handle_datagram(core, frame, NOW), NOW)
    again = handle_datagram(core, frame, NOW + 5)
    assert isinstance(again, Rejected)
    assert again.reason == w.NAK_REPLAY and again.security and again.reply is None


def test_old_recording_outside_window_gets_time_nak_not_stored():
    core, panel = make_pair()
    panel.offer(1, event())
    frame = panel.data_to_send(0, NOW)
    later = ReceiverCore(keyring({ACCOUNT: (KEY, 0, 0)}))  # restarted, no MAC memory
    res = handle_datagram(later, frame, NOW + 3600)
    assert isinstance(res, Rejected) and res.reason == w.NAK_TIME


def test_unknown_account_is_silent_security_event():
    core = ReceiverCore(keyring({}))
    panel = gp.PanelSession(ACCOUNT, w.Keys(KEY))
    panel.offer(1, event())
    res = handle_datagram(core, panel.data_to_send(0, NOW), NOW)
    assert isinstance(res, Rejected)
    assert res.reason == w.NAK_UNKNOWN_ACCOUNT and res.security and res.reply is None


def test_wrong_key_is_bad_mac_security_event():
    core = ReceiverCore(keyring({ACCOUNT: (KEY, 0, 0)}))
    forger = gp.PanelSession(ACCOUNT, w.Keys(OTHER_KEY))
    forger.offer(1, event())
    res = handle_datagram(core, forger.data_to_send(0, NOW), NOW)
    assert isinstance(res, Rejected) and res.reason == w.NAK_BAD_MAC and res.security


def test_reflected_receiver_frame_is_rejected():
    core, panel = make_pair()
    panel.offer(1, event())
    a = handle_datagram(core, panel.data_to_send(0, NOW), NOW)
    ack = core.ack(a, NOW)
    res = handle_datagram(core, ack, NOW)
    assert isinstance(res, Rejected) and res.security


def test_counter_reset_gets_next_seq_and_resequences():
    core, panel = make_pair(highest=500)
    panel.offer(3, event())
    res, evs = roundtrip(core, panel)
    assert isinstance(res, Rejected) and res.reason == w.NAK_REPLAY and not res.security
    reseq = [e for e in evs if isinstance(e, gp.Resequence)]
    assert reseq and reseq[0].next_seq == 501
    panel.withdraw()
    panel.offer(501, event())
    res, evs = roundtrip(core, panel, now_ms=1)
    assert isinstance(res, Accepted) and isinstance(evs[0], gp.Acked)


def test_stale_ack_for_another_seq_is_ignored():
    core, panel = make_pair()
    panel.offer(1, event())
    a = handle_datagram(core, panel.data_to_send(0, NOW), NOW)
    ack1 = core.ack(a, NOW)
    panel.receive_data(ack1, NOW)
    assert isinstance(drain(panel)[0], gp.Acked)
    panel.offer(2, event(zone=4))
    panel.data_to_send(10, NOW)
    panel.receive_data(ack1, NOW)  # replayed old ACK
    assert drain(panel) == []
    assert panel.pending == 2 and panel.rejected == 1


def test_ack_under_other_key_is_ignored():
    core = ReceiverCore(keyring({ACCOUNT: (OTHER_KEY, 0, 0)}))
    panel = gp.PanelSession(ACCOUNT, w.Keys(KEY))
    panel.offer(1, event())
    panel.data_to_send(0, NOW)
    forged = w.seal(w.Keys(OTHER_KEY), {"type": w.MSG_ACK, "ack_seq": 1}, ACCOUNT, 9, NOW,
                    w.FLAG_FROM_RECEIVER)
    panel.receive_data(forged, NOW)
    assert drain(panel) == [] and panel.pending == 1


def test_path_down_after_unanswered_then_up():
    core, panel = make_pair()
    panel.offer(1, event())
    t = 0
    evs = []
    for _ in range(gp.FAIL_AFTER + 1):
        assert panel.data_to_send(t, NOW) is not None
        t += gp.MAX_BACKOFF_MS * 2
        evs += drain(panel)
    assert any(isinstance(e, gp.PathDown) for e in evs)
    assert not panel.up
    res, evs = roundtrip(core, panel, now_ms=t)
    assert isinstance(res, Accepted)
    assert [type(e) for e in evs][:2] == [gp.PathUp, gp.Acked]


def test_backoff_is_capped():
    panel = gp.PanelSession(ACCOUNT, w.Keys(KEY), ack_timeout_ms=1000, max_backoff_ms=8000)
    panel.offer(1, event())
    t = 0
    gaps = []
    for _ in range(12):
        assert panel.data_to_send(t, NOW) is not None
        due = panel._due_ms
        gaps.append(due - t)
        t = due
    assert max(gaps) <= 8000 * 1.25
    assert gaps[0] < 1300  # first retry after ~ack_timeout


def test_command_accepted_once_and_in_order():
    core, panel = make_pair()
    seq, frame = core.command(ACCOUNT, w.CMD_ARM_AWAY, 2, NOW)
    panel.receive_data(frame, NOW)
    (cmd,) = drain(panel)
    assert isinstance(cmd, gp.CommandReceived) and cmd.command == w.CMD_ARM_AWAY
    assert cmd.partition == 2 and panel.last_command_seq == seq
    panel.receive_data(frame, NOW)  # replay
    assert drain(panel) == []
    _, newer = core.command(ACCOUNT, w.CMD_DISARM, 2, NOW)
    panel.receive_data(newer, NOW)
    assert isinstance(drain(panel)[0], gp.CommandReceived)


def test_command_outside_time_window_is_refused():
    core, panel = make_pair()
    _, frame = core.command(ACCOUNT, w.CMD_DISARM, 1, NOW - 3600)
    panel.receive_data(frame, NOW)
    assert drain(panel) == []


def test_sealing_for_an_account_without_a_key_is_our_error():
    # ack/nak/time_sync/command for an account the keyring does not know is
    # the caller's mistake: a LocalProtocolError naming the account, no frame
    core, _ = make_pair()
    stranger = ACCOUNT + 1
    calls = [lambda: core.nak(stranger, 1, w.NAK_BUSY, NOW),
             lambda: core.time_sync(stranger, 1, NOW),
             lambda: core.command(stranger, w.CMD_DISARM, 1, NOW),
             lambda: core.ack(Accepted(stranger, 1, NOW, 0, event(), False, ""), NOW)]
    for call in calls:
        with pytest.raises(LocalProtocolError, match="account %d has no key" % stranger):
            call()


def test_bad_crc_on_stream_gets_authenticated_nak():
    """Line noise on a stream the panel already uses gets a NAK bad_crc
    (the panel resends at once); on a stream where the account has not been
    accepted, silence whether the account exists or not: an answer for
    existing accounts alone would enumerate them."""
    core, panel = make_pair()
    panel.offer(1, event())
    frame = bytearray(panel.data_to_send(0, NOW))
    frame[40] ^= 0x01  # body bit flip: header intact, frame CRC wrong
    unknown = bytearray(w.seal(w.Keys(OTHER_KEY), event(), ACCOUNT + 1, 1, NOW))
    unknown[40] ^= 0x01
    fresh = ReceiverConnection(core)
    for f in (frame, unknown):
        fresh.receive_data(bytes(f))
        res = fresh.next_event(NOW)
        assert isinstance(res, Rejected) and res.reason == w.NAK_BAD_CRC
        assert res.reply is None and not res.security
    conn = ReceiverConnection(core)
    hb = gp.PanelSession(ACCOUNT, w.Keys(KEY))
    hb.offer(7, event(zone=9))
    conn.receive_data(hb.data_to_send(0, NOW))
    assert isinstance(conn.next_event(NOW), Accepted)  # the account is vouched for here
    conn.receive_data(bytes(frame))
    res = conn.next_event(NOW)
    assert isinstance(res, Rejected) and res.reason == w.NAK_BAD_CRC and not res.security
    panel.receive_data(res.reply, NOW)
    evs = drain(panel)
    assert isinstance(evs[0], gp.Nakked) and evs[0].reason == w.NAK_BAD_CRC
    # and the panel resends at once
    assert panel.data_to_send(1, NOW) is not None


def test_receiver_stream_many_frames_in_one_read():
    core, panel = make_pair()
    conn = ReceiverConnection(core)
    blob = b""
    for s in range(1, 9):
        p = gp.PanelSession(ACCOUNT, w.Keys(KEY))
        p.offer(s, event(zone=s))
        blob += p.data_to_send(0, NOW)
    got = []
    for i in range(0, len(blob), 700):
        conn.receive_data(blob[i:i + 700])
        while True:
            r = conn.next_event(NOW)
            if r is w.NEED_DATA:
                break
            got.append(r)
    assert [r.msg["zone"] for r in got] == list(range(1, 9))
    assert conn.authenticated and conn.account == ACCOUNT


# --- stateful: nothing lost, nothing doubled ---------------------------------

class LossyLinkMachine(RuleBasedStateMachine):
    """A panel with a persistent queue talks to a receiver with a store over
    a link that loses, duplicates and reorders frames; either end restarts.
    Invariant: every queued event is in the store exactly once, or still in
    the panel's queue; an event the panel saw ACKed is in the store."""

    @initialize()
    def setup(self):
        self.now_ms = 0
        self.unix = NOW
        self.queue = []  # persistent: (seq, msg), survives panel restarts
        self.next_seq = 1
        self.store = {}  # seq -> msg (unique key: account, seq)
        self.store_writes = {}  # seq -> times inserted
        self.acked_by_panel = set()
        self.delivered = set()
        self.up_link = []  # frames panel -> receiver in flight
        self.down_link = []  # frames receiver -> panel in flight
        self._new_receiver()
        self._new_panel()

    def _new_receiver(self):
        highest = max(self.store) if self.store else 0
        self.core = ReceiverCore(keyring({ACCOUNT: (KEY, highest, 0)}))

    def _new_panel(self):
        self.panel = gp.PanelSession(ACCOUNT, w.Keys(KEY), ack_timeout_ms=1000,
                                     max_backoff_ms=4000, jitter=lambda: 128)
        if self.queue:
            self.panel.offer(*self.queue[0], now_ms=self.now_ms)

    @rule(zone=st.integers(1, 32))
    def zone_trips(self, zone):
        msg = event(zone=zone)
        self.queue.append((self.next_seq, msg))
        self.next_seq += 1
        if self.panel.pending is None:
            self.panel.offer(*self.queue[0], now_ms=self.now_ms)

    @rule(ms=st.integers(0, 5000))
    def time_passes(self, ms):
        self.now_ms += ms
        self.unix += ms // 1000
        f = self.panel.data_to_send(self.now_ms, self.unix)
        if f is not None:
            self.up_link.append(f)

    @rule(ms=st.integers(0, 5000))
    def link_works_for_a_while(self, ms):
        """Time passes and everything in flight arrives in order."""
        self.time_passes(ms)
        while self.up_link or self.down_link:
            if self.up_link:
                self.deliver_up(0, False)
            if self.down_link:
                self.deliver_down(0, False)

    @precondition(lambda self: self.up_link)
    @rule(i=st.integers(0, 10), dup=st.booleans())
    def deliver_up(self, i, dup):
        i %= len(self.up_link)
        f = self.up_link[i] if dup else self.up_link.pop(i)
        res = handle_datagram(self.core, f, self.unix)
        seen_before = f in self.delivered
        self.delivered.add(f)
        if isinstance(res, Accepted):
            if res.msg["type"] == w.MSG_EVENT and not res.duplicate:
                if res.seq not in self.store:  # INSERT OR IGNORE
                    self.store[res.seq] = res.msg
                    self.store_writes[res.seq] = self.store_writes.get(res.seq, 0) + 1
            self.down_link.append(self.core.ack(res, self.unix))
        else:
            # A genuine panel is never taken for an attacker; only the link
            # repeating the very same bytes looks like (and is) a replay.
            assert not res.security or seen_before, res.detail
            if res.reply is not None:
                self.down_link.append(res.reply)

    @precondition(lambda self: self.down_link)
    @rule(i=st.integers(0, 10), dup=st.booleans())
    def deliver_down(self, i, dup):
        i %= len(self.down_link)
        f = self.down_link[i] if dup else self.down_link.pop(i)
        self.panel.receive_datagram(f, self.unix)
        while True:
            e = self.panel.next_event()
            if e is gp.NEED_DATA:
                break
            if isinstance(e, gp.Acked):
                assert self.queue and self.queue[0][0] == e.seq
                self.acked_by_panel.add(e.seq)
                self.queue.pop(0)
                if self.queue:
                    self.panel.offer(*self.queue[0], now_ms=self.now_ms)
            elif isinstance(e, gp.TimeSet):
                self.unix = e.unix_time

    @precondition(lambda self: self.up_link or self.down_link)
    @rule(up=st.booleans())
    def frame_lost(self, up):
        link = self.up_link if up and self.up_link else self.down_link or self.up_link
        link.pop(0)

    @rule()
    def receiver_restarts(self):
        self._new_receiver()

    @rule()
    def panel_power_cycles(self):
        self.up_link.clear()  # whatever was on the wire is gone
        self._new_panel()

    @invariant()
    def nothing_lost_nothing_doubled(self):
        queued = {s for s, _ in self.queue}
        for s in range(1, self.next_seq):
            assert (s in self.store) or (s in queued), "event %d lost" % s
        assert all(n == 1 for n in self.store_writes.values())
        assert self.acked_by_panel <= set(self.store)


LossyLinkMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=60,
                                              deadline=None)
test_lossy_link = LossyLinkMachine.TestCase


# --- the panel core under the real MicroPython VM ----------------------------

@pytest.mark.micropython
def test_panel_core_under_micropython_talks_to_host_receiver(mp_process):
    """The panel-side core runs in the real VM; the host receiver core
    answers. Clock correction, ACK, replay refusal all behave as on CPython."""
    vm = mp_process("""
import sys, json, binascii
import glwire as w, glpanel as gp
KEY = bytes(range(32))
p = gp.PanelSession(4321, w.Keys(KEY))
def out(o):
    sys.stdout.write(json.dumps(o) + "\\n")
while True:
    line = sys.stdin.readline()
    if not line:
        break
    c = json.loads(line)
    op = c["op"]
    if op == "offer":
        p.offer(c["seq"], {"type": 2, "qualifier": 1, "code": c["code"], "partition": 1,
                           "zone": c["zone"], "event_time": 0, "text": None, "value": None})
        out({})
    elif op == "poll":
        f = p.data_to_send(c["ms"], c["unix"])
        out({"frame": binascii.hexlify(f).decode() if f else None})
    elif op == "recv":
        p.receive_data(binascii.unhexlify(c["frame"]), c["unix"])
        evs = []
        while True:
            e = p.next_event()
            if e is gp.NEED_DATA:
                break
            evs.append(repr(e))
        out({"events": evs, "pending": p.pending})
""")
    core = ReceiverCore(keyring({ACCOUNT: (KEY, 0, 0)}))
    vm.call(op="offer", seq=1, code=122, zone=9)
    f = bytes.fromhex(vm.call(op="poll", ms=0, unix=0)["frame"])
    res = handle_datagram(core, f, NOW)
    assert isinstance(res, Rejected) and res.reason == w.NAK_TIME
    r = vm.call(op="recv", frame=res.reply.hex(), unix=0)
    assert "Nakked(1, time)" in r["events"] and "TimeSet(%d)" % NOW in r["events"]
    f = bytes.fromhex(vm.call(op="poll", ms=1, unix=NOW)["frame"])
    res = handle_datagram(core, f, NOW)
    assert isinstance(res, Accepted) and res.msg["code"] == 122 and res.msg["zone"] == 9
    r = vm.call(op="recv", frame=core.ack(res, NOW).hex(), unix=NOW)
    assert r["events"] == ["Acked(1)"] and r["pending"] is None
    # a receiver command, then its replay
    _, cmd = core.command(ACCOUNT, w.CMD_STATUS, 1, NOW)
    r = vm.call(op="recv", frame=cmd.hex(), unix=NOW)
    assert r["events"] and r["events"][0].startswith("CommandReceived")
    r = vm.call(op="recv", frame=cmd.hex(), unix=NOW)
    assert r["events"] == []


def test_reused_sequence_with_new_content_is_not_a_duplicate():
    """A panel whose counter was reset (flash wiped) reuses a sequence the
    receiver committed.  Inside the reorder window that must not be taken
    for a retransmission and ACKed unstored: the content tells them apart."""
    core, panel = make_pair()
    panel.offer(5, event(zone=3))
    first = handle_datagram(core, panel.data_to_send(0, NOW), NOW)
    core.ack(first, NOW)
    again = gp.PanelSession(ACCOUNT, w.Keys(KEY))  # the same event, resent
    again.offer(5, event(zone=3))
    dup = handle_datagram(core, again.data_to_send(0, NOW), NOW)
    assert isinstance(dup, Accepted) and dup.duplicate and dup.digest == first.digest
    reset = gp.PanelSession(ACCOUNT, w.Keys(KEY))  # counter reset: a new event, seq 5
    reset.offer(5, event(zone=9, code=122))
    new = handle_datagram(core, reset.data_to_send(0, NOW), NOW)
    assert isinstance(new, Accepted) and not new.duplicate
    assert new.digest != first.digest
