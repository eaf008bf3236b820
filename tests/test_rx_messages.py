"""The console's live messages (receiver.messages): one JSON shape each, the
fields the console's JavaScript reads, and the way back from JSON that a
message takes between receivers."""

from __future__ import annotations

import json
import os
import re

from receiver.link_policy import SecurityReport
from receiver.messages import (PUBLISHED, AlarmUpdate, EventStored, Hello, Logout,
                               OutputHealth, Resync, SecurityRejected, SupervisionChange,
                               from_json)
from receiver.records import Alarm, EventRecord
from receiver.supervision import Change

STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "receiver", "web", "static")


def _record() -> EventRecord:
    return EventRecord(account="1001", protocol="native", dedupe_key="native:7:ab",
                       qualifier=1, code=122, partition=1, zone=4, received_at=1000.5,
                       seq=7, peer="tcp:10.0.0.5:4000", event_class="holdup", priority=1,
                       description="Silent hold-up, zone 4", routed_to={"police_station":
                                                                         "ps-central"})


def _messages():
    rec = _record()
    return [EventStored.of(rec, 41), AlarmUpdate.raised(rec, 9, 41),
            AlarmUpdate.moved(Alarm(9, 41, "1001", "holdup", 1, 122, 1, 4,
                                    "Silent hold-up, zone 4", "resolved", 1001.0,
                                    routed_to={"police_station": "ps-central"}),
                              "sam", "police on site"),
            SupervisionChange.of(Change("1001", 2, True, 2000.0, 1900.0, 90)),
            SecurityRejected.of(SecurityReport(3000.0, "1001", 5, "bad_mac", "MAC wrong",
                                               "udp:10.9.9.9:5000", "udp")),
            OutputHealth("police-feed", True)]


def test_each_message_has_one_json_shape_and_comes_back_from_it():
    for m in _messages():
        d = m.to_json()
        assert d["type"] == m.kind
        # JSON text and back, as it travels between receivers
        assert from_json(json.loads(json.dumps(d))) == m, m


def test_the_json_carries_what_the_console_reads():
    ev, raised, resolved, sup, sec, out = (m.to_json() for m in _messages())
    assert ev["event"]["id"] == 41 and ev["event"]["account"] == "1001"
    assert ev["event"]["description"] == "Silent hold-up, zone 4"
    assert ev["event"]["number_kind"] == "zone"  # the store's Event JSON, whole
    # queue.js: a new alarm is one with state "pending" and an event_id
    assert (raised["state"], raised["event_id"], raised["alarm_id"]) == ("pending", 41, 9)
    assert (raised["account"], raised["event_class"]) == ("1001", "holdup")
    assert raised["by"] is None
    assert (resolved["state"], resolved["by"], resolved["note"]) == (
        "resolved", "sam", "police on site")
    assert set(raised) == set(resolved)  # one shape, raised or moved on
    assert sup == {"type": "supervision", "account": "1001", "path": 2, "failed": True,
                   "at": 2000.0}
    assert sec == {"type": "security", "account": "1001", "reason": "bad_mac",
                   "detail": "MAC wrong", "peer": "udp:10.9.9.9:5000"}
    assert out == {"type": "output", "output": "police-feed", "failing": True}
    assert Hello("olga").to_json() == {"type": "hello", "user": "olga"}
    assert Resync(3).to_json() == {"type": "resync", "dropped": 3}
    assert Logout().to_json() == {"type": "logout"}


def test_the_page_listens_to_every_kind_the_receiver_publishes():
    with open(os.path.join(STATIC, "common.js"), encoding="utf-8") as f:
        js = f.read()
    m = re.search(r"for \(const kind of \[([^\]]*)\]\)", js)
    assert m, "common.js no longer lists the live message kinds"
    kinds = {k.strip().strip('"') for k in m.group(1).split(",")}
    assert kinds == set(PUBLISHED)
    for k in ("hello", "resync", "logout"):
        assert 'addEventListener("%s"' % k in js


def test_what_cannot_be_read_back_is_dropped_not_raised():
    assert from_json({"type": "logout"}) is None  # not a published kind
    assert from_json({"type": "unheard-of"}) is None
    assert from_json({"type": "supervision", "account": "1"}) is None  # fields missing
    # a newer receiver's extra field, an older one's missing optional field
    m = from_json({"type": "alarm", "alarm_id": 3, "state": "acknowledged", "by": "olga",
                   "colour": "red"})
    assert m == AlarmUpdate(3, "acknowledged", by="olga")
