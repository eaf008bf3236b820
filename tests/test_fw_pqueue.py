"""Persistent queue and sequence store (firmware/device/pqueue.py,
seqstore.py) under CPython, including power loss in the middle of a write."""

import io
import os
import sys
import tempfile

import pytest
from hypothesis import given, settings, strategies as st

from firmware import DEVICE_DIR

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import pqueue  # noqa: E402
import seqstore  # noqa: E402
from tests import mpy_runner  # noqa: E402
from tests import pqueue_renumber_cuts  # noqa: E402

SLOT = pqueue.SLOT


def _fill(path, n, slots=16, start=1):
    q = pqueue.PersistentQueue(path, slots)
    for k in range(n):
        q.append(start + k, 1, 130 + k % 10, 1 + k % 4, k + 1, 1_700_000_000 + k,
                 "zone %d" % k if k % 2 else None)
    return q


def _records(path, slots=16):
    q = pqueue.PersistentQueue(path, slots)
    out = []
    for s in q.seqs():
        out.append((s, q.read(q.find(s))))
    q.close()
    return out


def test_records_survive_reopen_in_order(tmp_path):
    p = str(tmp_path / "q")
    q = _fill(p, 5)
    q.close()
    recs = _records(p)
    assert [s for s, _ in recs] == [1, 2, 3, 4, 5]
    assert recs[1][1]["text"] == "zone 1" and recs[0][1]["text"] is None
    assert recs[2][1]["code"] == 132 and recs[2][1]["zone"] == 3


def test_ack_removes_only_that_record(tmp_path):
    p = str(tmp_path / "q")
    q = _fill(p, 4)
    assert q.ack(2)
    assert not q.ack(2)  # already gone
    assert q.head()[0] == 1
    q.ack(1)
    assert q.head()[0] == 3
    q.close()
    assert [s for s, _ in _records(p)] == [3, 4]


@pytest.mark.parametrize("n", [1, 3, 16])
def test_truncation_at_every_offset_of_last_record(tmp_path, n):
    """Power lost while the last record was being written (the file ends
    inside it): every earlier committed record is still there, the torn
    one is not returned, and nothing returned is corrupt."""
    p = str(tmp_path / "q")
    _fill(p, n).close()
    with open(p, "rb") as f:
        full = f.read()
    last = (n - 1) * SLOT
    good = _records(p)
    assert len(good) == n
    for cut in range(last, last + SLOT):
        with open(p, "wb") as f:
            f.write(full[:cut])
        recs = _records(p)
        assert recs == good[:n - 1], cut
        # and the queue is usable afterwards: the next record lands and persists
        q = pqueue.PersistentQueue(p, 16)
        q.append(1000, 1, 120, 1, 1, 0)
        q.close()
        assert [s for s, _ in _records(p)] == [s for s, _ in good[:n - 1]] + [1000]


class CrashingFile(io.FileIO):
    """A file that loses power after `budget` more bytes are written: the
    write in progress lands only up to that byte, then everything stops."""

    def __init__(self, path, mode, budget):
        super().__init__(path, mode.replace("b", "") if "+" in mode else mode.replace("b", ""))
        self.budget = budget

    def write(self, b):
        b = bytes(b)
        if self.budget <= 0:
            raise PowerLost()
        if len(b) > self.budget:
            super().write(b[:self.budget])
            self.budget = 0
            raise PowerLost()
        self.budget -= len(b)
        return super().write(b)

    def flush(self):
        pass


class PowerLost(Exception):
    pass


def power_cuts(path, image, total):
    """(budget, opener) for each number of bytes 0..total a write lands
    before the power goes: the file at `path` restored to `image` first,
    the opener's file cut after `budget` more bytes."""
    for budget in range(total + 1):
        with open(path, "wb") as f:
            f.write(image)
        yield budget, (lambda p, mode, b=budget: CrashingFile(p, mode, b))


def test_power_loss_at_every_byte_of_append_and_ack(tmp_path):
    """Crash after every possible number of written bytes during an
    append into a reused slot and an ACK: committed records are never lost,
    the new one is either fully there or absent, no corrupt record."""
    p = str(tmp_path / "q")
    base = _fill(p, 4, slots=4)
    base.ack(1)  # slot 0 is free (state 'D') and will be reused
    base.close()
    with open(p, "rb") as f:
        image = f.read()
    before = _records(p, 4)
    assert [s for s, _ in before] == [2, 3, 4]
    total = SLOT + 1 + 1  # record + commit byte + the ACK's state byte
    outcomes = set()
    for budget, opener in power_cuts(p, image, total):
        q = pqueue.PersistentQueue(p, 4, opener=opener)
        try:
            q.append(9, 1, 122, 2, 7, 5)
            q.ack(2)
        except PowerLost:
            pass
        recs = _records(p, 4)
        seqs = [s for s, _ in recs]
        assert 3 in seqs and 4 in seqs, budget  # committed and not ACKed: kept
        if 9 in seqs:
            m = dict(recs)[9]
            assert (m["code"], m["partition"], m["zone"], m["event_time"]) == (122, 2, 7, 5)
        outcomes.add(tuple(seqs))
    # the sweep saw the record absent, committed, and the ACK done
    assert (2, 3, 4) in outcomes and (2, 3, 4, 9) in outcomes and (3, 4, 9) in outcomes


def corrupt(path, data):
    """Flip 1..8 random bytes of the file (hypothesis `data` draws them)."""
    with open(path, "r+b") as f:
        img = bytearray(f.read())
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(img) - 1))
            img[i] ^= data.draw(st.integers(1, 255))
        f.seek(0)
        f.write(img)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_corruption_never_returns_a_corrupt_record(tmp_path_factory, data):
    p = str(tmp_path_factory.mktemp("q") / "q")
    _fill(p, 6, slots=8).close()
    good = dict(_records(p, 8))
    corrupt(p, data)
    for s, m in _records(p, 8):
        assert good.get(s) == m  # anything returned is exactly what was written


def test_full_ring_drops_oldest_non_alarm_first(tmp_path):
    p = str(tmp_path / "q")
    q = pqueue.PersistentQueue(p, 4)
    q.append(1, 1, 130, 1, 1, 0)  # alarm
    q.append(2, 3, 130, 1, 1, 0)  # restore: not an alarm
    q.append(3, 1, 301, 0, 0, 0)  # trouble
    q.append(4, 1, 122, 2, 4, 0)  # alarm
    q.append(5, 1, 110, 1, 6, 0)  # full: drops seq 2
    assert q.seqs() == [1, 3, 4, 5] and q.dropped == 1
    q.append(6, 1, 120, 1, 5, 0)  # drops seq 3
    q.append(7, 1, 121, 1, 9, 0)  # only alarms left: drops the oldest (1)
    assert q.seqs() == [4, 5, 6, 7] and q.dropped == 3
    q.close()


def test_renumber_keeps_content_and_order(tmp_path):
    p = str(tmp_path / "q")
    q = _fill(p, 3)
    m2 = q.read(q.find(2))
    assert q.renumber(2, 500)
    assert q.seqs() == [1, 3, 500]
    assert q.read(q.find(500)) == m2
    q.close()
    assert [s for s, _ in _records(p)] == [1, 3, 500]


# The renumbering sweeps (tests/pqueue_renumber_cuts.py): a receiver's
# jump renumbers a full queue up, the fall-back renumbers it down.
RENUMBER_CASES = [{"slots": 4, "first": 1, "shift": 100},
                  {"slots": 4, "first": 1001, "shift": -990}]


def _ram_dir():
    """The sweeps write thousands of times, each flush an fsync under the
    VM: in RAM (tmpfs) where the machine has it."""
    return tempfile.TemporaryDirectory(prefix="pqueue_cuts_",
                                       dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def _assert_renumber_sweep(rep):
    assert rep["n_violations"] == 0, rep["violations"]
    # 4 records, each: journal slot + its commit, record slot + its commit,
    # journal done
    assert rep["bytes"] == 4 * (2 * SLOT + 3)
    # the cuts left 0, 1, 2, 3 and 4 records renumbered, and cut boot replays
    assert [k for k, _ in rep["renumbered_after_cuts"]] == [0, 1, 2, 3, 4]
    assert rep["replays_cut"] > 0


def test_renumbering_a_full_queue_evicts_nothing_and_a_cut_at_any_byte_loses_nothing():
    """Seen: renumbering wrote the renumbered copy before dropping the
    original, so on a full queue it evicted the oldest non-alarm record
    (and the panel reported 624).  Now every record stays, once, in
    order, and a power cut at every byte (also in the boot's replay)
    leaves each one whole with its old number or its new one."""
    with _ram_dir() as d:
        for case in RENUMBER_CASES:
            _assert_renumber_sweep(pqueue_renumber_cuts.run(dict(case, dir=d)))


@pytest.mark.micropython
@pytest.mark.skipif(not mpy_runner.available(), reason="micropython VM not installed")
def test_renumbering_a_full_queue_under_the_vm_evicts_nothing_and_survives_cuts():
    with _ram_dir() as d:
        out = mpy_runner.run_driver(pqueue_renumber_cuts.__file__,
                                    [dict(c, dir=d) for c in RENUMBER_CASES],
                                    extra_path=(DEVICE_DIR,))
    for rep in out:
        _assert_renumber_sweep(rep)


def test_seqstore_reserves_blocks_and_skips_on_boot(tmp_path):
    p = str(tmp_path / "seq")
    s = seqstore.SeqStore(p)
    first = [s.take() for _ in range(300)]
    assert first == list(range(1, 301))
    # one write at boot, one when the first block ran out
    assert s.writes == 2
    s2 = seqstore.SeqStore(p)  # reboot
    n = s2.take()
    assert n > 300 and n <= 300 + 2 * seqstore.RESERVE
    # the queue's highest sequence is a floor too
    s3 = seqstore.SeqStore(p, floor=10_000)
    assert s3.take() >= 10_000


def test_seqstore_persists_modes_and_command_seq_and_survives_bad_file(tmp_path):
    p = str(tmp_path / "seq")
    s = seqstore.SeqStore(p)
    s.set_modes(b"\x01\x00\x02")
    s.set_last_command(77)
    s2 = seqstore.SeqStore(p)
    assert s2.modes == b"\x01\x00\x02" and s2.last_command_seq == 77
    with open(p, "r+b") as f:
        f.seek(3)
        f.write(b"\xff")
    s3 = seqstore.SeqStore(p)  # CRC fails: start over rather than trust it
    assert s3.modes == b"" and s3.last_command_seq == 0
    # (the queue floor keeps the counter above anything still queued)
    assert os.path.exists(p)


def test_renumber_in_a_full_queue_evicts_nothing_and_keeps_a_position(tmp_path):
    """Renumbering rewrites the record in its own slot (through the
    journal): in a full ring nothing is evicted, and a vehicle unit's
    event keeps its position and text (the journal's own bytes, 57..59,
    are zero in both slot layouts)."""
    p = str(tmp_path / "q")
    q = pqueue.PersistentQueue(p, 4)
    pos = (52_368_000, 4_882_000, 123, 900, 1, 9, 9, 1_767_600_000, 1)
    q.append(1, 3, 130, 1, 1, 0, "restore")
    q.append(2, 1, 122, 1, 6, 0, "hold-up button, van 7", pos)  # 21 bytes: cut to 20
    q.append(3, 1, 130, 1, 2, 0)
    q.append(4, 1, 122, 1, 3, 0)
    m1, m2 = q.read(q.find(1)), q.read(q.find(2))
    assert m2["text"] == "hold-up button, van " and m2["position"]["lat"] == 52_368_000
    assert q.renumber(1, 10) and q.renumber(2, 11)
    assert q.seqs() == [3, 4, 10, 11] and q.dropped == 0
    assert q.read(q.find(10)) == m1 and q.read(q.find(11)) == m2
    q.close()
    assert [s for s, _ in _records(p, 4)] == [3, 4, 10, 11]
    q = pqueue.PersistentQueue(p, 4)
    assert q.read(q.find(11)) == m2
    q.close()
