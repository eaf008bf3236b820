"""tests/vm_app_rig.py under the MicroPython VM: the real app on a board
whose inputs the host sets, for counting what it allocates (the
allocation tests and the firmware heap bench, issue 21).

Each call is one request, one reply (the ops are listed at the top of
tests/vm_app_rig.py); an error in the VM raises RuntimeError with its
traceback.  The VM is :func:`testkit.vm.micropython`'s unless one is
given ($GUARDLINE_MICROPYTHON first: a 32-bit build runs the same rig).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

from firmware import DEVICE_DIR, LEAN_DIR
from testkit import vm

APP_RIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                       "vm_app_rig.py")


class AppRig:
    """The rig's VM.  `path`: the VM's module path (default: the device
    sources and protocol/lean; a bundle directory runs its .mpy files)."""

    def __init__(self, path: str | None = None, micropython: str | None = None):
        mpath = path or os.pathsep.join((DEVICE_DIR, LEAN_DIR))
        env = dict(os.environ, MICROPYPATH=mpath + os.pathsep + ".frozen")
        # cwd: the VM puts the script's directory first on sys.path, never
        # the cwd; a neutral cwd keeps a stray module out all the same
        self._err = tempfile.TemporaryFile()  # the panel's console
        self.proc = subprocess.Popen([micropython or vm.micropython(), "-X", "heapsize=2m",
                                      APP_RIG], env=env, cwd=path or DEVICE_DIR,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, bufsize=1)

    def console(self) -> str:
        self._err.seek(0)
        return self._err.read().decode("utf-8", "replace")

    def __call__(self, **req) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the rig's VM exited: %s" % self.console()[-2000:])
        rep = json.loads(line)
        if "error" in rep:
            raise RuntimeError("in the VM: %s" % rep["error"])
        return rep

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
