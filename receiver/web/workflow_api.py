"""The console's API for the operator's workflow (issue 17): an alarm's
plan, steps, calls and passcodes, claims, resolving with a disposition,
escalations and the supervisor queue, sites' contacts, call lists and
notes, the plans and dispositions in force, and the site view's panel
commands.  docs/console.md ("Working an alarm") is the reference.

Every handler is wrapped by ``receiver.web.api.api`` (session, the
permission table, CSRF and Origin for a write); what a person may do
beyond the route's permission (override open mandatory steps, release
another's alarm, delete another's note) is asked of the same table
inside.  The work itself is ``Receiver.workflow``
(receiver.workflow_service), the one path the CLI takes too.

Answers: 404 for an unknown alarm, site, contact or note; 409 with
``{"error": sentence}`` when the rules refuse (someone else handles the
alarm, a step already done, mandatory steps open); 400 for a body or a
file that cannot be used (the error names the field, or the file, plan and
step).  A passcode is never in an answer, a log line or a live message.
"""

from __future__ import annotations

import functools
import time

from aiohttp import web

from protocol import contactid
from receiver import workflow_db
from receiver.alarms import AlarmStateError
from receiver.web import auth
from receiver.web.api import (api, error_response, json_response, page, read_body,
                              route_adder)
from receiver.workflow import commands as _commands
from receiver.workflow import plans as _plans
from receiver.workflow.claims import Claim
from receiver.workflow.common import MAX_TEXT_LEN, ActionRefused, WorkflowConfigError
from receiver.workflow_service import KINDS, NotFound


def refusals(fn):
    """Map the workflow's errors to their answers (see the module doc)."""
    @functools.wraps(fn)
    async def handler(request, console, s):
        try:
            return await fn(request, console, s)
        except NotFound as e:
            return error_response(404, str(e))
        except (ActionRefused, AlarmStateError) as e:
            return error_response(409, str(e))
        except WorkflowConfigError as e:
            return error_response(400, str(e))
    return handler


def _alarm_id(request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise NotFound("no such alarm") from None


def _text(data: dict, key: str, required: bool = False, limit: int = MAX_TEXT_LEN):
    """A text field of the body (400 when it is not one)."""
    v = data.get(key)
    if v is None or v == "":
        if required:
            raise WorkflowConfigError(key, "is required")
        return None
    if not isinstance(v, str):
        raise WorkflowConfigError(key, "must be text")
    if len(v) > limit:
        raise WorkflowConfigError(key, "has at most %d characters" % limit)
    return v


async def _audit(console, s, request, action: str, detail: str) -> None:
    await console.users.record(s.user, action, detail, request.remote or "")


# -- an alarm ------------------------------------------------------------------------------


@api(auth.VIEW)
@refusals
async def alarm_workflow(request, console, s):
    rx = console.receiver
    view = await rx.workflow.alarm_view(_alarm_id(request), rx.center_names(),
                                        auth.allowed(s.role, auth.ALARM_OVERRIDE))
    return json_response(view)


def _alarm_answer(rx, a) -> dict:
    return {"alarm": dict(a.to_json(), claim_banner=_banner(a))}


def _banner(a) -> str:
    return Claim(a.handler, a.handler_since, a.claim_rev).banner(time.time())


@api(auth.ALARM_ACT, write=True)
@refusals
async def acknowledge(request, console, s):
    alarm_id = _alarm_id(request)
    await read_body(request)
    a = await console.receiver.workflow.acknowledge(alarm_id, s.user)
    await _audit(console, s, request, "alarm.acknowledge", "alarm=%d account=%s"
                 % (alarm_id, a.account))
    return json_response(_alarm_answer(console.receiver, a))


@api(auth.ALARM_ACT, write=True)
@refusals
async def resolve(request, console, s):
    alarm_id = _alarm_id(request)
    data = await read_body(request)
    disposition = _text(data, "disposition", limit=40)
    if disposition is None:
        raise WorkflowConfigError("disposition", "resolving needs one (how did the alarm "
                                  "end? GET /api/dispositions lists them)")
    note = _text(data, "note")
    override = _text(data, "override_reason")
    a = await console.receiver.workflow.resolve(
        alarm_id, s.user, disposition, note, override,
        auth.allowed(s.role, auth.ALARM_OVERRIDE))
    await _audit(console, s, request, "alarm.resolve", "alarm=%d account=%s disposition=%s%s"
                 % (alarm_id, a.account, disposition, " override" if override else ""))
    return json_response(_alarm_answer(console.receiver, a))


@api(auth.ALARM_ACT, write=True)
@refusals
async def claim(request, console, s):
    alarm_id = _alarm_id(request)
    await read_body(request)
    a = await console.receiver.workflow.claim(alarm_id, s.user)
    return json_response(_alarm_answer(console.receiver, a))


@api(auth.ALARM_ACT, write=True)
@refusals
async def take_over(request, console, s):
    alarm_id = _alarm_id(request)
    data = await read_body(request)
    seen = data.get("seen_rev")
    if not isinstance(seen, int) or isinstance(seen, bool):
        raise WorkflowConfigError("seen_rev", "the claim revision you saw (a number) is "
                                  "required: a take-over names whom it takes over from")
    a = await console.receiver.workflow.take_over(alarm_id, s.user, seen)
    return json_response(_alarm_answer(console.receiver, a))


@api(auth.ALARM_ACT, write=True)
@refusals
async def release(request, console, s):
    alarm_id = _alarm_id(request)
    await read_body(request)
    a = await console.receiver.workflow.release(alarm_id, s.user,
                                                auth.allowed(s.role, auth.ALARM_OVERRIDE))
    return json_response(_alarm_answer(console.receiver, a))


@api(auth.ALARM_ACT, write=True)
@refusals
async def step(request, console, s):
    alarm_id = _alarm_id(request)
    try:
        position = int(request.match_info["position"])
    except ValueError:
        raise NotFound("no such step") from None
    data = await read_body(request)
    action = _text(data, "action", required=True, limit=20)
    a, st = await console.receiver.workflow.step(alarm_id, position, action, s.user,
                                                 _text(data, "reason"))
    return json_response(dict(_alarm_answer(console.receiver, a), step=dict(st.__dict__)))


@api(auth.ALARM_ACT, write=True)
@refusals
async def call(request, console, s):
    alarm_id = _alarm_id(request)
    data = await read_body(request)
    c = await console.receiver.workflow.call(
        alarm_id, _text(data, "contact", required=True, limit=80),
        _text(data, "phone", required=True, limit=40),
        _text(data, "outcome", required=True, limit=20), s.user)
    return json_response({"call": dict(c.__dict__)})


@api(auth.ALARM_ACT, write=True)
@refusals
async def passcode(request, console, s):
    alarm_id = _alarm_id(request)
    data = await read_body(request)
    given = data.get("passcode")
    if not isinstance(given, str) or not given:
        raise WorkflowConfigError("passcode", "type what the contact said")
    r = await console.receiver.workflow.passcode(
        alarm_id, _text(data, "contact", required=True, limit=80),
        _text(data, "phone", required=True, limit=40), given, s.user)
    return json_response({"outcome": r.outcome, "sentence": r.sentence,
                    "step": None if r.step is None else dict(r.step.__dict__),
                    "duress_alarm_id": r.duress_alarm_id})


# -- escalations ---------------------------------------------------------------------------


def _listed(rx, alarms) -> list[dict]:
    out = []
    for a in alarms:
        acct = rx.account(a.account)
        out.append(dict(a.to_json(), site_name=acct.site_name if acct else "",
                        claim_banner=_banner(a)))
    return out


@api(auth.VIEW)
async def escalations(request, console, s):
    """Alarms still pending past their acknowledgement deadline (the alert
    every console shows until someone acknowledges)."""
    rx = console.receiver
    return json_response({"alarms": _listed(rx, await rx.workflow.escalated())})


@api(auth.ALARM_OVERRIDE)
async def supervisor_queue(request, console, s):
    rx = console.receiver
    return json_response({"alarms": _listed(rx, await rx.workflow.supervisor_queue()),
                    "now": time.time()})


# -- plans and dispositions --------------------------------------------------------------------


@api(auth.VIEW)
async def dispositions(request, console, s):
    ds = console.receiver.workflow.dispositions
    return json_response({"dispositions": [d.to_json() for d in ds.items], "auto": ds.auto,
                    "file": console.receiver.workflow.file_json()["dispositions"]})


@api(auth.VIEW)
async def plans(request, console, s):
    wf = console.receiver.workflow
    ps = wf.planset
    return json_response({
        "file": wf.file_json()["plans"], "hash": ps.hash, "label": ps.label,
        "fallback": ps.fallback, "center": ps.center, "regions": ps.regions,
        "sites": ps.sites, "escalation": ps.escalation.to_json(), "unused": ps.unused(),
        "plans": [{"name": p.name, "title": p.title, "version": p.version_label,
                   "hash": p.hash, "steps": [st.to_json() for st in p.steps]}
                  for p in ps.plans.values()],
        "may_edit": auth.allowed(s.role, auth.WORKFLOW_MANAGE)})


@api(auth.VIEW)
async def plan_for(request, console, s):
    """Which plan an alarm of ``account`` with ``code`` (or ``class``) would
    get now, and why."""
    rx = console.receiver
    account = request.query.get("account", "")
    a = rx.account(account)
    if a is None:
        return error_response(404, "no account %s" % account)
    what = request.query.get("code", "")
    if what.isdigit() and int(what) <= 999:
        code = int(what)
        cls = contactid.event_class(code)
    elif what in contactid.CLASSES:
        code, cls = -1, what
    else:
        return error_response(400, "code must be a Contact ID code (0..999) or an alarm class")
    res = _plans.resolve(rx.workflow.planset, account, a.region, cls, code)
    return json_response({"plan": res.plan.name, "version": res.plan.version_label,
                    "sentence": res.sentence()})


def _kind(request) -> str:
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise NotFound("no workflow file %s (plans or dispositions)" % kind)
    return kind


@api(auth.WORKFLOW_MANAGE)
@refusals
async def workflow_file(request, console, s):
    """The text in force (for the editor) and the versions loaded."""
    rx = console.receiver
    kind = _kind(request)
    history = await rx.store.read(lambda tx: workflow_db.file_history(tx, kind))
    active = rx.workflow.files.get(kind)
    return json_response({"kind": kind, "text": active.text if active else "",
                    "active": active.to_json() if active else None,
                    "history": [f.to_json() for f in history]})


@api(auth.WORKFLOW_MANAGE, write=True)
@refusals
async def load_workflow_file(request, console, s):
    """{"text", "check": true|false}: check (and unless ``check``, load) a
    plans or dispositions file; 400 names the file, plan and step."""
    rx = console.receiver
    kind = _kind(request)
    data = await read_body(request)
    text = data.get("text")
    if not isinstance(text, str):
        raise WorkflowConfigError("text", "the file's text is required")
    source = "console (%s)" % s.user
    if data.get("check"):
        _, digest, label = rx.workflow.parse(kind, text, source)
        return json_response({"ok": True, "hash": digest, "label": label})
    f, changed = await rx.workflow.load_file(kind, text, source, s.user)
    await _audit(console, s, request, "workflow.load", "kind=%s hash=%s changed=%s"
                 % (kind, f.hash[:12], "yes" if changed else "no"))
    return json_response({"ok": True, "hash": f.hash, "label": f.label, "changed": changed})


# -- sites ------------------------------------------------------------------------------------


def _number(request) -> str:
    return request.match_info["number"]


@api(auth.VIEW)
@refusals
async def site_workflow(request, console, s):
    """A site's contacts, call lists and notes (``?all=1``: deleted and
    expired notes too, with who wrote and deleted them)."""
    rx = console.receiver
    number = _number(request)
    view = await rx.workflow.site_view(number, request.query.get("all") == "1")
    view["changes"] = await rx.workflow.site_changes(number)
    view["may_manage"] = auth.allowed(s.role, auth.SITES_MANAGE)
    return json_response(view)


@api(auth.SITES_MANAGE, write=True)
@refusals
async def put_contact(request, console, s):
    data = await read_body(request)
    new = await console.receiver.workflow.put_contact(_number(request), data, s.user)
    return json_response({"ok": True, "new": new}, status=201 if new else 200)


@api(auth.SITES_MANAGE, write=True)
@refusals
async def delete_contact(request, console, s):
    await console.receiver.workflow.delete_contact(_number(request), request.match_info["name"],
                                                   s.user)
    return json_response({"ok": True})


@api(auth.SITES_MANAGE, write=True)
@refusals
async def set_passcode(request, console, s):
    """{"passcode", "duress"}: hashed in a worker thread; the answer and the
    audit say only that it was set."""
    data = await read_body(request)
    code = data.get("passcode")
    if not isinstance(code, str) or not code:
        raise WorkflowConfigError("passcode", "is required")
    duress = data.get("duress")
    if duress is not None and not isinstance(duress, str):
        raise WorkflowConfigError("duress", "must be text")
    await console.receiver.workflow.set_passcode(_number(request), request.match_info["name"],
                                                 code, duress or None, s.user)
    return json_response({"ok": True})


@api(auth.SITES_MANAGE, write=True)
@refusals
async def call_orders(request, console, s):
    data = await read_body(request)
    await console.receiver.workflow.set_call_orders(_number(request), data, s.user)
    return json_response({"ok": True})


@api(auth.SITES_MANAGE, write=True)
@refusals
async def time_zone(request, console, s):
    data = await read_body(request)
    await console.receiver.workflow.set_time_zone(_number(request), data.get("time_zone"),
                                                  s.user)
    return json_response({"ok": True})


@api(auth.ALARM_ACT, write=True)
@refusals
async def add_note(request, console, s):
    """{"text", "expires_at", "starts_at"} (times: Unix seconds, or ISO 8601
    in the site's time zone)."""
    data = await read_body(request)
    note_id = await console.receiver.workflow.add_note(
        _number(request), data.get("text"), s.user, data.get("expires_at"),
        data.get("starts_at"))
    return json_response({"id": note_id}, status=201)


@api(auth.ALARM_ACT, write=True)
@refusals
async def delete_note(request, console, s):
    try:
        note_id = int(request.match_info["id"])
    except ValueError:
        raise NotFound("no such note") from None
    await console.receiver.workflow.delete_note(_number(request), note_id, s.user,
                                                auth.allowed(s.role, auth.ALARM_OVERRIDE))
    return json_response({"ok": True})


@api(auth.PANEL_COMMAND)
async def site_commands(request, console, s):
    """The site view's panel commands (supervisors and administrators
    only: an operator's page never gets this section): each partition,
    and the confirmation each command asks, in words."""
    rx = console.receiver
    number = _number(request)
    a = rx.account(number)
    if a is None:
        return error_response(404, "no account %s" % number)
    parts = [{"partition": p, "name": a.partitions.get(str(p), ""),
              "confirm": {c: _commands.confirmation(c, a.site_name, a.number, p, a.partitions)
                          for c in _commands.CONSOLE_COMMANDS}}
             for p in _commands.position_ids(a.partitions) or [1]]
    return json_response({"account": number, "native": a.protocol == "native",
                    "connected": rx.connections.stream_for(number) is not None,
                    "commands": list(_commands.CONSOLE_COMMANDS), "partitions": parts})


# -- routes ------------------------------------------------------------------------------------


def add_routes(app: web.Application) -> list[tuple[str, str, str | None]]:
    """Add the workflow's routes; [(method, path, permission)] as
    receiver.web.api.add_routes lists its own."""
    routes: list = []
    add = route_adder(app, routes)
    add("GET", "/plans", page(auth.VIEW, "plans.html"))
    add("GET", "/supervisor", page(auth.ALARM_OVERRIDE, "supervisor.html"))
    add("GET", "/api/alarms/{id}/workflow", alarm_workflow)
    add("POST", "/api/alarms/{id}/acknowledge", acknowledge)
    add("POST", "/api/alarms/{id}/resolve", resolve)
    add("POST", "/api/alarms/{id}/claim", claim)
    add("POST", "/api/alarms/{id}/take-over", take_over)
    add("POST", "/api/alarms/{id}/release", release)
    add("POST", "/api/alarms/{id}/steps/{position}", step)
    add("POST", "/api/alarms/{id}/calls", call)
    add("POST", "/api/alarms/{id}/passcode", passcode)
    add("GET", "/api/escalations", escalations)
    add("GET", "/api/supervisor-queue", supervisor_queue)
    add("GET", "/api/dispositions", dispositions)
    add("GET", "/api/plans", plans)
    add("GET", "/api/plans/resolve", plan_for)
    add("GET", "/api/workflow-files/{kind}", workflow_file)
    add("POST", "/api/workflow-files/{kind}", load_workflow_file)
    add("GET", "/api/sites/{number}/workflow", site_workflow)
    add("POST", "/api/sites/{number}/contacts", put_contact)
    add("DELETE", "/api/sites/{number}/contacts/{name}", delete_contact)
    add("POST", "/api/sites/{number}/contacts/{name}/passcode", set_passcode)
    add("POST", "/api/sites/{number}/call-orders", call_orders)
    add("POST", "/api/sites/{number}/time-zone", time_zone)
    add("POST", "/api/sites/{number}/notes", add_note)
    add("DELETE", "/api/sites/{number}/notes/{id}", delete_note)
    add("GET", "/api/sites/{number}/commands", site_commands)
    return routes
