"""Contact ID event codes (SIA DC-05), their classes and priorities.

Every consumer (receiver store, operator console, DC-09 mapping, walk-test
report) renders events through this table so that an operator reads
"Burglary, zone 3 (vault door)" whatever protocol carried the event.

A code we do not know is never an error: it renders as "Event 987" in
class "other" and is kept verbatim.
"""

from __future__ import annotations

# qualifier digit (DC-05): 1 = new event / opening, 3 = restore / closing,
# 6 = previously reported condition still present (status)
QUALIFIERS = {1: "new", 3: "restore", 6: "status"}

CODES: dict[int, str] = {
    # 100: medical
    100: "Medical", 101: "Personal emergency", 102: "Fail to report in",
    # 110: fire
    110: "Fire", 111: "Smoke", 112: "Combustion", 113: "Water flow", 114: "Heat",
    115: "Pull station", 116: "Duct", 117: "Flame", 118: "Fire near alarm",
    # 120: panic / hold-up
    120: "Panic", 121: "Duress", 122: "Silent hold-up", 123: "Audible panic",
    124: "Duress, access granted", 125: "Duress, egress granted",
    # 130: burglary
    130: "Burglary", 131: "Perimeter burglary", 132: "Interior burglary",
    133: "24-hour burglary (safe/vault)", 134: "Entry/exit burglary",
    135: "Day/night burglary", 136: "Outdoor burglary", 137: "Tamper",
    138: "Burglary near alarm", 139: "Confirmed alarm (intrusion verifier)",
    # 140: general alarm
    140: "General alarm", 141: "Polling loop open", 142: "Polling loop short",
    143: "Expansion module failure", 144: "Sensor tamper",
    145: "Expansion module tamper", 146: "Silent burglary",
    147: "Sensor supervision failure",
    # 150/160: 24-hour non-burglary
    150: "24-hour non-burglary", 151: "Gas detected", 152: "Refrigeration",
    153: "Loss of heat", 154: "Water leakage", 155: "Foil break",
    156: "Day trouble", 157: "Low bottled gas level", 158: "High temperature",
    159: "Low temperature", 161: "Loss of air flow", 162: "Carbon monoxide detected",
    163: "Tank level",
    # 170: vehicle units (Guardline; unassigned in Contact ID, docs/mobile.md)
    170: "Vehicle left its route corridor", 171: "Vehicle stopped too long",
    172: "Vehicle door open while moving", 173: "Ignition on outside schedule",
    174: "Vehicle tilt or crash",
    # 175: raised by the receiver itself (receiver/vehicles): a vehicle heard with its
    # ignition on that has sent no position for the configured minutes
    175: "Vehicle silent with ignition on",
    # 200: fire supervisory
    200: "Fire supervisory", 201: "Low water pressure", 202: "Low CO2",
    203: "Gate valve sensor", 204: "Low water level", 205: "Pump activated",
    206: "Pump failure",
    # 300: system troubles
    300: "System trouble", 301: "AC loss", 302: "Low system battery",
    303: "RAM checksum bad", 304: "ROM checksum bad", 305: "System reset",
    306: "Panel programming changed", 307: "Self-test failure",
    308: "System shutdown", 309: "Battery test failure", 310: "Ground fault",
    311: "Battery missing/dead", 312: "Power supply overcurrent",
    313: "Engineer reset",
    320: "Sounder/relay trouble", 321: "Bell 1 trouble", 322: "Bell 2 trouble",
    323: "Alarm relay trouble", 324: "Trouble relay", 325: "Reversing relay",
    330: "System peripheral trouble", 331: "Polling loop open",
    332: "Polling loop short", 333: "Expansion module failure",
    334: "Repeater failure", 335: "Local printer out of paper",
    336: "Local printer failure", 344: "Receiver jam detect (GNSS jamming)",
    # 350: communication
    350: "Communication trouble", 351: "Telco 1 fault", 352: "Telco 2 fault",
    353: "Long range radio transmitter fault",
    354: "Failure to communicate event", 355: "Loss of radio supervision",
    356: "Loss of central polling", 357: "Long range radio VSWR problem",
    # 358: Ademco's extended table ("periodic comm test fail/restore"); the
    # receiver raises it for a panel that owes a 602 and missed it
    # (receiver/rules/periodic.py)
    358: "Periodic test missed",
    # 370: protection loop
    370: "Protection loop trouble", 371: "Protection loop open",
    372: "Protection loop short", 373: "Fire trouble", 374: "Exit error alarm",
    375: "Panic zone trouble", 376: "Hold-up zone trouble",
    377: "Swinger trouble", 378: "Cross-zone trouble",
    # 380: sensor trouble
    380: "Sensor trouble", 381: "Loss of RF supervision",
    382: "Loss of RPM supervision", 383: "Sensor tamper", 384: "RF low battery",
    385: "Smoke detector high sensitivity", 386: "Smoke detector low sensitivity",
    387: "Intrusion detector high sensitivity",
    388: "Intrusion detector low sensitivity", 389: "Sensor self-test failure",
    391: "Sensor watch trouble", 392: "Drift compensation error",
    393: "Maintenance alert",
    # 400: open/close
    400: "Open/close", 401: "Open/close by user", 402: "Group open/close",
    403: "Automatic open/close", 404: "Late to open/close",
    405: "Deferred open/close", 406: "Cancel", 407: "Remote arm/disarm",
    408: "Quick arm", 409: "Keyswitch open/close",
    411: "Callback request made", 412: "Successful download/access",
    413: "Unsuccessful access", 414: "System shutdown command received",
    415: "Dialer shutdown command received", 416: "Successful upload",
    # 420: access control
    421: "Access denied", 422: "Access report by user", 423: "Forced access",
    424: "Egress denied", 425: "Egress granted", 426: "Door propped open",
    427: "Door status monitor trouble", 428: "Request-to-exit trouble",
    429: "Access program mode entry", 430: "Access program mode exit",
    431: "Access threat level change", 432: "Access relay/trigger fail",
    433: "Access RTE shunt", 434: "Access DSM shunt",
    441: "Armed stay", 442: "Keyswitch armed stay",
    450: "Exception open/close", 451: "Early open/close", 452: "Late open/close",
    453: "Failed to open", 454: "Failed to close", 455: "Auto-arm failed",
    456: "Partial arm", 457: "Exit error (user)", 458: "User on premises",
    459: "Recent close", 461: "Wrong code entry", 462: "Legal code entry",
    463: "Re-arm after alarm", 464: "Auto-arm time extended",
    465: "Panic alarm reset", 466: "Service on/off premises",
    # 470: patrol car status, set by its crew at the keypad (Guardline;
    # unassigned in Contact ID, docs/mobile.md); the number is the user
    470: "Patrol available", 471: "Patrol dispatched", 472: "Patrol on scene",
    # 500: disables
    520: "Sounder/relay disable", 521: "Bell 1 disable", 522: "Bell 2 disable",
    551: "Dialer disabled", 552: "Radio transmitter disabled",
    # 570: bypasses
    570: "Zone bypass", 571: "Fire bypass", 572: "24-hour zone bypass",
    573: "Burglary bypass", 574: "Group bypass", 575: "Swinger bypass",
    576: "Access zone shunt", 577: "Access point bypass",
    # 600: test / misc
    601: "Manual trigger test", 602: "Periodic test", 603: "Periodic RF transmission",
    604: "Fire test", 605: "Status report to follow", 606: "Listen-in to follow",
    607: "Walk test mode", 608: "Periodic test, system trouble present",
    609: "Video transmitter active", 611: "Point tested OK", 612: "Point not tested",
    613: "Intrusion zone walk tested", 614: "Fire zone walk tested",
    615: "Panic zone walk tested", 616: "Service request",
    621: "Event log reset", 622: "Event log 50% full", 623: "Event log 90% full",
    624: "Event log overflow", 625: "Time/date reset", 626: "Time/date inaccurate",
    627: "Program mode entry", 628: "Program mode exit",
    630: "Schedule change", 654: "System inactivity",
}

# The classes an operator sees, most urgent first.  Hold-up and duress come
# before fire in a bank-alarm centre: a hold-up is a life threat with an
# attacker present, and the fire brigade is usually also called by others.
CLASSES = ("holdup", "fire", "medical", "burglary", "environmental", "tamper",
           "trouble", "status", "test", "other")

# Priority ranks, most urgent first: the classes in their order, with one
# rank more inside burglary.  A *confirmed* intrusion (139: a second,
# independent detector of the same partition within the panel's
# confirmation window, EN 50131-9 / DD 243 sequential confirmation) ranks
# above an unconfirmed burglary (one detector: CP-01's plain code), which
# may still be a user error; it stays class "burglary" so it is routed
# like one.
CONFIRMED_CODES = frozenset([139])
_RANKS = ("holdup", "fire", "medical", "burglary confirmed", "burglary", "environmental",
          "tamper", "trouble", "status", "test", "other")
_PRIORITY = {c: i + 1 for i, c in enumerate(_RANKS)}

# Classes whose new events go into the operator's alarm queue.
ALARM_CLASSES = frozenset(("holdup", "fire", "medical", "burglary",
                           "environmental", "tamper", "trouble"))

_TAMPER = {137, 144, 145, 383}
# Access-control reports that are alarms or troubles, not routine status:
# a door forced open is a break-in; a door propped open or an access point
# fault leaves the protected space open.
_ACCESS_BURGLARY = {423}
# Vehicle units (docs/mobile.md): a van off its route, stopped where it
# should not be, a door open on the move or started out of hours may be a
# hijack in progress, so they queue as burglary alarms.
_VEHICLE_ALARMS = range(170, 180)
# 374 "exit error alarm" (CP-01): a delay zone left open past the exit
# delay and then the entry delay (and the abort window) with nobody
# disarming: reported like the entry/exit burglary it is, not as a trouble
_EXIT_ERROR = {374}
_ACCESS_TROUBLE = {426, 427, 428, 432}
# Open/close exceptions (DC-05 450-455; the receiver raises 450-454 from a
# partition's opening schedule, receiver/rules/schedules.py, and a panel's
# time lock sends 455).  A premises opened when it should be shut (450 on a
# closed day or after hours, 451 before the opening window: the classic
# hold-up indicator at a bank) is treated as an intrusion until an operator
# has verified it; a late opening, a missed opening or closing, and a failed
# auto-arm leave the site in the wrong state and are troubles.
_OPEN_CLOSE_BURGLARY = {450, 451}
_OPEN_CLOSE_TROUBLE = {452, 453, 454, 455}


def event_class(code: int) -> str:
    """The operator class of a Contact ID code."""
    if code in _TAMPER:
        return "tamper"
    if 100 <= code <= 102:
        return "medical"
    if 110 <= code <= 118:
        return "fire"
    if 120 <= code <= 125:
        return "holdup"
    if 130 <= code <= 140 or code == 146 or code in _ACCESS_BURGLARY \
            or code in _VEHICLE_ALARMS or code in _EXIT_ERROR:
        return "burglary"
    if code in _ACCESS_TROUBLE or code in _OPEN_CLOSE_TROUBLE:
        return "trouble"
    if code in _OPEN_CLOSE_BURGLARY:
        return "burglary"
    if code in (141, 142, 143, 147):
        return "trouble"
    if 150 <= code <= 169:
        return "environmental"
    if 200 <= code <= 399:
        return "trouble"
    if 600 <= code <= 616:
        return "test"
    if 400 <= code <= 699:
        return "status"
    return "other"


def priority(cls: str, code: int | None = None) -> int:
    """1 is the most urgent.  `code` refines a class: a confirmed intrusion
    ranks above other burglaries."""
    if cls == "burglary" and code in CONFIRMED_CODES:
        return _PRIORITY["burglary confirmed"]
    return _PRIORITY.get(cls, len(_RANKS))


def is_alarm(qualifier: int, code: int) -> bool:
    """Does this event put an alarm in the operator queue?"""
    return qualifier == 1 and event_class(code) in ALARM_CLASSES


# -- what the number in an event means ----------------------------------------------
#
# Contact ID's ZZZ field (and the native protocol's zone field, which carries
# the same thing) is a zone for most reports, but not for all of them.  This
# is the one place that says which, from the code; the receiver (zone names,
# site states), the console, the CLI, the HIL report and the walk test all
# ask it, and a number that is not a zone is never looked up as a zone name.

ZONE = "zone"  # a detector / input: its name comes from the account's zone list
USER = "user"  # a user (code) number: open/close, access, duress, walk test
PATH = "path"  # a reporting path: 1 primary, 2 backup (communication troubles)
COUNT = "count"  # a number of things: 624 event log overflow, events lost
NONE = "none"  # no zone, user or path: a module or device number if anything
NUMBER_KINDS = (ZONE, USER, PATH, COUNT, NONE)

# DC-05 reports whose ZZZ field is a user number, not a zone: duress,
# open/close, remote access, access by a user, code entries.  Access-point
# reports (423 forced access, 426 door propped open, 427/428 point
# troubles, 433/434 shunts) name the door, i.e. a zone.  607 "walk test
# mode" names the user who started it (0: console test mode, nobody).
_USER_CODES = frozenset([121, 124, 125, 411, 412, 413, 414, 415, 416, 421, 422, 424, 425,
                         429, 430, 441, 442, 461, 462, 463, 464, 466, 470, 471, 472, 607]
                        + list(range(400, 410)) + list(range(450, 460)))
# 350-357 communication troubles: the path (line, radio) that failed.  The
# Guardline firmware and the receiver's own supervision put the path number
# (1 primary, 2 backup) there (firmware/device/cid.py, receiver/supervision.py).
_PATH_CODES = frozenset(range(350, 360))
# 624 "event log overflow": the firmware reports how many events it had to
# drop (firmware/device/panel.py queue_state).
_COUNT_CODES = frozenset([624])
# System troubles, periodic tests and log/clock/programming reports: about
# the panel itself.  (601 manual and 604 fire tests, 611-615 walk tests name
# the zone tested.)
_NONE_CODES = frozenset(list(range(300, 314)) + [602, 603, 605, 606, 608, 609]
                        + list(range(616, 631)) + [654]) - _USER_CODES - _COUNT_CODES

# Reporting paths by number (the native protocol's FLAG_BACKUP_PATH, the
# firmware's receiver.primary / receiver.backup).
PATH_NAMES = {1: "primary", 2: "backup"}


def number_kind(code: int) -> str:
    """What the zone/user field of an event with this code is: ZONE, USER,
    PATH, COUNT or NONE.  Decided by the code alone (its class in DC-05)."""
    if code in _USER_CODES:
        return USER
    if code in _PATH_CODES:
        return PATH
    if code in _COUNT_CODES:
        return COUNT
    if code in _NONE_CODES:
        return NONE
    return ZONE


def zone_is_user(code: int) -> bool:
    """Is the number of an event with this code a user?  (:func:`number_kind`
    is the rule; this is its user question.)"""
    return number_kind(code) == USER


def path_label(path: int) -> str:
    """'backup path (2)': a reporting path as an operator reads it."""
    name = PATH_NAMES.get(path)
    return "%s path (%d)" % (name, path) if name else "path %d" % path


def number_label(code: int, number: int | None, zone_name: str | None = None) -> str:
    """The event's number in words: 'zone 3 (vault door)', 'user 2',
    'backup path (2)', '17 events lost', 'number 4'; '' when there is none
    (0).  ``zone_name`` is used only when the number is a zone."""
    if not number:
        return ""
    kind = number_kind(code)
    if kind == ZONE:
        return "zone %d (%s)" % (number, zone_name) if zone_name else "zone %d" % number
    if kind == USER:
        return "user %d" % number
    if kind == PATH:
        return path_label(number)
    if kind == COUNT:
        return "%d events lost" % number
    return "number %d" % number


def name(code: int) -> str:
    return CODES.get(code, "Event %03d" % code)


def describe(code: int, qualifier: int = 1, zone: int | None = None,
             zone_name: str | None = None, partition: int | None = None,
             partition_name: str | None = None, detail: str | None = None) -> str:
    """One line for an operator, e.g. 'Burglary, zone 3 (vault door)',
    'Communication trouble, backup path (2)'.  The number is rendered by
    :func:`number_label` (a zone name only for a zone); ``detail`` is the
    receiver's own words about the event, appended after a colon."""
    text = name(code)
    if (400 <= code <= 409 and code != 406) or code == 441:  # 406 cancel: no arming
        # DC-05: for open/close reports 1 = opening (disarm), 3 = closing (arm)
        if qualifier == 1:
            text = "Disarmed (%s)" % text
        elif qualifier == 3:
            text = "Armed (%s)" % text
    elif qualifier == 3:
        text += " restored"
    elif qualifier == 6:
        text += " (still present)"
    label = number_label(code, zone, zone_name)
    if label:
        text += ", " + label
    if partition_name:
        text += ", %s" % partition_name
    elif partition:
        text += ", partition %d" % partition
    if detail:
        text += ": " + detail
    return text


# Each class as an operator says it ("the hold-up call list"); the console's
# GL.CLASS_LABEL holds the same words, capitalised, for the page.
CLASS_LABELS = {"holdup": "hold-up", "fire": "fire", "medical": "medical",
                "burglary": "burglary", "environmental": "environmental",
                "tamper": "tamper", "trouble": "trouble", "status": "status",
                "test": "test", "other": "other"}
