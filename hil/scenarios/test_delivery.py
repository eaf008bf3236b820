"""Delivery guarantees under failure: nothing lost, nothing doubled.

docs/architecture.md: the panel keeps an event in flash until an
authenticated ACK for its sequence arrives, and the receiver ACKs only
after the commit; the sequence travels with every retransmission, so the
store keeps one row per (account, sequence).  These scenarios break the
receiver, the panel's power and the line while events flow, and then
compare what was caused at the panel with what the receiver stored, by
(code, qualifier, zone) counts: a lost event or one re-queued under a new
sequence both show up there (the store's unique key cannot hide the
latter)."""

from __future__ import annotations

import asyncio

import pytest

from hil.checks import (counts, exactly, queue_drained, step, stored, stored_t, toggle_burst)

FIRE = 3  # vault heat: 24 h, never swinger-limited
FIRE_CODE = 110
TOGGLES = 10  # 20 events (alarm + restore each)


async def _no_extras(receiver, panel, expect, since):
    await queue_drained(panel)
    evs = [e for e in await receiver.events(account=panel.account, since=since, source="panel")
           if e["code"] == FIRE_CODE and e["zone"] == FIRE]
    assert counts(evs) == expect, "stored %s, caused %s" % (dict(counts(evs)), dict(expect))
    seqs = [e["seq"] for e in evs]
    assert len(seqs) == len(set(seqs))
    return evs


@pytest.mark.hil_needs("zones")
async def test_receiver_killed_and_restarted_mid_burst_loses_and_duplicates_nothing(
        panel, receiver, strategy, hil_timeline):
    """The receiver is killed (SIGKILL, a crash) while a burst of events is
    being reported and restarted a second later: every event of the burst
    is stored exactly once."""
    await strategy.transition("reporting")
    since = receiver.now()
    step(hil_timeline, "burst of %d fire alarm/restore events" % (2 * TOGGLES))
    burst = asyncio.ensure_future(toggle_burst(panel, FIRE, TOGGLES, FIRE_CODE))
    await stored(receiver, panel.account, since=since, code=FIRE_CODE, count=3)
    t_kill = step(hil_timeline, "kill -9 the receiver mid-burst")
    await receiver.kill()
    await asyncio.sleep(1.0)  # the receiver stays down while events queue up
    step(hil_timeline, "restart the receiver")
    await receiver.start()
    expect = await burst
    evs = await exactly(receiver, panel.account, expect, since=since)
    hil_timeline.measure("receiver killed -> whole burst stored", t_kill,
                         max(stored_t(receiver, e) for e in evs))
    await _no_extras(receiver, panel, expect, since)
    assert receiver.starts == 2


@pytest.mark.hil_needs("power", "zones", "flash")
async def test_power_cycle_with_full_queue_delivers_everything_after_boot(
        panel, receiver, link, strategy, hil_timeline):
    """With every line cut the panel queues a burst of events in flash; it
    loses power (SIGKILL of the VM) with the queue full, the lines come
    back, and after boot every queued event is delivered exactly once."""
    await strategy.transition("reporting")
    since = receiver.now()
    step(hil_timeline, "cut every line: events can only queue")
    link.cut()
    expect = await toggle_burst(panel, FIRE, TOGGLES, FIRE_CODE)
    st = await panel.state()
    queued = st["reporter"]["queue"]
    assert queued >= 2 * TOGGLES, st["reporter"]
    assert st["reporter"]["dropped"] == 0
    step(hil_timeline, "power off with %d events queued" % queued, queued=queued)
    await strategy.transition("off")
    link.restore()
    t_on = step(hil_timeline, "power on")
    await strategy.transition("booted")
    evs = await exactly(receiver, panel.account, expect, since=since)
    hil_timeline.measure("power on -> queue delivered", t_on,
                         max(stored_t(receiver, e) for e in evs), events=len(evs))
    await _no_extras(receiver, panel, expect, since)
    # the boot is reported too (305 system reset), after the power cycle
    await stored(receiver, panel.account, since=since, code=305, count=1)


@pytest.mark.hil_needs("zones")
async def test_loss_and_duplication_still_deliver_every_event_exactly_once(
        panel, receiver, link, strategy, hil_timeline):
    """20 % of frames lost and 20 % duplicated on both paths, both
    directions (seeded: see the report for the seed): every event of a
    burst is still stored exactly once."""
    await strategy.transition("reporting")
    since = receiver.now()
    step(hil_timeline, "20 % loss and 20 % duplication on every line, both directions")
    link.set(drop=0.2, duplicate=0.2)
    t0 = step(hil_timeline, "burst of %d events" % (2 * TOGGLES))
    expect = await toggle_burst(panel, FIRE, TOGGLES, FIRE_CODE)
    evs = await exactly(receiver, panel.account, expect, since=since, timeout=120)
    hil_timeline.measure("lossy burst -> all stored", t0, max(stored_t(receiver, e) for e in evs))
    # every event of the burst is in; let the rest of the queue (path
    # troubles, retransmissions whose ACK was lost) drain on a clean line,
    # then check that none of it turned into a second copy
    step(hil_timeline, "faults off")
    link.clear()
    await _no_extras(receiver, panel, expect, since)
    faults = {name: {k: link[name].stats[d][k] for d in ("up", "down")
                     for k in ("dropped", "duplicated")} for name in link.names()}
    step(hil_timeline, "faults applied", **{n: str(v) for n, v in faults.items()})
    dropped = sum(link[n].stats[d]["dropped"] for n in link.names() for d in ("up", "down"))
    duplicated = sum(link[n].stats[d]["duplicated"] for n in link.names() for d in ("up", "down"))
    assert dropped > 0 and duplicated > 0, "the link applied no faults: the test proves nothing"
