"""The HIL scenario suite (hil/scenarios) against the simulated panel.

`.ci/run` runs pytest on tests/ only; this module runs the whole scenario
suite the way QA does, ``guardline-hil run --target sim --report DIR``, in
a subprocess (its own pytest session, with the HIL plugin), once, and
then reports one result per scenario here, from the suite's JUnit XML.
A failing scenario's message carries its timeline (panel inputs, frames
on the link, receiver events)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from hil.cli import scenarios
from hil.report import render_text, safe_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = scenarios()


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    report = tmp_path_factory.mktemp("hil-report")
    r = subprocess.run([sys.executable, "-m", "hil.cli", "run", "--target", "sim",
                        "--report", str(report)], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    junit = report / "junit.xml"
    assert junit.exists(), "no JUnit XML; pytest said:\n%s\n%s" % (r.stdout[-5000:],
                                                                   r.stderr[-5000:])
    cases = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        message = ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome = tag
                message = (el.get("message") or "") + "\n" + (el.text or "")
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        cases[tc.get("name")] = {"outcome": outcome, "message": message, "props": props,
                                 "classname": tc.get("classname")}
    return {"rc": r.returncode, "stdout": r.stdout, "cases": cases, "report": report}


def _timeline(report, classname: str, name: str) -> str:
    nodeid = "%s.py::%s" % (classname.replace(".", "/"), name)
    path = report / (safe_name(nodeid) + ".json")
    if not path.exists():
        return "(no timeline at %s)" % path
    doc = json.loads(path.read_text())
    return render_text(doc["timeline"], doc["outcome"], limit=150)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario_passes_on_the_sim(suite, scenario):
    cases = {n: c for n, c in suite["cases"].items()
             if n == scenario["name"] or n.startswith(scenario["name"] + "[")}
    assert cases, "scenario %s was not run; pytest said:\n%s" % (scenario["name"],
                                                                 suite["stdout"][-3000:])
    if scenario["params"]:
        assert len(cases) == len(scenario["params"])
    for name, c in cases.items():
        assert c["outcome"] == "passed", "%s %s:\n%s\n%s" % (
            name, c["outcome"], c["message"][-4000:],
            _timeline(suite["report"], c["classname"], name))
        assert "hil_seed" in c["props"]


def test_suite_report_has_an_index_and_a_page_per_scenario(suite):
    assert suite["rc"] == 0, suite["stdout"][-3000:]
    index = (suite["report"] / "index.html").read_text()
    summary = json.loads((suite["report"] / "summary.json").read_text())["scenarios"]
    assert len(summary) == len(suite["cases"])
    for r in summary:
        assert (suite["report"] / r["page"]).exists()
        assert r["page"] in index
    assert "Guardline HIL:" in suite["stdout"]  # the terminal summary
