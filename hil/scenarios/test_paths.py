"""Reporting paths: a line cut on the primary path, and supervision.

EN 50136-1: an alarm transmission system with a backup path (DP2 and up)
must use it when the primary fails and report the primary's failure; the
receiver must raise the loss of a supervised path within the reporting
time of the account's profile (receiver/supervision.py)."""

from __future__ import annotations

import asyncio

import pytest

from hil.checks import (Q_NEW, Q_RESTORE, counts, exactly, queue_drained, step, stored,
                        stored_t, toggle_burst, zone_reads)
from testkit.wait import wait_until

PANIC = 5  # teller counter panic: 24 h, audible
PANIC_CODE = 120
FIRE = 3  # vault heat: 24 h, never swinger-limited
FIRE_CODE = 110
COMM_TROUBLE = 350  # Contact ID "communication trouble"; zone = path number


async def test_primary_line_cut_fails_over_to_backup_and_reports(
        panel, receiver, link, strategy, hil_timeline):
    """The primary line is cut (silently: no reset): a panic alarm still
    reaches the receiver over the backup path, the panel reports the
    primary's failure (350, zone 1) over the backup, and when the line
    comes back it reports the restore and fails back to the primary."""
    await strategy.transition("reporting")
    since = receiver.now()
    t_cut = step(hil_timeline, "cut the primary line (both directions, no reset)")
    link.primary.cut()
    t_trip = step(hil_timeline, "panic button")
    await panel.set_zone(PANIC, "alarm")
    (alarm,) = await stored(receiver, panel.account, since=since, code=PANIC_CODE,
                            qualifier=Q_NEW, zone=PANIC)
    assert alarm["path"] == 2, "the alarm must arrive over the backup path"
    hil_timeline.measure("panic with primary cut -> stored via backup", t_trip,
                         stored_t(receiver, alarm))
    # the panel reports its own primary path failure, over the backup
    (trouble,) = await stored(receiver, panel.account, since=since, code=COMM_TROUBLE,
                              qualifier=Q_NEW, zone=1, source="panel")
    assert trouble["path"] == 2
    hil_timeline.measure("primary cut -> path trouble stored", t_cut,
                         stored_t(receiver, trouble))
    # what the panel tried on the primary was lost on the cut line
    lost = [e for e in link.primary.frames("up", type="EVENT") if "cut" in e.detail["fate"]]
    assert lost, "the panel never tried the primary after the cut"
    st = await panel.state()
    assert st["reporter"]["active_path"] == 2
    assert st["reporter"]["paths"][0]["up"] is False

    t_restore = step(hil_timeline, "restore the primary line")
    link.primary.restore()
    (restored,) = await stored(receiver, panel.account, since=since, code=COMM_TROUBLE,
                               qualifier=Q_RESTORE, zone=1, source="panel")
    hil_timeline.measure("primary restored -> path restore stored", t_restore,
                         stored_t(receiver, restored))
    await panel.set_zone(PANIC, "normal")
    await zone_reads(panel, PANIC, "normal")
    (back,) = await stored(receiver, panel.account, since=since, code=PANIC_CODE,
                           qualifier=Q_RESTORE, zone=PANIC)
    assert back["path"] == 1, "after the primary is back the panel fails back to it"


@pytest.mark.hil_profile(heartbeat_s=20, grace_s=3, paths="1")
async def test_supervision_loss_raised_within_profile(panel, receiver, link, strategy,
                                                      hil_timeline):
    """Both lines cut: the receiver hears nothing more from the panel and
    must raise path 1's supervision failure once heartbeat + grace have
    passed since it last heard it (not before: that would be a false
    alarm; the time it took is measured and reported)."""
    await strategy.transition("reporting")
    interval, grace = 20, 3
    since = receiver.now()
    step(hil_timeline, "cut every line")
    link.cut()
    heard = [e for e in link.primary.frames("up") if e.detail["delivered"]]
    last_heard = max(e.detail["delivered"][-1] for e in heard)
    (ev,) = await stored(receiver, panel.account, since=since, code=COMM_TROUBLE,
                         qualifier=Q_NEW, zone=1, source="supervision",
                         timeout=interval + grace + 45)
    raised = stored_t(receiver, ev)
    hil_timeline.measure("last frame heard -> supervision failure stored", last_heard, raised,
                         profile_s=interval + grace)
    assert raised - last_heard >= interval + grace - 0.5, \
        "supervision failure raised before the profile expired (false alarm)"
    assert ev["path"] == 1 and ev["event_class"] == "trouble"


@pytest.mark.hil_needs("zones")
@pytest.mark.hil_config(receiver={"primary": {"type": "serial"}, "backup": None})
async def test_serial_line_noise_is_nakked_and_resent_once(panel, receiver, link, strategy,
                                                           hil_timeline):
    """A serial reporting path (panel UART -> link -> receiver serial
    listener) with line noise: 30 % of the frames towards the receiver get
    a flipped bit.  The receiver NAKs a bad frame CRC (or cannot read a
    broken header and stays silent), the panel resends, and each event of
    a burst is stored exactly once, over path 1."""
    await strategy.transition("reporting")
    since = receiver.now()
    step(hil_timeline, "line noise: the first frame of the burst, then 30 % of frames "
                       "towards the receiver, corrupted")
    link.primary.set("up", corrupt=1.0)  # at least one, whatever the seed draws

    async def noise():
        await wait_until(lambda: link.primary.stats["up"]["corrupted"] >= 1, 60,
                         what="the first corrupted frame")
        link.primary.set("up", corrupt=0.3)

    first = asyncio.ensure_future(noise())
    t0 = step(hil_timeline, "burst of 10 events")
    expect = await toggle_burst(panel, FIRE, 5, FIRE_CODE)
    await first
    evs = await exactly(receiver, panel.account, expect, since=since, timeout=90)
    hil_timeline.measure("noisy serial burst -> all stored", t0,
                         max(stored_t(receiver, e) for e in evs))
    link.primary.clear()
    await queue_drained(panel)
    evs = [e for e in await receiver.events(account=panel.account, since=since, source="panel")
           if e["code"] == FIRE_CODE]
    assert counts(evs) == expect
    assert all(e["path"] == 1 for e in evs)
    corrupted = link.primary.stats["up"]["corrupted"]
    naks = len(link.primary.frames("down", type="NAK"))
    step(hil_timeline, "faults applied", corrupted=corrupted, naks=naks)
    assert corrupted > 0
