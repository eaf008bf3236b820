"""A stand-in for the bench's relay/GPIO fixture, wired to a simulated panel.

It speaks the fixture protocol (docs/qa.md, "I/O fixture protocol") on any
serial_for_url port (one end of a socat pty pair, usually) and turns what
the harness asks of the fixture into what the physical fixture would do to
a board, here applied to the sim board through its control socket:

    relay (power channel)   -> the `power` callback (start/kill the sim)
    relay (AC channel)      -> {"cmd": "ac"}
    relay (path channel)    -> {"cmd": "path"}
    loop (zone channel)     -> {"cmd": "zone", "ohms": ...}
    supply                  -> {"cmd": "battery"}
    inputs                  -> {"cmd": "outputs"}, read back as opto levels

So the bench code path (BenchTarget = SerialDriver + FixtureDriver) runs
against the same firmware the sim runs, with no hardware.  A real fixture
firmware answers the same lines (docs/qa.md lists them).
"""

from __future__ import annotations

import json
import logging
import threading

import serial

from testkit.control import SimControl

_LOGGER = logging.getLogger(__name__)

# Relays, loop channels and opto inputs of the reference fixture (an
# 8-relay board, 8 loop channels each with a 4-step resistor ladder, and
# 4 opto inputs): docs/qa.md, "Wiring".
RELAYS = 8
LOOPS = 8
INPUTS = 4
# Resistances the ladder can make (ohms; -1 = open): short, 2k2, 4k4, open.
LADDER = (0, 2200, 4400, -1)


# The commands of the fixture protocol (docs/qa.md), in its table's order.
COMMANDS = ("info", "relay", "loop", "supply", "inputs")


class RequestRefused(ValueError):
    """A request the fixture does not accept; the message is the sentence
    the client reads (what was wrong, what is accepted)."""


def nearest_step(ohms: int) -> int:
    """The ladder step a real fixture would switch in for `ohms`."""
    if ohms < 0:
        return -1
    return min((s for s in LADDER if s >= 0), key=lambda s: abs(s - ohms))


class FixtureSim:
    def __init__(self, url: str, control: tuple[str, int], wiring: dict, power=None):
        self.url = url
        self.control = control
        self.sim = SimControl(control)
        self.wiring = wiring
        self.power = power  # power(on: bool) -> None, or None
        self.relays = [False] * RELAYS
        self.loops = [2200] * LOOPS
        self.supply_mv = 13200
        self._stop = threading.Event()
        self._thread = None
        self.port = None
        self.requests = 0

    def start(self) -> "FixtureSim":
        self.port = port = serial.serial_for_url(self.url, baudrate=115200, timeout=0.05)
        self._thread = threading.Thread(target=self._serve, args=(port,),
                                        name="hil-fixture-sim", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self.port is not None:
            self.port.close()

    def _serve(self, port) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            try:
                data = port.read(1024)
            except Exception:
                return
            if not data:
                continue
            buf += data
            while b"\n" in buf:
                i = buf.index(b"\n")
                line = bytes(buf[:i]).strip()
                del buf[:i + 1]
                if not line:
                    continue
                reply = self.answer(line)
                self.requests += 1
                port.write(json.dumps(reply).encode() + b"\n")

    def answer(self, line: bytes) -> dict:
        """The reply to one request line.  Every line is answered: a
        refusal is ``{"ok": false, "error": <a sentence>}`` saying what was
        wrong and what the fixture accepts; a failure of the fixture itself
        is answered in words and its traceback goes to this module's log,
        not to the client."""
        try:
            req = json.loads(line)
        except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
            return _refused("not JSON: %s (a request is one JSON object per line, "
                            "e.g. {\"cmd\": \"info\"})" % e)
        if not isinstance(req, dict):
            return _refused("not a JSON object: a request is one object per line, "
                            "e.g. {\"cmd\": \"info\"}")
        try:
            return self.handle(req)
        except RequestRefused as e:
            return _refused(str(e))
        except OSError as e:  # the sim board's control socket (ControlUnreachable)
            _LOGGER.warning("fixture: %s: the simulated board does not answer: %s",
                            req.get("cmd"), e)
            return _refused("the simulated board does not answer: %s" % e)
        except Exception:
            _LOGGER.exception("fixture: request %s failed", line[:200])
            return _refused("the fixture failed on this %s request; its log has the details"
                            % json.dumps(req.get("cmd")))

    def _sim(self, **cmd) -> dict:
        return self.sim(cmd)

    def _lookup(self, group: str, ch: int):
        for k, v in (self.wiring.get(group) or {}).items():
            if int(v) == ch:
                return k
        return None

    def handle(self, req: dict) -> dict:
        """Apply one request (a JSON object); :class:`RequestRefused` for a
        request the fixture does not accept."""
        cmd = req.get("cmd")
        if cmd == "info":
            return {"ok": True, "fixture": "guardline-hil-fixture-sim", "protocol": 1,
                    "relays": self.relays, "loops": LOOPS, "inputs": INPUTS}
        if cmd == "relay":
            ch = _channel(req, "relay", RELAYS)
            on = _switch(req)
            self.relays[ch] = on
            r = {"ok": True}
            if self.wiring.get("power") == ch:
                if self.power is not None:
                    self.power(on)
            elif self.wiring.get("ac") == ch:
                r = self._sim(cmd="ac", on=on)
            else:
                path = self._lookup("paths", ch)
                if path is not None:
                    r = self._sim(cmd="path", path=int(path), up=on)
            return r if not r.get("ok") else {"ok": True}  # the board's refusal, as loop does
        if cmd == "loop":
            ch = _channel(req, "loop", LOOPS)
            ohms = nearest_step(_integer(req, "loop", "ohms", "resistance in ohms, -1 = open"))
            self.loops[ch] = ohms
            zone = self._lookup("zones", ch)
            if zone is not None:
                r = self._sim(cmd="zone", zone=int(zone), ohms=ohms)
                if not r.get("ok"):
                    return r
            return {"ok": True, "ohms": ohms}
        if cmd == "supply":
            mv = _integer(req, "supply", "mv", "millivolts")
            if mv < 0:
                raise RequestRefused("supply: mv must be 0 or more millivolts, not %d" % mv)
            self.supply_mv = mv
            self._sim(cmd="battery", mv=self.supply_mv)
            return {"ok": True}
        if cmd == "inputs":
            levels = [0] * INPUTS
            try:
                out = self._sim(cmd="outputs")
            except OSError:  # board unpowered: every opto input reads 0
                out = {}
            for name, ch in (self.wiring.get("outputs") or {}).items():
                if int(ch) < INPUTS:
                    levels[int(ch)] = 1 if out.get(name) else 0
            return {"ok": True, "inputs": levels}
        if cmd is None:
            raise RequestRefused("no \"cmd\" in the request: the fixture accepts %s"
                                 % ", ".join(COMMANDS))
        raise RequestRefused("unknown command %s: the fixture accepts %s"
                             % (json.dumps(cmd), ", ".join(COMMANDS)))


def _refused(error: str) -> dict:
    return {"ok": False, "error": error}


def _integer(req: dict, cmd: str, field: str, what: str) -> int:
    """`field` of a `cmd` request as an int (JSON true/false are not numbers)."""
    if field not in req:
        raise RequestRefused("%s needs %s (%s)" % (cmd, field, what))
    v = req[field]
    if isinstance(v, bool) or not isinstance(v, int):
        raise RequestRefused("%s: %s must be an integer (%s), not %s"
                             % (cmd, field, what, json.dumps(v)))
    return v


def _channel(req: dict, cmd: str, count: int) -> int:
    ch = _integer(req, cmd, "ch", "channel 0..%d" % (count - 1))
    if not 0 <= ch < count:
        raise RequestRefused("no %s channel %d: the fixture has %s channels 0..%d"
                             % (cmd, ch, cmd, count - 1))
    return ch


def _switch(req: dict) -> bool:
    if "on" not in req:
        raise RequestRefused("relay needs on (true = energised, false = released)")
    if not isinstance(req["on"], bool):
        raise RequestRefused("relay: on must be true or false, not %s" % json.dumps(req["on"]))
    return req["on"]
