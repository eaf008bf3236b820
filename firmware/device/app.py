# The panel application: boot, then four asyncio tasks.
#
#   scan      every scan_ms: zone loops -> DEOL classify -> debounce ->
#             panel; supplies, keypad, timers; outputs to the board;
#             new events into the persistent queue; watchdog
#   report    every 20 ms: links <-> glpanel sessions (reporter.py), or
#             SIA DC-09 with "protocol": "dc09" (dc09rep.py)
#   board     extra tasks of the board: the control protocol (control.py)
#             on the sim's socket, or on a hardware board's console in
#             test mode ("test_mode": true)
#
# Boot order: config (a bad one -> safe mode: only T_CONFIG and a 307
# report, or, if even the account/key/receiver are unusable, console
# errors only), persistent queue, sequence store (queue max + 1 at least),
# panel (arming modes and alarm memory restored from flash), links,
# reporter, then a 305 "system reset" event and, in test mode, 607.
#
# Nothing is dropped silently: drain() tells the panel how many events
# were lost (the panel's own burst bound, or the full queue evicting the
# oldest), and the panel reports 624 "event log overflow" (panel.py).

import gc
import sys
import asyncio
from fwutil import ticks_ms

# The heavy modules (panel, reporter, glwire, glpanel) are imported only
# after the config is validated and the validator unloaded: the boot peak
# (config text + parsed document + validator) then does not add up with
# their bytecode, which on a board without frozen modules sits in the heap.
# Only what the config uses is imported: glwire and glpanel for the native
# protocol (reporter.py), gldc09 for DC-09 (dc09rep.py); control.py only
# on the sim or in test mode.

_REPORT_MS = 20
_QUEUE_SLOTS = 128  # 8 KB of flash; see pqueue.py


def _short(text, n=32):
    while len(text.encode()) > n:
        text = text[:-1]
    return text


class App:
    def __init__(self, board):
        self.board = board
        self.log = board.console
        self.boot_ms = ticks_ms()
        self.exit_code = None
        self._stop = asyncio.Event()
        self.errors = []
        self.halted = False
        self.panel = None
        self.test_mode = False
        self.lost = 0  # events dropped (panel burst bound + full queue) so far
        self.min_free = gc.mem_free()  # lowest free heap seen at a scan
        import config as C
        cfg, errors, doc = C.load(board.config_path)
        safe = False
        if errors:
            self.errors = errors
            for e in errors:
                self.log("config error: " + e)
            cfg = C.comms_ok(doc)
            if cfg is None:
                self.log("config: account, key or receiver unusable: cannot report, halted")
                self.halted = True
                return
            safe = True
            self.log("config: SAFE MODE, reporting trouble T_CONFIG only")
            cfg.update({"kind": doc.get("kind") if doc.get("kind") in C.KINDS else "bank",
                        "partitions": [], "zones": [], "users": [], "code_salt": None,
                        "eol": dict(C.EOL_DEFAULTS), "utc_offset_min": 0})
        del doc
        del sys.modules["config"]  # its bytecode is not needed again
        del C
        gc.collect()
        import eol
        import cid
        import panel as P
        from pqueue import PersistentQueue
        from seqstore import SeqStore
        from clock import Clock
        if hasattr(board, "setup"):
            board.setup(cfg)
        board.net_start(cfg)
        now = ticks_ms()
        self.scan_ms = cfg["timings"]["scan_ms"]
        self.queue = PersistentQueue(board.path("queue.dat"), _QUEUE_SLOTS)
        self.seqs = SeqStore(board.path("seq.dat"), self.queue.max_seq() + 1)
        self.clock = Clock()
        p = P.Panel(cfg, now, self.log)
        self.panel = p
        if safe:
            p.troubles |= P.T_CONFIG
            p.emit(P.Q_NEW, cid.SELF_TEST, 0, 0, _short(errors[0]))
            # whether test mode is on is unknown: owe what was owed
            p.test_mode = bool(self.seqs.flags & P.F_TEST_MODE)
            p.q_over = bool(self.seqs.flags & P.F_OVERFLOW)
        else:
            p.restore_modes(self.seqs.modes)
            p.restore_memory(self.seqs.memory)
        e = cfg["eol"]
        self.cls = eol.Classifier(e["normal_ohms"], e["alarm_ohms"], e["pullup_ohms"])
        self.deb = eol.Debouncer(p.nz, cfg["timings"]["debounce_ms"], now)
        rx = cfg["receiver"]
        links = [board.open_link(0, rx["primary"])]
        if rx.get("backup"):
            links.append(board.open_link(1, rx["backup"]))
        if cfg.get("protocol") == "dc09":
            import dc09rep  # SIA DC-09 to any standard receiver (glpanel not loaded)
            self.reporter = dc09rep.Dc09Reporter(cfg, self.queue, self.seqs, self.clock, p,
                                                 links, now, self.log)
            who = "DC-09 account %s" % cfg["dc09"]["account"]
        else:
            import reporter
            self.reporter = reporter.Reporter(cfg, self.queue, self.seqs, self.clock, p,
                                              links, now, self.log)
            who = "panel %d" % cfg["account"]
        p.emit(P.Q_NEW, cid.SYSTEM_RESET, 0, 0)
        if not safe:
            self.test_mode = cfg["test_mode"]
            p.boot_report(self.seqs.flags, self.test_mode)
            if self.test_mode:
                self.log("TEST MODE: control protocol on the console (docs/qa.md); "
                         "never in production")
        self.drain(now)
        self.log("%s up: %s, %d zones, %d partitions, queue %d, next seq %d" % (
            who, cfg["kind"], p.nz, len(p.parts), len(self.queue), self.seqs.next))
        del cfg
        gc.collect()

    # -- glue ----------------------------------------------------------------

    def drain(self, now_ms):
        """Panel events into the persistent queue; report losses (624);
        persist what must survive a power loss."""
        p = self.panel
        q = self.queue
        for _ in range(2):  # a 624 from the first pass is queued in the second
            if p.out:
                t = self.clock.now(now_ms)
                for qual, code, part, zone, text in p.out:
                    q.append(self.seqs.take(), qual, code, part, zone, t, text)
                p.out.clear()
            lost = q.dropped + p.overflow
            if lost == self.lost and not p.q_over:
                break
            p.queue_state(lost - self.lost, q.depth, q.n)
            self.lost = lost
        if p.changed:
            p.changed = False
            self.seqs.set_state(p.modes(), p.memory_bytes(), p.flags())

    def key(self, code, action, partition, arg):
        if self.panel is None:
            return 3  # R_BAD_ARGUMENT: no panel (halted)
        import panel as P
        if isinstance(action, str):
            action = P.ACTIONS.index(action)
        now = ticks_ms()
        r = self.panel.keypad(code, action, partition, arg, now, self.clock.now(now))
        self.panel.tick(now, self.clock.now(now))
        self.board.outputs(self.panel.siren, self.panel.strobe, self.panel.lock)
        self.drain(now)
        return r

    def state(self, zones=True):
        if self.panel is None:
            return {"ok": True, "halted": True, "errors": self.errors}
        st = self.panel.status(zones)
        st["ok"] = True
        st["config_errors"] = self.errors
        st["reporter"] = self.reporter.status()
        st["clock"] = self.clock.now(ticks_ms())
        st["mem_free"] = gc.mem_free()
        st["mem_alloc"] = gc.mem_alloc()
        st["mem_min_free"] = self.min_free
        return st

    def stop(self, code):
        self.exit_code = code
        self._stop.set()

    # -- tasks -----------------------------------------------------------------

    async def scan(self):
        import panel as P
        b = self.board
        p = self.panel
        cls = self.cls
        deb = self.deb
        while True:
            now = ticks_ms()
            b.wdt_feed()
            for i in range(p.nz):
                s = deb.update(i, cls.classify(b.zone_raw(p.zinput[i])), now)
                if s >= 0:
                    p.zone_change(i, s, now)
            p.supplies(b.ac_ok(), b.battery_mv(), b.box_tamper(), now)
            k = b.keypad()
            if k is not None and k[1] in P.ACTIONS:
                self.key(k[0], k[1], k[2], k[3])
            p.tick(now, self.clock.now(now))
            b.outputs(p.siren, p.strobe, p.lock)
            self.drain(now)
            f = gc.mem_free()
            if f < self.min_free:
                self.min_free = f
            await asyncio.sleep_ms(self.scan_ms)

    async def report(self):
        while True:
            now = ticks_ms()
            self.reporter.poll(now)
            self.drain(now)
            await asyncio.sleep_ms(_REPORT_MS)

    async def idle(self):
        while True:
            self.board.wdt_feed()
            await asyncio.sleep_ms(1000)

    async def main(self):
        for t in self.board.tasks(self):
            asyncio.create_task(t)
        if self.halted:
            asyncio.create_task(self.idle())
        else:
            asyncio.create_task(self.scan())
            asyncio.create_task(self.report())
        await self._stop.wait()


def run(board):
    app = App(board)
    try:
        asyncio.run(app.main())
    finally:
        if app.panel is not None:
            app.queue.close()
    return app.exit_code or 0
