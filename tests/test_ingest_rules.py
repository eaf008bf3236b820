"""receiver.ingest's rules fed data, no database: what a batch makes the
backend read (and lock), and the decisions in arrival order from a given
state (tests/test_store_rules.py runs them through both stores)."""

from receiver import ingest
from receiver.rules import hygiene, testmode
from tests.test_ingest_plan import burglary, inserted_all, rec

POLICY = ingest.Hygiene(hygiene.RunawayPolicy(2, 600), hygiene.GroupingPolicy(300),
                        hygiene.RestorePolicy(frozenset({"trouble"})))


def test_heartbeats_and_statuses_make_the_backend_read_and_lock_nothing():
    recs = [rec(1, code=602), rec(2, code=401, qualifier=3, zone=3)]
    q = ingest.rules_query(recs, *inserted_all(recs)[:1], POLICY)
    assert not q and q.lock == []
    # an alarm: its zone (from 600 s before it), its site, and a lock;
    # a duplicate (not inserted now) asks for nothing
    a = burglary(3, 1000.0)
    dup = burglary(4, 1000.0, zone=7)
    q = ingest.rules_query([a, dup], {a.key: 1}, POLICY)
    assert (q.zones, q.sites, q.lock) == ([("1", 4, 400.0)], ["1"], ["1"])
    # a hold-up is never held: no zone state read for it
    h = rec(5, code=122, zone=4, event_class="holdup", open_alarm=True)
    assert ingest.rules_query([h], {h.key: 1}, POLICY).zones == []
    # a restore: its alarms read (and locked) only for a class the policy resolves
    tr = rec(6, code=302, qualifier=3, event_class="trouble")
    br = burglary(7, 1000.0, qualifier=3)
    q = ingest.rules_query([tr, br], {tr.key: 1, br.key: 2}, POLICY)
    assert q.restores == [("1", 302, 1, 0)] and q.lock == ["1"]


def test_decisions_follow_arrival_order_within_a_batch():
    recs = [burglary(i, 100.0 + i) for i in range(1, 6)]
    st = ingest.RulesState(sites={"1": hygiene.SiteState(77, False, 50.0)})
    p = ingest.plan(recs, *inserted_all(recs), st, POLICY)
    outs = p.outcomes([501, 502, 503])
    # two alarms, the third holds the zone, the rest are counted on it
    assert [o.alarm_id for o in outs] == [501, 502, 503, None, None]
    assert [(o.attached_to, o.signals) for o in outs[3:]] == [(503, 1), (503, 2)]
    [h] = p.holds
    assert (h.anchor, h.reason) == (ingest.NewAlarm(2), "zone 4 held: more than 2 alarms "
                                                        "in 10 min")
    assert p.hold_signals == [("1", 4, 2, 105.0)]
    # all three joined the site's open incident (its newest member 50 s earlier)
    assert [o.incident_id for o in outs[:3]] == [77, 77, 77]
    assert p.incidents([501, 502, 503]) == [(501, 77), (502, 77), (503, 77)]


def test_a_placement_covers_only_its_zone_and_its_time():
    p = testmode.Placement("1", 100.0, 200.0, "swap", "ivan", zone=4, id=9)
    recs = [burglary(1, 150.0), burglary(2, 150.0, zone=5), burglary(3, 250.0)]
    plan = ingest.plan(recs, *inserted_all(recs), ingest.RulesState(placements=[p]), POLICY)
    outs = plan.outcomes([11, 12])
    assert [(o.alarm_id, o.test_placement) for o in outs] == [(None, 9), (11, None),
                                                              (12, None)]
    assert plan.marks == [(1, 9, None)]


def test_without_a_rules_state_the_plan_is_as_before():
    recs = [burglary(i, 100.0 + i) for i in range(1, 6)]
    p = ingest.plan(recs, *inserted_all(recs))
    assert len(p.alarms) == 5 and not (p.holds or p.marks or p.resolves)
    assert all(a.incident is None for a in p.alarms)
