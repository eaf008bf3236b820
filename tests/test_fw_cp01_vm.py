"""CP-01 false-alarm reduction end to end: the firmware under the real
MicroPython VM (firmware.sim, the sim board) reporting in the native
protocol to this project's receiver (TCP and UDP listeners, real SQLite
store) in the test's event loop.  Every check is on what the receiver
stored: code, qualifier, partition, zone or user, class, priority,
description, text, and the order (sequence) of the reports.

The abort window cannot be shorter than CP-01's 15 s, and a closing
warning than 30 s: those scenarios wait that long, for a condition,
never for a fixed time."""

import asyncio

import pytest

from receiver.config import Config
from receiver.store import Account
from receiver.testing import running_receiver
from testkit import vm
from testkit.configs import TEST_KEY, scenario_config
from testkit.panel import PanelProcess
from testkit.wait import wait_until

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

ACCOUNT = "4242"
NEW, RESTORE = 1, 3
WINDOW = 40  # s: a generous bound on a 15 s abort window or a 30 s warning


def rx_config(tmp_path):
    return Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)], udp=[("127.0.0.1", 0)])


def account(cfg):
    return Account(ACCOUNT, TEST_KEY, zones={str(z["id"]): z["name"] for z in cfg["zones"]},
                   partitions={str(p["id"]): p["name"] for p in cfg["partitions"]},
                   supervised=False)


def panel_config(rx, **over):
    tcp = rx.addresses["tcp"][0][1]
    udp = rx.addresses["udp"][0][1]
    cfg = scenario_config(tcp, **over)
    cfg["receiver"]["backup"]["port"] = udp
    return cfg


async def events(rx, code=None, qualifier=None, after=0, **fields):
    """Stored events of the account (with sequence > `after`)."""
    return [e for e in await rx.store.list_events(account=ACCOUNT)
            if (code is None or e.code == code)
            and (qualifier is None or e.qualifier == qualifier)
            and (e.seq or 0) > after
            and all(getattr(e, k) == v for k, v in fields.items())]


async def stored(rx, code, qualifier=NEW, timeout=30, after=0, **fields):
    return await wait_until(lambda: events(rx, code, qualifier, after, **fields), timeout,
                            what="%03d q%d %s stored" % (code, qualifier, fields))


async def ctl(panel, **req):
    r = await asyncio.to_thread(panel.ctl, req)
    assert r["ok"], r
    return r


async def state(panel):
    return await asyncio.to_thread(panel.state)


async def part_is(panel, k, name, timeout=WINDOW):
    async def check():
        return (await state(panel))["partitions"][k - 1]["state"] == name
    await wait_until(check, timeout, what="partition %d %s" % (k, name))


async def zone(panel, z, st):
    await ctl(panel, cmd="zone", zone=z, state=st)

    async def seen():
        return (await state(panel))["zones"][z - 1]["state"] == st
    await wait_until(seen, 20, what="zone %d reads %s" % (z, st))


async def drained(panel):
    async def check():
        return (await state(panel))["reporter"]["queue"] == 0
    await wait_until(check, 30, what="panel queue drained")


async def key(panel, code, action, partition=1):
    r = await ctl(panel, cmd="key", code=code, action=action, partition=partition)
    return r["result_name"]


def booted(tmp_path, cfg):
    return PanelProcess(cfg, str(tmp_path / "panel"))


async def test_abort_cancel_recent_close_and_exit_error_at_the_receiver(tmp_path):
    """An interior trip disarmed inside the abort window never reaches the
    receiver (its 406 "abort" does, configured); one left alone is stored
    after the window with 459 recent close; the disarm that follows sends
    406 cancel, stored before the opening; a door left open past the exit
    delay starts the entry delay, and then 374 + 457 are stored."""
    cfg0 = scenario_config(0)
    async with running_receiver(rx_config(tmp_path), [account(cfg0)]) as rx:
        cfg = panel_config(rx, options={"abort_report": True},
                           timings={"abort_window_s": 15, "exit_delay_s": 0})
        panel = booted(tmp_path, cfg)
        try:
            await stored(rx, 305, timeout=60)
            # 1. abort: armed, the PIR (interior), a valid code within 15 s
            assert await key(panel, "1234", "arm_away") == "ok"
            await stored(rx, 401, RESTORE, partition=1, zone=1)
            await zone(panel, 3, "alarm")
            await part_is(panel, 1, "alarm_held")
            assert (await ctl(panel, cmd="outputs"))["siren"]  # it sounds locally
            assert await key(panel, "2580", "disarm") == "ok"
            [abort] = await stored(rx, 406, partition=1)
            await stored(rx, 401, NEW, partition=1, zone=2)
            await zone(panel, 3, "normal")
            await drained(panel)
            assert abort.text == "abort" and abort.user == 2
            assert abort.event_class == "status"
            assert abort.description == "Cancel, user 2, lobby"
            assert await events(rx, 132) == []  # never sent, nor its restore
            st = await state(panel)
            assert st["partitions"][0]["keypad"] == "alarm aborted: not sent"

            # 2. nobody disarms: stored after the window, with recent close
            assert await key(panel, "1234", "arm_away") == "ok"
            await zone(panel, 3, "alarm")
            await part_is(panel, 1, "alarm_held")
            assert await events(rx, 132) == []
            [alarm] = await stored(rx, 132, timeout=WINDOW, partition=1, zone=3)
            [recent] = await stored(rx, 459, partition=1)
            assert alarm.event_class == "burglary" and recent.user == 1
            assert recent.seq > alarm.seq
            assert alarm.description == "Interior burglary, zone 3 (lobby PIR), lobby"
            # 3. the user disarms within 5 minutes: 406 cancel, then the opening
            assert await key(panel, "2580", "disarm") == "ok"
            [cancel] = await stored(rx, 406, text="cancel")
            [opening] = await stored(rx, 401, NEW, after=alarm.seq, partition=1, user=2)
            assert cancel.user == 2 and cancel.partition == 1
            assert alarm.seq < cancel.seq < opening.seq  # before its opening
            await zone(panel, 3, "normal")

            # 4. exit error: the front door left open when the exit delay ends
            await zone(panel, 1, "alarm")
            assert await key(panel, "1234", "arm_away") == "ok"
            await part_is(panel, 1, "entry_delay")
            st = await state(panel)
            assert st["partitions"][0]["keypad"] == "exit error: front door open"
            assert await events(rx, 374) == []  # not an instant alarm
            [exit_error] = await stored(rx, 374, timeout=WINDOW, partition=1, zone=1)
            [by_user] = await stored(rx, 457, partition=1, user=1)
            assert exit_error.event_class == "burglary"
            assert by_user.seq == exit_error.seq + 1
        finally:
            await asyncio.to_thread(panel.close)


async def test_exit_delay_restarts_once_on_re_entry(tmp_path):
    cfg0 = scenario_config(0)
    async with running_receiver(rx_config(tmp_path), [account(cfg0)]) as rx:
        cfg = panel_config(rx, timings={"exit_delay_s": 6})
        panel = booted(tmp_path, cfg)
        try:
            await stored(rx, 305, timeout=60)
            assert await key(panel, "1234", "arm_away") == "ok"
            await zone(panel, 1, "alarm")  # out through the front door
            await zone(panel, 1, "normal")
            await zone(panel, 1, "alarm")  # back in for the keys
            await part_is(panel, 1, "exit_away_again", 5)
            await zone(panel, 1, "normal")
            await part_is(panel, 1, "armed_away", 20)
            [closing] = await stored(rx, 401, RESTORE, partition=1, zone=1)
            assert await events(rx, 374) == [] and await events(rx, 134) == []
        finally:
            await asyncio.to_thread(panel.close)


async def test_confirmed_alarm_and_swinger_shutdown_at_the_receiver(tmp_path):
    """Two detectors of one partition: the second alarm also sends 139,
    which the receiver ranks above the unconfirmed burglary; a zone that
    alarms twice is shut down (575)."""
    zones = scenario_config(0)["zones"] + [
        {"id": 7, "name": "vault seismic", "type": "seismic", "partition": 1}]
    cfg0 = scenario_config(0, zones=zones)
    async with running_receiver(rx_config(tmp_path), [account(cfg0)]) as rx:
        panel = booted(tmp_path, panel_config(rx, zones=zones))
        try:
            await stored(rx, 305, timeout=60)
            assert await key(panel, "1234", "arm_away") == "ok"
            await stored(rx, 401, RESTORE, partition=1)
            await zone(panel, 7, "alarm")  # seismic: 24-hour, sent at once
            [seismic] = await stored(rx, 133, zone=7)
            assert await events(rx, 139) == []  # one detector: unconfirmed
            await zone(panel, 2, "alarm")  # the glass: a second detector
            [glass] = await stored(rx, 130, zone=2)
            [confirmed] = await stored(rx, 139, partition=1, zone=2)
            assert confirmed.text == "with zone 7"
            assert confirmed.event_class == "burglary"
            assert confirmed.priority < glass.priority == seismic.priority
            assert confirmed.description == \
                "Confirmed alarm (intrusion verifier), zone 2 (lobby glass), lobby"
            queue = [a for a in await rx.store.list_alarms() if a.state != "resolved"]
            assert queue[0].event_id == confirmed.id  # first in the operator queue
            # swinger: the glass alarms a second time, then it is shut down
            await zone(panel, 2, "normal")
            await zone(panel, 2, "alarm")
            await stored(rx, 575, partition=1, zone=2)
            await zone(panel, 2, "normal")
            await zone(panel, 2, "alarm")
            await drained(panel)
            assert len(await events(rx, 130, NEW, zone=2)) == 2
        finally:
            await asyncio.to_thread(panel.close)


async def test_smoke_detector_verification_then_the_fire_alarm(tmp_path):
    zones = scenario_config(0)["zones"] + [
        {"id": 7, "name": "hall smoke", "type": "fire", "partition": 1, "verify": True}]
    cfg0 = scenario_config(0, zones=zones)
    async with running_receiver(rx_config(tmp_path), [account(cfg0)]) as rx:
        panel = booted(tmp_path, panel_config(rx, zones=zones,
                                              timings={"fire_reset_s": 2, "fire_verify_s": 60}))
        try:
            await stored(rx, 305, timeout=60)
            await ctl(panel, cmd="zone", zone=7, state="alarm")

            async def supply_cut():
                return not (await ctl(panel, cmd="outputs"))["supply"]
            await wait_until(supply_cut, 20, what="the detector supply cut")
            # the reset clears the detector's latch: it reads normal again

            async def back():
                st = await state(panel)
                return st["supply"] and st["zones"][6]["state"] == "normal"
            await wait_until(back, 20, what="supply back, detector normal")
            assert await events(rx, 110) == []  # the first trip was no alarm
            assert not (await ctl(panel, cmd="outputs"))["siren"]
            assert "first trip, resetting the smoke detectors" in panel.console()
            # still smoke: it trips again (read after the detectors' power-up
            # settling, inside the verification window): the fire alarm
            await ctl(panel, cmd="zone", zone=7, state="alarm")
            [fire] = await stored(rx, 110, partition=1, zone=7)
            assert fire.event_class == "fire" and fire.priority == 2
        finally:
            await asyncio.to_thread(panel.close)


async def test_siren_line_supervised_and_cut_while_armed_is_a_tamper_alarm(tmp_path):
    cfg0 = scenario_config(0)
    async with running_receiver(rx_config(tmp_path), [account(cfg0)]) as rx:
        panel = booted(tmp_path, panel_config(rx))
        try:
            await stored(rx, 305, timeout=60)
            await ctl(panel, cmd="sounder", line="strobe", state="short")
            [strobe] = await stored(rx, 322, partition=0)
            assert strobe.text == "strobe line shorted" and strobe.event_class == "trouble"
            assert await events(rx, 137) == []  # disarmed: a trouble only
            await ctl(panel, cmd="sounder", line="strobe", state="normal")
            await stored(rx, 322, RESTORE)
            assert await key(panel, "1234", "arm_away") == "ok"
            await stored(rx, 401, RESTORE, partition=1)
            await ctl(panel, cmd="sounder", line="siren", state="open")  # cut while armed
            [siren] = await stored(rx, 321)
            [tamper] = await stored(rx, 137, partition=1)
            assert siren.text == "siren line open"
            assert tamper.event_class == "tamper" and tamper.text == "siren line open"
            assert [a for a in await rx.store.list_alarms() if a.event_id == tamper.id]
            st = await state(panel)
            assert st["sounders"] == {"siren": "open", "strobe": "normal"}
            assert st["partitions"][0]["state"] == "alarm" and st["strobe"]
            assert st["partitions"][1]["state"] == "disarmed"
            await ctl(panel, cmd="sounder", line="siren", state="normal")
            await stored(rx, 321, RESTORE)
            await stored(rx, 137, RESTORE, partition=1)
        finally:
            await asyncio.to_thread(panel.close)


async def test_scheduled_closing_warns_postpones_and_auto_arms_with_403(tmp_path):
    """Closing at 00:00 every day: due as soon as the panel's clock is set
    by the receiver (an authenticated ACK).  Partition 1's user postpones
    it (464); partition 2 arms itself after the 30 s warning (403)."""
    every = {"at": "00:00", "days": [1, 2, 3, 4, 5, 6, 7]}
    parts = [{"id": 1, "name": "lobby", "closing": every},
             {"id": 2, "name": "teller line", "closing": every}]
    cfg0 = scenario_config(0, partitions=parts)
    async with running_receiver(rx_config(tmp_path), [account(cfg0)]) as rx:
        panel = booted(tmp_path, panel_config(rx, partitions=parts,
                                              timings={"closing_warn_s": 30}))
        try:
            await stored(rx, 305, timeout=60)

            async def warned():
                st = await state(panel)
                return all((x["keypad"] or "").startswith("closing: arming in 30 s")
                           for x in st["partitions"])
            await wait_until(warned, 20, what="keypad warnings")
            assert await key(panel, "2580", "disarm", 1) == "ok"
            [postponed] = await stored(rx, 464, partition=1)
            assert postponed.user == 2 and postponed.event_class == "status"
            [closing] = await stored(rx, 403, RESTORE, timeout=WINDOW, partition=2)
            assert closing.description == "Armed (Automatic open/close), teller line"
            st = await state(panel)
            assert st["partitions"][0]["state"] == "disarmed"
            assert st["partitions"][1]["state"] == "armed_away"
            assert await events(rx, 403, partition=1) == []
        finally:
            await asyncio.to_thread(panel.close)
