"""``guardline-receiver schedules|test|zones|reports`` as an operator uses
them, on a real store (the mistakes are in tests/test_cli_bad_input.py):
what they print, what they store and audit."""

import asyncio
import csv
import io
import time
import tomllib
from pathlib import Path

from receiver import cli
from receiver.records import EventRecord
from receiver.rules import schedules
from receiver.sqlite_store import SQLiteStore

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "schedules.toml"


def run(capsys, db, *argv) -> str:
    rc = cli.main(["--db", db, *argv])
    out, err = capsys.readouterr()
    assert rc == 0, (argv, out, err)
    return out


def store_of(db):
    async def go(job):
        s = SQLiteStore(db, create=False)
        await s.open()
        try:
            return await job(s)
        finally:
            await s.close()
    return lambda job: asyncio.run(go(job))


def test_schedules_from_the_file_to_a_change_today_and_back(tmp_path, capsys):
    db = str(tmp_path / "rx.db")
    run(capsys, db, "accounts", "add", "1001", "--partitions",
        '{"1": "vault", "3": "teller line", "4": "lobby"}')
    out = run(capsys, db, "schedules", "import", str(EXAMPLE), "--by", "ada")
    assert out.startswith("imported 3 schedule(s)") and "3 changed" in out
    assert "0 changed, 3 unchanged" in run(capsys, db, "schedules", "import", str(EXAMPLE),
                                           "--by", "ada")
    out = run(capsys, db, "schedules", "show", "1001", "--partition", "1", "--date",
              "2026-12-21")
    assert out.splitlines()[:6] == [
        "account 1001 partition 1 (vault): mon-fri open 08:30-09:00, close 17:00-17:30; "
        "sat-sun closed (Europe/Berlin, 15 min tolerance, opening required, 11 holidays, "
        "1 exception)",
        "  Mon 2026-12-21 open 08:30-09:00, close 17:00-17:30",
        "  Tue 2026-12-22 open 08:30-09:00, close 17:00-17:30",
        "  Wed 2026-12-23 open 08:30-09:00, close 17:00-17:30",
        "  Thu 2026-12-24 open 08:30-09:00, close 12:00-12:30 (exception)",
        "  Fri 2026-12-25 closed (holiday)"]
    # a late opening today, in the site's time
    out = run(capsys, db, "schedules", "change", "1001", "--partition", "1", "--open",
              "10:30-11:00", "--close", "17:00-17:30", "--reason", "staff training",
              "--by", "olga")  # until the end of the day (the site's)
    assert out.startswith("change #1: the hours of partition 1 of account 1001 on ")
    today = run(capsys, db, "schedules", "show", "1001", "--partition", "1").splitlines()[1]
    assert "open 10:30-11:00, close 17:00-17:30 (changed by olga until " in today
    assert today.endswith(" 00:00: staff training)")
    assert "cancelled" in run(capsys, db, "schedules", "cancel", "1", "--by", "sam")
    # the export reads back as the same schedules
    exported = run(capsys, db, "schedules", "export")
    assert schedules.load(tomllib.loads(exported)) == schedules.load(
        tomllib.loads(EXAMPLE.read_text()))
    audit = store_of(db)(lambda s: s.list_rules_audit("1001"))
    assert [(a.action, a.actor) for a in audit][:2] == [("schedule.cancel", "sam"),
                                                        ("schedule.change", "olga")]
    # --replace drops what the file no longer names
    one = tmp_path / "vault-only.toml"
    one.write_text(EXAMPLE.read_text().split("# Teller line")[0])
    out = run(capsys, db, "schedules", "import", str(one), "--replace", "--by", "ada")
    assert "2 removed" in out
    assert [(s.account, s.partition) for s in store_of(db)(lambda s: s.list_schedules())] == [
        ("1001", 1)]


def test_place_list_and_end_a_test(tmp_path, capsys):
    db = str(tmp_path / "rx.db")
    run(capsys, db, "accounts", "add", "1001")
    out = run(capsys, db, "test", "place", "1001", "--zone", "4", "--minutes", "90",
              "--reason", "detector swap", "--by", "ivan")
    assert out.startswith("placement #1: Zone 4 of account 1001 placed on test by ivan until ")
    listed = run(capsys, db, "test", "list")
    assert "#1" in listed and "zone 4 of account 1001" in listed and "ivan: detector swap" \
        in listed
    assert run(capsys, db, "test", "end", "1", "--by", "olga") == (
        "Test of zone 4 of account 1001 ended early by olga (placed by ivan: detector swap).\n")
    assert run(capsys, db, "test", "list") == "nothing is on test\n"
    assert "(ended " in run(capsys, db, "test", "list", "--all")


def test_a_held_zone_listed_and_released_and_the_reports(tmp_path, capsys):
    db = str(tmp_path / "rx.db")
    run(capsys, db, "accounts", "add", "1001", "--site", "City Bank", "--region", "central")
    now = time.time()

    async def storm(s):
        for i in range(8):
            await s.ingest(EventRecord("1001", "native", "native:%d" % i, 1, 130, 1, 4,
                                       now - 100 + i, seq=i, event_class="burglary",
                                       priority=4, description="Burglary, zone 4",
                                       open_alarm=True))
    store_of(db)(storm)
    out = run(capsys, db, "zones", "list")
    assert "zone 4" in out and "more than 5 alarms in 10 min; 2 more signal(s)" in out
    assert run(capsys, db, "zones", "release", "1001", "4", "--by", "sam").startswith(
        "zone 4 of account 1001 released after 2 more signal(s)")
    text = run(capsys, db, "reports", "center", "--from", "1h")
    assert "Alarms by class\n  class     alarms\n  burglary       6" in text
    rows = list(csv.reader(io.StringIO(run(capsys, db, "reports", "center", "--from", "1h",
                                           "--format", "csv", "--section",
                                           "alarms_by_class"))))
    assert rows == [["class", "alarms"], ["burglary", "6"]]
    long = run(capsys, db, "reports", "center", "--from", "1h", "--format", "csv")
    assert long.startswith("section,row,column,value\nalarms_by_class,burglary,alarms,6\n")
    page = tmp_path / "r.html"
    run(capsys, db, "reports", "center", "--from", "1h", "--format", "html", "-o", str(page))
    html = page.read_text()
    assert "<svg" in html and "City Bank (1001)" in html and "<script" not in html
