"""Past 2**30 and 2**31 (issue 21): the same panel run, the same results,
whatever the year and however high the sequence numbers, under the real
MicroPython VM.  On a 32-bit port a small int is 31-bit: a Unix time
after 2004 and a sequence past 2**30 are long integers there, and a
32-bit signed time runs out in January 2038.  The clock accepts
2024..2099 (clock.py) and sequences run to seqstore.SEQ_END.

Each run: the real app (tests/vm_app_rig.py) with the bank example (the
vault's time lock, Mon-Fri 08:30-17:00, UTC+1), its clock set by an
authenticated source to a Wednesday 10:00 and its sequence counter to a
start, then: arm the vault, disarm it inside the window (opening), the
clock moved to 18:00 (the time lock arms the vault by itself: 403), a
disarm refused outside the window (421), a teller's hold-up; then it
reports, over real sockets, to a receiver that lives in the same year.
The results (keypad answers, events in order with their times and
sequence numbers relative to the start) must be the same in 2025 with
small sequences, past 2**31 seconds (2040) with sequences across 2**31,
and in 2099 with sequences from seqstore.SEQ_LIMIT (2**31, the highest a
receiver's resequence may move them to) on.

Run against a 32-bit VM build with GUARDLINE_MICROPYTHON."""

import json
import os
import time

import pytest

from testkit import vm
from testkit.app_rig import AppRig
from testkit.tiny_receiver import TinyDc09Receiver, TinyReceiver

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
KEY = bytes(range(32))
HOUR = 3600
# Wednesday 09:00 UTC (10:00 in the example's UTC+1), and the first
# sequence number of the run
RUNS = {
    "2025": (1749027600, 1000),
    "2040": (2222586000, 0x80000000 - 3),  # past 2**31 s; sequences across 2**31
    "2099": (4084160400, 0x80000000),  # the highest jump a receiver may ask for
}


def bank(protocol, port):
    with open(os.path.join(EXAMPLES, "bank.json")) as f:
        cfg = json.load(f)
    if protocol == "dc09":
        del cfg["account"], cfg["key"]
        cfg.update(protocol="dc09", dc09={"account": "12AB", "key": KEY.hex(), "line": "1",
                                          "receiver_no": "1"})
    for p in ("primary", "backup"):
        cfg["receiver"][p]["port"] = port
    return cfg


def run(tmp_path, protocol, unix, seq0):
    """The run in the module's docstring: (results, events) with times
    and sequences relative to `unix` and `seq0`."""
    rx = TinyDc09Receiver("12AB", KEY) if protocol == "dc09" else TinyReceiver(1001, KEY)
    shift = unix - time.time()
    rx.clock = lambda: time.time() + shift  # the receiver lives in that year too
    cfg = bank(protocol, rx.port)
    if protocol == "native":
        rx.account = cfg["account"]
        rx.keys = type(rx.keys)(bytes.fromhex(cfg["key"]))
    tmp_path.mkdir()
    try:
        with AppRig() as rig:
            rig(op="boot", dir=str(tmp_path), cfg=cfg, rx="127.0.0.1:%d" % rx.port)
            assert rig(op="seq", next=seq0)["next"] == seq0
            assert rig(op="clock", unix=unix)["ok"]
            res = [rig(op="key", code="1234", action="arm_away", partition=1)["result"]]
            s = rig(op="scan", cycles=1, warm=700)  # the 30 s exit delay
            res.append(s["states"][0]["state"])
            res.append(rig(op="key", code="1234", action="disarm", partition=1)["result"])
            assert rig(op="clock", unix=unix + 8 * HOUR)["ok"]  # 18:00: the lock closes
            s = rig(op="scan", cycles=1, warm=700)
            res.append(s["states"][0]["state"])
            res.append(rig(op="key", code="1234", action="disarm", partition=1)["result"])
            rig(op="zone", zone=17, ohms=cfg["eol"]["alarm_ohms"])  # a teller's hold-up
            rig(op="scan", cycles=1, warm=20)
            r = rig(op="report", events=0)
            assert r["queue"] == 0, r
            state = rig(op="state")
    finally:
        rx.close()
    if protocol == "dc09":
        # DC-09 stamps the transmission, not the event: the year must be right
        years = {m.timestamp.year for _p, _s, m, _f in rx.frames if m.timestamp}
        assert years == {time.gmtime(unix).tm_year}, years
        events = [(e["code"], e["qualifier"], e["partition"], e["zone"])
                  for e in rx.event_list() if e["code"] != 305]
    else:
        seqs = sorted(s for s in rx.events if s >= seq0)  # not the 305 of the boot
        events = [(m["code"], m["qualifier"], m["partition"], m["zone"],
                   # the clock moves with the scans (35 s each) and the host
                   round((m["event_time"] - unix) / 60.0), s - seq0)
                  for s, m in ((s, rx.events[s]) for s in seqs)]
    return res, events, state


@pytest.mark.parametrize("protocol", ["native", "dc09"])
def test_same_results_past_2038_and_2_31_sequences(tmp_path, protocol):
    out = {}
    for name, (unix, seq0) in RUNS.items():
        if protocol == "dc09" and name == "2099":
            continue  # DC-09 numbers are 1..9999: the 2040 run covers the rest
        out[name] = run(tmp_path / name, protocol, unix, seq0)
    res, events, state = out["2025"]
    # arm ok, armed after the exit delay, disarm ok in the window; the time
    # lock armed the vault at 18:00; a disarm then refused
    assert res == [0, "armed_away", 0, "armed_away", 1], res
    codes = [e[:2] for e in events]
    assert codes == [(401, 3), (401, 1), (403, 3), (421, 1), (122, 1)], codes
    for name in out:
        assert out[name][0] == res, (name, out[name][0])
        assert out[name][1] == events, (name, out[name][1])
        assert out[name][2]["clock_trusted"]
    if protocol == "native":
        assert state["reporter"]["next_seq"] > 1000
        assert out["2040"][2]["reporter"]["next_seq"] > 0x80000000
        assert out["2099"][2]["reporter"]["next_seq"] > 0x80000000


# The tick counter wraps (MicroPython: ticks_ms() in [0, TICKS_PERIOD), 2**30
# ms = 12.4 days on a 32-bit port): a deadline is ticks_add(now, delay),
# never now + delay, which past the last tick is a long integer that
# ticks_diff() reads as garbage (it takes small ints only).
WRAP_DRIVER = r"""
import sys, json
from time import ticks_add, ticks_diff
import glwire as w
import glpanel as gp

for line in sys.stdin:
    case = json.loads(line)
    t0 = ticks_add(0, -case["before_wrap"])  # that many ms before the counter wraps
    s = gp.PanelSession(4242, w.Keys(bytes(32)), ack_timeout_ms=1000, max_backoff_ms=8000,
                        jitter=lambda: 0)
    s.offer(7, {"type": w.MSG_HEARTBEAT, "troubles": 0, "battery_mv": 0, "active_path": 1,
                "queue_depth": 0, "partitions": []}, t0)
    sent = []
    for ms in case["at"]:
        sent.append(s.data_to_send(ticks_add(t0, ms), 1800000000) is not None)
    print(json.dumps({"sent": sent}))
"""


def test_retransmission_deadline_across_the_tick_wrap():
    from tests.mpy_runner import run_driver
    # sent at 0; not again before the 1 s ACK timeout; again after it
    at = [0, 10, 999, 1000, 1001]
    cases = [{"before_wrap": b, "at": at} for b in (5000, 500, 1)]
    for case, r in zip(cases, run_driver(WRAP_DRIVER, cases)):
        assert r["sent"] == [True, False, False, True, False], (case["before_wrap"], r)
