"""Helpers for the receiver's tests, benchmark and demo: accounts with
fresh keys, a receiver started on loopback with port 0, a receiver run as a
real subprocess through the CLI, a JSON-lines dispatch sink, and
``wait_until`` (poll a condition up to a generous deadline instead of
sleeping a fixed time: tests assert outcomes, never timings).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

from receiver.store import Account


class ConditionTimeout(AssertionError):
    """A polled condition did not hold before its deadline (a test failure)."""


async def _describe(seen) -> str:
    if seen is None:
        return ""
    try:
        got = seen()
        if asyncio.iscoroutine(got):
            got = await got
        return "; saw: %r" % (got,)
    except Exception as e:  # noqa: BLE001 - the description must not hide the failure
        return "; (could not describe: %s)" % e


async def wait_until(pred, timeout: float = 20.0, interval: float = 0.02, what: str = "",
                     seen=None):
    """Await until ``pred()`` (sync or async) is truthy; return its value.
    Raises ConditionTimeout (an AssertionError) after ``timeout`` s, naming
    ``what`` and, if given, ``seen()``: a generous bound on a condition,
    not a timing assertion.  The one polling helper of the test harnesses
    (hil.poll.until wraps it)."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > end:
            raise ConditionTimeout("condition not met within %.1f s: %s%s" % (
                timeout, what or getattr(pred, "__name__", "condition"),
                await _describe(seen)))
        await asyncio.sleep(interval)


def make_accounts(n: int, first: int = 1, **fields) -> dict[int, Account]:
    return {i: Account(str(i), secrets.token_bytes(32), **fields)
            for i in range(first, first + n)}


async def add_accounts(store, accounts) -> None:
    for a in accounts.values() if isinstance(accounts, dict) else accounts:
        await store.add_account(a)


@contextlib.asynccontextmanager
async def running_receiver(config, accounts=()):
    """Start a Receiver (config listening on port 0), with ``accounts``
    created first; stop it on exit."""
    from receiver.app import Receiver  # noqa: PLC0415

    rx = Receiver(config)
    await rx.store.open()
    try:
        await add_accounts(rx.store, accounts)
    finally:
        await rx.store.close()
    rx = Receiver(config)
    await rx.start()
    try:
        yield rx
    finally:
        await rx.stop()


def write_accounts_json(path, accounts) -> None:
    rows = [a.to_dict(with_key=True) for a in
            (accounts.values() if isinstance(accounts, dict) else accounts)]
    for r in rows:
        for k in ("highest_seq", "tx_seq", "created_at", "updated_at"):
            r.pop(k)
    with open(path, "w") as f:
        json.dump(rows, f)


class ReceiverProcess:
    """``python -m receiver.cli serve ...`` as a child process."""

    def __init__(self, db, args=(), log_path=None, env=None, nofile: int | None = None):
        self.db = str(db)
        self.args = list(args)
        self.log_path = log_path
        self.env = env
        self.nofile = nofile  # the child's descriptor limit (soft and hard), if given
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}
        self._log = None

    def start(self, timeout: float = 30.0) -> dict:
        # the ready file lives in a temp dir: --db may be a postgresql:// URL
        ready = os.path.join(tempfile.gettempdir(), "guardline-ready.%d.%d" % (
            os.getpid(), time.monotonic_ns()))
        # --init: a test's store is new (or made by `accounts add` before)
        cmd = [sys.executable, "-m", "receiver.cli", "serve", "--init", "--db", self.db,
               "--ready-file", ready] + self.args
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=self._log, env=self.env,
                                     stdin=subprocess.DEVNULL, preexec_fn=self._limits)
        end = time.monotonic() + timeout
        while not os.path.exists(ready):
            if self.proc.poll() is not None:
                raise RuntimeError("receiver exited with %s before listening (log: %s)"
                                   % (self.proc.returncode, self.log_path))
            if time.monotonic() > end:
                self.kill()
                raise RuntimeError("receiver not listening within %.0f s" % timeout)
            time.sleep(0.02)
        with open(ready) as f:
            self.ready = json.load(f)
        os.unlink(ready)
        return self.ready

    def _limits(self) -> None:
        if self.nofile is not None:
            import resource  # noqa: PLC0415 - POSIX, in the child

            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    @property
    def tcp(self) -> tuple[str, int]:
        h, p = self.ready["tcp"][0]
        return h, p

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        self.kill()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()


class JsonLinesSink:
    """A dispatch centre's end of the JSON-lines output: stores each line's
    object and answers "ACK <id>" (unless ``ack`` is False: then it reads
    and drops the connection, as a far end that crashes mid-message)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ack: bool = True):
        self.host = host
        self.port = port
        self.ack = ack
        self.received: list[dict] = []
        self.connections = 0
        self._server = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader, writer) -> None:
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                msg = json.loads(line)
                if not self.ack:
                    break
                self.received.append(msg)
                writer.write(b"ACK %d\n" % msg["id"])
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def ids(self) -> list[int]:
        return [m["id"] for m in self.received]


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (for a far end started later)."""
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
