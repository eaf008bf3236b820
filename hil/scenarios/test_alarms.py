"""Alarms end to end: a zone input on the panel to an alarm stored at the
receiver and put in front of an operator.

EN 50131-1 grades the panel's part (detection, notification); EN 50136 the
transmission; the receiver's ordering follows protocol/contactid.CLASSES
(hold-up and duress before fire, fire before burglary)."""

from __future__ import annotations

import pytest

from hil.checks import (Q_NEW, disarm_reported, partition_is, step, stored, stored_t,
                        zone_reads)

pytestmark = pytest.mark.hil_needs("zones")

VAULT = 1  # partition 1: "vault"
VAULT_DOOR = 1  # entry/exit zone
VAULT_PIR = 2  # instant zone
HOLDUP = 4  # teller 1 hold-up (24 h, silent by type), partition 2
BURGLARY = 130
ENTRY_EXIT = 134
HOLDUP_CODE = 122
DURESS = 121
OPEN_CLOSE = 401


async def test_zone_trip_to_stored_alarm(panel, receiver, strategy, hil_timeline):
    """An instant zone tripped while armed is stored at the receiver as a
    burglary alarm for that zone, and the panel sounds.  Measures input to
    commit latency."""
    await strategy.transition("armed_away", partition=VAULT)
    since = receiver.now()
    t_trip = step(hil_timeline, "trip vault PIR")
    await panel.set_zone(VAULT_PIR, "alarm")
    (ev,) = await stored(receiver, panel.account, since=since, code=BURGLARY, qualifier=Q_NEW,
                         zone=VAULT_PIR)
    assert ev["partition"] == VAULT
    assert ev["event_class"] == "burglary"
    assert ev["path"] == 1
    hil_timeline.measure("zone trip -> alarm stored", t_trip, stored_t(receiver, ev))
    alarms = [a for a in await receiver.alarms() if a["event_id"] == ev["id"]]
    assert alarms and alarms[0]["state"] == "pending"
    out = await panel.read_outputs()
    assert out["siren"] and out["strobe"]


async def test_holdup_and_duress_silent_at_panel_top_priority_at_receiver(
        panel, receiver, strategy, codes, hil_timeline):
    """A hold-up and a duress code never sound at the panel (the attacker
    must not know), and at the receiver they go ahead of every other
    alarm, even one that arrived before them."""
    await strategy.transition("armed_away", partition=VAULT)
    since = receiver.now()
    # a lower-priority alarm first, then silence it
    step(hil_timeline, "burglary first (audible), then disarm to silence it")
    await panel.set_zone(VAULT_PIR, "alarm")
    (burglary,) = await stored(receiver, panel.account, since=since, code=BURGLARY,
                               zone=VAULT_PIR)
    assert (await panel.read_outputs())["siren"]
    await panel.keypad(codes["master"], "disarm", VAULT)
    await panel.set_zone(VAULT_PIR, "normal")
    await zone_reads(panel, VAULT_PIR, "normal")
    assert (await panel.read_outputs())["siren"] is False

    await strategy.transition("armed_away", partition=VAULT)
    t_hold = step(hil_timeline, "hold-up button")
    await panel.set_zone(HOLDUP, "alarm")
    (holdup,) = await stored(receiver, panel.account, since=since, code=HOLDUP_CODE,
                             qualifier=Q_NEW, zone=HOLDUP)
    hil_timeline.measure("hold-up -> stored", t_hold, stored_t(receiver, holdup))
    out = await panel.read_outputs()
    assert not out["siren"] and not out["strobe"], "hold-up must be silent at the panel"

    since_duress = receiver.now()
    t_duress = step(hil_timeline, "disarm with the duress code")
    r = await panel.keypad(codes["duress"], "disarm", VAULT)
    assert r["result_name"] == "ok"  # a duress code works like a normal code
    (duress,) = await stored(receiver, panel.account, since=since, code=DURESS,
                             qualifier=Q_NEW)
    hil_timeline.measure("duress code -> stored", t_duress, stored_t(receiver, duress))
    await partition_is(panel, VAULT, "disarmed")
    out = await panel.read_outputs()
    assert not out["siren"] and not out["strobe"], "duress must be silent at the panel"
    # the disarm itself is reported too, after the duress report
    (opening,) = await stored(receiver, panel.account, since=since_duress, code=OPEN_CLOSE,
                              qualifier=Q_NEW)
    assert opening["seq"] > duress["seq"]

    # at the receiver: hold-up class, priority 1, ahead of the earlier burglary
    assert holdup["event_class"] == duress["event_class"] == "holdup"
    assert holdup["priority"] < burglary["priority"]
    alarms = await receiver.alarms()
    queue = [a for a in alarms if a["state"] != "resolved"]
    order = [a["event_id"] for a in queue]
    assert set(order[:2]) == {holdup["id"], duress["id"]}
    assert queue[0]["priority"] == min(a["priority"] for a in queue)
    # the earlier burglary: the master's disarm inside the cancel window
    # sent a 406, and the receiver closed it as cancelled by the user
    # (issue 22) if nobody worked it yet; else it waits behind the hold-ups
    (b,) = [a for a in alarms if a["event_id"] == burglary["id"]]
    if b["state"] == "resolved":
        assert b["disposition"] == "cancelled-user", b
    else:
        assert order.index(burglary["id"]) > 1


async def test_entry_delay_then_disarm_sends_no_alarm(panel, receiver, strategy, codes,
                                                      hil_timeline):
    """Opening the entry door starts the entry delay; the right code within
    it disarms, and the receiver gets the opening report and no alarm."""
    await strategy.transition("armed_away", partition=VAULT)
    since = receiver.now()
    step(hil_timeline, "open the vault door (entry delay)")
    await panel.set_zone(VAULT_DOOR, "alarm")
    await partition_is(panel, VAULT, "entry_delay")
    await disarm_reported(panel, receiver, hil_timeline, codes["master"], VAULT, since,
                          "code entered within the entry delay", "disarm -> opening stored")
    # the queue is FIFO: an alarm raised before the disarm would be stored
    # before the opening report; none was.
    evs = await receiver.events(account=panel.account, since=since)
    alarms = [e for e in evs if e["qualifier"] == Q_NEW and e["event_class"] in
              ("burglary", "holdup", "fire", "tamper")]
    assert alarms == [], alarms
    assert not any(e["code"] in (BURGLARY, ENTRY_EXIT) for e in evs)
    out = await panel.read_outputs()
    assert not out["siren"]
    await panel.set_zone(VAULT_DOOR, "normal")
    await zone_reads(panel, VAULT_DOOR, "normal")
