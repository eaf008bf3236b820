"""Action plans (receiver.workflow.plans) and an alarm's steps
(receiver.workflow.steps): the file format and its errors, resolution with
overrides, content hashes, and the step state table walked pair by pair."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import contactid
from receiver.workflow import plans, steps
from receiver.workflow.common import ActionRefused, WorkflowConfigError
from tests.workflow_cases import config_error

ROOT = Path(__file__).resolve().parent.parent
PLANS = ROOT / "examples" / "plans.toml"
PROPS = settings(max_examples=300, deadline=None)


def _doc() -> dict:
    return tomllib.loads(PLANS.read_text())


def _minimal(**top) -> dict:
    doc = {"plans": {"p": {"title": "P", "steps": [{"kind": "instruction", "text": "do it"}]}},
           "assign": {"default": "p"}}
    doc.update(top)
    return doc


# -- the example file ---------------------------------------------------------------------


def test_example_plans_load_and_every_plan_is_used():
    ps = plans.load(str(PLANS))
    assert ps.unused() == []
    assert ps.label == "2025-06 procedures review"
    assert ps.fallback == "generic"
    # every step kind and every dispatch target appears in the reference file
    kinds = {s.kind for p in ps.plans.values() for s in p.steps}
    assert kinds == set(plans.STEP_KINDS)
    targets = {s.target for p in ps.plans.values() for s in p.steps if s.kind == plans.DISPATCH}
    assert targets == set(plans.DISPATCH_TARGETS)


def test_example_resolution_for_the_demo_sites():
    ps = plans.load(str(PLANS))

    def name(account, region, code):
        return plans.resolve(ps, account, region, contactid.event_class(code), code).plan.name

    assert name("1001", "central", 122) == "holdup-bank"  # the bank's teller hold-up
    assert name("1001", "central", 121) == "holdup-bank"  # the site's class beats a center code
    assert name("1003", "central", 121) == "duress"  # another site: the center's code
    assert name("1003", "central", 122) == "holdup"
    assert name("1002", "central", 134) == "burglary-flat"
    assert name("1003", "harbour", 134) == "burglary-patrol"
    assert name("1001", "harbour", 350) == "panel-silent"
    assert name("1001", "central", 601) == "generic"  # test class: the fallback


def test_resolution_sentence_names_plan_version_and_why():
    ps = plans.load(str(PLANS))
    r = plans.resolve(ps, "1003", "central", "holdup", 121)
    assert r.sentence() == ("Plan 'duress' (v2, %s), the center-wide plan for Contact ID 121 "
                            "(Duress)." % r.plan.hash[:12])
    r = plans.resolve(ps, "1003", "harbour", "burglary", 130)
    assert "region harbour's plan for burglary alarms" in r.sentence()
    r = plans.resolve(ps, "1003", "", "other", 999)
    assert r.sentence().endswith("the center-wide fallback plan.")
    a = r.audit(100.0)
    assert a.actor == "receiver" and a.alarm_id is None and a.sentence() == r.sentence()


# -- errors point at file, plan and step ------------------------------------------------------


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["plans"]["holdup-bank"]["steps"][2].update(kind="telephone"),
     "plans.toml: plan 'holdup-bank', step 3 (telephone): kind: must be one of call, "
     "verify_passcode, dispatch, notify, wait, instruction"),
    (lambda d: d["plans"]["holdup-bank"]["steps"][0].update(target="fire_brigade"),
     "plans.toml: plan 'holdup-bank', step 1 (dispatch): target: must be one of "
     "police_station, district_command, municipal_center, patrol"),
    (lambda d: d["plans"]["holdup-bank"]["steps"][0].pop("target"),
     "plans.toml: plan 'holdup-bank', step 1 (dispatch): a dispatch step needs a target"),
    (lambda d: d["plans"]["holdup"]["steps"][2].update(minutes=0),
     "plans.toml: plan 'holdup', step 3 (wait): minutes: must be a whole number from 1 to 240"),
    (lambda d: d["plans"]["holdup"]["steps"][2].update(minutes=True),
     "plans.toml: plan 'holdup', step 3 (wait): minutes: must be a whole number"),
    (lambda d: d["plans"]["holdup"]["steps"][2].pop("minutes"),
     "plans.toml: plan 'holdup', step 3 (wait): a wait step needs minutes"),
    (lambda d: d["plans"]["holdup"]["steps"][0].update(minutes=5),
     "plans.toml: plan 'holdup', step 1 (dispatch): unknown key(s) minutes"),
    (lambda d: d["plans"]["holdup"]["steps"][1].update(mandatory="yes"),
     "plans.toml: plan 'holdup', step 2 (notify): mandatory: must be true or false"),
    (lambda d: d["plans"]["holdup"]["steps"][1].update(to="everyone"),
     "plans.toml: plan 'holdup', step 2 (notify): to: must be one of supervisors, contacts, "
     "other"),
    (lambda d: d["plans"]["holdup"]["steps"][1].update(role="guard"),
     "plans.toml: plan 'holdup', step 2 (notify): role is for to = \"contacts\" only"),
    (lambda d: d["plans"]["holdup"]["steps"][1].update(to="other"),
     "plans.toml: plan 'holdup', step 2 (notify): to = \"other\" needs a text"),
    (lambda d: d["plans"]["holdup"]["steps"][4].pop("text"),
     "plans.toml: plan 'holdup', step 5 (instruction): an instruction step needs a text"),
    (lambda d: d["plans"]["holdup"]["steps"][3].update(call_order="vips"),
     "plans.toml: plan 'holdup', step 4 (call): call_order: must be one of holdup"),
    (lambda d: d["plans"]["holdup"]["steps"][3].update(title="x" * 121),
     "plans.toml: plan 'holdup', step 4 (call): title: has 121 characters; at most 120"),
    (lambda d: d["plans"]["holdup"]["steps"][3].update(title="a\x1b[2Jb"),
     "plans.toml: plan 'holdup', step 4 (call): title: holds a control character"),
    (lambda d: d["plans"]["holdup"].update(steps=[]),
     "plans.toml: plan 'holdup': needs steps"),
    (lambda d: d["plans"]["holdup"].update(steps=[{"kind": "instruction", "text": "x"}] * 31),
     "plans.toml: plan 'holdup': has 31 steps; at most 30"),
    (lambda d: d["plans"]["holdup"]["steps"].__setitem__(0, "call"),
     "plans.toml: plan 'holdup', step 1: must be a table"),
    (lambda d: d["plans"]["holdup"].pop("title"),
     "plans.toml: plan 'holdup': title: must be a non-empty text"),
    (lambda d: d["plans"]["holdup"].update(owner="ops"),
     "plans.toml: plan 'holdup': unknown key(s) owner"),
    (lambda d: d["plans"].update({"bad name": d["plans"]["holdup"]}),
     "plans.toml: plan 'bad name': a plan name is 1-64 letters"),
    (lambda d: d["assign"].update(holdup="hold-up"),
     "plans.toml: [assign].holdup: names no plan of this file ('hold-up'; plans: burglary,"),
    (lambda d: d["assign"].update(robbery="holdup"),
     "plans.toml: [assign].robbery: 'robbery' is neither an alarm class"),
    (lambda d: d["assign"].update({"1210": "holdup"}),
     "plans.toml: [assign].1210: '1210' is neither an alarm class"),
    (lambda d: d["assign"].pop("default"),
     "plans.toml: [assign]: needs default = \"PLAN\""),
    (lambda d: d["sites"]["1001"].update(default="generic"),
     "plans.toml: [sites.1001].default: the fallback plan is center-wide only"),
    (lambda d: d["regions"]["harbour"].update(burglary="nope"),
     "plans.toml: [regions.harbour].burglary: names no plan of this file ('nope'"),
    (lambda d: d["assign"].update({"21": "holdup", "021": "duress"}),
     "plans.toml: [assign].021: selector 21 is given twice"),
    (lambda d: d.update(plans={}),
     "plans.toml: defines no plans"),
    (lambda d: d.update(routes=[]),
     "plans.toml: unknown key(s) routes"),
    (lambda d: d["escalation"]["classes"].update(robbery={"ack_within_s": 5}),
     "plans.toml: [escalation].classes.robbery: unknown alarm class"),
    (lambda d: d["escalation"]["classes"]["holdup"].update(ack_within_s=0),
     "plans.toml: [escalation].classes.holdup.ack_within_s: must be a whole number from 1"),
    (lambda d: d["escalation"]["priorities"].update({"0": {"ack_within_s": 5}}),
     "plans.toml: [escalation].priorities.0: a priority is a number from 1"),
    (lambda d: d["escalation"].update(page_after_s=5),
     "plans.toml: [escalation]: unknown key(s) page_after_s"),
])
def test_errors_name_file_plan_and_step(mutate, expected):
    assert config_error(plans.parse, _doc(), mutate, "plans.toml").startswith(expected)


def test_unreadable_and_invalid_files_name_the_file(tmp_path):
    with pytest.raises(WorkflowConfigError, match=r"nope\.toml: no such plans file"):
        plans.load(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[plans.x\n")
    with pytest.raises(WorkflowConfigError, match=r"bad\.toml: not valid TOML"):
        plans.load(str(bad))
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(WorkflowConfigError, match=r"bad\.toml: "):
        plans.load(str(bad))


def test_unused_plan_is_reported_not_refused():
    doc = _minimal()
    doc["plans"]["spare"] = copy.deepcopy(doc["plans"]["p"])
    assert plans.parse(doc).unused() == ["spare"]


# -- hashes ---------------------------------------------------------------------------------


def test_plan_hash_ignores_layout_and_other_plans_but_not_content():
    a = plans.load(str(PLANS))
    # the same content written another way: inline tables, other order, comments gone
    doc = _doc()
    doc["plans"] = dict(reversed(list(doc["plans"].items())))
    b = plans.parse(doc, "other.toml")
    assert {n: p.hash for n, p in a.plans.items()} == {n: p.hash for n, p in b.plans.items()}
    assert a.hash == b.hash
    # an edit of one plan changes that plan's hash and the set's, no other plan's
    doc = _doc()
    doc["plans"]["burglary"]["steps"][4]["minutes"] = 20
    c = plans.parse(doc)
    changed = {n for n in a.plans if a.plans[n].hash != c.plans[n].hash}
    assert changed == {"burglary"}
    assert a.hash != c.hash
    # mandatory left out == mandatory = true: same content, same hash
    doc = _doc()
    doc["plans"]["fire"]["steps"][0]["mandatory"] = True
    assert plans.parse(doc).plans["fire"].hash == a.plans["fire"].hash
    # the escalation policy is part of the set's hash
    doc = _doc()
    doc["escalation"]["ack_within_s"] = 61
    assert plans.parse(doc).hash != a.hash


def test_version_label():
    ps = plans.load(str(PLANS))
    p = ps.plans["holdup-bank"]
    assert p.version_label == "v7, " + p.hash[:12]
    doc = _minimal()
    assert plans.parse(doc).plans["p"].version_label == plans.parse(doc).plans["p"].hash[:12]


# -- resolution: hypothesis against an independent oracle ------------------------------------

SELECTORS = ["holdup", "burglary", "fire", "trouble", "121", "122", "130", "350"]
PLAN_NAMES = ["a", "b", "c", "d"]
_tables = st.dictionaries(st.sampled_from(SELECTORS), st.sampled_from(PLAN_NAMES), max_size=4)


def _oracle(doc, account, region, event_class, code):
    """Every matching assignment ranked (scope nearness, then code over
    class): the first in rank order decides; the fallback otherwise."""
    matches = []
    for rank, table in ((0, doc["sites"].get(account)), (1, doc["regions"].get(region)),
                        (2, doc["assign"])):
        for sel, name in (table or {}).items():
            if sel == str(code):
                matches.append((rank, 0, name))
            elif sel == event_class:
                matches.append((rank, 1, name))
    return min(matches)[2] if matches else doc["assign"]["default"]


@PROPS
@given(center=_tables, regions=st.dictionaries(st.sampled_from(["north", "harbour"]), _tables,
                                               max_size=2),
       sites=st.dictionaries(st.sampled_from(["1001", "1002"]), _tables, max_size=2),
       fallback=st.sampled_from(PLAN_NAMES),
       account=st.sampled_from(["1001", "1002", "1003"]),
       region=st.sampled_from(["north", "harbour", "south"]),
       code=st.sampled_from([121, 122, 130, 134, 350, 110, 601]))
def test_resolution_matches_the_oracle(center, regions, sites, fallback, account, region, code):
    doc = {"plans": {n: {"title": n.upper(), "steps": [{"kind": "instruction", "text": n}]}
                     for n in PLAN_NAMES},
           "assign": {**center, "default": fallback}, "regions": regions, "sites": sites}
    ps = plans.parse(copy.deepcopy(doc))
    cls = contactid.event_class(code)
    r = plans.resolve(ps, account, region, cls, code)
    assert r.plan.name == _oracle(doc, account, region, cls, code)
    # a site assignment for exactly this code always wins
    doc["sites"].setdefault(account, {})[str(code)] = "d"
    assert plans.resolve(plans.parse(copy.deepcopy(doc)), account, region, cls,
                         code).plan.name == "d"
    # without any override the center decides (its code, its class, its fallback)
    bare = {**doc, "regions": {}, "sites": {}}
    r = plans.resolve(plans.parse(copy.deepcopy(bare)), account, region, cls, code)
    assert r.scope == "center"
    assert r.plan.name == center.get(str(code), center.get(cls, fallback))


# -- steps: instantiation ---------------------------------------------------------------------


def test_instantiated_steps_carry_words_and_the_plan_copy():
    ps = plans.load(str(PLANS))
    r = plans.resolve(ps, "1001", "central", "holdup", 122)
    ss = steps.instantiate(r, "holdup", {"police_station": "ps-central"},
                           {"ps-central": "Central Police Station"})
    assert [s.position for s in ss] == list(range(1, 8))
    assert ss[0].title == "Dispatch to the police station (Central Police Station)"
    assert ss[1].title == ("Dispatch to the district command (none is routed for this alarm: "
                           "call it directly)")
    assert ss[3].title == "Call the hold-up call list in order"
    assert ss[3].params == {"call_order": "holdup"}
    assert ss[5].title == "Wait 10 minutes, then recheck" and ss[5].params == {"minutes": 10}
    assert ss[6].mandatory is False
    assert all(s.state == steps.OPEN and s.alarm_id is None for s in ss)
    r = plans.resolve(ps, "1003", "north", "trouble", 350)
    ss = steps.instantiate(r, "trouble")
    assert [s.title for s in ss][:3] == [
        "The receiver has not heard the panel: check the site view for which path failed…",
        "Call the site's call list in order", "Dispatch a patrol"]
    assert ss[0].text.endswith("which path failed and since when.")  # whole, under the title
    r = plans.resolve(ps, "1003", "north", "burglary", 130)
    assert steps.instantiate(r, "burglary")[3].title == "Notify the site's key holder"


def test_title_words_for_every_kind():
    t = steps.title_of
    assert t(plans.StepDef("call"), "fire") == "Call the fire call list in order"
    assert t(plans.StepDef("notify", to="other", text="The bank's head office\nthen the insurer"),
             "holdup") == "Notify: The bank's head office"
    assert t(plans.StepDef("notify", to="contacts"), "holdup") == "Notify the site's contacts"
    assert t(plans.StepDef("wait", minutes=1), "holdup") == "Wait 1 minute, then recheck"
    assert t(plans.StepDef("instruction", text="x" * 200), "holdup") == "x" * 79 + "…"
    assert t(plans.StepDef("dispatch", target="municipal_center", title="Call 112"),
             "fire") == "Call 112"


# -- steps: the state table, every (state, action) pair ------------------------------------


def _step(kind=plans.INSTRUCTION, state=steps.OPEN, mandatory=True, params=None):
    return steps.StepRecord(7, 2, kind, "Do the thing", mandatory,
                            params=params or ({"minutes": 10} if kind == plans.WAIT else {}),
                            state=state)


@PROPS
@given(state=st.sampled_from(steps.STATES), action=st.sampled_from(steps.ACTIONS),
       kind=st.sampled_from(plans.STEP_KINDS), via=st.sampled_from(steps.VIAS),
       reason=st.one_of(st.none(), st.just(""), st.just("   "), st.text(min_size=1, max_size=40),
                        st.just("x" * 2001)),
       now=st.floats(min_value=0, max_value=4e9))
def test_every_state_action_pair(state, action, kind, via, reason, now):
    s = _step(kind, state)
    allowed = steps.TRANSITIONS[state].get(action)
    refused_by_kind = (action == steps.START and kind != plans.WAIT) or (
        action == steps.COMPLETE and kind == plans.VERIFY_PASSCODE and via != steps.VIA_PASSCODE)
    bad_reason = action in steps.NEEDS_REASON and (
        not isinstance(reason, str) or not reason.strip() or len(reason.strip()) > 2000)
    try:
        ch = steps.apply(s, action, "olga", now, reason, via)
    except ActionRefused as e:
        assert allowed is None or refused_by_kind or bad_reason, e
        assert str(e)  # a sentence, never empty
        return
    assert allowed is not None and not refused_by_kind and not bad_reason
    assert ch.before == s and ch.after.state == allowed
    assert ch.after.changed_by == "olga" and ch.after.changed_at == now
    assert ch.audit.actor == "olga" and ch.audit.at == now and ch.audit.alarm_id == 7
    assert ch.audit.detail["position"] == 2
    sentence = ch.audit.sentence()
    assert sentence.startswith("Step 2 (Do the thing) ") and sentence.endswith(".")
    if action in steps.NEEDS_REASON:
        assert ch.after.reason == reason.strip() and reason.strip() in sentence
    else:
        assert ch.after.reason is None
    if action == steps.START:
        assert ch.after.due_at == now + 600 and ch.after.started_at == now
        assert "recheck due in 10 min" in sentence


def test_final_states_are_final_and_the_table_is_total():
    assert set(steps.TRANSITIONS) == set(steps.STATES)
    for state in steps.FINAL:
        assert steps.TRANSITIONS[state] == {}
    for state, row in steps.TRANSITIONS.items():
        assert set(row) <= set(steps.ACTIONS)
        assert set(row.values()) <= set(steps.STATES)


def test_refusals_are_sentences():
    with pytest.raises(ActionRefused, match="a step that is completed cannot be skipped"):
        steps.apply(_step(state=steps.COMPLETED), steps.SKIP, "olga", 1.0, "x")
    with pytest.raises(ActionRefused, match="Skipped step 2 .Do the thing. needs a reason"):
        steps.apply(_step(), steps.SKIP, "olga", 1.0, " ")
    with pytest.raises(ActionRefused, match="only a wait step is started"):
        steps.apply(_step(), steps.START, "olga", 1.0)
    with pytest.raises(ActionRefused, match="is completed by entering the passcode"):
        steps.apply(_step(plans.VERIFY_PASSCODE), steps.COMPLETE, "olga", 1.0)
    with pytest.raises(ValueError):
        steps.apply(_step(), steps.COMPLETE, "olga", 1.0, via="telepathy")


def test_open_mandatory_counts_open_and_waiting_only():
    ss = [_step(state=s, mandatory=m) for s in steps.STATES for m in (True, False)]
    ss = [steps.StepRecord(1, i + 1, s.kind, s.title, s.mandatory, state=s.state)
          for i, s in enumerate(ss)]
    left = steps.open_mandatory(ss)
    assert [(s.state, s.mandatory) for s in left] == [(steps.OPEN, True), (steps.WAITING, True)]
