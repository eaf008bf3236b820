"""The receiver as a process: ``guardline-receiver serve`` started through
its CLI, as a central station runs it.

One launcher for the tests, the benchmarks, the chaos runs and the HIL
harness (hil/receiver.py adds accounts, a timeline and the event feed on
top).  ``--init`` is always given (a test's store is new, or made by
``accounts add`` first) and ``--ready-file`` is how it is known to listen:
the ready file carries the addresses it bound (port 0 resolved) and its
pid.

Invariants:

- The process runs in a session of its own: :meth:`kill` is a crash
  (SIGKILL: nothing flushed but what was committed), :meth:`terminate`
  the operator's SIGTERM (in-flight commits finish).  Nothing outlives
  :meth:`close`; a receiver that does not end on SIGTERM within its
  deadline is killed and the caller told (subprocess.TimeoutExpired).
- Every log line is appended to ``log_path`` (if given) as it comes,
  kept (bounded) in :attr:`log_lines` and handed to ``on_line``.
- A receiver that exits before it listens is an error naming its last log
  lines, never a wait until the deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading

from testkit.wait import wait_until_sync

# The receiver binds, opens its store and writes the ready file in well
# under a second; a loaded CI host gets generous room.
START_TIMEOUT_S = 30.0
# Log lines kept in memory (a failure message quotes the last ones).
LOG_LINES_MAX = 5000


def receiver_argv(*args: str) -> list[str]:
    """The receiver's CLI from this venv (as the console script would run it)."""
    return [sys.executable, "-m", "receiver.cli", *args]


def receiver_cli(*args: str, cwd: str | None = None, timeout: float = 60.0,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one ``guardline-receiver`` command; its completed process (text)."""
    return subprocess.run(receiver_argv(*args), capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def import_accounts(db, accounts, json_path) -> None:
    """Write ``accounts`` ({number: Account}) to ``json_path`` and load them
    into the store ``db`` (a path or URL) with ``accounts import``, as an
    installer does; AssertionError with the command's message if it fails."""
    from receiver.testing import write_accounts_json  # noqa: PLC0415

    write_accounts_json(json_path, accounts)
    r = receiver_cli("accounts", "import", str(json_path), "--db", str(db))
    assert r.returncode == 0, r.stderr


class ReceiverExited(RuntimeError):
    """The receiver ended before it listened (its last log lines attached)."""


class ReceiverProcess:
    """``guardline-receiver serve --init --db DB ARGS`` as a child process."""

    def __init__(self, db, args=(), log_path=None, env=None, nofile: int | None = None,
                 on_line=None, cwd: str | None = None):
        self.db = str(db)
        self.args = list(args)
        self.log_path = log_path
        self.env = env
        self.nofile = nofile  # the child's descriptor limit (soft and hard), if given
        self.on_line = on_line
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}
        self.starts = 0
        self.log_lines: list[str] = []
        self._log = None
        self._reader: threading.Thread | None = None

    def command(self, ready_file: str) -> list[str]:
        return receiver_argv("serve", "--init", "--db", self.db, "--ready-file",
                             ready_file, *self.args)

    @property
    def pid(self) -> int:
        """The process id of the receiver started last."""
        if self.proc is None:
            raise RuntimeError("the receiver was never started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT_S) -> dict:
        """Start it and wait until it listens; the ready file's contents."""
        # in a temp dir, not beside the store: --db may be a postgresql:// URL
        fd, ready = tempfile.mkstemp(prefix="guardline-ready.")
        os.close(fd)
        os.unlink(ready)
        if self._log is None and self.log_path:
            self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(ready), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env, cwd=self.cwd, start_new_session=True,
                                     preexec_fn=self._limits if self.nofile else None)
        self.starts += 1
        self._reader = threading.Thread(target=self._read, args=(self.proc,),
                                        name="receiver-log", daemon=True)
        self._reader.start()
        proc = self.proc

        def listening():
            if proc.poll() is not None:
                raise ReceiverExited("the receiver exited with %s before listening: %s" % (
                    proc.returncode, self.tail()))
            return os.path.exists(ready)
        try:
            wait_until_sync(listening, timeout, what="the receiver's ready file",
                            seen=lambda: self.log_lines[-5:])
        except AssertionError:
            self.kill()
            raise
        try:
            with open(ready) as f:
                self.ready = json.load(f)
        finally:
            os.unlink(ready)
        return self.ready

    def _limits(self) -> None:
        import resource  # noqa: PLC0415 - POSIX, in the child

        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            log = self._log
            if log is not None and not log.closed:
                log.write(raw)
                log.flush()
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self.log_lines.append(line)
            if len(self.log_lines) > LOG_LINES_MAX:
                del self.log_lines[:LOG_LINES_MAX // 5]
            if self.on_line is not None:
                self.on_line(line)
        proc.stdout.close()

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.log_lines[-n:]) or "(no log lines; %s)" % (
            self.log_path or "no log file")

    @property
    def tcp(self) -> tuple[str, int]:
        """The first native TCP address it listens on (from its ready file)."""
        h, p = self.ready["tcp"][0]
        return h, p

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """A crash: SIGKILL, nothing flushed but what was committed."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self.proc.wait()
        self._join_reader()

    def terminate(self, timeout: float = 30.0) -> int:
        """The operator's stop: SIGTERM, in-flight commits finish; its exit
        status.  Killed, and subprocess.TimeoutExpired raised, if it has
        not ended within ``timeout``."""
        assert self.proc is not None
        self._signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._join_reader()
        return rc

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5.0)

    def close(self) -> None:
        self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None
