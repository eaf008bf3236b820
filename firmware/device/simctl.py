# The simulated board's control socket: line-delimited JSON over TCP on
# loopback.  One JSON object per line in, one JSON object per line out.
# Every command is documented in docs/simulator.md; a reply always has
# "ok" (true/false) and, when false, "error".

import json
import asyncio
import eol
import panel as P
from fwutil import ticks_ms, ticks_diff

_MAX_LINE = 512  # a command is small; a longer line is refused

STATES = {"normal": None, "alarm": None, "tamper": -1, "open": -1, "short": 0}


def _zone_input(app, zid):
    p = app.panel
    if zid not in p.zid:
        raise ValueError("no zone %r" % (zid,))
    return p.zinput[p.zid.index(zid)]


def handle(app, board, req):
    cmd = req.get("cmd")
    env = board.env
    if cmd == "ping":
        return {"ok": True, "uptime_ms": ticks_diff(ticks_ms(), app.boot_ms)}
    if cmd == "zone":
        inp = _zone_input(app, req["zone"])
        if "ohms" in req:
            ohms = int(req["ohms"])
        else:
            st = req["state"]
            if st not in STATES:
                raise ValueError("state must be one of normal, alarm, tamper, short")
            ohms = STATES[st]
            if st == "normal":
                ohms = board.normal
            elif st == "alarm":
                ohms = board.alarm
        board.ohms[inp] = ohms
        board.save_env()
        return {"ok": True, "ohms": ohms}
    if cmd == "ac":
        env["ac"] = bool(req["on"])
    elif cmd == "battery":
        env["battery_mv"] = int(req["mv"])
    elif cmd == "box_tamper":
        env["box_tamper"] = bool(req["open"])
    elif cmd == "net":
        env["net"] = bool(req["up"])
    elif cmd == "path":
        env["paths"][int(req["path"]) - 1] = bool(req["up"])
    elif cmd == "outputs":
        return {"ok": True, "siren": board.out["siren"], "strobe": board.out["strobe"],
                "lock": board.out["lock"]}
    elif cmd == "log":
        since = int(req.get("since", 0))
        lines = board.log[max(0, since - board.log_base):]
        return {"ok": True, "lines": lines, "next": board.log_base + len(board.log)}
    elif cmd == "state":
        return app.state(not req.get("brief"))
    elif cmd == "gc":
        import gc
        gc.collect()
        return {"ok": True, "mem_alloc": gc.mem_alloc(), "mem_free": gc.mem_free()}
    elif cmd == "key":
        action = req.get("action", "disarm")
        if action not in P.ACTIONS:
            raise ValueError("action must be one of " + ", ".join(P.ACTIONS))
        r = app.key(str(req["code"]), action, int(req.get("partition", 1)),
                    int(req.get("arg", req.get("zone", 0))))
        return {"ok": True, "result": r, "result_name":
                ("ok", "refused", "unsupported", "bad_argument")[r]}
    elif cmd == "power_cycle":
        app.stop(3)
        return {"ok": True}
    elif cmd == "stop":
        app.stop(0)
        return {"ok": True}
    else:
        raise ValueError("unknown cmd %r" % (cmd,))
    board.save_env()
    return {"ok": True}


async def _client(app, board, reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if len(line) > _MAX_LINE:
                rep = {"ok": False, "error": "line too long"}
            else:
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("expected a JSON object")
                    rep = handle(app, board, req)
                except (ValueError, KeyError, TypeError, IndexError) as e:
                    rep = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            writer.write(json.dumps(rep).encode() + b"\n")
            await writer.drain()
    except OSError:
        pass
    try:
        writer.close()
        await writer.wait_closed()
    except OSError:
        pass


async def serve(app, board):
    host, port = board.control.rsplit(":", 1)

    def cb(r, w):
        return _client(app, board, r, w)
    srv = await asyncio.start_server(cb, host, int(port))
    board.console("control socket on %s:%s" % (host, port))
    return srv
