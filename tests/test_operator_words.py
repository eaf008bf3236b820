"""The words an operator, installer or QA engineer reads, from the pure
parts fed data: what the number in an event is (one rule, used by the
receiver, the site state, the CLI, the HIL report and the walk test), the
per-code alarm policy and its configuration, the audit trail and delivery
failures as sentences, and the receiver's own path-failure sentence."""

import asyncio
import json
import socket

import pytest

from firmware import walktest as W
from hil import report as hil_report
from protocol import contactid
from receiver import alarms, cli, routing
from receiver.app import Receiver
from receiver.config import Config, ConfigError, load
from receiver.forwarder import JsonLinesOutput, WebhookOutput
from receiver.outputs import DeliveryError, failure_text, target_of
from receiver.records import Event
from receiver.supervision import Change, duration_text
from receiver.web import derive
from testkit.net import free_port

T0 = 1_700_000_000.0


# -- what the number is, everywhere ------------------------------------------------------


def ev(i, code, q=1, zone=0, partition=1, source="panel"):
    return {"id": i, "account": "1001", "code": code, "qualifier": q, "zone": zone,
            "partition": partition, "event_class": contactid.event_class(code),
            "received_at": T0 + i, "event_time": T0 + i, "source": source, "seq": i,
            "path": 1, "priority": 5, "protocol": "native", "text": None, "value": None,
            "peer": "x", "user": None, "ext": None, "location": None,
            "description": contactid.describe(code, q, zone=zone)}


def test_site_state_never_takes_a_path_or_user_number_for_a_zone():
    st = derive.site_state([ev(1, 354, zone=2, partition=0), ev(2, 607, zone=3),
                            ev(3, 130, zone=1)], {"2": "vault seismic", "3": "safe"}, {})
    zones = {z["zone"]: z["state"] for z in st["zones"]}
    assert zones == {1: "alarm:burglary", 2: "unknown", 3: "unknown"}
    assert [t["description"] for t in st["troubles"]] == [
        "Failure to communicate event, backup path (2)"]


def test_walk_test_report_names_the_walk_test_user_as_a_user():
    w = W.WalkTest(1001, [{"id": 3, "name": "safe", "type": "24h", "partition": 1}],
                   [{"id": 1, "name": "lobby"}])
    e = dict(ev(1, 607, zone=3), description="")
    [(_, _, _, text)] = w.feed(e)
    assert text == "panel walk-test mode ON (Walk test mode, user 3)"
    assert w.zones[3].status == W.NOT_SEEN
    assert W._ev(e)["description"] == "Walk test mode, user 3"


def test_hil_report_renders_a_path_event_as_a_path():
    e = {"t": 1.0, "source": "receiver", "kind": "event",
         "detail": {"code": 350, "qualifier": 1, "zone": 2, "account": 7001, "seq": None,
                    "path": 2, "priority": 7, "origin": "supervision"}}
    line = hil_report.describe(e)
    assert "Communication trouble, backup path (2)" in line and "zone" not in line
    e["detail"]["description"] = "Communication trouble: backup path (2) silent for 90 s"
    assert "backup path (2) silent for 90 s" in hil_report.describe(e)


def stored(d: dict) -> Event:
    """An ev() as the store gives it out (receiver.records.Event)."""
    return Event.from_row(dict(d, dedupe_key="native:%d" % d["id"]))


def test_cli_event_json_says_what_the_number_is():
    out = json.loads(cli._event_json(stored(ev(1, 350, zone=2, source="supervision"))))
    assert (out["zone"], out["number_kind"]) == (2, "path")
    assert json.loads(cli._event_json(stored(ev(2, 401, zone=7))))["number_kind"] == "user"


def test_the_receivers_path_failure_is_a_sentence():
    ch = Change("1001", 2, True, T0 + 90, T0, 90)
    assert ch.describe() == "backup path (2) silent for 90 s"
    assert Change("1001", 1, False, T0, T0, 90).describe() == "primary path (1) reporting again"
    assert [duration_text(s) for s in (0, 119, 120, 7199, 7260)] == [
        "0 s", "119 s", "2 min", "119 min", "2 h 1 min"]


# -- what an event does: alarm, status or event --------------------------------------------


ROUTER = {
    "outputs": {"feed": {"type": "jsonl", "address": "127.0.0.1:9"}},
    "centers": {"dc-1": {"level": "district_command", "name": "District 1 Command",
                         "outputs": ["feed"]}},
    "routes": [{"regions": ["*"], "classes": ["trouble"], "district_command": "dc-1"}],
}


def record(cfg, code, q=1):
    rx = Receiver(cfg)
    return rx.make_record({"account": "1001", "protocol": "native", "dedupe_key": "k",
                           "qualifier": q, "code": code})


def test_a_clean_restart_does_not_page_district_command(tmp_path):
    cfg = Config(db=str(tmp_path / "rx.db"), router=routing.parse(ROUTER))
    boot = record(cfg, 305)
    assert (boot.event_class, boot.open_alarm, boot.outbox) == ("trouble", False, [])
    ac = record(cfg, 301)  # AC loss: a trouble alarm, routed
    assert ac.open_alarm and ac.routed_to == {"district_command": "dc-1"}
    assert [o for o, _ in ac.outbox] == ["feed"]
    # a centre that wants it back says so per code
    cfg.alarm_codes = {305: "alarm", 301: "status"}
    assert record(cfg, 305).open_alarm and not record(cfg, 301).open_alarm


def test_alarm_policy_by_code_then_class():
    p = alarms.AlarmPolicy()
    assert p.disposition(305) == "event" and p.disposition(301) == "alarm"
    assert p.disposition(130) == "alarm" and p.disposition(401) == "event"
    assert p.opens_alarm(1, 130) and not p.opens_alarm(3, 130) and not p.opens_alarm(1, 305)
    narrow = alarms.AlarmPolicy(frozenset({"holdup", "burglary"}), {602: "status"})
    assert narrow.disposition(301) == "status"  # trouble outside the queue: a condition
    assert narrow.disposition(110) == "event"  # fire left out of this queue
    assert narrow.disposition(305) == "status"  # codes given replace the defaults
    assert narrow.is_condition(301, "trouble") and narrow.is_condition(602, "test")
    assert not p.is_condition(305, "trouble") and p.is_condition(301, "trouble")
    assert not p.is_condition(130, "burglary")  # an alarm, not a standing condition


def test_per_code_decisions_in_the_config_file(tmp_path):
    f = tmp_path / "receiver.toml"
    f.write_text('[alarms]\nqueue_classes = ["holdup", "trouble"]\n'
                 '[alarms.codes]\n305 = "alarm"\n301 = "status"\n602 = "event"\n')
    cfg = load(str(f))
    p = cfg.alarm_policy()
    assert (p.disposition(305), p.disposition(301), p.disposition(130)) == (
        "alarm", "status", "event")
    assert load(None).alarm_policy().disposition(305) == "event"  # the default
    for bad, words in (('[alarms.codes]\n305 = "page"\n', '305 = \'page\': give one of'),
                       ('[alarms.codes]\nreset = "event"\n', "a Contact ID code is a number"),
                       ('[alarms.codes]\n1305 = "event"\n', "a Contact ID code is a number"),
                       ('[alarms]\ncodes = 5\n', "[alarms.codes] must be a table")):
        f.write_text(bad)
        with pytest.raises(ConfigError) as e:
            load(str(f))
        assert words in str(e.value) and str(f) in str(e.value)


# -- sentences -------------------------------------------------------------------------------


def test_audit_rows_are_sentences():
    names = {"ps": "Central Police Station", "dc-1": "District 1 Command"}
    raised = {"from_state": None, "to_state": "pending", "actor": "receiver",
              "note": 'routed to {"district_command": "dc-1"}'}
    assert alarms.audit_sentence(raised, {"district_command": "dc-1"}, names) == \
        "Raised by the receiver and routed to District 1 Command (district command)."
    assert alarms.audit_sentence(raised, {"district_command": "dc-1", "police_station": "ps",
                                          "municipal_center": "gone"}, names) == (
        "Raised by the receiver and routed to Central Police Station (police station), "
        "District 1 Command (district command) and gone (municipal centre).")
    assert alarms.audit_sentence(raised, {}, names) == \
        "Raised by the receiver and not routed to any dispatch centre."
    assert alarms.audit_sentence({"from_state": "pending", "to_state": "acknowledged",
                                  "actor": "olga"}, {}, names) == "Acknowledged by olga."
    assert alarms.audit_sentence({"from_state": "acknowledged", "to_state": "resolved",
                                  "actor": "sam"}, {}, names) == "Resolved by sam."


def spec(**kw):
    kw.setdefault("timeout_s", 2.0)
    return routing.OutputSpec(name="o", type=kw.pop("type", "jsonl"), **kw)


async def test_delivery_failures_are_sentences_from_real_errors():
    port = free_port()  # nothing listens there
    out = JsonLinesOutput(spec(host="127.0.0.1", port=port))
    with pytest.raises(DeliveryError) as e:
        await out.deliver(1, {"type": "alarm"})
    assert str(e.value) == "127.0.0.1:%d refused the connection (nothing is listening there)" \
        % port
    hook = WebhookOutput(spec(type="webhook", url="http://user:pw@127.0.0.1:%d/in?t=s" % port))
    try:
        with pytest.raises(DeliveryError) as e:
            await hook.deliver(1, {"type": "alarm"})
    finally:
        await hook.close()
    assert str(e.value) == ("http://127.0.0.1:%d/in refused the connection (nothing is "
                            "listening there)" % port)

    # a far end that accepts and never answers
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    sport = server.sockets[0].getsockname()[1]
    try:
        slow = JsonLinesOutput(spec(host="127.0.0.1", port=sport, timeout_s=0.2))
        with pytest.raises(DeliveryError) as e:
            await slow.deliver(1, {"type": "alarm"})
        await slow.close()
    finally:
        server.close()
    assert str(e.value) == "no answer from 127.0.0.1:%d within 0.2 s" % sport


def test_failure_text_covers_name_and_routing_errors():
    t = "sink.example:7000"
    assert failure_text(socket.gaierror(-2, "Name or service not known"), t, 5) == \
        "sink.example:7000: the host name is not known"
    assert failure_text(OSError(113, "No route to host"), t, 5) == \
        "sink.example:7000 cannot be reached (no route to the host)"
    assert failure_text(OSError(99, "Cannot assign requested address"), t, 5) == \
        "sink.example:7000: cannot assign requested address"
    assert target_of(routing.OutputSpec("w", "webhook", url="https://u:p@[::1]:8443/x?k=1")) \
        == "https://[::1]:8443/x"
