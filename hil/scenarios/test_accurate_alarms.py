"""Accurate alarms: the panel's ANSI/SIA CP-01 false-alarm reduction seen
from the receiver (docs/firmware.md, "CP-01").

An entry alarm a user disarms inside the abort window never reaches the
receiver; an alarm that was sent is followed, at the disarm, by a cancel
(406) with the user; an alarm soon after arming carries the arming user
(459 recent close); a second detector of the same partition confirms the
alarm (139), which the receiver puts ahead of unconfirmed burglaries.

The scenario config keeps the default 30 s abort window: none of these
waits it out (the panel's and the VM tests do)."""

from __future__ import annotations

import pytest

from hil.checks import (Q_NEW, disarm_reported, partition_is, step, stored, stored_t,
                        zone_reads)

pytestmark = pytest.mark.hil_needs("zones")

VAULT = 1  # partition 1: "vault"
VAULT_DOOR = 1  # entry/exit zone
VAULT_PIR = 2  # instant zone
BURGLARY = 130
ENTRY_EXIT = 134
CONFIRMED = 139
OPEN_CLOSE = 401
CANCEL = 406
RECENT_CLOSE = 459
MASTER_USER = 1  # hil/configs/bank.json: code 1234


async def test_entry_alarm_disarmed_in_the_abort_window_is_never_sent(
        panel, receiver, strategy, codes, hil_timeline):
    """The vault door opened and nobody disarmed in the entry delay: the
    panel is in alarm and sounds, but holds the report for the abort
    window; the right code then aborts it.  The receiver gets the opening
    and never an alarm."""
    await strategy.transition("armed_away", partition=VAULT)
    since = receiver.now()
    step(hil_timeline, "open the vault door, let the entry delay run out")
    await panel.set_zone(VAULT_DOOR, "alarm")
    await partition_is(panel, VAULT, "alarm_held")
    assert (await panel.read_outputs())["siren"], "the panel sounds in the abort window"
    await disarm_reported(panel, receiver, hil_timeline, codes["master"], VAULT, since,
                          "code entered inside the abort window", "abort -> opening stored")
    st = await panel.state()
    assert st["partitions"][VAULT - 1]["keypad"] == "alarm aborted: not sent"
    await panel.set_zone(VAULT_DOOR, "normal")
    await zone_reads(panel, VAULT_DOOR, "normal")
    # the queue is FIFO: an alarm queued before the disarm would be stored
    # before the opening; nothing was, and the door's restore was not sent
    evs = await receiver.events(account=panel.account, since=since)
    assert not [e for e in evs if e["code"] in (ENTRY_EXIT, CANCEL, RECENT_CLOSE)], evs
    assert not (await panel.read_outputs())["siren"]


async def test_alarm_after_arming_then_disarm_sends_recent_close_and_cancel(
        panel, receiver, strategy, codes, hil_timeline):
    """An instant alarm a minute after arming is sent at once with 459
    recent close (the user who armed); the disarm a little later sends 406
    cancel with the user, stored before the opening it comes with."""
    await strategy.transition("armed_away", partition=VAULT)
    since = receiver.now()
    t_trip = step(hil_timeline, "vault PIR trips right after arming")
    await panel.set_zone(VAULT_PIR, "alarm")
    (alarm,) = await stored(receiver, panel.account, since=since, code=BURGLARY, zone=VAULT_PIR)
    hil_timeline.measure("trip -> alarm stored", t_trip, stored_t(receiver, alarm))
    (recent,) = await stored(receiver, panel.account, since=since, code=RECENT_CLOSE)
    assert recent["zone"] == MASTER_USER and recent["partition"] == VAULT
    assert recent["seq"] > alarm["seq"]
    await panel.set_zone(VAULT_PIR, "normal")
    await zone_reads(panel, VAULT_PIR, "normal")
    t_disarm = step(hil_timeline, "the user disarms within the cancel window")
    assert (await panel.keypad(codes["master"], "disarm", VAULT))["result_name"] == "ok"
    (cancel,) = await stored(receiver, panel.account, since=since, code=CANCEL)
    hil_timeline.measure("disarm -> cancel stored", t_disarm, stored_t(receiver, cancel))
    (opening,) = await stored(receiver, panel.account, since=since, code=OPEN_CLOSE,
                              qualifier=Q_NEW)
    assert cancel["zone"] == MASTER_USER and cancel["partition"] == VAULT
    assert cancel["text"] == "cancel" and cancel["event_class"] == "status"
    assert alarm["seq"] < cancel["seq"] < opening["seq"]


async def test_second_detector_confirms_the_alarm_first_in_the_queue(
        panel, receiver, strategy, hil_timeline):
    """The vault PIR, then the vault door with the vault in alarm: the
    door's alarm goes at once (the window is for a user's entry, not an
    alarm already sent) with 139, ranked above the unconfirmed burglary
    in the operator queue."""
    await strategy.transition("armed_away", partition=VAULT)
    since = receiver.now()
    step(hil_timeline, "first detector: vault PIR")
    await panel.set_zone(VAULT_PIR, "alarm")
    (first,) = await stored(receiver, panel.account, since=since, code=BURGLARY, zone=VAULT_PIR)
    t_second = step(hil_timeline, "second detector: the vault door opens")
    await panel.set_zone(VAULT_DOOR, "alarm")
    (confirmed,) = await stored(receiver, panel.account, since=since, code=CONFIRMED,
                                zone=VAULT_DOOR)
    hil_timeline.measure("second detector -> 139 stored", t_second,
                         stored_t(receiver, confirmed))
    await stored(receiver, panel.account, since=since, code=ENTRY_EXIT, zone=VAULT_DOOR)
    assert confirmed["event_class"] == first["event_class"] == "burglary"
    assert confirmed["priority"] < first["priority"]
    assert confirmed["text"] == "with zone %d" % VAULT_PIR
    queue = [a for a in await receiver.alarms() if a["state"] != "resolved"]
    order = [a["event_id"] for a in queue]
    assert order.index(confirmed["id"]) < order.index(first["id"])
