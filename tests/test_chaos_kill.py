"""Chaos: SIGKILL the receiver subprocess three times while panels stream
events, restarting it on the same port each time.  At every kill, each
event a panel saw ACKed is already in the database exactly once; at the
end every event was delivered, none twice.  (bench/chaos.py runs more kill
points and more panels.)"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import chaoslib  # noqa: E402


async def test_kill9_at_three_points_loses_and_duplicates_nothing(tmp_path):
    rep = await chaoslib.kill_restart(str(tmp_path), panels=20, events=30,
                                      kill_fractions=(0.15, 0.45, 0.75), seed=20261128)
    print(rep)
    total = 20 * 30
    assert len(rep["kills"]) == 3
    for k in rep["kills"]:
        assert k["acked_missing_from_store"] == 0, k  # ACK only after commit
        assert k["duplicates_in_store"] == 0, k
        assert k["acked_at_kill"] < total, k  # the kill really was mid-stream
    # each restart saw fresh progress: the kills were at different points
    ats = [k["acked_at_kill"] for k in rep["kills"]]
    assert ats == sorted(ats) and len(set(ats)) == 3
    assert rep["sent"] == rep["acked"] == rep["stored"] == rep["stored_distinct"] == total
    assert rep["lost"] == 0 and rep["duplicates"] == 0 and rep["unexpected"] == 0
    assert rep["replay_state_ok"]
    assert rep["final_exit_code"] == 0
