"""Scenario test: the installer walk test under the real MicroPython VM
with the sim board, reporting to the tiny in-test receiver
(testkit.tiny_receiver).  No timed assertions: each step waits for the
condition it then asserts on."""


import pytest

from protocol.lean import glwire as w
from testkit import vm
from testkit.configs import scenario_config
from testkit.panel import PanelProcess
from testkit.tiny_receiver import TinyReceiver

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

ALARMS = (110, 120, 122, 130, 132, 133, 134)


@pytest.fixture
def rx():
    r = TinyReceiver(4242)
    yield r
    r.close()


@pytest.fixture
def panel(tmp_path, rx):
    p = PanelProcess(scenario_config(rx.port), str(tmp_path / "state"))
    yield p
    p.close()


def trip(p, zone):
    assert p.ctl({"cmd": "zone", "zone": zone, "state": "alarm"})["ok"]
    p.wait(lambda: p.state()["zones"][zone - 1]["state"] == "alarm", what="zone %d" % zone)
    assert p.ctl({"cmd": "zone", "zone": zone, "state": "normal"})["ok"]
    p.wait(lambda: p.state()["zones"][zone - 1]["state"] == "normal", what="zone %d" % zone)


def test_walk_test_reports_zones_tested_not_alarms_then_normal_again(rx, panel):
    p = panel
    p.wait(lambda: rx.find(305), what="305 system reset")
    # a user code may not start it; the master may
    r = p.ctl({"cmd": "key", "code": "2580", "action": "walk_test_start"})
    assert r["result_name"] == "refused"
    r = p.ctl({"cmd": "key", "code": "1234", "action": "walk_test_start"})
    assert r["result_name"] == "ok"
    p.wait(lambda: rx.find(607, w.Q_NEW, partition=0, zone=1), what="607 walk test new")
    st = p.state()
    assert st["walk_test"] and [x["state"] for x in st["partitions"]] == ["walk_test"] * 2
    # no arming in walk test
    r = p.ctl({"cmd": "key", "code": "1234", "action": "arm_away", "partition": 1})
    assert r["result_name"] == "refused"
    # instant (613), fire (614), hold-up (615), panic (615)
    for z in (2, 6, 4, 5):
        trip(p, z)
    got = {}
    for code, part, zone in ((613, 1, 2), (614, 1, 6), (615, 2, 4), (615, 2, 5)):
        ev = p.wait(lambda: rx.find(code, w.Q_NEW, partition=part, zone=zone),
                    what="%d zone %d" % (code, zone))
        got[zone] = ev
    assert all(len(v) == 1 for v in got.values())
    out = p.ctl({"cmd": "outputs"})
    assert not out["siren"] and not out["strobe"]
    st = p.state()
    assert all(x["memory"] == [] for x in st["partitions"])
    r = p.ctl({"cmd": "key", "code": "1234", "action": "walk_test_end"})
    assert r["result_name"] == "ok"
    p.wait(lambda: rx.find(607, w.Q_RESTORE, partition=0, zone=1), what="607 restore")
    # nothing the walk test did reached the receiver as an alarm
    assert not [m for m in rx.event_list() if m["code"] in ALARMS]
    st = p.state()
    assert not st["walk_test"] and [x["state"] for x in st["partitions"]] == ["disarmed"] * 2
    # disarmed, normal again: an instant zone does nothing, fire alarms
    trip(p, 2)
    assert p.ctl({"cmd": "zone", "zone": 6, "state": "alarm"})["ok"]
    p.wait(lambda: rx.find(110, w.Q_NEW, partition=1, zone=6), what="fire 110")
    assert p.wait(lambda: p.ctl({"cmd": "outputs"})["siren"], what="siren on")
    assert not rx.find(130) and not rx.find(613, zone=6) and len(rx.find(613)) == 1
