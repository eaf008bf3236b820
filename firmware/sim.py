"""Run the panel firmware under the MicroPython unix port with the
simulated board, restarting it when the control socket asks for a power
cycle (the VM exits with status 3; the state directory is kept).

    python -m firmware.sim CONFIG.json [--control HOST:PORT] [--state-dir DIR]
                                     [--heapsize 64k] [--bundle DIR]

By default the VM runs the device sources straight from the repository
(MICROPYPATH = firmware/device : protocol/lean); ``--bundle`` runs a
bundle made by ``firmware.build`` (.mpy files) instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time

from firmware import DEVICE_DIR, LEAN_DIR

_LOGGER = logging.getLogger(__name__)

POWER_CYCLE = 3
DEFAULT_CONTROL = "127.0.0.1:7800"


def micropython() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else (shutil.which("micropython") or "micropython")


def command(config: str, state_dir: str, control: str = DEFAULT_CONTROL,
            heapsize: str | None = None, bundle: str | None = None) -> tuple[list, dict]:
    """The argv and environment that start one panel VM."""
    env = dict(os.environ)
    if bundle:
        env["MICROPYPATH"] = os.path.abspath(bundle) + os.pathsep + ".frozen"
        main = os.path.join(os.path.abspath(bundle), "main.py")
    else:
        env["MICROPYPATH"] = os.pathsep.join((DEVICE_DIR, LEAN_DIR, ".frozen"))
        main = os.path.join(DEVICE_DIR, "main.py")
    argv = [micropython()]
    if heapsize:
        argv += ["-X", "heapsize=%s" % heapsize]
    argv += [main, "--config", os.path.abspath(config), "--state-dir",
             os.path.abspath(state_dir), "--control", control]
    return argv, env


def run(config: str, state_dir: str, control: str = DEFAULT_CONTROL,
        heapsize: str | None = None, bundle: str | None = None,
        max_restarts: int | None = None, stdout=None) -> int:
    """Run until the panel stops for another reason than a power cycle."""
    os.makedirs(state_dir, exist_ok=True)
    argv, env = command(config, state_dir, control, heapsize, bundle)
    restarts = 0
    while True:
        rc = subprocess.call(argv, env=env, stdout=stdout, stderr=subprocess.STDOUT)
        if rc != POWER_CYCLE:
            return rc
        restarts += 1
        if max_restarts is not None and restarts > max_restarts:
            return rc
        _LOGGER.info("panel power cycle (%d)", restarts)
        time.sleep(0.2)  # the power is off for a moment


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="guardline-panel sim", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    a = ap.parse_args(argv)
    return run_args(a)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("config", help="panel config JSON (examples/bank.json)")
    ap.add_argument("--control", default=DEFAULT_CONTROL,
                    help="control socket HOST:PORT (default %(default)s)")
    ap.add_argument("--state-dir", default=None,
                    help="flash contents: queue, sequence store, sim inputs "
                         "(default var/panel-<config name>)")
    ap.add_argument("--heapsize", default=None, help="MicroPython heap, e.g. 64k")
    ap.add_argument("--bundle", default=None, help="run a firmware.build bundle")


def run_args(a) -> int:
    state = a.state_dir or os.path.join(
        "var", "panel-" + os.path.splitext(os.path.basename(a.config))[0])
    logging.basicConfig(level=logging.INFO)
    return run(a.config, state, a.control, a.heapsize, a.bundle)


if __name__ == "__main__":
    sys.exit(main())
