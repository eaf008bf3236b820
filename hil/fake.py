"""The fake target: the firmware's own core in this process, no VM.

After labgrid's fake drivers: :class:`FakeDriver` implements every
protocol (hil/protocols.py) on a :class:`testkit.inproc.InProcessPanel`
(the firmware's ``App`` with its sans-I/O ``Panel``, queue and reporter,
on a memory board and a clock that runs ``speed`` times faster than this
machine's), and :class:`FakeReceiver` is what that panel reports to (the
receiver's session core, with the HIL receiver's query methods).  So a
strategy or a check is tested against the real panel logic in
milliseconds; the real VM and a real receiver stay for the scenario
suite.

What the fake cannot say: anything about the receiver's store, alarms,
supervision or security events (FakeReceiver has events only), a power
loss in the middle of a flash write, or the VM's heap.
"""

from __future__ import annotations

import json
import os

from hil.drivers import ControlDriver
from hil.protocols import (ConsoleProtocol, KeypadProtocol, OutputProtocol, PathProtocol,
                           PowerProtocol, SupplyProtocol, TargetError, ZoneProtocol)
from hil.target import Target, panel_config
from testkit.control import COMMAND_TIMEOUT_S
from testkit.inproc import InProcessPanel, MemoryReceiver, ScaledClock

# How much faster than real time the fake panel's clock runs: an exit
# delay of 2 s passes in 80 ms; scans and reporter polls still run at
# their own periods of that clock.
SPEED = 25.0


class FakeDriver(ControlDriver, PowerProtocol):
    """Every protocol, on an in-process panel: the commands go to the
    firmware's own control handler, power is the panel's."""

    def __init__(self, panel: InProcessPanel, name: str = "fake"):
        self.panel = panel
        self.name = name

    async def _call(self, cmd: str, timeout: float = COMMAND_TIMEOUT_S, **args) -> dict:
        reply = self.panel.ctl({"cmd": cmd, **args})
        if not reply.get("ok"):
            raise TargetError("%s: %s refused: %s" % (self.name, cmd, reply.get("error", reply)))
        return reply

    @property
    def powered(self) -> bool:
        return self.panel.powered

    async def power_on(self) -> None:
        self.panel.power_on()

    async def power_off(self) -> None:
        self.panel.power_off()

    async def reset(self, timeout: float = 60.0) -> None:
        # in-process the power cycle is over when the command returns (and
        # the panel's uptime runs on its own clock, not the caller's)
        await self._call("power_cycle")

    async def read_console(self) -> str:
        return self.panel.take_console()

    async def close(self) -> None:
        self.panel.power_off()


class FakeReceiver:
    """What the fake panel reports to, with the query methods of
    hil.receiver.ReceiverUnderTest that a strategy and the checks use
    (``events``, ``now``)."""

    def __init__(self, memory: MemoryReceiver):
        self.memory = memory

    async def events(self, account=None, since: float | None = None,
                     source: str | None = None, after_id: int = 0) -> list[dict]:
        return self.memory.events(account, since, source, after_id)

    def now(self) -> float:
        return self.memory.now()

    def to_timeline(self, wall: float) -> float:
        return wall - self.memory.wall0


class FakeTarget(Target):
    """A panel under test, in this process (see the module).  ``config``
    and ``paths`` as for SimTarget; ``workdir/flash`` plays the flash."""

    kind = "fake"

    def __init__(self, config, workdir: str, paths: dict | None = None,
                 speed: float = SPEED, **kw):
        super().__init__(**kw)
        self.config = panel_config(config, paths)
        self.account = int(self.config["account"])
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        with open(os.path.join(self.workdir, "config.json"), "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=1)
        self.panel = InProcessPanel(self.config, os.path.join(self.workdir, "flash"),
                                    clock=ScaledClock(speed))
        self.receiver = FakeReceiver(self.panel.receiver)
        driver = FakeDriver(self.panel, self.name)
        for p in (PowerProtocol, ZoneProtocol, KeypadProtocol, SupplyProtocol, PathProtocol,
                  OutputProtocol, ConsoleProtocol):
            self.bind(p, driver)

