"""The Guardline HIL pytest plugin: one suite for simulated and real panels.

Load it with ``-p hil.plugin`` (or install the entry point, docs/qa.md):

    pytest hil/scenarios -p hil.plugin                       # the sim (default)
    pytest hil/scenarios -p hil.plugin --hil-target serial:///dev/ttyUSB0 \\
           --hil-fixture /dev/ttyACM0 --hil-wiring bench.json   # a bench

Fixtures (function scope: every scenario gets a fresh panel, link and
receiver, so one scenario's queue or replay state cannot leak into the
next):

    hil_timeline   the scenario's timeline (inputs, frames, stored events)
    receiver       a real ``guardline-receiver serve`` on a temporary SQLite
                   store, with the panel's account added
    link           hil.link.Links: ``link.primary`` (TCP) and ``link.backup``
                   (UDP) between the panel and the receiver, seeded
    panel          the target (hil.target.Target), powered off
    strategy       hil.strategy.PanelStrategy for the panel and receiver
    codes          the user codes of the panel under test
    hil_config     the panel's configuration (dict)

Markers: ``hil_config(timings={...}, ...)`` overrides the panel config for
one scenario (sim only: a bench runs what is flashed);
``hil_profile(heartbeat_s=, grace_s=, paths=)`` sets the receiver's
supervision profile for the account; ``hil_needs("power", ...)`` names
what a scenario needs of the target, and a target that cannot do it makes
the scenario *skip with the reason shown* (never silently).

Reports: every scenario's latencies and link seed are added to the JUnit
XML as properties; ``--hil-report DIR`` writes a timeline per scenario
(JSON + HTML) and an index that names the run (date, git revision,
firmware version, target, seed); the terminal summary lists latencies,
each skipped scenario's reason and, for a failed scenario, its timeline.

A run never reports green on nothing: the target (and the fixture, the
config, the wiring) are checked before any scenario runs (a usage error
otherwise), and a run in which no scenario executed, every one skipped,
exits non-zero (pytest's 5, "no tests ran").  One link seed serves the
whole run (``--hil-seed``, or drawn once and reported), so any scenario of
it can be rerun with the same faults.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import re
import subprocess

import pytest
import pytest_asyncio

from hil import report as _report
from hil.link import Links, PtyPair, SerialLink, TcpLink, UdpLink
from hil.receiver import ReceiverUnderTest, StoreTemplates
from hil.strategy import PanelStrategy
from hil.target import SimTarget, open_target_url
from hil.urls import TargetURLError, check_run
from hil.timeline import Timeline
from testkit.net import free_port
from testkit.wait import wait_until_sync

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "configs", "bank.json")
# What each kind of target can do (hil_needs): a bench without a fixture
# cannot switch power or drive loops electrically.
SIM_CAPS = frozenset({"power", "zones", "paths", "supplies", "console", "flash"})

_TIMELINE = pytest.StashKey[Timeline]()
_OUTCOME = pytest.StashKey[dict]()
_RESULTS = pytest.StashKey[list]()
_RUN = pytest.StashKey[dict]()
# The receiver logs each panel's HELLO (receiver/app.py): the firmware
# version the panel itself reports.
_HELLO_FW = re.compile(r"panel hello .*?\bfw=([0-9.]+)")


def pytest_addoption(parser):
    g = parser.getgroup("hil", "Guardline hardware-in-the-loop")
    g.addoption("--hil-target", default="sim",
                help="sim (default), or serial:URL for a real board's console in test mode "
                     "(any pyserial URL: serial:///dev/ttyUSB0, serial:socket://host:port, "
                     "serial:rfc2217://host:port)")
    g.addoption("--hil-config", default=DEFAULT_CONFIG,
                help="panel config JSON (sim: what it runs; bench: what is flashed)")
    g.addoption("--hil-fixture", default=None, help="bench: the relay/GPIO fixture's URL")
    g.addoption("--hil-wiring", default=None,
                help="bench: JSON file mapping zones/power/ac/paths/outputs to fixture channels")
    g.addoption("--hil-seed", default=None,
                help="seed for link faults (default: random, printed and reported)")
    g.addoption("--hil-report", default=None, metavar="DIR",
                help="write a timeline per scenario (JSON, HTML) and index.html to DIR")
    g.addoption("--hil-listen", default="127.0.0.1",
                help="address the links listen on (bench: this PC's address on the "
                     "panel's network)")
    g.addoption("--hil-primary-port", type=int, default=0,
                help="fixed TCP port of the primary link (bench: what the board's config "
                     "names); 0 = any")
    g.addoption("--hil-backup-port", type=int, default=0,
                help="fixed UDP port of the backup link; 0 = any")
    g.addoption("--hil-serial", default=None, metavar="URL",
                help="bench: the PC port wired to the board's serial reporting path "
                     "(scenarios whose primary path is serial)")
    g.addoption("--hil-code", default="1234", help="a master user code of the panel")
    g.addoption("--hil-duress-code", default="1235", help="the panel's duress code")
    g.addoption("--hil-teller-code", default="2580",
                help="a user code limited to some partitions")


def pytest_configure(config):
    config.addinivalue_line("markers", "hil_config(**overrides): panel config overrides "
                                       "(sim only)")
    config.addinivalue_line("markers", "hil_profile(heartbeat_s, grace_s, paths): the "
                                       "receiver's supervision profile for the account")
    config.addinivalue_line("markers", "hil_needs(*caps): what the scenario needs of the "
                                       "target (power, zones, paths, supplies, console, flash)")
    config.stash[_RESULTS] = []
    _check_options(config)
    seed = config.getoption("--hil-seed")
    try:
        seed = int(seed) if seed is not None else random.SystemRandom().randrange(1 << 31)
    except ValueError:
        raise pytest.UsageError("--hil-seed %r: expected a whole number" % seed) from None
    config.stash[_RUN] = {
        "started_at": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "target": config.getoption("--hil-target"), "seed": seed}


def _check_options(config) -> None:
    """The target, fixture, config and wiring, before a scenario runs: a
    wrong one would skip or error every scenario and look like a run."""
    o = config.getoption
    try:
        check_run(o("--hil-target"), o("--hil-fixture"),
                  [(k, o(k)) for k in ("--hil-config", "--hil-wiring")],
                  names=("--hil-target", "--hil-fixture"))
    except TargetURLError as e:
        raise pytest.UsageError(str(e)) from None


def target_kind(config) -> str:
    t = config.getoption("--hil-target")
    return "sim" if t == "sim" else "bench"


def target_caps(config) -> frozenset:
    if target_kind(config) == "sim":
        return SIM_CAPS
    caps = {"console"}
    if config.getoption("--hil-fixture"):
        caps |= {"power", "zones", "paths", "supplies", "flash"}
    return frozenset(caps)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for m in item.iter_markers("hil_needs"):
        missing = [c for c in m.args if c not in target_caps(item.config)]
        if missing:
            pytest.skip("target %s cannot do: %s (a bench needs --hil-fixture for that)"
                        % (item.config.getoption("--hil-target"), ", ".join(missing)))
    if target_kind(item.config) == "bench" and item.get_closest_marker("hil_config"):
        pytest.skip("scenario needs a panel config override; a bench runs what is flashed")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    info = item.stash.setdefault(_OUTCOME, {"outcome": "passed", "longrepr": "",
                                            "duration": 0.0})
    info["duration"] += rep.duration
    if rep.failed:
        if info["outcome"] != "failed":
            info["outcome"] = "failed" if rep.when == "call" else "error"
        info["longrepr"] = (info["longrepr"] + "\n" + str(rep.longrepr))[-8000:]
    elif rep.skipped and info["outcome"] == "passed":
        info["outcome"] = "skipped"
        r = rep.longrepr
        info["longrepr"] = r[2] if isinstance(r, tuple) and len(r) == 3 else str(r)
    return rep


# --- fixtures ------------------------------------------------------------------------------


def _skip_reason(longrepr: str) -> str:
    text = (longrepr or "").strip()
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text or "(no reason)"


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


@pytest.fixture
def hil_config(request) -> dict:
    with open(request.config.getoption("--hil-config"), encoding="utf-8") as f:
        cfg = json.load(f)
    for m in reversed(list(request.node.iter_markers("hil_config"))):
        cfg = _merge(cfg, m.kwargs)
    return cfg


@pytest.fixture
def codes(request) -> dict:
    o = request.config.getoption
    return {"master": o("--hil-code"), "duress": o("--hil-duress-code"),
            "teller": o("--hil-teller-code")}


@pytest.fixture
def hil_seed(request) -> int:
    """The run's link seed (one for every scenario of the run)."""
    return request.config.stash[_RUN]["seed"]


@pytest.fixture
def hil_timeline(request, hil_seed):
    tl = Timeline(request.node.nodeid)
    tl.seed = hil_seed
    request.node.stash[_TIMELINE] = tl
    yield tl
    node = request.node
    node.user_properties.append(("hil_seed", hil_seed))
    for lat in tl.latencies:
        node.user_properties.append(("latency_ms:" + lat["name"], round(lat["seconds"] * 1000, 1)))


def primary_is_serial(cfg: dict) -> bool:
    return ((cfg.get("receiver") or {}).get("primary") or {}).get("type") == "serial"


@pytest.fixture
def hil_serial(request, tmp_path, hil_config):
    """The serial line of a panel whose primary path is serial, else None.

    The receiver listens on one end of a socat pty pair; the link's serial
    side towards the receiver is the other end.  Towards the panel: on a
    bench the PC port wired to the board's path UART (``--hil-serial``);
    on the sim, whose "serial" path is a TCP stream (ser2net style), a
    socat bridge from a TCP port to a pty."""
    if not primary_is_serial(hil_config):
        yield None
        return
    pair = PtyPair(str(tmp_path / "line"))
    line = {"receiver_end": pair.b, "link_end": pair.a, "bridge": None}
    if target_kind(request.config) == "sim":
        port = free_port()
        bridge_pty = str(tmp_path / "panel-line")
        line["bridge"] = subprocess.Popen(
            ["socat", "pty,raw,echo=0,link=%s" % bridge_pty,
             "tcp-listen:%d,bind=127.0.0.1,reuseaddr" % port],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_sync(lambda: os.path.exists(bridge_pty), 10, what="the panel-side pty")
        line["panel_url"] = bridge_pty
        line["tcp"] = ("127.0.0.1", port)
    else:
        url = request.config.getoption("--hil-serial")
        if not url:
            pair.close()
            pytest.skip("the panel's primary path is serial: give --hil-serial URL")
        line["panel_url"] = url
    yield line
    if line["bridge"] is not None:
        line["bridge"].terminate()
        line["bridge"].wait(5)
    pair.close()


@pytest.fixture(scope="session")
def hil_store_templates(tmp_path_factory) -> StoreTemplates:
    """Receiver stores the CLI made once this run, per panel and profile."""
    return StoreTemplates(str(tmp_path_factory.mktemp("hil-stores")))


@pytest_asyncio.fixture
async def receiver(request, tmp_path, hil_timeline, hil_config, hil_serial,
                   hil_store_templates):
    rx = ReceiverUnderTest(str(tmp_path / "receiver"), hil_timeline,
                           serial=[hil_serial["receiver_end"]] if hil_serial else None)
    prof = request.node.get_closest_marker("hil_profile")
    kw = dict(prof.kwargs) if prof else {}
    kw.setdefault("heartbeat_s", hil_config.get("timings", {}).get("heartbeat_s", 60))
    kw.setdefault("grace_s", 30)
    rx.add_panel(hil_config, templates=hil_store_templates, **kw)
    await rx.start()
    yield rx
    await rx.close()


@pytest_asyncio.fixture
async def link(request, receiver, hil_timeline, hil_seed, hil_serial):
    o = request.config.getoption
    listen = o("--hil-listen")
    if hil_serial:
        primary = await SerialLink(hil_serial["panel_url"], hil_serial["link_end"],
                                   name="primary", seed=hil_seed,
                                   timeline=hil_timeline).start()
    else:
        primary = await TcpLink(receiver.tcp, listen=(listen, o("--hil-primary-port")),
                                name="primary", seed=hil_seed, timeline=hil_timeline).start()
    backup = await UdpLink(receiver.udp, listen=(listen, o("--hil-backup-port")),
                           name="backup", seed=hil_seed, timeline=hil_timeline).start()
    links = Links(primary=primary, backup=backup)
    yield links
    await links.close()


@pytest_asyncio.fixture
async def panel(request, tmp_path, link, hil_timeline, hil_config, hil_serial):
    o = request.config.getoption
    if target_kind(request.config) == "sim":
        if hil_serial:
            host, port = hil_serial["tcp"]
            paths = {"primary": {"type": "serial", "host": host, "port": port}}
        else:
            paths = {"primary": {"type": "tcp", "host": link.primary.address[0],
                                 "port": link.primary.address[1]}}
        if hil_config.get("receiver", {}).get("backup") is not None:
            paths["backup"] = {"type": "udp", "host": link.backup.address[0],
                               "port": link.backup.address[1]}
        target = SimTarget(hil_config, str(tmp_path / "panel"), paths=paths, name="sim",
                           timeline=hil_timeline)
    else:
        wiring = None
        if o("--hil-wiring"):
            with open(o("--hil-wiring"), encoding="utf-8") as f:
                wiring = json.load(f)
        target = open_target_url(o("--hil-target"), timeline=hil_timeline,
                                 fixture_url=o("--hil-fixture"), wiring=wiring)
        target.config = hil_config
        target.account = int(hil_config["account"])
        await target.open()
    yield target
    try:
        console = await target.read_console()
        if console:
            hil_timeline.record("panel", "console-tail", lines=console.count("\n"))
    finally:
        await target.close()


@pytest.fixture
def strategy(panel, receiver, codes):
    return PanelStrategy(panel, receiver, code=codes["master"])


# --- reporting ------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    result = yield
    tl = item.stash.get(_TIMELINE, None)
    if tl is None and "hil_timeline" in getattr(item, "fixturenames", ()):
        tl = Timeline(item.nodeid)  # skipped before its fixtures were set up
        tl.seed = item.config.stash[_RUN]["seed"]
    if tl is not None:
        info = item.stash.get(_OUTCOME, {"outcome": "passed", "longrepr": "", "duration": 0.0})
        doc = tl.as_dict()
        entry = {"nodeid": item.nodeid, "outcome": info["outcome"],
                 "longrepr": info["longrepr"], "duration": info["duration"], "timeline": doc}
        directory = item.config.getoption("--hil-report")
        if directory:
            try:
                entry["page"] = _report.write_scenario(directory, item.nodeid, doc,
                                                       info["outcome"], info["longrepr"],
                                                       info["duration"])["page"]
            except Exception as e:  # a report bug must not hide the results
                entry["page"] = ""
                item.config.issue_config_time_warning(
                    pytest.PytestWarning("HIL report for %s not written: %r" % (item.nodeid, e)),
                    stacklevel=2)
        item.config.stash[_RESULTS].append(entry)
    return result


EXECUTED = ("passed", "failed", "error")


def run_info(config, results: list) -> dict:
    """What names the run in the report's index: date, git revision,
    firmware version (as the panel's HELLO reported it to the receiver,
    else the version of the sources the sim runs), target, seed, counts."""
    from firmware import build as _build  # noqa: PLC0415

    run = dict(config.stash[_RUN])
    run["git_revision"] = _build.source_revision() or "unknown (not a git checkout)"
    versions = []
    for r in results:
        for e in r["timeline"].get("entries", []):
            if e["source"] == "receiver" and e["kind"] == "log":
                m = _HELLO_FW.search(e["detail"].get("text", ""))
                if m and m.group(1) not in versions:
                    versions.append(m.group(1))
    if versions:
        run["firmware_version"] = ", ".join(versions) + " (the panel's HELLO)"
    elif target_kind(config) == "sim":
        run["firmware_version"] = _build.firmware_version() + " (sources; no HELLO heard)"
    else:
        run["firmware_version"] = "unknown (no HELLO heard from the panel)"
    counts: dict = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    run["counts"] = counts
    run["executed"] = sum(counts.get(k, 0) for k in EXECUTED)
    return run


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    run = run_info(config, results)
    config.stash[_RUN] = run
    if run["executed"] == 0 and session.exitstatus == pytest.ExitCode.OK:
        # every scenario skipped: nothing was tested, which is not a pass
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
    directory = config.getoption("--hil-report")
    if directory:
        _report.write_index(directory, [
            {"nodeid": r["nodeid"], "outcome": r["outcome"], "page": r.get("page", ""),
             "duration": r["duration"], "latencies": r["timeline"]["latencies"],
             "seed": r["timeline"].get("seed"),
             "reason": _skip_reason(r["longrepr"]) if r["outcome"] == "skipped" else ""}
            for r in results], run=run)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    tr = terminalreporter
    run = config.stash.get(_RUN, {})
    tr.write_sep("=", "Guardline HIL: %d scenarios on target %s, seed %s" % (
        len(results), config.getoption("--hil-target"), run.get("seed")))
    if run.get("firmware_version"):
        tr.write_line("firmware %s, git revision %s, started %s" % (
            run["firmware_version"], run.get("git_revision"), run.get("started_at")))
    for r in results:
        tl = r["timeline"]
        lats = ", ".join("%s %.1f ms" % (x["name"], x["seconds"] * 1000)
                         for x in tl["latencies"])
        tr.write_line("%-7s %s  seed %s%s" % (r["outcome"].upper(), r["nodeid"], tl.get("seed"),
                                              ("  | " + lats) if lats else ""))
        if r["outcome"] == "skipped":
            tr.write_line("        skipped because: %s" % _skip_reason(r["longrepr"]))
    if run.get("executed") == 0:
        tr.write_line("NO SCENARIO RAN: all %d skipped (reasons above); this run proves "
                      "nothing (exit status %d)" % (len(results),
                                                    int(pytest.ExitCode.NO_TESTS_COLLECTED)),
                      red=True, bold=True)
    for r in results:
        if r["outcome"] in ("failed", "error"):
            tr.write_sep("-", "timeline of %s" % r["nodeid"])
            tr.write_line(_report.render_text(r["timeline"], r["outcome"], limit=120))
    directory = config.getoption("--hil-report")
    if directory:
        tr.write_line("HIL report: %s" % os.path.join(directory, "index.html"))
