"""Line supervision: the sans-I/O supervisor driven with explicit times, a
stateful model check, and one integration test against a real receiver."""

import asyncio

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from receiver import supervision as sv
from receiver.config import Config
from receiver.supervision import Profile, Supervisor
from receiver.testing import make_accounts, running_receiver
from testkit.session_panel import SessionPanel, heartbeat_msg
from testkit.wait import wait_until

T0 = 1_700_000_000.0


def test_failure_after_interval_plus_grace_and_restore_when_heard():
    s = Supervisor()
    s.set_profile("7", Profile(60, 30), T0)
    assert s.poll(T0 + 89) == []
    s.heard("7", 1, T0 + 50)
    assert s.poll(T0 + 139) == []  # deadline moved to 50 + 90
    [ch] = s.poll(T0 + 140)
    assert (ch.account, ch.path, ch.failed, ch.qualifier) == ("7", 1, True, 1)
    assert ch.last_heard == T0 + 50
    assert "140" not in ch.describe() and "90" in ch.describe()
    assert s.poll(T0 + 10_000) == []  # one failure, not one per poll
    assert s.failed() == [("7", 1)]
    r = s.heard("7", 1, T0 + 10_001)
    assert r is not None and not r.failed and r.qualifier == 3
    assert s.failed() == []
    assert s.heard("7", 1, T0 + 10_002) is None
    assert s.poll(T0 + 10_002 + 89) == []
    [again] = s.poll(T0 + 10_002 + 90)
    assert again.failed


def test_paths_are_supervised_separately():
    s = Supervisor()
    s.set_profile("9", Profile(10, 5, paths=(1, 2)), T0)
    for t in range(0, 40, 5):
        s.heard("9", 1, T0 + t)  # only the primary reports
    changes = s.poll(T0 + 40)
    assert [(c.path, c.failed) for c in changes] == [(2, True)]
    assert s.heard("9", 3, T0 + 41) is None  # an unsupervised path is ignored


def test_unsupervised_and_removed_accounts_raise_nothing():
    s = Supervisor()
    s.set_profile("1", Profile(10, 0), T0)
    s.set_profile("2", Profile(10, 0), T0)
    s.set_profile("2", None, T0)
    s.remove("1")
    assert s.poll(T0 + 1000) == []
    assert len(s) == 0


def test_profile_change_reschedules_and_leaves_no_duplicate_entries():
    s = Supervisor()
    s.set_profile("1", Profile(100, 0), T0)
    s.set_profile("1", Profile(10, 0), T0)  # shorter: earlier deadline
    [ch] = s.poll(T0 + 10)
    assert ch.failed and ch.timeout_s == 10
    assert s.poll(T0 + 200) == []  # the stale 100 s entry is dropped


def test_failed_state_recovered_from_store_restores_instead_of_failing_again():
    s = Supervisor()
    s.set_profile("5", Profile(10, 0), T0, failed_paths={1})
    assert s.poll(T0 + 100) == []
    ch = s.heard("5", 1, T0 + 101)
    assert ch is not None and not ch.failed


def test_many_accounts_one_heap_entry_each():
    s = Supervisor()
    n = 50_000
    for i in range(n):
        s.set_profile(str(i), Profile(300, 60), T0 + (i % 10))
    assert s.heap_size() == n
    for i in range(0, n, 2):  # half of them report, many times
        for k in range(3):
            s.heard(str(i), 1, T0 + 300 + k)
    assert s.heap_size() == n  # hearing a panel does not push heap entries
    failed = s.poll(T0 + 400)
    assert len(failed) == n // 2
    assert {int(c.account) % 2 for c in failed} == {1}
    assert s.heap_size() == n // 2  # the heard ones were pushed forward once


def test_poll_limit_bounds_work_per_tick():
    s = Supervisor()
    for i in range(10):
        s.set_profile(str(i), Profile(1, 0), T0)
    assert len(s.poll(T0 + 5, limit=4)) == 4
    assert len(s.poll(T0 + 5)) == 6


def test_transition_table_refuses_undefined_pairs():
    with pytest.raises(KeyError):
        sv.TRANSITIONS[sv.FAILED][sv.EXPIRED]


def test_profile_validation():
    for bad in [(0, 0), (10, -1), (10, 0, ()), (10, 0, (3,))]:
        with pytest.raises(ValueError):
            Profile(*bad)


class SupervisorModel(RuleBasedStateMachine):
    """The supervisor against a brute-force model: a path is failed exactly
    when it has been silent longer than its timeout at some poll."""

    def __init__(self):
        super().__init__()
        self.s = Supervisor()
        self.now = T0
        self.timeout = {}
        self.last = {}
        self.failed = set()

    @rule(acct=st.sampled_from(["a", "b", "c"]), interval=st.integers(1, 50),
          grace=st.integers(0, 20))
    def configure(self, acct, interval, grace):
        self.s.set_profile(acct, Profile(interval, grace), self.now,
                           failed_paths={1} if acct in self.failed else ())
        self.timeout[acct] = interval + grace
        self.last.setdefault(acct, self.now)

    @rule(acct=st.sampled_from(["a", "b", "c"]))
    def heard(self, acct):
        ch = self.s.heard(acct, 1, self.now)
        if acct not in self.timeout:
            assert ch is None
            return
        self.last[acct] = self.now
        if acct in self.failed:
            assert ch is not None and not ch.failed
            self.failed.discard(acct)
        else:
            assert ch is None

    @rule(dt=st.integers(0, 80))
    def advance_and_poll(self, dt):
        self.now += dt
        got = {c.account for c in self.s.poll(self.now)}
        expect = {a for a, t in self.timeout.items()
                  if a not in self.failed and self.now - self.last[a] >= t}
        assert got == expect
        self.failed |= got

    @invariant()
    def failed_matches(self):
        assert {a for a, _ in self.s.failed()} == self.failed


TestSupervisorModel = SupervisorModel.TestCase
TestSupervisorModel.settings = settings(max_examples=60, stateful_step_count=30,
                                        deadline=None)


async def test_receiver_raises_and_restores_communication_trouble(tmp_path):
    accts = make_accounts(2, heartbeat_s=1, grace_s=0, region="north")
    accts[2].supervised = False
    cfg = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)])
    async with running_receiver(cfg, accts) as rx:
        q = rx.subscribe()
        host, port = rx.addresses["tcp"][0]
        p = SessionPanel(1, accts[1].key, host, port)
        await p.connect()
        await p.deliver(1, heartbeat_msg())

        async def sup_events():
            return [e for e in await rx.store.list_events(account="1")
                    if e.source == "supervision"]

        [fail] = await wait_until(sup_events, 20, what="communication failure raised")
        assert (fail.code, fail.qualifier, fail.zone) == (350, 1, 1)
        assert fail.event_class == "trouble"
        [alarm] = await rx.store.list_alarms()
        assert alarm.event_id == fail.id and alarm.state == "pending"
        assert await rx.store.supervision_failed() == [("1", 1)]

        await p.deliver(2, heartbeat_msg())
        evs = await wait_until(lambda: _two(sup_events), 20, what="restore raised")
        assert [e.qualifier for e in evs] == [1, 3]
        assert (await rx.store.get_alarm(alarm.id)).restored_at is not None
        assert await rx.store.supervision_failed() == []
        assert not [e for e in await rx.store.list_events(account="2")]
        kinds = []
        while not q.empty():
            kinds.append(q.get_nowait().to_json()["type"])
        assert "supervision" in kinds and "alarm" in kinds
        await p.close()


async def _two(fn):
    evs = await fn()
    return evs if len(evs) >= 2 else None
