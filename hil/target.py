"""A panel under test: a target binds one driver to each protocol it can
do, after labgrid (hil/protocols.py says what the protocols are,
hil/drivers.py and hil/fake.py what drives them).

- :class:`SimTarget`: the real firmware under the MicroPython VM on the
  simulated board: power is its process (SimPowerDriver), everything else
  goes through the sim board's control socket with the same SerialDriver
  a real board's console uses.
- :class:`BenchTarget`: a real board: its console in test mode
  (SerialDriver) and, if there is one, the relay/GPIO fixture
  (FixtureDriver) for power, zone loops, supplies, path cuts and output
  sensing.
- :class:`hil.fake.FakeTarget`: the firmware's own core in this process,
  on a virtual clock, for strategy and walk-test logic in milliseconds.

Scenarios and strategies call the target (``await panel.set_zone(2,
"alarm")``); it checks the arguments, writes the action to the timeline
and hands it to the driver bound for that protocol.  Every port is opened
with ``serial.serial_for_url``, so a driver talks to ``/dev/ttyUSB0``,
``socket://host:port``, ``rfc2217://host:port`` or ``spy://...`` without
a line changed.

Invariants:

- A protocol without a driver raises :class:`NotSupported` naming what
  is missing; nothing is silently skipped.
- No command is re-sent behind the caller's back: a target that does not
  answer raises :class:`TargetTimeout`, one that refuses
  :class:`TargetError` with its reason.  Scenarios poll for *effects*.
- Everything done to a target is written to the timeline (source
  "panel"), so a report shows the inputs next to the frames they caused;
  a user code never is.
"""

from __future__ import annotations

import json
import logging
import os

from hil.drivers import ConsoleText, FixtureDriver, SerialDriver, SimPowerDriver
from hil.protocols import (CAPABILITY, KEYPAD_ACTIONS, OUTPUTS, PROTOCOLS, ZONE_STATES,
                           ConsoleProtocol, KeypadProtocol, NotSupported, OutputProtocol,
                           PathProtocol, PowerProtocol, SupplyProtocol, TargetError,
                           TargetTimeout, ZoneProtocol, zone_ohms)
from hil.timeline import PANEL, Timeline
from testkit.panel import PanelProcess

__all__ = ["KEYPAD_ACTIONS", "OUTPUTS", "ZONE_STATES", "BenchTarget", "FixtureDriver",
           "NotSupported", "SerialDriver", "SimTarget", "Target", "TargetError",
           "TargetTimeout", "open_target_url", "zone_ohms"]

_LOGGER = logging.getLogger(__name__)

# How long the firmware may take to answer after power on: the sim boots
# in about a second, a board in a few; a loaded CI host gets room.
BOOT_TIMEOUT_S = 60.0

# Why a target without a driver for a protocol cannot do it.
_MISSING = {PowerProtocol: "switch the power (a bench needs the fixture's power relay)",
            ZoneProtocol: "drive zone loops", KeypadProtocol: "use the keypad",
            SupplyProtocol: "switch mains or the battery", PathProtocol: "cut a path",
            OutputProtocol: "read the outputs", ConsoleProtocol: "reach the console"}


class Target:
    """A panel under test and the drivers bound to it."""

    kind = "target"

    def __init__(self, name: str = "", timeline: Timeline | None = None):
        self.name = name or self.kind
        self.timeline = timeline if timeline is not None else Timeline(self.name)
        self.account: int | None = None
        self.config: dict | None = None  # the panel's configuration, when known
        self.drivers: dict = {}
        self.boots = 0
        self.boot_timeout = BOOT_TIMEOUT_S

    # -- binding ------------------------------------------------------------------------

    def bind(self, protocol: type, driver) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError("%r is not a target protocol" % (protocol,))
        if not isinstance(driver, protocol):
            raise TypeError("%r does not implement %s" % (driver, protocol.__name__))
        self.drivers[protocol] = driver

    def can(self, protocol: type) -> bool:
        return protocol in self.drivers

    def capabilities(self) -> frozenset:
        """What hil_needs(...) may ask of this target."""
        return frozenset(CAPABILITY[p] for p in self.drivers)

    def driver(self, protocol: type):
        try:
            return self.drivers[protocol]
        except KeyError:
            raise NotSupported("%s (%s) cannot %s" % (self.name, self.kind,
                                                      _MISSING[protocol])) from None

    def note(self, kind: str, **detail) -> None:
        self.timeline.record(PANEL, kind, target=self.name, **detail)

    async def open(self) -> "Target":
        """Open every driver's port (those that have one to open)."""
        for d in self._distinct():
            if hasattr(d, "open"):
                await d.open()
        return self

    async def close(self) -> None:
        """Release ports and processes (the target is left as it is)."""
        for d in reversed(self._distinct()):
            if hasattr(d, "close"):
                await d.close()

    def _distinct(self) -> list:
        out: list = []
        for d in self.drivers.values():
            if not any(d is x for x in out):
                out.append(d)
        return out

    # -- power --------------------------------------------------------------------------

    @property
    def powered(self) -> bool:
        """Powered (a target whose power no driver switches is taken to be on)."""
        return self.driver(PowerProtocol).powered if self.can(PowerProtocol) else True

    async def power_on(self) -> None:
        """Power on and wait until the firmware answers its console."""
        power = self.driver(PowerProtocol)
        if power.powered:
            return
        self.note("power", on=True)
        await power.power_on()
        if self.can(ConsoleProtocol):
            try:
                await self.driver(ConsoleProtocol).wait_ready(self.boot_timeout)
            except TargetError:
                tail = await self.read_console()
                await power.power_off()
                raise TargetTimeout("%s: the firmware did not come up; console:\n%s"
                                    % (self.name, tail[-4000:])) from None
        self.boots += 1
        self.note("booted", boot=self.boots)

    async def power_off(self) -> None:
        power = self.driver(PowerProtocol)
        self.note("power", on=False)
        await power.power_off()

    async def power_cycle(self, off_s: float = 0.5) -> None:
        import asyncio  # noqa: PLC0415

        await self.power_off()
        await asyncio.sleep(off_s)
        await self.power_on()

    async def reset(self) -> None:
        """A reboot without a power loss (watchdog / reset button)."""
        self.note("reset")
        await self.driver(ConsoleProtocol).reset()

    # -- inputs -------------------------------------------------------------------------

    async def set_zone(self, zone: int, state: str | None = None,
                       ohms: int | None = None) -> None:
        """Drive zone `zone` (its configured id) to a loop state or an exact
        loop resistance in ohms (-1 = open)."""
        if (state is None) == (ohms is None):
            raise ValueError("give a zone state or a resistance, not both")
        if state is not None and state not in ZONE_STATES:
            raise ValueError("zone state must be one of %s" % ", ".join(ZONE_STATES))
        d = self.driver(ZoneProtocol)
        self.note("zone", zone=zone, state=state, ohms=ohms, via=d.name)
        await d.set_zone(zone, state, ohms, (self.config or {}).get("eol"))

    async def keypad(self, code: str, key: str, partition: int = 1, arg: int = 0) -> dict:
        """Enter `code` and press `key` (one of KEYPAD_ACTIONS)."""
        if key not in KEYPAD_ACTIONS:
            raise ValueError("key must be one of %s" % ", ".join(KEYPAD_ACTIONS))
        r = await self.driver(KeypadProtocol).keypad(code, key, partition, arg)
        # the code itself is never written to the timeline
        self.note("keypad", key=key, partition=partition, arg=arg,
                  result=r.get("result_name", r.get("result")))
        return r

    async def set_ac(self, on: bool) -> None:
        d = self.driver(SupplyProtocol)
        self.note("ac", on=bool(on), via=d.name)
        await d.set_ac(on)

    async def set_battery(self, mv: int) -> None:
        d = self.driver(SupplyProtocol)
        self.note("battery", mv=int(mv), via=d.name)
        await d.set_battery(mv)

    async def set_box_tamper(self, open_: bool) -> None:
        d = self.driver(SupplyProtocol)
        self.note("box_tamper", open=bool(open_), via=d.name)
        await d.set_box_tamper(open_)

    async def cut_path(self, path: int, cut: bool = True) -> None:
        """Cut (or restore) reporting path 1 (primary) or 2 (backup) at the
        panel's side (its network link or UART)."""
        d = self.driver(PathProtocol)
        self.note("cut_path", path=int(path), cut=bool(cut), via=d.name)
        await d.cut_path(path, cut)

    # -- outputs and state ----------------------------------------------------------------

    async def read_outputs(self) -> dict:
        """{"siren": bool, "strobe": bool, "lock": bool, ...}"""
        return await self.driver(OutputProtocol).read_outputs()

    async def read_console(self) -> str:
        """Console text the target wrote since the last call."""
        return await self.driver(ConsoleProtocol).read_console()

    async def state(self) -> dict:
        """The panel's own view: partitions, zones, troubles, queue..."""
        return await self.driver(ConsoleProtocol).state()

    async def skew_clock(self, seconds: int) -> int:
        """Move the panel's wall clock by `seconds` (negative: behind), as
        a drifting panel clock would; returns the panel's clock after."""
        d = self.driver(ConsoleProtocol)
        self.note("clock", skew_s=int(seconds))
        return await d.skew_clock(seconds)


def panel_config(config, paths: dict | None) -> dict:
    """A private copy of `config` (a dict or a JSON file), its receiver
    paths replaced by `paths` (point the panel at a link)."""
    if isinstance(config, (str, os.PathLike)):
        with open(config, encoding="utf-8") as f:
            config = json.load(f)
    cfg = json.loads(json.dumps(config))
    if paths:
        rx = cfg.setdefault("receiver", {})
        for k, v in paths.items():
            rx[k] = v
    return cfg


class SimTarget(Target):
    """The real firmware on the simulated board, under the MicroPython VM.

    The config is written to ``workdir/config.json``; ``workdir/flash`` is
    the state directory that plays the flash and survives a power cycle.
    ``paths`` overrides the config's receiver paths: {"primary": {"type":
    "tcp", "host": ..., "port": ...}, "backup": {...} or None}."""

    kind = "sim"

    def __init__(self, config, workdir: str, paths: dict | None = None,
                 heapsize: str | None = None, control_port: int | None = None,
                 boot_timeout: float = BOOT_TIMEOUT_S, **kw):
        super().__init__(**kw)
        self.config = panel_config(config, paths)
        self.account = int(self.config["account"])
        self.boot_timeout = boot_timeout
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.config_path = os.path.join(self.workdir, "config.json")
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=1)
        text = ConsoleText(on_line=lambda line: self.note("console", text=line[:500]))
        self.process = PanelProcess(self.config_path, os.path.join(self.workdir, "flash"),
                                    control_port=control_port, heapsize=heapsize,
                                    cwd=self.workdir, start=False, on_line=text.add,
                                    log_path=os.path.join(self.workdir, "console.log"))
        self.control_port = self.process.control_port
        self.control = SerialDriver("socket://127.0.0.1:%d" % self.control_port,
                                    name=self.name + ".control", console=text)
        for p in (ZoneProtocol, KeypadProtocol, SupplyProtocol, PathProtocol, OutputProtocol,
                  ConsoleProtocol):
            self.bind(p, self.control)
        self.bind(PowerProtocol, SimPowerDriver(self.process, self.control, self.name))


class BenchTarget(Target):
    """A real board on a bench: the console (test mode) for the keypad,
    state, clock and console text; the fixture for power, zone loops,
    supplies, path cuts and output sensing.  Without a fixture those go to
    the console, which a real board refuses (electrical inputs are the
    fixture's; the plugin skips scenarios that need them), while a sim's
    console still accepts them; power then is NotSupported."""

    kind = "bench"

    def __init__(self, console: SerialDriver, fixture: FixtureDriver | None = None, **kw):
        super().__init__(**kw)
        self.console = console
        self.fixture = fixture
        for p in (ZoneProtocol, KeypadProtocol, SupplyProtocol, PathProtocol, OutputProtocol,
                  ConsoleProtocol):
            self.bind(p, console)
        if fixture is not None:
            for p in (PowerProtocol, ZoneProtocol, SupplyProtocol, PathProtocol):
                self.bind(p, fixture)
            if fixture.senses_outputs():
                self.bind(OutputProtocol, fixture)

    async def open(self) -> "BenchTarget":
        # the fixture first: it may have to power the board before its
        # console can be opened
        if self.fixture is not None:
            await self.fixture.open()
        await self.console.open()
        return self


def open_target_url(url: str, timeline: Timeline | None = None, fixture_url: str | None = None,
                    wiring: dict | None = None) -> BenchTarget:
    """`--hil-target serial:///dev/ttyUSB0` (or serial:socket://host:port,
    serial:rfc2217://...): a bench target on that console URL."""
    if url.startswith("serial://"):
        url = url[len("serial://"):]
    elif url.startswith("serial:"):
        url = url[len("serial:"):]
    tl = timeline if timeline is not None else Timeline("bench")

    def console_line(who):
        return lambda text: tl.record(PANEL, "console", target=who, text=text[:500])
    console = SerialDriver(url, name="console", on_console=console_line("console"))
    fixture = None
    if fixture_url:
        fixture = FixtureDriver(fixture_url, wiring=wiring, on_console=console_line("fixture"))
    return BenchTarget(console, fixture, name="bench", timeline=tl)

