"""The simulated panel as a process: the firmware (firmware/device) under
the MicroPython VM with the sim board, driven through its control socket.

One launcher for the tests, the benchmarks, the HIL sim driver and the
demo.  It starts what an installer starts, ``guardline-panel sim``'s
launcher (``python -m firmware.sim``, which restarts the VM on a
simulated power cycle), or, with ``supervised=False``, the VM alone
(``firmware.sim.command``: a power cycle then ends it with status 3, so
a harness sees each exit and can read the flash before the next boot;
``main=`` then runs another script in place of the device's main.py, a
test's fault injected around the firmware).

Invariants:

- The process runs in a session of its own: :meth:`kill` is a power loss
  (SIGKILL to the launcher and the VM at once, even mid flash write),
  :meth:`close` the orderly "stop" command first.  Nothing outlives
  :meth:`close` (the launcher also ends its VM if it dies: firmware/sim.py).
- Every console line is appended to ``log_path`` as it comes and handed
  to ``on_line``; :meth:`console` reads the whole log back.
- :meth:`ctl` retries only while the control socket is not there yet (the
  VM is starting or restarting); a command the firmware answered is never
  re-sent.  A process that ended while the harness waited is
  :class:`PanelExited`, with its console's tail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from testkit.control import (READ_ONLY, ControlNotListening, ControlTimeout,
                             ControlUnreachable, SimControl)
from testkit.net import free_port
from testkit.wait import ConditionTimeout, wait_until_sync

# A command to a panel that is (re)starting: the VM boots in well under a
# second; a loaded CI host gets generous room.
CTL_TIMEOUT_S = 20.0
# Console text quoted in a failure message.
TAIL_CHARS = 3000


class PanelExited(RuntimeError):
    """The panel's process ended while the harness waited on it."""


class PanelProcess:
    """One simulated panel.  ``config`` is a dict (written to
    ``state_dir/config.json``) or a path; ``state_dir`` plays its flash.
    A vehicle unit's GNSS receiver is the ``gps`` socket (board_sim.py);
    :meth:`drive` replays a GPX route onto it."""

    feeder = None  # the route replay (drive())

    def __init__(self, config: dict | str, state_dir: str, *, control_port: int | None = None,
                 heapsize: str | None = None, bundle: str | None = None,
                 log_path: str | None = None, on_line=None, supervised: bool = True,
                 main: str | None = None, cwd: str | None = None, start: bool = True):
        if main is not None and supervised:
            raise ValueError("main= runs the VM alone: give supervised=False")
        self.state_dir = os.path.abspath(state_dir)
        os.makedirs(self.state_dir, exist_ok=True)
        if isinstance(config, dict):
            path = os.path.join(self.state_dir, "config.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(config, f)
            config = path
        self.config_path = os.path.abspath(config)
        self.control_port = control_port or free_port()
        self.control = "127.0.0.1:%d" % self.control_port
        self.gps = "127.0.0.1:%d" % free_port()  # a vehicle unit's GNSS socket
        self.sim = SimControl(("127.0.0.1", self.control_port))
        self.heapsize = heapsize
        self.bundle = bundle
        self.supervised = supervised
        self.main = main
        self.cwd = cwd
        self.on_line = on_line
        self.log_path = log_path or os.path.join(self.state_dir, "console.log")
        self._log = open(self.log_path, "ab")
        self._log_lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self.starts = 0
        if start:
            self.start()

    # -- life cycle ---------------------------------------------------------------------

    def command(self) -> tuple[list[str], dict]:
        """The argv and environment that start the panel."""
        if self.supervised:
            argv = [sys.executable, "-m", "firmware.sim", self.config_path,
                    "--state-dir", self.state_dir, "--control", self.control,
                    "--gps", self.gps]
            if self.heapsize:
                argv += ["--heapsize", self.heapsize]
            if self.bundle:
                argv += ["--bundle", self.bundle]
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            return argv, env
        from firmware import sim  # noqa: PLC0415 - the launcher's own command line

        argv, env = sim.command(self.config_path, self.state_dir, self.control, self.heapsize,
                                self.bundle, self.gps)
        if self.main:  # another entry point (a fault injected around the firmware)
            argv = [self.main if a.endswith("main.py") else a for a in argv]
        return argv, env

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "PanelProcess":
        """Power on (a no-op while running)."""
        if self.running:
            return self
        argv, env = self.command()
        self.proc = subprocess.Popen(argv, env=env, cwd=self.cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.starts += 1
        self._reader = threading.Thread(target=self._read, args=(self.proc,),
                                        name="panel-console", daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            with self._log_lock:
                if not self._log.closed:
                    self._log.write(raw)
                    self._log.flush()
            if self.on_line is not None:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    self.on_line(text)
        proc.stdout.close()

    def kill(self) -> int | None:
        """A power loss: SIGKILL the launcher and the VM at once; returns
        the exit status (None if there was no process)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self._ended(proc.wait())

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself; its exit status."""
        assert self.proc is not None
        return self._ended(self.proc.wait(timeout))

    def _ended(self, rc: int) -> int:
        if self._reader is not None:
            self._reader.join(5.0)
        self.proc = None
        return rc

    def close(self) -> None:
        """The orderly stop ("stop" command), a kill if it does not end."""
        if self.feeder is not None:
            self.feeder.stop()
        if self.running:
            try:
                self.sim({"cmd": "stop"}, timeout=2)
            except OSError:
                pass
            try:
                assert self.proc is not None
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        with self._log_lock:
            self._log.close()

    def __enter__(self) -> "PanelProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- driving it -----------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise PanelExited("the panel's process ended (status %s); console:\n%s"
                              % (self.proc.returncode, self.console_tail()))

    def ctl(self, req: dict, timeout: float = CTL_TIMEOUT_S) -> dict:
        """One control command; its reply (a refusal too).  Waits while
        the control socket is not there yet (the VM starting); a command
        that only reads (READ_ONLY) is sent again if the connection closed
        before its answer (the VM restarting), any other never is."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.sim(req, timeout=min(5.0, timeout))
            except ControlUnreachable as e:
                again = isinstance(e, ControlNotListening) or (
                    not isinstance(e, ControlTimeout) and req.get("cmd") in READ_ONLY)
                self._check_alive()
                if not again:
                    raise
                if time.monotonic() > deadline:
                    raise ControlTimeout("the panel's control socket %s: no answer within "
                                         "%.0f s (%s)" % (self.control, timeout, e)) from None
            self._check_alive()
            time.sleep(0.05)

    def state(self) -> dict:
        return self.ctl({"cmd": "state"})

    def drive(self, gpx: str, speedup: float = 1.0, stops=(), losses=()):
        """A vehicle unit drives a GPX route: its replay (gpsreplay.Feeder)
        on the unit's GNSS socket from when the VM accepts it, until
        close().  Returns the feeder."""
        from firmware import gpsreplay as G  # noqa: PLC0415 - gpxpy only for a route

        if self.feeder is not None:
            self.feeder.stop()
        self.feeder = G.Feeder(G.Replay(G.load(gpx), stops, losses), self.gps, speedup).start()
        return self.feeder

    def wait(self, predicate, timeout: float = CTL_TIMEOUT_S, what: str = "condition"):
        """Poll ``predicate`` until it returns a true value (returned);
        PanelExited if the panel ends meanwhile, ConditionTimeout with the
        console's tail after ``timeout``."""
        def check():
            self._check_alive()
            return predicate()
        try:
            return wait_until_sync(check, timeout, 0.05, what=what)
        except ConditionTimeout as e:
            raise ConditionTimeout("%s; console:\n%s" % (e, self.console_tail())) from None

    def console(self) -> str:
        """Everything the panel wrote to its console (launcher lines too)."""
        with self._log_lock:
            if not self._log.closed:
                self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def console_tail(self, n: int = TAIL_CHARS) -> str:
        return self.console()[-n:]
