"""What a panel under test can do, as small protocols (after labgrid's).

A scenario or a strategy never talks to a driver by kind; it asks its
:class:`hil.target.Target` for what it needs, and the target hands the
call to the driver bound for that protocol:

===================  ==========================================================
protocol             what it can do
===================  ==========================================================
``PowerProtocol``    switch the panel's power (the sim's process, a relay)
``ZoneProtocol``     drive a zone loop to a state or a resistance
``KeypadProtocol``   enter a code and press a key
``SupplyProtocol``   mains present or not, the battery's voltage, the lid
``PathProtocol``     cut or restore a reporting path at the panel's side
``OutputProtocol``   read the siren, strobe and lock outputs
``ConsoleProtocol``  the console in test mode: the panel's state, its console
                     text, its clock, a soft reset
===================  ==========================================================

One driver may implement several (the console driver does all but power);
a target binds each protocol to one driver (a bench's fixture takes power,
zones, supplies, paths and outputs; its console keeps the rest).  What a
target has no driver for raises :class:`NotSupported` with the reason,
never a silent no-op.

The methods are coroutines because the rest of the harness (links,
receiver) is asyncio: a blocking call would stall the link's deliveries
while it waits.  A driver never re-sends a command behind its caller's
back: no answer is :class:`TargetTimeout`, a refusal :class:`TargetError`
with the firmware's reason (the control client's errors, testkit.control).
"""

from __future__ import annotations

import abc

from testkit.control import ControlError, ControlTimeout

# A target that refused or failed an operation (its reason attached), one
# that did not answer in time: the control client's errors.
TargetError = ControlError
TargetTimeout = ControlTimeout

# Zone loop states, as the firmware's eol classifier names them.
ZONE_STATES = ("normal", "alarm", "tamper", "short")
# Keypad actions, as the firmware names them (firmware/device/panel.py).
KEYPAD_ACTIONS = ("disarm", "arm_away", "arm_stay", "unlock", "bypass", "unbypass", "status")
# Outputs every target reports (a door controller adds more, e.g. "lock").
OUTPUTS = ("siren", "strobe", "lock")


class NotSupported(TargetError):
    """This target cannot do that (e.g. a console cannot power a board
    off: a bench needs the fixture's power relay for that)."""


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


class PowerProtocol(abc.ABC):
    @property
    @abc.abstractmethod
    def powered(self) -> bool: ...

    @abc.abstractmethod
    async def power_on(self) -> None:
        """Switch the power on (the target then waits for the firmware)."""

    @abc.abstractmethod
    async def power_off(self) -> None:
        """Cut the power at once (mid flash write, as a real loss)."""


class ZoneProtocol(abc.ABC):
    @abc.abstractmethod
    async def set_zone(self, zone: int, state: str | None = None, ohms: int | None = None,
                       eol: dict | None = None) -> None:
        """Drive zone `zone` (its configured id) to a loop state or an exact
        loop resistance in ohms (-1 = open); `eol` is the panel's wiring
        (for a driver that turns a state into ohms)."""


class KeypadProtocol(abc.ABC):
    @abc.abstractmethod
    async def keypad(self, code: str, key: str, partition: int = 1, arg: int = 0) -> dict:
        """Enter `code` and press `key` (one of KEYPAD_ACTIONS); the
        panel's answer ({"result_name": "ok" | "refused" | ...})."""


class SupplyProtocol(abc.ABC):
    @abc.abstractmethod
    async def set_ac(self, on: bool) -> None: ...

    @abc.abstractmethod
    async def set_battery(self, mv: int) -> None: ...

    @abc.abstractmethod
    async def set_box_tamper(self, open_: bool) -> None: ...


class PathProtocol(abc.ABC):
    @abc.abstractmethod
    async def cut_path(self, path: int, cut: bool = True) -> None:
        """Cut (or restore) reporting path 1 (primary) or 2 (backup) at the
        panel's side (its network link or UART)."""


class OutputProtocol(abc.ABC):
    @abc.abstractmethod
    async def read_outputs(self) -> dict:
        """{"siren": bool, "strobe": bool, "lock": bool, ...}"""


class ConsoleProtocol(abc.ABC):
    @abc.abstractmethod
    async def wait_ready(self, timeout: float = 60.0) -> dict:
        """Until the firmware answers (its "ping" reply)."""

    @abc.abstractmethod
    async def state(self) -> dict:
        """The panel's own view: partitions, zones, troubles, queue..."""

    @abc.abstractmethod
    async def read_console(self) -> str:
        """Console text the target wrote since the last call."""

    @abc.abstractmethod
    async def reset(self) -> None:
        """A reboot without a power loss (watchdog / reset button)."""

    @abc.abstractmethod
    async def skew_clock(self, seconds: int) -> int:
        """Move the panel's wall clock by `seconds` (negative: behind), as
        a drifting panel clock would; the panel's clock after."""


PROTOCOLS = (PowerProtocol, ZoneProtocol, KeypadProtocol, SupplyProtocol, PathProtocol,
             OutputProtocol, ConsoleProtocol)
# What each protocol lets a scenario do, in the words of hil_needs(...)
# and of a NotSupported message.
CAPABILITY = {PowerProtocol: "power", ZoneProtocol: "zones", KeypadProtocol: "keypad",
              SupplyProtocol: "supplies", PathProtocol: "paths", OutputProtocol: "outputs",
              ConsoleProtocol: "console"}
