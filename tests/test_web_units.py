"""The console's pure parts with explicit times: sessions, login throttle,
the permission table, site-state derivation; and session revalidation
after a change made in another process (the CLI)."""

import pytest

from receiver.web import auth, derive, revalidate
from receiver.web.state import Console
from receiver.web.users import SQLiteUserStore

T0 = 1_700_000_000.0


# -- sessions ---------------------------------------------------------------------------


def test_session_expires_when_idle_and_at_max_age_and_is_touched_by_use():
    ss = auth.Sessions(max_age_s=100, idle_s=10)
    token, s = ss.create("olga", "operator", T0)
    assert ss.get(token, T0 + 9) is s  # touched: idle clock restarts
    assert ss.get(token, T0 + 18) is s
    assert ss.get(token, T0 + 29) is None  # 11 s idle
    assert len(ss) == 0
    token, s = ss.create("olga", "operator", T0)
    for t in range(5, 100, 5):
        assert ss.get(token, T0 + t) is s
    assert ss.get(token, T0 + 101) is None  # busy, but past max age


def test_session_tokens_are_stored_hashed_and_end_per_user():
    ss = auth.Sessions()
    t1, s1 = ss.create("olga", "operator", T0)
    t2, _ = ss.create("olga", "operator", T0)
    t3, s3 = ss.create("sam", "supervisor", T0)
    assert t1 not in ss._by_key and s1.key in ss._by_key
    assert len({t1, t2, t3}) == 3 and s1.csrf != s3.csrf
    assert ss.get("x" + t1, T0) is None and ss.get("", T0) is None and ss.get(None, T0) is None
    assert ss.end_user("olga") == 2
    assert ss.get(t1, T0) is None and ss.get(t2, T0) is None and ss.get(t3, T0) is s3
    assert s3.check_csrf(s3.csrf) and not s3.check_csrf(s1.csrf) and not s3.check_csrf(None)


def test_session_table_is_bounded_oldest_first():
    ss = auth.Sessions(max_sessions=3)
    tokens = [ss.create("u%d" % i, "operator", T0)[0] for i in range(5)]
    assert len(ss) == 3
    assert ss.get(tokens[0], T0) is None and ss.get(tokens[1], T0) is None
    assert all(ss.get(t, T0) is not None for t in tokens[2:])


# -- throttle ---------------------------------------------------------------------------


def test_throttle_blocks_a_name_after_its_limit_until_the_window_slides():
    th = auth.LoginThrottle(window_s=60, per_user=3, per_ip=100)
    for i in range(3):
        assert th.retry_after("olga", "10.0.0.1", T0 + i) == 0
        th.failed("olga", "10.0.0.1", T0 + i)
    assert th.retry_after("olga", "10.0.0.2", T0 + 3) == pytest.approx(57)
    assert th.retry_after("sam", "10.0.0.1", T0 + 3) == 0
    assert th.retry_after("olga", "10.0.0.1", T0 + 60.5) == 0  # the first failure aged out


def test_throttle_blocks_an_address_spraying_many_names():
    th = auth.LoginThrottle(window_s=60, per_user=3, per_ip=5)
    for i in range(5):
        th.failed("name%d" % i, "10.0.0.9", T0)
    assert th.retry_after("fresh-name", "10.0.0.9", T0 + 1) > 0
    assert th.retry_after("fresh-name", "10.0.0.8", T0 + 1) == 0
    th.succeeded("name0")  # a good login elsewhere does not clear the address
    assert th.retry_after("fresh-name", "10.0.0.9", T0 + 1) > 0


def test_throttle_key_table_is_bounded():
    th = auth.LoginThrottle(max_keys=10)
    for i in range(100):
        th.failed("n%d" % i, "a%d" % i, T0)
    assert len(th._fails) <= 10


def test_a_locked_name_stays_locked_when_a_spray_evicts_its_key():
    # Issue 14: a spray over fresh names (from other addresses) evicted the
    # victim's key from the bounded table, and with it the lock.
    th = auth.LoginThrottle(window_s=900, per_user=5, per_ip=20, max_keys=10)
    for i in range(5):
        th.failed("olga", "10.0.0.1", T0 + i)
    assert th.retry_after("olga", "10.0.0.7", T0 + 10) > 0
    for i in range(200):
        th.failed("spray%d" % i, "10.1.%d.%d" % (i // 250, i % 250), T0 + 11)
    assert len(th._fails) <= 10  # the counting table stays bounded
    assert th.retry_after("olga", "10.0.0.7", T0 + 12) == pytest.approx(900 - 12)
    assert th.retry_after("olga", "10.0.0.7", T0 + 900.5) == 0  # the window slid past


def test_a_full_lock_table_refuses_every_login_rather_than_drop_a_lock():
    th = auth.LoginThrottle(window_s=60, per_user=1, per_ip=100, max_locks=3)
    for i in range(3):
        th.failed("n%d" % i, "10.0.0.%d" % i, T0)
    assert th.retry_after("someone-else", "10.9.9.9", T0 + 1) > 0  # fail closed
    assert th.retry_after("n0", "10.9.9.9", T0 + 1) > 0
    assert th.retry_after("someone-else", "10.9.9.9", T0 + 61) == 0  # locks expired


# -- throttled logins in the audit log ------------------------------------------------------


def test_throttled_attempts_are_one_tally_per_address_per_interval():
    log = auth.ThrottledLog(interval_s=60, max_addresses=3)
    first = log.note("10.0.0.1", "olga", T0)
    assert first is not None and first.detail() == "attempts=1 over_s=0 names=olga"
    for i in range(700):
        assert log.note("10.0.0.1", "olga" if i % 2 else "n%d" % i, T0 + i / 100) is None
    assert log.due(T0 + 30) == []  # interval still open
    [t] = log.due(T0 + 60)
    assert t is first and t.attempts == 701
    assert t.detail() == "attempts=701 over_s=7 names=olga,n0,n2,n4,n6 and 346 more"
    assert log.note("10.0.0.1", "olga", T0 + 61) is not None  # the next interval's row
    assert log.due(T0 + 200) == []  # one attempt: its row already says so


def test_a_distributed_flood_is_summed_past_the_address_bound():
    log = auth.ThrottledLog(interval_s=60, max_addresses=3)
    opened = [log.note("10.0.%d.%d" % (i // 200, i % 200), "x", T0) for i in range(1000)]
    rows = [t for t in opened if t is not None]
    assert len(rows) == 4  # three addresses, then one row for all the others
    assert rows[-1].ip == auth.OTHER_ADDRESSES and rows[-1].addresses == 997
    assert "addresses=997" in [t.detail() for t in log.due(T0 + 60)][-1]


# -- live streams ---------------------------------------------------------------------------


def test_stream_limits_per_session_per_user_and_role_reserves():
    lim = auth.StreamLimits(total=10, per_session=2, per_user=3,
                            reserve=(("administrator", 1), ("operator", 3),
                                     ("supervisor", 2)))
    olga = [("olga", "k1", "operator")] * 2
    assert "this browser already has 2" in lim.refusal(olga, "olga", "k1", "operator")
    assert lim.refusal(olga, "olga", "k2", "operator") is None
    olga3 = olga + [("olga", "k2", "operator")]
    assert "olga already has 3" in lim.refusal(olga3, "olga", "k3", "operator")
    # Operators fill their reserve and the shared part (10 - 6 = 4): 7 in all.
    ops = [("op%d" % i, "k%d" % i, "operator") for i in range(7)]
    assert "no live-update slot free for the operator role" in lim.refusal(
        ops, "op9", "k9", "operator")
    # ... and the supervisors' and administrators' seats are still there.
    assert lim.refusal(ops, "sam", "ks", "supervisor") is None
    assert lim.refusal(ops + [("sam", "ks", "supervisor")] * 2, "ada", "ka",
                       "administrator") is None
    assert lim.refusal(ops + [("sam", "ks", "supervisor")], "sam2", "ks2",
                       "supervisor") is None


# -- where to go after login -----------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "//evil.example",
    "/\\evil.example", "\\\\evil.example", "https://evil.example/", "javascript:alert(1)",
    "evil.example", "", None, 7, "/\x85/evil.example", "/" + "a" * 3000])
def test_next_must_be_a_path_on_this_console(value):
    assert auth.safe_next(value) == "/"


def test_next_keeps_a_console_path_with_its_query():
    assert auth.safe_next("/site/1001?tab=zones#z3") == "/site/1001?tab=zones#z3"
    assert auth.safe_next("/%09/host") == "/%09/host"  # encoded: a path segment, not a host


# -- permissions ------------------------------------------------------------------------


def test_permission_table():
    assert auth.permissions_of("operator") == ["alarm.act", "schedule.change", "test.place",
                                               "view"]
    assert auth.permissions_of("supervisor") == ["alarm.act", "alarm.override", "audit.view",
                                                 "panel.command", "report.view",
                                                 "schedule.change", "security.view",
                                                 "sites.manage", "test.place", "view",
                                                 "zone.release"]
    assert not auth.allowed("operator", auth.ALARM_OVERRIDE)
    assert not auth.allowed("supervisor", auth.SCHEDULE_MANAGE)
    assert not auth.allowed("operator", auth.PANEL_COMMAND)
    assert "users.manage" in auth.permissions_of("administrator")
    assert not auth.allowed("operator", auth.USERS_MANAGE)
    assert not auth.allowed("nobody", auth.VIEW)
    with pytest.raises(KeyError):
        auth.allowed("administrator", "launch.missiles")  # unknown: refused, not allowed


# -- site state -------------------------------------------------------------------------


def ev(i, code, q=1, zone=0, partition=1, cls=None, source="panel"):
    from protocol import contactid
    return {"id": i, "code": code, "qualifier": q, "zone": zone, "partition": partition,
            "event_class": cls or contactid.event_class(code), "received_at": T0 + i,
            "description": contactid.describe(code, q, zone=zone), "source": source}


def test_zone_partition_and_trouble_states_follow_the_last_report():
    events = [
        ev(1, 401, q=3, zone=7, partition=1),  # armed by user 7: not zone 7
        ev(2, 130, zone=3),  # burglary
        ev(3, 301, zone=0, partition=0),  # AC loss
        ev(4, 573, zone=2),  # zone 2 bypassed
        ev(5, 383, zone=5),  # sensor tamper
        ev(6, 130, q=3, zone=3),  # burglary restored
        ev(7, 301, q=3, zone=0, partition=0),  # AC restored
        ev(8, 350, zone=1, partition=0, source="supervision"),  # path 1 failed
        ev(9, 441, q=3, zone=1, partition=2),  # partition 2 armed stay
        ev(10, 401, q=1, zone=7, partition=1),  # partition 1 disarmed
    ]
    st = derive.site_state(events, {"1": "door", "3": "vault"}, {"1": "lobby"})
    zones = {z["zone"]: (z["state"], z["name"]) for z in st["zones"]}
    assert zones == {1: ("unknown", "door"), 2: ("bypassed", ""), 3: ("normal", "vault"),
                     5: ("tamper", "")}
    parts = {p["partition"]: p["state"] for p in st["partitions"]}
    assert parts == {1: "disarmed", 2: "armed stay"}
    assert [(t["code"], t["source"]) for t in st["troubles"]] == [(383, "panel"),
                                                                  (350, "supervision")]


def test_alarm_states_by_class():
    st = derive.site_state([ev(1, 110, zone=1), ev(2, 122, zone=2), ev(3, 613, zone=3),
                            ev(4, 602, zone=4)], {}, {})  # 602 periodic test: not a zone
    assert [z["state"] for z in st["zones"]] == ["alarm:fire", "alarm:holdup", "tested"]


# -- revalidation -------------------------------------------------------------------------


async def test_sessions_end_after_a_password_change_made_elsewhere(tmp_path):
    import time
    us = SQLiteUserStore(str(tmp_path / "c.db"))
    await us.open()
    await us.add("olga", "operator", "first-long-password")
    await us.add("sam", "supervisor", "sams-long-password")
    console = Console(receiver=None, users=us)
    t_olga, _ = console.sessions.create("olga", "operator", time.time())
    t_sam, s_sam = console.sessions.create("sam", "supervisor", time.time())
    assert await revalidate(console) == 0
    await us.set_password("olga", "second-long-password", actor="cli")  # as the CLI does
    assert await revalidate(console) == 1
    assert console.sessions.get(t_olga, time.time()) is None
    assert console.sessions.get(t_sam, time.time()) is s_sam
    await us.delete("sam")
    assert await revalidate(console) == 1
