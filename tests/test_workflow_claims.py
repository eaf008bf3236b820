"""Claiming (receiver.workflow.claims): claim, take-over, release and acting,
decided from a claim as it was read and applied with the store's
compare-and-set; random interleavings of several operators never give two
handlers, and a take-over is never implicit."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from receiver.alarms import PENDING, RESOLVED
from receiver.workflow import claims
from receiver.workflow.common import ActionRefused


def test_claim_banner_and_words():
    c = claims.Claim()
    ch = claims.claim(7, c, PENDING, "olga", 100.0)
    assert ch.expect_rev == 0 and ch.after == claims.Claim("olga", 100.0, 1)
    assert ch.audit.sentence() == "Taken by olga."
    assert ch.after.banner(140.0) == "being handled by olga, 40 s"
    assert ch.after.banner(100.0 + 3 * 3600 + 65) == "being handled by olga, 3 h 1 min"
    assert claims.Claim().banner(1.0) == ""
    assert claims.claim(7, ch.after, PENDING, "olga", 150.0) is None  # already hers
    with pytest.raises(ActionRefused, match="Being handled by olga, 50 s: take it over"):
        claims.claim(7, ch.after, PENDING, "piotr", 150.0)


def test_take_over_only_of_what_was_seen():
    olga = claims.Claim("olga", 100.0, 3)
    ch = claims.take_over(7, olga, PENDING, "piotr", 280.0, seen_rev=3)
    assert ch.after == claims.Claim("piotr", 280.0, 4) and ch.expect_rev == 3
    assert ch.audit.sentence() == "Taken over by piotr from olga, who had it for 3 min."
    with pytest.raises(ActionRefused, match=r"changed hands since you looked \(being handled "
                                            r"by anna, 10 s\)"):
        claims.take_over(7, claims.Claim("anna", 270.0, 5), PENDING, "piotr", 280.0, seen_rev=3)
    with pytest.raises(ActionRefused, match="nobody handles it now"):
        claims.take_over(7, claims.Claim(None, None, 4), PENDING, "piotr", 280.0, seen_rev=3)
    with pytest.raises(ActionRefused, match="nobody handles the alarm: take it instead"):
        claims.take_over(7, claims.Claim(None, None, 4), PENDING, "piotr", 280.0, seen_rev=4)
    assert claims.take_over(7, olga, PENDING, "olga", 280.0, seen_rev=3) is None


def test_release_and_resolved():
    olga = claims.Claim("olga", 100.0, 1)
    ch = claims.release(7, olga, PENDING, "olga", 160.0)
    assert ch.after == claims.Claim(None, None, 2)
    assert ch.audit.sentence() == "Released by olga after 60 s."
    with pytest.raises(ActionRefused, match="take it over"):
        claims.release(7, olga, PENDING, "piotr", 160.0)
    sup = claims.release(7, olga, PENDING, "ada", 160.0, may_release_others=True)
    assert sup.audit.sentence() == "Released by ada from olga after 60 s."
    with pytest.raises(ActionRefused, match="nobody handles"):
        claims.release(7, claims.Claim(None, None, 2), PENDING, "olga", 160.0)
    for f in (lambda: claims.claim(7, claims.Claim(), RESOLVED, "olga", 1.0),
              lambda: claims.authorize(7, olga, RESOLVED, "olga", 1.0),
              lambda: claims.take_over(7, olga, RESOLVED, "piotr", 1.0, 1)):
        with pytest.raises(ActionRefused, match="the alarm is resolved"):
            f()
    assert claims.Claim().cas(claims.claim(7, claims.Claim(), PENDING, "o", 1.0), RESOLVED) is None


def test_authorize_claims_implicitly_and_refuses_others():
    a = claims.authorize(7, claims.Claim(), PENDING, "olga", 5.0)
    assert a.claim is not None and a.claim.after.handler == "olga" and a.expect_rev == 1
    b = claims.authorize(7, claims.Claim("olga", 5.0, 1), PENDING, "olga", 6.0)
    assert b.claim is None and b.expect_rev == 1
    with pytest.raises(ActionRefused, match="take it over"):
        claims.authorize(7, claims.Claim("olga", 5.0, 1), PENDING, "piotr", 6.0)


def test_two_claims_from_one_read_one_wins():
    row = claims.Claim()
    a = claims.claim(7, row, PENDING, "olga", 1.0)
    b = claims.claim(7, row, PENDING, "piotr", 1.0)
    row = row.cas(a, PENDING)
    assert row.handler == "olga"
    assert row.cas(b, PENDING) is None  # piotr's update matches no row: he is told


OPERATORS = ("olga", "piotr", "anna")


class ClaimRace(RuleBasedStateMachine):
    """Operators read the alarm's claim at random moments and act later on
    what they read (their view may be stale); the store applies each
    decision with the compare-and-set.  Invariants: a claim never displaces
    a handler; every accepted action (a step, a call) was by the handler at
    that moment; between two accepted actions by different people there was
    an accepted claim change; the revision counts the accepted changes."""

    @initialize()
    def start(self):
        self.row = claims.Claim()
        self.state = PENDING
        self.views = {op: self.row for op in OPERATORS}
        self.now = 0.0
        self.changes = 0
        self.acts: list = []  # (operator, claim rev at the time) of accepted actions
        self.claim_revs_between: list = []

    def _apply(self, ch: claims.ClaimChange | None, kind: str, actor: str) -> bool:
        if ch is None:
            return False
        before = self.row
        after = self.row.cas(ch, self.state)
        if after is None:
            return False
        if kind == "claim":
            assert before.handler is None, "a claim displaced %s" % before.handler
        if kind == "take_over":
            assert before.rev == ch.expect_rev  # only the handler that was seen
        self.row = after
        self.changes += 1
        return True

    @rule(op=st.sampled_from(OPERATORS))
    def read(self, op):
        self.views[op] = self.row

    @rule(op=st.sampled_from(OPERATORS), dt=st.floats(0, 30))
    def claim(self, op, dt):
        self.now += dt
        try:
            self._apply(claims.claim(1, self.views[op], self.state, op, self.now), "claim", op)
        except ActionRefused:
            pass

    @rule(op=st.sampled_from(OPERATORS), dt=st.floats(0, 30))
    def take_over(self, op, dt):
        self.now += dt
        v = self.views[op]
        try:
            self._apply(claims.take_over(1, v, self.state, op, self.now, v.rev), "take_over", op)
        except ActionRefused:
            pass

    @rule(op=st.sampled_from(OPERATORS), dt=st.floats(0, 30), supervisor=st.booleans())
    def release(self, op, dt, supervisor):
        self.now += dt
        try:
            self._apply(claims.release(1, self.views[op], self.state, op, self.now, supervisor),
                        "release", op)
        except ActionRefused:
            pass

    @rule(op=st.sampled_from(OPERATORS), dt=st.floats(0, 30))
    def act(self, op, dt):
        """A step or a call: authorised from the operator's view, applied
        only while the claim is still at the revision it was decided from."""
        self.now += dt
        try:
            auth = claims.authorize(1, self.views[op], self.state, op, self.now)
        except ActionRefused:
            return
        if auth.claim is not None and not self._apply(auth.claim, "claim", op):
            return
        if self.row.rev != auth.expect_rev:
            return  # the action's own compare-and-set: nothing changes
        assert self.row.handler == op, "%s acted while %s handles it" % (op, self.row.handler)
        self.acts.append((op, self.row.rev))

    @rule()
    def resolve(self):
        self.state = RESOLVED

    @invariant()
    def one_handler_a_counted_revision(self):
        assert self.row.rev == self.changes
        assert (self.row.handler is None) == (self.row.since is None)
        for (a, ra), (b, rb) in zip(self.acts, self.acts[1:]):
            if a != b:
                assert rb > ra  # someone else acting needs a claim change between


TestClaimRace = ClaimRace.TestCase
TestClaimRace.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
