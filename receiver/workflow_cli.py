"""``guardline-receiver alarms | sites | plans | dispositions``: the
operator's workflow from the command line, doing what the console does
with the same cores, checks and audit rows (receiver.workflow_service).

    guardline-receiver alarms list [--state S] [--open] [--json] [--limit N]
    guardline-receiver alarms show ID                 # + plan, steps, calls, handler, trail
    guardline-receiver alarms ack|claim|release ID --by NAME
    guardline-receiver alarms take-over ID --by NAME [--yes]
    guardline-receiver alarms step ID POSITION complete|skip|fail|start --by NAME [--reason T]
    guardline-receiver alarms call ID --contact NAME --phone NUMBER --outcome O --by NAME
    guardline-receiver alarms passcode ID --contact NAME [--phone NUMBER] --by NAME [--passcode-stdin]
    guardline-receiver alarms resolve ID --by NAME --disposition CODE [--note T] [--override REASON]
    guardline-receiver alarms supervisor-queue [--json]
    guardline-receiver sites list | show NUMBER [--json] | export NUMBER [-o FILE]
    guardline-receiver sites import FILE... --by NAME [--replace]
    guardline-receiver sites passcode NUMBER CONTACT --by NAME [--duress] [--passcode-stdin]
    guardline-receiver sites note add NUMBER TEXT --by NAME [--until WHEN] [--from WHEN]
    guardline-receiver sites note list NUMBER [--all] | note delete NUMBER ID --by NAME
    guardline-receiver plans check FILE | load FILE --by NAME | export [-o FILE] | show [NAME]
    guardline-receiver plans resolve ACCOUNT CODE|CLASS
    guardline-receiver dispositions check FILE | load FILE --by NAME | list

``--by`` names the person (it goes in the audit trail).  What needs more
than working alarms (``alarm.act``) needs ``--by`` to name an enabled
console user whose role holds it (receiver.web.auth's table: resolving
over open mandatory steps, releasing another's alarm and deleting
another's note: supervisors; sites' contacts and passcodes: supervisors;
loading plans and dispositions: administrators), so a shell on the
receiver cannot do more than that user could in the console.

A passcode is read from the terminal without echo, or one line of
standard input with ``--passcode-stdin``; never from an argument (``ps``
and shell history would show it).  Exit status: 0 done, 1 refused or not
found (one sentence), 2 a bad command line or file.
"""

from __future__ import annotations

from typing import Any

import argparse
import asyncio
import getpass
import json
import sys
import time

import tomli_w

from protocol import contactid
from receiver.alarms import AlarmStateError
from receiver.cli_errors import Failure, UsageError, more, write_out
from receiver.times import iso_utc
from receiver.workflow import contacts as _contacts
from receiver.workflow import plans as _plans
from receiver.workflow import steps as _steps
from receiver.workflow.common import ActionRefused, NotFound, WorkflowConfigError
from receiver.workflow_service import Workflow, trail

STATES = ("pending", "acknowledged", "resolved")


def _iso(t) -> str:
    return "-" if t is None else iso_utc(t)


def _by(args) -> Any:
    """--by (None where the command has none)."""
    by = getattr(args, "by", None)
    if by is not None and not by.strip():
        raise UsageError("--by: the person's name is needed (it goes in the audit trail)")
    return by


async def _user_may(db: str, name: str, permission: str, what: str) -> None:
    """``name`` must be an enabled console user whose role holds
    ``permission`` (the console's table); Failure otherwise."""
    from receiver.web import auth  # noqa: PLC0415
    from receiver.web.user_stores import user_store_for  # noqa: PLC0415

    us = user_store_for(db)
    await us.open()
    try:
        u = await us.get(name)
    finally:
        await us.close()
    if u is None or u.disabled:
        raise Failure("--by %s: to %s, --by names an enabled console user whose role is %s; "
                      "there is none of that name" % (name, what, " or ".join(
                          sorted(auth.PERMISSIONS[permission]))))
    if not auth.allowed(u.role, permission):
        raise Failure("--by %s (%s): to %s, --by names a console user whose role is %s"
                      % (name, u.role, what, " or ".join(sorted(auth.PERMISSIONS[permission]))))


def _read_secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("the passcode is read from the terminal; in a script give "
                         "--passcode-stdin and one line on standard input")
    return getpass.getpass(prompt)


class _Session:
    """A store and, for what ingests (a duress passcode), the receiver's
    ingest path (its routing, classification and plans), not started."""

    def __init__(self, cfg, open_store):
        self.cfg = cfg
        self.open_store = open_store
        self.store: Any = None
        self.rx: Any = None

    async def __aenter__(self):
        from receiver.app import Receiver  # noqa: PLC0415 - the ingest path, not started

        self.store = await self.open_store(self.cfg)
        self.rx = Receiver(self.cfg, store=self.store)
        await self.rx.reload_accounts()
        await self.rx.workflow.load()
        return self

    async def __aexit__(self, *exc):
        await self.store.close()

    @property
    def wf(self):
        return self.rx.workflow


def _fail_with(e: Exception) -> Exception:
    if isinstance(e, WorkflowConfigError):
        return UsageError(str(e))
    return Failure(str(e))


async def _run(args, cfg, open_store, job) -> int:
    _by(args)
    try:
        async with _Session(cfg, open_store) as s:
            return await job(s) or 0
    except (ActionRefused, NotFound, AlarmStateError, WorkflowConfigError) as e:
        raise _fail_with(e) from None


# -- alarms --------------------------------------------------------------------------------


async def _new_sentences(s, alarm_id: int, before: int) -> None:
    w = await s.wf.work(alarm_id, trail=True)
    for r in trail(w.trail[before:], w.alarm.routed_to, s.rx.center_names()):
        print("alarm %d: %s%s" % (alarm_id, r["text"], " (%s)" % r["note"] if r["note"] else ""))


async def _trail_len(s, alarm_id: int) -> int:
    return len((await s.wf.work(alarm_id, trail=True)).trail)


def alarms_cmd(args, cfg, open_store) -> int:
    if getattr(args, "limit", 1) < 1:
        raise UsageError("--limit must be at least 1")
    if args.action == "list" and args.open and args.state == "resolved":
        raise UsageError("--open lists pending and acknowledged alarms: it cannot go with "
                         "--state resolved")
    if args.action == "step" and args.position < 1:
        raise UsageError("POSITION is the step's number in the plan (1 or more)")

    async def job(s):
        a = args.action
        if a == "list":
            return await _list(s, args)
        if a == "show":
            return await _show(s, args)
        if a == "supervisor-queue":
            return await _supervisor_queue(s, args)
        if a == "resolve" and args.override is not None:
            await _user_may(cfg.db, args.by, "alarm.override",
                            "resolve an alarm with mandatory steps open")
        before = await _trail_len(s, args.id)
        by = args.by
        wf = s.wf
        if a == "ack":
            await wf.acknowledge(args.id, by)
        elif a == "claim":
            await wf.claim(args.id, by)
        elif a == "take-over":
            cur = (await wf.work(args.id)).alarm
            if cur.handler is None:
                raise Failure("nobody handles alarm %d: claim it instead" % args.id)
            if not args.yes:
                if not sys.stdin.isatty():
                    raise UsageError("take-over asks first (alarm %d is being handled by %s): "
                                     "give --yes in a script" % (args.id, cur.handler))
                if input("Take alarm %d over from %s? [y/N] " % (args.id, cur.handler)) \
                        .strip().lower() not in ("y", "yes"):
                    raise Failure("nothing changed")
            await wf.take_over(args.id, by, cur.claim_rev)
        elif a == "release":
            cur = (await wf.work(args.id)).alarm
            anyone = cur.handler not in (None, by)
            if anyone:
                await _user_may(cfg.db, by, "alarm.override", "release another's alarm")
            await wf.release(args.id, by, anyone)
        elif a == "step":
            await wf.step(args.id, args.position, args.step_action, by, args.reason)
        elif a == "call":
            await wf.call(args.id, args.contact, args.phone, args.outcome, by)
        elif a == "passcode":
            cur = (await wf.work(args.id)).alarm
            c = (await wf.site(cur.account)).contact(args.contact)
            phone = args.phone or (c.phones[0].number if c.phones else "")
            given = _read_secret("Passcode %s gave: " % c.name, args.passcode_stdin)
            r = await wf.passcode(args.id, c.name, phone, given, by)
            if r.outcome == _contacts.DURESS:
                print("DURESS PASSCODE: hold-up alarm %s raised for the site. Stay calm; do "
                      "not let on." % (r.duress_alarm_id if r.duress_alarm_id else "(not "
                                       "raised: no receiver)"))
        elif a == "resolve":
            await wf.resolve(args.id, by, args.disposition, args.note, args.override,
                             args.override is not None)
        await _new_sentences(s, args.id, before)
    return asyncio.run(_run(args, cfg, open_store, job))


async def _list(s, args) -> None:
    rows = await s.store.list_alarms(args.state, limit=args.limit)
    if len(rows) == args.limit:
        more(args.limit, "alarms", "a larger --limit")
    if args.open:
        rows = [r for r in rows if r.state != "resolved"]
    if args.json:
        for r in rows:
            print(json.dumps(r.to_json(), sort_keys=True))
        return
    print("%-6s %-12s %-3s %-10s %-12s %-20s %-14s %s" % (
        "ID", "STATE", "PRI", "ACCOUNT", "CLASS", "RAISED", "HANDLER", "DESCRIPTION"))
    for r in rows:
        flags = "".join((" (restored)" if r.restored_at else "",
                         " (confirmed)" if r.confirmed else "",
                         " (cancelled by user %s)" % r.cancel_user if r.cancel_event_id else ""))
        print("%-6d %-12s %-3d %-10s %-12s %-20s %-14s %s%s" % (
            r.id, r.state, r.priority, r.account, r.event_class, _iso(r.created_at),
            r.handler or "-", r.description, flags))


async def _show(s, args) -> None:
    a = await s.store.get_alarm(args.id)
    if a is None:
        raise Failure("no alarm %d" % args.id)
    view = await s.wf.alarm_view(args.id, s.rx.center_names())
    shown = dict(a.to_json(), audit=view.pop("trail"), workflow=view)
    print(json.dumps(shown, indent=2, sort_keys=True, default=list))


async def _supervisor_queue(s, args) -> None:
    rows = await s.wf.supervisor_queue()
    if args.json:
        for r in rows:
            print(json.dumps(r.to_json(), sort_keys=True))
        return
    if not rows:
        print("nothing is late: no open alarm is past its time to be resolved")
    for r in rows:
        print("%-6d %-12s %-10s %-12s due %s  %s  %s" % (
            r.id, r.state, r.account, r.event_class, _iso(r.resolve_due_at),
            ("handled by %s" % r.handler) if r.handler else "handled by nobody",
            r.description))


# -- sites ---------------------------------------------------------------------------------


def site_file(site: _contacts.Site, notes) -> str:
    """A site as the site file it was imported from (hashes, never a
    passcode): what ``sites export`` writes and ``sites import`` reads."""
    doc: dict = {"account": site.account, "time_zone": site.time_zone}
    doc["contacts"] = []
    for c in site.contacts:
        d: dict = {"name": c.name}
        if c.role:
            d["role"] = c.role
        d["phones"] = [{"label": p.label, "number": p.number} if p.label else p.number
                       for p in c.phones]
        if c.passcode_hash:
            d["passcode_hash"] = c.passcode_hash
        if c.duress_hash:
            d["duress_hash"] = c.duress_hash
        if c.available:
            d["available"] = [w.text for w in c.available]
        doc["contacts"].append(d)
    if site.call_orders:
        doc["call_orders"] = {k: list(v) for k, v in site.call_orders.items()}
    permanent = [n for n in notes if n.permanent]
    if permanent:
        doc["notes"] = [{"text": n.text} for n in permanent]
    return tomli_w.dumps(doc)


def sites_cmd(args, cfg, open_store) -> int:
    async def job(s):
        wf = s.wf
        a = args.action
        if a == "list":
            for acct in await s.store.list_accounts():
                site = await wf.site(acct.number)
                shown = await wf.shown_notes(acct.number, time.time())
                print("%-10s %-34s %2d contacts  %2d notes shown  %s" % (
                    acct.number, acct.site_name or "-", len(site.contacts), len(shown),
                    "described" if site.source == "store" else "not imported yet"))
        elif a == "show":
            view = await wf.site_view(args.number)
            if args.json:
                print(json.dumps(view, indent=2, sort_keys=True))
                return
            print("site %s (time zone %s)" % (args.number, view["time_zone"]))
            for c in view["contacts"]:
                print("  %s%s: %s; %s; passcode %s" % (
                    c["name"], " (%s)" % c["role"] if c["role"] else "",
                    ", ".join(p["number"] for p in c["phones"]) or "no phone",
                    c["availability"], "set" if c["has_passcode"] else "not set"))
            for k, names in view["call_orders"].items():
                print("  call list %s: %s" % (k, ", ".join(names)))
            for n in view["notes"]:
                print("  note %d%s: %s (%s)" % (n["id"], " " + n["when"] if n["when"] else "",
                                                 n["text"], n["author"]))
        elif a == "export":
            site = await wf.site(args.number)
            text = site_file(site, [n for n, _, _ in await wf.notes(args.number)])
            write_out(text, args.output)
        elif a == "import":
            await _user_may(cfg.db, args.by, "sites.manage", "import site files")
            for path in args.file:
                got = await wf.import_site(path, args.by, args.replace)
                print("site %s imported from %s: %d contacts, %d notes added%s" % (
                    got["account"], path, got["contacts"], got["notes_added"],
                    " (replaced what was there)" if got["replaced"] else ""))
        elif a == "passcode":
            await _user_may(cfg.db, args.by, "sites.manage", "set passcodes")
            site = await wf.site(args.number)
            site.contact(args.contact)
            code = _read_secret("Passcode of %s (a phrase): " % args.contact, args.passcode_stdin)
            duress = _read_secret("Duress passcode of %s: " % args.contact,
                                  args.passcode_stdin) if args.duress else None
            await wf.set_passcode(args.number, args.contact, code, duress, args.by)
            print("passcode set for %s at site %s%s" % (args.contact, args.number,
                                                         " (and a duress passcode)" if duress
                                                         else ""))
        elif a == "note":
            await _note(s, args)
    if getattr(args, "by", None) is not None:
        _by(args)
    return asyncio.run(_run(args, cfg, open_store, job))


async def _note(s, args) -> None:
    wf = s.wf
    if args.note_action == "add":
        note_id = await wf.add_note(args.number, args.text, args.by, args.until,
                                    getattr(args, "from"))
        print("note %d added to site %s" % (note_id, args.number))
    elif args.note_action == "list":
        site = await wf.site(args.number)
        now = time.time()
        rows = await wf.notes(args.number, args.all)
        shown = {n.id for n in await wf.shown_notes(args.number, now)}
        if not rows:
            print("no notes at site %s" % args.number)
        for n, deleted_at, deleted_by in rows:
            state = ("deleted by %s" % deleted_by if deleted_at else
                     "shown" if n.id in shown else "not shown now")
            print("%-5d %-28s %-10s %s%s" % (n.id, n.when_words(site.time_zone) or "permanent",
                                            state, n.text, " (%s)" % n.author))
    else:
        anyone = False
        rows = {n.id: n for n, _, _ in await wf.notes(args.number)}
        n = rows.get(args.id)
        if n is not None and n.author != args.by:
            await _user_may(s.cfg.db, args.by, "alarm.override", "delete another's note")
            anyone = True
        await wf.delete_note(args.number, args.id, args.by, anyone)
        print("note %d of site %s deleted (kept in the site's history)" % (args.id, args.number))


# -- plans and dispositions ----------------------------------------------------------------


def _file_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise UsageError("%s: no such file" % path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError("%s: cannot read it (%s)" % (path, e)) from None


def workflow_files_cmd(args, cfg, open_store) -> int:
    kind = args.command  # plans | dispositions
    if args.action == "check":
        try:
            parsed, digest, label = Workflow.parse(kind, _file_text(args.file), args.file)
        except WorkflowConfigError as e:
            raise UsageError(str(e)) from None
        unused = []
        if isinstance(parsed, _plans.PlanSet):
            n, unused = len(parsed.plans), parsed.unused()
        else:
            n = len(parsed.items)
        print("%s: good; %d %s, hash %s%s" % (args.file, n, kind, digest[:12],
                                            ", " + label if label else ""))
        if unused:
            print("  plans no selector names: %s" % ", ".join(unused))
        return 0

    async def job(s):
        wf = s.wf
        a = args.action
        if a == "load":
            await _user_may(cfg.db, args.by, "workflow.manage", "load %s" % kind)
            f, changed = await wf.load_file(kind, _file_text(args.file), args.file, args.by)
            print("%s %s (%s)%s" % (args.file, "is in force now" if changed
                                   else "was in force already: nothing changed",
                                   f.hash[:12], ", " + f.label if f.label else ""))
        elif a == "export":
            f = wf.files.get(kind)
            if f is None:
                raise Failure("no %s file was loaded: the built-in %s are in use" % (kind, kind))
            write_out(f.text, args.output)
        elif a == "show":
            ps = wf.planset
            names = [args.name] if args.name else list(ps.plans)
            for name in names:
                p = ps.plans.get(name)
                if p is None:
                    raise Failure("no plan %s (plans: %s)" % (name, ", ".join(ps.plans)))
                print("%s: %s (%s)" % (p.name, p.title, p.version_label))
                for i, st in enumerate(_steps.instantiate(_plans.Resolution(p, "center", "",
                                                                              _plans.FALLBACK),
                                                          "other")):
                    print("  %d. %s%s" % (i + 1, st.title, "" if st.mandatory else " (optional)"))
        elif a == "resolve":
            acct = s.rx.account(args.account)
            if acct is None:
                raise Failure("no account %s" % args.account)
            what = args.code
            if what.isdigit() and int(what) <= 999:
                code, cls = int(what), contactid.event_class(int(what))
            elif what in contactid.CLASSES:
                code, cls = -1, what
            else:
                raise UsageError("%r is neither a Contact ID code (0..999) nor an alarm class "
                                 "(%s)" % (what, ", ".join(contactid.CLASSES)))
            print(_plans.resolve(wf.planset, acct.number, acct.region, cls, code).sentence())
        elif a == "list":
            for d in wf.dispositions.items:
                print("%-22s %-6s %s%s" % (d.code, d.category, d.label,
                                           "" if d.pick else " (the receiver's own)"))
    return asyncio.run(_run(args, cfg, open_store, job))


# -- argument parsing ------------------------------------------------------------------------


def register(sub, common: argparse.ArgumentParser, load_config, open_store) -> None:
    """Add ``alarms``, ``sites``, ``plans`` and ``dispositions`` to the
    CLI's subparsers (receiver.cli.build_parser)."""
    def by(p, help="who does it (the audit trail's name)"):
        p.add_argument("--by", required=True, help=help)

    al = sub.add_parser("alarms", parents=[common], help="the operator alarm queue and its work")
    asub = al.add_subparsers(dest="action", required=True, metavar="ACTION")
    ll = asub.add_parser("list", parents=[common],
                         help="the alarms: open first, by priority, oldest first")
    ll.add_argument("--state", choices=STATES)
    ll.add_argument("--open", action="store_true", help="pending and acknowledged only")
    ll.add_argument("--json", action="store_true")
    ll.add_argument("--limit", type=int, default=1000)
    sh = asub.add_parser("show", parents=[common], help="the alarm, its plan, steps, calls, "
                         "handler and trail (JSON)")
    sh.add_argument("id", type=int)
    for name, help in (("ack", "acknowledge (it takes the alarm)"),
                       ("claim", "take an alarm nobody handles"),
                       ("release", "give the alarm back (another's: supervisors)")):
        p = asub.add_parser(name, parents=[common], help=help)
        p.add_argument("id", type=int)
        by(p)
    to = asub.add_parser("take-over", parents=[common], help="take the alarm from its handler")
    to.add_argument("id", type=int)
    by(to)
    to.add_argument("--yes", action="store_true", help="do not ask (scripts)")
    st = asub.add_parser("step", parents=[common], help="complete, skip, fail or start a step")
    st.add_argument("id", type=int)
    st.add_argument("position", type=int, metavar="POSITION")
    st.add_argument("step_action", metavar="ACTION", choices=_steps.ACTIONS)
    by(st)
    st.add_argument("--reason", help="why (skip and fail need one)")
    ca = asub.add_parser("call", parents=[common], help="record a call's outcome")
    ca.add_argument("id", type=int)
    ca.add_argument("--contact", required=True)
    ca.add_argument("--phone", required=True)
    ca.add_argument("--outcome", required=True, choices=_contacts.RECORDED)
    by(ca)
    pc = asub.add_parser("passcode", parents=[common],
                         help="check the passcode a contact gave on a call (asked, not echoed)")
    pc.add_argument("id", type=int)
    pc.add_argument("--contact", required=True)
    pc.add_argument("--phone", help="the number called (default: the contact's first)")
    by(pc)
    pc.add_argument("--passcode-stdin", action="store_true",
                    help="read the passcode from standard input (one line)")
    rs = asub.add_parser("resolve", parents=[common], help="resolve with a disposition")
    rs.add_argument("id", type=int)
    by(rs)
    rs.add_argument("--disposition", required=True,
                    help="how the alarm ended (guardline-receiver dispositions list)")
    rs.add_argument("--note", help="what was done")
    rs.add_argument("--override", metavar="REASON",
                    help="resolve with mandatory steps open (supervisors), and why")
    sq = asub.add_parser("supervisor-queue", parents=[common],
                         help="open alarms not resolved in time")
    sq.add_argument("--json", action="store_true")
    al.set_defaults(func=lambda args: alarms_cmd(args, load_config(args), open_store))

    si = sub.add_parser("sites", parents=[common], help="sites' contacts, call lists and notes")
    ssub = si.add_subparsers(dest="action", required=True, metavar="ACTION")
    ssub.add_parser("list", parents=[common], help="the sites in the store")
    ss = ssub.add_parser("show", parents=[common],
                         help="a site's contacts, call lists and notes")
    ss.add_argument("number")
    ss.add_argument("--json", action="store_true")
    se = ssub.add_parser("export", parents=[common], help="the site as a site file (TOML)")
    se.add_argument("number")
    se.add_argument("--output", "-o", metavar="FILE")
    sim = ssub.add_parser("import", parents=[common], help="site files into the store")
    sim.add_argument("file", nargs="+")
    by(sim, "a console user who may manage sites (supervisor, administrator)")
    sim.add_argument("--replace", action="store_true",
                     help="replace the contacts and call lists of a site already imported")
    sp = ssub.add_parser("passcode", parents=[common],
                         help="set a contact's passcode (asked, not echoed; stored hashed)")
    sp.add_argument("number")
    sp.add_argument("contact")
    by(sp, "a console user who may manage sites (supervisor, administrator)")
    sp.add_argument("--duress", action="store_true", help="also ask for a duress passcode")
    sp.add_argument("--passcode-stdin", action="store_true",
                    help="read the passcode(s) from standard input, one per line")
    sn = ssub.add_parser("note", parents=[common], help="site notes")
    nsub = sn.add_subparsers(dest="note_action", required=True, metavar="NOTE_ACTION")
    na = nsub.add_parser("add", parents=[common], help="add a note to a site")
    na.add_argument("number")
    na.add_argument("text")
    by(na)
    na.add_argument("--until", metavar="WHEN",
                    help="a temporary note's end (ISO 8601; without offset: the site's time)")
    na.add_argument("--from", metavar="WHEN", help="a temporary note's start")
    nl = nsub.add_parser("list", parents=[common], help="a site's notes in force")
    nl.add_argument("number")
    nl.add_argument("--all", action="store_true", help="expired and deleted notes too")
    nd = nsub.add_parser("delete", parents=[common], help="delete a note")
    nd.add_argument("number")
    nd.add_argument("id", type=int)
    by(nd)
    si.set_defaults(func=lambda args: sites_cmd(args, load_config(args), open_store))

    for kind in ("plans", "dispositions"):
        p = sub.add_parser(kind, parents=[common], help="the %s in force" % kind)
        psub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
        c = psub.add_parser("check", parents=[common], help="check a %s file" % kind)
        c.add_argument("file")
        ld = psub.add_parser("load", parents=[common],
                             help="check a %s file and put it in force (a new version)" % kind)
        ld.add_argument("file")
        by(ld, "a console administrator")
        if kind == "plans":
            ex = psub.add_parser("export", parents=[common], help="the plans file in force")
            ex.add_argument("--output", "-o", metavar="FILE")
            shp = psub.add_parser("show", parents=[common], help="the plans in force")
            shp.add_argument("name", nargs="?")
            rp = psub.add_parser("resolve", parents=[common],
                                 help="which plan an alarm of ACCOUNT with CODE (or CLASS) gets")
            rp.add_argument("account")
            rp.add_argument("code", metavar="CODE|CLASS")
        else:
            psub.add_parser("list", parents=[common], help="the dispositions in force")
        p.set_defaults(func=lambda args: workflow_files_cmd(args, load_config(args),
                                                            open_store))
