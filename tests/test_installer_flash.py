"""``guardline-panel flash`` / ``verify`` against the real MicroPython VM
behind a pseudo-terminal, as a board sits behind its USB serial port:

    socat PTY,link=TTY,raw,echo=0 EXEC:micropython,pty,raw,echo=0,stderr,setsid,ctty

run with its working directory in a temp dir, which is the "board's"
filesystem: mpremote's raw REPL writes the files there.  The unix port
has no soft reset, hence ``--resume``.  The hashes are computed by the VM
(hashlib on the device); a file changed on the device afterwards must be
caught by ``verify``.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from firmware import REPO
from firmware import build as fwbuild
from firmware import cli
from firmware import flash as fwflash
from testkit import vm

pytestmark = pytest.mark.micropython

if not shutil.which("socat"):
    pytest.skip("socat is not installed", allow_module_level=True)
if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

DOOR = os.path.join(REPO, "examples", "door.json")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return {board: (str(d / board), fwbuild.bundle(str(d / board), board, DOOR))
            for board in ("sim", "esp32")}


@pytest.fixture
def board(tmp_path):
    """(port, the device's filesystem directory)."""
    fs = tmp_path / "device"
    fs.mkdir()
    link = str(tmp_path / "ttyV0")
    proc = subprocess.Popen(
        ["socat", "PTY,link=%s,raw,echo=0" % link,
         "EXEC:%s,pty,raw,echo=0,stderr,setsid,ctty" % vm.micropython()],
        cwd=str(fs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    end = time.monotonic() + 30
    while not os.path.exists(link):
        assert proc.poll() is None, "socat exited"
        assert time.monotonic() < end, "no pty from socat"
        time.sleep(0.05)
    yield link, fs
    os.killpg(proc.pid, signal.SIGTERM)  # socat and the VM it started
    proc.wait(10)


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_flash_copies_every_file_and_verifies_on_the_device(board, bundles, capsys):
    port, fs = board
    bdir, m = bundles["sim"]
    (fs / "panel.py").write_text("raise SystemExit('stale source shadowing panel.mpy')\n")
    (fs / "notes.txt").write_text("not ours\n")
    assert cli.main(["flash", "--port", port, "--resume", bdir]) == 0
    out = capsys.readouterr()
    assert "flashed and verified on the device: %d files" % (len(m["files"]) + 1) in out.out
    assert "verified on device" in out.err and "writing" in out.err  # progress shown
    for f in m["files"]:
        assert sha(fs / f["name"]) == f["sha256"], f["name"]
    assert (fs / "manifest.json").read_bytes() == open(os.path.join(bdir, "manifest.json"),
                                                        "rb").read()
    assert not (fs / "panel.py").exists()  # would shadow panel.mpy on import
    assert (fs / "notes.txt").exists()  # not a module: left alone
    rec = fwflash.latest_record(bdir)
    assert rec["verified"] and rec["bundle_sha256"] == m["bundle_sha256"]
    assert rec["device"]["platform"] == "linux" and rec["removed"] == ["panel.py"]
    assert all(r["device_sha256"] == r["sha256"] for r in rec["files"])

    # verify against the manifest the device carries, then against the bundle
    assert cli.main(["verify", "--port", port, "--resume"]) == 0
    assert m["bundle_sha256"] in capsys.readouterr().out
    assert cli.main(["verify", "--port", port, "--resume", bdir]) == 0


def test_verify_catches_a_file_changed_on_the_device_and_flash_repairs_it(board, bundles,
                                                                          capsys):
    port, fs = board
    bdir, m = bundles["sim"]
    assert cli.main(["flash", "--port", port, "--resume", bdir]) == 0
    capsys.readouterr()
    body = bytearray((fs / "reporter.mpy").read_bytes())
    body[len(body) // 2] ^= 0x01  # one bit, same size
    (fs / "reporter.mpy").write_bytes(bytes(body))
    assert cli.main(["verify", "--port", port, "--resume", "--json"]) == 1
    out = capsys.readouterr()
    assert "1 file(s) differ from the manifest: reporter.mpy" in out.err
    rows = {r["name"]: r for r in json.loads(out.out)["files"]}
    assert rows["reporter.mpy"]["device_sha256"] == hashlib.sha256(body).hexdigest()
    assert not rows["reporter.mpy"]["ok"] and rows["panel.mpy"]["ok"]
    (fs / "glwire.mpy").unlink()
    assert cli.main(["verify", "--port", port, "--resume", bdir]) == 1
    assert "glwire.mpy, reporter.mpy" in capsys.readouterr().err

    # flashing again rewrites what differs (and main.py, always last), nothing else
    assert cli.main(["flash", "--port", port, "--resume", bdir]) == 0
    capsys.readouterr()
    rec = fwflash.latest_record(bdir)
    written = sorted(r["name"] for r in rec["files"] if r["action"] == "written")
    assert written == ["glwire.mpy", "main.py", "reporter.mpy"]
    assert sha(fs / "reporter.mpy") == {f["name"]: f["sha256"] for f in m["files"]}[
        "reporter.mpy"]
    assert cli.main(["verify", "--port", port, "--resume"]) == 0


def test_flash_refuses_an_altered_bundle_and_the_wrong_board(board, bundles, tmp_path,
                                                             capsys):
    port, fs = board
    bdir, _ = bundles["sim"]
    altered = str(tmp_path / "altered")
    shutil.copytree(bdir, altered)
    with open(os.path.join(altered, "config.json"), "a") as f:
        f.write(" ")
    assert cli.main(["flash", "--port", port, "--resume", altered]) == 1
    assert "config.json: sha256 differs from the manifest" in capsys.readouterr().err
    assert os.listdir(fs) == []  # nothing was sent
    esp, _ = bundles["esp32"]
    assert cli.main(["flash", "--port", port, "--resume", esp]) == 1
    assert "is for board 'esp32'" in capsys.readouterr().err
    assert os.listdir(fs) == []


def test_runtime_wait_for_repl_identifies_the_board(board):
    port, _ = board
    ident = fwflash.wait_for_repl(port, timeout=30)
    assert ident["platform"] == "linux" and "MicroPython" in ident["version"]


def test_flash_retries_a_link_that_is_not_there(tmp_path, bundles, capsys):
    bdir, _ = bundles["sim"]
    gone = str(tmp_path / "ttyGone")
    assert cli.main(["flash", "--port", gone, "--resume", "--retries", "1",
                     "--retry-wait", "0", bdir]) == 1
    err = capsys.readouterr().err
    assert "retrying (1/1)" in err and "%s: cannot open" % gone in err
    assert fwflash.latest_record(bdir) is None or fwflash.latest_record(bdir)["port"] != gone


def test_flash_without_resume_when_the_link_drops_says_so(board, bundles, capsys):
    """Seen: `flash` without --resume on a board whose link drops at the
    soft reset (the unix port ends; a pty answers EIO) printed an OSError
    traceback.  It is a link error: retried, then a message."""
    port, fs = board
    bdir, _ = bundles["sim"]
    assert cli.main(["flash", "--port", port, "--retries", "1", "--retry-wait", "0",
                     bdir]) == 1
    err = capsys.readouterr().err
    assert "needs --resume" in err and "retrying (1/1)" in err
    assert os.listdir(fs) == []


def test_a_device_side_error_is_not_retried_as_a_link_error(board, bundles, capsys):
    """mpremote's TransportExecError (an exception on the device) is a
    subclass of its TransportError: caught as a link error, a write the
    device refuses was retried as if the cable had dropped."""
    port, fs = board
    bdir, _ = bundles["sim"]
    (fs / "glwire.mpy").mkdir()  # the device cannot open it for writing
    assert cli.main(["flash", "--port", port, "--resume", "--retries", "2",
                     "--retry-wait", "0", bdir]) == 1
    err = capsys.readouterr().err
    assert "writing glwire.mpy failed: device error: " in err and "EISDIR" in err
    assert "retrying" not in err
