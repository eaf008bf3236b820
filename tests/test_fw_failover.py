"""A path that answers but does not accept (issue 13): the failover rule
(firmware/device/failover.py) on its own, and both reporters (native
reporter.py, DC-09 dc09rep.py) under CPython, fed by the receivers of
test_fw_reporter.py (protocol.session.ReceiverCore) and test_fw_dc09.py
(the host DC-09 codec) through fake links, with time driven by the test.

The receivers here NAK what a real one NAKs: NAK busy for every event
while its store fails (heartbeats and NULLs still ACKed), or, as a
third-party DC-09 receiver with the wrong key for the account did in the
field, a NAK with its time for every frame it cannot decrypt."""

import sys

from firmware import DEVICE_DIR
from protocol import dc09
from protocol import session as rs
from protocol.lean import glwire as w
from tests.test_fw_dc09 import K256
from tests.test_fw_dc09 import Rig as Dc09Rig
from tests.test_fw_reporter import Receiver
from tests.test_fw_reporter import Rig as NativeRig

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import cid  # noqa: E402
import failover  # noqa: E402

HOLDUP = (w.Q_NEW, 122, 2, 4)


# -- the rule alone -------------------------------------------------------------------------


def test_rule_fails_a_path_after_fail_after_refusals_or_the_time_bound():
    r = failover.Failover(2, 3, 30000, 0)
    r.offered(0, 1000)
    r.refused(0, "NAK time", correction=True)  # the one free correction
    r.refused(0, "NAK busy")
    r.refused(0, "NAK busy")
    assert not r.expired(0, 2000)
    r.refused(0, "NAK busy")
    assert r.expired(0, 2000) and r.why[0] == "NAK busy"
    assert r.fail(0, 2000) is True  # newly failed: 354 new
    assert r.ok == [False, True]
    assert r.after_failure(0, [True, True]) == 1
    # the time bound alone, whatever the mix of answers
    r.offered(1, 5000)
    assert not r.expired(1, 34999)
    assert r.expired(1, 35000) and r.why[1] == "no ACK in 30 s"


def test_rule_picks_primary_first_round_robin_when_none_is_trusted():
    r = failover.Failover(2, 3, 30000, 0)
    assert r.pick(1, [True, True]) == 0  # fail back to the primary
    assert r.pick(0, [False, True]) == 1
    r.fail(0, 0)
    assert r.pick(0, [True, True]) == 1
    r.fail(1, 0)
    # none trusted: stay while up; a path that fails hands over to the next one up
    assert r.pick(1, [True, True]) == 1
    assert r.after_failure(1, [True, True]) == 0
    assert r.after_failure(0, [True, True]) == 1
    assert r.after_failure(0, [True, False]) == 0  # nowhere else: keep trying here
    assert r.pick(0, [False, False]) == 0


def test_rule_heartbeat_acks_do_not_trust_a_failed_path_and_probes_back_off():
    r = failover.Failover(2, 3, 30000, 0)
    r.fail(0, 0)
    assert not r.probe_due(0, 29999) and r.probe_due(0, 30000)
    assert r.acked(0, queued=False) is True  # the probe (602) ACKed: trusted, 354 restore
    assert r.acked(0, queued=False) is False
    r.fail(0, 100000)  # failed again with no queued event ACKed between: hold-off doubles
    assert not r.probe_due(0, 159999) and r.probe_due(0, 160000)
    r.acked(0, queued=True)  # a real event ACKed: the streak ends
    r.fail(0, 200000)
    assert r.probe_due(0, 230000)
    for _ in range(30):
        r.fail(0, 0)
    assert not r.probe_due(0, 3599999) and r.probe_due(0, 3600000)  # at most an hour


# -- native -----------------------------------------------------------------------------------


class BusyReceiver(Receiver):
    """ReceiverCore; `busy[path]`: every EVENT is NAKed busy (its store
    fails), heartbeats are ACKed as the real receiver does."""

    def __init__(self):
        super().__init__()
        self.busy = [False, False]
        self.nak_busy = 0

    def handle(self, frame, path):
        out = self.core.handle(frame, self.unix())
        if isinstance(out, rs.Accepted) and out.msg["type"] == w.MSG_EVENT \
                and not out.duplicate and self.busy[path - 1]:
            self.nak_busy += 1
            return self.core.nak(out.account, out.seq, w.NAK_BUSY, self.unix())
        return self.answer(out, path)


def native_rig(tmp_path, **timings):
    r = NativeRig(tmp_path, **timings)
    rx = BusyReceiver()
    r.rx = rx
    for link in r.links:
        link.rx = rx
    return r


def delivered(r, code, qualifier=w.Q_NEW, zone=None):
    """(path, seq) of each time `code` was ACKed into the receiver."""
    out = []
    for path, seq, m in r.rx.frames:
        if m["type"] == w.MSG_EVENT and m["code"] == code and m["qualifier"] == qualifier \
                and (zone is None or m["zone"] == zone):
            out.append((path, seq))
    return out


def test_native_primary_naking_busy_fails_the_alarm_over_and_fails_back(tmp_path):
    r = native_rig(tmp_path, event_fail_s=30, heartbeat_s=20, backup_heartbeat_s=20)
    r.run(2000)  # boot: clock, HELLO
    r.rx.busy[0] = True  # the primary's disk is full: NAK busy for every event
    r.emit(*HOLDUP)
    r.run(40000)
    # the hold-up reached the backup within the bound, reported with 354 path 1
    [(path, seq)] = delivered(r, 122)
    assert path == 2
    assert r.rx.nak_busy >= 3
    [(p354, s354)] = delivered(r, cid.COMM_EVENT_FAIL, zone=1)
    assert p354 == 2 and r.rx.events[s354]["text"] == "NAK busy"
    assert r.rep.active == 1 and r.rep.rule.ok == [False, True]
    assert r.rep.sessions[0].up  # it answers: no 350
    assert not delivered(r, cid.COMM_TROUBLE)
    # it still ACKs heartbeats: they do not win the events back
    hb = [f for f in r.rx.frames if f[0] == 1 and f[2]["type"] == w.MSG_HEARTBEAT]
    r.emit(w.Q_NEW, 130, 1, 2)
    r.run(60000)
    assert [p for p, s in delivered(r, 130)] == [2]
    assert len([f for f in r.rx.frames if f[0] == 1 and f[2]["type"] == w.MSG_HEARTBEAT]) \
        >= len(hb)
    assert r.rep.active == 1
    # the disk is freed: the primary's 602 probe is ACKed, 354 restored, fail back
    r.rx.busy[0] = False
    r.run(120000)
    assert delivered(r, failover_probe(), zone=0)
    assert [p for p, s in delivered(r, cid.COMM_EVENT_FAIL, w.Q_RESTORE, 1)] == [1]
    assert r.rep.active == 0 and r.rep.rule.ok == [True, True]
    r.emit(w.Q_NEW, 130, 1, 3)
    r.run(3000)
    assert [p for p, s in delivered(r, 130, zone=3)] == [1]
    assert len(r.queue) == 0


def failover_probe():
    import reporter
    return reporter.PROBE_CODE


def test_native_nak_time_corrects_the_clock_and_is_retried_once_before_it_counts(tmp_path):
    r = native_rig(tmp_path, fail_after=1)
    r.emit(*HOLDUP)  # the first frame goes with the clock unset: NAK(time)
    r.run(3000)
    # with fail_after 1 a counted NAK would have failed the primary at once
    assert [p for p, s in delivered(r, 122)] == [1]
    assert r.rep.rule.ok == [True, True] and r.clock.trusted


def test_native_single_path_never_drops_or_sticks(tmp_path):
    r = native_rig(tmp_path)
    r.links.pop()  # only a primary
    from firmware.device import config as C
    from testkit.configs import scenario_config
    cfg, _ = C.validate(scenario_config(7700, timings={"ack_timeout_ms": 1000,
                                                       "max_backoff_ms": 4000,
                                                       "fail_after": 2}))
    import reporter
    r.rep = reporter.Reporter(cfg, r.queue, r.seqs, r.clock, r.panel, r.links, r.now)
    r.run(2000)
    r.rx.busy[0] = True
    r.emit(*HOLDUP)
    r.run(120000)
    assert len(r.queue) >= 2  # the hold-up and its 354 wait; nothing dropped
    sent = r.rx.nak_busy
    r.run(60000)
    assert r.rx.nak_busy > sent  # still tried, at the capped backoff
    r.rx.busy[0] = False
    r.run(10000)
    assert len(r.queue) == 0
    assert delivered(r, 122) and delivered(r, cid.COMM_EVENT_FAIL, w.Q_RESTORE, 1)


def test_native_both_paths_naking_round_robin_until_one_accepts(tmp_path):
    r = native_rig(tmp_path, event_fail_s=10)
    r.run(2000)
    r.rx.busy = [True, True]
    r.emit(*HOLDUP)
    r.run(60000)
    assert len(r.queue) >= 1 and r.rep.rule.ok == [False, False]
    assert r.rx.nak_busy >= 6  # tried on both, each for its bound
    r.rx.busy = [True, False]  # the backup recovers first
    r.run(60000)
    assert [p for p, s in delivered(r, 122)] == [2]
    assert len(r.queue) == 0


# -- DC-09 ------------------------------------------------------------------------------------


class NakEverything:
    """A third-party DC-09 receiver holding the wrong key for the account:
    every frame it cannot decrypt gets a NAK with its time (seen: 54 NAKs
    in 100 s).  `wrap(rx)`: the real Dc09Rx answers once the key is right."""

    def __init__(self, rx, wrong=True):
        self.rx = rx
        self.real = rx.handle
        self.wrong = [wrong, False]
        self.naked = 0

    def __call__(self, frame, path):
        if self.wrong[path - 1]:
            try:
                dc09.parse(frame, key_lookup=lambda a: bytes(32), now=self.rx.now())
            except dc09.Dc09Error:
                self.naked += 1
                self.rx.frames.append((path, "NAK"))
                return dc09.build_nak(self.rx.now())
        return self.real(frame, path)


class NakEvents:
    """This project's DC-09 receiver while its store fails: NULLs ACKed at
    once, every event NAKed (5.5.3.2 with its time)."""

    def __init__(self, rx):
        self.rx = rx
        self.real = rx.handle
        self.busy = [True, False]
        self.naked = 0

    def __call__(self, frame, path):
        try:
            m = dc09.parse(frame, key_lookup=lambda a: self.rx.key, now=self.rx.now())
        except dc09.Dc09Error:
            return self.real(frame, path)  # its NAK for a stale timestamp
        if self.busy[path - 1] and m.msg_id == "ADM-CID":
            self.naked += 1
            self.rx.frames.append((path, m))
            return dc09.build_nak(self.rx.now())
        return self.real(frame, path)


def test_dc09_wrong_key_primary_naking_everything_fails_over_and_back(tmp_path):
    r = Dc09Rig(tmp_path, K256)
    r.run(2000)
    nak = NakEverything(r.rx)
    r.rx.handle = nak
    r.emit(*HOLDUP)
    r.run(40000)
    acked = {k[1][-11:]: p for k, p in r.rx.acked_on.items()}
    assert acked.get("1122 02 004") == 2  # the hold-up over the backup
    assert acked.get("1354 00 001") == 2  # 354 path 1, over the backup
    assert nak.naked >= 3 and r.rep.active == 1 and r.rep.up == [True, True]
    # the primary gets the right key: its 602 probe is ACKed, fail back
    nak.wrong[0] = False
    r.run(120000)
    acked = {k[1][-11:]: p for k, p in r.rx.acked_on.items()}
    assert acked.get("1602 00 000") == 1 and acked.get("3354 00 001") == 1
    assert r.rep.active == 0 and r.rep.rule.ok == [True, True]
    r.emit(w.Q_NEW, 130, 1, 2)
    r.run(3000)
    assert {k[1][-11:]: p for k, p in r.rx.acked_on.items()}["1130 01 002"] == 1


def test_dc09_primary_naking_events_but_acking_nulls_is_failed_for_events(tmp_path):
    r = Dc09Rig(tmp_path, K256)
    r.run(2000)
    nak = NakEvents(r.rx)
    nak.busy[0] = False
    r.rx.handle = nak
    r.rx.mode[0] = "silent"  # the primary goes silent: 350, events to the backup
    r.emit(*HOLDUP)
    r.run(20000)
    assert r.rep.up == [False, True] and r.rep.active == 1
    # it comes back ACKing NULLs, its store failing: the link is up (350
    # restore) and it wins the events back as a trusted path should, but it
    # NAKs the next one, which then fails over within the bound
    r.rx.mode[0] = "ack"
    nak.busy[0] = True
    r.run(30000)
    assert r.rep.up == [True, True]
    r.emit(w.Q_NEW, 130, 1, 2)
    r.run(40000)
    acked = {k[1][-11:]: p for k, p in r.rx.acked_on.items()}
    assert acked.get("1122 02 004") == 2 and acked.get("1130 01 002") == 2
    assert acked.get("1354 00 001") == 2
    assert r.rep.rule.ok == [False, True] and r.rep.active == 1
    # from now on it gets only the 602 probe (NAKed), never an event, however
    # long its link answers: no flapping
    mark = len(r.rx.frames)
    for z in range(3, 6):
        r.emit(w.Q_NEW, 130, 1, z)
        r.run(60000)
    acked = {k[1][-11:]: p for k, p in r.rx.acked_on.items()}
    assert [acked.get("1130 01 %03d" % z) for z in range(3, 6)] == [2, 2, 2]
    on_primary = [m.data[-11:] for p, m in r.rx.frames[mark:]
                  if p == 1 and m != "NAK" and m.msg_id == "ADM-CID"]
    assert on_primary and set(on_primary) == {"1602 00 000"}  # probes only
    assert r.rep.active == 1 and r.rep.up == [True, True]
    nak.busy[0] = False
    r.run(120000)
    assert r.rep.active == 0 and r.rep.rule.ok == [True, True]
    assert len(r.queue) == 0
