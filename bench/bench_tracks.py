"""Track points the receiver stores per second (issue 19), and what a flood
of them does to alarms.

The real receiver as a subprocess (CLI ``serve`` with its SQLite store: WAL,
synchronous=FULL, ACK after commit; or ``--db postgresql://...``: a fresh
database on that server each run), N vans on
N TCP connections sending POSITION messages as fast as their ACKs come back
(lockstep, one point outstanding, as a unit sends them; or ``--window`` W
pipelined), each point distinct (its fix time).  Two phases per run:

1. **flood**: every van sends ``--points`` track points; positions/s is
   ACKed points over the phase's wall time.  Meanwhile one bank panel
   sends a burglary alarm every ``--alarm-every-ms``, lockstep, for as long
   as the flood lasts (at least one): the ACK latency of alarms under the
   flood.
2. **quiet**: ``--alarms`` alarms with no track points: their ACK latency
   alone, for comparison.

What limited the figure is printed with it: the receiver's CPU (user +
system over the flood, as a share of one core: its event loop is one
thread), this generator's own CPU, and the store's group commits per
second (each one an fsync).  ``--receiver-tree LABEL=DIR`` runs another
checkout's receiver with the same generator, one after the other (e.g. the
tree before track points were queued after alarms).

Every ACKed point and alarm is then read back through the store's API
(``Store.track``, the event feed): each ACKed point must be stored, and
stored once (distinct fix times per van == ACKed points per van), or the
run reports no figure (exit status 1).

    .venv/bin/python bench/bench_tracks.py                         # 200 vans
    .venv/bin/python bench/bench_tracks.py --vans 50,200,1000 --points 50 \\
        --out bench/results/tracks.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402

from protocol.lean import glwire as w  # noqa: E402
from receiver.testing import make_accounts  # noqa: E402

# Seconds an unanswered message waits before it is sent again, and a run
# gives up.
RETRY_S = 5.0
GIVE_UP_S = 300.0
T0 = 1_767_600_000  # the first fix time (2026-01-05 08:00 UTC); each point one second on
BANK = 900_000


def position(i: int, van: int, fix_time: int) -> dict:
    return {"type": w.MSG_POSITION, "reason": 2, "position": {
        "lat": 52_368_000 + (i * 7 + van) % 9000, "lon": 4_882_000 + (i * 13) % 16000,
        "speed": 300, "course": 900, "quality": 1, "sats": 9, "hdop": 9,
        "fix_time": fix_time, "flags": 0x07}}


def alarm(seq: int) -> dict:
    return {"type": w.MSG_EVENT, "qualifier": 1, "code": 130, "partition": 1,
            "zone": seq % 64, "event_time": int(time.time()), "text": None, "value": None}


class Unit(asyncio.Protocol):
    """One unit on one TCP connection: a HEARTBEAT to authenticate, then
    ``make(i)`` messages for i in 1..n, ``window`` outstanding."""

    def __init__(self, account: int, key: bytes, n: int, window: int, make, latencies=None,
                 seq_base: int = 0):
        self.account = account
        # sequences continue past an earlier connection's (as a unit's do):
        # the same alarm content under the same sequence is a retransmission
        self.seq_base = seq_base
        self.keys = w.Keys(key)
        self.n = n
        self.window = window
        self.make = make
        self.latencies = latencies
        self.reader = w.FrameReader()
        self.loop = asyncio.get_running_loop()
        self.authenticated = self.loop.create_future()
        self.done = self.loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.next = 1
        self.out: dict[int, list] = {}  # seq -> [first sent, last sent, message]
        self.acked: list[int] = []
        self.naks = 0
        self.busy = 0
        self.pace = 0.0  # seconds between messages (alarms), 0: as fast as ACKs come
        self.stop_after: asyncio.Future | None = None  # send no new message once done
        self._timer = None

    def connection_made(self, transport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send(0, {"type": w.MSG_HEARTBEAT, "troubles": 0, "battery_mv": 13600,
                       "active_path": 1, "queue_depth": 0, "partitions": [0]})

    def _send(self, seq: int, msg: dict) -> None:
        now = time.perf_counter()
        st = self.out.setdefault(seq, [now, now, msg])
        st[1] = now
        if self.transport is not None and not self.transport.is_closing():
            # the session's sequence: 1 is the heartbeat, then one per message
            self.transport.write(w.seal(self.keys, st[2], self.account, self.seq_base + seq + 1,
                                        int(time.time()), 0))

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._pump()
        self._timer = self.loop.call_later(1.0, self._check)

    def _pump(self) -> None:
        if self.stop_after is not None and self.stop_after.done() and self.next > 1:
            self.n = self.next - 1  # the flood is over: no new alarm
        while len(self.out) < self.window and self.next <= self.n:
            self._send(self.next, self.make(self.next))
            self.next += 1
            if self.pace:
                break
        if not self.out and self.next > self.n and not self.done.done():
            self.done.set_result(True)

    def _check(self) -> None:
        if self.done.done():
            return
        now = time.perf_counter()
        for seq, st in list(self.out.items()):
            if now - st[1] > RETRY_S:
                self._send(seq, st[2])
        if time.monotonic() - self.t0 > GIVE_UP_S:
            self.done.set_result(False)
            return
        self._timer = self.loop.call_later(1.0, self._check)

    def data_received(self, data) -> None:
        self.reader.receive_data(data)
        while True:
            f = self.reader.next_frame()
            if f is w.NEED_DATA:
                return
            if not isinstance(f, w.Frame) or not f.flags & w.FLAG_FROM_RECEIVER:
                continue
            try:
                m = w.open_frame(self.keys, f)
            except w.WireError:
                continue
            self._on(m)

    def _on(self, m: dict) -> None:
        if m["type"] == w.MSG_ACK:
            seq = m["ack_seq"] - 1 - self.seq_base
            st = self.out.pop(seq, None)
            if st is None:
                return
            if seq == 0:
                self.authenticated.set_result(True)
                return
            if self.latencies is not None:
                self.latencies.append(time.perf_counter() - st[0])
            self.acked.append(seq)
            if self.pace:
                self.loop.call_later(self.pace, self._pump)
            else:
                self._pump()
        elif m["type"] == w.MSG_NAK:
            seq = m["nak_seq"] - 1 - self.seq_base
            if seq not in self.out:
                return
            self.naks += 1
            if m["reason"] == w.NAK_BUSY:
                self.busy += 1
                self.out[seq][1] = time.perf_counter() + 0.2  # as a unit backs off
                self.loop.call_later(0.2, lambda: seq in self.out and self._send(
                    seq, self.out[seq][2]))

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(False)


async def connect(host, port, account, key, n, window, make, latencies=None,
                  seq_base=0) -> Unit:
    loop = asyncio.get_running_loop()
    _, u = await loop.create_connection(
        lambda: Unit(account, key, n, window, make, latencies, seq_base), host, port)
    await asyncio.wait_for(u.authenticated, 30)
    return u


async def phase(host, port, vans: list, bank, points: int, window: int, alarms: int,
                alarm_every_s: float) -> dict:
    """Vans (may be []) flooding and one bank sending alarms, at once: with
    vans, alarms for as long as the flood lasts; without, ``alarms``."""
    lat: list[float] = []
    units = []
    for a in vans:
        n = int(a.number)
        units.append(await connect(host, port, n, a.key, points, window,
                                   lambda i, n=n: position(i, n, T0 + i)))
    b = await connect(host, port, int(bank.number), bank.key,
                      10**6 if units else alarms, 1, alarm, lat,
                      seq_base=0 if units else 10**6)
    b.pace = alarm_every_s
    flood = asyncio.get_running_loop().create_future()
    if units:
        b.stop_after = flood
    t0 = time.perf_counter()
    c0 = time.process_time()
    for u in units:
        u.start()
    b.start()
    flood_done = None
    if units:
        await asyncio.wait([u.done for u in units])
        flood_done = time.perf_counter() - t0
        flood.set_result(True)
        if not b.out:
            b._pump()  # waiting for its pace: end it now
    gen_cpu = time.process_time() - c0
    await b.done
    for u in units + [b]:
        u.transport.close()
    lat.sort()
    acked = sum(len(u.acked) for u in units)
    return {"vans": len(units), "points_acked": acked,
            "flood_s": None if flood_done is None else round(flood_done, 3),
            "positions_per_s": None if not flood_done else round(acked / flood_done, 1),
            "points_nak_busy": sum(u.busy for u in units),
            "generator_cpu_share": round(gen_cpu / flood_done, 2) if flood_done else None,
            "alarms_acked": len(b.acked), "alarms_nak_busy": b.busy, "alarm_ack_ms": {
                p: round((benchlib.pct(lat, p) or 0.0) * 1000, 2) if lat else None
                for p in (50, 90, 99)} | {"max": round(lat[-1] * 1000, 2) if lat else None},
            "acked_by_van": {u.account: list(u.acked) for u in units},
            "alarm_seqs": list(b.acked)}


async def verify(db: str, flood: dict) -> dict:
    """Every ACKed point stored, once; read through the store's API."""
    from receiver.store_factory import make_store  # noqa: PLC0415

    store = make_store(db, create=False)
    await store.open()
    try:
        missing = doubled = stored = 0
        for van, acked in flood["acked_by_van"].items():
            pts = await store.track(str(van), limit=len(acked) + 1000)
            times = [int(p.position.fix_time or 0) for p in pts]
            stored += len(pts)
            doubled += len(times) - len(set(times))
            missing += len({T0 + i for i in acked} - set(times))
        alarms = [e for e in [x async for x in store.iter_events(str(BANK))] if e.code == 130]
        return {"points_stored": stored, "points_missing": missing, "points_doubled": doubled,
                "alarms_stored": len(alarms)}
    finally:
        await store.close()


def one_run(n_vans: int, points: int, window: int, alarms: int, alarm_every_s: float,
            db_url: str | None, log_dir: str, tree: str | None = None) -> dict:
    tmp = tempfile.mkdtemp(prefix="glrx-tracks-", dir=log_dir)
    vans = make_accounts(n_vans, first=100_000, panel_kind="vehicle")
    bank = make_accounts(1, first=BANK)
    accounts = {**vans, **bank}
    if db_url is None:
        db = os.path.join(tmp, "bench.db")
        benchlib.create_accounts_db_in(tree, db, accounts)
    else:  # a fresh database on that server each run
        db = asyncio.run(benchlib.pg_prepare(db_url, "glrx_tracks_%d" % n_vans, accounts))
    proc = benchlib.receiver_process(db, tmp, tree)
    proc.start(timeout=120)
    assert proc.proc is not None
    pid = proc.proc.pid
    try:
        host, port = proc.tcp
        p0 = benchlib.probe(pid)
        flood = asyncio.run(phase(host, port, list(vans.values()), bank[BANK], points, window,
                                  alarms, alarm_every_s))
        p1 = benchlib.probe(pid)
        c1 = benchlib.commit_metrics(proc.ready["metrics"])
        quiet = asyncio.run(phase(host, port, [], bank[BANK], 0, window, alarms,
                                  alarm_every_s))
        proc.terminate(timeout=120)
    finally:
        proc.close()
    check = asyncio.run(verify(db, flood))
    expected = n_vans * points
    ok = (flood["points_acked"] == expected and check["points_missing"] == 0
          and check["points_doubled"] == 0 and check["points_stored"] == expected
          and check["alarms_stored"] == flood["alarms_acked"] + quiet["alarms_acked"])
    n_commits = c1.get("guardline_receiver_store_commit_batch_size_count") or 0
    cpu = p1["cpu_s"] - p0["cpu_s"]
    wall = p1["t"] - p0["t"]
    return {"vans": n_vans, "points_per_van": points, "window": window,
            "store": "postgresql" if db_url else "sqlite",
            "positions_per_s": flood["positions_per_s"], "flood_s": flood["flood_s"],
            "points_acked": flood["points_acked"], "points_nak_busy": flood["points_nak_busy"],
            "receiver_cpu_ms_per_1000_points": round(cpu / max(1, flood["points_acked"])
                                                     * 1e6, 1),
            "alarm_ack_ms_during_flood": flood["alarm_ack_ms"],
            "alarms_during_flood": flood["alarms_acked"],
            "alarms_nak_busy": flood["alarms_nak_busy"] + quiet["alarms_nak_busy"],
            "alarm_ack_ms_quiet": quiet["alarm_ack_ms"],
            "writes_per_group_commit": round(
                c1.get("guardline_receiver_store_commit_batch_size_sum", 0)
                / n_commits, 1) if n_commits else None,
            "group_commits_per_s": round(n_commits / wall, 1) if wall else None,
            "group_commit_ms": round(c1.get("guardline_receiver_store_commit_seconds_sum", 0)
                                     / n_commits * 1000, 1) if n_commits else None,
            "receiver_cpu_share": round(cpu / wall, 2) if wall else None,
            "generator_cpu_share": flood["generator_cpu_share"],
            "rss_mib": round(p1["rss_kib"] / 1024, 1) if p1.get("rss_kib") else None,
            "loadavg_1m": benchlib.loadavg()[0], "cores": os.cpu_count() or 1,
            **check, "store_ok": ok}


def limit(res: dict) -> str:
    """What held the figure down, in words (the shares are of one core)."""
    rx, gen = res["receiver_cpu_share"] or 0, res["generator_cpu_share"] or 0
    if res["points_nak_busy"]:
        parts_nak = "; %d points NAKed busy (TRACK_IN_HAND)" % res["points_nak_busy"]
    else:
        parts_nak = ""
    parts = ["receiver CPU %.2f of a core, generator %.2f, %s group commits/s of %s ms each%s"
             % (rx, gen, res["group_commits_per_s"], res["group_commit_ms"], parts_nak)]
    if rx >= 0.9:
        parts.append("limited by the receiver's CPU (its event loop is one thread)")
    elif gen >= 0.9:
        parts.append("limited by this generator's CPU, not the receiver")
    elif res["loadavg_1m"] >= res["cores"]:
        parts.append("limited by CPUs shared with other work (load average %.1f on %d cores: "
                     "the receiver waited for a CPU)" % (res["loadavg_1m"], res["cores"]))
    elif res["points_nak_busy"]:
        parts.append("limited by the track points the receiver takes at once "
                     "(receiver.app.TRACK_IN_HAND: NAK busy, offered again)")
    else:
        parts.append("limited by the round trip (each van waits for its ACKs: window %d) "
                     "and the fsync per group commit, with 2 cores shared" % res["window"])
    return "; ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vans", default="200", help="comma-separated van counts")
    ap.add_argument("--points", type=int, default=50, help="track points per van")
    ap.add_argument("--window", type=int, default=1,
                    help="points outstanding per van (1: lockstep, as a unit sends)")
    ap.add_argument("--alarms", type=int, default=40, help="alarms in the quiet phase")
    ap.add_argument("--alarm-every-ms", type=float, default=100.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--db", help="a postgresql:// URL of a server instead of SQLite (each run "
                    "makes a fresh database glrx_tracks_N on it)")
    ap.add_argument("--out", default=os.path.join(benchlib.RESULTS, "tracks.json"))
    benchlib.add_tree_options(ap, "run this checkout's receiver too (repeatable)",
                              "not supported here")
    a = ap.parse_args(argv)
    if a.profile:
        raise SystemExit("--profile: use bench_receiver.py")
    trees = benchlib.parse_trees(a.receiver_tree)
    log_dir = tempfile.mkdtemp(prefix="glrx-tracks-logs-")
    runs = []
    before = benchlib.loadavg()
    for n in [int(x) for x in a.vans.split(",")]:
        for r in range(a.repeat):
            for label, tree in trees:  # interleaved: the same load conditions
                res = one_run(n, a.points, a.window, a.alarms, a.alarm_every_ms / 1000, a.db,
                              log_dir, tree)
                res["receiver"] = label
                res["receiver_commit"] = benchlib.tree_commit(tree)
                runs.append(res)
                fl, q = res["alarm_ack_ms_during_flood"], res["alarm_ack_ms_quiet"]
                print("[%s] %d vans x %d points (%s, window %d): %s positions/s stored; "
                      "%d alarms ACKed under the flood p50/p99/max %s/%s/%s ms, quiet "
                      "p50/p99 %s/%s ms; %d points NAKed busy; %s writes per commit; "
                      "store %s\n    %s" % (
                          label, n, a.points, res["store"], a.window, res["positions_per_s"],
                          res["alarms_during_flood"], fl[50], fl[99], fl["max"], q[50], q[99],
                          res["points_nak_busy"], res["writes_per_group_commit"],
                          "OK (every ACKed point stored once)" if res["store_ok"]
                          else "WRONG %r" % {k: res[k] for k in (
                              "points_stored", "points_missing", "points_doubled")},
                          limit(res)), flush=True)
                res["limited_by"] = limit(res)
    doc = {"bench": "tracks", "when": benchlib.now_iso(), "machine": benchlib.machine(),
           "loadavg_before": before, "loadavg_after": benchlib.loadavg(), "runs": runs}
    print("wrote", benchlib.write_json(a.out, doc))
    return 0 if all(r["store_ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
