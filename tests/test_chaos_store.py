"""Chaos: the receiver's store stops taking writes under load.

- Disk full: the receiver subprocess keeps its database on a small tmpfs
  (mounted for the test; needs root, skipped otherwise) that is filled to
  the last byte mid-stream, then emptied.
- Read-only: SQLite's ``PRAGMA query_only`` on the receiver's writing
  connection (in-process; a read-only remount is refused while the
  database is open for writing).

Either way the receiver must stop ACKing (NAK busy), say why (log line,
/healthz 503 or ``store.healthy``), recover by itself, and in the end hold
every event exactly once.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import chaoslib  # noqa: E402


def _no_loss(rep):
    assert rep["sent"] == rep["acked"] == rep["stored"] == rep["stored_distinct"]
    assert rep["lost"] == 0 and rep["duplicates"] == 0 and rep["acked_not_stored"] == 0


async def test_disk_full_naks_busy_says_why_and_recovers(tmp_path):
    if os.geteuid() != 0 or not chaoslib.tmpfs_available():
        pytest.skip("mounting a tmpfs needs root")
    rep = await chaoslib.disk_full(str(tmp_path), panels=6, events=25)
    print(rep)
    assert rep["busy_naks"] >= 3
    assert rep["acked_subset_of_store_while_full"]
    assert rep["healthz_while_full"] == 503 and rep["healthz_after"] == 200
    assert rep["log_says_failing"] and rep["log_says_full"] and rep["nak_busy_logged"]
    assert rep["log_says_recovered"]
    assert rep["exit_code"] == 0
    _no_loss(rep)


async def test_read_only_store_naks_busy_and_recovers(tmp_path):
    rep = await chaoslib.read_only_store(str(tmp_path), panels=6, events=20)
    print(rep)
    assert rep["busy_naks"] >= 3
    assert rep["healthy_while_read_only"] is False
    assert "readonly" in (rep["last_error"] or "")
    assert rep["acked_while_read_only"] == 0  # nothing ACKed that could not be stored
    assert rep["healthy_after"] is True
    _no_loss(rep)
