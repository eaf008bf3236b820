"""receiver.ingest fed data, no database: the ingest rules both store
backends execute (tests/test_store_contract.py runs them through a store)."""

import json

import pytest

from receiver import ingest
from receiver.records import EventRecord, IngestOutcome


def rec(seq, account="1", qualifier=1, code=602, zone=0, at=100.0, **kw):
    d = dict(account=account, protocol="native", dedupe_key="native:%d" % seq,
             qualifier=qualifier, code=code, partition=1, zone=zone, received_at=at, seq=seq)
    d.update(kw)
    return EventRecord(**d)


def burglary(seq, at, qualifier=1, zone=4, **kw):
    return rec(seq, qualifier=qualifier, code=130, zone=zone, at=at, event_class="burglary",
               priority=4, open_alarm=qualifier == 1, **kw)


def inserted_all(recs, first_id=1):
    """What a backend answers when every candidate is new."""
    return {k: first_id + n for n, (k, _) in enumerate(ingest.candidates(recs))}, {}


def test_candidates_are_the_first_copy_of_each_key_in_arrival_order():
    recs = [rec(2), rec(1), rec(2), rec(1, account="9"), rec(1)]
    assert ingest.candidates(recs) == [(("1", "native:2"), 0), (("1", "native:1"), 1),
                                       (("9", "native:1"), 3)]
    assert ingest.candidates([]) == []


def test_new_events_and_their_duplicates():
    recs = [rec(1), rec(2), rec(1)]
    p = ingest.plan(recs, {("1", "native:1"): 10}, {("1", "native:2"): 7})
    assert p.outcomes([]) == [IngestOutcome(10, False, None), IngestOutcome(7, True, None),
                              IngestOutcome(10, True, None)]
    # only what is new now moves the replay state
    assert p.replay == [("1", 1, 0)]


def test_a_key_the_store_cannot_place_is_an_error_not_a_guess():
    with pytest.raises(ingest.ConflictVanished):
        ingest.plan([rec(1)], {}, {})


def test_replay_state_is_the_highest_native_sequence_per_account():
    no_seq = rec(60, dedupe_key="supervision:1", source="supervision")
    no_seq.seq = None
    recs = [rec(5, tx_seq=3), rec(9, tx_seq=1), rec(7, account="2"),
            rec(50, protocol="dc09", dedupe_key="dc09:50"), no_seq]
    p = ingest.plan(recs, *inserted_all(recs))
    assert p.replay == [("1", 9, 3), ("2", 7, 0)]


def test_an_alarm_comes_with_its_audit_note_and_outbox_rows():
    r = burglary(3, 100.0, routed_to={"police_station": "ps-1"},
                 outbox=[("cad", {"type": "alarm"}), ("log", {"type": "alarm"})])
    p = ingest.plan([r], {r.key: 41}, {})
    [al] = p.alarms
    assert al.values() == (41, "1", "burglary", 4, 130, 1, 4, "", 100.0,
                           '{"police_station": "ps-1"}', None, None) + (None,) * 8
    assert len(al.values()) == len(ingest.ALARM_COLUMNS)
    assert al.steps(7) == [] and al.plan_audit(7) is None  # opened without a plan
    assert al.audit_note() == 'routed to {"police_station": "ps-1"}'
    rows = al.outbox(7)
    assert [(o.output, o.alarm_id, o.created_at) for o in rows] == [("cad", 7, 100.0),
                                                                    ("log", 7, 100.0)]
    assert json.loads(rows[0].payload) == {"type": "alarm", "alarm_id": 7, "event_id": 41}
    assert p.outcomes([7]) == [IngestOutcome(41, False, 7)]
    # a duplicate opens nothing
    dup = ingest.plan([r], {}, {r.key: 41})
    assert dup.alarms == [] and dup.outcomes([]) == [IngestOutcome(41, True, None)]


def test_restores_stamp_stored_alarms_through_the_store_and_batch_alarms_in_the_plan():
    recs = [burglary(1, 100.0), burglary(2, 110.0, qualifier=3), burglary(3, 120.0),
            burglary(4, 105.0, qualifier=3, zone=5), burglary(5, 90.0, qualifier=3)]
    p = ingest.plan(recs, *inserted_all(recs))
    # every restore also stamps what the store holds (raised before it)
    assert [(r.zone, r.at) for r in p.restores] == [(4, 110.0), (5, 105.0), (4, 90.0)]
    # in the batch: the alarm before the restore, not the one after it
    assert [a.restored_at for a in p.alarms] == [110.0, None]
    assert p.outcomes([70, 71]) == [IngestOutcome(1, False, 70), IngestOutcome(2, False, None),
                                    IngestOutcome(3, False, 71), IngestOutcome(4, False, None),
                                    IngestOutcome(5, False, None)]


def test_a_restore_older_than_the_alarm_does_not_stamp_it():
    recs = [burglary(1, 100.0), burglary(2, 99.0, qualifier=3)]
    p = ingest.plan(recs, *inserted_all(recs))
    assert [a.restored_at for a in p.alarms] == [None]


def test_a_duplicate_restore_stamps_nothing():
    r = burglary(2, 110.0, qualifier=3)
    p = ingest.plan([burglary(1, 100.0), r], {("1", "native:1"): 1}, {r.key: 2})
    assert p.restores == [] and p.alarms[0].restored_at is None


def test_every_panel_event_is_a_hearing_of_its_path_even_a_duplicate():
    recs = [rec(1, path=2, at=5.0), rec(1, path=2, at=6.0),
            rec(2, source="supervision", dedupe_key="supervision:1", at=7.0)]
    p = ingest.plan(recs, {("1", "native:1"): 1, ("1", "supervision:1"): 2}, {})
    assert p.heard == [("1", 2, 5.0), ("1", 2, 6.0)]


def test_each_account_s_latest_periodic_test_report_inserted_now_is_kept():
    recs = [rec(1, at=5.0), rec(2, at=9.0, code=608), rec(3, at=7.0),  # 602 and 608
            rec(1, at=20.0),  # a duplicate of the first (a resend): not a new report
            rec(4, at=30.0, qualifier=3),  # a restore of a test is no test report
            rec(5, at=31.0, code=130),
            rec(1, account="2", at=4.0, qualifier=6),  # reported status: a test report
            rec(7, account="3", at=50.0, code=130)]
    ins, _ = inserted_all(recs)
    p = ingest.plan(recs, ins, {})
    assert p.tested == [("1", 9.0), ("2", 4.0)]
    # a report stored before (existing) moves nothing
    p = ingest.plan([rec(9, at=60.0)], {}, {("1", "native:9"): 3})
    assert p.tested == []


def test_an_alarm_opens_with_its_plan_and_a_cancel_is_a_follow_up():
    from receiver.workflow import handling, plans

    r = burglary(3, 100.0, routed_to={"police_station": "ps-1"})
    r.opening = handling.open_alarm(plans.builtin(), "1", "", "burglary", 130, 4, 100.0)
    r.raised_from = 9
    cancel = rec(4, code=406, zone=3, at=130.0, user=3)
    restore406 = rec(5, code=406, qualifier=3, at=131.0)
    closing = rec(6, code=459, zone=2, at=132.0, user=2)
    recs = [r, cancel, restore406, closing]
    p = ingest.plan(recs, *inserted_all(recs, 41))
    [al] = p.alarms
    cols = dict(zip(ingest.ALARM_COLUMNS, al.values()))
    assert (cols["plan_name"], cols["ack_due_at"], cols["resolve_due_at"],
            cols["raised_from"]) == ("builtin", 160.0, 3700.0, 9)
    assert [s[:3] for s in al.steps(7)] == [(7, 1, "instruction"), (7, 2, "call")]
    assert [s[5] for s in al.steps(7)] == [True, False]
    assert json.loads(al.steps(7)[1][6]) == {"call_order": "default"}
    aid, at, action, detail = al.plan_audit(7)
    assert (aid, at, action, json.loads(detail)["selector"]) == (7, 100.0, "plan", "default")
    # a new cancel and recent closing follow up earlier alarms (qualifier 1 only)
    assert [(i, x.code, eid) for i, x, eid in p.followups] == [(1, 406, 42), (3, 459, 44)]
    out = p.outcomes([7], touched={1: [7]})
    assert out[1] == IngestOutcome(42, False, None, touched=(7,)) and out[0].touched == ()
    # a retransmitted cancel follows up nothing
    again = ingest.plan([cancel], {}, {cancel.key: 42})
    assert again.followups == []
