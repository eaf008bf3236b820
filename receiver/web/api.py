"""The console's HTTP handlers: pages, the JSON API under ``/api/`` and the
live stream (server-sent events).  docs/console.md is the reference.

Every handler is wrapped by :func:`api` or :func:`page`, which look up the
session, check the role against ``auth.PERMISSIONS`` and, for a request
that changes state, the CSRF token and the Origin; a handler never runs
for a request that fails those checks.  ``ROUTES`` lists every route with
its permission, and the tests walk it to prove that nothing is reachable
without a session.

Reads go through the receiver's store (its reader thread, never the
event loop) and the receiver's in-memory state (accounts, supervision,
connections); operator actions go through the Receiver's alarm methods,
which write the alarm audit trail.  Nothing here writes the receiver's
tables directly.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import logging
import os
import time
import weakref
from collections import deque
from urllib.parse import quote, urlsplit

from aiohttp import web

from protocol import contactid
from receiver import alarms as _alarms
from receiver.commands import CommandError
from receiver.messages import ConsoleMessage, Hello, Logout, Resync, SecurityRejected
from receiver.outputs import target_of
from receiver.records import Alarm, Event
from receiver.store import FEED_MAX_PAGE, FEED_PAGE
from receiver.supervision import CODE_COMM_TROUBLE
from receiver.times import iso_utc, parse_instant
from receiver.web import auth, derive
from receiver.web.state import Console
from receiver.web.users import UserError
from receiver.workflow.commands import reply_words
from receiver.workflow_service import trail

_LOGGER = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
CONSOLE = web.AppKey("guardline_console", Console)

COOKIE = "guardline_session"
# With Secure cookies the __Host- prefix also pins the cookie to this host
# and path / (RFC 6265bis 4.1.3.2).
COOKIE_SECURE = "__Host-guardline_session"
CSRF_HEADER = "X-CSRF-Token"

# Largest JSON body the console accepts (a user form or a resolve note).
MAX_BODY = 16 * 1024
# A resolve note: a few sentences of what was done.
MAX_NOTE = 2000
# Events fetched from the store per page while scanning a range.
SCAN_PAGE = 2000
# Events a history search or site view reads at most (~0.5 s of SQLite
# reads); past this the answer says "scan_limited" and asks for a
# narrower range.
MAX_SCAN = 200_000
# Rows a history search returns at most; CSV export rows at most.
MAX_RESULTS = 5000
MAX_EXPORT = 100_000
# Site view: recent events listed, and how far back states are derived.
SITE_RECENT = 50
SITE_WINDOW_S = 30 * 86400
# Open alarms loaded for the queue, overview and dispatch views.
MAX_OPEN_ALARMS = 10_000
# Resolved alarms shown under the queue.
RECENT_RESOLVED = 20
# Outbox rows per output read for the dispatch view.
OUTBOX_ROWS = 1000
# A comment line on an idle stream: keeps proxies from closing it and
# finds dead clients (a write to a closed socket fails).
KEEPALIVE_S = 15.0
# Panels listed per page of the overview.
PANELS_PAGE = 500


# -- helpers ---------------------------------------------------------------------------


def _error(status: int, message: str, **extra) -> web.Response:
    return web.json_response(dict(extra, error=message), status=status)


def _json(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status,
                             dumps=lambda o: json.dumps(o, separators=(",", ":")))


def _cookie_name(console) -> str:
    return COOKIE_SECURE if console.secure_cookie else COOKIE


async def _session(request) -> auth.Session | None:
    console = request.app[CONSOLE]
    return await console.session_store.get(request.cookies.get(_cookie_name(console)),
                                           time.time())


def _same_origin(request) -> bool:
    """A state-changing request must not come from another site.  The CSRF
    token is the real check; this is the second lock (OWASP CSRF cheat
    sheet: verify origin with standard headers)."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser's cross-site request (those carry Origin)
    return urlsplit(origin).netloc == request.host


async def _body(request) -> dict:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY, request.content_length)
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY, len(raw))
    if not raw:
        return {}
    if request.content_type != "application/json":
        # A cross-site HTML form can post text/plain that parses as JSON;
        # application/json from another origin needs a CORS preflight,
        # which this server never grants.
        raise web.HTTPUnsupportedMediaType(text=json.dumps({
            "error": "send the body as application/json"}), content_type="application/json")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body is not JSON"}),
                                 content_type="application/json") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}),
                                 content_type="application/json")
    return data


# What the console's other route modules (receiver.web.rules_api,
# receiver.web.workflow_api) answer and read with: the same JSON, errors
# and bounded bodies as here.
json_response, error_response, read_body = _json, _error, _body


# handler -> the permission it needs (ROUTES; the tests walk it)
_PERMISSION: dict = {}


def permission_of(handler) -> str | None:
    """The permission a wrapped handler or page needs (None: public)."""
    return _PERMISSION.get(handler)


def route_adder(app: web.Application, routes: list):
    """``add(method, path, handler)``: register a route on ``app`` and note
    ``(method, path, permission)`` in ``routes`` (each route module's
    add_routes answers with them; the tests walk them)."""
    def add(method, path, handler):
        app.router.add_route(method, path, handler)
        routes.append((method, path, permission_of(handler)))
    return add


def api(permission: str, write: bool = False):
    """Wrap a JSON handler ``fn(request, console, session)``: 401 without a
    session, 403 without the permission, 403 for a write without a valid
    CSRF token or from another origin."""
    def deco(fn):
        @functools.wraps(fn)
        async def handler(request):
            console = request.app[CONSOLE]
            s = await _session(request)
            if s is None:
                return _error(401, "login required")
            if not auth.allowed(s.role, permission):
                return _error(403, "your role (%s) may not do this" % s.role)
            if write:
                if not _same_origin(request):
                    return _error(403, "cross-origin request refused")
                if not s.check_csrf(request.headers.get(CSRF_HEADER)):
                    return _error(403, "missing or wrong CSRF token")
            return await fn(request, console, s)
        _PERMISSION[handler] = permission
        return handler
    return deco


def page(permission: str, filename: str):
    """A console page: the static HTML file, for a logged-in user with the
    permission; others go to /login (no session) or get 403."""
    path = os.path.join(STATIC_DIR, filename)

    async def handler(request):
        s = await _session(request)
        if s is None:
            nxt = request.rel_url.path_qs
            raise web.HTTPFound("/login?next=" + quote(nxt, safe="/"))
        if not auth.allowed(s.role, permission):
            return web.Response(status=403, text="Your role (%s) may not open this page."
                                % s.role)
        return web.FileResponse(path, headers={"Cache-Control": "no-store"})
    _PERMISSION[handler] = permission
    return handler


def _num(request, name: str, default: int, lo: int | None = None,
         hi: int | None = None) -> int:
    """The whole number in query parameter ``name`` (``default`` when not
    given); 400 for one that is not a number or out of [lo, hi]."""
    x = _optional_num(request, name, lo, hi)
    return default if x is None else x


def _optional_num(request, name: str, lo: int | None = None,
                  hi: int | None = None) -> int | None:
    v = request.query.get(name, "")
    if v == "":
        return None
    try:
        x = int(v)
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": "%s must be a number" % name}),
                                 content_type="application/json") from None
    if lo is not None and x < lo or hi is not None and x > hi:
        raise web.HTTPBadRequest(text=json.dumps({"error": "%s out of range" % name}),
                                 content_type="application/json")
    return x


def parse_time(v: str | None, name: str) -> float | None:
    """Unix seconds, or ISO 8601 (a time without zone is UTC)."""
    if v is None or v == "":
        return None
    t = parse_instant(v)
    if t is None:
        raise web.HTTPBadRequest(text=json.dumps({
            "error": "%s: give Unix seconds or ISO 8601" % name}),
            content_type="application/json")
    return t


def _iso(t) -> str:
    return "" if t is None else iso_utc(t)


def _qualifier_letter(q: int) -> str:
    return {1: "E", 3: "R", 6: "P"}.get(q, "?")


def connected_accounts(rx) -> dict[str, list[dict]]:
    """Accounts with an authenticated stream now (TCP, serial), from the
    receiver's connection registry.  UDP panels have no connection."""
    return rx.connections.listing()


# Whether a path was heard: since this receiver started ("yes"), not since
# it started but the account reported before ("not since start"), or never.
HEARD_YES, HEARD_NOT_SINCE_START, HEARD_NEVER = "yes", "not since start", "never"

# Accounts known to have reported to this store at some time, per receiver
# (only ever grows: a report cannot be undone).
_REPORTED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


# Events read per account to find a first report (see reported_before).
REPORT_EVIDENCE_SCAN = 50


def _heard_in(e: Event) -> bool:
    """Does this stored event prove the panel was heard?  Everything but
    the receiver's own path failure (350 new, raised also for a panel never
    heard at all); its restore means the path was heard again."""
    return not (e.source == "supervision" and e.qualifier == 1)


async def reported_before(rx, accounts) -> set[str]:
    """Those of ``accounts`` that have ever reported: a native panel that
    advanced its sequence, or an event in the store that proves a hearing
    (:func:`_heard_in`).  Tells "never heard" from "not heard since the
    receiver started".  One indexed query per account not yet known, then
    remembered (a report cannot be undone)."""
    known = _REPORTED.setdefault(rx, set())
    for a in accounts:
        if a.number in known:
            continue
        if a.highest_seq > 0 or any(_heard_in(e) for e in await rx.store.list_events(
                account=a.number, limit=REPORT_EVIDENCE_SCAN)):
            known.add(a.number)
    return known


def supervision_of(rx, number: str, reported: bool) -> list[dict]:
    """Each supervised path: state, when it was really heard (``last_heard``,
    None if not since the receiver started) and ``heard`` (HEARD_*);
    ``reported``: the account has reported before (:func:`reported_before`)."""
    st = rx.supervisor.status(number)
    prof = rx.supervisor.profile(number)
    out = []
    for p, v in sorted(st.items()):
        heard = (HEARD_YES if v["heard_at"] is not None
                 else HEARD_NOT_SINCE_START if reported else HEARD_NEVER)
        out.append({"path": p, "path_name": contactid.PATH_NAMES.get(p, str(p)),
                    "path_label": contactid.path_label(p), "state": v["state"],
                    "last_heard": v["heard_at"], "heard": heard,
                    "watched_since": None if v["heard_at"] is not None else v["last_heard"],
                    "deadline": v["deadline"],
                    "timeout_s": prof.timeout_s if prof else None})
    return out


def number_fields(acct, code: int, number: int) -> dict:
    """What an event's zone field is (``protocol.contactid.number_kind``:
    zone, user, path, count, none) and in words ("backup path (2)", "zone 3
    (vault door)"); ``zone_name`` only when it is a zone."""
    kind = contactid.number_kind(code)
    zname = (acct.zones.get(str(number), "") if acct is not None and number
             and kind == contactid.ZONE else "")
    return {"number_kind": kind, "number_label": contactid.number_label(code, number, zname),
            "zone_name": zname}


def _alarm_view(rx, a: Alarm) -> dict:
    """An alarm's JSON (records.Alarm.to_json) with what the console shows
    beside it: the site, and the zone and partition in words."""
    acct = rx.account(a.account)
    d = a.to_json()
    d["site_name"] = acct.site_name if acct else ""
    d["site_address"] = acct.site_address if acct else ""
    d["region"] = acct.region if acct else ""
    d.update(number_fields(acct, a.code, a.zone))
    d["partition_name"] = acct.partitions.get(str(a.partition), "") if acct else ""
    d["code_name"] = contactid.name(a.code)
    d["contact_id"] = "E%03d" % a.code
    return d


def _event_view(rx, e: Event) -> dict:
    acct = rx.account(e.account)
    return dict(e.to_json(), site_name=acct.site_name if acct else "",
                **number_fields(acct, e.code, e.zone))


async def _open_alarms(rx) -> list[Alarm]:
    out = []
    for state in (_alarms.PENDING, _alarms.ACKNOWLEDGED):
        out += await rx.store.list_alarms(state, limit=MAX_OPEN_ALARMS)
    out.sort(key=lambda a: (a.priority, a.created_at, a.id))
    return out


async def _pending_outbox(rx) -> tuple[dict, set]:
    """{(alarm_id, output, center): row} of undelivered rows, and the
    outputs whose pending list was cut at OUTBOX_ROWS."""
    rows: dict = {}
    full: set = set()
    for name in rx.router.outputs:
        pend = await rx.store.outbox_pending(name, OUTBOX_ROWS)
        if len(pend) >= OUTBOX_ROWS:
            full.add(name)
        for r in pend:
            rows[(r.alarm_id, name, r.payload.get("center"))] = r
    return rows, full


def _dispatch_of(rx, alarm: Alarm, pending: dict, full: set) -> list[dict]:
    """One row per (level, centre, output) the alarm was routed to, with
    its forwarding state: queued, retrying, delivered (no longer in the
    outbox), or unknown (the outbox listing was cut)."""
    out = []
    for level in ("police_station", "district_command", "municipal_center"):
        cid = alarm.routed_to.get(level)
        if cid is None:
            continue
        c = rx.router.centers.get(cid)
        base = {"level": level, "center": cid, "center_name": c.name if c else cid}
        outs = c.outputs if c else ()
        if not outs:
            out.append(dict(base, output=None, state="no output"))
        for o in outs:
            r = pending.get((alarm.id, o, cid))
            if r is not None:
                out.append(dict(base, output=o, state="retrying" if r.attempts else "queued",
                                attempts=r.attempts, last_error=r.last_error,
                                last_attempt_at=r.last_attempt_at, outbox_id=r.id))
            else:
                out.append(dict(base, output=o,
                                state="unknown" if o in full else "delivered"))
    return out


async def scan_events(store, account=None, since=None, until=None, code=None, cls=None,
                      max_scan=MAX_SCAN):
    """Matching events, oldest first, reading the store a page at a time.
    Yields event dicts; sets nothing.  Stops after ``max_scan`` events read
    (the caller compares its count)."""
    after = 0
    scanned = 0
    while scanned < max_scan:
        batch = await store.list_events(account=account, since=since, after_id=after,
                                        limit=min(SCAN_PAGE, max_scan - scanned))
        if not batch:
            return
        scanned += len(batch)
        after = batch[-1].id
        for e in batch:
            if until is not None and e.received_at > until:
                continue
            if code is not None and e.code != code:
                continue
            if cls is not None and e.event_class != cls:
                continue
            yield e
        if len(batch) < SCAN_PAGE:
            return
    raise _ScanLimited()


class _ScanLimited(Exception):
    pass


def _history_filters(request) -> dict:
    account = request.query.get("account") or None
    cls = request.query.get("class") or None
    if cls is not None and cls not in _alarms.CLASSES:
        raise web.HTTPBadRequest(text=json.dumps({
            "error": "class must be one of %s" % ", ".join(_alarms.CLASSES)}),
            content_type="application/json")
    return {"account": account, "code": _optional_num(request, "code", 0, 999),
            "cls": cls, "since": parse_time(request.query.get("since"), "since"),
            "until": parse_time(request.query.get("until"), "until")}


# -- login / session ---------------------------------------------------------------------


async def _throttled(console, name: str, ip: str, now: float, wait: float) -> None:
    """A refused (throttled) login: counted, and written to the audit log
    and the receiver's log once per address per interval (auth.ThrottledLog),
    never once per request."""
    t = console.throttled_log.note(ip, name, now)
    if t is not None:
        t.row_id = await console.users.record(name, "login.throttled", t.detail(), t.ip)
        _LOGGER.warning("console login throttled user=%s ip=%s retry_after_s=%d", name, t.ip,
                        int(wait) + 1)
    await flush_throttled(console, now)


async def flush_throttled(console, now: float) -> None:
    """Amend the audit rows of throttled-login tallies whose interval ended."""
    for t in console.throttled_log.due(now):
        if t.row_id is None:
            continue  # its row is being written right now; the count stays approximate
        await console.users.amend_audit(t.row_id, t.detail())
        _LOGGER.warning("console logins throttled ip=%s attempts=%d over_s=%d", t.ip,
                        t.attempts, round(t.last_at - t.first_at))


async def login(request):
    console = request.app[CONSOLE]
    if not _same_origin(request):
        return _error(403, "cross-origin request refused")
    data = await _body(request)
    name, password = data.get("name"), data.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not name:
        return _error(400, "give name and password")
    name = name[:64]
    ip = request.remote or ""
    now = time.time()
    wait = console.throttle.retry_after(name, ip, now)
    if wait > 0:
        await _throttled(console, name, ip, now, wait)
        return web.json_response({"error": "too many failed logins; try again later",
                                  "retry_after": int(wait) + 1}, status=429,
                                 headers={"Retry-After": str(int(wait) + 1)})
    user = await console.users.authenticate(name, password)
    if user is None:
        console.throttle.failed(name, ip, time.time())
        await console.users.record(name, "login.failed", "", ip)
        _LOGGER.warning("console login failed user=%s ip=%s", name, ip)
        return _error(401, "wrong name or password")
    console.throttle.succeeded(name)
    old = await _session(request)
    if old is not None:
        await console.session_store.end(old)  # no session fixation: always a fresh token
    token, s = await console.session_store.create(user.name, user.role, time.time(), ip)
    await console.users.record(user.name, "login", "role=%s" % user.role, ip)
    _LOGGER.info("console login user=%s role=%s ip=%s", user.name, user.role, ip)
    # Where the page goes next: a path on this console only (auth.safe_next).
    resp = _json({"name": s.user, "role": s.role, "csrf": s.csrf,
                  "permissions": auth.permissions_of(s.role),
                  "next": auth.safe_next(data.get("next"))})
    resp.set_cookie(_cookie_name(console), token, httponly=True, samesite="Strict",
                    secure=console.secure_cookie, path="/", max_age=auth.SESSION_MAX_AGE_S)
    return resp


@api(auth.VIEW, write=True)
async def logout(request, console, s):
    await console.session_store.end(s)
    close_streams(console, lambda st: st.session.key == s.key)
    await console.users.record(s.user, "logout", "", request.remote or "")
    resp = _json({"ok": True})
    resp.del_cookie(_cookie_name(console), path="/")
    return resp


@api(auth.VIEW)
async def me(request, console, s):
    return _json({"name": s.user, "role": s.role, "csrf": s.csrf,
                  "permissions": auth.permissions_of(s.role),
                  "session_expires_at": s.created_at + console.session_store.max_age_s})


# -- alarms ----------------------------------------------------------------------------------


@api(auth.VIEW)
async def list_alarms(request, console, s):
    rx = console.receiver
    state = request.query.get("state", "open")
    limit = _num(request, "limit", 1000, 1, MAX_OPEN_ALARMS)
    if state == "open":
        rows = (await _open_alarms(rx))[:limit]
    elif state in _alarms.STATES:
        rows = await rx.store.list_alarms(state, limit=limit)
        if state == _alarms.RESOLVED:
            rows.sort(key=lambda a: a.resolved_at or 0, reverse=True)
    else:
        return _error(400, "state must be open, pending, acknowledged or resolved")
    return _json({"alarms": [_alarm_view(rx, a) for a in rows]})


@api(auth.VIEW)
async def get_alarm(request, console, s):
    rx = console.receiver
    try:
        alarm_id = int(request.match_info["id"])
    except ValueError:
        return _error(404, "no such alarm")
    a = await rx.store.get_alarm(alarm_id)
    if a is None:
        return _error(404, "no such alarm")
    audit = trail(await rx.store.alarm_audit(alarm_id), a.routed_to, rx.center_names())
    ev = await rx.store.list_events(after_id=a.event_id - 1, limit=1)
    event = ev[0].to_json() if ev and ev[0].id == a.event_id else None
    pending, full = await _pending_outbox(rx)
    acct = rx.account(a.account)
    return _json({"alarm": _alarm_view(rx, a), "audit": audit, "event": event,
                  "dispatch": _dispatch_of(rx, a, pending, full),
                  "contacts": acct.contacts if acct else []})


# -- remote commands --------------------------------------------------------------------


@api(auth.PANEL_COMMAND, write=True)
async def command_panel(request, console, s):
    """{"command": "status"|"arm-away"|"arm-stay"|"disarm", "partition": N}:
    sent to the panel over its open TCP connection; answers with the
    panel's REPLY.  Audited (console audit log) before it is sent."""
    rx = console.receiver
    number = request.match_info["number"]
    body = await _body(request)
    command = body.get("command")
    partition = body.get("partition", 1)
    if command not in ("status", "arm-away", "arm-stay", "disarm"):
        return _error(400, "command must be status, arm-away, arm-stay or disarm")
    if not isinstance(partition, int) or isinstance(partition, bool):
        return _error(400, "partition must be a number")
    await console.users.record(s.user, "panel.command", "account=%s command=%s partition=%d"
                               % (number, command, partition), request.remote or "")
    try:
        reply = await rx.send_command(number, command, partition, by=s.user)
    except CommandError as e:
        await console.users.record(s.user, "panel.command.failed", "account=%s command=%s "
                                   "partition=%d error=%s" % (number, command, partition, e),
                                   request.remote or "")
        return _error(e.status, str(e))
    acct = rx.account(number)
    # the REPLY in words: partitions by name, troubles by name (receiver.workflow.commands)
    reply["words"] = reply_words(reply, acct.partitions if acct else {}).lines()
    await console.users.record(s.user, "panel.command.reply", "account=%s command=%s "
                               "partition=%d result=%s" % (number, command, partition,
                                                           reply["result_name"]),
                               request.remote or "")
    return _json(reply)


# -- panels and sites ---------------------------------------------------------------------


def _unheard(rx, a) -> bool:
    """A supervised path of ``a`` not heard since this receiver started."""
    return any(v["heard_at"] is None for v in rx.supervisor.status(a.number).values())


def _panel_row(rx, a, connected, open_by_acct, now, reported: set) -> dict:
    sup = supervision_of(rx, a.number, a.number in reported)
    alarms = open_by_acct.get(a.number, [])
    in_alarm = [x for x in alarms if x.event_class not in ("trouble", "tamper")]
    troubles = [x for x in alarms if x.event_class in ("trouble", "tamper")]
    failed = [p["path"] for p in sup if p["state"] == "failed"]
    heard = [p["last_heard"] for p in sup if p["last_heard"] is not None]
    return {"number": a.number, "site_name": a.site_name, "site_address": a.site_address,
            "region": a.region, "protocol": a.protocol, "panel_kind": a.panel_kind,
            "supervised": a.supervised, "supervision": sup,
            "last_heard": max(heard) if heard else None,
            # HEARD_*; None when not supervised (nothing is watched)
            "heard": (HEARD_YES if heard else sup[0]["heard"]) if sup else None,
            "connections": connected.get(a.number, []),
            "connected": a.number in connected,
            "not_heard": bool(failed), "failed_paths": failed,
            "in_alarm": bool(in_alarm), "open_alarms": len(alarms),
            "top_class": min(alarms, key=lambda x: x.priority).event_class
            if alarms else None,
            "trouble": bool(troubles or failed), "open_troubles": len(troubles),
            # each condition once: a failed path usually has its own open 350
            "open_conditions": len(troubles) + sum(
                1 for p in failed if not any(x.code == CODE_COMM_TROUBLE and x.zone == p
                                             for x in troubles))}


_PANEL_FILTERS = {"": None, "all": None, "not_heard": "not_heard", "in_alarm": "in_alarm",
                  "trouble": "trouble"}


@api(auth.VIEW)
async def panels(request, console, s):
    rx = console.receiver
    flt = request.query.get("filter", "")
    if flt not in _PANEL_FILTERS:
        return _error(400, "filter must be not_heard, in_alarm or trouble")
    q = request.query.get("q", "").strip().lower()
    limit = _num(request, "limit", PANELS_PAGE, 1, 10 * PANELS_PAGE)
    offset = _num(request, "offset", 0, 0)
    accounts = await rx.store.list_accounts()
    open_by: dict[str, list] = {}
    for al in await _open_alarms(rx):
        open_by.setdefault(al.account, []).append(al)
    connected = connected_accounts(rx)
    now = time.time()
    reported = await reported_before(rx, [a for a in accounts if _unheard(rx, a)])
    rows = []
    counts = {"all": 0, "not_heard": 0, "in_alarm": 0, "trouble": 0}
    for a in accounts:
        if q and q not in a.number.lower() and q not in a.site_name.lower() \
                and q not in a.site_address.lower() and q not in a.region.lower():
            continue
        r = _panel_row(rx, a, connected, open_by, now, reported)
        counts["all"] += 1
        for k in ("not_heard", "in_alarm", "trouble"):
            counts[k] += r[k]
        key = _PANEL_FILTERS[flt]
        if key is None or r[key]:
            rows.append(r)
    return _json({"panels": rows[offset:offset + limit], "total": len(rows),
                  "counts": counts, "offset": offset, "limit": limit})


@api(auth.VIEW)
async def site(request, console, s):
    rx = console.receiver
    number = request.match_info["number"]
    a = await rx.store.get_account(number)
    if a is None:
        return _error(404, "no such account")
    now = time.time()
    state = derive.SiteState(rx.alarm_policy)
    recent: deque = deque(maxlen=SITE_RECENT)
    limited = False
    try:
        async for e in scan_events(rx.store, account=number, since=now - SITE_WINDOW_S):
            state.feed(e.to_json())
            recent.append(e)
    except _ScanLimited:
        limited = True
    snap = state.snapshot(a.zones, a.partitions)
    open_alarms = [_alarm_view(rx, x) for x in await _open_alarms(rx) if x.account == number]
    info = a.to_dict()
    for k in ("highest_seq", "tx_seq"):
        info.pop(k, None)
    return _json({"account": info, "zones": snap["zones"], "partitions": snap["partitions"],
                  "troubles": snap["troubles"],
                  "recent_events": [_event_view(rx, e) for e in reversed(recent)],
                  "open_alarms": open_alarms,
                  "supervision": supervision_of(rx, number,
                                                number in await reported_before(rx, [a])),
                  "connections": connected_accounts(rx).get(number, []),
                  "window": {"since": now - SITE_WINDOW_S, "events": state.events,
                             "scan_limited": limited}})


# -- history ----------------------------------------------------------------------------------


async def _event_feed(request, rx):
    """``/api/events?after=ID`` (``&account=``, ``&limit=``): the event feed
    (Store.events_after), oldest first; ``next_after`` is what to ask with
    next time.  ``after=latest`` starts at the newest stored event."""
    if any(request.query.get(k) for k in ("code", "class", "since", "until")):
        return _error(400, "after pages the event feed by id: it does not go with code, "
                           "class, since or until")
    account = request.query.get("account") or None
    limit = _num(request, "limit", FEED_PAGE, 1, FEED_MAX_PAGE)
    if request.query["after"] == "latest":
        newest = await rx.store.last_event(account)
        after = newest.id if newest is not None else 0
    else:
        after = _num(request, "after", 0, 0)
    rows = await rx.store.events_after(account, after, limit)
    return _json({"events": [_event_view(rx, e) for e in rows], "after": after,
                  "next_after": rows[-1].id if rows else after,
                  "more": len(rows) == limit})


@api(auth.VIEW)
async def events(request, console, s):
    rx = console.receiver
    if "after" in request.query:
        return await _event_feed(request, rx)
    f = _history_filters(request)
    limit = _num(request, "limit", 500, 1, MAX_RESULTS)
    last: deque = deque(maxlen=limit)
    matched = 0
    limited = False
    try:
        async for e in scan_events(rx.store, **f):
            last.append(e)
            matched += 1
    except _ScanLimited:
        limited = True
    out = [_event_view(rx, e) for e in reversed(last)]
    return _json({"events": out, "matched": matched,
                  "truncated": matched > limit, "scan_limited": limited})


CSV_COLUMNS = ("id", "received_at_utc", "received_at", "event_time_utc", "account", "site_name",
               "protocol", "source", "qualifier", "code", "contact_id", "event_class",
               "priority", "partition", "zone", "number_kind", "zone_name", "description",
               "text", "value",
               "path", "peer", "seq")


def _csv_safe(v):
    """Spreadsheet formula injection: a text cell starting with = + - @ (or
    tab / CR) is prefixed with ' (OWASP 'CSV Injection')."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def _csv_row(rx, e: Event) -> list:
    acct = rx.account(e.account)
    num = number_fields(acct, e.code, e.zone)
    return [_csv_safe(x) for x in (
        e.id, _iso(e.received_at), "%.3f" % e.received_at, _iso(e.event_time),
        e.account, acct.site_name if acct else "", e.protocol, e.source,
        e.qualifier, e.code, "%s%03d" % (_qualifier_letter(e.qualifier), e.code),
        e.event_class, e.priority, e.partition, e.zone, num["number_kind"],
        num["zone_name"], e.description,
        e.text or "", "" if e.value is None else e.value, e.path, e.peer,
        "" if e.seq is None else e.seq)]


@api(auth.VIEW)
async def events_csv(request, console, s):
    rx = console.receiver
    f = _history_filters(request)
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
        "Content-Disposition": 'attachment; filename="guardline-events-%s.csv"'
                               % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())})
    await resp.prepare(request)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")  # RFC 4180 line ends
    w.writerow(CSV_COLUMNS)
    n = 0
    try:
        async for e in scan_events(rx.store, **f):
            w.writerow(_csv_row(rx, e))
            n += 1
            if buf.tell() > 64 * 1024:
                await resp.write(buf.getvalue().encode())
                buf.seek(0)
                buf.truncate()
            if n >= MAX_EXPORT:
                w.writerow(["# export stopped at %d rows: narrow the range" % MAX_EXPORT])
                break
    except _ScanLimited:
        w.writerow(["# scan stopped after %d events: narrow the range" % MAX_SCAN])
    await resp.write(buf.getvalue().encode())
    # Recorded before the end of the body: whoever has the whole file is
    # already in the audit log.
    await console.users.record(s.user, "events.export", "rows=%d filters=%s" % (
        n, json.dumps({k: v for k, v in f.items() if v is not None})), request.remote or "")
    await resp.write_eof()
    return resp


# -- dispatch --------------------------------------------------------------------------------


@api(auth.VIEW)
async def dispatch(request, console, s):
    rx = console.receiver
    pending, full = await _pending_outbox(rx)
    depth = await rx.store.outbox_depth()
    alarms = await _open_alarms(rx)
    recent = await rx.store.list_alarms(_alarms.RESOLVED, limit=RECENT_RESOLVED)
    rows = []
    for a in alarms + recent:
        rows.append(dict(_alarm_view(rx, a), dispatch=_dispatch_of(rx, a, pending, full)))
    outputs = [dict(_output_health(rx, n), type=o.type, target=target_of(o),
                    pending=depth.get(n, 0),
                    delivered_since_start=getattr(rx.forwarders.get(n), "delivered", None))
               for n, o in sorted(rx.router.outputs.items())]
    centers = [{"id": c.id, "level": c.level, "name": c.name, "outputs": list(c.outputs)}
               for c in rx.router.centers.values()]
    return _json({"outputs": outputs, "centers": centers, "alarms": rows,
                  "routes": len(rx.router.routes)})


def _output_health(rx, name: str) -> dict:
    """An output's delivery health from its forwarder (this receiver's)."""
    f = rx.forwarders.get(name)
    if f is None or f.failing_since is None:
        return {"name": name, "failing": False, "failing_since": None, "failures": 0,
                "last_error": None}
    return {"name": name, "failing": True, "failing_since": f.failing_since,
            "failures": f.failures, "last_error": f.last_error}


@api(auth.VIEW)
async def console_warnings(request, console, s):
    """Console-wide warnings: each output that is failing while an open
    alarm is routed to it (through one of its dispatch centres), with the
    failure in words and how many open alarms wait on it."""
    rx = console.receiver
    failing = {n: _output_health(rx, n) for n, f in rx.forwarders.items()
               if f.failing_since is not None}
    out = []
    if failing:
        waiting: dict[str, int] = {}
        for a in await _open_alarms(rx):
            outs = set()
            for cid in a.routed_to.values():
                c = rx.router.centers.get(cid)
                outs.update(o for o in (c.outputs if c else ()) if o in failing)
            for o in outs:
                waiting[o] = waiting.get(o, 0) + 1
        for name, h in sorted(failing.items()):
            n = waiting.get(name, 0)
            if not n:
                continue
            out.append(dict(h, kind="output_failing", open_alarms=n, text=(
                "Output %s: %s. %d open alarm%s routed through it; what is not "
                "delivered is retried until the far end confirms it."
                % (name, h["last_error"] or "no answer", n,
                   " is" if n == 1 else "s are"))))
    return _json({"warnings": out})


# -- supervisors ------------------------------------------------------------------------------


@api(auth.SECURITY_VIEW)
async def security_events(request, console, s):
    rx = console.receiver
    since = parse_time(request.query.get("since"), "since")
    if since is None:
        since = time.time() - 86400
    limit = _num(request, "limit", 500, 1, MAX_RESULTS)
    rows = await rx.store.list_security_events(since=since, limit=MAX_SCAN // 10)
    return _json({"security_events": [r.to_json() for r in reversed(rows)][:limit]})


@api(auth.AUDIT_VIEW)
async def audit(request, console, s):
    since = parse_time(request.query.get("since"), "since")
    limit = _num(request, "limit", 500, 1, MAX_RESULTS)
    return _json({"audit": await console.users.list_audit(since=since, limit=limit)})


# -- users (administrators) ---------------------------------------------------------------------


@api(auth.USERS_MANAGE)
async def list_users(request, console, s):
    users = await console.users.list_users()
    return _json({"users": [u.to_dict() for u in users]})


@api(auth.USERS_MANAGE, write=True)
async def add_user(request, console, s):
    data = await _body(request)
    try:
        u = await console.users.add(data.get("name"), data.get("role"), data.get("password"))
    except UserError as e:
        return _error(400, str(e))
    await console.users.record(s.user, "user.add", "name=%s role=%s" % (u.name, u.role),
                               request.remote or "")
    return _json({"user": u.to_dict()}, status=201)


USER_FIELDS = ("role", "disabled", "password")


@api(auth.USERS_MANAGE, write=True)
async def update_user(request, console, s):
    """Change role, status and/or password: all or nothing (the user store
    checks every field before it writes, and writes the change with its
    audit row in one transaction)."""
    name = request.match_info["name"]
    data = await _body(request)
    unknown = sorted(set(data) - set(USER_FIELDS))
    if unknown:
        return _error(400, "unknown field %s; give role, disabled or password"
                      % ", ".join(unknown))
    change = {k: data[k] for k in USER_FIELDS if data.get(k) is not None}
    if not change:
        return _error(400, "nothing to change: give role, disabled or password")
    try:
        u = await console.users.update(name, **change, actor=s.user, ip=request.remote or "")
    except UserError as e:
        return _error(404 if str(e).startswith("no user") else 400, str(e))
    # The change takes effect now: that user's sessions (and live streams)
    # end and they log in again, with the new role.
    await console.session_store.end_user(name)
    close_streams(console, lambda st: st.session.user == name)
    return _json({"user": u.to_dict()})


@api(auth.USERS_MANAGE, write=True)
async def delete_user(request, console, s):
    name = request.match_info["name"]
    try:
        await console.users.delete(name)
    except UserError as e:
        return _error(404 if str(e).startswith("no user") else 400, str(e))
    await console.session_store.end_user(name)
    close_streams(console, lambda st: st.session.user == name)
    await console.users.record(s.user, "user.delete", "name=%s" % name, request.remote or "")
    return _json({"ok": True})


# -- live stream ----------------------------------------------------------------------------------


class _Stream:
    __slots__ = ("session", "queue", "request")

    def __init__(self, session, queue, request):
        self.session = session
        self.queue = queue
        self.request = request

    @property
    def connected(self) -> bool:
        """False once the browser went away (its connection closed), even
        before the next keepalive write would notice."""
        t = self.request.transport
        return t is not None and not t.is_closing()


def close_streams(console, which) -> None:
    """End the live streams ``which(stream)`` picks: each is told to log out."""
    for st in list(console.streams):
        if which(st):
            q = st.queue
            while q.full():
                q.get_nowait()
            q.put_nowait(Logout())


def _sse(msg: ConsoleMessage) -> bytes:
    """One server-sent event: named by the message's kind, its JSON as data."""
    return ("event: %s\ndata: %s\n\n" % (msg.kind, json.dumps(msg.to_json(),
                                                            separators=(",", ":")))).encode()


def _stream_refusal(console, s) -> str | None:
    """Why a new live stream for session ``s`` is refused (auth.StreamLimits),
    counting only streams whose browser is still connected; streams whose
    browser left are told to end now, not at their next keepalive."""
    gone = [st for st in console.streams if not st.connected]
    if gone:
        close_streams(console, lambda st: st in gone)
    live = [(st.session.user, st.session.key, st.session.role)
            for st in console.streams if st not in gone]
    return console.stream_limits.refusal(live, s.user, s.key, s.role)


@api(auth.VIEW)
async def stream(request, console, s):
    """Server-sent events (receiver.messages): ``alarm``, ``event``,
    ``supervision``, ``output`` (everyone), ``security`` (supervisors),
    ``resync`` (messages were dropped: reload), ``logout`` (the session
    ended).  Refused with 429 past the per-session, per-user and per-role
    limits (auth.StreamLimits): the page then loads its data over the API
    and polls."""
    rx = console.receiver
    why = _stream_refusal(console, s)
    if why is not None:
        return _error(429, why)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    q = rx.subscribe()
    st = _Stream(s, q, request)
    console.streams.add(st)
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 3000\n\n" + _sse(Hello(s.user)))
        await _pump(resp, console, s, q)
    except ConnectionError:
        pass  # the browser went away; a cancellation (shutdown) propagates
    finally:
        rx.unsubscribe(q)
        console.streams.discard(st)
    return resp


async def _pump(resp, console, s, q) -> None:
    """The subscriber queue's messages to the browser, a keepalive when
    there are none, until the session ends."""
    dropped = 0
    while True:
        try:
            msg = await asyncio.wait_for(q.get(), KEEPALIVE_S)
        except asyncio.TimeoutError:
            msg = None
        # An open console page is a console in use: alive() restarts its
        # session's idle clock (the 12 h limit still holds).  On PostgreSQL
        # this also notices a logout or user change made on another
        # receiver (checked once per STREAM_RECHECK_S).
        if isinstance(msg, Logout) or not await console.session_store.alive(s, time.time()):
            await resp.write(_sse(Logout()))
            return
        if q.dropped != dropped:
            dropped = q.dropped
            await resp.write(_sse(Resync(dropped)))
        if msg is None:
            await resp.write(b": keepalive\n\n")
        elif msg.kind != SecurityRejected.kind or auth.allowed(s.role, auth.SECURITY_VIEW):
            await resp.write(_sse(msg))


# -- routes ---------------------------------------------------------------------------------------


async def login_page(request):
    if await _session(request) is not None:
        raise web.HTTPFound("/")
    return web.FileResponse(os.path.join(STATIC_DIR, "login.html"),
                            headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> list[tuple[str, str, str | None]]:
    """Add the console's routes; returns [(method, path, permission)] with
    permission None for the public ones (the login page and call, and
    /static/: stylesheets and scripts, no data)."""
    r = app.router
    routes: list = []
    add = route_adder(app, routes)

    add("GET", "/login", login_page)
    add("POST", "/api/login", login)
    add("GET", "/", page(auth.VIEW, "queue.html"))
    add("GET", "/site/{number}", page(auth.VIEW, "site.html"))
    add("GET", "/panels", page(auth.VIEW, "panels.html"))
    add("GET", "/history", page(auth.VIEW, "history.html"))
    add("GET", "/dispatch", page(auth.VIEW, "dispatch.html"))
    add("GET", "/security", page(auth.SECURITY_VIEW, "security.html"))
    add("GET", "/users", page(auth.USERS_MANAGE, "users.html"))
    add("POST", "/api/logout", logout)
    add("GET", "/api/me", me)
    add("GET", "/api/alarms", list_alarms)
    add("GET", "/api/alarms/{id}", get_alarm)
    add("GET", "/api/panels", panels)
    add("POST", "/api/accounts/{number}/command", command_panel)
    add("GET", "/api/sites/{number}", site)
    add("GET", "/api/events", events)
    add("GET", "/api/events.csv", events_csv)
    add("GET", "/api/dispatch", dispatch)
    add("GET", "/api/warnings", console_warnings)
    add("GET", "/api/security-events", security_events)
    add("GET", "/api/audit", audit)
    add("GET", "/api/users", list_users)
    add("POST", "/api/users", add_user)
    add("POST", "/api/users/{name}", update_user)
    add("DELETE", "/api/users/{name}", delete_user)
    add("GET", "/api/stream", stream)
    r.add_static("/static/", STATIC_DIR, follow_symlinks=False, append_version=False)
    routes.append(("GET", "/static/", None))
    return routes


# -- for the console's other route modules (receiver/web/*_api.py): the same
# helpers, so every route reads bodies, answers and checks roles one way --------

json_response = _json
error_response = _error
read_body = _body
int_param = _num
optional_int_param = _optional_num
