# Contact ID (SIA DC-05) event codes the panel sends.  The receiver renders
# them through protocol/contactid.py; docs/firmware.md lists which panel
# condition maps to which code and why.

from fwutil import const

MEDICAL = const(100)
FIRE = const(110)
PANIC = const(120)  # audible panic
DURESS = const(121)
HOLDUP = const(122)  # silent hold-up
BURGLARY = const(130)  # instant zone
INTERIOR = const(132)  # interior follower
H24 = const(133)  # 24-hour (safe/vault), also the vault seismic zone
COMPARTMENT = const(133)  # vehicle: cash compartment / safe open outside allowed zones
ENTRY_EXIT = const(134)
BOX_TAMPER = const(137)  # also a sounder line cut while armed (partition, zone 0)
CONFIRMED = const(139)  # "intrusion verifier": a second intrusion zone confirmed the alarm
SENSOR_TAMPER = const(144)  # DEOL loop open (cut wire) or a tamper zone
# vehicle rules (docs/mobile.md): 170-179 are unassigned in Contact ID;
# protocol/contactid.py names them and queues them as alarms
ROUTE_EXIT = const(170)  # left the planned route's corridor
STOPPED_TOO_LONG = const(171)  # stopped too long outside allowed zones
VEHICLE_DOOR = const(172)  # a door open while moving
IGNITION_OFF_SCHEDULE = const(173)  # ignition switched on outside its schedule
TILT = const(174)  # a tilt or crash sensor (a vehicle rolled, rammed, lifted)
SYSTEM_TROUBLE = const(300)  # a firmware task died and was restarted
AC_LOSS = const(301)
LOW_BATTERY = const(302)
SYSTEM_RESET = const(305)  # sent once per boot
SELF_TEST = const(307)  # bad configuration: safe mode
SIREN_TROUBLE = const(321)  # "bell 1": the siren line open or shorted
STROBE_TROUBLE = const(322)  # "bell 2": the strobe line
GPS_TROUBLE = const(330)  # vehicle: no GNSS fix while moving (peripheral trouble)
GPS_JAM = const(344)  # vehicle: fix lost with the antenna input tripped (jam detect)
COMM_TROUBLE = const(350)  # zone field = path (1 primary, 2 backup)
COMM_EVENT_FAIL = const(354)  # a path that answers refused an event; zone = path
LOOP_SHORT = const(372)  # DEOL loop shorted
FIRE_TROUBLE = const(373)  # fire loop open or shorted
EXIT_ERROR = const(374)
OPEN_CLOSE = const(401)  # 1 = opening (disarm), 3 = closing (arm); zone = user
AUTO_OPEN_CLOSE = const(403)  # auto arm: time lock, scheduled closing
CANCEL = const(406)  # disarm after an alarm was sent (or "abort"); zone = user
REMOTE_OPEN_CLOSE = const(407)  # arm/disarm by receiver COMMAND
ACCESS_DENIED = const(421)  # time-lock refused a disarm
FORCED = const(423)  # door opened while locked
PROPPED = const(426)  # door held open too long
LOCK_FAIL = const(432)  # bolt not thrown after relock
ARMED_STAY = const(441)
AUTO_ARM_FAILED = const(455)
EXIT_ERROR_USER = const(457)  # exit error, zone = the user who armed
RECENT_CLOSE = const(459)  # an alarm soon after arming; zone = the user who armed
WRONG_CODE = const(461)  # keypad lockout started
AUTO_ARM_EXTENDED = const(464)  # a user postponed a scheduled auto-arm; zone = user
# patrol car status from its keypad (docs/mobile.md; zone = the user):
# available, dispatched, on scene
PATROL_STATUS = const(470)
BYPASS = const(570)
SWINGER = const(575)
TEST_MODE = const(607)  # "walk test mode": the installer walk test (zone = user),
# and console test mode (config "test_mode", zone 0)
POINT_TESTED = const(611)  # walk test: a zone (tamper, bolt) tripped
INTRUSION_WALKED = const(613)  # walk test: an intrusion zone tripped
FIRE_WALKED = const(614)  # walk test: a fire zone tripped
PANIC_WALKED = const(615)  # walk test: a panic / hold-up zone tripped
LOG_OVERFLOW = const(624)  # event log overflow: queued events were dropped
CLOCK_UNSET = const(626)  # time/date inaccurate
