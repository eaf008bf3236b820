"""The operator's workflow from the command line, as a person runs it,
against a real SQLite store: plans and dispositions loaded by an
administrator, a site imported and its passcodes set, a hold-up worked
step by step (a call, a duress passcode that raises a hold-up, a correct
passcode, a refused resolve, a supervisor's override), notes, and the
files exported back."""

import asyncio
import io
import json
import os
import sys
import time
from pathlib import Path

import pytest

from receiver.cli import main
from receiver.records import Account
from receiver.web import admin
from receiver.workflow import contacts

EX = Path(__file__).resolve().parent.parent / "examples"


def run(capsys, monkeypatch, *argv, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "rx.db")


async def _holdup(db) -> int:
    """A teller's hold-up at the bank, ingested by a receiver (not started)."""
    from receiver.app import Receiver
    from receiver.config import Config

    rx = Receiver(Config(db=db))
    await rx.store.open()
    try:
        await rx.reload_accounts()
        await rx.workflow.load()
        out = await rx.ingest({"account": "1001", "protocol": "native", "dedupe_key": "n:1",
                               "seq": 1, "qualifier": 1, "code": 122, "partition": 1,
                               "zone": 18})
        return out.alarm_id
    finally:
        await rx.store.close()


def test_a_hold_up_worked_from_the_command_line(db, tmp_path, capsys, monkeypatch):
    def cli(*argv, stdin=""):
        return run(capsys, monkeypatch, *argv, "--db", db, stdin=stdin)

    assert cli("accounts", "add", "1001", "--site", "City Bank", "--region", "central",
               "--partitions", '{"1": "vault"}')[0] == 0
    for name, role in (("olga", "operator"), ("sam", "supervisor"), ("ada", "administrator")):
        admin.add_user(db, name, role, "a long enough password")
    rc, out, err = cli("plans", "load", str(EX / "plans.toml"),
                                           "--by", "ada")
    assert rc == 0 and "is in force now" in out
    rc, out, _ = cli("plans", "load", str(EX / "plans.toml"), "--by",
                                         "ada")
    assert rc == 0 and "nothing changed" in out
    assert cli("dispositions", "load", str(EX / "dispositions.toml"), "--by", "ada")[0] == 0
    rc, out, _ = cli("sites", "import",
                                         str(EX / "sites" / "1001-city-bank.toml"), "--by",
                                         "sam")
    assert rc == 0 and "4 contacts, 2 notes added" in out
    rc, out, err = cli("sites", "passcode", "1001", "Anna Berg",
                                           "--by", "sam", "--duress", "--passcode-stdin",
                                           stdin="orchid 4417\nharbour 9\n")
    assert rc == 0 and "and a duress passcode" in out
    assert "orchid" not in out + err and "harbour" not in out + err
    rc, out, _ = cli("plans", "resolve", "1001", "122")
    assert out.strip().startswith("Plan 'holdup-bank' (v7, ")

    aid = asyncio.run(_holdup(db))
    rc, out, _ = cli("alarms", "claim", str(aid), "--by", "olga")
    assert rc == 0 and out == "alarm %d: Taken by olga.\n" % aid
    rc, out, _ = cli("alarms", "step", str(aid), "1", "complete",
                                         "--by", "olga")
    assert "Step 1 (Dispatch to the police station (none is routed for this alarm: call " \
           "it directly)) completed by olga." in out
    rc, _, err = cli("alarms", "step", str(aid), "2", "skip", "--by",
                                         "olga")
    assert rc == 1 and "needs a reason" in err
    rc, out, _ = cli("alarms", "call", str(aid), "--contact",
                                         "Anna Berg", "--phone", "+00 555 0101", "--outcome",
                                         "no_answer", "--by", "olga")
    assert rc == 0 and "Call to Anna Berg (branch manager) on +00 555 0101 by olga: no " \
                       "answer." in out
    # the branch manager calls back and gives her duress passcode
    rc, out, err = cli("alarms", "passcode", str(aid), "--contact",
                                           "Anna Berg", "--by", "olga", "--passcode-stdin",
                                           stdin="Harbour 9\n")
    assert rc == 0 and "DURESS PASSCODE: hold-up alarm" in out
    assert "Anna Berg (branch manager) gave the DURESS passcode on a call with olga" in out
    assert "harbour" not in (out + err).lower()
    rc, out, _ = cli("alarms", "list", "--json")
    rows = [json.loads(x) for x in out.splitlines()]
    [duress] = [r for r in rows if r["raised_from"] == aid]
    assert (duress["code"], duress["event_class"], duress["plan_name"]) == (
        121, "holdup", "holdup-bank")
    # her real passcode completes the passcode step
    rc, out, _ = cli("alarms", "passcode", str(aid), "--contact",
                                         "Anna Berg", "--by", "olga", "--passcode-stdin",
                                         stdin="orchid-4417\n")
    assert "gave the correct passcode to olga" in out and "Step 5 (Verify the caller's " \
                                                          "passcode) completed by olga" in out
    rc, _, err = cli("alarms", "resolve", str(aid), "--by", "olga",
                                         "--disposition", "real-holdup")
    assert rc == 1 and "mandatory steps are still open" in err
    rc, _, err = cli("alarms", "resolve", str(aid), "--by", "olga",
                                         "--disposition", "real-holdup", "--override",
                                         "police took over")
    assert rc == 1 and "--by olga (operator)" in err
    rc, _, err = cli("alarms", "take-over", str(aid), "--by", "sam")
    assert rc == 2 and "--yes" in err and "being handled by olga" in err
    rc, out, _ = cli("alarms", "take-over", str(aid), "--by", "sam",
                                         "--yes")
    assert rc == 0 and "Taken over by sam from olga" in out
    rc, out, _ = cli("alarms", "resolve", str(aid), "--by", "sam",
                                         "--disposition", "real-holdup", "--note",
                                         "police on site", "--override", "police took over")
    assert rc == 0 and "by supervisor override: police took over" in out
    rc, out, _ = cli("alarms", "show", str(aid))
    shown = json.loads(out)
    assert shown["disposition"] == "real-holdup" and shown["state"] == "resolved"
    assert [c["outcome"] for c in shown["workflow"]["calls"]] == [
        "no_answer", "duress", "passcode_correct"]
    assert "orchid" not in out.lower() and "harbour" not in out.lower()

    # notes: a temporary one in the site's time, deleted by a supervisor
    until = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() + 86400))
    rc, out, _ = cli("sites", "note", "add", "1001",
                                         "Branch closed for works", "--by", "olga",
                                         "--until", until)
    assert rc == 0
    note_id = int(out.split()[1])
    rc, out, _ = cli("sites", "note", "list", "1001")
    assert "until " in out and "Branch closed for works" in out
    rc, _, err = cli("sites", "note", "delete", "1001", str(note_id),
                                         "--by", "piotr")
    assert rc == 1 and "--by piotr" in err
    rc, out, _ = cli("sites", "note", "delete", "1001", str(note_id),
                                         "--by", "sam")
    assert rc == 0
    rc, out, _ = cli("sites", "note", "list", "1001", "--all")
    assert "deleted by sam" in out

    # the site and the plans back out as files
    path = str(tmp_path / "site.toml")
    assert (cli("sites", "export", "1001", "-o", path))[0] == 0
    site = contacts.load_site(path)
    assert site.contact("Anna Berg").passcode_hash.startswith("$argon2id$")
    assert site.call_orders["holdup"][0] == "Branch security desk" and len(site.notes) == 2
    assert "orchid" not in open(path).read()
    rc, out, _ = cli("plans", "export")
    assert out == (EX / "plans.toml").read_text()
    rc, out, _ = cli("plans", "show", "holdup-bank")
    assert "holdup-bank: Hold-up at a bank branch (v7, " in out and "(optional)" in out
    rc, out, _ = cli("dispositions", "list")
    assert "cancelled-user" in out and "real-holdup" in out
    rc, out, _ = cli("sites", "list")
    assert "1001" in out and "described" in out
    assert not os.path.exists(str(tmp_path / "var"))
