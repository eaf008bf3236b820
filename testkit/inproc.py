"""The panel in this process: the firmware's own application
(firmware/device/app.py ``App``: config validation, the sans-I/O
``Panel``, the DEOL classifier and debouncer, the persistent queue, the
sequence store, the reporter with its glpanel sessions, the control
protocol's handler) on a board that lives in memory, driven by a clock
the caller owns, reporting over in-memory links to the receiver's own
session core (protocol.session.ReceiverCore).

What is not the firmware's is only the edges a VM or a board would
provide: :class:`MemoryBoard` (board_sim's inputs and outputs, console
lines kept instead of printed, links in memory) and :class:`MemoryLink`.
So a strategy, a walk test or an installer tool is tested against the
real panel logic in milliseconds; the real VM stays for the scenario
suite (hil/scenarios), which is about the firmware as it runs.

Time: the panel's scans (every ``scan_ms``) and reporter polls (every
20 ms) run when someone looks, up to the clock's "now": any control
command and any query of the receiver first catches the panel up.  With
:class:`VirtualClock` time moves only by :meth:`InProcessPanel.advance`
(deterministic unit tests); with :class:`ScaledClock` it runs ``speed``
times faster than this machine's (a harness that polls in real time, as
the HIL strategies do, reaches an exit delay in a fraction of it).  The
receiver's wall clock is the same clock, so the panel's clock, set by the
receiver's ACKs, agrees with it whatever the speed.

Limits, on purpose: the native protocol only (a DC-09 panel's config is
refused), no power loss in the middle of a flash write (power off here is
between two steps), and the receiver is its session core plus an event
list (no store, no alarms, no supervision): enough for what the panel
reported and in which order, not for what the receiver made of it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from firmware import DEVICE_DIR
from protocol import session as rs
from protocol.lean import glwire as w
from receiver.alarms import classify
from receiver.records import Event

if DEVICE_DIR not in sys.path:  # the firmware's flat modules, as on a board
    sys.path.append(DEVICE_DIR)

# (pyright checks host code without the device directory on its path)
import app as _app  # noqa: E402  # pyright: ignore[reportMissingImports]
import board_sim  # noqa: E402  # pyright: ignore[reportMissingImports]
import control as _control  # noqa: E402  # pyright: ignore[reportMissingImports]

REPORT_MS = 20  # firmware/device/app.py _REPORT_MS: how often the reporter is polled
# Console lines kept (the tail is what a failure shows).
CONSOLE_LINES = 2000
# The control protocol's exit codes (firmware/device/control.py, main.py).
POWER_CYCLE = 3


class VirtualClock:
    """Milliseconds that move only when :meth:`advance` is called."""

    def __init__(self, start_ms: int = 0):
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += int(ms)


class ScaledClock:
    """Milliseconds that run ``speed`` times faster than this machine's
    monotonic clock."""

    def __init__(self, speed: float = 25.0):
        self.speed = speed
        self.t0 = time.monotonic()

    def __call__(self) -> int:
        return int((time.monotonic() - self.t0) * 1000 * self.speed)


class MemoryReceiver:
    """The receiver's session core in memory: every frame a panel sends is
    judged by ``protocol.session.ReceiverCore`` (MAC, replay, time window,
    sequence), an accepted one is ACKed at once (as the real receiver does
    after its commit) and an EVENT kept as the receiver's own record
    (receiver.records.Event, classified, prioritised and described by
    receiver.alarms.classify as the receiver does).  ``runs``: callables
    that bring the panels up to now before a query answers."""

    def __init__(self, clock, wall0: float | None = None):
        self.clock = clock
        self.wall0 = time.time() if wall0 is None else wall0
        self._keys: dict[int, bytes] = {}
        self.core = rs.ReceiverCore(self._keyring)
        self.rows: list[Event] = []
        self.rejected: list = []
        self.runs: list = []

    def _keyring(self, account: int):
        key = self._keys.get(account)
        return (key, 0, 0) if key is not None else None

    def add_account(self, number: int, key: bytes) -> None:
        self._keys[int(number)] = key

    def remove_account(self, number: int) -> None:
        """As an operator removing it: the panel's frames then get silence."""
        self._keys.pop(int(number), None)
        self.core.forget(int(number))

    def now(self) -> float:
        """The receiver's wall clock (Unix seconds)."""
        return self.wall0 + self.clock() / 1000.0

    # -- frames in ----------------------------------------------------------------------

    def connection(self) -> rs.ReceiverConnection:
        return rs.ReceiverConnection(self.core)

    def stream(self, conn: rs.ReceiverConnection, data: bytes, path: int) -> list[bytes]:
        conn.receive_data(data)
        out = []
        while True:
            verdict = conn.next_event(self.now())
            if verdict is rs.NEED_DATA:
                return out
            reply = self._judged(verdict, path)
            if reply:
                out.append(reply)

    def datagram(self, data: bytes, path: int) -> bytes | None:
        return self._judged(rs.handle_datagram(self.core, data, self.now()), path)

    def _judged(self, verdict, path: int) -> bytes | None:
        if isinstance(verdict, rs.Rejected):
            self.rejected.append(verdict)
            return verdict.reply
        if verdict.msg["type"] == w.MSG_EVENT and not verdict.duplicate:
            self._keep(verdict, path)
        return self.core.ack(verdict, self.now())

    def _keep(self, a: rs.Accepted, path: int) -> None:
        m = a.msg
        cls, priority, description = classify(m["code"], m["qualifier"], zone=m["zone"],
                                              partition=m["partition"])
        self.rows.append(Event(
            id=len(self.rows) + 1, account=str(a.account), protocol="native", source="panel",
            dedupe_key="%d:%s" % (a.seq, a.digest), seq=a.seq, qualifier=m["qualifier"],
            code=m["code"], event_class=cls, priority=priority, description=description,
            partition=m["partition"], zone=m["zone"], text=m.get("text"),
            value=m.get("value"), event_time=m.get("event_time") or None,
            received_at=self.now(), path=path, peer="in-process"))

    # -- what it kept -------------------------------------------------------------------

    def _catch_up(self) -> None:
        for run in self.runs:
            run()

    def events(self, account=None, since: float | None = None, source: str | None = None,
               after_id: int = 0) -> list[dict]:
        """Stored events, oldest first, in the records' JSON shape (the HIL
        receiver's query)."""
        self._catch_up()
        return [e.to_json() for e in self.rows if e.id > after_id
                and (account is None or e.account == str(account))
                and (since is None or e.received_at >= since)
                and (source is None or e.source == source)]

    def events_after(self, account, after_id: int = 0, limit: int = 1000) -> list[Event]:
        """The event feed (Store.events_after): the account's events after
        ``after_id``, oldest first, as records."""
        self._catch_up()
        return [e for e in self.rows if e.id > after_id
                and (account is None or e.account == str(account))][:limit]


class MemoryLink:
    """One reporting path in memory (firmware/device/links.py's interface:
    poll, send, recv, stream, lost).  The board's gate (the control
    protocol's "path" and "net" inputs) cuts it; a stream cut while
    connected is ``lost``, as a dropped TCP connection is."""

    def __init__(self, receiver: MemoryReceiver, path: int, stream: bool, gate):
        self.receiver = receiver
        self.path = path
        self.stream = stream
        self.gate = gate
        self.lost = False
        self._conn: rs.ReceiverConnection | None = None
        self._inbox: list[bytes] = []

    def poll(self, now_ms) -> None:
        if not self.gate():
            if self._conn is not None:
                self._conn = None
                self.lost = True
            self._inbox.clear()
        elif self.stream and self._conn is None:
            self._conn = self.receiver.connection()

    def send(self, data) -> bool:
        if not self.gate():
            return False
        data = bytes(data)
        if self.stream:
            if self._conn is None:
                return False
            self._inbox += self.receiver.stream(self._conn, data, self.path)
        else:
            reply = self.receiver.datagram(data, self.path)
            if reply:
                self._inbox.append(reply)
        return True

    def recv(self):
        if self._inbox and self.gate():
            return self._inbox.pop(0)
        return None


class MemoryBoard(board_sim.Board):
    """The sim board (its inputs, outputs and control-protocol inputs,
    board_sim.py) with its console kept in memory and its links to a
    :class:`MemoryReceiver`."""

    def __init__(self, config_path: str, state_dir: str, receiver: MemoryReceiver, on_line):
        super().__init__(config_path, state_dir, control="in-process")
        self.receiver = receiver
        self.on_line = on_line

    def write_line(self, msg):
        self.on_line(msg)

    def open_link(self, i, pc):
        return MemoryLink(self.receiver, i + 1, pc["type"] != "udp",
                          lambda: self.path_up(i))

    def tasks(self, app):
        return []  # no control socket: the caller answers commands (InProcessPanel.ctl)


class InProcessPanel:
    """One panel: ``config`` (a dict), ``state_dir`` playing its flash
    (kept across power cycles), ``clock`` (a VirtualClock unless given)
    and the receiver it reports to (a MemoryReceiver on the same clock
    unless given; the panel's account is added to it)."""

    def __init__(self, config: dict, state_dir: str, clock=None,
                 receiver: MemoryReceiver | None = None):
        if config.get("protocol") == "dc09":
            raise ValueError("the in-process panel speaks the native protocol only; run a "
                             "DC-09 panel under the VM (testkit.panel.PanelProcess)")
        self.config = json.loads(json.dumps(config))
        self.clock = clock if clock is not None else VirtualClock()
        self.receiver = receiver if receiver is not None else MemoryReceiver(self.clock)
        self.receiver.add_account(int(self.config["account"]), bytes.fromhex(self.config["key"]))
        self.receiver.runs.append(self.run)
        self.state_dir = os.path.abspath(state_dir)
        os.makedirs(self.state_dir, exist_ok=True)
        self.config_path = os.path.join(self.state_dir, "config.json")
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(self.config, f)
        self.app = None
        self.board: MemoryBoard | None = None
        self.lines: list[str] = []  # the last CONSOLE_LINES console lines
        self._written = 0  # console lines written since construction
        self._taken = 0  # ... of which take_console returned
        self.boots = 0
        self._next_scan = 0
        self._next_report = 0

    # -- power --------------------------------------------------------------------------

    @property
    def powered(self) -> bool:
        return self.app is not None

    def power_on(self) -> None:
        if self.app is not None:
            return
        self.board = MemoryBoard(self.config_path, self.state_dir, self.receiver, self._line)
        self.app = _app.App(self.board, ticks=self.clock)
        self.boots += 1
        now = self.clock()
        self._next_scan = self._next_report = now

    def power_off(self) -> None:
        """Power gone between two steps (the flash keeps what was written)."""
        if self.app is None:
            return
        if self.app.panel is not None:
            self.app.queue.close()
        self.app = None
        self.board = None

    # -- time ---------------------------------------------------------------------------

    def run(self) -> None:
        """The scans and reporter polls due up to the clock's now, in order."""
        a = self.app
        if a is None or a.panel is None:
            return
        now = self.clock()
        while self.app is a and min(self._next_scan, self._next_report) <= now:
            if self._next_scan <= self._next_report:
                a.scan_step(self._next_scan)
                self._next_scan += a.scan_ms
            else:
                a.report_step(self._next_report)
                self._next_report += REPORT_MS

    def advance(self, ms: int, step_ms: int = REPORT_MS) -> None:
        """Move a VirtualClock on by ``ms``, the panel running all the way."""
        end = self.clock() + int(ms)
        while self.clock() < end:
            self.clock.advance(min(step_ms, end - self.clock()))
            self.run()

    # -- the control protocol ---------------------------------------------------------------

    def ctl(self, req: dict, timeout: float = 0.0) -> dict:
        """One control-protocol command, answered by the firmware's own
        handler (firmware/device/control.py) as the sim's socket would:
        a refusal is ``{"ok": false, "error": ...}``.  A power cycle or a
        stop takes effect at once."""
        self.run()
        a = self.app
        if a is None:
            return {"ok": False, "error": "the panel is powered off"}
        try:
            reply = _control.handle(a, self.board, req)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            reply = _control.refused(e)
        if a.exit_code is not None:
            code = a.exit_code
            self.power_off()
            if code == POWER_CYCLE:
                self.power_on()
        return reply

    __call__ = ctl  # a control callable, as walktest.AutoDriver takes one

    def state(self) -> dict:
        return self.ctl({"cmd": "state"})

    def _line(self, msg: str) -> None:
        self.lines.append(msg)
        self._written += 1
        if len(self.lines) > CONSOLE_LINES:
            del self.lines[:len(self.lines) - CONSOLE_LINES]

    def console(self) -> str:
        """The console lines kept (the last CONSOLE_LINES)."""
        return "".join(line + "\n" for line in self.lines)

    def take_console(self) -> str:
        """Console lines since the last call (of those kept)."""
        new = min(self._written - self._taken, len(self.lines))
        self._taken = self._written
        return "".join(line + "\n" for line in self.lines[len(self.lines) - new:])
