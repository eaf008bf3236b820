"""Strategies: bring a target to a named state, whatever state it is in.

After labgrid's strategies: a scenario says ``await strategy.transition(
"armed_away", partition=1)`` and the strategy walks the target there
through the states below it, checking each by its *effect* (the firmware
answers, the receiver stored the panel's report, the partition reads
armed), never by having sent a command.

States, each with the one it is entered from:

    off          -> (nothing)   power removed
    booted       <- off         powered, the firmware answers its console
    reporting    <- booted      the receiver stored an event from the panel
                                since it booted (its 305 "system reset"), or
                                an ACK for its HELLO/heartbeat came back
    disarmed     <- reporting   every partition disarmed (keypad if not)
    armed_away   <- disarmed    the partition armed away (exit delay over)

Invariants:

- ``TRANSITIONS`` is the table; asking for a state not in it is a
  LocalError (our misuse), never a silent no-op.
- Each step is verified by polling with a generous deadline; a step that
  does not take effect raises ``StrategyError`` naming the state and what
  was seen instead (the scenario fails there, not three steps later).
"""

from __future__ import annotations

import logging
import time

from hil.target import Target, TargetError
from hil.timeline import SCENARIO
from testkit.wait import wait_until

_LOGGER = logging.getLogger(__name__)

OFF = "off"
BOOTED = "booted"
REPORTING = "reporting"
DISARMED = "disarmed"
ARMED_AWAY = "armed_away"

# TRANSITIONS[state] -> the state it is entered from (None: from anywhere)
TRANSITIONS = {
    OFF: None,
    BOOTED: OFF,
    REPORTING: BOOTED,
    DISARMED: REPORTING,
    ARMED_AWAY: DISARMED,
}
RANK = {OFF: 0, BOOTED: 1, REPORTING: 2, DISARMED: 3, ARMED_AWAY: 4}

# Boot of the sim (VM start, config, flash) takes about a second; a board
# a few. Arming waits for the exit delay, which test configs keep short.
STEP_TIMEOUT_S = 60.0


def t_reached(status: str, state: str) -> bool:
    return RANK.get(status, -1) >= RANK[state]


class StrategyError(AssertionError):
    """A state could not be reached (a test failure)."""


class PanelStrategy:
    """Drive a :class:`Target` between named states.

    ``receiver`` (optional) is a :class:`hil.receiver.ReceiverUnderTest` (or
    anything with ``events(account=...)``); without one, "reporting" is
    judged from the panel's own reporter status.  ``code`` is a user code
    allowed to arm and disarm (the test config's master code)."""

    def __init__(self, target: Target, receiver=None, code: str = "1234",
                 step_timeout: float = STEP_TIMEOUT_S):
        self.target = target
        self.receiver = receiver
        self.code = code
        self.step_timeout = step_timeout
        self.status = "unknown"
        self.booted_at_wall = 0.0

    def _note(self, state: str, **detail) -> None:
        self.target.timeline.record(SCENARIO, "strategy", state=state, **detail)

    async def transition(self, state: str, partition: int = 1) -> dict:
        """Bring the target to `state`; returns the panel state read last
        (or {} for "off")."""
        if state not in TRANSITIONS:
            raise ValueError("unknown state %r (known: %s)" % (state, ", ".join(TRANSITIONS)))
        if state == OFF:
            await self.target.power_off()
            self.status = OFF
            self._note(OFF)
            return {}
        # walk up from the first state not yet reached
        chain = [state]
        while TRANSITIONS[chain[-1]] not in (None, OFF):
            chain.append(TRANSITIONS[chain[-1]])
        chain.reverse()
        st: dict = {}
        for s in chain:
            if s in (BOOTED, REPORTING) and t_reached(self.status, s) and self.target.powered:
                continue  # already there; the later steps check the panel itself
            st = await self._enter(s, partition)
            self.status = s
            self._note(s, partition=partition if s == ARMED_AWAY else None)
        return st or await self.target.state()

    async def _enter(self, state: str, partition: int) -> dict:
        t = self.target
        if state == BOOTED:
            if not t.powered:
                now = getattr(self.receiver, "now", time.time)
                self.booted_at_wall = now()  # on the receiver's clock
                await t.power_on()
            return await wait_until(self._answers, self.step_timeout,
                                    what="the firmware to answer",
                                    interval=0.1)
        if state == REPORTING:
            await wait_until(self._reporting, self.step_timeout, interval=0.05,
                             what="the receiver to hear account %s" % t.account,
                             seen=self._reporter_status)
            return await t.state()
        if state == DISARMED:
            st = await t.state()
            for p in st.get("partitions", []):
                if p["state"] != "disarmed":
                    await t.keypad(self.code, "disarm", p["id"])
            return await wait_until(lambda: self._partitions_are("disarmed"), self.step_timeout,
                                    what="every partition disarmed", seen=self._part_states)
        if state == ARMED_AWAY:
            await self._ready_to_arm(partition)
            r = await t.keypad(self.code, "arm_away", partition)
            if r.get("result_name", "ok") != "ok":
                raise StrategyError("arming partition %d refused: %r" % (partition, r))
            return await wait_until(lambda: self._partitions_are("armed_away", partition),
                                    self.step_timeout, what="partition %d armed away" % partition,
                                    seen=self._part_states)
        raise ValueError(state)

    async def _ready_to_arm(self, partition: int) -> None:
        """Zones of the partition must be normal to arm: put them back."""
        st = await self.target.state()
        cfg = self.target.config or {}
        zone_part = {z["id"]: z.get("partition") for z in cfg.get("zones", [])}
        for z in st.get("zones", []):
            if z["state"] != "normal" and zone_part.get(z["id"]) in (partition, None) \
                    and not z.get("bypassed"):
                await self.target.set_zone(z["id"], "normal")
        await wait_until(lambda: self._zones_normal(partition), self.step_timeout,
                         what="zones of partition %d normal" % partition)

    async def _zones_normal(self, partition: int) -> bool:
        st = await self.target.state()
        cfg = self.target.config or {}
        zone_part = {z["id"]: z.get("partition") for z in cfg.get("zones", [])}
        return all(z["state"] == "normal" or z.get("bypassed") for z in st.get("zones", [])
                   if zone_part.get(z["id"]) in (partition, None))

    async def _answers(self):
        try:
            return await self.target.state()
        except TargetError:
            return None

    async def _reporting(self) -> bool:
        if self.receiver is not None:
            evs = await self.receiver.events(account=self.target.account,
                                             since=self.booted_at_wall - 1.0)
            if evs:
                return True
        st = await self._answers()
        rep = (st or {}).get("reporter") or {}
        return self.receiver is None and rep.get("delivered", 0) > 0

    async def _reporter_status(self):
        st = await self._answers()
        return (st or {}).get("reporter")

    async def _partitions_are(self, name: str, partition: int | None = None):
        st = await self.target.state()
        parts = [p for p in st.get("partitions", [])
                 if partition is None or p["id"] == partition]
        if parts and all(p["state"] == name for p in parts):
            return st
        return None

    async def _part_states(self):
        st = await self._answers()
        return [(p["id"], p["state"]) for p in (st or {}).get("partitions", [])]
