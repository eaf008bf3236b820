"""Console test mode on a hardware board, driven the way QA drives a bench.

The ESP32 board code (board_esp32 + board_mcu + the whole application)
runs under the real MicroPython unix VM with stand-in ``machine`` and
``network`` modules.  Its console (sys.stdin/sys.stdout) is one end of a
socat pty pair, as a USB-serial adapter would be; the test drives the
other end with hil's ``SerialDriver`` through ``serial_for_url``, the
driver QA points at ``/dev/ttyUSB0``.  The stand-in ``machine`` reads the
board's electrical inputs (loop resistance per mux input, mains, battery)
from a JSON file: that file plays the bench's I/O fixture.  A shell loop
plays the boot loader: ``machine.reset()`` exits the VM with status 7 and
the loop starts it again on the same flash directory.

Each step waits (generous deadline) for the condition it then asserts on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from firmware import DEVICE_DIR, LEAN_DIR
from hil.link import PtyPair
from hil.target import SerialDriver, TargetError, TargetTimeout
from protocol.lean import glwire as w
from testkit import vm
from testkit.configs import scenario_config
from testkit.tiny_receiver import TinyReceiver
from testkit.wait import wait_until

pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")]

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

RESET_STATUS = 7  # the stand-in machine.reset() exits the VM with this

FAKE_MACHINE = '''
# Stand-in for an ESP32's `machine`, wired to a bench whose electrical
# state is the JSON file BENCH: {"loops": {"<mux input>": ohms},
# "ac": bool, "battery_mv": int}.  Pin numbers are board_esp32's defaults.
import json
import time
import eol

BENCH = %(bench)r
MUX = (25, 26, 27, 14, 12)
ZONE_ADC = 34
BATTERY_ADC = 36
AC_PIN = 35
_levels = {}
_bench = {"t": None, "d": {}}


def bench():
    t = time.ticks_ms()
    if _bench["t"] is None or time.ticks_diff(t, _bench["t"]) > 50:
        try:
            with open(BENCH) as f:
                _bench["d"] = json.load(f)
        except (OSError, ValueError):
            pass
        _bench["t"] = t
    return _bench["d"]


class Pin:
    OUT = 1
    IN = 0
    PULL_UP = 2

    def __init__(self, n, mode=0, pull=None, value=None):
        self.n = n
        if value is not None:
            _levels[n] = value

    def value(self, v=None):
        if v is None:
            if self.n == AC_PIN:  # opto pulls low while mains is present
                return 0 if bench().get("ac", True) else 1
            return _levels.get(self.n, 0)
        _levels[self.n] = v


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin):
        self.n = pin.n

    def atten(self, a):
        pass

    def read_u16(self):
        b = bench()
        if self.n == BATTERY_ADC:  # divider 5, 3.3 V full scale
            return b.get("battery_mv", 13200) * 65535 // 16500
        inp = 0
        for i in range(len(MUX)):
            inp |= _levels.get(MUX[i], 0) << i
        return eol.raw_for_ohms(b.get("loops", {}).get(str(inp), 2200), 4700)


class UART:
    def __init__(self, n, baud):
        pass

    def any(self):
        return 0


class WDT:
    def __init__(self, timeout):
        pass

    def feed(self):
        pass


def reset():
    raise SystemExit(%(reset)d)
'''

FAKE_NETWORK = '''
STA_IF = 0
class WLAN:
    def __init__(self, i):
        pass
'''

# what main.py does on a board, with the flash and config paths of the test
RUN = '''
import sys
import app
import board_esp32
board = board_esp32.Board(sys.argv[1], sys.argv[2])
code = app.run(board)
if code:
    board.exit(code)
'''

# the boot loader: start the firmware again after machine.reset()
LOOP = 'while :; do "$0" "$@"; rc=$?; [ "$rc" -eq %d ] || exit "$rc"; done' % RESET_STATUS


class Bench:
    """The board under the VM, its console on a pty, its inputs in a file."""

    def __init__(self, tmp_path, cfg: dict):
        self.dir = tmp_path
        self.bench_file = str(tmp_path / "bench.json")
        self.config_file = str(tmp_path / "config.json")
        self.set_inputs()
        self.set_config(cfg)
        (tmp_path / "machine.py").write_text(FAKE_MACHINE % {"bench": self.bench_file,
                                                             "reset": RESET_STATUS})
        (tmp_path / "network.py").write_text(FAKE_NETWORK)
        (tmp_path / "run.py").write_text(RUN)
        self.ptys = PtyPair(str(tmp_path / "pty"))
        env = dict(os.environ, MICROPYPATH=os.pathsep.join(
            (str(tmp_path), DEVICE_DIR, LEAN_DIR, ".frozen")))
        console = os.open(self.ptys.a, os.O_RDWR | os.O_NOCTTY)
        self.stderr = open(tmp_path / "stderr.log", "wb")
        try:
            self.proc = subprocess.Popen(
                ["sh", "-c", LOOP, vm.micropython(), str(tmp_path / "run.py"),
                 str(tmp_path / "flash"), self.config_file],
                stdin=console, stdout=console, stderr=self.stderr, env=env,
                start_new_session=True)
        finally:
            os.close(console)
        self.url = self.ptys.b

    def set_inputs(self, loops=None, ac=True, battery_mv=13200):
        tmp = self.bench_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"loops": {str(k): v for k, v in (loops or {}).items()}, "ac": ac,
                       "battery_mv": battery_mv}, f)
        os.replace(tmp, self.bench_file)  # the VM never reads half a file

    def set_config(self, cfg):
        with open(self.config_file, "w") as f:
            json.dump(cfg, f)

    def errors(self) -> str:
        self.stderr.flush()
        return (self.dir / "stderr.log").read_text(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.ptys.close()
        self.stderr.close()


@pytest.fixture
def rx():
    r = TinyReceiver(4242)
    yield r
    r.close()


@pytest.fixture
def bench(tmp_path, rx):
    b = Bench(tmp_path, scenario_config(rx.port, test_mode=True))
    yield b
    b.close()


@pytest.fixture
async def console(bench):
    d = SerialDriver(bench.url, name="console")
    await d.open()
    try:
        await d.wait_ready(60)
    except TargetTimeout:
        raise AssertionError("no answer on the console; stderr:\n" + bench.errors())
    yield d
    await d.close()


async def _part(drv, pid):
    st = await drv.state()
    return {p["id"]: p for p in st["partitions"]}[pid]


async def test_board_console_test_mode_drives_keypad_state_clock_and_reset(rx, bench, console):
    drv = console
    # the receiver is told that this panel runs in test mode, after the boot
    await wait_until(lambda: rx.find(607), what="607 test mode reported", seen=rx.event_list)
    boot = rx.find(305)
    assert boot and rx.find(607)[0]["text"] == "console test mode"
    st = await drv.state()
    assert [p["state"] for p in st["partitions"]] == ["disarmed", "disarmed"]
    assert {z["id"] for z in st["zones"]} == {1, 2, 3, 4, 5, 6}
    assert "TEST MODE" in await drv.read_console()

    # electrical inputs are the fixture's: refused, with the reason
    for refused in (drv.set_zone(2, "alarm"), drv.set_ac(False), drv.set_battery(11000),
                    drv.cut_path(1), drv.set_box_tamper(True)):
        with pytest.raises(TargetError, match="physical input"):
            await refused
    with pytest.raises(TargetError, match="only on the sim"):
        await drv.chan.call("stop")
    # a bad line is answered, not fatal
    with pytest.raises(TargetError, match="unknown cmd"):
        await drv.chan.call("self_destruct")

    # the keypad works through the console
    r = await drv.keypad("1234", "arm_away", 1)
    assert r["result_name"] == "ok"
    await wait_until(lambda: _is_state(drv, 1, "armed_away"), what="partition 1 armed")

    # the "fixture" opens zone 2's loop (mux input 1): the board reads it
    # through its ADC and reports the alarm
    bench.set_inputs(loops={1: 4400})
    await wait_until(lambda: rx.find(130, w.Q_NEW, partition=1, zone=2), what="burglary 130",
                     seen=rx.event_list)
    assert (await drv.read_outputs())["siren"] is True
    p1 = await _part(drv, 1)
    assert p1["state"] == "alarm" and p1["memory"] == [2]
    log = await drv.chan.call("log")
    assert any("ALARM 130 zone 2" in ln for ln in log["lines"])
    # a low battery at the terminals is read and reported
    bench.set_inputs(loops={1: 4400}, battery_mv=11000)
    await wait_until(lambda: rx.find(302), what="low battery 302", seen=rx.event_list)

    # the panel's own clock drifts: skewed an hour behind while the
    # receiver is silent, the next event carries the drifted time; the
    # receiver's ACK then corrects the panel
    await wait_until(lambda: _clock(drv), what="clock set by the receiver")
    rx.ack = False
    before = await _clock(drv)
    r = await drv.chan.call("clock", skew_s=-3600)
    assert before - 3600 - 5 <= r["clock"] <= before - 3600 + 5
    bench.set_inputs(battery_mv=11000)  # zone 2 closes again
    ev = await wait_until(lambda: rx.find(130, w.Q_RESTORE, zone=2), what="130 restore heard")
    assert ev[0]["event_time"] < time.time() - 3000
    rx.ack = True
    await wait_until(lambda: _clock_close(drv), what="panel clock corrected by the ACK",
                     seen=lambda: _clock(drv))

    # power_cycle is machine.reset(): the firmware boots again from flash,
    # armed as it was, with its alarm memory
    seq_before = (await drv.state())["reporter"]["next_seq"]
    await drv.reset()
    await wait_until(lambda: len(rx.find(305)) == 2, what="second boot reported")
    st = await drv.state()
    # rebooted: sequences resume at the first boot's reserve bound (seqstore)
    assert seq_before < 1 + 256 <= st["reporter"]["next_seq"]
    p1 = {p["id"]: p for p in st["partitions"]}[1]
    assert p1["state"] == "armed_away" and p1["memory"] == [2]
    await wait_until(lambda: len(rx.find(607)) == 2, what="607 again at the second boot")

    # test mode off (a new config) and reset: 607 restore, and the console
    # no longer answers the control protocol
    bench.set_config(scenario_config(rx.port))
    await drv.chan.call("power_cycle")
    await wait_until(lambda: rx.find(607, w.Q_RESTORE), what="607 restore", seen=rx.event_list)
    assert len(rx.find(305)) == 3 and len(rx.find(607)) == 2
    with pytest.raises(TargetTimeout):
        await drv.chan.call("ping", timeout=3)


async def _is_state(drv, pid, state):
    return (await _part(drv, pid))["state"] == state


async def _clock(drv):
    return (await drv.chan.call("clock"))["clock"]


async def _clock_close(drv):
    return abs(await _clock(drv) - time.time()) <= 5
