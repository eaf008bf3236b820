"""Drivers: one per kind of thing a bench (or the sim) has, each
implementing the protocols (hil/protocols.py) that thing can do.

- :class:`SerialDriver`: a board's console in test mode (docs/qa.md,
  "Console test mode"), or the sim board's control socket: the control
  protocol over any ``serial.serial_for_url`` port.  Zones, keypad,
  supplies, paths, outputs and the console (a real board refuses the
  electrical inputs: they are the fixture's).
- :class:`SimPowerDriver`: the sim board's power, which is its process
  (testkit.panel.PanelProcess): on starts the firmware's launcher, off is
  SIGKILL (a real power loss, even mid flash write).
- :class:`FixtureDriver`: the bench's relay/GPIO fixture (docs/qa.md, "I/O
  fixture protocol"): power, zone loops, mains and battery, path relays,
  and opto inputs that sense the outputs.

The in-process fake (the firmware's own core, no VM) is hil/fake.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

from hil.protocols import (ConsoleProtocol, KeypadProtocol, NotSupported, OutputProtocol,
                           PathProtocol, PowerProtocol, SupplyProtocol, TargetError,
                           TargetTimeout, ZoneProtocol, zone_ohms)
from testkit.control import COMMAND_TIMEOUT_S, CONSOLE_MAX, ControlChannel
from testkit.panel import PanelProcess


def _strip(reply: dict) -> dict:
    return {k: v for k, v in reply.items() if k not in ("ok", "id")}


class ConsoleText:
    """Console lines kept (bounded) until taken, each also handed on
    (to a timeline)."""

    def __init__(self, on_line=None):
        self.on_line = on_line
        self._text = bytearray()
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        with self._lock:
            self._text += line.encode() + b"\n"
            if len(self._text) > CONSOLE_MAX:
                del self._text[:len(self._text) - CONSOLE_MAX]
        if self.on_line is not None:
            self.on_line(line)

    def take(self) -> str:
        with self._lock:
            text = self._text.decode("utf-8", "replace")
            self._text.clear()
        return text


class ControlDriver(ZoneProtocol, KeypadProtocol, SupplyProtocol, PathProtocol,
                    OutputProtocol, ConsoleProtocol):
    """The protocols as control-protocol commands (docs/simulator.md,
    "Control protocol"): the one mapping of a zone, a key, a supply, a
    path or the clock to its command, for every driver that speaks the
    protocol.  A subclass says how a command travels (``_call``, which
    raises TargetError on a refusal) and where console text comes from."""

    name = "control"

    async def _call(self, cmd: str, timeout: float = COMMAND_TIMEOUT_S, **args) -> dict:
        raise NotImplementedError

    async def wait_ready(self, timeout: float = 60.0) -> dict:
        """Poll with "ping" until the firmware answers."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                return await self._call("ping", timeout=2.0)
            except TargetError as e:
                last = e
                await asyncio.sleep(0.2)
        raise TargetTimeout("%s: firmware did not answer within %.0f s (%s)"
                            % (self.name, timeout, last))

    async def reset(self, timeout: float = 60.0) -> None:
        """A soft reset: the firmware stops and its launcher (sim) or boot
        loader (board) starts it again.  The firmware that took the
        command answers pings until it has stopped (its supervisor notices
        within a round): ready is a firmware that booted after the reset,
        i.e. up for less time than has passed since."""
        t0 = time.monotonic()
        try:
            await self._call("power_cycle", timeout=5.0)
        except TargetError:
            pass  # the board may go down before its answer leaves; wait_ready judges
        await asyncio.sleep(0.3)
        deadline = t0 + timeout
        while True:
            hello = await self.wait_ready(max(1.0, deadline - time.monotonic()))
            if hello.get("uptime_ms", 0) <= (time.monotonic() - t0) * 1000:
                return
            if time.monotonic() > deadline:
                raise TargetTimeout("%s: still the firmware from before the reset" % self.name)
            await asyncio.sleep(0.1)

    async def set_zone(self, zone, state=None, ohms=None, eol=None) -> None:
        if state is not None:
            await self._call("zone", zone=zone, state=state)
        elif ohms is not None:
            await self._call("zone", zone=zone, ohms=int(ohms))
        else:
            raise ValueError("give a zone state or a resistance")

    async def keypad(self, code, key, partition=1, arg=0) -> dict:
        return _strip(await self._call("key", code=str(code), action=key, partition=partition,
                                       arg=arg))

    async def set_ac(self, on: bool) -> None:
        await self._call("ac", on=bool(on))

    async def set_battery(self, mv: int) -> None:
        await self._call("battery", mv=int(mv))

    async def set_box_tamper(self, open_: bool) -> None:
        await self._call("box_tamper", open=bool(open_))

    async def cut_path(self, path: int, cut: bool = True) -> None:
        await self._call("path", path=int(path), up=not cut)

    async def read_outputs(self) -> dict:
        return _strip(await self._call("outputs"))

    async def skew_clock(self, seconds: int) -> int:
        return (await self._call("clock", skew_s=int(seconds)))["clock"]

    async def state(self) -> dict:
        return _strip(await self._call("state"))


class SerialDriver(ControlDriver):
    """The control protocol over a serial_for_url port: a real board's
    /dev/ttyUSB0, or the sim's control socket as socket://127.0.0.1:PORT
    (which is how the driver is tested against the same firmware).
    ``console``: where read_console's text comes from when it is not
    this port (the sim's process output); ``on_console(line)`` sees every
    console line the port carries."""

    def __init__(self, url: str, baudrate: int = 115200, name: str = "console",
                 on_console=None, console: ConsoleText | None = None):
        self.url = url
        self.baudrate = baudrate
        self.name = name
        self.chan = ControlChannel(url, baudrate, name=name, on_console=on_console)
        self.console = console

    async def open(self) -> "SerialDriver":
        await self.chan.open()
        return self

    async def _call(self, cmd: str, timeout: float = COMMAND_TIMEOUT_S, **args) -> dict:
        return await self.chan.call(cmd, timeout=timeout, **args)

    async def read_console(self) -> str:
        return self.console.take() if self.console is not None else self.chan.take_console()

    async def close(self) -> None:
        await self.chan.close()


class SimPowerDriver(PowerProtocol):
    """The sim board's power: its process.  ``power_on`` starts the
    firmware's own launcher (``python -m firmware.sim``, what
    ``guardline-panel sim`` runs) on the config and the state directory
    (the flash); ``power_off`` kills the launcher and the VM at once, and
    the console's port is then known to be gone (the next command reopens
    it)."""

    def __init__(self, process: PanelProcess, console: SerialDriver, name: str = "sim"):
        self.process = process
        self.console = console
        self.name = name

    @property
    def powered(self) -> bool:
        return self.process.running

    async def power_on(self) -> None:
        self.process.start()

    async def power_off(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.process.kill)
        self.console.chan.mark_gone()

    async def close(self) -> None:
        await self.power_off()
        self.process.close()


class FixtureDriver(PowerProtocol, ZoneProtocol, SupplyProtocol, PathProtocol, OutputProtocol):
    """The bench fixture (docs/qa.md, "I/O fixture protocol"): relays and
    a resistor ladder per zone loop, a power relay, an AC relay, a
    programmable supply for the battery, and opto inputs that sense the
    panel's siren, strobe and lock outputs.  ``wiring`` maps the panel's
    names to fixture channels, e.g. {"zones": {"1": 0, "2": 1},
    "power": 0, "ac": 1, "paths": {"1": 2}, "outputs": {"siren": 0, ...}}."""

    def __init__(self, url: str, wiring: dict | None = None, baudrate: int = 115200,
                 name: str = "fixture", on_console=None):
        self.url = url
        self.wiring = wiring or {}
        self.baudrate = baudrate
        self.name = name
        self.chan = ControlChannel(url, baudrate, name=name, on_console=on_console)
        self._powered = False
        self.info: dict = {}

    @property
    def powered(self) -> bool:
        return self._powered

    async def open(self) -> "FixtureDriver":
        await self.chan.open()
        self.info = _strip(await self.chan.call("info"))
        if "power" in self.wiring:
            relays = self.info.get("relays", [])
            ch = self.channel("power", None)
            self._powered = ch < len(relays) and bool(relays[ch])
        return self

    def channel(self, group: str, key) -> int:
        """The fixture channel wired to `key` of `group` (NotSupported if
        the wiring has none)."""
        g = self.wiring.get(group)
        if isinstance(g, dict):
            if str(key) not in g:
                raise NotSupported("fixture wiring has no %s %r" % (group, key))
            return int(g[str(key)])
        if g is None:
            raise NotSupported("fixture wiring has no %s" % group)
        return int(g)

    def senses_outputs(self) -> bool:
        return bool(self.wiring.get("outputs"))

    async def power_on(self) -> None:
        await self.chan.call("relay", ch=self.channel("power", None), on=True)
        self._powered = True

    async def power_off(self) -> None:
        await self.chan.call("relay", ch=self.channel("power", None), on=False)
        self._powered = False

    async def set_zone(self, zone, state=None, ohms=None, eol=None) -> None:
        if ohms is None:
            ohms = zone_ohms(state or "", eol)
        await self.chan.call("loop", ch=self.channel("zones", zone), ohms=int(ohms))

    async def set_ac(self, on: bool) -> None:
        await self.chan.call("relay", ch=self.channel("ac", None), on=bool(on))

    async def set_battery(self, mv: int) -> None:
        await self.chan.call("supply", mv=int(mv))

    async def set_box_tamper(self, open_: bool) -> None:
        raise NotSupported("the fixture has no lid switch channel: open the lid by hand")

    async def cut_path(self, path: int, cut: bool = True) -> None:
        # a relay in series with the path's cable (Ethernet pair or UART TX)
        await self.chan.call("relay", ch=self.channel("paths", path), on=not cut)

    async def read_outputs(self) -> dict:
        r = await self.chan.call("inputs")
        levels = r.get("inputs", [])
        out = {}
        for name, ch in (self.wiring.get("outputs") or {}).items():
            out[name] = bool(levels[int(ch)]) if int(ch) < len(levels) else False
        return out

    async def close(self) -> None:
        await self.chan.close()
