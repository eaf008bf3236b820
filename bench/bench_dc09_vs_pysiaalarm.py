"""SIA DC-09 receivers side by side: our receiver's DC-09 TCP listener
(``guardline-receiver serve --dc09-tcp``: judge, durable SQLite store with
ACK after commit, supervision, alarm queue) and pysiaalarm's asyncio TCP
server (the library Home Assistant's SIA integration uses: it parses,
decrypts, ACKs and calls a coroutine; it stores nothing), on the same
machine, in the same run, with the same load generator and the same
encrypted ADM-CID lines.  (bench/bench_dc09_receiver.py measures our
listener alone in more configurations.)

Load: ``--procs`` worker processes, N connections, one DC-09 account (hex)
with an AES-256 key per connection.  Connect phase (not timed): each
connection opens (at most bench/loadgen.CONNECT_CONCURRENCY at a time,
below the receiver's cap of unauthenticated connections from one address),
sends one encrypted NULL link test and waits for its ACK (as a panel's
first poll: this authenticates the line with us), and builds its encrypted
ADM-CID lines with the lean codec (protocol/lean/gldc09, as our firmware
does; timestamp of that moment, rebuilt if older than
``PREBUILT_MAX_AGE_S``).  Load phase, lockstep: send a line, wait for the
reply, check it is an ``*ACK`` for that sequence with the account key,
next.  Each server runs in its own subprocess; its CPU seconds come from
/proc/PID/stat over the load phase, the generator's from each worker's
process time.  Repeats alternate which server goes first;
``--receiver-tree LABEL=DIR`` adds another checkout's receiver (e.g. the
tree before a change) to every repeat.

    .venv/bin/python bench/bench_dc09_vs_pysiaalarm.py [--connections 100] [--events 50]
        [--repeat 3] [--procs 2] [--receiver-tree before=../before]
        [--profile bench/results/profiles/dc09]

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
import functools
import json
import multiprocessing as mp
import os
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
# The receiver (and pysiaalarm) check a line's timestamp against their clock
# (DC-09 5.5.1.8: +20/-40 s by default): a line built in the connect phase
# is built again if it waited longer than this.
PREBUILT_MAX_AGE_S = 15.0


def make_dc09_accounts(n: int) -> list[tuple[str, str]]:
    """[(account hex, key text)]: AES-256 keys as 32 hex characters (the
    text's ASCII bytes are the key, as pysiaalarm takes it)."""
    return [("%06X" % (0xA00000 + i), os.urandom(16).hex().upper()) for i in range(n)]


def _line(seq, number, i, key):
    return gldc09.build_adm_cid(seq, number, "1", "1", 1, 602 if i % 10 else 130, 1, i % 100,
                                key, tuple(time.gmtime()[:6]))


async def _ask(reader, writer, line, seq, key, out, build=None):
    """Send ``line`` until it is ACKed (a NAK or DUH: wait, rebuild with
    ``build()`` if given, resend); raise after too many tries."""
    tries = 0
    while True:
        tries += 1
        writer.write(line)
        try:
            reply = await asyncio.wait_for(reader.readuntil(b"\r"), 30)
        except asyncio.TimeoutError:
            if tries >= 3:
                raise TimeoutError("no reply") from None
            continue
        kind, rseq, _ = gldc09.parse_reply(reply, key)
        if kind == "ACK" and rseq == seq:
            return
        out["naks"] += 1
        if tries >= 20:
            raise RuntimeError("%s after %d tries" % (kind, tries))
        await asyncio.sleep(0.2)
        if build is not None:
            line = build()


async def _line_panel(host, port, number, key_text, events, out, sem, go):
    key = key_text.encode()
    seq = gldc09.next_seq(0)
    async with sem:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            # the first poll: an encrypted NULL, ACKed before the load starts
            await _ask(reader, writer, gldc09.build_null(
                seq, number, "1", "1", key, tuple(time.gmtime()[:6])), seq, key, out)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, RuntimeError,
                gldc09.Dc09ReplyError) as e:
            out["errors"].append("%s: connect/first poll: %r" % (number, e))
            return
    out["connected"] += 1
    lines = []
    for i in range(events):
        seq = gldc09.next_seq(seq)
        lines.append((seq, _line(seq, number, i, key)))
    built = time.monotonic()
    await go
    try:
        for i, (seq, line) in enumerate(lines):
            t0 = time.perf_counter()
            if time.monotonic() - built > PREBUILT_MAX_AGE_S:
                line = _line(seq, number, i, key)
            await _ask(reader, writer, line, seq, key, out,
                       lambda seq=seq, i=i: _line(seq, number, i, key))
            out["latencies"].append(time.perf_counter() - t0)
            out["acked"] += 1
    except (OSError, asyncio.IncompleteReadError, TimeoutError, RuntimeError,
            gldc09.Dc09ReplyError) as e:
        out["errors"].append("%s: %r" % (number, e))
    finally:
        writer.close()


async def _worker_main(host, port, accounts, events, ready_q, go_ev, concurrency):
    loop = asyncio.get_running_loop()
    out = {"latencies": [], "acked": 0, "naks": 0, "errors": [], "connected": 0}
    sem = asyncio.Semaphore(max(1, concurrency))
    go = loop.create_future()
    tasks = [asyncio.create_task(_line_panel(host, port, n, k, events, out, sem, go))
             for n, k in accounts]
    end = time.monotonic() + 120
    while out["connected"] + len(out["errors"]) < len(accounts) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    ready_q.put(out["connected"])
    await loop.run_in_executor(None, go_ev.wait, 180)
    t0 = time.time()
    c0 = time.process_time()
    go.set_result(None)
    await asyncio.wait(tasks, timeout=GIVE_UP_S)
    out["t_start"], out["t_end"] = t0, time.time()
    out["cpu_s"] = time.process_time() - c0
    return out


def _worker(host, port, accounts, events, ready_q, go_ev, q, concurrency):
    q.put(loadgen.run_loop(_worker_main(host, port, accounts, events, ready_q, go_ev,
                                        concurrency)))


def run_load(host, port, accounts, events, procs, pid) -> dict:
    ctx = mp.get_context("spawn")
    q, ready_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    ps = [ctx.Process(target=_worker, args=(host, port, accounts[i::procs], events, ready_q,
                                            go, q, loadgen.CONNECT_CONCURRENCY // procs))
          for i in range(procs)]
    for p in ps:
        p.start()
    connected = sum(ready_q.get(timeout=300) for _ in ps)
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
    gen = loadgen.generator_figures(results, acked, wall)
    return {**gen,
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
        "server_cpu_us_per_event": round(cpu / acked * 1e6, 1) if acked else None,
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


def run_ours(tmp, accounts, events, procs, tree=None, profile=None) -> dict:
    db = os.path.join(tmp, "dc09.db")
    benchlib.create_accounts_db_in(tree, db, [Account(n, k.encode(), protocol="dc09")
                                              for n, k in accounts])
    proc = ReceiverProcess(db, ["--dc09-tcp", "127.0.0.1:0", "--log-level", "warning"],
                           log_path=os.path.join(tmp, "receiver.log"),
                           env=benchlib.tree_env(tree))
    proc.start(timeout=120)
    prof = None
    try:
        host, port = proc.ready["dc09_tcp"][0]
        if profile:
            prof = benchlib.Profiler(proc.pid, profile)
        res = run_load(host, port, accounts, events, procs, proc.pid)
        if prof is not None:
            prof.stop()
        res["exit_code"] = proc.terminate(timeout=60)
    finally:
        proc.close()
        if prof is not None and prof.proc.poll() is None:
            prof.proc.kill()
    res["stored"] = len(benchlib.stored_events(db, lambda e: e.protocol == "dc09"))
    res["store_ok"] = res["stored"] == res["acked"] == len(accounts) * events
    if profile:
        res["profile"] = benchlib.summarize_profile(profile)
    return res


def run_pysia(tmp, accounts, events, procs, profile=None) -> dict:
    srv = PysiaServer(tmp, accounts)
    prof = benchlib.Profiler(srv.proc.pid, profile) if profile else None
    try:
        res = run_load("127.0.0.1", srv.port, accounts, events, procs, srv.proc.pid)
    finally:
        if prof is not None:
            prof.stop()
        seen = srv.stop()
    res["events_seen_by_callback"] = seen
    if profile:
        res["profile"] = benchlib.summarize_profile(profile)
    return res


def print_run(res: dict) -> None:
    lat = res["ack_latency_ms"]
    ours = "stored" in res
    print("%-18s run %s: %d ACKed in %.2f s = %6.0f ev/s; ACK p50 %.1f p99 %.1f max %.1f "
          "ms; server CPU %5.1f us/ev; RSS %.0f MiB; gen CPU %.1f us/ev (busiest worker "
          "%.2f of a core%s); errors %d%s"
          % (res["server"], res["repeat"], res["acked"], res["wall_s"],
             res["events_per_s"] or 0, lat["p50"] or 0, lat["p99"] or 0, lat["max"] or 0,
             res["server_cpu_us_per_event"] or 0, res["server_rss_mib_end"],
             (res["gen_cpu_s_per_1000_events"] or 0) * 1000, res["gen_util_busiest_worker"],
             ": SATURATED" if res["gen_saturated"] else "", len(res["errors"]),
             ("; stored %d %s" % (res["stored"], "OK" if res["store_ok"] else "MISMATCH"))
             if ours else ""), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--events", type=int, default=50, help="events per connection")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    benchlib.add_tree_options(
        ap, "our receiver from this checkout (repeat for several, e.g. before and after a "
            "change); default this tree",
        "also one profiled run of each server (py-spy; not counted in the figures): "
        "PREFIX-SERVER.txt")
    ap.add_argument("--out", default=os.path.join(benchlib.RESULTS, "dc09_vs_pysiaalarm.json"))
    a = ap.parse_args(argv)
    try:
        from importlib.metadata import version  # noqa: PLC0415

        import pysiaalarm  # noqa: F401, PLC0415
        pysia_version = version("pysiaalarm")
    except ImportError:
        print("pysiaalarm is not installed: .venv/bin/pip install pysiaalarm")
        return 2
    trees = benchlib.parse_trees(a.receiver_tree)
    ours = ["guardline" if label == "this" else "guardline-" + label for label, _ in trees]
    loadgen.raise_nofile(a.connections + 256)
    doc = {"benchmark": "SIA DC-09 encrypted ADM-CID (AES-256) over TCP loopback, lockstep; "
                        "guardline receiver (durable store, ACK after commit) vs pysiaalarm "
                        "asyncio server (no store)",
           "command": "python bench/bench_dc09_vs_pysiaalarm.py " + " ".join(
               argv if argv is not None else sys.argv[1:]),
           "trees": {name: {"dir": d or benchlib.ROOT, "commit": benchlib.tree_commit(d)}
                     for name, (_, d) in zip(ours, trees)},
           "pysiaalarm": pysia_version, "machine": benchlib.machine(),
           "loadavg_before": benchlib.loadavg(), "when": benchlib.now_iso(), "procs": a.procs,
           "runs": [], "profiles": []}
    servers = [(name, functools.partial(run_ours, tree=d))
               for name, (_, d) in zip(ours, trees)] + [("pysiaalarm", run_pysia)]
    ok = True
    for r in list(range(a.repeat)) + (["profile"] if a.profile else []):
        accounts = make_dc09_accounts(a.connections)
        order = servers if r == "profile" or r % 2 == 0 else servers[::-1]
        for name, fn in order:
            tmp = tempfile.mkdtemp(prefix="gl-dc09-vs-")
            prof = "%s-%s.txt" % (a.profile, name) if r == "profile" else None
            res = fn(tmp, accounts, a.events, a.procs, profile=prof)
            res.update({"server": name, "repeat": r})
            (doc["profiles"] if prof else doc["runs"]).append(res)
            if "stored" in res:
                ok = ok and res["store_ok"]
            print_run(res)
            if prof:
                benchlib.print_profile(res["profile"])
    doc["loadavg_after"] = benchlib.loadavg()
    by = {name: [r for r in doc["runs"] if r["server"] == name]
          for name, _ in servers}
    summ = {}
    for name, rs in by.items():
        summ[name] = {
            "events_per_s": benchlib.spread([r["events_per_s"] for r in rs]),
            "ack_p50_ms": benchlib.spread([r["ack_latency_ms"]["p50"] for r in rs]),
            "ack_p99_ms": benchlib.spread([r["ack_latency_ms"]["p99"] for r in rs]),
            "cpu_s_per_1000": benchlib.spread([r["server_cpu_s_per_1000_events"] for r in rs]),
            "cpu_us_per_event": benchlib.spread([r["server_cpu_us_per_event"] for r in rs]),
            "gen_cpu_us_per_event": benchlib.spread(
                [r["gen_cpu_s_per_1000_events"] * 1000 for r in rs
                 if r["gen_cpu_s_per_1000_events"] is not None]),
            "gen_saturated_runs": sum(1 for r in rs if r["gen_saturated"]),
            "rss_mib": benchlib.spread([r["server_rss_mib_end"] for r in rs])}
    p = by["pysiaalarm"]
    for name in ours:
        g = by[name]
        # per repeat pair: the two ran one after the other on the same machine
        summ["throughput_ratio_%s_over_pysiaalarm" % name] = benchlib.spread(
            [x["events_per_s"] / y["events_per_s"] for x, y in zip(g, p)
             if x["events_per_s"] and y["events_per_s"]])
        summ["cpu_per_event_ratio_%s_over_pysiaalarm" % name] = benchlib.spread(
            [x["server_cpu_s_per_1000_events"] / y["server_cpu_s_per_1000_events"]
             for x, y in zip(g, p)
             if x["server_cpu_s_per_1000_events"] and y["server_cpu_s_per_1000_events"]])
        print("%s / pysiaalarm: throughput %s; CPU per event %s (%s us vs %s us)" % (
            name, benchlib.fmt_spread(summ["throughput_ratio_%s_over_pysiaalarm" % name], "",
                                      2),
            benchlib.fmt_spread(summ["cpu_per_event_ratio_%s_over_pysiaalarm" % name], "", 3),
            benchlib.fmt_spread(summ[name]["cpu_us_per_event"], "", 1),
            benchlib.fmt_spread(summ["pysiaalarm"]["cpu_us_per_event"], "", 1)))
    doc["summary"] = summ
    benchlib.write_json(a.out, doc)
    print("wrote %s" % a.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
