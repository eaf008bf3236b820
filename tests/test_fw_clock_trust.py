"""Nothing unauthenticated may move the panel's clock, and no value from a
receiver may stop reporting (issue 14), under CPython with time driven by
the test: the clock's rules (firmware/device/clock.py), the DC-09
reporter against forged clear NAKs and replayed *ACKs, the native
reporter against a key-holding receiver sending values out of range, the
sequence store against a poisoned file, and the config check.  The same
attacks run under the MicroPython VM in test_fw_attacks_vm.py."""

import sys
from datetime import datetime, timezone

from firmware import DEVICE_DIR
from firmware.device import config as C
from protocol import dc09
from protocol.lean import glwire as w
from tests.test_fw_dc09 import K256, T0, dc09_config
from tests.test_fw_dc09 import Rig as Dc09Rig
from tests.test_fw_reporter import Rig as NativeRig

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import app as A  # noqa: E402
import clock  # noqa: E402
import cid  # noqa: E402
import panel as P  # noqa: E402
import pqueue  # noqa: E402
import seqstore  # noqa: E402

Y9999 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


# -- the clock ----------------------------------------------------------------------------


def test_clock_refuses_insane_times_and_bounds_unauthenticated_steps():
    c = clock.Clock()
    assert not c.set(253402300799, 0)  # 9999-12-31 23:59:59
    assert not c.set(2**32 - 1, 0) and not c.set(0, 0) and not c.set(1, 0)
    assert c.now(0) == 0 and c.refused == 4
    assert c.correct(T0, 0) and c.now(0) == T0 and not c.trusted  # unset: set, untrusted
    assert c.trusted_now(0) == 0
    assert c.correct(T0 + 120, 0) and c.now(0) == T0 + 120  # a bounded step
    assert not c.correct(T0 + 3600, 0) and c.now(0) == T0 + 120  # too far: refused
    assert c.set(T0, 0) and c.trusted and c.trusted_now(0) == T0  # authenticated
    assert c.correct(T0 + 5, 0) and not c.trusted  # moved by a forgeable source
    c.skew(10**12, 0)
    assert clock.sane(c.now(0))  # never beyond the bounds, whatever the caller


def test_time_locked_panel_counts_only_a_trusted_clock():
    cfg, errors = C.validate(_bank_with_time_lock())
    assert not errors
    p = P.Panel(cfg, 0)
    assert p.schedules and p.troubles & P.T_CLOCK_UNSET
    p.clock_set(False)
    assert p.troubles & P.T_CLOCK_UNSET  # untrusted: still "not set" for a time lock
    p.clock_set(True)
    assert not p.troubles & P.T_CLOCK_UNSET
    plain = P.Panel(C.validate(dc09_config(K256))[0], 0)
    plain.clock_set(False)
    assert not plain.troubles & P.T_CLOCK_UNSET  # nothing rests on it


def _bank_with_time_lock(**over):
    cfg = dc09_config(K256, **over)
    cfg["partitions"][1]["time_lock"] = {"open": "10:00", "close": "11:00", "days": [2]}
    return cfg


def test_config_refuses_a_time_lock_on_a_clear_dc09_line():
    cfg = _bank_with_time_lock()
    del cfg["dc09"]["key"]
    errors = C.validate(cfg)[1]
    assert errors == ["partitions[1].time_lock: needs a clock the panel can trust: the "
                      "native protocol, or a DC-09 key (a clear DC-09 line carries no "
                      "authenticated time)"]
    assert not C.validate(_bank_with_time_lock())[1]


def test_config_event_fail_s_default_and_range():
    cfg, errors = C.validate(dc09_config(K256))
    assert cfg["timings"]["event_fail_s"] == 30 and not errors
    for bad, msg in ((4, "4 is out of range 5..300"), (301, "301 is out of range 5..300"),
                     ("30", "expected an integer, got string")):
        c = dc09_config(K256)
        c["timings"]["event_fail_s"] = bad
        assert C.validate(c)[1] == ["timings.event_fail_s: " + msg]


# -- DC-09: forged clear NAKs ----------------------------------------------------------------


class Forger:
    """Answers the panel's next transmissions on `path` with a forged
    clear NAK dated `when` (anybody can: NAKs are never encrypted), then
    lets the real receiver answer again."""

    def __init__(self, rig, when, times=1, path=1):
        self.rig = rig
        self.real = rig.rx.handle
        self.when = when
        self.left = times
        self.path = path
        rig.rx.handle = self

    def __call__(self, frame, path):
        if path == self.path and self.left:
            self.left -= 1
            return dc09.build_nak(self.when)
        return self.real(frame, path)


def test_dc09_forged_nak_dated_9999_is_refused_and_reporting_goes_on(tmp_path):
    r = Dc09Rig(tmp_path, K256)
    r.emit(w.Q_NEW, 130, 1, 1)
    r.run(3000)  # the clock is set by the first *ACK
    assert len(r.queue) == 0
    Forger(r, Y9999, times=5)
    r.emit(w.Q_NEW, 122, 2, 4)  # a hold-up
    r.run(5000)  # before the fix: the clock rolled to year 10000 and poll() raised
    assert r.rep.refused >= 1 and clock.sane(r.clock.now(r.now))
    assert abs(r.clock.now(r.now) - r.unix()) <= 2 and r.clock.trusted
    r.run(60000)
    assert (122, 2, 4) in [e[2:] for e in r.rx.adm()] and len(r.queue) == 0


def test_dc09_forged_nak_does_not_move_a_trusted_clock_or_open_the_time_lock(tmp_path):
    r = Dc09Rig(tmp_path, K256)
    r.emit(w.Q_NEW, 130, 1, 1)
    r.run(3000)
    assert r.clock.trusted
    before = r.clock.now(r.now)
    tuesday_10 = datetime(2027, 1, 19, 10, 0, 5, tzinfo=timezone.utc)  # T0 is a Friday
    Forger(r, tuesday_10, times=1)
    r.emit(w.Q_NEW, 130, 1, 2)
    r.run(10000)
    # the forged time only stamped the next message on that path, which the
    # receiver NAKed with its own; the panel's clock never left real time
    assert abs(r.clock.now(r.now) - (before + 10)) <= 2 and r.clock.trusted
    assert (130, 1, 2) in [e[2:] for e in r.rx.adm()]


def test_dc09_forged_nak_at_boot_sets_an_untrusted_clock_the_time_lock_ignores(tmp_path):
    cfg, errors = C.validate(_bank_with_time_lock())
    assert not errors
    r = Dc09Rig(tmp_path, K256)
    r.panel = P.Panel(cfg, 0)
    r.rep.panel = r.panel
    tuesday_10 = datetime(2027, 1, 19, 10, 0, 5, tzinfo=timezone.utc)
    real = r.rx.handle
    forger = Forger(r, tuesday_10, times=1)
    forger.real = lambda frame, path: None  # the real receiver is not reachable yet
    r.emit(w.Q_NEW, 130, 1, 1)
    r.run(200)
    assert r.clock.now(r.now) == int(tuesday_10.timestamp()) and not r.clock.trusted
    assert r.panel.troubles & P.T_CLOCK_UNSET
    # the vault is in its window by the forged clock, but not by a trusted one
    tl = r.panel.parts[1]
    assert r.panel.in_window(tl, r.clock.now(r.now))
    assert not r.panel.in_window(tl, r.clock.trusted_now(r.now))
    # the genuine receiver answers: its NAK corrects the stamps, its *ACK
    # gives the trusted time
    forger.real = real
    r.run(30000)
    assert r.clock.trusted and abs(r.clock.now(r.now) - r.unix()) <= 2
    assert not r.panel.troubles & P.T_CLOCK_UNSET
    assert (130, 1, 1) in [e[2:] for e in r.rx.adm()]


def test_dc09_replayed_star_ack_from_another_day_is_refused(tmp_path):
    r = Dc09Rig(tmp_path, K256)
    r.emit(w.Q_NEW, 130, 1, 1)
    r.run(3000)
    real = r.rx.handle

    def replayed(frame, path):  # a *ACK recorded a day ago, seq matching
        m = dc09.parse(frame, key_lookup=lambda a: K256, now=r.rx.now())
        return dc09.build_ack(m, K256, now=datetime.fromtimestamp(r.unix() - 86400,
                                                                  timezone.utc))
    r.rx.handle = replayed
    before = r.clock.now(r.now)
    r.emit(w.Q_NEW, 122, 2, 4)
    r.run(5000)
    queued = [r.queue.read(r.queue.find(s))["code"] for s in r.queue.seqs()]
    assert 122 in queued  # not removed by a replayed ACK (unanswered: 350 too)
    assert r.rep.refused >= 1 and abs(r.clock.now(r.now) - (before + 5)) <= 2
    r.rx.handle = real
    r.run(30000)
    assert len(r.queue) == 0


# -- native: a key holder's values out of range -------------------------------------------


def _nak_for_every_event(r, reason, receiver_time=None, next_seq=0, path=1):
    """The receiver (holding the key) answers every EVENT on `path` with
    this NAK; the rest as usual."""
    real = r.rx.handle
    seen = []

    def handle(frame, p):
        if p != path or w.open_frame(r.rx.core.state(4242).keys, frame)["type"] != \
                w.MSG_EVENT:
            return real(frame, p)
        out = r.rx.core.handle(frame, r.rx.unix())
        if hasattr(out, "msg"):
            seen.append(out.seq)
            t = r.rx.unix() if receiver_time is None else receiver_time
            return w.seal(r.rx.core.state(4242).keys,
                          {"type": w.MSG_NAK, "nak_seq": out.seq, "reason": reason,
                           "receiver_time": t, "next_seq": next_seq},
                          4242, 1000 + len(seen), r.rx.unix(), w.FLAG_FROM_RECEIVER)
        return out.reply
    r.rx.handle = handle
    return seen


def test_native_resequence_near_2_32_is_refused_reported_and_survives_reboot(tmp_path):
    r = NativeRig(tmp_path)
    r.run(2000)
    seen = _nak_for_every_event(r, w.NAK_REPLAY, next_seq=0xFFFFFFF1)
    r.emit(w.Q_NEW, 122, 2, 4)
    r.run(40000)  # before the fix: seq.dat written with a bound past 2**32, poll raised
    assert seen and r.rep.refused >= 1
    assert r.seqs.next < seqstore.SEQ_LIMIT
    # the event went over the backup, with 354 for path 1 saying why
    got = {(m["code"], m["zone"]): (m.get("text"), s) for s, m in r.rx.events.items()}
    assert (122, 4) in got
    assert got[(cid.COMM_EVENT_FAIL, 1)][0] == "seq jump to 4294967281 refused"
    # a power cycle: the files are sane, the panel boots and counts on
    r.queue.close()
    q = pqueue.PersistentQueue(str(tmp_path / "q"), 32)
    s = seqstore.SeqStore(str(tmp_path / "s"), q.max_seq() + 1)
    assert s.next < seqstore.SEQ_LIMIT and s.insane == 0


def test_native_nak_time_near_2_32_is_refused_and_the_event_fails_over(tmp_path):
    r = NativeRig(tmp_path)
    r.run(2000)
    before = r.clock.now(r.now)
    _nak_for_every_event(r, w.NAK_TIME, receiver_time=0xFFFFFFF0)
    r.emit(w.Q_NEW, 122, 2, 4)
    r.run(40000)
    assert r.rep.refused >= 1 and abs(r.clock.now(r.now) - (before + 40)) <= 2
    got = {(m["code"], m["zone"]) for m in r.rx.events.values()}
    assert (122, 4) in got and (cid.COMM_EVENT_FAIL, 1) in got


def test_seqstore_ignores_a_poisoned_bound_and_app_renumbers_poisoned_records(tmp_path):
    s = seqstore.SeqStore(str(tmp_path / "s"))
    assert not s.raise_to(0xFFFFFFF1) and s.next < 1000
    s._persist(0xFFFFFF00)  # what older firmware wrote after honouring the jump
    q = pqueue.PersistentQueue(str(tmp_path / "q"), 8)
    q.append(0xFFFFFF10, 1, 122, 2, 4, 0)
    q.append(0xFFFFFF11, 1, 130, 1, 1, 0)
    logs = []
    s2 = A.open_sequences(q, str(tmp_path / "s"), logs.append)
    assert all(seq < 1000 for seq in q.seqs()) and s2.next < 1000
    assert [q.read(q.find(seq))["code"] for seq in q.seqs()] == [122, 130]  # order kept
    assert logs == ["seq.dat: bound 4294967040 beyond 4026531840 ignored"]
