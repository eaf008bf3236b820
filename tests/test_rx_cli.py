"""guardline-receiver subcommands against a real SQLite file."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest

import protocol
from protocol.lean import glwire as w
from receiver import cli
from receiver.cli import main
from receiver.config import ConfigError, load


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "rx.db")


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_accounts_add_hides_key_unless_asked_and_writes_private_template(capsys, db, tmp_path):
    rc, out, _ = run(capsys, "accounts", "add", "1001", "--db", db, "--site", "Vault 1",
                     "--region", "north", "--zones", '{"1": "vault door"}', "--heartbeat",
                     "60", "--grace", "20", "--paths", "1,2")
    assert rc == 0 and "1001" in out and "key" not in out
    tmpl = str(tmp_path / "panel.json")
    rc, out, _ = run(capsys, "--db", db, "accounts", "add", "1002", "--show-key",
                     "--panel-template", tmpl, "--receiver", "tcp/10.0.0.5:7700",
                     "--receiver", "udp/10.0.0.5:7700")
    assert rc == 0
    key = out.split("key ")[1].split()[0]
    assert len(bytes.fromhex(key)) == 32
    assert stat.S_IMODE(os.stat(tmpl).st_mode) == 0o600
    t = json.load(open(tmpl))
    assert t["account"] == 1002 and t["key"] == key
    assert t["receivers"] == [{"transport": "tcp", "host": "10.0.0.5", "port": 7700},
                              {"transport": "udp", "host": "10.0.0.5", "port": 7700}]
    rc, out, _ = run(capsys, "accounts", "show", "1001", "--db", db)
    d = json.loads(out)
    assert "key" not in d and d["zones"] == {"1": "vault door"} and d["supervised_paths"] == [1, 2]
    rc, out, _ = run(capsys, "accounts", "show", "1002", "--db", db, "--show-key")
    assert json.loads(out)["key"] == key
    rc, out, _ = run(capsys, "accounts", "list", "--db", db)
    assert "1001" in out and "Vault 1" in out and "1002" in out
    rc, _, err = run(capsys, "accounts", "add", "1001", "--db", db)
    assert rc == 1 and "exists" in err
    rc, _, err = run(capsys, "accounts", "add", "99999999999", "--db", db)
    assert rc == 2 and "u32" in err
    rc, _, err = run(capsys, "accounts", "show", "4", "--db", db)
    assert rc == 1


def test_a_kind_the_receiver_reads_as_a_fixed_site_is_said(capsys, db):
    # "car" for a van: allowed (an ATM, a home are kinds too), but the
    # installer is told that it switches the vehicle checks off
    rc, _, err = run(capsys, "accounts", "add", "2001", "--db", db, "--kind", "car")
    assert rc == 0
    assert "kind 'car': a fixed site to the receiver" in err
    assert "vehicle and patrol" in err
    for number, kind in (("2002", "vehicle"), ("2003", "bank")):
        rc, _, err = run(capsys, "accounts", "add", number, "--db", db, "--kind", kind)
        assert rc == 0 and "fixed site" not in err


def test_accounts_export_import_round_trip(capsys, db, tmp_path):
    for n in ("1", "2"):
        run(capsys, "accounts", "add", n, "--db", db, "--region", "r%s" % n)
    exp = str(tmp_path / "exp.json")
    rc, _, _ = run(capsys, "accounts", "export", "--with-keys", "-o", exp, "--db", db)
    assert rc == 0 and stat.S_IMODE(os.stat(exp).st_mode) == 0o600
    rc, out, _ = run(capsys, "accounts", "export", "--db", db)
    assert all("key" not in a for a in json.loads(out))
    db2 = str(tmp_path / "other.db")
    rc, out, _ = run(capsys, "accounts", "import", exp, "--db", db2)
    assert rc == 0 and "2 added" in out
    rc, out, _ = run(capsys, "accounts", "show", "2", "--db", db2, "--show-key")
    rc1, out1, _ = run(capsys, "accounts", "show", "2", "--db", db, "--show-key")
    assert json.loads(out)["key"] == json.loads(out1)["key"]
    rc, _, err = run(capsys, "accounts", "import", exp, "--db", db2)
    assert rc == 1 and "--update" in err
    rc, out, _ = run(capsys, "accounts", "import", exp, "--db", db2, "--update")
    assert rc == 0 and "2 updated" in out
    bad = tmp_path / "bad.json"
    bad.write_text('[{"number": "5", "colour": "red"}]')
    rc, _, err = run(capsys, "accounts", "import", str(bad), "--db", db2)
    assert rc == 2 and "colour" in err


async def _fill(db):
    from receiver.app import Receiver
    from receiver.config import Config
    from receiver.store import Account

    cfg = Config(db=db)
    rx = Receiver(cfg)
    await rx.store.open()
    await rx.store.add_account(Account("7", os.urandom(32), zones={"3": "vault door"}))
    await rx.store.close()
    rx = Receiver(cfg)
    await rx.start()
    try:
        await rx.ingest({"account": "7", "protocol": "native", "dedupe_key": "native:1",
                         "seq": 1, "qualifier": 1, "code": 130, "partition": 1, "zone": 3,
                         "peer": "tcp:127.0.0.1:5555"})
        await rx.ingest({"account": "7", "protocol": "native", "dedupe_key": "native:2",
                         "seq": 2, "qualifier": 3, "code": 130, "partition": 1, "zone": 3})
    finally:
        await rx.stop()


async def test_events_json_lines_and_alarm_workflow(db, capsys):
    await _fill(db)
    # the CLI runs its own event loop: call it in a worker thread
    import asyncio
    rc, out, _ = await asyncio.to_thread(run, capsys, "events", "--json", "--db", db)
    assert rc == 0
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 2
    for k in ("account", "qualifier", "code", "partition", "zone", "description", "protocol",
              "received_at"):
        assert k in lines[0]
    assert lines[0]["description"] == "Burglary, zone 3 (vault door), partition 1"
    assert lines[1]["description"].startswith("Burglary restored")
    rc, out, _ = await asyncio.to_thread(run, capsys, "events", "--account", "8", "--db", db)
    assert out == ""
    rc, out, _ = await asyncio.to_thread(run, capsys, "events", "--since", "1h", "--db", db)
    assert out.count("\n") == 2 and "Burglary" in out
    rc, out, _ = await asyncio.to_thread(run, capsys, "events", "--since",
                                         str(time.time() + 60), "--db", db)
    assert out == ""

    rc, out, _ = await asyncio.to_thread(run, capsys, "alarms", "list", "--json", "--db", db)
    [a] = [json.loads(x) for x in out.splitlines()]
    assert a["state"] == "pending" and a["restored_at"]
    rc, out, _ = await asyncio.to_thread(run, capsys, "alarms", "ack", str(a["id"]), "--by",
                                         "anna", "--db", db)
    assert rc == 0 and "Acknowledged by anna." in out and "Taken by anna." in out
    rc, _, err = await asyncio.to_thread(run, capsys, "alarms", "resolve", str(a["id"]),
                                         "--by", "bo", "--disposition", "false", "--note",
                                         "key holder on site", "--db", db)
    assert rc == 1 and "Being handled by anna" in err and "take it over" in err
    rc, out, _ = await asyncio.to_thread(run, capsys, "alarms", "step", str(a["id"]), "1",
                                         "complete", "--by", "anna", "--db", db)
    assert rc == 0 and "completed by anna" in out
    rc, out, _ = await asyncio.to_thread(run, capsys, "alarms", "resolve", str(a["id"]), "--by",
                                         "anna", "--disposition", "false", "--note",
                                         "key holder on site", "--db", db)
    assert rc == 0 and "Resolved by anna as 'False alarm'." in out
    rc, _, err = await asyncio.to_thread(run, capsys, "alarms", "ack", str(a["id"]), "--by",
                                         "anna", "--db", db)
    assert rc == 1 and "resolved" in err
    rc, out, _ = await asyncio.to_thread(run, capsys, "alarms", "show", str(a["id"]), "--db", db)
    shown = json.loads(out)
    assert [x["to_state"] for x in shown["audit"] if not x["action"] or
            x["action"] == "resolve"] == ["pending", "acknowledged", "resolved"]
    assert shown["note"] == "key holder on site" and shown["disposition"] == "false"
    assert shown["workflow"]["plan"]["name"] == "builtin"
    rc, out, _ = await asyncio.to_thread(run, capsys, "alarms", "list", "--open", "--db", db)
    assert "pending" not in out.splitlines()[-1] if len(out.splitlines()) > 1 else True


async def test_events_after_pages_the_feed(db, capsys):
    """events --after ID / latest: the event feed (Store.events_after) from
    the command line; a cut listing says how to go on."""
    import asyncio
    await _fill(db)
    rc, out, _ = await asyncio.to_thread(run, capsys, "events", "--json", "--db", db)
    ids = [json.loads(x)["id"] for x in out.splitlines()]
    assert rc == 0 and len(ids) == 2
    rc, out, _ = await asyncio.to_thread(run, capsys, "events", "--json", "--after",
                                         str(ids[0]), "--db", db)
    assert [json.loads(x)["id"] for x in out.splitlines()] == ids[1:]
    rc, out, err = await asyncio.to_thread(run, capsys, "events", "--after", "0", "--limit",
                                           "1", "--db", db)
    assert rc == 0 and out.startswith("#%-6d " % ids[0]) and out.count("\n") == 1
    assert "--after %d" % ids[0] in err  # where to go on from
    rc, out, _ = await asyncio.to_thread(run, capsys, "events", "--after", "latest", "--db", db)
    assert rc == 0 and out == ""
    for bad in ("-1", "x", "1.5"):
        rc, _, err = await asyncio.to_thread(run, capsys, "events", "--after", bad, "--db", db)
        assert rc == 2 and "--after takes an event id" in err


@pytest.mark.parametrize("with_spec", [True, False])
def test_decode_with_key_and_from_store(capsys, db, monkeypatch, with_spec):
    if not with_spec:  # the glwire fallback used when protocol/spec.py is absent
        # (both: `from protocol import spec` takes the package's attribute first)
        monkeypatch.setitem(sys.modules, "protocol.spec", None)
        monkeypatch.delattr(protocol, "spec", raising=False)
    key = os.urandom(32)
    frame = w.seal(w.Keys(key), {"type": w.MSG_EVENT, "qualifier": 1, "code": 121,
                                 "partition": 1, "zone": 7, "event_time": 1_700_000_000,
                                 "text": "teller 2", "value": None}, 42, 9, 1_700_000_000)
    rc, out, _ = run(capsys, "decode", frame.hex(), "--key", key.hex(), "--db", db)
    d = json.loads(out)
    assert rc == 0 and d["account"] == 42 and d["seq"] == 9 and d["authenticated"] is True
    m = d["message"]
    assert m["code"] == 121 and m["text"] == "teller 2" and m["event_class"] == "holdup"
    assert m["description"] == "Duress, user 7, partition 1"
    rc, out, _ = run(capsys, "decode", frame.hex(), "--key", os.urandom(32).hex(), "--db", db)
    assert json.loads(out)["authenticated"] is False
    rc, out, err = run(capsys, "decode", frame.hex(), "--db", db)
    assert rc == 1 and out == "" and "no receiver store at %s" % db in err  # not made
    assert not os.path.exists(db)
    run(capsys, "accounts", "add", "43", "--db", db)
    rc, out, _ = run(capsys, "decode", frame.hex(), "--db", db)
    assert json.loads(out)["authenticated"] is None  # header only: no account 42 there
    run(capsys, "accounts", "add", "42", "--key", key.hex(), "--db", db)
    rc, out, _ = run(capsys, "decode", frame.hex(), "--db", db)
    assert json.loads(out)["authenticated"] is True  # key found in the store
    rc, out, _ = run(capsys, "decode", frame[:-1].hex(), "--db", db)
    assert rc == 1 and json.loads(out)["valid"] is False
    rc, _, err = run(capsys, "decode", "zz", "--db", db)
    assert rc == 2


def test_bad_configuration_is_refused_with_exit_2(capsys, tmp_path):
    cases = {
        "syntax.toml": "[listen\n",
        "unknown.toml": "[listen]\ntpc = ['127.0.0.1:1']\n",
        "port.toml": "[listen]\ntcp = ['127.0.0.1:70000']\n",
        "sup.toml": "[supervision]\ninterval_s = 0\n",
        "cls.toml": "[alarms]\nqueue_classes = ['burglary', 'ufo']\n",
        "route.toml": "[routing]\nfile = 'missing.toml'\n",
        "route2.toml": "[[routing.routes]]\nclasses = ['fire']\nmunicipal_center = 'x'\n",
    }
    for name, text in cases.items():
        p = tmp_path / name
        p.write_text(text)
        rc, _, err = run(capsys, "serve", "--config", str(p), "--db", str(tmp_path / "x.db"))
        assert rc == 2, name
        assert "configuration refused" in err and name in err or "route2" in name, (name, err)
        with pytest.raises(ConfigError):
            load(str(p))
    rc, _, err = run(capsys, "serve", "--db", str(tmp_path / "x.db"))
    assert rc == 2 and "nothing to listen on" in err
    rc, _, err = run(capsys, "serve", "--db", str(tmp_path / "x.db"), "--tcp", "nonsense")
    assert rc == 2


def test_example_config_loads():
    here = os.path.dirname(__file__)
    cfg = load(os.path.join(here, "..", "examples", "receiver.toml"))
    assert cfg.tcp and cfg.router.routes and cfg.router.outputs
    assert cfg.router.route("north", "holdup").routed_to["police_station"] == "ps-north"


def test_parse_time():
    assert cli.parse_time("1700000000") == 1_700_000_000
    assert cli.parse_time("2023-11-14T22:13:20") == 1_700_000_000
    assert abs(cli.parse_time("15m") - (time.time() - 900)) < 5


def test_console_script_help_runs():
    r = subprocess.run([sys.executable, "-m", "receiver.cli", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    for sub in ("serve", "accounts", "events", "alarms", "decode"):
        assert sub in r.stdout


async def test_events_follow_prints_new_events(db, tmp_path):
    import asyncio
    await _fill(db)
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver.cli", "events", "--follow", "--json", "--db", db,
        stdout=asyncio.subprocess.PIPE)
    try:
        first = [json.loads(await asyncio.wait_for(p.stdout.readline(), 30)) for _ in range(2)]
        assert [e["seq"] for e in first] == [1, 2]
        from receiver.sqlite_store import SQLiteStore
        from receiver.store import EventRecord
        s = SQLiteStore(db)
        await s.open()
        await s.ingest(EventRecord("7", "native", "native:3", 1, 602, 0, 0, time.time(),
                                   seq=3, description="Periodic test report"))
        await s.close()
        new = json.loads(await asyncio.wait_for(p.stdout.readline(), 30))
        assert new["seq"] == 3 and new["description"] == "Periodic test report"
    finally:
        p.terminate()
        await p.wait()


async def test_events_follow_after_latest_prints_only_what_comes_next(db):
    import asyncio
    await _fill(db)
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver.cli", "events", "--follow", "--after", "latest",
        "--json", "--account", "7", "--db", db, stdout=asyncio.subprocess.PIPE)
    try:
        from receiver.sqlite_store import SQLiteStore
        from receiver.store import EventRecord
        s = SQLiteStore(db)
        await s.open()
        # Store new events until the follower prints one: those stored
        # before it read the head are not printed, nor are seq 1 and 2.
        line = b""
        for seq in range(3, 60):
            await s.ingest(EventRecord("7", "native", "native:%d" % seq, 1, 602, 0, 0,
                                       time.time(), seq=seq))
            try:
                line = await asyncio.wait_for(p.stdout.readline(), cli.FOLLOW_POLL_S * 2)
                break
            except asyncio.TimeoutError:
                continue
        await s.close()
        assert json.loads(line)["seq"] >= 3
    finally:
        p.terminate()
        await p.wait()


def test_backoff_is_capped_jittered_and_resets():
    from receiver.backoff import Backoff
    b = Backoff(base_s=1, cap_s=8, jitter=0.25, rng=lambda: 1.0)
    assert [b.next_delay() for _ in range(6)] == [1.25, 2.5, 5.0, 10.0, 10.0, 10.0]
    b.reset()
    assert b.next_delay() == 1.25
    lo = Backoff(base_s=1, cap_s=8, jitter=0.25, rng=lambda: 0.0)
    assert [lo.next_delay() for _ in range(5)] == [1, 2, 4, 8, 8]
    with pytest.raises(ValueError):
        Backoff(base_s=2, cap_s=1)


def test_logfmt_lines_carry_fields():
    import logging
    from receiver.logfmt import LogfmtFormatter, kv
    rec = logging.LogRecord("receiver.app", logging.WARNING, __file__, 1,
                            "security event account=%s detail=%s", ("12", '"bad MAC"'), None)
    line = LogfmtFormatter().format(rec)
    assert 'level=warning logger=receiver.app msg="security event" account=12' in line
    assert kv(a=1, b="two words", c="") == 'a=1 b="two words" c=""'


def test_accounts_show_finds_a_dc09_account_typed_in_lower_case(tmp_path):
    import subprocess
    import sys
    db = str(tmp_path / "x.db")

    def run(*a):
        return subprocess.run([sys.executable, "-m", "receiver.cli", "--db", db, *a],
                              capture_output=True, text=True)
    assert run("accounts", "add", "12ab", "--protocol", "dc09").returncode == 0
    shown = run("accounts", "show", "12ab")
    assert shown.returncode == 0 and '"number": "12AB"' in shown.stdout


def test_import_update_without_keys_keeps_the_stored_keys(capsys, db, tmp_path):
    """`accounts export` (no keys) edited and imported back with --update
    must not give every account a fresh key: every panel would be locked
    out (its frames rejected as forged)."""
    run(capsys, "accounts", "add", "1001", "--db", db, "--site", "old name")
    before = json.loads(run(capsys, "accounts", "show", "1001", "--show-key", "--db", db)[1])
    exp = str(tmp_path / "exp.json")
    assert run(capsys, "accounts", "export", "-o", exp, "--db", db)[0] == 0
    rows = json.load(open(exp))
    assert "key" not in rows[0]
    rows[0]["site_name"] = "new name"
    rows.append({"number": "1002"})  # a new account without a key gets a fresh one
    json.dump(rows, open(exp, "w"))
    rc, out, _ = run(capsys, "accounts", "import", exp, "--update", "--db", db)
    assert rc == 0 and "1 added, 1 updated" in out and "new keys were generated" in out
    after = json.loads(run(capsys, "accounts", "show", "1001", "--show-key", "--db", db)[1])
    assert after["site_name"] == "new name" and after["key"] == before["key"]
    new = json.loads(run(capsys, "accounts", "show", "1002", "--show-key", "--db", db)[1])
    assert len(bytes.fromhex(new["key"])) == 32
