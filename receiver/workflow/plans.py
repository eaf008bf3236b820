"""Action plans: what an operator does for an alarm, step by step, loaded
from a versionable TOML file (examples/plans.toml is the annotated
reference) and resolved per alarm.

A plan is an ordered list of steps.  Step kinds (:data:`STEP_KINDS`):

=================  ====================================================
``call``           call a site's call list in order (``call_order``: the
                   list for an alarm class, or ``default``; left out: the
                   list for the alarm's own class)
``verify_passcode`` verify the caller's passcode (done only by a correct
                   passcode entered on a call: receiver.workflow.contacts)
``dispatch``       dispatch to a routing level the alarm was routed to
                   (``police_station``, ``district_command``,
                   ``municipal_center``: receiver.routing.LEVELS) or to a
                   ``patrol`` (mobile units, issue 19)
``notify``         notify ``supervisors``, the site's ``contacts`` (of one
                   ``role``), or ``other`` people named in ``text``
``wait``           wait ``minutes`` (1-240), then recheck
``instruction``    free instruction ``text``
=================  ====================================================

Every step is ``mandatory`` (the default) or optional: an alarm is not
resolved while a mandatory step is open, unless a supervisor overrides
(receiver.workflow.handling).

**Resolution** (:func:`resolve`): plans are assigned to *selectors*, an
alarm class (``holdup``) or a Contact ID code (``"121"``: duress), at
three scopes.  The first match wins, in this order:

1. the site's (``[sites."1001"]``): its code, then its class;
2. the site's region's (``[regions.central]``): code, then class;
3. center-wide (``[assign]``): code, then class;
4. the center-wide fallback (``[assign] default``, required), so every
   alarm gets a plan.

A code is more specific than a class within a scope, and a nearer scope
wins over a more specific selector further out: a bank branch's hold-up
plan applies to its duress alarms too unless the branch names one for 121.

**Versions.** Each plan's ``hash`` is the SHA-256 of its canonical content
(title, version label, steps), so reformatting the file or editing another
plan leaves it unchanged and two receivers reading the same file agree.
An alarm keeps the plan it was opened with: its steps are copied into the
alarm's own rows with the plan's name and hash (receiver.workflow.steps).
An optional ``version`` per plan is shown beside the hash for people.

Invariants: a parsed :class:`PlanSet` names no unknown plan, every step
has the keys of its kind and no other, and every error names the file,
plan and step ("plans.toml: plan 'holdup-bank', step 3 (dispatch): ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from protocol import contactid
from receiver.routing import LEVELS
from receiver.workflow import audit as _audit
from receiver.workflow import escalation as _escalation
from receiver.workflow.common import (MAX_TEXT_LEN, WorkflowConfigError, boolean, check_keys,
                                      content_hash, integer, label, one_of, read_toml)

CALL = "call"
VERIFY_PASSCODE = "verify_passcode"
DISPATCH = "dispatch"
NOTIFY = "notify"
WAIT = "wait"
INSTRUCTION = "instruction"
STEP_KINDS = (CALL, VERIFY_PASSCODE, DISPATCH, NOTIFY, WAIT, INSTRUCTION)

# Dispatch targets: the routing levels, and a patrol car (a vehicle unit of
# kind "patrol", issue 19; the console proposes the nearest available one).
PATROL = "patrol"
DISPATCH_TARGETS = tuple(LEVELS) + (PATROL,)
NOTIFY_SUPERVISORS = "supervisors"
NOTIFY_CONTACTS = "contacts"
NOTIFY_OTHER = "other"
NOTIFY_TO = (NOTIFY_SUPERVISORS, NOTIFY_CONTACTS, NOTIFY_OTHER)
# A call step's call_order: an alarm class's call list, or the site's default.
DEFAULT_ORDER = "default"

COMMON_KEYS = ("kind", "mandatory", "title", "text")
# KIND_KEYS[kind] -> the keys a step of that kind may have besides COMMON_KEYS.
KIND_KEYS = {
    CALL: ("call_order",),
    VERIFY_PASSCODE: (),
    DISPATCH: ("target",),
    NOTIFY: ("to", "role"),
    WAIT: ("minutes",),
    INSTRUCTION: (),
}
# A procedure longer than this does not fit on the operator's screen and is
# not followed under stress; split it (a wait step, a supervisor's plan).
MAX_STEPS = 30
# A wait longer than 4 hours is a follow-up for the next shift, not a step.
MAX_WAIT_MIN = 240
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FALLBACK = "default"
_CODE_RE = re.compile(r"^[0-9]{1,3}$")  # a Contact ID code as a selector: "121"

_PLAN_KEYS = ("title", "version", "steps")
_TOP_KEYS = ("version", "plans", "assign", "regions", "sites", "escalation")


@dataclass(frozen=True)
class StepDef:
    """One step of a plan as written in the file.  Only the fields of its
    kind are set (KIND_KEYS); the others keep their empty defaults."""

    kind: str
    mandatory: bool = True
    title: str = ""  # "" = the kind's own words (receiver.workflow.steps.title_of)
    text: str = ""  # what the operator reads under the title
    call_order: str = ""  # call: a class name or "default"; "" = the alarm's class
    target: str = ""  # dispatch: a routing level or "patrol"
    to: str = ""  # notify: supervisors | contacts | other
    role: str = ""  # notify to=contacts: only the contacts with this role
    minutes: int = 0  # wait

    def to_json(self) -> dict:
        """The step's own keys (what the file says, defaults filled in), in
        field order.  Every alarm opened copies its plan's steps: no
        dataclasses.asdict (a deep copy) on that path."""
        keep = _STEP_KEYS[self.kind]
        return {k: getattr(self, k) for k in _STEP_FIELDS if k in keep}

    @classmethod
    def from_json(cls, d: dict) -> "StepDef":
        return cls(**d)


_STEP_FIELDS = tuple(f.name for f in fields(StepDef))
_STEP_KEYS = {kind: frozenset(COMMON_KEYS) | frozenset(keys) for kind, keys in KIND_KEYS.items()}


@dataclass(frozen=True)
class Plan:
    name: str
    title: str
    steps: tuple
    version: str = ""  # the file's optional label ("3", "2025-06 review")
    hash: str = ""  # SHA-256 of the content (content_hash of to_json without it)

    def content(self) -> dict:
        return {"title": self.title, "version": self.version,
                "steps": [s.to_json() for s in self.steps]}

    @property
    def version_label(self) -> str:
        """'v3, 1a2b3c4d5e6f' or '1a2b3c4d5e6f': what an operator reads."""
        short = self.hash[:12]
        return "v%s, %s" % (self.version, short) if self.version else short


@dataclass(frozen=True)
class Resolution:
    """Which plan an alarm gets, and why (words for the alarm's audit)."""

    plan: Plan
    scope: str  # "site" | "region" | "center"
    scope_key: str  # the account, the region, or ""
    selector: str  # a class, a code ("121") or "default"

    def sentence(self) -> str:
        """"Plan 'holdup-bank' (v3, 1a2b3c4d5e6f), the site's plan for
        hold-up alarms." """
        return _audit.plan_sentence(self.plan.name, self.plan.version_label, self.scope,
                                    self.scope_key, self.selector)

    def audit(self, at: float) -> _audit.AuditRecord:
        """The alarm's first workflow audit row: which plan, and why."""
        return _audit.AuditRecord(None, at, _audit.RECEIVER, _audit.PLAN, {
            "plan": self.plan.name, "plan_hash": self.plan.hash,
            "version_label": self.plan.version_label, "scope": self.scope,
            "scope_key": self.scope_key, "selector": self.selector})


@dataclass(frozen=True)
class PlanSet:
    """A parsed plans file: the plans, who gets which, the escalation
    timers, and the file's own label and hash."""

    plans: dict
    center: dict  # selector -> plan name
    regions: dict  # region -> {selector -> plan name}
    sites: dict  # account -> {selector -> plan name}
    fallback: str
    escalation: _escalation.EscalationPolicy
    label: str = ""
    source: str = ""
    hash: str = ""
    assigned: frozenset = field(default=frozenset(), compare=False)

    def unused(self) -> list[str]:
        """Plans no selector names (worth a warning, not an error)."""
        return sorted(set(self.plans) - self.assigned)


def resolve(ps: PlanSet, account: str, region: str, event_class: str,
            code: int) -> Resolution:
    """The plan for an alarm (order in the module docstring)."""
    scopes = []
    if account in ps.sites:
        scopes.append(("site", account, ps.sites[account]))
    if region in ps.regions:
        scopes.append(("region", region, ps.regions[region]))
    scopes.append(("center", "", ps.center))
    for scope, key, table in scopes:
        for sel in (str(code), event_class):
            name = table.get(sel)
            if name is not None:
                return Resolution(ps.plans[name], scope, key, sel)
    return Resolution(ps.plans[ps.fallback], "center", "", FALLBACK)


# -- loading ------------------------------------------------------------------------------

# What a receiver without a plans file uses: every alarm gets one plan that
# asks the operator to follow the centre's own procedures and offers the
# site's call list, and the built-in escalation timers.
BUILTIN = {
    "version": "built in",
    "plans": {"builtin": {"title": "Handle the alarm", "steps": [
        {"kind": INSTRUCTION, "text": "Read the alarm and the site's notes; handle it as the "
                                      "centre's procedures say."},
        {"kind": CALL, "call_order": DEFAULT_ORDER, "mandatory": False}]}},
    "assign": {FALLBACK: "builtin"},
}


def builtin() -> PlanSet:
    """The plan set of a receiver with no plans file."""
    return parse(BUILTIN, "built-in plans")



def load(path: str) -> PlanSet:
    """Read and check a plans file; errors name the file, plan and step."""
    return parse(read_toml(path, "plans file"), source=path)


def _step_where(where: str, i: int, kind) -> str:
    return "%s, step %d%s" % (where, i + 1, " (%s)" % kind if isinstance(kind, str) else "")


def _parse_step(s, where: str) -> StepDef:
    if not isinstance(s, dict):
        raise WorkflowConfigError(where, "must be a table")
    kind = one_of(s.get("kind"), STEP_KINDS, where + ": kind")
    check_keys(s, COMMON_KEYS + KIND_KEYS[kind], where)
    kw: dict = {"kind": kind}
    if "mandatory" in s:
        kw["mandatory"] = boolean(s["mandatory"], where + ": mandatory")
    if "title" in s:
        kw["title"] = label(s["title"], where + ": title")
    if "text" in s:
        kw["text"] = label(s["text"], where + ": text", MAX_TEXT_LEN)
    if kind == CALL and "call_order" in s:
        kw["call_order"] = one_of(s["call_order"], contactid.CLASSES + (DEFAULT_ORDER,),
                                  where + ": call_order")
    elif kind == DISPATCH:
        if "target" not in s:
            raise WorkflowConfigError(where, "a dispatch step needs a target (%s)"
                                      % ", ".join(DISPATCH_TARGETS))
        kw["target"] = one_of(s["target"], DISPATCH_TARGETS, where + ": target")
    elif kind == NOTIFY:
        if "to" not in s:
            raise WorkflowConfigError(where, "a notify step needs to (%s)" % ", ".join(NOTIFY_TO))
        kw["to"] = one_of(s["to"], NOTIFY_TO, where + ": to")
        if "role" in s:
            if kw["to"] != NOTIFY_CONTACTS:
                raise WorkflowConfigError(where, "role is for to = \"contacts\" only")
            kw["role"] = label(s["role"], where + ": role")
        if kw["to"] == NOTIFY_OTHER and not kw.get("text"):
            raise WorkflowConfigError(where, "to = \"other\" needs a text naming whom to notify")
    elif kind == WAIT:
        if "minutes" not in s:
            raise WorkflowConfigError(where, "a wait step needs minutes (1-%d)" % MAX_WAIT_MIN)
        kw["minutes"] = integer(s["minutes"], where + ": minutes", 1, MAX_WAIT_MIN)
    elif kind == INSTRUCTION and not kw.get("text"):
        raise WorkflowConfigError(where, "an instruction step needs a text")
    return StepDef(**kw)


def _parse_plan(name: str, p, where: str) -> Plan:
    if not NAME_RE.match(name):
        raise WorkflowConfigError(where, "a plan name is 1-64 letters, digits and _ . - "
                                  "(starting with a letter or digit)")
    check_keys(p, _PLAN_KEYS, where)
    title = label(p.get("title"), where + ": title")
    version = _version(p.get("version", ""), where + ": version")
    steps = p.get("steps")
    if not isinstance(steps, list) or not steps:
        raise WorkflowConfigError(where, "needs steps (a non-empty array of tables, "
                                  "[[plans.%s.steps]])" % name)
    if len(steps) > MAX_STEPS:
        raise WorkflowConfigError(where, "has %d steps; at most %d" % (len(steps), MAX_STEPS))
    defs = tuple(_parse_step(s, _step_where(where, i, s.get("kind") if isinstance(s, dict)
                                            else None))
                 for i, s in enumerate(steps))
    plan = Plan(name, title, defs, version)
    return Plan(name, title, defs, version, content_hash(plan.content()))


def _version(v, where: str) -> str:
    """An optional version label: a whole number or a short text."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return "" if v == "" else label(v, where, 40)


def _selector(key: str, where: str) -> str:
    if key in contactid.CLASSES:
        return key
    if _CODE_RE.match(key):
        return str(int(key))
    raise WorkflowConfigError(where, "%r is neither an alarm class (%s) nor a Contact ID code "
                              "(\"121\")" % (key, ", ".join(contactid.CLASSES)))


def _assignments(table, plans: dict, where: str, fallback_ok: bool) -> dict:
    if not isinstance(table, dict):
        raise WorkflowConfigError(where, "must be a table of selector = \"plan name\"")
    out = {}
    for key, name in table.items():
        w = "%s.%s" % (where, key)
        if key == FALLBACK:
            if not fallback_ok:
                raise WorkflowConfigError(w, "the fallback plan is center-wide only: "
                                          "put default under [assign]")
            sel = FALLBACK
        else:
            sel = _selector(key, w)
        if not isinstance(name, str) or name not in plans:
            raise WorkflowConfigError(w, "names no plan of this file (%r; plans: %s)" % (
                name, ", ".join(sorted(plans)) or "none"))
        if sel in out:
            raise WorkflowConfigError(w, "selector %s is given twice" % sel)
        out[sel] = name
    return out


def parse(doc: dict, source: str = "plans file") -> PlanSet:
    """Build a PlanSet from a parsed plans file (``source`` names it in
    every error)."""
    check_keys(doc, _TOP_KEYS, source)
    raw = doc.get("plans")
    if not isinstance(raw, dict) or not raw:
        raise WorkflowConfigError(source, "defines no plans ([plans.NAME] tables)")
    plans = {name: _parse_plan(name, p, "%s: plan '%s'" % (source, name))
             for name, p in raw.items()}
    center = _assignments(doc.get("assign"), plans, "%s: [assign]" % source, True)
    fallback = center.pop(FALLBACK, None)
    if fallback is None:
        raise WorkflowConfigError("%s: [assign]" % source,
                                  "needs default = \"PLAN\": the plan for an alarm no other "
                                  "selector matches")
    regions, sites = {}, {}
    for scope, out, word in (("regions", regions, "region"), ("sites", sites, "site")):
        t = doc.get(scope, {})
        if not isinstance(t, dict):
            raise WorkflowConfigError("%s: [%s]" % (source, scope), "must be a table")
        for key, table in t.items():
            out[str(key)] = _assignments(table, plans, "%s: [%s.%s]" % (source, scope, key),
                                         False)
    esc = _escalation.parse_policy(doc.get("escalation", {}), "%s: [escalation]" % source)
    version = _version(doc.get("version", ""), "%s: version" % source)
    assigned = frozenset([fallback, *center.values()]
                         + [n for t in (*regions.values(), *sites.values()) for n in t.values()])
    everything = {"version": version, "fallback": fallback, "center": center,
                  "regions": regions, "sites": sites, "escalation": esc.to_json(),
                  "plans": {n: p.hash for n, p in plans.items()}}
    return PlanSet(plans, center, regions, sites, fallback, esc, version, source,
                   content_hash(everything), assigned)
