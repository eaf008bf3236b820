"""Config validation (firmware/device/config.py, shared with the host),
the DEOL classifier/debouncer, and the guardline-panel CLI."""

import json
import os
import sys

import pytest
from hypothesis import given, settings, strategies as st

from firmware import DEVICE_DIR, REPO, cli
from firmware.device import config as C
from testkit.configs import scenario_config

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import eol  # noqa: E402
import users  # noqa: E402

EXAMPLES = os.path.join(REPO, "examples")


@pytest.mark.parametrize("name,kind,zones,parts", [("bank", "bank", 32, 4), ("door", "door", 6, 1)])
def test_examples_are_valid_and_complete(name, kind, zones, parts):
    cfg, errors, doc = C.load(os.path.join(EXAMPLES, name + ".json"))
    assert errors == []
    assert cfg["kind"] == kind and len(cfg["zones"]) == zones and len(cfg["partitions"]) == parts
    rx = cfg["receiver"]
    assert rx["primary"] == {"type": "tcp", "host": "127.0.0.1", "port": 7700}
    assert rx["backup"] == {"type": "udp", "host": "127.0.0.1", "port": 7700}
    # the documented example codes really match the hashes
    salt = bytes.fromhex(cfg["code_salt"])
    hashes = {u["code_hash"] for u in cfg["users"]}
    assert users.hash_code(salt, "1234").hex() in hashes
    assert cli.hash_code(cfg["code_salt"], "1235") in hashes


def errors_for(**over):
    doc = scenario_config(7700)
    for k, v in over.items():
        doc[k] = v
    return C.validate(doc)[1]


def test_messages_point_at_the_field():
    doc = scenario_config(7700)
    doc["zones"][3]["type"] = "instnat"
    doc["zones"][1]["partition"] = 7
    doc["users"][0]["code_hash"] = "abc"
    doc["timings"]["heartbeat_s"] = 5
    doc["timings"]["exit_dealy_s"] = 5
    doc["partitions"].append({"id": 1, "name": "again"})
    errs = C.validate(doc)[1]
    text = "\n".join(errs)
    assert "zones[3].type: 'instnat' is not one of instant, entry_exit, follower" in text
    assert "zones[1].partition: 7 is not a configured partition id" in text
    assert "users[0].code_hash: not a hex string" in text
    assert "timings.heartbeat_s: 5 is out of range 20..86400" in text
    assert "timings.exit_dealy_s: unknown timing" in text
    assert "partitions[2].id: 1 is used twice (also partitions[0])" in text


def test_test_mode_is_a_boolean_off_by_default():
    assert C.validate(scenario_config(7700))[0]["test_mode"] is False
    cfg, errs = C.validate(scenario_config(7700, test_mode=True))
    assert errs == [] and cfg["test_mode"] is True
    assert errors_for(test_mode="yes") == ["test_mode: expected true or false, got string"]
    assert errors_for(test_mode=1) == ["test_mode: expected true or false, got integer"]


def test_comms_errors_and_kind_rules():
    assert "key: must be 16..64 bytes" in "\n".join(errors_for(key="00" * 8))
    assert any(e.startswith("receiver.primary.port") for e in errors_for(
        receiver={"primary": {"type": "tcp", "host": "h", "port": 0}}))
    errs = errors_for(kind="door")
    assert any("a door panel needs exactly one zone of type 'door'" in e for e in errs)
    doc = scenario_config(7700)
    doc["zones"][0]["type"] = "door"
    assert any(e.startswith("zones[0].type: 'door' is only for kind") for e in C.validate(doc)[1])
    # comms subset usable although zones are wrong -> safe mode possible
    doc["zones"][0]["type"] = "nonsense"
    assert C.validate(doc)[1] and C.comms_ok(doc)["account"] == 4242
    doc["key"] = "zz"
    assert C.comms_ok(doc) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) |
    st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_validate_never_raises(data):
    doc = scenario_config(7700)
    # replace a random field anywhere with a random JSON value
    key = data.draw(st.sampled_from(sorted(doc)))
    if isinstance(doc[key], list) and doc[key] and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(doc[key]) - 1))
        if isinstance(doc[key][i], dict):
            sub = data.draw(st.sampled_from(sorted(doc[key][i])))
            doc[key][i][sub] = data.draw(json_values)
        else:
            doc[key][i] = data.draw(json_values)
    else:
        doc[key] = data.draw(json_values)
    cfg, errors = C.validate(doc)
    assert isinstance(errors, list)
    for e in errors:
        assert ": " in e
    C.comms_ok(doc)
    C.validate(data.draw(json_values))


def test_check_and_hash_code_cli(tmp_path, capsys):
    assert cli.main(["check", os.path.join(EXAMPLES, "bank.json")]) == 0
    bad = scenario_config(7700)
    bad["zones"][2]["type"] = "instnat"
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    assert cli.main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert "zones[2].type: 'instnat' is not one of" in err
    p.write_text("{not json")
    assert cli.main(["check", str(p)]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert cli.main(["hash-code", "--salt", "00ff", "1234"]) == 0
    import hashlib
    assert capsys.readouterr().out.strip() == hashlib.sha256(b"\x00\xff1234").hexdigest()


# -- DEOL ------------------------------------------------------------------------

def test_classifier_bands():
    c = eol.Classifier(2200, 4400, 4700)
    raw = lambda ohms: eol.raw_for_ohms(ohms, 4700)  # noqa: E731
    assert c.classify(raw(0)) == eol.SHORT
    assert c.classify(raw(500)) == eol.SHORT
    for r in (1980, 2200, 2420):  # 2k2 +-10 %
        assert c.classify(raw(r)) == eol.NORMAL
    for r in (3960, 4400, 4840):  # 4k4 +-10 %
        assert c.classify(raw(r)) == eol.ALARM
    assert c.classify(raw(-1)) == eol.TAMPER
    assert c.classify(raw(1_000_000)) == eol.TAMPER


@given(st.integers(0, 65535))
def test_classifier_is_monotonic(raw):
    c = eol.Classifier(2200, 4400, 4700)
    order = [eol.SHORT, eol.NORMAL, eol.ALARM, eol.TAMPER]
    if raw < 65535:
        assert order.index(c.classify(raw)) <= order.index(c.classify(raw + 1))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(1, 400), st.sampled_from([0, 1, 2, 3])), max_size=30))
def test_debounce_accepts_exactly_the_states_held_long_enough(changes):
    d = eol.Debouncer(1, 300, 0)
    stable = 0
    since = 0  # when the input last changed
    cur = 0
    now = 0
    for dur, s in changes:
        if s != cur:
            cur = s
            since = now
        # the input holds s for `dur` ms, sampled every 10 ms
        for t in range(now, now + dur, 10):
            r = d.update(0, s, t)
            held = t - since
            if r >= 0:
                assert r == s and held >= 300  # never before the debounce time
                stable = r
            elif s != stable:
                assert held < 300  # and never later than the first sample after it
        now += dur
