"""SIA DC-09 receivers side by side: our receiver's DC-09 TCP listener
(``guardline-receiver serve --dc09-tcp``: judge, durable SQLite store with
ACK after commit, supervision, alarm queue) and pysiaalarm's asyncio TCP
server (the library Home Assistant's SIA integration uses: it parses,
decrypts, ACKs and calls a coroutine; it stores nothing), on the same
machine, in the same run, with the same load generator and the same
encrypted ADM-CID lines.  (bench/bench_dc09_receiver.py measures our
listener alone in more configurations.)

Load: ``--procs`` worker processes, N connections, one DC-09 account (hex)
with an AES-256 key per connection, lockstep: build an encrypted ADM-CID
line with the current timestamp (the lean codec, protocol/lean/gldc09, as
our firmware does), send it, wait for the reply, check it is an ``*ACK``
for that sequence with the account key, next.  Each server runs in its own
subprocess; its CPU seconds come from /proc/PID/stat over the load phase.
Repeats alternate which server goes first.

    .venv/bin/python bench/bench_dc09_vs_pysiaalarm.py [--connections 100] [--events 50]
        [--repeat 3] [--procs 2]

Writes bench/results/dc09_vs_pysiaalarm.json.  Our receiver's stored
events are checked against the ACKs (exit 1 on a mismatch).  pysiaalarm
takes keys as 16/24/32 hex characters used as ASCII bytes; our accounts
get the same bytes.  Messages carry a receiver number (``R1``): pysiaalarm
echoes a missing one as the text "None" in its ACK, which a strict parser
(ours) rejects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402
import loadgen  # noqa: E402

from protocol.lean import gldc09  # noqa: E402
from receiver.store import Account  # noqa: E402
from testkit.receiver import ReceiverProcess  # noqa: E402

GIVE_UP_S = 120.0
CONNECT_CONCURRENCY = 100


def make_dc09_accounts(n: int) -> list[tuple[str, str]]:
    """[(account hex, key text)]: AES-256 keys as 32 hex characters (the
    text's ASCII bytes are the key, as pysiaalarm takes it)."""
    return [("%06X" % (0xA00000 + i), os.urandom(16).hex().upper()) for i in range(n)]


def _line(seq, number, i, key):
    return gldc09.build_adm_cid(seq, number, "1", "1", 1, 602 if i % 10 else 130, 1, i % 100,
                                key, tuple(time.gmtime()[:6]))


async def _line_panel(host, port, number, key_text, events, out, sem, go):
    key = key_text.encode()
    async with sem:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as e:
            out["errors"].append("%s: connect %s" % (number, e))
            return
    out["connected"] += 1
    await go
    seq = 0
    try:
        for i in range(events):
            seq = gldc09.next_seq(seq)
            t0 = time.perf_counter()
            tries = 0
            while True:
                tries += 1
                writer.write(_line(seq, number, i, key))
                try:
                    reply = await asyncio.wait_for(reader.readuntil(b"\r"), 30)
                except asyncio.TimeoutError:
                    if tries >= 3:
                        raise TimeoutError("no reply") from None
                    continue
                kind, rseq, _ = gldc09.parse_reply(reply, key)
                if kind == "ACK" and rseq == seq:
                    break
                out["naks"] += 1
                if tries >= 20:
                    raise RuntimeError("%s after %d tries" % (kind, tries))
                await asyncio.sleep(0.2)
            out["latencies"].append(time.perf_counter() - t0)
            out["acked"] += 1
    except (OSError, asyncio.IncompleteReadError, TimeoutError, RuntimeError,
            gldc09.Dc09ReplyError) as e:
        out["errors"].append("%s: %r" % (number, e))
    finally:
        writer.close()


async def _worker_main(host, port, accounts, events, ready_q, go_ev):
    loop = asyncio.get_running_loop()
    out = {"latencies": [], "acked": 0, "naks": 0, "errors": [], "connected": 0}
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    go = loop.create_future()
    tasks = [asyncio.create_task(_line_panel(host, port, n, k, events, out, sem, go))
             for n, k in accounts]
    end = time.monotonic() + 60
    while out["connected"] + len(out["errors"]) < len(accounts) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    ready_q.put(out["connected"])
    await loop.run_in_executor(None, go_ev.wait, 120)
    t0 = time.time()
    go.set_result(None)
    await asyncio.wait(tasks, timeout=GIVE_UP_S)
    out["t_start"], out["t_end"] = t0, time.time()
    return out


def _worker(host, port, accounts, events, ready_q, go_ev, q):
    q.put(asyncio.run(_worker_main(host, port, accounts, events, ready_q, go_ev)))


def run_load(host, port, accounts, events, procs, pid) -> dict:
    ctx = mp.get_context("spawn")
    q, ready_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    ps = [ctx.Process(target=_worker, args=(host, port, accounts[i::procs], events, ready_q,
                                            go, q)) for i in range(procs)]
    for p in ps:
        p.start()
    connected = sum(ready_q.get(timeout=120) for _ in ps)
    p0 = benchlib.probe(pid)
    t_go = time.time()
    go.set()
    results = [q.get(timeout=GIVE_UP_S + 60) for _ in ps]
    p1 = benchlib.probe(pid)
    for p in ps:
        p.join(30)
    lat = sorted(x for r in results for x in r["latencies"])
    acked = sum(r["acked"] for r in results)
    wall = max(r["t_end"] for r in results) - t_go
    cpu = p1["cpu_s"] - p0["cpu_s"]
    return {
        "connections": len(accounts), "connected": connected, "events_per_connection": events,
        "acked": acked, "naks": sum(r["naks"] for r in results),
        "errors": [e for r in results for e in r["errors"]][:10],
        "wall_s": round(wall, 3), "events_per_s": acked / wall if wall > 0 else None,
        "ack_latency_ms": {"p50": loadgen._ms(benchlib.pct(lat, 50)),
                           "p90": loadgen._ms(benchlib.pct(lat, 90)),
                           "p99": loadgen._ms(benchlib.pct(lat, 99)),
                           "max": loadgen._ms(lat[-1] if lat else None)},
        "server_cpu_s": round(cpu, 3),
        "server_cpu_s_per_1000_events": round(cpu / acked * 1000, 4) if acked else None,
        "server_rss_mib_end": round(p1["rss_kib"] / 1024, 1),
    }


PYSIA_SERVER = r'''
import asyncio, json, signal, sys, logging
from pysiaalarm import SIAAccount
from pysiaalarm.aio import SIAClient
logging.basicConfig(level=logging.ERROR)
accounts = [SIAAccount(n, k) for n, k in json.load(open(sys.argv[1]))]
count = 0
async def on_event(event):
    global count
    count += 1
async def main():
    client = SIAClient("127.0.0.1", 0, accounts, on_event)
    await client.async_start(reuse_address=True)
    port = client.server.sockets[0].getsockname()[1]
    with open(sys.argv[2] + ".tmp", "w") as f:
        json.dump({"port": port}, f)
    import os
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await client.async_stop()
    with open(sys.argv[2] + ".count", "w") as f:
        f.write(str(count))
asyncio.run(main())
'''


class PysiaServer:
    def __init__(self, tmp, accounts):
        acc = os.path.join(tmp, "pysia_accounts.json")
        with open(acc, "w") as f:
            json.dump(accounts, f)
        script = os.path.join(tmp, "pysia_server.py")
        with open(script, "w") as f:
            f.write(PYSIA_SERVER)
        self.ready = os.path.join(tmp, "pysia.ready")
        self.log = open(os.path.join(tmp, "pysia.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, script, acc, self.ready],
                                     stdout=self.log, stderr=self.log)
        end = time.monotonic() + 60
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.proc.kill()
                raise RuntimeError("pysiaalarm server did not start (see %s)" % tmp)
            time.sleep(0.05)
        with open(self.ready) as f:
            self.port = json.load(f)["port"]

    def stop(self) -> int:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        try:
            with open(self.ready + ".count") as f:
                return int(f.read())
        except OSError:
            return -1


def run_ours(tmp, accounts, events, procs) -> dict:
    db = os.path.join(tmp, "dc09.db")
    benchlib.create_accounts_db(db, [Account(n, k.encode(), protocol="dc09")
                                     for n, k in accounts])
    proc = ReceiverProcess(db, ["--dc09-tcp", "127.0.0.1:0", "--log-level", "warning"],
                           log_path=os.path.join(tmp, "receiver.log"))
    proc.start(timeout=120)
    try:
        host, port = proc.ready["dc09_tcp"][0]
        res = run_load(host, port, accounts, events, procs, proc.proc.pid)
        res["exit_code"] = proc.terminate(timeout=60)
    finally:
        proc.close()
    res["stored"] = len(benchlib.stored_events(db, lambda e: e.protocol == "dc09"))
    res["store_ok"] = res["stored"] == res["acked"] == len(accounts) * events
    return res


def run_pysia(tmp, accounts, events, procs) -> dict:
    srv = PysiaServer(tmp, accounts)
    try:
        res = run_load("127.0.0.1", srv.port, accounts, events, procs, srv.proc.pid)
    finally:
        seen = srv.stop()
    res["events_seen_by_callback"] = seen
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--events", type=int, default=50, help="events per connection")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(benchlib.RESULTS, "dc09_vs_pysiaalarm.json"))
    a = ap.parse_args(argv)
    try:
        from importlib.metadata import version  # noqa: PLC0415

        import pysiaalarm  # noqa: F401, PLC0415
        pysia_version = version("pysiaalarm")
    except ImportError:
        print("pysiaalarm is not installed: .venv/bin/pip install pysiaalarm")
        return 2
    loadgen.raise_nofile(a.connections + 256)
    doc = {"benchmark": "SIA DC-09 encrypted ADM-CID (AES-256) over TCP loopback, lockstep; "
                        "guardline receiver (durable store, ACK after commit) vs pysiaalarm "
                        "asyncio server (no store)",
           "command": "python bench/bench_dc09_vs_pysiaalarm.py " + " ".join(
               argv if argv is not None else sys.argv[1:]),
           "pysiaalarm": pysia_version, "machine": benchlib.machine(),
           "loadavg_before": benchlib.loadavg(), "when": benchlib.now_iso(), "procs": a.procs,
           "runs": []}
    ok = True
    for r in range(a.repeat):
        accounts = make_dc09_accounts(a.connections)
        order = [("guardline", run_ours), ("pysiaalarm", run_pysia)]
        if r % 2:
            order.reverse()
        for name, fn in order:
            tmp = tempfile.mkdtemp(prefix="gl-dc09-vs-")
            res = fn(tmp, accounts, a.events, a.procs)
            res.update({"server": name, "repeat": r})
            doc["runs"].append(res)
            if name == "guardline":
                ok = ok and res["store_ok"]
            lat = res["ack_latency_ms"]
            print("%-10s run %d: %d ACKed in %.2f s = %6.0f ev/s; ACK p50 %.1f p99 %.1f max %.1f "
                  "ms; server CPU %.3f s/1k ev; RSS %.0f MiB; errors %d%s"
                  % (name, r, res["acked"], res["wall_s"], res["events_per_s"] or 0,
                     lat["p50"] or 0, lat["p99"] or 0, lat["max"] or 0,
                     res["server_cpu_s_per_1000_events"] or 0, res["server_rss_mib_end"],
                     len(res["errors"]),
                     ("; stored %d %s" % (res["stored"], "OK" if res["store_ok"] else "MISMATCH"))
                     if name == "guardline" else ""), flush=True)
    doc["loadavg_after"] = benchlib.loadavg()
    g = [r for r in doc["runs"] if r["server"] == "guardline"]
    p = [r for r in doc["runs"] if r["server"] == "pysiaalarm"]
    summ = {}
    for name, rs in (("guardline", g), ("pysiaalarm", p)):
        summ[name] = {
            "events_per_s": benchlib.spread([r["events_per_s"] for r in rs]),
            "ack_p50_ms": benchlib.spread([r["ack_latency_ms"]["p50"] for r in rs]),
            "ack_p99_ms": benchlib.spread([r["ack_latency_ms"]["p99"] for r in rs]),
            "cpu_s_per_1000": benchlib.spread([r["server_cpu_s_per_1000_events"] for r in rs]),
            "rss_mib": benchlib.spread([r["server_rss_mib_end"] for r in rs])}
    summ["throughput_ratio_guardline_over_pysiaalarm"] = benchlib.spread(
        [x["events_per_s"] / y["events_per_s"] for x, y in zip(g, p)
         if x["events_per_s"] and y["events_per_s"]])
    summ["cpu_per_event_ratio_guardline_over_pysiaalarm"] = benchlib.spread(
        [x["server_cpu_s_per_1000_events"] / y["server_cpu_s_per_1000_events"]
         for x, y in zip(g, p)
         if x["server_cpu_s_per_1000_events"] and y["server_cpu_s_per_1000_events"]])
    doc["summary"] = summ
    benchlib.write_json(a.out, doc)
    print("throughput ratio guardline/pysiaalarm: %s; CPU per event ratio: %s" % (
        benchlib.fmt_spread(summ["throughput_ratio_guardline_over_pysiaalarm"], "", 2),
        benchlib.fmt_spread(summ["cpu_per_event_ratio_guardline_over_pysiaalarm"], "", 2)))
    print("wrote %s" % a.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
