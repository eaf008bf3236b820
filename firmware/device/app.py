# The panel application: boot, then its asyncio tasks, supervised.
#
#   scan      every scan_ms: zone loops -> DEOL classify -> debounce ->
#             panel; supplies, keypad, timers; outputs to the board;
#             new events into the persistent queue
#   report    every 20 ms: links <-> glpanel sessions (reporter.py), or
#             SIA DC-09 with "protocol": "dc09" (dc09rep.py)
#   gps       a vehicle unit's (kind "vehicle", "patrol"; its loop is
#             vunit.Unit.run, so a fixed panel carries none of it): the
#             GNSS UART's bytes -> NMEA, the vehicle rules, the report
#             policy; due track points into the track ring (trackq.py),
#             new events into the persistent queue
#   board     extra tasks of the board: the control protocol (control.py)
#             on the sim's socket, or on a hardware board's console in
#             test mode ("test_mode": true)
#   main      the supervisor: every _SUPERVISE_MS it feeds the watchdog,
#             but only while every task is alive (scan and report have
#             finished a loop within _STALE_MS; no task is dead).  A task
#             that raises is restarted after _RESTART_MS and reported as
#             300 "system trouble" (text: the task and the error), restored
#             once it loops again; a task that keeps dying never loops, so
#             the watchdog is starved and the board resets (the sim's
#             `state` shows `watchdog_age_ms`).
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
from fwutil import ticks_ms, ticks_diff, mem_free, mem_alloc

# The heavy modules (panel, reporter, glwire, glpanel) are imported only
# after the config is validated and the validator unloaded: the boot peak
# (config text + parsed document + validator) then does not add up with
# their bytecode, which on a board without frozen modules sits in the heap.
# Only what the config uses is imported: glwire and glpanel for the native
# protocol (reporter.py), gldc09 for DC-09 (dc09rep.py); control.py only
# on the sim or in test mode.

_REPORT_MS = 20
_QUEUE_SLOTS = 128  # 8 KB of flash; see pqueue.py
_SUPERVISE_MS = 500  # the supervisor's round
# A looping task that has not finished a loop for this long is stuck or
# dying: half the boards' 8 s watchdog (board_mcu.py), and 80 rounds of
# the slowest scan the config allows (scan_ms <= 1000 would be 4).
_STALE_MS = 4000
_RESTART_MS = 1000  # a dead task is restarted after this


def open_sequences(queue, path, log):
    """The sequence store, its floor the queue's highest sequence.  A
    sequence beyond seqstore.SEQ_END (a receiver's jump that firmware
    before the range checks honoured) would overflow the counter and crash
    at every boot: such a bound in the file is ignored (SeqStore), and such
    records count for no floor and are renumbered from the counter, in
    order, so the panel boots and reports them."""
    from seqstore import SeqStore, SEQ_END
    ok = [s for s in queue.seqs() if s <= SEQ_END]
    seqs = SeqStore(path, (max(ok) if ok else 0) + 1)
    if seqs.insane:
        log("seq.dat: bound %d beyond %d ignored" % (seqs.insane, SEQ_END))
    for s in queue.seqs():
        if s > SEQ_END:
            queue.renumber(s, seqs.take())
    return seqs


def _drain(app, now_ms):
    """App.drain's work, when there is some (see there)."""
    p = app.panel
    q = app.queue
    for _ in range(2):  # a 624 from the first pass is queued in the second
        if p.out:
            t = app.clock.now(now_ms)
            pos = p.position(now_ms)  # a vehicle unit's, where it is now
            for qual, code, part, zone, text in p.out:
                q.append(app.seqs.take(), qual, code, part, zone, t, text, pos)
            p.out.clear()
        lost = q.dropped + p.overflow
        if lost == app.lost and not p.q_over:
            break
        p.queue_state(lost - app.lost, q.depth, q.n)
        app.lost = lost
    if p.changed:
        p.changed = False
        app.seqs.set_state(p.modes(), p.memory_bytes(), p.flags())


class _Task:
    """A supervised task: `make()` returns its coroutine; `looping` tasks
    (scan, report) set `beat` at the end of every loop."""

    def __init__(self, name, make, looping, now_ms):
        self.name = name
        self.make = make
        self.looping = looping
        self.beat = now_ms
        self.task = None  # type: asyncio.Task | None
        self.deaths = 0
        self.down = False  # died; 300 restore owed once it loops again
        self.since = now_ms  # (re)started at
        self.ended = False  # returned by itself


class App:
    """`ticks`: the millisecond clock (ticks_ms on a board; the test kit's
    in-process panel gives a virtual one and calls scan_step/report_step
    itself instead of running the tasks)."""

    def __init__(self, board, ticks=ticks_ms):
        self.board = board
        self.log = board.console
        self.ticks = ticks
        self.boot_ms = ticks()
        self.exit_code = None
        self._stop = asyncio.Event()
        self.errors = []
        self.halted = False
        self.panel = None
        self.test_mode = False
        self.lost = 0  # events dropped (panel burst bound + full queue) so far
        self.min_free = mem_free()  # lowest free heap seen at a scan
        self._scans = None  # the scan loop (scan_step), made at the first scan
        self.tasks = []  # supervised (main)
        self.wdt_ms = None  # when the supervisor last fed the watchdog (ticks)
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
        for m in ("config", "vehicle_config", "cfgutil"):  # their bytecode is not needed again
            if m in sys.modules:
                del sys.modules[m]
        del C
        gc.collect()
        import eol
        import cid
        import panel as P
        from pqueue import PersistentQueue
        from clock import Clock
        if hasattr(board, "setup"):
            board.setup(cfg)
        board.net_start(cfg)
        now = ticks()
        self.scan_ms = cfg["timings"]["scan_ms"]
        self.queue = PersistentQueue(board.path("queue.dat"), _QUEUE_SLOTS)
        self.seqs = open_sequences(self.queue, board.path("seq.dat"), self.log)
        self.clock = Clock()
        p = P.Panel(cfg, now, self.log)
        self.panel = p
        if safe:
            p.troubles |= P.T_CONFIG
            p.emit(P.Q_NEW, cid.SELF_TEST, 0, 0, P.event_text(errors[0]))
            # whether test mode is on is unknown: owe what was owed
            p.test_mode = bool(self.seqs.flags & P.F_TEST_MODE)
            p.q_over = bool(self.seqs.flags & P.F_OVERFLOW)
        else:
            p.restore_modes(self.seqs.modes)
            p.restore_memory(self.seqs.memory)
        e = cfg["eol"]
        self.cls = eol.Classifier(e["normal_ohms"], e["alarm_ohms"], e["pullup_ohms"])
        self.deb = eol.Debouncer(p.nz, cfg["timings"]["debounce_ms"], now)
        # a vehicle unit's track points: their own ring (trackq.py), sent by
        # the native protocol only (a standard DC-09 receiver takes none)
        self.track = None
        if p.unit is not None:
            if cfg.get("protocol") == "dc09":
                p.unit.tracking = False
            else:
                from trackq import TrackRing
                self.track = TrackRing(board.path("track.dat"),
                                       cfg["vehicle"]["report"]["track_points"])
        # what only the panel needed goes before the reporter's modules
        # load: the boot's peak, and what sets the smallest heap (the
        # bank's zones, users and partitions are kilobytes of dicts)
        cfg["zones"] = cfg["users"] = cfg["partitions"] = None
        gc.collect()
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
                                              links, now, self.log, self.track)
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
        persist what must survive a power loss.  Called after every scan
        and report poll: when there is nothing to do it returns at once,
        from a frame small enough for the C stack (fwutil.py)."""
        p = self.panel
        if p.out or p.changed or p.q_over or self.queue.dropped + p.overflow != self.lost:
            _drain(self, now_ms)

    def key(self, code, action, partition, arg):
        if self.panel is None:
            return 3  # R_BAD_ARGUMENT: no panel (halted)
        import panel as P
        if isinstance(action, str):
            action = P.ACTIONS.index(action)
        now = self.ticks()
        # the time lock decides on a trusted clock only (clock.py)
        r = self.panel.keypad(code, action, partition, arg, now, self.clock.trusted_now(now))
        self.panel.tick(now, self.clock.trusted_now(now))
        self.board.outputs(self.panel.siren, self.panel.strobe, self.panel.lock,
                           self.panel.supply)
        self.drain(now)
        return r

    def state(self, zones=True):
        if self.panel is None:
            return {"ok": True, "halted": True, "errors": self.errors}
        st = self.panel.status(zones)
        st["ok"] = True
        st["config_errors"] = self.errors
        st["reporter"] = self.reporter.status()
        now = self.ticks()
        st["clock"] = self.clock.now(now)
        st["clock_trusted"] = self.clock.trusted
        st["tasks"] = [{"name": t.name, "alive": self._alive(t, now), "deaths": t.deaths}
                       for t in self.tasks]
        st["watchdog_age_ms"] = None if self.wdt_ms is None else ticks_diff(now, self.wdt_ms)
        st["mem_free"] = mem_free()
        st["mem_alloc"] = mem_alloc()
        st["mem_min_free"] = self.min_free
        return st

    def stop(self, code):
        self.exit_code = code
        self._stop.set()

    # -- tasks -----------------------------------------------------------------

    def scan_step(self, now):
        """One scan at `now` (ticks): zone loops -> DEOL classify ->
        debounce -> panel; supplies, keypad, timers; outputs to the board;
        new events into the persistent queue.  The scan task calls it, and
        the test kit's in-process panel with its virtual clock.  The work
        runs in a generator (_scan_loop()) whose locals live in one frame
        allocated once: a plain function this size gets a heap frame on
        every call.  In the steady state a scan allocates nothing
        (fwutil.py)."""
        g = self._scans
        if g is None:
            g = self._scans = self._scan_loop()
            next(g)
        # no try here: an exception handler makes this frame too big for
        # the C stack; a scan task that died starts a fresh loop (scan())
        g.send(now)

    def _scan_loop(self):
        """scan_step()'s loop: each send(now) runs one scan."""
        b = self.board
        p = self.panel
        cls = self.cls
        deb = self.deb
        clock = self.clock
        now = yield
        while True:
            for i in range(p.nz):
                s = deb.update(i, cls.classify(b.zone_raw(p.zinput[i])), now)
                if s >= 0:
                    p.zone_change(i, s, now)
            p.supplies(b.ac_ok(), b.battery_mv(), b.box_tamper(), now)
            for k in (0, 1):  # siren and strobe lines (None: not supervised here)
                raw = b.sounder_raw(k)
                if raw is not None:
                    p.sounder(k, cls.classify(raw), now)
            k = b.keypad()
            if k is not None:
                self.keypad(k)
            # panel.tick(now, clock.trusted_now(now)) in small ints (fwutil.py)
            p.wall(clock.trusted_day(now), clock.sec)
            p.timers(now)
            b.outputs(p.siren, p.strobe, p.lock, p.supply)
            self.drain(now)
            f = mem_free()
            if f < self.min_free:
                self.min_free = f
            now = yield

    def keypad(self, k):
        """A keypad entry (code, action name, partition, arg) from the board."""
        import panel as P
        if k[1] in P.ACTIONS:
            self.key(k[0], k[1], k[2], k[3])

    def report_step(self, now):
        """Links <-> the reporting sessions; what they changed into the queue."""
        self.reporter.poll(now)
        self.drain(now)

    async def scan(self, t):
        self._scans = None  # a loop that ended with an exception is not resumed
        while True:
            self.scan_step(self.ticks())
            t.beat = self.ticks()  # a whole loop done
            await asyncio.sleep_ms(self.scan_ms)

    async def report(self, t):
        while True:
            self.report_step(self.ticks())
            t.beat = self.ticks()
            await asyncio.sleep_ms(_REPORT_MS)

    # -- supervision -------------------------------------------------------------

    def _alive(self, t, now_ms):
        if t.ended:
            return not t.looping  # the sim's control server: started, done
        if t.down or t.task is None or t.task.done():
            return False
        return not t.looping or ticks_diff(now_ms, t.beat) < _STALE_MS

    async def _run(self, t):
        """Run t; if it raises, report it and start it again."""
        while True:
            t.since = self.ticks()
            try:
                await t.make(t)
                t.ended = True  # by itself (the sim's control server is up)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any error: restart, report
                why = "%s %s" % (type(e).__name__, e)
                t.deaths += 1
                t.down = True
                t.since = self.ticks()  # a beat from before the death proves nothing
                self.log("task %s died (%s): restarting" % (t.name, why))
                if hasattr(sys, "print_exception"):
                    sys.print_exception(e)  # pyright: ignore[reportAttributeAccessIssue]  (MicroPython)
                if self.panel is not None:
                    self.panel.task_state(t.name, False, why)
            await asyncio.sleep_ms(_RESTART_MS)

    def _supervise(self, name, make, looping):
        t = _Task(name, make, looping, self.ticks())
        self.tasks.append(t)
        t.task = asyncio.create_task(self._run(t))

    # The supervisor's round is the body of main(), a coroutine whose frame
    # is allocated once, and what it calls keeps frames small enough for
    # the C stack (fwutil.py): a quiet panel allocates nothing.
    def _tasks_ok(self, now_ms):
        """Every task in this round (_task_ok()); True if all are alive."""
        ok = True
        for k in range(len(self.tasks)):
            ok = self._task_ok(self.tasks[k], now_ms) and ok
        return ok

    def _task_ok(self, t, now_ms):
        """Task t in this round: started again if its wrapper ended (a bug
        in _run), restored once it loops again; True if it is alive."""
        if t.task.done() and not t.ended:
            self._restart(t)
            return False
        if t.down and (ticks_diff(t.beat, t.since) > 0 if t.looping else
                       ticks_diff(now_ms, t.since) >= _STALE_MS):
            self._restored(t)
        return self._alive(t, now_ms)

    def _restart(self, t):
        t.task = asyncio.create_task(self._run(t))

    def _restored(self, t):
        t.down = False
        if self.panel is not None:
            self.panel.task_state(t.name, True)

    def _board_task(self, k, first):
        """The maker of board task k: the coroutine the board gave at
        start, then a new one after each death."""
        given = [first]

        def make(t):
            return given.pop() if given else self.board.tasks(self)[k]
        return make

    async def main(self):
        if not self.halted:
            self._supervise("scan", self.scan, True)
            self._supervise("report", self.report, True)
            if self.panel.unit is not None:
                u = self.panel.unit
                self._supervise("gps", lambda t: u.run(self, t), True)
        bts = self.board.tasks(self)
        for k in range(len(bts)):
            self._supervise("control" if k == 0 else "board%d" % k,
                            self._board_task(k, bts[k]), False)
        while not self._stop.is_set():
            # one round: restore what loops again, feed the watchdog if
            # every task is alive
            now = self.ticks()
            ok = self._tasks_ok(now)
            if self.panel is not None:
                try:
                    self.drain(now)  # a 300 from a task that died
                except Exception as e:  # noqa: BLE001 - the tasks report it; the dog decides
                    self.log("supervisor: drain failed (%s)" % e)
                    ok = False
            if ok:
                self.board.wdt_feed()
                self.wdt_ms = now
            await asyncio.sleep_ms(_SUPERVISE_MS)


def run(board):
    app = App(board)
    try:
        asyncio.run(app.main())
    finally:
        if app.panel is not None:
            app.queue.close()
            if app.track is not None:
                app.track.close()
    return app.exit_code or 0
