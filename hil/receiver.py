"""The receiver under test: a real ``guardline-receiver serve`` process
(testkit.receiver.ReceiverProcess) on a temporary SQLite store, as the
central station runs it.

The harness starts it with fixed loopback ports (so a restart comes back
where the link forwards to), adds the accounts under test with the
receiver's own CLI (``accounts add``), and reads what it stored through
the receiver's store API opened beside it (the event feed,
``Store.events_after``; security events; the alarm queue), in the
records' one JSON shape, so a scenario can poll every few tens of
milliseconds without spawning a process per poll and never reads a table.

Killing it is a crash (SIGKILL: no graceful flush), stopping it is the
operator's SIGTERM; scenarios use both.

Every stored event and security event is copied into the timeline
(source "receiver") at the receiver's own commit time, and the receiver's
log lines too, so the report shows them beside the panel's inputs and the
frames on the link.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sqlite3
import subprocess
import time

from hil.timeline import RECEIVER, Timeline
from receiver.store import Store, StoreError
from receiver.store_factory import make_store
from testkit.net import free_port
from testkit.receiver import ReceiverProcess, receiver_cli

_LOGGER = logging.getLogger(__name__)

# The receiver binds, opens its store and writes the ready file in well
# under a second; a loaded CI host gets generous room.
START_TIMEOUT_S = 30.0
# In-flight commits finish well within this after SIGTERM.
STOP_TIMEOUT_S = 20.0
# How often the watcher copies new rows into the timeline.
WATCH_S = 0.05
# A scenario's security events and alarms are a handful; these bound a read.
SECURITY_EVENTS_MAX = 1000
ALARMS_MAX = 1000


def panel_account(config: dict, heartbeat_s: int | None = None, grace_s: int | None = None,
                  paths: str | None = None) -> dict:
    """The ``accounts add`` of the account a panel config reports as: its
    key, kind, zone and partition names, the paths it reports over."""
    if paths is None:
        paths = "1,2" if (config.get("receiver") or {}).get("backup") else "1"
    return {"number": config["account"], "key_hex": config["key"], "heartbeat_s": heartbeat_s,
            "grace_s": grace_s, "paths": paths, "kind": config.get("kind", ""),
            "zones": {str(z["id"]): z.get("name", "") for z in config.get("zones", [])},
            "partitions": {str(p["id"]): p.get("name", "") for p in config.get("partitions", [])}}


def add_account(db: str, number: int, key_hex: str, heartbeat_s: int | None = None,
                grace_s: int | None = None, paths: str = "1", kind: str = "",
                zones: dict | None = None, partitions: dict | None = None,
                cwd: str | None = None) -> None:
    """``guardline-receiver accounts add`` on the store `db` (made if new)."""
    argv = ["accounts", "add", str(number), "--db", db, "--key", key_hex, "--paths", paths]
    if heartbeat_s is not None:
        argv += ["--heartbeat", str(heartbeat_s)]
    if grace_s is not None:
        argv += ["--grace", str(grace_s)]
    if kind:
        argv += ["--kind", kind]
    if zones:
        argv += ["--zones", json.dumps(zones)]
    if partitions:
        argv += ["--partitions", json.dumps(partitions)]
    r = receiver_cli(*argv, cwd=cwd)
    if r.returncode:
        raise RuntimeError("accounts add %s failed (%d): %s" % (number, r.returncode,
                                                               r.stderr or r.stdout))


class StoreTemplates:
    """Receiver stores made once per run by the receiver's own CLI
    (``accounts add``), one per distinct panel and supervision profile,
    and copied for each scenario that needs the same: a scenario still
    starts on a store of its own, without a CLI process of its own.  The
    copy is SQLite's online backup (consistent whatever the WAL holds)
    into a file made private (0600) first, as the CLI makes it."""

    def __init__(self, directory: str):
        self.directory = directory
        self._made: dict[str, str] = {}

    def copy(self, db: str, config: dict, heartbeat_s=None, grace_s=None, paths=None) -> None:
        account = panel_account(config, heartbeat_s, grace_s, paths)
        key = json.dumps(account, sort_keys=True)
        template = self._made.get(key)
        if template is None:
            template = os.path.join(self.directory, "store-%d.db" % len(self._made))
            add_account(template, **account, cwd=self.directory)
            self._made[key] = template
        fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        src = sqlite3.connect(template)
        dst = sqlite3.connect(db)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()


class ReceiverUnderTest:
    """The receiver a scenario reports to: testkit's ReceiverProcess on a
    store in ``workdir``, fixed loopback ports, its log and what it
    stores copied into the timeline."""

    def __init__(self, workdir: str, timeline: Timeline | None = None, tcp: bool = True,
                 udp: bool = True, serial: list[str] | None = None, log_level: str = "info"):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.db = os.path.join(self.workdir, "receiver.db")
        self.timeline = timeline if timeline is not None else Timeline("receiver")
        self.tcp = ("127.0.0.1", free_port()) if tcp else None
        self.udp = ("127.0.0.1", free_port(socket.SOCK_DGRAM)) if udp else None
        self.serial = list(serial or [])
        self.log_level = log_level
        self.process = ReceiverProcess(self.db, self._serve_args(), cwd=self.workdir,
                                       log_path=os.path.join(self.workdir, "receiver.log"),
                                       on_line=self._log_line)
        self._watch_task: asyncio.Task | None = None
        self._seen_event = 0
        self._seen_security = 0
        self._reader: Store | None = None

    def _serve_args(self) -> list[str]:
        argv = ["--log-level", self.log_level]
        if self.tcp:
            argv += ["--tcp", "%s:%d" % self.tcp]
        if self.udp:
            argv += ["--udp", "%s:%d" % self.udp]
        for url in self.serial:
            argv += ["--serial", url]
        return argv

    @property
    def log_lines(self) -> list[str]:
        return self.process.log_lines

    def _log_line(self, line: str) -> None:
        self.timeline.record(RECEIVER, "log", text=line[:500])

    # -- accounts ---------------------------------------------------------------------

    def add_account(self, number: int, key_hex: str, heartbeat_s: int | None = None,
                    grace_s: int | None = None, paths: str = "1", kind: str = "",
                    zones: dict | None = None, partitions: dict | None = None) -> None:
        """``guardline-receiver accounts add`` (before start, or the running
        receiver picks it up within its account reload period)."""
        add_account(self.db, number, key_hex, heartbeat_s, grace_s, paths, kind, zones,
                    partitions, cwd=self.workdir)

    def add_panel(self, config: dict, heartbeat_s: int | None = None,
                  grace_s: int | None = None, paths: str | None = None,
                  templates: "StoreTemplates | None" = None) -> None:
        """Add the account a panel config reports as, with its key, zones
        and partitions named as the config names them.  With `templates`
        (before the first start), the store is a copy of one the CLI made
        for the same panel and profile earlier in the run."""
        if templates is not None and not self.process.starts:
            templates.copy(self.db, config, heartbeat_s, grace_s, paths)
            return
        add_account(self.db, **panel_account(config, heartbeat_s, grace_s, paths),
                    cwd=self.workdir)

    # -- life cycle -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def starts(self) -> int:
        return self.process.starts

    async def start(self) -> "ReceiverUnderTest":
        if self.running:
            return self
        self.timeline.record(RECEIVER, "process", action="start")
        await asyncio.to_thread(self.process.start, START_TIMEOUT_S)
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def kill(self) -> None:
        """A crash: SIGKILL, nothing flushed but what was committed."""
        if self.process.proc is None:
            return
        self.timeline.record(RECEIVER, "process", action="kill")
        await asyncio.to_thread(self.process.kill)

    async def stop(self) -> None:
        """The operator's stop: SIGTERM, in-flight commits finish (killed
        if it has not ended in STOP_TIMEOUT_S)."""
        if not self.running:
            return
        self.timeline.record(RECEIVER, "process", action="stop")
        try:
            await asyncio.to_thread(self.process.terminate, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _LOGGER.warning("receiver did not stop within %.0f s: killed", STOP_TIMEOUT_S)

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            try:
                await self._watch_task
            except (asyncio.CancelledError, Exception):
                pass
        await self.stop()
        self.process.close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

    # -- what it stored: through the receiver's own store API --------------------------

    async def _store(self) -> Store | None:
        """The receiver's store, opened beside the running receiver (SQLite's
        WAL lets a reader in while it writes); None until there is one."""
        if self._reader is None:
            store = make_store(self.db, create=False)
            try:
                await store.open()
            except StoreError as e:  # not made yet (the receiver's --init makes it)
                _LOGGER.debug("receiver store not there yet: %s", e)
                return None
            self._reader = store
        return self._reader

    async def events(self, account: int | str | None = None, since: float | None = None,
                     source: str | None = None, after_id: int = 0) -> list[dict]:
        """Stored events after ``after_id``, oldest first, read through the
        event feed (Store.events_after) in the records' one JSON shape
        (receiver.records.Event.to_json), those received at ``since`` or
        later and of ``source`` if given."""
        store = await self._store()
        if store is None:
            return []
        acct = None if account is None else str(account)
        return [e.to_json() async for e in store.iter_events(acct, after_id)
                if (since is None or e.received_at >= since)
                and (source is None or e.source == source)]

    async def security_events(self, since: float | None = None) -> list[dict]:
        """Security events (rejected frames, connections), oldest first."""
        store = await self._store()
        if store is None:
            return []
        rows = await store.list_security_events(since=since, limit=SECURITY_EVENTS_MAX)
        return [s.to_json() for s in sorted(rows, key=lambda s: s.id)]

    async def alarms(self) -> list[dict]:
        """The operator queue in the receiver's own order (priority first)."""
        store = await self._store()
        if store is None:
            return []
        return [a.to_json() for a in await store.list_alarms(limit=ALARMS_MAX)]

    def to_timeline(self, wall: float) -> float:
        """A receiver wall-clock time as timeline seconds."""
        return wall - self.timeline.wall0

    def now(self) -> float:
        """The receiver's wall clock now."""
        return time.time()

    async def _watch(self) -> None:
        seen_at = None
        while True:
            try:
                for e in await self.events(after_id=self._seen_event):
                    self._seen_event = e["id"]
                    self.timeline.record(
                        RECEIVER, "event", at_t=self.to_timeline(e["received_at"]),
                        account=e["account"], seq=e["seq"], code=e["code"],
                        qualifier=e["qualifier"], zone=e["zone"], partition=e["partition"],
                        path=e["path"], priority=e["priority"], event_class=e["event_class"],
                        origin=e["source"], description=e["description"])
                for s in await self.security_events(since=seen_at):
                    if s["id"] <= self._seen_security:
                        continue
                    self._seen_security = s["id"]
                    seen_at = s["at"]
                    self.timeline.record(RECEIVER, "security", at_t=self.to_timeline(s["at"]),
                                         account=s["account"], seq=s["seq"],
                                         reason=s["reason"], detail=s["detail"],
                                         transport=s["transport"])
            except StoreError as e:
                _LOGGER.debug("receiver watch: %s", e)
            except Exception:  # a bug here must not silently end the watch
                _LOGGER.exception("receiver watch failed")
            await asyncio.sleep(WATCH_S)
