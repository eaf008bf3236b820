"""What the panel allocates in its steady state, under the real MicroPython
VM (issue 21): the real app (tests/vm_app_rig.py, testkit.app_rig.AppRig)
runs its scan loop for hundreds of cycles in each steady state a panel
spends its life in, and every byte the VM's allocator hands out is counted
(micropython.mem_total(): what is freed at once, such as a function frame
too big for the C stack, counts too).

- A zone scan allocates nothing: disarmed, clock unset; the clock set by
  an authenticated source (the vault's time lock then checks its window
  every scan, and a scheduled closing its time) in 2025, past 2**31
  seconds (2040) and in 2099, where the Unix time is a long integer on a
  32-bit port; the time lock shut and a closing warning running; every
  partition armed; an alarm sounding; the door controller's door forced
  and held open.  So a garbage collection never starts inside a scan.
- An idle report poll allocates nothing (a read of an empty non-blocking
  socket used to raise an OSError object per path per poll, and the
  reporters' poll steps had frames too big for the C stack); one with an
  event waiting for its ACK leaves no garbage (the queue's head used to
  be read from flash into a new dict on every poll).
- The whole app, quiet, leaves no garbage: the GC does not run at all.

Run against another VM build (a 32-bit one) with GUARDLINE_MICROPYTHON."""

import json
import os

import pytest

from testkit import vm
from testkit.app_rig import AppRig
from testkit.tiny_receiver import TinyDc09Receiver, TinyReceiver

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
CYCLES = 400  # 20 s of panel time at scan_ms 50
# Wednesday 09:00 UTC = 10:00 at the examples' utc_offset_min 60: the
# vault's time lock (Mon-Fri 08:30-17:00) is open, so it is checked
# (not armed) every scan
WED_10 = {2025: 1749027600, 2040: 2222586000, 2099: 4084160400}
KEY = bytes(range(32))


def example(name):
    with open(os.path.join(EXAMPLES, name + ".json")) as f:
        return json.load(f)


def assert_no_alloc(rig, what, warm=10):
    r = rig(op="scan", cycles=CYCLES, warm=warm)
    assert r["alloc"] == 0, (
        "%s: %d of %d scan cycles allocated, %d bytes in all; the first, cycle %d, %d bytes"
        % (what, r["cycles_allocating"], CYCLES, r["alloc"], r["first"][0], r["first"][1]))
    return r


def test_bank_scan_allocates_nothing_in_steady_state(tmp_path):
    cfg = example("bank")
    alarm_ohms = cfg["eol"]["alarm_ohms"]
    # and what CP-01 checks every scan: a scheduled closing (the ATM room,
    # 18:00 on weekdays), a verified smoke detector
    cfg["partitions"][1]["closing"] = {"at": "18:00", "days": [1, 2, 3, 4, 5]}
    next(z for z in cfg["zones"] if z["type"] == "fire")["verify"] = True
    with AppRig() as rig:
        rig(op="boot", dir=str(tmp_path), cfg=cfg, rx=None)
        assert_no_alloc(rig, "disarmed, clock unset")
        for year, unix in sorted(WED_10.items()):
            assert rig(op="clock", unix=unix)["ok"]
            r = assert_no_alloc(rig, "disarmed, clock %d" % year)
            assert r["states"][0]["state"] == "disarmed"  # the window is open
        # 18:00:30: the vault's window has closed (it arms itself), the ATM
        # room's closing warning runs (300 s)
        assert rig(op="clock", unix=WED_10[2040] + 8 * 3600 + 30)["ok"]
        r = assert_no_alloc(rig, "vault armed by its time lock, ATM room's closing warning",
                            warm=700)
        assert [p["state"] for p in r["states"][:2]] == ["armed_away", "disarmed"]
        for p in cfg["partitions"][1:]:  # the vault is armed
            assert rig(op="key", code="1234", action="arm_away", partition=p["id"])["result"] == 0
        r = assert_no_alloc(rig, "armed", warm=700)  # after the 30 s exit delay
        assert [p["state"] for p in r["states"]] == ["armed_away"] * 4
        rig(op="zone", zone=6, ohms=alarm_ohms)  # the safe deposit PIR
        r = assert_no_alloc(rig, "in alarm, siren on", warm=20)
        assert r["states"][0]["siren"] and r["states"][0]["state"] == "alarm"


def test_door_scan_allocates_nothing_in_steady_state(tmp_path):
    cfg = example("door")
    with AppRig() as rig:
        rig(op="boot", dir=str(tmp_path), cfg=cfg, rx=None)
        assert_no_alloc(rig, "disarmed, clock unset")
        assert rig(op="clock", unix=WED_10[2040])["ok"]
        assert_no_alloc(rig, "disarmed, clock 2040")
        assert rig(op="key", code="1234", action="arm_away", partition=1)["result"] == 0
        r = assert_no_alloc(rig, "armed", warm=700)
        assert r["states"][0]["state"] == "armed_away"
        rig(op="zone", zone=1, ohms=cfg["eol"]["alarm_ohms"])  # forced open, then held
        r = assert_no_alloc(rig, "door forced and held open, siren on", warm=700)
        assert r["states"][0]["state"] == "alarm" and r["states"][0]["siren"]


def reporting(tmp_path, protocol):
    """The bank example reporting in `protocol` to a tiny receiver: (rig
    config, receiver)."""
    cfg = example("bank")
    if protocol == "dc09":
        rx = TinyDc09Receiver("12AB", KEY)
        del cfg["account"], cfg["key"]
        cfg.update(protocol="dc09", dc09={"account": "12AB", "key": KEY.hex(), "line": "1",
                                          "receiver_no": "1"})
    else:
        rx = TinyReceiver(cfg["account"], bytes.fromhex(cfg["key"]))
    for p in ("primary", "backup"):
        cfg["receiver"][p]["port"] = rx.port
    return cfg, rx


@pytest.mark.parametrize("protocol", ["native", "dc09"])
def test_report_polls_allocate_nothing_idle_and_leave_no_garbage_waiting(tmp_path, protocol):
    cfg, rx = reporting(tmp_path, protocol)
    try:
        with AppRig() as rig:
            rig(op="boot", dir=str(tmp_path), cfg=cfg, rx="127.0.0.1:%d" % rx.port)
            assert rig(op="report", events=0)["queue"] == 0  # boot reports ACKed
            r = rig(op="poll", polls=300)
            assert r["alloc"] == 0, "300 idle polls allocated %d bytes" % r["alloc"]
            rx.ack = False  # the receiver hears but does not answer
            r = rig(op="poll", polls=300, events=2)
            assert r["queue"] == 2
            assert r["garbage"] == 0, "300 polls waiting for an ACK left %d bytes of garbage" % (
                r["garbage"])
            rx.ack = True
            r = rig(op="report", events=4)
            assert r["queue"] == 0 and r["delivered"] >= 4
    finally:
        rx.close()


@pytest.mark.parametrize("protocol", ["native", "dc09"])
def test_a_quiet_panel_leaves_no_garbage(tmp_path, protocol):
    """The whole app under asyncio (scan, report, the supervisor feeding
    the watchdog), reporting to a receiver, nothing happening: in 3 s it
    leaves no garbage, so the GC never runs while the panel is quiet.
    (MicroPython's asyncio allocates a frame of its own per task wake-up
    and frees it at once: that is allocation, not garbage.)"""
    cfg, rx = reporting(tmp_path, protocol)
    try:
        with AppRig() as rig:
            rig(op="boot", dir=str(tmp_path), cfg=cfg, rx="127.0.0.1:%d" % rx.port)
            assert rig(op="report", events=0)["queue"] == 0
            r = rig(op="run", ms=3000, warm=1000)
            assert r["watchdog_fed"] and all(d == 0 for _n, d in r["tasks"]), r
            assert r["garbage"] == 0, "3 s of a quiet panel left %d bytes of garbage" % (
                r["garbage"])
    finally:
        rx.close()
