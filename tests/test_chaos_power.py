"""Chaos: power cuts while the panel writes its persistent queue.

- Under CPython, the firmware's own queue module (firmware/device/pqueue.py)
  runs random appends and ACKs with the power cut at a random byte of the
  write stream, hundreds of times on one file: after every boot each
  record committed and not ACKed is there and intact, an ACKed one never
  comes back, the operation that was cut happened whole or not at all,
  and no committed slot is corrupt.
- Under the MicroPython VM, the bank panel firmware is cut (the sim's
  ``power_cycle`` command, or SIGKILL of the VM) at random moments while
  zones change and its receiver mostly withholds ACKs; every record found
  in the flash at a cut must later be ACKed by the receiver.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import chaoslib  # noqa: E402
from testkit import vm  # noqa: E402


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_queue_survives_power_cut_at_random_bytes(tmp_path, seed):
    rep = chaoslib.pqueue_power_cuts(str(tmp_path), cuts=150, slots=16, seed=seed)
    print(rep)
    assert rep["n_violations"] == 0, rep["violations"]
    # the campaign did real work: many records written, ACKed, and pending at cuts
    assert rep["appends"] > 300 and rep["acks"] > 300 and rep["max_pending"] >= 8
    assert rep["torn_slots_found_at_boot"] > 0  # cuts landed inside record writes


def test_the_checker_sees_a_queue_that_loses_records(tmp_path, monkeypatch):
    """The same campaign against a deliberately broken queue (ACK frees the
    oldest record too) must report violations: the check can fail."""
    pq = chaoslib._pqueue()
    orig = pq.PersistentQueue.ack

    def lossy_ack(self, seq):
        r = orig(self, seq)
        head = self._head_slot()
        if head >= 0:
            self._mark(head, 0x44)
        return r

    monkeypatch.setattr(pq.PersistentQueue, "ack", lossy_ack)
    rep = chaoslib.pqueue_power_cuts(str(tmp_path), cuts=30, slots=16, seed=1)
    assert rep["n_violations"] > 0


@pytest.mark.micropython
def test_panel_power_cut_under_the_vm_loses_nothing_ack_pending(tmp_path):
    if not vm.available():
        pytest.skip("no micropython VM")
    rep = chaoslib.panel_power_cuts(str(tmp_path), cuts=6, seed=7)
    print(rep)
    assert rep["corrupt_slots"] == 0
    assert rep["ack_pending_at_cuts"] >= 4  # the cuts found work in the queue
    assert rep["lost"] == 0, rep["lost_seqs"]
    assert rep["changed"] == 0
    assert rep["queue_depth_at_end"] == 0
    assert {s["cut"] for s in rep["snapshots"]} <= {"power_cycle", "sigkill"}
