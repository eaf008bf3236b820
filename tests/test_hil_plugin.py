"""The HIL pytest plugin, reports and CLI, without a panel.

Inner pytest sessions run in subprocesses on small generated test files
(the plugin's hooks need a session of their own); the report renderer and
the CLI's scenario resolution are tested directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from hil import cli, report
from hil.timeline import Timeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_pytest(tmp_path, source: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path / "test_inner.py"), *cli.plugin_args(),
         "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "--rootdir", str(tmp_path),
         "--junitxml", str(tmp_path / "junit.xml"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def junit_cases(tmp_path) -> dict:
    out = {}
    for tc in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"):
        kind = next((t for t in ("failure", "error", "skipped") if tc.find(t) is not None),
                    "passed")
        el = tc.find(kind) if kind != "passed" else None
        out[tc.get("name")] = {"outcome": kind,
                               "message": "" if el is None else el.get("message", ""),
                               "props": {p.get("name"): p.get("value")
                                         for p in tc.iter("property")}}
    return out


INNER = """
    import pytest
    from hil.checks import step

    def test_passes(hil_timeline):
        t0 = step(hil_timeline, "press the button")
        hil_timeline.record("receiver", "event", code=130, qualifier=1, zone=2,
                            description="Burglary <zone 2>", account="7001", seq=4,
                            path=1, priority=4, event_class="burglary")
        hil_timeline.measure("button -> stored", t0, t0 + 0.125)

    def test_fails(hil_timeline):
        step(hil_timeline, "the step before the failure")
        assert 1 == 2, "the panel did not answer"

    @pytest.mark.hil_needs("power")
    def test_needs_power(hil_timeline):
        pass
"""


def test_plugin_properties_terminal_timeline_and_report(tmp_path):
    rep = tmp_path / "rep"
    r = run_pytest(tmp_path, INNER, "--hil-report", str(rep), "--hil-seed", "42",
                   "--hil-target", "serial:loop://")
    assert r.returncode == 1, r.stdout + r.stderr
    cases = junit_cases(tmp_path)
    assert cases["test_passes"]["outcome"] == "passed"
    assert cases["test_passes"]["props"] == {"hil_seed": "42",
                                             "latency_ms:button -> stored": "125.0"}
    assert cases["test_fails"]["outcome"] == "failure"
    # a bench without a fixture cannot switch power: skipped, with the reason
    assert cases["test_needs_power"]["outcome"] == "skipped"
    assert "cannot do: power" in cases["test_needs_power"]["message"]
    # terminal: summary line per scenario and the failed one's timeline
    assert "Guardline HIL: 3 scenarios" in r.stdout
    assert "timeline of" in r.stdout and "the step before the failure" in r.stdout
    assert "button -> stored 125.0 ms" in r.stdout
    summary = {s["nodeid"].split("::")[-1]: s for s in
               json.loads((rep / "summary.json").read_text())["scenarios"]}
    assert {k: v["outcome"] for k, v in summary.items()} == {
        "test_passes": "passed", "test_fails": "failed", "test_needs_power": "skipped"}
    page = (rep / summary["test_passes"]["page"]).read_text()
    assert "Burglary &lt;zone 2&gt;" in page  # escaped
    assert "<script>" in page and "Latencies" in page and "125.0" in page
    failed = json.loads((rep / summary["test_fails"]["page"].replace(".html", ".json"))
                        .read_text())
    assert "the panel did not answer" in failed["longrepr"]


def test_a_run_in_which_no_scenario_ran_is_not_green(tmp_path):
    """Seen: `guardline-hil run --target serial:///dev/ttyUSB9` skipped every
    scenario and exited 0.  A target that validates but can do nothing the
    scenarios need still skips them all: non-zero, with each reason."""
    rep = tmp_path / "rep"
    r = run_pytest(tmp_path, """
        import pytest

        @pytest.mark.hil_needs("power")
        def test_a(hil_timeline):
            pass

        @pytest.mark.hil_needs("zones")
        def test_b(hil_timeline):
            pass
    """, "--hil-report", str(rep), "--hil-target", "serial:loop://", "--hil-seed", "77")
    assert r.returncode == 5, r.stdout + r.stderr
    assert "skipped because: target serial:loop:// cannot do: power" in r.stdout
    assert "skipped because: target serial:loop:// cannot do: zones" in r.stdout
    assert "NO SCENARIO RAN" in r.stdout
    summary = json.loads((rep / "summary.json").read_text())
    run = summary["run"]
    assert run["target"] == "serial:loop://" and run["seed"] == 77 and run["executed"] == 0
    assert run["started_at"].endswith("Z") and run["git_revision"]
    assert run["firmware_version"].startswith("unknown")  # a bench that said no HELLO
    assert [s["reason"] for s in summary["scenarios"]] == [
        "target serial:loop:// cannot do: power (a bench needs --hil-fixture for that)",
        "target serial:loop:// cannot do: zones (a bench needs --hil-fixture for that)"]
    index = (rep / "index.html").read_text()
    for text in ("No scenario ran", "git revision", "firmware version", "link seed",
                 "serial:loop://", "cannot do: power"):
        assert text in index, text


def test_plain_pytest_refuses_a_target_that_names_no_port(tmp_path):
    for target, said in (("usb0", "expected sim, or serial:URL"),
                         ("serial:///dev/ttyUSB9", "no such port /dev/ttyUSB9")):
        r = run_pytest(tmp_path, "def test_a(hil_timeline):\n    pass\n",
                       "--hil-target", target)
        assert r.returncode == 4 and said in r.stderr, r.stdout + r.stderr
        assert "1 passed" not in r.stdout


def test_one_seed_per_run_and_the_index_names_the_run(tmp_path):
    """Every scenario of a run gets the run's seed (drawn once when not
    given), and the index carries date, git revision, firmware version (the
    panel's HELLO, as the receiver logged it), target and seed."""
    rep = tmp_path / "rep"
    r = run_pytest(tmp_path, """
        def test_a(hil_timeline):
            hil_timeline.record("receiver", "log", text="ts=1 level=info logger=receiver.app "
                                "msg=\\"panel hello account=7001 fw=0.1.0 kind=1 zones=6\\"")

        def test_b(hil_timeline):
            pass
    """, "--hil-report", str(rep))
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads((rep / "summary.json").read_text())
    seeds = {s["seed"] for s in summary["scenarios"]}
    assert seeds == {summary["run"]["seed"]} and isinstance(summary["run"]["seed"], int)
    assert summary["run"]["firmware_version"] == "0.1.0 (the panel's HELLO)"
    assert summary["run"]["target"] == "sim"
    page = (rep / summary["scenarios"][0]["page"]).read_text()
    # the rerun hint names the flag docs/qa.md names
    assert "guardline-hil run test_a --seed %d" % summary["run"]["seed"] in page
    index = report.rebuild(str(rep))  # re-rendered: the run is kept
    assert "0.1.0 (the panel&#x27;s HELLO)" in open(index).read()


def test_hil_config_marker_merges_overrides(tmp_path):
    r = run_pytest(tmp_path, """
        import pytest

        @pytest.mark.hil_config(timings={"entry_delay_s": 9}, name="x")
        def test_cfg(hil_config, codes):
            assert hil_config["timings"]["entry_delay_s"] == 9
            assert hil_config["timings"]["exit_delay_s"] == 2   # kept
            assert hil_config["name"] == "x"
            assert codes["master"] == "1234"
    """)
    assert r.returncode == 0, r.stdout + r.stderr


def test_scenario_conftest_registers_the_plugin_once(tmp_path):
    for extra in ([], cli.plugin_args()):
        r = subprocess.run([sys.executable, "-m", "pytest", "hil/scenarios", "--collect-only",
                            "-q", "-p", "no:cacheprovider", *extra], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "test_zone_trip_to_stored_alarm" in r.stdout


# --- report renderer --------------------------------------------------------------------


def test_render_text_tells_the_story_in_time_order():
    tl = Timeline("story")
    tl.seed = 7
    tl.record("panel", "zone", target="sim", zone=2, state="alarm")
    tl.record("link", "frame", link="primary", dir="up", type="EVENT", seq=5, account=7001,
              fate=["drop"], delivered=[], len=73)
    e = tl.record("link", "frame", link="primary", dir="up", type="EVENT", seq=5,
                  account=7001, fate=["duplicate"], delivered=[], len=73)
    e.detail["delivered"] += [e.t + 0.001, e.t + 0.002]
    tl.record("receiver", "event", at_t=tl.now() - 10, code=130, qualifier=1, zone=2,
              description="Burglary", account="7001", seq=5, path=1, priority=4)
    tl.record("receiver", "log", text="ts=1 level=info msg=noise")
    tl.record("receiver", "security", reason="replay", account="7001", seq=5,
              detail="exact copy")
    text = report.render_text(tl.as_dict(), "passed")
    lines = text.splitlines()
    assert lines[0] == "== story  PASSED  (seed 7)"
    assert "STORED 130 NEW Burglary" in lines[1]  # sorted: its commit time came first
    assert any("[drop]" in x and "^ EVENT" in x for x in lines)
    assert any("[duplicate]" in x and "delivered +1 ms, +2 ms" in x for x in lines)
    assert any("SECURITY replay" in x for x in lines)
    assert not any("noise" in x for x in lines)  # info logs only with verbose
    assert "noise" in report.render_text(tl.as_dict(), verbose=True)


def test_report_rebuild_from_json(tmp_path):
    tl = Timeline("t")
    tl.record("scenario", "step", text="hello")
    report.write_scenario(str(tmp_path), "hil/scenarios/test_x.py::test_y", tl.as_dict(),
                          "passed")
    index = report.rebuild(str(tmp_path))
    assert "test_y" in open(index).read()
    assert report.safe_name("a/b.py::c[1-2]") == "a_b.py__c_1-2"


# --- CLI ----------------------------------------------------------------------------------


def test_cli_lists_and_resolves_scenarios(capsys):
    names = [s["name"] for s in cli.scenarios()]
    assert "test_zone_trip_to_stored_alarm" in names
    assert len(names) == len(set(names)) == 14
    assert cli.resolve(["zone_trip_to_stored_alarm"]) == [
        os.path.join(cli.SCENARIOS, "test_alarms.py") + "::test_zone_trip_to_stored_alarm"]
    assert cli.resolve(["delivery"]) == [os.path.join(cli.SCENARIOS, "test_delivery.py")]
    assert cli.resolve([]) == [cli.SCENARIOS]
    with pytest.raises(cli.UsageError, match="no scenario"):
        cli.resolve(["levitation"])
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "security       test_panel_clock_drift_is_corrected [30s-ack, 150s-nak]" in out


def test_list_into_a_reader_that_stops_early_ends_quietly():
    # `guardline-hil list | head -2`: no BrokenPipeError traceback
    p = subprocess.Popen([sys.executable, "-m", "hil.cli", "list"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, bufsize=0)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_cli_run_builds_the_pytest_command(tmp_path):
    import argparse
    a = argparse.Namespace(scenario=["alarms"], target="serial:///dev/ttyUSB0",
                           report=str(tmp_path / "r"), seed=5, fixture="/dev/ttyACM0",
                           wiring="w.json", config=None, listen="10.0.0.2", primary_port=7700,
                           backup_port=7701, pytest_args=["-x"])
    args = cli.pytest_args(a)
    assert args[0].endswith("test_alarms.py")
    assert args[1:3] == ["-p", "hil.plugin"] or args[1:3] == ["-p", "no:cacheprovider"]
    for pair in (["--hil-target", "serial:///dev/ttyUSB0"], ["--hil-seed", "5"],
                 ["--hil-fixture", "/dev/ttyACM0"], ["--hil-primary-port", "7700"],
                 ["--junitxml", str(tmp_path / "r" / "junit.xml")]):
        i = args.index(pair[0])
        assert args[i:i + 2] == pair
    assert args[-1] == "-x"
