"""Security and time: a recorded frame replayed by an attacker, and a
panel whose clock drifted.

docs/architecture.md, "Nothing forged": the receiver rejects exact copies
of earlier frames and frames outside its +-60 s window and records each
rejection as a security event; the panel acts only on authenticated
receiver frames that refer to its outstanding sequence (glpanel.py), and
sets its clock from the receiver's authenticated ACK, NAK(time) or TIME
when it is more than CLOCK_SLACK_S (5 s) off."""

from __future__ import annotations

import asyncio

import pytest

from hil.checks import Q_NEW, step, stored, stored_t, zone_reads
from testkit.wait import wait_until

PANIC = 5
PANIC_CODE = 120
FIRE = 3
FIRE_CODE = 110


@pytest.mark.hil_needs("zones")
async def test_recorded_frame_replayed_by_attacker_is_rejected(panel, receiver, link, strategy,
                                                               hil_timeline):
    """An attacker who recorded the line replays an accepted EVENT (on the
    panel's connection and on one of its own) and an ACK towards the
    panel: the receiver stores nothing, records two replay security
    events and answers nothing; the panel ignores the ACK."""
    await strategy.transition("reporting")
    since = receiver.now()
    await panel.set_zone(PANIC, "alarm")
    (ev,) = await stored(receiver, panel.account, since=since, code=PANIC_CODE, qualifier=Q_NEW)
    # what an attacker on the line recorded: the EVENT frame the receiver
    # accepted, and the ACK it answered with
    frames = link.primary.recorded("up", type="EVENT", seq=ev["seq"])
    assert frames, "the accepted EVENT was not seen on the primary"
    _, event_frame = frames[-1]  # the transmission the receiver accepted
    acks = link.primary.recorded("down", type="ACK")
    assert acks, "no ACK recorded on the primary"
    _, ack_frame = acks[-1]
    before = await receiver.events(account=panel.account, since=since)
    rejected_before = (await panel.state())["reporter"]["paths"][0]["rejected"]

    step(hil_timeline, "attacker replays the recorded EVENT on the panel's connection")
    link.primary.inject("up", event_frame)
    step(hil_timeline, "attacker replays it on a connection of its own")
    r, w = await asyncio.open_connection(*receiver.tcp)
    w.write(event_frame)
    await w.drain()
    sec = await wait_until(lambda: _replays(receiver, since), 30,
                           what="two replay security events",
                           seen=lambda: receiver.security_events())
    assert all(s["account"] == str(panel.account) and s["seq"] == ev["seq"] for s in sec)
    # the attacker's own connection gets no answer (silence, not a NAK)
    try:
        answer = await asyncio.wait_for(r.read(100), 1.0)
    except (asyncio.TimeoutError, ConnectionError):
        answer = b""
    assert answer == b"", "the receiver answered a replayed frame"
    w.close()

    step(hil_timeline, "attacker replays the recorded ACK to the panel")
    link.primary.inject("down", ack_frame)
    await wait_until(lambda: _rejected(panel, rejected_before), 30,
                     what="the panel to reject the replayed ACK")

    after = await receiver.events(account=panel.account, since=since)
    assert [e["id"] for e in after] == [e["id"] for e in before], "a replay was stored"
    st = await panel.state()
    assert st["reporter"]["queue"] == 0 and st["reporter"]["paths"][0]["up"]


async def _replays(receiver, since):
    sec = [s for s in await receiver.security_events(since=since) if s["reason"] == "replay"]
    return sec if len(sec) >= 2 else None


async def _rejected(panel, before):
    st = await panel.state()
    return st["reporter"]["paths"][0]["rejected"] > before


@pytest.mark.hil_needs("zones", "console")
@pytest.mark.parametrize("drift_s", [30, 150], ids=["30s-ack", "150s-nak"])
async def test_panel_clock_drift_is_corrected(drift_s, panel, receiver, link, strategy,
                                              hil_timeline):
    """The panel's own clock falls `drift_s` behind the receiver's (the
    control protocol's "clock" command: the sim, or a bench board in
    console test mode): within the +-60 s window the ACK's time corrects
    the panel; beyond it the receiver NAKs (time) and the panel corrects
    itself and resends."""
    await strategy.transition("reporting")
    since = receiver.now()
    # Hold the receiver's answers back until the drifted event has left
    # the panel: any ACK in between (a heartbeat's) would correct the
    # clock first, and the event would carry the right time.
    link.cut("down")
    step(hil_timeline, "the panel's clock falls %d s behind the receiver's" % drift_s)
    clock = await panel.skew_clock(-drift_s)
    assert abs(clock - (receiver.now() - drift_s)) <= 5
    t_trip = step(hil_timeline, "an event with the drifted clock")
    await panel.set_zone(FIRE, "alarm")
    await wait_until(lambda: [f for f in link.frames("up", type="EVENT") if f.t >= t_trip], 30,
                     what="the drifted event on the line")
    step(hil_timeline, "the receiver's answers get through again")
    link.restore("down")
    (ev,) = await stored(receiver, panel.account, since=since, code=FIRE_CODE, qualifier=Q_NEW,
                         zone=FIRE)
    # the event time is the panel's (drifted) clock when it happened
    assert ev["received_at"] - ev["event_time"] >= drift_s - 5
    await wait_until(lambda: _clock_close(panel, receiver), 30,
                     what="the panel clock corrected to the receiver's",
                     seen=lambda: _clock_error(panel, receiver))
    hil_timeline.measure("drifted event -> stored", t_trip, stored_t(receiver, ev))
    naks = [e for e in link.frames("down", type="NAK") if e.t >= t_trip]
    if drift_s > 60:
        assert naks, "outside the window the receiver must NAK (time)"
    else:
        assert not naks, "inside the window the event is ACKed, not NAKed"
    # the next event carries the corrected time
    await panel.set_zone(FIRE, "normal")
    await zone_reads(panel, FIRE, "normal")
    (ev2,) = await stored(receiver, panel.account, since=since, code=FIRE_CODE, qualifier=3,
                          zone=FIRE)
    assert abs(ev2["received_at"] - ev2["event_time"]) <= 3


async def _clock_error(panel, receiver):
    return (await panel.state())["clock"] - receiver.now()


async def _clock_close(panel, receiver):
    st = await panel.state()
    return st if abs(st["clock"] - receiver.now()) <= 3 else None
