"""Scenario tests: the firmware under the real MicroPython VM with the sim
board, reporting to a tiny in-test receiver (testkit.tiny_receiver).

No timed assertions: each step waits (with a generous deadline) for the
condition it then asserts on.
"""

import os

import pytest

from firmware import build as fwbuild
from protocol.lean import glwire as w
from testkit import vm
from testkit.configs import scenario_config
from testkit.panel import PanelProcess
from testkit.tiny_receiver import TinyReceiver

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)


@pytest.fixture
def rx():
    r = TinyReceiver(4242)
    yield r
    r.close()


@pytest.fixture
def panel_factory(tmp_path, rx):
    made = []

    def make(cfg=None, **kw):
        p = PanelProcess(cfg or scenario_config(rx.port), str(tmp_path / ("state%d" % len(made))),
                         **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


def booted(rx):
    return rx.find(305)


def test_trip_while_armed_sends_event_with_code_partition_zone(rx, panel_factory):
    p = panel_factory()
    p.wait(lambda: booted(rx), what="305 system reset")
    r = p.ctl({"cmd": "key", "code": "1234", "action": "arm_away", "partition": 1})
    assert r["result_name"] == "ok"
    # exit delay 0: the closing report (401, qualifier 3 = closing, zone = user 1)
    p.wait(lambda: rx.find(401, w.Q_RESTORE, partition=1, zone=1), what="closing report")
    assert p.ctl({"cmd": "zone", "zone": 2, "state": "alarm"})["ok"]
    ev = p.wait(lambda: rx.find(130, w.Q_NEW, partition=1, zone=2), what="burglary 130")
    assert len(ev) == 1
    assert p.wait(lambda: p.ctl({"cmd": "outputs"})["siren"], what="siren on")
    st = p.state()
    assert st["partitions"][0]["state"] == "alarm"
    assert 2 in st["partitions"][0]["memory"]
    # the partition that was not armed stayed disarmed
    assert st["partitions"][1]["state"] == "disarmed"
    # zone back to normal: restore
    p.ctl({"cmd": "zone", "zone": 2, "state": "normal"})
    p.wait(lambda: rx.find(130, w.Q_RESTORE, zone=2), what="130 restore")
    # the ACK carried the receiver's clock: the panel clock is set
    assert p.wait(lambda: p.state()["clock"] > 1_600_000_000, what="clock set")
    assert not p.state()["troubles"] & w.T_CLOCK_UNSET


def test_duress_code_disarms_and_sends_121(rx, panel_factory):
    p = panel_factory()
    p.wait(lambda: booted(rx), what="boot")
    p.ctl({"cmd": "key", "code": "1234", "action": "arm_away", "partition": 1})
    p.wait(lambda: p.state()["partitions"][0]["state"] == "armed_away", what="armed")
    r = p.ctl({"cmd": "key", "code": "1235", "action": "disarm", "partition": 1})
    assert r["result_name"] == "ok"
    assert p.state()["partitions"][0]["state"] == "disarmed"
    d = p.wait(lambda: rx.find(121, w.Q_NEW, zone=9), what="duress 121")
    assert d[0]["partition"] == 1
    # and the opening is reported as a normal one, by the duress user
    p.wait(lambda: rx.find(401, w.Q_NEW, partition=1, zone=9), what="opening report")
    assert not p.ctl({"cmd": "outputs"})["siren"]


def test_holdup_is_silent(rx, panel_factory):
    p = panel_factory()
    p.wait(lambda: booted(rx), what="boot")
    p.ctl({"cmd": "zone", "zone": 4, "state": "alarm"})
    p.wait(lambda: rx.find(122, w.Q_NEW, partition=2, zone=4), what="hold-up 122")
    # the panel has processed the trip (it is in the alarm memory) and the
    # outputs were written after that scan
    st = p.wait(lambda: (lambda s: s if 4 in s["partitions"][1]["memory"] else None)(p.state()),
                what="alarm memory")
    assert st["siren"] is False and st["strobe"] is False
    out = p.ctl({"cmd": "outputs"})
    assert out["siren"] is False and out["strobe"] is False
    assert "outputs siren=1" not in p.console()
    # a panic button, by contrast, sounds
    p.ctl({"cmd": "zone", "zone": 5, "state": "alarm"})
    p.wait(lambda: rx.find(120, w.Q_NEW, zone=5), what="panic 120")
    assert p.wait(lambda: p.ctl({"cmd": "outputs"})["siren"], what="siren for panic")


def test_power_cycle_with_events_queued_sends_them_after_boot(rx, panel_factory):
    rx.ack = False  # the receiver hears but does not confirm: events stay queued
    p = panel_factory()
    p.wait(lambda: booted(rx), what="boot frame seen")
    p.ctl({"cmd": "zone", "zone": 5, "state": "alarm"})  # panic
    p.ctl({"cmd": "ac", "on": False})  # AC loss, reported at once (delay 0)
    p.wait(lambda: p.state()["reporter"]["queue"] >= 3, what="3 events queued")
    # conditions gone before the power cut (else the new boot detects them
    # again and rightly reports them anew): their restores queue too
    p.ctl({"cmd": "zone", "zone": 5, "state": "normal"})
    p.ctl({"cmd": "ac", "on": True})
    p.wait(lambda: p.state()["reporter"]["queue"] >= 5, what="restores queued")
    seen_before = set(rx.events)  # heard (not ACKed) before the power cut
    assert seen_before
    queued = p.state()["reporter"]["queue"]
    assert p.ctl({"cmd": "power_cycle"})["ok"]
    # the VM restarts (firmware.sim); the queue file survived
    p.wait(lambda: p.state()["reporter"]["queue"] >= queued, what="queue after reboot")
    rx.ack = True
    p.wait(lambda: p.state()["reporter"]["queue"] == 0, what="queue drained", timeout=30)
    got = rx.event_list()
    codes = [(m["code"], m["qualifier"]) for m in got]
    assert codes.count((120, w.Q_NEW)) == 1 and codes.count((120, w.Q_RESTORE)) == 1
    assert codes.count((301, w.Q_NEW)) == 1 and codes.count((301, w.Q_RESTORE)) == 1
    assert codes.count((305, w.Q_NEW)) == 2  # one per boot
    # retransmissions after the reboot reused the sequence given at
    # queueing: nothing heard before the cut arrived under a second number
    first = min(seen_before)
    assert rx.events[first]["code"] == 305
    boots = sorted(s for s, m in rx.events.items() if m["code"] == 305)
    assert boots[0] == first
    # the second boot's sequences start past the first boot's reserve block
    assert boots[1] >= first + 256
    old = [s for s, m in rx.events.items() if m["code"] in (120, 301)]
    assert all(s < first + 256 for s in old)


def test_primary_path_cut_fails_over_and_reports_over_backup(rx, panel_factory):
    p = panel_factory()
    p.wait(lambda: booted(rx), what="boot")
    p.ctl({"cmd": "path", "path": 1, "up": False})
    p.ctl({"cmd": "zone", "zone": 6, "state": "alarm"})  # fire
    fire = p.wait(lambda: rx.find(110, zone=6), what="fire 110 over backup")
    assert fire
    trouble = p.wait(lambda: rx.find(350, w.Q_NEW, zone=1), what="350 path 1 failure")
    assert trouble
    # both came over UDP (path 2), flagged as the backup path
    paths = {s: path for path, s, m, fl in rx.frames if m["type"] == w.MSG_EVENT}
    flags = {s: fl for path, s, m, fl in rx.frames if m["type"] == w.MSG_EVENT}
    for s, m in rx.events.items():
        if m["code"] in (110, 350):
            assert paths[s] == 2 and flags[s] & w.FLAG_BACKUP_PATH
    assert p.state()["troubles"] & w.T_PATH1_FAIL
    p.ctl({"cmd": "path", "path": 1, "up": True})
    p.wait(lambda: rx.find(350, w.Q_RESTORE, zone=1), what="350 restore", timeout=30)
    p.wait(lambda: p.state()["reporter"]["active_path"] == 1, what="fail back")


def test_bad_config_reports_trouble_instead_of_running(rx, panel_factory):
    cfg = scenario_config(rx.port)
    cfg["zones"][1]["type"] = "instnat"
    p = panel_factory(cfg)
    ev = p.wait(lambda: rx.find(307), what="307 config trouble")
    assert ev[0]["text"].startswith("zones[1].type")
    assert "zones[1].type: 'instnat' is not one of instant, entry_exit" in p.console()
    st = p.state()
    assert st["troubles"] & w.T_CONFIG
    assert st["partitions"] == [] and st["zones"] == []
    r = p.ctl({"cmd": "key", "code": "1234", "action": "arm_away", "partition": 1})
    assert r["result_name"] != "ok"


def test_bundle_compiles_with_mpy_cross_and_boots(tmp_path, rx, panel_factory):
    out = str(tmp_path / "bundle")
    sizes = fwbuild.build(out, "sim")
    assert sizes["panel.mpy"] > 0 and "main.py" in sizes
    for board in ("esp32", "rp2"):
        s = fwbuild.build(str(tmp_path / board), board)
        assert "board_%s.mpy" % board in s and "simctl.mpy" not in s
    p = panel_factory(bundle=out)
    p.wait(lambda: booted(rx), what="boot from .mpy bundle")


def test_door_example_forced_entry_and_unlock(rx, panel_factory):
    import json
    from firmware import REPO
    from testkit.configs import TEST_KEY
    with open(os.path.join(REPO, "examples", "door.json")) as f:
        cfg = json.load(f)
    cfg["account"] = 4242
    cfg["key"] = TEST_KEY.hex()
    for path in ("primary", "backup"):
        cfg["receiver"][path]["port"] = rx.port
    p = panel_factory(cfg)
    p.wait(lambda: booted(rx), what="boot")
    assert p.ctl({"cmd": "outputs"})["lock"] is True
    p.ctl({"cmd": "zone", "zone": 1, "state": "alarm"})  # door opens while locked
    p.wait(lambda: rx.find(423, w.Q_NEW, partition=1, zone=1), what="forced access 423")
    assert p.wait(lambda: p.ctl({"cmd": "outputs"})["siren"], what="siren")
    p.ctl({"cmd": "zone", "zone": 1, "state": "normal"})
    p.wait(lambda: rx.find(423, w.Q_RESTORE, zone=1), what="423 restore")
    r = p.ctl({"cmd": "key", "code": "2580", "action": "unlock"})
    assert r["result_name"] == "ok"
    assert p.ctl({"cmd": "outputs"})["lock"] is False
    r = p.ctl({"cmd": "key", "code": "2580", "action": "bypass", "zone": 4})
    assert r["result_name"] == "refused"  # a family member may not bypass


FAKE_MACHINE = '''
# stand-ins for the port modules a board has and the unix port lacks
_log = []
class Pin:
    OUT = 1
    IN = 0
    PULL_UP = 2
    def __init__(self, n, mode=0, pull=None, value=None):
        self.n = n
        self.v = value if value is not None else 0
    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
        if LOG[0]:
            _log.append((self.n, v))
LOG = [True]  # record pin writes (off: a count of allocations is the board's own)
class ADC:
    ATTN_11DB = 3
    def __init__(self, pin):
        self.pin = pin
    def atten(self, a):
        pass
    def read_u16(self):
        return FULL[0] or 20000
FULL = [0]  # a reading for every ADC (0: the usual 20000)
class UART:
    def __init__(self, n, baud):
        self.buf = b"1234 arm_away 2\\n"
    def any(self):
        return len(self.buf)
    def read(self, n):
        b, self.buf = self.buf[:n], self.buf[n:]
        return b
    def write(self, b):
        return len(b)
class WDT:
    def __init__(self, timeout):
        self.fed = 0
    def feed(self):
        self.fed += 1
def reset():
    raise SystemExit(9)
'''

FAKE_NETWORK = '''
STA_IF = 0
class WLAN:
    def __init__(self, i):
        pass
    def active(self, a):
        pass
    def isconnected(self):
        return True
    def connect(self, s, p):
        pass
    def status(self):
        return 3
    def ifconfig(self):
        return ("10.0.0.2",)
'''

BOARD_SMOKE = '''
import sys, machine
import board_%s as bm
b = bm.Board(sys.argv[1], sys.argv[1] + "/config.json")
b.setup({"board": {"wifi": {"ssid": "x", "password": "y"}, "siren_sense": 7,
                   "supply_pin": 33}})
b.net_start({"board": {"wifi": {"ssid": "x", "password": "y"}}})
raw = b.zone_raw(19)
b.outputs(True, False, True)
k = b.keypad()
b.wdt_feed()
print("RAW", raw, "KEY", k, "MV", b.battery_mv(), "AC", b.ac_ok(), "TAMPER", b.box_tamper())
print("PINS", machine._log[-9:])
b.outputs(False, False, True, False)
print("SUPPLY", machine._log[-1])
print("SOUNDERS", b.sounder_raw(0), b.sounder_raw(1), "MUX", machine._log[-3:])
# what the scan reads, at full scale (on a 32-bit port a product past 2**30
# would be a long integer per reading: fwutil.py)
import micropython
def inputs(b):
    t = micropython.mem_total()
    for _ in range(10):
        b.zone_raw(19)
        b.battery_mv()
        b.ac_ok()
        b.box_tamper()
        b.sounder_raw(0)
    return micropython.mem_total() - t
machine.FULL[0] = 65535
machine.LOG[0] = False
inputs(b)
print("FULL MV", b.battery_mv(), "ALLOC", inputs(b))
'''


@pytest.mark.parametrize("board", ["esp32", "rp2"])
def test_board_modules_run_under_the_vm_with_fake_machine(tmp_path, board):
    """The hardware boards cannot run here; with stand-in `machine` and
    `network` modules they at least run under the real VM: mux select
    lines, ADC read, outputs, UART keypad parsing, watchdog."""
    import subprocess
    from firmware import DEVICE_DIR, LEAN_DIR
    (tmp_path / "machine.py").write_text(FAKE_MACHINE)
    (tmp_path / "network.py").write_text(FAKE_NETWORK)
    (tmp_path / "smoke.py").write_text(BOARD_SMOKE % board)
    env = dict(os.environ, MICROPYPATH=os.pathsep.join((str(tmp_path), DEVICE_DIR, LEAN_DIR,
                                                        ".frozen")))
    r = subprocess.run([vm.micropython(), str(tmp_path / "smoke.py"), str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RAW 20000 KEY ('1234', 'arm_away', 2, 0)" in r.stdout
    # input 19 = 0b10011 on the five mux select lines
    pins = {"esp32": [25, 26, 27, 14, 12], "rp2": [2, 3, 4, 5, 6]}[board]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("PINS")][0]
    for n, bit in zip(pins, (1, 1, 0, 0, 1)):
        assert "(%d, %d)" % (n, bit) in line
    # the detector supply pin follows outputs(); the siren line is read back
    # on mux input 7 (0b00111), the strobe's is not supervised on this board
    assert "SUPPLY (33, 0)" in r.stdout
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("SOUNDERS")][0]
    assert line.startswith("SOUNDERS 20000 None")
    for n, bit in zip(pins[2:], (1, 0, 0)):
        assert "(%d, %d)" % (n, bit) in line
    # 65535 x 3300 mV x 5 (the divider) / 65535, and the inputs read
    # without allocating (a 32-bit VM: GUARDLINE_MICROPYTHON)
    assert "FULL MV 16500 ALLOC 0" in r.stdout
