"""Run the panel firmware under the MicroPython unix port with the
simulated board, restarting it when the control socket asks for a power
cycle (the VM exits with status 3; the state directory is kept).

    python -m firmware.sim CONFIG.json [--control HOST:PORT] [--state-dir DIR]
                                     [--heapsize 64k] [--bundle DIR] [--gps HOST:PORT]
                                     [--route GPX [--speedup X] [--stop AT:DUR] [--lose AT:DUR]]

By default the VM runs the device sources straight from the repository
(MICROPYPATH = firmware/device : protocol/lean); ``--bundle`` runs a
bundle made by ``firmware.build`` (.mpy files) instead.

What the launcher keeps true:

- The VM never outlives the launcher: SIGTERM, SIGHUP or SIGINT to the
  launcher ends the VM first (and no power cycle restarts it), and on
  Linux the VM is started with a parent-death signal, so even a SIGKILL of
  the launcher ends it.  An orphaned VM would go on reporting as the panel.
- The default state directory (the panel's flash: queue, sequence store)
  is keyed by the account and the primary receiver, not by the config's
  file name: two bundles' ``config.json`` are two panels, and a panel
  started on another's sequence store is NAKed by its receiver as a
  replay.
- A control port that cannot be bound ends the VM with status 4
  (simctl.py) and the launcher says so; a simulated panel nobody can
  drive is not left running.  So does a vehicle unit's GPS socket (status
  5, board_sim.py).
- A vehicle unit (kind "vehicle", "patrol") gets its GNSS receiver's
  NMEA on the --gps socket (default: the control port + 1); ``--route``
  replays a GPX route there (gpsreplay.Feeder) for as long as the launcher
  runs, across power cycles.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time

from firmware import DEVICE_DIR, LEAN_DIR
from testkit import vm
from testkit.control import DEFAULT_CONTROL, parse_address

_LOGGER = logging.getLogger(__name__)

POWER_CYCLE = 3  # main.py: the VM asks for a restart
NO_CONTROL = 4  # simctl.py: the control socket could not be opened
NO_GPS = 5  # board_sim.py: a vehicle unit's GPS socket could not be opened
# Signals that end the launcher, and with it the VM.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class SimError(Exception):
    """The simulated panel cannot start, or stopped for a reason a person
    must read (exit status 1 of guardline-panel sim)."""


def gps_address(control: str) -> str:
    """A vehicle unit's GPS socket by default: the control port + 1."""
    host, port = parse_address(control)
    return "%s:%d" % (host, port + 1)


def command(config: str, state_dir: str, control: str = DEFAULT_CONTROL,
            heapsize: str | None = None, bundle: str | None = None,
            gps: str | None = None) -> tuple[list, dict]:
    """The argv and environment that start one panel VM."""
    env = dict(os.environ)
    if bundle:
        env["MICROPYPATH"] = os.path.abspath(bundle) + os.pathsep + ".frozen"
        main = os.path.join(os.path.abspath(bundle), "main.py")
    else:
        env["MICROPYPATH"] = os.pathsep.join((DEVICE_DIR, LEAN_DIR, ".frozen"))
        main = os.path.join(DEVICE_DIR, "main.py")
    argv = [vm.micropython()]
    if heapsize:
        argv += ["-X", "heapsize=%s" % heapsize]
    argv += [main, "--config", os.path.abspath(config), "--state-dir",
             os.path.abspath(state_dir), "--control", control,
             "--gps", gps or gps_address(control)]
    return argv, env


def _parent_death_signal():
    """A preexec_fn that makes the kernel SIGKILL the child when the
    launcher dies (Linux prctl PR_SET_PDEATHSIG); None elsewhere (the
    signal handlers still stop the VM on SIGTERM/SIGINT/SIGHUP)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # noqa: PLC0415

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm():
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before the line above
            os._exit(1)
    return arm


class _Stop:
    """Set by a stop signal; the running VM is terminated with it."""

    def __init__(self):
        self.signum: int | None = None
        self.proc: subprocess.Popen | None = None

    def __call__(self, signum, frame):
        self.signum = signum
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()


def run(config: str, state_dir: str, control: str = DEFAULT_CONTROL,
        heapsize: str | None = None, bundle: str | None = None,
        max_restarts: int | None = None, stdout=None, gps: str | None = None) -> int:
    """Run until the panel stops for another reason than a power cycle, or
    a stop signal reaches the launcher (then 128 + the signal number)."""
    os.makedirs(state_dir, exist_ok=True)
    argv, env = command(config, state_dir, control, heapsize, bundle, gps)
    stop = _Stop()
    old = {}
    if threading.current_thread() is threading.main_thread():  # signals only there
        for sig in STOP_SIGNALS:
            old[sig] = signal.signal(sig, stop)
    restarts = 0
    try:
        while stop.signum is None:
            proc = stop.proc = subprocess.Popen(argv, env=env, stdout=stdout,
                                                stderr=subprocess.STDOUT,
                                                preexec_fn=_parent_death_signal())
            if stop.signum is not None:  # the signal came while it was starting
                proc.terminate()
            try:
                rc = proc.wait()
            finally:
                if proc.poll() is None:  # an exception here: never leave it
                    proc.kill()
                    proc.wait()
            if stop.signum is not None:
                break
            if rc != POWER_CYCLE:
                return rc
            restarts += 1
            if max_restarts is not None and restarts > max_restarts:
                return rc
            _LOGGER.info("panel power cycle (%d)", restarts)
            time.sleep(0.2)  # the power is off for a moment
        _LOGGER.info("stopped by signal %d: panel VM ended", stop.signum)
        return 128 + stop.signum
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_") or "x"


def default_state_dir(config: str, base: str = "var") -> str:
    """``var/panel-<account>-<primary receiver host>-<port>``: the panel's
    identity as its receiver knows it (the DC-09 account for a DC-09
    panel).  A config that cannot be read gives ``var/panel-unconfigured``
    (the VM then reports why and reports nothing else)."""
    try:
        with open(config, encoding="utf-8") as f:
            doc = json.load(f)
        if doc.get("protocol") == "dc09":
            account = str(doc["dc09"]["account"]).upper()
        else:
            account = str(doc["account"])
        rx = doc["receiver"]["primary"]
        key = "%s-%s-%s" % (account, rx["host"], rx["port"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        key = "unconfigured"
    return os.path.join(base, "panel-" + _slug(key))


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
                         "(default var/panel-<account>-<receiver host>-<port>)")
    ap.add_argument("--heapsize", default=None, help="MicroPython heap, e.g. 64k")
    ap.add_argument("--bundle", default=None, help="run a firmware.build bundle")
    ap.add_argument("--gps", default=None,
                    help="a vehicle unit's GNSS socket HOST:PORT (default: the control "
                         "port + 1): NMEA 0183 from firmware.gpsreplay")
    ap.add_argument("--route", default=None, metavar="GPX",
                    help="a vehicle unit drives this GPX route (replayed on --gps)")
    ap.add_argument("--speedup", type=float, default=1.0,
                    help="--route: route seconds per wall second (default 1)")
    ap.add_argument("--stop", action="append", default=[], metavar="AT:DURATION",
                    help="--route: stand still at route second AT for DURATION s")
    ap.add_argument("--lose", action="append", default=[], metavar="AT:DURATION",
                    help="--route: no fix from route second AT for DURATION s")


def check_control(text: str, flag: str = "--control") -> None:
    try:
        parse_address(text)
    except ValueError as e:
        raise SimError("%s %s" % (flag, e)) from None


def route_feeder(a, gps: str):
    """The --route replay (gpsreplay.Feeder), not started; None without."""
    if not a.route:
        return None
    from firmware import gpsreplay as G  # noqa: PLC0415 - gpxpy only for a route

    if a.speedup <= 0:
        raise SimError("--speedup %s: must be above 0" % a.speedup)
    try:
        route = G.load(a.route)
        stops = [G.Stop(*G.interval(x, "--stop")) for x in a.stop]
        losses = [G.Loss(*G.interval(x, "--lose")) for x in a.lose]
    except (G.RouteError, ValueError) as e:
        raise SimError(str(e)) from None
    _LOGGER.info("route %s: %d points, %.0f m, %.0f s at %gx, on the GPS socket %s",
                 route.name, len(route.points), route.length_m, route.duration_s,
                 a.speedup, gps)
    return G.Feeder(G.Replay(route, stops, losses), gps, a.speedup)


def run_args(a) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _run_args(a)
    except SimError as e:
        print("guardline-panel sim: %s" % e, file=sys.stderr)
        return 1


def _run_args(a) -> int:
    if not os.path.isfile(a.config):
        raise SimError("%s: no such config file" % a.config)
    check_control(a.control)
    if a.bundle and not os.path.isfile(os.path.join(a.bundle, "main.py")):
        raise SimError("--bundle %s: not a bundle (no main.py; guardline-panel build "
                       "--board sim -o DIR)" % a.bundle)
    try:
        vm.micropython()
    except vm.VMNotFound as e:
        raise SimError(str(e)) from None
    state = a.state_dir
    if not state:
        state = default_state_dir(a.config)
        legacy = os.path.join("var", "panel-" + os.path.splitext(
            os.path.basename(a.config))[0])
        if os.path.isdir(legacy) and not os.path.isdir(state) and legacy != state:
            _LOGGER.warning("%s holds the state of an earlier run (the old default, by the "
                            "config's file name): not used; the state is now %s "
                            "(--state-dir %s to go on with the old one)", legacy, state,
                            legacy)
    gps = a.gps or gps_address(a.control)
    check_control(gps, "--gps")
    feeder = route_feeder(a, gps)
    _LOGGER.info("panel state (its flash): %s; control socket %s", state, a.control)
    if feeder is not None:
        feeder.start()
    try:
        rc = run(a.config, state, a.control, a.heapsize, a.bundle, gps=gps)
    finally:
        if feeder is not None:
            feeder.stop()
    if rc == NO_GPS:
        raise SimError("the GPS socket %s could not be opened (the panel's console above "
                       "says why); the panel was stopped: give another --gps HOST:PORT" % gps)
    if rc == NO_CONTROL:
        raise SimError("the control socket %s could not be opened (the panel's console "
                       "above says why: a port another simulated panel holds, an address "
                       "not of this machine); the panel was stopped: give another "
                       "--control HOST:PORT" % a.control)
    if rc > 128 and rc - 128 in [int(s) for s in STOP_SIGNALS]:
        return rc
    if rc < 0:
        raise SimError("the panel VM was killed by signal %d" % -rc)
    if rc != 0:
        raise SimError("the panel VM ended with status %d (its console above says why)"
                       % rc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
