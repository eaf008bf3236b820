"""Where the receiver's store comes from, as an operator meets it (issue 13,
"Read-only commands must never create an empty store" and the receiver's
half of "The installer's tools must produce a panel that works").

- A command that only reads or changes what is there refuses a store that
  does not exist, naming the path, and creates nothing (no file, no
  directory, no PostgreSQL schema); `serve` makes a new store only with
  --init, and says so in its log.
- What the store creates is its owner's only (0600 files, 0700 directory,
  whatever the umask); a store others can read is warned about at start.
- The panel template names addresses a panel can use, and how the
  receiver supervises each path; `accounts template` writes it again.

The receiver runs for real: the CLI in-process or as a subprocess (the
console script's module), `serve` as a subprocess, real SQLite files and a
throwaway PostgreSQL server (tests/pg_fixture.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys

import pytest

from firmware import provision
from receiver import cli
from receiver.store import Account, StoreMissing
from receiver.store_factory import make_store
from testkit.receiver import ReceiverProcess
from tests.pg_fixture import pg_server, pg_url  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def receiver_cli(*argv, cwd=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "receiver.cli", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=REPO), **kw)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- a missing store --------------------------------------------------------------------


def test_alarms_list_in_another_directory_refuses_instead_of_an_empty_table(tmp_path):
    """The issue's case: no ./var/receiver.db here; before, the command made
    one, printed an empty table and exited 0."""
    r = receiver_cli("alarms", "list", "--open", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stdout == ""  # no header of an empty table
    assert "no receiver store at %s" % (tmp_path / "var" / "receiver.db") in r.stderr
    assert "the default var/receiver.db, in the current directory" in r.stderr
    assert os.listdir(tmp_path) == []


def test_a_missing_db_directory_is_not_created_by_a_read(capsys, tmp_path):
    db = tmp_path / "nonexistent" / "dir" / "x.db"
    for argv in (["events"], ["accounts", "list"], ["alarms", "list"], ["users", "list"],
                 ["accounts", "export"], ["alarms", "ack", "1", "--by", "anna"]):
        rc, out, err = run(capsys, "--db", str(db), *argv)
        assert rc == 1 and out == "", argv
        assert "no receiver store at %s (given by --db)" % db in err, (argv, err)
    assert os.listdir(tmp_path) == []


def test_a_config_names_the_store_relative_to_itself(capsys, tmp_path, monkeypatch):
    """[store] path is relative to the config file, whatever the working
    directory; the refusal says where the path came from."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "receiver.toml").write_text('[store]\npath = "data/rx.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    conf = str(site / "receiver.toml")
    rc, _, err = run(capsys, "--config", conf, "accounts", "list")
    assert rc == 1 and "no receiver store at %s" % (site / "data" / "rx.db") in err
    assert "[store] in %s, relative to that file" % conf in err
    rc, _, _ = run(capsys, "--config", conf, "accounts", "add", "1001")
    assert rc == 0 and os.path.exists(site / "data" / "rx.db")
    assert os.listdir(elsewhere) == []
    rc, out, _ = run(capsys, "--config", conf, "accounts", "list")
    assert rc == 0 and "1001" in out


def test_an_empty_sqlite_file_is_not_migrated_by_a_read(capsys, tmp_path):
    db = tmp_path / "rx.db"
    db.write_bytes(b"")
    rc, out, err = run(capsys, "--db", str(db), "alarms", "list")
    assert rc == 1 and out == "" and "not a receiver store (no schema in it)" in err
    assert db.read_bytes() == b""


def test_serve_needs_init_for_a_new_store_and_says_when_it_made_one(tmp_path):
    db = tmp_path / "var" / "rx.db"
    r = receiver_cli("serve", "--db", str(db), "--tcp", "127.0.0.1:0", cwd=tmp_path)
    assert r.returncode == 1
    assert "no receiver store at %s" % db in r.stderr and "--init" in r.stderr
    assert os.listdir(tmp_path) == []
    log = tmp_path / "rx.log"
    proc = ReceiverProcess(db, ["--tcp", "127.0.0.1:0"], log_path=str(log))  # with --init
    try:
        proc.start()
        assert "--init" in proc.proc.args
    finally:
        proc.terminate()
        proc.close()
    text = log.read_text()
    assert 'msg="created a new, empty store" path=%s mode=0600' % db in text
    assert 'msg="created a directory for the store" path=%s mode=0700' % db.parent in text
    # a second start finds it: nothing is created, nothing said
    log.write_text("")
    proc = ReceiverProcess(db, ["--tcp", "127.0.0.1:0"], log_path=str(log))
    try:
        proc.start()
    finally:
        proc.terminate()
        proc.close()
    assert "created" not in log.read_text()


# -- file modes -------------------------------------------------------------------------


async def test_a_new_store_is_its_owners_only_whatever_the_umask(tmp_path):
    old = os.umask(0)  # the worst case: nothing masked
    try:
        db = tmp_path / "a" / "b" / "rx.db"
        s = make_store(str(db), create=True)
        await s.open()
        try:
            await s.add_account(Account("1", os.urandom(32)))
            # WAL mode: the -wal and -shm files exist while it is open
            for f in (db, str(db) + "-wal", str(db) + "-shm"):
                assert mode(f) == 0o600, f
        finally:
            await s.close()
        assert mode(tmp_path / "a") == 0o700 and mode(tmp_path / "a" / "b") == 0o700
    finally:
        os.umask(old)


def test_accounts_add_makes_a_private_store_and_says_so(capsys, tmp_path):
    old = os.umask(0o022)
    try:
        db = tmp_path / "new" / "rx.db"
        rc, out, err = run(capsys, "--db", str(db), "accounts", "add", "1001")
    finally:
        os.umask(old)
    assert rc == 0 and "account 1001 added" in out
    assert "created a new, empty store path=%s mode=0600" % db in err
    assert mode(db) == 0o600 and mode(db.parent) == 0o700


def test_a_store_others_can_read_is_warned_about_at_start(capsys, tmp_path):
    db = tmp_path / "rx.db"
    assert run(capsys, "--db", str(db), "accounts", "add", "1001")[0] == 0
    # a store copied with a loose umask: every file of it readable by others
    # (whether the WAL and SHM files outlived the last close depends on which
    # of the store's connections closed last; open, the store has them all,
    # new ones taking the database file's mode)
    for side in ("", "-wal", "-shm"):
        if os.path.exists(str(db) + side):
            os.chmod(str(db) + side, 0o644)
    rc, _, err = run(capsys, "--db", str(db), "accounts", "list")
    assert rc == 0
    assert ("group or others may read it: %s mode=0644, %s-wal mode=0644, %s-shm mode=0644"
            % (db, db, db)) in err
    assert "(fix: chmod 600 %s %s-wal %s-shm)" % (db, db, db) in err
    log = tmp_path / "rx.log"
    proc = ReceiverProcess(str(db), ["--tcp", "127.0.0.1:0"], log_path=str(log))
    try:
        proc.start()
    finally:
        proc.terminate()
        proc.close()
    text = log.read_text()
    assert "level=warning" in text and "group or others may read it" in text
    # the fix the warning names: every file of the store (the receiver may
    # have left its WAL and SHM files behind, still 0644)
    for f in (db, tmp_path / "rx.db-wal", tmp_path / "rx.db-shm"):
        if f.exists():
            os.chmod(f, 0o600)
    rc, _, err = run(capsys, "--db", str(db), "accounts", "list")
    assert rc == 0 and "may read it" not in err


# -- PostgreSQL -------------------------------------------------------------------------


def test_a_read_against_a_database_without_the_schema_says_so(capsys, pg_url):
    asyncpg = pytest.importorskip("asyncpg")

    async def tables():
        conn = await asyncpg.connect(pg_url)
        try:
            return await conn.fetchval("SELECT count(*) FROM pg_tables "
                                       "WHERE schemaname = 'public'")
        finally:
            await conn.close()

    for argv in (["alarms", "list", "--open"], ["accounts", "list"], ["events"],
                 ["users", "list"]):
        rc, out, err = run(capsys, "--db", pg_url, *argv)
        assert rc == 1 and out == "", argv
        assert "has no receiver schema" in err, (argv, err)
        assert "password" not in err or "***" in err
    assert asyncio.run(tables()) == 0  # nothing was migrated into it
    r = receiver_cli("serve", "--db", pg_url, "--tcp", "127.0.0.1:0")
    assert r.returncode == 1 and "--init" in r.stderr
    assert asyncio.run(tables()) == 0
    rc, _, _ = run(capsys, "--db", pg_url, "accounts", "add", "1001")
    assert rc == 0 and asyncio.run(tables()) > 0
    rc, out, _ = run(capsys, "--db", pg_url, "accounts", "list")
    assert rc == 0 and "1001" in out


async def test_store_missing_is_raised_by_both_backends(tmp_path, pg_url):
    with pytest.raises(StoreMissing):
        await make_store(str(tmp_path / "none.db"), create=False).open()
    assert not os.path.exists(tmp_path / "none.db")
    with pytest.raises(StoreMissing):
        await make_store(pg_url, create=False).open()


# -- panel templates --------------------------------------------------------------------


def _config(tmp_path, listen: str, supervision: str = "") -> str:
    p = tmp_path / "receiver.toml"
    p.write_text('[store]\npath = "rx.db"\n[listen]\n%s\n%s' % (listen, supervision))
    return str(p)


def test_a_template_with_no_receiver_address_is_refused_before_the_account_is_added(
        capsys, tmp_path):
    db = str(tmp_path / "rx.db")
    t = str(tmp_path / "t.json")
    rc, _, err = run(capsys, "--db", db, "accounts", "add", "1001", "--panel-template", t)
    assert rc == 2 and "--receiver tcp/HOST:PORT" in err
    assert not os.path.exists(t) and not os.path.exists(db)  # nothing half done
    conf = _config(tmp_path, 'dc09_tcp = ["10.0.0.5:7710"]')  # no native listener
    rc, _, err = run(capsys, "--config", conf, "accounts", "add", "1001",
                     "--panel-template", t)
    assert rc == 2 and "has no [listen] tcp/udp" in err and not os.path.exists(t)


def test_a_template_with_a_wildcard_address_is_refused(capsys, tmp_path):
    conf = _config(tmp_path, 'tcp = ["0.0.0.0:7700"]\nudp = ["10.0.0.5:7700"]')
    t = str(tmp_path / "t.json")
    rc, _, err = run(capsys, "--config", conf, "accounts", "add", "1001",
                     "--panel-template", t)
    assert rc == 2 and "tcp/0.0.0.0:7700" in err and "give --receiver tcp/HOST:PORT" in err
    assert not os.path.exists(t)
    rc, _, err = run(capsys, "--config", conf, "accounts", "add", "1001",
                     "--panel-template", t, "--receiver", "[::]:7700")
    assert rc == 2 and "every address" in err


def test_the_template_carries_each_supervised_path_and_can_be_written_again(
        capsys, tmp_path):
    conf = _config(tmp_path, 'tcp = ["10.0.0.5:7700"]\nudp = ["10.0.0.5:7700"]',
                   "[supervision]\ninterval_s = 90\ngrace_s = 45\n")
    t1 = str(tmp_path / "t1.json")
    rc, _, _ = run(capsys, "--config", conf, "accounts", "add", "1001", "--paths", "1,2",
                   "--heartbeat", "60", "--grace", "30", "--site", "Vault", "--zones",
                   '{"1": "vault door"}', "--panel-template", t1)
    assert rc == 0 and mode(t1) == 0o600
    first = json.load(open(t1))
    assert first["receivers"] == [{"transport": "tcp", "host": "10.0.0.5", "port": 7700},
                                  {"transport": "udp", "host": "10.0.0.5", "port": 7700}]
    assert first["heartbeat_s"] == 60
    assert first["supervision"] == [{"path": 1, "heartbeat_s": 60, "grace_s": 30},
                                    {"path": 2, "heartbeat_s": 60, "grace_s": 30}]
    # the receiver's defaults where the account has none; unsupervised: []
    rc, _, _ = run(capsys, "--config", conf, "accounts", "add", "1002")
    rc, _, _ = run(capsys, "--config", conf, "accounts", "add", "1003", "--unsupervised")
    t2, t3 = str(tmp_path / "t2.json"), str(tmp_path / "t3.json")
    assert run(capsys, "--config", conf, "accounts", "template", "1002", "-o", t2)[0] == 0
    assert json.load(open(t2))["supervision"] == [{"path": 1, "heartbeat_s": 90,
                                                   "grace_s": 45}]
    assert run(capsys, "--config", conf, "accounts", "template", "1003", "-o", t3)[0] == 0
    assert json.load(open(t3))["supervision"] == []
    # re-issued: the same account and key; other addresses when given
    again = str(tmp_path / "again.json")
    rc, out, _ = run(capsys, "--config", conf, "accounts", "template", "1001", "-o", again,
                     "--receiver", "tcp/rx1.example.net:7700",
                     "--receiver", "tcp/rx2.example.net:7700")
    assert rc == 0 and "mode 0600" in out and mode(again) == 0o600
    second = json.load(open(again))
    assert {k: v for k, v in second.items() if k != "receivers"} == {
        k: v for k, v in first.items() if k != "receivers"}
    assert [r["host"] for r in second["receivers"]] == ["rx1.example.net", "rx2.example.net"]
    # the installer's tool reads it
    t = provision.load_template(again)
    assert t["account"] == 1001
    assert t["supervision"] == {p["path"]: {"heartbeat_s": p["heartbeat_s"],
                                            "grace_s": p["grace_s"]}
                                for p in first["supervision"]}
    doc, _ = provision.new_config("bank", t)
    assert doc["receiver"]["backup"]["host"] == "rx2.example.net"


def test_a_dc09_template_names_the_dc09_listeners(capsys, tmp_path):
    conf = _config(tmp_path, 'tcp = ["10.0.0.5:7700"]\ndc09_tcp = ["10.0.0.5:7710"]')
    t = str(tmp_path / "t.json")
    rc, _, err = run(capsys, "--config", conf, "accounts", "add", "12ab", "--protocol",
                     "dc09", "--key", "0123456789ABCDEF", "--key-format", "ascii",
                     "--panel-template", t)
    assert rc == 0, err
    d = json.load(open(t))
    assert d["account"] == "12AB" and d["receivers"] == [
        {"transport": "tcp", "host": "10.0.0.5", "port": 7710}]
    assert bytes.fromhex(d["key"]) == b"0123456789ABCDEF"
    assert provision.load_template(t)["protocol"] == "dc09"
