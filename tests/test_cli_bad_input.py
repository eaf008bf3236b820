"""Every ``guardline-receiver`` subcommand, given bad input, prints a
message and exits non-zero: never a Python traceback, never an empty
result that reads like a real one, never a store made as a side effect
(issue 13, "Tracebacks are bugs" and "Read-only commands must never create
an empty store").

The subcommands are enumerated from the argparse parser, so a new one is
covered at once by the generic cases (a missing store, a file that is not a
store, an unreachable PostgreSQL server), and the test fails until its own
bad inputs are listed in ``SPECIFIC``.  guardline-panel and guardline-hil
have their own file.

Each case runs ``receiver.cli.main`` in this process (a subprocess per case
would take a minute), in an empty working directory, with file-descriptor
capture: anything raised out of ``main`` is the traceback a user would see.
``serve`` cases run as a subprocess: a serve that wrongly accepts its input
would run until stopped.
``test_console_script_shows_no_traceback`` runs the installed entry point
as a user does for the cases the issue names.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import socket
import subprocess
import sys

import pytest

from receiver import cli
from receiver.web import admin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Seconds a serve given bad input may take to refuse it (it exits at once;
# this only bounds a serve that wrongly starts).
SERVE_TIMEOUT_S = 60

# Commands that may create a store (they add something); every other one
# must refuse a store that does not exist.
CREATES = {("serve",), ("accounts", "add"), ("accounts", "import"), ("users", "add")}

# What a generic case adds so that the command gets as far as the store.
REACH_STORE = {("serve",): ["--tcp", "127.0.0.1:0"]}
# Instead of minimal_args: a frame long enough to name an account, so
# decode looks its key up in the store.
ARGS = {("decode",): ["00" * 40]}
# Commands that never open the store.
STORELESS = {("panels", "command"), ("plans", "check"), ("dispositions", "check")}
# Commands that use the default store only if it is there (decode looks a
# key up when it can, and says when it could not).
STORE_OPTIONAL = {("decode",)}


def leaf_commands(parser: argparse.ArgumentParser, path=()) -> dict:
    """{("accounts", "add"): its parser, ...} for every runnable command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: parser}
    out = {}
    for name, p in subs[0].choices.items():
        out.update(leaf_commands(p, path + (name,)))
    return out


def minimal_args(p: argparse.ArgumentParser) -> list[str]:
    """Positional arguments and required options with plausible values."""
    out = []
    for a in p._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        value = str(next(iter(a.choices))) if a.choices else "1"
        if not a.option_strings:
            out.append(value)
        elif a.required:
            out += [a.option_strings[0], value]
    return out


LEAVES = leaf_commands(cli.build_parser())

# Bad inputs per command: (argv after the command, a fragment the message
# must hold, extra environment, standard input).  {store} is a store with
# native account 1001 and DC-09 account ABC; {tmp} an empty directory;
# {closed} a TCP port nothing listens on; {garbage} a file that is not a
# store; {latin1} a file that is not UTF-8; {files} holds import files.
# what every "schedules change" case gives besides the account and its error
CHANGE = ["--partition", "1", "--by", "olga", "--reason", "training"]

SPECIFIC: dict[tuple, list] = {
    ("serve",): [
        (["--db", "{store}", "--tcp", "nonsense"], "expected HOST:PORT", None, None),
        (["--db", "{store}", "--udp", "127.0.0.1:99999"], "bad port", None, None),
        (["--db", "{store}"], "nothing to listen on", None, None),
        (["--config", "{tmp}/nope.toml", "--tcp", "127.0.0.1:0"], "no such file", None, None),
        (["--db", "{tmp}/new.db", "--tcp", "127.0.0.1:0"], "--init", None, None),
        (["--db", "{store}", "--tcp", "127.0.0.1:0", "--ready-file", "{tmp}/no/dir/ready"],
         "cannot write --ready-file", None, None),
        (["--db", "{store}", "--tcp", "127.0.0.1:0", "--config", "{files}/fences.toml"],
         "feature 1 (account 1001; corridor): geometry: a corridor is a LineString, got Point",
         None, None),
        (["--db", "{store}", "--tcp", "127.0.0.1:0", "--config", "{files}/tiles.toml"],
         "[map].tile_url must be an http(s) URL", None, None),
        # serve --workers N (receiver.workers): one writer on SQLite, one
        # reader of a serial line; a store that cannot be reached stops
        # every worker at the first start, never a restart loop
        (["--db", "{store}", "--tcp", "127.0.0.1:0", "--workers", "2"],
         "--workers 2 needs a PostgreSQL store", None, None),
        (["--db", "{store}", "--tcp", "127.0.0.1:0", "--workers", "0"],
         "expected a number of processes, 1..64", None, None),
        (["--db", "postgresql://guardline@127.0.0.1:{closed}/nowhere", "--serial", "loop://",
          "--workers", "2"], "a serial line is read by one process", None, None),
        (["--db", "postgresql://guardline@127.0.0.1:{closed}/nowhere", "--tcp", "127.0.0.1:0",
          "--workers", "2"], "cannot start: the database server refused the connection", None,
         None),
        (["--db", "postgresql://guardline@127.0.0.1:{closed}/nowhere", "--tcp", "127.0.0.1:0",
          "--metrics", "127.0.0.1:65535", "--workers", "2"], "past 65535", None, None),
    ],
    ("accounts", "add"): [
        # the periodic test (602) an account owes (receiver.rules.periodic)
        (["2", "--db", "{store}", "--test-interval", "60"], "at least 3600 s", None, None),
        (["2", "--db", "{store}", "--test-grace", "600"], "give --test-interval", None, None),
        (["2", "--db", "{store}", "--key", "zz"], "--key is not hex", None, None),
        (["2", "--db", "{store}", "--key", "00" * 8], "16..64 bytes", None, None),
        (["DEF", "--protocol", "dc09", "--db", "{store}", "--key", "0123456789ABCDEF"],
         "--key-format ascii", None, None),
        (["DEF", "--protocol", "dc09", "--db", "{store}", "--key", "0011"],
         "32, 48 or 64 hex digits", None, None),
        (["DEF", "--protocol", "dc09", "--db", "{store}", "--key", "short",
          "--key-format", "ascii"], "16, 24 or 32 characters", None, None),
        (["2", "--db", "{store}", "--key-format", "ascii"], "for DC-09 accounts", None, None),
        (["99999999999", "--db", "{store}"], "u32", None, None),
        (["12x", "--db", "{store}"], "decimal", None, None),
        (["XYZ", "--protocol", "dc09", "--db", "{store}"], "hex digits", None, None),
        (["1001", "--db", "{store}"], "already exists", None, None),
        (["2", "--db", "{store}", "--paths", "1,x"], "--paths", None, None),
        (["2", "--db", "{store}", "--paths", "3"], "supervised_paths", None, None),
        (["2", "--db", "{store}", "--heartbeat", "-5"], "heartbeat_s", None, None),
        (["2", "--db", "{store}", "--heartbeat", "x"], "invalid int", None, None),
        (["2", "--db", "{store}", "--site-position", "52.37"], "LAT,LON", None, None),
        (["2", "--db", "{store}", "--site-position", "4.89,north"], "LAT,LON", None, None),
        (["2", "--db", "{store}", "--site-position", "104.89,52.37"], "latitude first",
         None, None),
        (["2", "--db", "{store}", "--site-position", "52.37,190"], "longitude", None, None),
        (["2", "--db", "{store}", "--arrival-radius", "5"], "site_radius_m", None, None),
        (["2", "--db", "{store}", "--track-retention-days", "0"], "track_retention_days",
         None, None),
        (["2", "--db", "{store}", "--test-interval", "60"], "at least 3600", None, None),
        (["2", "--db", "{store}", "--test-interval", "86400", "--test-grace", "-1"],
         "test_grace_s", None, None),
        (["2", "--db", "{store}", "--zones", "{{nope"], "not valid JSON", None, None),
        (["2", "--db", "{store}", "--zones", "@{tmp}/missing.json"], "No such file", None,
         None),
        (["2", "--db", "{store}", "--zones", '{{"a": "b"}}'], "zones", None, None),
        (["2", "--db", "{store}", "--contacts", "[1,"], "not valid JSON", None, None),
        (["2", "--db", "{store}", "--receiver", "tcp/10.0.0.1:7700"], "--panel-template",
         None, None),
        (["2", "--db", "{store}", "--panel-template", "{tmp}/t.json"], "--receiver tcp/HOST",
         None, None),
        (["2", "--db", "{store}", "--panel-template", "{tmp}/t.json", "--receiver",
          "nonsense"], "expected HOST:PORT", None, None),
        (["2", "--db", "{store}", "--panel-template", "{tmp}/t.json", "--receiver",
          "sctp/10.0.0.1:7700"], "tcp/ or udp/", None, None),
        (["2", "--db", "{store}", "--panel-template", "{tmp}/t.json", "--receiver",
          "0.0.0.0:7700"], "every address", None, None),
        # the account is added (a distinct number), the template cannot be written
        (["3", "--db", "{store}", "--panel-template", "{tmp}/no/dir/t.json", "--receiver",
          "10.0.0.1:7700"], "accounts template 3", None, None),
    ],
    ("accounts", "list"): [
        (["--db", "{store}", "--json", "extra"], "unrecognized arguments", None, None),
        (["--db", "{files}"], "is not a file", None, None),
    ],
    ("accounts", "show"): [
        (["4242", "--db", "{store}"], "no account 4242", None, None),
    ],
    ("accounts", "template"): [
        (["4242", "--db", "{store}", "-o", "{tmp}/t.json", "--receiver", "10.0.0.1:7700"],
         "no account 4242", None, None),
        (["1001", "--db", "{store}", "-o", "{tmp}/t.json"], "--receiver tcp/HOST", None,
         None),
        (["1001", "--db", "{store}", "-o", "{tmp}/t.json", "--receiver", "::1:0"],
         "every address", None, None),
        (["1001", "--db", "{store}", "-o", "{tmp}/no/dir/t.json", "--receiver",
          "10.0.0.1:7700"], "cannot write the panel template", None, None),
        (["1001", "--db", "{store}"], "required", None, None),
    ],
    ("accounts", "import"): [
        (["{tmp}/missing.json", "--db", "{store}"], "No such file", None, None),
        (["{garbage}", "--db", "{store}"], "not JSON", None, None),
        (["{latin1}", "--db", "{store}"], "not UTF-8", None, None),
        (["{files}/empty.json", "--db", "{store}"], "no accounts", None, None),
        (["{files}/badkey.json", "--db", "{store}"], "record 1", None, None),
        (["{files}/unknown.json", "--db", "{store}"], "colour", None, None),
        (["{files}/dup.json", "--db", "{store}"], "--update", None, None),
    ],
    ("accounts", "export"): [
        (["--db", "{store}", "-o", "{tmp}/no/dir/x.json"], "cannot write", None, None),
    ],
    ("events",): [
        (["--db", "{store}", "--since", "yesterday-ish"], "bad time", None, None),
        (["--db", "{store}", "--limit", "0"], "--limit", None, None),
        (["--db", "{store}", "--account", "4242"], "no account 4242", None, None),
    ],
    ("alarms", "list"): [
        (["--db", "{store}", "--limit", "0"], "--limit", None, None),
        (["--db", "{store}", "--open", "--state", "resolved"], "--open", None, None),
        (["--db", "{store}", "--state", "open"], "invalid choice", None, None),
    ],
    ("alarms", "show"): [
        (["4242", "--db", "{store}"], "no alarm 4242", None, None),
        (["x", "--db", "{store}"], "invalid int", None, None),
    ],
    ("alarms", "ack"): [
        (["4242", "--by", "anna", "--db", "{store}"], "no alarm 4242", None, None),
        (["4242", "--by", " ", "--db", "{store}"], "--by", None, None),
    ],
    ("alarms", "resolve"): [
        (["4242", "--by", "anna", "--disposition", "false", "--db", "{store}"],
         "no alarm 4242", None, None),
        (["4242", "--by", "", "--disposition", "false", "--db", "{store}"], "--by", None, None),
        (["4242", "--by", "anna", "--db", "{store}"], "--disposition", None, None),
        (["4242", "--by", "olga", "--disposition", "false", "--override", "police there",
          "--db", "{store}"], "role is administrator or supervisor", None, None),
    ],
    ("alarms", "claim"): [
        (["4242", "--by", "anna", "--db", "{store}"], "no alarm 4242", None, None),
        (["x", "--by", "anna", "--db", "{store}"], "invalid int", None, None),
    ],
    ("alarms", "release"): [
        (["4242", "--by", "anna", "--db", "{store}"], "no alarm 4242", None, None),
    ],
    ("alarms", "take-over"): [
        (["4242", "--by", "anna", "--yes", "--db", "{store}"], "no alarm 4242", None, None),
        (["4242", "--db", "{store}"], "--by", None, None),
    ],
    ("alarms", "step"): [
        (["4242", "1", "complete", "--by", "anna", "--db", "{store}"], "no alarm 4242", None,
         None),
        (["4242", "0", "complete", "--by", "anna", "--db", "{store}"], "POSITION", None, None),
        (["4242", "1", "finish", "--by", "anna", "--db", "{store}"], "invalid choice", None,
         None),
    ],
    ("alarms", "call"): [
        (["4242", "--contact", "Anna", "--phone", "+00 1", "--outcome", "reached", "--by",
          "anna", "--db", "{store}"], "no alarm 4242", None, None),
        (["4242", "--contact", "Anna", "--phone", "+00 1", "--outcome", "duress", "--by",
          "anna", "--db", "{store}"], "invalid choice", None, None),
    ],
    ("alarms", "passcode"): [
        (["4242", "--contact", "Anna", "--by", "anna", "--passcode-stdin", "--db", "{store}"],
         "no alarm 4242", None, "tulip 42\n"),
    ],
    ("alarms", "supervisor-queue"): [
        (["--db", "{store}", "--yaml"], "unrecognized arguments", None, None),
    ],
    ("sites", "list"): [
        (["--db", "{store}", "--json"], "unrecognized arguments", None, None),
    ],
    ("sites", "show"): [
        (["4242", "--db", "{store}"], "no account 4242", None, None),
    ],
    ("sites", "export"): [
        (["4242", "--db", "{store}"], "no account 4242", None, None),
        (["1001", "-o", "{tmp}/no/dir/site.toml", "--db", "{store}"], "cannot write", None,
         None),
    ],
    ("sites", "import"): [
        (["{tmp}/nope.toml", "--by", "sam", "--db", "{store}"], "no such site file", None,
         None),
        (["{garbage}", "--by", "sam", "--db", "{store}"], "not valid TOML", None, None),
        (["{files}/site-passcode.toml", "--by", "sam", "--db", "{store}"],
         "a passcode is never written in a file", None, None),
        (["{files}/site-4242.toml", "--by", "sam", "--db", "{store}"], "no account 4242",
         None, None),
        (["{files}/site-passcode.toml", "--by", "olga", "--db", "{store}"],
         "role is administrator or supervisor", None, None),
        (["{files}/site-passcode.toml", "--by", "nobody", "--db", "{store}"],
         "there is none of that name", None, None),
    ],
    ("sites", "passcode"): [
        (["4242", "Anna", "--by", "sam", "--passcode-stdin", "--db", "{store}"],
         "no account 4242", None, "tulip 42\n"),
        (["1001", "Nobody", "--by", "sam", "--passcode-stdin", "--db", "{store}"],
         "no contact named Nobody", None, "tulip 42\n"),
        (["1002", "R. Moreau", "--by", "sam", "--db", "{store}"], "--passcode-stdin", None,
         "tulip 42\n"),
        (["1002", "R. Moreau", "--by", "sam", "--passcode-stdin", "--db", "{store}"],
         "4 to 64 characters", None, "42\n"),
        (["1002", "R. Moreau", "--by", "sam", "--duress", "--passcode-stdin", "--db",
          "{store}"], "must differ", None, "tulip 42\nTulip-42\n"),
    ],
    ("sites", "note", "add"): [
        (["4242", "owner away", "--by", "anna", "--db", "{store}"], "no account 4242", None,
         None),
        (["1001", "owner away", "--by", "anna", "--until", "friday", "--db", "{store}"],
         "is not a time", None, None),
        (["1001", "owner away", "--by", "anna", "--until", "2001-01-01T10:00", "--db",
          "{store}"], "end before it is written", None, None),
        (["1001", " ", "--by", "anna", "--db", "{store}"], "needs a text", None, None),
        (["1001", "x" * 501, "--by", "anna", "--db", "{store}"], "at most 500", None, None),
    ],
    ("sites", "note", "list"): [
        (["4242", "--db", "{store}"], "no account 4242", None, None),
    ],
    ("sites", "note", "delete"): [
        (["1001", "99", "--by", "anna", "--db", "{store}"], "no note 99", None, None),
        (["1001", "x", "--by", "anna", "--db", "{store}"], "invalid int", None, None),
    ],
    ("plans", "check"): [
        (["{tmp}/nope.toml"], "no such file", None, None),
        (["{garbage}"], "not valid TOML", None, None),
        (["{files}/bad-plans.toml"], "plan 'x', step 1 (wait): a wait step needs minutes",
         None, None),
    ],
    ("plans", "load"): [
        (["{tmp}/nope.toml", "--by", "ada", "--db", "{store}"], "no such file", None, None),
        (["{files}/bad-plans.toml", "--by", "ada", "--db", "{store}"],
         "a wait step needs minutes", None, None),
        (["{files}/bad-plans.toml", "--by", "sam", "--db", "{store}"],
         "role is administrator", None, None),
    ],
    ("plans", "export"): [
        (["--db", "{store}"], "built-in plans are in use", None, None),
        (["--db", "{store}", "-o"], "expected one argument", None, None),
    ],
    ("plans", "show"): [
        (["holdup-bank", "--db", "{store}"], "no plan holdup-bank", None, None),
    ],
    ("plans", "resolve"): [
        (["4242", "122", "--db", "{store}"], "no account 4242", None, None),
        (["1001", "holdupp", "--db", "{store}"], "neither a Contact ID code", None, None),
        (["1001", "1000", "--db", "{store}"], "neither a Contact ID code", None, None),
    ],
    ("dispositions", "check"): [
        (["{files}/bad-dispositions.toml"], "[auto] restored: must name a disposition",
         None, None),
        (["{tmp}/nope.toml"], "no such file", None, None),
    ],
    ("dispositions", "load"): [
        (["{files}/bad-dispositions.toml", "--by", "ada", "--db", "{store}"],
         "must name a disposition", None, None),
    ],
    ("dispositions", "list"): [
        (["--db", "{store}", "--json"], "unrecognized arguments", None, None),
    ],
    ("panels", "command"): [
        (["1001", "status", "--by", "sam", "--url", "http://127.0.0.1:{closed}"],
         "GUARDLINE_CONSOLE_PASSWORD", None, None),
        (["1001", "status", "--by", "sam", "--url", "http://127.0.0.1:{closed}"],
         "not reachable", {"GUARDLINE_CONSOLE_PASSWORD": "correct horse"}, None),
        (["1001", "status", "--by", "sam", "--url", "not a url"], "not reachable",
         {"GUARDLINE_CONSOLE_PASSWORD": "correct horse"}, None),
        (["1001", "explode", "--by", "sam"], "invalid choice", None, None),
    ],
    ("decode",): [
        (["zz", "--db", "{store}"], "not hex", None, None),
        (["00", "--db", "{store}"], "not a Guardline or DC-09 frame: 1 byte,", None, None),
        # a DC-09 frame cut short: words, not a dict or construct's parse path
        (["0A31323334", "--db", "{store}"],
         "not a Guardline or DC-09 frame: 5 bytes, no frame header", None, None),
        (["474c" + "00" * 8, "--db", "{store}"], "10 bytes, cut short: a header is 21", None,
         None),
        (["00" * 40, "--key", "zz", "--db", "{store}"], "--key is not hex", None, None),
    ],
    ("users", "add"): [
        (["anna", "--role", "operator", "--password-stdin", "--db", "{store}"],
         "at least 10 characters", None, "short\n"),
        (["anna", "--role", "operator", "--db", "{store}"], "no password", None, ""),
        (["anna", "--role", "janitor", "--db", "{store}"], "invalid choice", None, None),
    ],
    ("users", "list"): [
        (["--db", "{store}", "--yaml"], "unrecognized arguments", None, None),
    ],
    ("users", "passwd"): [
        (["nobody", "--password-stdin", "--db", "{store}"], "no user", None,
         "a long enough password\n"),
    ],
    # the centre's rules (receiver.rules_cli); the store's 1001 has a
    # schedule for partition 1 ({files}/schedules.toml)
    ("schedules", "import"): [
        (["{tmp}/missing.toml", "--by", "ada", "--db", "{store}"], "No such file", None,
         None),
        (["{garbage}", "--by", "ada", "--db", "{store}"], "schedules file", None, None),
        (["{files}/sched-unknown.toml", "--by", "ada", "--db", "{store}"],
         "does not have: 4242", None, None),
        (["{files}/sched-badtz.toml", "--by", "ada", "--db", "{store}"],
         "unknown time zone 'Mars/Olympus'", None, None),
        (["{files}/schedules.toml", "--by", " ", "--db", "{store}"], "--by", None, None),
    ],
    ("schedules", "export"): [
        (["--db", "{store}", "-o", "{tmp}/no/dir/s.toml"], "cannot write", None, None),
    ],
    ("schedules", "show"): [
        (["4242", "--db", "{store}"], "no account 4242", None, None),
        (["1001", "--partition", "9", "--db", "{store}"], "no schedule for partition 9",
         None, None),
        (["1001", "--partition", "0", "--db", "{store}"], "whole number from 1", None,
         None),
        (["1001", "--date", "soon", "--db", "{store}"], "a date like", None, None),
    ],
    ("schedules", "change"): [
        (["4242"] + CHANGE + ["--closed", "--db", "{store}"], "no account 4242", None, None),
        (["1001", "--partition", "2"] + CHANGE[2:] + ["--closed", "--db", "{store}"],
         "has no schedule to change", None, None),
        (["1001"] + CHANGE + ["--db", "{store}"], "give the day's hours", None, None),
        (["1001"] + CHANGE + ["--closed", "--open", "10:00-10:30", "--db", "{store}"],
         "--closed goes without", None, None),
        (["1001"] + CHANGE + ["--open", "25:00-26:00", "--close", "17:00-17:30", "--db",
                              "{store}"], "not a time of day", None, None),
        (["1001"] + CHANGE + ["--open", "10:30-11:00", "--close", "09:00-09:30", "--db",
                              "{store}"], "must follow each other", None, None),
        (["1001"] + CHANGE + ["--closed", "--date", "2020-01-01", "--db", "{store}"],
         "that day is over", None, None),
        (["1001"] + CHANGE + ["--closed", "--until", "tomorrow", "--db", "{store}"],
         "--until", None, None),
        (["1001", "--partition", "1", "--by", "", "--reason", "training", "--closed", "--db",
          "{store}"], "--by", None, None),
        # a day closed or moved drops or moves its deadlines: it says why
        (["1001", "--partition", "1", "--by", "olga", "--reason", " ", "--closed", "--db",
          "{store}"], "--reason: why the day changes", None, None),
        (["1001", "--partition", "1", "--by", "olga", "--closed", "--db", "{store}"],
         "required: --reason", None, None),
    ],
    ("schedules", "cancel"): [
        (["4242", "--by", "sam", "--db", "{store}"], "no schedule change 4242", None, None),
        (["x", "--by", "sam", "--db", "{store}"], "invalid int", None, None),
        (["4242", "--by", " ", "--db", "{store}"], "--by", None, None),
    ],
    ("schedules", "check"): [
        (["4242", "--db", "{store}"], "no account 4242", None, None),
        (["1001", "--since", "yesterday-ish", "--db", "{store}"], "bad time", None, None),
        (["1001", "--partition", "9", "--db", "{store}"], "no schedule to check", None,
         None),
    ],
    ("test", "place"): [
        (["4242", "--reason", "swap", "--by", "ivan", "--db", "{store}"],
         "no account 4242", None, None),
        (["1001", "--reason", " ", "--by", "ivan", "--db", "{store}"], "--reason", None,
         None),
        (["1001", "--reason", "swap", "--by", "ivan", "--minutes", "0", "--db", "{store}"],
         "--minutes", None, None),
        (["1001", "--reason", "swap", "--by", "ivan", "--minutes", "10000", "--db",
          "{store}"], "at most 72 h", None, None),
        (["1001", "--reason", "swap", "--by", "ivan", "--until", "2020-01-01T00:00Z",
          "--db", "{store}"], "ends in the past", None, None),
        (["1001", "--reason", "swap", "--by", "ivan", "--until", "later", "--db",
          "{store}"], "--until", None, None),
        (["1001", "--reason", "swap", "--by", "ivan", "--zone", "0", "--db", "{store}"],
         "whole number from 1", None, None),
        (["1001", "--reason", "swap", "--by", "ivan", "--zone", "1", "--partition", "1",
          "--db", "{store}"], "not allowed with", None, None),
    ],
    ("test", "end"): [
        (["4242", "--by", "olga", "--db", "{store}"], "no test placement 4242", None, None),
        (["4242", "--by", " ", "--db", "{store}"], "--by", None, None),
    ],
    ("test", "list"): [
        (["--db", "{store}", "--json", "extra"], "unrecognized arguments", None, None),
    ],
    ("zones", "list"): [
        (["--db", "{store}", "extra"], "unrecognized arguments", None, None),
    ],
    ("zones", "release"): [
        (["1001", "4", "--by", "sam", "--db", "{store}"], "zone 4 of account 1001 is not held",
         None, None),
        (["4242", "4", "--by", "sam", "--db", "{store}"], "no account 4242", None, None),
        (["1001", "x", "--by", "sam", "--db", "{store}"], "whole number from 1", None, None),
    ],
    ("reports", "center"): [
        (["--from", "yesterday-ish", "--db", "{store}"], "bad time", None, None),
        (["--from", "1d", "--to", "2d", "--db", "{store}"], "--to must be after", None, None),
        (["--from", "1d", "--format", "csv", "--section", "nope", "--db", "{store}"],
         "--section: one of", None, None),
        (["--from", "1d", "--section", "troubles", "--db", "{store}"], "give --format csv",
         None, None),
        (["--from", "1d", "--format", "html", "-o", "{tmp}/no/dir/r.html", "--db",
          "{store}"], "cannot write", None, None),
        (["--from", "1d", "--format", "pdf", "--db", "{store}"], "invalid choice", None,
         None),
    ],
}


def _cases():
    for path, parser in sorted(LEAVES.items()):
        name = " ".join(path)
        argv = list(path) + ARGS.get(path, minimal_args(parser)) + REACH_STORE.get(path, [])
        if path not in CREATES | STORELESS | STORE_OPTIONAL:
            # the case: the default var/receiver.db, in another directory
            yield pytest.param(argv, "no receiver store at {cwd}/var/receiver.db", None,
                               None, True, id="%s: no store in this directory" % name)
        if path not in CREATES:
            yield pytest.param(["--db", "{missing}"] + argv,
                               "" if path in STORELESS else "no receiver store at", None,
                               None, True, id="%s: missing store" % name)
        yield pytest.param(["--db", "{garbage}"] + argv, "", None, None, False,
                           id="%s: not a store" % name)
        yield pytest.param(["--db", "postgresql://guardline@127.0.0.1:{closed}/nowhere"]
                           + argv, "", None, None, False,
                           id="%s: unreachable PostgreSQL" % name)
        for i, (args, fragment, env, stdin) in enumerate(SPECIFIC.get(path, [])):
            yield pytest.param(list(path) + args, fragment, env, stdin, False,
                               id="%s: %d %s" % (name, i, " ".join(args)[:60]))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with accounts 1001 (native) and ABC (DC-09), and files of
    bad input; built once (the cases must not change it: each runs against
    a copy when it could)."""
    d = tmp_path_factory.mktemp("bad-input")
    store = str(d / "rx.db")
    assert cli.main(["--db", store, "accounts", "add", "1001"]) == 0
    assert cli.main(["--db", store, "accounts", "add", "ABC", "--protocol", "dc09"]) == 0
    (d / "garbage.txt").write_text("this is not a database, it is a shopping list\n" * 100)
    (d / "latin1.json").write_bytes('[{"number": "7", "site_name": "Café"}]'.encode("latin-1"))
    (d / "empty.json").write_text("")
    (d / "badkey.json").write_text('[{"number": "7", "key": "zz"}]')
    (d / "unknown.json").write_text('[{"number": "7", "colour": "red"}]')
    (d / "dup.json").write_text('[{"number": "1001"}]')
    # a corridor drawn as a point; a tile server that is not http(s)
    (d / "fences.geojson").write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
        '{"account": "1001", "kind": "corridor"}, "geometry": {"type": "Point", '
        '"coordinates": [4.89, 52.37]}}]}')
    (d / "fences.toml").write_text('[vehicles]\ngeofences = "fences.geojson"\n')
    (d / "tiles.toml").write_text('[map]\ntile_url = "ftp://tiles.example.net/{z}/{x}/{y}"\n')
    sched = ('[[schedule]]\naccount = "%s"\npartitions = [1]\ntimezone = "%s"\n'
             'week.mon-fri = { open = "08:00-08:30", close = "17:00-17:30" }\n')
    (d / "schedules.toml").write_text(sched % ("1001", "Europe/Berlin"))
    (d / "sched-unknown.toml").write_text(sched % ("4242", "Europe/Berlin"))
    (d / "sched-badtz.toml").write_text(sched % ("1001", "Mars/Olympus"))
    assert cli.main(["--db", store, "schedules", "import", str(d / "schedules.toml"),
                     "--by", "ada"]) == 0
    # the workflow's files, and console users to name with --by
    (d / "site-passcode.toml").write_text('account = "1001"\ntime_zone = "UTC"\n'
                                          '[[contacts]]\nname = "A"\nphones = ["+00 555 1"]\n'
                                          'passcode = "tulip 42"\n')
    (d / "site-4242.toml").write_text('account = "4242"\ntime_zone = "UTC"\n')
    (d / "bad-plans.toml").write_text('[plans.x]\ntitle = "X"\n[[plans.x.steps]]\n'
                                      'kind = "wait"\n[assign]\ndefault = "x"\n')
    (d / "bad-dispositions.toml").write_text('[dispositions.false]\nlabel = "False"\n'
                                             'category = "false"\n')
    for name, role in (("olga", "operator"), ("sam", "supervisor"), ("ada", "administrator")):
        admin.add_user(store, name, role, "a long enough password")
    assert cli.main(["--db", store, "accounts", "add", "1002", "--contacts",
                     '[{"name": "R. Moreau", "phone": "+1 555 0101"}]']) == 0
    return {"store": store, "garbage": str(d / "garbage.txt"),
            "latin1": str(d / "latin1.json"), "files": str(d)}


def _fill(argv, world, tmp) -> list[str]:
    values = dict(world, tmp=str(tmp), closed=_closed_port(),
                  missing=str(tmp / "missing" / "rx.db"), cwd=str(tmp / "cwd"))
    return [a.format(**values) for a in argv]


def test_every_command_has_its_own_bad_inputs():
    missing = sorted(" ".join(p) for p in LEAVES if p not in SPECIFIC)
    assert not missing, "add bad-input cases to SPECIFIC for: %s" % ", ".join(missing)
    assert set(SPECIFIC) <= set(LEAVES), "SPECIFIC names a command the CLI does not have"


@pytest.mark.parametrize("argv, fragment, env, stdin, missing_store", list(_cases()))
def test_bad_input_gets_a_message_and_a_non_zero_exit(
        argv, fragment, env, stdin, missing_store, world, tmp_path, monkeypatch, capfd):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # a user in some other directory
    monkeypatch.delenv("GUARDLINE_CONSOLE_PASSWORD", raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
    # no terminal to ask on: getpass reads standard input, as without a tty
    monkeypatch.setattr("getpass.getpass", lambda prompt="": _readline_or_eof())
    argv = _fill(argv, world, tmp_path)
    fragment = _fill([fragment], world, tmp_path)[0]
    if "serve" in argv:
        # a serve that accepts its input runs until stopped: a subprocess,
        # so that such a fault fails the case instead of hanging the suite
        try:
            r = subprocess.run([sys.executable, "-m", "receiver.cli", *argv], cwd=work,
                               input=stdin or "", capture_output=True, text=True,
                               timeout=SERVE_TIMEOUT_S, env=dict(os.environ, PYTHONPATH=REPO))
        except subprocess.TimeoutExpired:
            pytest.fail("serve accepted %s and kept running" % argv)
        rc, out, err = r.returncode, r.stdout, r.stderr
    else:
        try:
            rc = cli.main(argv)
        except SystemExit as e:  # argparse's usage errors
            rc = e.code
        except BaseException as e:  # noqa: BLE001 - what the user would see as a traceback
            pytest.fail("traceback for %s: %r" % (argv, e))
        out, err = capfd.readouterr()
    assert "Traceback" not in out + err, (argv, out, err)
    assert rc not in (0, None), (argv, rc, out, err)
    assert err.strip(), ("no message", argv, out)
    assert fragment in err, (argv, fragment, err)
    assert "Error in path" not in err and "{'" not in err, ("a repr, not words", argv, err)
    assert not os.listdir(work), "the command left files in the working directory: %s" % (
        os.listdir(work),)
    if missing_store:
        assert not os.path.exists(tmp_path / "missing"), "a directory was made for nothing"
        assert out == "", "a missing store must not print an (empty) listing: %r" % out


def _readline_or_eof() -> str:
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


@pytest.mark.parametrize("argv, fragment", [
    (["accounts", "add", "5", "--key", "zz"], "--key is not hex"),
    (["accounts", "add", "12AB", "--protocol", "dc09", "--key", "0123456789ABCDEF"],
     "--key-format ascii"),
    (["alarms", "list", "--open"], "no receiver store at"),
], ids=["non-hex key", "DC-09 key of the wrong length", "alarms list --open elsewhere"])
def test_console_script_shows_no_traceback(argv, fragment, tmp_path):
    """The cases the issue names, through the installed entry point, from a
    directory with no store: a message, exit non-zero, nothing created."""
    r = subprocess.run([sys.executable, "-m", "receiver.cli", *argv], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=REPO))
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.returncode != 0 and fragment in r.stderr, (r.returncode, r.stderr)
    assert r.stdout == "" and os.listdir(tmp_path) == []


def _with_actions(parser: argparse.ArgumentParser, path=()):
    """(path, parser, its ACTION choices) for every command that has actions."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            yield path, parser, list(a.choices)
            for name, p in a.choices.items():
                yield from _with_actions(p, path + (name,))


def test_help_names_every_action_and_a_missing_action_names_the_choices(capsys):
    """`guardline-receiver alarms --help` lists every action, each on its
    own line with what it does; `guardline-receiver dispositions` without
    one says which there are."""
    found = list(_with_actions(cli.build_parser()))
    assert {("alarms",), ("accounts",), ("dispositions",)} <= {p for p, _, _ in found}
    for path, parser, names in found:
        shown = parser.format_help()
        for name in names:
            assert re.search(r"(?m)^ {4}%s(\s{2,}|\n {8,})\S" % re.escape(name), shown), (
                "`%s --help` does not list %s" % (" ".join(("guardline-receiver",) + path),
                                                   name), shown)
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(list(path))
        said = capsys.readouterr().err
        assert "(one of: %s)" % ", ".join(names) in said, said
