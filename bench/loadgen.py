"""End-to-end load generator for the Guardline receiver (native protocol).

Worker processes (``--procs``) each run an asyncio loop holding a share of
the connections; each connection is one panel (its own account and key).
A run has two phases:

1. **connect**: every connection is opened (at most ``CONNECT_CONCURRENCY``
   at a time over all processes, below the receiver's per-address cap of
   unauthenticated connections), authenticates with one HEARTBEAT, waiting
   for its ACK, and seals its events.  Not timed.
2. **load**: once every process reports ready, the parent releases them
   together and each connection sends its events, either

   - ``lockstep`` (window 1): send, wait for the ACK, send the next, as a
     panel's firmware does; or
   - ``pipelined`` (window W): up to W events outstanding on the
     connection, ACKs matched by sequence.  W stays below the receiver's
     in-flight cap per TCP link (16) and its reorder window (64).

   In both modes every connection runs at once, so the receiver sees
   events interleaved across all N connections.

   With ``rate`` (events/s offered, all connections together) the load is
   open-loop instead: each connection sends on a fixed schedule (its share
   of the rate, phases spread), still at most ``window`` outstanding, and
   latency is measured from the *scheduled* time, so a receiver that falls
   behind is charged for the wait (no coordinated omission).

Per event the latency is first transmission (or its scheduled time) -> ACK
opened.  A NAK busy is counted and the event re-sealed and resent after a
capped backoff, so the figures include backpressure.

The generator must not be what limits a figure, so it does the least it
can per event: every event frame is sealed during the connect phase (fresh
IV each, the timestamp of that moment; a frame older than
``PRESEAL_MAX_AGE_S`` when its turn comes is sealed again, well inside the
receiver's +-60 s window), the loop is uvloop where installed, and each
worker reports the CPU seconds it used over the load phase
(``gen_cpu_s``, ``gen_util``: a worker near 1.0 of a core is saturated and
the figure is the generator's, not the receiver's).

Bounds: every connection gives up after ``GIVE_UP_S`` without finishing;
every run is bounded by count (N x events) and time.

Used by bench/bench_receiver.py; runnable alone against a running receiver:

    python bench/loadgen.py --port 7700 --accounts accounts.json --events 50 --procs 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from typing import cast

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

try:
    import uvloop as _uvloop
except ImportError:  # not installed (not Linux): the standard loop
    _uvloop = None

from protocol.lean import glwire as w  # noqa: E402

# An event not ACKed in this long is re-sealed and resent.
RETRY_S = 5.0
# First backoff after a NAK busy (doubles per NAK of the same event, capped).
BUSY_BACKOFF_S = 0.2
BUSY_BACKOFF_CAP_S = 3.0
# A connection that has not finished this long after the start gives up.
GIVE_UP_S = 300.0
# Connections opened at once during the connect phase, all worker processes
# together: every connection comes from 127.0.0.1, and the receiver refuses
# more than max_unauthenticated_per_address (64 by default) not yet
# authenticated from one address.
CONNECT_CONCURRENCY = 48
# A frame sealed ahead of time is sealed again if it waited longer than this
# (the receiver accepts timestamps within +-60 s of its clock).
PRESEAL_MAX_AGE_S = 30.0
# How long the connect phase may take.
CONNECT_DEADLINE_S = 240.0


def raise_nofile(want: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit towards ``want`` (up to
    the hard limit, which an unprivileged process cannot raise).  Returns
    the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(hard, max(soft, want)) if hard != resource.RLIM_INFINITY else max(soft, want)
    if new > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            return soft
    return new


def event_msg(seq: int, event_time: int) -> dict:
    return {"type": w.MSG_EVENT, "qualifier": 1, "code": 602 if seq % 10 else 130,
            "partition": 1, "zone": seq % 100, "event_time": event_time,
            "text": None, "value": None}


def heartbeat_msg() -> dict:
    return {"type": w.MSG_HEARTBEAT, "troubles": 0, "battery_mv": 13600, "active_path": 1,
            "queue_depth": 0, "partitions": [0]}


class Stats:
    def __init__(self):
        self.latencies: list[float] = []
        self.acked = 0
        self.naks = 0
        self.resent = 0
        self.errors: list[str] = []


class PanelClient(asyncio.Protocol):
    """One panel on one TCP connection: a HEARTBEAT to authenticate, then
    ``events`` EVENTs with up to ``window`` outstanding; with ``interval``
    (seconds) each event is due ``interval`` after the previous one's due
    time (open loop) instead of as soon as the window allows."""

    def __init__(self, account: int, key: bytes, first_seq: int, events: int, window: int,
                 stats: Stats, interval: float | None = None, phase: float = 0.0):
        self.account = account
        self.keys = w.Keys(key)
        self.hb_seq = first_seq
        self.next_seq = first_seq + 1
        self.last_seq = first_seq + events
        self.window = window
        self.interval = interval
        self.phase = phase
        self.stats = stats
        self.reader = w.FrameReader()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.authenticated = self.loop.create_future()
        self.done = self.loop.create_future()
        self.loading = False
        self.outstanding: dict[int, list] = {}  # seq -> [t_first, t_last, busy_naks]
        self.remaining = events
        self._timer = None
        self._pump_handle = None
        self.sealed: dict[int, bytes] = {}
        self.sealed_at = 0.0
        self.event_time = int(time.time())

    # -- sending ------------------------------------------------------------------

    def seal_ahead(self) -> None:
        """Seal every event frame now (the connect phase), not under load."""
        now = int(time.time())
        self.event_time = now
        self.sealed_at = time.monotonic()
        self.sealed = {seq: w.seal(self.keys, event_msg(seq, now), self.account, seq, now, 0)
                       for seq in range(self.next_seq, self.last_seq + 1)}

    def _frame(self, seq: int) -> bytes:
        f = self.sealed.pop(seq, None)
        if f is not None and time.monotonic() - self.sealed_at < PRESEAL_MAX_AGE_S:
            return f
        # A resend, or a frame sealed too long ago: sealed again (fresh IV and
        # header timestamp) around the SAME message, as a panel re-seals the
        # record it queued.  A new event_time would make it a new event to
        # the receiver (same sequence, other content: a reset counter), and
        # a resend of an event still being committed would be stored twice.
        now = int(time.time())
        msg = heartbeat_msg() if seq == self.hb_seq else event_msg(seq, self.event_time)
        return w.seal(self.keys, msg, self.account, seq, now, 0)

    def _transmit(self, seq: int, t_due: float | None = None) -> None:
        now = time.perf_counter()
        st = self.outstanding.get(seq)
        if st is None:
            self.outstanding[seq] = [now if t_due is None else t_due, now, 0]
        else:
            st[1] = now
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(self._frame(seq))

    def start_load(self) -> None:
        self.loading = True
        self.t_start = time.monotonic()
        if self.interval is not None:
            self.t_due = time.perf_counter() + self.phase
            self._pump_handle = self.loop.call_later(self.phase, self._pump_due)
        else:
            self._pump()
        self._timer = self.loop.call_later(1.0, self._check)

    def _pump(self) -> None:
        while len(self.outstanding) < self.window and self.next_seq <= self.last_seq:
            self._transmit(self.next_seq)
            self.next_seq += 1
        if self.remaining == 0:
            self._finish(None)

    def _pump_due(self) -> None:
        """Open loop: send every event whose due time has come (window
        permitting), then wake at the next due time."""
        self._pump_handle = None
        interval = self.interval
        if self.done.done() or interval is None:  # closed loop: the ACKs pump
            return
        now = time.perf_counter()
        while (self.next_seq <= self.last_seq and self.t_due <= now
               and len(self.outstanding) < self.window):
            self._transmit(self.next_seq, self.t_due)
            self.next_seq += 1
            self.t_due += interval
        if self.remaining == 0:
            self._finish(None)
        elif self.next_seq <= self.last_seq and len(self.outstanding) < self.window:
            self._pump_handle = self.loop.call_later(max(0.0, self.t_due - now),
                                                     self._pump_due)
        # else: window full; the next ACK pumps again

    def _check(self) -> None:
        """Once a second: resend what has waited RETRY_S; give up at GIVE_UP_S."""
        if self.done.done():
            return
        now = time.perf_counter()
        for seq, st in list(self.outstanding.items()):
            if now - st[1] > RETRY_S:
                self.stats.resent += 1
                self._transmit(seq)
        if time.monotonic() - self.t_start > GIVE_UP_S:
            self._finish("account %d: %d events not ACKed after %.0f s"
                         % (self.account, self.remaining, GIVE_UP_S))
            return
        self._timer = self.loop.call_later(1.0, self._check)

    def _finish(self, error: str | None) -> None:
        if self.done.done():
            return
        if error:
            self.stats.errors.append(error)
        for h in (self._timer, self._pump_handle):
            if h is not None:
                h.cancel()
        self.done.set_result(error is None)

    # -- receiving ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's
        self._transmit(self.hb_seq)

    def connection_lost(self, exc) -> None:
        err = "account %d: connection lost (%s)" % (self.account, exc or "closed by receiver")
        if not self.authenticated.done():
            self.authenticated.set_exception(ConnectionError(err))
        self._finish(err)

    def data_received(self, data) -> None:
        mv = memoryview(data)
        for i in range(0, len(mv), w.READ_SIZE):
            self.reader.receive_data(mv[i:i + w.READ_SIZE])
            while True:
                f = self.reader.next_frame()
                if not isinstance(f, w.Frame):
                    if f is w.NEED_DATA:
                        break
                    continue  # a BadFrame
                if f.account != self.account or not f.flags & w.FLAG_FROM_RECEIVER:
                    continue
                try:
                    m = w.open_frame(self.keys, f)
                except w.WireError:
                    continue
                self._on_message(m)

    def _on_message(self, m: dict) -> None:
        t = m["type"]
        if t == w.MSG_ACK:
            seq = m["ack_seq"]
            st = self.outstanding.pop(seq, None)
            if st is None:
                return  # a late duplicate ACK
            if seq == self.hb_seq:
                if not self.authenticated.done():
                    self.authenticated.set_result(True)
                return
            self.stats.latencies.append(time.perf_counter() - st[0])
            self.stats.acked += 1
            self.remaining -= 1
            if self.loading:
                if self.interval is None:
                    self._pump()
                elif self.remaining == 0:
                    self._finish(None)
                elif self._pump_handle is None:
                    self._pump_due()
        elif t == w.MSG_NAK:
            seq = m["nak_seq"]
            st = self.outstanding.get(seq)
            if st is None:
                return
            self.stats.naks += 1
            if m["reason"] == w.NAK_BUSY:
                st[2] += 1
                delay = min(BUSY_BACKOFF_CAP_S, BUSY_BACKOFF_S * (1 << min(st[2] - 1, 6)))
                st[1] = time.perf_counter() + delay  # no timeout resend meanwhile
                self.loop.call_later(delay, self._resend, seq)
            elif m["reason"] == w.NAK_TIME:
                self._resend(seq)
            else:
                self._finish("account %d seq %d: NAK %s" % (
                    self.account, seq, w.NAK_NAMES.get(m["reason"], m["reason"])))

    def _resend(self, seq: int) -> None:
        if seq in self.outstanding and not self.done.done():
            self.stats.resent += 1
            self._transmit(seq)


async def _connect(host, port, account, key, first_seq, events, window, stats, sem,
                   interval, phase):
    loop = asyncio.get_running_loop()
    async with sem:
        try:
            _, client = await loop.create_connection(
                lambda: PanelClient(account, key, first_seq, events, window, stats, interval,
                                    phase), host, port)
            await asyncio.wait_for(client.authenticated, 30)
        except (OSError, ConnectionError, asyncio.TimeoutError) as e:
            stats.errors.append("account %d: connect/authenticate: %s" % (account, e or type(e)))
            return None
    client.seal_ahead()
    return client


def new_event_loop():
    """The loop a worker runs on: uvloop where installed (cheaper per event,
    so the generator stays out of the figure), else the standard one."""
    return _uvloop.new_event_loop() if _uvloop is not None else asyncio.new_event_loop()


def run_loop(coro):
    with asyncio.Runner(loop_factory=new_event_loop) as r:
        return r.run(coro)


async def _worker_main(host, port, accounts, events, first_seq, window, ready_q, go,
                       concurrency=CONNECT_CONCURRENCY, rate=None, total_connections=None):
    """``rate``: events/s offered by ALL workers together (None: closed loop);
    this worker's connections each get ``total_connections / rate`` between
    events, their phases spread over one interval."""
    raise_nofile(len(accounts) + 256)
    stats = Stats()
    sem = asyncio.Semaphore(max(1, concurrency))
    interval = None if not rate else (total_connections or len(accounts)) / rate
    try:
        clients = await asyncio.wait_for(asyncio.gather(*(
            _connect(host, port, a, bytes.fromhex(k), first_seq, events, window, stats, sem,
                     interval, 0.0 if interval is None else interval * i / max(1, len(accounts)))
            for i, (a, k) in enumerate(accounts))), CONNECT_DEADLINE_S)
    except asyncio.TimeoutError:
        clients = []
        stats.errors.append("connect phase over %.0f s" % CONNECT_DEADLINE_S)
    clients = [c for c in clients if c is not None]
    ready_q.put(("ready", len(clients)))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, go.wait, CONNECT_DEADLINE_S + 60)
    t0 = time.time()
    c0 = time.process_time()
    for c in clients:
        c.start_load()
    if clients:
        await asyncio.wait([c.done for c in clients], timeout=GIVE_UP_S + 5)
    t1 = time.time()
    cpu = time.process_time() - c0
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    return {"latencies": stats.latencies, "acked": stats.acked, "naks": stats.naks,
            "resent": stats.resent, "errors": stats.errors[:20],
            "n_errors": len(stats.errors), "connected": len(clients),
            "t_start": t0, "t_end": t1, "cpu_s": cpu}


def _worker(host, port, accounts, events, first_seq, window, ready_q, go, q,
            concurrency=CONNECT_CONCURRENCY, rate=None, total_connections=None):
    try:
        q.put(("result", run_loop(_worker_main(host, port, accounts, events, first_seq,
                                               window, ready_q, go, concurrency, rate,
                                               total_connections))))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        ready_q.put(("ready", 0))
        q.put(("result", {"latencies": [], "acked": 0, "naks": 0, "resent": 0,
                          "errors": ["worker crashed: %r" % e], "n_errors": 1,
                          "connected": 0, "t_start": time.time(), "t_end": time.time(),
                          "cpu_s": 0.0}))


def pct(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def generator_figures(results: list, acked: int, wall: float) -> dict:
    """The load generator's own CPU over the load phase: total seconds, per
    1,000 ACKed events, and the busiest worker's share of one core (near
    1.0: the generator, not the receiver, set the pace)."""
    cpu = sum(r.get("cpu_s", 0.0) for r in results)
    busiest = max((r.get("cpu_s", 0.0) / max(1e-9, r["t_end"] - r["t_start"])
                   for r in results), default=0.0)
    return {"gen_cpu_s": round(cpu, 3),
            "gen_cpu_s_per_1000_events": round(cpu / acked * 1000, 4) if acked else None,
            "gen_util_busiest_worker": round(busiest, 2),
            "gen_saturated": busiest > GEN_SATURATED}


# A worker using more than this share of a core over the load phase is
# taken as saturated (the figure says so).
GEN_SATURATED = 0.9


def run(host: str, port: int, accounts: list, events: int, procs: int,
        first_seq: int = 1, window: int = 1, probe=None, rate: float | None = None,
        targets: list | None = None) -> dict:
    """accounts: [(account int, key hex)].  ``probe()`` (optional) is
    called when the load phase starts and when it ends; its two results
    are returned as ``probe_start`` and ``probe_end`` (the benchmark reads
    the receiver's CPU time and RSS there).  Events use sequences
    first_seq + 1 .. first_seq + events (first_seq is the HEARTBEAT).
    ``rate``: offered events/s over all connections (open loop); None
    sends as fast as the window allows.  ``targets``: [(host, port)], worker
    i drives targets[i % len(targets)] (several receivers); default the one
    (host, port)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ready_q = ctx.Queue()
    go = ctx.Event()
    ps = []
    targets = targets or [(host, port)]
    procs = max(len(targets), min(procs, len(accounts)), 1)
    for i in range(procs):
        share = accounts[i::procs]
        h, pt = targets[i % len(targets)]
        p = ctx.Process(target=_worker, args=(h, pt, share, events, first_seq, window,
                                              ready_q, go, q, CONNECT_CONCURRENCY // procs,
                                              rate, len(accounts)))
        p.start()
        ps.append(p)
    connected = 0
    for _ in ps:
        connected += ready_q.get(timeout=CONNECT_DEADLINE_S + 120)[1]
    p_start = probe() if probe else None
    t_go = time.time()
    go.set()
    results = [q.get(timeout=GIVE_UP_S + 120)[1] for _ in ps]
    t_done = time.time()
    p_end = probe() if probe else None
    for p in ps:
        p.join(30)
    lat = sorted(x for r in results for x in r["latencies"])
    t1 = max(r["t_end"] for r in results)
    acked = sum(r["acked"] for r in results)
    wall = max(t1, t_done) - t_go
    out = {
        "connections": len(accounts), "connected": connected,
        "events_per_connection": events, "procs": procs,
        "mode": ("rate" if rate else "lockstep" if window == 1 else "pipelined"),
        "window": window, "offered_events_per_s": rate,
        "acked": acked, "naks": sum(r["naks"] for r in results),
        "resent": sum(r["resent"] for r in results),
        "errors": [e for r in results for e in r["errors"]][:20],
        "n_errors": sum(r["n_errors"] for r in results),
        "wall_s": round(wall, 3), "events_per_s": acked / wall if wall > 0 else None,
        "ack_latency_ms": {"p50": _ms(pct(lat, 50)), "p90": _ms(pct(lat, 90)),
                           "p99": _ms(pct(lat, 99)), "max": _ms(lat[-1] if lat else None)},
        "probe_start": p_start, "probe_end": p_end,
    }
    out.update(generator_figures(results, acked, wall))
    return out


def _ms(v):
    return None if v is None else round(v * 1000, 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--accounts", required=True,
                    help="JSON list of {number, key} (accounts export --with-keys)")
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--first-seq", type=int, default=1)
    ap.add_argument("--window", type=int, default=1, help="1 = lockstep")
    ap.add_argument("--rate", type=float, default=None,
                    help="offered events/s, all connections together (open loop)")
    a = ap.parse_args(argv)
    with open(a.accounts) as f:
        rows = json.load(f)
    accts = [(int(r["number"]), r["key"]) for r in rows if r.get("protocol", "native")
             == "native"]
    print(json.dumps(run(a.host, a.port, accts, a.events, a.procs, a.first_seq, a.window,
                         rate=a.rate), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
