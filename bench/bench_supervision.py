"""Supervision at scale: many simulated panels heartbeating to one receiver
at once; RSS per connection, heartbeats per second, and how late a missed
heartbeat is flagged.

A city's panels heartbeat every 90 s (a bank's path: 90 s + 30 s grace
here).  To keep a run to minutes, time is scaled down: every panel
heartbeats every ``--interval`` seconds (30 by default: 3x the real rate)
and a path is failed after interval + ``--grace``.

Panels: as many as possible on TCP (one connection each, the receiver
needs a descriptor per connection: the RLIMIT_NOFILE hard limit caps them;
the script raises the soft limits as far as the hard limit allows and says
what it got), the rest over UDP (the native protocol's second transport:
no connection state on the receiver, the same supervision).  Load
generator worker processes hold the panels; the receiver is a subprocess
(``serve`` with its SQLite store).

Timeline: start the receiver (RSS baseline with the accounts loaded) ->
TCP panels connect and heartbeat (RSS) -> UDP panels start (RSS) -> one
steady interval (heartbeats/s, receiver CPU) -> ``--silence`` panels stop
heartbeating (TCP ones keep their connection open) -> wait interval + grace
+ margin -> read the communication-failure events (350) from the store.
Lateness of a flag = the event's decision time - (the panel's last
heartbeat *sent* + interval + grace): an upper bound (the receiver heard
it a little after it was sent).  Failures raised for panels that kept
heartbeating are counted as false alarms.

    .venv/bin/python bench/bench_supervision.py [--panels 50000] [--interval 30]
        [--grace 10] [--silence 1000] [--procs 2]

Writes bench/results/supervision.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import socket
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402
import loadgen  # noqa: E402

from protocol.lean import glwire as w  # noqa: E402
from receiver.store import Account  # noqa: E402
from testkit.receiver import ReceiverProcess  # noqa: E402

FD_HEADROOM = 256
CONNECT_CONCURRENCY = 200
UDP_SOCKETS_PER_WORKER = 4
# Lateness bucket for the timeline of ACKed heartbeats.
BUCKET_S = 1.0


class Panel:
    __slots__ = ("account", "keys", "seq", "last_sent", "last_acked", "silent", "acked",
                 "sent", "proto", "outstanding")

    def __init__(self, account, key):
        self.account = account
        self.keys = w.Keys(key)
        self.seq = 0
        self.last_sent = 0.0
        self.last_acked = 0.0
        self.silent = False
        self.acked = 0
        self.sent = 0
        self.proto = None
        self.outstanding = {}


HB = {"type": w.MSG_HEARTBEAT, "troubles": 0, "battery_mv": 13600, "active_path": 1,
      "queue_depth": 0, "partitions": [0]}


class Worker:
    def __init__(self, tcp_accounts, udp_accounts, host, port, uhost, uport, interval,
                 silence):
        self.tcp = [Panel(a, bytes.fromhex(k)) for a, k in tcp_accounts]
        self.udp = [Panel(a, bytes.fromhex(k)) for a, k in udp_accounts]
        self.by_account = {p.account: p for p in self.tcp + self.udp}
        self.silence = set(silence)
        self.host, self.port, self.uhost, self.uport = host, port, uhost, uport
        self.interval = interval
        self.buckets: dict[int, int] = {}
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.udp_transports = []
        self.stopping = False

    def _seal(self, p: Panel) -> bytes:
        p.seq += 1
        now = time.time()
        p.last_sent = now
        p.sent += 1
        p.outstanding[p.seq] = time.perf_counter()
        if len(p.outstanding) > 4:  # lost UDP ACKs: keep the map small
            p.outstanding.pop(next(iter(p.outstanding)))
        return w.seal(p.keys, HB, p.account, p.seq, int(now), 0)

    def _acked(self, p: Panel, seq: int) -> None:
        t0 = p.outstanding.pop(seq, None)
        if t0 is None:
            return
        now = time.time()
        p.last_acked = now
        p.acked += 1
        b = int(now / BUCKET_S)
        self.buckets[b] = self.buckets.get(b, 0) + 1
        if len(self.latencies) < 200_000:
            self.latencies.append(time.perf_counter() - t0)

    def _frames(self, p_for_account, data_iter):
        for f in data_iter:
            p = p_for_account(f.account)
            if p is None or not f.flags & w.FLAG_FROM_RECEIVER:
                continue
            try:
                m = w.open_frame(p.keys, f)
            except w.WireError:
                continue
            if m["type"] == w.MSG_ACK:
                self._acked(p, m["ack_seq"])

    def _tick(self, p: Panel, send) -> None:
        """Heartbeat now and every interval after, until silenced."""
        if self.stopping or p.silent:
            return
        try:
            send(self._seal(p))
        except (OSError, AttributeError) as e:
            self.errors.append("%d: %s" % (p.account, e))
        asyncio.get_running_loop().call_later(self.interval, self._tick, p, send)

    # -- TCP ------------------------------------------------------------------------------

    async def connect_tcp(self):
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
        worker = self

        class Proto(asyncio.Protocol):
            def __init__(self, p):
                self.p = p
                self.reader = w.FrameReader()
                self.t = None
                self.first = loop.create_future()

            def connection_made(self, t):
                self.t = t

            def data_received(self, data):
                mv = memoryview(data)
                frames = []
                for i in range(0, len(mv), w.READ_SIZE):
                    self.reader.receive_data(mv[i:i + w.READ_SIZE])
                    while True:
                        f = self.reader.next_frame()
                        if f is w.NEED_DATA:
                            break
                        if not isinstance(f, w.BadFrame):
                            frames.append(f)
                worker._frames(lambda a: self.p if a == self.p.account else None, frames)
                if not self.first.done():
                    self.first.set_result(None)

            def connection_lost(self, exc):
                if not worker.stopping:
                    worker.errors.append("%d: connection lost %s" % (self.p.account, exc))
                if not self.first.done():
                    self.first.set_result(None)

        async def one(p):
            async with sem:
                try:
                    t, proto = await loop.create_connection(lambda: Proto(p), self.host,
                                                            self.port)
                except OSError as e:
                    self.errors.append("%d: connect %s" % (p.account, e))
                    return
                p.proto = proto
                # first heartbeat now (authenticates), then every interval from a
                # random phase so the load is spread evenly
                t.write(self._seal(p))
                try:
                    await asyncio.wait_for(proto.first, 60)
                except asyncio.TimeoutError:
                    self.errors.append("%d: no ACK to the first heartbeat" % p.account)
                loop.call_later(random.uniform(0, self.interval), self._tick, p, t.write)

        await asyncio.gather(*(one(p) for p in self.tcp))

    # -- UDP ------------------------------------------------------------------------------

    async def start_udp(self):
        loop = asyncio.get_running_loop()
        worker = self

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                try:
                    f = w.decode_datagram(data)
                except w.WireError:
                    return
                worker._frames(worker.by_account.get, [f])

        for _ in range(UDP_SOCKETS_PER_WORKER):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.connect((self.uhost, self.uport))
            t, _ = await loop.create_datagram_endpoint(Proto, sock=s)
            self.udp_transports.append(t)
        # first heartbeats at a random phase over a third of the interval (all
        # must be heard before the receiver's start-up timeout of interval +
        # grace runs out), then periodic.  Not all at once: a burst of
        # thousands of datagrams overflows the receiver's socket buffer.
        for i, p in enumerate(self.udp):
            t = self.udp_transports[i % len(self.udp_transports)]
            loop.call_later(random.uniform(0, self.interval / 3), self._tick, p, t.sendto)
        end = time.monotonic() + 2 * self.interval
        while time.monotonic() < end and any(p.acked == 0 for p in self.udp):
            await asyncio.sleep(0.2)

    def silence_now(self):
        for a in self.silence:
            p = self.by_account.get(a)
            if p is not None:
                p.silent = True


def _worker(tcp_accts, udp_accts, host, port, uhost, uport, interval, silence, status_q,
            ev_udp, ev_silence, ev_stop, out_q):
    loadgen.raise_nofile(len(tcp_accts) + 512)

    async def main():
        wk = Worker(tcp_accts, udp_accts, host, port, uhost, uport, interval, silence)
        loop = asyncio.get_running_loop()
        await wk.connect_tcp()
        status_q.put(("tcp", sum(1 for p in wk.tcp if p.proto is not None)))
        await loop.run_in_executor(None, ev_udp.wait, 600)
        await wk.start_udp()
        status_q.put(("udp", sum(1 for p in wk.udp if p.acked)))
        await loop.run_in_executor(None, ev_silence.wait, 600)
        wk.silence_now()
        t_sil = time.time()
        await loop.run_in_executor(None, ev_stop.wait, 600)
        wk.stopping = True
        silenced = {p.account: (p.last_sent, p.last_acked, p.proto is not None)
                    for p in wk.tcp + wk.udp if p.silent}
        for p in wk.tcp:
            if p.proto is not None and p.proto.t is not None:
                p.proto.t.close()
        for t in wk.udp_transports:
            t.close()
        out_q.put({"buckets": wk.buckets, "latencies": wk.latencies,
                   "errors": wk.errors[:20], "n_errors": len(wk.errors),
                   "silenced": silenced, "t_silence": t_sil,
                   "sent": sum(p.sent for p in wk.tcp + wk.udp),
                   "acked": sum(p.acked for p in wk.tcp + wk.udp),
                   "never_acked": sum(1 for p in wk.tcp + wk.udp if not p.acked)})

    asyncio.run(main())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--panels", type=int, default=50_000)
    ap.add_argument("--tcp", type=int, default=None,
                    help="panels on TCP (default: as many as the descriptor limit allows)")
    ap.add_argument("--interval", type=int, default=30, help="heartbeat interval, s")
    ap.add_argument("--grace", type=int, default=10, help="supervision grace, s")
    ap.add_argument("--silence", type=int, default=1000, help="panels that go silent")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(benchlib.RESULTS, "supervision.json"))
    a = ap.parse_args(argv)

    limit = loadgen.raise_nofile(a.panels + FD_HEADROOM)
    # the receiver inherits our limits; keep headroom for its files and the
    # listening sockets, and the generator processes have their own limit each
    tcp_max = max(0, limit - FD_HEADROOM - 100)
    n_tcp = min(a.panels, tcp_max if a.tcp is None else a.tcp)
    if n_tcp > tcp_max:
        n_tcp = tcp_max
    n_udp = a.panels - n_tcp
    print("panels: %d on TCP, %d on UDP (RLIMIT_NOFILE %d; hard limit %d)" % (
        n_tcp, n_udp, limit, benchlib.machine()["nofile_limit"][1]), flush=True)

    tmp = tempfile.mkdtemp(prefix="gl-sup-bench-")
    db = os.path.join(tmp, "sup.db")
    accts = []
    for i in range(a.panels):
        accts.append(Account(str(200_000 + i), os.urandom(32), heartbeat_s=a.interval,
                             grace_s=a.grace, supervised_paths=[1]))
    t0 = time.monotonic()
    benchlib.create_accounts_db(db, accts)
    print("created %d accounts in %.1f s" % (len(accts), time.monotonic() - t0), flush=True)
    cfg = os.path.join(tmp, "receiver.toml")
    with open(cfg, "w") as f:
        f.write("[limits]\nmax_connections = %d\n" % (n_tcp + 100))
    proc = ReceiverProcess(db, ["--config", cfg, "--tcp", "127.0.0.1:0", "--udp",
                                "127.0.0.1:0", "--log-level", "warning"],
                           log_path=os.path.join(tmp, "receiver.log"))
    t_start = time.time()
    proc.start(timeout=180)
    pid = proc.pid
    res = {"benchmark": "supervision at scale (native protocol heartbeats, TCP + UDP)",
           "command": "python bench/bench_supervision.py " + " ".join(
               argv if argv is not None else sys.argv[1:]),
           "machine": benchlib.machine(), "when": benchlib.now_iso(),
           "loadavg_before": benchlib.loadavg(), "panels": a.panels, "tcp_panels": n_tcp,
           "udp_panels": n_udp, "interval_s": a.interval, "grace_s": a.grace,
           "time_scale": "90 s heartbeats scaled to %d s (x%.1f the real rate)" % (
               a.interval, 90 / a.interval),
           "procs": a.procs}
    try:
        p_base = benchlib.probe(pid)
        host, port = proc.tcp
        uhost, uport = proc.ready["udp"][0]
        numbers = [int(x.number) for x in accts]
        keys = {int(x.number): x.key.hex() for x in accts}
        tcp_n, udp_n = numbers[:n_tcp], numbers[n_tcp:]
        rng = random.Random(1)
        k_tcp = min(len(tcp_n), a.silence // 2 if udp_n else a.silence)
        silence = set(rng.sample(tcp_n, k_tcp)) | set(
            rng.sample(udp_n, min(len(udp_n), a.silence - k_tcp)))
        ctx = mp.get_context("spawn")
        status_q, out_q = ctx.Queue(), ctx.Queue()
        ev_udp, ev_sil, ev_stop = ctx.Event(), ctx.Event(), ctx.Event()
        ps = []
        for i in range(a.procs):
            ps.append(ctx.Process(target=_worker, args=(
                [(n, keys[n]) for n in tcp_n[i::a.procs]],
                [(n, keys[n]) for n in udp_n[i::a.procs]], host, port, uhost, uport,
                a.interval, silence, status_q, ev_udp, ev_sil, ev_stop, out_q)))
        for p in ps:
            p.start()
        t_c0 = time.monotonic()
        connected = sum(status_q.get(timeout=600)[1] for _ in ps)
        res["tcp_connect_s"] = round(time.monotonic() - t_c0, 1)
        p_tcp = benchlib.probe(pid)
        ev_udp.set()
        heard_udp = sum(status_q.get(timeout=600)[1] for _ in ps)
        p_all = benchlib.probe(pid)
        print("TCP connected %d in %.1f s; UDP heard %d" % (connected, res["tcp_connect_s"],
                                                            heard_udp), flush=True)
        # one steady interval: every panel heartbeats once
        w0 = benchlib.probe(pid)
        time.sleep(a.interval)
        w1 = benchlib.probe(pid)
        ev_sil.set()
        t_sil = time.time()
        margin = 5
        time.sleep(a.interval + a.grace + margin)
        ev_stop.set()
        outs = [out_q.get(timeout=120) for _ in ps]
        p_end = benchlib.probe(pid)
        for p in ps:
            p.join(30)
        res["receiver_exit_code"] = proc.terminate(timeout=120)
    finally:
        proc.close()
    # heartbeats per second in the steady window, from the generators' ACK timeline
    buckets: dict[int, int] = {}
    for o in outs:
        for b, n in o["buckets"].items():
            buckets[b] = buckets.get(b, 0) + n
    b0, b1 = int(w0["t"] / BUCKET_S) + 1, int(w1["t"] / BUCKET_S)
    steady = [buckets.get(b, 0) for b in range(b0, b1)]
    res["acks_per_second_timeline"] = [[b - int(t_start), buckets[b]] for b in sorted(buckets)]
    lat = sorted(x for o in outs for x in o["latencies"])
    silenced = {}
    for o in outs:
        silenced.update(o["silenced"])
    rows = [(e.account, e.received_at) for e in benchlib.stored_events(
        db, lambda e: (e.source, e.qualifier, e.code) == ("supervision", 1, 350))]
    # failures decided after the silence began (the silenced panels' flags,
    # and any false alarm in that period); and any before it
    first_fail: dict[int, float] = {}
    early_fail: dict[int, float] = {}
    for acct, at in rows:
        (first_fail if at >= t_sil else early_fail).setdefault(int(acct), at)
    timeout = a.interval + a.grace
    late_hi, late_lo, missed = [], [], []
    for acct, (sent, acked, _) in silenced.items():
        at = first_fail.get(acct)
        if at is None:
            missed.append(acct)
            continue
        late_hi.append(at - (sent + timeout))
        if acked:
            late_lo.append(at - (acked + timeout))
    false_alarms = [acct for acct in first_fail if acct not in silenced]
    false_before_silence = list(early_fail)
    late_hi.sort()
    late_lo.sort()
    mib = 1024.0
    res.update({
        "tcp_connected": connected, "udp_heard": heard_udp,
        "rss_mib": {"accounts_loaded": round(p_base["rss_kib"] / mib, 1),
                    "tcp_connected": round(p_tcp["rss_kib"] / mib, 1),
                    "all_panels_heard": round(p_all["rss_kib"] / mib, 1),
                    "end": round(p_end["rss_kib"] / mib, 1),
                    "peak": round(p_end["hwm_kib"] / mib, 1)},
        "rss_kib_per_tcp_connection": round((p_tcp["rss_kib"] - p_base["rss_kib"])
                                            / max(1, connected), 2),
        "rss_kib_per_udp_panel": round((p_all["rss_kib"] - p_tcp["rss_kib"])
                                       / max(1, heard_udp), 2),
        "heartbeats_per_s_offered": round(a.panels / a.interval, 1),
        "heartbeats_per_s_acked": round(sum(steady) / max(1, len(steady)), 1),
        "heartbeats_per_s_acked_per_second": benchlib.spread(steady),
        "steady_window_s": round(w1["t"] - w0["t"], 1),
        "receiver_cpu_util_steady": round((w1["cpu_s"] - w0["cpu_s"]) / (w1["t"] - w0["t"]), 3),
        "receiver_cpu_ms_per_heartbeat": round(
            (w1["cpu_s"] - w0["cpu_s"]) / max(1, sum(steady)) * 1000, 4),
        "heartbeat_ack_ms": {k: loadgen._ms(benchlib.pct(lat, p)) for k, p in
                             (("p50", 50), ("p99", 99))} | {
            "max": loadgen._ms(lat[-1] if lat else None)},
        "silenced": len(silenced), "flagged": len(late_hi), "missed": len(missed),
        "flag_lateness_s_upper": {"p50": _r(benchlib.pct(late_hi, 50)),
                                  "p99": _r(benchlib.pct(late_hi, 99)),
                                  "max": _r(late_hi[-1] if late_hi else None),
                                  "min": _r(late_hi[0] if late_hi else None)},
        "flag_lateness_s_lower": {"p50": _r(benchlib.pct(late_lo, 50)),
                                  "p99": _r(benchlib.pct(late_lo, 99)),
                                  "max": _r(late_lo[-1] if late_lo else None)},
        "false_alarms_after_silence": len(false_alarms),
        "false_alarms_before_silence": len(false_before_silence),
        "generator_errors": sum(o["n_errors"] for o in outs),
        "generator_error_sample": [e for o in outs for e in o["errors"]][:5],
        "heartbeats_sent": sum(o["sent"] for o in outs),
        "heartbeats_acked": sum(o["acked"] for o in outs),
        "panels_never_acked": sum(o["never_acked"] for o in outs),
        "loadavg_after": benchlib.loadavg(),
        "run_s": round(time.time() - t_start, 1),
    })
    benchlib.write_json(a.out, res)
    hb = {"median": res["heartbeats_per_s_acked"]}
    print("%d panels (%d TCP + %d UDP): RSS %.0f MiB with accounts, %.2f KiB per TCP "
          "connection, %.2f KiB per UDP panel; %.0f heartbeats/s ACKed (offered %.0f), rx CPU "
          "%.0f%%; ACK p99 %.1f ms; %d silenced -> %d flagged, %d missed; lateness p50 %.3f s, "
          "p99 %.3f s, max %.3f s; false alarms %d"
          % (a.panels, n_tcp, n_udp, res["rss_mib"]["accounts_loaded"],
             res["rss_kib_per_tcp_connection"], res["rss_kib_per_udp_panel"],
             hb.get("median", 0), res["heartbeats_per_s_offered"],
             res["receiver_cpu_util_steady"] * 100, res["heartbeat_ack_ms"]["p99"] or 0,
             len(silenced), len(late_hi), len(missed),
             res["flag_lateness_s_upper"]["p50"] or 0, res["flag_lateness_s_upper"]["p99"] or 0,
             res["flag_lateness_s_upper"]["max"] or 0,
             len(false_alarms) + len(false_before_silence)))
    print("wrote %s (logs in %s)" % (a.out, tmp))
    return 0


def _r(v):
    return None if v is None else round(v, 3)


if __name__ == "__main__":
    sys.exit(main())
