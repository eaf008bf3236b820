"""Every ``guardline-panel`` and ``guardline-hil`` subcommand, run as its
user runs it (a subprocess, no terminal on stdin), with the mistakes a
person makes: a file that is not there, a port nothing listens on, a link
that drops, an address that is no address, a missing password.  Each must
end with a message and a non-zero exit status, never a Python traceback.

The subcommands are read from the tools' own argparse parsers, so a new
subcommand without bad-input cases here fails
``test_every_subcommand_has_bad_input_cases``.  (guardline-receiver's are
tested the same way in the receiver's CLI tests.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from firmware import REPO
from firmware import build as fwbuild
from firmware import cli as panel_cli
from firmware import provision as prov
from hil import cli as hil_cli
from testkit import vm
from testkit.net import free_port

DOOR = os.path.join(REPO, "examples", "door.json")
VAN = os.path.join(REPO, "examples", "van.json")
TOOLS = {"guardline-panel": ("firmware.cli", panel_cli.build_parser),
         "guardline-hil": ("hil.cli", hil_cli.build_parser)}


def subcommands(parser: argparse.ArgumentParser, prefix=()) -> list[tuple]:
    """Every leaf subcommand of a parser, as a tuple of words (``("user",
    "add")``).  argparse has no public accessor for its subparsers."""
    out = []
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                out += subcommands(sub, prefix + (name,)) or [prefix + (name,)]
    return out


# (tool, argv, expected in stderr).  {placeholders} are filled from the
# `env` fixture; the expected text is what the person needs to read.
CASES = [
    # -- guardline-panel ---------------------------------------------------------------
    ("guardline-panel", ["sim", "{tmp}/nowhere/config.json"], "no such config file"),
    ("guardline-panel", ["sim", DOOR, "--control", "7800"], "expected HOST:PORT"),
    ("guardline-panel", ["sim", DOOR, "--control", "127.0.0.1:{taken}", "--state-dir",
                         "{tmp}/state"], "the control socket 127.0.0.1:{taken} could not be "
                                         "opened"),
    ("guardline-panel", ["new", "--kind", "door", "--account", "7", "--receiver",
                         "rx1.example:7700", "--wifi-ssid", "Site-IoT", "-o", "{tmp}/w.json"],
     "no Wi-Fi password for Site-IoT"),
    ("guardline-panel", ["new", "--kind", "bank", "--from-template", "{empty_template}",
                         "-o", "{tmp}/e.json"], "give --receiver"),
    ("guardline-panel", ["new", "--kind", "door", "--account", "7", "--receiver",
                         "0.0.0.0:7700", "-o", "{tmp}/z.json"], "the address the receiver "
                                                                "listens on"),
    ("guardline-panel", ["new", "--kind", "door", "--from-template", "{tmp}/none.json", "-o",
                         "{tmp}/n.json"], "cannot read"),
    ("guardline-panel", ["new", "--kind", "door", "--account", "7", "--receiver",
                         "rx1.example:7700", "-o", "{tmp}/no/such/dir/site.json"],
     "No such file or directory"),
    ("guardline-panel", ["user", "add", "{tmp}/none.json", "--id", "1", "--name", "x",
                         "--code", "2958"], "cannot read"),
    ("guardline-panel", ["user", "add", "{config}", "--id", "1", "--name", "x"],
     "no code: give --code"),
    ("guardline-panel", ["user", "remove", "{config}", "--id", "99"], "no user 99"),
    ("guardline-panel", ["user", "list", "{notjson}"], "not valid JSON"),
    ("guardline-panel", ["check", "{tmp}/none.json"], "cannot read"),
    ("guardline-panel", ["check", "{notjson}"], "not valid JSON"),
    ("guardline-panel", ["check", DOOR, "--template", "{tmp}/none.json"], "cannot read"),
    # a vehicle unit's section (docs/mobile.md), as an installer gets it wrong
    ("guardline-panel", ["check", "{van_one_point}"],
     "vehicle.corridor.line: needs 2..200 points, got 1"),
    ("guardline-panel", ["check", "{van_negative_speed}"],
     "vehicle.door_open_kmh: -10 is out of range 1..250"),
    ("guardline-panel", ["check", "{van_bad_geofence}"],
     "vehicle.allowed_zones[0].center: [4.882, 152.368] is not [longitude, latitude]"),
    ("guardline-panel", ["check", "--strict", "{van_swapped}"],
     "vehicle.allowed_zones[0]: 6,828 km from the route corridor's line: [longitude, latitude] "
     "written the other way round?"),
    ("guardline-panel", ["hash-code", "--salt", "zz", "2958"], "--salt"),
    ("guardline-panel", ["ctl", "--control", "127.0.0.1:{free}", '{"cmd": "state"}'],
     "nothing listens on 127.0.0.1:{free}"),
    ("guardline-panel", ["ctl", "--control", "127.0.0.1:{free}", "state"], "not JSON"),
    ("guardline-panel", ["ctl", "--control", "sim-host", '{"cmd": "state"}'],
     "expected HOST:PORT"),
    ("guardline-panel", ["build", "{tmp}/none.json", "-o", "{tmp}/b1"], "cannot read"),
    ("guardline-panel", ["build", DOOR, "-o", "{project}"], "not a firmware bundle's"),
    ("guardline-panel", ["flash", "--port", "{tmp}/ttyGone", "--retries", "0", "{bundle}"],
     "cannot open"),
    ("guardline-panel", ["flash", "--port", "{dropping_port}", "--retries", "0", "{bundle}"],
     "--resume"),
    ("guardline-panel", ["verify", "--port", "{tmp}/ttyGone"], "cannot open"),
    ("guardline-panel", ["runtime", "--board", "esp32", "--port", "/dev/null", "--dry-run",
                         "{tmp}/none.bin"], "cannot read"),
    ("guardline-panel", ["runtime", "--board", "rp2", "--dry-run", "{notjson}"],
     "not a UF2 file"),
    ("guardline-panel", ["walk-test", "--bundle", "{tmp}/none"], "cannot read"),
    ("guardline-panel", ["walk-test", "--config", DOOR, "--receiver-db", "{tmp}/none.db"],
     "no such receiver store"),
    ("guardline-panel", ["walk-test", "--config", DOOR, "--receiver-db", "{notjson}"],
     "not a receiver store"),
    ("guardline-panel", ["walk-test", "--config", DOOR, "--receiver-db", "{tmp}/rx.db",
                         "--auto", "--code", "1234", "--control", "127.0.0.1:{free}",
                         "--report", "{notjson}"], "nothing listens on 127.0.0.1:{free}"),
    # -- guardline-hil -------------------------------------------------------------------
    ("guardline-hil", ["list", "--colour"], "unrecognized arguments"),
    ("guardline-hil", ["run", "--target", "usb0"], "expected sim, or serial:URL"),
    ("guardline-hil", ["run", "--target", "serial:///dev/ttyUSB9"], "no such port"),
    ("guardline-hil", ["run", "--target", "/dev/ttyUSB0"], "did you mean serial:///dev/"),
    ("guardline-hil", ["run", "--config", "{tmp}/none.json"], "cannot read"),
    ("guardline-hil", ["run", "levitation"], "no scenario 'levitation'"),
    ("guardline-hil", ["report", "{tmp}/none"], "No such file"),
    ("guardline-hil", ["report", "{tmp}"], "no scenario results"),
]


# examples/van.json with one mistake: (path in its "vehicle" section, value)
VAN_MISTAKES = {
    "van_one_point": (("corridor", "line"), [[4.882, 52.368]]),
    "van_same_points": (("corridor", "line"), [[4.882, 52.368], [4.882, 52.368]]),
    "van_negative_speed": (("door_open_kmh",), -10),
    "van_bad_geofence": (("allowed_zones", 0, "center"), [4.882, 152.368]),
    "van_flat_polygon": (("allowed_zones", 1, "polygon"),
                         [[4.8975, 52.3745], [4.898, 52.375], [4.8985, 52.3755]]),
    "van_figure_eight": (("allowed_zones", 1, "polygon"),
                         [[4.8975, 52.3745], [4.8985, 52.3755], [4.8985, 52.3745],
                          [4.8975, 52.3755]]),
    "van_swapped": (("allowed_zones", 0, "center"), [52.368, 4.882]),
    "van_crossed": (("allowed_zones", 1, "polygon"),
                    [[4.8975, 52.3745], [4.8985, 52.3755], [4.8985, 52.3745],
                     [4.897, 52.3757]]),
    "van_far_turn": (("corridor", "line"), [[4.882, 52.368], [52.368, 4.886]]),
}


def van_with(mistake) -> dict:
    path, value = mistake
    doc = json.loads(open(VAN, encoding="utf-8").read())
    d = doc["vehicle"]
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    return doc


def test_vehicle_shapes_an_installer_gets_wrong_are_named(tmp_path):
    """Each mistake in a van's geofences and corridor is named by its
    field, with what to do: an error where the shape means nothing (no
    area, no length), a warning where it is valid but cannot be what was
    drawn (edges that cross, shapes thousands of kilometres apart); the
    example itself has neither."""
    def check(name):
        p = tmp_path / (name + ".json")
        p.write_text(json.dumps(van_with(VAN_MISTAKES[name])))
        cfg, errors, warnings = prov.check_file(str(p))
        return [e.split("\n")[0].split(": ", 1)[1] for e in errors], \
            [w.split("\n")[0].split(": ", 1)[1] for w in warnings if "placeholder" not in w]

    assert check("van_same_points") == (
        ["vehicle.corridor.line: all its points are the same place: a route needs two "
         "different points"], [])
    flat = ["vehicle.allowed_zones[1].polygon: its points enclose no area (all on one line, "
            "or a figure eight): list the corners in order around the zone"]
    assert check("van_flat_polygon") == (flat, [])
    assert check("van_figure_eight") == (flat, [])
    assert check("van_crossed") == ([], [
        "vehicle.allowed_zones[1].polygon: its edges cross (point 0 to 1 and point 2 to 3): "
        "list the corners in their order around the zone"])
    assert check("van_far_turn") == ([], [
        "vehicle.corridor.line[1]: 6,828 km from the point before it: [longitude, latitude] "
        "written the other way round? (the config's order is GeoJSON's: longitude first)"])
    _, errors, warnings = prov.check_file(VAN)
    assert not errors and all("placeholder" in w for w in warnings), warnings


def test_every_subcommand_has_bad_input_cases():
    for tool, (_, parser) in TOOLS.items():
        subs = subcommands(parser())
        assert len(subs) >= 3, subs
        for sub in subs:
            assert any(t == tool and tuple(argv[:len(sub)]) == sub for t, argv, _ in CASES), \
                "%s %s has no bad-input case in %s" % (tool, " ".join(sub), __name__)


def fill(text: str, env: dict) -> str:
    for k, v in env.items():
        text = text.replace("{%s}" % k, v)
    return text


def _receiver_store(path) -> None:
    """A receiver store with the door's account, made by the receiver's CLI."""
    r = subprocess.run([sys.executable, "-m", "receiver.cli", "--db", str(path), "accounts",
                        "add", "1002", "--kind", "door"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    empty = tmp / "template.json"
    empty.write_text(json.dumps({"account": 1001, "key": "ab" * 32, "receivers": [],
                                 "heartbeat_s": 60}))
    config = tmp / "site.json"
    shutil.copy(DOOR, config)
    notjson = tmp / "notes.txt"
    notjson.write_text("this is not JSON\n")
    project = tmp / "project"
    project.mkdir()
    (project / "tool.py").write_text("print('my own script')\n")
    for name, path in VAN_MISTAKES.items():
        (tmp / (name + ".json")).write_text(json.dumps(van_with(path)))
    _receiver_store(tmp / "rx.db")
    bundle = str(tmp / "bundle")
    fwbuild.bundle(bundle, "sim", DOOR)
    values = {"tmp": str(tmp), "taken": str(taken.getsockname()[1]), "free": str(free_port()),
              "empty_template": str(empty), "config": str(config), "notjson": str(notjson),
              "project": str(project), "bundle": bundle, "dropping_port": str(tmp / "ttyV0"),
              **{name: str(tmp / (name + ".json")) for name in VAN_MISTAKES}}
    board = None
    if shutil.which("socat") and vm.available():
        # the unix port behind a pty: a soft reset (flash without --resume)
        # ends the VM, and the link drops under the tool (EIO)
        fs = tmp / "device"
        fs.mkdir()
        board = subprocess.Popen(
            ["socat", "PTY,link=%s,raw,echo=0" % values["dropping_port"],
             "EXEC:%s,pty,raw,echo=0,stderr,setsid,ctty" % vm.micropython()],
            cwd=str(fs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        end = time.monotonic() + 30
        while not os.path.exists(values["dropping_port"]) and time.monotonic() < end:
            time.sleep(0.05)
    yield values
    taken.close()
    if board is not None:
        for sig in (signal.SIGTERM, signal.SIGKILL):  # socat and the VM it started
            try:
                os.killpg(board.pid, sig)
                board.wait(10)
                break
            except ProcessLookupError:
                board.wait(10)
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.mark.parametrize("tool, argv, expected", CASES,
                         ids=["%s %s" % (t, " ".join(a)[:60]) for t, a, _ in CASES])
def test_bad_input_gets_a_message_and_a_failure_status_never_a_traceback(env, tool, argv,
                                                                          expected):
    if "{dropping_port}" in argv and not os.path.exists(env["dropping_port"]):
        pytest.skip("needs socat and the MicroPython VM")
    args = [fill(a, env) for a in argv]
    # no terminal at all: stdin from /dev/null and no controlling tty (getpass
    # would otherwise open /dev/tty), as under cron, CI or a pipe
    r = subprocess.run([sys.executable, "-m", TOOLS[tool][0], *args], cwd=env["tmp"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                       start_new_session=True)
    said = r.stdout + r.stderr
    assert "Traceback" not in said, said
    assert r.returncode != 0, said
    assert r.stderr.strip(), "no message; stdout:\n" + r.stdout
    assert fill(expected, env) in r.stderr, said


def test_control_refusals_are_sentences_without_class_names(tmp_path):
    """The sim's control protocol answers a bad request with its reason
    only: never "ValueError: ..." (firmware/device/control.py refused)."""
    from testkit.inproc import InProcessPanel  # noqa: PLC0415

    with open(DOOR, encoding="utf-8") as f:
        panel = InProcessPanel(json.load(f), str(tmp_path / "flash"))
    panel.power_on()
    assert panel.ctl({"cmd": "clock", "skew_s": 5}) == \
        {"ok": False, "error": 'clock not set yet: give "set"'}
    assert panel.ctl({"cmd": "key"}) == {"ok": False, "error": 'missing "code"'}
    assert panel.ctl({"cmd": "levitate"}) == {"ok": False, "error": "unknown cmd 'levitate'"}
    said = panel.ctl({"cmd": "clock", "set": "soon"})["error"]
    assert "soon" in said and "Error" not in said, said
