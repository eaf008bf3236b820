"""What survives a power loss, and what the panel says when it must drop
events (firmware/device/panel.py, seqstore.py, pqueue.py, app.py drain),
under CPython with the real queue and sequence files in a temp dir."""

import struct
import binascii
import sys
from types import SimpleNamespace

from firmware import DEVICE_DIR
from firmware.device import config as C
from protocol.lean import glwire as w
from testkit.configs import scenario_config

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import app as APP  # noqa: E402
import cid  # noqa: E402
import clock  # noqa: E402
import eol  # noqa: E402
import panel as P  # noqa: E402
import pqueue  # noqa: E402
import seqstore  # noqa: E402


def make(**over):
    cfg, errors = C.validate(scenario_config(7700, **over))
    assert errors == []
    return P.Panel(cfg, 0)


class Rig:
    """The panel, queue and sequence store glued by app.App.drain, with
    a queue of `slots` records; boot() is what app.App does at power on."""

    def __init__(self, tmp_path, slots=8, **over):
        self.tmp = tmp_path
        self.slots = slots
        self.over = over
        self.boot()

    def boot(self):
        q = pqueue.PersistentQueue(str(self.tmp / "queue.dat"), self.slots)
        s = seqstore.SeqStore(str(self.tmp / "seq.dat"), q.max_seq() + 1)
        p = make(**self.over)
        p.restore_modes(s.modes)
        p.restore_memory(s.memory)
        p.boot_report(s.flags, self.over.get("test_mode", False))
        self.app = SimpleNamespace(panel=p, queue=q, seqs=s, clock=clock.Clock(), lost=0)
        self.drain()

    def drain(self):
        APP.App.drain(self.app, 0)

    @property
    def p(self):
        return self.app.panel

    @property
    def q(self):
        return self.app.queue

    def queued(self):
        return [(m["qualifier"], m["code"], m["zone"]) for m in
                (self.q.read(self.q.find(s)) for s in self.q.seqs())]

    def ack_all(self):
        for s in self.q.seqs():
            self.q.ack(s)

    def power_loss(self):
        self.q.close()
        self.boot()


def toggle_ac(r, n):
    """n reports (301 AC loss new, restore, ...): troubles, not alarms."""
    for _ in range(n):
        r.ac_on = not getattr(r, "ac_on", True)
        r.t = getattr(r, "t", 0) + 1
        r.p.supplies(r.ac_on, 13200, False, r.t)
        r.drain()


def test_full_queue_reports_624_once_keeps_it_and_restores_when_drained(tmp_path):
    r = Rig(tmp_path, slots=8)
    r.ack_all()
    r.drain()
    toggle_ac(r, 7)
    assert len(r.q) == 7 and r.q.dropped == 0
    assert not [e for e in r.queued() if e[1] == cid.LOG_OVERFLOW]
    toggle_ac(r, 1)  # the 8th fills the ring: nothing dropped yet
    assert r.q.dropped == 0
    toggle_ac(r, 1)  # the 9th drops the oldest: reported, and the
    assert r.q.dropped >= 1  # 624 itself took a slot (one more dropped)
    over = [e for e in r.queued() if e[1] == cid.LOG_OVERFLOW]
    assert over == [(w.Q_NEW, cid.LOG_OVERFLOW, 1)]
    # many more drops: still one 624, and it is never the one evicted
    toggle_ac(r, 30)
    assert [e for e in r.queued() if e[1] == cid.LOG_OVERFLOW] == over
    assert len(r.q) == 8
    # the receiver takes everything: the restore says how many were lost
    lost = r.q.dropped
    r.ack_all()
    r.drain()
    assert r.queued() == [(w.Q_RESTORE, cid.LOG_OVERFLOW, lost)]
    assert not r.p.flags() & P.F_OVERFLOW and not r.app.seqs.flags & P.F_OVERFLOW


def test_alarms_outlive_the_overflow_and_its_report(tmp_path):
    r = Rig(tmp_path, slots=8)
    r.ack_all()
    r.drain()
    r.p.zone_change(4, eol.ALARM, 0)  # teller panic (zone 5): an alarm (120)
    r.drain()
    toggle_ac(r, 40)
    kept = r.queued()
    assert (w.Q_NEW, cid.PANIC, 5) in kept
    assert [e for e in kept if e[1] == cid.LOG_OVERFLOW] == [(w.Q_NEW, cid.LOG_OVERFLOW, 1)]


def test_overflow_restore_is_owed_across_a_power_loss(tmp_path):
    r = Rig(tmp_path, slots=8)
    toggle_ac(r, 20)
    assert r.app.seqs.flags & P.F_OVERFLOW  # persisted with the 624 new
    r.power_loss()
    assert r.p.q_over  # still owed
    r.ack_all()
    r.drain()
    assert [e for e in r.queued() if e[1] == cid.LOG_OVERFLOW] == \
        [(w.Q_RESTORE, cid.LOG_OVERFLOW, 0)]  # the count did not survive the reboot
    r.power_loss()
    assert not r.p.q_over  # paid: not owed again
    assert r.queued().count((w.Q_RESTORE, cid.LOG_OVERFLOW, 0)) == 1


def test_panel_burst_overflow_is_reported_too(tmp_path):
    r = Rig(tmp_path, slots=128)
    for k in range(P.OUT_MAX + 5):  # more than one call may queue: a bug
        r.p.emit(w.Q_NEW, cid.BYPASS, 1, k)
    assert r.p.overflow == 5
    r.drain()
    assert (w.Q_NEW, cid.LOG_OVERFLOW, 5) in r.queued()


def test_alarm_memory_survives_power_loss(tmp_path):
    r = Rig(tmp_path, slots=32, timings={"exit_delay_s": 0})
    r.p.keypad("1234", P.K_ARM_AWAY, 1, 0, 0)
    r.p.tick(1)
    r.p.zone_change(1, eol.ALARM, 2)  # lobby glass (instant): burglary
    r.p.zone_change(4, eol.ALARM, 3)  # teller panic (zone 5), partition 2
    r.drain()
    assert [p.memory for p in r.p.parts] == [[2], [5]]
    r.power_loss()
    assert [p.memory for p in r.p.parts] == [[2], [5]]
    assert P.A.STATE_NAMES[r.p.parts[0].state] == "armed_away"
    # the next arming clears it, and that is persisted too
    r.p.keypad("1234", P.K_DISARM, 1, 0, 10)
    r.p.keypad("1234", P.K_ARM_AWAY, 1, 0, 11)
    r.drain()
    r.power_loss()
    assert [p.memory for p in r.p.parts] == [[], [5]]


def test_alarm_memory_of_zones_no_longer_configured_is_ignored():
    p = make()
    # partition index 0 zone 2 (ok), index 0 zone 4 (zone 4 is in
    # partition 2), index 5 (no such partition), zone 99 (no such zone)
    p.restore_memory(bytes([0, 0, 2, 0, 0, 4, 5, 0, 2, 1, 0, 99]))
    assert [x.memory for x in p.parts] == [[2], []]


def test_test_mode_reports_607_every_boot_and_restore_once_off(tmp_path):
    r = Rig(tmp_path, slots=32, test_mode=True)
    assert (w.Q_NEW, cid.TEST_MODE, 0) in r.queued()
    r.power_loss()
    assert r.queued().count((w.Q_NEW, cid.TEST_MODE, 0)) == 2
    r.over["test_mode"] = False
    r.power_loss()
    assert r.queued().count((w.Q_RESTORE, cid.TEST_MODE, 0)) == 1
    r.power_loss()
    assert r.queued().count((w.Q_RESTORE, cid.TEST_MODE, 0)) == 1  # once


def test_seqstore_reads_formats_1_and_2_and_keeps_flags_and_memory(tmp_path):
    path = str(tmp_path / "seq.dat")
    d = b"GS" + struct.pack(">IIB", 1000, 42, 2) + b"\x01\x02"
    d += struct.pack(">I", binascii.crc32(d) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(d)
    s = seqstore.SeqStore(path)
    assert (s.next, s.last_command_seq, s.modes, s.memory, s.flags) == \
        (1000, 42, b"\x01\x02", b"", 0)
    s.set_state(b"\x01\x02", b"\x00\x00\x07\x01\x01\x2c", 3)
    s2 = seqstore.SeqStore(path)
    assert (s2.last_command_seq, s2.modes, s2.memory, s2.flags) == \
        (42, b"\x01\x02", b"\x00\x00\x07\x01\x01\x2c", 3)
    assert s2.next >= 1000
    with open(path, "rb") as f:
        good = f.read()
    # no resequence to undo, no renumbering running
    assert good[:2] == b"G4" and good[-12:-4] == bytes(8)
    # format 3: the same without the renumbering field; format 2: without undo too
    for fmt, cut in ((b"G3", -8), (b"G2", -12)):
        d = fmt + good[2:cut]
        with open(path, "wb") as f:
            f.write(d + struct.pack(">I", binascii.crc32(d) & 0xFFFFFFFF))
        s2 = seqstore.SeqStore(path)
        assert (s2.last_command_seq, s2.modes, s2.memory, s2.flags, s2.undo,
                s2.renumbering) == (42, b"\x01\x02", b"\x00\x00\x07\x01\x01\x2c", 3, 0, 0)
    # every cut of the file is refused whole, never half-read
    for n in range(len(good)):
        with open(path, "wb") as f:
            f.write(good[:n])
        s3 = seqstore.SeqStore(path)
        assert (s3.modes, s3.memory, s3.flags, s3.last_command_seq) == (b"", b"", 0, 0)


def test_seqstore_keeps_the_counter_before_a_resequence_and_falls_back_to_it(tmp_path):
    """A receiver's jump (raise_to) is undone by fall_back(), across a
    power loss too: the counter counts on from where it was before the
    first jump (reporter.py calls it when every path falls silent)."""
    path = str(tmp_path / "seq.dat")
    s = seqstore.SeqStore(path)
    assert [s.take() for _ in range(3)] == [1, 2, 3] and not s.fall_back(3)
    assert s.raise_to(0x1000001) and s.raise_to(0x2000000)  # the first jump is kept
    assert (s.take(), s.undo) == (0x2000000, 4)
    s2 = seqstore.SeqStore(path, 0x2000001)  # power loss: the queue's floor
    assert s2.undo == 4 and s2.take() >= 0x2000001
    assert s2.fall_back(3) and s2.take() == 4
    # power lost before forget_undo(): the next fall-back starts past the 3
    assert seqstore.SeqStore(path, 0x2000001).undo == 7
    s2.forget_undo()
    s3 = seqstore.SeqStore(path)
    assert (s3.take(), s3.undo) == (7 + seqstore.RESERVE, 0) and not s3.fall_back(1)
    assert not s3.raise_to(seqstore.SEQ_LIMIT + 1) and s3.undo == 0  # refused: nothing kept


def test_seqstore_says_a_renumbering_runs_until_it_is_done(tmp_path):
    """raise_to() is where the reporter starts renumbering the queue below
    next_seq; the file says so until renumbered(), across a power loss
    (the reporter then finishes it at boot: test_fw_reply_fuzz.py), with
    a jump and without one."""
    path = str(tmp_path / "seq.dat")
    s = seqstore.SeqStore(path)
    assert [s.take() for _ in range(3)] == [1, 2, 3]
    assert s.raise_to(0x2000000) and s.renumbering == 0x2000000
    assert seqstore.SeqStore(path, 0x2000001).renumbering == 0x2000000  # power loss
    s.renumbered()
    assert s.renumbering == 0 and seqstore.SeqStore(path).renumbering == 0
    assert s.raise_to(2) and s.next > 2  # no jump: only the renumbering is kept
    assert seqstore.SeqStore(path).renumbering == 2
    s.renumbered()
    assert not s.raise_to(seqstore.SEQ_LIMIT + 1) and s.renumbering == 0
