# Partition arming as a transition table.
#
# TRANSITIONS[state][event] -> next state.  A pair with no entry is an
# error: step() raises Refused and the state does not change (a user
# command is answered "refused"; a timer event in a wrong state is a bug).
# Zone events that mean nothing in a state have an explicit self-loop, so
# the table says what happens to every zone event in every state.
#
# Internal states keep the arming mode (away/stay) in the exit-delay
# state; WIRE_STATE maps them to glwire's P_* partition states.
#
# A zone event whose entry leads to ALARM or ALARM_HELD raises an alarm
# for that zone; ENTRY_END raises it for the zone that started the entry
# delay.  The caller (panel.py) turns that into a report and outputs.
# 24-hour zones (fire, panic, hold-up, 24h, seismic, tamper) do not go
# through this table: they alarm in every state, and are never held.
#
# False-alarm reduction (ANSI/SIA CP-01; docs/firmware.md, "CP-01"):
# - ALARM_HELD is the abort window: the partition is in alarm and sounds,
#   but its report is held (CP-01 4.2.2.1, "abort window").  Only an
#   entry/exit or interior zone gets there (an entry delay that ran out,
#   an interior zone with no entry delay running); an instant trip, a
#   sabotaged loop or forced door goes straight to ALARM, and so does the
#   window when it runs out (ABORT_END: the held reports are sent).  A
#   disarm in ALARM_HELD aborts: the held reports are never sent.
# - EXIT_AWAY_AGAIN / EXIT_STAY_AGAIN: the exit delay was restarted by a
#   re-entry (EXIT_REENTRY: a delay zone opened again after it had opened
#   and closed during the exit delay, CP-01 "exit time restart").  Only
#   once: a further re-entry is a self-loop there.
# - EXIT_ERROR: the exit delay ended with a delay zone still open.  The
#   partition is armed and its entry delay starts (no instant alarm); the
#   caller reports the exit error (374, 457) if nobody disarms in time.
#
# WALK_TEST (installer walk test, EN 50131-7 commissioning): entered from
# DISARMED only (panel.py enters it for every partition at once, and only
# when all are disarmed) and left by WALK_END (the installer's code or the
# walk-test timeout).  Zone events are self-loops there: a trip is reported
# as "walk tested" (Contact ID 611/613/614/615) by panel.py, never as an
# alarm, and a walk-test partition is not armed (is_armed), so a sabotaged
# loop reports its trouble code only.  Arming is refused in it (no entry).

from fwutil import const

DISARMED = const(0)
EXIT_AWAY = const(1)
EXIT_STAY = const(2)
ARMED_AWAY = const(3)
ARMED_STAY = const(4)
ENTRY = const(5)
ALARM = const(6)
WALK_TEST = const(7)
ALARM_HELD = const(8)  # in alarm, its report held for the abort window
EXIT_AWAY_AGAIN = const(9)  # exit delay restarted once (re-entry)
EXIT_STAY_AGAIN = const(10)
STATE_NAMES = ("disarmed", "exit_away", "exit_stay", "armed_away", "armed_stay",
               "entry_delay", "alarm", "walk_test", "alarm_held", "exit_away_again",
               "exit_stay_again")

# glwire P_*: disarmed 0, exit 1, away 2, stay 3, entry 4, alarm 5 (the wire
# has no walk-test state: a walk-test partition is disarmed; the 607 report
# brackets the walk test; an alarm held in the abort window is an alarm)
WIRE_STATE = (0, 1, 1, 2, 3, 4, 5, 0, 5, 1, 1)
EXITING = (EXIT_AWAY, EXIT_STAY, EXIT_AWAY_AGAIN, EXIT_STAY_AGAIN)
STAY = (EXIT_STAY, ARMED_STAY, EXIT_STAY_AGAIN)

ARM_AWAY = const(0)
ARM_STAY = const(1)
DISARM = const(2)
EXIT_END = const(3)  # exit delay expired, every delay zone closed
ENTRY_END = const(4)  # entry delay expired
TRIP_ENTRY = const(5)  # entry/exit zone (or door) opened
TRIP_FOLLOW = const(6)  # interior follower zone
TRIP_INSTANT = const(7)  # instant zone, or a sabotaged zone in an armed state
WALK_START = const(8)  # installer starts the walk test
WALK_END = const(9)  # installer ends it, or its timeout ran out
ABORT_END = const(10)  # the abort window ran out (or an alarm never held ended it)
EXIT_REENTRY = const(11)  # a delay zone opened again after opening and closing in the exit delay
EXIT_ERROR = const(12)  # exit delay expired with a delay zone open
EVENT_NAMES = ("arm_away", "arm_stay", "disarm", "exit_end", "entry_end",
               "trip_entry", "trip_follow", "trip_instant", "walk_start", "walk_end",
               "abort_end", "exit_reentry", "exit_error")
ZONE_EVENTS = (TRIP_ENTRY, TRIP_FOLLOW, TRIP_INSTANT)



def _exiting(me, armed, reentry):
    """The row of an exit-delay state `me`: the delay ends in `armed` (or,
    a delay zone open, in the entry delay); a re-entry goes to `reentry`."""
    return {DISARM: DISARMED, EXIT_END: armed,
            EXIT_ERROR: ENTRY,  # armed; the entry delay starts
            EXIT_REENTRY: reentry,
            # leaving through the door and walking past interior zones
            TRIP_ENTRY: me, TRIP_FOLLOW: me,
            TRIP_INSTANT: ALARM}


TRANSITIONS = {
    DISARMED: {ARM_AWAY: EXIT_AWAY, ARM_STAY: EXIT_STAY,
               DISARM: DISARMED,  # acknowledges a 24-hour alarm / memory
               WALK_START: WALK_TEST,
               TRIP_ENTRY: DISARMED, TRIP_FOLLOW: DISARMED, TRIP_INSTANT: DISARMED},
    EXIT_AWAY: _exiting(EXIT_AWAY, ARMED_AWAY, EXIT_AWAY_AGAIN),
    EXIT_STAY: _exiting(EXIT_STAY, ARMED_STAY, EXIT_STAY_AGAIN),
    # restarted once: a further re-entry is a self-loop, no new restart
    EXIT_AWAY_AGAIN: _exiting(EXIT_AWAY_AGAIN, ARMED_AWAY, EXIT_AWAY_AGAIN),
    EXIT_STAY_AGAIN: _exiting(EXIT_STAY_AGAIN, ARMED_STAY, EXIT_STAY_AGAIN),
    ARMED_AWAY: {DISARM: DISARMED, TRIP_ENTRY: ENTRY,
                 TRIP_FOLLOW: ALARM_HELD,  # no entry delay running: held, then sent
                 TRIP_INSTANT: ALARM},
    ARMED_STAY: {DISARM: DISARMED, TRIP_ENTRY: ENTRY,
                 TRIP_FOLLOW: ARMED_STAY,  # stay: interior is not armed
                 TRIP_INSTANT: ALARM},
    ENTRY: {DISARM: DISARMED, ENTRY_END: ALARM_HELD,
            TRIP_ENTRY: ENTRY,
            TRIP_FOLLOW: ENTRY,  # follows the entry delay
            TRIP_INSTANT: ALARM},
    ALARM_HELD: {DISARM: DISARMED,  # abort: the held reports are never sent
                 ABORT_END: ALARM,  # the window ran out: they are sent
                 TRIP_ENTRY: ALARM_HELD, TRIP_FOLLOW: ALARM_HELD,  # held too
                 TRIP_INSTANT: ALARM},  # ends the window: held ones sent first
    ALARM: {DISARM: DISARMED,
            TRIP_ENTRY: ALARM, TRIP_FOLLOW: ALARM, TRIP_INSTANT: ALARM},
    WALK_TEST: {DISARM: WALK_TEST,  # nothing to disarm; WALK_END leaves
                WALK_END: DISARMED,
                TRIP_ENTRY: WALK_TEST, TRIP_FOLLOW: WALK_TEST, TRIP_INSTANT: WALK_TEST},
}


class Refused(Exception):
    """(state, event) has no entry in TRANSITIONS."""


def step(state, event):
    row = TRANSITIONS[state]
    if event not in row:
        raise Refused("%s in %s" % (EVENT_NAMES[event], STATE_NAMES[state]))
    return row[event]


def is_armed(state):
    return state != DISARMED and state != WALK_TEST


def raises_alarm(state, event):
    """Does (state, event) raise an alarm for a zone (sent now or held)?"""
    row = TRANSITIONS[state]
    if event not in row or (event not in ZONE_EVENTS and event != ENTRY_END):
        return False
    return row[event] == ALARM or row[event] == ALARM_HELD


def holds(state, event):
    """Is the alarm (state, event) raises held for the abort window?"""
    return raises_alarm(state, event) and TRANSITIONS[state][event] == ALARM_HELD
