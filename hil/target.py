"""What a panel under test can do, and one driver per kind of target.

Layered after labgrid: :class:`Target` is the protocol (what a scenario may
ask of a panel); a driver implements it for one kind of target:

- :class:`SimDriver`: the real firmware running under the MicroPython VM
  on the simulated board (``guardline-panel sim``), driven through the sim
  board's control socket.
- :class:`SerialDriver`: a real board's console UART in test mode (the
  line-delimited JSON protocol in docs/qa.md, "Console test mode").
- :class:`FixtureDriver`: the relay/GPIO fixture on a bench that powers a
  real board, drives its zone loops and supplies and senses its outputs
  (docs/qa.md, "I/O fixture protocol").
- :class:`BenchTarget`: a real board = its console + its fixture.

Every port is opened with ``serial.serial_for_url``, so a driver talks to
``/dev/ttyUSB0``, ``socket://host:port``, ``rfc2217://host:port`` or
``spy://...`` without a line changed.  The methods are coroutines because
the rest of the harness (links, receiver) is asyncio: a blocking call
would stall the link's deliveries while it waits.

Invariants:

- A driver never retries an operation silently: a target that does not
  answer raises :class:`TargetTimeout`, one that refuses raises
  :class:`TargetError` with its reason.  Scenarios poll for *effects*;
  commands themselves are not re-sent behind their back.
- Everything done to a target is written to the timeline (source
  "panel"), so a report shows the inputs next to the frames they caused.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import os
import threading
import time

import serial

from hil.timeline import PANEL, Timeline
from testkit.control import (COMMAND_TIMEOUT_S, CONSOLE_MAX, ControlChannel, ControlError,
                             ControlTimeout)
from testkit.panel import PanelProcess

_LOGGER = logging.getLogger(__name__)

# Zone loop states, as the firmware's eol classifier names them.
ZONE_STATES = ("normal", "alarm", "tamper", "short")
# Keypad actions, as the firmware names them (firmware/device/panel.py).
KEYPAD_ACTIONS = ("disarm", "arm_away", "arm_stay", "unlock", "bypass", "unbypass", "status")
# Outputs every target reports (a door controller adds more, e.g. "lock").
OUTPUTS = ("siren", "strobe", "lock")



# A target that refused or failed an operation (its reason attached), one
# that did not answer in time: the control client's errors.
TargetError = ControlError
TargetTimeout = ControlTimeout


class NotSupported(TargetError):
    """This kind of target cannot do that (e.g. a console cannot power a
    board off: a bench needs the fixture's power relay for that)."""


def zone_ohms(state: str, eol: dict | None = None) -> int:
    """The loop resistance that reads as `state` with double-EOL wiring
    (firmware/device/eol.py): -1 is an open loop."""
    eol = eol or {}
    normal = eol.get("normal_ohms", 2200)
    alarm = eol.get("alarm_ohms", 4400)
    table = {"normal": normal, "alarm": alarm, "tamper": -1, "short": 0}
    if state not in table:
        raise ValueError("zone state must be one of %s, not %r" % (", ".join(table), state))
    return table[state]


class Target(abc.ABC):
    """The protocol: what a scenario may do to a panel under test."""

    name: str = "target"
    kind: str = "target"

    def __init__(self, name: str = "", timeline: Timeline | None = None):
        self.name = name or self.kind
        self.timeline = timeline if timeline is not None else Timeline(self.name)
        self.account: int | None = None
        self.config: dict | None = None  # the panel's configuration, when known

    def note(self, kind: str, **detail) -> None:
        self.timeline.record(PANEL, kind, target=self.name, **detail)

    # power and life cycle
    @abc.abstractmethod
    async def power_on(self) -> None: ...

    @abc.abstractmethod
    async def power_off(self) -> None: ...

    async def power_cycle(self, off_s: float = 0.5) -> None:
        await self.power_off()
        await asyncio.sleep(off_s)
        await self.power_on()

    @abc.abstractmethod
    async def reset(self) -> None:
        """A reboot without a power loss (watchdog / reset button)."""

    @property
    @abc.abstractmethod
    def powered(self) -> bool: ...

    # inputs
    @abc.abstractmethod
    async def set_zone(self, zone: int, state: str | None = None,
                       ohms: int | None = None) -> None:
        """Drive zone `zone` (its configured id) to a loop state or an exact
        loop resistance in ohms (-1 = open)."""

    @abc.abstractmethod
    async def keypad(self, code: str, key: str, partition: int = 1, arg: int = 0) -> dict:
        """Enter `code` and press `key` (one of KEYPAD_ACTIONS)."""

    @abc.abstractmethod
    async def set_ac(self, on: bool) -> None: ...

    @abc.abstractmethod
    async def set_battery(self, mv: int) -> None: ...

    @abc.abstractmethod
    async def cut_path(self, path: int, cut: bool = True) -> None:
        """Cut (or restore) reporting path 1 (primary) or 2 (backup) at the
        panel's side (its network link or UART)."""

    # outputs and state
    @abc.abstractmethod
    async def read_outputs(self) -> dict:
        """{"siren": bool, "strobe": bool, "lock": bool, ...}"""

    @abc.abstractmethod
    async def read_console(self) -> str:
        """Console text the target wrote since the last call."""

    @abc.abstractmethod
    async def state(self) -> dict:
        """The panel's own view: partitions, zones, troubles, queue..."""

    async def skew_clock(self, seconds: int) -> int:
        """Move the panel's wall clock by `seconds` (negative: behind), as
        a drifting panel clock would; returns the panel's clock after."""
        raise NotSupported("%s cannot skew the panel clock" % self.kind)

    async def close(self) -> None:
        """Release ports and processes (the target is left as it is)."""


def _strip(reply: dict) -> dict:
    return {k: v for k, v in reply.items() if k not in ("ok", "id")}


# --- a real board's console in test mode ------------------------------------------------


class SerialDriver(Target):
    """A board over its console in test mode (docs/qa.md): the sim board's
    control protocol, on a UART.  ``url`` is anything serial_for_url opens
    (a real board's /dev/ttyUSB0, or the sim's control socket as
    socket://127.0.0.1:PORT, which is how the driver is tested against the
    same firmware).

    The console cannot switch the board's power; give ``power`` (a
    :class:`FixtureDriver`) for that, or power_on/off raise NotSupported."""

    kind = "serial"

    def __init__(self, url: str, baudrate: int = 115200, power: "FixtureDriver | None" = None,
                 **kw):
        super().__init__(**kw)
        self.url = url
        self.baudrate = baudrate
        self.power = power
        self.chan = ControlChannel(url, baudrate, name=self.name, on_console=self._console_line)
        self.hello: dict = {}

    def _console_line(self, text: str) -> None:
        self.timeline.record(PANEL, "console", target=self.name, text=text[:500])

    async def open(self) -> "SerialDriver":
        await self.chan.open()
        return self

    async def _call(self, cmd: str, timeout: float = COMMAND_TIMEOUT_S, **args) -> dict:
        return await self.chan.call(cmd, timeout=timeout, **args)

    async def wait_ready(self, timeout: float = 60.0) -> dict:
        """Poll with "ping" until the firmware answers."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.hello = await self._call("ping", timeout=2.0)
                return self.hello
            except TargetError as e:
                last = e
                await asyncio.sleep(0.2)
        raise TargetTimeout("%s: firmware did not answer within %.0f s (%s)"
                            % (self.name, timeout, last))

    @property
    def powered(self) -> bool:
        return self.power.powered if self.power is not None else True

    async def power_on(self) -> None:
        if self.power is None:
            raise NotSupported("a console cannot power a board on: attach the fixture")
        await self.power.power_on()
        await self.wait_ready()

    async def power_off(self) -> None:
        if self.power is None:
            raise NotSupported("a console cannot power a board off: attach the fixture")
        await self.power.power_off()

    async def reset(self) -> None:
        """A soft reset: the firmware stops and its launcher (sim) or
        boot loader (board) starts it again."""
        self.note("reset")
        t0 = time.monotonic()
        try:
            await self._call("power_cycle", timeout=5.0)
        except TargetError:
            pass  # the board may go down before its answer leaves; wait_ready judges
        await asyncio.sleep(0.3)
        # The firmware that took the command answers pings until it has
        # stopped (its supervisor notices within a round): ready is a
        # firmware that booted after the reset, i.e. up for less time than
        # has passed since.
        deadline = t0 + 60.0
        while True:
            hello = await self.wait_ready(max(1.0, deadline - time.monotonic()))
            if hello.get("uptime_ms", 0) <= (time.monotonic() - t0) * 1000:
                return
            if time.monotonic() > deadline:
                raise TargetTimeout("%s: still the firmware from before the reset" % self.name)
            await asyncio.sleep(0.1)

    async def set_zone(self, zone, state=None, ohms=None) -> None:
        if (state is None) == (ohms is None):
            raise ValueError("give a zone state or a resistance, not both")
        if state is not None and state not in ZONE_STATES:
            raise ValueError("zone state must be one of %s" % ", ".join(ZONE_STATES))
        self.note("zone", zone=zone, state=state, ohms=ohms)
        args = {"zone": zone}
        args.update({"state": state} if state is not None else {"ohms": int(ohms)})
        await self._call("zone", **args)

    async def keypad(self, code, key, partition=1, arg=0) -> dict:
        if key not in KEYPAD_ACTIONS:
            raise ValueError("key must be one of %s" % ", ".join(KEYPAD_ACTIONS))
        r = _strip(await self._call("key", code=str(code), action=key, partition=partition,
                                    arg=arg))
        # the code itself is never written to the timeline
        self.note("keypad", key=key, partition=partition, arg=arg,
                  result=r.get("result_name", r.get("result")))
        return r

    async def set_ac(self, on: bool) -> None:
        self.note("ac", on=bool(on))
        await self._call("ac", on=bool(on))

    async def set_battery(self, mv: int) -> None:
        self.note("battery", mv=int(mv))
        await self._call("battery", mv=int(mv))

    async def set_box_tamper(self, open_: bool) -> None:
        self.note("box_tamper", open=bool(open_))
        await self._call("box_tamper", open=bool(open_))

    async def cut_path(self, path: int, cut: bool = True) -> None:
        self.note("cut_path", path=int(path), cut=bool(cut))
        await self._call("path", path=int(path), up=not cut)

    async def read_outputs(self) -> dict:
        return _strip(await self._call("outputs"))

    async def skew_clock(self, seconds: int) -> int:
        self.note("clock", skew_s=int(seconds))
        return (await self._call("clock", skew_s=int(seconds)))["clock"]

    async def read_console(self) -> str:
        return self.chan.take_console()

    async def state(self) -> dict:
        return _strip(await self._call("state"))

    async def close(self) -> None:
        await self.chan.close()


# --- the simulated board ---------------------------------------------------------------


class SimDriver(Target):
    """The real firmware on the simulated board, under the MicroPython VM.

    Starts the firmware's own launcher (``python -m firmware.sim``, what
    ``guardline-panel sim`` runs) with a config written to a work
    directory and a state directory that plays the flash.  Power is the
    process: ``power_off`` kills the launcher and the VM at once (SIGKILL:
    a real power loss, even in the middle of a flash write) and
    ``power_on`` starts them again on the same state directory.  Inputs,
    outputs and state go through the sim board's control socket, with the
    same :class:`SerialDriver` a real board's console uses (over
    ``socket://``).

    ``paths`` overrides the config's receiver paths (point the panel at a
    link): {"primary": {"type": "tcp", "host": ..., "port": ...},
    "backup": {...} or None}."""

    kind = "sim"

    def __init__(self, config, workdir: str, paths: dict | None = None,
                 heapsize: str | None = None, control_port: int | None = None,
                 boot_timeout: float = 60.0, **kw):
        super().__init__(**kw)
        if isinstance(config, (str, os.PathLike)):
            with open(config, encoding="utf-8") as f:
                config = json.load(f)
        self.config = json.loads(json.dumps(config))  # a private copy
        if paths:
            rx = self.config.setdefault("receiver", {})
            for k, v in paths.items():
                rx[k] = v
        self.account = int(self.config["account"])
        self.workdir = os.path.abspath(workdir)
        self.state_dir = os.path.join(self.workdir, "flash")
        os.makedirs(self.state_dir, exist_ok=True)
        self.config_path = os.path.join(self.workdir, "config.json")
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=1)
        self.boot_timeout = boot_timeout
        self.process = PanelProcess(self.config_path, self.state_dir, control_port=control_port,
                                    heapsize=heapsize, cwd=self.workdir, start=False,
                                    log_path=os.path.join(self.workdir, "console.log"),
                                    on_line=self._console_line)
        self.control_port = self.process.control_port
        self.control = SerialDriver("socket://127.0.0.1:%d" % self.control_port,
                                    name=self.name + ".control", timeline=self.timeline)
        self._console = bytearray()
        self._console_lock = threading.Lock()

    @property
    def powered(self) -> bool:
        return self.process.running

    @property
    def boots(self) -> int:
        return self.process.starts

    async def power_on(self) -> None:
        if self.powered:
            return
        self.note("power", on=True)
        self.process.start()
        try:
            await self.control.wait_ready(self.boot_timeout)
        except TargetError:
            tail = self._console_tail()
            await self.power_off()
            raise TargetTimeout("%s: the sim did not come up; console:\n%s" % (self.name, tail))
        self.note("booted", boot=self.boots)

    def _console_line(self, text: str) -> None:
        with self._console_lock:
            self._console += text.encode() + b"\n"
            if len(self._console) > CONSOLE_MAX:
                del self._console[:len(self._console) - CONSOLE_MAX]
        self.timeline.record(PANEL, "console", target=self.name, text=text[:500])

    def _console_tail(self, n: int = 4000) -> str:
        with self._console_lock:
            return self._console[-n:].decode("utf-8", "replace")

    async def power_off(self) -> None:
        if self.process.proc is None:
            return
        self.note("power", on=False)
        await asyncio.get_running_loop().run_in_executor(None, self.process.kill)
        self.control.chan.mark_gone()  # the next command reopens the socket

    async def reset(self) -> None:
        await self.control.reset()

    async def set_zone(self, zone, state=None, ohms=None) -> None:
        await self.control.set_zone(zone, state, ohms)

    async def keypad(self, code, key, partition=1, arg=0) -> dict:
        return await self.control.keypad(code, key, partition, arg)

    async def set_ac(self, on) -> None:
        await self.control.set_ac(on)

    async def set_battery(self, mv) -> None:
        await self.control.set_battery(mv)

    async def cut_path(self, path, cut=True) -> None:
        await self.control.cut_path(path, cut)

    async def set_box_tamper(self, open_: bool) -> None:
        await self.control.set_box_tamper(open_)

    async def read_outputs(self) -> dict:
        return await self.control.read_outputs()

    async def skew_clock(self, seconds: int) -> int:
        return await self.control.skew_clock(seconds)

    async def read_console(self) -> str:
        with self._console_lock:
            text = self._console.decode("utf-8", "replace")
            self._console.clear()
        return text

    async def state(self) -> dict:
        return await self.control.state()

    async def close(self) -> None:
        await self.control.close()
        await self.power_off()
        self.process.close()


# --- the bench's relay/GPIO fixture -------------------------------------------------------


class FixtureDriver:
    """The bench fixture (docs/qa.md, "I/O fixture protocol"): relays and
    a resistor ladder per zone loop, a power relay, an AC relay, a
    programmable supply for the battery, and opto inputs that sense the
    panel's siren, strobe and lock outputs.  ``wiring`` maps the panel's
    names to fixture channels, e.g. {"zones": {"1": 0, "2": 1},
    "power": 0, "ac": 1, "paths": {"1": 2}, "outputs": {"siren": 0, ...}}."""

    def __init__(self, url: str, wiring: dict | None = None, baudrate: int = 115200,
                 name: str = "fixture", timeline: Timeline | None = None):
        self.url = url
        self.wiring = wiring or {}
        self.baudrate = baudrate
        self.name = name
        self.timeline = timeline if timeline is not None else Timeline(name)
        self.chan = ControlChannel(url, baudrate, name=name, on_console=lambda text: (
            self.timeline.record(PANEL, "console", target=name, text=text[:500])))
        self.powered = False
        self.info: dict = {}

    async def open(self) -> "FixtureDriver":
        await self.chan.open()
        self.info = _strip(await self.chan.call("info"))
        if "power" in self.wiring:
            relays = self.info.get("relays", [])
            ch = self._ch("power", None)
            self.powered = ch < len(relays) and bool(relays[ch])
        return self

    def _ch(self, group: str, key) -> int:
        g = self.wiring.get(group)
        if isinstance(g, dict):
            if str(key) not in g:
                raise NotSupported("fixture wiring has no %s %r" % (group, key))
            return int(g[str(key)])
        if g is None:
            raise NotSupported("fixture wiring has no %s" % group)
        return int(g)

    async def power_on(self) -> None:
        self.timeline.record(PANEL, "power", target=self.name, on=True)
        await self.chan.call("relay", ch=self._ch("power", None), on=True)
        self.powered = True

    async def power_off(self) -> None:
        self.timeline.record(PANEL, "power", target=self.name, on=False)
        await self.chan.call("relay", ch=self._ch("power", None), on=False)
        self.powered = False

    async def set_zone(self, zone: int, state: str | None = None, ohms: int | None = None,
                       eol: dict | None = None) -> None:
        if ohms is None:
            ohms = zone_ohms(state, eol)
        await self.chan.call("loop", ch=self._ch("zones", zone), ohms=int(ohms))

    async def set_ac(self, on: bool) -> None:
        await self.chan.call("relay", ch=self._ch("ac", None), on=bool(on))

    async def set_battery(self, mv: int) -> None:
        await self.chan.call("supply", mv=int(mv))

    async def cut_path(self, path: int, cut: bool = True) -> None:
        # a relay in series with the path's cable (Ethernet pair or UART TX)
        await self.chan.call("relay", ch=self._ch("paths", path), on=not cut)

    async def read_outputs(self) -> dict:
        r = await self.chan.call("inputs")
        levels = r.get("inputs", [])
        out = {}
        for name, ch in (self.wiring.get("outputs") or {}).items():
            out[name] = bool(levels[int(ch)]) if int(ch) < len(levels) else False
        return out

    async def close(self) -> None:
        await self.chan.close()


class BenchTarget(Target):
    """A real board on a bench: the console (test mode) for the keypad,
    state, clock and console text; the fixture for power, zone loops,
    supplies, path cuts and output sensing.  Without a fixture those go to
    the console, which a real board refuses (electrical inputs are the
    fixture's; the plugin skips scenarios that need them), while a sim's
    console still accepts them."""

    kind = "bench"

    def __init__(self, console: SerialDriver, fixture: FixtureDriver | None = None, **kw):
        super().__init__(**kw)
        self.console = console
        self.fixture = fixture
        if fixture is not None:
            console.power = fixture

    @property
    def powered(self) -> bool:
        return self.console.powered

    async def open(self) -> "BenchTarget":
        if self.fixture is not None:
            await self.fixture.open()
        await self.console.open()
        return self

    async def power_on(self) -> None:
        await self.console.power_on()
        self.account = self.console.account

    async def power_off(self) -> None:
        await self.console.power_off()

    async def reset(self) -> None:
        await self.console.reset()

    async def set_zone(self, zone, state=None, ohms=None) -> None:
        if self.fixture is not None:
            self.note("zone", zone=zone, state=state, ohms=ohms, via="fixture")
            eol = (self.config or {}).get("eol")
            await self.fixture.set_zone(zone, state, ohms, eol)
        else:
            await self.console.set_zone(zone, state, ohms)

    async def keypad(self, code, key, partition=1, arg=0) -> dict:
        return await self.console.keypad(code, key, partition, arg)

    async def set_ac(self, on) -> None:
        if self.fixture is not None:
            self.note("ac", on=on, via="fixture")
            await self.fixture.set_ac(on)
        else:
            await self.console.set_ac(on)

    async def set_battery(self, mv) -> None:
        if self.fixture is not None:
            self.note("battery", mv=mv, via="fixture")
            await self.fixture.set_battery(mv)
        else:
            await self.console.set_battery(mv)

    async def cut_path(self, path, cut=True) -> None:
        if self.fixture is not None:
            self.note("cut_path", path=path, cut=cut, via="fixture")
            await self.fixture.cut_path(path, cut)
        else:
            await self.console.cut_path(path, cut)

    async def read_outputs(self) -> dict:
        if self.fixture is not None and self.fixture.wiring.get("outputs"):
            return await self.fixture.read_outputs()
        return await self.console.read_outputs()

    async def read_console(self) -> str:
        return await self.console.read_console()

    async def skew_clock(self, seconds: int) -> int:
        return await self.console.skew_clock(seconds)

    async def state(self) -> dict:
        return await self.console.state()

    async def close(self) -> None:
        await self.console.close()
        if self.fixture is not None:
            await self.fixture.close()


class TargetURLError(ValueError):
    """A --target or --fixture that names no usable port (or a config or
    wiring file that cannot be used); the message says what was given and
    what is expected."""


TARGET_HELP = ("sim, or serial:URL for a board's console in test mode: serial:///dev/ttyUSB0, "
               "serial:socket://HOST:PORT, serial:rfc2217://HOST:PORT")


def serial_url(url: str, what: str = "--target") -> str:
    """The pyserial URL (or device path) of a ``serial:...`` target, checked
    before anything runs: a device path must exist, a ``socket://`` server
    must accept a connection, any other URL must be one pyserial knows.
    (A device is not opened here: opening an ESP32's USB port resets it.)"""
    import serial  # noqa: PLC0415

    port = url
    if what in ("--target", "--hil-target"):
        if url == "sim":
            return url
        if not url.startswith("serial:"):
            hint = ""
            if url.startswith("/dev/") or url.upper().startswith("COM") or "://" in url:
                hint = " (did you mean serial:%s?)" % (url if "://" in url else "//" + url)
            raise TargetURLError("%s %r: expected %s%s" % (what, url, TARGET_HELP, hint))
        port = url[len("serial://"):] if url.startswith("serial://") else url[len("serial:"):]
    if not port:
        raise TargetURLError("%s %r: no port after serial:" % (what, url))
    if "://" not in port:
        if not os.path.exists(port):
            raise TargetURLError("%s %s: no such port %s (is the board plugged in? "
                                 "ls /dev/ttyUSB* /dev/ttyACM*)" % (what, url, port))
        if not os.access(port, os.R_OK | os.W_OK):
            raise TargetURLError("%s %s: %s is not readable and writable by you (on "
                                 "Linux: the dialout group)" % (what, url, port))
        return port
    try:
        serial.serial_for_url(port, do_not_open=True)
    except (ValueError, serial.SerialException) as e:
        raise TargetURLError("%s %s: %s" % (what, url, e)) from None
    if port.startswith("socket://"):
        import socket  # noqa: PLC0415
        import urllib.parse  # noqa: PLC0415

        u = urllib.parse.urlsplit(port)
        try:
            with socket.create_connection((u.hostname, u.port), timeout=5):
                pass
        except (OSError, ValueError, TypeError) as e:
            raise TargetURLError("%s %s: cannot connect (%s)" % (what, url, e)) from None
    return port


def check_run(target: str, fixture: str | None = None, json_files=(),
              names=("--target", "--fixture")) -> None:
    """What would make every scenario of a run skip or error, refused
    before it starts (TargetURLError): the target, the fixture, and each
    (option, path) of `json_files` (panel config, wiring: a JSON object).
    `names`: how the caller spells the two options (guardline-hil or pytest)."""
    serial_url(target, names[0])
    if fixture:
        serial_url(fixture, names[1])
    for opt, path in json_files:
        if path is None:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError as e:
            raise TargetURLError("%s %s: cannot read (%s)" % (opt, path, e.strerror or e)) \
                from None
        except ValueError as e:
            raise TargetURLError("%s %s: not valid JSON (%s)" % (opt, path, e)) from None
        if not isinstance(doc, dict):
            raise TargetURLError("%s %s: expected a JSON object" % (opt, path))


def open_target_url(url: str, timeline: Timeline | None = None, fixture_url: str | None = None,
                    wiring: dict | None = None) -> BenchTarget:
    """`--hil-target serial:///dev/ttyUSB0` (or serial:socket://host:port,
    serial:rfc2217://...): a bench target on that console URL."""
    if url.startswith("serial://"):
        url = url[len("serial://"):]
    elif url.startswith("serial:"):
        url = url[len("serial:"):]
    console = SerialDriver(url, name="console", timeline=timeline)
    fixture = None
    if fixture_url:
        fixture = FixtureDriver(fixture_url, wiring=wiring, timeline=timeline)
    return BenchTarget(console, fixture, name="bench", timeline=timeline)

