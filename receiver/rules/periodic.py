"""Periodic test supervision: a panel that owes a 602 and missed it
(sans-I/O).

Many panels (dialers, third-party DC-09 panels) prove they are alive with
a Contact ID 602 "periodic test" once every so many hours rather than with
heartbeats.  An account may carry a test interval; a panel whose 602 (or
608, "periodic test, system trouble present") does not come within
interval + grace raises a trouble: Contact ID 358 "Periodic test missed"
(qualifier 1), restored (3) when the next test report arrives.

It rides on the supervision heap (``receiver.supervision.Supervisor``):
a second instance, whose one "path" per account is the account's test
report, with a :class:`~receiver.supervision.Profile` of the test interval
and grace.  One heap entry per tested account, lazy deletion, O(1) per
report; the timer task that polls line supervision polls this one too,
and on PostgreSQL the owner of the account's supervision shard is the one
that raises it (receiver.ownership).  The failed state and the last test
come back from the store at start: the latest 358 of the account, and the
latest 602/608 received.
"""

from __future__ import annotations

from receiver.supervision import Change, Profile, Supervisor, duration_text

CODE_TEST_MISSED = 358
TEST_CODES = frozenset((602, 608))
# The one line per account on the test supervisor.
TEST_LINE = 1
SOURCE = "periodic"
# Shorter intervals are heartbeats, not periodic tests (line supervision).
MIN_INTERVAL_S = 3600


def is_test_report(code: int, qualifier: int) -> bool:
    """Does this event prove the panel's periodic test?"""
    return code in TEST_CODES and qualifier in (1, 6)


def test_profile(interval_s: int | None, grace_s: int) -> Profile | None:
    """The supervision profile of an account's periodic test (None: the
    account owes none)."""
    if interval_s is None:
        return None
    if interval_s < MIN_INTERVAL_S:
        raise ValueError("a periodic test interval is at least %d s (shorter: use the "
                         "heartbeat supervision)" % MIN_INTERVAL_S)
    return Profile(interval_s, grace_s, (TEST_LINE,))


class PeriodicTests:
    """The accounts' periodic tests on their own supervision heap."""

    def __init__(self):
        self._sup = Supervisor()

    def set_account(self, account: str, profile: Profile | None, now: float,
                    failed: bool = False, last_test: float | None = None) -> None:
        """Supervise ``account``'s test (None: stop).  ``last_test``: the
        latest test report in the store; ``failed``: its latest 358 is a
        failure (a restart does not raise it twice)."""
        self._sup.set_profile(account, profile, now,
                              failed_paths=(TEST_LINE,) if failed else (),
                              last_heard=None if last_test is None else {TEST_LINE: last_test})

    def reset(self, account: str, profile: Profile | None, now: float,
              last_test: float | None) -> None:
        """Supervise ``account`` afresh from ``last_test`` (a test report
        another receiver heard, found in the store): OK, its deadline from
        there, whatever its line was."""
        self._sup.remove(account)
        self.set_account(account, profile, now, False, last_test)

    def remove(self, account: str) -> None:
        self._sup.remove(account)

    def accounts(self) -> list[str]:
        return self._sup.accounts()

    def last_heard(self, account: str) -> float | None:
        """The start of the account's current test interval (its last test
        report, or when its supervision began), None when not supervised."""
        st = self._sup.status(account).get(TEST_LINE)
        return None if st is None else st["last_heard"]

    def profile(self, account: str) -> Profile | None:
        return self._sup.profile(account)

    def report(self, account: str, code: int, qualifier: int, at: float) -> Change | None:
        """An event of ``account`` arrived; a restore when it is the test
        that ends a failure."""
        if not is_test_report(code, qualifier):
            return None
        return self._sup.heard(account, TEST_LINE, at)

    def poll(self, now: float, limit: int | None = None) -> list[Change]:
        return self._sup.poll(now, limit)

    def next_deadline(self) -> float | None:
        return self._sup.next_deadline()

    def failed(self) -> list[str]:
        return [a for a, _ in self._sup.failed()]


def describe(ch: Change) -> str:
    """'no periodic test for 25 h 0 min (expected every 24 h 0 min)',
    'periodic test received again'."""
    if ch.failed:
        profile_s = ch.timeout_s
        return "no periodic test for %s (expected within %s)" % (
            duration_text(ch.at - ch.last_heard), duration_text(profile_s))
    return "periodic test received again"


def record_fields(ch: Change) -> dict:
    """The normalized event the receiver ingests for a change (source
    'periodic', peer 'receiver').  The dedupe key is the hearing a failure
    follows (or the restore's instant), as for line supervision: two
    receivers racing over one failure store it once."""
    return {"account": ch.account,
            "dedupe_key": "periodic:%d:%d" % (
                ch.qualifier, int((ch.last_heard if ch.failed else ch.at) * 1000)),
            "qualifier": ch.qualifier, "code": CODE_TEST_MISSED, "partition": 0, "zone": 0,
            "text": describe(ch)[:64], "event_time": ch.at, "received_at": ch.at,
            "peer": "receiver", "source": SOURCE}
