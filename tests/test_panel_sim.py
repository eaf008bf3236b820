"""``guardline-panel sim``, the launcher of the simulated panel, as a user
runs it: its VM ends with it whatever ends the launcher, its state is the
panel's (account and receiver), not the config file's name, and a control
port it cannot open stops it with a message.  The real MicroPython VM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from firmware import REPO
from firmware import sim as fwsim
from testkit import vm
from testkit.net import free_port
from testkit.wait import process_alive, wait_until_sync

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

DOOR = os.path.join(REPO, "examples", "door.json")
BANK = os.path.join(REPO, "examples", "bank.json")


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d))
    return out


def launch(tmp_path, config, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "firmware.cli", "sim", config, *args],
                            cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)


def control_answers(control: str) -> bool:
    host, port = control.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.sendall(b'{"cmd": "ping"}\n')
            return b'"ok": true' in s.makefile("rb").readline()
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGHUP],
                         ids=["SIGTERM", "SIGKILL", "SIGHUP"])
def test_ending_the_launcher_ends_the_vm(tmp_path, sig):
    """Seen: `kill PID` of guardline-panel sim left the VM running,
    orphaned, still reporting as the panel."""
    control = "127.0.0.1:%d" % free_port()
    p = launch(tmp_path, DOOR, "--control", control, "--state-dir", str(tmp_path / "st"))
    vms = []
    try:
        wait_until_sync(lambda: control_answers(control), 60, what="the panel's control socket")
        vms = children(p.pid)
        (vm,) = vms
        p.send_signal(sig)
        p.wait(30)
        wait_until_sync(lambda: not process_alive(vm), 30, what="the VM %d to end" % vm)
        assert not control_answers(control)
        if sig != signal.SIGKILL:
            assert p.returncode == 128 + sig
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for vm in vms:
            if process_alive(vm):
                os.kill(vm, signal.SIGKILL)
        p.stdout.close()


def _config(tmp_path, name: str, src: str, **over) -> str:
    doc = json.load(open(src))
    doc.update(over)
    d = tmp_path / name
    d.mkdir()
    path = d / "config.json"  # as in every bundle
    path.write_text(json.dumps(doc))
    return str(path)


def _boot_line(tmp_path, config: str) -> str:
    """Start the sim with its default state directory, read its boot line
    ("panel N up: ... next seq S"), stop it through the control socket."""
    control = "127.0.0.1:%d" % free_port()
    p = launch(tmp_path, config, "--control", control)
    try:
        wait_until_sync(lambda: control_answers(control), 60, what="the panel's control socket")
        host, port = control.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b'{"cmd": "stop"}\n')
            s.makefile("rb").readline()
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, out
    return [line for line in out.splitlines() if " up: " in line][0]


def test_default_state_is_the_panels_not_the_config_file_names(tmp_path):
    """Seen: two bundles' config.json shared var/panel-config; the second
    panel started at the first one's sequence and its receiver NAKed it as
    a replay."""
    bank = _config(tmp_path, "bundle-bank", BANK)
    door = _config(tmp_path, "bundle-door", DOOR)
    first = _boot_line(tmp_path, bank)
    again = _boot_line(tmp_path, bank)  # the same panel: its own sequence, moved on
    door_line = _boot_line(tmp_path, door)
    seq = {name: int(line.rsplit("next seq", 1)[1]) for name, line in
           (("first", first), ("again", again), ("door", door_line))}
    assert seq["again"] > seq["first"]
    assert seq["door"] == seq["first"]  # a fresh panel, not the bank's sequence
    assert sorted(os.listdir(tmp_path / "var")) == ["panel-1001-127.0.0.1-7700",
                                                    "panel-1002-127.0.0.1-7700"]
    # the same account at another receiver is another sequence space
    other = _config(tmp_path, "bundle-moved", BANK, receiver={
        "primary": {"type": "tcp", "host": "rx2.example", "port": 7701}})
    assert fwsim.default_state_dir(other) == os.path.join("var", "panel-1001-rx2.example-7701")


def until_it_ends(p) -> str:
    """The launcher's output once it has ended by itself (60 s at most);
    one that ran on is ended with its VM, for the next tests."""
    try:
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            vms = children(p.pid)
            p.kill()
            p.communicate()
            for v in vms:
                os.kill(v, signal.SIGKILL)
    return out


def test_a_taken_control_port_stops_the_panel_with_a_message(tmp_path):
    """Seen: the VM printed EADDRINUSE and ran on, reporting, with no
    control socket: a panel nobody can drive."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        control = "127.0.0.1:%d" % taken.getsockname()[1]
        p = launch(tmp_path, DOOR, "--control", control, "--state-dir", str(tmp_path / "st"))
        out = until_it_ends(p)
    finally:
        taken.close()
    assert p.returncode == 1, out
    assert "cannot listen: the port is taken (EADDRINUSE" in out  # the VM's console
    assert "guardline-panel sim: the control socket %s could not be opened" % control in out
    assert "Traceback" not in out


def test_a_taken_gps_port_stops_a_vehicle_unit_with_a_message(tmp_path):
    """A van whose GNSS socket cannot be opened would drive blind: the
    VM says why and stops (status 5), the launcher says which flag to
    change, as for the control socket."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    gps = "127.0.0.1:%d" % taken.getsockname()[1]
    try:
        p = launch(tmp_path, os.path.join(REPO, "examples", "van.json"),
                   "--control", "127.0.0.1:%d" % free_port(), "--gps", gps,
                   "--state-dir", str(tmp_path / "st"))
        out = until_it_ends(p)
    finally:
        taken.close()
    assert p.returncode == 1, out
    assert "GPS socket %s: cannot listen" % gps in out  # the VM's console
    assert "guardline-panel sim: the GPS socket %s could not be opened" % gps in out
    assert "Traceback" not in out
    assert fwsim.NO_GPS == 5
