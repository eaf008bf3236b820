"""Sequence bounds at the receiver (issue 14, "Receiver side of the same
fault"): someone holding an account's key sends any sequence it likes; the
receiver must refuse a jump no panel makes, never ask the real panel to
continue where it cannot, never raise, and never lock the real panel out.

The sans-I/O core is driven directly (unit tests and a hypothesis state
machine in which a key holder sends arbitrary authentic frames and a
genuine panel must still get through), then the same attack goes through
the real receiver on loopback with its SQLite store."""

from __future__ import annotations

import asyncio
import datetime
import time

from hypothesis import assume, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from protocol import dc09
from protocol.lean import glpanel as gp
from protocol.lean import glwire as w
from protocol.session import (MAX_NEXT_SEQ, MAX_SEQ_JUMP, REORDER_WINDOW, Accepted,
                              ReceiverConnection, ReceiverCore, Rejected, handle_datagram)
from receiver.config import Config
from receiver.testing import make_accounts, running_receiver
from testkit.session_panel import SessionPanel, event_msg, heartbeat_msg
from testkit.wait import wait_until
from tests.test_rx_server import Raw, event_frame, opened, seal_raw, security_events

KEY = bytes(range(32))
KEYS = w.Keys(KEY)
ACCOUNT = 4321
NOW = 1_800_000_000
U32 = 0xFFFFFFFF


def event(zone=3, code=130):
    return {"type": w.MSG_EVENT, "qualifier": w.Q_NEW, "code": code, "partition": 1,
            "zone": zone, "event_time": NOW, "text": None, "value": None}


def core_at(highest):
    return ReceiverCore(lambda a: (KEY, highest, 0) if a == ACCOUNT else None)


def judge(core, seq, msg=None, ts=NOW):
    return handle_datagram(core, w.seal(KEYS, msg or event(), ACCOUNT, seq, ts), NOW)


def nak_of(reply):
    m = w.open_frame(KEYS, w.decode_datagram(reply))
    assert m["type"] == w.MSG_NAK
    return m


def genuine_panel_delivers(core, seq, rounds=3):
    """The real panel core (glpanel) at counter ``seq`` sends one event and
    follows the receiver's answers (Resequence renumbers it, as the
    firmware does).  True once ACKed."""
    panel = gp.PanelSession(ACCOUNT, KEYS)
    msg = event(zone=seq % 200)
    panel.offer(seq, msg, 0)
    for i in range(rounds):
        frame = panel.data_to_send(i * 60_000, NOW)
        res = handle_datagram(core, frame, NOW)
        reply = core.ack(res, NOW) if isinstance(res, Accepted) else res.reply
        if reply is None:
            return False
        panel.receive_datagram(reply, NOW)
        while True:
            ev = panel.next_event()
            if ev is gp.NEED_DATA:
                break
            if isinstance(ev, gp.Acked):
                return True
            if isinstance(ev, gp.Resequence):
                panel.withdraw()
                panel.offer(ev.next_seq, msg, i * 60_000)
    return False


# -- the attack, on the core ------------------------------------------------------------


def test_a_jump_no_panel_makes_is_refused_and_the_panel_carries_on():
    """Seen: seq 0xFFFFFFF0 from a key holder was ACKed, and the real panel
    was then told ``next_seq 4294967281``."""
    core = core_at(100)
    res = judge(core, 0xFFFFFFF0)
    assert isinstance(res, Rejected) and res.security and res.reply is None
    assert res.reason_name == "sequence_jump"
    assert "4294967280 is 4294967180 ahead of the highest accepted 100" in res.detail
    assert core.state(ACCOUNT).highest_seq == 100
    # the real panel continues where it was, and is not told to go anywhere
    assert genuine_panel_delivers(core, 101)
    assert core.state(ACCOUNT).highest_seq == 101


def test_a_jump_within_the_bound_is_accepted():
    core = core_at(100)
    res = judge(core, 100 + MAX_SEQ_JUMP)
    assert isinstance(res, Accepted) and not res.duplicate
    core.ack(res, NOW)
    assert isinstance(judge(core, 100 + 2 * MAX_SEQ_JUMP + 1), Rejected)


def test_a_spent_sequence_space_restarts_at_the_genuine_panel():
    """Seen: with highest_seq at 0xFFFFFFFF every lower frame raised inside
    the core (internal_error) and the account could never be resequenced."""
    core = core_at(U32)
    res = judge(core, 500)
    assert isinstance(res, Accepted) and res.restarted_from == U32
    ack = w.open_frame(KEYS, w.decode_datagram(core.ack(res, NOW)))
    assert ack["ack_seq"] == 500
    st_ = core.state(ACCOUNT)
    assert st_.highest_seq == 500
    nxt = judge(core, 501)
    assert isinstance(nxt, Accepted) and nxt.restarted_from is None


def test_a_key_holder_ratcheting_up_cannot_lock_the_panel_out():
    core = core_at(1_000)
    seq = 1_000
    while seq <= MAX_NEXT_SEQ:  # 128 frames, each as far as allowed
        seq += MAX_SEQ_JUMP
        res = judge(core, seq, event(zone=seq % 7))
        assert isinstance(res, Accepted)
        core.ack(res, NOW)
    assert core.state(ACCOUNT).highest_seq > MAX_NEXT_SEQ
    assert genuine_panel_delivers(core, 1_001)
    assert core.state(ACCOUNT).highest_seq == 1_001


def test_resequence_never_asks_beyond_max_next_seq():
    core = core_at(MAX_NEXT_SEQ - 1)
    res = judge(core, 5)
    assert isinstance(res, Rejected) and not res.security
    assert nak_of(res.reply)["next_seq"] == MAX_NEXT_SEQ
    # one more and asking would be beyond the bound: restart instead
    core = core_at(MAX_NEXT_SEQ)
    res = judge(core, 5)
    assert isinstance(res, Accepted) and res.restarted_from == MAX_NEXT_SEQ
    # sequence 0 (never sent by a panel) is told to start at 1, never above
    core = core_at(U32)
    res = judge(core, 0)
    assert nak_of(res.reply)["next_seq"] == 1


def test_a_counter_reset_panel_is_still_resequenced():
    core = core_at(10_000)
    res = judge(core, 3)
    assert isinstance(res, Rejected) and not res.security
    assert nak_of(res.reply)["next_seq"] == 10_001
    assert genuine_panel_delivers(core, 3)
    assert core.state(ACCOUNT).highest_seq == 10_001


# -- no in-range frame raises; the genuine panel always gets through --------------------

SPECIAL = [0, 1, 2, REORDER_WINDOW, MAX_SEQ_JUMP, MAX_SEQ_JUMP + 1, MAX_NEXT_SEQ - 1,
           MAX_NEXT_SEQ, MAX_NEXT_SEQ + 1, U32 - MAX_SEQ_JUMP, U32 - 1, U32]
ABSOLUTE = st.one_of(st.sampled_from(SPECIAL), st.integers(0, U32))
RELATIVE = st.one_of(st.integers(-3 * REORDER_WINDOW, 3 * REORDER_WINDOW),
                     st.sampled_from([MAX_SEQ_JUMP, MAX_SEQ_JUMP + 1, -MAX_SEQ_JUMP]))
MSG_TYPES = [w.MSG_EVENT, w.MSG_HEARTBEAT, w.MSG_HELLO, w.MSG_ACK, w.MSG_NAK, w.MSG_TIME,
             w.MSG_COMMAND, w.MSG_REPLY, 0x7F]


class KeyHolderMachine(RuleBasedStateMachine):
    """Someone with the key sends authentic frames with any sequence,
    timestamp, type and payload bytes (and bad CRCs); the receiver ACKs
    what it accepts.  Whatever happened, nothing raised, every NAK is a
    sequence a panel may be asked for, and a genuine panel within reach of
    the highest accepted sequence delivers an event."""

    @initialize(highest=ABSOLUTE)
    def setup(self, highest):
        self.core = core_at(highest)
        self.conn = ReceiverConnection(self.core)

    def _seq(self, absolute, relative, use_relative):
        if not use_relative:
            return absolute
        return min(U32, max(0, self.core.state(ACCOUNT).highest_seq + relative))

    def _check(self, res):
        assert isinstance(res, (Accepted, Rejected))
        reply = self.core.ack(res, NOW) if isinstance(res, Accepted) else res.reply
        if reply is not None:
            m = w.open_frame(KEYS, w.decode_datagram(reply))
            if m["type"] == w.MSG_NAK and m["reason"] == w.NAK_REPLAY:
                assert 1 <= m["next_seq"] <= MAX_NEXT_SEQ

    @rule(absolute=ABSOLUTE, relative=RELATIVE, use_relative=st.booleans(),
          dt=st.integers(-90, 90), zone=st.integers(0, 255),
          heartbeat=st.booleans())
    def key_holder_sends(self, absolute, relative, use_relative, dt, zone, heartbeat):
        msg = event(zone=zone) if not heartbeat else {
            "type": w.MSG_HEARTBEAT, "troubles": 0, "battery_mv": 13600, "active_path": 1,
            "queue_depth": 0, "partitions": [0]}
        seq = self._seq(absolute, relative, use_relative)
        self._check(handle_datagram(self.core, w.seal(KEYS, msg, ACCOUNT, seq, NOW + dt), NOW))

    @rule(absolute=ABSOLUTE, relative=RELATIVE, use_relative=st.booleans(),
          mtype=st.sampled_from(MSG_TYPES), payload=st.binary(max_size=64),
          flags=st.sampled_from([0, w.FLAG_BACKUP_PATH, w.FLAG_CLOCK_UNSET, 0x80]))
    def key_holder_sends_any_payload(self, absolute, relative, use_relative, mtype, payload,
                                     flags):
        seq = self._seq(absolute, relative, use_relative)
        f = seal_raw(KEYS, mtype, payload, ACCOUNT, seq, ts=NOW, flags=flags)
        self._check(handle_datagram(self.core, f, NOW))

    @rule(absolute=ABSOLUTE, at=st.integers(21, 60))
    def line_noise_on_a_stream(self, absolute, at):
        f = bytearray(w.seal(KEYS, event(), ACCOUNT, absolute, NOW))
        f[at] ^= 0x40  # body bit flip: header intact, frame CRC wrong
        self.conn.receive_data(bytes(f))
        while True:
            res = self.conn.next_event(NOW)
            if res is w.NEED_DATA:
                break
            self._check(res)

    @rule(p=st.integers(1, MAX_NEXT_SEQ), relative=RELATIVE, use_relative=st.booleans())
    def genuine_panel_reports(self, p, relative, use_relative):
        p = max(1, self._seq(p, relative, use_relative))
        # a panel further ahead than any counter gets is refused by design
        assume(p <= self.core.state(ACCOUNT).highest_seq + MAX_SEQ_JUMP)
        assert genuine_panel_delivers(self.core, p)

    @invariant()
    def state_in_range(self):
        s = self.core.state(ACCOUNT)
        assert 0 <= s.highest_seq <= U32
        assert all(s.highest_seq - REORDER_WINDOW < q <= s.highest_seq for q in s.committed)


KeyHolderMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30,
                                              deadline=None)
test_key_holder_cannot_break_the_core = KeyHolderMachine.TestCase


# -- through the real receiver ----------------------------------------------------------------


def tcp_config(tmp_path):
    return Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)])


def panel_of(rx, account):
    host, port = rx.addresses["tcp"][0]
    return SessionPanel(int(account.number), account.key, host, port)


async def test_far_jump_over_tcp_is_a_security_event_and_the_panel_is_acked(tmp_path):
    accounts = make_accounts(2, first=61)
    a = accounts[61]
    async with running_receiver(tcp_config(tmp_path), accounts) as rx:
        panel = panel_of(rx, a)
        await panel.deliver(100, event_msg(zone=1))
        # the key holder's frame, then another account's event on the same
        # connection: that ACK is the first reply, so the jump was not answered
        c = await Raw.connect(rx)
        c.send(event_frame(a.key, 61, 0xFFFFFFF0, zone=2))
        c.send(event_frame(accounts[62].key, 62, 1))
        assert opened(accounts[62].key, await c.next_frame())["ack_seq"] == 1
        c.close()
        rows = await wait_until(lambda: security_events(rx, "sequence_jump"))
        assert rows[0].account == "61" and rows[0].seq == 0xFFFFFFF0
        assert "ahead of the highest accepted 100" in rows[0].detail
        await panel.deliver(101, event_msg(zone=3))  # ACKed; no resequence
        await panel.close()
        assert panel.naks == []
        assert rx.core.state(61).highest_seq == 101


async def test_account_spent_by_a_key_holder_restarts_at_the_panel(tmp_path):
    accounts = make_accounts(1, first=63)
    async with running_receiver(tcp_config(tmp_path), accounts) as rx:
        await rx.store.save_replay_state([("63", U32, 0)])  # where the key holder left it
    async with running_receiver(tcp_config(tmp_path)) as rx:
        panel = panel_of(rx, accounts[63])
        for seq in (40, 41):
            await panel.deliver(seq, event_msg(zone=seq))
        await panel.close()
        rows = await wait_until(lambda: security_events(rx, "sequence_restart"))
        assert rows[0].seq == 40 and "4294967295" in rows[0].detail
        got = sorted(e.zone if not isinstance(e, dict) else e["zone"]
                     for e in await rx.store.list_events(account="63"))
        assert got == [40, 41]
        assert rx.metrics.connections_closed.labels("internal_error")._value.get() == 0


# -- the DC-09 side ------------------------------------------------------------------------
# DC-09 sequence numbers are four digits that wrap (0001..9999, 5.5.1.5) and
# the receiver keeps no order on them: a copy is recognised by sequence and
# content within DEDUPE_WINDOW_S.  So there is no sequence space to spend;
# what a key holder (or, on a keyless account, anyone) controls is the
# sequence, the timestamp (up to year 9999), the line, the receiver and the
# data.  Whatever they are, the judge gives a verdict, its ACK or NAK is
# built, and an event verdict makes a valid record (a record that raised
# would never be ACKed, and the panel would retry it for ever).

_DC_KEY = bytes(range(16))
_DC_NOW = 1_800_000_000.0
_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                              blacklist_characters="[]"), max_size=40)
_WHEN = st.one_of(
    st.integers(-10 ** 8, 10 ** 8).map(
        lambda d: datetime.datetime.fromtimestamp(_DC_NOW + d, datetime.timezone.utc)),
    st.sampled_from([datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc),
                     datetime.datetime(1000, 1, 1, tzinfo=datetime.timezone.utc),
                     datetime.datetime.fromtimestamp(_DC_NOW, datetime.timezone.utc)]))
_DATA = st.one_of(
    _TEXT,
    st.builds(lambda a, q, c, p, z: "#%s|%d%03d %02d %03d" % (a, q, c, p, z),
              st.sampled_from(["A128", "BEEF", "0AFF"]), st.sampled_from([1, 3, 6, 9]),
              st.integers(0, 999), st.integers(0, 99), st.integers(0, 999)),
    st.builds(lambda a, t: "#%s|N%s" % (a, t), st.sampled_from(["A128", "BEEF"]), _TEXT))
_RX = []


def _dc09_world():
    from receiver import dc09_core  # noqa: PLC0415
    from receiver.app import Receiver  # noqa: PLC0415
    from receiver.store import Account  # noqa: PLC0415

    if not _RX:
        accts = {a.number: a for a in (
            Account("A128", _DC_KEY, protocol="dc09"), Account("BEEF", b"", protocol="dc09"),
            Account("0AFF", _DC_KEY, protocol="dc09"))}
        settings_ = {"0AFF": dc09_core.AccountSettings((-86_400, 86_400), 14 * 3600)}
        core = dc09_core.Dc09Core(accts.get, lambda n: settings_.get(n))
        _RX.append((core, Receiver(Config(db="/nonexistent/never-opened.db"))))
    return _RX[0]


@settings(max_examples=300, deadline=None)
@given(account=st.sampled_from(["A128", "BEEF", "0AFF"]),
       msg_id=st.sampled_from([dc09.ADM_CID, dc09.SIA_DCS, dc09.NULL, "ADM-XYZ"]),
       seq=st.integers(0, 9999), data=_DATA, when=_WHEN,
       receiver=st.one_of(st.none(), st.sampled_from(["0", "FFFFFF", "12AB"])),
       line=st.one_of(st.none(), st.sampled_from(["0", "FFFFFF"])),
       clear_timestamp=st.booleans())
def test_dc09_frames_a_key_holder_can_send_never_raise(account, msg_id, seq, data, when,
                                                       receiver, line, clear_timestamp):
    from receiver import dc09_core  # noqa: PLC0415

    core, rx = _dc09_world()
    keyed = account != "BEEF"
    m = dc09.Dc09Message(msg_id, keyed, seq, receiver, line, account, data, [],
                         when if keyed or clear_timestamp else None)
    v = core.judge(dc09.build(m, _DC_KEY if keyed else None), _DC_NOW)
    assert v.kind in (dc09_core.EVENT, dc09_core.LINK, dc09_core.REPLY)
    if v.kind == dc09_core.REPLY:
        assert dc09.parse(v.reply).msg_id in (dc09.NAK, dc09.DUH)
        return
    ack = dc09.parse(core.ack(v, _DC_NOW), key_lookup=lambda _a: _DC_KEY)
    assert (ack.msg_id, ack.seq) == (dc09.ACK, seq)
    dc09.parse(core.nak(account, _DC_NOW))
    if v.kind == dc09_core.EVENT:
        assert v.events
        for e in v.events:
            rec = rx.make_record(e)
            assert rec.account == account and rec.seq == seq


def test_dc09_window_beyond_a_day_is_refused(tmp_path):
    """A window of 10^20 s made every encrypted DC-09 message raise inside
    the judge (timedelta overflow): refused when the config is read."""
    from receiver.config import ConfigError, load  # noqa: PLC0415

    p = tmp_path / "r.toml"
    for text in ('[dc09]\nwindow_s = [-1e20, 20]\n',
                 '[dc09.accounts.12AB]\nwindow_s = [-40, 86401]\n'):
        p.write_text(text)
        try:
            load(str(p))
        except ConfigError as e:
            assert "-86400 <= lower <= 0 <= upper <= 86400" in str(e)
        else:
            raise AssertionError("accepted " + text)
    p.write_text('[dc09]\nwindow_s = [-86400, 600]\n')
    assert load(str(p)).dc09_window == (-86400, 600)


async def test_acks_of_one_commit_leave_a_pipelining_connection_in_one_write(tmp_path):
    """A panel with 8 events in flight on one TCP connection: the ACKs that
    one group commit releases go out together (one writelines), not one
    transport write per ACK.  The real transport is watched, not replaced."""
    accounts = make_accounts(1, first=ACCOUNT)
    async with running_receiver(tcp_config(tmp_path), accounts) as rx:
        host, port = rx.addresses["tcp"][0]
        reader, writer = await asyncio.open_connection(host, port)
        keys = w.Keys(accounts[ACCOUNT].key)
        writer.write(w.seal(keys, heartbeat_msg(), ACCOUNT, 1, int(time.time())))
        await reader.read(w.MAX_FRAME_LEN)  # authenticated
        [proto] = [c for lst in rx.listeners if getattr(lst, "kind", "") == "tcp"
                   for c in lst.conns]
        t = proto.transport
        writes: list[int] = []
        real_write, real_writelines = t.write, t.writelines
        t.write = lambda data: (writes.append(1), real_write(data))[1]
        t.writelines = lambda lines: (writes.append(len(list(lines))),
                                      real_writelines(lines))[1]
        try:
            for rnd in range(5):
                base = 2 + rnd * 8
                writer.write(b"".join(
                    w.seal(keys, event(zone=s), ACCOUNT, s, int(time.time()))
                    for s in range(base, base + 8)))
                acked = set()
                r = w.FrameReader()
                while len(acked) < 8:
                    data = await asyncio.wait_for(reader.read(4096), 10)
                    assert data, "connection closed"
                    r.receive_data(data)
                    while (f := r.next_frame()) is not w.NEED_DATA:
                        acked.add(w.open_frame(keys, f)["ack_seq"])
                assert acked == set(range(base, base + 8))
        finally:
            t.write, t.writelines = real_write, real_writelines
            writer.close()
    # frames written (the 40 ACKs, and whatever else the receiver said) in
    # fewer writes than frames: the ACKs of a commit shared a write
    assert sum(writes) >= 40
    assert max(writes) > 1 and len(writes) < sum(writes) - 20


async def test_events_of_one_read_share_a_commit_and_each_gets_its_own_answer(tmp_path):
    """Eight events in one TCP write (a pipelining panel, one read at the
    receiver) are queued into ONE group commit, each as its own request:
    the one the database cannot store (a real trigger skips its insert, as
    if its row vanished) is NAKed busy alone and retried, the seven others
    are stored once and ACKed, alarms included, and the store stays
    healthy.  Then the panel's retry of the refused one is stored."""
    accounts = make_accounts(1, first=ACCOUNT)
    async with running_receiver(tcp_config(tmp_path), accounts) as rx:
        host, port = rx.addresses["tcp"][0]
        reader, writer = await asyncio.open_connection(host, port)
        keys = w.Keys(accounts[ACCOUNT].key)
        r = w.FrameReader()

        async def answers(n):
            got = {}
            while len(got) < n:
                data = await asyncio.wait_for(reader.read(4096), 10)
                assert data, "connection closed"
                r.receive_data(data)
                while (f := r.next_frame()) is not w.NEED_DATA:
                    m = w.open_frame(keys, f)
                    if m["type"] == w.MSG_ACK:
                        got[m["ack_seq"]] = "ack"
                    else:
                        got[m["nak_seq"]] = w.NAK_NAMES.get(m["reason"], m["reason"])
            return got

        try:
            writer.write(w.seal(keys, heartbeat_msg(), ACCOUNT, 1, int(time.time())))
            assert await answers(1) == {1: "ack"}
            await rx.store.run_write(lambda c: c.execute(
                "CREATE TRIGGER skip_5 BEFORE INSERT ON events WHEN NEW.dedupe_key "
                "LIKE 'native:5:%' BEGIN SELECT RAISE(IGNORE); END"))
            before = rx.store.commits
            writer.write(b"".join(w.seal(keys, event(zone=s), ACCOUNT, s, int(time.time()))
                                  for s in range(2, 10)))
            got = await answers(8)
            assert got == {**{s: "ack" for s in range(2, 10) if s != 5}, 5: "busy"}
            # one read, one group commit (and at most one other write of the
            # receiver's own loops committing meanwhile)
            assert rx.store.commits - before <= 2
            assert rx.store.healthy
            stored = {e.seq for e in await rx.store.list_events()}
            assert stored == {2, 3, 4, 6, 7, 8, 9}
            assert len(await rx.store.list_alarms()) == 7
            await rx.store.run_write(lambda c: c.execute("DROP TRIGGER skip_5"))
            writer.write(w.seal(keys, event(zone=5), ACCOUNT, 5, int(time.time())))
            assert await answers(1) == {5: "ack"}
            assert sorted(e.seq for e in await rx.store.list_events()) == list(range(2, 10))
        finally:
            writer.close()
