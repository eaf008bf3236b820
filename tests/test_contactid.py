from protocol import contactid as c


def test_classes_and_priorities():
    assert c.event_class(122) == "holdup" and c.event_class(121) == "holdup"
    assert c.event_class(110) == "fire"
    assert c.event_class(130) == c.event_class(423) == "burglary"
    assert c.event_class(137) == c.event_class(383) == "tamper"
    assert c.event_class(301) == c.event_class(426) == "trouble"
    assert c.event_class(401) == "status" and c.event_class(602) == "test"
    assert c.event_class(987) == "other"
    assert c.priority("holdup") < c.priority("fire") < c.priority("burglary") \
        < c.priority("tamper") < c.priority("trouble") < c.priority("status")


def test_alarm_queue_membership():
    assert c.is_alarm(1, 130) and c.is_alarm(1, 423)
    assert not c.is_alarm(3, 130)  # a restore is not a new alarm
    assert not c.is_alarm(1, 401) and not c.is_alarm(1, 602)


def test_descriptions_name_zones_and_users():
    assert c.describe(130, 1, 3, "vault door", 1, "vault") == \
        "Burglary, zone 3 (vault door), vault"
    assert c.describe(130, 3, 3) == "Burglary restored, zone 3"
    assert c.describe(401, 3, 2, partition=1) == "Armed (Open/close by user), user 2, partition 1"
    assert c.describe(401, 1, 2) == "Disarmed (Open/close by user), user 2"
    assert c.describe(121, 1, 4) == "Duress, user 4"
    assert c.describe(423, 1, 1, "entrance door") == "Forced access, zone 1 (entrance door)"
    assert c.describe(987) == "Event 987"
    assert c.number_kind(121) == c.number_kind(401) == c.USER
    assert c.number_kind(423) == c.ZONE


def test_one_place_says_what_the_number_in_an_event_is():
    # zones: alarms, loop troubles, access points (a door)
    for code in (110, 122, 130, 134, 144, 372, 373, 423, 426, 570, 613):
        assert c.number_kind(code) == c.ZONE, code
    # users: open/close, duress, access by a user, walk-test mode (607)
    for code in (121, 401, 403, 407, 441, 421, 461, 607):
        assert c.number_kind(code) == c.USER, code
    # paths: communication troubles from the receiver (350) or the panel (354)
    for code in range(350, 358):
        assert c.number_kind(code) == c.PATH, code
    assert c.number_kind(624) == c.COUNT  # event log overflow: events lost
    for code in (301, 302, 305, 602):
        assert c.number_kind(code) == c.NONE, code
    assert c.number_kind(987) == c.ZONE  # unknown codes: DC-05's default


def test_numbers_in_words_never_borrow_a_zone_name():
    assert c.number_label(130, 3, "vault door") == "zone 3 (vault door)"
    # a path or user number that happens to match a named zone keeps its meaning
    assert c.number_label(350, 2, "vault seismic") == "backup path (2)"
    assert c.number_label(354, 1, "front door") == "primary path (1)"
    assert c.number_label(607, 3, "vault door") == "user 3"
    assert c.number_label(624, 17) == "17 events lost"
    assert c.number_label(302, 4, "lobby PIR") == "number 4"
    assert c.number_label(130, 0, "x") == "" and c.number_label(350, 0) == ""
    assert c.number_label(350, 7) == "path 7"
    assert c.describe(350, 1, 2, "vault seismic") == "Communication trouble, backup path (2)"
    assert c.describe(354, 3, 1) == "Failure to communicate event restored, primary path (1)"
    assert c.describe(350, 1, detail="backup path (2) silent for 90 s") == \
        "Communication trouble: backup path (2) silent for 90 s"
    assert c.describe(607, 1, 3, "vault door") == "Walk test mode, user 3"
    assert c.describe(305, 1, 0, partition=0) == "System reset"


def test_cp01_reports_classes_and_the_confirmed_alarm_rank():
    """The firmware's CP-01 reports (docs/firmware.md, "CP-01"): a confirmed
    alarm is a burglary, routed as one, ranked above an unconfirmed one;
    exit error 374 is a burglary; cancel, recent close, exit error by user,
    closing and postponement are status; sounder lines are troubles."""
    assert c.event_class(139) == "burglary"
    assert c.priority("medical") < c.priority("burglary", 139) < c.priority("burglary", 130) \
        == c.priority("burglary") < c.priority("environmental")
    assert c.event_class(374) == "burglary" and c.is_alarm(1, 374)
    for code in (403, 406, 457, 459, 464):
        assert c.event_class(code) == "status" and not c.is_alarm(1, code)
    assert c.event_class(455) == "trouble"  # auto-arm failed: the site is left open
    for code in (406, 457, 459, 464):
        assert c.zone_is_user(code)
    assert c.event_class(321) == c.event_class(322) == "trouble"
    assert c.describe(406, 1, 3, partition=1) == "Cancel, user 3, partition 1"
    assert c.describe(459, 1, 2) == "Recent close, user 2"
    assert c.describe(139, 1, 1, "vault door") == \
        "Confirmed alarm (intrusion verifier), zone 1 (vault door)"
