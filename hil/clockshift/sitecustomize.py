"""Run a receiver with its wall clock shifted (HIL clock-drift scenarios).

Put this directory first on PYTHONPATH and set
GUARDLINE_HIL_CLOCK_OFFSET_S: Python imports ``sitecustomize`` at start-up,
before the receiver's modules, and this one shifts ``time.time`` (and
``time.time_ns``) by the offset.  Monotonic clocks are left alone, so
timers and timeouts behave as usual.  Seen from the receiver, every panel
clock is then off by -offset: the drift the panel must correct from the
receiver's ACK, NAK(time) or TIME (docs/protocol.md, clock).

Test infrastructure only: nothing in the product imports it.
"""

import os
import time

_OFFSET = float(os.environ.get("GUARDLINE_HIL_CLOCK_OFFSET_S", "0") or 0)

if _OFFSET:
    _time, _time_ns = time.time, time.time_ns

    def _shifted():
        return _time() + _OFFSET

    def _shifted_ns():
        return _time_ns() + int(_OFFSET * 1e9)

    time.time = _shifted
    time.time_ns = _shifted_ns
