"""End-to-end load generator for the Guardline receiver (native protocol).

Worker processes (``--procs``) each run an asyncio loop holding a share of
the connections; each connection is one panel (its own account and key).
A run has two phases:

1. **connect**: every connection is opened (at most ``CONNECT_CONCURRENCY``
   at a time per process, below the receiver's ``max_unauthenticated``)
   and authenticates with one HEARTBEAT, waiting for its ACK.  Not timed.
2. **load**: once every process reports ready, the parent releases them
   together and each connection sends its events, either

   - ``lockstep`` (window 1): send, wait for the ACK, send the next, as a
     panel's firmware does; or
   - ``pipelined`` (window W): up to W events outstanding on the
     connection, ACKs matched by sequence.  W stays below the receiver's
     in-flight cap per TCP link (16) and its reorder window (64).

   In both modes every connection runs at once, so the receiver sees
   events interleaved across all N connections.

Per event the latency is first transmission -> ACK opened.  A NAK busy is
counted and the event re-sealed and resent after a capped backoff, so the
figures include backpressure.  Every frame is sealed afresh (fresh IV,
current timestamp), as the firmware does.

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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from protocol.lean import glwire as w  # noqa: E402

# An event not ACKed in this long is re-sealed and resent.
RETRY_S = 5.0
# First backoff after a NAK busy (doubles per NAK of the same event, capped).
BUSY_BACKOFF_S = 0.2
BUSY_BACKOFF_CAP_S = 3.0
# A connection that has not finished this long after the start gives up.
GIVE_UP_S = 300.0
# Connections opened at once per process during the connect phase: the
# receiver closes connections beyond max_unauthenticated (2,000 by default).
CONNECT_CONCURRENCY = 200
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


def event_msg(seq: int) -> dict:
    return {"type": w.MSG_EVENT, "qualifier": 1, "code": 602 if seq % 10 else 130,
            "partition": 1, "zone": seq % 100, "event_time": int(time.time()),
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
    ``events`` EVENTs with up to ``window`` outstanding."""

    def __init__(self, account: int, key: bytes, first_seq: int, events: int, window: int,
                 stats: Stats):
        self.account = account
        self.keys = w.Keys(key)
        self.hb_seq = first_seq
        self.next_seq = first_seq + 1
        self.last_seq = first_seq + events
        self.window = window
        self.stats = stats
        self.reader = w.FrameReader()
        self.transport = None
        self.loop = asyncio.get_running_loop()
        self.authenticated = self.loop.create_future()
        self.done = self.loop.create_future()
        self.loading = False
        self.outstanding: dict[int, list] = {}  # seq -> [t_first, t_last, busy_naks]
        self.remaining = events
        self._timer = None

    # -- sending ------------------------------------------------------------------

    def _send(self, seq: int) -> None:
        msg = heartbeat_msg() if seq == self.hb_seq else event_msg(seq)
        self.transport.write(w.seal(self.keys, msg, self.account, seq, int(time.time()), 0))

    def _transmit(self, seq: int) -> None:
        now = time.perf_counter()
        st = self.outstanding.get(seq)
        if st is None:
            self.outstanding[seq] = [now, now, 0]
        else:
            st[1] = now
        if self.transport is not None and not self.transport.is_closing():
            self._send(seq)

    def start_load(self) -> None:
        self.loading = True
        self.t_start = time.monotonic()
        self._pump()
        self._timer = self.loop.call_later(1.0, self._check)

    def _pump(self) -> None:
        while len(self.outstanding) < self.window and self.next_seq <= self.last_seq:
            self._transmit(self.next_seq)
            self.next_seq += 1
        if self.remaining == 0:
            self._finish(None)

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
        if self._timer is not None:
            self._timer.cancel()
        self.done.set_result(error is None)

    # -- receiving ----------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
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
                if f is w.NEED_DATA:
                    break
                if isinstance(f, w.BadFrame) or f.account != self.account \
                        or not f.flags & w.FLAG_FROM_RECEIVER:
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
                self._pump()
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


async def _connect(host, port, account, key, first_seq, events, window, stats, sem):
    loop = asyncio.get_running_loop()
    async with sem:
        try:
            _, client = await loop.create_connection(
                lambda: PanelClient(account, key, first_seq, events, window, stats),
                host, port)
            await asyncio.wait_for(client.authenticated, 30)
            return client
        except (OSError, ConnectionError, asyncio.TimeoutError) as e:
            stats.errors.append("account %d: connect/authenticate: %s" % (account, e or type(e)))
            return None


async def _worker_main(host, port, accounts, events, first_seq, window, ready_q, go):
    raise_nofile(len(accounts) + 256)
    stats = Stats()
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    try:
        clients = await asyncio.wait_for(asyncio.gather(*(
            _connect(host, port, a, bytes.fromhex(k), first_seq, events, window, stats, sem)
            for a, k in accounts)), CONNECT_DEADLINE_S)
    except asyncio.TimeoutError:
        clients = []
        stats.errors.append("connect phase over %.0f s" % CONNECT_DEADLINE_S)
    clients = [c for c in clients if c is not None]
    ready_q.put(("ready", len(clients)))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, go.wait, CONNECT_DEADLINE_S + 60)
    t0 = time.time()
    for c in clients:
        c.start_load()
    if clients:
        await asyncio.wait([c.done for c in clients], timeout=GIVE_UP_S + 5)
    t1 = time.time()
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    return {"latencies": stats.latencies, "acked": stats.acked, "naks": stats.naks,
            "resent": stats.resent, "errors": stats.errors[:20],
            "n_errors": len(stats.errors), "connected": len(clients),
            "t_start": t0, "t_end": t1}


def _worker(host, port, accounts, events, first_seq, window, ready_q, go, q):
    try:
        q.put(("result", asyncio.run(_worker_main(host, port, accounts, events, first_seq,
                                                  window, ready_q, go))))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        ready_q.put(("ready", 0))
        q.put(("result", {"latencies": [], "acked": 0, "naks": 0, "resent": 0,
                          "errors": ["worker crashed: %r" % e], "n_errors": 1,
                          "connected": 0, "t_start": time.time(), "t_end": time.time()}))


def pct(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def run(host: str, port: int, accounts: list, events: int, procs: int,
        first_seq: int = 1, window: int = 1, probe=None) -> dict:
    """accounts: [(account int, key hex)].  ``probe()`` (optional) is
    called when the load phase starts and when it ends; its two results
    are returned as ``probe_start`` and ``probe_end`` (the benchmark reads
    the receiver's CPU time and RSS there).  Events use sequences
    first_seq + 1 .. first_seq + events (first_seq is the HEARTBEAT)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ready_q = ctx.Queue()
    go = ctx.Event()
    ps = []
    procs = max(1, min(procs, len(accounts)))
    for i in range(procs):
        share = accounts[i::procs]
        p = ctx.Process(target=_worker, args=(host, port, share, events, first_seq, window,
                                              ready_q, go, q))
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
    return {
        "connections": len(accounts), "connected": connected,
        "events_per_connection": events, "procs": procs,
        "mode": "lockstep" if window == 1 else "pipelined", "window": window,
        "acked": acked, "naks": sum(r["naks"] for r in results),
        "resent": sum(r["resent"] for r in results),
        "errors": [e for r in results for e in r["errors"]][:20],
        "n_errors": sum(r["n_errors"] for r in results),
        "wall_s": round(wall, 3), "events_per_s": acked / wall if wall > 0 else None,
        "ack_latency_ms": {"p50": _ms(pct(lat, 50)), "p90": _ms(pct(lat, 90)),
                           "p99": _ms(pct(lat, 99)), "max": _ms(lat[-1] if lat else None)},
        "probe_start": p_start, "probe_end": p_end,
    }


def _ms(v):
    return None if v is None else round(v * 1000, 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--accounts", required=True,
                    help="JSON list of {number, key} (accounts export --with-keys)")
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--first-seq", type=int, default=1)
    ap.add_argument("--window", type=int, default=1, help="1 = lockstep")
    a = ap.parse_args(argv)
    with open(a.accounts) as f:
        rows = json.load(f)
    accts = [(int(r["number"]), r["key"]) for r in rows if r.get("protocol", "native")
             == "native"]
    print(json.dumps(run(a.host, a.port, accts, a.events, a.procs, a.first_seq, a.window),
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
