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
    assert c.zone_is_user(121) and c.zone_is_user(401) and not c.zone_is_user(423)
