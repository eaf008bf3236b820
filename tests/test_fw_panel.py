"""Panel logic under CPython with time driven by the test
(firmware/device/panel.py, arming.py, users.py, eol.py)."""

import collections
import sys

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, precondition

from firmware import DEVICE_DIR
from firmware.device import config as C
from protocol.lean import glwire as w
from testkit.configs import scenario_config

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import arming as A  # noqa: E402
import cid  # noqa: E402
import eol  # noqa: E402
import panel as P  # noqa: E402
from protocol import contactid  # noqa: E402

# 2024-06-05 (a Wednesday) 10:00 UTC and 20:00 UTC
WED_10 = 1717581600
WED_20 = WED_10 + 10 * 3600


def make(**over):
    cfg, errors = C.validate(scenario_config(7700, **over))
    assert errors == []
    return P.Panel(cfg, 0)


def take(p):
    out = list(p.out)
    p.out.clear()
    return out


def codes(evs):
    return [(q, c, part, z) for q, c, part, z, _t in evs]


def test_wire_values_equal_glwire():
    """panel.py repeats the few glwire values it needs (so a DC-09 panel
    does not load glwire): they must be the protocol's."""
    names = [n for n in dir(P) if n.split("_")[0] in ("Q", "R", "T", "KIND", "CMD")]
    assert len(names) == 18
    for n in names:
        assert getattr(P, n) == getattr(w, n), n


def test_zone_type_order_matches_config():
    assert P.ZONE_TYPES == C.ZONE_TYPES
    assert len(P.ZONE_CODE) == len(P.ZONE_EVENT) == len(C.ZONE_TYPES)


def test_table_is_total_for_zone_events_and_only_known_states():
    for s, row in A.TRANSITIONS.items():
        for ev in A.ZONE_EVENTS:
            assert ev in row, (A.STATE_NAMES[s], A.EVENT_NAMES[ev])
        for ev, nxt in row.items():
            assert nxt in A.TRANSITIONS
        assert A.DISARM in row  # a user can always disarm
    with pytest.raises(A.Refused):
        A.step(A.ARMED_AWAY, A.ARM_AWAY)
    with pytest.raises(A.Refused):
        A.step(A.DISARMED, A.EXIT_END)


def test_entry_delay_then_alarm_and_disarm_in_time_does_not():
    p = make(timings={"exit_delay_s": 5, "entry_delay_s": 10})
    assert p.keypad("1234", P.K_ARM_AWAY, 1, 0, 0) == w.R_OK
    assert p.parts[0].state == A.EXIT_AWAY
    p.tick(5000)
    assert p.parts[0].state == A.ARMED_AWAY
    assert (w.Q_RESTORE, cid.OPEN_CLOSE, 1, 1) in codes(take(p))
    p.zone_change(0, eol.ALARM, 6000)  # front door
    assert p.parts[0].state == A.ENTRY and not take(p)
    p.zone_change(2, eol.ALARM, 7000)  # PIR follows the entry delay
    assert p.parts[0].state == A.ENTRY and not take(p)
    assert p.keypad("2580", P.K_DISARM, 1, 0, 9000) == w.R_OK
    assert codes(take(p)) == [(w.Q_NEW, cid.OPEN_CLOSE, 1, 2)]
    assert not p.siren
    # again, but nobody disarms
    p.zone_change(0, eol.NORMAL, 9500)
    p.zone_change(2, eol.NORMAL, 9500)
    p.keypad("1234", P.K_ARM_AWAY, 1, 0, 10000)
    p.tick(15000)
    take(p)
    p.zone_change(0, eol.ALARM, 16000)
    p.tick(25999)
    assert p.parts[0].state == A.ENTRY
    p.tick(26000)
    # CP-01 abort window: in alarm and sounding, the report held for 30 s
    assert p.parts[0].state == A.ALARM_HELD and not take(p)
    assert p.siren and p.strobe
    p.tick(55999)
    assert p.parts[0].state == A.ALARM_HELD and not take(p)
    p.tick(56000)
    assert p.parts[0].state == A.ALARM
    assert (w.Q_NEW, cid.ENTRY_EXIT, 1, 1) in codes(take(p))
    assert p.siren and p.strobe


def test_stay_ignores_interior_and_siren_cutoff_keeps_strobe():
    p = make(timings={"siren_cutoff_s": 30})
    p.keypad("1234", P.K_ARM_STAY, 1, 0, 0)
    p.tick(1)
    assert p.parts[0].state == A.ARMED_STAY
    assert (w.Q_RESTORE, cid.ARMED_STAY, 1, 1) in codes(take(p))
    p.zone_change(2, eol.ALARM, 100)  # interior PIR: not armed in stay
    assert p.parts[0].state == A.ARMED_STAY and not take(p)
    p.zone_change(1, eol.ALARM, 200)  # glass: instant
    assert p.parts[0].state == A.ALARM
    p.tick(200)
    assert p.siren and p.strobe
    p.tick(30199)
    assert p.siren
    p.tick(30200)
    assert not p.siren and p.strobe  # cut-off; strobe until disarm
    p.keypad("1234", P.K_DISARM, 1, 0, 40000)
    assert not p.strobe


def test_not_ready_refuses_arming_and_exit_error():
    p = make()
    p.zone_change(1, eol.ALARM, 0)  # instant zone open
    assert p.keypad("1234", P.K_ARM_AWAY, 1, 0, 10) == w.R_REFUSED
    assert p.parts[0].state == A.DISARMED
    p.zone_change(1, eol.NORMAL, 20)
    p.zone_change(0, eol.ALARM, 30)  # the door may be open when arming...
    assert p.keypad("1234", P.K_ARM_AWAY, 1, 0, 40) == w.R_OK
    take(p)
    p.tick(50)  # ...but not still open when the exit delay ends: exit error,
    # the entry delay starts (CP-01), and nothing is sent yet but the closing
    assert codes(take(p)) == [(w.Q_RESTORE, cid.OPEN_CLOSE, 1, 1)]
    assert p.parts[0].state == A.ENTRY
    assert p.status()["partitions"][0]["keypad"] == "exit error: front door open"
    p.tick(1050)  # entry delay (1 s) over: the abort window holds the report
    assert p.parts[0].state == A.ALARM_HELD and not take(p)
    p.tick(31050)  # nobody disarmed: 374 (the zone) and 457 (the user who armed)
    evs = codes(take(p))
    assert evs[:2] == [(w.Q_NEW, cid.EXIT_ERROR, 1, 1), (w.Q_NEW, cid.EXIT_ERROR_USER, 1, 1)]


def test_swinger_shutdown_after_limit_and_reset_at_disarm():
    p = make(timings={"swinger_limit": 2})
    p.keypad("1234", P.K_ARM_AWAY, 1, 0, 0)
    p.tick(1)
    take(p)
    seen = []
    for k in range(4):
        p.zone_change(1, eol.ALARM, 10 + k * 10)
        p.zone_change(1, eol.NORMAL, 15 + k * 10)
        seen += codes(take(p))
    assert seen.count((w.Q_NEW, cid.BURGLARY, 1, 2)) == 2
    assert seen.count((w.Q_NEW, cid.SWINGER, 1, 2)) == 1
    p.keypad("1234", P.K_DISARM, 1, 0, 100)
    assert (w.Q_RESTORE, cid.SWINGER, 1, 2) in codes(take(p))
    # fire is never swinger-limited
    for k in range(5):
        p.zone_change(5, eol.ALARM, 200 + k * 10)
        p.zone_change(5, eol.NORMAL, 205 + k * 10)
    assert codes(take(p)).count((w.Q_NEW, cid.FIRE, 1, 6)) == 5


def test_bypass_needs_manager_and_disarmed_and_not_life_safety():
    p = make()
    assert p.keypad("2580", P.K_BYPASS, 1, 2, 0) == w.R_REFUSED  # user authority
    assert p.keypad("1234", P.K_BYPASS, 1, 4, 0) == w.R_REFUSED  # hold-up
    assert p.keypad("1234", P.K_BYPASS, 1, 2, 0) == w.R_OK
    assert codes(take(p)) == [(w.Q_NEW, cid.BYPASS, 1, 2)]
    p.zone_change(1, eol.ALARM, 10)
    assert p.keypad("1234", P.K_ARM_AWAY, 1, 0, 20) == w.R_OK  # bypassed: ready
    p.tick(30)
    take(p)
    p.zone_change(1, eol.NORMAL, 40)
    p.zone_change(1, eol.ALARM, 50)
    assert p.parts[0].state == A.ARMED_AWAY and not take(p)
    p.keypad("1234", P.K_DISARM, 1, 0, 60)
    assert (w.Q_RESTORE, cid.BYPASS, 1, 2) in codes(take(p))  # bypass ends with the period


def test_wrong_codes_lock_out_then_expire():
    p = make(timings={"lockout_attempts": 3, "lockout_s": 90})
    for k in range(2):
        assert p.keypad("0000", P.K_DISARM, 1, 0, k) == w.R_REFUSED
    assert not take(p)
    p.keypad("0000", P.K_DISARM, 1, 0, 2)
    assert codes(take(p)) == [(w.Q_NEW, cid.WRONG_CODE, 1, 0)]
    assert p.keypad("1234", P.K_ARM_AWAY, 1, 0, 1000) == w.R_REFUSED  # locked: even a good code
    assert p.keypad("1234", P.K_ARM_AWAY, 1, 0, 90002) == w.R_OK


def test_sabotage_codes_and_tamper_while_armed_is_an_alarm():
    p = make()
    p.zone_change(1, eol.TAMPER, 0)
    p.zone_change(1, eol.NORMAL, 10)
    p.zone_change(1, eol.SHORT, 20)
    p.zone_change(1, eol.NORMAL, 30)
    p.zone_change(5, eol.TAMPER, 40)  # fire loop open: fire trouble, not tamper
    p.zone_change(5, eol.NORMAL, 50)
    assert codes(take(p)) == [
        (w.Q_NEW, cid.SENSOR_TAMPER, 1, 2), (w.Q_RESTORE, cid.SENSOR_TAMPER, 1, 2),
        (w.Q_NEW, cid.LOOP_SHORT, 1, 2), (w.Q_RESTORE, cid.LOOP_SHORT, 1, 2),
        (w.Q_NEW, cid.FIRE_TROUBLE, 1, 6), (w.Q_RESTORE, cid.FIRE_TROUBLE, 1, 6)]
    assert p.parts[0].state == A.DISARMED and not p.siren
    p.keypad("1234", P.K_ARM_AWAY, 1, 0, 100)
    p.tick(101)
    take(p)
    p.zone_change(2, eol.TAMPER, 200)  # PIR wire cut while armed
    assert p.parts[0].state == A.ALARM
    p.tick(200)
    assert p.siren
    # the tamper alarm, and (armed 100 ms before) recent closing with the user
    assert codes(take(p)) == [(w.Q_NEW, cid.SENSOR_TAMPER, 1, 3),
                              (w.Q_NEW, cid.RECENT_CLOSE, 1, 1)]


def test_a_loop_going_from_shorted_to_cut_restores_what_it_reported():
    """A restore names the code its new named: shorted (372) then cut
    (144) is 372 new, 372 restore, 144 new, then 144 restore."""
    p = make()
    p.zone_change(1, eol.SHORT, 0)
    p.zone_change(1, eol.TAMPER, 10)
    p.zone_change(1, eol.NORMAL, 20)
    assert codes(take(p)) == [
        (w.Q_NEW, cid.LOOP_SHORT, 1, 2), (w.Q_RESTORE, cid.LOOP_SHORT, 1, 2),
        (w.Q_NEW, cid.SENSOR_TAMPER, 1, 2), (w.Q_RESTORE, cid.SENSOR_TAMPER, 1, 2)]


def test_troubles_with_delays_and_hysteresis():
    p = make(timings={"ac_loss_delay_s": 60, "battery_delay_s": 0, "clock_grace_s": 100,
                      "low_battery_mv": 11500, "battery_restore_mv": 12200})
    p.supplies(False, 13000, False, 0)
    p.supplies(False, 13000, False, 59999)
    assert not take(p)
    p.supplies(False, 13000, False, 60000)
    assert codes(take(p)) == [(w.Q_NEW, cid.AC_LOSS, 0, 0)]
    assert p.troubles & w.T_AC_LOSS
    p.supplies(True, 11400, True, 60001)
    assert codes(take(p)) == [(w.Q_RESTORE, cid.AC_LOSS, 0, 0), (w.Q_NEW, cid.LOW_BATTERY, 0, 0),
                              (w.Q_NEW, cid.BOX_TAMPER, 0, 0)]
    p.supplies(True, 12000, False, 60002)  # above low, below restore: still low
    assert codes(take(p)) == [(w.Q_RESTORE, cid.BOX_TAMPER, 0, 0)]
    p.supplies(True, 12300, False, 60003)
    assert codes(take(p)) == [(w.Q_RESTORE, cid.LOW_BATTERY, 0, 0)]
    p.tick(100000)
    assert codes(take(p)) == [(w.Q_NEW, cid.CLOCK_UNSET, 0, 0)]
    p.clock_set()
    assert codes(take(p)) == [(w.Q_RESTORE, cid.CLOCK_UNSET, 0, 0)]
    p.path_state(1, False)
    p.path_state(1, False)
    p.path_state(1, True)
    assert codes(take(p)) == [(w.Q_NEW, cid.COMM_TROUBLE, 0, 1), (w.Q_RESTORE, cid.COMM_TROUBLE, 0, 1)]


def door_panel(**t):
    zones = [{"id": 1, "name": "door", "type": "door", "partition": 1},
             {"id": 2, "name": "bolt", "type": "bolt", "partition": 1},
             {"id": 3, "name": "lock tamper", "type": "tamper", "partition": 1}]
    tim = {"unlock_s": 5, "door_held_open_s": 30, "bolt_timeout_s": 10, "entry_delay_s": 10}
    tim.update(t)
    return make(kind="door", zones=zones, partitions=[{"id": 1, "name": "flat"}], timings=tim)


def test_door_forced_when_locked_and_not_when_unlocked_by_code():
    p = door_panel()
    assert p.lock
    p.zone_change(0, eol.ALARM, 100)  # opens while locked, panel disarmed
    assert codes(take(p)) == [(w.Q_NEW, cid.FORCED, 1, 1)]
    p.tick(100)
    assert p.siren  # forced entry sounds even when disarmed
    p.zone_change(0, eol.NORMAL, 200)
    assert codes(take(p)) == [(w.Q_RESTORE, cid.FORCED, 1, 1)]
    p.keypad("1234", P.K_DISARM, 1, 0, 300)  # silence
    take(p)
    assert p.keypad("2580", P.K_UNLOCK, 1, 0, 1000) == w.R_OK
    assert not p.lock
    p.zone_change(0, eol.ALARM, 2000)
    p.zone_change(0, eol.NORMAL, 3000)
    p.tick(3000)
    assert p.lock and not take(p)  # relocked when the door shut, nothing reported
    # the grant runs out if nobody opens the door
    p.keypad("2580", P.K_UNLOCK, 1, 0, 10000)
    p.tick(14999)
    assert not p.lock
    p.tick(15000)
    assert p.lock


def test_door_held_open_and_bolt_not_thrown():
    p = door_panel()
    p.keypad("1234", P.K_UNLOCK, 1, 0, 0)
    p.zone_change(1, eol.ALARM, 10)  # bolt retracts
    p.zone_change(0, eol.ALARM, 1000)
    p.tick(30999)
    assert not take(p)
    p.tick(31000)
    assert codes(take(p)) == [(w.Q_NEW, cid.PROPPED, 1, 1)]
    p.zone_change(0, eol.NORMAL, 40000)
    p.tick(40000)
    assert codes(take(p)) == [(w.Q_RESTORE, cid.PROPPED, 1, 1)]
    p.tick(50000)  # locked 10 s ago, the bolt still reads retracted
    assert codes(take(p)) == [(w.Q_NEW, cid.LOCK_FAIL, 1, 2)]
    p.zone_change(1, eol.NORMAL, 51000)
    p.tick(51000)
    assert codes(take(p)) == [(w.Q_RESTORE, cid.LOCK_FAIL, 1, 2)]


def test_door_unlock_disarms_and_forced_while_armed_alarms():
    p = door_panel(exit_delay_s=0)
    p.keypad("1234", P.K_ARM_AWAY, 1, 0, 0)
    p.tick(1)
    assert p.parts[0].state == A.ARMED_AWAY
    take(p)
    p.zone_change(0, eol.ALARM, 100)
    assert p.parts[0].state == A.ALARM  # forced: never held
    assert codes(take(p)) == [(w.Q_NEW, cid.FORCED, 1, 1), (w.Q_NEW, cid.RECENT_CLOSE, 1, 1)]
    assert p.keypad("2580", P.K_UNLOCK, 1, 0, 200) == w.R_OK
    assert p.parts[0].state == A.DISARMED and not p.lock


def test_time_lock_refuses_disarm_outside_window_and_auto_arms():
    parts = [{"id": 1, "name": "vault",
              "time_lock": {"open": "08:30", "close": "17:00", "days": [1, 2, 3, 4, 5]}},
             {"id": 2, "name": "teller line"}]
    p = make(partitions=parts)
    assert p.in_window(p.parts[0], WED_10)
    assert not p.in_window(p.parts[0], WED_20)
    assert not p.in_window(p.parts[0], WED_10 + 3 * 86400)  # Saturday
    assert not p.in_window(p.parts[0], 0)  # clock unset: fail secure
    p.tick(0, WED_10)
    assert p.parts[0].state == A.DISARMED  # inside the window: left alone
    p.tick(10, WED_20)  # window closed: auto-arm (exit delay 0)
    p.tick(20, WED_20)
    assert p.parts[0].state == A.ARMED_AWAY
    assert (w.Q_RESTORE, cid.AUTO_OPEN_CLOSE, 1, 0) in codes(take(p))
    assert p.keypad("1234", P.K_DISARM, 1, 0, 30, WED_20) == w.R_REFUSED
    assert codes(take(p)) == [(w.Q_NEW, cid.ACCESS_DENIED, 1, 1)]
    assert p.parts[0].state == A.ARMED_AWAY
    # opening the vault door now is a burglary alarm
    p.zone_change(1, eol.ALARM, 40)
    assert p.parts[0].state == A.ALARM
    # next morning the vault officer may open it
    assert p.keypad("1234", P.K_DISARM, 1, 0, 50, WED_10 + 86400) == w.R_OK
    # auto-arm fails while a zone is open, reported once, then arms
    p.zone_change(1, eol.ALARM, 60)  # still open at close time
    p.tick(70, WED_20 + 86400)
    p.tick(80, WED_20 + 86400)
    assert codes(take(p)).count((w.Q_NEW, cid.AUTO_ARM_FAILED, 1, 0)) == 1
    p.zone_change(1, eol.NORMAL, 90)
    p.tick(100, WED_20 + 86400)
    assert (w.Q_RESTORE, cid.AUTO_ARM_FAILED, 1, 0) in codes(take(p))


def test_modes_survive_power_loss():
    p = make()
    p.keypad("1234", P.K_ARM_STAY, 1, 0, 0)
    p.keypad("1234", P.K_ARM_AWAY, 2, 0, 0)
    p.tick(1)
    modes = p.modes()
    assert list(modes) == [P.MODE_STAY, P.MODE_AWAY]
    q = make()
    q.restore_modes(modes)
    assert [x.state for x in q.parts] == [A.ARMED_STAY, A.ARMED_AWAY]


def test_remote_commands():
    p = make(timings={"exit_delay_s": 0})
    assert p.command(w.CMD_ARM_AWAY, 2, 0, 77, 0) == w.R_OK
    p.tick(1)
    assert (w.Q_RESTORE, cid.REMOTE_OPEN_CLOSE, 2, 77) in codes(take(p))
    assert p.command(w.CMD_ARM_AWAY, 2, 0, 77, 2) == w.R_REFUSED  # already armed
    assert p.command(w.CMD_DISARM, 9, 0, 77, 3) == w.R_BAD_ARGUMENT
    assert p.command(w.CMD_STATUS, 0, 0, 77, 4) == w.R_OK


# -- the state machine walk -------------------------------------------------

def test_walk_test_reports_every_zone_type_as_tested_never_as_an_alarm():
    zones = scenario_config(7700)["zones"] + [
        {"id": 8, "name": "cabinet tamper", "type": "tamper", "partition": 2}]
    p = make(zones=zones, timings={"walk_test_s": 60})
    # refused: a user code, and while a partition is armed
    assert p.keypad("2580", P.K_WALK_START, 1, 0, 0) == w.R_REFUSED
    assert p.keypad("1234", P.K_ARM_AWAY, 2, 0, 0) == w.R_OK
    assert p.keypad("1234", P.K_WALK_START, 1, 0, 0) == w.R_REFUSED
    assert [x.state for x in p.parts][0] == A.DISARMED
    p.keypad("1234", P.K_DISARM, 2, 0, 0)
    take(p)
    assert p.keypad("1234", P.K_WALK_END, 1, 0, 0) == w.R_REFUSED  # not in walk test
    assert p.keypad("1234", P.K_WALK_START, 1, 0, 1000) == w.R_OK
    assert codes(take(p)) == [(w.Q_NEW, cid.TEST_MODE, 0, 1)]
    assert [x.state for x in p.parts] == [A.WALK_TEST, A.WALK_TEST]
    assert p.status()["walk_test"] and p.status()["partitions"][0]["state"] == "walk_test"
    # no arming in walk test; a second start is refused
    assert p.keypad("1234", P.K_ARM_AWAY, 1, 0, 1000) == w.R_REFUSED
    assert p.keypad("1234", P.K_WALK_START, 1, 0, 1000) == w.R_REFUSED
    expect = {1: cid.INTRUSION_WALKED, 2: cid.INTRUSION_WALKED, 3: cid.INTRUSION_WALKED,
              4: cid.PANIC_WALKED, 5: cid.PANIC_WALKED, 6: cid.FIRE_WALKED,
              8: cid.POINT_TESTED}
    for _ in range(2):  # the second walk past each zone reports nothing
        for i, zid in enumerate(p.zid):
            p.zone_change(i, eol.ALARM, 2000)
            p.tick(2000)
            p.zone_change(i, eol.NORMAL, 2100)
            p.tick(2100)
        evs = codes(take(p))
        if _ == 0:
            assert sorted(evs) == sorted((w.Q_NEW, expect[z], p.parts[p.zpart[i]].id, z)
                                         for i, z in enumerate(p.zid))
        else:
            assert evs == []
        assert not p.siren and not p.strobe
        assert all(x.memory == [] and x.state == A.WALK_TEST for x in p.parts)
    # a miswired loop still reports its trouble, and no alarm
    p.zone_change(1, eol.SHORT, 3000)
    p.zone_change(5, eol.TAMPER, 3000)
    p.tick(3000)
    assert sorted(codes(take(p))) == [(w.Q_NEW, cid.LOOP_SHORT, 1, 2),
                                      (w.Q_NEW, cid.FIRE_TROUBLE, 1, 6)]
    # a duress code is never a test: 121 first
    p.keypad("1235", P.K_DISARM, 1, 0, 3000)
    assert codes(take(p)) == [(w.Q_NEW, cid.DURESS, 1, 9)]
    assert p.flags() & P.F_WALK_TEST
    assert p.keypad("1234", P.K_WALK_END, 2, 0, 4000) == w.R_OK
    assert codes(take(p)) == [(w.Q_RESTORE, cid.TEST_MODE, 0, 1)]
    assert [x.state for x in p.parts] == [A.DISARMED, A.DISARMED]
    assert not p.flags() & P.F_WALK_TEST
    # after the walk test, zones behave as before: fire alarms
    p.zone_change(1, eol.NORMAL, 5000)
    p.zone_change(5, eol.NORMAL, 5000)
    take(p)
    p.zone_change(5, eol.ALARM, 6000)
    p.tick(6000)
    assert (w.Q_NEW, cid.FIRE, 1, 6) in codes(take(p)) and p.siren


def test_walk_test_times_out_and_a_power_loss_owes_its_restore():
    p = make(timings={"walk_test_s": 60})
    assert p.keypad("1234", P.K_WALK_START, 1, 0, 1000) == w.R_OK
    take(p)
    p.tick(60999)
    assert take(p) == [] and p.walk_test()
    p.tick(61000)
    assert codes(take(p)) == [(w.Q_RESTORE, cid.TEST_MODE, 0, 1)]
    assert [x.state for x in p.parts] == [A.DISARMED, A.DISARMED] and not p.walk_test()
    # power loss during a walk test: back disarmed, 607 restore at boot
    assert p.keypad("1234", P.K_WALK_START, 1, 0, 70000) == w.R_OK
    modes, flags = p.modes(), p.flags()
    assert list(modes) == [P.MODE_OFF, P.MODE_OFF] and flags & P.F_WALK_TEST
    q = make()
    q.restore_modes(modes)
    q.boot_report(flags, False)
    assert codes(take(q)) == [(w.Q_RESTORE, cid.TEST_MODE, 0, 0)]
    assert [x.state for x in q.parts] == [A.DISARMED, A.DISARMED] and not q.flags()


def test_walk_codes_are_test_class_at_the_receiver():
    assert len(P.WALK_CODE) == len(P.ZONE_TYPES)
    for c in set(P.WALK_CODE) | {cid.TEST_MODE}:
        assert contactid.event_class(c) == "test" and not contactid.is_alarm(1, c)


CODES = {"1234": (1, False), "2580": (2, False), "1235": (9, True), "0000": (None, False)}
AUDIBLE = (cid.FIRE, cid.PANIC, cid.BURGLARY, cid.H24, cid.INTERIOR, cid.ENTRY_EXIT,
           cid.SENSOR_TAMPER, cid.LOOP_SHORT, cid.FORCED, cid.EXIT_ERROR, cid.BOX_TAMPER)
ACTION_EVENT = {P.K_ARM_AWAY: A.ARM_AWAY, P.K_ARM_STAY: A.ARM_STAY, P.K_DISARM: A.DISARM}
MASTERS = {1}
SABOTAGE = (cid.SENSOR_TAMPER, cid.LOOP_SHORT, cid.FIRE_TROUBLE)  # scenario_config: user 1 is the master
NEVER_HELD = (P.Z_HOLDUP, P.Z_PANIC, P.Z_FIRE, P.Z_24H, P.Z_SEISMIC, P.Z_TAMPER)
INTRUSION = (P.Z_INSTANT, P.Z_ENTRY, P.Z_FOLLOWER, P.Z_24H, P.Z_SEISMIC, P.Z_DOOR)
OPENINGS = (cid.OPEN_CLOSE, cid.REMOTE_OPEN_CLOSE, cid.AUTO_OPEN_CLOSE)
CANCELS = (130, 132, 133, 134, 137, 139, 144, 374, 423)
ABORT_S, CANCEL_S, CONFIRM_S = 15, 300, 60
SMOKE = 9  # zone index of the verified smoke detector (zone 10)
# zone reports that come as new / restore pairs
PAIRED = set(P.ZONE_CODE) - {0} | {cid.EXIT_ERROR, cid.FORCED, cid.SENSOR_TAMPER,
                                   cid.LOOP_SHORT, cid.FIRE_TROUBLE}


class PanelMachine(RuleBasedStateMachine):
    """Random zone changes, codes, sounder lines and time steps against
    the panel, with the issue's invariants checked after every step:
    an alarm is never silently lost; duress always yields 121; a hold-up
    never sounds; hold-up, duress, panic, fire and 24-hour zones are
    never held (a verified smoke detector only by its verification); an
    aborted alarm is never queued; a cancel only follows an alarm queued
    inside the cancel window; a confirmed alarm needs two distinct
    intrusion zones inside the confirmation window."""

    def __init__(self):
        super().__init__()
        zones = scenario_config(7700)["zones"] + [
            {"id": 7, "name": "ATM safe", "type": "24h", "partition": 2},
            {"id": 8, "name": "cabinet tamper", "type": "tamper", "partition": 2},
            {"id": 9, "name": "vault seismic", "type": "seismic", "partition": 2},
            {"id": 10, "name": "lobby smoke 2", "type": "fire", "partition": 1, "verify": True}]
        self.p = make(zones=zones, options={"abort_report": True},
                      timings={"exit_delay_s": 2, "entry_delay_s": 3, "swinger_limit": 2,
                               "siren_cutoff_s": 20, "lockout_attempts": 4, "lockout_s": 30,
                               "walk_test_s": 40, "abort_window_s": ABORT_S,
                               "cancel_window_s": CANCEL_S, "confirm_window_s": CONFIRM_S,
                               "fire_reset_s": 1, "fire_verify_s": 60})
        self.now = 0
        self.shut = set()  # zones with a 575 (swinger) new outstanding
        self.all = []
        self.log = []  # (time, q, code, partition, zone, text) of everything queued
        self.raised = {1: [], 2: []}  # partition -> [(zone id, time)] intrusion alarms raised
        self.period = {1: 0, 2: 0}  # partition -> time its arming period began
        self.held = {1: [], 2: []}  # partition -> [(code, zone id)] the test expects held
        self.aborted = set()  # partitions whose held alarms a disarm just aborted
        self.snap = {}
        self.open_new = collections.Counter()  # (code, partition, zone): news not restored

    # -- bookkeeping ---------------------------------------------------------

    def _before(self):
        self.snap = {x.id: (x.state, list(x.pending)) for x in self.p.parts}
        self.aborted = set()

    def _take(self):
        evs = take(self.p)
        for q, c, part, z, text in evs:
            if c == cid.SWINGER:
                (self.shut.add if q == w.Q_NEW else self.shut.discard)(z)
            self.log.append((self.now, q, c, part, z, text))
        self.all += evs
        self._check(evs)
        return codes(evs)

    def _check(self, evs):
        p = self.p
        got = codes(evs)
        for x in p.parts:
            state, pending = self.snap.get(x.id, (x.state, []))
            # held reports live only in the abort window, and only leave it
            # all together (flush) or never (abort)
            assert not x.pending or x.state == A.ALARM_HELD
            if x.state == A.ALARM_HELD and state == A.ALARM_HELD:
                assert x.pending[:len(pending)] == pending
            if x.id in self.aborted:
                for q, c, z, _t in pending:
                    assert (q, c, x.id, z) not in got, ("aborted alarm sent", c, z)
                self.held[x.id] = []
            elif self.held[x.id] and x.state != A.ALARM_HELD:
                # the window ended without an abort: every held alarm is sent now
                for c, z in self.held[x.id]:
                    assert (w.Q_NEW, c, x.id, z) in got, ("held alarm lost", c, z, got)
                self.held[x.id] = []
        for k in range(len(self.log) - len(evs), len(self.log)):
            t, q, c, part, z, text = self.log[k]
            if c in PAIRED and q == w.Q_RESTORE:
                # a restore only ends what was reported: never one for an
                # alarm that was aborted (or never sent)
                assert self.open_new[(c, part, z)] > 0, ("restore without its alarm", c, z)
                self.open_new[(c, part, z)] -= 1
            elif c in PAIRED and q == w.Q_NEW:
                self.open_new[(c, part, z)] += 1
            if c == cid.CANCEL:
                self._check_cancel(part, text, k)
            if c == cid.CONFIRMED and q == w.Q_NEW:
                self._check_confirmed(part, z)

    def _since_opening(self, part, end):
        """Times of the burglary/tamper alarms of `part` queued since its
        last opening, before log entry `end`."""
        out = []
        for t, q, c, pp, z, text in self.log[:end]:
            if pp != part:
                continue
            if q == w.Q_NEW and c in OPENINGS:
                out = []
            elif q == w.Q_NEW and c in CANCELS:
                out.append(t)
        return out

    def _check_cancel(self, part, text, k):
        # the opening report of the same disarm follows the 406
        assert self.log[k + 1][2] in OPENINGS and self.log[k + 1][3] == part
        sent = self._since_opening(part, k)
        if text == "abort":
            assert sent == [], "an abort report with alarms sent since the opening"
        else:
            assert text == "cancel"
            assert sent, "a cancel with no alarm sent since the last opening"
            assert self.now - min(sent) <= CANCEL_S * 1000, "cancel outside the window"

    def _check_confirmed(self, part, zid):
        seen = [(z, t) for z, t in self.raised[part] if t >= self.period[part]]
        assert any(z2 == zid and z1 != zid and 0 <= t2 - t1 < CONFIRM_S * 1000
                   for z1, t1 in seen for z2, t2 in seen), ("unconfirmed 139", zid, seen)

    # -- rules ------------------------------------------------------------------

    @rule(i=st.integers(0, 9), s=st.sampled_from([eol.NORMAL, eol.ALARM, eol.ALARM, eol.TAMPER,
                                                  eol.SHORT]))
    def zone(self, i, s):
        p = self.p
        self._before()
        old = p.zstate[i]
        part = p._part_of(i)
        pstate = part.state
        siren_before = p.siren
        zid = p.zid[i]
        bypassed = p.zflags[i] & P._F_BYPASS
        shut_before = zid in self.shut
        left = part.f & P.P_EXIT_LEFT
        smoke = p.smoke.state
        masked = i == SMOKE and smoke in (1, 2)  # detectors being reset
        t = p.ztype[i]
        ev = P.ZONE_EVENT[t]
        if ev == A.TRIP_ENTRY and left and pstate in A.EXITING:
            ev = A.EXIT_REENTRY  # exit time restart
        trip = s == eol.ALARM and old != eol.ALARM and not bypassed and not masked \
            and pstate != A.WALK_TEST
        if trip and not shut_before and t in INTRUSION and \
                (ev < 0 or A.raises_alarm(pstate, ev)):
            self.raised[part.id].append((zid, self.now))  # a candidate for 139
        p.zone_change(i, s, self.now)
        p.tick(self.now)
        evs = self._take()
        if masked:
            return
        if pstate == A.WALK_TEST:
            # walk test: never an alarm, never a siren; a trip is reported
            # as walk tested (once per zone and walk test)
            # (a cut or shorted loop still reports its sabotage code)
            for q, c, _p, _z in evs:
                if contactid.is_alarm(q, c):
                    assert s >= eol.TAMPER and c in SABOTAGE, evs
            assert siren_before or not p.siren
            assert part.state == A.WALK_TEST
            if s == eol.ALARM and old != eol.ALARM:
                assert p.zflags[i] & P._F_WALKED
                assert (w.Q_NEW, P.WALK_CODE[t], part.id, zid) in evs or \
                    (w.Q_NEW, P.WALK_CODE[t], part.id, zid) in codes(self.all[:-len(evs) or None])
        elif trip:
            code = (w.Q_NEW, P.ZONE_CODE[t], part.id, zid)
            if ev >= 0:
                assert part.state == A.step(pstate, ev) or shut_before
                if A.raises_alarm(pstate, ev) and not shut_before:
                    if A.holds(pstate, ev):
                        assert code not in evs, "an abortable alarm sent inside the window"
                        self.held[part.id].append((P.ZONE_CODE[t], zid))
                    else:
                        assert code in evs, evs
            elif i == SMOKE:
                if smoke == 3:  # verification window: the second trip is the fire alarm
                    assert code in evs, evs
                else:
                    assert code not in evs and p.smoke.state == 1 and not p.supply
            else:
                # 24-hour types alarm in every state, never held: a hold-up,
                # panic, fire, 24h or seismic report is in this very step
                # (or its zone was swinger-limited before)
                assert t in NEVER_HELD
                life = t in (P.Z_HOLDUP, P.Z_PANIC, P.Z_FIRE)
                assert code in evs or (shut_before and not life), evs
        if t == P.Z_HOLDUP and not siren_before:
            assert not p.siren and not any(c[1] == cid.HOLDUP and p.siren for c in evs)
        if s >= eol.TAMPER and old < eol.TAMPER:
            assert any(c[0] == w.Q_NEW and c[3] == zid and
                       c[1] in (cid.SENSOR_TAMPER, cid.LOOP_SHORT, cid.FIRE_TROUBLE) for c in evs)

    @rule(code=st.sampled_from(sorted(CODES)), action=st.sampled_from(
        [P.K_ARM_AWAY, P.K_ARM_STAY, P.K_DISARM, P.K_DISARM, P.K_BYPASS, P.K_UNBYPASS,
         P.K_WALK_START, P.K_WALK_END]),
        partition=st.integers(1, 2), arg=st.integers(1, 9))
    def key(self, code, action, partition, arg):
        p = self.p
        self._before()
        part = p.parts[partition - 1]
        before = part.state
        states = [x.state for x in p.parts]
        locked = p.users.locked(self.now)
        uid, duress = CODES[code]
        if action == P.K_DISARM and before == A.ALARM_HELD and uid is not None and \
                not locked and not duress:
            self.aborted.add(partition)  # a valid code inside the window: abort
        r = p.keypad(code, action, partition, arg, self.now)
        if r != w.R_OK:
            self.aborted.discard(partition)
        evs = self._take()
        if r == w.R_OK and action in ACTION_EVENT:
            self.period[partition] = self.now  # a new arming period (_reset_period)
        if uid is None or locked:
            assert r == w.R_REFUSED and part.state == before
            return
        if duress:
            # duress always yields 121, first, whatever the action, and
            # never aborts: what was held is sent
            assert evs[0] == (w.Q_NEW, cid.DURESS, partition, uid)
            assert not any(c == cid.CANCEL for _q, c, _p, _z in evs)
        if action in (P.K_WALK_START, P.K_WALK_END):
            ev = A.WALK_START if action == P.K_WALK_START else A.WALK_END
            allowed = uid in MASTERS and all(ev in A.TRANSITIONS[x] for x in states)
            assert (r == w.R_OK) == allowed, (r, states)
            if allowed:
                want = A.WALK_TEST if ev == A.WALK_START else A.DISARMED
                assert all(x.state == want for x in p.parts)
                q = w.Q_NEW if ev == A.WALK_START else w.Q_RESTORE
                assert (q, cid.TEST_MODE, 0, uid) in evs
            else:
                assert part.state == before
        elif action in ACTION_EVENT:
            ev = ACTION_EVENT[action]
            if r == w.R_OK:
                assert part.state == A.TRANSITIONS[before][ev]
            else:
                assert part.state == before
                if ev == A.DISARM:
                    pytest.fail("disarm refused without a time lock")
            if ev not in A.TRANSITIONS[before]:
                assert r == w.R_REFUSED

    @rule(stay=st.booleans(), partition=st.integers(1, 2))
    def arm_and_leave(self, stay, partition):
        """The common path, made likely: the master arms, the exit delay
        runs out (random keys alone rarely get a partition armed)."""
        self.key("1234", P.K_ARM_STAY if stay else P.K_ARM_AWAY, partition, 1)
        self.wait(2500)

    @rule(i=st.sampled_from([0, 2]), wait=st.sampled_from([0, 3500]))
    def intrude(self, i, wait):
        """Someone walks in by the front door or past the PIR (the zones
        whose alarms the abort window holds), perhaps waits."""
        self.zone(i, eol.ALARM)
        self.zone(i, eol.NORMAL)
        if wait:
            self.wait(wait)

    @rule(wait=st.sampled_from([0, 3500]))
    def door_left_open(self, wait):
        """The front door open when the exit delay ends: exit error."""
        self.zone(0, eol.ALARM)
        self.arm_and_leave(False, 1)
        if wait:
            self.wait(wait)

    @rule(again=st.booleans())
    def smoke_detector(self, again):
        """Smoke at the verified detector: its first trip resets it (the
        latch clears: it reads normal while reset), then it trips again in
        the verification window, or not."""
        self.zone(SMOKE, eol.ALARM)
        self.zone(SMOKE, eol.NORMAL)
        self.wait(1000)
        self.wait(3500)
        if again:
            self.zone(SMOKE, eol.ALARM)
            self.zone(SMOKE, eol.NORMAL)

    @rule(partition=st.integers(1, 2), duress=st.booleans())
    def disarm(self, partition, duress):
        self.key("1235" if duress else "2580", P.K_DISARM, partition, 1)

    @rule(k=st.integers(0, 1), s=st.sampled_from([eol.NORMAL, eol.TAMPER, eol.SHORT]))
    def sounder(self, k, s):
        p = self.p
        self._before()
        driven = p.siren if k == 0 else p.strobe
        armed = [x.id for x in p.parts if A.is_armed(x.state) and not x.f & P.P_SND_TAMPER]
        was = p.snd.stable[k]
        for _ in range(2):  # read twice, a debounce apart
            p.sounder(k, s, self.now)
            self.now += 100
        p.tick(self.now)
        evs = self._take()
        if driven or (was == eol.NORMAL) == (s == eol.NORMAL):
            return
        q = w.Q_NEW if s != eol.NORMAL else w.Q_RESTORE
        assert (q, P._SOUNDER_CODE[k], 0, 0) in evs
        if s != eol.NORMAL:
            # a siren or strobe line cut or shorted while armed: tamper alarm
            for pid in armed:
                assert (w.Q_NEW, cid.BOX_TAMPER, pid, 0) in evs

    @rule(ms=st.sampled_from([50, 500, 1000, 2500, 3500, 10000, 16000, 30000, 301000]))
    def wait(self, ms):
        self.now += ms
        p = self.p
        self._before()
        states = [x.state for x in p.parts]
        walk_due = p.walk_due
        exit_error = [x.f & P.P_EXIT_ERROR for x in p.parts]
        ending = [x.state == A.ENTRY and self.now - x.due >= 0 and
                  p.zid[x.entry_zone] not in self.shut for x in p.parts]
        for k, x in enumerate(p.parts):
            if ending[k]:  # raised in this tick (known before a 139 may name it)
                self.raised[x.id].append((p.zid[x.entry_zone], self.now))
        p.tick(self.now)
        evs = self._take()
        if walk_due is not None and self.now - walk_due >= 0:
            # the walk test ended by itself, with its 607 restore
            assert all(x.state == A.DISARMED for x in p.parts)
            assert (w.Q_RESTORE, cid.TEST_MODE, 0, p.walk_user) in evs
        for k, x in enumerate(p.parts):
            if states[k] == A.ENTRY and x.state in (A.ALARM_HELD, A.ALARM):
                # the entry delay ran out: the alarm is held, not sent (or
                # sent already: an alarm that is never held, the verified
                # smoke detector's, ended the window in the same tick)
                assert ending[k] or p.zid[x.entry_zone] in self.shut
                i = x.entry_zone
                c = cid.EXIT_ERROR if exit_error[k] else P.ZONE_CODE[p.ztype[i]]
                if ending[k]:
                    if x.state == A.ALARM_HELD:
                        assert (w.Q_NEW, c, x.id, p.zid[i]) not in evs
                        self.held[x.id].append((c, p.zid[i]))
                    else:
                        assert (w.Q_NEW, c, x.id, p.zid[i]) in evs

    @invariant()
    def bounded_and_consistent(self):
        p = self.p
        assert len(p.out) <= P.OUT_MAX and p.overflow == 0
        for x in p.parts:
            assert x.state in A.TRANSITIONS
            # one timer: exit or entry delay, or the abort window
            assert (x.due is not None) == (x.state in (A.ENTRY, A.ALARM_HELD) + A.EXITING)
        # walk test: every partition or none, its timeout running iff in it,
        # and bracketed by 607: one new more than restores while in it
        walking = [x.state == A.WALK_TEST for x in p.parts]
        assert all(walking) or not any(walking)
        assert (p.walk_due is not None) == all(walking)
        news = sum(1 for q, c, _p, z, _t in self.all if c == cid.TEST_MODE and q == w.Q_NEW)
        rests = sum(1 for q, c, _p, z, _t in self.all if c == cid.TEST_MODE and q == w.Q_RESTORE)
        assert news - rests == (1 if all(walking) else 0)
        # the siren never sounds unless an audible alarm was reported, or is
        # held in an abort window (it sounds there: local annunciation)
        if p.siren:
            assert any(q == w.Q_NEW and c in AUDIBLE for q, c, _p, _z, _t in self.all) or \
                any(x.pending for x in p.parts)


TestPanelMachine = PanelMachine.TestCase
TestPanelMachine.settings = settings(max_examples=400, stateful_step_count=60, deadline=None)
