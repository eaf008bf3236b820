"""End-to-end load generator for the Guardline receiver (native protocol).

Each worker process runs an asyncio loop with many TCP connections; each
connection is one panel (``glpanel.PanelSession``, the firmware's own
session core) sending authenticated EVENTs in lockstep: offer, send, wait
for the ACK, next.  Connections run concurrently, so the receiver sees
the events pipelined across connections, as from a city of panels.

Per event it records the ACK latency (frame written -> ACK opened).  A NAK
busy is counted and the event resent after the session's backoff, so the
figures include backpressure honestly.

Used by bench/bench_receiver.py; runnable alone against a running receiver:

    python bench/loadgen.py --host 127.0.0.1 --port 7700 --accounts accounts.json \\
        --events 50 --procs 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from protocol.lean import glpanel, glwire as w  # noqa: E402

# An event not ACKed in this long is retransmitted (the session re-seals it).
RETRY_S = 5.0
# A connection that gets no ACK for this long gives up (counted as failed).
GIVE_UP_S = 120.0


def _event(seq: int) -> dict:
    return {"type": w.MSG_EVENT, "qualifier": 1, "code": 602 if seq % 10 else 130,
            "partition": 1, "zone": seq % 100, "event_time": int(time.time()),
            "text": None, "value": None}


async def _panel(host, port, account, key, events, first_seq, out):
    s = glpanel.PanelSession(account, w.Keys(key), ack_timeout_ms=int(RETRY_S * 1000))
    reader, writer = await asyncio.open_connection(host, port)
    lat = out["latencies"]
    try:
        for seq in range(first_seq, first_seq + events):
            s.offer(seq, _event(seq))
            t0 = time.perf_counter()
            start = time.monotonic()
            while True:
                frame = s.data_to_send(int(time.monotonic() * 1000), int(time.time()))
                if frame is not None:
                    writer.write(frame)
                try:
                    data = await asyncio.wait_for(reader.read(w.READ_SIZE), 0.5)
                except asyncio.TimeoutError:
                    data = None
                if data == b"":
                    raise ConnectionError("receiver closed the connection")
                if data:
                    s.receive_data(data, int(time.time()))
                done = False
                ev = s.next_event()
                while ev is not glpanel.NEED_DATA:
                    if isinstance(ev, glpanel.Acked) and ev.seq == seq:
                        done = True
                    elif isinstance(ev, glpanel.Nakked):
                        out["naks"] += 1
                    ev = s.next_event()
                if done:
                    lat.append(time.perf_counter() - t0)
                    out["acked"] += 1
                    break
                if time.monotonic() - start > GIVE_UP_S:
                    raise TimeoutError("account %d seq %d not ACKed" % (account, seq))
    except (OSError, ConnectionError, TimeoutError) as e:
        out["errors"].append("%d: %s" % (account, e))
    finally:
        writer.close()


async def _worker_main(host, port, accounts, events, first_seq, start_at):
    out = {"latencies": [], "acked": 0, "naks": 0, "errors": []}
    # start together with the other processes (a shared wall-clock instant)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    t0 = time.time()
    await asyncio.gather(*(_panel(host, port, a, bytes.fromhex(k), events, first_seq, out)
                           for a, k in accounts))
    out["t_start"] = t0
    out["t_end"] = time.time()
    return out


def _worker(host, port, accounts, events, first_seq, start_at, q):
    q.put(asyncio.run(_worker_main(host, port, accounts, events, first_seq, start_at)))


def run(host: str, port: int, accounts: list, events: int, procs: int,
        first_seq: int = 1) -> dict:
    """accounts: [(account int, key hex)].  Returns merged results."""
    q = mp.get_context("spawn").Queue()
    start_at = time.time() + 1.5 + 0.3 * procs  # time for the workers to start
    ps = []
    for i in range(procs):
        share = accounts[i::procs]
        p = mp.get_context("spawn").Process(
            target=_worker, args=(host, port, share, events, first_seq, start_at, q))
        p.start()
        ps.append(p)
    results = [q.get() for _ in ps]
    for p in ps:
        p.join()
    lat = sorted(x for r in results for x in r["latencies"])
    t0 = min(r["t_start"] for r in results)
    t1 = max(r["t_end"] for r in results)

    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else None

    acked = sum(r["acked"] for r in results)
    return {
        "connections": len(accounts), "events_per_connection": events, "procs": procs,
        "acked": acked, "naks": sum(r["naks"] for r in results),
        "errors": [e for r in results for e in r["errors"]][:20],
        "wall_s": t1 - t0, "events_per_s": acked / (t1 - t0) if t1 > t0 else None,
        "ack_latency_ms": {"p50": _ms(pct(50)), "p90": _ms(pct(90)), "p99": _ms(pct(99)),
                           "max": _ms(lat[-1] if lat else None)},
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
    a = ap.parse_args(argv)
    with open(a.accounts) as f:
        rows = json.load(f)
    accts = [(int(r["number"]), r["key"]) for r in rows if r.get("protocol", "native")
             == "native"]
    print(json.dumps(run(a.host, a.port, accts, a.events, a.procs, a.first_seq), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
