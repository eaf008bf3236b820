"""Run a driver script under the real MicroPython unix VM, in batches.

Tests that prove the lean code (protocol/lean) right under MicroPython
start one VM per batch, not per case: the host prepares many cases, the
driver handles them one JSON line at a time, and the host compares.

The driver protocol is deliberately tiny so that a driver is a few lines of
MicroPython:

- stdin carries one JSON object per line (bytes as hex strings: MicroPython
  has bytes.fromhex() and bytes.hex());
- the driver writes exactly one JSON line to stdout per input line, in
  order, and nothing else to stdout (diagnostics go to stderr);
- the driver exits 0 at end of input.

A driver that uses the shared loop looks like this::

    import json, sys
    import glwire                     # protocol/lean is on sys.path

    def handle(case):
        return {"crc": glwire.crc16(bytes.fromhex(case["data"]))}

    while True:
        line = sys.stdin.readline()
        if not line:
            break
        print(json.dumps(handle(json.loads(line))))

and is run with::

    results = run_driver(DRIVER_SOURCE, [{"data": "474c"}, ...])

`run_driver` puts protocol/lean (and any `extra_path`) on the VM's module
path through MICROPYPATH, so `import glwire` works as it does on a board
whose /lib holds those files.  The VM's heap can be limited (`heapsize`,
passed as `-X heapsize=`) to check that code fits a small board; with
`precompiled=True` the modules and the driver are first compiled with
mpy-cross and run as .mpy files, as a board runs them.
"""

import json
import os
import subprocess
import tempfile
from pathlib import Path

from testkit import vm

REPO = Path(__file__).resolve().parent.parent
LEAN_DIR = REPO / "protocol" / "lean"

# A batch that has not finished in this long is a hung VM, not a slow one;
# the largest batches in the suite finish in a few seconds.
DEFAULT_TIMEOUT_S = 120


class MicroPythonError(AssertionError):
    """The VM failed: non-zero exit, garbage on stdout, or a wrong count of
    result lines.  Carries the VM's stderr for the test report."""


def available():
    return vm.available()


def run_driver(driver, cases, heapsize=None, extra_path=(), precompiled=False,
               timeout=DEFAULT_TIMEOUT_S, one_result_per_case=True):
    """Run `driver` (a path to a .py file, or its source as a str) under the
    MicroPython VM, feed it `cases` (JSON-able objects) one per line, and
    return the list of JSON objects it printed.

    heapsize: e.g. "64k" to emulate a small board (micropython -X heapsize).
    extra_path: more directories for the VM's module path (after protocol/lean).
    precompiled: compile protocol/lean, `extra_path` and the driver with
      mpy-cross first and run the .mpy files, as a board does.  Needed for
      small heaps: compiling glwire.py from source on the VM alone takes
      more than 64 KiB.
    one_result_per_case: raise MicroPythonError unless the driver printed
      exactly one line per case."""
    cases = list(cases)
    with tempfile.TemporaryDirectory(prefix="mpy_driver_") as tmp:
        tmp = Path(tmp)
        if isinstance(driver, Path) or (isinstance(driver, str) and "\n" not in driver
                                        and driver.endswith(".py")):
            script = Path(driver)
        else:
            script = tmp / "mpy_driver.py"
            script.write_text(driver)
        path = [LEAN_DIR] + [Path(p) for p in extra_path]
        cmd = [vm.micropython()]
        if heapsize:
            cmd += ["-X", "heapsize=%s" % heapsize]
        if precompiled:
            out = tmp / "mpy"
            out.mkdir()
            for src in [script] + [f for d in path for f in sorted(Path(d).glob("*.py"))]:
                rc, err = mpy_cross(src, out)
                if rc:
                    raise MicroPythonError("mpy-cross %s failed:\n%s" % (src, err))
            path = [out]
            cmd += ["-m", script.stem]
        else:
            cmd.append(str(script))
        env = dict(os.environ)
        # .frozen keeps the VM's frozen modules (asyncio, ...) importable.
        env["MICROPYPATH"] = os.pathsep.join([str(p) for p in path] + [".frozen"])
        stdin = "".join(json.dumps(c) + "\n" for c in cases)
        proc = subprocess.run(cmd, input=stdin.encode(), capture_output=True,
                              env=env, timeout=timeout)
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise MicroPythonError("micropython exited %d:\n%s" % (proc.returncode, err))
    results = []
    for line in proc.stdout.decode("utf-8", "surrogateescape").splitlines():
        try:
            results.append(json.loads(line))
        except ValueError:
            raise MicroPythonError("driver printed a non-JSON line %r\nstderr:\n%s"
                                   % (line[:200], err)) from None
    if one_result_per_case and len(results) != len(cases):
        raise MicroPythonError("driver returned %d results for %d cases\nstderr:\n%s"
                               % (len(results), len(cases), err))
    return results


def mpy_cross(source_path, out_dir):
    """Compile one file with mpy-cross; -> (returncode, stderr text)."""
    out = Path(out_dir) / (Path(source_path).stem + ".mpy")
    proc = subprocess.run([vm.mpy_cross(), "-o", str(out), str(source_path)],
                          capture_output=True)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")
