"""The HIL targets and drivers against the real firmware.

SimTarget runs the firmware under the MicroPython VM (firmware.sim); the
serial driver and the bench composite (console + relay fixture) are tested
against the SAME running firmware: the console through socket:// and
through a socat pty bridged to the sim's control socket, the fixture
through a pty served by hil.fixture_sim, which applies relay and loop
changes to the sim board the way the bench fixture applies them to a real
board's terminals.  Conditions are polled with generous deadlines."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

import pytest

from hil.fixture_sim import FixtureSim
from hil.link import pty_pair
from hil.fake import FakeTarget
from hil.strategy import PanelStrategy
from hil.protocols import OutputProtocol, PowerProtocol
from hil.target import (BenchTarget, FixtureDriver, NotSupported, SerialDriver, SimTarget,
                        TargetError, open_target_url, zone_ohms)
from hil.timeline import Timeline
from testkit.net import free_port
from testkit.wait import wait_until

CONFIG = os.path.join(os.path.dirname(__file__), "..", "hil", "configs", "bank.json")
WIRING = {"power": 0, "ac": 1, "paths": {"1": 2, "2": 3},
          "zones": {"1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5},
          "outputs": {"siren": 0, "strobe": 1, "lock": 2}}

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")


def load_config(**timings) -> dict:
    with open(CONFIG) as f:
        cfg = json.load(f)
    cfg["timings"].update(timings)
    return cfg


def dead_paths() -> dict:
    # nothing listens there: the panel runs with both paths down
    return {"primary": {"type": "tcp", "host": "127.0.0.1", "port": free_port()},
            "backup": None}


@pytest.fixture
async def sim(tmp_path):
    d = SimTarget(load_config(exit_delay_s=0), str(tmp_path / "panel"), paths=dead_paths(),
                  timeline=Timeline("sim"))
    await d.power_on()
    yield d
    await d.close()


async def zone_state(target, zone: int) -> str:
    st = await target.state()
    return {z["id"]: z["state"] for z in st["zones"]}[zone]


# --- sim --------------------------------------------------------------------------------


async def test_sim_boots_answers_and_drives_zones(sim):
    st = await sim.state()
    assert [p["state"] for p in st["partitions"]] == ["disarmed", "disarmed"]
    assert {z["id"] for z in st["zones"]} == {1, 2, 3, 4, 5, 6}
    await sim.set_zone(3, "tamper")
    await wait_until(lambda: zone_state(sim, 3), what="a zone reading")
    await wait_until(lambda: _is(zone_state(sim, 3), "tamper"), what="zone 3 tamper")
    await sim.set_zone(3, ohms=zone_ohms("normal"))
    await wait_until(lambda: _is(zone_state(sim, 3), "normal"), what="zone 3 normal again")
    console = await sim.read_console()
    assert "panel 7001 up" in console
    assert sim.timeline.select("panel", "zone")


async def _is(coro, value):
    return (await coro) == value


async def test_sim_power_off_kills_and_power_on_keeps_flash(sim):
    # arm, so the persisted arming mode tells that flash survived
    await sim.keypad("1234", "arm_away", 1)
    await wait_until(lambda: _part(sim, 1, "armed_away"), what="armed away")
    await sim.power_off()
    assert not sim.powered
    with pytest.raises(TargetError):
        await sim.control.chan.call("ping", timeout=2.0)
    await sim.power_on()
    assert sim.boots == 2
    assert await _part(sim, 1, "armed_away")  # came back armed: modes in flash


async def _part(target, pid, state):
    st = await target.state()
    return {p["id"]: p["state"] for p in st["partitions"]}[pid] == state


async def test_sim_refusals_are_errors_not_silence(sim):
    with pytest.raises(TargetError, match="no zone"):
        await sim.set_zone(99, "alarm")
    with pytest.raises(ValueError):
        await sim.keypad("1234", "self_destruct")
    r = await sim.keypad("0000", "disarm", 1)
    assert r["result_name"] == "refused"


async def test_sim_reset_restarts_the_firmware(sim):
    before = (await sim.state())["reporter"]["next_seq"]
    await sim.reset()
    st = await sim.state()
    # a reboot reserves a fresh block of sequence numbers (seqstore.py)
    assert st["reporter"]["next_seq"] > before
    assert sim.control.chan.opens >= 2


async def test_duress_and_holdup_keep_outputs_silent(sim):
    await sim.set_zone(4, "alarm")  # teller hold-up: silent by type
    await wait_until(lambda: _is(zone_state(sim, 4), "alarm"), what="hold-up zone tripped")
    out = await sim.read_outputs()
    assert out == {"siren": False, "strobe": False, "lock": True, "supply": True}
    await sim.set_zone(5, "alarm")  # panic: audible
    await wait_until(lambda: _out(sim, "siren"), what="the siren for panic")


async def _out(target, name):
    return (await target.read_outputs())[name]


# --- the console driver against the same firmware ----------------------------------------


async def test_serial_driver_over_socket_url_talks_to_the_firmware(sim):
    console = SerialDriver("socket://127.0.0.1:%d" % sim.control_port, name="console")
    try:
        await console.wait_ready()
        assert (await console.state())["zones"] == (await sim.state())["zones"]
        await console.set_zone(2, "alarm")
        await wait_until(lambda: _is(zone_state(sim, 2), "alarm"), what="zone 2 via console")
        # a console alone cannot switch a board's power: that is the fixture's
        board = BenchTarget(console)
        with pytest.raises(NotSupported, match="power"):
            await board.power_off()
        assert board.powered  # someone else's power, taken to be on
    finally:
        await console.close()


async def test_serial_driver_over_a_pty_bridged_to_the_firmware(sim, tmp_path):
    link = str(tmp_path / "console")
    bridge = bridge_pty(link, sim.control_port)
    try:
        await wait_until(lambda: os.path.exists(link), what="the pty")
        console = SerialDriver(link, name="console-pty")
        await console.wait_ready()
        r = await console.keypad("1234", "arm_away", 2)
        assert r["result_name"] == "ok"
        await wait_until(lambda: _part(sim, 2, "armed_away"), what="armed through the pty")
        assert (await console.read_outputs())["lock"] is True
        await console.close()
    finally:
        bridge.terminate()
        bridge.wait(5)


async def test_control_channel_ignores_a_late_reply_to_an_abandoned_command(tmp_path):
    """A board that was still booting reads its console buffer late and
    answers a command the driver already gave up on; that answer (its id
    is not the current one) must not be taken for the current command's."""
    import serial
    import threading
    with pty_pair(str(tmp_path / "pty")) as ptys:
        board = serial.serial_for_url(ptys.a, timeout=0.05)
        seen = []

        def fake_board():  # answers every command twice: a stale copy first
            buf = b""
            while len(seen) < 1:
                buf += board.read(256)
                if b"\n" in buf:
                    req = json.loads(buf.split(b"\n")[0])
                    seen.append(req)
                    stale = {"ok": True, "id": req["id"] - 1, "stale": True}
                    board.write(json.dumps(stale).encode() + b"\n")
                    board.write(json.dumps({"ok": True, "id": req["id"]}).encode() + b"\n")
        t = threading.Thread(target=fake_board, daemon=True)
        t.start()
        d = SerialDriver(ptys.b, name="late")
        try:
            r = await d.chan.call("ping", timeout=10)
            assert "stale" not in r and r["id"] == seen[0]["id"]
            await wait_until(lambda: b"stale" in d.chan.console_bytes(),
                             what="the late reply as console text")
        finally:
            await d.close()
            t.join(5)
            board.close()


def bridge_pty(path: str, port: int) -> subprocess.Popen:
    """A pty at `path` whose other side is the sim's control socket: what
    a USB-serial adapter on a board's console looks like to the host."""
    return subprocess.Popen(["socat", "pty,raw,echo=0,link=%s" % path,
                             "tcp:127.0.0.1:%d" % port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_spy_url_dumps_console_traffic(sim, tmp_path):
    link = str(tmp_path / "console")
    dump = tmp_path / "spy.txt"
    bridge = bridge_pty(link, sim.control_port)
    try:
        await wait_until(lambda: os.path.exists(link), what="the pty")
        # spy:// wraps a device and writes a hex dump of both directions
        console = SerialDriver("spy://%s?file=%s" % (link, dump), name="spy")
        try:
            await console.wait_ready(timeout=20)
            await console.state()
        finally:
            await console.close()
    finally:
        bridge.terminate()
        bridge.wait(5)
    assert "state" in dump.read_text()


# --- the bench composite: console + relay fixture -------------------------------------------


async def test_bench_target_with_fixture_drives_the_same_firmware(tmp_path):
    tl = Timeline("bench")
    sim = SimTarget(load_config(), str(tmp_path / "panel"), paths=dead_paths(), timeline=tl)
    loop = asyncio.get_running_loop()

    def power(on: bool):  # the fixture's power relay, wired to the sim's "mains"
        fut = asyncio.run_coroutine_threadsafe(sim.power_on() if on else sim.power_off(), loop)
        fut.result(60)

    with pty_pair() as fx_pty:
        fixture_sim = FixtureSim(fx_pty.b, ("127.0.0.1", sim.control_port), WIRING,
                                 power=power).start()
        console = SerialDriver("socket://127.0.0.1:%d" % sim.control_port, name="console")
        fixture = FixtureDriver(fx_pty.a, wiring=WIRING)
        bench = BenchTarget(console, fixture, timeline=tl)
        bench.config = sim.config
        try:
            await fixture.open()
            assert fixture.info["fixture"] == "guardline-hil-fixture-sim"
            assert bench.driver(PowerProtocol) is fixture
            assert bench.driver(OutputProtocol) is fixture
            assert not bench.powered
            await bench.power_on()  # relay -> sim starts; console answers
            assert bench.powered and sim.powered
            await bench.set_zone(5, "alarm")  # panic through the loop ladder
            await wait_until(lambda: _is(zone_state(bench, 5), "alarm"), what="panic via fixture")
            await wait_until(lambda: _out(bench, "siren"), what="siren sensed by the fixture")
            await bench.set_ac(False)
            await bench.cut_path(1, True)
            st = await bench.state()
            assert st["reporter"]["paths"][0]["up"] in (True, False)  # answered
            await bench.power_off()
            assert not sim.powered
            out = await bench.read_outputs()  # unpowered board: optos read 0
            assert out == {"siren": False, "strobe": False, "lock": False}
        finally:
            await console.close()
            await fixture.close()
            fixture_sim.close()
            await sim.close()
    kinds = {(e.source, e.kind) for e in tl.entries}
    assert ("panel", "power") in kinds and ("panel", "zone") in kinds


def test_fixture_wiring_must_name_every_channel_used():
    f = FixtureDriver("loop://", wiring={"zones": {"1": 0}})
    with pytest.raises(NotSupported):
        f.channel("zones", 9)
    with pytest.raises(NotSupported):
        f.channel("power", None)


# --- strategies, on the fake target (the firmware's core in-process) ---------------------


@pytest.fixture
def rig(tmp_path):
    """A fake target (hil/fake.py: the firmware's App and Panel in this
    process, on a fast clock) and the receiver it reports to."""
    fake = FakeTarget(load_config(), str(tmp_path / "panel"), timeline=Timeline("rig"),
                      paths={"backup": None})
    yield fake, fake.receiver


async def test_strategy_walks_off_to_armed_and_back(rig):
    fake, rx = rig
    s = PanelStrategy(fake, rx)
    await s.transition("armed_away", partition=1)
    assert await _part(fake, 1, "armed_away")
    # reporting was judged by the receiver: it stored the boot report
    assert any(e["code"] == 305 for e in await rx.events(account=7001))
    await s.transition("disarmed")
    assert await _part(fake, 1, "disarmed")
    await s.transition("off")
    assert not fake.powered
    await s.transition("reporting")
    assert fake.powered and fake.boots == 2
    states = [e.detail["state"] for e in fake.timeline.select("scenario", "strategy")]
    assert states == ["booted", "reporting", "disarmed", "armed_away", "disarmed", "off",
                      "booted", "reporting"]


async def test_strategy_arming_puts_open_zones_back_first(rig):
    fake, rx = rig
    s = PanelStrategy(fake, rx)
    await s.transition("disarmed")
    await fake.set_zone(2, "alarm")
    await wait_until(lambda: _is(zone_state(fake, 2), "alarm"), what="zone 2 open")
    await s.transition("armed_away", partition=1)
    assert await zone_state(fake, 2) == "normal"
    # the receiver has the closing report (401, qualifier 3) of the arming
    assert (401, 3) in [(e["code"], e["qualifier"]) for e in await rx.events(account=7001)]


async def test_strategy_fails_loudly_when_the_receiver_never_hears(rig):
    fake, rx = rig
    fake.panel.receiver.remove_account(fake.account)  # it stays silent
    s = PanelStrategy(fake, rx, step_timeout=1.0)
    with pytest.raises(AssertionError, match="receiver to hear"):
        await s.transition("reporting")
    with pytest.raises(ValueError):
        await s.transition("levitating")


async def test_strategy_without_a_receiver_judges_reporting_by_the_panel(rig):
    fake, _ = rig
    s = PanelStrategy(fake)
    st = await s.transition("reporting")
    assert st["reporter"]["delivered"] > 0


async def test_fake_target_refuses_as_the_firmware_does(rig):
    fake, _ = rig
    await fake.power_on()
    with pytest.raises(TargetError, match="no zone"):
        await fake.set_zone(99, "alarm")
    with pytest.raises(ValueError):
        await fake.keypad("1234", "self_destruct")
    assert (await fake.keypad("0000", "disarm", 1))["result_name"] == "refused"
    assert fake.capabilities() >= {"power", "zones", "paths", "supplies", "console"}


async def test_the_fake_answers_as_the_sim_does(tmp_path):
    """The same config, the same inputs: the VM's firmware and the
    in-process one read the same zones, partitions and outputs."""
    cfg = load_config(exit_delay_s=0)
    sim = SimTarget(cfg, str(tmp_path / "sim"), paths=dead_paths())
    fake = FakeTarget(cfg, str(tmp_path / "fake"), paths=dead_paths())
    try:
        for t in (sim, fake):
            await t.power_on()
            await t.set_zone(5, "alarm")  # panic: audible
            await wait_until(lambda t=t: _out(t, "siren"), what="the siren for panic")
            assert (await t.keypad("1234", "arm_away", 1))["result_name"] == "ok"
            await wait_until(lambda t=t: _part(t, 1, "armed_away"), what="partition 1 armed")

        def view(st):
            return ([(z["id"], z["state"]) for z in st["zones"]],
                    [(p["id"], p["state"], p["memory"]) for p in st["partitions"]])
        assert view(await fake.state()) == view(await sim.state())
        assert await fake.read_outputs() == await sim.read_outputs()
        assert set(await fake.state()) == set(await sim.state())
    finally:
        await sim.close()
        await fake.close()


def test_target_urls_map_to_serial_for_url_urls():
    assert open_target_url("serial:///dev/ttyUSB0").console.url == "/dev/ttyUSB0"
    assert open_target_url("serial:socket://lab:4001").console.url == "socket://lab:4001"
    b = open_target_url("serial:rfc2217://lab:7000", fixture_url="/dev/ttyACM0",
                        wiring=WIRING)
    assert b.console.url == "rfc2217://lab:7000"
    assert b.fixture.url == "/dev/ttyACM0" and b.driver(PowerProtocol) is b.fixture
