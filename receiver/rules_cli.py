"""``guardline-receiver schedules|test|zones|reports ...``: the centre's
rules from the command line (issue 18; docs/receiver.md, "The centre's
rules").

    guardline-receiver schedules import FILE --by NAME [--replace]
    guardline-receiver schedules export [-o FILE]
    guardline-receiver schedules show ACCOUNT [--partition P] [--date D]
    guardline-receiver schedules change ACCOUNT --partition P --by NAME
                       (--open HH:MM-HH:MM --close HH:MM-HH:MM | --closed)
                       [--date D] [--until T] --reason TEXT
    guardline-receiver schedules cancel CHANGE_ID --by NAME
    guardline-receiver schedules check ACCOUNT [--partition P] [--since T]
    guardline-receiver test place ACCOUNT [--partition P | --zone Z]
                       [--minutes N | --until T] --reason TEXT --by NAME
    guardline-receiver test end PLACEMENT_ID --by NAME
    guardline-receiver test list [--all] [--account A] [--json]
    guardline-receiver zones list [--all] [--account A]
    guardline-receiver zones release ACCOUNT ZONE --by NAME
    guardline-receiver reports center --from T [--to T] [--region R] [--account A]
                       [--operator O] [--format text|csv|html] [--section NAME] [-o FILE]

Every change goes through the store, which checks it (the cores' rules),
writes it with its audit row (who, when, what as a sentence) and moves the
rules revision a running receiver watches: a change made here is in force
there within a second.  The commands need a store with the accounts: they
open it first (never creating one), then check what was typed against it.
Exit status as for every command: 0, 1 (not found, refused), 2 (bad input).

Wiring (receiver/cli.py, in ``build_parser``)::

    rules_cli.register(sub, common, CliHelpers(...))
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import sys
import time
import tomllib
from dataclasses import dataclass
from typing import Callable

import tomli_w

from receiver.cli_errors import Failure, write_out
from receiver.rules import reports, schedules, testmode
from receiver.rules_store import RulesError
from receiver.times import iso_utc, parse_instant


class RulesUsage(Exception):
    """Exit 2: what was typed cannot be used."""


class RulesRefused(Exception):
    """Exit 1: not found, or refused by the rules."""


@dataclass(frozen=True)
class CliHelpers:
    """What the rules' commands take from receiver.cli: the configuration,
    opening the store (never creating it) and reading a time."""

    load_config: Callable
    open_store: Callable  # async (cfg) -> Store
    parse_time: Callable  # text -> Unix seconds (relative = that long ago)


def _utc(t) -> str:
    return "-" if t is None else iso_utc(t)


def _hhmm_window(text: str, what: str) -> schedules.Window:
    try:
        return schedules.parse_window(text, what)
    except schedules.ScheduleError as e:
        raise RulesUsage(str(e)) from None


def _date(text: str, what: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(text)
    except ValueError:
        raise RulesUsage("%s: a date like 2026-03-27, got %r" % (what, text)) from None


def _future(text: str, what: str, tz=None, day: _dt.date | None = None) -> float:
    """``--until``: ISO 8601 (UTC unless it says), Unix seconds, or HH:MM
    (that ``day`` in ``tz``, when given)."""
    if tz is not None and day is not None and len(text) in (4, 5) and ":" in text:
        try:
            h, m = (int(x) for x in text.split(":"))
            if 0 <= h <= 23 and 0 <= m <= 59:
                return schedules.boundary(tz, day, h * 60 + m)
        except ValueError:
            pass
    t = parse_instant(text)
    if t is None:
        raise RulesUsage("%s: a time like 2026-03-27T18:00Z%s, got %r" % (
            what, " or 23:59 (that day, the site's time)" if tz else "", text))
    return t


async def _account(store, number: str):
    a = await store.get_account(number) or await store.get_account(number.upper())
    if a is None:
        raise RulesRefused("no account %s" % number)
    return a


def _by(args) -> str:
    by = (getattr(args, "by", None) or "").strip()
    if not by:
        raise RulesUsage("--by: who does it is needed (it goes in the audit trail)")
    return by


# -- schedules --------------------------------------------------------------------------


async def _schedules(args, cfg, h: CliHelpers, store) -> None:
    now = time.time()
    if args.action == "import":
        by = _by(args)
        try:
            with open(args.file, "rb") as f:
                doc = tomllib.load(f)
        except OSError as e:
            raise RulesUsage("schedules file %s: %s" % (args.file, e.strerror or e)) from None
        except tomllib.TOMLDecodeError as e:
            raise RulesUsage("schedules file %s: %s" % (args.file, e)) from None
        try:
            scheds = schedules.load(doc)
        except schedules.ScheduleError as e:
            raise RulesUsage("schedules file %s: %s" % (args.file, e)) from None
        known = {a.number for a in await store.list_accounts()}
        unknown = sorted({s.account for s in scheds} - known)
        if unknown:
            raise RulesRefused("schedules file %s names account(s) the store does not have: "
                               "%s (add them first); nothing was imported"
                               % (args.file, ", ".join(unknown)))
        changed = 0
        for s in scheds:
            changed += bool(await store.set_schedule(s, by, now))
        removed = 0
        if args.replace:
            keep = {(s.account, s.partition) for s in scheds}
            for s in await store.list_schedules():
                if (s.account, s.partition) not in keep:
                    await store.delete_schedule(s.account, s.partition, by, now)
                    removed += 1
        print("imported %d schedule(s) from %s: %d changed, %d unchanged%s" % (
            len(scheds), args.file, changed, len(scheds) - changed,
            ", %d removed" % removed if args.replace else ""))
    elif args.action == "export":
        write_out(tomli_w.dumps(schedules.dump(await store.list_schedules())), args.output,
                  "schedules")
    elif args.action == "show":
        a = await _account(store, args.account)
        scheds = [s for s in await store.list_schedules(a.number)
                  if args.partition is None or s.partition == args.partition]
        if not scheds:
            raise RulesRefused("account %s has no schedule%s" % (
                a.number, "" if args.partition is None else
                " for partition %d" % args.partition))
        changes = await store.list_schedule_changes(a.number, since=now)
        for s in scheds:
            first = _date(args.date, "--date") if args.date else schedules.local(s.tz, now)[0]
            print("account %s partition %d%s: %s" % (
                a.number, s.partition, " (%s)" % a.partitions[str(s.partition)]
                if str(s.partition) in a.partitions else "", s.words()))
            for day, plan, c in schedules.week_ahead(s, changes, first, now):
                print("  " + schedules.day_words(s, day, plan, c))
            for c in changes:
                if c.partition == s.partition:
                    print("  change #%d in force until %s: %s, by %s%s" % (
                        c.id, _utc(c.expires_at), c.words(), c.by,
                        ": " + c.reason if c.reason else ""))
    elif args.action == "change":
        await _change(args, store, now)
    elif args.action == "cancel":
        by = _by(args)
        try:
            c = await store.cancel_schedule_change(args.change_id, by, now)
        except RulesError as e:
            raise RulesRefused(str(e)) from None
        print("change #%d cancelled: %s follows its schedule again" % (c.id, c.where()))
    elif args.action == "check":
        await _check(args, store, h, now)


async def _change(args, store, now: float) -> None:
    by = _by(args)
    a = await _account(store, args.account)
    [s] = [x for x in await store.list_schedules(a.number) if x.partition == args.partition] \
        or [None]
    if s is None:
        raise RulesRefused("partition %d of account %s has no schedule to change"
                           % (args.partition, a.number))
    if not args.reason.strip():
        raise RulesUsage("--reason: why the day changes is needed (the console and the audit "
                         "show it)")
    if args.closed and (args.open or args.close):
        raise RulesUsage("--closed goes without --open and --close")
    if not args.closed and not (args.open and args.close):
        raise RulesUsage("give the day's hours (--open HH:MM-HH:MM --close HH:MM-HH:MM) or "
                         "--closed")
    plan = schedules.CLOSED if args.closed else schedules.DayPlan(
        _hhmm_window(args.open, "--open"), _hhmm_window(args.close, "--close"))
    day = _date(args.date, "--date") if args.date else schedules.local(s.tz, now)[0]
    until = _future(args.until, "--until", s.tz, day) if args.until else \
        schedules.day_start(s.tz, day + _dt.timedelta(days=1))
    try:
        c = await store.add_schedule_change(schedules.TemporaryChange(
            a.number, args.partition, day, plan, now, until, by, args.reason.strip()))
    except (schedules.ScheduleError, RulesError) as e:
        raise RulesRefused(str(e)) from None
    print("change #%d: %s, in force until %s" % (c.id, c.words(), _utc(c.expires_at)))


async def _check(args, store, h: CliHelpers, now: float) -> None:
    """What the schedule would raise over the stored history (nothing is
    raised): for an installer checking a new schedule."""
    a = await _account(store, args.account)
    since = h.parse_time(args.since) if args.since else now - 86400
    scheds = [s for s in await store.list_schedules(a.number)
              if args.partition is None or s.partition == args.partition]
    if not scheds:
        raise RulesRefused("account %s has no schedule to check" % a.number)
    changes = await store.list_schedule_changes(a.number)
    for s in scheds:
        hist = await store.open_close_history(a.number, s.partition, since)
        due = schedules.evaluate(s, changes, hist, since, now)
        print("account %s partition %d: %d report(s) since %s; %s" % (
            a.number, s.partition, len(hist), _utc(since),
            "nothing due" if not due else "%d event(s) due:" % len(due)))
        for e in due:
            print("  %s E%03d %s %s" % (_utc(e.at), e.code, e.kind.replace("_", " "), e.text)
                  if e.qualifier == 1 else "  %s R%03d %s %s" % (
                      _utc(e.at), e.code, e.kind.replace("_", " "), e.text))


# -- test placements ------------------------------------------------------------------------


async def _test(args, cfg, h: CliHelpers, store) -> None:
    now = time.time()
    if args.action == "place":
        by = _by(args)
        if not (args.reason or "").strip():
            raise RulesUsage("--reason: why it is on test is needed (the console shows it)")
        a = await _account(store, args.account)
        if args.until:
            ends = _future(args.until, "--until")
        else:
            minutes = args.minutes if args.minutes is not None else cfg.test_default_s // 60
            if minutes < 1:
                raise RulesUsage("--minutes: at least 1")
            ends = now + minutes * 60
        if ends - now > cfg.test_max_s:
            raise RulesRefused("a test lasts at most %d h here ([test] max_hours)"
                               % (cfg.test_max_s // 3600))
        p = testmode.Placement(a.number, now, ends, args.reason.strip(), by,
                               args.partition, args.zone)
        try:
            p = await store.place_on_test(p, now)
        except (testmode.PlacementError, RulesError) as e:
            raise RulesRefused(str(e)) from None
        print("placement #%d: %s" % (p.id, p.place_sentence()))
    elif args.action == "end":
        by = _by(args)
        try:
            p = await store.end_test_placement(args.placement_id, by, now)
        except RulesError as e:
            raise RulesRefused(str(e)) from None
        if p is None:
            raise RulesRefused("test placement %d has already ended" % args.placement_id)
        print(testmode.end_sentence(p))
    else:
        rows = await store.list_test_placements(live=not args.all, account=args.account)
        if args.json:
            for p in rows:
                print(json.dumps(p.to_json(), sort_keys=True))
            return
        if not rows:
            print("nothing is on test" if not args.all else "no test placements")
        for p in rows:
            print("#%-5d %-36s %s -> %s  %s: %s%s" % (
                p.id, p.words(), _utc(p.starts_at), _utc(p.ends_at), p.by, p.reason,
                "" if p.ended_at is None else "  (ended %s by %s)" % (_utc(p.ended_at),
                                                                    p.ended_by)))


# -- zones -----------------------------------------------------------------------------------


async def _zones(args, cfg, h: CliHelpers, store) -> None:
    if args.action == "release":
        by = _by(args)
        a = await _account(store, args.account)
        try:
            z = await store.release_zone(a.number, args.zone, by, time.time())
        except RulesError as e:
            raise RulesRefused(str(e)) from None
        print("zone %d of account %s released after %d more signal(s) on alarm #%d"
              % (z.zone, z.account, z.signals, z.alarm_id))
        return
    rows = await store.list_zone_holds(live=not args.all, account=args.account)
    if not rows:
        print("no zone is held" if not args.all else "no zone was ever held")
    for z in rows:
        print("account %-8s zone %-3d alarm #%-6d since %s: %s; %d more signal(s)%s" % (
            z.account, z.zone, z.alarm_id, _utc(z.since), z.reason, z.signals,
            "" if z.released_at is None else " (released %s by %s)" % (_utc(z.released_at),
                                                                      z.released_by)))


# -- reports -----------------------------------------------------------------------------------


def false_dispositions() -> frozenset:
    """The disposition codes that count as false alarms (issue 17's
    dispositions, category "false")."""
    from receiver.workflow import dispositions  # noqa: PLC0415

    return dispositions.builtin().codes_in(dispositions.FALSE)


async def build_report(store, start: float, end: float, flt: reports.Filter) -> reports.Report:
    """The centre's report from the store's rows (the CLI and the console)."""
    alarms, events = await store.report_rows(start, end)
    return reports.build(alarms, events, start, end, flt, false_dispositions())


def report_text(r: reports.Report) -> str:
    """Every section as an aligned table (durations in words)."""
    out = ["Centre report %s to %s, %s" % (_utc(r.start), _utc(r.end), r.filter.words())]
    for s in r.sections:
        out.append("")
        out.append(s.title)
        if not s.rows:
            out.append("  none in this range")
            continue
        cells = [s.columns] + [[reports.html_cell(c, v) for c, v in zip(s.columns, row)]
                               for row in s.rows]
        widths = [max(len(str(row[i])) for row in cells) for i in range(len(s.columns))]
        for row in cells:
            out.append("  " + "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                                        for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(out) + "\n"


async def _reports(args, cfg, h: CliHelpers, store) -> None:
    start = h.parse_time(args.from_)
    end = h.parse_time(args.to) if args.to else time.time()
    if not end > start:
        raise RulesUsage("--to must be after --from")
    if args.section and args.section not in reports.SECTIONS:
        raise RulesUsage("--section: one of %s" % ", ".join(reports.SECTIONS))
    if args.section and args.format != "csv":
        raise RulesUsage("--section picks one table of the CSV: give --format csv")
    r = await build_report(store, start, end, reports.Filter(args.region, args.account,
                                                             args.operator))
    if args.format == "html":
        text = reports.report_html(r)
    elif args.format == "csv":
        text = reports.section_csv(r.section(args.section)) if args.section \
            else reports.report_csv(r)
    else:
        text = report_text(r)
    write_out(text, args.output, "report")


# -- wiring -------------------------------------------------------------------------------------

_COMMANDS = {"schedules": _schedules, "test": _test, "zones": _zones, "reports": _reports}


def run(args, h: CliHelpers) -> int:
    """Run one rules command; the exit status.  A store that is not there
    (StoreMissing) and one that cannot be opened go to receiver.cli's
    main, which says where it looked."""
    cfg = h.load_config(args)

    async def go():
        store = await h.open_store(cfg)
        try:
            await _COMMANDS[args.command](args, cfg, h, store)
        finally:
            await store.close()
    try:
        asyncio.run(go())
    except RulesUsage as e:
        print("guardline-receiver: %s" % e, file=sys.stderr)
        return 2
    except (RulesRefused, Failure) as e:
        print("guardline-receiver: %s" % e, file=sys.stderr)
        return 1
    return 0


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number from 1, got %r" % text) from None
    if n < 1:
        raise argparse.ArgumentTypeError("a whole number from 1, got %r" % text)
    return n


def register(sub, common: argparse.ArgumentParser, h: CliHelpers) -> None:
    """Add ``schedules``, ``test``, ``zones`` and ``reports`` to the CLI."""
    def done(p):
        p.set_defaults(func=lambda args: run(args, h))

    sc = sub.add_parser("schedules", parents=[common], help="opening schedules per partition")
    ssub = sc.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = ssub.add_parser("import", parents=[common],
                          help="load a schedules file (examples/schedules.toml)")
    imp.add_argument("file")
    imp.add_argument("--by", required=True, help="who loads it (audit)")
    imp.add_argument("--replace", action="store_true",
                     help="remove the stored schedules the file no longer names")
    exp = ssub.add_parser("export", parents=[common], help="the stored schedules as TOML")
    exp.add_argument("--output", "-o", metavar="FILE")
    show = ssub.add_parser("show", parents=[common],
                           help="an account's schedules and the coming week, in words")
    show.add_argument("account")
    show.add_argument("--partition", type=_positive)
    show.add_argument("--date", help="the first day shown (default: today, the site's time)")
    ch = ssub.add_parser("change", parents=[common],
                         help="change one day's hours for a while (a late opening today)")
    ch.add_argument("account")
    ch.add_argument("--partition", type=_positive, required=True)
    ch.add_argument("--by", required=True, help="who changes it (audit)")
    ch.add_argument("--open", metavar="HH:MM-HH:MM", help="the day's opening window")
    ch.add_argument("--close", metavar="HH:MM-HH:MM", help="the day's closing window")
    ch.add_argument("--closed", action="store_true", help="the site stays closed that day")
    ch.add_argument("--date", help="the day changed (default: today, the site's time)")
    ch.add_argument("--until", metavar="T",
                    help="when the change expires: HH:MM (that day) or ISO 8601 "
                         "(default: the end of that day)")
    ch.add_argument("--reason", required=True,
                    help="why (the console and the audit show it)")
    ca = ssub.add_parser("cancel", parents=[common], help="end a temporary change now")
    ca.add_argument("change_id", type=int)
    ca.add_argument("--by", required=True, help="who cancels it (audit)")
    ck = ssub.add_parser("check", parents=[common],
                         help="what a schedule would raise over the stored history "
                              "(nothing is raised)")
    ck.add_argument("account")
    ck.add_argument("--partition", type=_positive)
    ck.add_argument("--since", metavar="T", help="from (default: a day ago)")
    done(sc)

    ts = sub.add_parser("test", parents=[common],
                        help="accounts, partitions and zones on test")
    tsub = ts.add_subparsers(dest="action", required=True, metavar="ACTION")
    pl = tsub.add_parser("place", parents=[common], help="place on test for a bounded time")
    pl.add_argument("account")
    what = pl.add_mutually_exclusive_group()
    what.add_argument("--partition", type=_positive)
    what.add_argument("--zone", type=_positive)
    long = pl.add_mutually_exclusive_group()
    long.add_argument("--minutes", type=int, help="how long (default: [test] "
                                                  "default_minutes)")
    long.add_argument("--until", metavar="T", help="until when (ISO 8601)")
    pl.add_argument("--reason", required=True)
    pl.add_argument("--by", required=True, help="who places it (audit)")
    en = tsub.add_parser("end", parents=[common], help="end a placement now")
    en.add_argument("placement_id", type=int)
    en.add_argument("--by", required=True, help="who ends it (audit)")
    ls = tsub.add_parser("list", parents=[common], help="what is on test")
    ls.add_argument("--all", action="store_true", help="ended placements too")
    ls.add_argument("--account")
    ls.add_argument("--json", action="store_true")
    done(ts)

    zs = sub.add_parser("zones", parents=[common], help="held (runaway) zones")
    zsub = zs.add_subparsers(dest="action", required=True, metavar="ACTION")
    zl = zsub.add_parser("list", parents=[common], help="held zones")
    zl.add_argument("--all", action="store_true", help="released ones too")
    zl.add_argument("--account")
    zr = zsub.add_parser("release", parents=[common], help="release a held zone")
    zr.add_argument("account")
    zr.add_argument("zone", type=_positive)
    zr.add_argument("--by", required=True, help="who releases it (audit)")
    done(zs)

    rp = sub.add_parser("reports", parents=[common], help="the centre's reports")
    rsub = rp.add_subparsers(dest="action", required=True, metavar="ACTION")
    ce = rsub.add_parser("center", parents=[common],
                         help="alarms, response times, false alarms, troubles, supervision "
                              "and open/close exceptions for a range")
    ce.add_argument("--from", dest="from_", required=True, metavar="T",
                    help="Unix seconds, ISO 8601, or 7d (that long ago)")
    ce.add_argument("--to", metavar="T", help="(default: now)")
    ce.add_argument("--region")
    ce.add_argument("--account")
    ce.add_argument("--operator")
    ce.add_argument("--format", choices=["text", "csv", "html"], default="text")
    ce.add_argument("--section", help="with --format csv: one table (%s)"
                    % ", ".join(reports.SECTIONS))
    ce.add_argument("--output", "-o", metavar="FILE")
    done(rp)
