"""The console's routes for the centre's rules (issue 18): schedules and
their temporary changes, test placements, held zones, an alarm's incident
and hold, and the centre's reports.  docs/console.md is the reference.

Every route goes through receiver.web.api's :func:`~receiver.web.api.api`
(session, role from ``auth.PERMISSIONS``, CSRF and same origin for a
change); every change goes through the receiver (receiver.app), which has
the store check it, write it with its rules-audit row and tell every
console, and is also written to the console audit log here (who, from
where).  A refusal by the rules is a 400 (or 404, 409) with the rules'
own sentence.

The printable report (``/api/reports/center.html``) is served with the
report's own Content-Security-Policy (receiver.rules.reports: no script,
its one style block by hash) and may be framed by the console's reports
page only.
"""

from __future__ import annotations

import datetime as _dt
import time

from aiohttp import web

from receiver.rules import reports, schedules, testmode
from receiver.rules.schedules import ScheduleError
from receiver.rules_cli import build_report
from receiver.rules_store import RulesError
from receiver.supervision import duration_text
from receiver.times import iso_utc
from receiver.web import auth
from receiver.web.api import api, error_response, json_response, page, parse_time, read_body

# Longest report range the console builds (a year: the rows of a large
# centre's year are tens of MB; narrower ranges for more).
MAX_REPORT_S = 366 * 86400
# Rules-audit rows the site view lists.
SITE_AUDIT = 30
# Events counted on a held zone's alarm that the alarm view lists.
ATTACHED_SHOWN = 20


def _refused(e: Exception) -> web.Response:
    text = str(e)
    return error_response(404 if text.startswith(("no account", "no test placement",
                                                   "no schedule change")) else 400, text)


def _int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("%s must be a whole number" % what)
    return v


def _match_int(request, name: str) -> int | None:
    try:
        return int(request.match_info[name])
    except ValueError:
        return None


def _partition_name(acct, p: int | None) -> str:
    return acct.partitions.get(str(p), "") if acct is not None and p is not None else ""


# -- the site view's rules ---------------------------------------------------------------------


def schedule_view(acct, s: schedules.Schedule, changes, now: float) -> dict:
    """A partition's schedule as the site view shows it: in words, today,
    the coming week (with the changes in force), and the document."""
    today = schedules.local(s.tz, now)[0]
    week = schedules.week_ahead(s, changes, today, now)
    return {"partition": s.partition, "partition_name": _partition_name(acct, s.partition),
            "timezone": s.timezone, "tolerance_min": s.tolerance_min,
            "require_open": s.require_open, "words": s.words(),
            "today": schedules.day_words(s, *week[0]),
            "today_plan": week[0][1].to_dict(), "date": today.isoformat(),
            "week": [schedules.day_words(s, d, p, c) for d, p, c in week],
            "schedule": s.to_dict()}


def placement_view(acct, p: testmode.Placement, now: float) -> dict:
    """A placement on test as the console shows it: the API's fields with
    the site's name, what it covers in words with the account's names
    (testmode.what_words), and what it is doing now (testmode.status:
    ``state``, ``state_words``; ``in_force`` only while it covers events,
    never once its time is up)."""
    state, words = testmode.status(p, now)
    zone_name = acct.zones.get(str(p.zone), "") if acct is not None and p.zone else ""
    return dict(p.to_json(), site_name=acct.site_name if acct is not None else "",
                what=testmode.what_words(p, zone_name, _partition_name(acct, p.partition)),
                state=state, state_words=words, in_force=state == testmode.ON_TEST)


def hold_view(h) -> dict:
    from receiver.rules import hygiene  # noqa: PLC0415

    return dict(h.to_json(), sentence=hygiene.signals_sentence(h.zone, h.signals))


@api(auth.VIEW)
async def site_rules(request, console, s):
    rx = console.receiver
    number = request.match_info["number"]
    acct = await rx.store.get_account(number)
    if acct is None:
        return error_response(404, "no such account")
    now = time.time()
    store = rx.store
    changes = await store.list_schedule_changes(number, since=now)
    periodic = None
    if acct.test_interval_s:
        last = (await store.last_test_reports([number])).get(number)
        failed = number in await store.periodic_failed([number])
        timeout = acct.test_interval_s + (acct.test_grace_s or 0)
        periodic = {"interval_s": acct.test_interval_s, "grace_s": acct.test_grace_s or 0,
                    "last_test": last, "due_by": None if last is None else last + timeout,
                    "failed": failed,
                    "words": "a periodic test (602) every %s, missed after %s" % (
                        duration_text(acct.test_interval_s), duration_text(timeout))}
    cfg = rx.config
    return json_response({
        "schedules": [schedule_view(acct, x, changes, now)
                      for x in await store.list_schedules(number)],
        "changes": [c.to_json() for c in changes],
        "placements": [placement_view(acct, p, now)
                       for p in await store.list_test_placements(account=number)],
        "holds": [hold_view(h) for h in await store.list_zone_holds(account=number)],
        "periodic": periodic,
        "audit": [a.to_json() for a in await store.list_rules_audit(number, limit=SITE_AUDIT)],
        "test_limits": {"default_minutes": cfg.test_default_s // 60,
                        "max_hours": cfg.test_max_s // 3600}})


@api(auth.VIEW)
async def account_schedules(request, console, s):
    rx = console.receiver
    number = request.match_info["account"]
    acct = await rx.store.get_account(number)
    if acct is None:
        return error_response(404, "no such account")
    now = time.time()
    changes = await rx.store.list_schedule_changes(number, since=now)
    return json_response({"schedules": [schedule_view(acct, x, changes, now)
                                        for x in await rx.store.list_schedules(number)],
                          "changes": [c.to_json() for c in changes]})


@api(auth.SCHEDULE_MANAGE, write=True)
async def put_schedule(request, console, s):
    """A partition's schedule (the document ``schedules export`` writes
    per partition, as JSON: Schedule.to_dict())."""
    rx = console.receiver
    number, part = request.match_info["account"], _match_int(request, "partition")
    if part is None:
        return error_response(404, "no such partition")
    data = await read_body(request)
    try:
        sch = schedules.Schedule.from_dict(dict(data, account=number, partition=part))
        changed = await rx.set_schedule(sch, s.user)
    except (ScheduleError, RulesError, KeyError, TypeError, AttributeError) as e:
        return _refused(e if not isinstance(e, (KeyError, TypeError, AttributeError))
                        else ValueError("a schedule needs timezone and week (%s)" % e))
    await console.users.record(s.user, "schedule.set", "account=%s partition=%d changed=%s"
                               % (number, part, changed), request.remote or "")
    return json_response({"schedule": sch.to_dict(), "changed": changed})


def _date(text) -> _dt.date:
    try:
        return _dt.date.fromisoformat(str(text))
    except ValueError:
        raise ValueError("date: a day like 2026-03-27, got %r" % text) from None


@api(auth.SCHEDULE_CHANGE, write=True)
async def add_change(request, console, s):
    """``{"open": "HH:MM-HH:MM", "close": "HH:MM-HH:MM"}`` or ``{"closed":
    true}``, with ``date`` (default: today at the site), ``until`` (ISO
    8601; default: the end of that day) and ``reason``."""
    rx = console.receiver
    number, part = request.match_info["account"], _match_int(request, "partition")
    data = await read_body(request)
    sch = [x for x in await rx.store.list_schedules(number) if x.partition == part]
    if part is None or not sch:
        return error_response(404, "partition %s of account %s has no schedule"
                              % (request.match_info["partition"], number))
    [sched] = sch
    now = time.time()
    try:
        if data.get("closed") is True:
            plan = schedules.CLOSED
        else:
            plan = schedules.DayPlan(schedules.parse_window(data.get("open"), "open"),
                                     schedules.parse_window(data.get("close"), "close"))
        day = _date(data["date"]) if data.get("date") else schedules.local(sched.tz, now)[0]
        until = parse_time(data.get("until"), "until") or schedules.day_start(
            sched.tz, day + _dt.timedelta(days=1))
        reason = str(data.get("reason") or "").strip()[:200]
        c = await rx.change_schedule(schedules.TemporaryChange(
            number, part, day, plan, now, until, s.user, reason))
    except ValueError as e:  # ScheduleError, RulesError
        return _refused(e)
    await console.users.record(s.user, "schedule.change", "account=%s partition=%d change=%d"
                               % (number, part, c.id or 0), request.remote or "")
    return json_response({"change": c.to_json()}, status=201)


@api(auth.SCHEDULE_CHANGE, write=True)
async def cancel_change(request, console, s):
    rx = console.receiver
    change_id = _match_int(request, "id")
    if change_id is None:
        return error_response(404, "no such change")
    try:
        c = await rx.cancel_schedule_change(change_id, s.user)
    except RulesError as e:
        return error_response(404 if "no schedule change" in str(e) else 409, str(e))
    await console.users.record(s.user, "schedule.cancel", "account=%s change=%d"
                               % (c.account, change_id), request.remote or "")
    return json_response({"change": c.to_json()})


# -- test placements ----------------------------------------------------------------------


@api(auth.VIEW)
async def list_tests(request, console, s):
    rx = console.receiver
    live = request.query.get("all") not in ("1", "true")
    rows = await rx.store.list_test_placements(live=live,
                                               account=request.query.get("account") or None)
    now = time.time()
    return json_response({"placements": [placement_view(rx.account(p.account), p, now)
                                         for p in rows], "now": now})


@api(auth.TEST_PLACE, write=True)
async def place_test(request, console, s):
    """``{"account", "partition"? | "zone"?, "minutes"? | "until"?, "reason"}``;
    the placement is the caller's (an installer's walk test places its own
    account), bounded by ``[test] max_hours``."""
    rx = console.receiver
    data = await read_body(request)
    number = data.get("account")
    if not isinstance(number, str) or not number:
        return error_response(400, "account: the account number, as a string")
    cfg = rx.config
    now = time.time()
    try:
        partition = None if data.get("partition") is None else _int(data["partition"],
                                                                    "partition")
        zone = None if data.get("zone") is None else _int(data["zone"], "zone")
        if partition is not None and zone is not None:
            raise ValueError("place a partition or a zone on test, not both")
        if data.get("until") is not None:
            ends = parse_time(data["until"], "until") or now
        else:
            minutes = _int(data.get("minutes", cfg.test_default_s // 60), "minutes")
            if minutes < 1:
                raise ValueError("minutes: at least 1")
            ends = now + minutes * 60
        if ends - now > cfg.test_max_s:
            raise ValueError("a test lasts at most %d h here" % (cfg.test_max_s // 3600))
        reason = str(data.get("reason") or "").strip()[:200]
        p = await rx.place_on_test(testmode.Placement(number, now, ends, reason, s.user,
                                                      partition, zone))
    except ValueError as e:  # PlacementError, RulesError
        return _refused(e)
    await console.users.record(s.user, "test.place", "account=%s placement=%d what=%s"
                               % (number, p.id or 0, p.words()), request.remote or "")
    return json_response({"placement": p.to_json()}, status=201)


@api(auth.TEST_PLACE, write=True)
async def end_test(request, console, s):
    rx = console.receiver
    pid = _match_int(request, "id")
    if pid is None:
        return error_response(404, "no such placement")
    try:
        p = await rx.end_test(pid, s.user)
    except RulesError as e:
        return error_response(404, str(e))
    if p is None:
        return error_response(409, "test placement %d has already ended" % pid)
    await console.users.record(s.user, "test.end", "account=%s placement=%d"
                               % (p.account, pid), request.remote or "")
    return json_response({"placement": p.to_json()})


# -- held zones, an alarm's incident --------------------------------------------------------


@api(auth.VIEW)
async def list_holds(request, console, s):
    rows = await console.receiver.store.list_zone_holds(
        account=request.query.get("account") or None)
    return json_response({"holds": [hold_view(h) for h in rows]})


@api(auth.ZONE_RELEASE, write=True)
async def release_zone(request, console, s):
    rx = console.receiver
    number, zone = request.match_info["account"], _match_int(request, "zone")
    if zone is None:
        return error_response(404, "no such zone")
    try:
        h = await rx.release_zone(number, zone, s.user)
    except RulesError as e:
        return error_response(409, str(e))
    await console.users.record(s.user, "zone.release", "account=%s zone=%d alarm=%d"
                               % (number, zone, h.alarm_id), request.remote or "")
    return json_response({"hold": hold_view(h)})


def _member(rx, a) -> dict:
    acct = rx.account(a.account)
    from receiver.web.api import number_fields  # noqa: PLC0415 - a public helper

    return dict(a.to_json(), **number_fields(acct, a.code, a.zone))


@api(auth.VIEW)
async def alarm_rules(request, console, s):
    """Beside an alarm: its incident's members, the zone hold it anchors
    (and the signals counted on it), the restore stamped on it."""
    rx = console.receiver
    alarm_id = _match_int(request, "id")
    a = None if alarm_id is None else await rx.store.get_alarm(alarm_id)
    if a is None:
        return error_response(404, "no such alarm")
    store = rx.store
    incident = None
    if a.incident_id is not None:
        members = await store.incident_members(a.incident_id)
        incident = {"id": a.incident_id, "members": [_member(rx, m) for m in members],
                    "priority": min((m.priority for m in members), default=a.priority)}
    hold = None
    held = [h for h in await store.list_zone_holds(live=False, account=a.account)
            if h.alarm_id == a.id]
    if held:
        n, first, last, evs = await store.attached_events(a.id, ATTACHED_SHOWN)
        hold = dict(hold_view(held[0]), count=n, first=first, last=last,
                    events=[e.to_json() for e in evs])
    restore = None
    if a.restore_event_id is not None:
        ev = await store.list_events(after_id=a.restore_event_id - 1, limit=1)
        restore = ev[0].to_json() if ev and ev[0].id == a.restore_event_id else None
    return json_response({"incident": incident, "hold": hold, "restore": restore,
                          "resolved_by_restore": a.disposition == "restored"})


# -- reports -----------------------------------------------------------------------------------


async def _report(request, console) -> reports.Report:
    now = time.time()
    q = request.query
    start = parse_time(q.get("from"), "from") or now - 7 * 86400
    end = parse_time(q.get("to"), "to") or now
    if not end > start:
        raise web.HTTPBadRequest(text='{"error": "to must be after from"}',
                                 content_type="application/json")
    if end - start > MAX_REPORT_S:
        raise web.HTTPBadRequest(text='{"error": "a report covers a year at most"}',
                                 content_type="application/json")
    flt = reports.Filter(q.get("region") or None, q.get("account") or None,
                         q.get("operator") or None)
    return await build_report(console.receiver.store, start, end, flt)


@api(auth.REPORT_VIEW)
async def report_json(request, console, s):
    r = await _report(request, console)
    return json_response({"start": r.start, "end": r.end, "filter": r.filter.words(),
                          "sections": [{"name": x.name, "title": x.title,
                                        "columns": x.columns, "rows": x.rows}
                                       for x in r.sections]})


@api(auth.REPORT_VIEW)
async def report_csv(request, console, s):
    r = await _report(request, console)
    section = request.query.get("section") or None
    if section is not None and section not in reports.SECTIONS:
        return error_response(400, "section: one of %s" % ", ".join(reports.SECTIONS))
    text = reports.section_csv(r.section(section)) if section else reports.report_csv(r)
    name = "guardline-report-%s-%s%s.csv" % (iso_utc(r.start)[:10], iso_utc(r.end)[:10],
                                             "-" + section if section else "")
    await console.users.record(s.user, "report.export", "from=%s to=%s %s"
                               % (iso_utc(r.start), iso_utc(r.end), r.filter.words()),
                               request.remote or "")
    return web.Response(text=text, content_type="text/csv", charset="utf-8", headers={
        "Content-Disposition": 'attachment; filename="%s"' % name})


@api(auth.REPORT_VIEW)
async def report_html(request, console, s):
    r = await _report(request, console)
    return web.Response(text=reports.report_html(r), content_type="text/html",
                        charset="utf-8", headers={
                            # the report's own policy: no script, its style by hash;
                            # framed by the console's reports page only
                            "Content-Security-Policy":
                                reports.content_security_policy() + "; frame-ancestors 'self'",
                            "X-Frame-Options": "SAMEORIGIN",
                            "Content-Disposition": "inline"})


# -- routes --------------------------------------------------------------------------------------


def add_routes(app: web.Application) -> list[tuple[str, str, str | None]]:
    """Add the rules' routes; [(method, path, permission)] as
    receiver.web.api.add_routes gives them (the tests walk them)."""
    from receiver.web.api import route_adder  # noqa: PLC0415

    routes: list = []
    add = route_adder(app, routes)

    add("GET", "/reports", page(auth.REPORT_VIEW, "reports.html"))
    add("GET", "/tests", page(auth.VIEW, "tests.html"))
    add("GET", "/api/sites/{number}/rules", site_rules)
    add("GET", "/api/schedules/{account}", account_schedules)
    add("PUT", "/api/schedules/{account}/{partition}", put_schedule)
    add("POST", "/api/schedules/{account}/{partition}/changes", add_change)
    add("DELETE", "/api/schedules/{account}/{partition}/changes/{id}", cancel_change)
    add("GET", "/api/tests", list_tests)
    add("POST", "/api/tests", place_test)
    add("POST", "/api/tests/{id}/end", end_test)
    add("GET", "/api/holds", list_holds)
    add("POST", "/api/accounts/{account}/zones/{zone}/release", release_zone)
    add("GET", "/api/alarms/{id}/rules", alarm_rules)
    add("GET", "/api/reports/center", report_json)
    add("GET", "/api/reports/center.csv", report_csv)
    add("GET", "/api/reports/center.html", report_html)
    return routes
