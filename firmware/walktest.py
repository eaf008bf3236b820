"""Commissioning walk test: every zone tripped in turn, each proven by the
**receiver's own record**, and a report to hand over.

    guardline-panel walk-test --bundle bundle/ --receiver-db /var/lib/guardline/receiver.db
    guardline-panel walk-test --bundle bundle/ \\
        --receiver-events "ssh cs1 guardline-receiver events --json --follow --account 1001"
    guardline-panel walk-test --bundle bundle/ --receiver-db rx.db \\
        --control 127.0.0.1:7800 --auto --code 7391         # the simulated panel

Walk-test mode (panels with firmware that has it, docs/firmware.md "Walk
test"): the driver starts it with the installer's master code
(``walk_test_start``); every zone then reports once as Contact ID
611/613/614/615 "walk tested" (class "test": no alarm at the central
station), nothing needs arming, and loop faults still report 144/372/373.
The driver ends it (607 restore) when the walk is over.

Otherwise (a panel that refuses or does not know ``walk_test_start``, or
``--armed-walk``) the panel reports what it reports in service.
So intrusion zones (instant, entry/exit, follower) are walked with their
partition armed (away): the tool waits for the receiver's closing report
(401 q3) before it counts on them; 24-hour zones (hold-up, panic, fire,
seismic, 24h, tamper) and the door report disarmed too.  Walking creates
real alarms at the central station unless the account is on test: through
the console (``--receiver URL``) the tool places it on test itself for the
walk (``POST /api/tests``, ended when the walk is over); with another
source, ask the operators to put it on test first (docs/installer.md).

What a zone's result means (all from the receiver's events for the
account, never from the panel's own state):

- ``passed``: the zone's own alarm code arrived (instant 130, entry/exit
  134, follower 132, 24h and seismic 133, hold-up 122, panic 120, fire 110,
  door 423/134, bolt 432), with the zone number and no loop fault open.
  A ``tamper`` zone's alarm is 144, which is also what an open loop
  reports, so it passes only once its 144 is restored too (tripped and
  closed again, not a cut wire).
- ``fault``: the loop reported sabotage: 144 "sensor tamper" (open circuit,
  a cut wire or a missing end-of-line resistor), 372 "loop short" (~0 ohm),
  373 on a fire zone (open or short), and it is still open, or it never
  alarmed after it was restored.  Faults open before the walk started
  (e.g. reported at power-up) count: the receiver's history of the last
  ``HISTORY_S`` is read first.
- ``unexpected``: a zone alarm code arrived that is not this zone type's
  (the panel runs a different config than the one the walk was given), or
  a real alarm or trouble of the zone during the walk (a 432 bolt trouble
  in walk-test mode): it fails the zone even after its walk-test code, for
  the central station has it as an alarm.
- ``not_seen``: nothing from the zone reached the receiver.

An alarm or trouble that is no walked zone's (a 374 exit error, a 301
mains loss, a 121 duress, a zone the config does not have) fails the walk too and
is listed under what the installer must do: the operators have it in
their queue; so does a 624 (the panel's queue dropped reports, a zone's
among them perhaps).  What the walk itself causes besides the zones'
codes, a 139 confirmed alarm from two zones an armed walk tripped, and a
panel restart (305: the results so far are kept, the walk goes on, out of
walk-test mode until it is started again) fail nothing: they are told in
words (``WalkTest.notes``, the report's "During the walk").

The core (:class:`WalkTest`) is sans-I/O: events in, result changes out;
sources (the receiver's SQLite store, or an ``events --json --follow``
stream) and drivers (the simulated panel's control socket, or a human at
the site) are thin edges around it.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import json
import logging
import os
import queue
import shlex
import sqlite3
import subprocess
import threading
import time
import urllib.parse

from protocol import contactid

_LOGGER = logging.getLogger(__name__)

# What each zone type reports when tripped (firmware/device/cid.py,
# docs/firmware.md "Zones").
EXPECTED = {
    "instant": (130,), "entry_exit": (134,), "follower": (132,), "24h": (133,),
    "holdup": (122,), "panic": (120,), "fire": (110,), "tamper": (144,),
    "seismic": (133,), "door": (423, 134), "bolt": (432,),
    # a vehicle unit's (docs/mobile.md): the compartment outside an allowed
    # zone or without a fix, a door armed (or moving), tilt; the ignition
    # and the GNSS antenna report nothing of their own: walk-test mode
    "compartment": (133,), "vehicle_door": (134, 172), "tilt": (174,),
}
# What each zone type reports in the panel's walk-test mode (panel.py
# WALK_CODE): 613 intrusion, 614 fire, 615 panic/hold-up, 611 point tested.
WALK_EXPECTED = {
    "instant": (613,), "entry_exit": (613,), "follower": (613,), "24h": (613,),
    "holdup": (615,), "panic": (615,), "fire": (614,), "tamper": (611,),
    "seismic": (613,), "door": (613,), "bolt": (611,),
    "compartment": (613,), "vehicle_door": (613,), "ignition": (611,), "antenna": (611,),
    "tilt": (613,),
}
WALK_TEST_MODE = 607  # q1 walk test started, q3 ended
# Zone types that report only while their partition is armed (arming.py).
NEEDS_ARMED = ("instant", "entry_exit", "follower")
# Margin on top of a held report's delay (receiver commit, a retry).
REPORT_MARGIN_S = 15


def zone_wait(cfg: dict, zone_timeout: float) -> float:
    """How long an armed walk holds a zone for the receiver's record: at
    least `zone_timeout`, and long enough for an entry/exit zone's alarm,
    which the panel sends after the entry delay and the abort window
    (CP-01, docs/firmware.md) unless someone disarms."""
    t = cfg.get("timings") or {}
    return max(zone_timeout, t.get("entry_delay_s", 0) + t.get("abort_window_s", 0)
               + REPORT_MARGIN_S)
# Loop sabotage (docs/firmware.md: "open circuit -> 144, short -> 372,
# fire zones: 373 for both").
SENSOR_TAMPER, LOOP_SHORT, FIRE_TROUBLE = 144, 372, 373
FAULT_NAMES = {SENSOR_TAMPER: "open circuit (tamper)", LOOP_SHORT: "short circuit",
               FIRE_TROUBLE: "fire loop open or shorted"}
SWINGER = 575
PROPPED = 426
# A second intrusion zone of an armed partition within the confirmation
# window (CP-01, docs/firmware.md "Confirmed alarms"): zone = the second,
# text "with zone N" (the first).  An armed walk trips zone after zone,
# so it makes one itself.
CONFIRMED = 139
SYSTEM_RESET = 305  # the panel (re)started: sent once per boot
LOG_OVERFLOW = 624  # the panel's queue dropped events (zone field: how many)
# Closing (qualifier 3) / opening (1) reports whose zone field is a user:
# 401 by user, 403 automatic (time lock), 407 remote, 441 armed stay.
ARMING_CODES = (401, 403, 407, 441)
# Every code the panel sends with a zone number in the zone field.
ZONE_CODES = frozenset(c for cs in EXPECTED.values() for c in cs) | \
    frozenset(c for cs in WALK_EXPECTED.values() for c in cs) | {
    SENSOR_TAMPER, LOOP_SHORT, FIRE_TROUBLE, SWINGER, PROPPED}
Q_NEW, Q_RESTORE = 1, 3
# Events the central station treats as alarms or troubles: one arriving
# during the walk that the walk did not cause is the installer's business.
UNEXPECTED_CLASSES = contactid.ALARM_CLASSES | {"trouble", "tamper"}

PASSED, FAULT, UNEXPECTED, NOT_SEEN, TRIPPED, SKIPPED = (
    "passed", "fault", "unexpected", "not_seen", "tripped", "skipped")
# SKIPPED: the --auto driver could not trip the zone (its partition never
# armed): final, and not a pass; the receiver's own evidence outranks it.
FINAL = (PASSED, FAULT, UNEXPECTED, SKIPPED)

# How far back the receiver's history is read for loop faults still open
# when the walk starts: a miswired loop reports when the panel powers up,
# which on a commissioning day is hours, not weeks, before the walk.
HISTORY_S = 7 * 86400
# Events read from the receiver's feed per request.
FEED_PAGE = 1000


def clock_time(t: float | None) -> str:
    """'10:42:07 UTC': the time of day an installer on site reads."""
    if not t:
        return "an unknown time"
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M:%S UTC")


def iso_time(t: float | None) -> str | None:
    if not t:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _ev(ev: dict) -> dict:
    """The part of a receiver event a report keeps."""
    return {"event_id": ev.get("id"), "code": ev["code"], "qualifier": ev["qualifier"],
            "description": ev.get("description") or contactid.describe(
                ev["code"], ev["qualifier"], ev.get("zone")),
            "partition": ev.get("partition"), "zone": ev.get("zone"),
            "received_at": iso_time(ev.get("received_at")),
            "event_time": iso_time(ev.get("event_time"))}


class Zone:
    """One zone's walk-test record."""

    def __init__(self, z: dict):
        self.id = z["id"]
        self.name = z.get("name") or "zone %d" % z["id"]
        self.type = z["type"]
        self.partition = z["partition"]
        self.expected = EXPECTED.get(self.type, ())
        self.alarms: list[dict] = []  # expected alarm events seen during the walk
        self.faults: list[dict] = []  # loop faults: {event, restored}
        self.open_fault: dict | None = None  # the fault not restored yet
        self.tripped: dict | None = None  # tamper type: 144 seen, restore awaited
        self.unexpected: list[dict] = []
        self.notes: list[str] = []
        self.faulted_at_start = False
        self.skipped: str | None = None  # why the --auto driver did not trip it

    def tamper_report(self, q: int, e: dict, history: bool) -> None:
        """A tamper zone's 144 (outside walk-test mode): alarm and open loop
        share the code, so a trip is 144 new then its restore."""
        if q == Q_NEW:
            if history:
                self.open_fault = e
                self.faulted_at_start = True
            else:
                self.tripped = e
        elif q == Q_RESTORE:
            if self.tripped is not None:
                self.alarms.append(self.tripped)
                self.tripped = None
            if self.open_fault is not None:
                if not history:
                    self.faults.append({"event": self.open_fault, "restored": e})
                self.open_fault = None
                self.faulted_at_start = False

    def loop_fault(self, code: int, q: int, e: dict, history: bool) -> None:
        """A loop fault (144 tamper, 372 short, 373 fire trouble) or its
        restore."""
        if q == Q_NEW:
            if self.open_fault is None or self.open_fault["code"] != code:
                self.open_fault = e
                self.faulted_at_start = history
        elif q == Q_RESTORE and self.open_fault is not None:
            if not history:  # a fault over before the walk is forgotten
                self.faults.append({"event": self.open_fault, "restored": e})
            self.open_fault = None
            self.faulted_at_start = False

    @property
    def status(self) -> str:
        if self.open_fault is not None:
            return FAULT
        if self.unexpected:
            # a wrong code, or a real alarm/trouble next to the walk's own:
            # never a pass, whatever else arrived
            return UNEXPECTED
        if self.alarms:
            return PASSED
        if self.tripped is not None:
            return TRIPPED
        if self.faults:
            return FAULT
        if self.skipped:
            return SKIPPED
        return NOT_SEEN

    def verdict(self) -> str:
        s = self.status
        if s == PASSED:
            a = self.alarms[0]
            text = "%03d %s at %s" % (a["code"], contactid.name(a["code"]), a["received_at"])
            if self.faults:
                text += " (after a loop fault, restored)"
            return text
        if s == FAULT:
            f = self.open_fault or self.faults[-1]["event"]
            text = "%s: %03d at %s" % (FAULT_NAMES.get(f["code"], "loop fault"), f["code"],
                                       f["received_at"])
            if self.type == "tamper" and f["code"] == SENSOR_TAMPER:
                text = "loop open (144 never restored): cut wire or tamper left open, %s" \
                       % f["received_at"]
            elif self.open_fault is None:
                text += ", restored, but the zone never alarmed after it"
            elif self.faulted_at_start:
                text += " (open before the walk started)"
            return text + ": CHECK THE WIRING"
        if s == UNEXPECTED:
            u = self.unexpected[0]
            if u["code"] in self.expected or u["code"] in WALK_EXPECTED.get(self.type, ()):
                # this zone type's code, but not what this walk asked for:
                # a real alarm or trouble (432 bolt trouble in walk-test mode)
                text = "%03d %s at %s (event %s): a real %s during the walk, in the " \
                       "central station's alarm queue: find its cause and have the " \
                       "operators resolve it" % (
                           u["code"], contactid.name(u["code"]), u["received_at"],
                           u["event_id"], contactid.event_class(u["code"]))
            else:
                text = "%03d %s, expected %s: the panel's zone type differs from the " \
                       "config" % (u["code"], contactid.name(u["code"]),
                                   "/".join("%03d" % c for c in self.expected))
            if self.alarms:
                a = self.alarms[0]
                text = "walked (%03d at %s), but %s" % (a["code"], a["received_at"], text)
            return text
        if s == TRIPPED:
            return "144 seen, waiting for the loop to close (restore)"
        if s == SKIPPED:
            return "skipped: %s" % self.skipped
        return "nothing from this zone reached the receiver"

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "type": self.type,
                "partition": self.partition, "expected_codes": list(self.expected),
                "result": FAULT if self.status == TRIPPED else self.status,
                "verdict": self.verdict(),
                "first_alarm": self.alarms[0] if self.alarms else None,
                "alarms": self.alarms, "faults": self.faults, "open_fault": self.open_fault,
                "unexpected": self.unexpected,
                "faulted_at_start": self.faulted_at_start, "notes": self.notes}


class WalkTest:
    """The walk-test core: feed it the receiver's events for the account,
    in id order; it keeps each zone's result and each partition's arming
    state as the receiver recorded them.  No I/O, no clock."""

    def __init__(self, account, zones: list[dict], partitions=()):
        self.account = str(account)
        self.zones = {z["id"]: Zone(z) for z in zones}
        self.order = [z["id"] for z in zones]
        self.partitions = {p["id"]: {"id": p["id"], "name": p.get("name", ""),
                                     "armed": None, "log": []} for p in partitions}
        self.events_seen = 0
        # the panel is in walk-test mode (607 q1 seen from a user, no 607
        # q3 since): zones are expected as 61x, not as alarms
        self.walk_mode = False
        # alarms and troubles during the walk that are no walked zone's:
        # [{"event", "restored"}]
        self.unexpected: list[dict] = []
        # what the walk itself caused besides the zones' codes, and panel
        # restarts: [{"event", "text"}], in words; they fail nothing
        self.notes: list[dict] = []
        self.restarts = 0  # 305s during the walk

    def _note(self, ev: dict, text: str) -> list[tuple]:
        self.notes.append({"event": _ev(ev), "text": text})
        return [(None, None, None, text)]

    def _restart(self, ev: dict, history: bool) -> list[tuple]:
        """305: the panel restarted.  The walk's proof is the receiver's
        record, so zones walked before it keep their results and the walk
        goes on; a panel in walk-test mode leaves it when it restarts
        (docs/firmware.md "Walk test"), so the walk expects alarm codes
        until the mode is on again."""
        if history or ev["qualifier"] != Q_NEW:
            return []
        self.restarts += 1
        text = "the panel restarted at %s; zones walked before it are kept" % clock_time(
            ev.get("received_at"))
        if self.walk_mode:
            self.walk_mode = False
            text += "; it left walk-test mode (zones tripped now report as alarms until " \
                    "walk-test mode is started again)"
        return self._note(ev, text)

    def _confirmed(self, ev: dict, history: bool) -> list[tuple] | None:
        """139 during an armed walk from two zones the walk tripped: what
        walking them does, noted in words; None for any other 139 (a real
        confirmed burglary: unexpected)."""
        if history or self.walk_mode or ev["qualifier"] != Q_NEW:
            return None
        second = self.zones.get(ev.get("zone"))
        text = ev.get("text") or ""
        first_id = int(text[10:]) if text.startswith("with zone ") and text[10:].isdigit() \
            else None
        first = self.zones.get(first_id) if first_id is not None else None
        if second is None or first is None or not (second.alarms and first.alarms) or \
                {first.partition, second.partition} != {ev.get("partition")}:
            return None
        if first is second:
            both = "zone %d (%s) twice" % (second.id, second.name)
        else:
            both = "zones %d (%s) and %d (%s)" % (first.id, first.name, second.id, second.name)
        return self._note(ev, (
            "139 confirmed alarm at %s (event %s): the walk tripped %s within the panel's "
            "confirmation window, as an armed walk does: not a fault") % (
            clock_time(ev.get("received_at")), ev.get("id"), both))

    def _other(self, ev: dict, history: bool) -> list[tuple]:
        """An event that is no zone's walk: an alarm or trouble (new) is
        recorded as unexpected, its restore closes it."""
        code, q = ev["code"], ev["qualifier"]
        if history or (contactid.event_class(code) not in UNEXPECTED_CLASSES and
                       code != LOG_OVERFLOW):
            return []
        e = _ev(ev)
        if q == Q_RESTORE:
            for u in self.unexpected:
                if u["restored"] is None and (u["event"]["code"], u["event"]["zone"]) == (
                        code, e["zone"]):
                    u["restored"] = e
                    return [(None, None, None, "restored: %s" % e["description"])]
            return []
        if q != Q_NEW:
            return []
        self.unexpected.append({"event": e, "restored": None})
        return [(None, None, None, "UNEXPECTED %s %03d %s (event %s): not caused by the walk"
                 % (contactid.event_class(code), code, e["description"], e["event_id"]))]

    def feed(self, ev: dict, history: bool = False) -> list[tuple]:
        """One receiver event.  `history`: recorded before the walk began
        (only loop faults still open and arming state are taken from it).
        Returns [(zone_or_None, old_status, new_status, text)]."""
        if str(ev.get("account")) != self.account or ev.get("source", "panel") != "panel":
            return []
        self.events_seen += 1
        code = ev["code"]
        if code == WALK_TEST_MODE and ev.get("zone"):  # zone 0: console test mode
            return self._walk_test_mode(ev)
        if code == SYSTEM_RESET:
            return self._restart(ev, history)
        if code == CONFIRMED:
            ours = self._confirmed(ev, history)
            if ours is not None:
                return ours
        if code in ARMING_CODES:
            return self._arming(ev, history)
        if code not in ZONE_CODES or contactid.number_kind(code) != contactid.ZONE:
            return self._other(ev, history)
        z = self.zones.get(ev.get("zone"))
        if z is None:
            return self._other(ev, history)
        return self._zone_event(z, ev, history)

    def _walk_test_mode(self, ev: dict) -> list[tuple]:
        """607 for a zone: the panel's walk-test mode on (q1) or off."""
        on = ev["qualifier"] == Q_NEW
        if on == self.walk_mode:
            return []
        self.walk_mode = on
        return [(None, None, None, "panel walk-test mode %s (%s)" % (
            "ON" if on else "off", contactid.describe(ev["code"], ev["qualifier"],
                                                      ev.get("zone"))))]

    def _arming(self, ev: dict, history: bool) -> list[tuple]:
        """An opening or closing: the partition's arming state."""
        code, q = ev["code"], ev["qualifier"]
        p = self.partitions.get(ev.get("partition"))
        if p is None:
            return []
        armed = q == Q_RESTORE  # DC-05: 3 = closing (armed), 1 = opening
        if p["armed"] == armed:
            return []
        p["armed"] = armed
        if not history:
            p["log"].append({"armed": armed, **_ev(ev)})
        return [(None, None, None, "partition %d (%s) %s (%s)" % (
            p["id"], p["name"], "ARMED" if armed else "disarmed",
            contactid.describe(code, q, ev.get("zone"))))]

    def _zone_event(self, z: Zone, ev: dict, history: bool) -> list[tuple]:
        """An event for one of the walked zones."""
        code, q = ev["code"], ev["qualifier"]
        old = z.status
        e = _ev(ev)
        if ev.get("partition") not in (None, z.partition):
            z.notes.append("event %s reported partition %s; the config says %d"
                           % (e["event_id"], ev.get("partition"), z.partition))
        if z.type == "tamper" and code == SENSOR_TAMPER and not self.walk_mode:
            z.tamper_report(q, e, history)
        elif code in (SENSOR_TAMPER, LOOP_SHORT, FIRE_TROUBLE):
            z.loop_fault(code, q, e, history)
        elif history:
            return []
        elif code in (WALK_EXPECTED.get(z.type, ()) if self.walk_mode else z.expected):
            if q == Q_NEW:
                z.alarms.append(e)
        elif code == SWINGER:
            z.notes.append("swinger shutdown (575) at %s: tripped %s times in one arming "
                           "period" % (e["received_at"], "too many"))
        elif code == PROPPED:
            if q == Q_NEW:
                z.notes.append("door held open (426) at %s" % e["received_at"])
        elif q == Q_NEW:
            z.unexpected.append(e)
        new = z.status
        if new != old or (q == Q_NEW and not history):
            return [(z, old, new, "%03d q%d %s" % (code, q, e["description"]))]
        return []

    def walked(self, ids=None) -> list[Zone]:
        return [self.zones[i] for i in (ids or self.order)]

    def done(self, ids=None, until_pass: bool = False) -> bool:
        zs = self.walked(ids)
        if until_pass:
            return all(z.status == PASSED for z in zs)
        return all(z.status in FINAL for z in zs)

    def counts(self, ids=None) -> dict:
        c = {PASSED: 0, FAULT: 0, UNEXPECTED: 0, NOT_SEEN: 0, TRIPPED: 0, SKIPPED: 0}
        for z in self.walked(ids):
            c[z.status] += 1
        return c

    def skip(self, zid: int, reason: str) -> None:
        """The walk could not trip zone `zid` (`reason`, in words): it has
        its result, "skipped", unless the receiver has something from it."""
        self.zones[zid].skipped = reason

    def armed(self, pid) -> bool:
        p = self.partitions.get(pid)
        return bool(p and p["armed"])


# -- sources: the receiver's record ------------------------------------------------------


class StoreSource:
    """The receiver's store (its SQLite file, or its postgresql:// URL),
    opened beside the running receiver and read through its own API: the
    event feed (``Store.events_after``) in the records' one JSON shape,
    as ``events --json`` prints it.  Never an SQL query of its tables."""

    def __init__(self, db: str, account):
        from receiver.store import StoreError, StoreMissing  # noqa: PLC0415
        from receiver.store_factory import make_store  # noqa: PLC0415

        self.db = db
        self.account = str(account)
        self.last = 0
        self._loop = asyncio.new_event_loop()
        self.store = make_store(db, create=False)
        try:
            self._run(self.store.open())
        except StoreMissing as e:
            self._loop.close()
            if os.path.exists(db):
                raise OSError("%s: not a receiver store (%s): give the receiver's database, "
                              "e.g. /var/lib/guardline/receiver.db" % (db, e)) from None
            raise OSError("%s: no such receiver store" % db) from None
        except (StoreError, sqlite3.Error) as e:
            self._loop.close()
            raise OSError("%s: not a receiver store (%s)" % (db, e)) from None

    def _run(self, coro):
        return self._loop.run_until_complete(coro)

    def describe(self) -> str:
        from receiver.store import is_url, mask_url  # noqa: PLC0415

        return "receiver store %s" % (mask_url(self.db) if is_url(self.db)
                                      else os.path.abspath(self.db))

    def site(self) -> dict:
        a = self._run(self.store.get_account(self.account))
        if a is None:
            return {}
        return {"site_name": a.site_name, "site_address": a.site_address,
                "panel_kind": a.panel_kind}

    def history(self) -> list[dict]:
        """Events of the account from the last HISTORY_S (receiver clock)
        up to now; later polls return only what comes after."""
        newest = self._run(self.store.last_event(None))
        if newest is None:
            return []
        self.last = newest.id
        since = newest.received_at - HISTORY_S
        out: list[dict] = []
        after = 0
        while True:
            page = self._run(self.store.list_events(account=self.account, since=since,
                                                    after_id=after, limit=FEED_PAGE))
            out += [e.to_json() for e in page if e.id <= self.last]
            if len(page) < FEED_PAGE or page[-1].id >= self.last:
                return out
            after = page[-1].id

    def poll(self) -> list[dict]:
        rows = self._run(self.store.events_after(self.account, self.last, FEED_PAGE))
        if rows:
            self.last = rows[-1].id
        return [e.to_json() for e in rows]

    def close(self):
        try:
            self._run(self.store.close())
        finally:
            self._loop.close()


class StreamSource:
    """``guardline-receiver events --json --follow`` output, from a command
    (e.g. over ssh to the central station) or a file object.  Events the
    receiver got before the walk began (by their ``received_at``; keep the
    two clocks in step with NTP) are history."""

    def __init__(self, command: str | None = None, stream=None, account=None,
                 started_at: float | None = None):
        self.command = command
        self.account = str(account)
        self.started_at = started_at or time.time()
        self.q: queue.Queue = queue.Queue()
        self.proc = None
        self.error: str | None = None
        if command:
            self.proc = subprocess.Popen(shlex.split(command), stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                         text=True, bufsize=1)
            stream = self.proc.stdout
        self._t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._t.start()

    def describe(self) -> str:
        return "receiver events stream: %s" % (self.command or "stdin")

    def site(self) -> dict:
        return {}

    def _read(self, stream):
        for line in stream:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                self.q.put(json.loads(line))
            except ValueError:
                continue
        if self.proc is not None:
            self.proc.wait()
            err = self.proc.stderr.read().strip() if self.proc.stderr is not None else ""
            self.error = "receiver events command ended (status %s)%s" % (
                self.proc.returncode, ": " + err.splitlines()[-1] if err else "")
        self.q.put(None)

    def history(self) -> list[dict]:
        return []

    def poll(self) -> list[dict]:
        out: list[dict] = []
        while True:
            try:
                ev = self.q.get_nowait()
            except queue.Empty:
                return out
            if ev is None:
                if self.error:
                    raise OSError(self.error)
                return out
            if str(ev.get("account")) == self.account:
                out.append(ev)

    def is_history(self, ev: dict) -> bool:
        return (ev.get("received_at") or 0) < self.started_at

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ConsoleSource:
    """The receiver's record read through its operator console's JSON API
    (docs/console.md): ``POST /api/login`` (a session cookie and the
    session's CSRF token), ``GET /api/events?account=&since=`` polled,
    ``GET /api/sites/{account}`` for the site, ``POST /api/logout`` (with
    ``X-CSRF-Token``) at the end.  For a laptop that can reach the console
    but not the receiver's store or a shell on its host.

    The events endpoint returns the newest ``limit`` events since a time,
    so polling keeps a cursor a little behind the newest ``received_at``
    seen (``OVERLAP_S``: an event stamped just before another may commit
    just after it) and drops events whose id it has already passed on.
    Events received before the walk began are history (receiver clock vs
    this laptop's: keep both in step with NTP)."""

    # The console's cap on one answer (receiver/web/api.py MAX_RESULTS).
    LIMIT = 5000
    # How far the poll cursor trails the newest event seen: a store commits
    # in groups, so an event may become visible after a later-stamped one.
    OVERLAP_S = 30.0
    # One request per this many seconds at most, however fast run() polls:
    # each is a store scan on the central station's receiver.
    MIN_POLL_S = 0.5

    def __init__(self, base_url: str, account, user: str, password: str,
                 started_at: float | None = None, timeout: float = 15.0,
                 clock=time.monotonic):
        import http.cookiejar  # noqa: PLC0415
        import urllib.request  # noqa: PLC0415

        self.base = base_url.rstrip("/")
        self.account = str(account)
        self.user = user
        self._password = password
        self.started_at = started_at or time.time()
        self.timeout = timeout
        self.clock = clock
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf: str | None = None
        self.cursor = self.started_at - HISTORY_S
        self.seen: dict[int, float] = {}  # event id -> received_at, inside the overlap
        self.placement: dict | None = None  # the walk's test placement (place_on_test)
        self._next_poll = 0.0
        self.login()

    def _request(self, method: str, path: str, body=None, csrf: bool = False):
        import urllib.error  # noqa: PLC0415
        import urllib.request  # noqa: PLC0415

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if csrf and self.csrf:
            req.add_header("X-CSRF-Token", self.csrf)
        try:
            with self.opener.open(req, timeout=self.timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read() or b"{}").get("error")
            except ValueError:
                err = None
            return e.code, {"error": err or e.reason,
                            "retry_after": e.headers.get("Retry-After")}

    def login(self) -> None:
        st, r = self._request("POST", "/api/login", {"name": self.user,
                                                     "password": self._password})
        if st == 401:
            raise OSError("console %s: login refused for %r (wrong name or password)"
                          % (self.base, self.user))
        if st == 429:
            raise OSError("console %s: logins for %r are throttled; retry in %s s"
                          % (self.base, self.user, r.get("retry_after") or "a few"))
        if st != 200 or not r.get("csrf"):
            raise OSError("console %s: login failed (%s %s)" % (self.base, st, r.get("error")))
        self.csrf = r["csrf"]
        _LOGGER.info("account %s: console %s: logged in as %s", self.account, self.base,
                     self.user)

    def _get(self, path: str) -> dict:
        st, r = self._request("GET", path)
        if st == 401:  # the session ended (idle, 12 h, the user changed): once more
            self.login()
            st, r = self._request("GET", path)
        if st == 403:
            raise OSError("console %s: user %r may not read %s (%s)" % (
                self.base, self.user, path.split("?")[0], r.get("error")))
        if st != 200:
            raise OSError("console %s: %s: %s %s" % (self.base, path.split("?")[0], st,
                                                       r.get("error")))
        return r

    def describe(self) -> str:
        return "receiver console %s (user %s)" % (self.base, self.user)

    def site(self) -> dict:
        try:
            a = self._get("/api/sites/%s" % urllib.parse.quote(self.account)).get("account")
        except OSError:
            return {}
        return {k: a.get(k) for k in ("site_name", "site_address", "panel_kind")} if a else {}

    def _fetch(self) -> list[dict]:
        r = self._get("/api/events?" + urllib.parse.urlencode(
            {"account": self.account, "since": "%.6f" % self.cursor, "limit": self.LIMIT}))
        if r.get("truncated") or r.get("scan_limited"):
            _LOGGER.warning("account %s: console returned %d of %s events since %s: older "
                            "ones are not read", self.account, len(r["events"]),
                            r.get("matched"), iso_time(self.cursor))
        out = []
        for ev in sorted(r["events"], key=lambda e: e["id"]):
            if str(ev.get("account")) != self.account or ev["id"] in self.seen:
                continue
            out.append(ev)
        return out

    def _mark(self, evs: list[dict]) -> None:
        for ev in evs:
            self.seen[ev["id"]] = ev.get("received_at") or 0
        if self.seen:
            self.cursor = max(self.cursor, max(self.seen.values()) - self.OVERLAP_S)
            # every id older than the cursor can no longer come back: forget it
            self.seen = {i: t for i, t in self.seen.items() if t >= self.cursor}

    def history(self) -> list[dict]:
        """The account's events of the last HISTORY_S received before the
        walk began; later ones are left for poll()."""
        evs = [e for e in self._fetch() if self.is_history(e)]
        self._mark(evs)
        self.cursor = max(self.cursor, self.started_at - self.OVERLAP_S)
        return evs

    def poll(self) -> list[dict]:
        now = self.clock()
        if now < self._next_poll:
            return []
        self._next_poll = now + self.MIN_POLL_S
        evs = self._fetch()
        self._mark(evs)
        return evs

    def is_history(self, ev: dict) -> bool:
        return (ev.get("received_at") or 0) < self.started_at

    def place_on_test(self, seconds: float, reason: str) -> dict:
        """Place the whole account on test for ``seconds`` (the walk's time
        limit; the console bounds it), so that the walk's alarms page
        nobody; the placement, in words in ``words``.  OSError with the
        console's reason when it refuses (the walk must not start then:
        its alarms would go to the dispatch centres as real)."""
        minutes = max(1, int(seconds + 59) // 60)
        st, r = self._request("POST", "/api/tests", {"account": self.account,
                                                     "minutes": minutes, "reason": reason},
                              csrf=True)
        if st != 201:
            raise OSError("console %s: the account could not be placed on test (%s %s); "
                          "without it the walk's alarms go to the dispatch centres as real: "
                          "ask the operators to place account %s on test, or use a console "
                          "user who may" % (self.base, st, r.get("error"), self.account))
        p = self.placement = r["placement"]
        _LOGGER.info("account %s: console %s: on test until %s (placement %d)", self.account,
                     self.base, iso_time(p["ends_at"]), p["id"])
        return p

    def end_test(self) -> None:
        """End the walk's placement (it ends by itself at its time anyway)."""
        p = self.placement
        if p is None:
            return
        self.placement = None
        st, r = self._request("POST", "/api/tests/%d/end" % p["id"], {}, csrf=True)
        if st not in (200, 409):  # 409: ended already (by an operator)
            _LOGGER.warning("account %s: console %s: the walk's test placement %d was not "
                            "ended (%s %s); it ends at %s", self.account, self.base, p["id"],
                            st, r.get("error"), iso_time(p["ends_at"]))

    def close(self):
        try:
            self.end_test()
            self._request("POST", "/api/logout", {}, csrf=True)
        except OSError:
            pass  # the session ends by itself after 30 minutes idle


# -- drivers: who trips the zones --------------------------------------------------------


# A partition state (the panel's "state" answer) in words, for a refusal.
PARTITION_BUSY = {
    "exit_away": "already arming (exit delay)", "exit_stay": "already arming (exit delay)",
    "exit_away_again": "already arming (exit delay)",
    "exit_stay_again": "already arming (exit delay)",
    "armed_away": "already armed (away)", "armed_stay": "already armed (stay)",
    "entry_delay": "in its entry delay", "alarm": "in alarm", "alarm_held": "in alarm",
    "walk_test": "in walk-test mode"}


class AutoDriver:
    """Trips each zone of the simulated panel through its control socket,
    one at a time: arm what needs arming (bypassing zones whose loop is
    already faulted, as an installer would, so the rest of the partition
    can be walked), hold the zone in alarm until the receiver has it (or
    the zone's time is up), put it back to normal, next.  Disarms what it
    armed at the end.  The panel's answers only steer the simulation; the
    results come from the receiver."""

    walks_alone = True  # once step() says done, nobody else will trip a zone

    def __init__(self, ctl, code: str, zone_timeout: float = 60.0, say=print,
                 clock=time.monotonic, walk_mode: bool = True):
        self.try_walk_mode = walk_mode
        self.walk_mode = False  # the panel accepted walk_test_start
        self.ctl = ctl
        self.code = code
        self.zone_timeout = zone_timeout
        self.say = say
        self.clock = clock
        self.queue: list[int] = []
        self.current: Zone | None = None
        self.phase: str | None = None
        self.deadline = 0.0
        self.armed_by_us: list[int] = []
        self.bypassed: list[int] = []
        self.restarts = 0  # panel restarts seen (WalkTest.restarts)

    def _key(self, action: str, partition: int, zone: int = 0) -> str:
        r = self.ctl({"cmd": "key", "code": self.code, "action": action,
                      "partition": partition, "zone": zone})
        return r.get("result_name") or r.get("error") or "?"

    def _busy(self) -> dict[int, str]:
        """The panel's partitions that are not disarmed: {id: what it is
        doing, in words}, read from its state (a refusal carries no reason)."""
        r = self.ctl({"cmd": "state", "brief": True})
        return {p["id"]: "%s (%s)" % (PARTITION_BUSY.get(p["state"], p["state"]), p["name"])
                for p in r.get("partitions") or [] if p.get("state") != "disarmed"}

    def prepare(self, walk: WalkTest, ids: list[int]) -> None:
        self.queue = [i for i in ids if walk.zones[i].status not in FINAL]
        for i in ids:
            if i not in self.queue:
                self.say("zone %d: %s already: not tripped" % (i, walk.zones[i].status))
        if self.try_walk_mode and self.queue:
            r = self._key("walk_test_start", 1)
            busy = self._busy() if r == "refused" else {}
            self.say("panel walk-test mode: %s" % r + "".join(
                "; partition %d is %s" % kv for kv in sorted(busy.items())))
            if r == "ok":
                self.walk_mode = True
                return  # nothing to arm: every zone reports as walk tested
            self.say("no walk-test mode: arming partitions for an armed walk")
        parts = sorted({walk.zones[i].partition for i in self.queue
                        if walk.zones[i].type in NEEDS_ARMED})
        for pid in parts:
            if walk.armed(pid):
                continue
            for z in walk.zones.values():
                if z.partition == pid and z.status == FAULT and z.type not in (
                        "fire", "panic", "holdup"):
                    r = self._key("bypass", pid, z.id)
                    self.say("zone %d faulted: bypass so partition %d can arm: %s"
                             % (z.id, pid, r))
                    if r == "ok":
                        self.bypassed.append(z.id)
            r = self._key("arm_away", pid)
            busy = self._busy().get(pid) if r == "refused" else None
            if busy:
                # the panel's own doing (a time lock, a schedule): not
                # refused, and not this walk's to disarm at the end
                r = "not needed: the panel says it is %s; the walk waits for the " \
                    "receiver's closing report" % busy
            self.say("arm partition %d (away): %s" % (pid, r))
            if r == "ok":
                self.armed_by_us.append(pid)

    def step(self, walk: WalkTest) -> bool:
        """Advance; True while there is work left."""
        now = self.clock()
        if walk.restarts > self.restarts:
            self.restarts = walk.restarts
            if self.walk_mode and (self.queue or self.current is not None):
                # a restart ends the panel's walk-test mode: on again
                self.say("panel restarted: walk-test mode again: %s"
                         % self._key("walk_test_start", 1))
        if self.current is None:
            if not self.queue:
                return False
            self.current = walk.zones[self.queue.pop(0)]
            if self.walk_mode:
                # its trips count once the receiver has the 607 start
                self.phase = "arming" if not walk.walk_mode else "trip"
            else:
                self.phase = "arming" if self.current.type in NEEDS_ARMED else "trip"
            self.deadline = now + self.zone_timeout
        z = self.current
        if self.phase == "arming":
            if walk.walk_mode if self.walk_mode else walk.armed(z.partition):
                self.phase = "trip"
            elif now > self.deadline:
                why = "walk-test mode never reached the receiver" if self.walk_mode else \
                    "partition %d never armed at the receiver" % z.partition
                self.say("zone %d: %s: skipped" % (z.id, why))
                walk.skip(z.id, why)
                self.current = None
                return True
            else:
                return True
        if self.phase == "trip":
            self.say("zone %d %s (%s): trip" % (z.id, z.name, z.type))
            self.ctl({"cmd": "zone", "zone": z.id, "state": "alarm"})
            self.phase = "hold"
        if self.phase == "hold":
            if z.status != NOT_SEEN or now > self.deadline:
                self.ctl({"cmd": "zone", "zone": z.id, "state": "normal"})
                self.phase = "release"
            return True
        if self.phase == "release":
            if z.status in FINAL or now > self.deadline:
                self.current = None
        return True

    def finish(self, walk: WalkTest) -> None:
        if self.walk_mode:
            self.say("end walk-test mode: %s" % self._key("walk_test_end", 1))
        for pid in self.armed_by_us:
            self.say("disarm partition %d: %s" % (pid, self._key("disarm", pid)))


class ManualDriver:
    """A human trips the zones; the tool says what to do and waits."""

    walks_alone = False

    def __init__(self, say=print):
        self.say = say

    def prepare(self, walk: WalkTest, ids: list[int]) -> None:
        parts = sorted({walk.zones[i].partition for i in ids
                        if walk.zones[i].type in NEEDS_ARMED})
        if parts:
            names = ", ".join("%d (%s)" % (p, walk.partitions.get(p, {}).get("name", ""))
                              for p in parts)
            self.say("ARM in AWAY mode before walking their intrusion zones: partition %s. "
                     "The walk counts a partition armed once the receiver has its closing "
                     "report (after the exit delay)." % names)
            faulted = [z for z in walk.walked(ids) if z.status == FAULT]
            if faulted:
                self.say("Zones already faulted prevent arming: fix them, or bypass them "
                         "(manager code + bypass): %s" % ", ".join(str(z.id) for z in faulted))
        self.say("Trip every zone in turn (open the door, walk past the PIR, press the "
                 "button...), then close it again.  Entry/exit zones report after the entry "
                 "delay.  Enter ends the walk; so does every zone having a result.")

    def step(self, walk: WalkTest) -> bool:
        return False

    def finish(self, walk: WalkTest) -> None:
        self.say("Disarm the partitions you armed; tell the central station the walk "
                 "test is over.")


class ConsoleTail:
    """The panel's serial console (USB), echoed as hints ("panel: ...").
    The panel's word is shown, never counted."""

    def __init__(self, port: str, say=print, baudrate: int = 115200):
        import serial  # noqa: PLC0415

        self.ser = serial.serial_for_url(port, baudrate=baudrate, timeout=0.2)
        self.say = say
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        buf = b""
        while not self._stop:
            try:
                d = self.ser.read(256)
            except Exception as e:  # noqa: BLE001 - a port unplugged
                self.say("panel console: %s" % e)
                return
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace").strip()
                if text:
                    self.say("  panel: %s" % text)
            if len(buf) > 4096:  # a console line is short; never hold more
                buf = b""

    def close(self):
        self._stop = True
        self._t.join(2)
        self.ser.close()


# -- the run ------------------------------------------------------------------------------


_SYMBOL = {PASSED: "OK  ", FAULT: "FAIL", UNEXPECTED: "FAIL", NOT_SEEN: "....",
           TRIPPED: "... ", SKIPPED: "SKIP"}


def zone_line(z: Zone) -> str:
    return "  [%s] zone %3d %-24s %-10s p%d  %s" % (_SYMBOL[z.status], z.id, z.name[:24],
                                                  z.type, z.partition, z.verdict())


def run(walk: WalkTest, source, driver, ids: list[int], timeout: float = 1800.0,
        until_pass: bool = False, say=print, stop: threading.Event | None = None,
        poll_s: float = 0.2, clock=time.monotonic) -> str:
    """Walk until done, timed out or stopped; returns why it ended."""
    is_hist = getattr(source, "is_history", None)
    for ev in source.history():
        walk.feed(ev, history=True)
    say("Zones (%d), as the receiver knows them now:" % len(ids))
    for z in walk.walked(ids):
        say(zone_line(z))
    driver.prepare(walk, ids)
    end = clock() + timeout
    busy = True
    reason = None
    try:
        while True:
            for ev in source.poll():
                hist = bool(is_hist and is_hist(ev))
                for z, old, new, text in walk.feed(ev, history=hist):
                    if z is None:
                        say("receiver: " + text)
                    elif z.id in ids:
                        say("receiver: zone %d %s: %s -> %s" % (z.id, text, old, new)
                            if old != new else "receiver: zone %d %s" % (z.id, text))
                        if old != new:
                            say(zone_line(z))
            if busy:
                busy = driver.step(walk)
            if not busy and walk.done(ids, until_pass):
                reason = "all zones passed" if walk.done(ids, True) else \
                    "every zone has a result"
                break
            if not busy and driver.walks_alone and not until_pass:
                # the driver tripped (or skipped) every zone and waited out
                # each one's time: a zone still not seen has that result
                reason = "every zone walked; %d without a result from the receiver" % sum(
                    1 for z in walk.walked(ids) if z.status not in FINAL)
                break
            if stop is not None and stop.is_set():
                reason = "ended by the installer"
                break
            if clock() > end:
                reason = "time limit (%.0f s) reached" % timeout
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        reason = "ended by the installer (interrupt)"
    driver.finish(walk)
    # last events (a restore, the disarm) that are already at the receiver
    for ev in source.poll():
        walk.feed(ev, history=bool(is_hist and is_hist(ev)))
    return reason


# -- the report -----------------------------------------------------------------------------


def report(walk: WalkTest, ids: list[int], meta: dict) -> dict:
    zones = [z.to_dict() for z in walk.walked(ids)]
    counts: dict[str, int] = {}
    for z in zones:
        counts[z["result"]] = counts.get(z["result"], 0) + 1
    unexpected = [dict(u, text=unexpected_text(u)) for u in walk.unexpected]
    if unexpected:
        counts["unexpected alarm or trouble"] = len(unexpected)
    return {
        "report": "guardline commissioning walk test",
        "format": 1,
        **meta,
        "partitions": [p for p in walk.partitions.values()],
        "zones": zones,
        "unexpected": unexpected,
        "notes": [dict(n) for n in walk.notes],
        "summary": {"zones": len(zones), **counts},
        "result": "PASS" if all(z["result"] == PASSED for z in zones) and not unexpected
        else "FAIL",
    }


def unexpected_text(u: dict) -> str:
    """One unexpected alarm or trouble, for the installer's to-do list."""
    e = u["event"]
    if e["code"] == LOG_OVERFLOW:
        return "%s at %s (event %s): the panel's queue dropped reports, and a zone's may be " \
               "among them: walk again every zone that has not passed, and find why the " \
               "panel could not report (its paths, the receiver)" % (
                   e["description"], e["received_at"], e["event_id"])
    cls = contactid.event_class(e["code"])
    text = "%s at %s (event %s): a real %s the walk did not cause" % (
        e["description"], e["received_at"], e["event_id"], cls)
    if u.get("restored"):
        return text + "; restored at %s: find out why; the central station has it as " \
                      "an alarm to resolve" % u["restored"]["received_at"]
    return text + ", still not restored: find the cause and clear it; the central station " \
                  "has it as an alarm to resolve"


def todo(r: dict) -> list[str]:
    """What the installer must do before handover (empty: nothing)."""
    failed = [z for z in r["zones"] if z["result"] != PASSED]
    out = ["zone %d (%s): %s" % (z["id"], z["name"], z["verdict"]) for z in failed]
    out += [u["text"] for u in r.get("unexpected") or []]
    if failed:
        out.append("walk these zones again after the repair "
                   "(guardline-panel walk-test ... --zones %s)"
                   % ",".join(str(z["id"]) for z in failed))
    return out


def _md_escape(s) -> str:
    return str(s if s is not None else "").replace("|", "\\|").replace("\n", " ")


def render_markdown(r: dict) -> str:
    b = r.get("bundle") or {}
    f = r.get("flash") or {}
    out = [
        "# Commissioning walk test: account %s" % r["account"], "",
        "**Result: %s** (%d zones: %s)" % (r["result"], r["summary"]["zones"], ", ".join(
            "%d %s" % (v, k) for k, v in sorted(r["summary"].items()) if k != "zones")), "",
        "| | |", "| --- | --- |",
        "| Account | %s |" % _md_escape(r["account"]),
        "| Site | %s |" % _md_escape(r.get("site_name")),
        "| Site address | %s |" % _md_escape(r.get("site_address")),
        "| Panel | %s (%s) |" % (_md_escape(r.get("panel_name")), _md_escape(r.get("panel_kind"))),
        "| Installer | %s |" % _md_escape(r.get("installer")),
        "| Walk started / ended (UTC) | %s / %s |" % (r["started_at"], r["ended_at"]),
        "| Ended because | %s |" % _md_escape(r.get("ended_because")),
        "| Zones tripped by | %s |" % _md_escape(r.get("mode")),
        "| Proof source | %s |" % _md_escape(r.get("receiver_source")),
        "| Firmware bundle sha256 | `%s` |" % _md_escape(b.get("bundle_sha256") or "unknown"),
        "| Firmware version / board | %s / %s |" % (_md_escape(b.get("firmware_version")),
                                                    _md_escape(b.get("board"))),
        "| Built | %s (%s, source %s) |" % (_md_escape(b.get("built_at")),
                                            _md_escape(b.get("mpy_cross_version")),
                                            _md_escape(b.get("source_revision"))),
        "| Flashed and verified on the device | %s |" % (
            "%s on %s" % (f.get("finished_at"), f.get("port")) if f else "no flash record"),
        "",
        "## Zones", "",
        "| Zone | Name | Type | Partition | Result | Receiver's record |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for z in r["zones"]:
        flag = {PASSED: "passed", FAULT: "**FAULT**", UNEXPECTED: "**UNEXPECTED**",
                NOT_SEEN: "**NOT SEEN**", SKIPPED: "**SKIPPED**"}.get(z["result"], z["result"])
        rec = z["verdict"]
        if z["first_alarm"]:
            rec += " (event %s)" % z["first_alarm"]["event_id"]
        out.append("| %d | %s | %s | %d | %s | %s |" % (
            z["id"], _md_escape(z["name"]), z["type"], z["partition"], flag, _md_escape(rec)))
    notes = [(z["id"], n) for z in r["zones"] for n in z["notes"]]
    if notes:
        out += ["", "Notes:", ""] + ["- zone %d: %s" % (i, _md_escape(n)) for i, n in notes]
    arming = [(p, e) for p in r["partitions"] for e in p["log"]]
    if arming:
        out += ["", "## Partitions (receiver's record)", ""]
        for p, e in arming:
            out.append("- partition %d (%s) %s at %s: %s" % (
                p["id"], _md_escape(p["name"]), "armed" if e["armed"] else "disarmed",
                e["received_at"], _md_escape(e["description"])))
    if r.get("unexpected"):
        out += ["", "## Unexpected alarms and troubles (receiver's record)", ""]
        out += ["- %s" % _md_escape(u["text"]) for u in r["unexpected"]]
    if r.get("notes"):
        out += ["", "## During the walk (receiver's record)", ""]
        out += ["- %s" % _md_escape(n["text"]) for n in r["notes"]]
    out += ["", "## To do before handover", ""]
    items = todo(r)
    out += ["- %s" % _md_escape(t) for t in items] or [
        "- nothing: every zone reached the receiver as configured"]
    out += ["", "Signed (installer): ______________________   "
            "Signed (customer): ______________________", ""]
    return "\n".join(out)


_HTML_STYLE = """
body{font:11pt/1.35 system-ui,sans-serif;margin:2em;color:#111}
h1{font-size:16pt;margin:0 0 .4em}h2{font-size:13pt;margin:1.2em 0 .4em}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid #999;padding:.25em .45em;text-align:left;vertical-align:top}
th{background:#eee}.meta th{width:16em}
code{font:9.5pt ui-monospace,monospace;word-break:break-all}
.result-PASS{color:#060}.result-FAIL{color:#a00}
tr.bad td{background:#fde2e2;font-weight:600}
tr.bad td.result{color:#a00}
ul.ev{margin:0;padding-left:1.1em;font-weight:normal}
.sign{margin-top:3em;display:flex;gap:4em}.sign div{flex:1;border-top:1px solid #000;
padding-top:.3em}
@media print{body{margin:0}tr{break-inside:avoid}
tr.bad td{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""


def _event_items(z: dict) -> list[tuple[str, dict]]:
    """(what, event) for every receiver event a zone's result rests on."""
    out = [("alarm", e) for e in z.get("alarms") or []]
    for f in z.get("faults") or []:
        out.append(("loop fault", f["event"]))
        out.append(("fault restored", f["restored"]))
    if z.get("open_fault"):
        out.append(("loop fault, still open" + (" (before the walk)" if z.get(
            "faulted_at_start") else ""), z["open_fault"]))
    out += [("unexpected", e) for e in z.get("unexpected") or []]
    return out


def _html_row(k, v, raw: bool = False) -> str:
    return "<tr><th>%s</th><td>%s</td></tr>" % (html.escape(k), v if raw else html.escape(str(
        v if v is not None else "")))


def _html_meta(r: dict) -> list[str]:
    """The page's head: the result and what was walked, where, by whom,
    with which firmware (the bundle and its flash record)."""
    e = html.escape
    row = _html_row
    b = r.get("bundle") or {}
    f = r.get("flash") or {}
    summary = ", ".join("%d %s" % (v, k) for k, v in sorted(r["summary"].items())
                        if k != "zones")
    return ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            "<title>Commissioning walk test: account %s</title>" % e(str(r["account"])),
            "<style>%s</style></head><body>" % _HTML_STYLE,
            "<h1>Commissioning walk test: account %s</h1>" % e(str(r["account"])),
            '<p class="result result-%s"><strong>Result: %s</strong> (%d zones: %s)</p>' % (
                e(r["result"]), e(r["result"]), r["summary"]["zones"], e(summary)),
            '<table class="meta">',
            row("Account", r["account"]), row("Site", r.get("site_name")),
            row("Site address", r.get("site_address")),
            row("Panel", "%s (%s)" % (r.get("panel_name"), r.get("panel_kind"))),
            row("Installer", r.get("installer")),
            row("Walk started / ended (UTC)", "%s / %s" % (r["started_at"], r["ended_at"])),
            row("Ended because", r.get("ended_because")),
            row("Zones tripped by", r.get("mode")),
            row("Proof source", r.get("receiver_source")),
            row("Firmware bundle sha256", "<code>%s</code>" % e(
                b.get("bundle_sha256") or "unknown"), raw=True),
            row("Firmware version / board", "%s / %s" % (b.get("firmware_version"),
                                                         b.get("board"))),
            row("Built", "%s (%s, source %s)" % (b.get("built_at"), b.get("mpy_cross_version"),
                                                 b.get("source_revision"))),
            row("Flashed and verified on the device",
                "%s on %s (bundle <code>%s</code>)" % (
                    e(str(f.get("finished_at"))), e(str(f.get("port"))),
                    e(str(f.get("bundle_sha256")))) if f else "no flash record", raw=True),
            "</table>"]


def _html_zone(z: dict) -> str:
    """One zone's row: its result (a zone that did not pass: class bad),
    the verdict, and the receiver's events that prove it, by id."""
    e = html.escape
    bad = z["result"] != PASSED
    evs = "".join(
        '<li data-event-id="%s">%s: event %s, %03d q%s %s, received %s%s</li>' % (
            e(str(ev.get("event_id"))), e(what), e(str(ev.get("event_id"))), ev["code"],
            e(str(ev.get("qualifier"))), e(ev.get("description") or ""),
            e(str(ev.get("received_at"))),
            ", panel time %s" % e(str(ev["event_time"])) if ev.get("event_time") else "")
        for what, ev in _event_items(z))
    notes = "".join("<li>note: %s</li>" % e(n) for n in z.get("notes") or [])
    return ('<tr class="zone%s" data-zone="%d" data-result="%s"><td>%d</td><td>%s</td>'
            '<td>%s</td><td>%d</td><td class="result">%s</td><td>%s%s</td></tr>' % (
                " bad" if bad else "", z["id"], e(z["result"]), z["id"], e(z["name"]),
                e(z["type"]), z["partition"],
                e(z["result"].replace("_", " ").upper() if bad else z["result"]),
                e(z["verdict"]), '<ul class="ev">%s%s</ul>' % (evs, notes)
                if evs or notes else ""))


def _html_told(title: str, cls: str, items, li_class: str) -> list[str]:
    """A section of receiver events told in words ({"event", "text"})."""
    if not items:
        return []
    e = html.escape
    return (["<h2>%s (receiver's record)</h2><ul class=\"%s\">" % (e(title), cls)] +
            ['<li%s data-event-id="%s">%s</li>' % (li_class, e(str(i["event"].get("event_id"))),
                                                   e(i["text"])) for i in items] + ["</ul>"])


def _html_tail(r: dict) -> list[str]:
    """The partitions' arming as the receiver has it, what it has that no
    walk caused, the installer's to-do list, and the signatures."""
    e = html.escape
    out = []
    arming = [(p, ev) for p in r["partitions"] for ev in p["log"]]
    if arming:
        out.append("<h2>Partitions (receiver's record)</h2><ul>")
        for p, ev in arming:
            out.append("<li>partition %d (%s) %s at %s: %s (event %s)</li>" % (
                p["id"], e(p["name"]), "armed" if ev["armed"] else "disarmed",
                e(str(ev["received_at"])), e(ev["description"] or ""),
                e(str(ev.get("event_id")))))
        out.append("</ul>")
    out += _html_told("Unexpected alarms and troubles", "unexpected", r.get("unexpected"),
                      ' class="bad"')
    out += _html_told("During the walk", "notes", r.get("notes"), "")
    out.append('<h2>To do before handover</h2><ul class="todo">')
    out += ["<li>%s</li>" % e(t) for t in todo(r)] or [
        "<li>nothing: every zone reached the receiver as configured</li>"]
    out += ["</ul>", '<div class="sign"><div>Signed (installer)</div>'
            "<div>Signed (customer)</div></div>", "</body></html>", ""]
    return out


def render_html(r: dict) -> str:
    """The report as one self-contained, printable HTML page (no scripts,
    no external style sheets or images): the same facts as the Markdown,
    each zone's receiver events with their ids and times, and the zones
    that did not pass highlighted (row class ``bad``)."""
    out = _html_meta(r)
    out += ["<h2>Zones</h2>",
            '<table class="zones"><thead><tr><th>Zone</th><th>Name</th><th>Type</th>'
            "<th>Partition</th><th>Result</th><th>Receiver's record</th></tr></thead><tbody>"]
    out += [_html_zone(z) for z in r["zones"]]
    out.append("</tbody></table>")
    out += _html_tail(r)
    return "\n".join(out)


def write_report(report_dir: str, r: dict) -> tuple[str, str, str]:
    """(json, markdown, html) paths."""
    os.makedirs(report_dir, exist_ok=True)
    stamp = r["started_at"].replace(":", "").replace("-", "").split(".")[0]
    base = os.path.join(report_dir, "walktest-%s-%s" % (r["account"], stamp))
    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump(r, f, indent=1)
        f.write("\n")
    with open(base + ".md", "w", encoding="utf-8") as f:
        f.write(render_markdown(r))
    with open(base + ".html", "w", encoding="utf-8") as f:
        f.write(render_html(r))
    return base + ".json", base + ".md", base + ".html"
