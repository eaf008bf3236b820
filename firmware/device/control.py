# The control protocol: one JSON object per line in, one JSON object per
# line out (docs/simulator.md, "Control protocol"; docs/qa.md, "Console
# test mode").  The simulated board serves it on a TCP socket (simctl.py);
# a hardware board serves it on its console when the config says
# "test_mode": true (board_mcu.py), so a bench drives a real board with
# the same harness (hil/target.py SerialDriver) as the sim.
#
# Invariants:
# - Every non-blank line gets exactly one reply, and every reply has "ok";
#   a bad line gets "ok": false and "error", never an exception out of
#   serve() (a typo at the console must not stop the panel).  A request's
#   "id", if any, is echoed in its reply.
# - At most _MAX_LINE bytes of a line are kept; a longer line is refused
#   once its newline arrives.  Line buffers are allocated once and reused
#   by the next connection (_pool): a host that connects per command (the
#   sim's control socket) does not churn the heap with them.
# - The console is read one byte at a time, and only after the poller
#   says a byte is there: on ESP32 and RP2 a read of more bytes than have
#   arrived blocks the whole VM (scan, watchdog) until they come.  Reads
#   are binary (sys.stdin.buffer): a text read of a UTF-8 lead byte would
#   wait for the rest of the character.
# - Inputs that are electrical on a real board (zone loops, mains,
#   battery, lid tamper, network paths, sounder lines, a vehicle's GNSS
#   receiver) are set only where they are
#   simulated (board.simulated, board.sim_input); a hardware board
#   refuses them with the reason: on a bench the I/O fixture drives them.

import json
import asyncio
from fwutil import const, ticks_diff, mem_free, mem_alloc

_MAX_LINE = const(512)  # a command is small; the biggest, "key", is < 128
_RESULTS = ("ok", "refused", "unsupported", "bad_argument")  # glwire R_*
_INPUTS = ("zone", "ac", "battery", "box_tamper", "net", "path", "sounder", "gps")
_POOL_MAX = const(2)  # line buffers kept for reuse (concurrent clients beyond: allocated)
_pool = []


def handle(app, board, req):
    """One command (a dict); returns the reply dict.  Raises ValueError,
    KeyError, TypeError or IndexError for a bad request."""
    cmd = req.get("cmd")
    if cmd == "ping":
        return {"ok": True, "uptime_ms": ticks_diff(app.ticks(), app.boot_ms)}
    if cmd == "state":
        return app.state(not req.get("brief"))
    if cmd in _INPUTS:
        return board.sim_input(cmd, req, app)
    if cmd == "outputs":
        o = board.out
        return {"ok": True, "siren": o["siren"], "strobe": o["strobe"], "lock": o["lock"],
                "supply": o.get("supply", True)}
    if cmd == "log":
        if not board.log_keep:
            raise ValueError("this board keeps no console log")
        since = int(req.get("since", 0))
        lines = board.log[max(0, since - board.log_base):]
        return {"ok": True, "lines": lines, "next": board.log_base + len(board.log)}
    if cmd == "gc":
        import gc
        gc.collect()
        return {"ok": True, "mem_alloc": mem_alloc(), "mem_free": mem_free(),
                "mem_min_free": app.min_free}
    if cmd == "key":
        import panel as P
        action = req.get("action", "disarm")
        if action not in P.ACTIONS:
            raise ValueError("action must be one of " + ", ".join(P.ACTIONS))
        r = app.key(str(req["code"]), action, int(req.get("partition", 1)),
                    int(req.get("arg", req.get("zone", 0))))
        return {"ok": True, "result": r, "result_name": _RESULTS[r]}
    if cmd == "clock":
        return _clock(app, req)
    if cmd == "power_cycle":
        app.stop(3)  # the sim exits with 3 and is restarted; a board resets
        return {"ok": True}
    if cmd == "stop":
        if not board.simulated:
            # the watchdog cannot be stopped: it would reset the board anyway
            raise ValueError("stop: only on the sim; use power_cycle")
        app.stop(0)
        return {"ok": True}
    raise ValueError("unknown cmd %r" % (cmd,))


def _clock(app, req):
    """Skew (`skew_s`, + ahead, - behind) or set (`set`, Unix seconds) the
    panel's wall clock, so a test can make the PANEL drift; neither:
    just read it.  The receiver corrects it as it would a real drift."""
    if app.panel is None:
        raise ValueError("halted: no clock")
    c = app.clock
    now = app.ticks()
    if "set" in req:
        # the bench (sim, console test mode) is a local authority: trusted
        if not c.set(int(req["set"]), now):
            raise ValueError("set: Unix seconds from 2024 to 2099")
        app.panel.clock_set(True)
    elif "skew_s" in req:
        if not c.now(now):
            raise ValueError("clock not set yet: give \"set\"")
        c.skew(int(req["skew_s"]), now)
    return {"ok": True, "clock": c.now(now)}


def refused(e):
    """The reply to a request handle() raised for: the reason in words,
    never the exception's class name (a person reads it at the console)."""
    if isinstance(e, KeyError) and e.args:
        return {"ok": False, "error": "missing \"%s\"" % (e.args[0],)}
    return {"ok": False, "error": str(e)}


def _reply(app, board, line):
    req = None
    try:
        req = json.loads(line)
        if not isinstance(req, dict):
            raise ValueError("expected a JSON object")
        rep = handle(app, board, req)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        rep = refused(e)
    if isinstance(req, dict) and "id" in req:
        # echoed, so a host can tell this reply from a late one to a
        # command it gave up on (a console buffers what a booting board
        # did not read yet)
        rep["id"] = req["id"]
    return rep


async def serve(app, board, reader, writer, chunk=64):
    """Answer commands from an asyncio StreamReader until it ends.
    `chunk`: bytes asked per read (at most 64); 1 on a console (see the
    invariants), more on a socket (a non-blocking socket returns what it
    has)."""
    line = _pool.pop() if _pool else bytearray(_MAX_LINE + 64)
    try:
        await _serve(app, board, reader, writer, line, chunk)
    finally:
        if len(_pool) < _POOL_MAX:
            _pool.append(line)


async def _serve(app, board, reader, writer, buf, chunk):
    line = memoryview(buf)[:_MAX_LINE]
    rx = memoryview(buf)[_MAX_LINE:_MAX_LINE + chunk]
    n = 0  # bytes of the current line kept
    over = False  # the current line is too long: refuse it at its end
    while True:
        k = await reader.readinto(rx)
        if not k:
            return
        for i in range(k):
            c = rx[i]
            if c == 10:  # "\n"
                if over:
                    rep = {"ok": False, "error": "line too long (max %d bytes)" % _MAX_LINE}
                elif n:
                    rep = _reply(app, board, bytes(line[:n]))
                else:
                    continue  # a blank line (Enter at a terminal)
                n = 0
                over = False
                rep = json.dumps(rep).encode()
                writer.write(rep)
                writer.write(b"\n")
                del rep  # the biggest (state) is a few KB: let it go before the next read
                await writer.drain()
            elif c == 13:  # "\r" from a terminal: ignored
                pass
            elif n < _MAX_LINE:
                line[n] = c
                n += 1
            else:
                over = True


async def console(app, board):
    """Test mode: the control protocol on the board's console (the USB
    serial or console UART that is sys.stdin/sys.stdout)."""
    import sys
    s = getattr(sys.stdin, "buffer", sys.stdin)
    o = getattr(sys.stdout, "buffer", sys.stdout)
    board.console("control protocol on the console")
    await serve(app, board, asyncio.StreamReader(s), asyncio.StreamWriter(o, {}), 1)
    board.console("console closed: control protocol stopped")
