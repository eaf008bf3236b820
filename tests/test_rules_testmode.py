"""Test placements and periodic-test supervision (receiver.rules.testmode,
receiver.rules.periodic), with explicit time."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import contactid
from receiver.rules import periodic, testmode
from receiver.rules.testmode import Placement, PlacementError

T0 = 1_700_000_000.0
H = 3600.0


def place(**kw):
    d = dict(account="1001", starts_at=T0, ends_at=T0 + 2 * H, reason="detector swap",
             by="ivan")
    d.update(kw)
    return Placement(**d)


def test_scopes_cover_what_they_name():
    acct, part, zone = place(id=1), place(id=2, partition=2), place(id=3, zone=4)
    t = T0 + 60
    # a burglary in zone 4, partition 2; a user 4 disarming; a path failure on path... 4
    assert acct.covers("1001", 2, 4, 130, t) and part.covers("1001", 2, 4, 130, t)
    assert zone.covers("1001", 2, 4, 130, t)
    assert not zone.covers("1001", 2, 4, 401, t)  # user 4 is not zone 4
    assert not zone.covers("1001", 2, 4, 350, t)  # nor is path 4
    assert not part.covers("1001", 0, 0, 301, t)  # a panel-wide AC loss is not partition 2's
    assert not acct.covers("1002", 2, 4, 130, t)
    assert not acct.covers("1001", 2, 4, 130, T0 - 1) and not acct.covers("1001", 2, 4, 130,
                                                                          T0 + 2 * H)
    assert [p.words() for p in (acct, part, zone)] == [
        "account 1001", "partition 2 of account 1001", "zone 4 of account 1001"]
    assert [p.scope for p in (acct, part, zone)] == ["account", "partition", "zone"]


def test_under_test_names_the_longest_placement_and_ended_ones_cover_nothing():
    short, long_ = place(id=1, zone=4), place(id=2, ends_at=T0 + 8 * H)
    assert testmode.under_test([short, long_], "1001", 1, 4, 130, T0 + 60) is long_
    assert testmode.under_test([short], "1001", 1, 5, 130, T0 + 60) is None
    ended = testmode.end(long_, T0 + H, "olga")
    assert testmode.under_test([ended], "1001", 1, 4, 130, T0 + H - 1) is ended
    assert testmode.under_test([ended], "1001", 1, 4, 130, T0 + H) is None
    # hold-up is covered too: testing the buttons is what a walk test does
    assert contactid.event_class(122) == "holdup"
    assert testmode.under_test([short], "1001", 3, 4, 122, T0 + 60) is short


def test_the_end_is_automatic_and_audited_in_words():
    a, b, c = place(id=1, ends_at=T0 + H), place(id=2, ends_at=T0 + 3 * H), place(
        id=3, ends_at=T0 + 2 * H, zone=4)
    assert testmode.due_to_end([b, a, c], T0 + H - 1) == []
    assert testmode.due_to_end([b, a, c], T0 + 2 * H) == [a, c]
    done = testmode.end(a, T0 + H + 30, "receiver")
    assert done.ended_at == T0 + H  # ended at its time, however late the scheduler ran
    assert testmode.due_to_end([done, b], T0 + 2 * H) == []
    assert testmode.end_sentence(done) == (
        "Test of account 1001 ended by the receiver: its time was up "
        "(placed by ivan: detector swap).")
    early = testmode.end(c, T0 + 600, "olga")
    assert testmode.end_sentence(early) == (
        "Test of zone 4 of account 1001 ended early by olga (placed by ivan: detector swap).")
    with pytest.raises(PlacementError, match="already ended"):
        testmode.end(early, T0 + 700, "olga")


@pytest.mark.parametrize("kw, message", [
    ({"reason": " "}, "needs a reason"),
    ({"by": ""}, "needs who asks"),
    ({"ends_at": T0}, "must end after it starts"),
    ({"ends_at": T0 + 73 * H}, r"at most 72 h \(asked: 73.0 h for account 1001\)"),
    ({"zone": 0}, "zone to place on test is a number from 1"),
    ({"partition": True}, "partition to place on test"),
])
def test_placements_that_mean_nothing_are_refused_in_words(kw, message):
    with pytest.raises(PlacementError, match=message):
        place(**kw).check(T0)


def test_a_test_that_ends_in_the_past_is_refused():
    with pytest.raises(PlacementError, match="ends in the past"):
        place().check(T0 + 3 * H)
    place().check(T0 + H)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(1, 100), st.sampled_from(
    (None, 1, 2)), st.sampled_from((None, 3, 4))), max_size=5),
    st.integers(-10, 210), st.sampled_from((1, 2)), st.sampled_from((3, 4)),
    st.sampled_from((130, 401, 122)))
def test_under_test_is_some_covering_placement_exactly_when_one_covers(spans, t, part, zone,
                                                                       code):
    ps = [place(id=i, starts_at=T0 + a * 60, ends_at=T0 + (a + n) * 60, partition=p, zone=z)
          for i, (a, n, p, z) in enumerate(spans)]
    at = T0 + t * 60
    got = testmode.under_test(ps, "1001", part, zone, code, at)

    def covers(p):  # in words: in time, and the account, its partition or its zone
        if not p.starts_at <= at < p.ends_at:
            return False
        if p.zone is not None:
            return p.zone == zone and code != 401
        return p.partition is None or p.partition == part

    cover = [p for p in ps if covers(p)]
    assert (got is None) == (not cover)
    if got is not None:
        assert got in cover and got.ends_at == max(p.ends_at for p in cover)


# -- periodic test (602) supervision ------------------------------------------------------


def test_a_missed_periodic_test_raises_358_once_and_the_next_test_restores_it():
    pt = periodic.PeriodicTests()
    prof = periodic.test_profile(24 * 3600, 3600)
    pt.set_account("12AB", prof, T0)
    assert pt.report("12AB", 602, 1, T0 + 20 * H) is None  # on time: nothing to say
    assert pt.report("12AB", 130, 1, T0 + 30 * H) is None  # other events are no test
    assert pt.poll(T0 + 45 * H - 1) == []
    [miss] = pt.poll(T0 + 45 * H)  # 20 h + 24 h + 1 h
    assert miss.failed and miss.account == "12AB"
    rec = periodic.record_fields(miss)
    assert (rec["code"], rec["qualifier"], rec["zone"], rec["source"]) == (358, 1, 0,
                                                                          "periodic")
    assert rec["text"] == "no periodic test for 25 h 0 min (expected within 25 h 0 min)"
    assert rec["dedupe_key"] == "periodic:1:%d" % int((T0 + 20 * H) * 1000)
    assert contactid.event_class(358) == "trouble"
    assert pt.poll(T0 + 100 * H) == []  # once
    assert pt.failed() == ["12AB"]
    back = pt.report("12AB", 608, 1, T0 + 101 * H)
    assert back is not None and not back.failed
    assert periodic.record_fields(back)["qualifier"] == 3
    assert periodic.describe(back) == "periodic test received again"


def test_a_restart_does_not_raise_a_failure_twice_and_starts_from_the_last_test():
    pt = periodic.PeriodicTests()
    prof = periodic.test_profile(24 * 3600, 0)
    pt.set_account("1", prof, T0 + 30 * H, failed=True, last_test=T0)
    pt.set_account("2", prof, T0 + 30 * H, last_test=T0 + 10 * H)
    assert pt.poll(T0 + 33 * H) == []
    [two] = pt.poll(T0 + 34 * H)
    assert two.account == "2" and two.last_heard == T0 + 10 * H
    assert not pt.report("1", 602, 1, T0 + 35 * H).failed


def test_test_intervals_shorter_than_an_hour_are_heartbeats():
    assert periodic.test_profile(None, 60) is None
    with pytest.raises(ValueError, match="at least 3600 s"):
        periodic.test_profile(600, 60)


def test_status_and_what_in_words_for_the_on_test_page():
    """A placement is 'on test' only while it covers events: its time up
    and not yet ended by the receiver's timer, it is 'ended (time up)'
    (covering nothing), as it is once the timer has written the end."""
    p = place(id=1, zone=4)
    assert testmode.status(p, T0 - 1) == (testmode.NOT_STARTED, "not started yet")
    assert testmode.status(p, T0 + 60) == (testmode.ON_TEST, "on test")
    up = T0 + 2 * H
    assert not p.covers("1001", 1, 4, 130, up)
    assert testmode.status(p, up) == (testmode.TIME_UP, "ended (time up)")
    assert testmode.status(testmode.end(p, up + 5, "receiver"), up + 5) == (
        testmode.TIME_UP, "ended (time up)")
    early = testmode.end(p, T0 + 600, "olga")
    assert testmode.status(early, T0 + 601) == (testmode.ENDED, "ended early by olga")
    assert testmode.status(early, T0 + 3 * H) == (testmode.ENDED, "ended early by olga")
    assert [testmode.what_words(x, "teller hold-up button", "vault") for x in (
        p, place(partition=2), place())] == [
        "zone 4 (teller hold-up button)", "partition 2 (vault)", "the whole account"]
    assert testmode.what_words(place(partition=3)) == "partition 3"
