"""What scenarios wait for and check, in the field's words.

Every wait polls with a generous deadline (testkit.wait.wait_until) and returns what
it found; the scenario then asserts on *content* (codes, paths, counts),
and measures latencies between timeline times for the report.
"""

from __future__ import annotations

from collections import Counter

from hil.timeline import SCENARIO
from testkit.wait import wait_until

# Scenario waits: long enough for a retransmission schedule that backs off
# to a few seconds, a path failover and a loaded CI host.
WAIT_S = 45.0

Q_NEW = 1
Q_RESTORE = 3
OPENING = 401  # Contact ID open/close by user; qualifier 1 = opening (disarm)


def step(timeline, text: str, **detail) -> float:
    """Mark a scenario step in the timeline; returns its time."""
    return timeline.record(SCENARIO, "step", text=text, **detail).t


def _match(e: dict, **want) -> bool:
    return all(e.get(k) == v for k, v in want.items() if v is not None)


async def stored(receiver, account, since: float | None = None, count: int = 1,
                 timeout: float = WAIT_S, **want) -> list[dict]:
    """Wait until the receiver stored at least `count` events matching
    `want` (code=, qualifier=, zone=, path=, source=...); return them."""
    async def found():
        evs = [e for e in await receiver.events(account=account, since=since)
               if _match(e, **want)]
        return evs if len(evs) >= count else None

    async def seen():
        return [(e["code"], e["qualifier"], e["zone"], e["path"])
                for e in await receiver.events(account=account, since=since)]

    return await wait_until(found, timeout, interval=0.05, seen=seen,
                            what="%d stored event(s) %s for account %s" % (count, want, account))


def signature(e: dict) -> tuple:
    """What identifies an event to an operator: code, qualifier, zone."""
    return (e["code"], e["qualifier"], e["zone"])


def counts(events: list[dict]) -> Counter:
    return Counter(signature(e) for e in events)


async def panel_event_count(receiver, account, since=None, codes=None) -> int:
    evs = await receiver.events(account=account, since=since, source="panel")
    return sum(1 for e in evs if codes is None or e["code"] in codes)


async def zone_reads(panel, zone: int, state: str, timeout: float = WAIT_S) -> dict:
    """Wait until the panel itself reads `zone` in `state`."""
    async def ok():
        st = await panel.state()
        return st if {z["id"]: z["state"] for z in st["zones"]}.get(zone) == state else None
    return await wait_until(ok, timeout, what="zone %d reading %s" % (zone, state))


async def partition_is(panel, partition: int, state: str, timeout: float = WAIT_S) -> dict:
    async def ok():
        st = await panel.state()
        return st if {p["id"]: p["state"] for p in st["partitions"]}.get(partition) == state \
            else None
    return await wait_until(ok, timeout, what="partition %d %s" % (partition, state))


def stored_t(receiver, event: dict) -> float:
    """When the receiver committed `event`, in timeline seconds."""
    return receiver.to_timeline(event["received_at"])


async def disarm_reported(panel, receiver, timeline, code: str, partition: int, since: float,
                          what: str, measure: str) -> dict:
    """Step `what`: disarm `partition` with `code`, wait until the receiver
    stored the opening report (401, qualifier 1) since `since`, measure
    step -> stored as `measure`; returns the opening."""
    t = step(timeline, what)
    r = await panel.keypad(code, "disarm", partition)
    assert r["result_name"] == "ok", r
    (opening,) = await stored(receiver, panel.account, since=since, code=OPENING,
                              qualifier=Q_NEW)
    timeline.measure(measure, t, stored_t(receiver, opening))
    return opening


async def toggle_burst(panel, zone: int, toggles: int, code: int) -> Counter:
    """Trip and restore a 24-hour zone `toggles` times, each change read
    back by the panel before the next (so debounce sees every one).  Each
    change is one event: returns the signatures expected at the receiver."""
    expect: Counter = Counter()
    for _ in range(toggles):
        await panel.set_zone(zone, "alarm")
        await zone_reads(panel, zone, "alarm")
        expect[(code, Q_NEW, zone)] += 1
        await panel.set_zone(zone, "normal")
        await zone_reads(panel, zone, "normal")
        expect[(code, Q_RESTORE, zone)] += 1
    return expect


async def queue_drained(panel, timeout: float = WAIT_S) -> dict:
    """Wait until the panel's persistent queue is empty (all ACKed)."""
    async def ok():
        st = await panel.state()
        return st if st["reporter"]["queue"] == 0 else None

    async def seen():
        return (await panel.state())["reporter"]
    return await wait_until(ok, timeout, interval=0.1, what="the panel's queue to drain",
                            seen=seen)


async def exactly(receiver, account, expect: Counter, since=None,
                  timeout: float = WAIT_S) -> list[dict]:
    """Wait until every expected signature is stored as often as expected,
    then return the matching events (the caller asserts no extras)."""
    codes = {k[0] for k in expect}
    zones = {k[2] for k in expect}

    async def got():
        evs = [e for e in await receiver.events(account=account, since=since, source="panel")
               if e["code"] in codes and e["zone"] in zones]
        c = counts(evs)
        return evs if all(c[k] >= n for k, n in expect.items()) else None

    async def seen():
        evs = [e for e in await receiver.events(account=account, since=since, source="panel")
               if e["code"] in codes and e["zone"] in zones]
        return dict(counts(evs))
    return await wait_until(got, timeout, interval=0.1, seen=seen,
                            what="every expected event stored: %s" % dict(expect))
