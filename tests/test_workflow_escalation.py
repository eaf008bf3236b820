"""Escalation (receiver.workflow.escalation): the policy, and the stateless
scheduler over random alarm timelines with explicit time: each escalation
fires exactly once when its condition held at a scheduler run, never
otherwise, across restarts and with two receivers racing."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.alarms import ACKNOWLEDGED, PENDING, RESOLVED
from receiver.workflow import escalation as esc
from receiver.workflow.common import WorkflowConfigError


def test_default_policy_rules():
    p = esc.EscalationPolicy()
    assert p.rule_for("holdup", 1) == esc.Rule(15, 30)
    assert p.rule_for("fire", 2) == esc.Rule(30, 60)
    assert p.rule_for("trouble", 7) == esc.Rule(60, 480)
    assert p.rule_for("burglary", 4) == esc.Rule(60, 60)
    d = p.deadlines("holdup", 1, 1000.0)
    assert (d.ack_due_at, d.resolve_due_at) == (1015.0, 1000.0 + 1800)


def test_policy_layers_field_by_field():
    p = esc.parse_policy({"ack_within_s": 90, "resolve_within_min": 120,
                          "classes": {"burglary": {"ack_within_s": 45},
                                      "holdup": {"resolve_within_min": 20}},
                          "priorities": {"4": {"resolve_within_min": 30},
                                         "2": {"ack_within_s": 20}}})
    assert p.rule_for("burglary", 4) == esc.Rule(45, 30)  # class ack, priority resolve
    assert p.rule_for("holdup", 1) == esc.Rule(90, 20)  # the file's holdup replaces the built-in
    assert p.rule_for("fire", 2) == esc.Rule(30, 120)  # built-in fire ack kept
    assert p.rule_for("medical", 3) == esc.Rule(90, 120)
    assert p.rule_for("tamper", 6) == esc.Rule(90, 120)


@pytest.mark.parametrize("table, expected", [
    ({"ack_within_s": 0}, "[escalation].ack_within_s: must be a whole number from 1 to 3600"),
    ({"ack_within_s": 1.5}, "[escalation].ack_within_s: must be a whole number"),
    ({"resolve_within_min": 99999}, "[escalation].resolve_within_min: must be a whole number"),
    ({"classes": {"robbery": {}}}, "[escalation].classes.robbery: unknown alarm class"),
    ({"classes": {"fire": {"ack_s": 3}}}, "[escalation].classes.fire: unknown key(s) ack_s"),
    ({"classes": []}, "[escalation].classes: must be a table"),
    ({"priorities": {"x": {}}}, "[escalation].priorities.x: a priority is a number"),
    ({"priorities": {"٣": {}}}, "[escalation].priorities.٣: a priority is a number"),
    ({"priorities": {"12": {}}}, "[escalation].priorities.12: a priority is a number"),
    ({"page": 1}, "[escalation]: unknown key(s) page"),
])
def test_policy_errors(table, expected):
    with pytest.raises(WorkflowConfigError) as e:
        esc.parse_policy(table)
    assert str(e.value).startswith(expected)


def test_due_and_next_due():
    a = esc.AlarmTimers(1, PENDING, 115.0, 1900.0, 15, 30)
    b = esc.AlarmTimers(2, ACKNOWLEDGED, 160.0, 3700.0, 60, 60)
    w = esc.WaitTimer(2, 6, "Wait 10 minutes, then recheck", 10, ACKNOWLEDGED, "waiting", 800.0)
    assert esc.due([a, b], [w], 100.0) == []
    assert esc.next_due([a, b], [w], 100.0) == 115.0
    got = esc.due([a, b], [w], 2000.0)
    assert [(e.kind, e.alarm_id, e.due_at) for e in got] == [
        ("ack", 1, 115.0), ("wait", 2, 800.0), ("resolve", 1, 1900.0)]
    assert esc.next_due([a, b], [w], 2000.0) == 3700.0
    sentences = [e.audit(2000.0).sentence() for e in got]
    assert sentences == [
        "Not acknowledged within 15 s: every console alerted, supervisors notified.",
        "Step 6 (Wait 10 minutes, then recheck): the wait of 10 min is over, recheck now.",
        "Not resolved within 30 min: moved to the supervisor queue."]
    assert all(e.audit(2000.0).actor == "receiver" for e in got)
    # stamped or no longer relevant: nothing
    done = [replace(a, ack_escalated_at=120.0, resolve_escalated_at=1900.0),
            replace(b, state=RESOLVED)]
    assert esc.due(done, [replace(w, reminded_at=801.0)], 9e9) == []
    assert esc.due(done, [replace(w, step_state="completed")], 9e9) == []
    assert esc.next_due(done, [], 0.0) is None


# -- timelines -------------------------------------------------------------------------------
#
# A model store holds the rows; things happen at explicit times: alarms are
# acknowledged or resolved, wait steps start and end, and schedulers run
# (two receivers, each of which may have restarted: a scheduler keeps
# nothing between runs).  A run reads the rows, asks ``due``, and stamps
# each escalation with the compare-and-set ``still_due``, as the SQL does;
# only a run whose stamp matched fires.  The other receiver's run may read
# the rows before the first one's stamps land (a stale read).


@dataclass
class Row:
    timers: esc.AlarmTimers
    wait: esc.WaitTimer | None


def _stamp(row: Row, e: esc.Escalation, now: float) -> bool:
    if e.kind == esc.WAIT:
        if row.wait is None or not e.still_due(row.wait):
            return False
        row.wait = replace(row.wait, reminded_at=now)
        return True
    if not e.still_due(row.timers):
        return False
    field = "ack_escalated_at" if e.kind == esc.ACK else "resolve_escalated_at"
    row.timers = replace(row.timers, **{field: now})
    return True


alarm_st = st.fixed_dictionaries({
    "created": st.integers(0, 500),
    "ack_s": st.integers(1, 120),
    "resolve_min": st.integers(1, 20),
    "ack_after": st.one_of(st.none(), st.integers(0, 400)),
    "resolve_after": st.one_of(st.none(), st.integers(0, 2000)),
    "wait": st.one_of(st.none(), st.tuples(st.integers(0, 600), st.integers(1, 10),
                                           st.one_of(st.none(), st.integers(0, 1200)))),
})


@settings(max_examples=300, deadline=None)
@given(alarms=st.lists(alarm_st, min_size=1, max_size=6),
       runs=st.lists(st.tuples(st.integers(0, 3000), st.sampled_from(["rx1", "rx2"]),
                               st.booleans()), max_size=40))
def test_each_escalation_fires_exactly_once_when_due(alarms, runs):
    rows: dict[int, Row] = {}
    changes = []  # (time, order, alarm id, what)
    for i, a in enumerate(alarms, start=1):
        t0 = a["created"]
        rows[i] = Row(esc.AlarmTimers(i, PENDING, None, None), None)
        changes.append((t0, 0, i, ("open", a)))
        if a["ack_after"] is not None:
            changes.append((t0 + a["ack_after"], 1, i, ("ack",)))
        if a["resolve_after"] is not None:
            changes.append((t0 + a["resolve_after"], 2, i, ("resolve",)))
        if a["wait"] is not None:
            start, minutes, end = a["wait"]
            changes.append((t0 + start, 1, i, ("wait", minutes)))
            if end is not None:
                changes.append((t0 + start + end, 2, i, ("wait_end",)))
    timeline = sorted([(t, o, i, w) for t, o, i, w in changes]
                      + [(t, 3, 0, ("run", rx, stale)) for t, rx, stale in runs],
                      key=lambda x: (x[0], x[1], x[2]))
    fired: dict = {}  # (kind, alarm, position) -> [(time, receiver)]
    must_fire: set = set()  # its condition held at a run that read the rows fresh
    may_fire: set = set()  # its condition held at some run (fresh or stale)
    snapshot: dict = {}  # the rows as a stale reader saw them (the last run's)
    for t, _, i, what in timeline:
        if what[0] == "open":
            a = what[1]
            d = esc.EscalationPolicy(esc.Rule(a["ack_s"], a["resolve_min"]), {}, {}).deadlines(
                "burglary", 4, t)
            rows[i].timers = esc.AlarmTimers(i, PENDING, d.ack_due_at, d.resolve_due_at,
                                             d.ack_within_s, d.resolve_within_min)
        elif what[0] == "ack" and rows[i].timers.state == PENDING:
            rows[i].timers = replace(rows[i].timers, state=ACKNOWLEDGED)
        elif what[0] == "resolve":
            rows[i].timers = replace(rows[i].timers, state=RESOLVED)
            if rows[i].wait is not None:
                rows[i].wait = replace(rows[i].wait, alarm_state=RESOLVED)
        elif what[0] == "wait" and rows[i].timers.state != RESOLVED and rows[i].wait is None:
            rows[i].wait = esc.WaitTimer(i, 5, "Wait", what[1], rows[i].timers.state, "waiting",
                                         t + 60 * what[1])
        elif what[0] == "wait_end" and rows[i].wait is not None:
            rows[i].wait = replace(rows[i].wait, step_state="completed")
        elif what[0] == "run":
            _, rx, stale = what
            holds = _conditions_holding(rows, t)
            may_fire |= holds
            if not (stale and snapshot):
                must_fire |= holds
            view = snapshot if stale and snapshot else rows
            todo = esc.due([r.timers for r in view.values()],
                           [r.wait for r in view.values() if r.wait], t)
            for e in todo:
                assert e.due_at <= t
                if _stamp(rows[e.alarm_id], e, t):
                    fired.setdefault((e.kind, e.alarm_id, e.position), []).append((t, rx))
            snapshot = {k: Row(r.timers, r.wait) for k, r in rows.items()}
    assert all(len(v) == 1 for v in fired.values()), fired
    assert must_fire <= set(fired) <= may_fire


def _conditions_holding(rows: dict, t: float) -> set:
    """Written from the rules in words, not from the module: the
    escalations whose deadline has passed and whose condition holds at t
    (whether or not they fired)."""
    out = set()
    for k, r in rows.items():
        a = r.timers
        if a.ack_due_at is None:
            continue
        if a.state == PENDING and a.ack_due_at <= t:
            out.add((esc.ACK, k, None))
        if a.state != RESOLVED and a.resolve_due_at <= t:
            out.add((esc.RESOLVE, k, None))
        w = r.wait
        if w is not None and w.step_state == "waiting" and w.alarm_state != RESOLVED \
                and w.due_at <= t:
            out.add((esc.WAIT, k, 5))
    return out


def test_a_late_acknowledgement_does_not_escalate():
    """Acknowledged after the deadline but before any scheduler run (a
    receiver outage): someone is on it, nothing fires."""
    a = esc.AlarmTimers(1, ACKNOWLEDGED, 115.0, 1900.0, 15, 30)
    assert [e.kind for e in esc.due([a], [], 200.0)] == []
    assert [e.kind for e in esc.due([a], [], 2000.0)] == ["resolve"]
