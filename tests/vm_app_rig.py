# Runs under the MicroPython VM (tests/test_fw_alloc_vm.py,
# bench/bench_firmware_heap.py): the real application (app.App: config,
# panel, queue, sequence store, clock, reporter) on a board whose inputs
# the host sets, to count what the steady state allocates.  Allocation is
# micropython.mem_total(): every byte the VM's allocator handed out,
# including what was freed again at once (a function frame too big for
# the C stack), so zero means no allocation at all, not "no garbage".
#
# The app's clock source is the rig's (App(board, ticks=vticks)): real
# ticks plus an offset that `scan` moves forward by `step` per cycle, so
# a scan run covers minutes of panel time in a fraction of a second.
#
# One JSON request per line on stdin, one JSON reply per line on stdout:
#   {"op": "boot", "dir": D, "cfg": {...}, "rx": null | "HOST:PORT", "threshold": N}
#       rx null: the paths drop what they are given (no receiver)
#   {"op": "zone", "zone": Z, "ohms": R}         zone id Z's loop (-1: open, 0: short)
#   {"op": "ac", "on": bool}
#   {"op": "key", "code": C, "action": A, "partition": P} -> {"result": r}
#   {"op": "clock", "unix": U}                   set by an authenticated source
#   {"op": "seq", "next": N}                     the counter jumps to N
#   {"op": "scan", "cycles": N, "warm": W, "step": MS}
#       W cycles, then N counted: {"alloc": bytes over the N, "cycles_allocating": k,
#       "first": [cycle, bytes] of the first allocating one, "queued": events
#       queued by the N, "states": the partitions}
#   {"op": "poll", "polls": M, "events": K}
#       K events queued, five polls (what is due goes out), then M report
#       polls at one instant of panel time (a poll's own cost; the clock's
#       Unix seconds are a long on 32-bit, a new one each second) counted:
#       {"alloc": bytes, "garbage": what of it was still allocated after the
#       M (the GC disabled meanwhile), "queue": n}
#   {"op": "report", "events": K, "peak": false}
#       K events queued and polled until ACKed and nothing is outstanding
#       on any path: {"alloc": bytes, "garbage": bytes (as in poll; null
#       with "peak": the GC then runs and the peak is sampled after each
#       poll), "polls": n, "delivered": k, "queue": n}
#   {"op": "run", "ms": N, "warm": W}
#       the real app (App.main(): the supervised scan and report tasks and
#       the supervisor feeding the watchdog) under asyncio in real time, W
#       ms, then N counted: {"alloc": bytes in the N, "garbage": what of it
#       stayed allocated (the GC disabled meanwhile), "tasks": [[name,
#       deaths], ...], "watchdog_fed": bool}; then the app is stopped.
#       MicroPython's asyncio allocates (and frees at once) a frame of its
#       own per task wake-up (wait_io_event): "alloc" is not 0 here, the
#       garbage is
#   {"op": "state"} -> the app's state, brief
#   {"op": "peak"} -> {"peak": the most gc.mem_alloc() seen after a scan or
#       a report poll, "live": gc.mem_alloc() after a collection}, both less
#       what this script's own code takes (the firmware's modules and data
#       count, asyncio and json too); with
#       "threshold": N at boot (gc.threshold) the samples hold at most N
#       bytes of garbage
# An exception is answered {"error": traceback}.

import gc

gc.collect()
BASE = gc.mem_alloc()  # this script's own code; "peak" counts from here

import sys  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import micropython  # noqa: E402
import time  # noqa: E402

import hal  # noqa: E402
import eol  # noqa: E402
import app as A  # noqa: E402

OFF = [0]  # virtual ticks = real ticks + OFF
PEAK = [0]  # the most gc.mem_alloc() seen after a scan or poll (op "peak")


def sample():
    m = gc.mem_alloc()
    if m > PEAK[0]:
        PEAK[0] = m


def vticks():
    return time.ticks_add(time.ticks_ms(), OFF[0])



class _DropLink:
    """A path with nobody at the other end: takes bytes, answers nothing."""

    def __init__(self, stream):
        self.stream = stream
        self.lost = False
        self.connected = True

    def poll(self, now_ms):
        pass

    def send(self, data):
        return True

    def recv(self):
        return None


class Board(hal.BaseBoard):
    simulated = True

    def __init__(self, d, rx):
        self.state_dir = d
        self.config_path = d + "/config.json"
        self.rx = rx
        self.pullup = 4700
        self.raw = [0] * 256  # input -> ADC reading (set by setup())
        self.sounders = [0, 0]
        self.ac = True
        self.mv = 13200
        self.lid = False
        self.out = {"siren": False, "strobe": False, "lock": True, "supply": True}

    def setup(self, cfg):
        e = cfg["eol"]
        self.pullup = e["pullup_ohms"]
        n = eol.raw_for_ohms(e["normal_ohms"], self.pullup)
        for i in range(len(self.raw)):
            self.raw[i] = n
        self.sounders = [n, n]  # siren and strobe lines read back, intact

    def console(self, msg):
        print(msg, file=sys.stderr)  # stdout carries the replies

    def zone_raw(self, inp):
        return self.raw[inp]

    def sounder_raw(self, k):
        return self.sounders[k]

    def ac_ok(self):
        return self.ac

    def battery_mv(self):
        return self.mv

    def box_tamper(self):
        return self.lid

    def outputs(self, siren, strobe, lock, supply=True):
        o = self.out
        o["siren"] = siren
        o["strobe"] = strobe
        o["lock"] = lock
        o["supply"] = supply

    def open_link(self, i, pc):
        if self.rx is None:
            return _DropLink(pc["type"] != "udp")
        import links
        host, port = self.rx.rsplit(":", 1)
        if pc["type"] == "udp":
            return links.UdpLink(host, int(port))
        return links.TcpLink(host, int(port))


S = {}


def boot(req):
    d = req["dir"]
    with open(d + "/config.json", "w") as f:
        json.dump(req["cfg"], f)
    if req.get("threshold"):
        gc.threshold(req["threshold"])  # collect that often: samples stay near what is live
    b = Board(d, req.get("rx"))
    S["board"] = b
    S["app"] = A.App(b, vticks)
    gc.collect()
    return {"nz": S["app"].panel.nz, "mem_alloc": gc.mem_alloc()}


def scan(req):
    a = S["app"]
    step = req.get("step", a.scan_ms)
    for _ in range(req.get("warm", 10)):
        OFF[0] += step
        a.scan_step(vticks())
        sample()
    p = a.panel
    q = a.queue
    depth = len(q)
    n = req["cycles"]
    total = 0
    k = 0
    first = None
    for c in range(n):
        OFF[0] += step
        now = vticks()
        t0 = micropython.mem_total()
        a.scan_step(now)
        d = micropython.mem_total() - t0
        sample()
        if d:
            total += d
            k += 1
            if first is None:
                first = [c, d]
    return {"alloc": total, "cycles_allocating": k, "first": first,
            "queued": len(q) - depth, "states": p.status(False)["partitions"]}


def _pending(rep):
    """Has some path a message outstanding (an event, HELLO, link test)?"""
    for p in rep.status()["paths"]:
        if p["pending"] is not None:
            return True
    return False


def _emit(k):
    """K burglary events (partition 1) into the queue."""
    a = S["app"]
    for i in range(k):
        a.panel.emit(1, 130, 1, 1 + i % 8)
    a.drain(vticks())


def poll(req):
    a = S["app"]
    rep = a.reporter
    _emit(req.get("events", 0))
    now = vticks()  # one instant: what a poll costs, not what a second does
    for _ in range(5):  # the first polls send what is due
        rep.poll(now)
        a.drain(now)
    gc.collect()
    gc.disable()  # what stays allocated is garbage the GC would have to collect
    g0 = gc.mem_alloc()
    t0 = micropython.mem_total()
    for _ in range(req["polls"]):
        rep.poll(now)
        a.drain(now)
        time.sleep_ms(1)
    alloc = micropython.mem_total() - t0
    garbage = gc.mem_alloc() - g0  # before the reply's dict is made
    gc.enable()
    return {"alloc": alloc, "garbage": garbage, "queue": len(a.queue)}


def report(req):
    a = S["app"]
    rep = a.reporter
    k = req["events"]
    d0 = rep.delivered
    peak = req.get("peak")  # sample the peak (the GC runs), or count garbage (it does not)
    gc.collect()
    if not peak:
        gc.disable()  # the garbage it leaves, counted as in poll()
    g0 = gc.mem_alloc()
    t0 = micropython.mem_total()
    _emit(k)
    polls = 0
    deadline = time.ticks_add(time.ticks_ms(), 60000)
    while (len(a.queue) or rep.delivered - d0 < k or _pending(rep)) and \
            time.ticks_diff(deadline, time.ticks_ms()) > 0:
        now = vticks()
        rep.poll(now)
        a.drain(now)
        if peak:
            sample()
        polls += 1
        time.sleep_ms(1)
    alloc = micropython.mem_total() - t0
    garbage = None if peak else gc.mem_alloc() - g0
    gc.enable()
    return {"alloc": alloc, "garbage": garbage, "polls": polls,
            "delivered": rep.delivered - d0, "queue": len(a.queue)}


def run(req):
    """The real app (its supervised scan and report tasks, its
    supervisor) under asyncio for `warm` + `ms` milliseconds of real time;
    what it allocated in the last `ms`."""
    import asyncio
    a = S["app"]
    out = {}

    async def watch():
        await asyncio.sleep_ms(req.get("warm", 1000))
        gc.collect()
        gc.disable()  # what stays allocated is garbage the GC would have to collect
        g0 = gc.mem_alloc()
        t0 = micropython.mem_total()
        await asyncio.sleep_ms(req["ms"])
        alloc = micropython.mem_total() - t0
        garbage = gc.mem_alloc() - g0
        gc.enable()
        out["alloc"] = alloc
        out["garbage"] = garbage
        a.stop(0)

    async def both():
        asyncio.create_task(watch())
        await a.main()

    asyncio.run(both())
    out["tasks"] = [[t.name, t.deaths] for t in a.tasks]
    out["watchdog_fed"] = a.wdt_ms is not None
    return out


def handle(req):
    op = req["op"]
    if op == "boot":
        return boot(req)
    a = S["app"]
    b = S["board"]
    if op == "zone":
        p = a.panel
        b.raw[p.zinput[p.zid.index(req["zone"])]] = eol.raw_for_ohms(req["ohms"], b.pullup)
        return {}
    if op == "ac":
        b.ac = bool(req["on"])
        return {}
    if op == "key":
        return {"result": a.key(req["code"], req["action"], req.get("partition", 1), 0)}
    if op == "clock":
        now = vticks()
        ok = a.clock.set(req["unix"], now, None, True)
        if ok:
            a.panel.clock_set(True)
        a.drain(now)
        return {"ok": ok, "now": a.clock.now(now)}
    if op == "seq":
        s = a.seqs
        s.raise_to(req["next"])
        s.renumbered()  # nothing queued to renumber: a jump of the counter only
        return {"next": s.next}
    if op == "scan":
        return scan(req)
    if op == "report":
        return report(req)
    if op == "poll":
        return poll(req)
    if op == "run":
        return run(req)
    if op == "state":
        return a.state(False)
    if op == "peak":
        gc.collect()
        return {"peak": PEAK[0] - BASE, "live": gc.mem_alloc() - BASE}
    raise ValueError("unknown op %r" % (op,))


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        try:
            rep = handle(json.loads(line))
        except Exception as e:  # noqa: BLE001 - reported to the host
            buf = io.StringIO()
            sys.print_exception(e, buf)  # pyright: ignore[reportAttributeAccessIssue]
            rep = {"error": buf.getvalue()}
        print(json.dumps(rep))


main()
