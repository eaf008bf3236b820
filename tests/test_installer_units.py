"""Installer tooling, piece by piece: the walk-test core (sans-I/O) and
its drivers with fakes, report rendering, provisioning (templates, new
configs, users, private files), check's pointers and hints, manifests,
and the runtime step's command lines and image checks (no board here:
esptool is never run)."""

import datetime
import html.parser
import io
import json
import os
import stat
import struct
import sys
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from firmware import DEVICE_DIR, REPO
from firmware import build as fwbuild
from firmware import cli
from firmware import flash as F
from firmware import provision as P
from firmware import walktest as W
from testkit.configs import scenario_config
from testkit.inproc import InProcessPanel

ACCT = 1001
ZONES = [
    {"id": 1, "name": "front door", "type": "entry_exit", "partition": 1},
    {"id": 2, "name": "lobby glass", "type": "instant", "partition": 1},
    {"id": 3, "name": "cabinet tamper", "type": "tamper", "partition": 1},
    {"id": 4, "name": "teller hold-up", "type": "holdup", "partition": 2},
    {"id": 5, "name": "smoke", "type": "fire", "partition": 2},
]
PARTS = [{"id": 1, "name": "lobby"}, {"id": 2, "name": "teller line"}]

_ids = iter(range(1, 10**9))


def ev(code, zone, q=1, partition=None, account=ACCT, source="panel", t=1.7e9):
    return {"id": next(_ids), "account": str(account), "source": source, "code": code,
            "qualifier": q, "zone": zone,
            "partition": partition if partition is not None else
            {z["id"]: z["partition"] for z in ZONES}.get(zone, 1),
            "received_at": t, "event_time": t, "description": "d"}


def walk():
    return W.WalkTest(ACCT, ZONES, PARTS)


# -- the walk-test core ----------------------------------------------------------------


def test_expected_code_passes_and_other_codes_do_not():
    w = walk()
    assert w.zones[2].status == W.NOT_SEEN
    ch = w.feed(ev(130, 2))
    assert ch and ch[0][0].id == 2 and ch[0][2] == W.PASSED
    assert w.zones[2].alarms[0]["code"] == 130
    w.feed(ev(132, 1))  # a follower's code from an entry/exit zone
    assert w.zones[1].status == W.UNEXPECTED
    assert "differs from the config" in w.zones[1].verdict()
    w.feed(ev(134, 1))  # its own code later does not clear the wrong one
    assert w.zones[1].status == W.UNEXPECTED
    assert w.zones[1].verdict().startswith("walked (134 at ")


def test_loop_faults_flag_the_zone_until_restored_and_tripped():
    w = walk()
    w.feed(ev(372, 2))
    z = w.zones[2]
    assert z.status == W.FAULT and "short circuit" in z.verdict()
    w.feed(ev(130, 2))  # alarm while the fault is open: still a fault
    assert z.status == W.FAULT
    w.feed(ev(372, 2, q=3))
    assert z.status == W.PASSED and "after a loop fault" in z.verdict()
    assert z.faults[0]["event"]["code"] == 372 and z.faults[0]["restored"]["qualifier"] == 3
    w.feed(ev(373, 5))
    assert w.zones[5].status == W.FAULT and "fire loop" in w.zones[5].verdict()
    w.feed(ev(144, 1))
    w.feed(ev(144, 1, q=3))
    assert w.zones[1].status == W.FAULT and "never alarmed after it" in w.zones[1].verdict()


def test_history_counts_only_faults_still_open():
    w = walk()
    w.feed(ev(372, 1), history=True)  # open at the start
    w.feed(ev(144, 2), history=True)
    w.feed(ev(144, 2, q=3), history=True)  # over before the walk: forgotten
    w.feed(ev(130, 2), history=True)  # an old alarm proves nothing today
    w.feed(ev(122, 4), history=True)
    assert w.zones[1].status == W.FAULT and w.zones[1].faulted_at_start
    assert "open before the walk started" in w.zones[1].verdict()
    assert w.zones[2].status == W.NOT_SEEN and w.zones[2].faults == []
    assert w.zones[4].status == W.NOT_SEEN


def test_tamper_zone_passes_only_when_its_144_is_restored():
    w = walk()
    w.feed(ev(144, 3))
    assert w.zones[3].status == W.TRIPPED and not w.done([3])
    w.feed(ev(144, 3, q=3))
    assert w.zones[3].status == W.PASSED and w.done([3])
    w2 = walk()
    w2.feed(ev(144, 3), history=True)  # a loop open since before the walk
    assert w2.zones[3].status == W.FAULT and "cut wire" in w2.zones[3].verdict()
    # at the end of a walk a 144 never restored reads as a fault
    w3 = walk()
    w3.feed(ev(144, 3))
    assert w3.zones[3].to_dict()["result"] == W.FAULT


def test_events_that_are_not_the_zones_are_ignored():
    w = walk()
    w.feed(ev(350, 1, source="receiver"))  # supervision: zone field = path
    w.feed(ev(350, 1))  # the panel's own comm trouble, zone = path 1
    w.feed(ev(130, 2, account=9999))
    w.feed(ev(121, 2))  # duress: zone field = user 2
    w.feed(ev(130, 77))  # not a configured zone
    assert all(z.status == W.NOT_SEEN for z in w.zones.values())
    # ... but the panel's own alarms and troubles are the installer's business
    assert [u["event"]["code"] for u in w.unexpected] == [350, 121, 130]
    ch = w.feed(ev(401, 2, q=3, partition=1))  # closing by user 2 arms partition 1
    assert w.armed(1) and ch[0][0] is None and "ARMED" in ch[0][3]
    assert w.zones[2].status == W.NOT_SEEN
    w.feed(ev(401, 2, q=1, partition=1))
    assert not w.armed(1)
    assert [e["armed"] for e in w.partitions[1]["log"]] == [True, False]


def test_a_real_trouble_during_a_walk_fails_it_and_is_on_the_todo_list():
    """Seen: a door panel in walk-test mode raised a real 432 (bolt
    trouble, pending at the central station as an alarm) and the report
    said PASS with the 432 as a side note."""
    zones = ZONES + [{"id": 6, "name": "bolt switch", "type": "bolt", "partition": 1}]
    w = W.WalkTest(ACCT, zones, PARTS)
    w.feed(ev(607, 1))  # walk-test mode on (by user 1)
    w.feed(ev(611, 6))
    assert w.zones[6].status == W.PASSED
    ch = w.feed(ev(432, 6))
    z = w.zones[6]
    assert z.status == W.UNEXPECTED and ch[0][2] == W.UNEXPECTED
    assert z.verdict().startswith("walked (611 at ") and "a real trouble during the walk" in \
        z.verdict() and "operators resolve it" in z.verdict()
    # and one that is no zone's: an exit error (a burglary: CP-01, issue 22),
    # never restored
    w.feed(ev(613, 2))
    ch = w.feed(ev(374, 3, partition=1))
    assert ch[0][0] is None and ch[0][3].startswith("UNEXPECTED burglary 374")
    w.feed(ev(301, 0))
    w.feed(ev(301, 0, q=3))  # mains back: restored, still listed
    r = W.report(w, [2, 6], {"account": ACCT, "started_at": "2025-01-01T00:00:00Z",
                             "ended_at": "2025-01-01T00:10:00Z"})
    assert r["result"] == "FAIL"
    assert r["summary"]["unexpected alarm or trouble"] == 2
    assert [u["event"]["code"] for u in r["unexpected"]] == [374, 301]
    assert r["unexpected"][0]["restored"] is None and r["unexpected"][1]["restored"]
    todo = W.todo(r)
    assert todo[0].startswith("zone 6 (bolt switch): walked (611")
    assert any("still not restored" in t for t in todo)
    md = W.render_markdown(r)
    assert "## Unexpected alarms and troubles" in md
    todo_md = md.split("## To do before handover")[1]
    assert "zone 6 (bolt switch)" in todo_md and "a real trouble the walk did not cause" in \
        todo_md and "nothing:" not in todo_md
    page = W.render_html(r)
    assert '<ul class="unexpected">' in page and "Result: FAIL" in page
    # the same walk without the trouble passes
    w2 = W.WalkTest(ACCT, zones, PARTS)
    for e in (ev(607, 1), ev(611, 6), ev(613, 2), ev(401, 1, q=1, partition=1)):
        w2.feed(e)
    assert W.report(w2, [2, 6], {"account": ACCT, "started_at": "x"})["result"] == "PASS"


T_1042 = 1764931327.0  # 2025-12-05 10:42:07 UTC


def test_a_panel_restart_mid_walk_is_reported_and_the_walk_goes_on():
    """Seen: a 305 (the panel restarted) in the middle of a walk failed the
    whole walk as an unexpected trouble.  It is told to the installer, the
    zones walked before it keep their results, the walk goes on (in
    walk-test mode the panel left the mode: --auto starts it again), and
    only a loss of reports (624) fails it."""
    w = walk()
    w.feed(ev(607, 1))  # walk-test mode on
    w.feed(ev(613, 2))
    ch = w.feed(ev(305, 0, partition=0, t=T_1042))
    assert ch == [(None, None, None, "the panel restarted at 10:42:07 UTC; zones walked "
                   "before it are kept; it left walk-test mode (zones tripped now report "
                   "as alarms until walk-test mode is started again)")]
    assert not w.unexpected and w.zones[2].status == W.PASSED and not w.walk_mode
    clock, panel, said = FakeClock(), FakePanel(), []
    d = W.AutoDriver(panel, "7391", zone_timeout=30, say=said.append, clock=clock)
    d.walk_mode, d.restarts, d.queue = True, 0, [4]
    d.step(w)
    assert said[0] == "panel restarted: walk-test mode again: ok"
    assert panel.log[0]["action"] == "walk_test_start" and d.phase == "arming"
    w.feed(ev(607, 1))
    w.feed(ev(615, 4))
    r = W.report(w, [2, 4], {"account": ACCT, "started_at": "2025-12-05T10:30:00Z",
                             "ended_at": "2025-12-05T10:50:00Z"})
    assert r["result"] == "PASS" and r["notes"][0]["text"].startswith(
        "the panel restarted at 10:42:07 UTC")
    md = W.render_markdown(r)
    assert "## During the walk" in md and "- the panel restarted at 10:42:07 UTC" in md
    assert "nothing: every zone" in md.split("## To do before handover")[1]
    page = W.render_html(r)
    assert '<ul class="notes">' in page and "Result: PASS" in page
    # a restart outside walk-test mode (an armed walk) is told the same way
    w2 = walk()
    assert w2.feed(ev(305, 0, t=T_1042))[0][3] == (
        "the panel restarted at 10:42:07 UTC; zones walked before it are kept")
    assert w2.feed(ev(305, 0), history=True) == [] and len(w2.notes) == 1
    # reports lost (the panel's 624, zone = how many): the walk fails
    ch = w.feed(ev(624, 3, partition=0))
    assert ch[0][3].startswith("UNEXPECTED status 624")
    r = W.report(w, [2, 4], {"account": ACCT, "started_at": "x"})
    assert r["result"] == "FAIL"
    assert any("a zone's may be among them: walk again" in t for t in W.todo(r))


def test_a_confirmed_alarm_from_two_walked_zones_is_the_armed_walks_own():
    """Seen: an armed walk trips zone after zone, so the panel confirms the
    burglary (139, CP-01: a second intrusion zone within the window) and
    the walk failed with it as a real alarm.  A 139 from two zones this
    walk tripped is what the walk did, said in words; any other 139 (a
    zone not walked, walk-test mode, no first zone) is still unexpected."""
    def armed_walk():
        w = walk()
        w.feed(ev(401, 1, q=3, partition=1))
        w.feed(ev(134, 1))
        w.feed(ev(130, 2))
        return w

    def confirmed(zone=2, text="with zone 1", **kw):
        e = ev(139, zone, t=T_1042, **kw)
        e["text"] = text
        return e

    w = armed_walk()
    c = confirmed()
    ch = w.feed(c)
    assert ch == [(None, None, None, "139 confirmed alarm at 10:42:07 UTC (event %d): the "
                   "walk tripped zones 1 (front door) and 2 (lobby glass) within the panel's "
                   "confirmation window, as an armed walk does: not a fault" % c["id"])]
    assert not w.unexpected and w.zones[2].status == W.PASSED
    w.feed(confirmed(q=3))  # its restore: nothing to add
    r = W.report(w, [1, 2], {"account": ACCT, "started_at": "x", "ended_at": "y"})
    assert r["result"] == "PASS" and W.todo(r) == []
    assert "139 confirmed alarm at 10:42:07 UTC" in W.render_markdown(r)
    # not the walk's: each of these is a real confirmed burglary
    for case in ({"text": "with zone 3"},  # zone 3 never alarmed in this walk
                 {"text": None}, {"zone": 4, "partition": 1}, {"partition": 2}):
        w = armed_walk()
        ch = w.feed(confirmed(**case))
        assert [u["event"]["code"] for u in w.unexpected] == [139], case
        assert ch[0][3].startswith("UNEXPECTED burglary 139")
    w = armed_walk()
    w.feed(ev(139, 2), history=True)
    assert not w.unexpected and not w.notes
    w.feed(ev(607, 1))  # walk-test mode: trips are no alarms, so a 139 is real
    w.feed(confirmed())
    assert [u["event"]["code"] for u in w.unexpected] == [139]


def test_partition_mismatch_is_noted():
    w = walk()
    w.feed(ev(130, 2, partition=2))
    assert w.zones[2].status == W.PASSED
    assert "config says 1" in w.zones[2].notes[0]


def test_done_and_until_pass():
    w = walk()
    ids = [2, 4]
    w.feed(ev(130, 2))
    assert not w.done(ids)
    w.feed(ev(372, 4))
    assert w.done(ids) and not w.done(ids, until_pass=True)
    w.feed(ev(372, 4, q=3))
    w.feed(ev(122, 4))
    assert w.done(ids, until_pass=True)
    assert w.counts(ids)[W.PASSED] == 2


_events = st.builds(
    lambda code, zone, q, hist, src: (ev(code, zone, q, source=src), hist),
    st.sampled_from(sorted(W.ZONE_CODES | {401, 350, 121, 999})), st.integers(0, 6),
    st.sampled_from([1, 3, 6]), st.booleans(), st.sampled_from(["panel", "receiver"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(_events, max_size=40))
def test_a_zone_passes_only_on_a_live_expected_alarm_and_never_with_a_fault_open(seq):
    w = walk()
    for e, hist in seq:
        w.feed(e, history=hist)
    for z in w.zones.values():
        s = z.status
        assert s in (W.PASSED, W.FAULT, W.UNEXPECTED, W.NOT_SEEN, W.TRIPPED)
        if s == W.PASSED:
            assert z.open_fault is None
            assert any(e["source"] == "panel" and not h and e["zone"] == z.id
                       and e["code"] in z.expected and e["qualifier"] == 1 for e, h in seq)
        z.verdict()
        json.dumps(z.to_dict())


# -- drivers, with fakes ------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class FakePanel:
    def __init__(self, refuse=()):
        self.log = []
        self.refuse = refuse

    def __call__(self, req, timeout=10):
        self.log.append(req)
        if req["cmd"] == "key":
            return {"ok": True, "result_name": "refused" if req["action"] in self.refuse
                    else "ok"}
        return {"ok": True}


def test_auto_driver_bypasses_faulted_zones_arms_trips_and_disarms():
    w = walk()
    w.feed(ev(372, 1), history=True)
    clock = FakeClock()
    panel = FakePanel()
    said = []
    d = W.AutoDriver(panel, "7391", zone_timeout=30, say=said.append, clock=clock,
                     walk_mode=False)  # the armed walk (fallback)
    d.prepare(w, [1, 2, 4])
    keys = [(r["action"], r["partition"], r["zone"]) for r in panel.log]
    assert keys == [("bypass", 1, 1), ("arm_away", 1, 0)]
    assert "zone 1: fault already: not tripped" in said
    panel.log.clear()
    assert d.step(w)  # zone 2 waits for the receiver to see partition 1 armed
    assert panel.log == []
    w.feed(ev(401, 1, q=3, partition=1))
    d.step(w)
    assert panel.log == [{"cmd": "zone", "zone": 2, "state": "alarm"}]
    d.step(w)
    assert len(panel.log) == 1  # held in alarm until the receiver has it
    w.feed(ev(130, 2))
    d.step(w)
    assert panel.log[-1] == {"cmd": "zone", "zone": 2, "state": "normal"}
    d.step(w)  # zone 2 final: next is zone 4 (24-hour, no arming needed)
    d.step(w)
    assert panel.log[-1] == {"cmd": "zone", "zone": 4, "state": "alarm"}
    clock.t = 31  # nothing reached the receiver in the zone's time
    d.step(w)
    assert panel.log[-1] == {"cmd": "zone", "zone": 4, "state": "normal"}
    d.step(w)
    assert d.step(w) is False
    assert w.zones[4].status == W.NOT_SEEN
    d.finish(w)
    assert panel.log[-1]["action"] == "disarm"


def test_an_armed_walk_waits_out_the_entry_delay_and_the_abort_window():
    """An entry/exit zone's alarm is held by the panel for the entry delay
    and the abort window (CP-01): the walk must not give up (and disarm,
    which would abort it) before that."""
    from firmware.device import config as C
    cfg, errors = C.validate(scenario_config(7700, timings={"entry_delay_s": 45}))
    assert errors == []
    assert W.zone_wait(cfg, 60) == 45 + 30 + W.REPORT_MARGIN_S
    assert W.zone_wait(cfg, 200) == 200
    assert W.zone_wait({"timings": {}}, 60) == 60


def test_auto_driver_gives_up_on_a_partition_that_never_arms():
    w = walk()
    clock = FakeClock()
    panel = FakePanel(refuse=("arm_away",))
    said = []
    d = W.AutoDriver(panel, "7391", zone_timeout=5, say=said.append, clock=clock,
                     walk_mode=False)
    d.prepare(w, [2])
    assert "arm partition 1 (away): refused" in said
    d.step(w)
    clock.t = 6
    d.step(w)
    assert any("never armed at the receiver" in s for s in said)
    assert not any(r.get("cmd") == "zone" for r in panel.log)
    d.finish(w)
    assert not any(r.get("action") == "disarm" for r in panel.log)


def test_an_auto_walk_ends_when_the_driver_is_through_not_at_the_time_limit():
    """Zone 2's partition never arms at the receiver (skipped), zone 4 is
    tripped and nothing arrives in its time (not seen): nothing is left
    for the tool to do, so the walk ends there with both results."""
    w = walk()
    t = [0.0]

    def clock():  # one second per look at it
        t[0] += 1
        return t[0]

    said = []
    d = W.AutoDriver(FakePanel(), "7391", zone_timeout=5, say=said.append, clock=clock,
                     walk_mode=False)
    reason = W.run(w, ListSource(), d, [2, 4], timeout=1000, say=said.append, poll_s=0,
                   clock=clock)
    assert reason == "every zone walked; 1 without a result from the receiver"
    assert t[0] < 1000
    assert w.zones[2].status == W.SKIPPED and w.zones[4].status == W.NOT_SEEN
    assert "zone 2: partition 1 never armed at the receiver: skipped" in said
    assert W.zone_line(w.zones[2]).startswith("  [SKIP] zone   2 lobby glass")


class ListSource:
    def __init__(self, history=(), batches=()):
        self._h = list(history)
        self.batches = [list(b) for b in batches]

    def history(self):
        return self._h

    def poll(self):
        return self.batches.pop(0) if self.batches else []


def test_run_ends_when_every_zone_has_a_result_and_reports():
    w = walk()
    src = ListSource(history=[ev(372, 1)], batches=[[ev(130, 2)], [], [ev(122, 4)]])
    said = []
    reason = W.run(w, src, W.ManualDriver(said.append), [1, 2, 4], timeout=60,
                   say=said.append, poll_s=0)
    assert reason == "every zone has a result"
    assert any("ARM in AWAY mode" in s for s in said)
    assert any("already faulted" in s and "1" in s for s in said)
    r = W.report(w, [1, 2, 4], {"account": ACCT, "started_at": "2025-01-01T10:00:00.000Z",
                                "ended_at": "2025-01-01T10:05:00.000Z", "site_name": "a|b"})
    assert r["result"] == "FAIL" and r["summary"] == {"zones": 3, "fault": 1, "passed": 2}
    md = W.render_markdown(r)
    assert "| Site | a\\|b |" in md and "**FAULT**" in md and "no flash record" in md


# -- the auto walk against the panel's own logic (in-process, no VM) ---------------------


class PanelFeed:
    """The record an in-process panel's receiver keeps (testkit.inproc), read
    as the walk test reads a receiver's: what is there at the start is
    history, then what came since; each poll lets 100 ms of the panel's
    (virtual) time pass."""

    def __init__(self, panel, account, step_ms=100, restart_on=None):
        self.panel, self.account, self.step_ms, self.last = panel, str(account), step_ms, 0
        self.restart_on = restart_on  # (code, zone): the panel restarts once it is in

    def describe(self):
        return "in-process receiver"

    def site(self):
        return {}

    def history(self):
        rows = self.panel.receiver.events(self.account)
        self.last = rows[-1]["id"] if rows else 0
        return rows

    def poll(self):
        self.panel.advance(self.step_ms)
        rows = self.panel.receiver.events_after(self.account, self.last)
        if rows:
            self.last = rows[-1].id
        if self.restart_on in [(e.code, e.zone) for e in rows]:
            self.panel.power_off()
            self.panel.power_on()
            self.restart_on = None
        return [e.to_json() for e in rows]

    def close(self):
        pass


def auto_walk(tmp_path, walk_mode, before=(), zone_timeout=30, ids=None, restart_on=None,
              cfg=None):
    """The walk test's --auto driver on the firmware's App and Panel in this
    process (testkit.inproc.InProcessPanel), after the control commands in
    `before`; -> (report, what the tool said, the panel)."""
    cfg = cfg or scenario_config(7700)
    p = InProcessPanel(cfg, str(tmp_path / "flash"))
    p.power_on()
    p.advance(2000)  # boot, clock set by the receiver's NAK, 305 stored
    for req in before:
        assert p.ctl(req)["ok"]
    p.advance(1000)
    w = W.WalkTest(cfg["account"], cfg["zones"], cfg["partitions"])
    said = []

    def clock():
        return p.clock() / 1000

    ids = ids or [z["id"] for z in cfg["zones"]]
    d = W.AutoDriver(p, "1234", zone_timeout=zone_timeout, say=said.append, clock=clock,
                     walk_mode=walk_mode)
    reason = W.run(w, PanelFeed(p, cfg["account"], restart_on=restart_on), d, ids, timeout=600,
                   say=said.append, poll_s=0, clock=clock)
    said.append(reason)
    return W.report(w, ids, {"account": cfg["account"]}), said, p


def test_auto_walk_in_walk_test_mode_on_the_panels_logic(tmp_path):
    r, said, p = auto_walk(tmp_path, walk_mode=True)
    assert said[-1] == "all zones passed"
    assert r["result"] == "PASS" and r["summary"] == {"zones": 6, "passed": 6}
    assert {z["id"]: z["first_alarm"]["code"] for z in r["zones"]} == {
        1: 613, 2: 613, 3: 613, 4: 615, 5: 615, 6: 614}
    assert "panel walk-test mode: ok" in said and "end walk-test mode: ok" in said
    st = p.state()
    assert not st["walk_test"] and {x["state"] for x in st["partitions"]} == {"disarmed"}


def test_a_walk_goes_on_after_the_panel_restarts_on_the_panels_logic(tmp_path):
    """The panel restarts once zone 2's walk is at the receiver: the
    installer is told, zones 1 and 2 keep their results, --auto starts
    walk-test mode again and walks the rest; the walk passes."""
    r, said, p = auto_walk(tmp_path, walk_mode=True, restart_on=(613, 2))
    assert p.boots == 2
    assert said[-1] == "all zones passed", said
    assert r["result"] == "PASS" and r["summary"] == {"zones": 6, "passed": 6}
    assert {z["id"]: z["first_alarm"]["code"] for z in r["zones"]} == {
        1: 613, 2: 613, 3: 613, 4: 615, 5: 615, 6: 614}
    told = [s for s in said if "the panel restarted at " in s]
    assert len(told) == 1 and told[0].startswith("receiver: the panel restarted at ") and \
        "zones walked before it are kept; it left walk-test mode" in told[0]
    assert "panel restarted: walk-test mode again: ok" in said
    assert [n["event"]["code"] for n in r["notes"]] == [305] and not r["unexpected"]


def test_armed_walk_bypasses_a_shorted_zone_and_fails_it_on_the_panels_logic(tmp_path):
    # zone 3 (a follower) walked right after zone 1 in the same armed
    # partition: the panel confirms the burglary (139, CP-01), which is the
    # walk's own doing, told in words, and fails nothing
    r, said, p = auto_walk(tmp_path, walk_mode=False,
                           before=[{"cmd": "zone", "zone": 2, "state": "short"}])
    zones = {z["id"]: z for z in r["zones"]}
    assert r["result"] == "FAIL" and r["summary"] == {"zones": 6, "passed": 5, "fault": 1}
    assert zones[2]["result"] == "fault" and "short circuit" in zones[2]["verdict"]
    assert "zone 2 faulted: bypass so partition 1 can arm: ok" in said
    assert "arm partition 1 (away): ok" in said and "disarm partition 1: ok" in said
    assert [z["first_alarm"]["code"] for i, z in sorted(zones.items()) if i != 2] == [
        134, 132, 122, 120, 110]
    assert not r["unexpected"] and [n["event"]["code"] for n in r["notes"]] == [139]
    assert "the walk tripped zones 1 (" in r["notes"][0]["text"]
    assert any(s.startswith("receiver: 139 confirmed alarm at ") for s in said)
    assert {x["state"] for x in p.state()["partitions"]} == {"disarmed"}


def test_armed_walk_gives_up_on_a_partition_the_panel_will_not_arm(tmp_path):
    r, said, p = auto_walk(tmp_path, walk_mode=False, zone_timeout=5,
                           before=[{"cmd": "zone", "zone": 3, "state": "alarm"}])
    assert "arm partition 1 (away): refused" in said
    assert any("partition 1 never armed at the receiver: skipped" in s for s in said)
    zones = {z["id"]: z["result"] for z in r["zones"]}
    assert zones[1] == zones[2] == "skipped"
    assert zones[4] == zones[5] == "passed"  # 24-hour zones need no arming
    assert said[-1] == "every zone has a result"


def test_auto_walk_beside_a_vault_arming_by_its_time_lock_ends_and_reports(tmp_path):
    """Partition 1 has a time lock, closed now: the panel arms it by itself
    (30 s exit delay), so walk-test mode and the tool's arm are refused.
    The tool says the panel is arming it (never "refused"), and leaves it
    armed; the zones that need it armed are skipped when the receiver has
    no closing in their time: final, not passed, with the reason; the walk
    ends when nothing is left to do (not at --timeout) and reports them."""
    tomorrow = (datetime.datetime.now(datetime.timezone.utc)
                + datetime.timedelta(days=1)).isoweekday()
    cfg = scenario_config(7700, timings={"exit_delay_s": 30})
    cfg["partitions"][0]["time_lock"] = {"open": "10:00", "close": "11:00", "days": [tomorrow]}
    r, said, p = auto_walk(tmp_path, walk_mode=True, zone_timeout=5, cfg=cfg)
    assert said[-1] == "every zone has a result", said
    assert "panel walk-test mode: refused; partition 1 is already arming (exit delay) " \
        "(lobby)" in said
    arm = [s for s in said if s.startswith("arm partition 1 (away): ")]
    assert arm == ["arm partition 1 (away): not needed: the panel says it is already arming "
                   "(exit delay) (lobby); the walk waits for the receiver's closing report"]
    assert not any(s.startswith("disarm partition") for s in said)
    zones = {z["id"]: z for z in r["zones"]}
    assert {i: z["result"] for i, z in zones.items()} == {
        1: "skipped", 2: "skipped", 3: "skipped", 4: "passed", 5: "passed", 6: "passed"}
    assert zones[1]["verdict"] == "skipped: partition 1 never armed at the receiver"
    assert r["result"] == "FAIL" and r["summary"] == {"zones": 6, "skipped": 3, "passed": 3}
    items = W.todo(r)
    assert items[0] == "zone 1 (front door): skipped: partition 1 never armed at the receiver"
    assert items[-1].endswith("--zones 1,2,3)")
    r.update(started_at="2025-01-01T10:00:00.000Z", ended_at="2025-01-01T10:01:00.000Z")
    assert "| 1 | front door | entry_exit | 1 | **SKIPPED** | skipped: partition 1 never " \
        "armed at the receiver |" in W.render_markdown(r)
    assert 'data-zone="1" data-result="skipped"' in W.render_html(r)
    # still arming by its time lock: the walk ended before the exit delay, untouched
    assert p.state()["partitions"][0]["state"] == "exit_away"


class ReportHTML(html.parser.HTMLParser):
    """What a reader of the HTML report sees: the meta table (header ->
    text), each zone row (class, data-result, cell texts, the event ids
    listed), and anything that would load from outside the page."""

    def __init__(self, text):
        super().__init__()
        self.meta, self.zones, self.external, self.stack = {}, {}, [], []
        self._th = self._row = self._cell = None
        self._in_meta = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "link", "img", "iframe") or "src" in a or "href" in a:
            self.external.append((tag, a))
        if tag == "table":
            self._in_meta = a.get("class") == "meta"
        if tag == "tr" and "data-zone" in a:
            self._row = {"class": a.get("class", "").split(), "result": a["data-result"],
                         "cells": [], "event_ids": []}
            self.zones[int(a["data-zone"])] = self._row
        if tag in ("td", "th"):
            self._cell = []
        if tag == "li" and self._row is not None and "data-event-id" in a:
            self._row["event_ids"].append(a["data-event-id"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if self._row is not None:
                self._row["cells"].append(text)
            elif self._in_meta and tag == "th":
                self._th = text
            elif self._in_meta and self._th:
                self.meta[self._th] = text
                self._th = None
            self._cell = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_html_report_flags_the_miswired_zone_and_lists_the_receivers_events():
    w = walk()
    short = ev(372, 1, t=1.7e9 - 60)  # miswired: shorted at power-up, never restored
    ok = ev(130, 2, t=1.7e9 + 5)
    w.feed(short, history=True)
    w.feed(ok)
    w.feed(ev(122, 4, t=1.7e9 + 9))
    meta = {"account": ACCT, "started_at": "2025-01-01T10:00:00.000Z",
            "ended_at": "2025-01-01T10:05:00.000Z", "site_name": "Bank <Main> & Co",
            "bundle": {"bundle_sha256": "ab" * 32, "board": "esp32"},
            "flash": {"port": "/dev/ttyUSB0", "finished_at": "2025-01-01T09:00:00Z",
                      "bundle_sha256": "ab" * 32}}
    r = W.report(w, [1, 2, 4], meta)
    doc = ReportHTML(W.render_html(r))
    assert doc.external == []  # self-contained: nothing loaded from elsewhere
    assert doc.meta["Account"] == str(ACCT)
    assert doc.meta["Site"] == "Bank <Main> & Co"  # escaped in the page, read back intact
    assert doc.meta["Firmware bundle sha256"] == "ab" * 32
    assert "/dev/ttyUSB0" in doc.meta["Flashed and verified on the device"]
    assert sorted(doc.zones) == [1, 2, 4]
    z1 = doc.zones[1]
    assert "bad" in z1["class"] and z1["result"] == "fault"
    assert z1["cells"][4] == "FAULT" and "short circuit" in z1["cells"][5]
    assert z1["event_ids"] == [str(short["id"])]  # the receiver's event, by id
    assert "received %s" % W.iso_time(short["received_at"]) in z1["cells"][5]
    assert "bad" not in doc.zones[2]["class"] and doc.zones[2]["result"] == "passed"
    assert doc.zones[2]["event_ids"] == [str(ok["id"])]
    assert [z for z, row in doc.zones.items() if "bad" in row["class"]] == [1]


def test_run_stops_on_the_installers_word_and_on_time():
    w = walk()
    stop = threading.Event()
    stop.set()
    assert W.run(w, ListSource(), W.ManualDriver(lambda s: None), [2], say=lambda s: None,
                 stop=stop, poll_s=0) == "ended by the installer"
    clock = FakeClock()

    class Ticking(ListSource):
        def poll(self):
            clock.t += 10
            return []
    assert W.run(w, Ticking(), W.ManualDriver(lambda s: None), [2], timeout=25,
                 say=lambda s: None, poll_s=0, clock=clock).startswith("time limit")


def test_stream_source_splits_history_by_receive_time_and_skips_noise():
    lines = "\n".join([json.dumps(ev(372, 1, t=100.0)), "not json", "{broken",
                       json.dumps(ev(130, 2, t=300.0)), json.dumps(ev(130, 2, account=7))])
    s = W.StreamSource(stream=io.StringIO(lines + "\n"), account=ACCT, started_at=200.0)
    s._t.join(5)
    got = s.poll()
    assert [e["code"] for e in got] == [372, 130]
    assert [s.is_history(e) for e in got] == [True, False]


def test_stream_source_reports_a_dead_command():
    s = W.StreamSource(command="%s -c \"import sys; sys.stderr.write('no such db'); "
                       "sys.exit(3)\"" % sys.executable, account=ACCT)
    s._t.join(10)
    with pytest.raises(OSError, match="status 3.*no such db"):
        s.poll()


def test_console_tail_shows_panel_lines_as_hints():
    said = []
    t = W.ConsoleTail("loop://", said.append)
    t.ser.write(b"ALARM 130 zone 2 (lobby glass) partition 1\r\n")
    end = time.monotonic() + 20
    while not said and time.monotonic() < end:
        time.sleep(0.05)
    t.close()
    assert said == ["  panel: ALARM 130 zone 2 (lobby glass) partition 1"]


# -- provisioning ------------------------------------------------------------------------


def template(tmp_path, **over):
    t = {"account": 1001, "key": "ab" * 32, "protocol": "native",
         "receivers": [{"transport": "tcp", "host": "rx1.example", "port": 7700},
                       {"transport": "udp", "host": "rx2.example", "port": 7700}],
         "heartbeat_s": 120, "site_name": "First Bank, Main St",
         "zones": {"1": "vault door", "2": "teller 1 hold-up", "40": "back office glass"},
         "partitions": {"1": "vault", "3": "teller line"}}
    t.update(over)
    p = tmp_path / "t.json"
    p.write_text(json.dumps(t))
    return str(p)


@pytest.mark.parametrize("over, msg", [
    ({"protocol": "sia"}, "protocol"), ({"key": "abcd"}, "key"),
    ({"receivers": "rx1:7700"}, "receivers"), ({"heartbeat_s": "60"}, "heartbeat_s"),
    ({"supervision": [{"path": 3, "heartbeat_s": 60}]}, r"supervision\[0\].path: a path is 1"),
    ({"supervision": [{"path": 1, "heartbeat": 60}]}, r"supervision\[0\]: expected"),
    ({"supervision": {"1": {"heartbeat_s": 60}}}, "supervision: expected a list"),
    ({"account": "1001"}, "account"), ({"colour": 1}, "colour: unknown field"),
    ({"receivers": [{"transport": "sctp", "host": "h", "port": 1}]}, "transport"),
    ({"zones": {"one": "x"}}, "zones"),
    # DC-09 (5.5.1.6): the account is 3..16 hex digits, the key AES-128/192/256 or none
    ({"protocol": "dc09"}, "account: expected 3..16 hex digits"),
    ({"protocol": "dc09", "account": "12"}, "account"),
    ({"protocol": "dc09", "account": "12G4"}, "account"),
    ({"protocol": "dc09", "account": "12AB", "key": "ab" * 20}, "key: expected an AES"),
    ({"protocol": "dc09", "account": "12AB", "key": "zz" * 16}, "key")])
def test_template_errors_name_the_field(tmp_path, over, msg):
    with pytest.raises(P.ProvisionError, match=msg):
        P.load_template(template(tmp_path, **over))


def test_new_config_from_template(tmp_path):
    t = P.load_template(template(tmp_path))
    doc, notes = P.new_config("bank", t)
    doc2, _ = P.new_config("bank", t)
    assert doc["code_salt"] != doc2["code_salt"] and len(doc["code_salt"]) == 32
    assert doc["receiver"] == {"primary": {"type": "tcp", "host": "rx1.example", "port": 7700},
                               "backup": {"type": "udp", "host": "rx2.example", "port": 7700}}
    assert doc["timings"]["heartbeat_s"] == 120 and doc["name"] == "First Bank, Main St"
    assert doc["partitions"] == [{"id": 1, "name": "vault"}, {"id": 3, "name": "teller line"}]
    types = {z["id"]: z["type"] for z in doc["zones"]}
    assert types == {1: "entry_exit", 2: "holdup", 40: "instant"}
    assert all(z["partition"] in (1, 3) for z in doc["zones"])
    assert doc["users"] == []
    assert any("no time lock" in n for n in notes)
    assert any("zone 2 'teller 1 hold-up': type holdup" in n for n in notes)
    # valid except for what only the installer can give (users are optional)
    from firmware.device import config as C
    assert C.validate(doc)[1] == []


def test_new_config_options_and_errors():
    doc, notes = P.new_config("door", None, account=77, receivers=[
        P.parse_receiver("10.0.0.5:7700")])
    assert len(doc["key"]) == 64 and any("new key was generated" in n for n in notes)
    assert "backup" not in doc["receiver"] and any("no backup path" in n for n in notes)
    assert [z["type"] for z in doc["zones"]].count("door") == 1
    with pytest.raises(P.ProvisionError, match="no account"):
        P.new_config("door", None, receivers=[P.parse_receiver("h:1")])
    with pytest.raises(P.ProvisionError, match="heartbeat_s"):
        P.new_config("door", None, account=1, receivers=[P.parse_receiver("h:1")],
                     heartbeat_s=5)
    with pytest.raises(P.ProvisionError, match="--key"):
        P.new_config("door", None, account=1, key="zz", receivers=[P.parse_receiver("h:1")])
    for bad in ("h", "h:0", "ftp/h:1", ":80"):
        with pytest.raises(P.ProvisionError):
            P.parse_receiver(bad)
    assert P.guess_zone_type("Entrance door", "door", "door") == ("door", "name 'door', "
                                                                          "door panel")
    assert P._fit("x" * 40 + "é") == "x" * 32


# the documented example (docs/installer.md, step 0): names only, as the
# receiver keeps them; supervision as the receiver's template says it
DOC_ZONES = {"1": "vault door", "2": "vault seismic", "4": "teller 1 hold-up",
             "9": "lobby PIR"}
DOC_PARTS = {"1": "vault", "3": "teller line", "4": "lobby"}


def test_new_takes_receiver_overrides_for_a_template_without_addresses(tmp_path, capsys):
    """A receiver config without a matching listener gives "receivers": []
    and one listening on all addresses gives 0.0.0.0: --receiver wins over
    both, and without it the installer is told what to pass."""
    out = str(tmp_path / "site.json")
    empty = template(tmp_path, receivers=[])
    assert cli.main(["new", "--kind", "bank", "--from-template", empty, "--receiver",
                     "tcp/rx1.example:7700", "-o", out]) == 0
    assert json.load(open(out))["receiver"]["primary"] == {"type": "tcp",
                                                           "host": "rx1.example", "port": 7700}
    capsys.readouterr()
    assert cli.main(["new", "--kind", "bank", "--from-template", empty, "-o", out,
                     "--force"]) == 1
    assert "give --receiver" in capsys.readouterr().err
    wild = template(tmp_path, receivers=[{"transport": "tcp", "host": "0.0.0.0", "port": 7700}])
    assert cli.main(["new", "--kind", "bank", "--from-template", wild, "-o", out,
                     "--force"]) == 1
    err = capsys.readouterr().err
    assert "0.0.0.0:7700, the address the receiver listens on" in err and "--receiver" in err
    assert cli.main(["new", "--kind", "bank", "--from-template", wild, "-o", out, "--force",
                     "--receiver", "rx1.example:7700", "--receiver", "udp/rx2.example:7700"]) \
        == 0
    assert json.load(open(out))["receiver"]["backup"]["host"] == "rx2.example"
    with pytest.raises(P.ProvisionError, match="--receiver"):
        P.new_config("bank", None, account=1, receivers=[P.parse_receiver("0.0.0.0:7700")])


def test_new_puts_each_zone_in_the_partition_its_name_says(tmp_path):
    t = P.load_template(template(tmp_path, zones=DOC_ZONES, partitions=DOC_PARTS))
    doc, notes = P.new_config("bank", t)
    assert {z["id"]: z["partition"] for z in doc["zones"]} == {1: 1, 2: 1, 4: 3, 9: 4}
    assert any("zone 9 'lobby PIR'" in n and "partition 4 (name shares 'lobby'" in n
               for n in notes)
    # no partition named in the zone's name: the first, and the note says so
    t = P.load_template(template(tmp_path, zones={"5": "back office glass"},
                                 partitions=DOC_PARTS))
    doc, notes = P.new_config("bank", t)
    assert doc["zones"][0]["partition"] == 1
    assert any("no partition's name is in the zone's name: the first partition" in n
               for n in notes)
    assert P.guess_partition("teller 2 hold-up", {3: "teller line", 5: "teller office"}) == (
        None, "no partition's name is in the zone's name")


# as the receiver writes it (receiver/cli.py panel_template): each supervised path
SUP_BOTH = [{"path": 1, "heartbeat_s": 60, "grace_s": 30},
            {"path": 2, "heartbeat_s": 60, "grace_s": 30}]


def test_new_lines_up_each_paths_heartbeat_with_the_receivers_supervision(tmp_path):
    """docs/installer.md's `--paths 1,2 --heartbeat 60 --grace 30`: the
    example's backup_heartbeat_s 600 would make the receiver report the
    backup path silent every 90 s."""
    # a template as the receiver writes it today (heartbeat_s, paths not
    # said): both paths heard that often, the backup may be supervised
    doc, notes = P.new_config("bank", P.load_template(template(tmp_path, heartbeat_s=60)))
    assert doc["timings"]["heartbeat_s"] == 60 and doc["timings"]["backup_heartbeat_s"] == 60
    assert any("does not say whether it supervises the backup path" in n for n in notes)
    # with the receiver's supervision per path
    t = P.load_template(template(tmp_path, heartbeat_s=60, supervision=SUP_BOTH))
    doc, notes = P.new_config("bank", t, utc_offset_min=-300)
    assert doc["timings"]["heartbeat_s"] == 60 and doc["timings"]["backup_heartbeat_s"] == 60
    assert any("backup_heartbeat_s 60 s (the receiver supervises the backup path (2) at 60 s "
               "+ 30 s grace)" in n for n in notes)
    assert doc["utc_offset_min"] == -300 and any("UTC-05:00" in n for n in notes)
    assert P.supervision_mismatches(doc["timings"], t["supervision"]) == []
    # primary only supervised: the backup keeps the example's, and says why
    t1 = P.load_template(template(tmp_path, heartbeat_s=60,
                                  supervision=SUP_BOTH[:1]))
    doc, notes = P.new_config("bank", t1)
    assert doc["timings"]["backup_heartbeat_s"] == 600
    assert any("the receiver does not supervise the backup path (2)" in n for n in notes)
    # an unsupervised account ([]): the example's timings, said so
    doc, notes = P.new_config("bank", P.load_template(template(tmp_path, supervision=[])))
    assert doc["timings"]["backup_heartbeat_s"] == 600
    assert any("heartbeat_s 120 s" in n for n in notes)  # the template's heartbeat_s
    # a heartbeat longer than the receiver supervises is refused
    with pytest.raises(P.ProvisionError, match="--heartbeat 300: the receiver supervises the "
                                               "primary path \\(1\\) at 60 s"):
        P.new_config("bank", t, heartbeat_s=300)
    # utc_offset_min: never silently the example's (UTC+1)
    doc, notes = P.new_config("bank", t)
    assert doc["utc_offset_min"] == P.local_utc_offset_min()
    assert any("this computer's time zone now" in n for n in notes)
    with pytest.raises(P.ProvisionError, match="--utc-offset"):
        P.new_config("bank", t, utc_offset_min=900)


def test_check_flags_a_heartbeat_the_receiver_supervises_shorter(tmp_path, capsys):
    doc = json.load(open(os.path.join(REPO, "examples", "bank.json")))
    doc["timings"]["heartbeat_s"] = 60  # backup_heartbeat_s stays the example's 600
    cfg = tmp_path / "site.json"
    cfg.write_text(json.dumps(doc, indent=1))
    assert cli.main(["check", str(cfg)]) == 0  # on its own: valid
    capsys.readouterr()
    t = template(tmp_path, heartbeat_s=60, supervision=SUP_BOTH)
    assert cli.main(["check", str(cfg), "--template", t]) == 1
    err = capsys.readouterr().err
    line = [i for i, l in enumerate(cfg.read_text().splitlines(), 1)
            if "backup_heartbeat_s" in l][0]
    assert ("%s:%d: timings.backup_heartbeat_s: 600 s, but the receiver supervises the backup "
            "path (2) at 60 s + 30 s grace: it would report the path silent every 90 s"
            % (cfg, line)) in err
    # the account as `guardline-receiver accounts show N --json` prints it
    acct = tmp_path / "acct.json"
    acct.write_text(json.dumps({"number": "1001", "heartbeat_s": 60, "grace_s": 30,
                                "supervised_paths": [1, 2], "supervised": True}))
    assert cli.main(["check", str(cfg), "--template", str(acct)]) == 1
    assert "timings.backup_heartbeat_s: 600 s" in capsys.readouterr().err
    acct.write_text(json.dumps({"number": "1001", "heartbeat_s": 60, "grace_s": 30,
                                "supervised_paths": [1], "supervised": True}))
    assert cli.main(["check", str(cfg), "--template", str(acct)]) == 0
    # a backup path the receiver supervises but the config does not have
    del doc["receiver"]["backup"]
    cfg.write_text(json.dumps(doc, indent=1))
    assert cli.main(["check", str(cfg), "--template", t]) == 1
    assert "receiver.backup: none, but the receiver supervises the backup path (2)" in \
        capsys.readouterr().err


def test_check_flags_an_unknown_key_inside_a_zone(tmp_path, capsys):
    doc = json.load(open(os.path.join(REPO, "examples", "bank.json")))
    doc["zones"][3]["silet"] = True  # a typo: the hold-up zone would not be made silent
    doc["users"][0]["partition"] = [1]
    p = tmp_path / "b.json"
    p.write_text(json.dumps(doc, indent=1))
    assert cli.main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert "zones[3].silet: unknown field" in err and "did you mean 'silent'" in err
    assert "users[0].partition: unknown field" in err and "did you mean 'partitions'" in err
    line = [i for i, l in enumerate(p.read_text().splitlines(), 1) if '"silet"' in l][0]
    assert "%s:%d: zones[3].silet" % (p, line) in err


def test_write_private_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        p = tmp_path / "c.json"
        P.write_private(str(p), "{}")
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
        p.chmod(0o644)
        P.write_private(str(p), "{\"a\": 1}")  # replaced, not rewritten in place
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600 and p.read_text() == "{\"a\": 1}"
    finally:
        os.umask(old)
    assert os.listdir(tmp_path) == ["c.json"]


def test_cli_new_hides_the_key_unless_asked_and_never_overwrites(tmp_path, capsys):
    t = template(tmp_path)
    out = str(tmp_path / "site.json")
    assert cli.main(["new", "--kind", "bank", "--from-template", t, "-o", out]) == 0
    assert "ab" * 32 not in capsys.readouterr().out
    assert cli.main(["new", "--kind", "bank", "--from-template", t, "-o", out]) == 1
    assert "exists" in capsys.readouterr().err
    assert cli.main(["new", "--kind", "bank", "--from-template", t, "-o", out, "--force",
                     "--show-key", "--wifi-ssid", "bank-iot", "--wifi-password", "s3cret"]) == 0
    assert "ab" * 32 in capsys.readouterr().out
    assert json.load(open(out))["board"]["wifi"] == {"ssid": "bank-iot", "password": "s3cret"}
    assert cli.main(["new", "--kind", "bank", "--from-template",
                     template(tmp_path, protocol="sia"), "-o", str(tmp_path / "x")]) == 1
    assert not os.path.exists(tmp_path / "x")


def test_new_config_from_a_dc09_template(tmp_path):
    from firmware.device import config as C
    key = "0f" * 24  # AES-192
    t = P.load_template(template(tmp_path, protocol="dc09", account="12ab", key=key))
    assert t["protocol"] == "dc09" and t["account"] == "12AB"
    doc, notes = P.new_config("bank", t)
    assert doc["protocol"] == "dc09"
    assert doc["dc09"] == {"account": "12AB", "key": key, "key_format": "hex", "line": "0"}
    # the example's native account and placeholder key are not carried over
    assert "account" not in doc and "key" not in doc
    cfg, errors = C.validate(doc)
    assert errors == [] and cfg["dc09"]["key"] == key and cfg["dc09"]["account"] == "12AB"
    assert P.account_label(doc) == "12AB"
    assert "DC-09 account 12AB" in P.summary(cfg)
    assert any("line 0" in n for n in notes)
    # a line without a key reports in clear, and the installer is told
    doc, notes = P.new_config("bank", P.load_template(template(
        tmp_path, protocol="dc09", account="0C1E", key="")))
    assert "key" not in doc["dc09"] and C.validate(doc)[1] == []
    assert any("reports in clear" in n for n in notes)
    with pytest.raises(P.ProvisionError, match="--account"):
        P.new_config("bank", t, account=99)
    with pytest.raises(P.ProvisionError, match="--key: a DC-09 key"):
        P.new_config("bank", t, key="ab" * 20)
    doc, notes = P.new_config("bank", t, key="AB" * 16)
    assert doc["dc09"]["key"] == "ab" * 16 and any("overrides" in n for n in notes)


def test_cli_new_dc09_hides_the_key_and_refuses_an_invalid_result(tmp_path, capsys,
                                                                  monkeypatch):
    key = "5e" * 16
    t = template(tmp_path, protocol="dc09", account="0AFF", key=key)
    out = str(tmp_path / "site.json")
    assert cli.main(["new", "--kind", "door", "--from-template", t, "-o", out]) == 0
    printed = capsys.readouterr().out
    assert key not in printed and "hidden" in printed and "DC-09 account 0AFF" in printed
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert cli.main(["check", out]) == 0
    assert "DC-09 account 0AFF" in capsys.readouterr().out
    assert cli.main(["new", "--kind", "door", "--from-template", t, "-o", out, "--force",
                     "--show-key"]) == 0
    assert key in capsys.readouterr().out
    # whatever new_config makes goes through the firmware's validator before it is written
    monkeypatch.setattr(P, "new_config", lambda *a, **k: ({"kind": "door"}, []))
    assert cli.main(["new", "--kind", "door", "--from-template", t,
                     "-o", str(tmp_path / "bad.json")]) == 1
    assert "would not be valid" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "bad.json")


def test_users_prompted_hashed_and_checked(tmp_path, capsys, monkeypatch):
    doc, _ = P.new_config("bank", P.load_template(template(tmp_path)))
    path = str(tmp_path / "s.json")
    P.write_private(path, P.dump_config(doc))
    answers = iter(["2958", "2958", "4417", "4471"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    assert cli.main(["user", "add", path, "--id", "1", "--name", "manager", "--authority",
                     "master"]) == 0
    assert cli.main(["user", "add", path, "--id", "2", "--name", "teller"]) == 1
    assert "differ" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("2958\n"))
    assert cli.main(["user", "add", path, "--id", "3", "--name", "x", "--code", "-"]) == 1
    assert "same code" in capsys.readouterr().err
    assert cli.main(["user", "add", path, "--id", "3", "--name", "duress", "--code", "2959",
                     "--duress", "--partitions", "1,3"]) == 0
    assert cli.main(["user", "add", path, "--id", "4", "--name", "x", "--code", "12a4"]) == 1
    assert cli.main(["user", "add", path, "--id", "4", "--name", "x", "--code", "9876"]) == 1
    assert "consecutive" in capsys.readouterr().err
    assert cli.main(["user", "add", path, "--id", "4", "--name", "x", "--code", "9876",
                     "--allow-weak", "--partitions", "2"]) == 1  # no partition 2 here
    capsys.readouterr()
    assert cli.main(["user", "list", path]) == 0
    assert "DURESS" in capsys.readouterr().out
    assert cli.main(["user", "remove", path, "--id", "3"]) == 0
    users = json.load(open(path))["users"]
    assert [u["id"] for u in users] == [1]
    # the firmware's own hash function agrees
    sys.path.insert(0, DEVICE_DIR)
    try:
        import users as fw_users
    finally:
        sys.path.remove(DEVICE_DIR)
    assert fw_users.hash_code(bytes.fromhex(doc["code_salt"]), "2958").hex() == \
        users[0]["code_hash"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


# -- check ------------------------------------------------------------------------------


def test_locate_and_hints():
    text = json.dumps({"a": 1, "zones": [{"id": 1, "type": "x"}, {"id": 2}],
                       "s": "q\"uote"}, indent=1)
    where = P.locate(text)
    lines = text.splitlines()
    assert '"type": "x"' in lines[where["zones[0].type"] - 1]
    assert lines[where["zones[1]"] - 1].strip() == "{"
    assert P.locate("{not json") == {}
    assert P.hint("zones[1].type: 'instnat' is not one of instant, entry_exit") == \
        " (did you mean 'instant'?)"
    assert P.hint("timings.exit_dely_s: unknown timing (known: exit_delay_s, scan_ms)") == \
        " (did you mean 'exit_delay_s'?)"
    assert P.hint("zones[1].type: 'zzzzzz' is not one of instant, fire") == ""


def test_check_points_at_missing_and_unknown_fields(tmp_path, capsys):
    doc = json.load(open(os.path.join(REPO, "examples", "door.json")))
    del doc["zones"][2]["type"]
    doc["timings"]["unlock_sec"] = 5
    p = tmp_path / "d.json"
    p.write_text(json.dumps(doc, indent=1))
    assert cli.main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    lines = p.read_text().splitlines()
    zl = [i for i, l in enumerate(lines, 1) if "\"name\": \"lock tamper\"" in l][0] - 2
    assert "%s:%d: zones[2].type: missing" % (p, zl) in err  # the zone's object
    assert "timings.unlock_sec: unknown timing" in err and "did you mean 'unlock_s'" in err


def test_check_warns_about_placeholders_and_board_needs(tmp_path, capsys):
    ex = os.path.join(REPO, "examples", "bank.json")
    assert cli.main(["check", ex]) == 0
    err = capsys.readouterr().err
    assert "placeholder key" in err and "placeholder salt" in err
    assert cli.main(["check", ex, "--strict"]) == 1
    capsys.readouterr()
    assert cli.main(["check", ex, "--board", "esp32"]) == 0
    err = capsys.readouterr().err
    assert "receiver.primary.host: 127.0.0.1 is the board itself" in err
    assert "board.wifi: missing" in err


# -- build manifest ----------------------------------------------------------------------


def test_bundle_is_reproducible_and_a_changed_file_is_caught(tmp_path):
    door = os.path.join(REPO, "examples", "door.json")
    m1 = fwbuild.bundle(str(tmp_path / "a"), "rp2", door)
    m2 = fwbuild.bundle(str(tmp_path / "b"), "rp2", door)
    assert m1["bundle_sha256"] == m2["bundle_sha256"]
    assert "board_rp2.mpy" in [f["name"] for f in m1["files"]]
    assert fwbuild.check_bundle(str(tmp_path / "a")) == []
    (tmp_path / "a" / "hal.mpy").unlink()
    (tmp_path / "a" / "main.py").write_text("print('x')\n")
    assert fwbuild.check_bundle(str(tmp_path / "a")) == [
        "hal.mpy: missing", "main.py: sha256 differs from the manifest"]
    mp = tmp_path / "b" / "manifest.json"
    m = json.loads(mp.read_text())
    m["files"][0]["sha256"] = "0" * 64
    mp.write_text(json.dumps(m))
    with pytest.raises(fwbuild.BundleError, match="does not match its file list"):
        fwbuild.read_manifest(str(tmp_path / "b"))
    bad = json.load(open(door))
    bad["zones"][0]["type"] = "dor"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(fwbuild.BundleError, match="zones\\[0\\].type"):
        fwbuild.bundle(str(tmp_path / "c"), "sim", str(tmp_path / "bad.json"))


# -- the runtime: esptool command lines, image checks, UF2 drive --------------------------------


def esp_image(chip_id: int) -> bytes:
    return bytes([0xE9, 3, 2, 0x20]) + b"\0" * 8 + struct.pack("<H", chip_id) + b"\0" * 50


def uf2(family: int, blocks: int = 2, magic_end=F.UF2_MAGIC_END) -> bytes:
    out = b""
    for i in range(blocks):
        head = struct.pack("<8I", F.UF2_MAGIC0, F.UF2_MAGIC1, F.UF2_FLAG_FAMILY,
                           0x10000000 + 256 * i, 256, i, blocks, family)
        out += head + b"\0" * 476 + struct.pack("<I", magic_end)
    return out


def test_esptool_command_lines():
    v5 = F.esptool_commands("fw.bin", "/dev/ttyUSB0", "esp32", 460800, True, ["esptool"], 5)
    assert v5 == [["esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "erase-flash"],
                  ["esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800",
                   "write-flash", "-z", "0x1000", "fw.bin"]]
    v4 = F.esptool_commands("fw.bin", "COM3", "esp32s3", 921600, False, ["esptool.py"], 4)
    assert v4 == [["esptool.py", "--chip", "esp32s3", "--port", "COM3", "--baud", "921600",
                   "write_flash", "-z", "0x0", "fw.bin"]]
    with pytest.raises(F.FlashError, match="--chip"):
        F.esptool_commands("fw.bin", "p", "esp8266")


def test_image_checks(tmp_path):
    p = tmp_path / "fw.bin"
    p.write_bytes(esp_image(0))
    F.check_esp_image(str(p), "esp32")
    with pytest.raises(F.FlashError, match="for esp32, not esp32s3"):
        F.check_esp_image(str(p), "esp32s3")
    p.write_bytes(uf2(F.RP2040_FAMILY))
    with pytest.raises(F.FlashError, match="not an ESP firmware image"):
        F.check_esp_image(str(p), "esp32")
    assert F.check_uf2(str(p)) == 2
    p.write_bytes(uf2(0xE48BFF59))
    with pytest.raises(F.FlashError, match="RP2350"):
        F.check_uf2(str(p))
    p.write_bytes(uf2(F.RP2040_FAMILY, magic_end=0))
    with pytest.raises(F.FlashError, match="bad magic in block 0"):
        F.check_uf2(str(p))
    p.write_bytes(esp_image(0))
    with pytest.raises(F.FlashError, match="multiple of 512"):
        F.check_uf2(str(p))


def test_runtime_cli(tmp_path, capsys):
    fw = tmp_path / "ESP32_GENERIC.bin"
    fw.write_bytes(esp_image(0))
    assert cli.main(["runtime", "--board", "esp32", "--port", "/dev/ttyUSB9", "--dry-run",
                     str(fw)]) == 0
    out = capsys.readouterr().out
    assert "--port /dev/ttyUSB9 " in out and "-z 0x1000 %s" % fw in out
    assert cli.main(["runtime", "--board", "esp32", "--dry-run", str(fw)]) == 2
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\n"
                                        "Board-ID: RPI-RP2\n")
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 %s vfat rw 0 0\n/dev/sdb1 /nonexistent vfat rw 0 0\n" % drive)
    assert F.uf2_drives(str(mounts)) == [str(drive)]
    u = tmp_path / "RPI_PICO_W.uf2"
    u.write_bytes(uf2(F.RP2040_FAMILY))
    assert cli.main(["runtime", "--board", "rp2", "--drive", str(drive), str(u)]) == 0
    assert (drive / "RPI_PICO_W.uf2").read_bytes() == u.read_bytes()
    assert cli.main(["runtime", "--board", "rp2", "--drive", str(drive), str(fw)]) == 1
    assert "not a UF2 file" in capsys.readouterr().err
