"""The fixture sim's replies (docs/qa.md, "I/O fixture protocol"): every
request line is answered, a refusal says in words what was wrong and what
the fixture accepts, and a failure of the fixture itself is answered
without its exception class or traceback (those go to the fixture's log).

Driven through a socat pty pair and the fixture's own serve loop, as the
bench harness talks to it."""

from __future__ import annotations

import json
import logging
import re
import shutil

import pytest
import serial

from hil.fixture_sim import FixtureSim
from hil.link import pty_pair
from testkit.net import free_port

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")

ACCEPTS = "the fixture accepts info, relay, loop, supply, inputs"
# (request line, what the error must say)
REFUSED = [
    (b"{not json", "not JSON: "),
    (b"\xff\xfe{}", "not JSON: "),
    (b"[1, 2]", "not a JSON object: a request is one object per line"),
    (b'{"cmd": "reboot"}', 'unknown command "reboot": ' + ACCEPTS),
    (b'{"ch": 1}', 'no "cmd" in the request: ' + ACCEPTS),
    (b'{"cmd": "relay", "ch": 9, "on": true}', "no relay channel 9: the fixture has relay channels 0..7"),
    (b'{"cmd": "relay", "ch": "2", "on": true}', 'relay: ch must be an integer (channel 0..7), not "2"'),
    (b'{"cmd": "relay", "ch": 2}', "relay needs on (true = energised, false = released)"),
    (b'{"cmd": "relay", "ch": 2, "on": "yes"}', 'relay: on must be true or false, not "yes"'),
    (b'{"cmd": "loop", "ch": 8, "ohms": 2200}', "no loop channel 8: the fixture has loop channels 0..7"),
    (b'{"cmd": "loop", "ch": 0}', "loop needs ohms (resistance in ohms, -1 = open)"),
    (b'{"cmd": "supply", "mv": -5}', "supply: mv must be 0 or more millivolts, not -5"),
    (b'{"cmd": "supply"}', "supply needs mv (millivolts)"),
    # the AC relay is wired to a sim board nobody runs
    (b'{"cmd": "relay", "ch": 1, "on": true}', "the simulated board does not answer: nothing listens on"),
    # the power relay's callback breaks: the fixture's own failure
    (b'{"cmd": "relay", "ch": 0, "on": true}',
     'the fixture failed on this "relay" request; its log has the details'),
]
CLASS_NAME = re.compile(r"\b\w*(Error|Exception)\b|Traceback")


def test_every_request_is_answered_in_words(caplog):
    def power(on: bool):
        raise RuntimeError("relay driver broke")

    caplog.set_level(logging.WARNING, logger="hil.fixture_sim")
    with pty_pair() as pty:
        fx = FixtureSim(pty.b, ("127.0.0.1", free_port()), {"power": 0, "ac": 1}, power=power)
        fx.start()
        port = serial.serial_for_url(pty.a, baudrate=115200, timeout=10)
        try:
            def ask(line: bytes) -> dict:
                port.write(line + b"\n")
                reply = port.readline()
                assert reply.endswith(b"\n"), "no answer to %r" % line
                return json.loads(reply)

            for line, says in REFUSED:
                r = ask(line)
                assert r["ok"] is False, line
                assert says in r["error"], (line, r["error"])
                assert not CLASS_NAME.search(r["error"]), (line, r["error"])
            # refusals leave the fixture serving
            assert ask(b'{"cmd": "info"}')["fixture"] == "guardline-hil-fixture-sim"
            assert ask(b'{"cmd": "relay", "ch": 5, "on": true}') == {"ok": True}
            assert ask(b'{"cmd": "loop", "ch": 3, "ohms": 4300}') == {"ok": True, "ohms": 4400}
            assert fx.requests == len(REFUSED) + 3
        finally:
            port.close()
            fx.close()
    # the traceback of the fixture's own failure is in its log, not in the reply
    failed = [r for r in caplog.records if r.exc_info]
    assert len(failed) == 1 and "relay driver broke" in str(failed[0].exc_info[1])
