"""The pieces every listener shares, fed data (no sockets): the link policy
(busy, rejections, security events) and the connection registry."""

from __future__ import annotations

from receiver.connections import ACCOUNTS_PER_STREAM, ConnectionRegistry
from receiver.link_policy import MAX_SECURITY_REJECTS, LinkPolicy
from receiver.metrics import Metrics
from receiver.ratelimit import RateLimit


class FakeLink:
    """A link as the policy and the registry read it (what a listener's
    connection, serial line or datagram sender offers)."""

    def __init__(self, kind="tcp", peer="tcp:10.0.0.5:40000", max_inflight=16,
                 carries_commands=True, last_rx=0.0):
        self.kind = kind
        self.peer = peer
        self.inflight = 0
        self.max_inflight = max_inflight
        self.security_rejects = 0
        self.closed_why: list[str] = []
        self.closed = False
        self.carries_commands = carries_commands
        self.opened = 0.0
        self.last_rx = last_rx

    def close(self, why: str) -> None:
        self.closed_why.append(why)
        self.closed = True

    def send(self, data: bytes) -> None:
        pass


def _policy(busy=None, behind=False, clock=lambda: 1000.0):
    m = Metrics()
    stored = []
    state = {"busy": busy, "behind": behind}
    p = LinkPolicy(m, lambda: state["busy"], lambda: state["behind"], stored.append, clock)
    return p, m, stored, state


def _value(counter) -> float:
    return counter._value.get()


def test_busy_when_the_receiver_is_busy_or_the_link_is_full():
    p, m, _, state = _policy()
    link = FakeLink(max_inflight=2)
    assert p.refusal(link) is None
    link.inflight = 2
    assert p.refusal(link) == "connection has 2 events in flight"
    state["busy"] = "store queue 5000 >= 5000"
    link.inflight = 0
    assert p.refusal(link) == "store queue 5000 >= 5000"
    p.nak_busy("1234", "0007", link, "store queue 5000 >= 5000")
    assert _value(m.naks.labels("busy")) == 1


def test_a_link_is_closed_after_max_security_rejects_and_each_is_stored():
    p, m, stored, _ = _policy()
    link = FakeLink(kind="dc09-tcp", peer="dc09-tcp:10.0.0.9:5000")
    for i in range(MAX_SECURITY_REJECTS):
        assert link.closed_why == []
        p.rejected(link, "bad_key", "12AB", i, "wrong key", security=True, nak=False)
    assert link.closed_why == ["security"]
    assert _value(m.security.labels("bad_key")) == MAX_SECURITY_REJECTS
    assert _value(m.frames.labels("dc09-tcp", "rejected")) == MAX_SECURITY_REJECTS
    assert [(e.account, e.reason, e.peer, e.transport, e.at) for e in stored] == [
        ("12AB", "bad_key", "dc09-tcp:10.0.0.9:5000", "dc09-tcp", 1000.0)] * 3


def test_a_sequence_restart_is_a_security_event_that_does_not_count_against_the_link():
    p, _, stored, _ = _policy()
    link = FakeLink()
    for _ in range(MAX_SECURITY_REJECTS + 1):
        p.security_event(61, 5, "sequence_restart", "re-key", link, count=False)
    assert link.closed_why == [] and link.security_rejects == 0
    assert stored[0].account == "61"


def test_security_events_are_not_stored_while_the_store_is_behind_or_past_the_rate():
    p, m, stored, state = _policy(behind=True)
    link = FakeLink(kind="udp")
    p.security_event(None, None, "unknown_account", "no account 555", link)
    assert stored == [] and _value(m.security_dropped) == 1
    state["behind"] = False
    p.security_store = RateLimit(0.001, burst=2)
    for _ in range(5):
        p.security_event(None, None, "unknown_account", "no account 555", link, count=False)
    assert len(stored) == 2 and _value(m.security_dropped) == 4
    assert _value(m.security.labels("unknown_account")) == 6


def test_other_rejections_are_counted_not_stored():
    p, m, stored, _ = _policy()
    link = FakeLink(kind="dc09-udp")
    p.rejected(link, "dc09_crc", None, None, "CRC", security=False, nak=True)
    p.rejected(link, "dc09_unsupported", "12AB", 3, "ID token X", security=False, nak=False,
               result="duh")
    assert stored == [] and link.security_rejects == 0
    assert _value(m.naks.labels("dc09_crc")) == 1
    assert _value(m.naks.labels("dc09_unsupported")) == 0
    assert _value(m.frames.labels("dc09-udp", "duh")) == 1


def test_registry_finds_the_stream_a_command_goes_on():
    r = ConnectionRegistry()
    old = FakeLink(peer="tcp:10.0.0.5:1", last_rx=10.0)
    new = FakeLink(peer="tcp:10.0.0.5:2", last_rx=20.0)
    trunk = FakeLink(kind="serial", peer="serial:/dev/ttyS0", carries_commands=False,
                     last_rx=30.0)
    assert r.stream_for("7") is None
    for link in (old, new, trunk):
        r.register(link, "7")
    r.register(trunk, "8")
    assert r.stream_for("7") is new  # heard last among those that carry commands
    assert r.stream_for("8") is None  # the trunk carries no commands
    new.closed = True
    assert r.stream_for("7") is old
    r.unregister(old)
    r.unregister(old)  # idempotent
    assert r.stream_for("7") is None
    assert {a: sorted(c["peer"] for c in rows) for a, rows in r.listing().items()} == {
        "7": ["serial:/dev/ttyS0"], "8": ["serial:/dev/ttyS0"]}
    assert r.listing()["8"] == [{"transport": "serial", "peer": "serial:/dev/ttyS0",
                                 "since": 0.0, "last_rx": 30.0}]


def test_registry_lists_a_stream_under_a_bounded_number_of_accounts():
    r = ConnectionRegistry()
    trunk = FakeLink(kind="serial")
    for n in range(ACCOUNTS_PER_STREAM):
        r.register(trunk, str(n))
    r.register(trunk, "0")  # heard again: the newest
    r.register(trunk, "new")  # one more: the oldest ("1") is dropped
    listed = r.listing()
    assert len(listed) == ACCOUNTS_PER_STREAM
    assert "0" in listed and "1" not in listed and "new" in listed
    r.unregister(trunk)
    assert r.listing() == {} and len(r) == 0
